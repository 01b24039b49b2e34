//! Python exceptions for each failure class. The classes are defined in Python
//! (`tensorseal/_errors.py`) so they can inherit from several bases; Rust raises them by name.
//! Which class an error belongs to, and its `kind`, is the library's decision
//! ([`tensorseal::Classify`]), the one the CLI turns into exit codes.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::fmt::Display;
use tensorseal::{Classify, FailureClass, error_chain};

/// The name of the `tensorseal._errors` class for a failure class.
fn exception_class(class: FailureClass) -> &'static str {
    match class {
        FailureClass::Invalid => "InvalidInputError",
        FailureClass::Unsupported => "UnsupportedError",
        FailureClass::Sandbox => "SandboxError",
        FailureClass::Verification => "VerificationError",
        FailureClass::Unsafe => "UnsafeError",
        FailureClass::UnknownObjects => "UnknownObjectError",
    }
}

/// Raises `tensorseal._errors.<class>(message, kind=kind, **refusal)`, where `refusal` is the
/// member and findings of a refused pickle.
fn raise(
    py: Python<'_>,
    class: FailureClass,
    message: String,
    kind: Option<&str>,
    refusal: Option<(&str, &[String])>,
) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let cls = py
            .import("tensorseal._errors")?
            .getattr(exception_class(class))?;
        let kw = PyDict::new(py);
        kw.set_item("kind", kind)?;
        if let Some((member, findings)) = refusal {
            kw.set_item("member", member)?;
            kw.set_item("findings", findings)?;
        }
        Ok(PyErr::from_value(cls.call((message,), Some(&kw))?))
    })();
    made.unwrap_or_else(|e| e)
}

/// `tensorseal.InvalidInputError`: unreadable file, not a file, bad key or argument.
pub(crate) fn invalid(py: Python<'_>, message: String) -> PyErr {
    raise(py, FailureClass::Invalid, message, None, None)
}

/// `tensorseal.UnsupportedError`: a value the format or this environment cannot represent.
pub(crate) fn unsupported(py: Python<'_>, message: String) -> PyErr {
    raise(py, FailureClass::Unsupported, message, None, None)
}

/// The exception of a library error about `about` (a file, or the argument it came from), with
/// the CLI's message (`ABOUT: what is wrong`) and `--json` kind.
pub(crate) fn failure(py: Python<'_>, about: &dyn Display, e: &dyn Classify) -> PyErr {
    let message = format!("{about}: {}", error_chain(e));
    raise(py, e.class(), message, Some(e.kind()), None)
}

/// As [`failure`], with the message given whole (for errors that name what they are about).
pub(crate) fn with_message(py: Python<'_>, message: String, e: &dyn Classify) -> PyErr {
    raise(py, e.class(), message, Some(e.kind()), None)
}

/// As [`failure`], for a refused pickle: the exception also carries its member and findings.
pub(crate) fn refusal(
    py: Python<'_>,
    about: &dyn Display,
    e: &dyn Classify,
    member: &str,
    findings: &[String],
) -> PyErr {
    let message = format!("{about}: {}", error_chain(e));
    raise(
        py,
        e.class(),
        message,
        Some(e.kind()),
        Some((member, findings)),
    )
}
