//! Round trips: random trees of every node kind with tensors of every dtype are written (raw and
//! zstd), read back identical, verify when signed, are byte-for-byte deterministic, and their
//! manifests are canonical CBOR by an independent oracle (ciborium and `common`).

mod common;

use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use tensorseal::*;

// ---------------------------------------------------------------------------------------------
// Strategies

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_.]{0,12}"
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        prop::sample::select(vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0001), // signalling NaN
            f64::from_bits(0x7ffc_0000_0000_0000),
            f64::from_bits(0x7ff8_0000_dead_beef),
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            65504.0,
            0.5,
            1e300,
        ]),
        any::<f32>().prop_map(f64::from),
    ]
}

fn int() -> impl Strategy<Value = Int> {
    prop_oneof![
        any::<i64>().prop_map(Int::from),
        any::<u64>().prop_map(Int::from),
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(neg, mag)| Int::from_sign_magnitude(neg, &mag)),
        // Around the 2^64 boundaries.
        (any::<bool>(), 0u8..3).prop_map(|(neg, low)| {
            let mut mag = vec![1, 0, 0, 0, 0, 0, 0, 0, 0];
            mag[8] = low;
            Int::from_sign_magnitude(neg, &mag)
        }),
    ]
}

fn device() -> impl Strategy<Value = String> {
    ("[a-z][a-z0-9_]{0,8}", prop::option::of(0u32..10_000))
        .prop_map(|(t, i)| i.map_or(t.clone(), |i| format!("{t}:{i}")))
}

fn typed_leaf() -> impl Strategy<Value = Typed> {
    let numpy: Vec<DType> = DType::ALL
        .into_iter()
        .filter(|d| d.numpy_native())
        .collect();
    let torch_names: Vec<String> = DType::ALL
        .iter()
        .map(|d| d.name().to_string())
        .chain(TORCH_DTYPE_EXTRA_NAMES.iter().map(|s| s.to_string()))
        .collect();
    prop_oneof![
        proptest::collection::vec(any::<u64>(), 0..5).prop_map(Typed::TorchSize),
        prop::sample::select(torch_names).prop_map(Typed::TorchDtype),
        device().prop_map(Typed::TorchDevice),
        (prop::sample::select(numpy), any::<[u8; 16]>()).prop_map(|(dtype, b)| {
            Typed::NumpyScalar {
                dtype,
                bytes: b[..dtype.itemsize() as usize].to_vec(),
            }
        }),
    ]
}

/// Hashable leaves: valid dict keys and set elements.
fn key_leaf() -> impl Strategy<Value = Node> {
    prop_oneof![
        Just(Node::None),
        any::<bool>().prop_map(Node::Bool),
        int().prop_map(Node::Int),
        float().prop_map(Node::Float),
        any::<String>().prop_map(Node::Str),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Node::Bytes),
        (float(), float()).prop_map(|(a, b)| Node::Complex(a, b)),
        (name(), name()).prop_map(|(module, name)| Node::Global(Box::new(Global { module, name }))),
        typed_leaf().prop_map(|t| Node::Typed(Box::new(t))),
    ]
}

fn key() -> impl Strategy<Value = Node> {
    key_leaf().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Node::Tuple),
            proptest::collection::vec(inner, 0..3).prop_map(|v| Node::FrozenSet(dedup(v))),
        ]
    })
}

/// Removes elements that duplicate an earlier one: identical, or equal in Python (spec §3.3,
/// decided by the independent oracle in `common`).
fn dedup(v: Vec<Node>) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::new();
    for n in v {
        if !out.iter().any(|o| common::duplicate_keys(o, &n)) {
            out.push(n);
        }
    }
    out
}

/// Keeps the first entry of each key, keys compared as [`dedup`] does.
fn dedup_pairs(v: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let mut out: Vec<(Node, Node)> = Vec::new();
    for (k, n) in v {
        if !out.iter().any(|(o, _)| common::duplicate_keys(o, &k)) {
            out.push((k, n));
        }
    }
    out
}

/// Keeps the first entry of each attribute name.
fn dedup_names(v: Vec<(String, Node)>) -> Vec<(String, Node)> {
    let mut out: Vec<(String, Node)> = Vec::new();
    for (k, n) in v {
        if !out.iter().any(|(o, _)| *o == k) {
            out.push((k, n));
        }
    }
    out
}

