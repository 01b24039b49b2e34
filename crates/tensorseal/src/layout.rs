//! The fixed parts of a file: header, footer, signature block and the signed message
//! (spec §1, §6).

use crate::cbor::{self, CborWriter, DecodeLimits, Reader};
use crate::error::ReadError;
use crate::keys::PublicKey;
use crate::limits::{ALIGN, Limits};
use crate::manifest::{self, Digest, FORMAT_VERSIONS, R, SchemaError};

/// Header magic: `\x89TSEAL\r\n`.
pub const MAGIC: [u8; 8] = [0x89, b'T', b'S', b'E', b'A', b'L', b'\r', b'\n'];
/// Footer end magic: `TSEALEND`.
pub const END_MAGIC: [u8; 8] = *b"TSEALEND";
/// Header length in bytes.
pub const HEADER_LEN: u64 = 64;
/// Footer length in bytes.
pub const FOOTER_LEN: u64 = 64;
/// Domain separation prefix of the signed message.
pub const SIGNATURE_DOMAIN: &[u8; 33] = b"tensorseal-manifest-signature-v1\0";

/// The 64 header bytes of a file of format `version`.
pub(crate) fn header(version: u32) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h
}

/// Checks the header and returns its format version, which the manifest's must then equal.
pub(crate) fn check_header(h: &[u8]) -> Result<u32, ReadError> {
    if h.len() < 64 || h[..8] != MAGIC {
        return Err(ReadError::BadMagic {
            which: "header",
            offset: 0,
        });
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if !FORMAT_VERSIONS.contains(&version) {
        return Err(ReadError::UnsupportedVersion { version });
    }
    if let Some(i) = h[12..64].iter().position(|&b| b != 0) {
        return Err(ReadError::ReservedNotZero {
            offset: 12 + i as u64,
        });
    }
    Ok(version)
}

/// Checks that the header's version is the manifest's: 2 exactly when a blob is plane-coded.
pub(crate) fn check_version(header: u32, manifest: &manifest::Manifest) -> Result<(), ReadError> {
    if header != manifest.version() {
        return Err(ReadError::Layout {
            offset: 8,
            what: format!(
                "the header says format version {header}, the manifest is version {}",
                manifest.version()
            ),
        });
    }
    Ok(())
}

/// The footer's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Offset of the manifest.
    pub manifest_offset: u64,
    /// Length of the manifest.
    pub manifest_length: u64,
    /// Length of the signature block.
    pub signatures_length: u64,
    /// SHA-256 of the manifest bytes.
    pub manifest_sha256: Digest,
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; 64] {
        let mut f = [0u8; 64];
        f[0..8].copy_from_slice(&self.manifest_offset.to_le_bytes());
        f[8..16].copy_from_slice(&self.manifest_length.to_le_bytes());
        f[16..24].copy_from_slice(&self.signatures_length.to_le_bytes());
        f[24..56].copy_from_slice(&self.manifest_sha256);
        f[56..64].copy_from_slice(&END_MAGIC);
        f
    }

    /// Parses the last 64 bytes of a file of length `file_len` and checks that the regions it
    /// describes tile the file exactly.
    pub(crate) fn parse(f: &[u8], file_len: u64, limits: &Limits) -> Result<Footer, ReadError> {
        let at = file_len - FOOTER_LEN;
        if f[56..64] != END_MAGIC {
            return Err(ReadError::BadMagic {
                which: "footer",
                offset: at + 56,
            });
        }
        let u = |r: std::ops::Range<usize>| u64::from_le_bytes(f[r].try_into().expect("8 bytes"));
        let footer = Footer {
            manifest_offset: u(0..8),
            manifest_length: u(8..16),
            signatures_length: u(16..24),
            manifest_sha256: f[24..56].try_into().expect("32 bytes"),
        };
        if footer.manifest_offset < HEADER_LEN || !footer.manifest_offset.is_multiple_of(ALIGN) {
            return Err(ReadError::Layout {
                offset: at,
                what: format!(
                    "manifest offset {} is not a multiple of 64 after the header",
                    footer.manifest_offset
                ),
            });
        }
        if footer.manifest_length > limits.max_manifest_length {
            return Err(ReadError::LimitExceeded {
                what: "max_manifest_length",
                value: footer.manifest_length,
                limit: limits.max_manifest_length,
                offset: at + 8,
            });
        }
        let total = footer
            .manifest_offset
            .checked_add(footer.manifest_length)
            .and_then(|v| v.checked_add(footer.signatures_length))
            .and_then(|v| v.checked_add(FOOTER_LEN));
        if total != Some(file_len) {
            return Err(ReadError::Layout {
                offset: at,
                what: format!(
                    "footer describes a file of {} bytes, but the file has {file_len}",
                    total.map_or_else(|| "more than 2^64".to_string(), |t| t.to_string())
                ),
            });
        }
        Ok(footer)
    }

    /// Length of everything the signatures commit to: header, blobs and manifest.
    pub fn content_length(&self) -> u64 {
        self.manifest_offset + self.manifest_length
    }
}

