//! Opening and verifying files: the `Loader` class (copy and `mmap` modes) and the `verify`
//! function.

use crate::buffer::{MappedBlob, WritableBuffer};
use crate::errors;
use crate::ir::ToPython;
use crate::keys;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tensorseal::{Checkpoint, Limits, MappedLoader, Node, TrustPolicy};
use tensorseal_store::ObjectReader;

/// What the caller requires of a file.
fn policy(
    py: Python<'_>,
    trust: &[(String, Vec<u8>)],
    threshold: usize,
    expect: BTreeMap<String, String>,
    min_step: Option<u64>,
    authenticate: bool,
    policy_file: Option<&std::path::Path>,
) -> PyResult<TrustPolicy> {
    let mut policy = if let Some(file) = policy_file {
        TrustPolicy::read_policy_file(file).map_err(|e| {
            errors::invalid(
                py,
                format!(
                    "{}: invalid trust policy: {}",
                    file.display(),
                    tensorseal::error_chain(&e)
                ),
            )
        })?
    } else if authenticate {
        if threshold == 0 {
            return Err(errors::invalid(py, "threshold must be at least 1".into()));
        }
        TrustPolicy::trusting(keys::public_keys(py, trust)?).threshold(threshold)
    } else {
        TrustPolicy::integrity_only()
    };
    for (k, v) in expect {
        policy = policy.expect(k, v);
    }
    if let Some(min) = min_step {
        policy = policy.min_step(min);
    }
    Ok(policy)
}

/// How an open file's blobs reach Python.
enum Opened {
    /// Copied with `pread` into buffers Python allocated, hashed there (`tensorseal::Loader`).
    Copy(Box<tensorseal::Loader>),
    /// Verified in place in a private, copy-on-write mapping and exported as [`MappedBlob`]s;
    /// compressed blobs are decoded into buffers Python allocated (`tensorseal::MappedLoader`).
    Mapped(Arc<MappedLoader>),
    /// An `s3://` object: copied by range GETs pinned to the object first seen into buffers
    /// Python allocated, hashed there, [`tensorseal_store::READ_CONCURRENCY`] requests in flight.
    Object(Box<tensorseal::Loader<ObjectReader>>),
}

impl Opened {
    fn root(&self) -> &Node {
        match self {
            Opened::Copy(l) => l.root(),
            Opened::Mapped(l) => l.root(),
            Opened::Object(l) => l.root(),
        }
    }

    fn manifest(&self) -> &tensorseal::Manifest {
        match self {
            Opened::Copy(l) => l.manifest(),
            Opened::Mapped(l) => l.manifest(),
            Opened::Object(l) => l.manifest(),
        }
    }

    fn signers(&self) -> &[tensorseal::SignerStatus] {
        match self {
            Opened::Copy(l) => l.signers(),
            Opened::Mapped(l) => l.signers(),
            Opened::Object(l) => l.signers(),
        }
    }

    fn footer(&self) -> &tensorseal::Footer {
        match self {
            Opened::Copy(l) => l.footer(),
            Opened::Mapped(l) => l.footer(),
            Opened::Object(l) => l.footer(),
        }
    }

    fn read_blob_into(&self, blob: usize, dst: &mut [u8]) -> Result<(), tensorseal::VerifyError> {
        match self {
            Opened::Copy(l) => l.read_blob_into(blob, dst),
            Opened::Mapped(l) => l.read_blob_into(blob, dst),
            Opened::Object(l) => l.read_blob_into(blob, dst),
        }
    }
}

/// A file opened under a trust policy: signatures, manifest and metadata are checked, no tensor
/// byte has been hashed. Blobs are read (and verified) by `read_into`, or in `mmap` mode
/// verified in place by `map_blobs`.
#[pyclass(module = "tensorseal._native", name = "Loader")]
pub(crate) struct PyLoader {
    inner: Option<Opened>,
    path: PathBuf,
    mapped: bool,
}

impl PyLoader {
    fn opened(&self, py: Python<'_>) -> PyResult<&Opened> {
        self.inner.as_ref().ok_or_else(|| {
            errors::invalid(py, format!("{}: the file is closed", self.path.display()))
        })
    }
}