/// A tensor without a blob yet; [`attach_blobs`] gives it one.
fn tensor_leaf() -> impl Strategy<Value = Node> {
    (
        prop::sample::select(DType::ALL.to_vec()),
        proptest::collection::vec(0u64..5, 0..4),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(dtype, shape, kind, grad)| {
            let mut t = Tensor::new(dtype, shape, None);
            t.kind = match kind {
                0 => TensorKind::Tensor,
                1 => TensorKind::Parameter,
                _ => TensorKind::NdArray,
            };
            t.requires_grad = grad && t.kind != TensorKind::NdArray;
            Node::Tensor(Box::new(t))
        })
}

fn leaf() -> impl Strategy<Value = Node> {
    prop_oneof![
        3 => key_leaf(),
        1 => proptest::collection::vec(any::<u8>(), 0..16).prop_map(Node::ByteArray),
        3 => tensor_leaf(),
    ]
}

fn text_pairs(
    inner: impl Strategy<Value = Node>,
    min: usize,
) -> impl Strategy<Value = Vec<(String, Node)>> {
    proptest::collection::vec((name(), inner), min..4).prop_map(dedup_names)
}

fn tree() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Node::List),
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Node::Tuple),
            proptest::collection::vec((key(), inner.clone()), 0..5)
                .prop_map(|v| Node::Dict(dedup_pairs(v))),
            proptest::collection::vec(key(), 0..4).prop_map(|v| Node::Set(dedup(v))),
            (
                proptest::collection::vec((key(), inner.clone()), 0..4),
                text_pairs(inner.clone(), 0),
                any::<bool>()
            )
                .prop_map(|(items, attrs, counter)| {
                    let items = dedup_pairs(items);
                    Node::Typed(Box::new(if counter {
                        Typed::Counter { items, attrs }
                    } else {
                        Typed::OrderedDict { items, attrs }
                    }))
                }),
            text_pairs(inner.clone(), 0).prop_map(|f| Node::Typed(Box::new(Typed::Namespace(f)))),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| Node::Typed(Box::new(Typed::Slice(Box::new([a, b, c]))))),
            (
                name(),
                name(),
                proptest::collection::vec(inner.clone(), 0..3),
                text_pairs(inner.clone(), 0),
                prop::option::of(inner.clone()),
                proptest::collection::vec(inner.clone(), 0..3),
                text_pairs(inner.clone(), 0),
            )
                .prop_map(
                    |(module, name, args, kwargs, state, list_items, dict_items)| {
                        Node::Object(Box::new(Object {
                            module,
                            name,
                            args,
                            kwargs,
                            state,
                            list_items,
                            // Dict subclasses' items: text keys here, any hashable key in general.
                            dict_items: dict_items
                                .into_iter()
                                .map(|(k, v)| (Node::Str(k), v))
                                .collect(),
                        }))
                    }
                ),
            // A tensor with attributes.
            (tensor_leaf(), text_pairs(inner, 1)).prop_map(|(t, attrs)| match t {
                Node::Tensor(mut t) if t.kind != TensorKind::NdArray => {
                    t.attrs = attrs;
                    Node::Tensor(t)
                }
                other => other,
            }),
        ]
    })
}

