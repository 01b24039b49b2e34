//! `torch.distributed.checkpoint` folders written by `FileSystemWriter`: `.metadata`, a pickle
//! of DCP's dataclasses, and the ranks' `*.distcp` files, in which every tensor chunk and every
//! non-tensor value is a `torch.save` zip at a byte range that `.metadata` records.
//!
//! `.metadata` goes through the pickle VM like any pickle (nothing is imported or called): its
//! DCP classes become inert records, read here by field; any other class is refused as unknown
//! and code-execution primitives as unsafe. Every chunk's range must lie inside its file, every
//! chunk must be a tensor of the entry's dtype and the chunk's size, and the chunks of a tensor
//! must tile it exactly once. The result is one tree, nested as `dcp_to_torch_save` nests it
//! (by the save planner's `planner_data`), with every tensor assembled whole.

use crate::error::ConvertError;
use crate::limits::{Limits, check};
use crate::materialize::View;
use crate::pickle_tree::{BlobSink, TreeStats};
use crate::pickles;
use crate::torch::{self, PickleContext, PickleOutcome};
use crate::zip::ZipArchive;
use crate::{TorchZip, ZipKind, zip_kind};
use std::collections::HashMap;
use tensorseal::{BlobId, BlobSource as _, DType, Node, Tensor};
use tensorseal_pickle as pk;

/// The metadata file of a DCP checkpoint folder.
pub(crate) const METADATA_FILE: &str = ".metadata";
/// The suffix of DCP's data files.
pub(crate) const DATA_SUFFIX: &str = ".distcp";

/// The classes `.metadata` may hold, read as inert records.
const DCP_CLASSES: &[(&str, &str)] = &[
    ("torch.distributed.checkpoint.metadata", "Metadata"),
    (
        "torch.distributed.checkpoint.metadata",
        "TensorStorageMetadata",
    ),
    ("torch.distributed.checkpoint.metadata", "TensorProperties"),
    (
        "torch.distributed.checkpoint.metadata",
        "ChunkStorageMetadata",
    ),
    (
        "torch.distributed.checkpoint.metadata",
        "BytesStorageMetadata",
    ),
    ("torch.distributed.checkpoint.metadata", "MetadataIndex"),
    ("torch.distributed.checkpoint.metadata", "StorageMeta"),
    (
        "torch.distributed.checkpoint.metadata",
        "_MEM_FORMAT_ENCODING",
    ),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("pathlib", "PosixPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PureWindowsPath"),
];

fn is_dcp_class(g: &pk::GlobalName) -> bool {
    DCP_CLASSES
        .iter()
        .any(|(m, n)| *m == &*g.module && *n == &*g.name)
}

/// The class or function a finding is about, if any.
fn finding_global(f: &pk::Finding) -> Option<&pk::GlobalName> {
    match &f.kind {
        pk::FindingKind::Global(g) | pk::FindingKind::Call(g) | pk::FindingKind::Build(g) => {
            Some(g)
        }
        _ => None,
    }
}

/// Whether a finding is about something other than DCP's own classes.
fn is_foreign(f: &pk::Finding) -> bool {
    finding_global(f).is_none_or(|g| !is_dcp_class(g))
}

/// The verdict of a scan of `.metadata` with DCP's own classes counted as allowed: what the
/// converter's reading of it implies.
pub(crate) fn verdict_of_metadata(report: &pk::ScanReport) -> pk::Verdict {
    if report.verdict() == pk::Verdict::Unsafe {
        return pk::Verdict::Unsafe;
    }
    report
        .findings()
        .iter()
        .filter(|f| is_foreign(f))
        .map(|f| f.verdict)
        .max()
        .unwrap_or(pk::Verdict::Allowed)
}

fn invalid(path: impl Into<String>, what: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        member: METADATA_FILE.into(),
        path: path.into(),
        what: what.into(),
    }
}

/// The folder's files, mapped before the sandbox was applied.
pub(crate) struct DcpFiles<'s> {
    /// `.metadata`.
    pub(crate) metadata: &'s [u8],
    /// Every `*.distcp` file of the folder: name and bytes.
    pub(crate) data: Vec<(&'s str, &'s [u8])>,
}

/// Where one item is stored: a `.distcp` file (by position in [`DcpFiles::data`]) and a byte
/// range of it.
pub(crate) struct Stored {
    pub(crate) file: usize,
    pub(crate) offset: u64,
    pub(crate) length: u64,
}

/// A key of `planner_data`'s paths: a dict key or a list index.
#[derive(Clone)]
pub(crate) enum Key {
    Str(String),
    Index(usize),
}