/// Opens `path` under a trust policy (spec §7 steps 1-5): layout, manifest digest, signatures
/// (before the manifest is parsed), manifest, metadata expectations. `mapped` maps the file
/// private and copy-on-write (`MappedLoader`) instead of reading it with `pread` (`Loader`).
#[pyfunction]
#[pyo3(signature = (path, trust, threshold, expect, min_step, authenticate, mapped=false, policy_file=None))]
#[allow(clippy::too_many_arguments)] // the policy's parts, as the Python API spells them
pub(crate) fn open(
    py: Python<'_>,
    path: PathBuf,
    trust: Vec<(String, Vec<u8>)>,
    threshold: usize,
    expect: BTreeMap<String, String>,
    min_step: Option<u64>,
    authenticate: bool,
    mapped: bool,
    policy_file: Option<PathBuf>,
) -> PyResult<PyLoader> {
    let policy = policy(
        py,
        &trust,
        threshold,
        expect,
        min_step,
        authenticate,
        policy_file.as_deref(),
    )?;
    let limits = Limits::default();
    if let Some(url) = tensorseal_store::Location::url_of(&path) {
        if mapped {
            return Err(errors::invalid(
                py,
                format!("{url}: mode='mmap' maps a local file; an object is read with mode='copy'"),
            ));
        }
        return match py.detach(|| tensorseal_store::open_checkpoint(url, &policy, &limits)) {
            Ok(l) => Ok(PyLoader {
                inner: Some(Opened::Object(Box::new(l))),
                path,
                mapped,
            }),
            Err(e) => Err(store_failure(py, url, &e)),
        };
    }
    let opened = py.detach(|| {
        if mapped {
            MappedLoader::open(&path, &policy, &limits).map(|l| Opened::Mapped(Arc::new(l)))
        } else {
            tensorseal::Loader::open(&path, &policy, &limits).map(|l| Opened::Copy(Box::new(l)))
        }
    });
    match opened {
        Ok(inner) => Ok(PyLoader {
            inner: Some(inner),
            path,
            mapped,
        }),
        Err(e) => Err(errors::failure(py, &path.display(), &e)),
    }
}

#[pymethods]
impl PyLoader {
    /// `"mmap"` for a private mapping verified in place, `"copy"` for reads into caller memory.
    #[getter]
    fn mode(&self) -> &'static str {
        if self.mapped { "mmap" } else { "copy" }
    }

    /// The checkpoint tree in its plain-Python form (see `ir.rs`).
    fn tree<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let root = self.opened(py)?.root();
        ToPython::new(root).node(py, root)
    }

    /// Every tensor's name in document order, as `inspect` shows it.
    fn names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let root = self.opened(py)?.root();
        let list = PyList::empty(py);
        let mut name = String::new();
        let mut result = Ok(());
        root.for_each_tensor(|path, _| {
            if result.is_ok() {
                name.clear();
                tensorseal::write_dotted_path(&mut name, path);
                result = list.append(name.as_str());
            }
        });
        result.map(|()| list)
    }

    /// The tensor form (see `ir.rs`) of the tensor at `index` in document order.
    fn tensor<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyAny>> {
        let root = self.opened(py)?.root();
        let tensors = root.tensors();
        let (_, t) = tensors
            .get(index)
            .ok_or_else(|| errors::invalid(py, format!("no tensor number {index}")))?;
        ToPython::new(root).tensor(py, t)
    }

    /// The signed metadata.
    fn metadata(&self, py: Python<'_>) -> PyResult<BTreeMap<String, String>> {
        Ok(self.opened(py)?.manifest().metadata.clone())
    }

    /// Logical length of each blob.
    fn blob_lengths(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        Ok(self
            .opened(py)?
            .manifest()
            .blobs
            .iter()
            .map(|b| b.logical_length())
            .collect())
    }

    /// Whether each blob is compressed (decoded into caller memory even in `mmap` mode).
    fn blob_compressed(&self, py: Python<'_>) -> PyResult<Vec<bool>> {
        Ok(self
            .opened(py)?
            .manifest()
            .blobs
            .iter()
            .map(|b| b.codec.is_some())
            .collect())
    }

    /// `(key id, trusted)` of every signature; all of them are valid.
    fn signers(&self, py: Python<'_>) -> PyResult<Vec<(String, bool)>> {
        Ok(self
            .opened(py)?
            .signers()
            .iter()
            .map(|s| (s.key_id.clone(), s.trusted))
            .collect())
    }

    /// SHA-256 of the manifest, hex.
    fn manifest_sha256(&self, py: Python<'_>) -> PyResult<String> {
        Ok(hex::encode(self.opened(py)?.footer().manifest_sha256))
    }

    /// File length in bytes.
    fn file_length(&self, py: Python<'_>) -> PyResult<u64> {
        let f = self.opened(py)?.footer();
        Ok(f.content_length() + f.signatures_length + tensorseal::FOOTER_LEN)
    }

    /// Reads blobs into caller-owned memory: `targets` is `[(blob, writable buffer), ...]`, each
    /// buffer exactly the blob's logical length. The bytes are read from the file into the
    /// buffer (in `mmap` mode: compressed blobs only, decoded from the mapping), hashed there
    /// and checked against the signed digests, with the GIL released and every blob and chunk
    /// in parallel. On failure the buffers hold unspecified bytes and must be discarded.
    fn read_into(&self, py: Python<'_>, targets: Vec<(usize, Bound<'_, PyAny>)>) -> PyResult<()> {
        let opened = self.opened(py)?;
        let blobs: Vec<usize> = targets.iter().map(|(b, _)| *b).collect();
        let mut buffers = targets
            .iter()
            .map(|(b, obj)| WritableBuffer::get(obj, &format!("destination of blob {b}")))
            .collect::<PyResult<Vec<_>>>()?;
        let slices = WritableBuffer::slices(&mut buffers).map_err(|e| errors::invalid(py, e))?;
        let mut jobs: Vec<(usize, &mut [u8])> = blobs.into_iter().zip(slices).collect();
        let read = |jobs: &mut Vec<(usize, &mut [u8])>| {
            jobs.par_iter_mut()
                .try_for_each(|(blob, dst)| opened.read_blob_into(*blob, dst))
        };
        let result = py.detach(|| -> Result<(), tensorseal_store::OpenError> {
            match opened {
                // Each read blocks on a request: a pool sized for the network, not the cores.
                Opened::Object(_) => Ok(tensorseal_store::in_read_pool(|| read(&mut jobs))??),
                _ => Ok(read(&mut jobs)?),
            }
        });
        let about = self.path.display().to_string();
        result.map_err(|e| store_failure(py, &about, &e))
    }

    /// `mmap` mode: verifies the raw `blobs` in place (every chunk of all of them in parallel,
    /// GIL released; blobs verified before are skipped) and returns a writable buffer exporter
    /// ([`MappedBlob`]) for each, in order. Nothing is returned unless all of them verify.
    fn map_blobs(&self, py: Python<'_>, blobs: Vec<usize>) -> PyResult<Vec<MappedBlob>> {
        let Opened::Mapped(loader) = self.opened(py)? else {
            return Err(errors::invalid(py, "map_blobs needs mode='mmap'".into()));
        };
        if let Some(b) = blobs.iter().find(|&&b| {
            loader
                .manifest()
                .blobs
                .get(b)
                .is_some_and(|e| e.codec.is_some())
        }) {
            return Err(errors::invalid(
                py,
                format!("blob {b} is compressed: read it with read_into"),
            ));
        }
        py.detach(|| loader.verify_blobs(&blobs))
            .map_err(|e| errors::failure(py, &self.path.display(), &e))?;
        blobs
            .iter()
            .map(|&b| {
                MappedBlob::new(loader, b)
                    .ok_or_else(|| errors::invalid(py, format!("blob {b} is not verified")))
            })
            .collect()
    }

    /// Closes the file; later calls raise. In `mmap` mode the mapping stays until the last
    /// tensor or array using it is gone.
    fn close(&mut self) {
        self.inner = None;
    }

    /// Whether the file is closed.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_none()
    }
}

