//! torch checkpoints: the zip format (`data.pkl` + `data/<key>` records) and the legacy format
//! (five pickles back to back, then the storages), plus plain pickles.

use crate::error::ConvertError;
use crate::pickle_tree::{BlobSink, StorageBytes, TreeBuilder, TreeStats};
use crate::pickles;
use crate::{ByteOrder, TorchZip};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use tensorseal::Node;
use tensorseal_pickle as pk;

/// What a pickle-based source needs from the conversion.
pub(crate) struct PickleContext<'c> {
    pub(crate) limits: &'c pk::Limits,
    pub(crate) allow_objects: bool,
    pub(crate) max_tree_depth: usize,
    pub(crate) max_tree_nodes: u64,
}

/// What converting one pickle produced, besides the tree.
#[derive(Debug, Default)]
pub(crate) struct PickleOutcome {
    pub(crate) stats: TreeStats,
    /// Globals the interpreter judged unknown and kept as inert records (opt-in).
    pub(crate) inert: Vec<String>,
}

pub(crate) fn build(
    graph: &pk::Graph<'_>,
    storages: &dyn StorageBytes,
    member: &str,
    ctx: &PickleContext<'_>,
    sink: &mut dyn BlobSink,
) -> Result<(Node, PickleOutcome), ConvertError> {
    // Shared containers are expanded into a tree: bound the expansion before doing it.
    let size = graph.tree_size();
    if size > ctx.max_tree_nodes {
        return Err(ConvertError::Unsupported {
            member: member.to_string(),
            path: "the root".into(),
            what: format!(
                "the structure expands to {size} nodes (shared references written out), over the limit of {}",
                ctx.max_tree_nodes
            ),
        });
    }
    let mut builder = TreeBuilder::new(graph, storages, member, ctx.max_tree_depth);
    let root = builder.root(sink)?;
    let inert = graph
        .report()
        .findings()
        .iter()
        .filter(|f| f.verdict == pk::Verdict::Unknown)
        .map(|f| f.to_string())
        .collect();
    Ok((
        root,
        PickleOutcome {
            stats: builder.stats,
            inert,
        },
    ))
}

struct ZipStorages<'a> {
    records: HashMap<String, Cow<'a, [u8]>>,
    big_endian: bool,
    member: String,
}

impl StorageBytes for ZipStorages<'_> {
    fn storage(&self, storage: &pk::Storage) -> Result<&[u8], ConvertError> {
        self.records
            .get(storage.key())
            .map(|r| &**r)
            .ok_or_else(|| ConvertError::Invalid {
                member: self.member.clone(),
                path: format!("storage {:?}", storage.key()),
                what: "no data record for this storage".into(),
            })
    }

    fn big_endian(&self) -> bool {
        self.big_endian
    }
}

/// Converts a `torch.save` zip archive.
pub(crate) fn zip_tree(
    tz: &TorchZip<'_>,
    ctx: &PickleContext<'_>,
    sink: &mut dyn BlobSink,
) -> Result<(Node, PickleOutcome), ConvertError> {
    let member = format!("{}/data.pkl", tz.prefix());
    let options = pickles::options(ctx.limits, ctx.allow_objects, false);
    // A set: checkpoints hold tens of thousands of storages (one per optimizer-state tensor),
    // and the check below looks every record up.
    let mut referenced: HashSet<String> = HashSet::new();
    let mut resolver = |req: &pk::StorageRequest<'_>| -> Result<u64, pk::StorageError> {
        let entry = tz.storage_entry(req.key).ok_or_else(|| {
            pk::StorageError::new(format!("no record {}/data/{}", tz.prefix(), req.key))
        })?;
        if !referenced.contains(req.key) {
            referenced.insert(req.key.to_string());
        }
        Ok(entry.size())
    };
    let graph = pickles::load(tz.data_pkl(), 0, &member, &options, &mut resolver)?;
    // Every record must belong to a storage the pickle names: nothing in the file unaccounted.
    for key in tz.storage_keys() {
        if !referenced.contains(key) {
            return Err(ConvertError::Invalid {
                member: format!("{}/data/{key}", tz.prefix()),
                path: "the archive".into(),
                what: "storage record not referenced by data.pkl".into(),
            });
        }
    }
    let mut records = HashMap::with_capacity(referenced.len());
    for key in referenced {
        let data = tz.storage(&key)?.ok_or_else(|| ConvertError::Invalid {
            member: member.clone(),
            path: format!("storage {key:?}"),
            what: "no data record".into(),
        })?;
        records.insert(key, data);
    }
    let storages = ZipStorages {
        records,
        big_endian: tz.byte_order() == ByteOrder::Big,
        member: member.clone(),
    };
    build(&graph, &storages, &member, ctx, sink)
}

/// torch's legacy magic number, `0x1950a86a20f9469cfc6c`, as little-endian two's complement.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The legacy format's protocol version.
const PROTOCOL_VERSION: i64 = 1001;

/// Whether the pickle graph's root is the legacy magic number.
pub(crate) fn is_legacy_magic(graph: &pk::Graph<'_>) -> bool {
    match graph.node(graph.root()) {
        pk::Node::Int(i) => i.to_le_twos() == MAGIC,
        _ => false,
    }
}

struct LegacyStorages<'a> {
    records: HashMap<String, &'a [u8]>,
}

impl StorageBytes for LegacyStorages<'_> {
    fn storage(&self, storage: &pk::Storage) -> Result<&[u8], ConvertError> {
        self.records
            .get(storage.key())
            .copied()
            .ok_or_else(|| ConvertError::Invalid {
                member: "legacy storages".into(),
                path: format!("storage {:?}", storage.key()),
                what: "not in the storage key list".into(),
            })
    }

    fn big_endian(&self) -> bool {
        // The legacy writer byte-swaps to little-endian on big-endian hosts.
        false
    }
}