/// `.metadata`, read and checked: what both the consolidating conversion ([`dcp_tree`]) and the
/// shard-set writer (`crate::dcp_set`) start from.
pub(crate) struct DcpMetadata {
    /// `state_dict_metadata`, in its order.
    pub(crate) entries: Vec<(String, DcpEntry)>,
    /// `storage_data`: where each item lies, by (fqn, chunk offsets).
    pub(crate) storage: HashMap<(String, Option<Vec<u64>>), Stored>,
    /// `planner_data`, in its order: each flattened name's path in the nested state dict.
    pub(crate) planner: Vec<(String, Vec<Key>)>,
    /// `Metadata.version`.
    pub(crate) version: Option<String>,
    /// `StorageMeta.modules`.
    pub(crate) modules: Vec<String>,
    /// Classes other than DCP's kept as inert records (only with `allow_objects`).
    pub(crate) inert: Vec<String>,
}

/// One entry of `state_dict_metadata`.
pub(crate) enum DcpEntry {
    /// `TensorStorageMetadata`.
    Tensor(TensorEntry),
    /// `BytesStorageMetadata`.
    Bytes,
}

impl DcpMetadata {
    /// Where the item `fqn` (a chunk at `offset`, or a value) is stored.
    pub(crate) fn stored(&self, fqn: &str, offset: Option<&[u64]>) -> Option<&Stored> {
        self.storage
            .get(&(fqn.to_string(), offset.map(<[u64]>::to_vec)))
    }

    /// The path of `fqn` in the nested state dict: its planner path, or the name itself.
    pub(crate) fn path_of(&self, fqn: &str) -> Vec<Key> {
        self.planner
            .iter()
            .find(|(f, _)| f == fqn)
            .map_or_else(|| vec![Key::Str(fqn.to_string())], |(_, p)| p.clone())
    }
}

/// Reads `.metadata` through the pickle VM (DCP's classes as inert records; any other class
/// refused unless `allow_objects`, payloads always) and checks every item's byte range against
/// its `.distcp` file.
pub(crate) fn read_metadata(
    files: &DcpFiles<'_>,
    ctx: &PickleContext<'_>,
    limits: &Limits,
) -> Result<DcpMetadata, ConvertError> {
    let meta = files.metadata;
    check(
        "max_pickle_size",
        meta.len() as u64,
        limits.max_pickle_size,
        0,
    )?;
    // The VM keeps unknown classes as records here; which ones are allowed is decided below
    // from the scan's findings, as for any pickle but for DCP's own classes.
    let options = pickles::options(ctx.limits, true, false);
    let graph = pickles::load(meta, 0, METADATA_FILE, &options, &mut pk::NoStorages)?;
    let report = pk::scan(meta, 0, &options, &mut pk::DeclaredStorages);
    let foreign: Vec<&pk::Finding> = report
        .findings()
        .iter()
        .filter(|f| f.verdict == pk::Verdict::Unknown && is_foreign(f))
        .collect::<Vec<_>>();
    let mut inert = Vec::new();
    if !foreign.is_empty() {
        let findings: Vec<String> = foreign.iter().map(|f| f.to_string()).collect();
        if !ctx.allow_objects {
            return Err(ConvertError::UnknownObjects {
                member: METADATA_FILE.into(),
                findings,
            });
        }
        // Inert objects are named by class, as for any converted pickle.
        inert = foreign
            .iter()
            .filter_map(|f| finding_global(f).map(|g| g.to_string()))
            .collect();
    }
    let m = Meta { g: &graph };
    let root = m.record(graph.root(), "Metadata", "the root")?;
    let fields = m.fields(root, "Metadata")?;
    let listed = m.dict(
        m.field(&fields, "state_dict_metadata", "Metadata")?,
        "state_dict_metadata",
    )?;
    let storage = m.storage(m.field(&fields, "storage_data", "Metadata")?, files)?;
    let planner = match fields.get("planner_data") {
        Some(&id) if !matches!(m.g.node(id), pk::Node::None) => m.planner(id)?,
        _ => Vec::new(),
    };
    let version = match fields.get("version").map(|&id| (id, m.g.node(id))) {
        Some((id, pk::Node::Str(_))) => Some(m.text(id, "Metadata.version")?),
        _ => None,
    };
    let modules = m.modules(fields.get("storage_meta").copied())?;
    let mut entries = Vec::with_capacity(listed.len());
    for (key, value) in listed {
        let fqn = m.text(key, "state_dict_metadata key")?;
        let at = format!("state_dict_metadata[{fqn:?}]");
        let entry = match m.class_of(value, &at)?.as_str() {
            "TensorStorageMetadata" => DcpEntry::Tensor(m.tensor_entry(value, &at)?),
            "BytesStorageMetadata" => DcpEntry::Bytes,
            other => {
                return Err(invalid(
                    at,
                    format!("a {other} record, not tensor or bytes metadata"),
                ));
            }
        };
        entries.push((fqn, entry));
    }
    inert.sort();
    inert.dedup();
    Ok(DcpMetadata {
        entries,
        storage,
        planner,
        version,
        modules,
        inert,
    })
}

