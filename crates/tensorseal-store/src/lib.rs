#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
mod location;
mod object;
mod profile;
mod remote;
mod transfer;

pub use error::StoreError;
pub use location::Location;
pub use object::{ObjectReader, StoreOptions};
pub use profile::MAX_PROFILE_FILE;
pub use remote::{OpenError, READ_CONCURRENCY, in_read_pool, open_checkpoint};
pub use transfer::{
    MAX_LISTED, ObjectVersion, PART_SIZE, UPLOAD_CONCURRENCY, download_file, list_folder,
    upload_file,
};
