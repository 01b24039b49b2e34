//! The manifest (spec §3): blob table, checkpoint tree, metadata and extension area, with its
//! canonical encoding and a decoder that checks every rule of the schema.
//!
//! Decoding is one pass over the bytes: the strict CBOR reader hands out tokens and the schema
//! decoders here and in `decode_tree` build the manifest from them directly, without an
//! intermediate item tree. Neither decoding nor encoding recurses on the input's nesting: the tree
//! decoder and the encoder keep their own stacks. After decoding, the manifest is encoded again
//! and compared with the input, byte by byte, without building a copy.

mod decode_tree;
mod encode;

use crate::cbor::{CborError, CborErrorKind, CborWriter, Compare, DecodeLimits, Reader, Token};
use crate::error::{ReadError, WriteError};
use crate::limits::{self, ALIGN, CHUNK, Limits};
use crate::tree::Node;
use std::collections::BTreeMap;

use encode::encode_manifest;
pub(crate) use encode::{encode_int, encode_tree};

/// The newest format version this crate reads and writes. A file is version 2 exactly when one
/// of its blobs is plane-coded (spec §9), so files without the plane codec stay readable by
/// version-1 readers.
pub const FORMAT_VERSION: u32 = 2;

/// Every format version this crate reads.
pub const FORMAT_VERSIONS: std::ops::RangeInclusive<u32> = 1..=FORMAT_VERSION;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The decoded manifest of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The checkpoint tree.
    pub root: Node,
    /// Blobs in file order.
    pub blobs: Vec<BlobEntry>,
    /// Signed metadata (spec §5).
    pub metadata: BTreeMap<String, String>,
    /// Extension area: each value is one canonical CBOR item, kept as its bytes (spec §3.6).
    pub ext: BTreeMap<String, Vec<u8>>,
}

/// Where a blob is and how to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    /// Absolute file offset, a multiple of 64.
    pub offset: u64,
    /// Stored length in bytes.
    pub length: u64,
    /// SHA-256 of each stored chunk (raw) or frame (zstd).
    pub sha256: Vec<Digest>,
    /// How the logical bytes were encoded; `None` for raw.
    pub codec: Option<BlobCodec>,
}

/// How each logical chunk of a compressed blob is encoded (spec §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One zstd frame of the byte-grouped chunk (§4.2, §4.3); `group` is 1, 2, 4, 8 or 16.
    Zstd {
        /// Byte-grouping width.
        group: u8,
    },
    /// A plane-coded chunk (§4.4, format version 2).
    Planes {
        /// How elements are split into planes.
        layout: crate::planes::PlaneLayout,
    },
}

/// A blob stored as one encoded frame per logical chunk (spec §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobCodec {
    /// The encoding of every frame.
    pub encoding: Encoding,
    /// Stored length of each frame.
    pub frames: Vec<u64>,
    /// Logical (decoded) length.
    pub raw_length: u64,
    /// SHA-256 of each logical chunk.
    pub raw_sha256: Vec<Digest>,
}

impl BlobEntry {
    /// Length of the blob's logical bytes.
    pub fn logical_length(&self) -> u64 {
        self.codec.as_ref().map_or(self.length, |c| c.raw_length)
    }

    /// Offset and length of each stored chunk (raw) or frame (zstd), in order.
    pub fn stored_chunks(&self) -> Vec<(u64, u64)> {
        match &self.codec {
            None => (0..limits::chunk_count(self.length))
                .map(|i| {
                    let start = i * CHUNK;
                    (self.offset + start, CHUNK.min(self.length - start))
                })
                .collect(),
            Some(c) => {
                let mut at = self.offset;
                c.frames
                    .iter()
                    .map(|&len| {
                        let chunk = (at, len);
                        at += len;
                        chunk
                    })
                    .collect()
            }
        }
    }

    /// Offset just past the blob.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }

    /// The name of the encoding, as `inspect` shows it: `raw`, `zstd` / `zstd+group<N>`, or
    /// `planes+<layout>` (`planes+bf16`, `planes+f32`, `planes+bytes<N>`).
    pub fn encoding_name(&self) -> String {
        match self.codec.as_ref().map(|c| c.encoding) {
            None => "raw".to_string(),
            Some(Encoding::Zstd { group: 1 }) => "zstd".to_string(),
            Some(Encoding::Zstd { group }) => format!("zstd+group{group}"),
            Some(Encoding::Planes { layout }) => format!("planes+{}", layout.name()),
        }
    }
}

