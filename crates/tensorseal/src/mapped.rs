//! Verify-in-place loading (spec §7): the file in a private, copy-on-write mapping whose raw
//! blobs are hashed where they lie and then handed out as writable memory, zero-copy.

use crate::codec;
use crate::error::{ReadError, VerifyError};
use crate::layout::{Footer, SignatureEntry};
use crate::limits::{CHUNK, Limits};
use crate::manifest::Manifest;
use crate::mmap::{FileBytes, MapMode};
use crate::reader::{Checkpoint, Envelope};
use crate::tree::{BlobId, Node};
use crate::verify::{self, SignerStatus, TrustPolicy};
use rayon::prelude::*;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// A file opened under a trust policy in a private, writable memory mapping, whose raw blobs are
/// verified in place and then handed out as memory the caller may read and write: the zero-copy
/// counterpart of [`Loader`](crate::Loader).
///
/// [`MappedLoader::open`] maps the file with [`MapMode::CopyOnWrite`], checks the layout, the
/// signatures against the policy **before** parsing the manifest, the manifest, all padding and
/// the metadata expectations. No blob has been hashed yet. [`MappedLoader::verify_blobs`] hashes
/// blobs where they lie in the mapping (every chunk of every blob asked for, in parallel), after
/// which [`MappedLoader::blob_memory`] hands out a verified raw blob's memory. Compressed blobs
/// are never handed out: [`MappedLoader::read_blob_into`] hashes their frames in the mapping,
/// decodes them into memory the caller owns and hashes the decoded bytes there.
///
/// # What is and is not guaranteed
/// Writes to handed-out memory go to the process's private copy of each page and never reach the
/// file. Pages not written are the file's page cache: **if the file is modified after
/// verification, the unmodified pages of a verified blob show the new bytes**, and if it is
/// truncated, touching them raises SIGBUS. This is the exposure of every memory-mapped loader
/// (safetensors, `torch.load(mmap=True)`), with verification added; use this type only for
/// files nobody can write after they were verified (read-only storage, fs-verity, a sealed
/// memfd). [`Loader`](crate::Loader) copies into caller memory and has no such window.
///
/// # Invariants
/// A blob's range of the mapping is read by this type only while the blob is not verified, under
/// the `verified` lock; once verified it is never read or written here again, so memory handed
/// out by [`MappedLoader::blob_memory`] is never read by this crate while its holder writes it.
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
    ckpt: Checkpoint,
    signers: Vec<SignerStatus>,
    /// Which blobs have been verified. Held while hashing, so a blob is never read while memory
    /// handed out for it exists.
    verified: Mutex<Vec<bool>>,
}

impl std::fmt::Debug for MappedLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedLoader")
            .field("checkpoint", &self.ckpt)
            .field("signers", &self.signers)
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
    /// Maps `path` private and writable, checks its layout, the signatures under `policy`
    /// (before the manifest is parsed), the manifest, all padding and the metadata expectations.
    /// Blob digests are checked by [`MappedLoader::verify_blobs`].
    pub fn open(
        path: &Path,
        policy: &TrustPolicy,
        limits: &Limits,
    ) -> Result<MappedLoader, VerifyError> {
        let env = Envelope::open(path, limits, MapMode::CopyOnWrite)?;
        let footer = env.footer;
        // Authenticate before parsing: an untrusted manifest never reaches the decoder.
        let signers = verify::check_signatures(
            &env.signatures,
            footer.content_length(),
            &footer.manifest_sha256,
            policy,
        )?;
        let ckpt = env.into_checkpoint(limits)?;
        verify::check_metadata(ckpt.manifest(), policy)?;
        let verified = Mutex::new(vec![false; ckpt.manifest().blobs.len()]);
        Ok(MappedLoader {
            ckpt,
            signers,
            verified,
        })
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        self.ckpt.manifest()
    }

    /// The checkpoint tree.
    pub fn root(&self) -> &Node {
        self.ckpt.root()
    }

    /// The signatures and whether each key is trusted (all of them are valid).
    pub fn signers(&self) -> &[SignerStatus] {
        &self.signers
    }

    /// The signature entries.
    pub fn signatures(&self) -> &[SignatureEntry] {
        self.ckpt.signatures()
    }

    /// The footer.
    pub fn footer(&self) -> &Footer {
        self.ckpt.footer()
    }

    /// File length in bytes.
    pub fn file_length(&self) -> u64 {
        self.ckpt.file_length()
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

    /// Verifies `blobs` in place: every stored chunk digest, and for compressed blobs every
    /// decoded chunk, hashed in parallel across all chunks of all of them. Blobs verified before
    /// are skipped. On failure nothing is marked verified and the error names the first failing
    /// chunk in file order.
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
        verify::check_blobs(&self.ckpt, &todo)?;
        for b in todo {
            verified[b] = true;
        }
        Ok(())
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
        let FileBytes::Private(map) = self.ckpt.bytes() else {
            unreachable!("a MappedLoader always maps its file with MapMode::CopyOnWrite");
        };
        let range = entry.offset as usize..entry.end() as usize;
        Some(BlobMemory {
            len: range.len(),
            ptr: map.ptr(range),
        })
    }

    /// Decodes a compressed blob into `dst` (exactly its logical length), verified: each frame is
    /// hashed in the mapping, decoded, and the decoded bytes are hashed in `dst`. Chunks are
    /// decoded in parallel. Raw blobs are refused: they are used in place through
    /// [`MappedLoader::blob_memory`]. On failure `dst` holds unspecified bytes.
    pub fn read_blob_into(&self, blob: BlobId, dst: &mut [u8]) -> Result<(), VerifyError> {
        self.blob_index(blob)?;
        let entry = &self.manifest().blobs[blob];
        let Some(c) = &entry.codec else {
            return Err(ReadError::Layout {
                offset: entry.offset,
                what: format!("blob {blob} is raw: it is used in place, not copied"),
            }
            .into());
        };
        if dst.len() as u64 != c.raw_length {
            return Err(ReadError::Layout {
                offset: entry.offset,
                what: format!(
                    "destination of {} bytes for blob {blob} of {} bytes",
                    dst.len(),
                    c.raw_length
                ),
            }
            .into());
        }
        let bytes = self.ckpt.bytes();
        let frames = entry.stored_chunks();
        let mismatch = |chunk: usize, offset: u64| VerifyError::DigestMismatch {
            blob,
            chunk,
            offset,
            tensor: self.ckpt.tensor_path_of(blob),
        };
        dst.par_chunks_mut(CHUNK as usize)
            .zip(frames.par_iter())
            .enumerate()
            .try_for_each(|(i, (buf, &(offset, len)))| {
                // Compressed blobs are never handed out, so their frames are never written.
                let frame = bytes.range(offset as usize..(offset + len) as usize);
                if codec::sha256(frame) != entry.sha256[i] {
                    return Err(mismatch(i, offset));
                }
                let raw = codec::decompress_chunk(frame, buf.len(), usize::from(c.group)).map_err(
                    |what| {
                        VerifyError::Malformed(ReadError::Decode {
                            blob,
                            chunk: i,
                            offset,
                            what,
                        })
                    },
                )?;
                buf.copy_from_slice(&raw);
                if codec::sha256(buf) != c.raw_sha256[i] {
                    return Err(mismatch(i, offset));
                }
                Ok(())
            })
    }
}
