"""Building Python objects from the plain form of a verified tree (see ``src/ir.rs``).

Nothing here imports or calls anything named in a file: every kind maps to a fixed constructor
(dict, OrderedDict, torch.Size, ...), attributes are written into instance dictionaries (never
through ``setattr``), and unknown classes stay :class:`Object` / :class:`Global` records.
"""

from __future__ import annotations

import argparse
import collections

from . import _dtypes
from ._errors import UnsupportedError
from ._records import NO_STATE, Global, Object, TensorInfo, Typed

FRAMEWORKS = ("torch", "numpy")


def _where(path):
    return "".join(path) or "<root>"


def _seg(key):
    """A dict key as a path segment, short even when the key is a large value."""
    if type(key) in (str, int, bool, float) or key is None:
        return f"[{key!r}]"
    return f"[<{type(key).__name__} key>]"


def iter_tensors(node):
    """Every tensor form in a tree, in document order (iteratively: trees may be deep)."""
    stack = [node]
    while stack:
        x = stack.pop()
        if type(x) is list:
            stack.extend(reversed(x))
        elif type(x) is tuple:
            tag = x[0]
            if tag == "tensor":
                yield x
                stack.extend(v for _, v in reversed(x[6]))
            elif tag in ("tuple", "set", "frozenset"):
                stack.extend(reversed(x[1]))
            elif tag == "dict":
                for k, v in reversed(x[1]):
                    stack.append(v)
                    stack.append(k)
            elif tag == "typed":
                if x[1] in ("collections.OrderedDict", "collections.Counter"):
                    stack.extend(v for _, v in reversed(x[3]))
                    for k, v in reversed(x[2]):
                        stack.append(v)
                        stack.append(k)
                elif x[1] == "argparse.Namespace":
                    stack.extend(v for _, v in reversed(x[2]))
                elif x[1] == "builtins.slice":
                    stack.extend(reversed(x[2]))
            elif tag == "object":
                if x[6]:
                    stack.append(x[5])
                stack.extend(v for _, v in reversed(x[4]))
                stack.extend(reversed(x[3]))


def check_available(tensors, framework):
    """Fails before any byte is read if a tensor cannot be restored here."""
    for t in tensors:
        _, _, dtype, _, kind, _, _, _ = t
        where = f"tensor of dtype {dtype}"
        if framework == "numpy" or kind == "ndarray":
            _dtypes.numpy_dtype(dtype, where)
        else:
            _dtypes.torch_dtype(dtype, where)


def read_blobs(native, tensors, framework, placement=None):
    """Has the native loader verify every blob used by ``tensors`` and returns
    ``{blob: buffer}``, each a flat uint8 torch tensor or numpy array that the tensors will view.
    Nothing is returned unless every blob verified.

    Copy mode (the default): one destination per blob is allocated here, and the native loader
    reads the blob into it and hashes it there (GIL released, in parallel). ``mmap`` mode: the
    native loader verifies the raw blobs in place in its private mapping, in parallel, and
    exports each as a writable buffer that the tensor or array views without a copy (keeping
    the mapping alive); compressed blobs are decoded into destinations allocated here, as in
    copy mode."""
    lengths = native.blob_lengths()
    wants_torch = {}
    for t in tensors:
        blob = t[1]
        if blob is not None:
            as_torch = framework == "torch" and t[4] != "ndarray"
            wants_torch[blob] = wants_torch.get(blob, False) or as_torch
    if any(wants_torch.values()):
        import torch
    if not all(wants_torch.values()):
        import numpy as np
    buffers, copied = {}, list(wants_torch)
    if native.mode == "mmap":
        compressed = native.blob_compressed()
        in_place = [b for b in copied if not compressed[b]]
        copied = [b for b in copied if compressed[b]]
        for blob, memory in zip(in_place, native.map_blobs(in_place)):
            if wants_torch[blob]:
                buffers[blob] = torch.frombuffer(memory, dtype=torch.uint8)
            else:
                buffers[blob] = np.frombuffer(memory, dtype=np.uint8)
    targets = []
    pin = placement is not None and placement.pinned
    for blob in copied:
        if wants_torch[blob]:
            buf = torch.empty(lengths[blob], dtype=torch.uint8, pin_memory=pin)
            targets.append((blob, buf.numpy()))
        else:
            buf = np.empty(lengths[blob], dtype=np.uint8)
            targets.append((blob, buf))
        buffers[blob] = buf
    if targets:
        native.read_into(targets)
    if placement is not None:
        buffers = placement.place(buffers, [b for b, t in wants_torch.items() if t])
    return buffers


