//! A checkpoint in an object store, opened for the loader: what every front end (the CLI, the
//! Python package) calls for an `s3://` URL, so that they read it the same way.

use crate::error::StoreError;
use crate::location::Location;
use crate::object::{ObjectReader, StoreOptions};
use std::sync::OnceLock;
use tensorseal::{Classify, FailureClass, Limits, Loader, TrustPolicy, VerifyError};

/// Range GETs in flight at once while reading an object's blobs: enough to hide request
/// latency, and with one chunk (16 MiB, twice for compressed chunks) per request, a bound on
/// the memory in flight.
pub const READ_CONCURRENCY: usize = 8;

/// Why a checkpoint at a URL could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The object could not be reached or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// It was read, and is not a checkpoint that verifies under the policy.
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

impl Classify for StoreError {
    /// A replaced object is a verification failure (as a file that changed while it was read);
    /// everything else is an I/O error naming the URL.
    fn class(&self) -> FailureClass {
        match self {
            StoreError::Changed { .. } => FailureClass::Verification,
            _ => FailureClass::Invalid,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            StoreError::Changed { .. } => "malformed",
            _ => "io",
        }
    }
}

impl Classify for OpenError {
    fn class(&self) -> FailureClass {
        match self {
            OpenError::Store(e) => e.class(),
            OpenError::Verify(e) => e.class(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            OpenError::Store(e) => e.kind(),
            OpenError::Verify(e) => e.kind(),
        }
    }
}

/// Opens the checkpoint at `url` (`s3://bucket/key`) under `policy`: a `HEAD`, then the footer,
/// signature block and manifest by range GETs pinned to that object, the signatures checked
/// before the manifest is parsed. No blob is read.
pub fn open_checkpoint(
    url: &str,
    policy: &TrustPolicy,
    limits: &Limits,
) -> Result<Loader<ObjectReader>, OpenError> {
    let (bucket, key) = Location::s3_parts(url)?;
    let object = ObjectReader::open(&bucket, &key, &StoreOptions::default())?;
    Ok(Loader::from_source(object, policy, limits)?)
}

/// Runs `f` on a pool of [`READ_CONCURRENCY`] threads (made once per process), so that the
/// parallel reads inside it (`Loader::verify_all`, `Loader::read_blob_into` of several blobs)
/// keep that many range GETs in flight whatever the number of cores.
pub fn in_read_pool<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, StoreError> {
    static POOL: OnceLock<Result<rayon::ThreadPool, String>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(READ_CONCURRENCY)
            .thread_name(|i| format!("tensorseal-read-{i}"))
            .build()
            .map_err(|e| e.to_string())
    });
    match pool {
        Ok(pool) => Ok(pool.install(f)),
        Err(what) => Err(StoreError::Runtime(std::io::Error::other(what.clone()))),
    }
}