/// Converts a DCP folder into one tree, tensors assembled and handed to `sink`.
pub(crate) fn dcp_tree(
    files: &DcpFiles<'_>,
    ctx: &PickleContext<'_>,
    limits: &Limits,
    sink: &mut dyn BlobSink,
) -> Result<(Node, TreeStats, Vec<String>), ConvertError> {
    let md = read_metadata(files, ctx, limits)?;
    let mut inert = md.inert.clone();
    let mut stats = TreeStats::default();
    let mut top = Node::Dict(Vec::new());
    for (fqn, entry) in &md.entries {
        let at = format!("state_dict_metadata[{fqn:?}]");
        let node = match entry {
            DcpEntry::Tensor(t) => assemble(fqn, t, &md, files, ctx, limits, sink, &mut stats)?,
            DcpEntry::Bytes => {
                let s = md
                    .stored(fqn, None)
                    .ok_or_else(|| invalid(&at, "no storage_data entry for this value"))?;
                let (node, outcome) = value_tree(fqn, s, files, ctx, limits, sink)?;
                stats.tensors += outcome.stats.tensors;
                stats.blobs += outcome.stats.blobs;
                stats.bytes += outcome.stats.bytes;
                stats.shared += outcome.stats.shared;
                inert.extend(outcome.inert);
                node
            }
        };
        set_element(&mut top, &md.path_of(fqn), node, fqn)?;
    }
    inert.sort();
    inert.dedup();
    Ok((top, stats, inert))
}

/// A tensor entry of `state_dict_metadata`.
pub(crate) struct TensorEntry {
    pub(crate) dtype: DType,
    pub(crate) size: Vec<u64>,
    /// (offsets, sizes) of each chunk, in DCP's order.
    pub(crate) chunks: Vec<(Vec<u64>, Vec<u64>)>,
    /// `TensorProperties` besides the dtype.
    pub(crate) properties: Properties,
}

/// What DCP's `TensorProperties` records besides the dtype (its `__getstate__` tuple: dtype,
/// layout, requires_grad, memory format, pin_memory, and strides from torch 2.6 on).
pub(crate) struct Properties {
    pub(crate) requires_grad: bool,
    /// One of [`tensorseal::MEMORY_FORMATS`].
    pub(crate) memory_format: &'static str,
    pub(crate) pin_memory: bool,
    pub(crate) strides: Option<Vec<u64>>,
}

/// Reads DCP records out of the VM's graph.
struct Meta<'g, 'a> {
    g: &'g pk::Graph<'a>,
}

impl Meta<'_, '_> {
    fn class_of(&self, id: pk::NodeId, at: &str) -> Result<String, ConvertError> {
        match self.g.node(id) {
            pk::Node::Object(o) => match self.g.node(o.callee()) {
                // DCP's classes by their short name; any other by its full name, which no
                // expectation below matches (a foreign `Metadata` is not DCP's).
                pk::Node::Global(gid) => {
                    let g = self.g.global(*gid).name();
                    Ok(if is_dcp_class(g) {
                        g.name.to_string()
                    } else {
                        g.to_string()
                    })
                }
                _ => Err(invalid(at, "a record whose class is not a global")),
            },
            other => Err(invalid(
                at,
                format!("a {}, not a DCP record", other.type_name()),
            )),
        }
    }

    /// The record at `id`, which must be of DCP class `class`.
    fn record(
        &self,
        id: pk::NodeId,
        class: &str,
        at: &str,
    ) -> Result<&pk::ObjectRecord, ConvertError> {
        let found = self.class_of(id, at)?;
        match self.g.node(id) {
            pk::Node::Object(o) if found == class => Ok(o),
            _ => Err(invalid(
                at,
                format!("a {found} record where {class} was expected"),
            )),
        }
    }

    /// A record's fields: its BUILD state, a dict with text keys (dataclasses pickle so).
    fn fields(
        &self,
        rec: &pk::ObjectRecord,
        at: &str,
    ) -> Result<HashMap<String, pk::NodeId>, ConvertError> {
        let Some(state) = rec.state() else {
            return Ok(HashMap::new());
        };
        let mut out = HashMap::new();
        for (k, v) in self.dict(state, at)? {
            out.insert(self.text(k, at)?, v);
        }
        Ok(out)
    }

