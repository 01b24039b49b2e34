//! Known constructors one by one: what each accepts and what it refuses.

use tensorseal_pickle::{
    ByteOrder, DeclaredStorages, Dtype, NoStorages, Node, Options, PickleError, Py2Strings,
    StorageKind, TensorFlavour, UnsupportedKind, load,
};

use crate::hostile::P;

fn root(data: &[u8]) -> Node {
    let g =
        load(data, 0, &Options::default(), &mut DeclaredStorages).unwrap_or_else(|e| panic!("{e}"));
    g.node(g.root()).clone()
}

fn refused(data: &[u8]) -> PickleError {
    load(data, 0, &Options::default(), &mut DeclaredStorages).unwrap_err()
}

#[test]
fn torch_device_forms() {
    let device = |args: P| args.raw(b"R").stop();
    let base = || P::new(2).global("torch", "device");
    let cases: [(P, &str); 4] = [
        (base().s("cuda").int(0).raw(b"\x86"), "cuda:0"),
        (base().s("cpu").raw(b"\x85"), "cpu"),
        (base().s("cuda:1").raw(b"\x85"), "cuda:1"),
        (base().s("xpu").raw(b"N\x86"), "xpu"),
    ];
    for (p, want) in cases {
        assert_eq!(root(&device(p)), Node::TorchDevice(want.into()));
    }
    for bad in [
        base().s("cu da").raw(b"\x85"),
        base().s("cuda:x").raw(b"\x85"),
        base().s("cuda:0").int(1).raw(b"\x86"),
        base().int(1).raw(b"\x85"),
    ] {
        assert!(matches!(
            refused(&device(bad)),
            PickleError::BadArguments { .. }
        ));
    }
}

#[test]
fn torch_size_dtype_layout_qscheme() {
    let size = P::new(2)
        .global("torch", "Size")
        .raw(b"(K\x02K\x03t\x85R")
        .stop();
    assert_eq!(root(&size), Node::TorchSize(vec![2, 3].into()));
    assert_eq!(
        root(&P::new(2).global("torch", "bfloat16").stop()),
        Node::TorchDtype(Dtype::BF16)
    );
    let layout = P::new(2)
        .global("torch.serialization", "_get_layout")
        .s("torch.sparse_coo")
        .raw(b"\x85R")
        .stop();
    assert_eq!(root(&layout), Node::TorchLayout("torch.sparse_coo".into()));
    let bad_layout = P::new(2)
        .global("torch.serialization", "_get_layout")
        .s("torch.evil")
        .raw(b"\x85R")
        .stop();
    assert!(matches!(
        refused(&bad_layout),
        PickleError::BadArguments { .. }
    ));
    assert_eq!(
        root(&P::new(2).global("torch", "per_tensor_affine").stop()),
        Node::TorchQScheme("per_tensor_affine")
    );
    // A dtype is a value, not a callable.
    let call = P::new(2).global("torch", "float32").raw(b")R").stop();
    assert!(matches!(
        refused(&call),
        PickleError::TypeMismatch {
            found: "torch.dtype",
            ..
        }
    ));
}

/// `_rebuild_tensor_v3(UntypedStorage pid, offset, size, stride, rg, hooks, dtype)`.
fn v3(dtype: &str, nbytes: u8, size: u8) -> Vec<u8> {
    P::new(2)
        .global("torch._utils", "_rebuild_tensor_v3")
        .raw(b"((")
        .s("storage")
        .global("torch.storage", "UntypedStorage")
        .s("0")
        .s("cpu")
        .int(nbytes)
        .raw(b"tQK\x00")
        .int(size)
        .raw(b"\x85K\x01\x85\x88")
        .global("collections", "OrderedDict")
        .raw(b")R")
        .global("torch", dtype)
        .raw(b"tR")
        .stop()
}

