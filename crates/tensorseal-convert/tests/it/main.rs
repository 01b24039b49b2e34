//! Integration tests against real files written by torch, numpy and safetensors, and the hostile
//! inputs built to break container parsers (see `tests/data/README.md` for where each came from).

mod containers;
mod corpus;
mod export;
mod formats;
mod npy;
mod props;

use std::path::{Path, PathBuf};

/// Path of a test data file.
pub fn data_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

/// Bytes of a test data file.
pub fn data(rel: &str) -> Vec<u8> {
    std::fs::read(data_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}
