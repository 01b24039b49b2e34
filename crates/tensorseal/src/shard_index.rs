//! The shard index of a shard set (spec §11.2) as data: [`ShardIndex::from_tree`] reads and
//! checks an index tree, [`ShardIndex::to_tree`] writes one. Both sides of the layout live here,
//! so the Rust writer (`tensorseal convert DCP_DIR SET/`) and every Rust reader agree on it by
//! construction; the Python package writes the same tree (a test checks that a set it wrote
//! reads back to the identical tree).

use crate::{DType, Int, Node, Typed};
use std::collections::{BTreeMap, BTreeSet};

/// File name of the shard index inside a shard-set folder.
pub const SHARD_INDEX_FILE: &str = "index.tseal";
/// The `format` value of a shard index's tree.
pub const SHARD_INDEX_FORMAT: &str = "tensorseal.dcp.index/1";
/// The most shards, and the most entries, an index may list.
pub const MAX_SHARDS: usize = 1 << 16;
/// The memory formats an entry may name.
pub const MEMORY_FORMATS: [&str; 3] = ["contiguous_format", "channels_last", "preserve_format"];

/// One shard as the index binds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardBinding {
    /// The shard's file name in the folder.
    pub file: String,
    /// Its length in bytes.
    pub length: u64,
    /// The SHA-256 of its manifest bytes.
    pub manifest_sha256: [u8; 32],
}

/// Where a chunk or a non-tensor value is stored: a listed shard and a key of its root dict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlace {
    /// The shard's file name.
    pub file: String,
    /// The key of the shard's root dict (`t{i}` or `b{i}`, spec §11.1).
    pub key: String,
}

/// One chunk of a tensor entry: where it lies in the global tensor, and where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexChunk {
    /// Its position in the global tensor, per dimension.
    pub offsets: Vec<u64>,
    /// Its size, per dimension.
    pub sizes: Vec<u64>,
    /// The shard and key holding it.
    pub place: ShardPlace,
}

/// A tensor entry: DCP's `TensorStorageMetadata` (the global tensor and its chunk layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTensor {
    /// The global shape.
    pub size: Vec<u64>,
    /// The element type.
    pub dtype: DType,
    /// `requires_grad` of the saved tensor.
    pub requires_grad: bool,
    /// One of [`MEMORY_FORMATS`].
    pub memory_format: String,
    /// `pin_memory` of the saved tensor.
    pub pin_memory: bool,
    /// The saved tensor's strides, where the writer's torch records them.
    pub strides: Option<Vec<u64>>,
    /// The chunks, in DCP's order.
    pub chunks: Vec<IndexChunk>,
}

/// What one state-dict entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexValue {
    /// A tensor, stored as chunks.
    Tensor(IndexTensor),
    /// A non-tensor value (DCP's `BytesStorageMetadata`), stored as one node.
    Bytes(ShardPlace),
}

/// One state-dict entry of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The flattened name.
    pub fqn: String,
    /// What it is and where it is stored.
    pub value: IndexValue,
}

/// A shard index (spec §11.2), checked against every rule of the spec.
#[derive(Debug, Clone)]
pub struct ShardIndex {
    /// The run id the writer was given.
    pub run_id: Option<String>,
    /// The step the writer was given.
    pub step: Option<i64>,
    /// Ranks that took part in the save.
    pub world_size: u64,
    /// DCP's metadata version.
    pub dcp_version: Option<String>,
    /// The shards, sorted by file name.
    pub shards: Vec<ShardBinding>,
    /// State-dict entries, in the order of DCP's global metadata.
    pub entries: Vec<IndexEntry>,
    /// The save planner's data (each flattened name to its path in the nested state dict), as
    /// the writer gave it.
    pub planner_data: Option<Node>,
    /// DCP's `StorageMeta.modules`.
    pub modules: Vec<String>,
}

/// A plain shard file name: one path component ending in `.tseal`, not the index.
pub(crate) fn plain_shard_name(name: &str) -> bool {
    name.ends_with(".tseal")
        && name != SHARD_INDEX_FILE
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.')
}

