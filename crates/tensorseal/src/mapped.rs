//! Verify-in-place loading (spec §7): the file in a private, copy-on-write mapping whose raw
//! blobs are hashed where they lie and then handed out as writable memory, zero-copy.

use crate::error::{ReadError, VerifyError};
use crate::layout::{Footer, SignatureEntry};
use crate::limits::Limits;
use crate::loader::Loader;
use crate::manifest::Manifest;
use crate::mmap::{self, FileBytes};
use crate::tree::{BlobId, Node};
use crate::verify::{self, SignerStatus, TrustPolicy};
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

/// A file opened under a trust policy whose raw blobs are verified in place, in a private,
/// writable memory mapping, and then handed out as memory the caller may read and write: the
/// zero-copy counterpart of [`Loader`].
///
/// [`MappedLoader::open`] checks what [`Loader::open`] checks (layout, the signatures against
/// the policy **before** the manifest is parsed, the manifest, the metadata expectations),
/// reading those parts with `pread`; nothing is mapped or hashed yet. The first
/// [`MappedLoader::verify_blobs`] maps the file with [`MapMode::CopyOnWrite`](crate::MapMode)
/// (the file opened, not whatever the path names by then), and each call hashes the blobs asked
/// for where they lie in the mapping (every chunk of all of them in parallel) and checks the
/// padding after each. Then [`MappedLoader::blob_memory`] hands out a verified raw blob's memory.
/// Compressed blobs are never handed out: [`MappedLoader::read_blob_into`] decodes them into
/// memory the caller owns and verifies them there, as [`Loader::read_blob_into`] does.
///
/// # What is and is not guaranteed
/// Writes to handed-out memory go to the process's private copy of each page and never reach the
/// file. Pages not written are the file's page cache: **if the file is modified after
/// verification, the unmodified pages of a verified blob show the new bytes**, and if it is
/// truncated, touching them raises SIGBUS. This is the exposure of every memory-mapped loader
/// (safetensors, `torch.load(mmap=True)`), with verification added; use this type only for
/// files nobody can write after they were verified (read-only storage, fs-verity, a sealed
/// memfd). [`Loader`] copies into caller memory and has no such window.
///
/// # Invariants
/// A blob's range of the mapping is read by this type only while the blob is not verified, under
/// the `verified` lock; once verified it is never read or written here again, so memory handed
/// out by [`MappedLoader::blob_memory`] is never read by this crate while its holder writes it.
/// The mapping, once made, is exactly as long as the file was when it was opened.
///
/// # Example
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("m.tseal");
/// # let key = tensorseal::SecretKey::from_seed(&[9; 32]);
/// # let mut w = tensorseal::Writer::create(&path, Default::default())?;
/// # let b = w.write_blob(&[1, 2, 3, 4], tensorseal::DType::U8)?;
/// # let t = tensorseal::Node::Tensor(Box::new(tensorseal::Tensor::new(tensorseal::DType::U8, vec![4], Some(b))));
/// # w.finish(tensorseal::Node::List(vec![t]), Default::default(), &[&key])?;
/// use tensorseal::{Limits, MappedLoader, TrustPolicy};
///
/// let policy = TrustPolicy::trusting(vec![key.public_key()]);
/// let loader = MappedLoader::open(&path, &policy, &Limits::default())?;
/// assert!(loader.blob_memory(0).is_none()); // not verified yet
/// loader.verify_blobs(&[0])?; // hashed in the mapping
/// let memory = loader.blob_memory(0).unwrap();
/// assert_eq!(memory.len(), 4); // `memory.as_ptr()` is valid while `loader` lives
/// # Ok(()) }
/// ```
pub struct MappedLoader {
    loader: Loader,
    /// The private mapping of `loader`'s file ([`FileBytes::Private`]), made by the first
    /// `verify_blobs`, under the `verified` lock.
    map: OnceLock<FileBytes>,
    /// Which blobs have been verified. Held while hashing, so a blob is never read while memory
    /// handed out for it exists.
    verified: Mutex<Vec<bool>>,
}

impl std::fmt::Debug for MappedLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedLoader")
            .field("loader", &self.loader)
            .field("mapped", &self.map.get().is_some())
            .finish_non_exhaustive()
    }
}

/// The memory of a verified raw blob in a [`MappedLoader`]'s private mapping.
///
/// The pointer is valid for reads and writes of [`BlobMemory::len`] bytes for as long as the
/// loader that returned it is alive (keep the loader alive, e.g. in an `Arc`, as long as the
/// memory is used). Writes change the process's private copy only, never the file. The loader
/// never reads the range again, so the holder may write it; concurrent writers must synchronise
/// among themselves, as with any shared buffer.
#[derive(Debug, Clone, Copy)]
pub struct BlobMemory {
    ptr: *mut u8,
    len: usize,
}

impl BlobMemory {
    /// The first byte (64-byte aligned relative to the file start, which the mapping puts on a
    /// page boundary).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length in bytes (at least 1: empty tensors have no blob).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: blobs are at least one byte long.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl MappedLoader {
    /// Opens `path` and checks its layout, the signatures under `policy` (before the manifest is
    /// parsed), the manifest and the metadata expectations, as [`Loader::open`] does. Blob
    /// digests and padding are checked by [`MappedLoader::verify_blobs`].
    pub fn open(
        path: &Path,
        policy: &TrustPolicy,
        limits: &Limits,
    ) -> Result<MappedLoader, VerifyError> {
        let loader = Loader::open(path, policy, limits)?;
        let verified = Mutex::new(vec![false; loader.manifest().blobs.len()]);
        Ok(MappedLoader {
            loader,
            map: OnceLock::new(),
            verified,
        })
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        self.loader.manifest()
    }

