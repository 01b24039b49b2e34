//! `tensorseal export FILE.tseal OUT.safetensors`: hand converted weights to any tool that
//! reads safetensors.
//!
//! The file is verified first (every digest; signatures too when the policy names keys). Each
//! tensor becomes one safetensors entry named by its tree path joined with `.`
//! ([`tensorseal::dotted_path`]: dict keys verbatim, int keys and list indices in decimal), so
//! `{"model": {"layers": [{"w": T}]}}` gives `model.layers.0.w`. **A checkpoint that is a single
//! tensor (the tree's root) exports it under the name `tensor`.** Tensors that share a blob
//! (tied weights) are written once per name, as safetensors has no aliasing. Two paths that
//! would get the same name are an error naming both.
//!
//! What safetensors cannot hold is left out and reported: complex128 tensors, and every
//! non-tensor value (numbers, strings, inert objects, ...). A JSON rendering of the whole tree
//! without tensor data (each tensor shows the name it was exported under, or why it was
//! skipped) is kept in `__metadata__` under `tensorseal.tree`, with the manifest's SHA-256
//! (`tensorseal.source_manifest_sha256`) and the file's signed metadata
//! (`tensorseal.metadata`). `format` is `pt`, which transformers expects.
//!
//! The header is built by the `safetensors` crate (its `Metadata` validates the offsets and
//! serialises the tensor entries) and written, with the tensor data, through
//! [`tensorseal::AtomicFile`]: a failed export leaves nothing at the output path. Entries are
//! ordered like the crate's own serializer (by descending dtype alignment, then name), and the
//! metadata keys are sorted, so the same input gives the same bytes.

use crate::error::ExportError;
use crate::safetensors_in::dtype_to_safetensors;
use safetensors::tensor::{Metadata, TensorInfo};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tensorseal::{
    AtomicFile, Checkpoint, DType, Limits, Node, PathSegment, Tensor, TrustPolicy, Typed,
    VerifyReport, dotted_path,
};

/// The name a root tensor is exported under.
pub const ROOT_TENSOR_NAME: &str = "tensor";

/// Largest `tensorseal.tree` rendering kept in `__metadata__`; a larger tree is left out and
/// [`ExportReport::tree_in_metadata`] says so. safetensors readers cap the whole header at
/// 100 MB.
pub const MAX_TREE_JSON: usize = 16 << 20;

/// Options of [`export`].
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Whom to trust; [`TrustPolicy::integrity_only`] by default (digests, and every signature
    /// present valid for its own key).
    pub policy: TrustPolicy,
    /// Limits for reading the tensorseal file.
    pub limits: Limits,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            policy: TrustPolicy::integrity_only(),
            limits: Limits::default(),
        }
    }
}

/// A tensor left out of the export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTensor {
    /// Its dotted tree path.
    pub path: String,
    /// Its dtype.
    pub dtype: DType,
    /// Why.
    pub reason: String,
}

/// What [`export`] wrote and left out, for the CLI to print on stderr.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The output file.
    pub output: PathBuf,
    /// The verification of the input.
    pub verify: VerifyReport,
    /// Names written, in file order.
    pub written: Vec<String>,
    /// Bytes of tensor data written.
    pub bytes_written: u64,
    /// Tensors left out (dtypes safetensors lacks).
    pub skipped: Vec<SkippedTensor>,
    /// Non-tensor values left out (numbers, strings, inert objects, ...; containers are not
    /// counted, their contents are).
    pub values_left_out: usize,
    /// Whether the tree's JSON rendering is in `__metadata__` (false when over
    /// [`MAX_TREE_JSON`]).
    pub tree_in_metadata: bool,
}

/// An unambiguous rendering of a tree path, for error messages (`root["a"][0].attr`).
fn path_display(path: &[PathSegment<'_>]) -> String {
    let mut s = String::from("root");
    for seg in path {
        match seg {
            PathSegment::Key(Node::Str(k)) => s.push_str(&format!("[{k:?}]")),
            PathSegment::Key(k) => {
                s.push_str(&format!("[{}]", dotted_path(&[PathSegment::Key(k)])))
            }
            PathSegment::Index(i) => s.push_str(&format!("[{i}]")),
            PathSegment::Attr(a) => s.push_str(&format!(".{a}")),
            PathSegment::State => s.push_str(".__state__"),
        }
    }
    s
}

/// Counts the non-tensor values of a tree that safetensors cannot hold: every leaf value, and
/// each inert object, global, slice or numpy scalar once (with its contents). Containers are
/// not counted, their contents are; tensor attributes are.
fn count_values(root: &Node) -> usize {
    let mut count = 0;
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        let (counted, descend) = match node {
            Node::List(_)
            | Node::Tuple(_)
            | Node::Dict(_)
            | Node::Set(_)
            | Node::FrozenSet(_)
            | Node::Tensor(_) => (false, true),
            Node::Typed(t) => match **t {
                Typed::OrderedDict { .. } | Typed::Counter { .. } | Typed::Namespace(_) => {
                    (false, true)
                }
                _ => (true, false),
            },
            // Leaves, inert objects and globals: one value each (an object's arguments and
            // state are part of it; tensors inside it are still exported by path).
            _ => (true, false),
        };
        if counted {
            count += 1;
        }
        if descend {
            stack.extend(node.children().into_iter().map(|(_, child)| child));
        }
    }
    count
}

struct Planned<'c> {
    name: String,
    tensor: &'c Tensor,
    dtype: safetensors::Dtype,
}

