"""load(save(x)) == x, bit for bit, for every kind of value, in both frameworks."""

import argparse
import collections
import dataclasses
import enum
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import tensorseal
from conftest import FIXTURES
from deep_compare import assert_same, assert_same_sharing
from gen import TORCH_DTYPES, Gen


def roundtrip(obj, tmp, keys, framework="torch", **save_args):
    priv, pub = keys[0]
    path = tmp / "x.tseal"
    tensorseal.save(obj, path, sign_with=priv, **save_args)
    return tensorseal.load(path, trust=[pub], framework=framework)


@pytest.mark.parametrize("seed", range(25))
def test_random_objects_torch(seed, tmp, keys):
    obj = Gen(seed, "torch").checkpoint()
    back = roundtrip(obj, tmp, keys)
    assert_same(back, obj)
    assert_same_sharing(back, obj)


@pytest.mark.parametrize("seed", range(25))
def test_random_objects_numpy(seed, tmp, keys):
    obj = Gen(1000 + seed, "numpy").checkpoint()
    back = roundtrip(obj, tmp, keys, framework="numpy")
    assert_same(back, obj)
    assert_same_sharing(back, obj)


@pytest.mark.parametrize("seed", range(5))
def test_random_objects_compressed(seed, tmp, keys):
    obj = Gen(2000 + seed, "torch").checkpoint()
    assert_same(roundtrip(obj, tmp, keys, compress="zstd:3"), obj)


