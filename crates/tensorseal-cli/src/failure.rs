//! Failures and the exit code each maps to. The class of an error, its exit code and its `--json`
//! kind are decided by the library ([`tensorseal::Classify`]), the same for the Python package.

use std::path::Path;
use tensorseal::{Classify, error_chain};

/// A command failure: the message for stderr, the exit code, and the stable kind the audit log
/// records (the `--json` `error.kind` of the same failure).
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
    kind: Option<&'static str>,
}

impl Failure {
    pub(crate) const USAGE: u8 = 2;

    pub(crate) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            kind: None,
        }
    }

    /// The same failure, with the machine-readable kind of the error behind it.
    pub(crate) fn with_kind(mut self, kind: &'static str) -> Failure {
        self.kind = Some(kind);
        self
    }

    /// The error's kind where one is known, else the generic kind of the exit code: `usage`,
    /// `invalid`, `verification`, `unsafe`.
    pub(crate) fn kind(&self) -> &'static str {
        self.kind.unwrap_or(match self.code {
            Failure::USAGE => "usage",
            3 => "verification",
            4 => "unsafe",
            _ => "invalid",
        })
    }

    /// A failure about `path`, with the exit code of the error's class.
    pub(crate) fn of(path: &Path, e: &dyn Classify) -> Failure {
        Failure::new(
            e.class().exit_code(),
            format!("{}: {}", path.display(), error_chain(e)),
        )
        .with_kind(e.kind())
    }
}