impl ShardIndex {
    /// Tensor chunks over all entries.
    pub fn chunk_count(&self) -> usize {
        self.entries
            .iter()
            .map(|e| match &e.value {
                IndexValue::Tensor(t) => t.chunks.len(),
                IndexValue::Bytes(_) => 0,
            })
            .sum()
    }

    /// Reads and checks an index tree against every rule of spec §11.2.
    pub fn from_tree(root: &Node) -> Result<ShardIndex, String> {
        let top = dict(root).ok_or("the root is not a dict with text keys")?;
        if text(&top, "format", "the index")? != SHARD_INDEX_FORMAT {
            return Err(format!("format is not {SHARD_INDEX_FORMAT:?}"));
        }
        let run_id = optional_text(&top, "run_id")?;
        let step = match top.get("step") {
            None | Some(Node::None) => None,
            Some(Node::Int(i)) => Some(i.to_i64().ok_or("step is out of range")?),
            _ => return Err("step is not an int or None".into()),
        };
        let world_size = uint(top.get("world_size"), "world_size")?;
        let dcp_version = optional_text(&top, "dcp_version")?;
        let listed = list(&top, "shards")?;
        if listed.len() > MAX_SHARDS {
            return Err(format!("more than {MAX_SHARDS} shards"));
        }
        let mut shards = Vec::with_capacity(listed.len());
        let mut names = BTreeSet::new();
        for (i, s) in listed.iter().enumerate() {
            let at = format!("shards[{i}]");
            let d = dict(s).ok_or_else(|| format!("{at} is not a dict"))?;
            let file = text(&d, "file", &at)?;
            if !plain_shard_name(file) {
                return Err(format!("{at}: {file:?} is not a plain .tseal file name"));
            }
            if !names.insert(file.to_string()) {
                return Err(format!("{at}: {file:?} is listed twice"));
            }
            let digest = text(&d, "manifest_sha256", &at)?;
            let manifest_sha256: [u8; 32] = hex::decode(digest)
                .ok()
                .filter(|_| digest.bytes().all(|b| !b.is_ascii_uppercase()))
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| format!("{at}: manifest_sha256 is not 64 lowercase hex digits"))?;
            shards.push(ShardBinding {
                file: file.to_string(),
                length: uint(d.get("length"), &format!("{at}.length"))?,
                manifest_sha256,
            });
        }
        let listed_entries = list(&top, "entries")?;
        let mut fqns = BTreeSet::new();
        let mut entries = Vec::with_capacity(listed_entries.len());
        for (i, e) in listed_entries.iter().enumerate() {
            let at = format!("entries[{i}]");
            let d = dict(e).ok_or_else(|| format!("{at} is not a dict"))?;
            let fqn = text(&d, "fqn", &at)?;
            if !fqns.insert(fqn) {
                return Err(format!("{at}: fqn {fqn:?} appears twice"));
            }
            let value = match text(&d, "type", &at)? {
                "bytes" => IndexValue::Bytes(place(&d, &at, &names)?),
                "tensor" => IndexValue::Tensor(tensor_entry(&d, &format!("{at} ({fqn})"), &names)?),
                other => return Err(format!("{at}: type {other:?} is not tensor or bytes")),
            };
            entries.push(IndexEntry {
                fqn: fqn.to_string(),
                value,
            });
        }
        let planner_data = match top.get("planner_data") {
            None | Some(Node::None) => None,
            Some(n @ Node::Dict(_)) => Some((*n).clone()),
            Some(_) => return Err("planner_data is not a dict or None".into()),
        };
        let modules = match top.get("modules") {
            None | Some(Node::None) => Vec::new(),
            Some(Node::List(items)) => items
                .iter()
                .map(|m| match m {
                    Node::Str(s) => Ok(s.clone()),
                    _ => Err("modules holds a value that is not text".to_string()),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("modules is not a list".into()),
        };
        Ok(ShardIndex {
            run_id,
            step,
            world_size,
            dcp_version,
            shards,
            entries,
            planner_data,
            modules,
        })
    }

    /// The index as a tree (spec §11.2), keys in the spec's order: what a writer signs.
    /// `shards` are written sorted by file name, whatever their order here.
    pub fn to_tree(&self) -> Node {
        fn s(v: &str) -> Node {
            Node::Str(v.into())
        }
        fn int(v: u64) -> Node {
            Node::Int(Int::from(v))
        }
        fn ints(v: &[u64]) -> Node {
            Node::List(v.iter().map(|&x| int(x)).collect())
        }
        fn dict(items: Vec<(&str, Node)>) -> Node {
            Node::Dict(items.into_iter().map(|(k, v)| (s(k), v)).collect())
        }
        let or_none = |v: Option<&String>| v.map_or(Node::None, |v| s(v));
        let mut shards: Vec<&ShardBinding> = self.shards.iter().collect();
        shards.sort_by(|a, b| a.file.cmp(&b.file));
        let shards = shards
            .into_iter()
            .map(|b| {
                dict(vec![
                    ("file", s(&b.file)),
                    ("length", int(b.length)),
                    ("manifest_sha256", s(&hex::encode(b.manifest_sha256))),
                ])
            })
            .collect();
        let entries = self
            .entries
            .iter()
            .map(|e| match &e.value {
                IndexValue::Bytes(p) => dict(vec![
                    ("fqn", s(&e.fqn)),
                    ("type", s("bytes")),
                    ("file", s(&p.file)),
                    ("key", s(&p.key)),
                ]),
                IndexValue::Tensor(t) => dict(vec![
                    ("fqn", s(&e.fqn)),
                    ("type", s("tensor")),
                    ("size", ints(&t.size)),
                    (
                        "dtype",
                        Node::Typed(Box::new(Typed::TorchDtype(t.dtype.name().into()))),
                    ),
                    ("layout", s("strided")),
                    ("requires_grad", Node::Bool(t.requires_grad)),
                    ("memory_format", s(&t.memory_format)),
                    ("pin_memory", Node::Bool(t.pin_memory)),
                    ("strides", t.strides.as_deref().map_or(Node::None, ints)),
                    (
                        "chunks",
                        Node::List(
                            t.chunks
                                .iter()
                                .map(|c| {
                                    dict(vec![
                                        ("offsets", ints(&c.offsets)),
                                        ("sizes", ints(&c.sizes)),
                                        ("file", s(&c.place.file)),
                                        ("key", s(&c.place.key)),
                                    ])
                                })
                                .collect(),
                        ),
                    ),
                ]),
            })
            .collect();
        dict(vec![
            ("format", s(SHARD_INDEX_FORMAT)),
            ("run_id", or_none(self.run_id.as_ref())),
            (
                "step",
                self.step.map_or(Node::None, |v| Node::Int(Int::from(v))),
            ),
            ("world_size", int(self.world_size)),
            ("dcp_version", or_none(self.dcp_version.as_ref())),
            ("shards", Node::List(shards)),
            ("entries", Node::List(entries)),
            (
                "planner_data",
                self.planner_data.clone().unwrap_or(Node::None),
            ),
            (
                "modules",
                Node::List(self.modules.iter().map(|m| s(m)).collect()),
            ),
        ])
    }
}

/// The `file` and `key` of an entry or chunk; the file must be one of the listed `shards`.
fn place(
    d: &BTreeMap<&str, &Node>,
    at: &str,
    shards: &BTreeSet<String>,
) -> Result<ShardPlace, String> {
    let file = text(d, "file", at)?;
    if !shards.contains(file) {
        return Err(format!("{at}: file {file:?} is not in shards"));
    }
    Ok(ShardPlace {
        file: file.to_string(),
        key: text(d, "key", at)?.to_string(),
    })
}

fn tensor_entry(
    d: &BTreeMap<&str, &Node>,
    at: &str,
    shards: &BTreeSet<String>,
) -> Result<IndexTensor, String> {
    let size = uints(d.get("size"), &format!("{at}.size"))?;
    let dtype = match d.get("dtype") {
        Some(Node::Typed(t)) => match &**t {
            Typed::TorchDtype(name) => DType::from_name(name)
                .ok_or_else(|| format!("{at}: dtype {name} has no tensor encoding"))?,
            _ => return Err(format!("{at}: dtype is not a torch.dtype")),
        },
        _ => return Err(format!("{at}: dtype is not a typed value")),
    };
    if text(d, "layout", at)? != "strided" {
        return Err(format!("{at}: layout is not \"strided\""));
    }
    let memory_format = text(d, "memory_format", at)?;
    if !MEMORY_FORMATS.contains(&memory_format) {
        return Err(format!("{at}: memory_format {memory_format:?}"));
    }
    let flag = |key: &str| match d.get(key) {
        Some(Node::Bool(b)) => Ok(*b),
        _ => Err(format!("{at}: {key} is not a bool")),
    };
    let strides = match d.get("strides") {
        None | Some(Node::None) => None,
        n => Some(uints(n, &format!("{at}.strides"))?),
    };
    let mut chunks = Vec::new();
    for (j, c) in list(d, "chunks")?.iter().enumerate() {
        let at = format!("{at}.chunks[{j}]");
        let c = dict(c).ok_or_else(|| format!("{at} is not a dict"))?;
        let offsets = uints(c.get("offsets"), &format!("{at}.offsets"))?;
        let sizes = uints(c.get("sizes"), &format!("{at}.sizes"))?;
        if offsets.len() != size.len() || sizes.len() != size.len() {
            return Err(format!(
                "{at}: {} offsets and {} sizes for a tensor of {} dimensions",
                offsets.len(),
                sizes.len(),
                size.len()
            ));
        }
        let outside =
            (0..size.len()).any(|k| offsets[k].checked_add(sizes[k]).is_none_or(|e| e > size[k]));
        if outside {
            return Err(format!(
                "{at}: offsets {offsets:?} + sizes {sizes:?} lie outside size {size:?}"
            ));
        }
        chunks.push(IndexChunk {
            offsets,
            sizes,
            place: place(&c, &at, shards)?,
        });
    }
    Ok(IndexTensor {
        size,
        dtype,
        requires_grad: flag("requires_grad")?,
        memory_format: memory_format.to_string(),
        pin_memory: flag("pin_memory")?,
        strides,
        chunks,
    })
}

fn dict(node: &Node) -> Option<BTreeMap<&str, &Node>> {
    let Node::Dict(items) = node else { return None };
    let mut out = BTreeMap::new();
    for (k, v) in items {
        let Node::Str(k) = k else { return None };
        out.insert(k.as_str(), v);
    }
    Some(out)
}

fn text<'n>(d: &BTreeMap<&str, &'n Node>, key: &str, at: &str) -> Result<&'n str, String> {
    match d.get(key) {
        Some(Node::Str(s)) => Ok(s),
        _ => Err(format!("{at}: {key} is not text")),
    }
}

