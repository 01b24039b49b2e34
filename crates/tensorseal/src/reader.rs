//! Opening files: every structural invariant is checked before anything is handed out.

use crate::codec;
use crate::error::ReadError;
use crate::layout::{self, FOOTER_LEN, Footer, HEADER_LEN, SignatureEntry};
use crate::limits::{CHUNK, Limits};
use crate::manifest::{BlobEntry, Digest, Manifest};
use crate::mmap::{self, FileBytes, MapMode};
use crate::tree::{BlobId, Node, Tensor};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

/// The parts of a file located without parsing the manifest: header, footer, signature block.
pub(crate) struct Envelope {
    pub(crate) bytes: FileBytes,
    pub(crate) footer: Footer,
    pub(crate) signatures: Vec<SignatureEntry>,
    /// Format version from the header.
    pub(crate) version: u32,
}

impl Envelope {
    pub(crate) fn open(path: &Path, limits: &Limits, mode: MapMode) -> Result<Envelope, ReadError> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        mmap::not_a_directory(&meta)?;
        let len = meta.len();
        if len > limits.max_file_length {
            return Err(ReadError::LimitExceeded {
                what: "max_file_length",
                value: len,
                limit: limits.max_file_length,
                offset: 0,
            });
        }
        if len < HEADER_LEN + FOOTER_LEN {
            return Err(ReadError::TooShort { len });
        }
        let bytes = mmap::load(&mut file, len, mode)?;
        Envelope::parse(bytes, limits)
    }

    pub(crate) fn parse(bytes: FileBytes, limits: &Limits) -> Result<Envelope, ReadError> {
        let len = bytes.len() as u64;
        if len < HEADER_LEN + FOOTER_LEN {
            return Err(ReadError::TooShort { len });
        }
        let version = layout::check_header(&bytes[..HEADER_LEN as usize])?;
        let footer = Footer::parse(&bytes[(len - FOOTER_LEN) as usize..], len, limits)?;
        let sig_start = footer.content_length();
        let sig_bytes = &bytes[sig_start as usize..(sig_start + footer.signatures_length) as usize];
        let signatures = layout::decode_signatures(sig_bytes, sig_start, limits)?;
        let env = Envelope {
            bytes,
            footer,
            signatures,
            version,
        };
        if codec::sha256(env.manifest_bytes()) != footer.manifest_sha256 {
            return Err(ReadError::ManifestDigestMismatch {
                offset: footer.manifest_offset,
            });
        }
        Ok(env)
    }

    pub(crate) fn manifest_bytes(&self) -> &[u8] {
        let start = self.footer.manifest_offset as usize;
        &self.bytes[start..start + self.footer.manifest_length as usize]
    }

    /// Decodes the manifest and checks it against the file: blobs tile the region before the
    /// manifest exactly and all padding is zero.
    pub(crate) fn into_checkpoint(self, limits: &Limits) -> Result<Checkpoint, ReadError> {
        let manifest =
            Manifest::from_bytes(self.manifest_bytes(), self.footer.manifest_offset, limits)?;
        layout::check_version(self.version, &manifest)?;
        let expected = manifest.manifest_offset();
        if expected != self.footer.manifest_offset {
            return Err(ReadError::Layout {
                offset: self.footer.manifest_offset,
                what: format!(
                    "the manifest starts at {}, but the blobs end (aligned) at {expected}",
                    self.footer.manifest_offset
                ),
            });
        }
        // Padding between blobs and before the manifest is not covered by any digest.
        let mut gaps: Vec<(u64, u64)> = manifest
            .blobs
            .windows(2)
            .map(|w| (w[0].end(), w[1].offset))
            .collect();
        gaps.push((
            manifest.blobs.last().map_or(HEADER_LEN, BlobEntry::end),
            expected,
        ));
        // One page per gap, read alone: a fault in a mapping otherwise reads the device's whole
        // read-ahead window around it (8 MiB here), and the gaps after compressed blobs, one per
        // blob, then read the entire file at open, before verification could overlap reading
        // with hashing (measured: a 224 MB file's open took 0.97 s from a 250 MB/s disk).
        self.bytes.advise(memmap2::Advice::Random);
        let padding = gaps.into_iter().try_for_each(|(start, end)| {
            match self.bytes[start as usize..end as usize]
                .iter()
                .position(|&b| b != 0)
            {
                Some(i) => Err(ReadError::NonZeroPadding {
                    offset: start + i as u64,
                }),
                None => Ok(()),
            }
        });
        self.bytes.advise(memmap2::Advice::Normal);
        padding?;
        Ok(Checkpoint {
            env: self,
            manifest,
        })
    }
}