impl BlobCodec {
    /// Decodes stored frame `frame` into exactly `expected_len` logical bytes. The caller has
    /// checked the frame's stored digest; the result still has to match `raw_sha256`.
    ///
    /// # Errors
    /// A message saying how the frame is malformed.
    pub fn decode_frame(&self, frame: &[u8], expected_len: usize) -> Result<Vec<u8>, String> {
        match self.encoding {
            Encoding::Zstd { group } => {
                crate::codec::decompress_chunk(frame, expected_len, usize::from(group))
            }
            Encoding::Planes { layout } => {
                if frame.first() != Some(&layout.id()) {
                    return Err(format!(
                        "offset 0: the frame's plane layout is not the codec's ({:#04x})",
                        layout.id()
                    ));
                }
                crate::planes::decode_chunk(frame, expected_len)
            }
        }
    }
}

impl Manifest {
    /// Offset where the manifest must start: just after the last blob's padding.
    pub fn manifest_offset(&self) -> u64 {
        self.blobs
            .last()
            .map_or(ALIGN, |b| limits::align_up(b.end()).unwrap_or(u64::MAX))
    }

    /// The format version of a file holding this manifest (spec §9).
    pub fn version(&self) -> u32 {
        version_of(&self.blobs)
    }

    /// Encodes the manifest canonically and checks the result against every rule a reader
    /// applies, so a writer can never produce a file the reader rejects.
    pub fn to_bytes(&self, limits: &Limits) -> Result<Vec<u8>, WriteError> {
        let mut w = CborWriter::new(Vec::new());
        encode_manifest(&mut w, self, limits)?;
        let decoded =
            Manifest::from_bytes(&w.sink, 0, limits).map_err(|e| WriteError::Invalid {
                what: "manifest",
                path: "manifest".into(),
                detail: e.to_string(),
            })?;
        debug_assert!(decoded == *self, "a decoded manifest equals its source");
        Ok(w.sink)
    }

    /// Decodes and validates manifest bytes. `base_offset` is the manifest's file offset, used to
    /// report absolute offsets in errors.
    ///
    /// The bytes must be canonical: the decoder rejects every non-canonical form it meets, and
    /// the decoded manifest is then encoded again and compared with `bytes`.
    pub fn from_bytes(
        bytes: &[u8],
        base_offset: u64,
        limits: &Limits,
    ) -> Result<Manifest, ReadError> {
        let manifest = decode_manifest(bytes, limits)
            .map_err(|e| e.into_read_error("manifest", base_offset))?;
        let mut w = CborWriter::new(Compare::new(bytes));
        encode_manifest(&mut w, &manifest, limits).map_err(|e| ReadError::Schema {
            section: "manifest",
            offset: base_offset,
            path: "manifest".into(),
            what: format!("cannot be re-encoded: {e}"),
        })?;
        if let Err(at) = w.sink.finish() {
            return Err(ReadError::Cbor {
                section: "manifest",
                offset: base_offset + at as u64,
                what: "not the canonical encoding of its content".into(),
            });
        }
        Ok(manifest)
    }
}