    fn field(
        &self,
        fields: &HashMap<String, pk::NodeId>,
        name: &str,
        at: &str,
    ) -> Result<pk::NodeId, ConvertError> {
        fields
            .get(name)
            .copied()
            .ok_or_else(|| invalid(at, format!("no field {name}")))
    }

    fn dict(
        &self,
        id: pk::NodeId,
        at: &str,
    ) -> Result<Vec<(pk::NodeId, pk::NodeId)>, ConvertError> {
        match self.g.node(id) {
            pk::Node::Dict(items) => Ok(items.clone()),
            other => Err(invalid(at, format!("a {}, not a dict", other.type_name()))),
        }
    }

    fn text(&self, id: pk::NodeId, at: &str) -> Result<String, ConvertError> {
        match self.g.node(id) {
            pk::Node::Str(s) => Ok(s.to_string()),
            other => Err(invalid(at, format!("a {}, not a str", other.type_name()))),
        }
    }

    fn uint(&self, id: pk::NodeId, at: &str) -> Result<u64, ConvertError> {
        match self.g.node(id) {
            pk::Node::Int(i) => i
                .to_i64()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| invalid(at, "a negative or huge int")),
            other => Err(invalid(at, format!("a {}, not an int", other.type_name()))),
        }
    }

    fn size(&self, id: pk::NodeId, at: &str) -> Result<Vec<u64>, ConvertError> {
        match self.g.node(id) {
            pk::Node::TorchSize(dims) => dims
                .iter()
                .map(|&d| u64::try_from(d).map_err(|_| invalid(at, "a negative dimension")))
                .collect(),
            other => Err(invalid(
                at,
                format!("a {}, not a torch.Size", other.type_name()),
            )),
        }
    }

    fn tensor_entry(&self, id: pk::NodeId, at: &str) -> Result<TensorEntry, ConvertError> {
        let rec = self.record(id, "TensorStorageMetadata", at)?;
        let f = self.fields(rec, at)?;
        let size = self.size(self.field(&f, "size", at)?, &format!("{at}.size"))?;
        let pat = format!("{at}.properties");
        let props = self.record(self.field(&f, "properties", at)?, "TensorProperties", &pat)?;
        // TensorProperties pickles its state as a tuple, dtype first (DCP's __getstate__).
        let state = match props.state().map(|s| self.g.node(s)) {
            Some(pk::Node::Tuple(items)) if !items.is_empty() => items.clone(),
            _ => return Err(invalid(&pat, "no (dtype, ...) state")),
        };
        let dtype = match self.g.node(state[0]) {
            pk::Node::TorchDtype(d) => {
                DType::from_name(d.torch_name()).ok_or_else(|| ConvertError::Unsupported {
                    member: METADATA_FILE.into(),
                    path: pat.clone(),
                    what: format!("dtype torch.{}", d.torch_name()),
                })?
            }
            other => return Err(invalid(&pat, format!("dtype is a {}", other.type_name()))),
        };
        let properties = self.properties(&state, &pat)?;
        let list = match self.g.node(self.field(&f, "chunks", at)?) {
            pk::Node::List(items) => items.clone(),
            other => return Err(invalid(at, format!("chunks is a {}", other.type_name()))),
        };
        let mut chunks = Vec::with_capacity(list.len());
        for (i, c) in list.into_iter().enumerate() {
            let cat = format!("{at}.chunks[{i}]");
            let rec = self.record(c, "ChunkStorageMetadata", &cat)?;
            let cf = self.fields(rec, &cat)?;
            chunks.push((
                self.size(self.field(&cf, "offsets", &cat)?, &format!("{cat}.offsets"))?,
                self.size(self.field(&cf, "sizes", &cat)?, &format!("{cat}.sizes"))?,
            ));
        }
        Ok(TensorEntry {
            dtype,
            size,
            chunks,
            properties,
        })
    }

    /// The rest of `TensorProperties`' state tuple; fields that older torch does not write take
    /// its defaults.
    fn properties(&self, state: &[pk::NodeId], at: &str) -> Result<Properties, ConvertError> {
        let flag = |i: usize, name: &str| match state.get(i).map(|&id| self.g.node(id)) {
            None => Ok(false),
            Some(pk::Node::Bool(b)) => Ok(*b),
            Some(other) => Err(invalid(at, format!("{name} is a {}", other.type_name()))),
        };
        match state.get(1).map(|&id| self.g.node(id)) {
            None => {}
            Some(pk::Node::TorchLayout(l)) if &**l == "torch.strided" => {}
            Some(other) => {
                return Err(ConvertError::Unsupported {
                    member: METADATA_FILE.into(),
                    path: at.into(),
                    what: format!("layout {other:?}: only dense (strided) tensors"),
                });
            }
        }
        let memory_format = match state.get(3) {
            None => tensorseal::MEMORY_FORMATS[0],
            Some(&id) => {
                let rec = self.record(id, "_MEM_FORMAT_ENCODING", at)?;
                let code = match self.g.node(rec.args()) {
                    pk::Node::Tuple(a) if a.len() == 1 => self.uint(a[0], at)?,
                    _ => {
                        return Err(invalid(
                            at,
                            "a memory format that is not _MEM_FORMAT_ENCODING(n)",
                        ));
                    }
                };
                usize::try_from(code)
                    .ok()
                    .and_then(|c| tensorseal::MEMORY_FORMATS.get(c).copied())
                    .ok_or_else(|| invalid(at, format!("memory format code {code}")))?
            }
        };
        let strides = match state.get(5).map(|&id| (id, self.g.node(id))) {
            None | Some((_, pk::Node::None)) => None,
            Some((_, pk::Node::Tuple(items) | pk::Node::List(items))) => Some(
                items
                    .clone()
                    .into_iter()
                    .map(|i| self.uint(i, &format!("{at}.strides")))
                    .collect::<Result<_, _>>()?,
            ),
            Some((_, other)) => {
                return Err(invalid(at, format!("strides is a {}", other.type_name())));
            }
        };
        Ok(Properties {
            requires_grad: flag(2, "requires_grad")?,
            memory_format,
            pin_memory: flag(4, "pin_memory")?,
            strides,
        })
    }

    /// `StorageMeta.modules`, if the metadata records a storage meta.
    fn modules(&self, id: Option<pk::NodeId>) -> Result<Vec<String>, ConvertError> {
        let Some(id) = id.filter(|&id| !matches!(self.g.node(id), pk::Node::None)) else {
            return Ok(Vec::new());
        };
        let at = "Metadata.storage_meta";
        let f = self.fields(self.record(id, "StorageMeta", at)?, at)?;
        match f.get("modules").map(|&m| self.g.node(m)) {
            None | Some(pk::Node::None) => Ok(Vec::new()),
            Some(pk::Node::List(items)) => items
                .clone()
                .into_iter()
                .map(|i| self.text(i, "Metadata.storage_meta.modules"))
                .collect(),
            Some(other) => Err(invalid(at, format!("modules is a {}", other.type_name()))),
        }
    }

    /// `storage_data`: `MetadataIndex(fqn, offset)` to the file and byte range of the item.
    #[allow(clippy::type_complexity)]
    fn storage(
        &self,
        id: pk::NodeId,
        files: &DcpFiles<'_>,
    ) -> Result<HashMap<(String, Option<Vec<u64>>), Stored>, ConvertError> {
        let mut out = HashMap::new();
        for (i, (k, v)) in self.dict(id, "storage_data")?.into_iter().enumerate() {
            let at = format!("storage_data[{i}]");
            let kf = self.fields(self.record(k, "MetadataIndex", &at)?, &at)?;
            let fqn = self.text(self.field(&kf, "fqn", &at)?, &at)?;
            let offset = match kf.get("offset").map(|&o| self.g.node(o)) {
                None | Some(pk::Node::None) => None,
                Some(_) => Some(self.size(kf["offset"], &format!("{at}.offset"))?),
            };
            let at = match &offset {
                Some(o) => format!("storage_data[{fqn:?} at {o:?}]"),
                None => format!("storage_data[{fqn:?}]"),
            };
            let vf = self.fields(self.record(v, "_StorageInfo", &at)?, &at)?;
            let name = self.text(self.field(&vf, "relative_path", &at)?, &at)?;
            let start = self.uint(self.field(&vf, "offset", &at)?, &at)?;
            let length = self.uint(self.field(&vf, "length", &at)?, &at)?;
            match vf.get("transform_descriptors").map(|&t| self.g.node(t)) {
                None | Some(pk::Node::None) => {}
                Some(pk::Node::List(l)) if l.is_empty() => {}
                Some(_) => {
                    return Err(ConvertError::Unsupported {
                        member: METADATA_FILE.into(),
                        path: at,
                        what: "a transformed (compressed or encrypted) item; only plain \
                               FileSystemWriter items are read"
                            .into(),
                    });
                }
            }
            let file = files
                .data
                .iter()
                .position(|(n, _)| *n == name)
                .ok_or_else(|| {
                    invalid(
                        &at,
                        format!("names {name:?}, which is not a .distcp file of the folder"),
                    )
                })?;
            let len = files.data[file].1.len() as u64;
            if start.checked_add(length).is_none_or(|end| end > len) {
                return Err(invalid(
                    &at,
                    format!(
                        "bytes {start}..{} lie past the end of {name} ({len} bytes)",
                        start.saturating_add(length)
                    ),
                ));
            }
            if out
                .insert(
                    (fqn.clone(), offset.clone()),
                    Stored {
                        file,
                        offset: start,
                        length,
                    },
                )
                .is_some()
            {
                return Err(invalid(at, "stored twice"));
            }
        }
        Ok(out)
    }

    /// `planner_data`: each flattened name to its path in the nested state dict.
    fn planner(&self, id: pk::NodeId) -> Result<Vec<(String, Vec<Key>)>, ConvertError> {
        let mut out = Vec::new();
        for (k, v) in self.dict(id, "planner_data")? {
            let fqn = self.text(k, "planner_data key")?;
            let at = format!("planner_data[{fqn:?}]");
            let items = match self.g.node(v) {
                pk::Node::Tuple(items) | pk::Node::List(items) if !items.is_empty() => {
                    items.clone()
                }
                other => {
                    return Err(invalid(
                        &at,
                        format!("a {}, not a non-empty tuple", other.type_name()),
                    ));
                }
            };
            let mut path = Vec::with_capacity(items.len());
            for (j, item) in items.into_iter().enumerate() {
                path.push(match self.g.node(item) {
                    pk::Node::Str(s) => Key::Str(s.to_string()),
                    pk::Node::Int(_) if j > 0 => {
                        let i = self.uint(item, &at)?;
                        Key::Index(
                            usize::try_from(i)
                                .ok()
                                .filter(|&i| i < 1 << 20)
                                .ok_or_else(|| invalid(&at, "a list index over 2^20"))?,
                        )
                    }
                    other => {
                        return Err(invalid(
                            &at,
                            format!("a path key that is a {}", other.type_name()),
                        ));
                    }
                });
            }
            out.push((fqn, path));
        }
        Ok(out)
    }
}