fn optional_text(d: &BTreeMap<&str, &Node>, key: &str) -> Result<Option<String>, String> {
    match d.get(key) {
        None | Some(Node::None) => Ok(None),
        Some(Node::Str(s)) => Ok(Some(s.clone())),
        _ => Err(format!("{key} is not text or None")),
    }
}

fn uint(node: Option<&&Node>, what: &str) -> Result<u64, String> {
    match node {
        Some(Node::Int(i)) => i
            .to_u64()
            .ok_or_else(|| format!("{what} is negative or too large")),
        _ => Err(format!("{what} is not an int")),
    }
}

fn uints(node: Option<&&Node>, what: &str) -> Result<Vec<u64>, String> {
    match node {
        Some(Node::List(items)) => items
            .iter()
            .enumerate()
            .map(|(i, n)| uint(Some(&n), &format!("{what}[{i}]")))
            .collect(),
        _ => Err(format!("{what} is not a list")),
    }
}

fn list<'n>(d: &BTreeMap<&str, &'n Node>, key: &str) -> Result<&'n [Node], String> {
    match d.get(key) {
        Some(Node::List(items)) if items.len() <= MAX_SHARDS * 64 => Ok(items),
        Some(Node::List(_)) => Err(format!("{key} has too many items")),
        _ => Err(format!("{key} is not a list")),
    }
}
