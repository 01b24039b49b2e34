//! Shard sets (spec §11): a folder of per-rank shard files bound by a signed shard index, as
//! `tensorseal.dcp.SealWriter` writes them. This is the reader's side of §11.3, for tools that
//! verify a whole set (the CLI); the Python DCP reader applies the same rules.

use crate::failure::{Classify, FailureClass};
use crate::shard_index::{SHARD_INDEX_FILE, ShardBinding, ShardIndex};
use crate::{Checkpoint, Limits, Loader, ReadAt as _, TrustPolicy, VerifyError, VerifyReport};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

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