class Restorer:
    """Turns the plain form into Python objects; tensors view the verified ``buffers``."""

    def __init__(self, framework, buffers, placeholders=False, names=None, device=None):
        self.framework = framework
        self.device = device  # of torch tensors without bytes (map_location)
        self.buffers = buffers
        self.placeholders = placeholders
        self.names = names or {}

    def restore(self, node):
        return self.node(node, [])

    # -- tensors --------------------------------------------------------------------------
    def _raw(self, blob, want_torch):
        buf = self.buffers[blob]
        is_numpy = type(buf).__module__ == "numpy"
        if want_torch and is_numpy:
            import torch
            return torch.from_numpy(buf)
        if not want_torch and not is_numpy:
            # A blob shared by a torch tensor placed on a device and a numpy array.
            return buf.numpy() if buf.device.type == "cpu" else buf.cpu().numpy()
        return buf

    def tensor(self, x, path):
        _, blob, dtype, shape, kind, requires_grad, attrs, index = x
        if self.placeholders:
            nbytes = _dtypes.ITEMSIZE[dtype]
            for d in shape:
                nbytes *= d
            return TensorInfo(self.names.get(index, _where(path)), dtype, shape, kind,
                              requires_grad, nbytes,
                              {k: self.node(v, path + [f".{k}"]) for k, v in attrs})
        where = f"tensor {_where(path)}"
        if self.framework == "numpy" or kind == "ndarray":
            # Parameter kind, requires_grad and attributes have no numpy counterpart.
            import numpy as np
            npdt = _dtypes.numpy_dtype(dtype, where)
            if blob is None:
                return np.empty(shape, dtype=npdt)
            return self._raw(blob, want_torch=False).view(npdt).reshape(shape)
        import torch
        tdt = _dtypes.torch_dtype(dtype, where)
        if blob is None:
            t = torch.empty(shape, dtype=tdt, device=self.device)
        else:
            t = self._raw(blob, want_torch=True).view(tdt).view(shape)
        try:
            if kind == "parameter":
                t = torch.nn.Parameter(t, requires_grad=requires_grad)
            elif requires_grad:
                t.requires_grad_(True)
        except RuntimeError as e:
            raise UnsupportedError(f"{where}: {e}") from None
        if attrs:
            vars(t).update((k, self.node(v, path + [f".{k}"])) for k, v in attrs)
        return t

    # -- containers -----------------------------------------------------------------------
    def _fill(self, target, pairs, path, what):
        for k, v in pairs:
            key = self.node(k, path + ["<key>"])
            try:
                target[key] = self.node(v, path + [_seg(key)])
            except TypeError as e:  # an unhashable key, e.g. a numpy array
                raise UnsupportedError(f"{_where(path)}: {what} key cannot be used: {e}") from None
        if len(target) != len(pairs):
            raise UnsupportedError(
                f"{_where(path)}: {what} has keys that are distinct in the file but equal in "
                f"Python (such as 1 and True)")
        return target

    def _set(self, cls, items, path):
        values = [self.node(v, path + [f"{{{i}}}"]) for i, v in enumerate(items)]
        try:
            s = cls(values)
        except TypeError as e:
            raise UnsupportedError(f"{_where(path)}: {cls.__name__} element: {e}") from None
        if len(s) != len(values):
            raise UnsupportedError(
                f"{_where(path)}: {cls.__name__} has elements that are distinct in the file but "
                f"equal in Python")
        return s

    def _attrs(self, obj, attrs, path):
        # Into the instance dict, as pickle's default __setstate__ does: no descriptor runs.
        vars(obj).update((k, self.node(v, path + [f".{k}"])) for k, v in attrs)
        return obj

    def typed(self, x, path):
        _, name, value, attrs = x
        if name == "collections.OrderedDict":
            od = self._fill(collections.OrderedDict(), value, path, "OrderedDict")
            return self._attrs(od, attrs, path)
        if name == "collections.Counter":
            c = self._fill(collections.Counter(), value, path, "Counter")
            return self._attrs(c, attrs, path)
        if name == "argparse.Namespace":
            return self._attrs(argparse.Namespace(), value, path)
        if name == "builtins.slice":
            a, b, c = (self.node(v, path + [f"[{i}]"]) for i, v in enumerate(value))
            return slice(a, b, c)
        if name == "numpy.scalar":
            import numpy as np
            dtype, data = value
            return np.frombuffer(data, dtype=_dtypes.numpy_dtype(dtype, _where(path)))[0]
        if self.framework == "numpy":
            return Typed(name, value)
        import torch
        if name == "torch.Size":
            return torch.Size(value)
        if name == "torch.dtype":
            return _dtypes.torch_dtype(value, _where(path))
        if name == "torch.device":
            try:
                return torch.device(value)
            except (RuntimeError, ValueError) as e:
                raise UnsupportedError(f"{_where(path)}: torch.device({value!r}): {e}") from None
        raise UnsupportedError(f"{_where(path)}: unknown typed value {name!r}")  # pragma: no cover

    def node(self, x, path):
        t = type(x)
        if t is list:
            return [self.node(v, path + [f"[{i}]"]) for i, v in enumerate(x)]
        if t is not tuple:
            return x  # None, bool, int, float, str, bytes
        tag = x[0]
        if tag == "dict":
            return self._fill({}, x[1], path, "dict")
        if tag == "tensor":
            return self.tensor(x, path)
        if tag == "tuple":
            return tuple(self.node(v, path + [f"[{i}]"]) for i, v in enumerate(x[1]))
        if tag == "typed":
            return self.typed(x, path)
        if tag == "set":
            return self._set(set, x[1], path)
        if tag == "frozenset":
            return self._set(frozenset, x[1], path)
        if tag == "bytearray":
            return bytearray(x[1])
        if tag == "complex":
            return complex(x[1], x[2])
        if tag == "object":
            _, module, name, args, kwargs, state, has_state, listitems, dictitems = x
            return Object(
                module, name,
                [self.node(v, path + [f".args[{i}]"]) for i, v in enumerate(args)],
                {k: self.node(v, path + [f".{k}"]) for k, v in kwargs},
                self.node(state, path + [".state"]) if has_state else NO_STATE,
                [self.node(v, path + [f".listitems[{i}]"]) for i, v in enumerate(listitems)],
                {self.node(k, path + [".dictitems"]): self.node(v, path + [f".dictitems[{i}]"])
                 for i, (k, v) in enumerate(dictitems)})
        if tag == "global":
            return Global(x[1], x[2])
        raise UnsupportedError(f"{_where(path)}: unknown node {tag!r}")  # pragma: no cover


def materialize(native, node, framework, placement=None):
    """Reads every blob the subtree ``node`` uses, verified, then builds it (on the devices
    ``placement`` says). Nothing is built unless every read succeeded."""
    tensors = list(iter_tensors(node))
    check_available(tensors, framework)
    buffers = read_blobs(native, tensors, framework, placement)
    device = placement.empty_device() if placement is not None else None
    return Restorer(framework, buffers, device=device).restore(node)