fn item_bytes<'s>(s: &Stored, files: &DcpFiles<'s>, fqn: &str) -> Result<&'s [u8], ConvertError> {
    let (name, bytes) = files.data[s.file];
    let range = usize::try_from(s.offset)
        .ok()
        .zip(usize::try_from(s.offset + s.length).ok());
    range
        .and_then(|(a, b)| bytes.get(a..b))
        .ok_or_else(|| invalid(fqn, format!("range past the end of {name}")))
}

/// A non-tensor value stored at `s`: its `torch.save` zip converted to a tree, tensors inside
/// it handed to `sink`.
pub(crate) fn value_tree(
    fqn: &str,
    s: &Stored,
    files: &DcpFiles<'_>,
    ctx: &PickleContext<'_>,
    limits: &Limits,
    sink: &mut dyn BlobSink,
) -> Result<(Node, PickleOutcome), ConvertError> {
    let slice = item_bytes(s, files, fqn)?;
    torch_save_tree(slice, fqn, files, s, ctx, limits, sink)
}

/// One item: a `torch.save` zip inside a `.distcp` file, converted like a torch zip file.
fn torch_save_tree(
    slice: &[u8],
    fqn: &str,
    files: &DcpFiles<'_>,
    s: &Stored,
    ctx: &PickleContext<'_>,
    limits: &Limits,
    sink: &mut dyn BlobSink,
) -> Result<(Node, PickleOutcome), ConvertError> {
    let name = files.data[s.file].0;
    let zip = ZipArchive::new(slice, limits).map_err(|e| ConvertError::Invalid {
        member: name.into(),
        path: format!("{fqn} (bytes {}..{})", s.offset, s.offset + s.length),
        what: format!("not a torch.save zip: {e}"),
    })?;
    if zip_kind(&zip)? != ZipKind::TorchZip {
        return Err(ConvertError::Invalid {
            member: name.into(),
            path: fqn.into(),
            what: "the item is a zip but not a torch.save archive".into(),
        });
    }
    let tz = TorchZip::new(zip, limits)?;
    torch::zip_tree(&tz, ctx, sink)
}