/// Converts a legacy (`_use_new_zipfile_serialization=False`) file: magic number, protocol
/// version, sys_info, the object, the sorted storage keys, then for each key an 8-byte element
/// count and the storage bytes. Every byte of the file must be accounted for.
pub(crate) fn legacy_tree(
    file: &[u8],
    ctx: &PickleContext<'_>,
    sink: &mut dyn BlobSink,
) -> Result<(Node, PickleOutcome), ConvertError> {
    let options = pickles::options(ctx.limits, ctx.allow_objects, true);
    let invalid = |what: String| ConvertError::Invalid {
        member: "legacy file".into(),
        path: "the file".into(),
        what,
    };
    let magic = pickles::load(
        file,
        0,
        "pickle 1 of 5 (magic number)",
        &options,
        &mut pk::NoStorages,
    )?;
    if !is_legacy_magic(&magic) {
        return Err(invalid(
            "the first pickle is not torch's legacy magic number".into(),
        ));
    }
    let protocol = pickles::load(
        file,
        magic.end(),
        "pickle 2 of 5 (protocol version)",
        &options,
        &mut pk::NoStorages,
    )?;
    match protocol.node(protocol.root()) {
        pk::Node::Int(i) if i.to_i64() == Some(PROTOCOL_VERSION) => {}
        _ => {
            return Err(invalid(format!(
                "legacy protocol version is not {PROTOCOL_VERSION}"
            )));
        }
    }
    let sys_info = pickles::load(
        file,
        protocol.end(),
        "pickle 3 of 5 (sys_info)",
        &options,
        &mut pk::NoStorages,
    )?;
    if !matches!(sys_info.node(sys_info.root()), pk::Node::Dict(_)) {
        return Err(invalid("legacy sys_info is not a dict".into()));
    }
    // The storage sizes can only be checked once the key list says where the data is.
    let mut declared: HashMap<String, (u64, u64)> = HashMap::new();
    let mut record = |req: &pk::StorageRequest<'_>| -> Result<u64, pk::StorageError> {
        let entry = declared
            .entry(req.key.to_string())
            .or_insert((req.numel, req.nbytes));
        if *entry != (req.numel, req.nbytes) {
            return Err(pk::StorageError::new(format!(
                "storage {} declared with two sizes",
                req.key
            )));
        }
        Ok(req.nbytes)
    };
    let object = pickles::load(
        file,
        sys_info.end(),
        "pickle 4 of 5 (object)",
        &options,
        &mut record,
    )?;
    let keys = pickles::load(
        file,
        object.end(),
        "pickle 5 of 5 (storage keys)",
        &options,
        &mut pk::NoStorages,
    )?;
    let pk::Node::List(key_nodes) = keys.node(keys.root()) else {
        return Err(invalid("the storage key list is not a list".into()));
    };
    let mut records = HashMap::new();
    let mut offset = keys.end();
    for &k in key_nodes {
        let key = keys
            .as_str(k)
            .ok_or_else(|| invalid("a storage key is not a str".into()))?;
        let &(numel, nbytes) = declared.get(key).ok_or_else(|| {
            invalid(format!(
                "storage key {key:?} is listed but no tensor uses it"
            ))
        })?;
        let count_bytes = file.get(offset..offset + 8).ok_or_else(|| {
            invalid(format!(
                "storage {key:?}: truncated element count at offset {offset}"
            ))
        })?;
        let count = u64::from_le_bytes(count_bytes.try_into().expect("8 bytes"));
        if count != numel {
            return Err(invalid(format!(
                "storage {key:?} at offset {offset}: the file holds {count} elements, the pickle declares {numel}"
            )));
        }
        let start = offset + 8;
        let end = usize::try_from(nbytes)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&e| e <= file.len())
            .ok_or_else(|| {
                invalid(format!(
                    "storage {key:?} at offset {start}: {nbytes} bytes run past the end of the file"
                ))
            })?;
        if records.insert(key.to_string(), &file[start..end]).is_some() {
            return Err(invalid(format!("storage key {key:?} listed twice")));
        }
        offset = end;
    }
    if offset != file.len() {
        return Err(invalid(format!(
            "{} bytes after the last storage, at offset {offset}",
            file.len() - offset
        )));
    }
    if let Some(missing) = declared.keys().find(|k| !records.contains_key(*k)) {
        return Err(invalid(format!(
            "storage {missing:?} is used but not in the key list"
        )));
    }
    build(
        &object,
        &LegacyStorages { records },
        "pickle 4 of 5 (object)",
        ctx,
        sink,
    )
}

/// Converts a plain pickle file (one pickle, nothing after it).
pub(crate) fn pickle_tree(
    file: &[u8],
    name: &str,
    ctx: &PickleContext<'_>,
    sink: &mut dyn BlobSink,
) -> Result<(Node, PickleOutcome), ConvertError> {
    let options = pickles::options(ctx.limits, ctx.allow_objects, false);
    let graph = pickles::load(file, 0, name, &options, &mut pk::NoStorages)?;
    struct NoBytes;
    impl StorageBytes for NoBytes {
        fn storage(&self, s: &pk::Storage) -> Result<&[u8], ConvertError> {
            Err(ConvertError::Invalid {
                member: "pickle".into(),
                path: format!("storage {:?}", s.key()),
                what: "a plain pickle has no storages".into(),
            })
        }
        fn big_endian(&self) -> bool {
            false
        }
    }
    build(&graph, &NoBytes, name, ctx, sink)
}