    /// The checkpoint tree.
    pub fn root(&self) -> &Node {
        self.loader.root()
    }

    /// The signatures and whether each key is trusted (all of them are valid).
    pub fn signers(&self) -> &[SignerStatus] {
        self.loader.signers()
    }

    /// The signature entries.
    pub fn signatures(&self) -> &[SignatureEntry] {
        self.loader.signatures()
    }

    /// The footer.
    pub fn footer(&self) -> &Footer {
        self.loader.footer()
    }

    fn blob_index(&self, blob: BlobId) -> Result<(), VerifyError> {
        if blob < self.manifest().blobs.len() {
            return Ok(());
        }
        Err(ReadError::Layout {
            offset: 0,
            what: format!("blob index {blob} out of range"),
        }
        .into())
    }

    /// The mapping, made on first use. Called with the `verified` lock held, so only one
    /// caller can make it.
    fn mapping(&self) -> Result<&FileBytes, VerifyError> {
        if let Some(map) = self.map.get() {
            return Ok(map);
        }
        let map = mmap::map_private(self.loader.file()).map_err(ReadError::from)?;
        let expected = self.loader.file_length();
        if map.len() as u64 != expected {
            // Blob offsets were checked against the length at open; a file that has changed
            // length since then cannot be mapped in its place.
            return Err(ReadError::Layout {
                offset: 0,
                what: format!(
                    "the file is {} bytes long now, {expected} when it was opened",
                    map.len()
                ),
            }
            .into());
        }
        Ok(self.map.get_or_init(|| FileBytes::Private(map)))
    }

    /// Verifies `blobs` in place: every stored chunk digest, and for compressed blobs every
    /// decoded chunk, hashed in parallel across all chunks of all of them, then the padding
    /// after each. Blobs verified before are skipped. On failure nothing is marked verified and
    /// the error names the first failing chunk in file order.
    pub fn verify_blobs(&self, blobs: &[BlobId]) -> Result<(), VerifyError> {
        for &b in blobs {
            self.blob_index(b)?;
        }
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        let mut todo: Vec<BlobId> = blobs.iter().copied().filter(|&b| !verified[b]).collect();
        todo.sort_unstable();
        todo.dedup();
        if todo.is_empty() {
            return Ok(());
        }
        // The lock is held while hashing: no verified blob (whose memory may be written) is in
        // `todo`, and none of `todo` can be handed out before it is marked.
        let map = self.mapping()?;
        verify::check_blobs(self.manifest(), map, &todo)?;
        for &b in &todo {
            self.check_padding(map, b)?;
        }
        for b in todo {
            verified[b] = true;
        }
        Ok(())
    }

    /// The padding after a blob (up to the next blob, or the manifest) is covered by no digest:
    /// it must be zero. It belongs to no blob, so it is never handed out.
    fn check_padding(&self, map: &FileBytes, blob: BlobId) -> Result<(), VerifyError> {
        let blobs = &self.manifest().blobs;
        let start = blobs[blob].end();
        let end = blobs
            .get(blob + 1)
            .map_or(self.footer().manifest_offset, |b| b.offset);
        let padding = map.range(start as usize..end as usize);
        match padding.iter().position(|&b| b != 0) {
            None => Ok(()),
            Some(i) => Err(ReadError::NonZeroPadding {
                offset: start + i as u64,
            }
            .into()),
        }
    }

    /// Whether `blob` has been verified.
    pub fn is_verified(&self, blob: BlobId) -> bool {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        verified.get(blob).copied().unwrap_or(false)
    }

    /// The memory of a raw blob that [`MappedLoader::verify_blobs`] verified, or `None` if the
    /// index is out of range, the blob is compressed (see [`MappedLoader::read_blob_into`]) or
    /// not verified.
    pub fn blob_memory(&self, blob: BlobId) -> Option<BlobMemory> {
        let entry = self.manifest().blobs.get(blob)?;
        if entry.codec.is_some() || !self.is_verified(blob) {
            return None;
        }
        // A verified blob was verified in the mapping, so it exists.
        let Some(FileBytes::Private(map)) = self.map.get() else {
            return None;
        };
        let range = entry.offset as usize..entry.end() as usize;
        Some(BlobMemory {
            len: range.len(),
            ptr: map.ptr(range),
        })
    }

    /// Decodes a compressed blob into `dst` (exactly its logical length), verified, as
    /// [`Loader::read_blob_into`] does: the frames are read with `pread` and hashed, decoded
    /// into `dst` and hashed there, chunks in parallel. Raw blobs are refused: they are used in
    /// place through [`MappedLoader::blob_memory`]. On failure `dst` holds unspecified bytes.
    pub fn read_blob_into(&self, blob: BlobId, dst: &mut [u8]) -> Result<(), VerifyError> {
        self.blob_index(blob)?;
        let entry = &self.manifest().blobs[blob];
        if entry.codec.is_none() {
            return Err(ReadError::Layout {
                offset: entry.offset,
                what: format!("blob {blob} is raw: it is used in place, not copied"),
            }
            .into());
        }
        self.loader.read_blob_into(blob, dst)
    }
}