@pytest.mark.parametrize("name", TORCH_DTYPES)
def test_every_torch_dtype_bit_exact(name, tmp, keys):
    dtype = getattr(torch, name)
    data = bytes(range(256)) * 3
    if name == "bool":
        data = bytes(b & 1 for b in data)
    t = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(-1, 4 // dtype.itemsize if dtype.itemsize < 4 else 1)
    obj = {"t": t, "0d": t.reshape(-1)[0].clone(), "empty": torch.empty(0, 2, dtype=dtype)}
    back = roundtrip(obj, tmp, keys)
    assert_same(back, obj)
    assert back["t"].dtype == dtype


def test_scalars_bit_exact(tmp, keys):
    import struct
    nan_payload = struct.unpack("<d", struct.pack("<Q", 0xFFF8DEADBEEF0001))[0]
    obj = [0.0, -0.0, float("nan"), nan_payload, float("inf"), -float("inf"), 5e-324,
           2**64, -(2**64) - 1, 2**1000, -(3**500), complex(float("nan"), -0.0), True, None]
    back = roundtrip(obj, tmp, keys)
    assert_same(back, obj)
    assert struct.pack("<d", back[3]) == struct.pack("<d", nan_payload)


def test_state_dict_of_a_module(tmp, keys):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    model[2].weight = torch.nn.Parameter(model[0].weight[:2, :3].clone())
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    obj = {"model": model.state_dict(), "optimizer": opt.state_dict(),
           "args": argparse.Namespace(lr=1e-3, betas=(0.9, 0.999), name="run"), "step": 1}
    back = roundtrip(obj, tmp, keys)
    assert_same(back, obj)
    assert type(back["model"]) is collections.OrderedDict
    assert back["model"]._metadata == obj["model"]._metadata
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    fresh.load_state_dict(back["model"])


def test_tied_tensors_share_memory(tmp, keys):
    w = torch.randn(4, 4)
    p = torch.nn.Parameter(w.clone())
    obj = {"a": w, "b": w, "alias": w.view(torch.int32), "p": p, "p2": p,
           "np": np.arange(6.0), "view_of_part": w[1:], "transposed": w.T}
    obj["np2"] = obj["np"]
    back = roundtrip(obj, tmp, keys)
    assert_same(back, obj)
    assert back["a"].data_ptr() == back["b"].data_ptr() == back["alias"].data_ptr()
    assert back["p"].data_ptr() == back["p2"].data_ptr()
    assert back["np"].__array_interface__["data"] == back["np2"].__array_interface__["data"]
    # Views of part of a tensor, or with other strides, are stored as their own bytes.
    assert back["view_of_part"].data_ptr() != back["a"].data_ptr()
    back["a"][0, 0] = 123.0
    assert back["b"][0, 0] == 123.0


def test_parameters_attributes_and_grad(tmp, keys):
    p = torch.nn.Parameter(torch.randn(2, 3))
    p.custom = {"lr_scale": 0.5}
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    g = torch.zeros(3, requires_grad=True)
    back = roundtrip({"p": p, "frozen": frozen, "g": g}, tmp, keys)
    assert type(back["p"]) is torch.nn.Parameter and back["p"].requires_grad
    assert back["p"].custom == {"lr_scale": 0.5}
    assert not back["frozen"].requires_grad
    assert type(back["g"]) is torch.Tensor and back["g"].requires_grad


def test_views_conj_neg_noncontiguous_and_byte_order(tmp, keys):
    c = torch.randn(3, 4, dtype=torch.complex64)
    obj = {"t": torch.randn(4, 5).T, "slice": torch.arange(10)[::3], "conj": c.conj(),
           "neg": torch._neg_view(torch.randn(3)), "be": np.arange(6, dtype=">i4").reshape(2, 3),
           "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
           "np_view": np.arange(20)[::4]}
    back = roundtrip(obj, tmp, keys)
    assert_same(back, obj)
    assert back["be"].dtype == np.dtype("<i4") and back["be"].tolist() == obj["be"].tolist()
    assert torch.equal(back["conj"], c.conj().resolve_conj())


def test_numpy_values_in_torch_mode(tmp, keys):
    obj = {"a": np.ones((2, 2), dtype=np.float32), "s": np.int64(-3), "b": np.bool_(True),
           "c": np.complex128(1 + 2j)}
    back = roundtrip(obj, tmp, keys)
    assert_same(back, obj)
    assert type(back["a"]) is np.ndarray


def test_numpy_mode_has_no_torch_types(tmp, keys):
    p = torch.nn.Parameter(torch.randn(2, 2))
    p.note = "x"
    obj = {"p": p, "size": torch.Size([2, 3]), "dtype": torch.float16, "dev": torch.device("cuda:1")}
    back = roundtrip(obj, tmp, keys, framework="numpy")
    assert type(back["p"]) is np.ndarray and back["p"].tobytes() == p.detach().numpy().tobytes()
    assert back["size"] == tensorseal.Typed("torch.Size", (2, 3))
    assert back["dtype"] == tensorseal.Typed("torch.dtype", "float16")
    assert back["dev"] == tensorseal.Typed("torch.device", "cuda:1")
    # Records save back as the typed values they stand for.
    again = roundtrip(back, tmp, keys)
    assert again["size"] == torch.Size([2, 3]) and again["dtype"] is torch.float16


def test_numpy_mode_refuses_bfloat16_without_ml_dtypes(tmp, keys, monkeypatch):
    # The test venv has ml_dtypes; a None entry in sys.modules makes `import ml_dtypes` fail.
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    priv, pub = keys[0]
    tensorseal.save({"ok": torch.ones(2), "layer": {"w": torch.ones(2, dtype=torch.bfloat16)}},
                    tmp / "b.tseal", sign_with=priv)
    with pytest.raises(tensorseal.UnsupportedError, match="numpy has no bfloat16.*ml_dtypes"):
        tensorseal.load(tmp / "b.tseal", trust=[pub], framework="numpy")
    with tensorseal.open(tmp / "b.tseal", trust=[pub], framework="numpy") as ckpt:
        assert ckpt.get("ok").dtype == np.float32
        with pytest.raises(tensorseal.UnsupportedError, match="bfloat16"):
            ckpt.get("layer.w")


def test_numpy_mode_uses_ml_dtypes(tmp, keys):
    t = torch.randn(3).to(torch.bfloat16)
    back = roundtrip({"w": t}, tmp, keys, framework="numpy")
    assert back["w"].dtype.name == "bfloat16"
    assert back["w"].tobytes() == t.view(torch.uint8).numpy().tobytes()


def test_deterministic_bytes(tmp, keys):
    priv, _ = keys[0]
    obj = Gen(7, "torch").checkpoint()
    tensorseal.save(obj, tmp / "a.tseal", sign_with=priv, metadata={"step": "1"})
    tensorseal.save(obj, tmp / "b.tseal", sign_with=priv, metadata={"step": "1"})
    assert (tmp / "a.tseal").read_bytes() == (tmp / "b.tseal").read_bytes()


def test_deterministic_across_hash_seeds(tmp):
    """Sets are ordered by canonical encoding, not by str hashes (randomised per process)."""
    script = (
        "import sys, tensorseal\n"
        "obj = {'s': {'alpha', 'beta', 'gamma', 'delta', ('x', 1), 3, b'z'},"
        " 'f': frozenset({'p', 'q', 'r'}), 'k': {frozenset({'a', 'b'}): 1}}\n"
        "tensorseal.save(obj, sys.argv[1])\n")
    outs = []
    for seed in ("1", "2", "3"):
        path = tmp / f"h{seed}.tseal"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env)
        outs.append(path.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_zstd_compresses_and_round_trips(tmp, keys):
    priv, pub = keys[0]
    obj = {"w": torch.zeros(1 << 20), "r": torch.randn(1000)}
    tensorseal.save(obj, tmp / "raw.tseal")
    tensorseal.save(obj, tmp / "z.tseal", sign_with=priv, compress="zstd")
    assert (tmp / "z.tseal").stat().st_size < (tmp / "raw.tseal").stat().st_size // 10
    assert_same(tensorseal.load(tmp / "z.tseal", trust=[pub]), obj)


@pytest.mark.parametrize("mode", ["auto", "planes"])
def test_plane_codec_round_trips_every_float_dtype_bit_exact(mode, tmp, keys):
    """Issue 12: the plane codec through save/load, bit-exact, on real trained weights (the lpips
    fixture) cast to every float dtype, and on the bit patterns that break careless codecs: NaN
    payloads of both signs, infinities, subnormals, negative zero, an all-equal tensor."""
    priv, pub = keys[0]
    sd = torch.load(FIXTURES / "real" / "lpips_vgg_v0.1.pth", map_location="cpu", weights_only=True)
    weights = torch.cat([v.flatten().float() for v in sd.values()])
    specials = torch.tensor([0x7FC00001, -0x3E000000, 0x7F800000, -0x00800000, 1, 0x807FFFFF - (1 << 32),
                             -(1 << 31), 0], dtype=torch.int64).to(torch.int32).view(torch.float32)
    obj = {"w": {str(dt).removeprefix("torch."): weights.to(dt)
                 for dt in (torch.float32, torch.bfloat16, torch.float16, torch.float64)},
           "f8": weights.clamp(-400, 400).to(torch.float8_e4m3fn),
           "specials": specials, "specials_bf16": specials.view(torch.int16).view(torch.bfloat16),
           "equal": torch.full((100_000,), 0.125, dtype=torch.bfloat16),
           "ints": torch.arange(100_000, dtype=torch.int64), "step": 7}
    tensorseal.save(obj, tmp / "raw.tseal")
    tensorseal.save(obj, tmp / "p.tseal", sign_with=priv, compress=mode)
    assert (tmp / "p.tseal").read_bytes()[8] == 2, "plane-coded files are format version 2"
    assert (tmp / "p.tseal").stat().st_size < (tmp / "raw.tseal").stat().st_size * 0.9
    back = tensorseal.load(tmp / "p.tseal", trust=[pub])
    assert_same(back, obj)
    for name, t in [("specials", obj["specials"]), ("specials_bf16", obj["specials_bf16"])]:
        assert torch.equal(back[name].view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32),
                           t.view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32)), name
    assert tensorseal.save(obj, tmp / "again.tseal", sign_with=priv, compress=mode) is None
    assert (tmp / "again.tseal").read_bytes() == (tmp / "p.tseal").read_bytes(), "deterministic"
    # The other read paths decode planes too: the mapping loader and one tensor read lazily.
    assert_same(tensorseal.load(tmp / "p.tseal", trust=[pub], mode="mmap"), obj)
    with tensorseal.open(tmp / "p.tseal", trust=[pub]) as ckpt:
        assert torch.equal(ckpt.get("w.bfloat16"), obj["w"]["bfloat16"])
    # A flipped bit in a plane-coded blob is caught before any tensor is handed out.
    data = bytearray((tmp / "p.tseal").read_bytes())
    data[64 + 100] ^= 0x04
    (tmp / "bad.tseal").write_bytes(bytes(data))
    with pytest.raises(tensorseal.VerificationError):
        tensorseal.load(tmp / "bad.tseal", trust=[pub])