pub(crate) fn cbor_error(section: &'static str, base: u64, e: CborError) -> ReadError {
    let offset = base + e.offset as u64;
    match e.kind {
        CborErrorKind::TooManyItems { limit } => ReadError::LimitExceeded {
            what: "max_cbor_items",
            value: (limit as u64).saturating_add(1),
            limit: limit as u64,
            offset,
        },
        CborErrorKind::TooDeep { limit } => ReadError::LimitExceeded {
            what: "max_cbor_depth",
            value: (limit as u64).saturating_add(1),
            limit: limit as u64,
            offset,
        },
        CborErrorKind::BignumTooLarge { len, limit } => ReadError::LimitExceeded {
            what: "max_bigint_bytes",
            value: len as u64,
            limit: limit as u64,
            offset,
        },
        kind => ReadError::Cbor {
            section,
            offset,
            what: kind.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A schema violation or a CBOR error, with the path built up as the error returns through the
/// structure.
#[derive(Debug)]
pub(crate) struct SchemaError {
    offset: usize,
    /// Innermost segment first.
    path: Vec<String>,
    kind: SchemaErrorKind,
}

#[derive(Debug)]
enum SchemaErrorKind {
    Schema(String),
    Limit {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    Cbor(CborError),
}

/// Results of schema decoding. The error is boxed: results travel through every step of the
/// decoder, and a small error keeps them small.
pub(crate) type R<T> = Result<T, Box<SchemaError>>;

impl SchemaError {
    /// A schema violation at `offset`.
    pub(crate) fn new(offset: usize, what: impl Into<String>) -> Box<SchemaError> {
        Box::new(SchemaError {
            offset,
            path: Vec::new(),
            kind: SchemaErrorKind::Schema(what.into()),
        })
    }

    /// A limit of [`Limits`] exceeded at `offset`.
    pub(crate) fn limit(offset: usize, what: &'static str, value: u64, limit: u64) -> Box<Self> {
        Box::new(SchemaError {
            offset,
            path: Vec::new(),
            kind: SchemaErrorKind::Limit { what, value, limit },
        })
    }

    /// The CBOR error this is, if it is one.
    pub(crate) fn cbor(&self) -> Option<&CborError> {
        match &self.kind {
            SchemaErrorKind::Cbor(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn into_read_error(self, section: &'static str, base: u64) -> ReadError {
        let offset = base + self.offset as u64;
        let what = match self.kind {
            SchemaErrorKind::Cbor(e) => return cbor_error(section, base, e),
            SchemaErrorKind::Limit { what, value, limit } => {
                return ReadError::LimitExceeded {
                    what,
                    value,
                    limit,
                    offset,
                };
            }
            SchemaErrorKind::Schema(what) => what,
        };
        let mut path = String::new();
        for seg in self.path.iter().rev() {
            if !seg.starts_with('[') && !path.is_empty() {
                path.push('.');
            }
            path.push_str(seg);
        }
        if path.is_empty() {
            path.push_str("top level");
        }
        ReadError::Schema {
            section,
            offset,
            path,
            what,
        }
    }
}

impl From<CborError> for Box<SchemaError> {
    fn from(e: CborError) -> Box<SchemaError> {
        Box::new(SchemaError {
            offset: e.offset,
            path: Vec::new(),
            kind: SchemaErrorKind::Cbor(e),
        })
    }
}

/// Adds an outer path segment to an error, for `map_err`.
pub(crate) fn at(segment: impl Into<String>) -> impl FnOnce(Box<SchemaError>) -> Box<SchemaError> {
    move |mut e| {
        e.path.push(segment.into());
        e
    }
}

/// Adds an index segment `[i]` to an error; the text is formatted only if there is an error.
pub(crate) fn at_index(i: usize) -> impl FnOnce(Box<SchemaError>) -> Box<SchemaError> {
    move |e| at(format!("[{i}]"))(e)
}

/// Adds a text key segment `["k"]` to an error, formatted only if there is an error.
fn at_key(k: &str) -> impl FnOnce(Box<SchemaError>) -> Box<SchemaError> + '_ {
    move |e| at(format!("[{k:?}]"))(e)
}

/// Reads a map key (the reader has checked it is text and in canonical order).
pub(crate) fn key<'a>(r: &mut Reader<'a>) -> R<(&'a str, usize)> {
    let start = r.pos();
    match r.next()? {
        Token::Text(k) => Ok((k, start)),
        _ => Err(SchemaError::new(start, "expected a text key")),
    }
}

pub(crate) fn uint(r: &mut Reader<'_>) -> R<u64> {
    let start = r.pos();
    match r.next()? {
        Token::Uint(n) => Ok(n),
        _ => Err(SchemaError::new(start, "expected an unsigned integer")),
    }
}

pub(crate) fn text<'a>(r: &mut Reader<'a>) -> R<&'a str> {
    let start = r.pos();
    match r.next()? {
        Token::Text(s) => Ok(s),
        _ => Err(SchemaError::new(start, "expected a text string")),
    }
}

pub(crate) fn bytes<'a>(r: &mut Reader<'a>) -> R<&'a [u8]> {
    let start = r.pos();
    match r.next()? {
        Token::Bytes(b) => Ok(b),
        _ => Err(SchemaError::new(start, "expected a byte string")),
    }
}

pub(crate) fn float(r: &mut Reader<'_>) -> R<f64> {
    let start = r.pos();
    match r.next()? {
        Token::Float(f) => Ok(f),
        _ => Err(SchemaError::new(start, "expected a float")),
    }
}

/// Reads an array head; returns its length.
pub(crate) fn array(r: &mut Reader<'_>) -> R<usize> {
    let start = r.pos();
    match r.next()? {
        Token::Array(n) => Ok(n),
        _ => Err(SchemaError::new(start, "expected an array")),
    }
}

/// Reads a map head; returns its number of entries. `what` names the map in the error.
pub(crate) fn map(r: &mut Reader<'_>, what: &str) -> R<usize> {
    let start = r.pos();
    match r.next()? {
        Token::Map(n) => Ok(n),
        _ => Err(SchemaError::new(start, format!("{what} must be a map"))),
    }
}

pub(crate) fn digest(r: &mut Reader<'_>) -> R<Digest> {
    let start = r.pos();
    bytes(r)?
        .try_into()
        .map_err(|_| SchemaError::new(start, "a SHA-256 digest must be 32 bytes"))
}

fn digests(r: &mut Reader<'_>) -> R<Vec<Digest>> {
    let n = array(r)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(digest(r)?);
    }
    Ok(out)
}

