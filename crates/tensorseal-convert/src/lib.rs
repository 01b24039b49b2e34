#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod byte_order;
mod error;
mod limits;
mod npy;
mod torch_zip;
mod zip;
#[doc(hidden)]
pub mod zip_test_support;

pub use byte_order::ByteOrder;
pub use error::{
    DetectError, ExportError, HfIndexError, NpyError, SafetensorsError, SandboxError,
    TorchZipError, ZipError,
};
pub use limits::{LimitExceeded, Limits};
pub use npy::{NpyArray, Npz};
pub use torch_zip::TorchZip;
pub use zip::{Method, ZipArchive, ZipEntry};
