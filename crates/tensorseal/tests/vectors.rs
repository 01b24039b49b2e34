//! Golden files in `spec/vectors/`: the code must reproduce them byte for byte and verify them.
//!
//! Regenerate after an intended format change with `TENSORSEAL_UPDATE_VECTORS=1 cargo test -p
//! tensorseal --test vectors`, and update `spec/vectors/README.md` with the printed digests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use tensorseal::*;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors")
}

/// The published test key: seed bytes 0, 1, ..., 31. Never trust it outside tests.
fn test_key() -> SecretKey {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    SecretKey::from_seed(&seed)
}

fn second_key() -> SecretKey {
    SecretKey::from_seed(&[0xee; 32])
}

fn tensor(dtype: DType, shape: &[u64], blob: Option<usize>) -> Node {
    Node::Tensor(Box::new(Tensor::new(dtype, shape.to_vec(), blob)))
}

fn s(x: &str) -> Node {
    Node::Str(x.to_string())
}

fn int(v: i64) -> Node {
    Node::Int(v.into())
}

/// Deterministic bytes for a tensor: a simple counter pattern.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

type Build = fn(&std::path::Path) -> WrittenFile;

fn empty(p: &std::path::Path) -> WrittenFile {
    Writer::create(p, WriteOptions::default())
        .unwrap()
        .finish(Node::None, BTreeMap::new(), &[])
        .unwrap()
}

fn simple(p: &std::path::Path) -> WrittenFile {
    let mut w = Writer::create(p, WriteOptions::default()).unwrap();
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    let b = w.write_blob(&data, DType::F32).unwrap();
    let root = Node::Dict(vec![(s("weight"), tensor(DType::F32, &[2, 3], Some(b)))]);
    let mut meta = BTreeMap::new();
    meta.insert("producer".into(), "tensorseal spec vectors".into());
    meta.insert("run_id".into(), "vectors".into());
    meta.insert("step".into(), "42".into());
    w.finish(root, meta, &[&test_key()]).unwrap()
}

