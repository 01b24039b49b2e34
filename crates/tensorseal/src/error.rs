//! Errors of each layer. Reading, verifying, writing and key handling have separate types so that
//! "this file is corrupt" is never confused with "this file was tampered with".

use crate::policy::KeyRefusal;
use std::io;

/// A file that is not a well-formed tensorseal file, or could not be read.
///
/// Offsets are absolute file offsets; `path` names the place in the manifest or tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("I/O error")]
    Io(#[from] io::Error),
    /// Shorter than a header and a footer.
    #[error("file is {len} bytes long, shorter than the 128 bytes of header and footer")]
    TooShort {
        /// File length.
        len: u64,
    },
    /// The header or footer magic is wrong: not a tensorseal file.
    #[error("not a tensorseal file: bad {which} magic at offset {offset}")]
    BadMagic {
        /// `"header"` or `"footer"`.
        which: &'static str,
        /// Offset of the magic.
        offset: u64,
    },
    /// A format version this reader does not implement.
    #[error("file has format version {version}; this reader implements versions 1 and 2")]
    UnsupportedVersion {
        /// The version in the header.
        version: u32,
    },
    /// A reserved header byte is not zero.
    #[error("reserved header byte at offset {offset} is not zero")]
    ReservedNotZero {
        /// Offset of the byte.
        offset: u64,
    },
    /// Regions overlap, leave gaps, are misaligned or run past the end.
    #[error("bad layout at offset {offset}: {what}")]
    Layout {
        /// Offset where the problem was found.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A padding byte is not zero.
    #[error("padding byte at offset {offset} is not zero")]
    NonZeroPadding {
        /// Offset of the byte.
        offset: u64,
    },
    /// The footer's manifest digest does not match the manifest bytes.
    #[error("manifest at offset {offset} does not match the SHA-256 in the footer")]
    ManifestDigestMismatch {
        /// Offset of the manifest.
        offset: u64,
    },
    /// The manifest or signature block is not canonical CBOR.
    #[error("{section} is not canonical CBOR at offset {offset}: {what}")]
    Cbor {
        /// `"manifest"` or `"signature block"`.
        section: &'static str,
        /// Offset of the offending item.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The manifest or signature block breaks the schema (spec §3, §6).
    #[error("{section} at offset {offset}, {path}: {what}")]
    Schema {
        /// `"manifest"` or `"signature block"`.
        section: &'static str,
        /// Offset of the offending item.
        offset: u64,
        /// Where in the manifest, e.g. `root["model"][2].tensor.shape`.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// A bound of [`Limits`](crate::Limits) was exceeded.
    #[error("{what} is {value}, over the limit of {limit} (offset {offset})")]
    LimitExceeded {
        /// The limit's name.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The limit.
        limit: u64,
        /// Offset where it was found.
        offset: u64,
    },
    /// Stored bytes of a blob could not be decoded.
    #[error("blob {blob} chunk {chunk} at offset {offset}: {what}")]
    Decode {
        /// Blob index.
        blob: usize,
        /// Chunk index within the blob.
        chunk: usize,
        /// Offset of the chunk's stored bytes.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// Verification failed: the file is malformed, unsigned, untrusted, or its bytes do not match
/// what was signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The file is not a well-formed tensorseal file (truncated, corrupted structure, ...).
    #[error(transparent)]
    Malformed(#[from] ReadError),
    /// A signature does not verify against the key it carries.
    #[error("signature {index} (key {key_id}) is invalid")]
    BadSignature {
        /// Position in the signature block.
        index: usize,
        /// Key id of the signature's key.
        key_id: String,
    },
    /// Fewer signatures from trusted keys than required.
    #[error(
        "{trusted} signature(s) from trusted keys, {threshold} required (signed by: {})",
        if signers.is_empty() { "nobody".to_string() } else { signers.join(", ") }
    )]
    Untrusted {
        /// Key ids of all signatures present.
        signers: Vec<String>,
        /// How many of them are trusted.
        trusted: usize,
        /// How many are required.
        threshold: usize,
    },
    /// A stored or logical chunk does not match its digest.
    #[error("blob {blob} chunk {chunk} at offset {offset} does not match its SHA-256 ({tensor})")]
    DigestMismatch {
        /// Blob index.
        blob: usize,
        /// Chunk index within the blob.
        chunk: usize,
        /// Offset of the chunk's stored bytes.
        offset: u64,
        /// Path of a tensor using the blob.
        tensor: String,
    },
    /// A signed metadata value differs from what the caller expects.
    #[error("metadata {key:?} is {found:?}, expected {expected:?}")]
    MetadataMismatch {
        /// The key.
        key: String,
        /// The required value.
        expected: String,
        /// The value in the file, if any.
        found: Option<String>,
    },
    /// The signed `step` is lower than required (possible rollback).
    #[error("metadata step is {found}, below the required minimum {min} (possible rollback)")]
    StepTooOld {
        /// The step in the file.
        found: u64,
        /// The minimum required.
        min: u64,
    },
    /// The signed `step` is missing or not a number, and a minimum step was required.
    #[error("a minimum step was required but the file has no valid step metadata")]
    StepMissing,
    /// A trust policy rule refused a signer's key, leaving too few trusted signatures.
    #[error(
        "key {key_id}{} is {reason}; {trusted} signature(s) from trusted keys, {threshold} required",
        name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
    )]
    KeyRefused {
        /// Key id (first 16 hex digits) of the first refused signer.
        key_id: String,
        /// Its name in the policy, if any.
        name: Option<String>,
        /// Why it was refused; [`KeyRefusal::kind`] is the stable JSON kind.
        reason: KeyRefusal,
        /// How many signatures still counted.
        trusted: usize,
        /// How many are required.
        threshold: usize,
    },
}

/// A trust policy file could not be read or is invalid (spec/POLICY.md).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the policy file")]
    Io(#[from] io::Error),
    /// Not TOML of the policy's shape (unknown field, wrong type, ...); the text names line and
    /// column.
    #[error("{0}")]
    Syntax(String),
    /// A `[[key]]` table is invalid.
    #[error("[[key]] {index} ({name:?}): {what}")]
    Key {
        /// Position among the `[[key]]` tables, from 0.
        index: usize,
        /// Its `name`.
        name: String,
        /// What is wrong.
        what: String,
    },
    /// A `[[key]]` table's public key cannot be read.
    #[error("[[key]] {index} ({name:?}): {path}")]
    KeyFile {
        /// Position among the `[[key]]` tables, from 0.
        index: usize,
        /// Its `name`.
        name: String,
        /// The key path (or `public_key_pem`).
        path: String,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A top-level value is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// A file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Writing, syncing or renaming failed.
    #[error("I/O error")]
    Io(#[from] io::Error),
    /// The tree or metadata given to the writer breaks the format's rules.
    #[error("invalid {what} at {path}: {detail}")]
    Invalid {
        /// What kind of value is invalid.
        what: &'static str,
        /// Where, e.g. a tree path.
        path: String,
        /// Why.
        detail: String,
    },
    /// The file to sign failed verification of its integrity.
    #[error("refusing to sign: {0}")]
    NotIntact(#[source] Box<VerifyError>),
}

/// A key could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("I/O error")]
    Io(#[from] io::Error),
    /// The PEM is not an Ed25519 key of the expected kind.
    #[error("not an Ed25519 {expected} in PEM form: {detail}")]
    Parse {
        /// `"private key (PKCS#8)"` or `"public key (SubjectPublicKeyInfo)"`.
        expected: &'static str,
        /// Parser detail.
        detail: String,
    },
    /// The public key is of small order: it would accept forged signatures.
    #[error("public key is weak (small order) and cannot be trusted")]
    Weak,
    /// The OS random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
}
