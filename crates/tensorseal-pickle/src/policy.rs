//! The verdict table: which globals are allowed (and what they become), which are unsafe, and why.
//!
//! Matching is on the exact `(module, qualified name)` strings after Python 2 remapping; nothing is
//! imported or resolved. A dotted name only matches an entry that spells it out in full.
//!
//! * **Allowed**: [`allowed`] below, each entry a constructor the interpreter turns into a typed
//!   value after validating its arguments.
//! * **Unsafe**: [`UNSAFE_MODULES`] (the module or any submodule), [`UNSAFE_NAMES`] (single
//!   functions in otherwise ordinary modules), every `builtins` name outside
//!   [`BUILTINS_HARMLESS`], and names that walk attributes through dunders or through an unsafe
//!   module (`pathlib` + `os.system`).
//! * **Unknown**: everything else.

use crate::dtype::{Dtype, legacy_storage_dtype};
use crate::report::Verdict;

/// What an allowed global is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Known {
    RebuildTensor,
    RebuildTensorV2,
    RebuildTensorV3,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    RebuildFromType,
    RebuildDeviceTensorFromCpuTensor,
    /// A rebuild function for a layout a converter cannot write (the name says which).
    UnsupportedRebuild(&'static str),
    /// A typed storage class; `None` is `UntypedStorage` (bytes).
    StorageClass(Option<Dtype>),
    Dtype(Dtype),
    QScheme(&'static str),
    TorchSize,
    TorchDevice,
    GetLayout,
    TensorClass,
    ParameterClass,
    /// `torch.FloatTensor` and friends (legacy tensor type objects).
    LegacyTensorClass,
    OrderedDict,
    Counter,
    Namespace,
    CodecsEncode,
    Set,
    FrozenSet,
    Complex,
    Slice,
    ByteArray,
    Bytes,
    Object,
    Reconstructor,
    NewObjFunction,
    NewObjExFunction,
    NumpyReconstruct,
    NumpyNdarray,
    NumpyDtype,
    NumpyScalar,
    NumpyFromBuffer,
}

/// The policy's decision for one global.
#[derive(Clone, Debug)]
pub(crate) struct Classification {
    pub(crate) verdict: Verdict,
    pub(crate) reason: &'static str,
    pub(crate) known: Option<Known>,
}

const QSCHEMES: &[&str] = &[
    "per_tensor_affine",
    "per_channel_affine",
    "per_tensor_symmetric",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
];

const LEGACY_TENSOR_CLASSES: &[&str] = &[
    "DoubleTensor",
    "FloatTensor",
    "HalfTensor",
    "BFloat16Tensor",
    "LongTensor",
    "IntTensor",
    "ShortTensor",
    "CharTensor",
    "ByteTensor",
    "BoolTensor",
    "ComplexFloatTensor",
    "ComplexDoubleTensor",
];

/// The allowed table: exact `(module, name)` -> what it is.
fn allowed(module: &str, name: &str) -> Option<Known> {
    use Known::*;
    Some(match (module, name) {
        ("torch._utils", "_rebuild_tensor") => RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor_v3") => RebuildTensorV3,
        ("torch._utils", "_rebuild_parameter") => RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => RebuildParameterWithState,
        ("torch._utils", "_rebuild_device_tensor_from_cpu_tensor") => {
            RebuildDeviceTensorFromCpuTensor
        }
        ("torch._utils", "_rebuild_qtensor") => UnsupportedRebuild("quantized tensor"),
        ("torch._utils", "_rebuild_sparse_tensor") => UnsupportedRebuild("sparse tensor"),
        ("torch._utils", "_rebuild_sparse_csr_tensor") => UnsupportedRebuild("sparse CSR tensor"),
        ("torch._utils", "_rebuild_nested_tensor") => UnsupportedRebuild("nested tensor"),
        ("torch._utils", "_rebuild_meta_tensor_no_storage") => {
            UnsupportedRebuild("meta tensor (no data)")
        }
        ("torch._utils", "_rebuild_wrapper_subclass") => {
            UnsupportedRebuild("wrapper tensor subclass (no data)")
        }
        ("torch._utils", "_rebuild_device_tensor_from_numpy" | "_rebuild_xla_tensor") => {
            UnsupportedRebuild("device tensor rebuilt from a numpy array")
        }
        // torch's loader maps the old module `torch.tensor` to `torch._tensor`.
        ("torch._tensor" | "torch.tensor", "_rebuild_from_type_v2") => RebuildFromTypeV2,
        ("torch._tensor" | "torch.tensor", "_rebuild_from_type") => RebuildFromType,
        ("torch" | "torch.storage", "UntypedStorage") => StorageClass(None),
        ("torch" | "torch.cuda", n) if legacy_storage_dtype(n).is_some() => {
            StorageClass(legacy_storage_dtype(n))
        }
        ("torch", "Size") => TorchSize,
        ("torch", "device") => TorchDevice,
        ("torch", "Tensor") | ("torch._tensor", "Tensor") => TensorClass,
        ("torch.nn.parameter", "Parameter") => ParameterClass,
        ("torch" | "torch.cuda", n) if LEGACY_TENSOR_CLASSES.contains(&n) => LegacyTensorClass,
        ("torch.serialization", "_get_layout") => GetLayout,
        ("torch", n) if QSCHEMES.contains(&n) => {
            QScheme(QSCHEMES.iter().find(|q| **q == n).copied().unwrap_or(""))
        }
        ("torch", n) if crate::dtype::Dtype::from_torch_name(n).is_some() => {
            Dtype(crate::dtype::Dtype::from_torch_name(n)?)
        }
        ("collections", "OrderedDict") => OrderedDict,
        ("collections", "Counter") => Counter,
        ("argparse", "Namespace") => Namespace,
        ("_codecs", "encode") => CodecsEncode,
        ("builtins", "set") => Set,
        ("builtins", "frozenset") => FrozenSet,
        ("builtins", "complex") => Complex,
        ("builtins", "slice") => Slice,
        ("builtins", "bytearray") => ByteArray,
        ("builtins", "bytes") => Bytes,
        ("builtins", "object") => Object,
        ("copyreg", "_reconstructor") => Reconstructor,
        ("copyreg", "__newobj__") => NewObjFunction,
        ("copyreg", "__newobj_ex__") => NewObjExFunction,
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => NumpyReconstruct,
        ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => NumpyScalar,
        ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => NumpyFromBuffer,
        ("numpy", "ndarray") => NumpyNdarray,
        ("numpy", "dtype") => NumpyDtype,
        _ => return None,
    })
}

/// Modules whose every name (and every submodule) is unsafe, with the reason.
pub const UNSAFE_MODULES: &[(&str, &str)] = &[
    (
        "os",
        "operating-system calls: processes, files, environment",
    ),
    ("posix", "operating-system calls (os on POSIX)"),
    ("nt", "operating-system calls (os on Windows)"),
    ("posixpath", "file-system access (os.path)"),
    ("ntpath", "file-system access (os.path)"),
    ("genericpath", "file-system access (os.path)"),
    ("subprocess", "runs processes"),
    ("_posixsubprocess", "runs processes (fork_exec)"),
    ("_winapi", "Windows process and file API"),
    ("msvcrt", "Windows C runtime"),
    ("pty", "spawns processes on a pseudo-terminal"),
    ("fcntl", "file-descriptor control"),
    ("signal", "signal handlers"),
    ("resource", "process resource limits"),
    ("sys", "interpreter state (modules, path, hooks)"),
    ("importlib", "imports arbitrary modules"),
    ("imp", "imports arbitrary modules"),
    ("zipimport", "imports code from archives"),
    ("pkgutil", "resolves arbitrary names (pkgutil.resolve_name)"),
    ("runpy", "runs modules and files as code"),
    ("code", "runs source code (InteractiveInterpreter)"),
    ("codeop", "compiles source code"),
    ("timeit", "runs source code (timeit)"),
    ("cProfile", "runs source code (run/runctx)"),
    ("profile", "runs source code (run/runctx)"),
    ("trace", "runs source code (Trace.run)"),
    ("pdb", "debugger: runs source code"),
    ("bdb", "debugger: runs source code"),
    ("doctest", "runs source code from docstrings"),
    ("pydoc", "resolves arbitrary names (locate) and runs pagers"),
    ("idlelib", "IDE internals: run source code"),
    ("lib2to3", "code rewriting tool internals"),
    ("ensurepip", "installs packages"),
    ("venv", "creates environments, runs installers"),
    ("pip", "installs packages"),
    ("setuptools", "build tool: runs code"),
    ("distutils", "build tool: spawns processes, writes files"),
    ("_distutils_hack", "build tool internals"),
    ("site", "interpreter start-up hooks"),
    ("ctypes", "calls native code"),
    ("_ctypes", "calls native code"),
    ("cffi", "calls native code"),
    ("marshal", "loads code objects"),
    ("pickle", "nested unpickling"),
    ("_pickle", "nested unpickling"),
    ("cPickle", "nested unpickling"),
    ("pickletools", "pickle internals"),
    ("copy", "calls __reduce__/__deepcopy__ of arbitrary objects"),
    ("shelve", "nested unpickling from files"),
    ("dill", "nested unpickling, code objects"),
    ("cloudpickle", "nested unpickling, code objects"),
    ("joblib", "nested unpickling from files"),
    (
        "operator",
        "attribute and method access gadgets (attrgetter, methodcaller)",
    ),
    (
        "_operator",
        "attribute and method access gadgets (attrgetter, methodcaller)",
    ),
    ("functools", "call gadgets (partial, reduce)"),
    ("itertools", "call gadgets (starmap)"),
    ("asyncio", "runs processes and network I/O"),
    ("multiprocessing", "spawns processes"),
    ("concurrent", "runs callables in workers"),
    ("threading", "runs callables in threads"),
    ("_thread", "runs callables in threads"),
    ("socket", "network I/O"),
    ("_socket", "network I/O"),
    ("socketserver", "network servers"),
    ("ssl", "network I/O"),
    ("_ssl", "network I/O"),
    ("select", "I/O multiplexing"),
    ("selectors", "I/O multiplexing"),
    ("http.client", "network I/O"),
    ("http.server", "network servers"),
    ("http.cookiejar", "reads and writes cookie files"),
    ("urllib.request", "network I/O"),
    ("urllib2", "network I/O"),
    ("urllib3", "network I/O"),
    ("requests", "network I/O"),
    ("httpx", "network I/O"),
    ("aiohttp", "network I/O"),
    ("httplib", "network I/O"),
    ("ftplib", "network I/O"),
    ("smtplib", "network I/O"),
    ("imaplib", "network I/O and processes (IMAP4_stream)"),
    ("poplib", "network I/O"),
    ("telnetlib", "network I/O"),
    ("nntplib", "network I/O"),
    ("xmlrpc", "network I/O"),
    ("webbrowser", "launches programs"),
    ("shutil", "file-system operations"),
    ("tempfile", "creates files"),
    ("glob", "file-system access"),
    ("fileinput", "reads files"),
    ("io", "file I/O"),
    ("_io", "file I/O"),
    ("codecs", "file I/O (codecs.open) and codec registry"),
    ("linecache", "reads files"),
    (
        "difflib",
        "listed with linecache and gc by fickling GHSA-r48f-3986-4f9c",
    ),
    ("mmap", "maps files"),
    ("zipfile", "reads and writes archives"),
    ("tarfile", "reads and writes archives"),
    ("gzip", "file I/O"),
    ("bz2", "file I/O"),
    ("lzma", "file I/O"),
    ("sqlite3", "database files"),
    ("_sqlite3", "database files"),
    ("dbm", "database files"),
    ("logging", "file handlers"),
    ("gc", "interpreter internals (get_referrers)"),
    ("inspect", "interpreter internals"),
    ("platform", "runs processes"),
    ("uuid", "runs processes (_get_command_stdout)"),
    ("_osx_support", "runs processes"),
    ("_aix_support", "runs processes"),
    ("_pyrepl", "runs pagers and source code"),
    ("test", "CPython test helpers: run interpreters"),
    ("tkinter", "GUI, runs Tcl code"),
    ("_tkinter", "GUI, runs Tcl code"),
    ("turtle", "GUI"),
    ("_interpreters", "runs code in subinterpreters"),
    ("_xxsubinterpreters", "runs code in subinterpreters"),
    ("interpreters", "runs code in subinterpreters"),
    ("_xxinterpchannels", "subinterpreter channels"),
    ("sysconfig", "interpreter configuration"),
    ("yaml", "YAML loaders construct arbitrary objects"),
    ("IPython", "runs shell and Python code"),
    ("pexpect", "spawns processes"),
    ("paramiko", "remote shell"),
    ("fabric", "remote shell"),
    ("invoke", "runs shell commands"),
    ("sh", "runs shell commands"),
    ("plumbum", "runs shell commands"),
    ("git", "runs git processes"),
    ("mlflow", "runs projects and entry points"),
    (
        "torch.jit",
        "TorchScript: compiles and runs code, loads archives",
    ),
    ("torch.hub", "downloads and runs repositories"),
    (
        "torch._dynamo",
        "compiler internals: evaluates guards and code",
    ),
    (
        "torch._inductor",
        "compiler internals: compiles and loads native code",
    ),
    ("torch.fx", "graph tracing and code generation"),
    ("torch.package", "loads packaged code"),
    (
        "torch.utils.cpp_extension",
        "compiles and loads native code",
    ),
    ("torch.utils.collect_env", "runs processes"),
    ("torch.utils.bottleneck", "runs scripts under profilers"),
    ("torch.utils._config_module", "loads configuration code"),
    (
        "torch.utils.data.datapipes",
        "decoders that read files and run handlers",
    ),
    ("torch.distributed.rpc", "remote procedure calls"),
    (
        "torch._C",
        "native bindings reached with attacker-chosen arguments",
    ),
    ("torch.ops", "dispatches to arbitrary registered operators"),
    ("torch.classes", "arbitrary registered TorchScript classes"),
    ("torch.library", "registers operators"),
    ("torch.compiler", "compiles code"),
    ("torch.export", "loads exported programs"),
    ("numpy.testing", "test helpers run source code (runstring)"),
    ("numpy.f2py", "builds and evaluates code (crackfortran)"),
    ("numpy.distutils", "build tool: runs processes"),
    ("numpy.ctypeslib", "loads native libraries"),
    (
        "numpy.lib.npyio",
        "reads files (load, loadtxt) with pickles inside",
    ),
    (
        "numpy.lib._npyio_impl",
        "reads files (load, loadtxt) with pickles inside",
    ),
    ("numpy.lib.format", "reads .npy files with pickles inside"),
    (
        "numpy.lib._format_impl",
        "reads .npy files with pickles inside",
    ),
    ("pandas.io", "reads files and URLs"),
    ("keras", "model loaders run code (Lambda layers)"),
    ("safetensors", "reads files"),
];

/// Single unsafe functions in modules whose other names are merely unknown.
pub const UNSAFE_NAMES: &[(&str, &str, &str)] = &[
    ("torch", "load", "loads another (unchecked) checkpoint"),
    ("torch", "save", "writes files"),
    (
        "torch.serialization",
        "load",
        "loads another (unchecked) checkpoint",
    ),
    (
        "torch.serialization",
        "_load",
        "loads another (unchecked) checkpoint",
    ),
    (
        "torch.serialization",
        "_legacy_load",
        "loads another (unchecked) checkpoint",
    ),
    ("torch.serialization", "save", "writes files"),
    (
        "torch.storage",
        "_load_from_bytes",
        "nested unpickling of attacker bytes",
    ),
    ("torch", "compile", "compiles code"),
    ("torch", "from_file", "reads files"),
    (
        "numpy",
        "load",
        "reads files with pickles inside (allow_pickle)",
    ),
    ("numpy", "loadtxt", "reads files"),
    (
        "types",
        "FunctionType",
        "builds functions from code objects",
    ),
    ("types", "LambdaType", "builds functions from code objects"),
    ("types", "CodeType", "builds code objects"),
    ("types", "MethodType", "binds callables"),
    ("types", "ModuleType", "builds modules"),
    ("types", "new_class", "builds classes"),
    ("types", "prepare_class", "builds classes"),
    ("types", "coroutine", "wraps callables"),
    ("urllib", "urlopen", "network I/O"),
    ("urllib", "urlretrieve", "network I/O"),
    ("numpy", "genfromtxt", "reads files"),
    ("numpy", "fromfile", "reads files"),
    ("numpy", "memmap", "maps files"),
    ("numpy", "save", "writes files"),
    ("numpy", "savez", "writes files"),
    ("numpy", "savetxt", "writes files"),
    ("numpy", "tofile", "writes files"),
    ("numpy", "fromregex", "reads files"),
    (
        "pandas",
        "read_pickle",
        "nested unpickling from files or URLs",
    ),
    ("pandas", "read_csv", "reads files and URLs"),
    ("pandas", "read_table", "reads files and URLs"),
    ("pandas", "read_json", "reads files and URLs"),
    ("pandas", "read_html", "reads files and URLs"),
    ("pandas", "read_sql", "database access"),
    ("pandas", "eval", "evaluates expressions"),
    (
        "copyreg",
        "add_extension",
        "changes the extension registry behind EXT opcodes",
    ),
    ("copyreg", "pickle", "registers reducers"),
    (
        "copyreg",
        "_reduce_ex",
        "calls __reduce__ machinery of arbitrary objects",
    ),
    (
        "collections",
        "namedtuple",
        "builds classes from source text",
    ),
    (
        "_codecs",
        "lookup_error",
        "returns error handlers (callables)",
    ),
    ("_codecs", "register", "registers codec search functions"),
    ("_codecs", "register_error", "registers error handlers"),
    ("_codecs", "lookup", "returns codec functions"),
    ("dataclasses", "make_dataclass", "builds classes"),
    ("enum", "EnumMeta", "builds classes"),
    ("abc", "ABCMeta", "builds classes"),
];

/// `builtins` names that are only constructors of plain values or exception classes: merely
/// unknown. Every other `builtins` name is unsafe (eval, exec, compile, open, getattr,
/// `__import__`, breakpoint, input, globals, vars, setattr, type, map, ... reach code, I/O or
/// attributes).
pub const BUILTINS_HARMLESS: &[&str] = &[
    "int",
    "float",
    "str",
    "bool",
    "list",
    "tuple",
    "dict",
    "range",
    "Ellipsis",
    "NotImplemented",
    "NoneType",
    "reversed",
    "memoryview",
];

/// Attribute names that, in any module, are almost surely a re-exported dangerous module
/// (`somepkg.os` is the `os` module when `somepkg` did `import os`).
const ATTRIBUTE_MODULES: &[&str] = &[
    "os",
    "sys",
    "subprocess",
    "builtins",
    "__builtins__",
    "posix",
    "nt",
    "importlib",
    "ctypes",
    "pickle",
    "marshal",
    "runpy",
    "pty",
    "socket",
    "shutil",
];

/// True when `module.name` is itself a module this table knows (`torch` + `_utils`,
/// `numpy` + `core`, `os` + `path`): a module object used as a value.
fn is_known_module(module: &str, name: &str) -> bool {
    const ALLOWED_MODULES: &[&str] = &[
        "torch._utils",
        "torch._tensor",
        "torch.tensor",
        "torch.storage",
        "torch.cuda",
        "torch.nn",
        "torch.nn.parameter",
        "torch.serialization",
        "torch.utils",
        "numpy.core",
        "numpy._core",
        "numpy.core.multiarray",
        "numpy._core.multiarray",
        "numpy.core.numeric",
        "numpy._core.numeric",
        "numpy.lib",
        "numpy.random",
    ];
    let full_len = module.len() + 1 + name.len();
    let is = |m: &str| {
        m.len() == full_len
            && m.starts_with(module)
            && m.as_bytes()[module.len()] == b'.'
            && m.ends_with(name)
    };
    ALLOWED_MODULES.iter().any(|m| is(m)) || UNSAFE_MODULES.iter().any(|(m, _)| is(m))
}

/// Module names that, as a segment of a dotted qualified name, show an attribute walk into an
/// unsafe module (`STACK_GLOBAL 'pathlib' 'os.system'`).
fn unsafe_segment(segment: &str) -> bool {
    segment == "builtins"
        || segment == "__builtins__"
        || UNSAFE_MODULES
            .iter()
            .any(|(m, _)| !m.contains('.') && *m == segment)
}

fn is_dunder(s: &str) -> bool {
    s.len() > 4 && s.starts_with("__") && s.ends_with("__")
}

fn module_matches(module: &str, prefix: &str) -> bool {
    module == prefix
        || (module.len() > prefix.len()
            && module.starts_with(prefix)
            && module.as_bytes()[prefix.len()] == b'.')
}

/// Classifies one global.
pub(crate) fn classify(module: &str, name: &str) -> Classification {
    if let Some(known) = allowed(module, name) {
        return Classification {
            verdict: Verdict::Allowed,
            reason: "known constructor",
            known: Some(known),
        };
    }
    if let Some(reason) = unsafe_reason(module, name) {
        return Classification {
            verdict: Verdict::Unsafe,
            reason,
            known: None,
        };
    }
    Classification {
        verdict: Verdict::Unknown,
        reason: "not in the allowed table",
        known: None,
    }
}

/// Why a global is unsafe, or `None` when it is not.
pub(crate) fn unsafe_reason(module: &str, name: &str) -> Option<&'static str> {
    let odd = |s: &str| s.chars().any(|c| c.is_control() || c.is_whitespace());
    if odd(module) || odd(name) {
        return Some("control characters or whitespace in a global name (scanner evasion)");
    }
    if let Some((_, _, reason)) = UNSAFE_NAMES
        .iter()
        .find(|(m, n, _)| *m == module && *n == name)
    {
        return Some(reason);
    }
    if let Some((_, reason)) = UNSAFE_MODULES
        .iter()
        .find(|(m, _)| module_matches(module, m))
    {
        return Some(reason);
    }
    if (module == "builtins" || module == "__builtin__" || module == "__builtins__")
        && !BUILTINS_HARMLESS.contains(&name)
        && !name.ends_with("Error")
        && !name.ends_with("Warning")
        && !name.ends_with("Exception")
    {
        return Some(
            "builtins beyond plain constructors evaluate code, import, do I/O or reach attributes",
        );
    }
    if name.split('.').any(is_dunder) || module.split('.').any(|s| is_dunder(s) && s != "__main__")
    {
        return Some("dunder attribute reaches interpreter internals");
    }
    if name.contains('.') && name.split('.').any(unsafe_segment) {
        return Some("dotted name walks attributes into an unsafe module");
    }
    if ATTRIBUTE_MODULES.contains(&name) {
        return Some("names a dangerous module through an attribute of another");
    }
    if is_known_module(module, name) {
        return Some("a module is never a value");
    }
    if name.is_empty() || module.is_empty() {
        return Some("empty module or name");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_matching() {
        assert_eq!(
            classify("torch._utils", "_rebuild_tensor_v2").verdict,
            Verdict::Allowed
        );
        assert_eq!(
            classify("torch", "_utils._rebuild_tensor_v2").verdict,
            Verdict::Unknown
        );
        assert_eq!(
            classify("torch._utils", "os.system").verdict,
            Verdict::Unsafe
        );
        assert_eq!(classify("pathlib", "os.system").verdict, Verdict::Unsafe);
        assert_eq!(classify("os.path", "join").verdict, Verdict::Unsafe);
        assert_eq!(classify("osx", "thing").verdict, Verdict::Unknown);
        assert_eq!(classify("builtins", "eval").verdict, Verdict::Unsafe);
        assert_eq!(classify("builtins", "getattr").verdict, Verdict::Unsafe);
        assert_eq!(classify("builtins", "ValueError").verdict, Verdict::Unknown);
        assert_eq!(classify("builtins", "set").verdict, Verdict::Allowed);
        assert_eq!(classify("torch", "load").verdict, Verdict::Unsafe);
        assert_eq!(classify("torch", "float16").verdict, Verdict::Allowed);
        assert_eq!(
            classify("torch.cuda", "FloatStorage").verdict,
            Verdict::Allowed
        );
        assert_eq!(classify("__main__", "Net").verdict, Verdict::Unknown);
        assert_eq!(classify("torch", "__builtins__").verdict, Verdict::Unsafe);
        assert_eq!(
            classify("numpy.testing._private.utils", "runstring").verdict,
            Verdict::Unsafe
        );
        assert_eq!(classify("numpy", "size").verdict, Verdict::Unknown);
        assert_eq!(classify("torch", "_utils").verdict, Verdict::Unsafe);
        assert_eq!(classify("numpy", "core").verdict, Verdict::Unsafe);
        assert_eq!(classify("os", "path").verdict, Verdict::Unsafe);
        assert_eq!(classify("mypkg", "os").verdict, Verdict::Unsafe);
        assert_eq!(classify("mypkg", "Trainer").verdict, Verdict::Unknown);
    }
}
