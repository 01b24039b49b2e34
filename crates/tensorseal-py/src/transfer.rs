//! Whole files to and from `s3://` objects, for `save` and `convert` with a URL: the storage
//! layer's upload (visible only once complete) and pinned download.

use crate::errors;
use pyo3::prelude::*;
use std::path::PathBuf;
use tensorseal_store::{ObjectVersion, StoreOptions};

fn version(v: ObjectVersion) -> (u64, Option<String>, Option<String>) {
    (v.length, v.etag, v.version)
}

/// Uploads the local file `path` to `url` in one multipart upload completed after its last
/// part (aborted on failure: no object appears, an existing one is untouched). Returns
/// `(length, etag, version id)` of the object written.
#[pyfunction]
pub(crate) fn upload(
    py: Python<'_>,
    path: PathBuf,
    url: &str,
) -> PyResult<(u64, Option<String>, Option<String>)> {
    py.detach(|| tensorseal_store::upload_file(&path, url, &StoreOptions::default()))
        .map(version)
        .map_err(|e| errors::with_message(py, e.to_string(), &e))
}

/// Downloads `url` into the local file `path` (created or truncated), every range GET pinned
/// to the object first seen. Returns `(length, etag, version id)` of the object read.
#[pyfunction]
pub(crate) fn download(
    py: Python<'_>,
    url: &str,
    path: PathBuf,
) -> PyResult<(u64, Option<String>, Option<String>)> {
    let result = py.detach(|| {
        let file =
            std::fs::File::create(&path).map_err(|source| tensorseal_store::StoreError::Local {
                path: path.display().to_string(),
                source,
            })?;
        tensorseal_store::download_file(
            url,
            &file,
            &path.display().to_string(),
            &StoreOptions::default(),
        )
    });
    result
        .map(version)
        .map_err(|e| errors::with_message(py, e.to_string(), &e))
}

/// The objects directly under the folder `url`: `(name, length)` pairs sorted by name, for the
/// distributed-checkpoint backend's check that a folder holds exactly the shards its index lists.
#[pyfunction]
pub(crate) fn list_folder(py: Python<'_>, url: &str) -> PyResult<Vec<(String, u64)>> {
    py.detach(|| tensorseal_store::list_folder(url, &StoreOptions::default()))
        .map_err(|e| errors::with_message(py, e.to_string(), &e))
}
