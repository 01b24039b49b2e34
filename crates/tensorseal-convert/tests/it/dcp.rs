//! DCP checkpoints (`torch.distributed.checkpoint` + `FileSystemWriter`, written by a real 2-rank
//! gloo job: tests/data/dcp/generate.py): the converted tree is the one torch's own
//! `dcp_to_torch_save` gives (expected.json), and every hostile variant is refused with the
//! tensor, file or global named.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tensorseal::{Checkpoint, Classify, Limits, Node, TrustPolicy};
use tensorseal_convert::{
    ConvertError, ConvertOptions, consolidate, convert, convert_to_shard_set, scan,
};

fn dcp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dcp")
        .join(name)
}

/// The tree as generate.py describes torch's: tensors by dtype, shape and SHA-256.
fn describe(node: &Node, ckpt: &Checkpoint) -> Value {
    match node {
        Node::Dict(items) => json!({"dict": items.iter().map(|(k, v)| {
            let Node::Str(k) = k else { panic!("non-text key") };
            json!([k, describe(v, ckpt)])
        }).collect::<Vec<_>>()}),
        Node::List(items) => {
            json!({"list": items.iter().map(|v| describe(v, ckpt)).collect::<Vec<_>>()})
        }
        Node::Tuple(items) => {
            json!({"tuple": items.iter().map(|v| describe(v, ckpt)).collect::<Vec<_>>()})
        }
        Node::Int(i) => json!(i.to_i64().unwrap()),
        Node::Float(f) => json!(f),
        Node::Str(s) => json!(s),
        Node::Bool(b) => json!(b),
        Node::None => Value::Null,
        Node::Tensor(t) => json!({
            "tensor": t.dtype.name(),
            "shape": t.shape,
            "sha256": hex::encode(tensorseal::sha256(&ckpt.tensor_bytes(t).unwrap())),
        }),
        other => panic!("unexpected node {other:?}"),
    }
}

#[test]
fn a_two_rank_checkpoint_converts_to_what_dcp_to_torch_save_gives() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ckpt.tseal");
    let report = convert(&dcp("two_rank"), &out, &ConvertOptions::default()).unwrap();
    assert_eq!(report.source_format, "dcp");
    assert!(report.inert_objects.is_empty());
    let (ckpt, _) =
        Checkpoint::open_verified(&out, &TrustPolicy::integrity_only(), &Limits::default())
            .unwrap();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dcp("two_rank").join("expected.json")).unwrap())
            .unwrap();
    assert_eq!(describe(ckpt.root(), &ckpt), expected);
    // source_sha256 covers .metadata and every .distcp file, in name order.
    let mut all = std::fs::read(dcp("two_rank").join(".metadata")).unwrap();
    for f in ["__0_0.distcp", "__1_0.distcp"] {
        all.extend(std::fs::read(dcp("two_rank").join(f)).unwrap());
    }
    assert_eq!(report.source_sha256, hex::encode(tensorseal::sha256(&all)));
    // Deterministic: the same folder gives the same bytes.
    let again = dir.path().join("again.tseal");
    convert(&dcp("two_rank"), &again, &ConvertOptions::default()).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

fn refused(name: &str, options: &ConvertOptions<'_>) -> (u8, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.tseal");
    let e = convert(&dcp(name), &out, options).unwrap_err();
    assert!(!out.exists(), "{name}: an output was left");
    let code = e.class().exit_code();
    // Converting to a shard set refuses it the same way, and leaves no folder behind.
    let set = dir.path().join("set");
    let e2 = convert_to_shard_set(&dcp(name), &set, options).unwrap_err();
    assert_eq!(e2.class().exit_code(), code, "{name}: {e2}");
    assert!(!set.exists(), "{name}: a shard-set folder was left");
    // scan says the same, without writing.
    let outcome = scan(&dcp(name), options).unwrap();
    assert_eq!(
        outcome.exit_code(),
        code,
        "{name}: scan and convert disagree"
    );
    (code, tensorseal::error_chain(&e))
}

#[test]
fn broken_tilings_ranges_and_dtypes_are_refused_naming_the_tensor() {
    let o = ConvertOptions::default();
    for (name, needle) in [
        (
            "gap",
            "tensor model.w: its chunks cover 24 of its 48 elements",
        ),
        (
            "overlap",
            "tensor model.w: chunks 0 at [0, 0] and 1 at [3, 0] overlap",
        ),
        (
            "dtype_mismatch",
            "holds a float32 tensor of shape [4, 6], the metadata says float64",
        ),
        ("past_end", "lie past the end of __1_0.distcp"),
        (
            "missing_file",
            "\"__9_0.distcp\", which is not a .distcp file of the folder",
        ),
        (
            "oversized",
            "declares 1610612736 bytes, more than its chunks'",
        ),
    ] {
        let (code, message) = refused(name, &o);
        assert_eq!(code, 1, "{name}: {message}");
        assert!(message.contains(needle), "{name}: {message}");
    }
}

