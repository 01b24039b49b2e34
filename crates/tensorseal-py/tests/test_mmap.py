"""mode="mmap": the same objects as copy mode, verified in place before anything is returned,
as writable zero-copy views of a private mapping that lives as long as any of them."""

import gc
import hashlib
import sys

import numpy as np
import pytest
import torch

import tensorseal
from conftest import VECTORS
from deep_compare import assert_same, assert_same_sharing, iter_arrays
from gen import Gen
from test_fixtures import benign
from test_verification import flip, footer, write

PUB = VECTORS / "test-key.pub"


def mapped(path):
    """Whether this process has `path` memory-mapped (Linux: /proc/self/maps)."""
    with open("/proc/self/maps") as f:
        return any(line.rstrip("\n").endswith(str(path)) for line in f)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps")


def load_both(path, **kw):
    return (tensorseal.load(path, mode="copy", **kw), tensorseal.load(path, mode="mmap", **kw))


@pytest.mark.parametrize("name", ["simple", "zstd", "all-kinds"])
@pytest.mark.parametrize("framework", ["torch", "numpy"])
def test_golden_vectors_equal_copy_mode(name, framework):
    copy, mm = load_both(VECTORS / f"{name}.tseal", trust=[PUB], framework=framework)
    assert_same(mm, copy)
    assert_same_sharing(mm, copy)


def test_all_kinds_tensors_view_the_mapping():
    obj = tensorseal.load(VECTORS / "all-kinds.tseal", trust=[PUB], mode="mmap")
    tensors = obj["tensors"]
    assert tensors["param"].data_ptr() == tensors["float32"].data_ptr()  # tied: one blob
    assert type(tensors["param"]) is torch.nn.Parameter and tensors["param"].requires_grad
    for t in iter_arrays(obj):
        ptr = t.data_ptr() if isinstance(t, torch.Tensor) else t.__array_interface__["data"][0]
        if t.nbytes:
            assert ptr % 64 == 0  # blobs are 64-byte aligned in the file and in the mapping


@pytest.mark.parametrize("path", benign("torch", torch_file=True) + benign("real", torch_file=True))
def test_torch_fixtures_equal_copy_mode(path, tmp, keys):
    original = torch.load(path, weights_only=False, map_location="cpu")
    tensorseal.save(original, tmp / "x.tseal", sign_with=keys[0][0])
    copy, mm = load_both(tmp / "x.tseal", trust=[keys[0][1]])
    assert_same(mm, copy)
    assert_same(mm, original)
    assert_same_sharing(mm, original)


@pytest.mark.parametrize("path", benign("numpy", torch_file=False))
def test_numpy_fixtures_equal_copy_mode(path, tmp, keys):
    loaded = np.load(path, allow_pickle=False)
    original = dict(loaded) if path.suffix == ".npz" else loaded
    tensorseal.save(original, tmp / "x.tseal", sign_with=keys[0][0])
    copy, mm = load_both(tmp / "x.tseal", trust=[keys[0][1]], framework="numpy")
    assert_same(mm, copy)
    assert_same(mm, original)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("compress", [None, "zstd:3"])
def test_random_objects_equal_copy_mode(seed, compress, tmp, keys):
    obj = Gen(3000 + seed, "torch").checkpoint()
    tensorseal.save(obj, tmp / "x.tseal", sign_with=keys[0][0], compress=compress)
    copy, mm = load_both(tmp / "x.tseal", trust=[keys[0][1]])
    assert_same(mm, copy)
    assert_same(mm, obj)
    assert_same_sharing(mm, obj)


def test_tampered_blob_fails_before_anything_is_returned(tmp, keys):
    p = write(tmp / "x.tseal", keys)
    flip(p, 64 + 10)  # inside blob 0, tensor w
    with pytest.raises(tensorseal.VerificationError, match="tensor w") as e:
        tensorseal.load(p, trust=[keys[0][1]], mode="mmap")
    assert e.value.kind == "digest_mismatch"
    with pytest.raises(tensorseal.VerificationError, match="does not match its SHA-256"):
        tensorseal.load(p, verify=False, mode="mmap")


