//! `audit_log=` in the Python API: the same hash-chained log as `tensorseal --audit-log`
//! (spec/AUDIT.md), appended by the one Rust writer.

use crate::{errors, keys};
use pyo3::prelude::*;
use std::path::PathBuf;
use tensorseal_provenance::{AuditLog, file_facts, host_and_user};

/// Files up to this size are hashed for the log, as the CLI does.
const HASH_LIMIT: u64 = 64 << 20;

/// Appends one record: `action` on `inputs`, with `result` details (a JSON object text:
/// exit-code-free Python results carry `result`, `error_kind`, `error`, `trust_key_ids`, ...).
/// With `key` (a label and a PKCS#8 PEM private key), the record is followed by a checkpoint
/// signed with it, as `tensorseal --audit-key` does.
#[pyfunction]
#[pyo3(signature = (log, action, inputs, details, key=None))]
pub(crate) fn audit_append(
    py: Python<'_>,
    log: PathBuf,
    action: String,
    inputs: Vec<PathBuf>,
    details: String,
    key: Option<(String, Vec<u8>)>,
) -> PyResult<u64> {
    let key = match key {
        Some(k) => keys::secret_keys(py, &[k])?.pop(),
        None => None,
    };
    let mut record = match serde_json::from_str::<serde_json::Value>(&details) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => {
            return Err(errors::invalid(
                py,
                "audit details must be a JSON object".into(),
            ));
        }
    };
    let (host, user) = host_and_user();
    record.insert("host".into(), host.into());
    record.insert("user".into(), user.into());
    record.insert("pid".into(), std::process::id().into());
    record.insert(
        "tool".into(),
        format!("tensorseal-python {}", env!("CARGO_PKG_VERSION")).into(),
    );
    record.insert("action".into(), action.into());
    let facts: Vec<_> = inputs.iter().map(|p| file_facts(p, HASH_LIMIT)).collect();
    record.insert("inputs".into(), facts.into());
    py.detach(|| {
        let mut l = AuditLog::open(&log, key.as_ref())?;
        let seq = l.append(serde_json::Value::Object(record))?;
        l.seal()?;
        Ok::<_, tensorseal_provenance::AuditError>(seq)
    })
    .map_err(|e| {
        errors::invalid(
            py,
            format!(
                "{}: audit log: {}",
                log.display(),
                tensorseal::error_chain(&e)
            ),
        )
    })
}
