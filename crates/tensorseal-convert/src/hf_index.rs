//! Hugging Face sharded checkpoints: the `*.index.json` that maps each tensor name to the shard
//! file holding it (`{"metadata": {...}, "weight_map": {name: shard}}`).
//!
//! Shard names come from an untrusted file and become paths, so they are plain file names of
//! `[A-Za-z0-9._-]` (no separator, no `..`) resolved in the index's directory. Each shard's
//! format is decided from its content by the caller ([`detect`](crate::detect)); afterwards
//! [`HfIndex::check_shard`] verifies that the shard provided exactly the tensors the index
//! assigned to it.

use crate::error::HfIndexError;
use crate::json_strict::{self, JsonValue, StrictJsonError};
use crate::limits::{self, Limits};
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// One shard file of an [`HfIndex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    file_name: String,
    path: PathBuf,
    tensors: Vec<String>,
}

impl Shard {
    /// The file name as the index gives it.
    pub fn file_name(&self) -> &str {
        &self.file_name
    }

    /// The file's path: the file name in the index's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tensor names the index assigns to this shard, in index order.
    pub fn tensors(&self) -> &[String] {
        &self.tensors
    }
}

/// A parsed and validated sharded-checkpoint index.
///
/// # Invariants
/// Tensor names are unique and non-empty; every shard name is a plain file name; shards are
/// sorted by file name and each is assigned at least one tensor.
#[derive(Debug, Clone)]
pub struct HfIndex {
    metadata: Vec<(String, serde_json::Value)>,
    weight_map: Vec<(String, usize)>,
    shards: Vec<Shard>,
}

/// Why a shard name is refused, if it is.
fn shard_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty name");
    }
    if name.len() > 255 {
        return Some("longer than 255 bytes");
    }
    if name == "." || name == ".." {
        return Some("a directory, not a file");
    }
    if name.contains('/') || name.contains('\\') {
        return Some("contains a path separator");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    {
        return Some("contains a character outside [A-Za-z0-9._-]");
    }
    None
}

fn json_err(key: Option<&str>, what: impl Into<String>) -> HfIndexError {
    HfIndexError::Json {
        key: key.map(str::to_owned),
        offset: 0,
        what: what.into(),
    }
}

impl HfIndex {
    /// Reads and parses the index at `path`; shards resolve in its directory.
    ///
    /// # Errors
    /// [`HfIndexError::Io`] if the file cannot be read; [`HfIndexError::Limit`] when it is over
    /// [`Limits::max_index_size`]; otherwise as [`HfIndex::parse`].
    pub fn open(path: &Path, limits: &Limits) -> Result<HfIndex, HfIndexError> {
        let file = std::fs::File::open(path)?;
        let mut bytes = Vec::new();
        // Read one byte past the limit to know it was exceeded without reading the rest.
        file.take(limits.max_index_size.saturating_add(1))
            .read_to_end(&mut bytes)?;
        limits::check(
            "max_index_size",
            bytes.len() as u64,
            limits.max_index_size,
            limits.max_index_size,
        )?;
        let dir = path.parent().unwrap_or(Path::new("."));
        HfIndex::parse(&bytes, dir, limits)
    }

