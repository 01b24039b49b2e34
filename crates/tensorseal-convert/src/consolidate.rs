//! One tensorseal file from a shard set (spec §11): what `tensorseal convert SET OUT.tseal` and
//! `tensorseal export SET OUT.safetensors` start from.
//!
//! The set is bound first ([`tensorseal::bind_shard_set`]: the index verified under the policy,
//! exactly the listed shards, each with its listed length and manifest digest), then every chunk
//! is read through its shard's [`tensorseal::Loader`], which checks each blob's digests as it
//! reads, so nothing unverified is copied. Each tensor's chunks must tile it exactly once (the
//! same check as for DCP folders) and the tensor is assembled whole, one at a time; non-tensor
//! values are taken from their shard with their tensors moved along; the tree is nested by the
//! index's `planner_data` as `dcp_to_torch_save` nests a DCP checkpoint.

use crate::convert::{ConvertOptions, PRODUCER};
use crate::dcp::{Key, check_tiling, copy_chunk, row_major_strides, set_element};
use crate::error::ConvertError;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use tensorseal::{
    BlobId, IndexTensor, IndexValue, Loader, Node, SHARD_INDEX_FILE, Tensor, TrustPolicy, Writer,
    WrittenFile, bind_shard_set,
};

/// What [`consolidate`] wrote.
#[derive(Debug)]
pub struct ConsolidateReport {
    /// The file written.
    pub output: WrittenFile,
    /// The SHA-256 of the index's manifest (hex): which set this came from.
    pub index_manifest_sha256: String,
    /// Shards read.
    pub shards: usize,
    /// Tensors assembled from chunks.
    pub tensors: usize,
    /// Non-tensor values carried over.
    pub values: usize,
}

fn invalid(path: impl Into<String>, what: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        member: SHARD_INDEX_FILE.into(),
        path: path.into(),
        what: what.into(),
    }
}

fn field<'n>(d: &'n [(Node, Node)], key: &str) -> Option<&'n Node> {
    d.iter()
        .find(|(k, _)| matches!(k, Node::Str(s) if s == key))
        .map(|(_, v)| v)
}

/// The value at text key `key` of a shard's root dict.
fn shard_value<'l>(
    loader: &'l Loader<File>,
    key: &str,
    file: &str,
) -> Result<&'l Node, ConvertError> {
    match loader.root() {
        Node::Dict(items) => field(items, key),
        _ => None,
    }
    .ok_or_else(|| ConvertError::Invalid {
        member: file.into(),
        path: format!("key {key:?}"),
        what: "the index names a key this shard does not have".into(),
    })
}

fn verify_error(file: &str, e: tensorseal::VerifyError) -> ConvertError {
    ConvertError::Invalid {
        member: file.into(),
        path: "a blob".into(),
        what: tensorseal::error_chain(&e),
    }
}

/// Writes the shard set at `set` (its folder or index) as one tensorseal file at `output`,
/// verified under `policy` as it is read. `options` gives the output's compression, signers,
/// extra metadata and limits.
pub fn consolidate(
    set: &Path,
    output: &Path,
    policy: &TrustPolicy,
    options: &ConvertOptions<'_>,
) -> Result<ConsolidateReport, ConvertError> {
    crate::convert::check_metadata(options)?;
    let bound = bind_shard_set(set, policy, &options.format_limits)?;
    let loaders: HashMap<&str, &Loader<File>> =
        bound.shards.iter().map(|(f, l)| (f.as_str(), l)).collect();
    let mut writer = crate::convert::create_writer(output, options)?;
    let ix = &bound.shard_index;
    let planner = planner_paths(ix.planner_data.as_ref())?;
    let mut root = Node::Dict(Vec::new());
    let (mut tensors, mut values) = (0, 0);
    // Blobs of non-tensor values already moved, by shard and blob: shared tensors stay shared.
    let mut moved: HashMap<(&str, BlobId), BlobId> = HashMap::new();
    for e in &ix.entries {
        let fqn = e.fqn.as_str();
        let node = match &e.value {
            IndexValue::Tensor(t) => {
                tensors += 1;
                assemble(fqn, t, &loaders, &mut writer, options)?
            }
            IndexValue::Bytes(place) => {
                values += 1;
                let file = place.file.as_str();
                let loader = loaders[file];
                let mut value = shard_value(loader, &place.key, file)?.clone();
                value.try_for_each_tensor_mut(|t| {
                    let Some(b) = t.blob else { return Ok(()) };
                    let new = match moved.get(&(file, b)) {
                        Some(&id) => id,
                        None => {
                            let data = loader.read_blob(b).map_err(|e| verify_error(file, e))?;
                            let id = writer.write_blob(&data, t.dtype)?;
                            moved.insert((file, b), id);
                            id
                        }
                    };
                    t.blob = Some(new);
                    Ok::<(), ConvertError>(())
                })?;
                value
            }
        };
        let path = planner
            .get(fqn)
            .cloned()
            .unwrap_or_else(|| vec![Key::Str(fqn.to_string())]);
        set_element(&mut root, &path, node, fqn)?;
    }

    let index_manifest_sha256 = hex::encode(bound.index.manifest_sha256);
    let mut metadata: BTreeMap<String, String> = BTreeMap::new();
    metadata.insert("producer".into(), PRODUCER.into());
    metadata.insert(
        "tensorseal.dcp.consolidated_from".into(),
        index_manifest_sha256.clone(),
    );
    if let Some(r) = &bound.shard_index.run_id {
        metadata.insert("run_id".into(), r.clone());
    }
    if let Some(s) = bound.shard_index.step {
        metadata.insert("step".into(), s.to_string());
    }
    metadata.extend(options.metadata.clone());
    let written = writer.finish(root, metadata, &options.signers)?;
    Ok(ConsolidateReport {
        output: written,
        index_manifest_sha256,
        shards: bound.shards.len(),
        tensors,
        values,
    })
}

