//! Properties: arbitrary bytes and arbitrary well-formed opcode streams never panic and always
//! terminate within the limits; pickled random values read back as themselves.

use proptest::prelude::*;
use tensorseal_pickle::{
    DeclaredStorages, Graph, Limits, Node, NodeId, Opcode, Options, PyInt, load, scan,
};

fn small_limits() -> Options {
    let mut limits = Limits::default();
    limits.max_opcodes = 10_000;
    limits.max_nodes = 10_000;
    limits.max_stack = 1_000;
    limits.max_marks = 100;
    limits.max_memo_entries = 1_000;
    limits.max_tree_nodes = 100_000;
    let mut o = Options::with_limits(limits);
    o.keep_unknown_objects = true;
    o
}

/// Every limit at 1: nothing may panic when limits bite at the first opportunity.
fn tiny_limits() -> Options {
    let mut limits = Limits::default();
    limits.max_opcodes = 1;
    limits.max_stack = 1;
    limits.max_marks = 1;
    limits.max_memo_entries = 1;
    limits.max_nodes = 1;
    limits.max_container_len = 1;
    limits.max_depth = 1;
    limits.max_tree_nodes = 1;
    limits.max_str_len = 1;
    limits.max_bytes_len = 1;
    limits.max_int_bytes = 1;
    limits.max_int_digits = 1;
    limits.max_materialized_bytes = 1;
    limits.max_tensors = 1;
    limits.max_rank = 1;
    limits.max_tensor_bytes = 1;
    limits.max_total_tensor_bytes = 1;
    limits.max_findings = 1;
    let mut o = Options::with_limits(limits);
    o.trace_opcodes = true;
    o
}

fn run_all(data: &[u8]) {
    for opts in [Options::default(), small_limits(), tiny_limits()] {
        let report = scan(data, 0, &opts, &mut DeclaredStorages);
        if let Some(e) = report.error() {
            assert!(e.offset() <= data.len(), "{e}");
        }
        match load(data, 0, &opts, &mut DeclaredStorages) {
            Ok(g) => {
                assert!(g.end() <= data.len());
                assert!(report.error().is_none(), "scan failed where load succeeded");
            }
            Err(e) => assert!(e.offset() <= data.len(), "{e}"),
        }
    }
}

/// One opcode with a well-formed argument.
fn token() -> impl Strategy<Value = Vec<u8>> {
    let simple = prop::sample::select(
        Opcode::ALL
            .iter()
            .copied()
            .filter(|op| {
                !matches!(
                    op,
                    Opcode::Stop | Opcode::Frame | Opcode::Proto | Opcode::Global | Opcode::Inst
                )
            })
            .collect::<Vec<_>>(),
    );
    let global = prop::sample::select(vec![
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch", "FloatStorage"),
        ("builtins", "set"),
        ("_codecs", "encode"),
        ("numpy", "dtype"),
        ("__main__", "X"),
        ("os", "system"),
    ]);
    prop_oneof![
        (simple, any::<[u8; 9]>(), 0u8..4).prop_map(|(op, arg, len)| {
            let mut v = vec![op as u8];
            let len = usize::from(len);
            match op {
                Opcode::Int | Opcode::Long | Opcode::Get | Opcode::Put => {
                    v.extend(format!("{}\n", arg[0] % 8).as_bytes())
                }
                Opcode::Float => v.extend(b"1.5\n"),
                Opcode::String => v.extend(b"'ab'\n"),
                Opcode::Unicode | Opcode::PersId => v.extend(b"ab\n"),
                Opcode::BinInt | Opcode::BinBytes | Opcode::BinUnicode | Opcode::BinString => {
                    v.extend((len as u32).to_le_bytes());
                    v.extend(&arg[..len]);
                }
                Opcode::Long4 => {
                    v.extend((len as i32).to_le_bytes());
                    v.extend(&arg[..len]);
                }
                Opcode::BinBytes8 | Opcode::BinUnicode8 | Opcode::ByteArray8 => {
                    v.extend((len as u64).to_le_bytes());
                    v.extend(&arg[..len]);
                }
                Opcode::BinInt1 | Opcode::BinGet | Opcode::BinPut | Opcode::Ext1 => {
                    v.push(arg[0] % 8)
                }
                Opcode::BinInt2 | Opcode::Ext2 => v.extend(&arg[..2]),
                Opcode::LongBinGet | Opcode::LongBinPut | Opcode::Ext4 => {
                    v.extend(u32::from(arg[0] % 8).to_le_bytes())
                }
                Opcode::Long1
                | Opcode::ShortBinBytes
                | Opcode::ShortBinString
                | Opcode::ShortBinUnicode => {
                    v.push(len as u8);
                    v.extend(&arg[..len]);
                }
                Opcode::BinFloat => v.extend(&arg[..8]),
                _ => {}
            }
            v
        }),
        global.prop_map(|(m, n)| format!("c{m}\n{n}\n").into_bytes()),
        (0u64..16).prop_map(|n| {
            let mut v = vec![Opcode::Frame as u8];
            v.extend(n.to_le_bytes());
            v
        }),
    ]
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    (0u8..6, prop::collection::vec(token(), 0..64)).prop_map(|(proto, tokens)| {
        let mut v = vec![0x80, proto];
        for t in tokens {
            v.extend(t);
        }
        v.push(b'.');
        v
    })
}

/// A Python value for round trips.
#[derive(Clone, Debug)]
enum Val {
    None,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Val>),
    Tuple(Vec<Val>),
    Dict(Vec<(String, Val)>),
}