    /// Parses index bytes; shard paths are `dir/<shard name>`.
    ///
    /// # Errors
    /// * [`HfIndexError::Json`]: not UTF-8 JSON, not an object, a `weight_map` that is missing,
    ///   empty or holds non-string values, unknown top-level members, an empty tensor name
    ///   (offsets are byte offsets in the index file);
    /// * [`HfIndexError::DuplicateKey`]: a key twice in one object (two shards for one tensor);
    /// * [`HfIndexError::BadShardName`]: a shard name with a separator, `..`, or a character
    ///   outside `[A-Za-z0-9._-]`;
    /// * [`HfIndexError::Limit`]: too many tensors or shards, or nesting too deep.
    pub fn parse(bytes: &[u8], dir: &Path, limits: &Limits) -> Result<HfIndex, HfIndexError> {
        limits::check(
            "max_index_size",
            bytes.len() as u64,
            limits.max_index_size,
            0,
        )?;
        let text = std::str::from_utf8(bytes).map_err(|e| HfIndexError::Json {
            key: None,
            offset: e.valid_up_to() as u64,
            what: "not UTF-8".into(),
        })?;
        let value = json_strict::parse(text, limits.max_json_depth).map_err(|e| match e {
            StrictJsonError::Duplicate { key, offset } => {
                HfIndexError::DuplicateKey { key, offset }
            }
            StrictJsonError::Depth { offset, limit } => HfIndexError::Limit(crate::LimitExceeded {
                what: "max_json_depth",
                value: limit + 1,
                limit,
                offset,
            }),
            StrictJsonError::Syntax { offset, what } => HfIndexError::Json {
                key: None,
                offset,
                what,
            },
        })?;
        let JsonValue::Object(top) = value else {
            return Err(json_err(
                None,
                format!("the index is {}, not an object", value.kind()),
            ));
        };
        let mut metadata = Vec::new();
        let mut weight_map = None;
        for (key, v) in top {
            match key.as_str() {
                "metadata" => match v {
                    JsonValue::Object(m) => {
                        metadata = m.into_iter().map(|(k, v)| (k, to_serde(v))).collect();
                    }
                    JsonValue::Null => {}
                    other => {
                        return Err(json_err(
                            Some("metadata"),
                            format!("is {}, not an object", other.kind()),
                        ));
                    }
                },
                "weight_map" => match v {
                    JsonValue::Object(m) => weight_map = Some(m),
                    other => {
                        return Err(json_err(
                            Some("weight_map"),
                            format!("is {}, not an object", other.kind()),
                        ));
                    }
                },
                other => {
                    return Err(json_err(
                        Some(other),
                        "unexpected top-level member (an index has metadata and weight_map)",
                    ));
                }
            }
        }
        let weight_map = weight_map.ok_or_else(|| json_err(None, "no \"weight_map\""))?;
        if weight_map.is_empty() {
            return Err(json_err(Some("weight_map"), "is empty"));
        }
        limits::check(
            "max_tensors",
            weight_map.len() as u64,
            limits.max_tensors,
            0,
        )?;

        let mut by_shard: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut entries = Vec::with_capacity(weight_map.len());
        for (tensor, v) in weight_map {
            if tensor.is_empty() {
                return Err(json_err(Some(""), "empty tensor name"));
            }
            let JsonValue::String(shard) = v else {
                return Err(json_err(
                    Some(&tensor),
                    format!("the shard is {}, not a file name", v.kind()),
                ));
            };
            if let Some(reason) = shard_name_problem(&shard) {
                return Err(HfIndexError::BadShardName {
                    tensor,
                    shard,
                    reason,
                });
            }
            by_shard
                .entry(shard.clone())
                .or_default()
                .push(tensor.clone());
            entries.push((tensor, shard));
        }
        limits::check("max_shards", by_shard.len() as u64, limits.max_shards, 0)?;
        let shards: Vec<Shard> = by_shard
            .into_iter()
            .map(|(file_name, tensors)| Shard {
                path: dir.join(&file_name),
                file_name,
                tensors,
            })
            .collect();
        let weight_map = entries
            .into_iter()
            .map(|(t, s)| {
                let i = shards
                    .binary_search_by(|x| x.file_name.as_str().cmp(&s))
                    .expect("every shard was collected");
                (t, i)
            })
            .collect();
        Ok(HfIndex {
            metadata,
            weight_map,
            shards,
        })
    }

