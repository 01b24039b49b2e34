//! Persistent ids: how torch storages reach the interpreter, and the caller's handler for them.

use std::error::Error;
use std::fmt;

use crate::dtype::Dtype;

/// The element type of a storage class in a persistent id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageKind {
    /// A legacy typed storage (`torch.FloatStorage`, ...): `numel` counts elements of this dtype.
    Typed(Dtype),
    /// `torch.storage.UntypedStorage`: `numel` counts bytes; the tensor's dtype comes from
    /// `_rebuild_tensor_v3`.
    Untyped,
}

impl StorageKind {
    /// Bytes per counted unit (`1` for untyped storages); `None` for sub-byte dtypes.
    pub fn unit_size(self) -> Option<u64> {
        match self {
            StorageKind::Typed(d) => d.itemsize(),
            StorageKind::Untyped => Some(1),
        }
    }
}

/// The view part of a legacy (magic-number format) persistent id: the storage the tensor sees is
/// `root[offset .. offset + size]`, in elements of the root's dtype.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StorageView {
    /// Key of the view (legacy files key views separately).
    pub key: String,
    /// Offset into the root storage, in elements.
    pub offset: u64,
    /// Length of the view, in elements.
    pub size: u64,
}

/// A storage persistent id, parsed and type-checked:
/// `('storage', storage_class, key, location, numel)` (zip format) or the legacy 6-tuple with a
/// view, `('storage', storage_class, key, location, numel, None | (view_key, offset, size))`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageRequest<'r> {
    /// The storage key (`"0"`, `"1"`, ... or a heap address in old files): an opaque string.
    pub key: &'r str,
    /// The storage class's element type.
    pub kind: StorageKind,
    /// Elements (typed) or bytes (untyped) in the storage record.
    pub numel: u64,
    /// `numel` times the unit size: the record length the container must have.
    pub nbytes: u64,
    /// The device it was saved from (`cpu`, `cuda:0`, ...); informational.
    pub location: &'r str,
    /// Legacy view metadata.
    pub view: Option<&'r StorageView>,
    /// Offset of the BINPERSID opcode.
    pub offset: usize,
}

/// The error a storage handler returns.
#[derive(Debug)]
pub struct StorageError(Box<dyn Error + Send + Sync + 'static>);

impl StorageError {
    /// Wraps any error.
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> StorageError {
        StorageError(error.into())
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for StorageError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Resolves storage persistent ids against the container (zip records, legacy offsets).
///
/// The interpreter calls it once per distinct storage key, after checking the id's shape and
/// types. The handler checks that the record exists and returns its size in bytes; the
/// interpreter then requires it to equal [`StorageRequest::nbytes`] and bounds-checks every
/// tensor view against it. Closures `FnMut(&StorageRequest) -> Result<u64, StorageError>`
/// implement it.
pub trait StorageResolver {
    /// Checks one storage and returns its size in bytes.
    fn resolve(&mut self, request: &StorageRequest<'_>) -> Result<u64, StorageError>;
}

impl<F> StorageResolver for F
where
    F: FnMut(&StorageRequest<'_>) -> Result<u64, StorageError>,
{
    fn resolve(&mut self, request: &StorageRequest<'_>) -> Result<u64, StorageError> {
        self(request)
    }
}

/// Refuses every persistent id: for plain pickles, which have none.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoStorages;

impl StorageResolver for NoStorages {
    fn resolve(&mut self, _request: &StorageRequest<'_>) -> Result<u64, StorageError> {
        Err(StorageError::new(
            "persistent ids are not expected here (no storage container)",
        ))
    }
}

/// Accepts every well-formed storage id at its declared size, without a container to check
/// against: for scanning a bare `data.pkl`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeclaredStorages;

impl StorageResolver for DeclaredStorages {
    fn resolve(&mut self, request: &StorageRequest<'_>) -> Result<u64, StorageError> {
        Ok(request.nbytes)
    }
}
