"""Writes the CPython fixtures of tensorseal-pickle: real pickles and their expected trees.

    python3 tests/data/generate.py            # from crates/tensorseal-pickle
    /path/to/venv-with-numpy/bin/python tests/data/generate.py   # also the numpy fixtures

For every case in CASES and every protocol 0-5 it writes cpython/<case>.p<N>.pkl with
pickle.dumps, and cpython/<case>.expected.json with the tree rendering (tests/fixtures/render.py) of
pickle.loads of those bytes, i.e. what CPython itself reads back; random_NNN.pN.pkl are random
nested values (fixed seed) with shared references, one protocol each. The hand-built opcode
fixtures in OPCODE_CASES are assembled byte by byte (to reach opcodes CPython's pickler never
writes: DICT/LIST/TUPLE with MARK, POP, POP_MARK, DUP, text GET/PUT, BINBYTES8, LONG4 of a
small int, STRING escapes, INST, OBJ, ...), then loaded by CPython for their expected tree.
Nothing here loads anything but these files. Running it twice gives the same bytes: sets and
frozensets of strings iterate in an order that depends on the hash seed, so the script re-runs
itself under PYTHONHASHSEED=0 when started with any other seed.
"""

import argparse
import collections
import json
import os
import pickle
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_tree_render():
    # The converter's tree rendering, shared with the fixture corpus. Loaded by path: putting
    # tests/fixtures on sys.path would let its numpy/ folder shadow the numpy package.
    import importlib.util

    path = os.path.join(HERE, "..", "..", "..", "..", "tests", "fixtures", "render.py")
    spec = importlib.util.spec_from_file_location("tree_render", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tree_render = _load_tree_render()

try:
    import numpy as np
except ImportError:
    np = None


def ordered_with_metadata():
    od = collections.OrderedDict([("layer.weight", 1), ("layer.bias", 2)])
    od._metadata = collections.OrderedDict([("", {"version": 1}), ("layer", {"version": 2})])
    return od


def shared():
    inner = [1, 2]
    d = {"k": inner}
    return [inner, inner, d, d, (inner,)]


def deep(n):
    v = []
    for _ in range(n):
        v = [v]
    return v


def many_memo():
    names = ["name%d" % i for i in range(300)]
    return names + names


CASES = {
    "none": None,
    "bools": [True, False],
    "small_ints": [0, 1, -1, 255, 256, 65535, 65536, -129, 2**31 - 1, -(2**31), 2**31,
                   -(2**31) - 1, 2**63 - 1, -(2**63), 2**64 - 1],
    "big_ints": [2**64, -(2**64), 2**70, -(2**70) + 1, 10**100, -(10**100),
                 2**2100, -(2**2047) - 12345],
    "floats": [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, float("inf"), float("-inf"),
               float("nan"), 0.1, 1e16, -1e-300],
    "strings": ["", "a", "h\u00e9llo", "\u20ac", "\U0001f600 non-BMP", "tab\tnew\nline\\back",
                "x" * 300, "\x00\x7f\x80\xff", "quote\"'", "\u043a\u043b\u044e\u0447"],
    "bytes": [b"", b"\x00\xff", bytes(range(256)), b"y" * 300],
    "bytearray": [bytearray(b"abc\x00\xff"), bytearray()],
    "nested": {"a": [1, (2, 3), {"b": None}], "c": ((),), "d": [[[]]], "e": {"f": {"g": "h"}}},
    "shared": shared(),
    "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((1,), [2])],
    "int_keys": {0: "a", 1: "b", -5: "c", 2**70: "d", 2**40: "e"},
    "tuple_keys": {(1, 2): "x", ("a", None): "y", (): "z", ((1,), 2): "w"},
    "mixed_keys": {None: 1, True: 2, 1.5: 3, b"k": 4, "k": 5, frozenset([1]): 6, -0.5: 7},
    "sets": [set(), {1, 2, 3}, frozenset(), frozenset({"a"}), {(1, 2), "s", None}],
    "complex": [1 + 2j, complex(0.0, -0.0), complex(float("inf"), 1.0)],
    "slices": [slice(1, 10, 2), slice(None), slice(None, 5)],
    "ordered_dict": collections.OrderedDict([("b", 1), ("a", [2])]),
    "state_dict_metadata": ordered_with_metadata(),
    "counter": collections.Counter("hello"),
    "namespace": argparse.Namespace(lr=0.1, name="x", layers=[1, 2]),
    "many_memo": many_memo(),
    "deep": deep(100),
    "optimizer_like": {"state": {0: {"step": 1, "exp_avg": [0.1]}, 1: {}},
                       "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08,
                                         "weight_decay": 0, "amsgrad": False,
                                         "foreach": None, "params": [0, 1]}]},
}


