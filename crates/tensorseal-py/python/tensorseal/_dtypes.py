"""Dtype names (spec §2, §3.7.1) and their torch and numpy counterparts.

Names are looked up only in these fixed tables: a name read from a file is checked against the
spec's list before anything is fetched from torch by that name.
"""

from __future__ import annotations

import sys

from . import _native
from ._errors import UnsupportedError

#: Tensor dtype names of format version 1 with their item sizes, in spec order.
ITEMSIZE: dict[str, int] = dict(_native.DTYPES)
#: Names a ``torch.dtype`` value may hold (spec §3.7.1).
TORCH_DTYPE_NAMES = frozenset(ITEMSIZE) | frozenset(_native.TORCH_DTYPE_EXTRA_NAMES)

#: numpy dtypes of the names numpy has natively, explicitly little-endian.
_NUMPY_NATIVE = {
    "bool": "?", "uint8": "u1", "uint16": "<u2", "uint32": "<u4", "uint64": "<u8",
    "int8": "i1", "int16": "<i2", "int32": "<i4", "int64": "<i8",
    "float16": "<f2", "float32": "<f4", "float64": "<f8",
    "complex64": "<c8", "complex128": "<c16",
}
#: Names numpy lacks; ``ml_dtypes`` (used by JAX) provides them under the same names.
NUMPY_EXTENSION = frozenset(ITEMSIZE) - frozenset(_NUMPY_NATIVE)

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("tensorseal supports little-endian hosts only")


def torch_dtype(name: str, where: str):
    """The torch dtype of a §2 or §3.7.1 name."""
    import torch

    if name not in TORCH_DTYPE_NAMES:  # the manifest parser already refuses these
        raise UnsupportedError(f"{where}: unknown torch dtype name {name!r}")
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise UnsupportedError(
            f"{where}: this torch ({torch.__version__}) has no dtype torch.{name}")
    return dtype


def numpy_dtype(name: str, where: str):
    """The numpy dtype of a §2 name. bfloat16 and the float8 types come from ``ml_dtypes``
    when it is installed; without it they raise :class:`UnsupportedError` naming the tensor
    (bytes are never reinterpreted as another type)."""
    import numpy as np

    native = _NUMPY_NATIVE.get(name)
    if native is not None:
        return np.dtype(native)
    if name not in NUMPY_EXTENSION:
        raise UnsupportedError(f"{where}: unknown dtype name {name!r}")
    try:
        import ml_dtypes
    except ImportError:
        raise UnsupportedError(
            f"{where}: numpy has no {name} dtype; install ml_dtypes to load it as a numpy "
            f"array, or load with framework='torch'") from None
    dtype = getattr(ml_dtypes, name, None)
    if dtype is None:
        raise UnsupportedError(
            f"{where}: this ml_dtypes ({getattr(ml_dtypes, '__version__', '?')}) has no {name}")
    return np.dtype(dtype)


def torch_name(dtype, where: str) -> str:
    """The spec name of a torch tensor dtype."""
    name = str(dtype).removeprefix("torch.")
    if name not in ITEMSIZE:
        raise UnsupportedError(
            f"{where}: tensors of dtype {dtype} have no encoding in tensorseal format version 1")
    return name


def numpy_name(dtype, where: str) -> str:
    """The spec name of a numpy dtype (any byte order; ``ml_dtypes`` types by name)."""
    kind, size = dtype.kind, dtype.itemsize
    name = {
        ("b", 1): "bool",
        ("u", 1): "uint8", ("u", 2): "uint16", ("u", 4): "uint32", ("u", 8): "uint64",
        ("i", 1): "int8", ("i", 2): "int16", ("i", 4): "int32", ("i", 8): "int64",
        ("f", 2): "float16", ("f", 4): "float32", ("f", 8): "float64",
        ("c", 8): "complex64", ("c", 16): "complex128",
    }.get((kind, size))
    if name is not None and dtype.fields is None and dtype.subdtype is None:
        return name
    if dtype.name in NUMPY_EXTENSION and dtype.type.__module__.startswith("ml_dtypes"):
        return dtype.name
    raise UnsupportedError(
        f"{where}: numpy arrays of dtype {dtype} have no encoding in tensorseal format version 1")
