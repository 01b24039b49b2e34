//! Verify-what-you-use loading (spec §7): bytes are read with `pread` into memory the caller owns
//! and hashed there, so a file changed on disk after verification cannot slip in.

use crate::codec;
use crate::error::{ReadError, VerifyError};
use crate::layout::{self, FOOTER_LEN, Footer, HEADER_LEN, SignatureEntry};
use crate::limits::{self, CHUNK, Limits};
use crate::manifest::{BlobEntry, Digest, Manifest};
use crate::source::{self, ReadAt};
use crate::tree::{BlobId, Node, Tensor};
use crate::verify::{self, SignerStatus, TrustPolicy, VerifyReport};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use std::fs::File;
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
///
/// The bytes come from any [`ReadAt`] source: a local [`File`] by default, or ranges of a remote
/// object ([`Loader::from_source`]); the checks are the same.
#[derive(Debug)]
pub struct Loader<R: ReadAt = File> {
    file: R,
    footer: Footer,
    signatures: Vec<SignatureEntry>,
    signers: Vec<SignerStatus>,
    /// Whether the policy it was opened under checked who signed.
    authenticated: bool,
    manifest: Manifest,
}

impl Loader<File> {
    /// Opens `path`, checks signatures, manifest and metadata under `policy`. Blob digests are
    /// checked as blobs are read.
    pub fn open(path: &Path, policy: &TrustPolicy, limits: &Limits) -> Result<Loader, VerifyError> {
        let file = File::open(path).map_err(ReadError::from)?;
        Loader::from_source(file, policy, limits)
    }