#[test]
fn untyped_storages_take_the_dtype_from_v3() {
    let Node::Tensor(t) = root(&v3("float8_e4m3fn", 4, 4)) else {
        panic!()
    };
    assert_eq!(t.dtype(), Dtype::F8E4M3FN);
    assert!(t.requires_grad());
    assert_eq!(t.byte_range(), 0..4);
    let Node::Tensor(t) = root(&v3("uint16", 8, 4)) else {
        panic!()
    };
    assert_eq!(t.byte_range(), 0..8);
    // 4 uint16 need 8 bytes, not 6.
    assert!(matches!(
        refused(&v3("uint16", 6, 4)),
        PickleError::BadArguments { .. }
    ));
    // Dtypes a converter cannot write are recognised, and reported as unsupported.
    let Node::Unsupported(u) = root(&v3("complex32", 8, 2)) else {
        panic!()
    };
    assert_eq!(u.kind(), UnsupportedKind::TensorDtype);
    assert!(u.detail().contains("complex32"), "{}", u.detail());
    // The storage handler sees bytes for UntypedStorage.
    let mut seen = None;
    let mut h = |r: &tensorseal_pickle::StorageRequest<'_>| {
        seen = Some((r.kind, r.numel, r.nbytes));
        Ok(r.nbytes)
    };
    load(&v3("float32", 16, 4), 0, &Options::default(), &mut h).unwrap();
    assert_eq!(seen, Some((StorageKind::Untyped, 16, 16)));
}

#[test]
fn rebuild_from_type_v2_only_wraps_tensor_rebuilds() {
    // _rebuild_from_type_v2(_rebuild_tensor_v2, Parameter, args, {'tag': 'x'})
    let inner_args = |p: P| {
        p.raw(b"(")
            .raw(b"(")
            .s("storage")
            .global("torch", "FloatStorage")
            .s("0")
            .s("cpu")
            .int(2)
            .raw(b"tQK\x00K\x02\x85K\x01\x85\x89")
            .global("collections", "OrderedDict")
            .raw(b")Rt")
    };
    let wrap = |func: (&str, &str), class: (&str, &str)| {
        let p = P::new(2)
            .global("torch._tensor", "_rebuild_from_type_v2")
            .raw(b"(")
            .global(func.0, func.1)
            .global(class.0, class.1);
        inner_args(p).raw(b"}").s("tag").s("x").raw(b"stR").stop()
    };
    let data = wrap(
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch.nn.parameter", "Parameter"),
    );
    let g = load(&data, 0, &Options::default(), &mut DeclaredStorages).unwrap();
    let Node::Tensor(t) = g.node(g.root()) else {
        panic!()
    };
    assert_eq!(t.flavour(), TensorFlavour::Parameter);
    assert!(t.attributes().is_some());
    assert_eq!(g.tensors().count(), 2); // the inner rebuild and the wrapped tensor
    // Any other function is refused, even an allowed one.
    let data = wrap(("collections", "OrderedDict"), ("torch", "Tensor"));
    assert!(matches!(refused(&data), PickleError::BadArguments { .. }));
    // A tensor subclass is unknown, and with the opt-in an unsupported layout.
    let data = wrap(
        ("torch._utils", "_rebuild_tensor_v2"),
        ("mylib", "MyTensor"),
    );
    assert!(matches!(refused(&data), PickleError::GlobalRefused { .. }));
    let mut opts = Options::default();
    opts.keep_unknown_objects = true;
    let g = load(&data, 0, &opts, &mut DeclaredStorages).unwrap();
    assert!(
        matches!(g.node(g.root()), Node::Unsupported(u) if u.kind() == UnsupportedKind::TensorLayout)
    );
}