fn metadata() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        proptest::collection::btree_map("[a-z_]{1,12}", ".{0,20}", 0..4),
        prop::option::of(any::<u64>()),
        prop::option::of("[a-z0-9-]{1,16}"),
    )
        .prop_map(|(mut m, step, run)| {
            for k in ["step", "created_at", "source_format", "source_sha256"] {
                m.remove(k);
            }
            if let Some(s) = step {
                m.insert("step".into(), s.to_string());
            }
            if let Some(r) = run {
                m.insert("run_id".into(), r);
            }
            m
        })
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Deterministic tensor bytes: repetitive (compressible) or noisy, from `seed`.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            if seed.is_multiple_of(3) {
                (i % 13) as u8
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

fn tensors_mut(node: &mut Node, f: &mut dyn FnMut(&mut Tensor)) {
    match node {
        Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => {
            v.iter_mut().for_each(|n| tensors_mut(n, f))
        }
        Node::Dict(pairs) => pairs.iter_mut().for_each(|(k, v)| {
            tensors_mut(k, f);
            tensors_mut(v, f)
        }),
        Node::Tensor(t) => {
            f(t);
            t.attrs.iter_mut().for_each(|(_, v)| tensors_mut(v, f));
        }
        Node::Typed(t) => match &mut **t {
            Typed::OrderedDict { items, attrs } | Typed::Counter { items, attrs } => {
                items.iter_mut().for_each(|(k, v)| {
                    tensors_mut(k, f);
                    tensors_mut(v, f)
                });
                attrs.iter_mut().for_each(|(_, v)| tensors_mut(v, f));
            }
            Typed::Namespace(fields) => fields.iter_mut().for_each(|(_, v)| tensors_mut(v, f)),
            Typed::Slice(parts) => parts.iter_mut().for_each(|n| tensors_mut(n, f)),
            _ => {}
        },
        Node::Object(o) => {
            o.args.iter_mut().for_each(|n| tensors_mut(n, f));
            o.kwargs.iter_mut().for_each(|(_, v)| tensors_mut(v, f));
            if let Some(s) = &mut o.state {
                tensors_mut(s, f);
            }
            o.list_items.iter_mut().for_each(|n| tensors_mut(n, f));
            o.dict_items.iter_mut().for_each(|(k, v)| {
                tensors_mut(k, f);
                tensors_mut(v, f);
            });
        }
        _ => {}
    }
}

/// Gives every non-empty tensor a blob (sharing one between same-sized tensors when `seed` says
/// so: tied weights); returns the blob contents in blob order.
fn attach_blobs(tree: &mut Node, seed: u64) -> Vec<(Vec<u8>, DType)> {
    let mut blobs: Vec<(Vec<u8>, DType)> = Vec::new();
    let mut n = 0u64;
    tensors_mut(tree, &mut |t| {
        n += 1;
        let size = t.byte_size().unwrap() as usize;
        if size == 0 {
            t.blob = None;
            return;
        }
        let tie = (seed >> (n % 60)) & 1 == 1;
        if let Some(i) = blobs.iter().position(|(b, _)| tie && b.len() == size) {
            t.blob = Some(i);
        } else {
            blobs.push((data(size, seed.wrapping_add(n * 7919)), t.dtype));
            t.blob = Some(blobs.len() - 1);
        }
    });
    blobs
}

fn write(
    path: &Path,
    tree: &Node,
    blobs: &[(Vec<u8>, DType)],
    meta: &BTreeMap<String, String>,
    compression: Compression,
    signers: &[&SecretKey],
) -> Result<WrittenFile, WriteError> {
    let options = WriteOptions {
        compression,
        ..Default::default()
    };
    let mut w = Writer::create(path, options)?;
    for (i, (bytes, dtype)) in blobs.iter().enumerate() {
        // Alternate the two entry points.
        let id = if i % 2 == 0 {
            w.write_blob(bytes, *dtype)?
        } else {
            let mut src: &[u8] = bytes;
            w.write_blob_from(&mut src, bytes.len() as u64, *dtype)?
        };
        assert_eq!(id, i);
    }
    w.finish(tree.clone(), meta.clone(), signers)
}

/// Checks a written file: the tree, metadata and every tensor's bytes are what was written.
fn check(path: &Path, tree: &Node, blobs: &[(Vec<u8>, DType)], meta: &BTreeMap<String, String>) {
    let ckpt = Checkpoint::open(path, &Limits::default()).unwrap();
    assert_eq!(ckpt.root(), tree);
    assert_eq!(ckpt.metadata(), meta);
    assert_eq!(ckpt.manifest().blobs.len(), blobs.len());
    for (_, t) in ckpt.root().tensors() {
        let bytes = ckpt.tensor_bytes(t).unwrap();
        match t.blob {
            None => assert!(bytes.is_empty()),
            Some(b) => assert!(*bytes == blobs[b].0[..], "tensor bytes differ"),
        }
    }
    for (i, (bytes, _)) in blobs.iter().enumerate() {
        assert!(*ckpt.blob_bytes(i).unwrap() == bytes[..]);
    }
    let report = ckpt.verify(&TrustPolicy::integrity_only()).unwrap();
    assert_eq!(report.blobs, blobs.len());
    // The manifest, decoded by ciborium and re-encoded canonically by the spec kit, is the same
    // byte string: an independent check of map order, shortest heads and floats.
    let file = std::fs::read(path).unwrap();
    let manifest = common::manifest_of(&file);
    // ciborium recurses once per CBOR level (a tree of 128 levels nests up to 640), more than a
    // test thread's stack holds in a debug build: the oracle gets a thread of its own.
    let owned = manifest.to_vec();
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let manifest = &owned[..];
            match ciborium::de::from_reader_with_recursion_limit::<ciborium::Value, _>(
                manifest, 4096,
            ) {
                Ok(value) => assert!(
                    common::canonical_from_ciborium(&value) == manifest,
                    "the manifest is not canonical by the independent encoder"
                ),
                // ciborium turns bignums of up to 16 bytes into i128 and refuses those outside
                // it (e.g. -2^127 - 1): a limit of the oracle, not of the file.
                Err(ciborium::de::Error::Semantic(_, msg)) if msg == "integer too large" => {}
                Err(e) => panic!("ciborium cannot decode the manifest: {e:?}"),
            }
        })
        .unwrap()
        .join()
        .unwrap();
    // Reading it back through the manifest API and re-encoding gives the same bytes.
    let back = Manifest::from_bytes(manifest, 0, &Limits::default()).unwrap();
    assert!(back.to_bytes(&Limits::default()).unwrap() == manifest);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(mut tree in tree(), meta in metadata(), seed in any::<u64>()) {
        let blobs = attach_blobs(&mut tree, seed);
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(&[7; 32]);
        for compression in [Compression::None, Compression::Zstd { level: 1 }] {
            let a = dir.path().join("a.tseal");
            let b = dir.path().join("b.tseal");
            write(&a, &tree, &blobs, &meta, compression, &[&key]).unwrap();
            check(&a, &tree, &blobs, &meta);
            // Signed: verifies under the key.
            Checkpoint::open_verified(&a, &TrustPolicy::trusting(vec![key.public_key()]), &Limits::default()).unwrap();
            // Deterministic: the same inputs give the same bytes.
            write(&b, &tree, &blobs, &meta, compression, &[&key]).unwrap();
            prop_assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
        }
    }

    #[test]
    fn integers_and_floats_keep_their_exact_value(i in int(), f in float()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.tseal");
        let tree = Node::Dict(vec![(Node::Int(i.clone()), Node::Float(f)), (Node::Float(f), Node::Int(i))]);
        let tree = if tree_keys_collide(&tree) { Node::List(vec![tree_first(&tree)]) } else { tree };
        write(&path, &tree, &[], &BTreeMap::new(), Compression::None, &[]).unwrap();
        check(&path, &tree, &[], &BTreeMap::new());
    }
}