fn val() -> impl Strategy<Value = Val> {
    let leaf = prop_oneof![
        Just(Val::None),
        any::<bool>().prop_map(Val::Bool),
        any::<i64>().prop_map(Val::Int),
        any::<u64>().prop_map(Val::Float),
        "\\PC{0,12}".prop_map(Val::Str),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Val::Bytes),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Val::List),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Val::Tuple),
            prop::collection::btree_map("[a-z]{0,4}", inner, 0..6)
                .prop_map(|m| Val::Dict(m.into_iter().collect())),
        ]
    })
}

/// A minimal protocol-4 pickler (the opcodes CPython's writer uses for these types).
fn dump(v: &Val, out: &mut Vec<u8>) {
    match v {
        Val::None => out.push(b'N'),
        Val::Bool(b) => out.push(if *b { 0x88 } else { 0x89 }),
        Val::Int(i) => {
            let bytes = PyInt::Small(*i).to_le_twos();
            out.push(0x8a);
            out.push(bytes.len() as u8);
            out.extend(bytes);
        }
        Val::Float(bits) => {
            out.push(b'G');
            out.extend(bits.to_be_bytes());
        }
        Val::Str(s) => {
            out.push(b'X');
            out.extend((s.len() as u32).to_le_bytes());
            out.extend(s.as_bytes());
        }
        Val::Bytes(b) => {
            out.push(0x8e);
            out.extend((b.len() as u64).to_le_bytes());
            out.extend(b);
        }
        Val::List(items) => {
            out.extend(b"](");
            items.iter().for_each(|i| dump(i, out));
            out.push(b'e');
        }
        Val::Tuple(items) => {
            out.push(b'(');
            items.iter().for_each(|i| dump(i, out));
            out.push(b't');
        }
        Val::Dict(pairs) => {
            out.extend(b"}(");
            for (k, v) in pairs {
                dump(&Val::Str(k.clone()), out);
                dump(v, out);
            }
            out.push(b'u');
        }
    }
}

fn same(g: &Graph<'_>, id: NodeId, v: &Val) -> bool {
    match (g.node(id), v) {
        (Node::None, Val::None) => true,
        (Node::Bool(a), Val::Bool(b)) => a == b,
        (Node::Int(a), Val::Int(b)) => *a == PyInt::Small(*b),
        (Node::Float(a), Val::Float(b)) => a.to_bits() == *b,
        (Node::Str(a), Val::Str(b)) => a.as_ref() == b,
        (Node::Bytes(a), Val::Bytes(b)) => g.bytes(a) == b.as_slice(),
        (Node::List(a), Val::List(b)) | (Node::Tuple(a), Val::Tuple(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(g, *x, y))
        }
        (Node::Dict(a), Val::Dict(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((k, x), (kb, y))| g.as_str(*k) == Some(kb.as_str()) && same(g, *x, y))
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        run_all(&data);
    }

    #[test]
    fn protocol_prefixed_bytes_never_panic(proto in 0u8..6, data in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut v = vec![0x80, proto];
        v.extend(data);
        run_all(&v);
    }

    #[test]
    fn well_formed_opcode_streams_never_panic(data in stream()) {
        run_all(&data);
    }

    #[test]
    fn values_round_trip(v in val()) {
        let mut data = vec![0x80, 4];
        dump(&v, &mut data);
        data.push(b'.');
        let g = load(&data, 0, &Options::default(), &mut DeclaredStorages).unwrap();
        prop_assert_eq!(g.end(), data.len());
        prop_assert!(same(&g, g.root(), &v));
    }
}

/// A dict key for the de-duplication model: str or int (never equal to each other).
#[derive(Clone, Debug, PartialEq)]
enum Key {
    S(String),
    I(i64),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// SETITEMS with repeated keys keeps Python's semantics (first position, last value), on
    /// both sides of the small-dict/indexed-dict switch.
    #[test]
    fn dict_keys_deduplicate_like_python(
        ops in prop::collection::vec(
            (prop_oneof!["[a-d]{1,2}".prop_map(Key::S), (-3i64..40).prop_map(Key::I)], any::<u8>()),
            0..120,
        )
    ) {
        let mut data = vec![0x80, 2, b'}', b'('];
        let mut model: Vec<(Key, u8)> = Vec::new();
        for (k, v) in &ops {
            match k {
                Key::S(s) => {
                    data.push(b'X');
                    data.extend((s.len() as u32).to_le_bytes());
                    data.extend(s.as_bytes());
                }
                Key::I(i) => {
                    data.push(b'J');
                    data.extend((*i as i32).to_le_bytes());
                }
            }
            data.extend([b'K', *v]);
            match model.iter_mut().find(|(mk, _)| mk == k) {
                Some(entry) => entry.1 = *v,
                None => model.push((k.clone(), *v)),
            }
        }
        data.extend(b"u.");
        let g = load(&data, 0, &Options::default(), &mut DeclaredStorages).unwrap();
        let Node::Dict(pairs) = g.node(g.root()) else { panic!() };
        prop_assert_eq!(pairs.len(), model.len());
        for (&(k, v), (mk, mv)) in pairs.iter().zip(&model) {
            let key = match g.node(k) {
                Node::Str(s) => Key::S(s.to_string()),
                Node::Int(PyInt::Small(i)) => Key::I(*i),
                other => panic!("{other:?}"),
            };
            prop_assert_eq!(&key, mk);
            prop_assert_eq!(g.node(v), &Node::Int(PyInt::Small(i64::from(*mv))));
        }
    }
}
