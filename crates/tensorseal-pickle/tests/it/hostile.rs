//! One test per published attack class (research: scanners.md §3-4), each with its expected
//! verdict and error. Inputs are built from opcode bytes here; nothing is ever executed.

use std::time::{Duration, Instant};

use tensorseal_pickle::{
    DeclaredStorages, Limits, NoStorages, Node, Options, PickleError, ScanReport, ScanStatus,
    StorageError, StorageRequest, Verdict, load, scan,
};

/// A tiny pickle assembler.
#[derive(Default, Clone)]
pub(crate) struct P(pub(crate) Vec<u8>);

impl P {
    pub(crate) fn new(proto: u8) -> P {
        P(vec![0x80, proto])
    }
    pub(crate) fn raw(mut self, b: &[u8]) -> P {
        self.0.extend_from_slice(b);
        self
    }
    pub(crate) fn global(self, m: &str, n: &str) -> P {
        self.raw(format!("c{m}\n{n}\n").as_bytes())
    }
    pub(crate) fn s(self, s: &str) -> P {
        assert!(s.len() < 256);
        let mut v = vec![0x8c, s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        self.raw(&v)
    }
    pub(crate) fn int(self, i: u8) -> P {
        self.raw(&[b'K', i])
    }
    pub(crate) fn stop(self) -> Vec<u8> {
        self.raw(b".").0
    }
}

fn scan_of(data: &[u8]) -> ScanReport {
    scan(data, 0, &Options::default(), &mut DeclaredStorages)
}

fn load_err(data: &[u8]) -> PickleError {
    load(data, 0, &Options::default(), &mut DeclaredStorages).expect_err("load must refuse")
}

/// `os.system('echo')` via REDUCE, the classic payload.
fn os_system() -> P {
    P::new(2).global("os", "system").s("echo").raw(b"\x85R")
}

fn assert_unsafe(data: &[u8], global: Option<(&str, &str)>) {
    let report = scan_of(data);
    assert_eq!(report.status(), ScanStatus::Unsafe, "{report}");
    let err = load_err(data);
    assert_eq!(err.verdict(), Some(Verdict::Unsafe), "{err}");
    if let Some(g) = global {
        assert_eq!(err.global(), Some(g), "{err}");
        assert!(
            report
                .findings()
                .iter()
                .any(|f| f.verdict == Verdict::Unsafe
                    && f.to_string().contains(&format!("{}.{}", g.0, g.1)))
        );
    }
}

#[test]
fn classic_global_reduce_is_unsafe_with_offset() {
    let data = os_system().stop();
    let err = load_err(&data);
    assert!(
        matches!(err, PickleError::GlobalRefused { offset: 2, .. }),
        "{err}"
    );
    assert_unsafe(&data, Some(("os", "system")));
    let report = scan_of(&data);
    assert_eq!(report.end(), Some(data.len()));
    // The GLOBAL and the REDUCE both appear, with their offsets.
    let offsets: Vec<_> = report
        .findings()
        .iter()
        .map(|f| (f.offset, f.opcode.name()))
        .collect();
    assert_eq!(offsets, vec![(2, "GLOBAL"), (20, "REDUCE")]);
}

#[test]
fn every_unsafe_gadget_of_the_research_is_unsafe() {
    let gadgets = [
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "compile"),
        ("builtins", "open"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("builtins", "breakpoint"),
        ("builtins", "setattr"),
        ("importlib", "import_module"),
        ("runpy", "run_path"),
        ("pty", "spawn"),
        ("socket", "create_connection"),
        ("ctypes", "CDLL"),
        ("marshal", "loads"),
        ("types", "FunctionType"),
        ("pickle", "loads"),
        ("_pickle", "loads"),
        ("operator", "attrgetter"),
        ("_operator", "methodcaller"),
        ("functools", "partial"),
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("torch.jit", "load"),
        ("torch.hub", "load"),
        ("torch.storage", "_load_from_bytes"),
        ("numpy", "load"),
        ("numpy.testing._private.utils", "runstring"),
        ("pkgutil", "resolve_name"),
        ("pydoc", "locate"),
        ("code", "InteractiveInterpreter"),
        ("timeit", "timeit"),
        ("cProfile", "run"),
        ("profile", "run"),
        ("trace", "Trace"),
        ("pdb", "run"),
        ("bdb", "Bdb"),
        ("asyncio.unix_events", "_UnixSubprocessTransport"),
        ("multiprocessing.util", "spawnv_passfds"),
        ("_posixsubprocess", "fork_exec"),
        ("distutils.spawn", "spawn"),
        ("pip", "main"),
        ("webbrowser", "open"),
        ("urllib.request", "urlopen"),
        ("ssl", "get_server_certificate"),
        ("shutil", "rmtree"),
        ("sys", "exit"),
        ("tempfile", "mkstemp"),
        ("os.path", "exists"),
        ("posix", "system"),
        ("nt", "system"),
        ("subprocess", "Popen"),
        ("uuid", "_get_command_stdout"),
        ("_osx_support", "_read_output"),
        ("idlelib.pyshell", "ModifiedInterpreter"),
        ("ensurepip", "_run_pip"),
        ("venv", "create"),
        ("torch.utils.collect_env", "run"),
        ("torch._inductor.codecache", "compile_file"),
        ("numpy.f2py.crackfortran", "getlincoef"),
        ("_interpreters", "run_string"),
        ("copyreg", "add_extension"),
    ];
    for (m, n) in gadgets {
        let data = P::new(4).s(m).s(n).raw(b"\x93").s("x").raw(b"\x85R").stop();
        assert_unsafe(&data, Some((m, n)));
    }
}

#[test]
fn python2_names_are_remapped_before_judging() {
    // protocol 2: `commands` is `subprocess`, `__builtin__` is `builtins`.
    assert_unsafe(
        &P::new(2).global("commands", "getoutput").stop(),
        Some(("subprocess", "getoutput")),
    );
    assert_unsafe(
        &P::new(2).global("__builtin__", "eval").stop(),
        Some(("builtins", "eval")),
    );
    // protocol 4 does not remap, but the Python 2 spelling of an unsafe name is still unsafe.
    assert_unsafe(
        &P::new(4).global("__builtin__", "eval").stop(),
        Some(("__builtin__", "eval")),
    );
}

#[test]
fn dotted_names_never_match_partially() {
    // GHSA-5j3x-jp52-966f: attribute walks into unsafe modules.
    let data = P::new(4).s("pathlib").s("os.system").raw(b"\x93").stop();
    assert_unsafe(&data, Some(("pathlib", "os.system")));
    let data = P::new(4)
        .s("torch._utils")
        .s("os.system")
        .raw(b"\x93")
        .stop();
    assert_unsafe(&data, Some(("torch._utils", "os.system")));
    let data = P::new(4)
        .s("builtins")
        .s("print.__self__")
        .raw(b"\x93")
        .stop();
    assert_unsafe(&data, None);
    // An allowed function spelled through its parent module is not allowed.
    let data = P::new(4)
        .s("torch")
        .s("_utils._rebuild_tensor_v2")
        .raw(b"\x93")
        .stop();
    assert_eq!(scan_of(&data).status(), ScanStatus::Unknown);
    assert!(matches!(
        load_err(&data),
        PickleError::GlobalRefused {
            verdict: Verdict::Unknown,
            ..
        }
    ));
}

#[test]
fn a_module_is_never_a_value() {
    // `torch._utils` as a value is how module-shadowing BUILDs start.
    let data = P::new(4).s("torch").s("_utils").raw(b"\x93").stop();
    assert_unsafe(&data, Some(("torch", "_utils")));
    assert_unsafe(
        &P::new(2).global("mypkg", "os").stop(),
        Some(("mypkg", "os")),
    );
}

#[test]
fn control_characters_in_names_are_unsafe() {
    assert_unsafe(&P::new(2).raw(b"cos\r\nsystem\n").stop(), None);
    assert_unsafe(&P::new(4).s("os ").s("system").raw(b"\x93").stop(), None);
}

#[test]
fn payload_then_garbage_or_truncation_is_still_unsafe() {
    // nullifAI: the payload runs before the parse error, so it must decide the verdict.
    let mut garbage = os_system().0;
    garbage.extend_from_slice(b"\xff\xfe");
    let report = scan_of(&garbage);
    assert_eq!(report.status(), ScanStatus::Unsafe);
    assert!(matches!(
        report.error(),
        Some(PickleError::UnknownOpcode { byte: 0xff, .. })
    ));
    let truncated = &os_system().0[..];
    let report = scan_of(truncated);
    assert_eq!(report.status(), ScanStatus::Unsafe);
    assert!(matches!(
        report.error(),
        Some(PickleError::Truncated { .. })
    ));
    // BINUNICODE whose length swallows STOP.
    let mut eaten = os_system().0;
    eaten.extend_from_slice(b"X\xff\x00\x00\x00.");
    assert_eq!(scan_of(&eaten).status(), ScanStatus::Unsafe);
    // Without a payload the same damage is only invalid.
    assert_eq!(scan_of(b"\x80\x02K\x01\xff").status(), ScanStatus::Invalid);
}

#[test]
fn frame_boundary_divergence_is_refused() {
    // CPython issue #154848: a SHORT_BINBYTES whose payload runs past a 2-byte frame hides a
    // GLOBAL/REDUCE that CPython < 3.13.15 runs from a file object.
    let hidden = b"cos\nsystem\n(S'echo'\ntR.";
    let mut data = vec![
        0x80,
        4,
        0x95,
        2,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        b'C',
        hidden.len() as u8,
    ];
    data.extend_from_slice(hidden);
    data.push(b'.');
    let err = load_err(&data);
    assert!(
        matches!(err, PickleError::FrameViolation { offset: 11, .. }),
        "{err}"
    );
    // Malformed (CPython 3.13.15+ refuses it too); the hidden payload is never interpreted.
    assert_eq!(scan_of(&data).status(), ScanStatus::Invalid);
    // A frame opened inside another, and STOP before the end of a frame.
    let nested =
        b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00\x95\x00\x00\x00\x00\x00\x00\x00\x00N.";
    assert!(matches!(
        load_err(nested),
        PickleError::FrameViolation { .. }
    ));
    let early_stop = b"\x80\x04\x95\x03\x00\x00\x00\x00\x00\x00\x00N.N";
    assert!(matches!(
        load_err(early_stop),
        PickleError::FrameViolation { .. }
    ));
    // A frame longer than the input is a truncation, found before reading it.
    let long = b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7fN.";
    assert!(matches!(
        load_err(long),
        PickleError::Truncated { what: "frame", .. }
    ));
    // A well-formed frame followed by an unframed opcode is fine (large payloads are unframed).
    let ok = b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00(NC\x01xt.";
    assert!(load(ok, 0, &Options::default(), &mut NoStorages).is_ok());
}

#[test]
fn string_based_stack_global_without_proto() {
    // GHSA-9gvj: STRING arguments and no PROTO; a real stack finds os.system.
    let data = b"S'os'\nS'system'\n\x93S'echo'\n\x85R.";
    assert_unsafe(data, Some(("os", "system")));
    // STACK_GLOBAL needs two strs.
    let data = b"\x80\x04K\x01K\x02\x93.";
    assert!(
        matches!(load_err(data), PickleError::TypeMismatch { opcode, .. } if opcode.name() == "STACK_GLOBAL")
    );
}

#[test]
fn memo_desync_is_read_from_the_real_stack() {
    // p07/p08: junk pushed and popped between the name and MEMOIZE/BINPUT.
    let data = P::new(4)
        .s("os")
        .raw(b"N0\x94")
        .s("system")
        .raw(b"N0q\x05")
        .raw(b"h\x00h\x05\x93")
        .stop();
    assert_unsafe(&data, Some(("os", "system")));
    // A GET of an index never PUT, and an int memo value as a module name.
    assert!(matches!(
        load_err(b"\x80\x02h\x07."),
        PickleError::MemoMissing { index: 7, .. }
    ));
    let confused = b"\x80\x04K\x01\x94\x8c\x06system\x94h\x00h\x01\x93.";
    assert!(matches!(
        load_err(confused),
        PickleError::TypeMismatch { .. }
    ));
}

#[test]
fn inst_obj_newobj_and_newobj_ex_calls_are_judged() {
    assert_unsafe(b"(S'echo'\nios\nsystem\n.", Some(("os", "system")));
    assert_unsafe(b"\x80\x01(cos\nsystem\nS'echo'\no.", Some(("os", "system")));
    assert_unsafe(
        &P::new(2).global("subprocess", "Popen").raw(b")\x81").stop(),
        None,
    );
    assert_unsafe(
        &P::new(4)
            .global("subprocess", "Popen")
            .raw(b")}\x92")
            .stop(),
        None,
    );
    // POPped call results are still findings (GHSA-mxhj-88fx-4pcv).
    let popped = P::new(2)
        .global("os", "system")
        .s("echo")
        .raw(b"\x85R0N")
        .stop();
    assert_eq!(scan_of(&popped).status(), ScanStatus::Unsafe);
}

#[test]
fn ext_codes_are_unsafe_without_a_registry() {
    let data = b"\x80\x02\x82\x01)R.";
    let err = load_err(data);
    assert!(
        matches!(
            err,
            PickleError::Refused {
                verdict: Verdict::Unsafe,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(scan_of(data).status(), ScanStatus::Unsafe);
    // With the writer's registry the code is a named global, judged like any other.
    let mut opts = Options::default();
    opts.extension_registry = vec![
        (1, "os".into(), "system".into()),
        (2, "collections".into(), "OrderedDict".into()),
    ];
    let err = load(data, 0, &opts, &mut NoStorages).unwrap_err();
    assert_eq!(err.global(), Some(("os", "system")));
    let ok = load(b"\x80\x02\x82\x02)R.", 0, &opts, &mut NoStorages).unwrap();
    assert!(matches!(ok.node(ok.root()), Node::OrderedDict(_)));
    assert!(matches!(
        load_err(b"\x80\x02\x84\x00\x00\x00\x00."),
        PickleError::InvalidArgument { .. }
    ));
}

#[test]
fn build_on_a_function_or_class_is_unsafe() {
    // Module shadowing: overwrite torch._utils._rebuild_tensor with BUILD.
    let data = P::new(2)
        .global("torch._utils", "_rebuild_tensor_v2")
        .raw(b"}")
        .s("x")
        .int(1)
        .raw(b"sb")
        .stop();
    let err = load_err(&data);
    assert!(
        matches!(
            err,
            PickleError::Refused {
                verdict: Verdict::Unsafe,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(scan_of(&data).status(), ScanStatus::Unsafe);
    // modelscan #330: BUILD on numpy.size (unknown global) is unsafe in the report.
    let data = P::new(2)
        .global("numpy", "size")
        .raw(b"}")
        .s("shape")
        .global("numpy", "__builtins__")
        .raw(b"sb")
        .stop();
    assert_eq!(scan_of(&data).status(), ScanStatus::Unsafe);
}

#[test]
fn computed_names_cannot_reach_stack_global() {
    // modelscan #331: a name produced by a call is not a str on the stack.
    let data = P::new(4)
        .s("os")
        .global("builtins", "str")
        .s("system")
        .raw(b"\x85R\x93")
        .stop();
    // builtins.str is merely unknown, but its result is an object, not a name.
    let report = scan_of(&data);
    assert_eq!(report.status(), ScanStatus::Invalid, "{report}");
    assert!(matches!(
        report.error(),
        Some(PickleError::TypeMismatch { .. })
    ));
    let mut opts = Options::default();
    opts.keep_unknown_objects = true;
    let err = load(&data, 0, &opts, &mut NoStorages).unwrap_err();
    assert!(matches!(err, PickleError::TypeMismatch { .. }), "{err}");
}

#[test]
fn stacked_pickles_are_judged_one_by_one() {
    let mut data = P::new(2).int(1).stop();
    let first_end = data.len();
    data.extend(os_system().stop());
    // As a plain pickle file: bytes after STOP are refused, and scan reports what they hold.
    let err = load(&data, 0, &Options::default(), &mut NoStorages).unwrap_err();
    assert!(matches!(err, PickleError::TrailingBytes { offset, len: 22 } if offset == first_end));
    let report = scan(&data, 0, &Options::default(), &mut NoStorages);
    assert_eq!(report.status(), ScanStatus::Unsafe, "{report}");
    assert!(matches!(
        report.error(),
        Some(PickleError::TrailingBytes { .. })
    ));
    // Walked as a multi-pickle file, each pickle is judged on its own.
    let mut walk = Options::default();
    walk.allow_trailing_bytes = true;
    let first = load(&data, 0, &walk, &mut NoStorages).unwrap();
    assert_eq!(first.end(), first_end);
    assert_eq!(
        scan(&data, 0, &walk, &mut NoStorages).status(),
        ScanStatus::Clean
    );
    let err = load(&data, first.end(), &walk, &mut NoStorages).unwrap_err();
    assert_eq!(err.global(), Some(("os", "system")));
    assert!(err.offset() > first_end);
    // A legacy "magic" made by a call is unsafe (GHSA-97f8-7cmv-76j2).
    let magic = P::new(2)
        .global("builtins", "eval")
        .s("0x1950a86a20f9469cfc6c")
        .raw(b"\x85R")
        .stop();
    assert_unsafe(&magic, Some(("builtins", "eval")));
}

#[test]
fn unknown_globals_are_refused_unless_opted_in_and_then_inert() {
    let data = P::new(2)
        .global("__main__", "Net")
        .raw(b")\x81}")
        .s("w")
        .int(3)
        .raw(b"sb")
        .stop();
    assert_eq!(scan_of(&data).status(), ScanStatus::Unknown);
    let err = load_err(&data);
    assert_eq!(err.global(), Some(("__main__", "Net")));
    let mut opts = Options::default();
    opts.keep_unknown_objects = true;
    let g = load(&data, 0, &opts, &mut NoStorages).unwrap();
    let Node::Object(o) = g.node(g.root()) else {
        panic!()
    };
    assert!(o.state().is_some());
    // Unsafe stays unsafe with the opt-in.
    assert!(load(&os_system().stop(), 0, &opts, &mut NoStorages).is_err());
}

#[test]
fn unsupported_persistent_ids_and_buffers_are_refused() {
    // Text PERSID (torch protocol 0) and NEXT_BUFFER without buffers: unreadable input, not a
    // policy verdict (--allow-objects cannot help).
    let persid = load_err(b"P0\n.");
    assert!(
        matches!(
            persid,
            PickleError::InvalidArgument {
                opcode: tensorseal_pickle::Opcode::PersId,
                ..
            }
        ),
        "{persid:?}"
    );
    assert_eq!(persid.verdict(), None);
    let buffer = load_err(b"\x80\x05\x97.");
    assert!(
        matches!(
            buffer,
            PickleError::InvalidArgument {
                opcode: tensorseal_pickle::Opcode::NextBuffer,
                ..
            }
        ),
        "{buffer:?}"
    );
    assert_eq!(buffer.verdict(), None);
    // BINPERSID of something that is not a storage tuple.
    assert!(matches!(
        load_err(b"\x80\x02K\x01Q."),
        PickleError::TypeMismatch { .. }
    ));
    let not_storage = P::new(2).s("module").int(1).raw(b"\x86Q").stop();
    assert!(matches!(
        load_err(&not_storage),
        PickleError::Refused { .. }
    ));
}

fn billion_laughs(levels: usize) -> Vec<u8> {
    // L0 = ['lol']; Li = [L(i-1)] * 10, each level memoized and fetched with BINGET.
    let mut p = P::new(2).raw(b"]").s("lol").raw(b"aq\x000");
    for level in 1..=levels as u8 {
        p = p.raw(b"](");
        for _ in 0..10 {
            p = p.raw(&[b'h', level - 1]);
        }
        p = p.raw(&[b'e', b'q', level, b'0']);
    }
    p.raw(&[b'h', levels as u8]).stop()
}

#[test]
fn billion_laughs_stays_shared_and_is_bounded() {
    let data = billion_laughs(30); // 10^30 strings if expanded
    let start = Instant::now();
    let err = load_err(&data);
    assert!(
        matches!(
            err,
            PickleError::LimitExceeded {
                what: "max_tree_nodes",
                ..
            }
        ),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    let mut opts = Options::default();
    opts.limits.max_tree_nodes = u64::MAX;
    let g = load(&data, 0, &opts, &mut NoStorages).unwrap();
    assert!(g.len() < 400, "{} nodes", g.len());
    assert_eq!(g.tree_size(), u64::MAX, "saturating size");
}

#[test]
fn huge_memo_index_costs_one_entry() {
    let data = b"\x80\x02K\x01r\xff\xff\xff\xff0j\xff\xff\xff\xff.";
    let g = load(data, 0, &Options::default(), &mut NoStorages).unwrap();
    assert_eq!(g.len(), 1);
    let text = b"I1\np99999999999999999999\n.";
    assert!(load(text, 0, &Options::default(), &mut NoStorages).is_err()); // > u64
}

#[test]
fn huge_declared_lengths_fail_before_allocating() {
    let cases: &[&[u8]] = &[
        b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f",
        b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x80\x05\x96\x00\x00\x00\x00\x00\x00\x00\x01",
        b"\x80\x02X\xff\xff\xff\xff",
        b"\x80\x02B\xff\xff\xff\xff",
        b"\x80\x02T\xff\xff\xff\x7f",
        b"\x80\x02\x8b\xff\xff\xff\x7f",
    ];
    for data in cases {
        let start = Instant::now();
        let err = load_err(data);
        assert!(matches!(err, PickleError::Truncated { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_millis(100));
    }
    assert!(matches!(
        load_err(b"\x80\x02T\xff\xff\xff\xff"),
        PickleError::InvalidArgument { .. }
    ));
    assert!(matches!(
        load_err(b"\x80\x02\x8b\xff\xff\xff\xff"),
        PickleError::InvalidArgument { .. }
    ));
    // Within the input but over a limit.
    let mut long = b"\x80\x02\x8b\x00\x20\x00\x00".to_vec();
    long.extend(vec![1u8; 0x2000]);
    long.push(b'.');
    assert!(matches!(
        load_err(&long),
        PickleError::LimitExceeded {
            what: "max_int_bytes",
            ..
        }
    ));
    let digits = format!("I{}\n.", "9".repeat(5000));
    assert!(matches!(
        load_err(digits.as_bytes()),
        PickleError::InvalidArgument { .. }
    ));
}

#[test]
fn deep_nesting_is_bounded_and_never_recurses() {
    let n = 200_000;
    let mut data = vec![0x80, 2];
    data.extend(std::iter::repeat_n(b']', n));
    data.extend(std::iter::repeat_n(b'a', n - 1));
    data.push(b'.');
    let err = load_err(&data);
    assert!(
        matches!(
            err,
            PickleError::LimitExceeded {
                what: "max_depth",
                ..
            }
        ),
        "{err}"
    );
    let mut opts = Options::default();
    opts.limits.max_depth = usize::MAX;
    let g = load(&data, 0, &opts, &mut NoStorages).unwrap();
    assert_eq!(g.len(), n);
    drop(g); // flat drop, no stack overflow
    // Marks: 100,001 open marks are over the limit.
    let mut marks = vec![b'('; 100_001];
    marks.push(b'.');
    assert!(matches!(
        load_err(&marks),
        PickleError::LimitExceeded {
            what: "max_marks",
            ..
        }
    ));
}

#[test]
fn cycles_are_refused() {
    // fickling #196: L.append(L).
    let err = load_err(b"\x80\x02]\x94h\x00a.");
    assert!(matches!(err, PickleError::Cycle { offset: 2 }), "{err}");
    let err = load_err(b"\x80\x02}q\x00K\x01h\x00s.");
    assert!(matches!(err, PickleError::Cycle { .. }), "{err}");
    // Through an opted-in object's state.
    let data = P::new(2)
        .global("__main__", "Node")
        .raw(b")\x81q\x00}")
        .s("me")
        .raw(b"h\x00sb")
        .stop();
    let mut opts = Options::default();
    opts.keep_unknown_objects = true;
    assert!(matches!(
        load(&data, 0, &opts, &mut NoStorages),
        Err(PickleError::Cycle { .. })
    ));
    assert!(matches!(
        scan_of(b"\x80\x02]\x94h\x00a.").error(),
        Some(PickleError::Cycle { .. })
    ));
}

#[test]
fn stack_and_mark_misuse() {
    assert!(matches!(
        load_err(b"\x80\x02a."),
        PickleError::StackUnderflow { .. }
    ));
    assert!(matches!(
        load_err(b"\x80\x02K\x01(a."),
        PickleError::StackUnderflow { .. }
    ));
    assert!(matches!(
        load_err(b"\x80\x02K\x01K\x02e."),
        PickleError::MissingMark { .. }
    ));
    assert!(matches!(
        load_err(b"\x80\x02."),
        PickleError::BadStop { .. }
    ));
    assert!(matches!(
        load_err(b"\x80\x02K\x01K\x02."),
        PickleError::BadStop { .. }
    ));
    assert!(matches!(
        load_err(b"\x80\x02(K\x01."),
        PickleError::BadStop { .. }
    ));
    assert!(matches!(
        load_err(b"\x80\x06N."),
        PickleError::UnsupportedProtocol { protocol: 6, .. }
    ));
    assert!(matches!(
        load_err(b"\x80\x02]K\x01K\x02s."),
        PickleError::TypeMismatch { .. }
    ));
    assert!(matches!(
        load_err(b"\x80\x02}]K\x01s."),
        PickleError::TypeMismatch { found: "list", .. }
    ));
    assert!(matches!(load_err(b""), PickleError::Truncated { .. }));
}

fn tensor_pickle(offset: u32, size: &[u8], stride: &[u8], numel: u8) -> Vec<u8> {
    let mut p = P::new(2)
        .global("torch._utils", "_rebuild_tensor_v2")
        .raw(b"((")
        .s("storage")
        .global("torch", "FloatStorage")
        .s("0")
        .s("cpu")
        .int(numel)
        .raw(b"tQ");
    p = p.raw(b"J").raw(&offset.to_le_bytes());
    p = p.raw(b"(").raw(size).raw(b"t(").raw(stride).raw(b"t\x89");
    p.global("collections", "OrderedDict")
        .raw(b")Rtq\x00R")
        .stop()
}

#[test]
fn tensor_views_outside_their_storage_are_refused() {
    // 2x3 floats with stride (3, 1) need 6 elements.
    let ok = tensor_pickle(0, b"K\x02K\x03", b"K\x03K\x01", 6);
    let g = load(&ok, 0, &Options::default(), &mut DeclaredStorages).unwrap();
    let Node::Tensor(t) = g.node(g.root()) else {
        panic!()
    };
    assert_eq!(t.byte_range(), 0..24);
    for bad in [
        tensor_pickle(1, b"K\x02K\x03", b"K\x03K\x01", 6),
        tensor_pickle(0, b"K\x02K\x03", b"K\x04K\x01", 6),
        tensor_pickle(0xffff_ffff, b"K\x01", b"K\x01", 6),
        tensor_pickle(0, b"K\x02", b"\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f", 6),
        tensor_pickle(0, b"J\xff\xff\xff\xff", b"K\x01", 6),
        tensor_pickle(0, b"K\x02K\x03", b"K\x03", 6),
    ] {
        let err = load(&bad, 0, &Options::default(), &mut DeclaredStorages).unwrap_err();
        assert!(matches!(err, PickleError::BadArguments { .. }), "{err}");
        assert!(err.to_string().contains("_rebuild_tensor_v2"), "{err}");
    }
    // Zero-size tensors touch nothing, whatever the offset.
    let empty = tensor_pickle(100, b"K\x00K\x03", b"K\x03K\x01", 6);
    assert!(load(&empty, 0, &Options::default(), &mut DeclaredStorages).is_ok());
    // The container decides the record size: a record shorter than declared is refused.
    let mut short = |_: &StorageRequest<'_>| -> Result<u64, StorageError> { Ok(20) };
    assert!(load(&ok, 0, &Options::default(), &mut short).is_err());
    let mut missing = |_: &StorageRequest<'_>| -> Result<u64, StorageError> {
        Err(StorageError::new("no data/0"))
    };
    assert!(matches!(
        load(&ok, 0, &Options::default(), &mut missing),
        Err(PickleError::Storage { .. })
    ));
}

#[test]
fn limits_are_reported_with_their_names() {
    let mut limits = Limits::default();
    limits.max_opcodes = 3;
    let err = load(
        b"\x80\x02K\x01K\x02\x86.",
        0,
        &Options::with_limits(limits),
        &mut NoStorages,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PickleError::LimitExceeded {
                what: "max_opcodes",
                value: 4,
                limit: 3,
                offset: 6
            }
        ),
        "{err}"
    );
}

#[test]
fn memo_index_strides_cannot_grow_memory() {
    // LONG_BINPUT at 0, 4000, 8000, ...: each within "slack" of the last, never proportional
    // to the entries stored. 200,000 of them must stay cheap.
    let mut data = vec![0x80, 2, b'K', 1];
    for i in 0..200_000u32 {
        data.push(b'r');
        data.extend((i * 4000).to_le_bytes());
    }
    data.push(b'.');
    let start = Instant::now();
    let g = load(&data, 0, &Options::default(), &mut NoStorages).unwrap();
    assert_eq!(g.len(), 1);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn findings_past_the_limit_keep_their_verdict() {
    let mut limits = Limits::default();
    limits.max_findings = 1;
    let data = P::new(2)
        .global("collections", "OrderedDict")
        .raw(b"0")
        .global("os", "system")
        .stop();
    let report = scan(&data, 0, &Options::with_limits(limits), &mut NoStorages);
    assert_eq!(report.findings().len(), 1);
    assert_eq!(report.findings_dropped(), 1);
    assert_eq!(report.status(), ScanStatus::Unsafe);
}

#[test]
fn graphs_and_reports_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<tensorseal_pickle::Graph<'static>>();
    send_sync::<ScanReport>();
    send_sync::<PickleError>();
}

#[test]
fn reusing_one_big_container_many_times_is_charged() {
    // A memoized 10,000-item list fed to builtins.set 100,000 times: 10^9 copies unless
    // each copy is charged to the materialization budget.
    let mut p = P::new(2).global("builtins", "set").raw(b"q\x01](");
    for _ in 0..10_000 {
        p = p.raw(b"K\x01");
    }
    p = p.raw(b"eq\x000");
    for _ in 0..100_000 {
        p = p.raw(b"h\x01h\x00\x85R0");
    }
    let data = p.raw(b"N").stop();
    let mut limits = Limits::default();
    limits.max_materialized_bytes = 16 << 20;
    let start = Instant::now();
    let err = load(&data, 0, &Options::with_limits(limits), &mut NoStorages).unwrap_err();
    assert!(
        matches!(
            err,
            PickleError::LimitExceeded {
                what: "max_materialized_bytes",
                ..
            }
        ),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

fn legacy_view_pickle(view_offset: u8, view_size: u8, size: u8) -> Vec<u8> {
    P::new(2)
        .global("torch._utils", "_rebuild_tensor_v2")
        .raw(b"((")
        .s("storage")
        .global("torch", "FloatStorage")
        .s("140000")
        .s("cpu")
        .int(10)
        .raw(b"(")
        .s("140001")
        .int(view_offset)
        .int(view_size)
        .raw(b"ttQK\x00")
        .int(size)
        .raw(b"\x85K\x01\x85\x89")
        .global("collections", "OrderedDict")
        .raw(b")RtR")
        .stop()
}

#[test]
fn legacy_views_are_bounds_checked() {
    // A 4-element view at element 6 of a 10-float storage; the tensor uses 4 elements.
    let mut seen = Vec::new();
    let mut handler = |req: &StorageRequest<'_>| -> Result<u64, StorageError> {
        seen.push((req.key.to_owned(), req.view.cloned()));
        Ok(req.nbytes)
    };
    let data = legacy_view_pickle(6, 4, 4);
    let g = load(&data, 0, &Options::default(), &mut handler).unwrap();
    let Node::Tensor(t) = g.node(g.root()) else {
        panic!()
    };
    assert_eq!(t.byte_range(), 24..40);
    assert_eq!(seen[0].0, "140000");
    assert_eq!(seen[0].1.as_ref().unwrap().offset, 6);
    // The view must lie in the storage, and the tensor in the view.
    let err = load(
        &legacy_view_pickle(8, 4, 2),
        0,
        &Options::default(),
        &mut DeclaredStorages,
    )
    .unwrap_err();
    assert!(err.to_string().contains("view lies outside"), "{err}");
    let err = load(
        &legacy_view_pickle(6, 4, 5),
        0,
        &Options::default(),
        &mut DeclaredStorages,
    )
    .unwrap_err();
    assert!(matches!(err, PickleError::BadArguments { .. }), "{err}");
}