/// Two renderings of one value, or of two close values, as keys of every numeric kind: many
/// pairs are equal in Python with different encodings.
fn numeric_twins() -> impl Strategy<Value = (Node, Node)> {
    let value = prop_oneof![
        (-3i64..4).prop_map(|v| v as f64),
        prop::sample::select(vec![
            0.5,
            -0.0,
            65504.0,
            1e300,
            -(2f64.powi(64)),
            2f64.powi(63),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            0.1,
        ]),
    ];
    (value.clone(), value, 0u8..10, 0u8..10, any::<bool>())
        .prop_map(|(x, y, a, b, same)| (render(x, a), render(if same { x } else { y }, b)))
}

/// `v` as a key of the kind `how` selects, when that kind holds it exactly; else as a float.
fn render(v: f64, how: u8) -> Node {
    let numpy = |dtype: DType, bytes: &[u8]| {
        Node::Typed(Box::new(Typed::NumpyScalar {
            dtype,
            bytes: bytes.to_vec(),
        }))
    };
    let integral = v.is_finite() && v.fract() == 0.0;
    match how {
        0 if integral && v.abs() < 2f64.powi(53) => Node::Int((v as i64).into()),
        1 if v == 0.0 || v == 1.0 => Node::Bool(v == 1.0),
        2 => Node::Complex(v, 0.0),
        3 => Node::Complex(v, -0.0),
        4 => Node::Complex(v, 1.0),
        5 if f64::from(v as f32).to_bits() == v.to_bits() => {
            numpy(DType::F32, &(v as f32).to_le_bytes())
        }
        6 if integral && v.abs() < 2f64.powi(53) => numpy(DType::I64, &(v as i64).to_le_bytes()),
        7 if common::canonical_float(v)[0] == 0xf9 => {
            let h = common::canonical_float(v);
            numpy(DType::F16, &[h[2], h[1]])
        }
        8 => Node::Tuple(vec![Node::Float(v)]),
        _ => Node::Float(v),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Spec §3.3, checked against the independent oracle: a dict (or set) of two keys is
    /// refused exactly when the keys are equal in Python or identical.
    #[test]
    fn python_equal_keys_are_exactly_the_duplicates(
        (a, b) in prop_oneof![numeric_twins(), (key(), key())]
    ) {
        let limits = Limits::default();
        let refused = |root: Node, what: &str| {
            let m = Manifest { root, blobs: vec![], metadata: BTreeMap::new(), ext: BTreeMap::new() };
            match m.to_bytes(&limits) {
                Ok(_) => false,
                Err(e) if e.to_string().contains(what) => true,
                Err(e) => panic!("{e}"),
            }
        };
        let expected = common::duplicate_keys(&a, &b);
        let dict = Node::Dict(vec![(a.clone(), Node::None), (b.clone(), Node::None)]);
        prop_assert_eq!(refused(dict, "duplicate dict key"), expected, "{:?} {:?}", a, b);
        prop_assert_eq!(refused(Node::Set(vec![a.clone(), b.clone()]), "duplicate set element"), expected);
        prop_assert_eq!(refused(Node::FrozenSet(vec![b, a]), "duplicate set element"), expected);
    }
}

fn tree_keys_collide(tree: &Node) -> bool {
    matches!(tree, Node::Dict(p) if common::duplicate_keys(&p[0].0, &p[1].0))
}

fn tree_first(tree: &Node) -> Node {
    match tree {
        Node::Dict(p) => p[0].1.clone(),
        _ => unreachable!(),
    }
}

#[test]
fn every_dtype_and_shape_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let shapes: [&[u64]; 6] = [&[], &[0], &[1], &[3, 0, 2], &[2, 3], &[4, 1, 5]];
    let mut tree = Vec::new();
    for dtype in DType::ALL {
        for shape in shapes {
            tree.push(Node::Tensor(Box::new(Tensor::new(
                dtype,
                shape.to_vec(),
                None,
            ))));
        }
    }
    let mut tree = Node::List(tree);
    for seed in [0, 1] {
        let blobs = attach_blobs(&mut tree, seed);
        for compression in [
            Compression::None,
            Compression::Zstd { level: 3 },
            Compression::Planes,
            Compression::Auto,
        ] {
            let path = dir.path().join("d.tseal");
            write(&path, &tree, &blobs, &BTreeMap::new(), compression, &[]).unwrap();
            check(&path, &tree, &blobs, &BTreeMap::new());
            let ckpt = Checkpoint::open(&path, &Limits::default()).unwrap();
            if compression != Compression::None && seed == 0 {
                assert!(
                    ckpt.manifest().blobs.iter().any(|b| b.codec.is_some()),
                    "repetitive data is stored compressed"
                );
            }
        }
    }
}