fn uints(r: &mut Reader<'_>) -> R<Vec<u64>> {
    let n = array(r)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(uint(r)?);
    }
    Ok(out)
}

/// The error for a required field that is absent from the map at `map_at`.
pub(crate) fn missing(map_at: usize, field: &str) -> Box<SchemaError> {
    SchemaError::new(map_at, format!("missing field {field:?}"))
}

/// 2 when a blob is plane-coded, else 1: the oldest version that can hold the blobs.
fn version_of(blobs: &[BlobEntry]) -> u32 {
    let planes = blobs.iter().any(|b| {
        b.codec
            .as_ref()
            .is_some_and(|c| matches!(c.encoding, Encoding::Planes { .. }))
    });
    if planes { 2 } else { 1 }
}

pub(crate) fn unknown_field(key_at: usize, key: &str, what: &str) -> Box<SchemaError> {
    SchemaError::new(key_at, format!("unknown field {key:?} in {what}"))
}

/// The CBOR bounds for a manifest under `limits`.
fn cbor_limits(limits: &Limits) -> DecodeLimits {
    DecodeLimits {
        max_depth: limits.max_cbor_depth(),
        max_items: limits.max_cbor_items,
        max_bigint_bytes: limits.max_bigint_bytes,
    }
}

fn decode_manifest(bytes: &[u8], limits: &Limits) -> R<Manifest> {
    let mut r = Reader::new(bytes, cbor_limits(limits));
    let n = map(&mut r, "manifest")?;
    let (mut root, mut blobs, mut version, mut metadata, mut ext) = (None, None, None, None, None);
    for _ in 0..n {
        let (k, key_at) = key(&mut r)?;
        match k {
            "ext" => ext = Some(decode_ext(&mut r).map_err(at("ext"))?),
            "root" => {
                let root_at = r.pos();
                let mut tree = decode_tree::TreeDecoder::new(&mut r, limits, None);
                let node = tree.decode()?;
                root = Some((node, root_at, tree.into_uses()));
            }
            "blobs" => blobs = Some(decode_blobs(&mut r, limits).map_err(at("blobs"))?),
            "version" => {
                let start = r.pos();
                // Keys are in canonical order, so the blobs are known by now.
                let expected = version_of(blobs.as_deref().unwrap_or_default());
                if uint(&mut r).map_err(at("version"))? != u64::from(expected) {
                    return Err(at("version")(SchemaError::new(
                        start,
                        format!(
                            "version must be {expected}: 2 exactly when a blob is plane-coded, else 1"
                        ),
                    )));
                }
                version = Some(());
            }
            "metadata" => {
                metadata = Some(decode_metadata(&mut r, limits).map_err(at("metadata"))?);
            }
            other => return Err(unknown_field(key_at, other, "manifest")),
        }
    }
    r.finish()?;
    version.ok_or_else(|| missing(0, "version"))?;
    let blobs = blobs.ok_or_else(|| missing(0, "blobs"))?;
    let (root, root_at, uses) = root.ok_or_else(|| missing(0, "root"))?;
    let metadata = metadata.ok_or_else(|| missing(0, "metadata"))?;

    // The tree comes before the blob table in canonical order, so its tensors were checked
    // against the blobs only now. If one does not fit, read the tree again with the table known:
    // that finds the first such tensor and reports it with its path, as any other tree error.
    let lengths: Vec<u64> = blobs.iter().map(BlobEntry::logical_length).collect();
    let mut referenced = vec![false; blobs.len()];
    let fits = uses.iter().all(|&(b, size)| {
        usize::try_from(b)
            .ok()
            .filter(|&i| lengths.get(i) == Some(&size))
            .map(|i| referenced[i] = true)
            .is_some()
    });
    if !fits {
        let mut again = Reader::resume_at(bytes, root_at, cbor_limits(limits));
        let mut tree = decode_tree::TreeDecoder::new(&mut again, limits, Some(&lengths));
        return Err(match tree.decode() {
            Err(e) => e,
            Ok(_) => SchemaError::new(root_at, "a tensor does not match its blob"),
        });
    }
    if let Some(i) = referenced.iter().position(|r| !r) {
        return Err(at("root")(SchemaError::new(
            root_at,
            format!("blob {i} is not referenced by any tensor"),
        )));
    }
    Ok(Manifest {
        root,
        blobs,
        metadata,
        ext: ext.unwrap_or_default(),
    })
}