def op_cases():
    """Hand-assembled pickles: (name, bytes, load kwargs)."""
    cases = []

    def add(name, data, **kw):
        cases.append((name, data, kw))

    add("op_mark_containers", b"((I1\n(I2\nI3\ntl(S'k'\nI4\ndt.")
    add("op_text_ints", b"(I00\nI01\nI-7\nI12345678901\nL123456789012345678901234567890L\nL-5\nt.")
    add("op_text_floats", b"(F1.5\nF-0.0\nFinf\nF-inf\nFnan\nF1e+300\nt.")
    add("op_string_escapes", b"(S'a\\nb\\t\\\\\\x41\\101\\''\nS\"dq\"\nt.")
    add("op_unicode_escapes", b"(V\xe9\\u20ac\\U0001f600\\u005c\\u000a\nVplain\nt.")
    add("op_py2_binstring", b"\x80\x02(U\x03abcT\x02\x00\x00\x00dfK\x01t.")
    add("op_pop_dup", b"(K\x01K\x02K\x0902K\x03t.")
    add("op_pop_mark", b"(K\x01(K\x02K\x031K\x04t.")
    add("op_pop_removes_mark", b"(K\x01(0K\x02t.")
    add("op_text_memo", b"((lp0\nI1\nag0\ntp1\n.")
    add("op_long_memo", b"\x80\x02(]r\x00\x00\x01\x00K\x07a0j\x00\x00\x01\x00j\x00\x00\x01\x00t.")
    add("op_memoize", b"\x80\x04(\x8c\x01a\x94\x8c\x01b\x94h\x00h\x01t.")
    add("op_sparse_memo", b"\x80\x02K\x05r\x00\x00\x10\x000j\x00\x00\x10\x00.")
    add("op_long4_small", b"\x80\x02\x8b\x02\x00\x00\x00\xff\x7f\x8b\x00\x00\x00\x00\x86.")
    add("op_long1_sign", b"\x80\x02(\x8a\x01\xff\x8a\x01\x80\x8a\x02\x80\x00\x8a\x00t.")
    add("op_binbytes8", b"\x80\x04\x8e\x03\x00\x00\x00\x00\x00\x00\x00abc\x8d\x02\x00\x00\x00\x00\x00\x00\x00hi\x86.")
    add("op_bytearray8", b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00xy.")
    add("op_readonly_bytes", b"\x80\x05C\x02xy\x98.")
    add("op_frozenset_additems", b"\x80\x04\x8f(K\x01K\x02K\x01\x90(K\x03\x91\x86.")
    add("op_dict_duplicate_keys", b"(K\x01K\x02K\x01K\x03\x88K\x04G?\xf0\x00\x00\x00\x00\x00\x00K\x05d.")
    add("op_setitems_zero_keys", b"}(K\x00U\x01aG\x80\x00\x00\x00\x00\x00\x00\x00U\x01b\x89U\x01cu.")
    add("op_frame", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01K\x02\x86.")
    add("op_inst_ordered_dict", b"(icollections\nOrderedDict\n(S'a'\nI1\nu.")
    add("op_obj_ordered_dict", b"\x80\x01(ccollections\nOrderedDict\no.")
    add("op_proto_late", b"(K\x01\x80\x02\x88t.")
    add("op_global_py2_names", b"\x80\x02c__builtin__\nset\n]K\x01a\x85R.")
    add("op_reconstructor_namespace",
        b"ccopy_reg\n_reconstructor\n(cargparse\nNamespace\nc__builtin__\nobject\nNtR(dS'lr'\nF0.5\nsb.")
    add("op_codecs_bytes", b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00\xc3\xa9aX\x06\x00\x00\x00latin1\x86R.")
    add("op_complex_slice",
        b"\x80\x02c__builtin__\ncomplex\nG?\xf8\x00\x00\x00\x00\x00\x00K\x02\x86Rc__builtin__\nslice\nK\x01N\x86R\x86.")
    return cases


def random_value(rng, depth=0, pool=None):
    """A random value of the types the VM reads, with shared references (reused objects)."""
    pool = pool if pool is not None else []
    if pool and rng.random() < 0.08:
        return rng.choice(pool)
    leaves = [
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: rng.randint(-300, 300),
        lambda: rng.randint(-(2**70), 2**70),
        lambda: rng.choice([0.0, -0.0, 1.5, -1e300, 5e-324, float("inf"), float("-inf"), float("nan"), rng.random()]),
        lambda: "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0xA0, 0x2FF), rng.randint(0x1F300, 0x1F6FF)])) for _ in range(rng.randint(0, 8))),
        lambda: bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 8))),
        lambda: complex(rng.random(), -rng.random()),
    ]
    if depth >= 4 or rng.random() < 0.4:
        return rng.choice(leaves)()
    kind = rng.randint(0, 7)
    n = rng.randint(0, 5)
    if kind == 0:
        v = [random_value(rng, depth + 1, pool) for _ in range(n)]
    elif kind == 1:
        v = tuple(random_value(rng, depth + 1, pool) for _ in range(n))
    elif kind == 2:
        v = {random_key(rng): random_value(rng, depth + 1, pool) for _ in range(n)}
    elif kind == 3:
        v = {random_key(rng) for _ in range(n)}
    elif kind == 4:
        v = frozenset(random_key(rng) for _ in range(n))
    elif kind == 5:
        v = collections.OrderedDict((random_key(rng), random_value(rng, depth + 1, pool)) for _ in range(n))
    elif kind == 6:
        v = bytearray(rng.randint(0, 255) for _ in range(n))
    else:
        v = collections.Counter({random_key(rng): rng.randint(-3, 9) for _ in range(n)})
    pool.append(v)
    return v