/// The exception of a failure to open or read the object at `url`: store errors name the URL
/// already, verification errors get it as a prefix, as for a file.
fn store_failure(py: Python<'_>, url: &str, e: &tensorseal_store::OpenError) -> PyErr {
    match e {
        tensorseal_store::OpenError::Verify(v) => errors::failure(py, &url, v),
        other => errors::with_message(py, other.to_string(), other),
    }
}

/// Verifies a whole file, as `tensorseal verify` does, and returns the report as a dict.
#[pyfunction]
#[pyo3(signature = (path, trust, threshold, expect, min_step, authenticate, policy_file=None))]
#[allow(clippy::too_many_arguments)] // the policy's parts, as the Python API spells them
pub(crate) fn verify<'py>(
    py: Python<'py>,
    path: PathBuf,
    trust: Vec<(String, Vec<u8>)>,
    threshold: usize,
    expect: BTreeMap<String, String>,
    min_step: Option<u64>,
    authenticate: bool,
    policy_file: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let policy = policy(
        py,
        &trust,
        threshold,
        expect,
        min_step,
        authenticate,
        policy_file.as_deref(),
    )?;
    let report = if let Some(url) = tensorseal_store::Location::url_of(&path) {
        let verified = py.detach(|| {
            let loader = tensorseal_store::open_checkpoint(url, &policy, &Limits::default())?;
            let report = tensorseal_store::in_read_pool(|| loader.verify_all())?;
            Ok::<_, tensorseal_store::OpenError>(report?)
        });
        verified.map_err(|e| store_failure(py, url, &e))?
    } else {
        let verified = py.detach(|| Checkpoint::open_verified(&path, &policy, &Limits::default()));
        match verified {
            Ok((_, report)) => report,
            Err(e) => return Err(errors::failure(py, &path.display(), &e)),
        }
    };
    let d = PyDict::new(py);
    d.set_item("manifest_sha256", hex::encode(report.manifest_sha256))?;
    d.set_item("file_length", report.file_length)?;
    // (key id, trusted, policy name, refusal kind)
    type Signer = (String, bool, Option<String>, Option<&'static str>);
    let signers: Vec<Signer> = report
        .signers
        .iter()
        .map(|s| {
            let refused = s.refused.as_ref().map(|r| r.kind());
            (s.key_id.clone(), s.trusted, s.name.clone(), refused)
        })
        .collect();
    d.set_item("signers", signers)?;
    d.set_item("authenticated", report.authenticated)?;
    d.set_item("blobs", report.blobs)?;
    d.set_item("chunks", report.chunks)?;
    d.set_item("bytes_hashed", report.bytes_hashed)?;
    Ok(d)
}
