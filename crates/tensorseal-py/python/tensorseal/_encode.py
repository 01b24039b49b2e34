"""The plain form of a Python object, for saving (see ``src/ir.rs``), and the byte sources of
its tensors. Only the kinds the format has are accepted; anything else is refused with the
path where it was found. Nothing is ever pickled.
"""

from __future__ import annotations

import argparse
import collections
import copyreg
import sys

from . import _dtypes
from ._errors import UnsupportedError
from ._records import NO_STATE, Global, Object, Typed
from ._restore import _seg

_TYPED_RECORDS = ("torch.Size", "torch.dtype", "torch.device")


class Encoder:
    """Walks an object once. ``sources`` collects one flat uint8 buffer per distinct tensor
    byte range: tensors that share memory exactly (tied weights) share a source, hence a blob,
    and load back sharing memory."""

    def __init__(self, allow_objects=False):
        #: Record values of other classes as inert :class:`Object` records (their class name
        #: and what ``__reduce_ex__`` gives), as the converter records unknown classes.
        self.allow_objects = allow_objects
        self.sources = []
        self._by_memory = {}
        self._active = set()
        self.torch = sys.modules.get("torch")
        self.np = sys.modules.get("numpy")

    def _source(self, memory_key, make_buffer):
        if memory_key is not None and memory_key in self._by_memory:
            return self._by_memory[memory_key]
        index = len(self.sources)
        self.sources.append(make_buffer())
        if memory_key is not None:
            self._by_memory[memory_key] = index
        return index

    # -- tensors --------------------------------------------------------------------------
    def torch_tensor(self, t, path, kind):
        torch = self.torch
        if t.layout != torch.strided or t.is_quantized or t.is_nested or t.is_meta:
            what = ("quantized" if t.is_quantized else "nested" if t.is_nested
                    else "meta" if t.is_meta else f"{t.layout}")
            raise UnsupportedError(f"{path}: {what} tensors cannot be saved (only dense tensors)")
        name = _dtypes.torch_name(t.dtype, path)
        attrs = [(k, self.node(v, f"{path}.{k}")) for k, v in vars(t).items()]
        shape = tuple(t.shape)
        src = None
        if t.numel():
            d = t.detach()
            key = None
            if d.is_contiguous():
                key = (d.device.type, d.device.index, d.data_ptr(), d.numel() * d.element_size(),
                       d.is_conj(), d.is_neg())
            src = self._source(key, lambda: _torch_bytes(d))
        return ("tensor", src, name, shape, kind, bool(t.requires_grad), attrs, None)

    def ndarray(self, a, path):
        np = self.np
        if a.dtype.hasobject:
            raise UnsupportedError(f"{path}: numpy arrays of Python objects cannot be saved")
        name = _dtypes.numpy_name(a.dtype, path)
        src = None
        if a.size:
            little = a.dtype.byteorder in ("<", "|", "=")
            key = None
            if little and a.flags.c_contiguous:
                key = ("cpu", None, a.__array_interface__["data"][0], a.nbytes, False, False)
            def make():
                b = a if little else a.astype(a.dtype.newbyteorder("<"))
                return np.ascontiguousarray(b).reshape(-1).view(np.uint8)
            src = self._source(key, make)
        return ("tensor", src, name, tuple(a.shape), "ndarray", False, [], None)

    def numpy_scalar(self, x, path):
        np = self.np
        name = _dtypes.numpy_name(x.dtype, path)
        if name in _dtypes.NUMPY_EXTENSION:
            raise UnsupportedError(
                f"{path}: numpy scalars of dtype {name} have no encoding (store a 0-d array)")
        data = np.asarray(x).astype(x.dtype.newbyteorder("<")).tobytes()
        return ("typed", "numpy.scalar", (name, data), [])

    # -- everything -----------------------------------------------------------------------
    def _pairs(self, items, path):
        out = []
        for k, v in items:
            out.append((self.node(k, f"{path}<key {k!r:.40}>"), self.node(v, path + _seg(k))))
        return out

    def _text_pairs(self, d, path, what):
        out = []
        for k, v in d.items():
            if type(k) is not str:
                raise UnsupportedError(f"{path}: {what} name {k!r} is not a str")
            out.append((k, self.node(v, f"{path}.{k}")))
        return out

    def node(self, x, path="obj"):
        t = type(x)
        if x is None or t is bool or t is int or t is float or t is str or t is bytes:
            return x
        if t in (list, tuple, dict, set, frozenset, collections.OrderedDict,
                 collections.Counter, argparse.Namespace, Object):
            if id(x) in self._active:
                raise UnsupportedError(f"{path}: the object contains itself (a cycle)")
            self._active.add(id(x))
            try:
                return self._container(x, t, path)
            finally:
                self._active.discard(id(x))
        if t is bytearray:
            return ("bytearray", bytes(x))
        if t is complex:
            return ("complex", x.real, x.imag)
        if t is slice:
            return ("typed", "builtins.slice",
                    [self.node(v, f"{path}.{n}")
                     for n, v in (("start", x.start), ("stop", x.stop), ("step", x.step))], [])
        if t is Global:
            return ("global", x.module, x.name)
        if t is Typed:
            return self._typed_record(x, path)
        torch, np = self.torch, self.np
        if torch is not None:
            if t is torch.Tensor:
                return self.torch_tensor(x, path, None)
            if t is torch.nn.Parameter:
                return self.torch_tensor(x, path, "parameter")
            if t is torch.Size:
                return ("typed", "torch.Size", tuple(int(d) for d in x), [])
            if t is torch.dtype:
                name = str(x).removeprefix("torch.")
                if name not in _dtypes.TORCH_DTYPE_NAMES:
                    raise UnsupportedError(f"{path}: {x} is not a dtype the format can name")
                return ("typed", "torch.dtype", name, [])
            if t is torch.device:
                return ("typed", "torch.device", str(x), [])
        if np is not None:
            if t is np.ndarray:
                return self.ndarray(x, path)
            if isinstance(x, np.generic):
                return self.numpy_scalar(x, path)
        if self.allow_objects:
            return self._inert(x, t, path)
        raise UnsupportedError(
            f"{path}: cannot save a value of type {t.__module__}.{t.__qualname__}: tensorseal "
            f"saves tensors, numpy arrays and Python containers and scalars, never pickles "
            f"(convert it to one of those, record it as tensorseal.Object, or pass "
            f"allow_objects=True to record it so)")

    def _inert(self, x, t, path):
        """``x`` as the inert record a pickle of it would give the converter: its class, the
        arguments and state of ``__reduce_ex__(4)``. The values inside are encoded as any
        others (and may be records too); nothing of them is pickled."""
        if isinstance(x, type) or callable(x) and hasattr(x, "__qualname__"):
            return ("global", x.__module__, x.__qualname__)
        try:
            rv = x.__reduce_ex__(4)
        except Exception as e:  # noqa: BLE001 - the object's own refusal, reported with its path
            raise UnsupportedError(
                f"{path}: cannot record a value of type {t.__module__}.{t.__qualname__}: "
                f"its __reduce_ex__ fails ({type(e).__name__}: {e})") from None
        if isinstance(rv, str):  # a module-level singleton, pickled by name
            return ("global", t.__module__, rv)
        func, args, *rest = tuple(rv) + (None,) * (5 - len(rv))
        state, listitems, dictitems = rest[0], rest[1], rest[2]
        args = list(args or ())
        if func is copyreg.__newobj__ and args:
            cls, args = args[0], args[1:]
        elif getattr(func, "__name__", "") == "_reconstructor" and len(args) == 3:
            cls, args = args[0], []  # copyreg._reconstructor(cls, object, None)
        else:
            cls = func
        module = getattr(cls, "__module__", None) or "builtins"
        name = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", repr(cls))
        record = Object(module, name, args, {}, NO_STATE if state is None else state,
                        list(listitems) if listitems is not None else [],
                        dict(dictitems) if dictitems is not None else {})
        if id(x) in self._active:
            raise UnsupportedError(f"{path}: the object contains itself (a cycle)")
        self._active.add(id(x))
        try:
            return self._container(record, Object, path)
        finally:
            self._active.discard(id(x))

    def _container(self, x, t, path):
        if t is list:
            return [self.node(v, f"{path}[{i}]") for i, v in enumerate(x)]
        if t is tuple:
            return ("tuple", [self.node(v, f"{path}[{i}]") for i, v in enumerate(x)])
        if t is dict:
            return ("dict", self._pairs(x.items(), path))
        if t is set or t is frozenset:
            # Sorted by canonical encoding on the Rust side: iteration order is not kept.
            return ("set" if t is set else "frozenset",
                    [self.node(v, f"{path}{{{i}}}") for i, v in enumerate(x)])
        if t is collections.OrderedDict or t is collections.Counter:
            return ("typed", f"collections.{t.__name__}", self._pairs(x.items(), path),
                    self._text_pairs(vars(x), path, "attribute"))
        if t is argparse.Namespace:
            return ("typed", "argparse.Namespace",
                    self._text_pairs(vars(x), path, "Namespace field"), [])
        if t is Object:
            return ("object", x.module, x.name,
                    [self.node(v, f"{path}.args[{i}]") for i, v in enumerate(x.args)],
                    self._text_pairs(x.kwargs, path, "keyword argument"),
                    self.node(x.state, f"{path}.state") if x.has_state else None,
                    x.has_state,
                    [self.node(v, f"{path}.listitems[{i}]") for i, v in enumerate(x.listitems)],
                    self._pairs(x.dictitems.items(), f"{path}.dictitems"))
        raise AssertionError(t)  # pragma: no cover

    def _typed_record(self, x, path):
        if x.type == "torch.Size":
            return ("typed", "torch.Size", tuple(x.value), [])
        if x.type in ("torch.dtype", "torch.device") and type(x.value) is str:
            return ("typed", x.type, x.value, [])
        raise UnsupportedError(f"{path}: Typed record of {x.type!r} cannot be saved")


def _torch_bytes(t):
    """The C-contiguous little-endian bytes of a dense torch tensor, as a flat uint8 numpy
    array (a view when the tensor is already contiguous and on the CPU)."""
    import torch

    if t.device.type != "cpu":
        t = t.to("cpu")
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    if not t.is_contiguous():
        t = t.contiguous()
    return t.reshape(-1).view(torch.uint8).numpy()