/// The message every signature signs (spec §6).
pub(crate) fn signed_message(content_length: u64, manifest_sha256: &Digest) -> [u8; 73] {
    let mut m = [0u8; 73];
    m[..33].copy_from_slice(SIGNATURE_DOMAIN);
    m[33..41].copy_from_slice(&content_length.to_le_bytes());
    m[41..73].copy_from_slice(manifest_sha256);
    m
}

/// One entry of the signature block: a public key and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureEntry {
    /// The signer's public key.
    pub key: PublicKey,
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

pub(crate) fn encode_signatures(entries: &[SignatureEntry]) -> Vec<u8> {
    let mut w = CborWriter::new(Vec::new());
    w.array(entries.len());
    for e in entries {
        w.map(2);
        w.text("key");
        w.bytes(&e.key.to_bytes());
        w.text("sig");
        w.bytes(&e.signature);
    }
    w.sink
}

pub(crate) fn decode_signatures(
    bytes: &[u8],
    base: u64,
    limits: &Limits,
) -> Result<Vec<SignatureEntry>, ReadError> {
    let cbor_limits = DecodeLimits {
        max_depth: 2,
        // An array head plus 5 items per entry (map, two keys, two byte strings); saturating,
        // since callers may raise the limit to usize::MAX.
        max_items: limits.max_signatures.saturating_mul(5).saturating_add(1),
        max_bigint_bytes: 0,
    };
    // The block is small: check that it is one canonical item first, so that CBOR errors (bytes
    // after the item, in particular) are reported before schema errors, then decode it.
    let mut check = Reader::new(bytes, cbor_limits);
    let checked = check
        .skip()
        .and_then(|()| check.finish())
        .map_err(Box::<SchemaError>::from);
    checked
        .and_then(|()| signatures(&mut Reader::new(bytes, cbor_limits), limits))
        .map_err(|e| match e.cbor() {
            Some(c) if matches!(c.kind, cbor::CborErrorKind::TooManyItems { .. }) => {
                ReadError::LimitExceeded {
                    what: "max_signatures",
                    value: (limits.max_signatures as u64).saturating_add(1),
                    limit: limits.max_signatures as u64,
                    offset: base + c.offset as u64,
                }
            }
            _ => e.into_read_error("signature block", base),
        })
}

fn signatures(r: &mut Reader<'_>, limits: &Limits) -> R<Vec<SignatureEntry>> {
    let n = manifest::array(r)?;
    if n > limits.max_signatures {
        return Err(SchemaError::limit(
            0,
            "max_signatures",
            n as u64,
            limits.max_signatures as u64,
        ));
    }
    let mut out: Vec<SignatureEntry> = Vec::with_capacity(n);
    for i in 0..n {
        let entry = signature(r, &out).map_err(manifest::at_index(i))?;
        out.push(entry);
    }
    r.finish()?;
    Ok(out)
}

fn signature(r: &mut Reader<'_>, earlier: &[SignatureEntry]) -> R<SignatureEntry> {
    let map_at = r.pos();
    let fields = manifest::map(r, "signature")?;
    let (mut key, mut signature) = (None, None);
    for _ in 0..fields {
        let (k, key_at) = manifest::key(r)?;
        let value_at = r.pos();
        match k {
            "key" => {
                let key_bytes: [u8; 32] = manifest::bytes(r)?
                    .try_into()
                    .map_err(|_| SchemaError::new(value_at, "a public key must be 32 bytes"))?;
                let public = PublicKey::from_bytes_unchecked(&key_bytes)
                    .ok_or_else(|| SchemaError::new(value_at, "not a valid Ed25519 public key"))?;
                key = Some((public, value_at));
            }
            "sig" => {
                signature = Some(
                    manifest::bytes(r)?
                        .try_into()
                        .map_err(|_| SchemaError::new(value_at, "a signature must be 64 bytes"))?,
                );
            }
            other => return Err(manifest::unknown_field(key_at, other, "signature")),
        }
    }
    let (key, key_at) = key.ok_or_else(|| manifest::missing(map_at, "key"))?;
    let signature = signature.ok_or_else(|| manifest::missing(map_at, "sig"))?;
    if earlier.iter().any(|e| e.key == key) {
        return Err(SchemaError::new(key_at, "two signatures by the same key"));
    }
    Ok(SignatureEntry { key, signature })
}
