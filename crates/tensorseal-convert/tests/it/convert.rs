//! Every fixture of the corpus through `convert`: the outcome torch and numpy imply, and for each
//! converted file the same tree and the same tensor bytes (SHA-256 of the C-contiguous
//! little-endian data) as torch or numpy loaded.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use tensorseal::{Checkpoint, Limits, TrustPolicy};
use tensorseal_convert::{ConvertError, ConvertOptions, convert};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Every `X.expected.json` with its input `X`, in a stable order.
fn cases() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![fixtures()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".expected.json"))
            {
                let input = path.with_file_name(name);
                if input.exists() {
                    out.push((
                        input,
                        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap(),
                    ));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A form of a rendered tree in which sets are unordered, floats compare by value (NaN equal to
/// NaN, -0.0 distinct from 0.0), and tensors by dtype, shape, data digest, kind and attributes.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("float") => match &m["float"] {
            Value::String(s) => Value::String(format!("float:{s}")),
            n => {
                let f = n.as_f64().unwrap();
                Value::String(format!("float:{:?}", f))
            }
        },
        Value::Object(m)
            if m.len() == 1 && (m.contains_key("set") || m.contains_key("frozenset")) =>
        {
            let (k, items) = m.iter().next().unwrap();
            let mut items: Vec<String> = items
                .as_array()
                .unwrap()
                .iter()
                .map(|i| canonical(i).to_string())
                .collect();
            items.sort();
            serde_json::json!({ k.clone(): items })
        }
        Value::Object(m) if m.contains_key("tensor") && m["tensor"].is_object() => {
            let t = &m["tensor"];
            let keep = ["dtype", "shape", "sha256", "kind", "requires_grad", "attrs"];
            let mut out = Map::new();
            for k in keep {
                if let Some(x) = t.get(k) {
                    out.insert(k.into(), canonical(x));
                }
            }
            serde_json::json!({ "tensor": out })
        }
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The tree of a converted file, rendered as the fixtures are, with each tensor's data digest.
fn rendered(path: &Path) -> Value {
    let ckpt = Checkpoint::open(path, &Limits::default()).unwrap();
    ckpt.verify(&TrustPolicy::integrity_only()).unwrap();
    tensorseal::json::tree_to_json(ckpt.root(), &mut |t| {
        let mut m = Map::new();
        let bytes = ckpt.tensor_bytes(t).unwrap();
        m.insert(
            "sha256".into(),
            Value::String(hex::encode(tensorseal::sha256(&bytes))),
        );
        m
    })
}

fn first_difference(got: &Value, want: &Value, path: &str) -> String {
    match (got, want) {
        (Value::Object(a), Value::Object(b)) if a.keys().eq(b.keys()) => {
            for (k, v) in a {
                if v != &b[k] {
                    return first_difference(v, &b[k], &format!("{path}.{k}"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if x != y {
                    return first_difference(x, y, &format!("{path}[{i}]"));
                }
            }
        }
        _ => {}
    }
    format!("{path}: converted {got}, torch/numpy loaded {want}")
}

/// Files torch loads that tensorseal deliberately does not convert, with the reason; they must
/// be refused as unsupported (exit 1), after their pickles were judged.
const NOT_CONVERTED: &[(&str, &str)] = &[];

#[test]
fn every_fixture_converts_as_torch_and_numpy_load_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (input, expected) in cases() {
        let name = input
            .strip_prefix(fixtures())
            .unwrap()
            .display()
            .to_string();
        let expect = match NOT_CONVERTED.iter().find(|(n, _)| *n == name) {
            Some(_) => "unsupported",
            None => expected["expect"].as_str().unwrap(),
        };
        let also: Vec<&str> = expected
            .get("also_acceptable")
            .and_then(Value::as_array)
            .map_or(Vec::new(), |a| a.iter().filter_map(Value::as_str).collect());
        let output = dir.path().join("out.tseal");
        let _ = std::fs::remove_file(&output);
        let result = convert(&input, &output, &ConvertOptions::default());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ConvertError::Unsafe { .. }) => "unsafe",
            Err(ConvertError::UnknownObjects { .. }) => "unknown-objects",
            Err(ConvertError::Unsupported { .. }) => "unsupported",
            Err(_) => "invalid",
        };
        // "invalid" and "unsupported" are both exit 1; the fixtures' choice between them is a
        // judgement call, the exit code is the contract.
        let same_class = |a: &str, b: &str| {
            a == b
                || (matches!(a, "invalid" | "unsupported")
                    && matches!(b, "invalid" | "unsupported"))
        };
        if !same_class(outcome, expect) && !also.iter().any(|a| same_class(outcome, a)) {
            failures.push(format!(
                "{name}: expected {expect}, got {outcome}: {:?}",
                result.err().map(|e| e.to_string())
            ));
            continue;
        }
        if result.is_err() {
            assert!(
                !output.exists(),
                "{name}: a refused conversion left {}",
                output.display()
            );
            continue;
        }
        if let Some(tree) = expected.get("tree") {
            let got = canonical(&rendered(&output));
            let want = canonical(tree);
            if got != want {
                failures.push(format!("{name}: {}", first_difference(&got, &want, "root")));
            }
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 60, "only {checked} fixtures converted");
}

#[test]
fn unknown_objects_convert_with_the_opt_in_and_stay_inert() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures().join("torch/zip_unknown_objects.pt");
    let output = dir.path().join("o.tseal");
    let refused = convert(&input, &output, &ConvertOptions::default()).unwrap_err();
    assert!(refused.is_refusal(), "{refused}");
    let report = convert(
        &input,
        &output,
        &ConvertOptions {
            allow_objects: true,
            ..ConvertOptions::default()
        },
    )
    .unwrap();
    assert!(!report.inert_objects.is_empty());
    let ckpt = Checkpoint::open(&output, &Limits::default()).unwrap();
    let json = tensorseal::json::tree_to_json(ckpt.root(), &mut |_| Map::new()).to_string();
    assert!(json.contains("\"object\""), "{json}");
}

#[test]
fn conversion_is_deterministic_and_records_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixtures().join("torch/zip_training_ckpt.pt");
    let key = tensorseal::SecretKey::from_seed(&[5; 32]);
    let options = ConvertOptions {
        signers: vec![&key],
        ..ConvertOptions::default()
    };
    let a = dir.path().join("a.tseal");
    let b = dir.path().join("b.tseal");
    let report = convert(&input, &a, &options).unwrap();
    convert(&input, &b, &options).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let ckpt = Checkpoint::open(&a, &Limits::default()).unwrap();
    ckpt.verify(&TrustPolicy::trusting(vec![key.public_key()]))
        .unwrap();
    let md = ckpt.metadata();
    assert_eq!(md["source_format"], "torch-zip");
    assert_eq!(
        md["source_sha256"],
        hex::encode(tensorseal::sha256(&std::fs::read(&input).unwrap()))
    );
    assert_eq!(md["source_sha256"], report.source_sha256);
    assert_eq!(md["producer"], tensorseal_convert::PRODUCER);
}

#[test]
fn a_refused_conversion_leaves_an_existing_output_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("keep.tseal");
    std::fs::write(&output, b"previous contents").unwrap();
    let hostile = fixtures().join("hostile/p_global_os_system_proto0.pkl");
    let before = std::fs::read(&hostile).unwrap();
    let err = convert(&hostile, &output, &ConvertOptions::default()).unwrap_err();
    assert!(err.is_refusal(), "{err}");
    assert_eq!(std::fs::read(&output).unwrap(), b"previous contents");
    assert_eq!(
        std::fs::read(&hostile).unwrap(),
        before,
        "the input is never modified"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

#[test]
fn the_in_memory_fuzz_entry_point_mirrors_convert() {
    // `fuzz_support::convert_bytes` (the torch_loader fuzz target) must run the same pipeline
    // as `convert`: same outcome for every fixture, and for a converted one the same manifest.
    use tensorseal_convert::fuzz_support::{check_torch_loader, convert_bytes};
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.tseal");
    let mut compared = 0;
    for (input, _) in cases() {
        let bytes = std::fs::read(&input).unwrap();
        if matches!(
            tensorseal_convert::detect(&bytes, &Default::default()),
            Ok(tensorseal_convert::Format::HfIndex)
        ) {
            continue; // its shards are other files
        }
        let _ = std::fs::remove_file(&output);
        let options = ConvertOptions::default();
        let on_disk = convert(&input, &output, &options);
        let in_memory = convert_bytes(&bytes, &options);
        match (&on_disk, &in_memory) {
            (Ok(report), Ok(out)) => {
                assert_eq!(
                    report.output.manifest_sha256,
                    tensorseal::sha256(&out.manifest),
                    "{}: the manifests differ",
                    input.display()
                );
                assert_eq!(report.stats, out.stats, "{}", input.display());
            }
            (Err(a), Err(b)) => assert_eq!(
                std::mem::discriminant(a),
                std::mem::discriminant(b),
                "{}: {a} / {b}",
                input.display()
            ),
            _ => panic!(
                "{}: convert {:?}, in memory {:?}",
                input.display(),
                on_disk.map(|r| r.stats),
                in_memory.map(|o| o.stats)
            ),
        }
        check_torch_loader(&bytes);
        compared += 1;
    }
    assert!(compared > 100, "only {compared} fixtures compared");
}
