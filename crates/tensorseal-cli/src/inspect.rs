//! `inspect`: the tree, every tensor, metadata, signatures and the manifest digest.

use crate::failure::Failure;
use crate::render;
use clap::Args;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use tensorseal::json::{path_to_json, tensor_storage_json, tree_to_json};
use tensorseal::{
    Checkpoint, Classify, Digest, Limits, Manifest, SignatureEntry, Tensor, dotted_path,
    error_chain, sha256,
};

/// Show what a tensorseal file holds.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  tensorseal inspect model.tseal
  tensorseal inspect model.tseal --json | jq '.tensors[].name'
  tensorseal inspect model.tseal --json --hash   # adds each tensor's SHA-256
  tensorseal inspect ckpt/step-1000              # a shard set: its index.tseal

inspect validates the file's structure but does not check signatures or blob digests;
use `tensorseal verify` for that. --hash reads every tensor and prints the SHA-256
of its C-contiguous little-endian bytes (comparable with hashlib on a numpy array).")]
pub(crate) struct InspectArgs {
    /// The file to inspect, a shard-set folder (its index), or an `s3://BUCKET/KEY` URL (footer
    /// and manifest read by range GETs).
    #[arg(value_name = "FILE|URL")]
    file: PathBuf,
    /// Print JSON (spec §10 rendering of the tree) instead of text.
    #[arg(long)]
    json: bool,
    /// Read every tensor and print the SHA-256 of its bytes.
    #[arg(long)]
    hash: bool,
}

/// What `inspect` shows of a checkpoint, whether opened from a file or read from an object.
struct Summary<'a> {
    manifest: &'a Manifest,
    signatures: &'a [SignatureEntry],
    file_length: u64,
    manifest_sha256: Digest,
}

pub(crate) fn run(mut args: InspectArgs) -> Result<(), Failure> {
    // A shard-set folder (spec §11) is shown by its index: the global layout and every shard's
    // file, length and manifest digest. `verify` checks the set.
    if args.file.is_dir() && tensorseal::is_shard_set(&args.file) {
        args.file = args.file.join(tensorseal::SHARD_INDEX_FILE);
    }
    if let Some(url) = crate::remote::url_of(&args.file) {
        let loader = crate::remote::inspect(url)?;
        let summary = Summary {
            manifest: loader.manifest(),
            signatures: loader.signatures(),
            file_length: loader.source().length(),
            manifest_sha256: loader.footer().manifest_sha256,
        };
        // --hash over an object reads (and verifies) only the blobs' ranges.
        return show(&args, &summary, |t| match t.blob {
            Some(b) => loader.read_blob(b).map(Cow::Owned).map_err(|e| {
                Failure::new(e.class().exit_code(), format!("{url}: {}", error_chain(&e)))
            }),
            None => Ok(Cow::Borrowed(&[])),
        });
    }
    let ckpt = Checkpoint::open(&args.file, &Limits::default())
        .map_err(|e| Failure::of(&args.file, &e))?;
    let summary = Summary {
        manifest: ckpt.manifest(),
        signatures: ckpt.signatures(),
        file_length: ckpt.file_length(),
        manifest_sha256: ckpt.manifest_sha256(),
    };
    show(&args, &summary, |t| {
        ckpt.tensor_bytes(t)
            .map_err(|e| Failure::of(&args.file, &e))
    })
}

