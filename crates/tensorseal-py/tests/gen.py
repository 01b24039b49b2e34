"""Seeded generator of random nested checkpoints covering every kind tensorseal stores."""

from __future__ import annotations

import argparse
import collections
import random
import struct

import tensorseal

TORCH_DTYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
                "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
                "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
                "float8_e8m0fnu"]
NUMPY_DTYPES = ["?", "u1", "<u2", "<u4", "<u8", "i1", "<i2", "<i4", "<i8", "<f2", "<f4", "<f8",
                "<c8", "<c16"]
SPECIAL_FLOATS = [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 5e-324, 1.7976931348623157e308,
                  struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000001))[0],  # signalling NaN
                  struct.unpack("<d", struct.pack("<Q", 0xFFF8DEADBEEF0001))[0]]  # payload NaN


class Gen:
    def __init__(self, seed, framework):
        self.r = random.Random(seed)
        self.framework = framework
        self.arrays = []  # made so far, for ties

    # scalars -------------------------------------------------------------------------------
    def float(self):
        r = self.r
        return r.choice(SPECIAL_FLOATS) if r.random() < 0.4 else r.uniform(-1e6, 1e6)

    def int(self):
        r = self.r
        return r.choice([0, 1, -1, 2**63 - 1, -(2**63), 2**64 - 1, -(2**64), 2**64, -(2**64) - 1,
                         r.randrange(-1000, 1000), (-1) ** r.randrange(2) * 2 ** r.randrange(65, 400)
                         + r.randrange(1000)])

    def str(self):
        return "".join(self.r.choice("ab.c_ ✓é\u00e9\U0001f600\x00") for _ in range(self.r.randrange(6)))

    def key(self, depth=0):
        r = self.r
        k = r.randrange(8 if depth < 2 else 5)
        if k == 0:
            return self.str()
        if k == 1:
            return self.int()
        if k == 2:
            return r.choice([None, True, False])
        if k == 3:
            return r.choice([0.5, -0.0, float("inf"), 3.25])  # no NaN: NaN keys never compare equal
        if k == 4:
            return self.r.randbytes(r.randrange(4))
        if k == 5:
            return tuple(self.key(depth + 1) for _ in range(r.randrange(3)))
        if k == 6:
            return frozenset(self.key(depth + 1) for _ in range(r.randrange(3)))
        return complex(r.choice([0.0, 1.5]), -2.0)

    def scalar(self):
        r = self.r
        k = r.randrange(10)
        return [lambda: None, lambda: r.random() < 0.5, self.int, self.float, self.str,
                lambda: r.randbytes(r.randrange(5)), lambda: bytearray(r.randbytes(3)),
                lambda: complex(self.float(), self.float()), self.numpy_scalar,
                lambda: slice(self.int(), None, r.choice([None, 2]))][k]()

    def numpy_scalar(self):
        import numpy as np
        dt = np.dtype(self.r.choice(NUMPY_DTYPES))
        data = self.r.randbytes(dt.itemsize)
        if dt.kind == "b":
            data = bytes([data[0] & 1])
        return np.frombuffer(data, dtype=dt)[0]

    # arrays --------------------------------------------------------------------------------
    def shape(self):
        r = self.r
        return tuple(r.choice([0, 1, 2, 3, 5]) for _ in range(r.choice([0, 1, 1, 2, 3])))

    def ndarray(self):
        import numpy as np
        dt = np.dtype(self.r.choice(NUMPY_DTYPES))
        shape = self.shape()
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        data = bytearray(self.r.randbytes(n))
        if dt.kind == "b":
            data = bytearray(b & 1 for b in data)
        a = np.frombuffer(data, dtype=dt).reshape(shape)
        self.arrays.append(a)
        return a

    def tensor(self):
        import torch
        r = self.r
        if self.arrays and r.random() < 0.15:
            return r.choice(self.arrays)  # tied: the same object twice
        name = r.choice(TORCH_DTYPES)
        dtype = getattr(torch, name)
        shape = self.shape()
        n = 1
        for d in shape:
            n *= d
        data = bytearray(r.randbytes(n * dtype.itemsize))
        if name == "bool":
            data = bytearray(b & 1 for b in data)
        t = torch.frombuffer(data, dtype=torch.uint8).view(dtype).reshape(shape) if data else \
            torch.empty(shape, dtype=dtype)
        t = t.clone()
        floating = dtype.is_floating_point or dtype.is_complex
        k = r.randrange(4)
        if k == 1 and floating and not name.startswith("float8"):
            t = torch.nn.Parameter(t, requires_grad=r.random() < 0.5)
        elif k == 2 and floating and not name.startswith("float8"):
            t.requires_grad_(True)
        elif k == 3:
            t = torch.nn.Parameter(t, requires_grad=False)
            t.note = self.str()
        self.arrays.append(t)
        return t

    def torch_value(self):
        import torch
        r = self.r
        k = r.randrange(3)
        if k == 0:
            return torch.Size(self.shape())
        if k == 1:
            return getattr(torch, r.choice(TORCH_DTYPES + ["complex32", "quint8", "uint3"]))
        return torch.device(r.choice(["cpu", "cuda:0", "cuda", "meta", "cuda:12"]))

    def typed_record(self):
        r = self.r
        k = r.randrange(3)
        if k == 0:
            return tensorseal.Typed("torch.Size", self.shape())
        if k == 1:
            return tensorseal.Typed("torch.dtype", r.choice(TORCH_DTYPES))
        return tensorseal.Typed("torch.device", r.choice(["cpu", "cuda:1"]))

    def leaf(self):
        r = self.r
        k = r.randrange(10)
        if k < 4:
            return self.scalar()
        if k < 7:
            return self.tensor() if self.framework == "torch" else self.ndarray()
        if k == 7:
            return self.ndarray()
        if k == 8:
            return self.torch_value() if self.framework == "torch" else self.typed_record()
        return r.choice([tensorseal.Global("mylib", "Net"),
                         tensorseal.Object("pathlib", "PurePosixPath", ["/", "x"]),
                         tensorseal.Object("m", "C", [], {"a": self.scalar()}, state=None),
                         tensorseal.Object("m", "D", [1.5], state={"k": [1, 2]})])

    # containers ----------------------------------------------------------------------------
    def value(self, depth=0):
        r = self.r
        if depth >= 4 or r.random() < 0.35:
            return self.leaf()
        n = r.randrange(5)
        k = r.randrange(9)
        if k == 0:
            return [self.value(depth + 1) for _ in range(n)]
        if k == 1:
            return tuple(self.value(depth + 1) for _ in range(n))
        if k == 2:
            return {self.key(): self.value(depth + 1) for _ in range(n)}
        if k == 3:
            return r.choice([set, frozenset])(self.key() for _ in range(n))
        if k == 4:
            od = collections.OrderedDict((self.str(), self.value(depth + 1)) for _ in range(n))
            if r.random() < 0.5:
                od._metadata = {"": {"version": 1}, "layer": {"version": 2}}
            return od
        if k == 5:
            return collections.Counter({self.str(): r.randrange(100) for _ in range(n)})
        if k == 6:
            return argparse.Namespace(**{f"f{i}": self.value(depth + 1) for i in range(n)})
        if k == 7:
            return {f"layer{i}.weight": self.leaf() for i in range(n)}
        return [self.leaf() for _ in range(n)]

    def checkpoint(self):
        return {"model": self.value(), "optimizer": self.value(), "epoch": self.int(),
                "extra": [self.value() for _ in range(3)]}