/// An opened file whose structure has been fully validated.
///
/// Opening checks the header, footer, tiling, padding, canonical manifest and signature block,
/// but neither the signatures' trust nor the blob digests: call [`Checkpoint::verify`], or open
/// with [`Checkpoint::open_verified`], before trusting tensor bytes.
///
/// # Example
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("m.tseal");
/// use tensorseal::{Checkpoint, DType, Limits, Node, Tensor, WriteOptions, Writer};
///
/// let mut w = Writer::create(&path, WriteOptions::default())?;
/// let blob = w.write_blob(&[1, 0, 0, 0, 2, 0, 0, 0], DType::I32)?;
/// let root = Node::Tensor(Box::new(Tensor::new(DType::I32, vec![2], Some(blob))));
/// w.finish(root, Default::default(), &[])?;
///
/// let ckpt = Checkpoint::open(&path, &Limits::default())?;
/// let tensors = ckpt.root().tensors();
/// let (_, t) = tensors[0];
/// assert_eq!(&*ckpt.tensor_bytes(t)?, &[1, 0, 0, 0, 2, 0, 0, 0]);
/// # Ok(()) }
/// ```
pub struct Checkpoint {
    env: Envelope,
    manifest: Manifest,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("file_length", &self.file_length())
            .field("manifest_sha256", &hex::encode(self.manifest_sha256()))
            .field("blobs", &self.manifest.blobs.len())
            .field("signatures", &self.env.signatures)
            .finish_non_exhaustive()
    }
}

impl Checkpoint {
    /// Opens and validates a file, memory-mapping it.
    pub fn open(path: &Path, limits: &Limits) -> Result<Checkpoint, ReadError> {
        Checkpoint::open_with(path, limits, MapMode::Map)
    }

    /// Opens and validates a file, choosing how its bytes are brought into memory.
    pub fn open_with(path: &Path, limits: &Limits, mode: MapMode) -> Result<Checkpoint, ReadError> {
        Envelope::open(path, limits, mode)?.into_checkpoint(limits)
    }

    /// Validates a file already in memory.
    pub fn from_vec(bytes: Vec<u8>, limits: &Limits) -> Result<Checkpoint, ReadError> {
        Envelope::parse(FileBytes::Owned(bytes), limits)?.into_checkpoint(limits)
    }

    /// The decoded manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The checkpoint tree.
    pub fn root(&self) -> &Node {
        &self.manifest.root
    }

    /// Signed metadata.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.manifest.metadata
    }

    /// The signatures, in the order they were added (not yet checked against any trust set).
    pub fn signatures(&self) -> &[SignatureEntry] {
        &self.env.signatures
    }

    /// The footer.
    pub fn footer(&self) -> &Footer {
        &self.env.footer
    }

    /// SHA-256 of the manifest bytes: the identity of the file's content.
    pub fn manifest_sha256(&self) -> Digest {
        self.env.footer.manifest_sha256
    }

    /// File length in bytes.
    pub fn file_length(&self) -> u64 {
        self.env.bytes.len() as u64
    }

    pub(crate) fn bytes(&self) -> &FileBytes {
        &self.env.bytes
    }

    /// The stored bytes of a blob (compressed frames for zstd blobs). Not verified.
    pub fn stored_bytes(&self, blob: BlobId) -> &[u8] {
        let b = &self.manifest.blobs[blob];
        &self.env.bytes[b.offset as usize..b.end() as usize]
    }

    /// The logical bytes of a blob: a zero-copy view of the file for raw blobs, decoded (with
    /// output bounded by the manifest) for compressed ones. Not verified: see [`Checkpoint`].
    pub fn blob_bytes(&self, blob: BlobId) -> Result<Cow<'_, [u8]>, ReadError> {
        let entry = &self.manifest.blobs[blob];
        let Some(codec) = &entry.codec else {
            return Ok(Cow::Borrowed(self.stored_bytes(blob)));
        };
        // The logical length is only what the manifest claims: grow the buffer as frames actually
        // decode, so an unverified file cannot make us reserve (or abort on) more than that.
        let mut out = Vec::new();
        for (i, (offset, len)) in entry.stored_chunks().into_iter().enumerate() {
            let frame = &self.env.bytes[offset as usize..(offset + len) as usize];
            let expected = CHUNK.min(codec.raw_length - i as u64 * CHUNK) as usize;
            let chunk = codec
                .decode_frame(frame, expected)
                .map_err(|what| ReadError::Decode {
                    blob,
                    chunk: i,
                    offset,
                    what,
                })?;
            out.extend_from_slice(&chunk);
        }
        Ok(Cow::Owned(out))
    }

    /// A tensor's C-contiguous little-endian bytes (empty for zero-size tensors). Not verified:
    /// see [`Checkpoint`].
    pub fn tensor_bytes(&self, tensor: &Tensor) -> Result<Cow<'_, [u8]>, ReadError> {
        match tensor.blob {
            None => Ok(Cow::Borrowed(&[])),
            Some(b) => self.blob_bytes(b),
        }
    }
}

/// Path of the first tensor of `root` that uses `blob`, for error messages.
pub(crate) fn tensor_path_of(root: &Node, blob: BlobId) -> String {
    root.tensors()
        .into_iter()
        .find(|(_, t)| t.blob == Some(blob))
        .map(|(p, _)| {
            let s = crate::tree::dotted_path(&p);
            if s.is_empty() {
                "the root tensor".to_string()
            } else {
                format!("tensor {s}")
            }
        })
        .unwrap_or_else(|| "no tensor".into())
}