/// Verifies `input` and writes its tensors to `output` as safetensors (see the module docs).
///
/// # Errors
/// * [`ExportError::Read`] / [`ExportError::Verify`]: the input is malformed, corrupt, or not
///   signed as the policy requires (nothing is written);
/// * [`ExportError::NameCollision`]: two tree paths give the same name;
/// * [`ExportError::Header`]: the safetensors header cannot be built (e.g. over 100 MB);
/// * [`ExportError::Io`]: the output cannot be written (the partial file is removed).
pub fn export(
    input: &Path,
    output: &Path,
    options: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    let (ckpt, verify) = Checkpoint::open_verified(input, &options.policy, &options.limits)?;
    let tensors = ckpt.root().tensors();

    let mut planned: Vec<Planned<'_>> = Vec::with_capacity(tensors.len());
    let mut skipped = Vec::new();
    let mut names: HashMap<String, String> = HashMap::with_capacity(tensors.len());
    // Tree JSON annotations, keyed by the tensor node's address (each node is distinct).
    let mut notes: HashMap<usize, serde_json::Value> = HashMap::with_capacity(tensors.len());
    for (path, tensor) in &tensors {
        let name = if path.is_empty() {
            ROOT_TENSOR_NAME.to_owned()
        } else {
            dotted_path(path)
        };
        let key = std::ptr::from_ref::<Tensor>(tensor) as usize;
        let Some(dtype) = dtype_to_safetensors(tensor.dtype) else {
            notes.insert(
                key,
                serde_json::json!({ "skipped": format!("safetensors has no {} dtype", tensor.dtype) }),
            );
            skipped.push(SkippedTensor {
                path: name,
                dtype: tensor.dtype,
                reason: format!("safetensors has no {} dtype", tensor.dtype),
            });
            continue;
        };
        let shown = path_display(path);
        if let Some(first) = names.insert(name.clone(), shown.clone()) {
            return Err(ExportError::NameCollision {
                name,
                first,
                second: shown,
            });
        }
        notes.insert(key, serde_json::json!({ "safetensors": name }));
        planned.push(Planned {
            name,
            tensor,
            dtype,
        });
    }
    // The safetensors crate's order: descending dtype alignment, then name.
    planned.sort_by(|a, b| b.dtype.cmp(&a.dtype).then_with(|| a.name.cmp(&b.name)));

    let mut infos = Vec::with_capacity(planned.len());
    let mut offset: usize = 0;
    for p in &planned {
        let len = usize::try_from(p.tensor.byte_size().unwrap_or(u64::MAX))
            .map_err(|_| ExportError::Io(std::io::Error::other("tensor too large")))?;
        let end = offset
            .checked_add(len)
            .ok_or_else(|| ExportError::Io(std::io::Error::other("output too large")))?;
        let shape = p
            .tensor
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| ExportError::Io(std::io::Error::other("dimension too large")))?;
        infos.push((
            p.name.clone(),
            TensorInfo {
                dtype: p.dtype,
                shape,
                data_offsets: (offset, end),
            },
        ));
        offset = end;
    }

    let mut metadata: BTreeMap<&str, String> = BTreeMap::new();
    metadata.insert("format", "pt".into());
    metadata.insert(
        "tensorseal.source_manifest_sha256",
        hex::encode(ckpt.manifest_sha256()),
    );
    metadata.insert(
        "tensorseal.metadata",
        serde_json::to_string(ckpt.metadata()).map_err(|e| ExportError::Io(e.into()))?,
    );
    let tree = tensorseal::json::tree_to_json(ckpt.root(), &mut |t| {
        let key = std::ptr::from_ref::<Tensor>(t) as usize;
        match notes.get(&key) {
            Some(serde_json::Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        }
    });
    let tree = serde_json::to_string(&tree).map_err(|e| ExportError::Io(e.into()))?;
    let tree_in_metadata = tree.len() <= MAX_TREE_JSON;
    if tree_in_metadata {
        metadata.insert("tensorseal.tree", tree);
    }

    let header = build_header(&metadata, infos)?;
    let mut file = AtomicFile::create(output)?;
    let mut w = BufWriter::with_capacity(1 << 20, &mut file);
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(&header)?;
    let mut bytes_written = 0u64;
    for p in &planned {
        let data = ckpt.tensor_bytes(p.tensor)?;
        w.write_all(&data)?;
        bytes_written += data.len() as u64;
    }
    w.flush()?;
    drop(w);
    let output = file.commit()?;
    Ok(ExportReport {
        output,
        verify,
        written: planned.into_iter().map(|p| p.name).collect(),
        bytes_written,
        skipped,
        values_left_out: count_values(ckpt.root()),
        tree_in_metadata,
    })
}

/// The JSON header: the crate's `Metadata` validates the entries and serialises them; the
/// metadata map (a `HashMap` inside the crate, so in random order) is spliced in with sorted
/// keys. Padded with spaces to a multiple of 8 bytes, as the crate does.
fn build_header(
    metadata: &BTreeMap<&str, String>,
    infos: Vec<(String, TensorInfo)>,
) -> Result<Vec<u8>, ExportError> {
    let entries = Metadata::new(None, infos).map_err(ExportError::Header)?;
    let entries = serde_json::to_string(&entries).map_err(|e| ExportError::Io(e.into()))?;
    let meta = serde_json::to_string(metadata).map_err(|e| ExportError::Io(e.into()))?;
    let rest = entries
        .strip_prefix('{')
        .expect("a serialized map starts with '{'");
    let mut header = format!("{{\"__metadata__\":{meta}");
    if rest != "}" {
        header.push(',');
    }
    header.push_str(rest);
    let mut header = header.into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    if header.len() > 100_000_000 {
        return Err(ExportError::Header(
            safetensors::SafeTensorError::HeaderTooLarge,
        ));
    }
    Ok(header)
}