fn decode_blobs(r: &mut Reader<'_>, limits: &Limits) -> R<Vec<BlobEntry>> {
    let n = array(r)?;
    let mut blobs: Vec<BlobEntry> = Vec::with_capacity(n);
    let mut expected_offset = ALIGN;
    let mut logical: u64 = 0;
    for i in 0..n {
        let blob_at = r.pos();
        let blob = decode_blob(r, expected_offset, limits).map_err(at_index(i))?;
        // Spec §8: bounds the decoding a file can ask for, checked before any blob is read.
        logical = logical.saturating_add(blob.logical_length());
        if logical > limits.max_logical_length {
            return Err(SchemaError::limit(
                blob_at,
                "max_logical_length",
                logical,
                limits.max_logical_length,
            ));
        }
        expected_offset = limits::align_up(blob.end())
            .filter(|&o| o <= limits.max_file_length)
            .ok_or_else(|| {
                at_index(i)(SchemaError::new(
                    blob_at,
                    "blob ends past the maximum file length",
                ))
            })?;
        blobs.push(blob);
    }
    Ok(blobs)
}

/// A codec as read, checked against the blob's length once that is known.
struct CodecFields {
    at: usize,
    name: Option<(String, usize)>,
    group: Option<(u64, usize)>,
    layout: Option<(u64, usize)>,
    frames: Option<(Vec<u64>, usize)>,
    raw_length: Option<(u64, usize)>,
    raw_sha256: Option<(Vec<Digest>, usize)>,
}

fn decode_blob(r: &mut Reader<'_>, expected_offset: u64, limits: &Limits) -> R<BlobEntry> {
    let map_at = r.pos();
    let n = map(r, "blob")?;
    let (mut offset, mut length, mut sha256, mut codec) = (None, None, None, None);
    for _ in 0..n {
        let (k, key_at) = key(r)?;
        let value_at = r.pos();
        match k {
            "codec" => codec = Some(read_codec(r).map_err(at("codec"))?),
            "length" => length = Some((uint(r).map_err(at("length"))?, value_at)),
            "offset" => offset = Some((uint(r).map_err(at("offset"))?, value_at)),
            "sha256" => sha256 = Some((digests(r).map_err(at("sha256"))?, value_at)),
            other => return Err(unknown_field(key_at, other, "blob")),
        }
    }
    let (offset, offset_at) = offset.ok_or_else(|| missing(map_at, "offset"))?;
    if offset != expected_offset {
        return Err(at("offset")(SchemaError::new(
            offset_at,
            format!("blob starts at {offset}, but the layout puts it at {expected_offset}"),
        )));
    }
    let (length, length_at) = length.ok_or_else(|| missing(map_at, "length"))?;
    if length == 0 {
        return Err(at("length")(SchemaError::new(
            length_at,
            "blob length must be at least 1",
        )));
    }
    if offset
        .checked_add(length)
        .is_none_or(|end| end > limits.max_file_length)
    {
        return Err(at("length")(SchemaError::new(
            length_at,
            "blob extends past the maximum file length",
        )));
    }
    let (sha256, sha_at) = sha256.ok_or_else(|| missing(map_at, "sha256"))?;
    let codec = match codec {
        None => {
            if sha256.len() as u64 != limits::chunk_count(length) {
                return Err(at("sha256")(SchemaError::new(
                    sha_at,
                    format!(
                        "a raw blob of {length} bytes has {} chunks, but {} digests are listed",
                        limits::chunk_count(length),
                        sha256.len()
                    ),
                )));
            }
            None
        }
        Some(c) => {
            let codec = check_codec(c, length).map_err(at("codec"))?;
            if sha256.len() != codec.frames.len() {
                return Err(at("sha256")(SchemaError::new(
                    sha_at,
                    "one digest per frame is required",
                )));
            }
            Some(codec)
        }
    };
    Ok(BlobEntry {
        offset,
        length,
        sha256,
        codec,
    })
}

fn read_codec(r: &mut Reader<'_>) -> R<CodecFields> {
    let mut c = CodecFields {
        at: r.pos(),
        name: None,
        group: None,
        layout: None,
        frames: None,
        raw_length: None,
        raw_sha256: None,
    };
    let n = map(r, "codec")?;
    for _ in 0..n {
        let (k, key_at) = key(r)?;
        let value_at = r.pos();
        match k {
            "name" => c.name = Some((text(r).map_err(at("name"))?.to_string(), value_at)),
            "group" => c.group = Some((uint(r).map_err(at("group"))?, value_at)),
            "layout" => c.layout = Some((uint(r).map_err(at("layout"))?, value_at)),
            "frames" => c.frames = Some((uints(r).map_err(at("frames"))?, value_at)),
            "raw_length" => c.raw_length = Some((uint(r).map_err(at("raw_length"))?, value_at)),
            "raw_sha256" => {
                c.raw_sha256 = Some((digests(r).map_err(at("raw_sha256"))?, value_at));
            }
            other => return Err(unknown_field(key_at, other, "codec")),
        }
    }
    Ok(c)
}