#[test]
fn large_blobs_span_several_chunks() {
    // 40 MiB raw and compressed: three digest chunks, three zstd frames.
    let dir = tempfile::tempdir().unwrap();
    let len = (40 << 20) + 12;
    let blob: Vec<u8> = (0..len / 4)
        .flat_map(|i| ((i % 1000) as f32 * 0.5).to_le_bytes())
        .collect();
    let tree = Node::Tensor(Box::new(Tensor::new(
        DType::F32,
        vec![len as u64 / 4],
        Some(0),
    )));
    let blobs = vec![(blob, DType::F32)];
    for compression in [
        Compression::None,
        Compression::Zstd { level: 1 },
        Compression::Planes,
    ] {
        let path = dir.path().join("l.tseal");
        write(&path, &tree, &blobs, &BTreeMap::new(), compression, &[]).unwrap();
        let ckpt = Checkpoint::open(&path, &Limits::default()).unwrap();
        let entry = &ckpt.manifest().blobs[0];
        assert_eq!(entry.sha256.len(), 3);
        if let Some(c) = &entry.codec {
            assert_eq!((c.frames.len(), c.raw_sha256.len()), (3, 3));
            let expected = match compression {
                Compression::Planes => tensorseal::Encoding::Planes {
                    layout: tensorseal::planes::PlaneLayout::F32,
                },
                _ => tensorseal::Encoding::Zstd { group: 4 },
            };
            assert_eq!(c.encoding, expected);
        }
        let report = ckpt.verify(&TrustPolicy::integrity_only()).unwrap();
        assert_eq!(report.chunks, 3);
        check(&path, &tree, &blobs, &BTreeMap::new());
    }
}

