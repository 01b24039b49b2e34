//! Where a [`Loader`](crate::Loader) reads from: a local file, or anything else that can serve
//! byte ranges (an object store, in the `tensorseal-store` crate).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Positioned reads of a fixed-length byte source.
///
/// The [`Loader`](crate::Loader) reads the footer, signature block and manifest, then each blob's
/// chunks, through this trait only, so the same verification runs over a file and over ranges of
/// a remote object. Reads may come from several threads at once.
///
/// # Contract
/// - [`ReadAt::length`] is the length of the source **as first seen**; every later read is of
///   that same content. A source that cannot guarantee this (a remote object that may be
///   replaced) must fail reads once the content changed, not serve the new bytes.
/// - [`ReadAt::read_exact_at`] fills `buf` completely or fails; a source shorter than
///   `offset + buf.len()` fails with [`io::ErrorKind::UnexpectedEof`].
pub trait ReadAt: Send + Sync {
    /// The source's length in bytes.
    fn length(&self) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes starting at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// How many bytes one read should ask for when a caller streams through a range, hashing
    /// as it goes: for a file, a piece small enough to stay in cache between the read and the
    /// hash (256 KiB: large enough that the syscalls cost nothing); a source where every read
    /// is a network request says a larger size.
    fn piece_size(&self) -> usize {
        256 << 10
    }
}

impl ReadAt for File {
    fn length(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

/// The error a [`ReadAt`] source returns (inside an [`io::Error`]) when its content changed
/// since it was first seen. The [`Loader`](crate::Loader) reports it as a verification failure,
/// not as an I/O error: what it read is not one consistent file.
#[derive(Debug)]
pub struct SourceChanged(String);

impl SourceChanged {
    /// A change described by `what` (which names the source).
    pub fn new(what: impl Into<String>) -> SourceChanged {
        SourceChanged(what.into())
    }
}

impl std::fmt::Display for SourceChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceChanged {}

/// Whether `e` is a [`SourceChanged`] error.
pub(crate) fn is_changed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<SourceChanged>())
}