@pytest.mark.parametrize("value, where", [
    ({"a": [1, {"b": object()}]}, r"obj\['a'\]\[1\]\['b'\]: cannot save a value of type builtins.object"),
    ({"m": torch.nn.Linear(2, 2)}, r"obj\['m'\]: cannot save a value of type torch.nn.modules.linear.Linear"),
    ({"s": torch.eye(3).to_sparse()}, r"obj\['s'\]: .*sparse"),
    ({"o": np.array([1, "x"], dtype=object)}, r"obj\['o'\]: numpy arrays of Python objects"),
    ({"q": torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.quint8)}, r"obj\['q'\]: quantized"),
    ({"d": collections.defaultdict(list)}, r"obj\['d'\]: .*collections.defaultdict"),
    ({"u": "\ud800"}, r"not valid Unicode"),
    ({"c": torch.ones(2, dtype=torch.complex32)}, r"obj\['c'\]: .*complex32 have no encoding"),
])
def test_unsupported_values_are_refused_with_their_path(value, where, tmp):
    with pytest.raises(tensorseal.UnsupportedError, match=where):
        tensorseal.save(value, tmp / "x.tseal")
    assert not list(tmp.iterdir()), "no file, not even a temporary one, is left behind"


def test_cycles_are_refused(tmp):
    a = [1]
    a.append({"x": a})
    with pytest.raises(tensorseal.UnsupportedError, match=r"obj\[1\]\['x'\]: the object contains itself"):
        tensorseal.save(a, tmp / "x.tseal")


