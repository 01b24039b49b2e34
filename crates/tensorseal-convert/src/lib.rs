#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod byte_order;
mod consolidate;
mod convert;
mod dcp;
mod dcp_set;
mod detect;
mod dry_run;
mod error;
mod export;
#[doc(hidden)]
pub mod fuzz_support;
mod hf_index;
mod json_strict;
mod limits;
mod materialize;
mod npy;
mod pickle_tree;
mod pickles;
mod safetensors_in;
mod sandbox;
mod scan;
mod tar;
mod torch;
mod torch_tar;
mod torch_zip;
mod zip;
#[doc(hidden)]
pub mod zip_test_support;

pub use byte_order::ByteOrder;
pub use consolidate::{ConsolidateReport, consolidate, export_shard_set};
pub use convert::{ConvertOptions, ConvertReport, PRODUCER, RESERVED_METADATA, convert};
pub use dcp_set::{ShardSetConversion, convert_to_shard_set, is_folder_output};
pub use detect::{Format, TORCH_LEGACY_MAGIC, ZipKind, detect, zip_kind};
pub use error::{
    ConvertError, DetectError, ExportError, HfIndexError, NpyError, SafetensorsError, SandboxError,
    TorchZipError, ZipError,
};
pub use export::{
    ExportOptions, ExportReport, MAX_TREE_JSON, ROOT_TENSOR_NAME, SkippedTensor, export,
};
pub use hf_index::{HfIndex, Shard};
pub use limits::{LimitExceeded, Limits};
pub use npy::{NpyArray, Npz};
pub use pickle_tree::TreeStats;
pub use pickles::MemberScan;
pub use safetensors_in::{
    SafetensorsFile, SafetensorsTensor, dtype_from_safetensors, dtype_to_safetensors,
};
pub use sandbox::{LandlockOutcome, SandboxMode, SandboxPolicy, SandboxReport};
pub use scan::{ScanOutcome, ScanVerdict, scan};
pub use torch_zip::TorchZip;
pub use zip::{DeferredCrcs, Method, ZipArchive, ZipEntry};
