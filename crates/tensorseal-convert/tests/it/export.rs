//! Round trips: write a tensorseal file with the core Writer, export it, read it back with the
//! safetensors crate, compare bytes.

use std::collections::BTreeMap;
use std::path::Path;
use tensorseal::{DType, Node, SecretKey, Tensor, TrustPolicy, WriteOptions, Writer};
use tensorseal_convert::{ExportError, ExportOptions, export};

fn t(dtype: DType, shape: &[u64], blob: Option<usize>) -> Node {
    Node::Tensor(Box::new(Tensor::new(dtype, shape.to_vec(), blob)))
}

fn s(x: &str) -> Node {
    Node::Str(x.into())
}

fn write(path: &Path, build: impl FnOnce(&mut Writer) -> Node, signers: &[&SecretKey]) {
    let mut w = Writer::create(path, WriteOptions::default()).unwrap();
    let root = build(&mut w);
    let meta = BTreeMap::from([("producer".to_string(), "tensorseal-test 0".to_string())]);
    w.finish(root, meta, signers).unwrap();
}

#[test]
fn round_trip_bytes_equal() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("m.tseal");
    let out = dir.path().join("m.safetensors");
    let w_bytes: Vec<u8> = (0..24u8).collect();
    let bf_bytes: Vec<u8> = (100..108u8).collect();
    let i64_bytes: Vec<u8> = [1i64, -2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    write(
        &src,
        |w| {
            let a = w.write_blob(&w_bytes, DType::F32).unwrap();
            let b = w.write_blob(&bf_bytes, DType::BF16).unwrap();
            let c = w.write_blob(&i64_bytes, DType::I64).unwrap();
            let d = w.write_blob(&[9, 8], DType::U8).unwrap();
            let e = w.write_blob(&[7; 16], DType::C128).unwrap();
            Node::Dict(vec![
                (
                    s("model"),
                    Node::Dict(vec![
                        (s("w"), t(DType::F32, &[2, 3], Some(a))),
                        (s("b"), t(DType::BF16, &[4], Some(b))),
                    ]),
                ),
                (s("tied"), t(DType::F32, &[2, 3], Some(a))),
                (
                    s("layers"),
                    Node::List(vec![
                        t(DType::I64, &[3], Some(c)),
                        Node::Int(5i64.into()),
                        s("x"),
                    ]),
                ),
                (Node::Int(7i64.into()), t(DType::U8, &[2], Some(d))),
                (s("c128"), t(DType::C128, &[1], Some(e))),
                (s("empty"), t(DType::F32, &[0, 3], None)),
                (s("lr"), Node::Float(1.5)),
            ])
        },
        &[],
    );
    let report = export(&src, &out, &ExportOptions::default()).unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].path, "c128");
    assert_eq!(report.values_left_out, 3);
    assert!(report.tree_in_metadata);

    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let expect: &[(&str, safetensors::Dtype, &[usize], &[u8])] = &[
        ("model.w", safetensors::Dtype::F32, &[2, 3], &w_bytes),
        ("tied", safetensors::Dtype::F32, &[2, 3], &w_bytes),
        ("model.b", safetensors::Dtype::BF16, &[4], &bf_bytes),
        ("layers.0", safetensors::Dtype::I64, &[3], &i64_bytes),
        ("7", safetensors::Dtype::U8, &[2], &[9, 8]),
        ("empty", safetensors::Dtype::F32, &[0, 3], &[]),
    ];
    assert_eq!(st.len(), expect.len());
    for (name, dtype, shape, data) in expect {
        let v = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.dtype(), *dtype, "{name}");
        assert_eq!(v.shape(), *shape, "{name}");
        assert_eq!(v.data(), *data, "{name}");
    }
    // Same order as the crate's own serializer: descending alignment, then name.
    assert_eq!(
        report.written,
        ["layers.0", "empty", "model.w", "tied", "model.b", "7"]
    );

    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["format"], "pt");
    let ckpt = tensorseal::Checkpoint::open(&src, &Default::default()).unwrap();
    assert_eq!(
        meta["tensorseal.source_manifest_sha256"],
        hex::encode(ckpt.manifest_sha256())
    );
    let tree: serde_json::Value = serde_json::from_str(&meta["tensorseal.tree"]).unwrap();
    let text = tree.to_string();
    assert!(text.contains("\"safetensors\":\"model.w\""), "{text}");
    assert!(text.contains("\"skipped\""), "{text}");
    assert!(text.contains("1.5"), "{text}");
    let signed: serde_json::Value = serde_json::from_str(&meta["tensorseal.metadata"]).unwrap();
    assert_eq!(signed["producer"], "tensorseal-test 0");

    // Deterministic: exporting again gives the same bytes.
    let out2 = dir.path().join("again.safetensors");
    export(&src, &out2, &ExportOptions::default()).unwrap();
    assert_eq!(std::fs::read(&out2).unwrap(), bytes);
}

