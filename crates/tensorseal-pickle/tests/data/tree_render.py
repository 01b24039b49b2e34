# Copied unchanged from tests/fixtures/render.py on branch `fixtures` (commit 973842e):
# the tree rendering the converter prints, used here to write expected values.
"""The tensorseal JSON rendering of a loaded Python object.

This is the rendering that ``tensorseal inspect --json`` prints for the tree
of a converted checkpoint, so tests can compare the two. It is documented in
``tests/fixtures/README.md`` ("The tree rendering"). Only the standard library
is needed to import this module; torch and numpy are used when present.

    render(obj)            -> JSON-able value (the "tree")
    tensors(obj)           -> [{"path", "dtype", "shape", "sha256", ...}, ...]
    tensor_bytes(t)        -> C-contiguous little-endian bytes (conj/neg resolved)
    dumps(value)           -> canonical JSON text (what the fixtures store)

Paths: dict keys (str stays str, int stays int, tuple becomes a JSON array)
and list/tuple indices from the root. Wrappers that keep a mapping
(OrderedDict, Counter, Namespace) are transparent; inside an inert object
(``{"object": ...}``) the path continues with "args", <index> or "state",
<state path>; inside a set or frozenset with its iteration index.
"""

from __future__ import annotations

import argparse
import collections
import copyreg
import hashlib
import json
import math
import sys

try:  # optional at import time: render.py is also used without torch
    import torch
except ImportError:  # pragma: no cover
    torch = None
try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

INT_MIN = -(2**63)
INT_END = 2**64

# numpy dtype name -> torch-style name used in the rendering.
_NP_NAMES = {
    "bool": "bool",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "float16": "float16",
    "float32": "float32",
    "float64": "float64",
    "complex64": "complex64",
    "complex128": "complex128",
}


class RenderError(ValueError):
    """The object holds something the rendering has no form for."""


def render_float(x: float):
    if math.isnan(x):
        return {"float": "nan"}
    if math.isinf(x):
        return {"float": "inf" if x > 0 else "-inf"}
    return {"float": x}


def render_int(v: int):
    if INT_MIN <= v < INT_END:
        return v
    return {"int": str(v)}


def torch_dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def numpy_dtype_name(dtype) -> str:
    name = _NP_NAMES.get(dtype.name)
    if name is None:
        raise RenderError(f"numpy dtype {dtype!r} has no tensorseal name")
    return name


def tensor_bytes(t) -> bytes:
    """C-contiguous little-endian bytes of a dense torch tensor or numpy array."""
    if np is not None and isinstance(t, np.ndarray):
        a = np.ascontiguousarray(t)
        if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
            a = a.astype(a.dtype.newbyteorder("<"))
        return a.tobytes(order="C")
    t = t.detach()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    st = t.untyped_storage()
    if not (t.is_contiguous() and t.storage_offset() == 0
            and t.numel() * t.element_size() == st.nbytes()):
        t = t.contiguous().clone()  # only the viewed elements, in C order
        st = t.untyped_storage()
    data = bytes(st)
    if sys.byteorder == "big" and t.element_size() > 1:  # pragma: no cover
        raise RenderError("big-endian hosts are not supported by the fixture tools")
    assert len(data) == t.numel() * t.element_size()
    return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_plain_tensor(obj) -> bool:
    return torch is not None and isinstance(obj, torch.Tensor)


def _qualname(obj):
    return getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)


