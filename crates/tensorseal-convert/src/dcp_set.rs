//! A DCP folder converted to a shard set (spec §11): what `tensorseal convert DCP_DIR SET/`
//! writes. Each `*.distcp` file that holds items becomes one shard of the same name
//! (`__0_0.distcp` to `__0_0.tseal`), holding that file's chunks and values as written (no chunk
//! is merged or split, so a DCP load at any world size reads only the chunks it needs, as from
//! the original); then the signed index binds them, written last.
//!
//! `.metadata` is read exactly as for a consolidating conversion ([`crate::dcp::read_metadata`]:
//! the pickle VM, DCP's classes as inert records, every byte range checked) and every tensor's
//! chunks must tile it exactly once before the first shard is written. A run that fails removes
//! the shards it wrote, so it leaves no index and no stray shard; and the folder, if it created
//! it, unless the sandbox is in force (Landlock grants no right on the folder's parent), in which
//! case the folder is left empty.

use crate::convert::{
    BudgetSink, ConvertOptions, Inputs, PRODUCER, check_metadata, create_writer, folder_digest, io,
    pickle_context,
};
use crate::dcp::{DcpEntry, DcpFiles, DcpMetadata, check_tiling, read_chunk, read_metadata};
use crate::error::ConvertError;
use crate::pickle_tree::TreeStats;
use crate::sandbox::{SandboxMode, SandboxPolicy, SandboxReport};
use crate::torch::PickleContext;
use crate::{Format, Limits};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tensorseal::{
    IndexChunk, IndexEntry, IndexTensor, IndexValue, Node, SHARD_INDEX_FILE, ShardBinding,
    ShardIndex, ShardPlace, Tensor, WrittenFile,
};

/// What [`convert_to_shard_set`] wrote.
#[derive(Debug)]
pub struct ShardSetConversion {
    /// SHA-256 of the DCP folder's files (spec §5), hex.
    pub source_sha256: String,
    /// The index file.
    pub index: WrittenFile,
    /// The shards, in file-name order.
    pub shards: Vec<WrittenFile>,
    /// Key ids of the keys that signed every file.
    pub signed_by: Vec<String>,
    /// Tensors, blobs and bytes written, over all shards.
    pub stats: TreeStats,
    /// Unknown globals kept as inert records (only with `allow_objects`).
    pub inert_objects: Vec<String>,
    /// What the sandbox enforced.
    pub sandbox: SandboxReport,
}