/// Issue 12: the plane codec is bit-exact on every float pattern that matters (NaN payloads of
/// both signs, infinities, subnormals, negative zero, all-equal tensors) in every float dtype,
/// makes a version-2 file exactly when it is used, and a flipped stored bit is caught.
#[test]
fn plane_coded_floats_round_trip_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let f32s: Vec<u32> = [
        0x7fc0_0001u32,
        0xffc1_2345,
        0x7f80_0001,
        0x7f80_0000,
        0xff80_0000,
        0x0000_0001,
        0x807f_ffff,
        0x8000_0000,
        0,
    ]
    .into_iter()
    .chain((0..200_000u32).map(|i| ((i as f32 * 0.37).sin() * 0.02).to_bits()))
    .collect();
    let f32_bytes: Vec<u8> = f32s.iter().flat_map(|u| u.to_le_bytes()).collect();
    let bf16_bytes: Vec<u8> = f32s
        .iter()
        .flat_map(|u| ((u >> 16) as u16).to_le_bytes())
        .collect();
    let every_u16: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    let equal = vec![0x3cu8; 1 << 16];
    let tensors = [
        (f32_bytes, DType::F32),
        (bf16_bytes, DType::BF16),
        (every_u16.clone(), DType::BF16),
        (every_u16, DType::F16),
        (equal.clone(), DType::F8E4M3Fn),
        (equal, DType::F32),
    ];
    let mut nodes = Vec::new();
    let mut blobs = Vec::new();
    for (i, (bytes, dtype)) in tensors.into_iter().enumerate() {
        let n = bytes.len() as u64 / dtype.itemsize();
        nodes.push(Node::Tensor(Box::new(Tensor::new(dtype, vec![n], Some(i)))));
        blobs.push((bytes, dtype));
    }
    let tree = Node::List(nodes);
    let path = dir.path().join("p.tseal");
    write(
        &path,
        &tree,
        &blobs,
        &BTreeMap::new(),
        Compression::Planes,
        &[],
    )
    .unwrap();
    check(&path, &tree, &blobs, &BTreeMap::new());
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[8], 2, "a plane-coded file is version 2");
    let ckpt = Checkpoint::open(&path, &Limits::default()).unwrap();
    assert_eq!(ckpt.manifest().version(), 2);
    let names: Vec<String> = ckpt
        .manifest()
        .blobs
        .iter()
        .map(|b| b.encoding_name())
        .collect();
    assert_eq!(
        names,
        // Every 16-bit pattern once is incompressible: stored raw, never bigger.
        [
            "planes+f32",
            "planes+bf16",
            "raw",
            "raw",
            "planes+bytes1",
            "planes+f32"
        ]
    );
    let first = &ckpt.manifest().blobs[0];
    assert!(
        first.length * 10 < first.logical_length() * 9,
        "smooth weights compress"
    );
    let last = ckpt.manifest().blobs.last().unwrap();
    assert!(
        last.length < 300,
        "an all-equal tensor codes to a few bytes: {}",
        last.length
    );
    let (offset, len) = first.stored_chunks()[0];
    for at in [offset, offset + len / 2, offset + len - 1] {
        let mut bad = bytes.clone();
        bad[at as usize] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let ckpt = Checkpoint::open(&path, &Limits::default()).unwrap();
        assert!(
            ckpt.verify(&TrustPolicy::integrity_only()).is_err(),
            "flip at {at}"
        );
    }
    // Without planes the same writer stays at version 1, readable by version-1 readers.
    write(
        &path,
        &tree,
        &blobs,
        &BTreeMap::new(),
        Compression::Zstd { level: 1 },
        &[],
    )
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap()[8], 1);
}