class Renderer:
    """Renders one object graph; collects the tensors with their paths."""

    def __init__(self):
        self.tensors = []
        self._storages = {}  # (data_ptr of storage) -> group number
        self._active = set()  # ids on the current path (cycle detection)

    # -- public -------------------------------------------------------------
    def render(self, obj, path=()):
        if id(obj) in self._active and isinstance(obj, (list, dict, set, tuple)):
            raise RenderError(f"cyclic structure at {list(path)}")
        self._active.add(id(obj))
        try:
            return self._render(obj, path)
        finally:
            self._active.discard(id(obj))

    # -- helpers ------------------------------------------------------------
    def _key(self, k):
        """A dict key as a path element."""
        if isinstance(k, tuple):
            return [self._key(x) for x in k]
        if isinstance(k, (str, int, float, bool)) or k is None:
            return k
        return self.render(k)

    def _dict_items(self, d, path):
        return [[self.render(k, path + ("<key>",)), self.render(v, path + (self._key(k),))]
                for k, v in d.items()]

    def _tensor(self, t, path, kind=None):
        if t.layout != torch.strided:
            raise RenderError(f"tensor with layout {t.layout} at {list(path)}")
        if t.is_quantized or t.is_nested or t.device.type == "meta":
            raise RenderError(f"quantized/nested/meta tensor at {list(path)}")
        data = tensor_bytes(t)
        node = {
            "dtype": torch_dtype_name(t.dtype),
            "shape": list(t.shape),
            "sha256": sha256_hex(data),
        }
        if kind:
            node["kind"] = kind
        if t.requires_grad:
            node["requires_grad"] = True
        state = {k: v for k, v in vars(t).items()} if hasattr(t, "__dict__") else {}
        if state:
            node["attrs"] = {"dict": self._dict_items(state, path + ("attrs",))}
        st = t.untyped_storage()
        if st.nbytes() == 0:  # empty storages share no bytes: never group them
            group = len(self._storages)
            self._storages[("empty", group)] = group
        else:
            group = self._storages.setdefault((st.data_ptr(), st.nbytes()), len(self._storages))
        self.tensors.append({
            "path": list(path),
            "dtype": node["dtype"],
            "shape": node["shape"],
            "sha256": node["sha256"],
            # How torch holds it after loading (not part of the tree):
            "storage_group": group,
            "storage_offset": t.storage_offset(),
            "stride": list(t.stride()),
            "storage_nbytes": st.nbytes(),
        } | ({"kind": kind} if kind else {}))
        return {"tensor": node}

    def _ndarray(self, a, path):
        if a.dtype.hasobject:
            raise RenderError(f"object array at {list(path)}")
        data = tensor_bytes(a)
        node = {
            "dtype": numpy_dtype_name(a.dtype),
            "shape": list(a.shape),
            "sha256": sha256_hex(data),
            "kind": "ndarray",
        }
        self.tensors.append({"path": list(path), "dtype": node["dtype"], "shape": node["shape"],
                             "sha256": node["sha256"], "kind": "ndarray"})
        return {"tensor": node}

    def _object(self, obj, path):
        try:
            rv = obj.__reduce_ex__(2)
        except Exception as e:  # pragma: no cover
            raise RenderError(f"cannot reduce {type(obj)!r} at {list(path)}: {e}") from e
        if isinstance(rv, str):
            # A global by name (e.g. an enum-like singleton).
            return {"global": {"module": type(obj).__module__, "name": rv}}
        func, args = rv[0], rv[1]
        state = rv[2] if len(rv) > 2 else None
        listitems = rv[3] if len(rv) > 3 else None
        dictitems = rv[4] if len(rv) > 4 else None
        if func is copyreg.__newobj__:
            cls, args = args[0], args[1:]
        elif func is copyreg._reconstructor:
            cls, args = args[0], ()
        else:
            cls = func
        module, name = _qualname(cls)
        node = {"module": module, "name": name,
                "args": [self.render(a, path + ("args", i)) for i, a in enumerate(args)]}
        if state is not None:
            node["state"] = self.render(state, path + ("state",))
        if listitems is not None:
            node["listitems"] = [self.render(v, path + ("listitems", i))
                                 for i, v in enumerate(listitems)]
        if dictitems is not None:
            node["dictitems"] = [[self.render(k, path + ("<key>",)),
                                  self.render(v, path + ("dictitems", self._key(k)))]
                                 for k, v in dictitems]
        return {"object": node}

    def _render(self, obj, path):
        t = type(obj)
        if obj is None:
            return None
        if t is bool:
            return obj
        if t is int:
            return render_int(obj)
        if t is float:
            return render_float(obj)
        if t is str:
            return obj
        if t is bytes:
            return {"bytes": obj.hex()}
        if t is bytearray:
            return {"bytearray": bytes(obj).hex()}
        if t is complex:
            return {"complex": [render_float(obj.real), render_float(obj.imag)]}
        if t is list:
            return [self.render(v, path + (i,)) for i, v in enumerate(obj)]
        if t is tuple:
            return {"tuple": [self.render(v, path + (i,)) for i, v in enumerate(obj)]}
        if t is set:
            return {"set": [self.render(v, path + (i,)) for i, v in enumerate(obj)]}
        if t is frozenset:
            return {"frozenset": [self.render(v, path + (i,)) for i, v in enumerate(obj)]}
        if t is dict:
            return {"dict": self._dict_items(obj, path)}
        if t is collections.OrderedDict or t is collections.Counter:
            node = {"typed": f"collections.{t.__name__}",
                    "value": {"dict": self._dict_items(obj, path)}}
            attrs = vars(obj)
            if attrs:
                node["attrs"] = {"dict": self._dict_items(attrs, path + ("attrs",))}
            return node
        if t is argparse.Namespace:
            return {"typed": "argparse.Namespace", "value": {"dict": self._dict_items(vars(obj), path)}}
        if t is slice:
            return {"typed": "builtins.slice",
                    "value": {"tuple": [self.render(v, path + (i,))
                                        for i, v in enumerate((obj.start, obj.stop, obj.step))]}}
        if torch is not None:
            if t is torch.Size:
                return {"typed": "torch.Size", "value": {"tuple": [render_int(int(v)) for v in obj]}}
            if t is torch.dtype:
                return {"typed": "torch.dtype", "value": torch_dtype_name(obj)}
            if t is torch.device:
                return {"typed": "torch.device", "value": str(obj)}
            if t is torch.nn.Parameter:
                return self._tensor(obj, path, kind="parameter")
            if t is torch.Tensor:
                return self._tensor(obj, path)
        if np is not None:
            if t is np.ndarray:
                return self._ndarray(obj, path)
            if isinstance(obj, np.generic):
                a = np.asarray(obj)
                name = numpy_dtype_name(a.dtype)
                return {"typed": "numpy.scalar", "value": [name, {"bytes": tensor_bytes(a).hex()}]}
        if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
            module, name = _qualname(obj)
            return {"global": {"module": module, "name": name}}
        return self._object(obj, path)


def render(obj):
    """The tree rendering of ``obj``."""
    return Renderer().render(obj)


def render_with_tensors(obj):
    """(tree, tensors) for ``obj``; tensors in the order the tree walk meets them."""
    r = Renderer()
    tree = r.render(obj)
    return tree, r.tensors


def tensors(obj):
    return render_with_tensors(obj)[1]


def dumps(value, width: int = 200) -> str:
    """Canonical JSON text: containers that fit in `width` columns on one line, others
    indented by one space per level; key order as built; trailing newline."""

    def one(v):
        return json.dumps(v, ensure_ascii=False, allow_nan=False)

    def fmt(v, ind):
        flat = one(v)
        if (len(flat) + ind <= width or not isinstance(v, (dict, list)) or not v
                or (isinstance(v, dict) and "sha256" in v)):  # one line per tensor
            return flat
        pad = " " * (ind + 1)
        if isinstance(v, dict):
            items = [f"{pad}{one(k)}: {fmt(x, ind + 1)}" for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * ind + "}"
        items = [pad + fmt(x, ind + 1) for x in v]
        return "[\n" + ",\n".join(items) + "\n" + " " * ind + "]"

    return fmt(value, 0) + "\n"
