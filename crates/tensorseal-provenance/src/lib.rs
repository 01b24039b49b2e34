#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod audit;
mod error;

pub use audit::{
    AuditLog, CHECKPOINT_DOMAIN, GENESIS, LogReport, MAX_LINE, file_facts, host_and_user,
    verify_log,
};
pub use error::AuditError;