fn all_kinds(p: &std::path::Path) -> WrittenFile {
    let mut w = Writer::create(p, WriteOptions::default()).unwrap();
    let mut tensors = Vec::new();
    for (i, dtype) in DType::ALL.into_iter().enumerate() {
        let shape = [2u64, 3];
        let size = dtype.byte_size(&shape).unwrap() as usize;
        let mut data = pattern(size, i as u8);
        if dtype == DType::Bool {
            // Spec §2: a bool byte is 0 or 1.
            data.iter_mut().for_each(|b| *b &= 1);
        }
        let b = w.write_blob(&data, dtype).unwrap();
        tensors.push((s(dtype.name()), tensor(dtype, &shape, Some(b))));
    }
    tensors.push((s("empty"), tensor(DType::F32, &[0, 4], None)));
    let mut param = Tensor::new(
        DType::F32,
        vec![2, 3],
        Some(tensors[11].1.clone().tensor_blob()),
    );
    param.kind = TensorKind::Parameter;
    param.requires_grad = true;
    param.attrs = vec![("note".into(), s("tied to float32"))];
    tensors.push((s("param"), Node::Tensor(Box::new(param))));
    let big = Int::from_sign_magnitude(false, &[0x40, 0, 0, 0, 0, 0, 0, 0, 0]);
    let neg_big = Int::from_sign_magnitude(true, &[0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let scalars = Node::List(vec![
        Node::None,
        Node::Bool(true),
        Node::Bool(false),
        int(0),
        int(-1),
        Node::Int(u64::MAX.into()),
        Node::Int(big),
        Node::Int(neg_big),
        Node::Float(0.5),
        Node::Float(-0.0),
        Node::Float(f64::INFINITY),
        Node::Float(f64::NEG_INFINITY),
        Node::Float(f64::NAN),
        Node::Float(0.1),
        s("text ✓ \u{1F600}"),
        Node::Bytes(vec![0, 1, 2, 255]),
        Node::ByteArray(vec![9, 8]),
        Node::Complex(1.5, -2.0),
    ]);
    let containers = Node::Dict(vec![
        (int(0), s("int key")),
        (Node::Tuple(vec![int(1), s("a")]), s("tuple key")),
        (Node::None, s("None key")),
        (s("set"), Node::Set(vec![int(3), int(1)])),
        (s("frozenset"), Node::FrozenSet(vec![s("x")])),
        (s("tuple"), Node::Tuple(vec![])),
    ]);
    let typed = Node::List(vec![
        Node::Typed(Box::new(Typed::OrderedDict {
            items: vec![(s("k"), int(1))],
            attrs: vec![(
                "_metadata".into(),
                Node::Dict(vec![(s(""), Node::Dict(vec![(s("version"), int(1))]))]),
            )],
        })),
        Node::Typed(Box::new(Typed::Counter {
            items: vec![(s("a"), int(2))],
            attrs: vec![],
        })),
        Node::Typed(Box::new(Typed::Namespace(vec![
            ("lr".into(), Node::Float(0.001)),
            ("epochs".into(), int(3)),
        ]))),
        Node::Typed(Box::new(Typed::TorchSize(vec![2, 3]))),
        Node::Typed(Box::new(Typed::TorchDtype("bfloat16".into()))),
        Node::Typed(Box::new(Typed::TorchDevice("cuda:0".into()))),
        Node::Typed(Box::new(Typed::NumpyScalar {
            dtype: DType::F64,
            bytes: 2.5f64.to_le_bytes().to_vec(),
        })),
        Node::Typed(Box::new(Typed::Slice(Box::new([
            int(1),
            Node::None,
            int(2),
        ])))),
    ]);
    let inert = Node::List(vec![
        Node::Object(Box::new(Object {
            module: "pathlib".into(),
            name: "PurePosixPath".into(),
            args: vec![s("/"), s("data")],
            kwargs: vec![],
            state: None,
            list_items: vec![],
            dict_items: vec![],
        })),
        Node::Object(Box::new(Object {
            module: "mylib.config".into(),
            name: "Config".into(),
            args: vec![],
            kwargs: vec![("seed".into(), int(1))],
            state: Some(Node::Dict(vec![(s("depth"), int(12))])),
            list_items: vec![],
            dict_items: vec![],
        })),
        Node::Object(Box::new(Object {
            module: "collections".into(),
            name: "defaultdict".into(),
            args: vec![Node::Global(Box::new(Global {
                module: "builtins".into(),
                name: "list".into(),
            }))],
            kwargs: vec![],
            state: None,
            list_items: vec![],
            dict_items: vec![(s("a"), Node::List(vec![int(1)]))],
        })),
        Node::Object(Box::new(Object {
            module: "mylib.data".into(),
            name: "History".into(),
            args: vec![],
            kwargs: vec![],
            state: None,
            list_items: vec![Node::Float(0.25), Node::Float(0.125)],
            dict_items: vec![],
        })),
        Node::Global(Box::new(Global {
            module: "mylib.model".into(),
            name: "Net".into(),
        })),
    ]);
    let root = Node::Dict(vec![
        (s("tensors"), Node::Dict(tensors)),
        (s("scalars"), scalars),
        (s("containers"), containers),
        (s("typed"), typed),
        (s("inert"), inert),
    ]);
    w.finish(root, BTreeMap::new(), &[&test_key()]).unwrap()
}

fn zstd(p: &std::path::Path) -> WrittenFile {
    let opts = WriteOptions {
        compression: Compression::Zstd { level: 1 },
        ..Default::default()
    };
    let mut w = Writer::create(p, opts).unwrap();
    let data: Vec<u8> = (0..4096u32)
        .flat_map(|i| (((i % 64) as f32) * 0.25).to_le_bytes())
        .collect();
    let b = w.write_blob(&data, DType::F32).unwrap();
    let root = Node::Dict(vec![(s("w"), tensor(DType::F32, &[64, 64], Some(b)))]);
    w.finish(root, BTreeMap::new(), &[&test_key(), &second_key()])
        .unwrap()
}

/// Plane-coded (format version 2): smooth weight-like values whose exponent planes tANS codes
/// and whose mantissa planes are stored raw, so no zstd is involved and any implementation of
/// spec §4.4 can reproduce the bytes.
fn planes(p: &std::path::Path) -> WrittenFile {
    let opts = WriteOptions {
        compression: Compression::Planes,
        ..Default::default()
    };
    let mut w = Writer::create(p, opts).unwrap();
    // Bell-shaped like trained weights, from a fixed xorshift: no repeats for zstd to find.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut weight = move || {
        let mut sum = 0.0f32;
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            sum += (x >> 40) as f32 / (1u64 << 24) as f32;
        }
        (sum - 2.0) * 0.05
    };
    let bf16: Vec<u8> = (0..16384)
        .flat_map(|_| ((weight().to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    let f32: Vec<u8> = (0..4096).flat_map(|_| weight().to_le_bytes()).collect();
    let a = w.write_blob(&bf16, DType::BF16).unwrap();
    let b = w.write_blob(&f32, DType::F32).unwrap();
    let root = Node::Dict(vec![
        (s("bf16"), tensor(DType::BF16, &[128, 128], Some(a))),
        (s("f32"), tensor(DType::F32, &[64, 64], Some(b))),
    ]);
    w.finish(root, BTreeMap::new(), &[&test_key()]).unwrap()
}

trait BlobOf {
    fn tensor_blob(self) -> usize;
}

impl BlobOf for Node {
    fn tensor_blob(self) -> usize {
        match self {
            Node::Tensor(t) => t.blob.unwrap(),
            _ => unreachable!(),
        }
    }
}

const VECTORS: &[(&str, Build)] = &[
    ("empty.tseal", empty),
    ("simple.tseal", simple),
    ("all-kinds.tseal", all_kinds),
    ("zstd.tseal", zstd),
    ("planes.tseal", planes),
];

#[test]
fn vectors_are_reproduced_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let update = std::env::var_os("TENSORSEAL_UPDATE_VECTORS").is_some();
    let key_pem = test_key().to_pem().unwrap();
    let pub_pem = test_key().public_key().to_pem().unwrap();
    let golden_dir = vectors_dir();
    if update {
        std::fs::write(golden_dir.join("test-key.key"), &key_pem).unwrap();
        std::fs::write(golden_dir.join("test-key.pub"), &pub_pem).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(golden_dir.join("test-key.key")).unwrap(),
        key_pem
    );
    assert_eq!(
        std::fs::read_to_string(golden_dir.join("test-key.pub")).unwrap(),
        pub_pem
    );
    let trusted = PublicKey::read(&golden_dir.join("test-key.pub")).unwrap();
    for (name, build) in VECTORS {
        let written = build(&dir.path().join(name));
        let fresh = std::fs::read(&written.path).unwrap();
        let golden_path = golden_dir.join(name);
        if update {
            std::fs::write(&golden_path, &fresh).unwrap();
            println!(
                "{name}: {} bytes, file sha256 {}, manifest sha256 {}",
                fresh.len(),
                hex::encode(sha256(&fresh)),
                hex::encode(written.manifest_sha256)
            );
        }
        let golden = std::fs::read(&golden_path).unwrap();
        assert!(
            golden == fresh,
            "{name}: the writer no longer reproduces the golden file"
        );
        let ckpt = Checkpoint::open(&golden_path, &Limits::default()).unwrap();
        let policy = if ckpt.signatures().is_empty() {
            TrustPolicy::integrity_only()
        } else {
            TrustPolicy::trusting(vec![trusted])
        };
        ckpt.verify(&policy).unwrap();
        assert_eq!(
            hex::encode(ckpt.manifest_sha256()),
            hex::encode(written.manifest_sha256)
        );
    }
}
