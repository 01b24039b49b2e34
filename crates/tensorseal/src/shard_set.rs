//! Shard sets (spec §11): a folder of per-rank shard files bound by a signed shard index, as
//! `tensorseal.dcp.SealWriter` writes them. This is the reader's side of §11.3, for tools that
//! verify a whole set (the CLI); the Python DCP reader applies the same rules.

use crate::failure::{Classify, FailureClass};
use crate::{
    Checkpoint, Limits, Loader, Node, ReadAt as _, TrustPolicy, VerifyError, VerifyReport,
};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

/// File name of the shard index inside a shard-set folder.
pub const SHARD_INDEX_FILE: &str = "index.tseal";
/// The `format` value of a shard index's tree.
pub const SHARD_INDEX_FORMAT: &str = "tensorseal.dcp.index/1";
/// The most shards, and the most entries, an index may list.
pub const MAX_SHARDS: usize = 1 << 16;

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

/// The parts of a shard index that bind the set (spec §11.2), checked.
#[derive(Debug, Clone)]
pub struct ShardIndex {
    /// The run id the writer was given.
    pub run_id: Option<String>,
    /// The step the writer was given.
    pub step: Option<i64>,
    /// Ranks that took part in the save.
    pub world_size: u64,
    /// The shards, sorted by file name.
    pub shards: Vec<ShardBinding>,
    /// State-dict entries (tensors and non-tensor values).
    pub entries: usize,
    /// Tensor chunks over all entries.
    pub chunks: usize,
}

/// A shard set that verified: the index's report, and each shard's.
#[derive(Debug, Clone)]
pub struct ShardSetReport {
    /// The index file.
    pub index_path: PathBuf,
    /// The index's verification.
    pub index: VerifyReport,
    /// What the index binds.
    pub shard_index: ShardIndex,
    /// Each shard's verification, in the index's order.
    pub shards: Vec<(String, VerifyReport)>,
}

/// Why a shard set does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardSetError {
    /// The folder could not be listed.
    #[error("{path}: cannot list the shard-set folder")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The index file does not verify.
    #[error("{path}: shard index")]
    Index {
        /// The index file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<VerifyError>,
    },
    /// The index verifies but its content is not a valid shard index.
    #[error("{path}: not a valid shard index: {what}")]
    IndexInvalid {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// `.tseal` files in the folder that the index does not list.
    #[error("{folder}: {}: shard file(s) that the signed index does not list (from another checkpoint, or renamed)", files.join(", "))]
    Unlisted {
        /// The folder.
        folder: PathBuf,
        /// The files.
        files: Vec<String>,
    },
    /// Listed shards that are absent.
    #[error("{folder}: {}: shard(s) listed in the signed index are missing", files.join(", "))]
    Missing {
        /// The folder.
        folder: PathBuf,
        /// The files.
        files: Vec<String>,
    },
    /// A shard whose length or manifest digest is not the one the index binds.
    #[error("{path}: {what}")]
    Mismatch {
        /// The shard.
        path: PathBuf,
        /// What differs.
        what: String,
    },
    /// A shard that does not verify on its own.
    #[error("{path}: shard")]
    Shard {
        /// The shard.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<VerifyError>,
    },
}

impl Classify for ShardSetError {
    fn class(&self) -> FailureClass {
        match self {
            ShardSetError::Io { .. } => FailureClass::Invalid,
            ShardSetError::Index { source, .. } | ShardSetError::Shard { source, .. } => {
                source.class()
            }
            _ => FailureClass::Verification,
        }
    }

    /// The kinds of the Python package's DCP reader: `shard_missing`, `shard_unlisted`,
    /// `shard_mismatch`, `index_invalid`, or the kind of the index's or a shard's own failure.
    fn kind(&self) -> &'static str {
        match self {
            ShardSetError::Io { .. } => "io",
            ShardSetError::Index { source, .. } | ShardSetError::Shard { source, .. } => {
                source.kind()
            }
            ShardSetError::IndexInvalid { .. } => "index_invalid",
            ShardSetError::Unlisted { .. } => "shard_unlisted",
            ShardSetError::Missing { .. } => "shard_missing",
            ShardSetError::Mismatch { .. } => "shard_mismatch",
        }
    }
}

