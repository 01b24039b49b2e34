//! Python exceptions for each failure class. The classes are defined in Python
//! (`tensorseal/_errors.py`) so they can inherit from several bases; Rust raises them by name.

use pyo3::prelude::*;
use std::error::Error;
use std::path::Path;
use tensorseal::{KeyError, ReadError, VerifyError, WriteError};

fn raise(py: Python<'_>, class: &str, args: (String, Option<&str>)) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let cls = py.import("tensorseal._errors")?.getattr(class)?;
        let exc = match args.1 {
            Some(kind) => cls.call1((args.0, kind))?,
            None => cls.call1((args.0,))?,
        };
        Ok(PyErr::from_value(exc))
    })();
    made.unwrap_or_else(|e| e)
}

/// `tensorseal.InvalidInputError`: unreadable file, not a file, bad key or argument.
pub(crate) fn invalid(py: Python<'_>, message: String) -> PyErr {
    raise(py, "InvalidInputError", (message, None))
}

/// `tensorseal.UnsupportedError`: a value the format or this environment cannot represent.
pub(crate) fn unsupported(py: Python<'_>, message: String) -> PyErr {
    raise(py, "UnsupportedError", (message, None))
}

/// `tensorseal.VerificationError` with a machine-readable kind (the CLI's `--json` kinds).
pub(crate) fn verification(py: Python<'_>, message: String, kind: &str) -> PyErr {
    raise(py, "VerificationError", (message, Some(kind)))
}

/// An error and its sources, joined with `: ` (as the CLI prints them).
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

/// The kind of a verification failure, the same strings as `tensorseal verify --json`.
pub(crate) fn verify_kind(e: &VerifyError) -> &'static str {
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

/// Maps a failure to open or verify `path`: I/O errors (missing file, a directory, permissions)
/// are invalid input, everything else a verification failure.
pub(crate) fn verify_error(py: Python<'_>, path: &Path, e: &VerifyError) -> PyErr {
    let message = format!("{}: {}", path.display(), chain(e));
    match e {
        VerifyError::Malformed(ReadError::Io(_)) => invalid(py, message),
        _ => verification(py, message, verify_kind(e)),
    }
}

/// Maps a failure to write `path`.
pub(crate) fn write_error(py: Python<'_>, path: &Path, e: &WriteError) -> PyErr {
    let message = format!("{}: {}", path.display(), chain(e));
    match e {
        WriteError::Invalid {
            what: "metadata", ..
        }
        | WriteError::Io(_) => invalid(py, message),
        _ => unsupported(py, message),
    }
}

/// Maps a key that cannot be read or parsed; `label` says which argument it came from.
pub(crate) fn key_error(py: Python<'_>, label: &str, e: &KeyError) -> PyErr {
    invalid(py, format!("{label}: {}", chain(e)))
}
