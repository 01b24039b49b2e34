//! Verify-what-you-use loading (spec §7): bytes are read with `pread` into memory the caller owns
//! and hashed there, so a file changed on disk after verification cannot slip in.

use crate::codec;
use crate::error::{ReadError, VerifyError};
use crate::layout::{self, FOOTER_LEN, Footer, HEADER_LEN, SignatureEntry};
use crate::limits::{self, CHUNK, Limits};
use crate::manifest::{BlobEntry, Digest, Manifest};
use crate::tree::{BlobId, Node, Tensor};
use crate::verify::{self, SignerStatus, TrustPolicy};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A file opened under a trust policy, whose blobs are verified as they are read.
///
/// [`Loader::open`] reads the header, footer, signature block and manifest into private memory,
/// checks the signatures against the policy **before** parsing the manifest, then parses and
/// validates it and checks the metadata expectations. No tensor byte has been read yet: each
/// `read_*` call copies a blob's stored bytes (and its trailing padding) from the file into
/// memory the caller owns, hashes that copy, decodes it if compressed, and only then returns.
/// Reading every blob is full verification; reading some is a lazy, partial load of a large
/// file in which every byte handed out was verified.
///
/// The loader never memory-maps the file, so nothing it returned can change afterwards, even if
/// the file on disk is modified or truncated.
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
/// use tensorseal::{Limits, Loader, TrustPolicy};
///
/// let loader = Loader::open(&path, &TrustPolicy::trusting(vec![key.public_key()]), &Limits::default())?;
/// let tensors = loader.root().tensors();
/// let mut buf = vec![0u8; 4];
/// loader.read_tensor_into(tensors[0].1, &mut buf)?; // hashed after the copy, then returned
/// assert_eq!(buf, [1, 2, 3, 4]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Loader {
    file: File,
    footer: Footer,
    signatures: Vec<SignatureEntry>,
    signers: Vec<SignerStatus>,
    manifest: Manifest,
}