/// Spec §8: the CBOR nesting bound follows from the tree depth (5 levels per tree level), so
/// every tree within `max_tree_depth` can be written and read back, whichever node kinds nest,
/// and one level more is refused by the writer, naming the limit.
#[test]
fn every_tree_within_max_tree_depth_is_writable() {
    let s = |x: &str| Node::Str(x.to_string());
    type Wrap = Box<dyn Fn(Node) -> Node>;
    let wraps: Vec<(&str, Wrap)> = vec![
        ("list", Box::new(|n| Node::List(vec![n]))),
        ("dict", Box::new(move |n| Node::Dict(vec![(s("k"), n)]))),
        (
            "tensor attrs",
            Box::new(|n| {
                let mut t = Tensor::new(DType::F32, vec![0], None);
                t.attrs = vec![("a".into(), n)];
                Node::Tensor(Box::new(t))
            }),
        ),
        (
            "OrderedDict attrs",
            Box::new(|n| {
                Node::Typed(Box::new(Typed::OrderedDict {
                    items: vec![],
                    attrs: vec![("a".into(), n)],
                }))
            }),
        ),
        (
            "Namespace",
            Box::new(|n| Node::Typed(Box::new(Typed::Namespace(vec![("a".into(), n)])))),
        ),
        (
            "object kwargs",
            Box::new(|n| {
                Node::Object(Box::new(Object {
                    module: "m".into(),
                    name: "n".into(),
                    args: vec![],
                    kwargs: vec![("a".into(), n)],
                    state: None,
                    list_items: vec![],
                    dict_items: vec![],
                }))
            }),
        ),
        (
            "slice",
            Box::new(|n| {
                Node::Typed(Box::new(Typed::Slice(Box::new([
                    n,
                    Node::None,
                    Node::None,
                ]))))
            }),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.tseal");
    for (what, wrap) in &wraps {
        // The deepest leaf is a torch.Size, the item with the most CBOR levels of its own.
        let leaf = Node::Typed(Box::new(Typed::TorchSize(vec![1])));
        let tree = (1..128).fold(leaf, |inner, _| wrap(inner));
        write(&path, &tree, &[], &BTreeMap::new(), Compression::None, &[])
            .unwrap_or_else(|e| panic!("{what}, 128 levels: {e}"));
        check(&path, &tree, &[], &BTreeMap::new());
        // One level more is refused by the writer, naming the limit.
        let deeper = wrap(tree);
        let err = write(
            &path,
            &deeper,
            &[],
            &BTreeMap::new(),
            Compression::None,
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_tree_depth"), "{what}: {err}");
    }
}

/// Spec §8: with `max_tree_depth` raised as far as it goes, a tree at the hard maximum depth of
/// the worst-nesting kind is written, read back, compared, cloned, rendered and dropped on this
/// ordinary test thread (2 MiB of stack, unoptimised): nothing recurses deeper than that allows.
#[test]
fn a_tree_at_the_hard_maximum_depth_needs_no_special_stack() {
    let limits = Limits {
        max_tree_depth: usize::MAX,
        ..Limits::default()
    };
    let nest = |inner: Node| {
        Node::Object(Box::new(Object {
            module: "m".into(),
            name: "n".into(),
            args: vec![],
            kwargs: vec![("a".into(), inner)],
            state: None,
            list_items: vec![],
            dict_items: vec![],
        }))
    };
    let leaf = Node::Typed(Box::new(Typed::TorchSize(vec![1])));
    let tree = (1..MAX_TREE_DEPTH_HARD).fold(leaf, |inner, _| nest(inner));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.tseal");
    let options = WriteOptions {
        limits: limits.clone(),
        ..WriteOptions::default()
    };
    let w = Writer::create(&path, options.clone()).unwrap();
    w.finish(tree.clone(), BTreeMap::new(), &[]).unwrap();
    let ckpt = Checkpoint::open(&path, &limits).unwrap();
    assert!(ckpt.root() == &tree);
    let json = tensorseal::json::tree_to_json(ckpt.root(), &mut |_| Default::default());
    assert!(json.is_object());
    assert!(!format!("{:?}", ckpt.root()).is_empty());
    drop(ckpt);
    // One level more is refused, by the writer and by the reader (default limits or raised).
    let deeper = nest(tree);
    let w = Writer::create(&path, options).unwrap();
    let err = w.finish(deeper, BTreeMap::new(), &[]).unwrap_err();
    assert!(err.to_string().contains("max_tree_depth"), "{err}");
    assert!(matches!(
        Checkpoint::open(&path, &Limits::default()),
        Err(ReadError::LimitExceeded {
            what: "max_tree_depth",
            limit: 128,
            ..
        })
    ));
}
