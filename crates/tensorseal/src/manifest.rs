//! The manifest (spec §3): blob table, checkpoint tree, metadata and extension area, with its
//! canonical encoding and a decoder that checks every rule of the schema.

use crate::cbor::{self, CborError, CborErrorKind, CborWriter, DecodeLimits, Item, Value};
use crate::dtype::{self, DType};
use crate::error::{ReadError, WriteError};
use crate::limits::{self, ALIGN, CHUNK, Limits};
use crate::tree::{Global, Int, Node, Object, Tensor, TensorKind, Typed};
use std::collections::{BTreeMap, HashSet};

/// The only format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

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
    pub codec: Option<ZstdCodec>,
}

/// A blob stored as zstd frames of byte-grouped chunks (spec §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZstdCodec {
    /// Byte-grouping width: 1, 2, 4, 8 or 16.
    pub group: u8,
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

    /// The name of the encoding, as `inspect` shows it: `raw` or `zstd` / `zstd+group<N>`.
    pub fn encoding_name(&self) -> String {
        match &self.codec {
            None => "raw".to_string(),
            Some(c) if c.group == 1 => "zstd".to_string(),
            Some(c) => format!("zstd+group{}", c.group),
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

    /// Encodes the manifest canonically and checks the result against every rule a reader
    /// applies, so a writer can never produce a file the reader rejects.
    pub fn to_bytes(&self, limits: &Limits) -> Result<Vec<u8>, WriteError> {
        let mut w = CborWriter::default();
        encode_manifest(&mut w, self, limits)?;
        let decoded = Manifest::from_bytes(&w.buf, 0, limits).map_err(|e| WriteError::Invalid {
            what: "manifest",
            path: "manifest".into(),
            detail: e.to_string(),
        })?;
        debug_assert_eq!(&decoded, self);
        Ok(w.buf)
    }

    /// Decodes and validates manifest bytes. `base_offset` is the manifest's file offset, used to
    /// report absolute offsets in errors.
    ///
    /// The bytes must be canonical: after decoding, the manifest is re-encoded and compared.
    pub fn from_bytes(
        bytes: &[u8],
        base_offset: u64,
        limits: &Limits,
    ) -> Result<Manifest, ReadError> {
        let cbor_limits = DecodeLimits {
            max_depth: limits.max_cbor_depth,
            max_items: limits.max_cbor_items,
            max_bigint_bytes: limits.max_bigint_bytes,
        };
        let item =
            cbor::decode(bytes, cbor_limits).map_err(|e| cbor_error("manifest", base_offset, e))?;
        let mut d = SchemaDecoder {
            input: bytes,
            limits,
            blob_lengths: Vec::new(),
            referenced: Vec::new(),
        };
        let manifest = d
            .manifest(&item)
            .map_err(|e| e.into_read_error("manifest", base_offset))?;
        // Sized for the expected output so that re-encoding never reallocates and copies.
        let mut w = CborWriter {
            buf: Vec::with_capacity(bytes.len()),
        };
        encode_manifest(&mut w, &manifest, limits).map_err(|e| ReadError::Schema {
            section: "manifest",
            offset: base_offset,
            path: "manifest".into(),
            what: format!("cannot be re-encoded: {e}"),
        })?;
        if w.buf != bytes {
            let at = w
                .buf
                .iter()
                .zip(bytes)
                .position(|(a, b)| a != b)
                .unwrap_or(w.buf.len().min(bytes.len()));
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

/// A schema violation, with the path built up as the error returns through the tree.
pub(crate) struct SchemaError {
    offset: usize,
    path: Vec<String>,
    what: String,
    limit: Option<(&'static str, u64, u64)>,
}

impl SchemaError {
    fn new(item: &Item<'_>, what: impl Into<String>) -> Self {
        Self {
            offset: item.offset,
            path: Vec::new(),
            what: what.into(),
            limit: None,
        }
    }

    /// An error at `item`, for other modules decoding schema'd CBOR.
    pub(crate) fn new_pub(item: &Item<'_>, what: impl Into<String>) -> Self {
        Self::new(item, what)
    }

    pub(crate) fn at(mut self, segment: impl Into<String>) -> Self {
        self.path.push(segment.into());
        self
    }

    pub(crate) fn into_read_error(self, section: &'static str, base: u64) -> ReadError {
        let offset = base + self.offset as u64;
        if let Some((what, value, limit)) = self.limit {
            return ReadError::LimitExceeded {
                what,
                value,
                limit,
                offset,
            };
        }
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
            what: self.what,
        }
    }
}

type R<T> = Result<T, SchemaError>;

/// The fields of a CBOR map, checked against the keys a schema allows.
pub(crate) struct Fields<'i, 'a> {
    map: &'i Item<'a>,
    entries: Vec<(&'a str, &'i Item<'a>)>,
}

impl<'i, 'a> Fields<'i, 'a> {
    pub(crate) fn new(item: &'i Item<'a>, allowed: &[&str], what: &str) -> R<Self> {
        let Value::Map(entries) = &item.value else {
            return Err(SchemaError::new(item, format!("{what} must be a map")));
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let Value::Text(key) = k.value else {
                return Err(SchemaError::new(k, format!("{what} keys must be text")));
            };
            if !allowed.contains(&key) {
                return Err(SchemaError::new(
                    k,
                    format!("unknown field {key:?} in {what}"),
                ));
            }
            out.push((key, v));
        }
        Ok(Self {
            map: item,
            entries: out,
        })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'i Item<'a>> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    pub(crate) fn require(&self, key: &str) -> R<&'i Item<'a>> {
        self.get(key)
            .ok_or_else(|| SchemaError::new(self.map, format!("missing field {key:?}")))
    }
}

pub(crate) fn uint(item: &Item<'_>) -> R<u64> {
    match item.value {
        Value::Uint(n) => Ok(n),
        _ => Err(SchemaError::new(item, "expected an unsigned integer")),
    }
}

pub(crate) fn text<'a>(item: &Item<'a>) -> R<&'a str> {
    match item.value {
        Value::Text(s) => Ok(s),
        _ => Err(SchemaError::new(item, "expected a text string")),
    }
}

pub(crate) fn bytes<'a>(item: &Item<'a>) -> R<&'a [u8]> {
    match item.value {
        Value::Bytes(b) => Ok(b),
        _ => Err(SchemaError::new(item, "expected a byte string")),
    }
}

pub(crate) fn array<'i, 'a>(item: &'i Item<'a>) -> R<&'i [Item<'a>]> {
    match &item.value {
        Value::Array(items) => Ok(items),
        _ => Err(SchemaError::new(item, "expected an array")),
    }
}

pub(crate) fn digest(item: &Item<'_>) -> R<Digest> {
    bytes(item)?
        .try_into()
        .map_err(|_| SchemaError::new(item, "a SHA-256 digest must be 32 bytes"))
}

fn float(item: &Item<'_>) -> R<f64> {
    match item.value {
        Value::Float(f) => Ok(f),
        _ => Err(SchemaError::new(item, "expected a float")),
    }
}

fn limit_error(item: &Item<'_>, what: &'static str, value: u64, limit: u64) -> SchemaError {
    let mut e = SchemaError::new(item, what);
    e.limit = Some((what, value, limit));
    e
}

struct SchemaDecoder<'l, 'a> {
    input: &'a [u8],
    limits: &'l Limits,
    blob_lengths: Vec<u64>,
    referenced: Vec<bool>,
}

impl<'a> SchemaDecoder<'_, 'a> {
    fn manifest(&mut self, item: &Item<'a>) -> R<Manifest> {
        let f = Fields::new(
            item,
            &["ext", "root", "blobs", "version", "metadata"],
            "manifest",
        )?;
        let version = f.require("version")?;
        if uint(version)? != u64::from(FORMAT_VERSION) {
            return Err(SchemaError::new(version, "version must be 1").at("version"));
        }
        let blobs = self.blobs(f.require("blobs")?).map_err(|e| e.at("blobs"))?;
        self.blob_lengths = blobs.iter().map(BlobEntry::logical_length).collect();
        self.referenced = vec![false; blobs.len()];
        let root_item = f.require("root")?;
        let root = self.node(root_item, 1).map_err(|e| e.at("root"))?;
        if let Some(i) = self.referenced.iter().position(|r| !r) {
            return Err(SchemaError::new(
                root_item,
                format!("blob {i} is not referenced by any tensor"),
            )
            .at("root"));
        }
        let metadata = self
            .metadata(f.require("metadata")?)
            .map_err(|e| e.at("metadata"))?;
        let ext = match f.get("ext") {
            None => BTreeMap::new(),
            Some(ext) => self.ext(ext).map_err(|e| e.at("ext"))?,
        };
        Ok(Manifest {
            root,
            blobs,
            metadata,
            ext,
        })
    }

    fn blobs(&mut self, item: &Item<'a>) -> R<Vec<BlobEntry>> {
        let items = array(item)?;
        let mut blobs: Vec<BlobEntry> = Vec::with_capacity(items.len());
        let mut expected_offset = ALIGN;
        for (i, b) in items.iter().enumerate() {
            let blob = self
                .blob(b, expected_offset)
                .map_err(|e| e.at(format!("[{i}]")))?;
            expected_offset = limits::align_up(blob.end())
                .filter(|&o| o <= self.limits.max_file_length)
                .ok_or_else(|| {
                    SchemaError::new(b, "blob ends past the maximum file length")
                        .at(format!("[{i}]"))
                })?;
            blobs.push(blob);
        }
        Ok(blobs)
    }

    fn blob(&mut self, item: &Item<'a>, expected_offset: u64) -> R<BlobEntry> {
        let f = Fields::new(item, &["codec", "length", "offset", "sha256"], "blob")?;
        let offset_item = f.require("offset")?;
        let offset = uint(offset_item).map_err(|e| e.at("offset"))?;
        if offset != expected_offset {
            return Err(SchemaError::new(
                offset_item,
                format!("blob starts at {offset}, but the layout puts it at {expected_offset}"),
            )
            .at("offset"));
        }
        let length_item = f.require("length")?;
        let length = uint(length_item).map_err(|e| e.at("length"))?;
        if length == 0 {
            return Err(
                SchemaError::new(length_item, "blob length must be at least 1").at("length"),
            );
        }
        if offset
            .checked_add(length)
            .is_none_or(|end| end > self.limits.max_file_length)
        {
            return Err(
                SchemaError::new(length_item, "blob extends past the maximum file length")
                    .at("length"),
            );
        }
        let sha_item = f.require("sha256")?;
        let sha256 = array(sha_item)
            .and_then(|items| items.iter().map(digest).collect::<R<Vec<_>>>())
            .map_err(|e| e.at("sha256"))?;
        let codec = match f.get("codec") {
            None => {
                if sha256.len() as u64 != limits::chunk_count(length) {
                    return Err(SchemaError::new(
                        sha_item,
                        format!(
                            "a raw blob of {length} bytes has {} chunks, but {} digests are listed",
                            limits::chunk_count(length),
                            sha256.len()
                        ),
                    )
                    .at("sha256"));
                }
                None
            }
            Some(c) => {
                let codec = self.codec(c, length).map_err(|e| e.at("codec"))?;
                if sha256.len() != codec.frames.len() {
                    return Err(
                        SchemaError::new(sha_item, "one digest per frame is required").at("sha256"),
                    );
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

    fn codec(&mut self, item: &Item<'a>, length: u64) -> R<ZstdCodec> {
        let f = Fields::new(
            item,
            &["name", "group", "frames", "raw_length", "raw_sha256"],
            "codec",
        )?;
        let name_item = f.require("name")?;
        let name = text(name_item).map_err(|e| e.at("name"))?;
        if name != "zstd" {
            return Err(SchemaError::new(name_item, format!("unknown codec {name:?}")).at("name"));
        }
        let group_item = f.require("group")?;
        let group = uint(group_item).map_err(|e| e.at("group"))?;
        if ![1, 2, 4, 8, 16].contains(&group) {
            return Err(SchemaError::new(group_item, "group must be 1, 2, 4, 8 or 16").at("group"));
        }
        let raw_item = f.require("raw_length")?;
        let raw_length = uint(raw_item).map_err(|e| e.at("raw_length"))?;
        if raw_length == 0 || !raw_length.is_multiple_of(group) || raw_length > limits::MAX_SIZE {
            return Err(SchemaError::new(
                raw_item,
                "raw_length must be positive, at most 2^62 and a multiple of group",
            )
            .at("raw_length"));
        }
        let chunks = limits::chunk_count(raw_length);
        let frames_item = f.require("frames")?;
        let frames = array(frames_item)
            .and_then(|items| items.iter().map(uint).collect::<R<Vec<_>>>())
            .map_err(|e| e.at("frames"))?;
        let mut total: u64 = 0;
        for &frame in &frames {
            if frame == 0 {
                return Err(SchemaError::new(frames_item, "a frame cannot be empty").at("frames"));
            }
            total = total.saturating_add(frame);
        }
        if frames.len() as u64 != chunks || total != length {
            return Err(SchemaError::new(
                frames_item,
                format!(
                    "{} frames totalling {total} bytes; expected {chunks} frames totalling {length}",
                    frames.len()
                ),
            )
            .at("frames"));
        }
        let raw_sha_item = f.require("raw_sha256")?;
        let raw_sha256 = array(raw_sha_item)
            .and_then(|items| items.iter().map(digest).collect::<R<Vec<_>>>())
            .map_err(|e| e.at("raw_sha256"))?;
        if raw_sha256.len() as u64 != chunks {
            return Err(
                SchemaError::new(raw_sha_item, "one digest per logical chunk is required")
                    .at("raw_sha256"),
            );
        }
        Ok(ZstdCodec {
            group: group as u8,
            frames,
            raw_length,
            raw_sha256,
        })
    }

    fn metadata(&mut self, item: &Item<'a>) -> R<BTreeMap<String, String>> {
        let Value::Map(entries) = &item.value else {
            return Err(SchemaError::new(item, "metadata must be a map"));
        };
        if entries.len() > self.limits.max_metadata_entries {
            return Err(limit_error(
                item,
                "max_metadata_entries",
                entries.len() as u64,
                self.limits.max_metadata_entries as u64,
            ));
        }
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let key = text(k)?;
            // Rendered like a dict key, `metadata["step"]`.
            let value = text(v).map_err(|e| e.at(format!("[{key:?}]")))?;
            check_metadata_entry(key, value)
                .map_err(|what| SchemaError::new(v, what).at(format!("[{key:?}]")))?;
            out.insert(key.to_string(), value.to_string());
        }
        Ok(out)
    }

    fn ext(&mut self, item: &Item<'a>) -> R<BTreeMap<String, Vec<u8>>> {
        let Value::Map(entries) = &item.value else {
            return Err(SchemaError::new(item, "ext must be a map"));
        };
        if entries.is_empty() {
            return Err(SchemaError::new(
                item,
                "ext must be absent rather than empty",
            ));
        }
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let key = text(k)?;
            out.insert(key.to_string(), self.input[v.offset..v.end].to_vec());
        }
        Ok(out)
    }

    fn deeper(&self, item: &Item<'a>, depth: usize) -> R<usize> {
        if depth >= self.limits.max_tree_depth {
            return Err(limit_error(
                item,
                "max_tree_depth",
                depth as u64 + 1,
                self.limits.max_tree_depth as u64,
            ));
        }
        Ok(depth + 1)
    }

    /// The nodes of an array item. Children sit one level deeper (spec §3.3). An empty
    /// container has none, so it may itself be at the maximum depth; otherwise the error names
    /// the first child too deep.
    fn nodes(&mut self, array_item: &Item<'a>, depth: usize) -> R<Vec<Node>> {
        let items = array(array_item)?;
        let Some(first) = items.first() else {
            return Ok(Vec::new());
        };
        let depth = self.deeper(first, depth)?;
        items
            .iter()
            .enumerate()
            .map(|(i, n)| self.node(n, depth).map_err(|e| e.at(format!("[{i}]"))))
            .collect()
    }

    /// Elements of a set or frozenset: hashable and distinct.
    fn keys(&mut self, array_item: &Item<'a>, depth: usize) -> R<Vec<Node>> {
        let nodes = self.nodes(array_item, depth)?;
        let items = array(array_item)?;
        let mut seen = HashSet::with_capacity(items.len());
        for (item, node) in items.iter().zip(&nodes) {
            if !node.is_hashable() {
                return Err(SchemaError::new(
                    item,
                    format!("a {} cannot be a set element", node.kind_name()),
                ));
            }
            if !seen.insert(&self.input[item.offset..item.end]) {
                return Err(SchemaError::new(item, "duplicate set element"));
            }
        }
        Ok(nodes)
    }

    fn pairs(&mut self, item: &Item<'a>, depth: usize) -> R<Vec<(Node, Node)>> {
        let entries = array(item)?;
        // As in `nodes`: an empty dict may sit at the maximum depth.
        let Some(first) = entries.first() else {
            return Ok(Vec::new());
        };
        let depth = self.deeper(first, depth)?;
        let mut out = Vec::with_capacity(entries.len());
        let mut seen = HashSet::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let pair = array(entry).map_err(|e| e.at(format!("[{i}]")))?;
            let [k, v] = pair else {
                return Err(
                    SchemaError::new(entry, "a dict entry must be a [key, value] pair")
                        .at(format!("[{i}]")),
                );
            };
            let key = self.node(k, depth).map_err(|e| e.at(format!("[{i}]")))?;
            if !key.is_hashable() {
                return Err(SchemaError::new(
                    k,
                    format!("a {} cannot be a dict key", key.kind_name()),
                )
                .at(format!("[{i}]")));
            }
            if !seen.insert(&self.input[k.offset..k.end]) {
                return Err(SchemaError::new(k, "duplicate dict key").at(format!("[{i}]")));
            }
            // The path segment is rendered only on error: formatting every key was a measurable
            // share of opening a manifest with thousands of tensors.
            let value = self.node(v, depth).map_err(|e| e.at(key_segment(&key)))?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// A dict node whose keys are all text: attributes, Namespace fields, keyword arguments.
    fn text_pairs(&mut self, item: &Item<'a>, depth: usize) -> R<Vec<(String, Node)>> {
        let wrapped = Fields::new(item, &["dict"], "attribute dict")?;
        let pairs = self.pairs(wrapped.require("dict")?, depth)?;
        pairs
            .into_iter()
            .map(|(k, v)| match k {
                Node::Str(s) => Ok((s, v)),
                other => Err(SchemaError::new(
                    item,
                    format!("attribute names must be text, found {}", other.kind_name()),
                )),
            })
            .collect()
    }

    fn node(&mut self, item: &Item<'a>, depth: usize) -> R<Node> {
        Ok(match &item.value {
            Value::Null => Node::None,
            Value::Bool(b) => Node::Bool(*b),
            Value::Uint(n) => Node::Int(Int::from(*n)),
            Value::Nint(n) => Node::Int(Int::from_sign_magnitude(
                true,
                &(u128::from(*n) + 1).to_be_bytes(),
            )),
            Value::BigPos(m) => Node::Int(Int::from_sign_magnitude(false, m)),
            Value::BigNeg(m) => Node::Int(Int::from_sign_magnitude(true, &add_one(m))),
            Value::Float(f) => Node::Float(*f),
            Value::Text(s) => Node::Str((*s).to_string()),
            Value::Bytes(b) => Node::Bytes(b.to_vec()),
            Value::Array(_) => Node::List(self.nodes(item, depth)?),
            Value::Map(entries) => {
                let [(k, v)] = entries.as_slice() else {
                    return Err(SchemaError::new(
                        item,
                        "a wrapped node must be a map with exactly one key",
                    ));
                };
                let kind = text(k)?;
                self.wrapped(kind, v, depth)
                    .map_err(|e| e.at(kind.to_string()))?
            }
        })
    }

    fn wrapped(&mut self, kind: &str, v: &Item<'a>, depth: usize) -> R<Node> {
        Ok(match kind {
            "tuple" => Node::Tuple(self.nodes(v, depth)?),
            "dict" => Node::Dict(self.pairs(v, depth)?),
            "set" => Node::Set(self.keys(v, depth)?),
            "frozenset" => Node::FrozenSet(self.keys(v, depth)?),
            "bytearray" => Node::ByteArray(bytes(v)?.to_vec()),
            "complex" => match array(v)? {
                [re, im] => Node::Complex(float(re)?, float(im)?),
                _ => return Err(SchemaError::new(v, "a complex is [real, imaginary]")),
            },
            "tensor" => Node::Tensor(Box::new(self.tensor(v, depth)?)),
            "typed" => Node::Typed(Box::new(self.typed(v, depth)?)),
            "object" => Node::Object(Box::new(self.object(v, depth)?)),
            "global" => {
                let f = Fields::new(v, &["name", "module"], "global")?;
                Node::Global(Box::new(Global {
                    module: qualname(f.require("module")?).map_err(|e| e.at("module"))?,
                    name: qualname(f.require("name")?).map_err(|e| e.at("name"))?,
                }))
            }
            other => return Err(SchemaError::new(v, format!("unknown node kind {other:?}"))),
        })
    }

    fn tensor(&mut self, item: &Item<'a>, depth: usize) -> R<Tensor> {
        let f = Fields::new(
            item,
            &["blob", "kind", "attrs", "dtype", "shape", "requires_grad"],
            "tensor",
        )?;
        let dtype_item = f.require("dtype")?;
        let name = text(dtype_item).map_err(|e| e.at("dtype"))?;
        let dtype = DType::from_name(name).ok_or_else(|| {
            SchemaError::new(dtype_item, format!("unknown dtype {name:?}")).at("dtype")
        })?;
        let shape_item = f.require("shape")?;
        let dims = array(shape_item).map_err(|e| e.at("shape"))?;
        if dims.len() > self.limits.max_rank {
            return Err(limit_error(
                shape_item,
                "max_rank",
                dims.len() as u64,
                self.limits.max_rank as u64,
            ));
        }
        let shape = dims
            .iter()
            .map(uint)
            .collect::<R<Vec<_>>>()
            .map_err(|e| e.at("shape"))?;
        let size = dtype.byte_size(&shape).ok_or_else(|| {
            SchemaError::new(shape_item, "tensor byte size exceeds 2^62").at("shape")
        })?;
        let blob_item = f.require("blob")?;
        let blob = match blob_item.value {
            Value::Null => None,
            Value::Uint(b) => Some(b),
            _ => {
                return Err(SchemaError::new(blob_item, "blob must be an index or null").at("blob"));
            }
        };
        match blob {
            None if size != 0 => {
                return Err(SchemaError::new(
                    blob_item,
                    format!("a tensor of {size} bytes needs a blob"),
                )
                .at("blob"));
            }
            Some(_) if size == 0 => {
                return Err(
                    SchemaError::new(blob_item, "an empty tensor must have blob null").at("blob"),
                );
            }
            Some(b) => {
                let len = usize::try_from(b)
                    .ok()
                    .and_then(|i| self.blob_lengths.get(i).copied())
                    .ok_or_else(|| {
                        SchemaError::new(blob_item, format!("blob index {b} out of range"))
                            .at("blob")
                    })?;
                if len != size {
                    return Err(SchemaError::new(
                        blob_item,
                        format!("tensor is {size} bytes but blob {b} holds {len}"),
                    )
                    .at("blob"));
                }
                self.referenced[b as usize] = true;
            }
            None => {}
        }
        let kind = match f.get("kind") {
            None => TensorKind::Tensor,
            Some(k) => match text(k)? {
                "parameter" => TensorKind::Parameter,
                "ndarray" => TensorKind::NdArray,
                other => {
                    return Err(
                        SchemaError::new(k, format!("unknown tensor kind {other:?}")).at("kind"),
                    );
                }
            },
        };
        let requires_grad = match f.get("requires_grad") {
            None => false,
            Some(Item {
                value: Value::Bool(true),
                ..
            }) => true,
            Some(other) => {
                return Err(
                    SchemaError::new(other, "requires_grad must be absent or true")
                        .at("requires_grad"),
                );
            }
        };
        let attrs = match f.get("attrs") {
            None => Vec::new(),
            Some(a) => non_empty(a, self.text_pairs(a, depth).map_err(|e| e.at("attrs"))?)?,
        };
        if kind == TensorKind::NdArray && (requires_grad || !attrs.is_empty()) {
            return Err(SchemaError::new(
                item,
                "an ndarray cannot have requires_grad or attrs",
            ));
        }
        Ok(Tensor {
            dtype,
            shape,
            blob: blob.map(|b| b as usize),
            kind,
            requires_grad,
            attrs,
        })
    }

    fn typed(&mut self, item: &Item<'a>, depth: usize) -> R<Typed> {
        let f = Fields::new(item, &["type", "attrs", "value"], "typed value")?;
        let type_item = f.require("type")?;
        let type_name = text(type_item).map_err(|e| e.at("type"))?;
        let value = f.require("value")?;
        let attrs = match f.get("attrs") {
            None => Vec::new(),
            Some(a) => {
                if !matches!(type_name, "collections.OrderedDict" | "collections.Counter") {
                    return Err(
                        SchemaError::new(a, format!("{type_name} cannot have attrs")).at("attrs"),
                    );
                }
                non_empty(a, self.text_pairs(a, depth).map_err(|e| e.at("attrs"))?)?
            }
        };
        let bad = |what: &str| {
            SchemaError::new(value, format!("{type_name} value must be {what}")).at("value")
        };
        let wrapped = |name: &str| -> R<&Item<'a>> {
            match &value.value {
                Value::Map(e) if e.len() == 1 && e[0].0.value == Value::Text(name) => Ok(&e[0].1),
                _ => Err(bad(&format!("a {name}"))),
            }
        };
        Ok(match type_name {
            "collections.OrderedDict" | "collections.Counter" => {
                let items = self
                    .pairs(wrapped("dict")?, depth)
                    .map_err(|e| e.at("value"))?;
                if type_name == "collections.Counter" {
                    Typed::Counter { items, attrs }
                } else {
                    Typed::OrderedDict { items, attrs }
                }
            }
            "argparse.Namespace" => {
                Typed::Namespace(self.text_pairs(value, depth).map_err(|e| e.at("value"))?)
            }
            "torch.Size" => {
                let dims = array(wrapped("tuple")?).map_err(|e| e.at("value"))?;
                Typed::TorchSize(
                    dims.iter()
                        .map(uint)
                        .collect::<R<Vec<_>>>()
                        .map_err(|_| bad("a tuple of non-negative ints"))?,
                )
            }
            "torch.dtype" => {
                let name = text(value).map_err(|_| bad("a dtype name"))?;
                if !dtype::is_torch_dtype_name(name) {
                    return Err(bad("a torch dtype name"));
                }
                Typed::TorchDtype(name.to_string())
            }
            "torch.device" => {
                let s = text(value).map_err(|_| bad("a device string"))?;
                if !is_device_name(s) {
                    return Err(bad("a device string like cpu or cuda:0"));
                }
                Typed::TorchDevice(s.to_string())
            }
            "numpy.scalar" => match array(value).map_err(|e| e.at("value"))? {
                [d, b] => {
                    let name = text(d).map_err(|e| e.at("value"))?;
                    let dtype = DType::from_name(name)
                        .filter(|d| d.numpy_native())
                        .ok_or_else(|| bad("[numpy dtype, bytes]"))?;
                    let raw = bytes(b).map_err(|e| e.at("value"))?;
                    if raw.len() as u64 != dtype.itemsize() {
                        return Err(bad("[dtype, bytes] with itemsize bytes"));
                    }
                    Typed::NumpyScalar {
                        dtype,
                        bytes: raw.to_vec(),
                    }
                }
                _ => return Err(bad("[dtype, bytes]")),
            },
            "builtins.slice" => {
                let parts = self
                    .nodes(wrapped("tuple")?, depth)
                    .map_err(|e| e.at("value"))?;
                let parts: [Node; 3] = parts.try_into().map_err(|_| bad("a tuple of 3 nodes"))?;
                Typed::Slice(Box::new(parts))
            }
            other => {
                return Err(SchemaError::new(
                    type_item,
                    format!("unknown typed value type {other:?}"),
                )
                .at("type"));
            }
        })
    }

    fn object(&mut self, item: &Item<'a>, depth: usize) -> R<Object> {
        let f = Fields::new(
            item,
            &[
                "args",
                "name",
                "state",
                "kwargs",
                "module",
                "dictitems",
                "listitems",
            ],
            "object",
        )?;
        let module = qualname(f.require("module")?).map_err(|e| e.at("module"))?;
        let name = qualname(f.require("name")?).map_err(|e| e.at("name"))?;
        let args_item = f.require("args")?;
        let args = self.nodes(args_item, depth).map_err(|e| e.at("args"))?;
        let kwargs = match f.get("kwargs") {
            None => Vec::new(),
            Some(k) => non_empty(k, self.text_pairs(k, depth).map_err(|e| e.at("kwargs"))?)?,
        };
        let state = match f.get("state") {
            None => None,
            Some(s) => {
                let depth = self.deeper(s, depth)?;
                Some(self.node(s, depth).map_err(|e| e.at("state"))?)
            }
        };
        let list_items = match f.get("listitems") {
            None => Vec::new(),
            Some(l) => non_empty(l, self.nodes(l, depth).map_err(|e| e.at("listitems"))?)?,
        };
        let dict_items = match f.get("dictitems") {
            None => Vec::new(),
            Some(d) => {
                let wrapped = Fields::new(d, &["dict"], "dictitems")?;
                let pairs = self
                    .pairs(wrapped.require("dict")?, depth)
                    .map_err(|e| e.at("dictitems"))?;
                non_empty(d, pairs)?
            }
        };
        Ok(Object {
            module,
            name,
            args,
            kwargs,
            state,
            list_items,
            dict_items,
        })
    }
}

fn non_empty<T>(item: &Item<'_>, v: Vec<T>) -> R<Vec<T>> {
    if v.is_empty() {
        Err(SchemaError::new(item, "must be absent rather than empty"))
    } else {
        Ok(v)
    }
}

fn qualname(item: &Item<'_>) -> R<String> {
    let s = text(item)?;
    if s.is_empty() || s.len() > limits::MAX_QUALNAME || s.chars().any(char::is_control) {
        return Err(SchemaError::new(
            item,
            "must be 1 to 1024 bytes without control characters",
        ));
    }
    Ok(s.to_string())
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
            "torch-zip" | "torch-legacy" | "pickle" | "npy" | "npz" | "safetensors" | "hf-index"
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

// ---------------------------------------------------------------------------------------------
// Encoding

fn invalid(what: &'static str, path: &str, detail: impl Into<String>) -> WriteError {
    WriteError::Invalid {
        what,
        path: path.to_string(),
        detail: detail.into(),
    }
}

fn encode_manifest(w: &mut CborWriter, m: &Manifest, limits: &Limits) -> Result<(), WriteError> {
    w.map(if m.ext.is_empty() { 4 } else { 5 });
    if !m.ext.is_empty() {
        w.text("ext");
        let entries = m
            .ext
            .iter()
            .map(|(k, v)| {
                let mut kw = CborWriter::default();
                kw.text(k);
                (kw.buf, v.clone())
            })
            .collect();
        w.sorted_map(entries);
    }
    w.text("root");
    encode_node(w, &m.root, 1, limits, "root")?;
    w.text("blobs");
    w.array(m.blobs.len());
    for b in &m.blobs {
        encode_blob(w, b);
    }
    w.text("version");
    w.uint(u64::from(FORMAT_VERSION));
    w.text("metadata");
    let entries = m
        .metadata
        .iter()
        .map(|(k, v)| {
            let mut kw = CborWriter::default();
            kw.text(k);
            let mut vw = CborWriter::default();
            vw.text(v);
            (kw.buf, vw.buf)
        })
        .collect();
    w.sorted_map(entries);
    Ok(())
}

fn encode_digests(w: &mut CborWriter, digests: &[Digest]) {
    w.array(digests.len());
    for d in digests {
        w.bytes(d);
    }
}

fn encode_blob(w: &mut CborWriter, b: &BlobEntry) {
    w.map(if b.codec.is_some() { 4 } else { 3 });
    if let Some(c) = &b.codec {
        w.text("codec");
        w.map(5);
        w.text("name");
        w.text("zstd");
        w.text("group");
        w.uint(u64::from(c.group));
        w.text("frames");
        w.array(c.frames.len());
        for &f in &c.frames {
            w.uint(f);
        }
        w.text("raw_length");
        w.uint(c.raw_length);
        w.text("raw_sha256");
        encode_digests(w, &c.raw_sha256);
    }
    w.text("length");
    w.uint(b.length);
    w.text("offset");
    w.uint(b.offset);
    w.text("sha256");
    encode_digests(w, &b.sha256);
}

fn encode_int(w: &mut CborWriter, i: &Int) {
    if let Some(v) = i.to_i128() {
        if v >= 0 {
            w.uint(v as u64);
        } else {
            // v in [-2^64, -1]: CBOR stores -1 - v.
            w.nint((-1 - v) as u64);
        }
    } else {
        let (negative, magnitude) = i.to_sign_magnitude();
        if negative {
            w.bignum(true, &sub_one(&magnitude));
        } else {
            w.bignum(false, &magnitude);
        }
    }
}

fn wrap(w: &mut CborWriter, kind: &str) {
    w.map(1);
    w.text(kind);
}

fn encode_pairs(
    w: &mut CborWriter,
    pairs: &[(Node, Node)],
    depth: usize,
    limits: &Limits,
    path: &str,
) -> Result<(), WriteError> {
    w.array(pairs.len());
    for (k, v) in pairs {
        w.array(2);
        encode_node(w, k, depth, limits, path)?;
        encode_node(w, v, depth, limits, path)?;
    }
    Ok(())
}

fn encode_text_pairs(
    w: &mut CborWriter,
    pairs: &[(String, Node)],
    depth: usize,
    limits: &Limits,
    path: &str,
) -> Result<(), WriteError> {
    wrap(w, "dict");
    w.array(pairs.len());
    for (k, v) in pairs {
        w.array(2);
        w.text(k);
        encode_node(w, v, depth, limits, path)?;
    }
    Ok(())
}

fn encode_nodes(
    w: &mut CborWriter,
    nodes: &[Node],
    depth: usize,
    limits: &Limits,
    path: &str,
) -> Result<(), WriteError> {
    w.array(nodes.len());
    for n in nodes {
        encode_node(w, n, depth, limits, path)?;
    }
    Ok(())
}

/// Encodes a node. Recursion is bounded by `max_tree_depth`, checked before descending, so a
/// caller's pathologically deep tree is an error rather than a stack overflow.
fn encode_node(
    w: &mut CborWriter,
    n: &Node,
    depth: usize,
    limits: &Limits,
    path: &str,
) -> Result<(), WriteError> {
    if depth > limits.max_tree_depth {
        return Err(invalid(
            "tree",
            path,
            format!(
                "nesting deeper than max_tree_depth {}",
                limits.max_tree_depth
            ),
        ));
    }
    let d = depth + 1;
    match n {
        Node::None => w.null(),
        Node::Bool(b) => w.bool(*b),
        Node::Int(i) => encode_int(w, i),
        Node::Float(f) => w.float(*f),
        Node::Str(s) => w.text(s),
        Node::Bytes(b) => w.bytes(b),
        Node::List(items) => encode_nodes(w, items, d, limits, path)?,
        Node::Tuple(items) => {
            wrap(w, "tuple");
            encode_nodes(w, items, d, limits, path)?;
        }
        Node::Set(items) => {
            wrap(w, "set");
            encode_nodes(w, items, d, limits, path)?;
        }
        Node::FrozenSet(items) => {
            wrap(w, "frozenset");
            encode_nodes(w, items, d, limits, path)?;
        }
        Node::Dict(pairs) => {
            wrap(w, "dict");
            encode_pairs(w, pairs, d, limits, path)?;
        }
        Node::ByteArray(b) => {
            wrap(w, "bytearray");
            w.bytes(b);
        }
        Node::Complex(re, im) => {
            wrap(w, "complex");
            w.array(2);
            w.float(*re);
            w.float(*im);
        }
        Node::Tensor(t) => {
            wrap(w, "tensor");
            let fields = 3
                + usize::from(t.kind.name().is_some())
                + usize::from(!t.attrs.is_empty())
                + usize::from(t.requires_grad);
            w.map(fields);
            w.text("blob");
            match t.blob {
                Some(b) => w.uint(b as u64),
                None => w.null(),
            }
            if let Some(kind) = t.kind.name() {
                w.text("kind");
                w.text(kind);
            }
            if !t.attrs.is_empty() {
                w.text("attrs");
                encode_text_pairs(w, &t.attrs, d, limits, path)?;
            }
            w.text("dtype");
            w.text(t.dtype.name());
            w.text("shape");
            w.array(t.shape.len());
            for &dim in &t.shape {
                w.uint(dim);
            }
            if t.requires_grad {
                w.text("requires_grad");
                w.bool(true);
            }
        }
        Node::Typed(t) => {
            wrap(w, "typed");
            let attrs = match &**t {
                Typed::OrderedDict { attrs, .. } | Typed::Counter { attrs, .. } => attrs.as_slice(),
                _ => &[],
            };
            w.map(if attrs.is_empty() { 2 } else { 3 });
            w.text("type");
            w.text(t.type_name());
            if !attrs.is_empty() {
                w.text("attrs");
                encode_text_pairs(w, attrs, d, limits, path)?;
            }
            w.text("value");
            match &**t {
                Typed::OrderedDict { items, .. } | Typed::Counter { items, .. } => {
                    wrap(w, "dict");
                    encode_pairs(w, items, d, limits, path)?;
                }
                Typed::Namespace(fields) => encode_text_pairs(w, fields, d, limits, path)?,
                Typed::TorchSize(dims) => {
                    wrap(w, "tuple");
                    w.array(dims.len());
                    for &dim in dims {
                        w.uint(dim);
                    }
                }
                Typed::TorchDtype(s) | Typed::TorchDevice(s) => w.text(s),
                Typed::NumpyScalar { dtype, bytes } => {
                    w.array(2);
                    w.text(dtype.name());
                    w.bytes(bytes);
                }
                Typed::Slice(parts) => {
                    wrap(w, "tuple");
                    encode_nodes(w, &parts[..], d, limits, path)?;
                }
            }
        }
        Node::Object(o) => {
            wrap(w, "object");
            w.map(
                3 + usize::from(o.state.is_some())
                    + usize::from(!o.kwargs.is_empty())
                    + usize::from(!o.dict_items.is_empty())
                    + usize::from(!o.list_items.is_empty()),
            );
            w.text("args");
            encode_nodes(w, &o.args, d, limits, path)?;
            w.text("name");
            w.text(&o.name);
            if let Some(state) = &o.state {
                w.text("state");
                encode_node(w, state, d, limits, path)?;
            }
            if !o.kwargs.is_empty() {
                w.text("kwargs");
                encode_text_pairs(w, &o.kwargs, d, limits, path)?;
            }
            w.text("module");
            w.text(&o.module);
            if !o.dict_items.is_empty() {
                w.text("dictitems");
                wrap(w, "dict");
                encode_pairs(w, &o.dict_items, d, limits, path)?;
            }
            if !o.list_items.is_empty() {
                w.text("listitems");
                encode_nodes(w, &o.list_items, d, limits, path)?;
            }
        }
        Node::Global(g) => {
            wrap(w, "global");
            w.map(2);
            w.text("name");
            w.text(&g.name);
            w.text("module");
            w.text(&g.module);
        }
    }
    Ok(())
}

impl Node {
    /// The node's canonical CBOR encoding, exactly as it appears inside a manifest (spec §3.1).
    ///
    /// Two nodes have the same encoding exactly when they are equal (`==`), so the encoding is a
    /// total order that does not depend on Python's hash randomisation: writers sort set
    /// elements by it to make their output deterministic. Nesting deeper than
    /// `limits.max_tree_depth` is an error, as in a manifest.
    ///
    /// ```
    /// use tensorseal::{Limits, Node};
    /// let a = Node::Str("a".into()).canonical_bytes(&Limits::default()).unwrap();
    /// assert_eq!(a, [0x61, b'a']);
    /// ```
    pub fn canonical_bytes(&self, limits: &Limits) -> Result<Vec<u8>, WriteError> {
        let mut w = CborWriter::default();
        encode_node(&mut w, self, 1, limits, "node")?;
        Ok(w.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
