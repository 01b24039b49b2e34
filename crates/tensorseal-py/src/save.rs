//! Writing files from the plain-Python form of a tree and the tensors' byte buffers.

use crate::buffer::ReadableBuffer;
use crate::errors;
use crate::ir::{FromPython, for_each_tensor_mut};
use crate::keys;
use pyo3::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tensorseal::{DType, Limits, WriteOptions, Writer, check_metadata_entry};

/// Writes `root` (the plain-Python form, tensors numbered by byte source) to `path`.
///
/// `sources[i]` is a C-contiguous buffer holding the little-endian bytes of source `i`. Blobs
/// are numbered and written in the order tensors first appear in the tree (after set elements
/// were put in canonical order), so the file depends only on the tree and the bytes. Sources no
/// tensor refers to are not written. Returns `(file length, manifest SHA-256 hex)`.
#[pyfunction]
#[pyo3(signature = (path, root, sources, metadata, signers, compress))]
pub(crate) fn save(
    py: Python<'_>,
    path: PathBuf,
    root: &Bound<'_, PyAny>,
    sources: Vec<Bound<'_, PyAny>>,
    metadata: BTreeMap<String, String>,
    signers: Vec<(String, Vec<u8>)>,
    compress: Option<&str>,
) -> PyResult<(u64, String)> {
    let compression = crate::compression(py, compress)?;
    for (k, v) in &metadata {
        check_metadata_entry(k, v)
            .map_err(|e| errors::invalid(py, format!("metadata {k:?}: {e}")))?;
    }
    let signers = keys::secret_keys(py, &signers)?;
    let limits = Limits::default();
    let conv = FromPython {
        limits: limits.clone(),
        sources: sources.len(),
    };
    let mut tree = conv.node(root, 1)?;

    // Number blobs by first appearance; remember each blob's dtype for byte grouping.
    let mut blob_of_source: HashMap<usize, usize> = HashMap::new();
    let mut order: Vec<(usize, DType)> = Vec::new();
    for_each_tensor_mut(&mut tree, &mut |t| {
        if let Some(src) = t.blob {
            let next = order.len();
            let id = *blob_of_source.entry(src).or_insert(next);
            if id == next {
                order.push((src, t.dtype));
            }
            t.blob = Some(id);
        }
    });
    let buffers = order
        .iter()
        .map(|(src, _)| ReadableBuffer::get(&sources[*src], &format!("byte source {src}")))
        .collect::<PyResult<Vec<_>>>()?;
    let data: Vec<(&[u8], DType)> = buffers
        .iter()
        .zip(&order)
        .map(|(b, (_, dtype))| (b.bytes(), *dtype))
        .collect();
    let signer_refs: Vec<&tensorseal::SecretKey> = signers.iter().collect();
    let options = WriteOptions {
        compression,
        limits,
    };
    let written = py.detach(|| {
        let mut writer = Writer::create(&path, options)?;
        for (bytes, dtype) in &data {
            writer.write_blob(bytes, *dtype)?;
        }
        writer.finish(tree, metadata, &signer_refs)
    });
    match written {
        Ok(w) => Ok((w.length, hex::encode(w.manifest_sha256))),
        Err(e) => Err(errors::failure(py, &path.display(), &e)),
    }
}
