#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
mod location;
mod object;

pub use error::StoreError;
pub use location::Location;
pub use object::{ObjectReader, StoreOptions};