fn check_codec(c: CodecFields, length: u64) -> R<BlobCodec> {
    let (name, name_at) = c.name.ok_or_else(|| missing(c.at, "name"))?;
    let (encoding, width) = match name.as_str() {
        "zstd" => {
            if let Some((_, layout_at)) = c.layout {
                return Err(unknown_field(layout_at, "layout", "zstd codec"));
            }
            let (group, group_at) = c.group.ok_or_else(|| missing(c.at, "group"))?;
            if ![1, 2, 4, 8, 16].contains(&group) {
                return Err(at("group")(SchemaError::new(
                    group_at,
                    "group must be 1, 2, 4, 8 or 16",
                )));
            }
            (Encoding::Zstd { group: group as u8 }, group)
        }
        "planes" => {
            if let Some((_, group_at)) = c.group {
                return Err(unknown_field(group_at, "group", "planes codec"));
            }
            let (id, layout_at) = c.layout.ok_or_else(|| missing(c.at, "layout"))?;
            let layout = u8::try_from(id)
                .ok()
                .and_then(crate::planes::PlaneLayout::from_id)
                .ok_or_else(|| {
                    at("layout")(SchemaError::new(
                        layout_at,
                        "layout must be 1, 2, 4, 8, 0x82 or 0x84",
                    ))
                })?;
            (Encoding::Planes { layout }, layout.width() as u64)
        }
        _ => {
            return Err(at("name")(SchemaError::new(
                name_at,
                format!("unknown codec {name:?}"),
            )));
        }
    };
    let (raw_length, raw_at) = c.raw_length.ok_or_else(|| missing(c.at, "raw_length"))?;
    if raw_length == 0 || !raw_length.is_multiple_of(width) || raw_length > limits::MAX_SIZE {
        return Err(at("raw_length")(SchemaError::new(
            raw_at,
            "raw_length must be positive, at most 2^62 and a whole number of elements",
        )));
    }
    let chunks = limits::chunk_count(raw_length);
    let (frames, frames_at) = c.frames.ok_or_else(|| missing(c.at, "frames"))?;
    let mut total: u64 = 0;
    for &frame in &frames {
        if frame == 0 {
            return Err(at("frames")(SchemaError::new(
                frames_at,
                "a frame cannot be empty",
            )));
        }
        total = total.saturating_add(frame);
    }
    if frames.len() as u64 != chunks || total != length {
        return Err(at("frames")(SchemaError::new(
            frames_at,
            format!(
                "{} frames totalling {total} bytes; expected {chunks} frames totalling {length}",
                frames.len()
            ),
        )));
    }
    let (raw_sha256, raw_sha_at) = c.raw_sha256.ok_or_else(|| missing(c.at, "raw_sha256"))?;
    if raw_sha256.len() as u64 != chunks {
        return Err(at("raw_sha256")(SchemaError::new(
            raw_sha_at,
            "one digest per logical chunk is required",
        )));
    }
    Ok(BlobCodec {
        encoding,
        frames,
        raw_length,
        raw_sha256,
    })
}

fn decode_metadata(r: &mut Reader<'_>, limits: &Limits) -> R<BTreeMap<String, String>> {
    let map_at = r.pos();
    let n = map(r, "metadata")?;
    if n > limits.max_metadata_entries {
        return Err(SchemaError::limit(
            map_at,
            "max_metadata_entries",
            n as u64,
            limits.max_metadata_entries as u64,
        ));
    }
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let (k, _) = key(r)?;
        let value_at = r.pos();
        // Rendered like a dict key, `metadata["step"]`.
        let value = text(r).map_err(at_key(k))?;
        check_metadata_entry(k, value)
            .map_err(|what| at_key(k)(SchemaError::new(value_at, what)))?;
        out.insert(k.to_string(), value.to_string());
    }
    Ok(out)
}

fn decode_ext(r: &mut Reader<'_>) -> R<BTreeMap<String, Vec<u8>>> {
    let map_at = r.pos();
    let n = map(r, "ext")?;
    if n == 0 {
        return Err(SchemaError::new(
            map_at,
            "ext must be absent rather than empty",
        ));
    }
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let (k, _) = key(r)?;
        let start = r.pos();
        r.skip()?;
        out.insert(k.to_string(), r.input()[start..r.pos()].to_vec());
    }
    Ok(out)
}

/// The path segment for a dict value: text keys quoted, others rendered.
fn key_segment(key: &Node) -> String {
    match key {
        Node::Str(s) => format!("[{s:?}]"),
        other => format!("[{}]", crate::tree::PathSegment::Key(other)),
    }
}

