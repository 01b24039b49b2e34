"""Writes tar_state_dict.pt, a checkpoint in torch's pre-0.1.10 tar format, byte by byte from
the format's documented structure (no torch writes it any more), and tar_state_dict.json, the
C-contiguous little-endian bytes of every tensor in it, computed here with numpy.

    python crates/tensorseal-convert/tests/data/make_tar.py

Needs numpy; when torch is importable it also loads the file with torch.load (torch's own tar
reader, `_legacy_load.legacy_load`) and asserts that torch sees exactly these tensors. Running it
twice gives byte-identical files.

Layout (see crates/tensorseal-convert/src/torch_tar.rs): a POSIX tar with members
* sys_info: pickle({'protocol_version': 1001, 'little_endian': True, 'type_sizes': {...}});
* storages: pickle(count), per storage pickle((key, location, storage class)) + int64 numel +
  numel * itemsize bytes, then pickle([(view key, root key, offset, numel), ...]);
* tensors: pickle(count), per tensor pickle((key, storage key, tensor class)) + int32 ndim +
  4 zero bytes + ndim int64 sizes + ndim int64 strides + int64 storage offset;
* pickle: the object, naming tensors by persistent id str(key).
Every pickle is protocol 2, as torch wrote them.
"""

import collections
import io
import json
import pickle
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "tar_state_dict.pt"
SIDECAR = HERE / "tar_state_dict.json"


class Global:
    """A class named by module and name, pickled as `GLOBAL module name` without importing
    it (torch is optional here)."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class _GlobalPickler(pickle._Pickler):
    """The pure-Python pickler, told to write Global instances as GLOBAL opcodes."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = save_global_ref


def p2(obj):
    buf = io.BytesIO()
    _GlobalPickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


FLOAT, DOUBLE, LONG = (Global("torch", n) for n in ("FloatStorage", "DoubleStorage", "LongStorage"))
FLOAT_T, DOUBLE_T, LONG_T = (Global("torch", n) for n in ("FloatTensor", "DoubleTensor", "LongTensor"))

# Storages: key -> (class, numpy data). Values chosen to be exact and distinctive.
STORAGES = {
    1: (FLOAT, (np.arange(16, dtype="<f4") * 0.25 - 1.5)),
    2: (DOUBLE, np.array([np.pi, -np.e, 1e300, -0.0, 5e-324, 2.0 ** 52 + 1], dtype="<f8")),
    3: (LONG, np.array([7, -1, 2 ** 40, -(2 ** 62), 0, 123456789], dtype="<i8")),
}
# Storage views: (view key, root key, offset, numel), in elements of the root.
VIEWS = [(4, 1, 5, 4)]  # storage 4 = elements 5..9 of storage 1
VIEW_OF = {4: (1, 5, 4)}


def storage_elements(key):
    if key in VIEW_OF:
        root, offset, numel = VIEW_OF[key]
        return STORAGES[root][1][offset:offset + numel]
    return STORAGES[key][1]


# Tensors: key -> (storage key, tensor class, size, stride, offset).
TENSORS = {
    10: (1, FLOAT_T, (3, 4), (4, 1), 0),      # fc.weight: contiguous
    11: (1, FLOAT_T, (4, 3), (1, 4), 0),      # fc.weight transposed: non-contiguous
    12: (2, DOUBLE_T, (3,), (2,), 1),         # every other double: non-contiguous, offset
    13: (3, LONG_T, (2, 3), (3, 1), 0),       # int64
    14: (4, FLOAT_T, (2,), (1,), 1),          # into the storage view: elements 6, 7 of storage 1
    15: (3, LONG_T, (0,), (1,), 0),           # empty
}


def tensor_bytes(key):
    storage, _cls, size, stride, offset = TENSORS[key]
    data = storage_elements(storage)
    view = np.lib.stride_tricks.as_strided(
        data[offset:], shape=size, strides=[s * data.itemsize for s in stride])
    return np.ascontiguousarray(view).tobytes()


class Ref:
    """Pickled as a persistent id: the tensor key as a str (old torch wrote str(_cdata))."""

    def __init__(self, key):
        self.key = key


class _ObjectPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return str(obj.key) if isinstance(obj, Ref) else None


STATE = collections.OrderedDict([
    ("fc.weight", Ref(10)),
    ("fc.weight_t", Ref(11)),
    ("fc.bias", Ref(12)),
    ("steps", Ref(13)),
    ("window", Ref(14)),
    ("empty", Ref(15)),
    ("tied", Ref(10)),
])
OBJECT = {"state_dict": STATE, "epoch": 3, "names": ("a", "b")}
DTYPES = {FLOAT_T: "float32", DOUBLE_T: "float64", LONG_T: "int64"}


def members():
    storages = bytearray(p2(len(STORAGES)))
    for key, (cls, data) in STORAGES.items():
        storages += p2((key, "cpu", cls)) + struct.pack("<q", len(data)) + data.tobytes()
    storages += p2(VIEWS)
    tensors = bytearray(p2(len(TENSORS)))
    for key, (storage, cls, size, stride, offset) in TENSORS.items():
        n = len(size)
        tensors += (p2((key, storage, cls)) + struct.pack("<i", n) + b"\0" * 4
                    + struct.pack(f"<{n}q", *size) + struct.pack(f"<{n}q", *stride)
                    + struct.pack("<q", offset))
    obj = io.BytesIO()
    _ObjectPickler(obj, protocol=2).dump(OBJECT)
    sys_info = p2({"protocol_version": 1001, "little_endian": True,
                   "type_sizes": {"short": 2, "int": 4, "long": 8}})
    return [("sys_info", sys_info), ("pickle", obj.getvalue()),
            ("storages", bytes(storages)), ("tensors", bytes(tensors))]


def write_tar(path, parts):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in parts:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())


def sidecar():
    tensors = []
    for name, ref in STATE.items():
        _storage, cls, size, _stride, _offset = TENSORS[ref.key]
        tensors.append({"name": name, "dtype": DTYPES[cls], "shape": list(size),
                        "hex": tensor_bytes(ref.key).hex()})
    return {"file": OUT.name, "epoch": OBJECT["epoch"], "tensors": tensors}


def check_with_torch(expected):
    try:
        import torch
    except ImportError:
        print("torch not importable: the file was not loaded by torch", file=sys.stderr)
        return
    obj = torch.load(OUT, weights_only=False)
    sd = obj["state_dict"]
    assert obj["epoch"] == 3 and obj["names"] == ("a", "b")
    assert list(sd) == [t["name"] for t in expected["tensors"]]
    for t in expected["tensors"]:
        got = sd[t["name"]]
        assert str(got.dtype) == "torch." + t["dtype"], (t["name"], got.dtype)
        assert list(got.shape) == t["shape"], (t["name"], got.shape)
        assert got.contiguous().numpy().tobytes().hex() == t["hex"], t["name"]
    assert sd["tied"] is sd["fc.weight"]
    assert sd["fc.weight_t"].untyped_storage().data_ptr() == sd["fc.weight"].untyped_storage().data_ptr()
    print(f"torch {torch.__version__} loads {OUT.name} with the same tensors", file=sys.stderr)


def main():
    write_tar(OUT, members())
    expected = sidecar()
    SIDECAR.write_text(json.dumps(expected, indent=1) + "\n")
    check_with_torch(expected)


if __name__ == "__main__":
    main()
