//! Integration tests against real files written by torch, numpy and safetensors, and the hostile
//! inputs built to break container parsers: the project's fixture corpus, `tests/fixtures/` at
//! the repository root (its README says how each file was made).

mod containers;
mod convert;
mod corpus;
mod dcp;
mod export;
mod formats;
mod npy;
mod props;
mod scan_agrees;
mod tar;

use std::path::{Path, PathBuf};

/// Path of a test data file.
pub fn data_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
}

/// Bytes of a test data file.
pub fn data(rel: &str) -> Vec<u8> {
    std::fs::read(data_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}