/// Adds one to a big-endian magnitude (tag 3 holds `-1 - n`, the value's magnitude is `n + 1`).
fn add_one(m: &[u8]) -> Vec<u8> {
    let mut out = m.to_vec();
    for b in out.iter_mut().rev() {
        let (v, carry) = b.overflowing_add(1);
        *b = v;
        if !carry {
            return out;
        }
    }
    out.insert(0, 1);
    out
}

/// Subtracts one from a big-endian magnitude that is at least 1.
fn sub_one(m: &[u8]) -> Vec<u8> {
    let mut out = m.to_vec();
    for b in out.iter_mut().rev() {
        let (v, borrow) = b.overflowing_sub(1);
        *b = v;
        if !borrow {
            break;
        }
    }
    let start = out.iter().position(|&b| b != 0).unwrap_or(out.len());
    out.split_off(start)
}

/// Whether `s` is a device string a `torch.device` typed value may hold (spec §3.7): `type` or
/// `type:index`, e.g. `cpu`, `cuda:0`.
pub fn is_device_name(s: &str) -> bool {
    let (ty, index) = match s.split_once(':') {
        Some((t, i)) => (t, Some(i)),
        None => (s, None),
    };
    let ty_ok = ty.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && ty
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let index_ok = index.is_none_or(|i| {
        !i.is_empty()
            && i.len() <= 10
            && i.bytes().all(|b| b.is_ascii_digit())
            && (i == "0" || !i.starts_with('0'))
    });
    ty_ok && index_ok
}

/// Checks one metadata entry against spec §5.
pub fn check_metadata_entry(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > limits::MAX_METADATA_KEY {
        return Err("metadata keys must be 1 to 256 bytes".into());
    }
    if value.len() > limits::MAX_METADATA_VALUE {
        return Err("metadata values must be at most 65536 bytes".into());
    }
    let ok = match key {
        "step" => parse_step(value).is_some(),
        "source_sha256" => {
            value.len() == 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        "created_at" => valid_timestamp(value),
        "source_format" => matches!(
            value,
            "torch-zip"
                | "torch-legacy"
                | "pickle"
                | "npy"
                | "npz"
                | "safetensors"
                | "hf-index"
                | "dcp"
        ),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid value for the well-known key {key:?}"
        ))
    }
}

