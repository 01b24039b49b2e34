//! Converting and scanning legacy checkpoints: `convert` and `scan`, the converter crate's
//! functions with the GIL released.
//!
//! Each returns its report as a JSON string with the members `tensorseal convert --json` and
//! `tensorseal scan --json` print (less the ones the caller knows: input, output, exit code), so
//! the child process that runs a sandboxed conversion (`python/tensorseal/_convert_child.py`)
//! hands it to its parent unchanged, and the in-process path parses the same text.
//!
//! Errors become the exception classes of `tensorseal._errors` by the rule the CLI uses for exit
//! codes: unsafe and unknown content (exit 4) are `UnsafeError` / `UnknownObjectError`, the
//! sandbox `SandboxError`, everything else (exit 1) `InvalidInputError`; each carries the kind
//! `--json` prints and the CLI's message (`INPUT: what is wrong`).

use crate::errors;
use crate::keys;
use pyo3::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tensorseal_convert::{ConvertError, ConvertOptions, SandboxMode};

/// The sandbox mode named by the Python argument. A mode that locks the process down is only
/// accepted with `lock_down_this_process`: the lock-down is irreversible and process-wide, so
/// only the dedicated child process asks for it.
fn sandbox_mode(py: Python<'_>, name: &str, lock_down_this_process: bool) -> PyResult<SandboxMode> {
    let mode = match name {
        "off" => return Ok(SandboxMode::Disabled),
        "best-effort" => SandboxMode::BestEffort,
        "required" => SandboxMode::Required,
        other => {
            return Err(errors::invalid(
                py,
                format!("sandbox must be 'best-effort', 'required' or 'off', not {other:?}"),
            ));
        }
    };
    if !lock_down_this_process {
        return Err(errors::invalid(
            py,
            format!(
                "sandbox={name:?} would lock down this process for good; it runs in a child \
                 process (tensorseal.convert does that), or pass sandbox='off'"
            ),
        ));
    }
    Ok(mode)
}

/// The exception of a conversion or scan error about `input`, with the CLI's message and kind;
/// a refused pickle's exception also carries its member and findings.
fn convert_error(py: Python<'_>, input: &Path, e: &ConvertError) -> PyErr {
    match e {
        ConvertError::Unsafe { member, findings }
        | ConvertError::UnknownObjects { member, findings } => {
            errors::refusal(py, &input.display(), e, member, findings)
        }
        _ => errors::failure(py, &input.display(), e),
    }
}

/// Converts `input` to a tensorseal file at `output` (a DCP folder to a folder `output`: a
/// shard set), as `tensorseal convert` does, and returns the report as JSON. `signers` are `(label, PKCS#8 PEM)`; `compress` is a compression
/// option as [`compression`](crate::compression) reads it, or `None`; `sandbox` is `"off"`, or `"best-effort"` / `"required"` together with
/// `lock_down_this_process=True` (the child process only).
#[pyfunction]
#[pyo3(signature = (input, output, signers, compress, allow_objects, metadata, sandbox,
                    lock_down_this_process=false))]
#[allow(clippy::too_many_arguments)] // mirrors the Python keyword arguments one to one
pub(crate) fn convert(
    py: Python<'_>,
    input: PathBuf,
    output: PathBuf,
    signers: Vec<(String, Vec<u8>)>,
    compress: Option<&str>,
    allow_objects: bool,
    metadata: BTreeMap<String, String>,
    sandbox: &str,
    lock_down_this_process: bool,
) -> PyResult<String> {
    let mode = sandbox_mode(py, sandbox, lock_down_this_process)?;
    let keys = keys::secret_keys(py, &signers)?;
    let options = ConvertOptions {
        allow_objects,
        compression: crate::compression(py, compress)?,
        signers: keys.iter().collect(),
        metadata,
        sandbox: mode,
        ..ConvertOptions::default()
    };
    let v = if tensorseal_convert::is_folder_output(&output) {
        py.detach(|| tensorseal_convert::convert_to_shard_set(&input, &output, &options))
            .map_err(|e| convert_error(py, &input, &e))?
            .to_json(mode)
    } else {
        py.detach(|| tensorseal_convert::convert(&input, &output, &options))
            .map_err(|e| convert_error(py, &input, &e))?
            .to_json(mode)
    };
    Ok(v.to_string())
}

/// Scans `input` as `tensorseal scan` does and returns the report as JSON: the members
/// `tensorseal scan --json` prints (less `input`) and `sandbox`. `allow_objects` judges
/// convertibility as `convert(allow_objects=True)` would; `sandbox` as for [`convert`].
#[pyfunction]
#[pyo3(signature = (input, sandbox, lock_down_this_process=false, allow_objects=false))]
pub(crate) fn scan(
    py: Python<'_>,
    input: PathBuf,
    sandbox: &str,
    lock_down_this_process: bool,
    allow_objects: bool,
) -> PyResult<String> {
    let mode = sandbox_mode(py, sandbox, lock_down_this_process)?;
    let options = ConvertOptions {
        allow_objects,
        sandbox: mode,
        ..ConvertOptions::default()
    };
    let result = py.detach(|| tensorseal_convert::scan(&input, &options));
    let outcome = result.map_err(|e| convert_error(py, &input, &e))?;
    let mut v = outcome.to_json();
    v["sandbox"] = json!(mode.name());
    Ok(v.to_string())
}