/// Whether `path` names a shard set: a folder holding [`SHARD_INDEX_FILE`], or that file.
pub fn is_shard_set(path: &Path) -> bool {
    if path.is_dir() {
        path.join(SHARD_INDEX_FILE).is_file()
    } else {
        path.file_name().is_some_and(|n| n == SHARD_INDEX_FILE)
    }
}

/// A shard set whose index verified and whose shards are bound to it (spec §11.3 steps 1 to 3):
/// every shard open, its signatures and manifest checked, its length and manifest digest the
/// ones the index lists. Blob digests are checked as blobs are read through [`Self::shards`].
pub struct BoundShardSet {
    /// The index file.
    pub index_path: PathBuf,
    /// The index's verification.
    pub index: VerifyReport,
    /// The index's tree (spec §11.2), checked by [`ShardIndex::from_tree`].
    pub index_root: Node,
    /// What the index binds.
    pub shard_index: ShardIndex,
    /// Each shard, opened, in the index's order.
    pub shards: Vec<(String, Loader<File>)>,
}

/// Opens a shard set (its folder, or its index file) under `policy` and binds every shard to
/// the index (spec §11.3): the index verified, its tree checked, the folder's `.tseal` files
/// exactly the listed shards, each opened under the same policy with the listed length and
/// manifest digest. No blob is read.
pub fn bind_shard_set(
    path: &Path,
    policy: &TrustPolicy,
    limits: &Limits,
) -> Result<BoundShardSet, ShardSetError> {
    let (folder, index_path) = if path.is_dir() {
        (path.to_path_buf(), path.join(SHARD_INDEX_FILE))
    } else {
        let folder = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        (folder, path.to_path_buf())
    };
    let (index_ckpt, index) =
        Checkpoint::open_verified(&index_path, policy, limits).map_err(|source| {
            ShardSetError::Index {
                path: index_path.clone(),
                source: Box::new(source),
            }
        })?;
    let invalid = |what: String| ShardSetError::IndexInvalid {
        path: index_path.clone(),
        what,
    };
    if index_ckpt
        .metadata()
        .get("tensorseal.dcp")
        .map(String::as_str)
        != Some("index")
    {
        return Err(invalid(
            "its signed metadata tensorseal.dcp is not \"index\"".into(),
        ));
    }
    let shard_index = ShardIndex::from_tree(index_ckpt.root()).map_err(invalid)?;
    let index_root = index_ckpt.root().clone();
    drop(index_ckpt);

    let listed: BTreeSet<&str> = shard_index.shards.iter().map(|s| s.file.as_str()).collect();
    let mut present = BTreeSet::new();
    let io = |source| ShardSetError::Io {
        path: folder.clone(),
        source,
    };
    for entry in std::fs::read_dir(&folder).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tseal") && name != SHARD_INDEX_FILE {
            present.insert(name.into_owned());
        }
    }
    let unlisted: Vec<String> = present
        .iter()
        .filter(|n| !listed.contains(n.as_str()))
        .cloned()
        .collect();
    if !unlisted.is_empty() {
        return Err(ShardSetError::Unlisted {
            folder,
            files: unlisted,
        });
    }
    let missing: Vec<String> = listed
        .iter()
        .filter(|n| !present.contains(**n))
        .map(|n| n.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(ShardSetError::Missing {
            folder,
            files: missing,
        });
    }
    let shards = shard_index
        .shards
        .iter()
        .map(|s| bind_shard(&folder.join(&s.file), s, policy, limits).map(|l| (s.file.clone(), l)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BoundShardSet {
        index_path,
        index,
        index_root,
        shard_index,
        shards,
    })
}