#[test]
fn builtins_constructors() {
    let slice = P::new(2)
        .global("__builtin__", "slice")
        .int(5)
        .raw(b"\x85R")
        .stop();
    let Node::Slice(parts) = root(&slice) else {
        panic!()
    };
    let g = load(&slice, 0, &Options::default(), &mut NoStorages).unwrap();
    assert!(matches!(g.node(parts[0]), Node::None));
    // Python 2's bytearray(unicode, 'latin-1').
    let ba = P::new(2)
        .global("__builtin__", "bytearray")
        .raw(b"X\x02\x00\x00\x00\xc3\xa9")
        .s("latin-1")
        .raw(b"\x86R")
        .stop();
    let g = load(&ba, 0, &Options::default(), &mut NoStorages).unwrap();
    let Node::ByteArray(d) = g.node(g.root()) else {
        panic!()
    };
    assert_eq!(g.bytes(d), b"\xe9");
    // _codecs.encode only with latin1, only for code points < 256.
    let enc = |s: &str, e: &str| {
        P::new(2)
            .global("_codecs", "encode")
            .s(s)
            .s(e)
            .raw(b"\x86R")
            .stop()
    };
    assert!(matches!(
        refused(&enc("a", "utf-8")),
        PickleError::BadArguments { .. }
    ));
    assert!(matches!(
        refused(&enc("€", "latin1")),
        PickleError::BadArguments { .. }
    ));
    // copyreg.__newobj__(Namespace) then BUILD.
    let ns = P::new(2)
        .global("copy_reg", "__newobj__")
        .global("argparse", "Namespace")
        .raw(b"\x85R}")
        .s("lr")
        .int(1)
        .raw(b"sb")
        .stop();
    assert!(matches!(root(&ns), Node::Namespace(p) if p.len() == 1));
    // NEWOBJ on a function is refused.
    let f = P::new(2)
        .global("torch._utils", "_rebuild_tensor_v2")
        .raw(b")\x81")
        .stop();
    assert!(matches!(refused(&f), PickleError::BadArguments { .. }));
}

#[test]
fn numpy_dtype_state_and_scalars() {
    let dtype = |order: &str| {
        P::new(2)
            .global("numpy", "dtype")
            .s("i4")
            .raw(b"\x89\x88\x87R(K\x03")
            .s(order)
            .raw(b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    };
    let scalar = |order: &str| {
        P::new(2)
            .global("numpy.core.multiarray", "scalar")
            .raw(&dtype(order).0[2..])
            .raw(b"C\x04\x00\x00\x00\x07\x86R")
            .stop()
    };
    let Node::NumpyScalar(s) = root(&scalar(">")) else {
        panic!()
    };
    assert_eq!(s.dtype().byte_order(), ByteOrder::Big);
    assert_eq!(s.dtype().dtype(), Some(Dtype::I32));
    assert!(matches!(
        refused(&scalar("|")),
        PickleError::BadArguments { .. }
    ));
    assert!(matches!(
        refused(&scalar("=")),
        PickleError::BadArguments { .. }
    ));
    // Python 2 numpy data as a str: its exact bytes are used when the str decodes (here as
    // UTF-8: C3 A9 is one char, but the scalar still gets the four bytes written).
    let utf8 = P::new(2)
        .global("numpy.core.multiarray", "scalar")
        .raw(&dtype("<").0[2..])
        .raw(b"U\x04\xc3\xa9\x00\x01\x86R")
        .stop();
    let g = load(&utf8, 0, &Options::default(), &mut NoStorages).unwrap();
    let Node::NumpyScalar(s) = g.node(g.root()) else {
        panic!()
    };
    assert_eq!(g.bytes(s.data()), b"\xc3\xa9\x00\x01");
    // Not UTF-8: refused by default (as torch.load does), read with Latin1.
    let py2 = P::new(2)
        .global("numpy.core.multiarray", "scalar")
        .raw(&dtype("<").0[2..])
        .raw(b"U\x04\x07\x00\x00\xff\x86R")
        .stop();
    assert!(matches!(refused(&py2), PickleError::InvalidArgument { .. }));
    let mut opts = Options::default();
    opts.py2_strings = Py2Strings::Latin1;
    let g = load(&py2, 0, &opts, &mut NoStorages).unwrap();
    let Node::NumpyScalar(s) = g.node(g.root()) else {
        panic!()
    };
    assert_eq!(g.bytes(s.data()), b"\x07\x00\x00\xff");
}

#[test]
fn opcode_trace_lists_every_opcode_with_its_offset() {
    let data = P::new(2)
        .global("collections", "OrderedDict")
        .raw(b")R")
        .stop();
    let mut opts = Options::default();
    opts.trace_opcodes = true;
    let report = tensorseal_pickle::scan(&data, 0, &opts, &mut NoStorages);
    let names: Vec<_> = report
        .trace()
        .iter()
        .map(|(o, op)| (*o, op.name()))
        .collect();
    assert_eq!(
        names,
        vec![
            (0, "PROTO"),
            (2, "GLOBAL"),
            (27, "EMPTY_TUPLE"),
            (28, "REDUCE"),
            (29, "STOP")
        ]
    );
}
