//! One classification of failures for every front end.
//!
//! The CLI turns a failure into an exit code and a `--json` kind, the Python package into an
//! exception class and its `kind` attribute. Both ask the error itself ([`Classify`]), so a new
//! error variant gets one treatment, decided here or next to its definition, never two.

use crate::error::{KeyError, PolicyError, ReadError, VerifyError, WriteError};
use std::error::Error;

/// What kind of failure an error is, for the caller deciding what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// Invalid input or an I/O error: a missing or unreadable file, a bad key or argument, a
    /// malformed legacy checkpoint. Exit 1; Python `InvalidInputError`.
    Invalid,
    /// A value the format, or this environment, cannot represent. Exit 1; Python
    /// `UnsupportedError`.
    Unsupported,
    /// The OS sandbox was required and could not be applied. Exit 1; Python `SandboxError`.
    Sandbox,
    /// A signed file failed verification: signature, trust, digest, structure, metadata. Exit 3;
    /// Python `VerificationError`.
    Verification,
    /// A pickle names code-execution or I/O primitives. Exit 4; Python `UnsafeError`.
    Unsafe,
    /// A pickle holds unknown classes and inert records were not allowed. Exit 4; Python
    /// `UnknownObjectError`.
    UnknownObjects,
}

impl FailureClass {
    /// The CLI's exit code for this class (documented in README.md and `tensorseal --help`).
    pub fn exit_code(self) -> u8 {
        match self {
            FailureClass::Invalid | FailureClass::Unsupported | FailureClass::Sandbox => 1,
            FailureClass::Verification => 3,
            FailureClass::Unsafe | FailureClass::UnknownObjects => 4,
        }
    }
}

/// An error that knows its failure class and its machine-readable kind.
pub trait Classify: Error {
    /// Which class of failure this is.
    fn class(&self) -> FailureClass;
    /// A stable, machine-readable name (`--json`'s `error.kind`, Python's `exc.kind`).
    fn kind(&self) -> &'static str;
}

impl Classify for VerifyError {
    fn class(&self) -> FailureClass {
        match self {
            // A missing file or a directory is a usage problem, not a verdict about the file.
            VerifyError::Malformed(ReadError::Io(_)) => FailureClass::Invalid,
            _ => FailureClass::Verification,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
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
        }
    }
}

impl Classify for WriteError {
    fn class(&self) -> FailureClass {
        match self {
            WriteError::Io(_) => FailureClass::Invalid,
            // Metadata is an argument the caller passed; a bad tree value is one the format
            // cannot hold.
            WriteError::Invalid {
                what: "metadata", ..
            } => FailureClass::Invalid,
            WriteError::Invalid { .. } => FailureClass::Unsupported,
            WriteError::NotIntact(v) => v.class(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            WriteError::Io(_) => "io",
            WriteError::Invalid {
                what: "metadata", ..
            } => "invalid",
            WriteError::Invalid { .. } => "unsupported",
            WriteError::NotIntact(v) => v.kind(),
        }
    }
}

impl Classify for ReadError {
    fn class(&self) -> FailureClass {
        // Reading without verifying (inspect, export's open): a bad file is bad input.
        FailureClass::Invalid
    }

    fn kind(&self) -> &'static str {
        match self {
            ReadError::Io(_) => "io",
            _ => "malformed",
        }
    }
}

impl Classify for PolicyError {
    fn class(&self) -> FailureClass {
        FailureClass::Invalid
    }

    fn kind(&self) -> &'static str {
        "invalid_policy"
    }
}

impl Classify for KeyError {
    fn class(&self) -> FailureClass {
        FailureClass::Invalid
    }

    fn kind(&self) -> &'static str {
        match self {
            KeyError::Io(_) => "io",
            KeyError::Parse { .. } | KeyError::Weak => "bad_key",
            KeyError::Random(_) => "random",
        }
    }
}

/// An error and its sources joined with `: `, skipping a source whose text the message already
/// ends with (thiserror's `transparent` and `{source}` formats repeat it).
pub fn error_chain(e: &dyn Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_invalid_input_everything_else_verification() {
        let io = VerifyError::Malformed(ReadError::Io(std::io::Error::other("gone")));
        assert_eq!((io.class(), io.kind()), (FailureClass::Invalid, "io"));
        assert_eq!(io.class().exit_code(), 1);
        let untrusted = VerifyError::Untrusted {
            signers: vec![],
            trusted: 0,
            threshold: 1,
        };
        assert_eq!(untrusted.kind(), "unsigned");
        assert_eq!(untrusted.class().exit_code(), 3);
        let not_intact = WriteError::NotIntact(Box::new(VerifyError::StepMissing));
        assert_eq!(not_intact.class(), FailureClass::Verification);
        let metadata = WriteError::Invalid {
            what: "metadata",
            path: "k".into(),
            detail: "d".into(),
        };
        assert_eq!(metadata.class(), FailureClass::Invalid);
    }

    #[test]
    fn chain_does_not_repeat_a_transparent_source() {
        let e = WriteError::Io(std::io::Error::other("disk full"));
        assert_eq!(error_chain(&e), "I/O error: disk full");
    }
}