/// `planner_data`: each flattened name to its path in the nested state dict (text keys and list
/// indices), or nothing when the index has none.
fn planner_paths(node: Option<&Node>) -> Result<HashMap<String, Vec<Key>>, ConvertError> {
    let mut out = HashMap::new();
    let items = match node {
        None | Some(Node::None) => return Ok(out),
        Some(Node::Dict(items)) => items,
        Some(_) => return Err(invalid("planner_data", "not a dict")),
    };
    for (k, v) in items {
        let Node::Str(fqn) = k else {
            return Err(invalid("planner_data", "a key that is not text"));
        };
        let at = format!("planner_data[{fqn:?}]");
        let (Node::Tuple(parts) | Node::List(parts)) = v else {
            return Err(invalid(&at, "not a tuple"));
        };
        let mut path = Vec::with_capacity(parts.len());
        for (j, p) in parts.iter().enumerate() {
            path.push(match p {
                Node::Str(s) => Key::Str(s.clone()),
                Node::Int(i) if j > 0 => Key::Index(
                    i.to_u64()
                        .and_then(|v| usize::try_from(v).ok())
                        .filter(|&v| v < 1 << 20)
                        .ok_or_else(|| invalid(&at, "a list index over 2^20"))?,
                ),
                _ => return Err(invalid(&at, "a key that is not text or a list index")),
            });
        }
        if path.is_empty() {
            return Err(invalid(&at, "an empty path"));
        }
        out.insert(fqn.clone(), path);
    }
    Ok(out)
}

/// One tensor entry of the index: its chunks, checked to tile it, read verified from their
/// shards, copied into the whole tensor, written as one blob.
fn assemble(
    fqn: &str,
    t: &IndexTensor,
    loaders: &HashMap<&str, &Loader<File>>,
    writer: &mut Writer,
    options: &ConvertOptions<'_>,
) -> Result<Node, ConvertError> {
    let at = format!("tensor {fqn}");
    let dtype = t.dtype;
    let chunks: Vec<(Vec<u64>, Vec<u64>)> = t
        .chunks
        .iter()
        .map(|c| (c.offsets.clone(), c.sizes.clone()))
        .collect();
    let bytes = check_tiling(
        SHARD_INDEX_FILE,
        fqn,
        dtype,
        &t.size,
        &chunks,
        &options.limits,
    )?;
    // Every chunk found, of the right dtype and shape, before the whole tensor is allocated:
    // the chunks' blobs lie inside verified shards, so their sizes bound what is allocated.
    let mut found = Vec::with_capacity(chunks.len());
    for c in &t.chunks {
        let (file, key, sz) = (c.place.file.as_str(), c.place.key.as_str(), &c.sizes);
        let loader = *loaders
            .get(file)
            .ok_or_else(|| invalid(&at, format!("chunk in {file:?}, not a listed shard")))?;
        match shard_value(loader, key, file)? {
            Node::Tensor(t) if t.dtype == dtype && t.shape == *sz => {
                found.push((loader, &**t, file))
            }
            Node::Tensor(t) => {
                return Err(ConvertError::Invalid {
                    member: file.into(),
                    path: format!("key {key:?}"),
                    what: format!(
                        "a {} tensor of shape {:?}, the index says {dtype} {sz:?} for {fqn}",
                        t.dtype, t.shape
                    ),
                });
            }
            _ => {
                return Err(ConvertError::Invalid {
                    member: file.into(),
                    path: format!("key {key:?}"),
                    what: format!("not a tensor, the index says a chunk of {fqn}"),
                });
            }
        }
    }
    let mut whole = vec![0u8; usize::try_from(bytes).map_err(|_| invalid(&at, "too large"))?];
    let strides = row_major_strides(&t.size);
    for ((off, sz), (loader, chunk, file)) in chunks.iter().zip(found) {
        let data = match chunk.blob {
            Some(b) => loader.read_blob(b).map_err(|e| verify_error(file, e))?,
            None => Vec::new(),
        };
        copy_chunk(&mut whole, &data, off, sz, &strides, dtype.itemsize());
    }
    let blob = if whole.is_empty() {
        None
    } else {
        Some(writer.write_blob(&whole, dtype)?)
    };
    Ok(Node::Tensor(Box::new(Tensor::new(
        dtype,
        t.size.clone(),
        blob,
    ))))
}

/// `export` of a shard set: [`consolidate`] into a temporary file beside `output` (removed
/// afterwards, whatever happens), then [`crate::export`] of it, under the same policy.
pub fn export_shard_set(
    set: &Path,
    output: &Path,
    options: &crate::ExportOptions,
) -> Result<crate::ExportReport, ConvertError> {
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty());
    let name = format!(
        ".{}.consolidating-{}.tseal",
        output
            .file_name()
            .map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned()),
        std::process::id()
    );
    let temp = dir.map_or_else(|| Path::new(&name).to_path_buf(), |d| d.join(&name));
    struct Remove<'p>(&'p Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(&temp);
    let convert_options = ConvertOptions {
        format_limits: options.limits.clone(),
        ..ConvertOptions::default()
    };
    consolidate(set, &temp, &options.policy, &convert_options)?;
    crate::export(
        &temp,
        output,
        &crate::ExportOptions {
            policy: TrustPolicy::integrity_only(),
            limits: options.limits.clone(),
        },
    )
    .map_err(|e| ConvertError::Invalid {
        member: output.display().to_string(),
        path: "the export".into(),
        what: tensorseal::error_chain(&e),
    })
}