    /// The shards, sorted by file name (a deterministic order).
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Every tensor name with its shard, in index order.
    pub fn weight_map(&self) -> impl Iterator<Item = (&str, &Shard)> + '_ {
        self.weight_map
            .iter()
            .map(|(t, i)| (t.as_str(), &self.shards[*i]))
    }

    /// The index's `metadata` object (e.g. `total_size`), in order.
    pub fn metadata(&self) -> &[(String, serde_json::Value)] {
        &self.metadata
    }

    /// Checks that shard `index` (in [`HfIndex::shards`] order) provided exactly the tensors
    /// the index assigns to it.
    ///
    /// # Errors
    /// [`HfIndexError::ShardMismatch`] naming the missing, unexpected or repeated tensors.
    pub fn check_shard<'n>(
        &self,
        index: usize,
        provided: impl IntoIterator<Item = &'n str>,
    ) -> Result<(), HfIndexError> {
        let shard = &self.shards[index];
        let want: HashSet<&str> = shard.tensors.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        let mut extra = Vec::new();
        let mut repeated = Vec::new();
        for name in provided {
            if !seen.insert(name) {
                repeated.push(name);
            } else if !want.contains(name) {
                extra.push(name);
            }
        }
        let missing: Vec<&str> = shard
            .tensors
            .iter()
            .map(String::as_str)
            .filter(|t| !seen.contains(t))
            .collect();
        if missing.is_empty() && extra.is_empty() && repeated.is_empty() {
            return Ok(());
        }
        let list = |v: &[&str]| {
            let shown: Vec<&str> = v.iter().take(5).copied().collect();
            let more = v.len().saturating_sub(5);
            if more > 0 {
                format!("{shown:?} and {more} more")
            } else {
                format!("{shown:?}")
            }
        };
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!(
                "missing tensors the index assigns to it: {}",
                list(&missing)
            ));
        }
        if !extra.is_empty() {
            parts.push(format!(
                "tensors the index does not assign to it: {}",
                list(&extra)
            ));
        }
        if !repeated.is_empty() {
            parts.push(format!("tensors provided twice: {}", list(&repeated)));
        }
        Err(HfIndexError::ShardMismatch {
            shard: shard.file_name.clone(),
            what: parts.join("; "),
        })
    }
}

fn to_serde(v: JsonValue) -> serde_json::Value {
    match v {
        JsonValue::Null => serde_json::Value::Null,
        JsonValue::Bool(b) => serde_json::Value::Bool(b),
        JsonValue::Number(n) => serde_json::Value::Number(n),
        JsonValue::String(s) => serde_json::Value::String(s),
        JsonValue::Array(a) => serde_json::Value::Array(a.into_iter().map(to_serde).collect()),
        JsonValue::Object(o) => {
            serde_json::Value::Object(o.into_iter().map(|(k, v)| (k, to_serde(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<HfIndex, HfIndexError> {
        HfIndex::parse(json.as_bytes(), Path::new("/models/m"), &Limits::default())
    }

    #[test]
    fn shards_sorted_and_resolved() {
        let idx = parse(
            r#"{"metadata": {"total_size": 12}, "weight_map": {
                "b": "m-00002.safetensors", "a": "m-00001.safetensors", "c": "m-00002.safetensors"}}"#,
        )
        .unwrap();
        let names: Vec<&str> = idx.shards().iter().map(Shard::file_name).collect();
        assert_eq!(names, ["m-00001.safetensors", "m-00002.safetensors"]);
        assert_eq!(idx.shards()[1].tensors(), ["b", "c"]);
        assert_eq!(
            idx.shards()[0].path(),
            Path::new("/models/m/m-00001.safetensors")
        );
        let order: Vec<&str> = idx.weight_map().map(|(t, _)| t).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert_eq!(idx.metadata()[0].0, "total_size");
        assert!(idx.check_shard(1, ["c", "b"]).is_ok());
        let e = idx.check_shard(1, ["b", "x", "b"]).unwrap_err().to_string();
        assert!(
            e.contains("missing")
                && e.contains("\"c\"")
                && e.contains("\"x\"")
                && e.contains("twice"),
            "{e}"
        );
    }

    #[test]
    fn refusals() {
        for (shard, why) in [
            ("../x.bin", "separator"),
            ("/etc/passwd", "separator"),
            ("..", "directory"),
            ("a\\b", "separator"),
            ("a b", "outside"),
            ("", "empty"),
        ] {
            let json = format!(r#"{{"weight_map": {{"t": {}}}}}"#, serde_json::json!(shard));
            let e = parse(&json).unwrap_err();
            assert!(
                matches!(&e, HfIndexError::BadShardName { reason, .. } if reason.contains(why)),
                "{shard:?}: {e}"
            );
        }
        assert!(matches!(
            parse(r#"{"weight_map": {"t": "a.bin", "t": "b.bin"}}"#).unwrap_err(),
            HfIndexError::DuplicateKey { .. }
        ));
        assert!(parse(r#"{"weight_map": {}}"#).is_err());
        assert!(parse(r#"{"weight_map": {"t": 1}}"#).is_err());
        assert!(parse(r#"{"metadata": {}}"#).is_err());
        assert!(parse(r#"{"weight_map": {"t": "a"}, "extra": 1}"#).is_err());
    }
}
