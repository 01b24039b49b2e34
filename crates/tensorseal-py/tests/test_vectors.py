"""The golden files in spec/vectors load and match their description (spec/vectors/README.md)."""

import argparse
import collections
import math
import struct

import numpy as np
import pytest
import torch

import tensorseal
from conftest import VECTORS
from gen import TORCH_DTYPES

PUB = VECTORS / "test-key.pub"
TEST_KEY_ID = "a050837d85070582ccf7394b0988847cc312cb88259b894899f6f239cf1791a5"


def test_test_key_id():
    assert tensorseal.key_id(PUB) == TEST_KEY_ID
    assert tensorseal.key_id(VECTORS / "test-key.key") == TEST_KEY_ID


def test_simple():
    obj = tensorseal.load(VECTORS / "simple.tseal", trust=[PUB], expect={"run_id": "vectors"},
                          min_step=42)
    assert list(obj) == ["weight"]
    w = obj["weight"]
    assert w.dtype == torch.float32 and w.shape == (2, 3)
    assert w.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    with tensorseal.open(VECTORS / "simple.tseal", trust=[PUB]) as ckpt:
        assert ckpt.metadata["run_id"] == "vectors" and ckpt.metadata["step"] == "42"
        assert "producer" in ckpt.metadata
        assert ckpt.manifest_sha256 == "552d12110bef33fb69977b494240d12f17e0ada5902d1df3bb143e2901b9dcab"
    with pytest.raises(tensorseal.VerificationError):
        tensorseal.load(VECTORS / "simple.tseal", trust=[PUB], min_step=43)


def test_empty_is_unsigned():
    with pytest.raises(tensorseal.VerificationError) as e:
        tensorseal.load(VECTORS / "empty.tseal", trust=[PUB])
    assert e.value.kind == "unsigned"
    assert tensorseal.load(VECTORS / "empty.tseal", verify=False) is None
    assert tensorseal.verify(VECTORS / "empty.tseal", digests_only=True).manifest_sha256 == \
        "86647aa0f7d31f9000f4e78afaab093fca076c04e191a42719188844c503ae56"


def test_zstd_two_signers():
    obj = tensorseal.load(VECTORS / "zstd.tseal", trust=[PUB])
    expected = torch.tensor([(i % 64) * 0.25 for i in range(4096)], dtype=torch.float32).reshape(64, 64)
    assert torch.equal(obj["w"], expected)
    r = tensorseal.verify(VECTORS / "zstd.tseal", trust=[PUB])
    assert [s.trusted for s in r.signers] == [True, False]
    assert r.signers[0].key_id == TEST_KEY_ID


def pattern(size, index):
    return bytes((i * 31 + index) % 256 for i in range(size))


@pytest.mark.parametrize("framework", ["torch", "numpy"])
def test_all_kinds(framework):
    if framework == "numpy":
        try:
            import ml_dtypes  # noqa: F401
        except ImportError:
            with pytest.raises(tensorseal.UnsupportedError, match="bfloat16"):
                tensorseal.load(VECTORS / "all-kinds.tseal", trust=[PUB], framework="numpy")
            return
    obj = tensorseal.load(VECTORS / "all-kinds.tseal", trust=[PUB], framework=framework)
    tensors = obj["tensors"]
    for i, name in enumerate(TORCH_DTYPES):
        t = tensors[name]
        assert tuple(t.shape) == (2, 3)
        data = (t.reshape(-1).view(torch.uint8).numpy() if framework == "torch" else t).tobytes()
        expected = pattern(len(data), i)
        if name == "bool":
            expected = bytes(b & 1 for b in expected)  # spec §2: bool bytes are 0 or 1
        assert data == expected, name
        if framework == "torch":
            assert t.dtype == getattr(torch, name)
    assert tuple(tensors["empty"].shape) == (0, 4)
    param = tensors["param"]
    if framework == "torch":
        assert type(param) is torch.nn.Parameter and param.requires_grad
        assert param.note == "tied to float32"
        assert param.data_ptr() == tensors["float32"].data_ptr()  # one blob, shared memory

    s = obj["scalars"]
    assert s[:8] == [None, True, False, 0, -1, 2**64 - 1, 2**70, -(2**100)]
    assert [type(x) for x in s[:3]] == [type(None), bool, bool]
    assert s[8] == 0.5 and struct.pack("<d", s[9]) == struct.pack("<d", -0.0)
    assert s[10] == math.inf and s[11] == -math.inf and math.isnan(s[12]) and s[13] == 0.1
    assert s[14:] == ["text ✓ \U0001F600", b"\x00\x01\x02\xff", bytearray(b"\x09\x08"), 1.5 - 2j]
    assert type(s[16]) is bytearray

    c = obj["containers"]
    assert list(c.items()) == [(0, "int key"), ((1, "a"), "tuple key"), (None, "None key"),
                               ("set", {1, 3}), ("frozenset", frozenset({"x"})), ("tuple", ())]
    assert type(c["frozenset"]) is frozenset

    od, counter, ns, size, dtype, device, scalar, sl = obj["typed"]
    assert type(od) is collections.OrderedDict and od == {"k": 1}
    assert od._metadata == {"": {"version": 1}}
    assert type(counter) is collections.Counter and counter["a"] == 2
    assert type(ns) is argparse.Namespace and vars(ns) == {"lr": 0.001, "epochs": 3}
    assert type(scalar) is np.float64 and scalar == 2.5
    assert sl == slice(1, None, 2)
    if framework == "torch":
        assert size == torch.Size([2, 3]) and type(size) is torch.Size
        assert dtype is torch.bfloat16 and device == torch.device("cuda:0")
    else:
        assert size == tensorseal.Typed("torch.Size", (2, 3))

    path, config, factory_dict, history, net = obj["inert"]
    assert path == tensorseal.Object("pathlib", "PurePosixPath", ["/", "data"])
    assert not path.has_state
    assert config == tensorseal.Object("mylib.config", "Config", [], {"seed": 1}, {"depth": 12})
    assert net == tensorseal.Global("mylib.model", "Net")
    assert factory_dict == tensorseal.Object(
        "collections", "defaultdict", [tensorseal.Global("builtins", "list")],
        dictitems={"a": [1]})
    assert history == tensorseal.Object("mylib.data", "History", listitems=[0.25, 0.125])