/// Verifies a shard set (its folder, or its index file) under `policy` (spec §11.3):
/// [`bind_shard_set`], then every blob of every shard, the shards in parallel.
pub fn verify_shard_set(
    path: &Path,
    policy: &TrustPolicy,
    limits: &Limits,
) -> Result<ShardSetReport, ShardSetError> {
    let set = bind_shard_set(path, policy, limits)?;
    let folder = set
        .index_path
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let shards = set
        .shards
        .par_iter()
        .map(|(file, loader)| {
            loader
                .verify_all()
                .map(|r| (file.clone(), r))
                .map_err(|source| ShardSetError::Shard {
                    path: folder.join(file),
                    source: Box::new(source),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ShardSetReport {
        index_path: set.index_path,
        index: set.index,
        shard_index: set.shard_index,
        shards,
    })
}

fn bind_shard(
    path: &Path,
    bound: &ShardBinding,
    policy: &TrustPolicy,
    limits: &Limits,
) -> Result<Loader<File>, ShardSetError> {
    let mismatch = |what: String| ShardSetError::Mismatch {
        path: path.to_path_buf(),
        what,
    };
    // The length first: a truncated shard is named as such, not as a malformed file.
    if let Ok(meta) = std::fs::metadata(path)
        && meta.len() != bound.length
    {
        return Err(mismatch(format!(
            "{} bytes, the signed index says {} (truncated or replaced)",
            meta.len(),
            bound.length
        )));
    }
    let loader = Loader::open(path, policy, limits).map_err(|source| ShardSetError::Shard {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let digest = loader.footer().manifest_sha256;
    if digest != bound.manifest_sha256 || loader.source().length().ok() != Some(bound.length) {
        return Err(mismatch(format!(
            "manifest SHA-256 {}, the signed index says {} (a shard from another checkpoint, \
             step or run)",
            hex::encode(digest),
            hex::encode(bound.manifest_sha256)
        )));
    }
    Ok(loader)
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

/// A plain shard file name: one path component ending in `.tseal`, not the index.
fn plain_shard_name(name: &str) -> bool {
    name.ends_with(".tseal")
        && name != SHARD_INDEX_FILE
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.')
}

impl ShardIndex {
    /// Reads and checks an index tree against every rule of spec §11.2 that binds the set.
    pub fn from_tree(root: &Node) -> Result<ShardIndex, String> {
        let top = dict(root).ok_or("the root is not a dict with text keys")?;
        if text(&top, "format", "the index")? != SHARD_INDEX_FORMAT {
            return Err(format!("format is not {SHARD_INDEX_FORMAT:?}"));
        }
        let run_id = match top.get("run_id") {
            None | Some(Node::None) => None,
            Some(Node::Str(s)) => Some(s.clone()),
            _ => return Err("run_id is not text or None".into()),
        };
        let step = match top.get("step") {
            None | Some(Node::None) => None,
            Some(Node::Int(i)) => Some(i.to_i64().ok_or("step is out of range")?),
            _ => return Err("step is not an int or None".into()),
        };
        let world_size = uint(top.get("world_size"), "world_size")?;
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
        let entries = list(&top, "entries")?;
        let mut fqns = BTreeSet::new();
        let mut chunks = 0usize;
        for (i, e) in entries.iter().enumerate() {
            let at = format!("entries[{i}]");
            let d = dict(e).ok_or_else(|| format!("{at} is not a dict"))?;
            let fqn = text(&d, "fqn", &at)?;
            if !fqns.insert(fqn) {
                return Err(format!("{at}: fqn {fqn:?} appears twice"));
            }
            let in_shards = |f: &str, at: &str| {
                if names.contains(f) {
                    Ok(())
                } else {
                    Err(format!("{at}: file {f:?} is not in shards"))
                }
            };
            match text(&d, "type", &at)? {
                "bytes" => {
                    in_shards(text(&d, "file", &at)?, &at)?;
                    text(&d, "key", &at)?;
                }
                "tensor" => {
                    let size = uints(d.get("size"), &format!("{at}.size"))?;
                    if !matches!(d.get("dtype"), Some(Node::Typed(_))) {
                        return Err(format!("{at} ({fqn}): dtype is not a typed value"));
                    }
                    for (j, c) in list(&d, "chunks")?.iter().enumerate() {
                        let at = format!("{at} ({fqn}).chunks[{j}]");
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
                        let outside = (0..size.len())
                            .any(|k| offsets[k].checked_add(sizes[k]).is_none_or(|e| e > size[k]));
                        if outside {
                            return Err(format!(
                                "{at}: offsets {offsets:?} + sizes {sizes:?} lie outside size {size:?}"
                            ));
                        }
                        in_shards(text(&c, "file", &at)?, &at)?;
                        text(&c, "key", &at)?;
                        chunks += 1;
                    }
                }
                other => return Err(format!("{at}: type {other:?} is not tensor or bytes")),
            }
        }
        Ok(ShardIndex {
            run_id,
            step,
            world_size,
            shards,
            entries: entries.len(),
            chunks,
        })
    }
}