/// Keeps the blobs a chunk's conversion produces in memory, to copy into the whole tensor.
#[derive(Default)]
struct Capture {
    blobs: Vec<Vec<u8>>,
}

impl BlobSink for Capture {
    fn slice(&mut self, data: &[u8], _: DType, _: &str) -> Result<BlobId, ConvertError> {
        self.blobs.push(data.to_vec());
        Ok(self.blobs.len() - 1)
    }

    fn view(&mut self, view: &mut View<'_>, _: DType, what: &str) -> Result<BlobId, ConvertError> {
        let mut out =
            vec![0u8; usize::try_from(view.byte_len()).map_err(|_| invalid(what, "too large"))?];
        view.read_at(0, &mut out)
            .map_err(|e| invalid(what, e.to_string()))?;
        self.blobs.push(out);
        Ok(self.blobs.len() - 1)
    }
}

/// Checks that a tensor's chunks tile it exactly once, reads each, and writes the whole tensor.
#[allow(clippy::too_many_arguments)]
fn assemble(
    fqn: &str,
    t: &TensorEntry,
    md: &DcpMetadata,
    files: &DcpFiles<'_>,
    ctx: &PickleContext<'_>,
    limits: &Limits,
    sink: &mut dyn BlobSink,
    stats: &mut TreeStats,
) -> Result<Node, ConvertError> {
    let at = format!("tensor {fqn}");
    let bytes = check_tiling(METADATA_FILE, fqn, t.dtype, &t.size, &t.chunks, limits)?;
    // Before allocating the whole tensor: its chunks' items must be in the folder, and must be
    // able to hold its bytes (torch.save stores tensor data uncompressed), so that a small
    // .metadata cannot make the converter reserve gigabytes for data that does not exist.
    let mut stored = 0u64;
    for (off, _) in &t.chunks {
        if let Some(s) = md.stored(fqn, Some(off)) {
            stored = stored.saturating_add(s.length);
        }
    }
    let most = stored
        .saturating_mul(limits.max_output_ratio)
        .saturating_add(limits.output_slack);
    if bytes > most {
        return Err(invalid(
            &at,
            format!("declares {bytes} bytes, more than its chunks' {stored} stored bytes can hold"),
        ));
    }
    let mut whole = vec![0u8; usize::try_from(bytes).map_err(|_| invalid(&at, "too large"))?];
    let strides = row_major_strides(&t.size);
    for (off, sz) in &t.chunks {
        let mut capture = Capture::default();
        let chunk = read_chunk(fqn, t, off, sz, md, files, ctx, limits, &mut capture)?;
        let data: &[u8] = match chunk.blob {
            Some(b) => &capture.blobs[b],
            None => &[],
        };
        copy_chunk(&mut whole, data, off, sz, &strides, t.dtype.itemsize());
    }
    let blob = if whole.is_empty() {
        None
    } else {
        Some(sink.slice(&whole, t.dtype, fqn)?)
    };
    stats.tensors += 1;
    stats.blobs += blob.is_some() as u64;
    stats.bytes += bytes;
    Ok(Node::Tensor(Box::new(Tensor::new(
        t.dtype,
        t.size.clone(),
        blob,
    ))))
}