impl Loader {
    /// Opens `path`, checks signatures, manifest and metadata under `policy`. Blob digests are
    /// checked as blobs are read.
    pub fn open(path: &Path, policy: &TrustPolicy, limits: &Limits) -> Result<Loader, VerifyError> {
        let file = File::open(path).map_err(ReadError::from)?;
        let len = file.metadata().map_err(ReadError::from)?.len();
        if len > limits.max_file_length {
            return Err(ReadError::LimitExceeded {
                what: "max_file_length",
                value: len,
                limit: limits.max_file_length,
                offset: 0,
            }
            .into());
        }
        if len < HEADER_LEN + FOOTER_LEN {
            return Err(ReadError::TooShort { len }.into());
        }
        let mut header = [0u8; HEADER_LEN as usize];
        read_exact_at(&file, &mut header, 0)?;
        layout::check_header(&header)?;
        let mut footer_bytes = [0u8; FOOTER_LEN as usize];
        read_exact_at(&file, &mut footer_bytes, len - FOOTER_LEN)?;
        let footer = Footer::parse(&footer_bytes, len, limits)?;

        let mut sig_bytes = vec![0u8; footer.signatures_length as usize];
        read_exact_at(&file, &mut sig_bytes, footer.content_length())?;
        let signatures = layout::decode_signatures(&sig_bytes, footer.content_length(), limits)?;
        let mut manifest_bytes = vec![0u8; footer.manifest_length as usize];
        read_exact_at(&file, &mut manifest_bytes, footer.manifest_offset)?;
        if codec::sha256(&manifest_bytes) != footer.manifest_sha256 {
            return Err(ReadError::ManifestDigestMismatch {
                offset: footer.manifest_offset,
            }
            .into());
        }
        // Authenticate before parsing: an untrusted manifest never reaches the decoder.
        let mut signers = verify::check_signatures(
            &signatures,
            footer.content_length(),
            &footer.manifest_sha256,
            policy,
        )?;
        let manifest = Manifest::from_bytes(&manifest_bytes, footer.manifest_offset, limits)?;
        if manifest.manifest_offset() != footer.manifest_offset {
            return Err(ReadError::Layout {
                offset: footer.manifest_offset,
                what: format!(
                    "the manifest starts at {}, but the blobs end (aligned) at {}",
                    footer.manifest_offset,
                    manifest.manifest_offset()
                ),
            }
            .into());
        }
        verify::check_metadata(&manifest, policy, &mut signers)?;
        Ok(Loader {
            file,
            footer,
            signatures,
            signers,
            manifest,
        })
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The checkpoint tree.
    pub fn root(&self) -> &Node {
        &self.manifest.root
    }

    /// The signatures and whether each key is trusted (all of them are valid).
    pub fn signers(&self) -> &[SignerStatus] {
        &self.signers
    }

    /// The signature entries.
    pub fn signatures(&self) -> &[SignatureEntry] {
        &self.signatures
    }

    /// The footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The file, as opened.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// The file's length when it was opened.
    pub(crate) fn file_length(&self) -> u64 {
        self.footer.content_length() + self.footer.signatures_length + FOOTER_LEN
    }

    /// Copies a blob's logical bytes into `dst` (which must be exactly its logical length),
    /// verifying every chunk on the copy. Chunks are read and hashed in parallel.
    pub fn read_blob_into(&self, blob: BlobId, dst: &mut [u8]) -> Result<(), VerifyError> {
        let entry = self
            .manifest
            .blobs
            .get(blob)
            .ok_or_else(|| ReadError::Layout {
                offset: 0,
                what: format!("blob index {blob} out of range"),
            })?;
        if dst.len() as u64 != entry.logical_length() {
            return Err(ReadError::Layout {
                offset: entry.offset,
                what: format!(
                    "destination of {} bytes for blob {blob} of {} bytes",
                    dst.len(),
                    entry.logical_length()
                ),
            }
            .into());
        }
        self.check_padding(blob, entry)?;
        match &entry.codec {
            None => dst
                .par_chunks_mut(CHUNK as usize)
                .enumerate()
                .try_for_each(|(i, buf)| {
                    let offset = entry.offset + i as u64 * CHUNK;
                    if read_hashed(&self.file, buf, offset)? != entry.sha256[i] {
                        return Err(self.mismatch(blob, i, offset));
                    }
                    Ok(())
                }),
            Some(c) => {
                let frames = entry.stored_chunks();
                dst.par_chunks_mut(CHUNK as usize)
                    .zip(frames.par_iter())
                    .enumerate()
                    .try_for_each(|(i, (buf, &(offset, len)))| {
                        let mut frame = vec![0u8; len as usize];
                        read_exact_at(&self.file, &mut frame, offset)?;
                        if codec::sha256(&frame) != entry.sha256[i] {
                            return Err(self.mismatch(blob, i, offset));
                        }
                        let raw = codec::decompress_chunk(&frame, buf.len(), usize::from(c.group))
                            .map_err(|what| {
                                VerifyError::Malformed(ReadError::Decode {
                                    blob,
                                    chunk: i,
                                    offset,
                                    what,
                                })
                            })?;
                        if codec::sha256(&raw) != c.raw_sha256[i] {
                            return Err(self.mismatch(blob, i, offset));
                        }
                        buf.copy_from_slice(&raw);
                        Ok(())
                    })
            }
        }
    }

    /// A blob's logical bytes in a new buffer, verified.
    pub fn read_blob(&self, blob: BlobId) -> Result<Vec<u8>, VerifyError> {
        let len = self
            .manifest
            .blobs
            .get(blob)
            .map_or(0, BlobEntry::logical_length);
        let mut v =
            vec![0u8; usize::try_from(len).map_err(|e| ReadError::Io(std::io::Error::other(e)))?];
        self.read_blob_into(blob, &mut v)?;
        Ok(v)
    }

    /// Copies a tensor's bytes into `dst` (exactly its byte size), verified.
    pub fn read_tensor_into(&self, tensor: &Tensor, dst: &mut [u8]) -> Result<(), VerifyError> {
        match tensor.blob {
            Some(b) => self.read_blob_into(b, dst),
            None if dst.is_empty() => Ok(()),
            None => Err(ReadError::Layout {
                offset: 0,
                what: "destination for an empty tensor is not empty".into(),
            }
            .into()),
        }
    }

    /// Reads and verifies every blob, in parallel: full verification, and the data in memory the
    /// caller owns. Also checks the padding before the manifest.
    pub fn read_all(&self) -> Result<Vec<Vec<u8>>, VerifyError> {
        let tail_start = self
            .manifest
            .blobs
            .last()
            .map_or(HEADER_LEN, BlobEntry::end);
        self.check_zero(tail_start, self.footer.manifest_offset)?;
        (0..self.manifest.blobs.len())
            .into_par_iter()
            .map(|b| self.read_blob(b))
            .collect()
    }

    fn mismatch(&self, blob: BlobId, chunk: usize, offset: u64) -> VerifyError {
        let tensor = self
            .manifest
            .root
            .tensors()
            .into_iter()
            .find(|(_, t)| t.blob == Some(blob))
            .map_or_else(
                || "no tensor".to_string(),
                |(p, _)| format!("tensor {}", crate::tree::dotted_path(&p)),
            );
        VerifyError::DigestMismatch {
            blob,
            chunk,
            offset,
            tensor,
        }
    }

    /// Padding after a blob is covered by no digest: it must be zero.
    fn check_padding(&self, blob: BlobId, entry: &BlobEntry) -> Result<(), VerifyError> {
        let next = self
            .manifest
            .blobs
            .get(blob + 1)
            .map_or(self.footer.manifest_offset, |b| b.offset);
        let end = limits::align_up(entry.end()).unwrap_or(next).min(next);
        self.check_zero(entry.end(), end)
    }

    fn check_zero(&self, start: u64, end: u64) -> Result<(), VerifyError> {
        if end <= start {
            return Ok(());
        }
        let mut pad = vec![0u8; (end - start) as usize];
        read_exact_at(&self.file, &mut pad, start)?;
        if let Some(i) = pad.iter().position(|&b| b != 0) {
            return Err(ReadError::NonZeroPadding {
                offset: start + i as u64,
            }
            .into());
        }
        Ok(())
    }
}

/// Bytes read and hashed together: small enough to still be in the core's cache when hashed,
/// large enough that the syscalls cost nothing.
const PIECE: usize = 256 << 10;

/// Reads `buf.len()` bytes at `offset` into `buf` and returns their SHA-256, hashing each piece
/// right after it is read. The digest is of the bytes in `buf`, the caller's memory, not of a
/// second read; hashing while the piece is in cache instead of after the whole chunk saves a
/// pass over memory (a third of the traffic).
fn read_hashed(file: &File, buf: &mut [u8], offset: u64) -> Result<Digest, VerifyError> {
    let mut hasher = Sha256::new();
    let mut at = offset;
    for piece in buf.chunks_mut(PIECE) {
        read_exact_at(file, piece, at)?;
        hasher.update(&*piece);
        at += piece.len() as u64;
    }
    Ok(hasher.finalize().into())
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> Result<(), VerifyError> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            // The file shrank after open: a truncated file, not an I/O failure.
            VerifyError::Malformed(ReadError::Layout {
                offset,
                what: "file is shorter than when it was opened".into(),
            })
        } else {
            VerifyError::Malformed(ReadError::Io(e))
        }
    })
}