fn show<'b>(
    args: &InspectArgs,
    ckpt: &Summary<'_>,
    tensor_bytes: impl Fn(&Tensor) -> Result<Cow<'b, [u8]>, Failure>,
) -> Result<(), Failure> {
    let manifest = ckpt.manifest;
    let tensors = manifest.root.tensors();
    // Hashes are computed once per tensor and looked up by identity when rendering the tree.
    let mut hashes: HashMap<*const Tensor, String> = HashMap::new();
    if args.hash {
        for (_, t) in &tensors {
            let bytes = tensor_bytes(t)?;
            hashes.insert(*t as *const Tensor, hex::encode(sha256(&bytes)));
        }
    }
    let rows: Vec<_> = tensors
        .iter()
        .map(|(path, t)| (path, *t, hashes.get(&(*t as *const Tensor)).cloned()))
        .collect();
    if args.json {
        let mut extra = |t: &Tensor| {
            let mut m = tensor_storage_json(manifest, t);
            if let Some(h) = hashes.get(&(t as *const Tensor)) {
                m.insert("sha256".into(), Value::String(h.clone()));
            }
            m
        };
        let tree = tree_to_json(&manifest.root, &mut extra);
        let tensors_json: Vec<Value> = rows
            .iter()
            .map(|(path, t, hash)| {
                let mut m = Map::new();
                m.insert("path".into(), path_to_json(path));
                m.insert("name".into(), Value::String(dotted_path(path)));
                m.insert("dtype".into(), Value::String(t.dtype.name().into()));
                m.insert("shape".into(), json!(t.shape));
                if let Some(kind) = t.kind.name() {
                    m.insert("kind".into(), Value::String(kind.into()));
                }
                m.extend(tensor_storage_json(manifest, t));
                if let Some(h) = hash {
                    m.insert("sha256".into(), Value::String(h.clone()));
                }
                Value::Object(m)
            })
            .collect();
        let blobs: Vec<Value> = manifest
            .blobs
            .iter()
            .map(|b| {
                let mut m = Map::new();
                m.insert("offset".into(), json!(b.offset));
                m.insert("length".into(), json!(b.length));
                m.insert("encoding".into(), Value::String(b.encoding_name()));
                m.insert(
                    "sha256".into(),
                    json!(b.sha256.iter().map(hex::encode).collect::<Vec<_>>()),
                );
                if let Some(c) = &b.codec {
                    m.insert("raw_length".into(), json!(c.raw_length));
                    m.insert("ratio".into(), json!(ratio(b)));
                    m.insert(
                        "raw_sha256".into(),
                        json!(c.raw_sha256.iter().map(hex::encode).collect::<Vec<_>>()),
                    );
                }
                Value::Object(m)
            })
            .collect();
        let value = json!({
            "file": args.file.display().to_string(),
            "format_version": manifest.version(),
            "file_length": ckpt.file_length,
            "manifest_sha256": hex::encode(ckpt.manifest_sha256),
            "metadata": manifest.metadata,
            "signatures": ckpt.signatures.iter().map(|s| json!({"key_id": s.key.key_id()})).collect::<Vec<_>>(),
            "blobs": blobs,
            "tensors": tensors_json,
            "tree": tree,
        });
        crate::output::json(&value);
        return Ok(());
    }

    let total: u64 = rows
        .iter()
        .map(|(_, t, _)| t.byte_size().unwrap_or(0))
        .sum();
    outln!(
        "file:            {} ({}, format version {})",
        args.file.display(),
        render::bytes(ckpt.file_length),
        manifest.version()
    );
    outln!("manifest sha256: {}", hex::encode(ckpt.manifest_sha256));
    outln!("signatures:      {}", ckpt.signatures.len());
    for s in ckpt.signatures {
        outln!("  key {}", s.key.key_id());
    }
    outln!("metadata:        {}", manifest.metadata.len());
    for (k, v) in &manifest.metadata {
        outln!("  {k} = {v}");
    }
    outln!(
        "tensors:         {} ({} of data in {} blob(s))",
        rows.len(),
        render::bytes(total),
        manifest.blobs.len()
    );
    let stored: u64 = manifest.blobs.iter().map(|b| b.length).sum();
    let logical: u64 = manifest.blobs.iter().map(|b| b.logical_length()).sum();
    if stored != logical {
        outln!(
            "stored:          {} for {} of blobs ({:.3}x)",
            render::bytes(stored),
            render::bytes(logical),
            logical as f64 / stored as f64
        );
    }
    for (path, t, hash) in &rows {
        let name = dotted_path(path);
        let name = if name.is_empty() {
            "(root)".to_string()
        } else {
            name
        };
        let storage = match t.blob {
            Some(b) => match &manifest.blobs[b] {
                blob if blob.codec.is_some() => {
                    format!("blob {b} {} {:.3}x", blob.encoding_name(), ratio(blob))
                }
                blob => format!("blob {b} {}", blob.encoding_name()),
            },
            None => "no data".to_string(),
        };
        let hash = hash
            .as_ref()
            .map(|h| format!("  sha256 {h}"))
            .unwrap_or_default();
        outln!(
            "  {name}  {}{:?}  {}  {storage}{hash}",
            t.dtype,
            t.shape,
            render::bytes(t.byte_size().unwrap_or(0))
        );
    }
    outln!("tree:");
    let mut out = String::new();
    render::tree(&mut out, &manifest.root, 0);
    out!("{out}");
    Ok(())
}

/// Logical over stored length: how much the blob's encoding saves.
fn ratio(blob: &tensorseal::BlobEntry) -> f64 {
    blob.logical_length() as f64 / blob.length as f64
}