def test_all_kinds_round_trips_to_the_same_manifest(tmp):
    """Saving what was loaded writes the same tree: the manifest (blob table aside) is equal."""
    from deep_compare import assert_same

    obj = tensorseal.load(VECTORS / "all-kinds.tseal", trust=[PUB])
    tensorseal.save(obj, tmp / "again.tseal", sign_with=VECTORS / "test-key.key")
    assert_same(tensorseal.load(tmp / "again.tseal", trust=[PUB]), obj)


# An independent reading of spec §4.4-4.5, written from the spec's text alone (bit by bit, no
# speed): if it decodes the vectors to what the library loads, the spec says what the code does.
SPEC_R, SPEC_B = 12, 1 << 17


def spec_tans_decode(body, m):
    L = 1 << SPEC_R
    out, at = [], 0
    for start in range(0, m, SPEC_B):
        b = min(SPEC_B, m - start)
        last = body[at]
        at += 1
        counts = [0] * 256
        for s in range(last + 1):
            c = body[at]
            if c < 0x80:
                at += 1
            else:
                c = (c & 0x7F) | (body[at + 1] << 7)
                at += 2
            counts[s] = c
        assert sum(counts) == L and counts[last] > 0
        lengths = [int.from_bytes(body[at + 4 * k:at + 4 * k + 4], "little") for k in range(4)]
        at += 16
        sym, p = [0] * L, 0
        for s in range(256):
            for _ in range(counts[s]):
                sym[p] = s
                p = (p + L // 2 + L // 8 + 3) % L
        x, nb, base = list(counts), [0] * L, [0] * L
        for u in range(L):
            s = sym[u]
            nb[u] = SPEC_R - (x[s].bit_length() - 1)
            base[u] = x[s] * 2 ** nb[u] - L
            x[s] += 1
        q = -(-b // 4)
        for k in range(4):
            data = body[at:at + lengths[k]]
            at += lengths[k]
            n = max(0, min(b, (k + 1) * q) - k * q)
            if n == 0:
                assert not data
                continue
            bits = "".join(format(byte, "08b")[::-1] for byte in data)
            pos = 0

            def read(c):
                nonlocal pos
                assert pos + c <= len(bits), "stream overrun"
                v = int(bits[pos:pos + c][::-1] or "0", 2)
                pos += c
                return v

            state = read(SPEC_R)
            for _ in range(n):
                out.append(sym[state])
                state = base[state] + read(nb[state])
            assert state == 0 and -(-pos // 8) == len(data) and "1" not in bits[pos:]
    assert at == len(body)
    return bytes(out)


def test_spec_tans_vector_decodes_by_the_spec_text():
    body = bytes.fromhex("07000000000080180080080200000002000000020000000200000073"
                         "0c6e05730c6e05")
    assert spec_tans_decode(body, 8) == bytes([5, 5, 5, 7] * 2)


def test_planes_vector_decodes_by_the_spec_text():
    """The bf16 blob of planes.tseal (the first, at offset 64): layout 0x82, a tANS exponent
    plane and a raw sign/mantissa plane, rebuilt by §4.4's bit fields."""
    data = (VECTORS / "planes.tseal").read_bytes()
    assert data[8] == 2, "plane-coded files are format version 2"
    frame = data[64:]
    assert frame[0] == 0x82
    m = 128 * 128
    heads = [(frame[1 + 5 * j], int.from_bytes(frame[2 + 5 * j:6 + 5 * j], "little")) for j in range(2)]
    assert [h[0] for h in heads] == [2, 0], "exponent tANS-coded, sign and mantissa raw"
    at = 11
    exponent = spec_tans_decode(frame[at:at + heads[0][1]], m)
    at += heads[0][1]
    rest = frame[at:at + m]
    words = [((s >> 7) << 15) | (x << 7) | (s & 0x7F) for x, s in zip(exponent, rest)]
    want = torch.tensor(words, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).reshape(128, 128)
    got = tensorseal.load(VECTORS / "planes.tseal", trust=[PUB])
    assert torch.equal(got["bf16"].view(torch.int16), want.view(torch.int16))
    assert got["f32"].shape == (64, 64) and got["f32"].dtype == torch.float32