def test_save_arguments(tmp, keys):
    with pytest.raises(tensorseal.InvalidInputError, match="compress"):
        tensorseal.save({}, tmp / "x.tseal", compress="gzip")
    with pytest.raises(tensorseal.InvalidInputError, match="step"):
        tensorseal.save({}, tmp / "x.tseal", metadata={"step": "01"})
    with pytest.raises(tensorseal.InvalidInputError, match="sign_with"):
        tensorseal.save({}, tmp / "x.tseal", sign_with=b"not a key")
    with pytest.raises(tensorseal.InvalidInputError):
        tensorseal.save({}, tmp / "missing-dir" / "x.tseal")


class _Plain:
    """A class the format does not know, for allow_objects."""

    def __init__(self, a, b):
        self.a, self.b = a, b


class _Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass
class _Point:
    x: float
    y: list


def test_allow_objects_records_unknown_classes_inert_and_load_never_imports_them(tmp, keys):
    w = torch.arange(4.0)
    obj = {"p": _Plain(3, {"w": w}), "c": _Colour.RED, "pt": _Point(1.5, [w, None]),
           "fn": len, "keep": [1, 2]}
    with pytest.raises(tensorseal.UnsupportedError, match=r"obj\['p'\].*allow_objects=True"):
        tensorseal.save(obj, tmp / "x.tseal")
    assert not (tmp / "x.tseal").exists()
    tensorseal.save(obj, tmp / "x.tseal", sign_with=keys[0][0], allow_objects=True)
    got = tensorseal.load(tmp / "x.tseal", trust=[keys[0][1]])
    p = got["p"]
    assert type(p) is tensorseal.Object
    assert (p.module, p.name) == (__name__, "_Plain")
    assert p.state["a"] == 3 and torch.equal(p.state["b"]["w"], w)
    c = got["c"]
    assert (c.module, c.name, c.args) == (__name__, "_Colour", [1])
    pt = got["pt"]
    assert (pt.name, pt.state["x"]) == ("_Point", 1.5) and torch.equal(pt.state["y"][0], w)
    assert got["fn"] == tensorseal.Global("builtins", "len")
    assert got["keep"] == [1, 2]
    # The same object gives the same bytes.
    tensorseal.save(obj, tmp / "y.tseal", sign_with=keys[0][0], allow_objects=True)
    assert (tmp / "x.tseal").read_bytes() == (tmp / "y.tseal").read_bytes()