/// Parses the `step` metadata: a decimal u64 without leading zeros.
pub fn parse_step(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

fn valid_timestamp(s: &str) -> bool {
    // YYYY-MM-DDTHH:MM:SSZ
    let b = s.as_bytes();
    if b.len() != 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(99);
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'Z'
        && (1..=12).contains(&num(5..7))
        && (1..=31).contains(&num(8..10))
        && num(11..13) <= 23
        && num(14..16) <= 59
        && num(17..19) <= 60
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::tree::{Int, Tensor};

    #[test]
    fn canonical_bytes_match_equality_and_bound_depth() {
        let limits = Limits::default();
        let enc = |n: &Node| n.canonical_bytes(&limits).unwrap();
        // Bitwise float semantics, like `==`: NaN equals itself, 0.0 differs from -0.0.
        assert_eq!(enc(&Node::Float(f64::NAN)), enc(&Node::Float(f64::NAN)));
        assert_ne!(enc(&Node::Float(0.0)), enc(&Node::Float(-0.0)));
        assert_eq!(enc(&Node::Int(1i64.into())), [0x01]);
        assert_ne!(enc(&Node::Int(1i64.into())), enc(&Node::Bool(true)));
        let tuple = Node::Tuple(vec![Node::Str("x".into()), Node::None]);
        assert_eq!(
            enc(&tuple),
            [
                0xa1, 0x65, b't', b'u', b'p', b'l', b'e', 0x82, 0x61, b'x', 0xf6
            ]
        );
        let mut deep = Node::None;
        for _ in 0..limits.max_tree_depth {
            deep = Node::List(vec![deep]);
        }
        assert!(matches!(
            deep.canonical_bytes(&limits),
            Err(WriteError::Invalid { what: "tree", .. })
        ));
    }

    fn blob(offset: u64, length: u64) -> BlobEntry {
        BlobEntry {
            offset,
            length,
            sha256: vec![[7; 32]; limits::chunk_count(length) as usize],
            codec: None,
        }
    }

    fn tensor(dtype: DType, shape: Vec<u64>, blob: Option<usize>) -> Node {
        Node::Tensor(Box::new(Tensor::new(dtype, shape, blob)))
    }

    fn sample() -> Manifest {
        let mut metadata = BTreeMap::new();
        metadata.insert("step".into(), "1200".into());
        metadata.insert("run_id".into(), "r1".into());
        Manifest {
            root: Node::Dict(vec![
                (
                    Node::Str("w".into()),
                    tensor(DType::F32, vec![2, 3], Some(0)),
                ),
                (
                    Node::Int(0i64.into()),
                    tensor(DType::BF16, vec![5], Some(1)),
                ),
                (
                    Node::Str("tied".into()),
                    tensor(DType::F32, vec![6], Some(0)),
                ),
                (
                    Node::Str("empty".into()),
                    tensor(DType::I64, vec![0, 3], None),
                ),
                (
                    Node::Tuple(vec![Node::Int(1i64.into()), Node::Str("x".into())]),
                    Node::List(vec![Node::Float(f64::NAN), Node::Float(-0.0), Node::None]),
                ),
            ]),
            blobs: vec![blob(64, 24), blob(128, 10)],
            metadata,
            ext: BTreeMap::new(),
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let bytes = m.to_bytes(&Limits::default()).unwrap();
        let back = Manifest::from_bytes(&bytes, 0, &Limits::default()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn big_ints_round_trip() {
        let mut m = sample();
        let two_64 = Int::from_sign_magnitude(false, &[1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let minus_two_64 = Int::from_sign_magnitude(true, &[1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let minus_two_64_1 = Int::from_sign_magnitude(true, &[1, 0, 0, 0, 0, 0, 0, 0, 1]);
        m.root = Node::List(vec![
            Node::Int(two_64),
            Node::Int(minus_two_64),
            Node::Int(minus_two_64_1),
            Node::Int(Int::from(u64::MAX)),
            Node::Int(Int::from(i64::MIN)),
        ]);
        m.blobs.clear();
        let bytes = m.to_bytes(&Limits::default()).unwrap();
        assert_eq!(
            Manifest::from_bytes(&bytes, 0, &Limits::default()).unwrap(),
            m
        );
    }

    fn schema_error(m: &Manifest) -> String {
        m.to_bytes(&Limits::default()).unwrap_err().to_string()
    }

    #[test]
    fn rejects_inconsistent_blobs() {
        let mut m = sample();
        m.blobs[1].offset = 96;
        assert!(
            schema_error(&m).contains("layout puts it at 128"),
            "{}",
            schema_error(&m)
        );
        let mut m = sample();
        m.root = Node::List(vec![tensor(DType::F32, vec![2, 3], Some(0))]);
        assert!(schema_error(&m).contains("blob 1 is not referenced"));
        let mut m = sample();
        m.root = Node::List(vec![
            tensor(DType::F32, vec![2, 2], Some(0)),
            tensor(DType::U8, vec![10], Some(1)),
        ]);
        assert!(schema_error(&m).contains("tensor is 16 bytes but blob 0 holds 24"));
    }

    #[test]
    fn rejects_unhashable_and_duplicate_keys() {
        let mut m = sample();
        m.blobs.clear();
        m.root = Node::Dict(vec![(Node::List(vec![]), Node::None)]);
        assert!(schema_error(&m).contains("cannot be a dict key"));
        m.root = Node::Dict(vec![
            (Node::Int(1i64.into()), Node::None),
            (Node::Int(1i64.into()), Node::None),
        ]);
        assert!(schema_error(&m).contains("duplicate dict key"));
        m.root = Node::Set(vec![Node::Str("a".into()), Node::Str("a".into())]);
        assert!(schema_error(&m).contains("duplicate set element"));
    }

    #[test]
    fn rejects_bad_metadata_and_deep_trees() {
        let mut m = sample();
        m.metadata.insert("step".into(), "012".into());
        assert!(schema_error(&m).contains("well-known key \"step\""));
        let mut m = sample();
        m.blobs.clear();
        let mut deep = Node::None;
        for _ in 0..200 {
            deep = Node::List(vec![deep]);
        }
        m.root = deep;
        assert!(schema_error(&m).contains("max_tree_depth"));
    }

    #[test]
    fn devices_and_timestamps() {
        for ok in ["cpu", "cuda:0", "cuda:12", "xpu", "privateuseone:3"] {
            assert!(is_device_name(ok), "{ok}");
        }
        for bad in [
            "", "CUDA", "cuda:", "cuda:01", "cuda:x", "1cuda", "cuda:0:1",
        ] {
            assert!(!is_device_name(bad), "{bad}");
        }
        assert!(valid_timestamp("2026-11-22T10:00:00Z"));
        assert!(!valid_timestamp("2026-13-22T10:00:00Z"));
        assert!(!valid_timestamp("2026-11-22 10:00:00Z"));
    }
}
