//! Failures and the exit code each maps to.

use std::error::Error;
use std::path::Path;
use tensorseal::{ReadError, VerifyError, WriteError};

/// A command failure: the message for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) const INVALID: u8 = 1;
    pub(crate) const USAGE: u8 = 2;
    pub(crate) const VERIFICATION: u8 = 3;

    pub(crate) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Invalid input or I/O error about `path`.
    pub(crate) fn invalid(path: &Path, e: &dyn Error) -> Failure {
        Failure::new(
            Failure::INVALID,
            format!("{}: {}", path.display(), chain(e)),
        )
    }

    /// A verification failure of `path`; I/O errors (missing file, permissions) stay exit 1.
    pub(crate) fn verify(path: &Path, e: &VerifyError) -> Failure {
        let code = match e {
            VerifyError::Malformed(ReadError::Io(_)) => Failure::INVALID,
            _ => Failure::VERIFICATION,
        };
        Failure::new(code, format!("{}: {}", path.display(), chain(e)))
    }

    pub(crate) fn write(path: &Path, e: &WriteError) -> Failure {
        match e {
            WriteError::NotIntact(v) => {
                let mut f = Failure::verify(path, v);
                f.message = format!("{}: refusing to sign: {}", path.display(), chain(&**v));
                f
            }
            _ => Failure::invalid(path, e),
        }
    }
}

/// An error and its sources, joined with `: `.
pub(crate) fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = cause.source();
    }
    s
}

/// The machine-readable kind of a verification error, stable for `--json` consumers.
pub(crate) fn verify_error_kind(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::Malformed(ReadError::Io(_)) => "io",
        VerifyError::Malformed(_) => "malformed",
        VerifyError::BadSignature { .. } => "bad_signature",
        VerifyError::Untrusted { signers, .. } if signers.is_empty() => "unsigned",
        VerifyError::Untrusted { .. } => "untrusted",
        VerifyError::DigestMismatch { .. } => "digest_mismatch",
        VerifyError::MetadataMismatch { .. } => "metadata_mismatch",
        VerifyError::StepTooOld { .. } => "step_too_old",
        VerifyError::StepMissing => "step_missing",
        VerifyError::KeyRefused { reason, .. } => reason.kind(),
        _ => "other",
    }
}