/// Reads the chunk of tensor `fqn` at `off` from its `.distcp` item, handing its data to `sink`:
/// a tensor of the entry's dtype and the chunk's `sz`, or an error naming both.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_chunk(
    fqn: &str,
    t: &TensorEntry,
    off: &[u64],
    sz: &[u64],
    md: &DcpMetadata,
    files: &DcpFiles<'_>,
    ctx: &PickleContext<'_>,
    limits: &Limits,
    sink: &mut dyn BlobSink,
) -> Result<Tensor, ConvertError> {
    let at = format!("tensor {fqn}");
    let s = md.stored(fqn, Some(off)).ok_or_else(|| {
        invalid(
            &at,
            format!("no storage_data entry for the chunk at {off:?}"),
        )
    })?;
    let slice = item_bytes(s, files, fqn)?;
    let (node, _) = torch_save_tree(slice, fqn, files, s, ctx, limits, sink)?;
    match node {
        Node::Tensor(c) if c.dtype == t.dtype && c.shape == sz => Ok(*c),
        Node::Tensor(c) => Err(invalid(
            &at,
            format!(
                "the chunk at {off:?} holds a {} tensor of shape {:?}, the metadata says {} {sz:?}",
                c.dtype, c.shape, t.dtype
            ),
        )),
        _ => Err(invalid(
            &at,
            format!("the chunk at {off:?} is not a tensor"),
        )),
    }
}