impl ShardSetConversion {
    /// The report as `tensorseal convert --json` prints it after `input`, `output`, `ok` and
    /// `exit_code`. `mode` is the sandbox mode that was asked for.
    pub fn to_json(&self, mode: SandboxMode) -> serde_json::Value {
        serde_json::json!({
            "source_format": "dcp",
            "source_sha256": self.source_sha256,
            "shard_set": true,
            "manifest_sha256": hex::encode(self.index.manifest_sha256),
            "file_length": self.index.length,
            "shards": self.shards.iter().map(|s| serde_json::json!({
                "file": file_name(&s.path),
                "length": s.length,
                "manifest_sha256": hex::encode(s.manifest_sha256),
            })).collect::<Vec<_>>(),
            "tensors": self.stats.tensors,
            "blobs": self.stats.blobs,
            "bytes": self.stats.bytes,
            "shared": self.stats.shared,
            "signed_by": self.signed_by,
            "inert_objects": self.inert_objects,
            "notes": Vec::<String>::new(),
            "sandbox": self.sandbox.to_json(mode),
        })
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

fn invalid(member: &str, path: impl Into<String>, what: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        member: member.into(),
        path: path.into(),
        what: what.into(),
    }
}

/// Whether a conversion's OUTPUT names a folder, so that a DCP folder converts to a shard set
/// ([`convert_to_shard_set`]) rather than to one file: an existing directory, or a path written
/// with a trailing `/`. The CLI and the Python package decide by this one rule.
pub fn is_folder_output(output: &Path) -> bool {
    output.is_dir() || output.as_os_str().as_encoded_bytes().ends_with(b"/")
}

/// One item of a `.distcp` file, in the order of its bytes.
struct Item<'m> {
    offset: u64,
    fqn: &'m str,
    /// The tensor entry and the chunk's position in its chunk list, or `None` for a value.
    chunk: Option<(&'m crate::dcp::TensorEntry, usize)>,
}

/// The shards this run put in place, removed again unless the run succeeds.
struct Placed(Vec<PathBuf>);

impl Drop for Placed {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Converts the DCP `FileSystemWriter` folder `input` into a shard set in the folder `output`
/// (created if missing; it must not hold `.tseal` files). Every shard and the index are signed
/// with `options.signers` and carry `options.metadata`; `run_id` and `step` among them are also
/// recorded in the index's tree.
///
/// # Errors
/// As [`crate::convert`] for the input; [`ConvertError::Unsupported`] for an input that is not
/// a DCP folder or a data file not named as `FileSystemWriter` names them (`__RANK_N.distcp`);
/// [`ConvertError::Invalid`] for an output folder that already holds a checkpoint.
pub fn convert_to_shard_set(
    input: &Path,
    output: &Path,
    options: &ConvertOptions<'_>,
) -> Result<ShardSetConversion, ConvertError> {
    check_metadata(options)?;
    let (run_id, step) = run_and_step(options)?;
    let inputs = Inputs::open(input, &options.limits)?;
    if inputs.format != Format::Dcp {
        return Err(ConvertError::Unsupported {
            member: input.display().to_string(),
            path: "the input".into(),
            what: format!(
                "a {} input: only a torch.distributed.checkpoint folder converts to a shard \
                 set; give OUTPUT a file name (OUT.tseal) instead",
                inputs.format.name()
            ),
        });
    }
    let created = prepare_folder(output)?;
    let result = write_set(&inputs, output, options, run_id, step);
    if result.is_err() && created {
        let _ = std::fs::remove_dir(output);
    }
    result
}

fn write_set(
    inputs: &Inputs,
    output: &Path,
    options: &ConvertOptions<'_>,
    run_id: Option<String>,
    step: Option<i64>,
) -> Result<ShardSetConversion, ConvertError> {
    let mut policy = SandboxPolicy::new(options.sandbox).write_dir(output);
    for p in &inputs.read_paths {
        policy = policy.read(p);
    }
    let sandbox = policy.apply()?;

    let source = inputs.source();
    let files = DcpFiles {
        metadata: source.bytes,
        data: source
            .shard_names
            .iter()
            .copied()
            .zip(source.shards.iter().copied())
            .collect(),
    };
    let ctx = pickle_context(options);
    let (written, source_sha256) = std::thread::scope(|s| {
        let hasher = s.spawn(|| hex::encode(folder_digest(&source)));
        let written = write_shards(&files, &ctx, output, options);
        (written, hasher.join().expect("hashing does not panic"))
    });
    let (md, shards, stats, inert, mut placed) = written?;

    let mut ranks = Vec::with_capacity(shards.len());
    for s in &shards {
        ranks.push(rank_of(&file_name(&s.path))?);
    }
    let bindings: Vec<ShardBinding> = shards
        .iter()
        .map(|s| ShardBinding {
            file: file_name(&s.path),
            length: s.length,
            manifest_sha256: s.manifest_sha256,
        })
        .collect();
    let index = ShardIndex {
        run_id,
        step,
        world_size: ranks.iter().max().map_or(0, |r| r + 1),
        dcp_version: md.meta.version.clone(),
        shards: bindings,
        entries: md.index_entries.clone(),
        planner_data: md.planner_data(),
        modules: md.meta.modules.clone(),
    };
    let mut metadata = common_metadata(options);
    metadata.insert("source_format".into(), "dcp".into());
    metadata.insert("source_sha256".into(), source_sha256.clone());
    metadata.insert("tensorseal.dcp".into(), "index".into());
    let path = output.join(SHARD_INDEX_FILE);
    let writer = create_writer(&path, options)?;
    let index = writer.finish(index.to_tree(), metadata, &options.signers)?;
    // Complete: the shards stay.
    placed.0.clear();
    Ok(ShardSetConversion {
        source_sha256,
        index,
        shards,
        signed_by: options
            .signers
            .iter()
            .map(|k| k.public_key().key_id())
            .collect(),
        stats,
        inert_objects: inert,
        sandbox,
    })
}

/// `.metadata` read, with the index entries the shards' keys give.
struct SetMetadata {
    meta: DcpMetadata,
    index_entries: Vec<IndexEntry>,
}

impl SetMetadata {
    /// `planner_data` as the index records it: each name to the tuple of its path's keys.
    fn planner_data(&self) -> Option<Node> {
        if self.meta.planner.is_empty() {
            return None;
        }
        Some(Node::Dict(
            self.meta
                .planner
                .iter()
                .map(|(fqn, path)| {
                    let keys = path
                        .iter()
                        .map(|k| match k {
                            crate::dcp::Key::Str(s) => Node::Str(s.clone()),
                            crate::dcp::Key::Index(i) => {
                                Node::Int(tensorseal::Int::from(*i as u64))
                            }
                        })
                        .collect();
                    (Node::Str(fqn.clone()), Node::Tuple(keys))
                })
                .collect(),
        ))
    }
}

type Shards = (
    SetMetadata,
    Vec<WrittenFile>,
    TreeStats,
    Vec<String>,
    Placed,
);

/// Reads `.metadata`, checks every tensor's tiling, then writes one shard per data file that
/// holds items.
fn write_shards(
    files: &DcpFiles<'_>,
    ctx: &PickleContext<'_>,
    output: &Path,
    options: &ConvertOptions<'_>,
) -> Result<Shards, ConvertError> {
    let limits: &Limits = &options.limits;
    let md = read_metadata(files, ctx, limits)?;
    let meta_file = crate::dcp::METADATA_FILE;

    // Every item by data file, and every tensor's tiling, before anything is written.
    let mut by_file: Vec<Vec<Item<'_>>> = (0..files.data.len()).map(|_| Vec::new()).collect();
    for (fqn, entry) in &md.entries {
        let at = format!("state_dict_metadata[{fqn:?}]");
        match entry {
            DcpEntry::Tensor(t) => {
                check_tiling(meta_file, fqn, t.dtype, &t.size, &t.chunks, limits)?;
                for (j, (off, _)) in t.chunks.iter().enumerate() {
                    let s = md.stored(fqn, Some(off)).ok_or_else(|| {
                        invalid(
                            meta_file,
                            format!("tensor {fqn}"),
                            format!("no storage_data entry for the chunk at {off:?}"),
                        )
                    })?;
                    by_file[s.file].push(Item {
                        offset: s.offset,
                        fqn,
                        chunk: Some((t, j)),
                    });
                }
            }
            DcpEntry::Bytes => {
                let s = md.stored(fqn, None).ok_or_else(|| {
                    invalid(meta_file, &at, "no storage_data entry for this value")
                })?;
                by_file[s.file].push(Item {
                    offset: s.offset,
                    fqn,
                    chunk: None,
                });
            }
        }
    }
    for (i, items) in by_file.iter_mut().enumerate() {
        if !items.is_empty() {
            rank_of(&shard_name(files.data[i].0))?;
        }
        items.sort_by_key(|it| it.offset);
    }

    let mut placed = Placed(Vec::new());
    let mut shards = Vec::new();
    let mut stats = TreeStats::default();
    let mut inert = md.inert.clone();
    // Where each item went: (fqn, chunk position or None) to (shard file, key).
    let mut places: BTreeMap<(&str, Option<usize>), ShardPlace> = BTreeMap::new();
    for (i, items) in by_file.iter().enumerate() {
        if items.is_empty() {
            continue;
        }
        let (data_name, data) = files.data[i];
        let name = shard_name(data_name);
        let path = output.join(&name);
        let mut writer = create_writer(&path, options)?;
        let mut sink = BudgetSink::new(&mut writer, limits, data.len() as u64, options.progress);
        let mut root = Vec::with_capacity(items.len());
        for (k, item) in items.iter().enumerate() {
            let (key, node) = match item.chunk {
                Some((t, j)) => {
                    let (off, sz) = &t.chunks[j];
                    let c = read_chunk(item.fqn, t, off, sz, &md, files, ctx, limits, &mut sink)?;
                    stats.tensors += 1;
                    stats.blobs += c.blob.is_some() as u64;
                    stats.bytes += c.byte_size().unwrap_or(0);
                    // The rank's chunk, plainly (spec §11.1): no kind, grad flag or attributes.
                    let node = Node::Tensor(Box::new(Tensor::new(c.dtype, c.shape, c.blob)));
                    (format!("t{k}"), node)
                }
                None => {
                    let s = md.stored(item.fqn, None).expect("located above");
                    let (node, outcome) =
                        crate::dcp::value_tree(item.fqn, s, files, ctx, limits, &mut sink)?;
                    stats.tensors += outcome.stats.tensors;
                    stats.blobs += outcome.stats.blobs;
                    stats.bytes += outcome.stats.bytes;
                    stats.shared += outcome.stats.shared;
                    inert.extend(outcome.inert);
                    (format!("b{k}"), node)
                }
            };
            places.insert(
                (item.fqn, item.chunk.map(|(_, j)| j)),
                ShardPlace {
                    file: name.clone(),
                    key: key.clone(),
                },
            );
            root.push((Node::Str(key), node));
        }
        let mut metadata = common_metadata(options);
        metadata.insert("tensorseal.dcp".into(), "shard".into());
        metadata.insert("tensorseal.dcp.rank".into(), rank_of(&name)?.to_string());
        let written = writer.finish(Node::Dict(root), metadata, &options.signers)?;
        placed.0.push(written.path.clone());
        shards.push(written);
    }

    let index_entries = md
        .entries
        .iter()
        .map(|(fqn, entry)| {
            let value = match entry {
                DcpEntry::Bytes => IndexValue::Bytes(places[&(fqn.as_str(), None)].clone()),
                DcpEntry::Tensor(t) => IndexValue::Tensor(IndexTensor {
                    size: t.size.clone(),
                    dtype: t.dtype,
                    requires_grad: t.properties.requires_grad,
                    memory_format: t.properties.memory_format.into(),
                    pin_memory: t.properties.pin_memory,
                    strides: t.properties.strides.clone(),
                    chunks: t
                        .chunks
                        .iter()
                        .enumerate()
                        .map(|(j, (offsets, sizes))| IndexChunk {
                            offsets: offsets.clone(),
                            sizes: sizes.clone(),
                            place: places[&(fqn.as_str(), Some(j))].clone(),
                        })
                        .collect(),
                }),
            };
            IndexEntry {
                fqn: fqn.clone(),
                value,
            }
        })
        .collect();
    inert.sort();
    inert.dedup();
    Ok((
        SetMetadata {
            meta: md,
            index_entries,
        },
        shards,
        stats,
        inert,
        placed,
    ))
}

/// The shard a data file becomes: `__0_0.distcp` to `__0_0.tseal`.
fn shard_name(data_name: &str) -> String {
    let stem = data_name
        .strip_suffix(crate::dcp::DATA_SUFFIX)
        .unwrap_or(data_name);
    format!("{stem}.tseal")
}

/// The rank of a `FileSystemWriter` data file or its shard, from its name `__RANK_N`.
fn rank_of(name: &str) -> Result<u64, ConvertError> {
    name.strip_prefix("__")
        .and_then(|r| r.split_once('_'))
        .and_then(|(r, _)| r.parse::<u64>().ok())
        .ok_or_else(|| ConvertError::Unsupported {
            member: name.into(),
            path: "the file name".into(),
            what: "not named as FileSystemWriter names data files (__RANK_N.distcp), so its \
                   rank is unknown; convert the folder to one file (OUT.tseal) instead"
                .into(),
        })
}

/// `run_id` and `step` of the caller's metadata, for the index's tree.
fn run_and_step(
    options: &ConvertOptions<'_>,
) -> Result<(Option<String>, Option<i64>), ConvertError> {
    let step = match options.metadata.get("step") {
        None => None,
        Some(s) => Some(s.parse::<i64>().map_err(|_| {
            invalid(
                "metadata",
                "step",
                format!("{s:?} is not a step a shard index can record (0 to 2^63-1)"),
            )
        })?),
    };
    Ok((options.metadata.get("run_id").cloned(), step))
}

fn common_metadata(options: &ConvertOptions<'_>) -> BTreeMap<String, String> {
    let mut metadata = options.metadata.clone();
    metadata.insert("producer".into(), PRODUCER.into());
    metadata
}

/// Creates the output folder, or checks that an existing one holds no tensorseal files; says
/// whether it was created (to remove it again if the run fails).
fn prepare_folder(output: &Path) -> Result<bool, ConvertError> {
    match std::fs::create_dir(output) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && output.is_dir() => {}
        Err(e) => return Err(io(output)(e)),
    }
    let mut present = Vec::new();
    for entry in std::fs::read_dir(output).map_err(io(output))? {
        let name = entry.map_err(io(output))?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tseal") {
            present.push(name.into_owned());
        }
    }
    if present.is_empty() {
        return Ok(false);
    }
    present.sort();
    Err(ConvertError::Invalid {
        member: output.display().to_string(),
        path: "the output folder".into(),
        what: format!(
            "already holds {}: write each shard set to a fresh folder",
            present.join(", ")
        ),
    })
}