def random_key(rng):
    return rng.choice([
        lambda: rng.randint(-50, 50),
        lambda: "k%d" % rng.randint(0, 20),
        lambda: (rng.randint(0, 3), "t"),
        lambda: None,
        lambda: rng.random() < 0.5,
        lambda: 2.5,
        lambda: b"b%d" % rng.randint(0, 5),
    ])()


def random_cases(out, count=150):
    import random
    rng = random.Random(20261122)
    for i in range(count):
        value = random_value(rng)
        proto = i % 6
        data = pickle.dumps(value, protocol=proto)
        name = f"random_{i:03d}.p{proto}"
        with open(os.path.join(out, f"{name}.pkl"), "wb") as f:
            f.write(data)
        write_json(os.path.join(out, f"random_{i:03d}.expected.json"),
                   {"tree": tree_render.render(pickle.loads(data))})


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        f.write(tree_render.dumps(value))


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Sets of strings pickle in hash order: fix the seed so fixtures do not churn.
        env = dict(os.environ, PYTHONHASHSEED="0")
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "cpython"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, value in CASES.items():
        tree = None
        for proto in range(6):
            data = pickle.dumps(value, protocol=proto)
            with open(os.path.join(args.out, f"{name}.p{proto}.pkl"), "wb") as f:
                f.write(data)
            t = tree_render.render(pickle.loads(data))
            if tree is None:
                tree = t
            assert json.dumps(t) == json.dumps(tree) or name in ("sets", "mixed_keys"), name
        write_json(os.path.join(args.out, f"{name}.expected.json"), {"tree": tree})
    for name, data, kw in op_cases():
        with open(os.path.join(args.out, f"{name}.pkl"), "wb") as f:
            f.write(data)
        tree = tree_render.render(pickle.loads(data, **kw))
        write_json(os.path.join(args.out, f"{name}.expected.json"), {"tree": tree})
    random_cases(args.out)
    if np is not None:
        numpy_cases(args.out)
    else:
        print("numpy not importable: numpy fixtures left as committed", file=sys.stderr)


def numpy_cases(out):
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    values = {
        "np_c_f32": a,
        "np_fortran_i8": np.asfortranarray(np.arange(6, dtype="<i8").reshape(2, 3)),
        "np_big_endian_i4": np.arange(4, dtype=">i4"),
        "np_transposed_f8": np.arange(24.0).reshape(2, 3, 4).transpose(1, 0, 2),
        "np_strided_view": np.arange(10, dtype="<i2")[::2],
        "np_0d_f2": np.array(1.5, dtype="<f2"),
        "np_empty_u2": np.zeros((0, 2), dtype="<u2"),
        "np_bool": np.array([True, False, True]),
        "np_c16": np.array([1 + 2j, -3j], dtype="<c16"),
        "np_scalars": [np.float64(1.25), np.float32(-0.5), np.int32(7), np.uint64(2**64 - 1),
                       np.bool_(False), np.float16(2.0)],
    }
    for name, value in values.items():
        tree = None
        for proto in (2, 4, 5):
            data = pickle.dumps(value, protocol=proto)
            with open(os.path.join(out, f"{name}.p{proto}.pkl"), "wb") as f:
                f.write(data)
            t = tree_render.render(pickle.loads(data))
            tree = tree if tree is not None else t
            assert json.dumps(t) == json.dumps(tree), name
        write_json(os.path.join(out, f"{name}.expected.json"), {"tree": tree})
    # Refused dtypes: only the bytes are kept; the test expects an "unsupported" node.
    for name, value in {"np_object_array": np.array([1, "a"], dtype=object),
                        "np_unicode_array": np.array(["ab", "c"]),
                        "np_structured": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")])}.items():
        for proto in (2, 5):
            with open(os.path.join(out, f"{name}.p{proto}.pkl"), "wb") as f:
                f.write(pickle.dumps(value, protocol=proto))
        write_json(os.path.join(out, f"{name}.expected.json"), {"unsupported": True})


if __name__ == "__main__":
    main()