#[test]
fn root_tensor_and_collisions() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("r.tseal");
    write(
        &src,
        |w| {
            let a = w.write_blob(&[1, 2, 3, 4], DType::F32).unwrap();
            t(DType::F32, &[1], Some(a))
        },
        &[],
    );
    let out = dir.path().join("r.safetensors");
    let report = export(&src, &out, &ExportOptions::default()).unwrap();
    assert_eq!(report.written, ["tensor"]);

    let src = dir.path().join("c.tseal");
    write(
        &src,
        |w| {
            let a = w.write_blob(&[1, 2, 3, 4], DType::F32).unwrap();
            Node::Dict(vec![
                (s("a.b"), t(DType::F32, &[1], Some(a))),
                (
                    s("a"),
                    Node::Dict(vec![(s("b"), t(DType::F32, &[1], Some(a)))]),
                ),
            ])
        },
        &[],
    );
    let out = dir.path().join("c.safetensors");
    let err = export(&src, &out, &ExportOptions::default()).unwrap_err();
    assert!(
        matches!(&err, ExportError::NameCollision { name, first, second }
            if name == "a.b" && first == "root[\"a.b\"]" && second == "root[\"a\"][\"b\"]"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn corrupt_or_untrusted_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("m.tseal");
    write(
        &src,
        |w| {
            let a = w.write_blob(&[1, 2, 3, 4], DType::F32).unwrap();
            Node::Dict(vec![(s("w"), t(DType::F32, &[1], Some(a)))])
        },
        &[],
    );
    let out = dir.path().join("m.safetensors");
    let key = SecretKey::from_seed(&[3; 32]);
    let options = ExportOptions {
        policy: TrustPolicy::trusting(vec![key.public_key()]),
        ..ExportOptions::default()
    };
    assert!(matches!(
        export(&src, &out, &options).unwrap_err(),
        ExportError::Verify(_)
    ));
    let mut bytes = std::fs::read(&src).unwrap();
    bytes[64] ^= 1; // first blob byte
    std::fs::write(&src, &bytes).unwrap();
    assert!(matches!(
        export(&src, &out, &ExportOptions::default()).unwrap_err(),
        ExportError::Verify(_)
    ));
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn signed_input_under_a_trust_policy() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("m.tseal");
    let key = SecretKey::from_seed(&[4; 32]);
    write(
        &src,
        |w| {
            let a = w.write_blob(&[1, 2, 3, 4], DType::F32).unwrap();
            Node::Dict(vec![(s("w"), t(DType::F32, &[1], Some(a)))])
        },
        &[&key],
    );
    let options = ExportOptions {
        policy: TrustPolicy::trusting(vec![key.public_key()]),
        ..ExportOptions::default()
    };
    let report = export(&src, &dir.path().join("m.safetensors"), &options).unwrap();
    assert!(report.verify.authenticated);
}
