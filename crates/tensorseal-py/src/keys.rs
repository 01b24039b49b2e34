//! Keys given by the caller: trusted public keys and signing keys, as bytes.

use crate::errors;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tensorseal::{PublicKey, SecretKey};

/// Parses trusted public keys (PEM, DER SubjectPublicKeyInfo or raw 32 bytes); each comes with
/// a label (its path, or `trust[i]`) for error messages.
pub(crate) fn public_keys(py: Python<'_>, keys: &[(String, Vec<u8>)]) -> PyResult<Vec<PublicKey>> {
    keys.iter()
        .map(|(label, bytes)| {
            PublicKey::from_any(bytes).map_err(|e| errors::failure(py, &label, &e))
        })
        .collect()
}

/// Parses signing keys (PKCS#8 PEM), each with a label.
pub(crate) fn secret_keys(py: Python<'_>, keys: &[(String, Vec<u8>)]) -> PyResult<Vec<SecretKey>> {
    keys.iter()
        .map(|(label, bytes)| {
            let pem = std::str::from_utf8(bytes).map_err(|_| {
                errors::invalid(
                    py,
                    format!("{label}: not a PEM private key (PKCS#8, -----BEGIN PRIVATE KEY-----)"),
                )
            })?;
            SecretKey::from_pem(pem).map_err(|e| errors::failure(py, &label, &e))
        })
        .collect()
}

/// Generates an Ed25519 key pair: `(private PEM, public PEM)`, the files `tensorseal keygen`
/// writes.
#[pyfunction]
pub(crate) fn generate_key(py: Python<'_>) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let key = SecretKey::generate().map_err(|e| errors::failure(py, &"generate_key", &e))?;
    let private = key
        .to_pem()
        .map_err(|e| errors::failure(py, &"generate_key", &e))?;
    let public = key
        .public_key()
        .to_pem()
        .map_err(|e| errors::failure(py, &"generate_key", &e))?;
    Ok((
        PyBytes::new(py, private.as_bytes()).unbind(),
        PyBytes::new(py, public.as_bytes()).unbind(),
    ))
}

/// Refuses anything but a private key (PKCS#8 PEM), naming `label`: arguments are checked before
/// the work they serve.
#[pyfunction]
pub(crate) fn check_secret_key(py: Python<'_>, label: String, bytes: Vec<u8>) -> PyResult<()> {
    secret_keys(py, &[(label, bytes)]).map(drop)
}

/// The key id (spec §6) of a public key (PEM, DER or raw) or of a private key's public half.
#[pyfunction]
pub(crate) fn key_id(py: Python<'_>, label: String, bytes: Vec<u8>) -> PyResult<String> {
    if let Ok(public) = PublicKey::from_any(&bytes) {
        return Ok(public.key_id());
    }
    let secret = secret_keys(py, &[(label, bytes)])?;
    Ok(secret[0].public_key().key_id())
}