    /// The file, as opened.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

impl<R: ReadAt> Loader<R> {
    /// [`Loader::open`] over any byte source: reads the header, footer, signature block and
    /// manifest through `file` (a few reads), checks the signatures under `policy` before the
    /// manifest is parsed, then the manifest and the metadata expectations.
    pub fn from_source(
        file: R,
        policy: &TrustPolicy,
        limits: &Limits,
    ) -> Result<Loader<R>, VerifyError> {
        let len = file.length().map_err(ReadError::from)?;
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
        let version = layout::check_header(&header)?;
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
        layout::check_version(version, &manifest)?;
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
            authenticated: policy.authenticates(),
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

    /// The source the loader reads from.
    pub fn source(&self) -> &R {
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
        let frames = entry.stored_chunks();
        dst.par_chunks_mut(CHUNK as usize)
            .zip(frames.par_iter())
            .enumerate()
            .try_for_each(|(i, (buf, &frame))| self.read_chunk_into(blob, entry, i, frame, buf))
    }

    /// Reads chunk `i` of `blob`, stored at `(offset, len)`, into `buf` (its logical length),
    /// checking the stored digest on the copy and, for zstd blobs, the decoded one.
    fn read_chunk_into(
        &self,
        blob: BlobId,
        entry: &BlobEntry,
        i: usize,
        (offset, len): (u64, u64),
        buf: &mut [u8],
    ) -> Result<(), VerifyError> {
        let Some(c) = &entry.codec else {
            if read_hashed(&self.file, buf, offset)? != entry.sha256[i] {
                return Err(self.mismatch(blob, i, offset));
            }
            return Ok(());
        };
        let mut frame = vec![0u8; len as usize];
        read_exact_at(&self.file, &mut frame, offset)?;
        if codec::sha256(&frame) != entry.sha256[i] {
            return Err(self.mismatch(blob, i, offset));
        }
        let raw = c.decode_frame(&frame, buf.len()).map_err(|what| {
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
    }

    /// Full verification without keeping the data: every chunk of every blob is read into a
    /// scratch buffer, checked and dropped, chunks in parallel (rayon's pool bounds how many are
    /// in flight, so memory is bounded by the pool size times [`CHUNK`], not by the file), then
    /// the padding. The error reported is the first failing chunk in file order.
    pub fn verify_all(&self) -> Result<VerifyReport, VerifyError> {
        let jobs: Vec<(BlobId, usize, (u64, u64))> = self
            .manifest
            .blobs
            .iter()
            .enumerate()
            .flat_map(|(blob, entry)| {
                entry
                    .stored_chunks()
                    .into_iter()
                    .enumerate()
                    .map(move |(i, frame)| (blob, i, frame))
            })
            .collect();
        let failure = jobs.par_iter().find_map_first(|&(blob, i, frame)| {
            let entry = &self.manifest.blobs[blob];
            let logical = CHUNK.min(entry.logical_length() - i as u64 * CHUNK) as usize;
            let mut buf = vec![0u8; logical];
            self.read_chunk_into(blob, entry, i, frame, &mut buf).err()
        });
        if let Some(e) = failure {
            return Err(e);
        }
        for (blob, entry) in self.manifest.blobs.iter().enumerate() {
            self.check_padding(blob, entry)?;
        }
        self.check_tail_padding()?;
        let bytes_hashed = self
            .manifest
            .blobs
            .iter()
            .map(|b| b.length + b.codec.as_ref().map_or(0, |c| c.raw_length))
            .sum();
        Ok(VerifyReport {
            manifest_sha256: self.footer.manifest_sha256,
            file_length: self.file_length(),
            signers: self.signers.clone(),
            authenticated: self.authenticated,
            blobs: self.manifest.blobs.len(),
            chunks: jobs.len(),
            bytes_hashed,
        })
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

    /// Checks that the bytes between the last blob and the manifest are zero.
    fn check_tail_padding(&self) -> Result<(), VerifyError> {
        let tail_start = self
            .manifest
            .blobs
            .last()
            .map_or(HEADER_LEN, BlobEntry::end);
        self.check_zero(tail_start, self.footer.manifest_offset)
    }

    /// Reads and verifies every blob, in parallel: full verification, and the data in memory the
    /// caller owns. Also checks the padding before the manifest.
    pub fn read_all(&self) -> Result<Vec<Vec<u8>>, VerifyError> {
        self.check_tail_padding()?;
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

/// Reads `buf.len()` bytes at `offset` into `buf` and returns their SHA-256, hashing each piece
/// ([`ReadAt::piece_size`]: for a file, small enough to still be in the core's cache when
/// hashed) right after it is read. The digest is of the bytes in `buf`, the caller's memory, not of a
/// second read; hashing while the piece is in cache instead of after the whole chunk saves a
/// pass over memory (a third of the traffic).
fn read_hashed(file: &impl ReadAt, buf: &mut [u8], offset: u64) -> Result<Digest, VerifyError> {
    let mut hasher = Sha256::new();
    let mut at = offset;
    for piece in buf.chunks_mut(file.piece_size().max(1)) {
        read_exact_at(file, piece, at)?;
        hasher.update(&*piece);
        at += piece.len() as u64;
    }
    Ok(hasher.finalize().into())
}

fn read_exact_at(file: &impl ReadAt, buf: &mut [u8], offset: u64) -> Result<(), VerifyError> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            // The file shrank after open: a truncated file, not an I/O failure.
            VerifyError::Malformed(ReadError::Layout {
                offset,
                what: "file is shorter than when it was opened".into(),
            })
        } else if source::is_changed(&e) {
            VerifyError::Malformed(ReadError::Layout {
                offset,
                what: e.to_string(),
            })
        } else {
            VerifyError::Malformed(ReadError::Io(e))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{Classify, FailureClass};
    use crate::keys::PublicKey;
    use crate::source::SourceChanged;
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// An in-memory source that records every read, and can start failing as a changed remote
    /// object does.
    struct Recording {
        bytes: Vec<u8>,
        reads: Mutex<Vec<(u64, u64)>>,
        changed_after: Option<usize>,
    }

    impl ReadAt for Recording {
        fn length(&self) -> std::io::Result<u64> {
            Ok(self.bytes.len() as u64)
        }

        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            let mut reads = self.reads.lock().unwrap();
            if self.changed_after.is_some_and(|n| reads.len() >= n) {
                return Err(std::io::Error::other(SourceChanged::new(
                    "s3://b/k changed",
                )));
            }
            reads.push((offset, buf.len() as u64));
            let start = offset as usize;
            let src = self
                .bytes
                .get(start..start + buf.len())
                .ok_or(std::io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    fn vector(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../spec/vectors")
            .join(name)
    }

    fn recording(name: &str, changed_after: Option<usize>) -> Recording {
        Recording {
            bytes: std::fs::read(vector(name)).unwrap(),
            reads: Mutex::new(Vec::new()),
            changed_after,
        }
    }

    fn policy() -> TrustPolicy {
        TrustPolicy::trusting(vec![PublicKey::read(&vector("test-key.pub")).unwrap()])
    }

    #[test]
    fn opening_reads_four_ranges_and_no_blob_byte() {
        for name in ["simple.tseal", "zstd.tseal", "all-kinds.tseal"] {
            let loader =
                Loader::from_source(recording(name, None), &policy(), &Limits::default()).unwrap();
            let reads = loader.source().reads.lock().unwrap().clone();
            // Header, footer, signature block, manifest.
            assert_eq!(reads.len(), 4, "{name}: {reads:?}");
            for &(offset, len) in &reads {
                for b in &loader.manifest().blobs {
                    assert!(offset + len <= b.offset || offset >= b.end(), "{name}");
                }
            }
        }
    }

    #[test]
    fn verify_all_over_a_source_reports_what_the_file_verification_reports() {
        for name in ["simple.tseal", "zstd.tseal", "all-kinds.tseal"] {
            let loader =
                Loader::from_source(recording(name, None), &policy(), &Limits::default()).unwrap();
            let (_, expected) =
                crate::Checkpoint::open_verified(&vector(name), &policy(), &Limits::default())
                    .unwrap();
            assert_eq!(loader.verify_all().unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn verify_all_finds_a_flipped_tensor_byte() {
        let mut source = recording("zstd.tseal", None);
        let offset = {
            let loader =
                Loader::from_source(recording("zstd.tseal", None), &policy(), &Limits::default())
                    .unwrap();
            loader.manifest().blobs.last().unwrap().offset as usize
        };
        source.bytes[offset + 1] ^= 1;
        let loader = Loader::from_source(source, &policy(), &Limits::default()).unwrap();
        let e = loader.verify_all().unwrap_err();
        assert!(matches!(e, VerifyError::DigestMismatch { .. }), "{e}");
    }

    #[test]
    fn a_source_changed_mid_read_is_a_verification_failure() {
        let loader = Loader::from_source(
            recording("simple.tseal", Some(4)),
            &policy(),
            &Limits::default(),
        )
        .unwrap();
        let e = loader.verify_all().unwrap_err();
        assert_eq!(e.class(), FailureClass::Verification, "{e}");
        assert!(e.to_string().contains("s3://b/k changed"), "{e}");
    }
}