/// Checks that `chunks` (offsets, sizes) tile a tensor of `size` exactly once: each inside it,
/// no two overlapping, no gap; returns the tensor's byte size, within the limits. `member` is
/// the file the chunk layout came from, for errors.
pub(crate) fn check_tiling(
    member: &str,
    fqn: &str,
    dtype: DType,
    size: &[u64],
    chunks: &[(Vec<u64>, Vec<u64>)],
    limits: &Limits,
) -> Result<u64, ConvertError> {
    let invalid = |path: &str, what: String| ConvertError::Invalid {
        member: member.into(),
        path: path.into(),
        what,
    };
    let at = format!("tensor {fqn}");
    let rank = size.len();
    check("max_rank", rank as u64, limits.max_rank, 0)?;
    check(
        "max_dcp_chunks",
        chunks.len() as u64,
        limits.max_dcp_chunks,
        0,
    )?;
    let item = dtype.itemsize();
    let numel = size
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid(&at, "too many elements".into()))?;
    let bytes = numel
        .checked_mul(item)
        .ok_or_else(|| invalid(&at, "too large".into()))?;
    check("max_dcp_tensor", bytes, limits.max_dcp_tensor, 0)?;
    let mut covered = 0u64;
    for (i, (off, sz)) in chunks.iter().enumerate() {
        if off.len() != rank || sz.len() != rank {
            return Err(invalid(
                &at,
                format!(
                    "chunk {i} has {} dimensions, the tensor {rank}",
                    off.len().max(sz.len())
                ),
            ));
        }
        if (0..rank).any(|d| off[d].checked_add(sz[d]).is_none_or(|e| e > size[d])) {
            return Err(invalid(
                &at,
                format!(
                    "chunk {i} at {off:?} of size {sz:?} lies outside the tensor's size {size:?}"
                ),
            ));
        }
        for (j, (o2, s2)) in chunks[..i].iter().enumerate() {
            let overlap = (0..rank).all(|d| off[d] < o2[d] + s2[d] && o2[d] < off[d] + sz[d]);
            if overlap && sz.iter().all(|&x| x > 0) && s2.iter().all(|&x| x > 0) {
                return Err(invalid(
                    &at,
                    format!("chunks {j} at {o2:?} and {i} at {off:?} overlap"),
                ));
            }
        }
        covered += sz.iter().product::<u64>();
    }
    if covered != numel {
        return Err(invalid(
            &at,
            format!("its chunks cover {covered} of its {numel} elements (a gap)"),
        ));
    }
    Ok(bytes)
}

/// Row-major element strides of a tensor of `size`.
pub(crate) fn row_major_strides(size: &[u64]) -> Vec<u64> {
    let rank = size.len();
    let mut strides = vec![1u64; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * size[d + 1];
    }
    strides
}

/// Copies a C-contiguous chunk into its place in the whole tensor, one innermost run at a time.
pub(crate) fn copy_chunk(
    whole: &mut [u8],
    chunk: &[u8],
    off: &[u64],
    sz: &[u64],
    strides: &[u64],
    item: u64,
) {
    let rank = sz.len();
    if sz.contains(&0) {
        return;
    }
    if rank == 0 {
        whole[..item as usize].copy_from_slice(&chunk[..item as usize]);
        return;
    }
    let run = (sz[rank - 1] * item) as usize;
    let outer: u64 = sz[..rank - 1].iter().product();
    let mut idx = vec![0u64; rank - 1];
    for r in 0..outer {
        let mut at = off[rank - 1] * strides[rank - 1];
        for d in 0..rank - 1 {
            at += (off[d] + idx[d]) * strides[d];
        }
        let dst = (at * item) as usize;
        let src = r as usize * run;
        whole[dst..dst + run].copy_from_slice(&chunk[src..src + run]);
        for d in (0..rank - 1).rev() {
            idx[d] += 1;
            if idx[d] < sz[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Places `value` at `path` in the nested state dict, as DCP's `set_element` does: a text key
/// in a dict, an index in a list (extended with None), containers made on the way.
pub(crate) fn set_element(
    root: &mut Node,
    path: &[Key],
    value: Node,
    fqn: &str,
) -> Result<(), ConvertError> {
    let clash = || {
        invalid(
            format!("planner_data[{fqn:?}]"),
            "its path runs through a value that is not a container of that kind",
        )
    };
    let mut cur = root;
    for (i, key) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        let fresh = || match path.get(i + 1) {
            Some(Key::Index(_)) => Node::List(Vec::new()),
            _ => Node::Dict(Vec::new()),
        };
        cur = match (cur, key) {
            (Node::Dict(items), Key::Str(k)) => {
                let pos = items
                    .iter()
                    .position(|(n, _)| matches!(n, Node::Str(s) if s == k));
                let pos = match pos {
                    Some(p) => p,
                    None => {
                        items.push((Node::Str(k.clone()), Node::None));
                        items.len() - 1
                    }
                };
                if last {
                    items[pos].1 = value;
                    return Ok(());
                }
                if matches!(items[pos].1, Node::None) {
                    items[pos].1 = fresh();
                }
                &mut items[pos].1
            }
            (Node::List(items), Key::Index(k)) => {
                while items.len() <= *k {
                    items.push(Node::None);
                }
                if last {
                    items[*k] = value;
                    return Ok(());
                }
                if matches!(items[*k], Node::None) {
                    items[*k] = fresh();
                }
                &mut items[*k]
            }
            _ => return Err(clash()),
        };
    }
    Err(clash())
}