#[test]
fn a_hostile_metadata_is_refused_as_any_pickle_is() {
    let (code, message) = refused("payload", &ConvertOptions::default());
    assert_eq!(code, 4);
    assert!(message.contains("os.system"), "{message}");
    let (code, message) = refused("unknown_class", &ConvertOptions::default());
    assert_eq!(code, 4);
    assert!(message.contains("finance.models.Ledger"), "{message}");
    // With inert records allowed the class is kept, but it is not DCP's metadata.
    let allow = ConvertOptions {
        allow_objects: true,
        ..ConvertOptions::default()
    };
    let (code, message) = refused("unknown_class", &allow);
    assert_eq!(code, 1);
    assert!(message.contains("Metadata was expected"), "{message}");
    // The payload is unsafe whatever the options.
    assert_eq!(refused("payload", &allow).0, 4);
}

#[test]
fn a_folder_scans_safe_with_dcp_classes_and_names_foreign_ones() {
    let o = ConvertOptions::default();
    let outcome = scan(&dcp("two_rank"), &o).unwrap();
    assert_eq!(
        (outcome.format, outcome.safety().name(), outcome.exit_code()),
        ("dcp", "safe", 0)
    );
    let outcome = scan(&dcp("payload"), &o).unwrap();
    assert_eq!(outcome.safety().name(), "unsafe");
    assert!(matches!(
        convert(&dcp("payload"), Path::new("/nonexistent/x.tseal"), &o),
        Err(ConvertError::Io { .. } | ConvertError::Unsafe { .. })
    ));
}

#[test]
fn a_two_rank_checkpoint_converts_to_a_signed_shard_set_that_consolidates_to_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let key = tensorseal::SecretKey::from_seed(&[7; 32]);
    let options = ConvertOptions {
        signers: vec![&key],
        metadata: [("run_id", "run-9"), ("step", "12")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ConvertOptions::default()
    };
    let set = dir.path().join("set");
    let report = convert_to_shard_set(&dcp("two_rank"), &set, &options).unwrap();
    let names: Vec<String> = report
        .shards
        .iter()
        .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["__0_0.tseal", "__1_0.tseal"]);
    let single = convert(&dcp("two_rank"), &dir.path().join("one.tseal"), &options).unwrap();
    assert_eq!(report.source_sha256, single.source_sha256);

    // Bound and verified under the signer's key, with run_id and step in the signed index.
    let policy = TrustPolicy::trusting(vec![key.public_key()]);
    let verified = tensorseal::verify_shard_set(&set, &policy, &Limits::default()).unwrap();
    assert_eq!(verified.shard_index.run_id.as_deref(), Some("run-9"));
    assert_eq!(verified.shard_index.step, Some(12));
    assert_eq!(verified.shard_index.world_size, 2);
    assert_eq!(verified.shards.len(), 2);
    let other = tensorseal::SecretKey::from_seed(&[8; 32]);
    let wrong = TrustPolicy::trusting(vec![other.public_key()]);
    assert!(tensorseal::verify_shard_set(&set, &wrong, &Limits::default()).is_err());

    // Each shard holds its file's chunks as saved: plain tensors under t{i}, values under b{i}.
    for (file, loader) in &tensorseal::bind_shard_set(&set, &policy, &Limits::default())
        .unwrap()
        .shards
    {
        let Node::Dict(items) = loader.root() else {
            panic!("{file}: root is not a dict")
        };
        for (i, (k, v)) in items.iter().enumerate() {
            let Node::Str(k) = k else { panic!() };
            match v {
                Node::Tensor(t) => {
                    assert_eq!(k, &format!("t{i}"));
                    assert!(t.attrs.is_empty() && !t.requires_grad);
                }
                _ => assert_eq!(k, &format!("b{i}")),
            }
        }
    }

    // Consolidated, it is the tree dcp_to_torch_save gives, as the direct conversion is.
    let whole = dir.path().join("whole.tseal");
    consolidate(&set, &whole, &policy, &ConvertOptions::default()).unwrap();
    let (ckpt, _) =
        Checkpoint::open_verified(&whole, &TrustPolicy::integrity_only(), &Limits::default())
            .unwrap();
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dcp("two_rank").join("expected.json")).unwrap())
            .unwrap();
    assert_eq!(describe(ckpt.root(), &ckpt), expected);

    // Deterministic: every file byte-identical on a second run.
    let again = dir.path().join("again");
    convert_to_shard_set(&dcp("two_rank"), &again, &options).unwrap();
    for name in ["__0_0.tseal", "__1_0.tseal", "index.tseal"] {
        assert_eq!(
            std::fs::read(set.join(name)).unwrap(),
            std::fs::read(again.join(name)).unwrap(),
            "{name}"
        );
    }

    // A folder that already holds a checkpoint is refused, and left as it was.
    let before = std::fs::read(set.join("index.tseal")).unwrap();
    let e = convert_to_shard_set(&dcp("two_rank"), &set, &options).unwrap_err();
    assert!(e.to_string().contains("already holds"), "{e}");
    assert_eq!(std::fs::read(set.join("index.tseal")).unwrap(), before);
    // Only a DCP folder converts to a set.
    let e = convert_to_shard_set(&whole, &dir.path().join("no"), &options).unwrap_err();
    assert!(
        tensorseal::error_chain(&e).contains("only a torch.distributed.checkpoint folder"),
        "{e}"
    );
    assert!(!dir.path().join("no").exists());
}