def test_tampered_compressed_blob_fails(tmp, keys):
    obj = {"z": torch.zeros(4096), "r": torch.randn(64)}
    p = tmp / "x.tseal"
    tensorseal.save(obj, p, sign_with=keys[0][0], compress="zstd")
    assert_same(tensorseal.load(p, trust=[keys[0][1]], mode="mmap"), obj)
    flip(p, 64 + 3)  # inside the first (compressed) blob
    with pytest.raises(tensorseal.VerificationError) as e:
        tensorseal.load(p, trust=[keys[0][1]], mode="mmap")
    assert e.value.kind in ("digest_mismatch", "malformed")


def test_every_single_byte_flip_is_detected(tmp, keys):
    p = write(tmp / "x.tseal", keys, obj={"w": torch.ones(2), "s": "text"})
    original = p.read_bytes()
    for i in range(len(original)):
        data = bytearray(original)
        data[i] ^= 0x80
        p.write_bytes(bytes(data))
        with pytest.raises(tensorseal.VerificationError):
            tensorseal.load(p, trust=[keys[0][1]], mode="mmap")


def test_signature_manifest_and_padding_checked_before_anything_is_returned(tmp, keys):
    p = write(tmp / "x.tseal", keys)
    load = lambda: tensorseal.load(p, trust=[keys[0][1]], mode="mmap")  # noqa: E731
    original = p.read_bytes()
    _, mo, ml, sl = footer(p)
    for offset, kind in [(mo + ml + sl - 1, "bad_signature"), (mo + ml // 2, "malformed")]:
        p.write_bytes(original)
        flip(p, offset)
        with pytest.raises(tensorseal.VerificationError) as e:
            load()
        assert e.value.kind == kind
    p.write_bytes(original)
    with pytest.raises(tensorseal.VerificationError) as e:
        tensorseal.load(p, trust=[keys[1][1]], mode="mmap")
    assert e.value.kind == "untrusted"
    q = write(tmp / "y.tseal", keys, obj={"w": torch.ones(3)})  # 12 bytes, then zero padding
    flip(q, 64 + 20)
    with pytest.raises(tensorseal.VerificationError, match="padding"):
        tensorseal.load(q, trust=[keys[0][1]], mode="mmap")


@pytest.mark.parametrize("framework", ["torch", "numpy"])
def test_views_are_writable_and_writes_stay_private(framework, tmp, keys):
    obj = {"w": torch.arange(4096, dtype=torch.float32), "b": torch.ones(3)}
    obj["tied"] = obj["w"]
    p = write(tmp / "x.tseal", keys, obj=obj)
    before = hashlib.sha256(p.read_bytes()).hexdigest()
    pub = keys[0][1]
    a = tensorseal.load(p, trust=[pub], framework=framework, mode="mmap")
    other = tensorseal.load(p, trust=[pub], framework=framework, mode="mmap")
    if framework == "numpy":
        assert a["w"].flags.writeable
    a["w"][0] = -1.0
    a["w"][4095] = -2.0
    a["b"][:] = 7
    assert float(a["tied"][0]) == -1.0  # tied weights share memory, as in copy mode
    assert float(a["w"][4095]) == -2.0 and float(a["b"][2]) == 7
    assert hashlib.sha256(p.read_bytes()).hexdigest() == before  # the file never changes
    assert float(other["w"][0]) == 0.0  # nor does another mapping of it
    again = tensorseal.load(p, trust=[pub], framework=framework, mode="mmap")
    assert float(again["w"][0]) == 0.0 and float(again["b"][0]) == 1.0


@linux_only
def test_mapping_lives_while_any_tensor_does(tmp, keys):
    p = write(tmp / "lifetime.tseal", keys,
              obj={"w": torch.arange(64, dtype=torch.float32), "b": torch.ones(3), "n": np.arange(4)})
    obj = tensorseal.load(p, trust=[keys[0][1]], mode="mmap")
    assert mapped(p)  # the load call returned; the mapping did not go with it
    b, n = obj["b"], obj["n"]
    del obj
    gc.collect()
    assert mapped(p)
    assert torch.equal(b, torch.ones(3)) and n.tolist() == [0, 1, 2, 3]
    b.add_(1)
    del b
    gc.collect()
    assert mapped(p)  # the numpy array still uses it
    assert n.sum() == 6
    del n
    gc.collect()
    assert not mapped(p)  # unmapped with the last view: nothing leaks


@linux_only
def test_lazy_mmap_handle_outlives_close(tmp, keys):
    p = write(tmp / "lazy.tseal", keys)
    with tensorseal.open(p, trust=[keys[0][1]], mode="mmap") as ckpt:
        assert ckpt.mode == "mmap" and ckpt.names() == ["w", "b"]
        assert not mapped(p)  # mapped when a tensor is first used
        w = ckpt.get("w")
        assert mapped(p)
        w2 = ckpt["w"]
        assert w.data_ptr() == w2.data_ptr()  # one mapping: two gets share memory
    with pytest.raises(tensorseal.InvalidInputError, match="closed"):
        ckpt.get("b")
    del ckpt, w2
    gc.collect()
    assert mapped(p) and torch.equal(w, torch.arange(64, dtype=torch.float32))
    del w
    gc.collect()
    assert not mapped(p)


def test_lazy_mmap_verifies_each_tensor_when_first_used(tmp, keys):
    p = write(tmp / "x.tseal", keys)
    flip(p, 64 + 10)  # tensor w (blob 0)
    with tensorseal.open(p, trust=[keys[0][1]], mode="mmap") as ckpt:
        assert ckpt.names() == ["w", "b"]
        assert torch.equal(ckpt.get("b"), torch.ones(3))
        for _ in range(2):  # a failed blob stays unverified: every attempt fails
            with pytest.raises(tensorseal.VerificationError, match="tensor w"):
                ckpt.get("w")
        with pytest.raises(tensorseal.VerificationError):
            ckpt.load()


@linux_only
def test_file_changed_after_verification_shows_through(tmp, keys):
    """The documented exposure of mmap mode (and of every mapped loader): pages not written
    are the page cache, so an in-place rewrite of the file after verification is seen,
    unverified. Copy mode is immune."""
    p = write(tmp / "x.tseal", keys)
    copy, mm = load_both(p, trust=[keys[0][1]])
    with open(p, "r+b") as f:  # same inode, rewritten in place
        f.seek(64)
        f.write(b"\xff\xff\xff\xff")
    assert torch.equal(copy["w"], torch.arange(64, dtype=torch.float32))
    assert not torch.equal(mm["w"], copy["w"])


def test_mode_is_checked(tmp, keys):
    p = write(tmp / "x.tseal", keys)
    for bad in ("map", "MMAP", 1):
        with pytest.raises(tensorseal.InvalidInputError, match="mode"):
            tensorseal.load(p, trust=[keys[0][1]], mode=bad)
        with pytest.raises(tensorseal.InvalidInputError, match="mode"):
            tensorseal.open(p, trust=[keys[0][1]], mode=bad)
    assert tensorseal.open(p, trust=[keys[0][1]]).mode == "copy"
    assert tensorseal.open(p, trust=[keys[0][1]], mode=None).mode == "copy"  # the default


def test_empty_and_structure_only_files(tmp, keys):
    assert tensorseal.load(VECTORS / "empty.tseal", verify=False, mode="mmap") is None
    tensorseal.save({"e": torch.empty(0, 3), "x": 1}, tmp / "e.tseal", sign_with=keys[0][0])
    back = tensorseal.load(tmp / "e.tseal", trust=[keys[0][1]], mode="mmap")
    assert back["e"].shape == (0, 3) and back["x"] == 1
