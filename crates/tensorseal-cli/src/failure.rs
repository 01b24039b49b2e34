//! Failures and the exit code each maps to. The class of an error, its exit code and its `--json`
//! kind are decided by the library ([`tensorseal::Classify`]), the same for the Python package.

use std::path::Path;
use tensorseal::{Classify, error_chain};

/// A command failure: the message for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) const USAGE: u8 = 2;

    pub(crate) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A failure about `path`, with the exit code of the error's class.
    pub(crate) fn of(path: &Path, e: &dyn Classify) -> Failure {
        Failure::new(
            e.class().exit_code(),
            format!("{}: {}", path.display(), error_chain(e)),
        )
    }
}
