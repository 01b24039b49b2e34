"""Deep comparison of loaded checkpoints, for round-trip tests (tensorseal.load against what
was saved, or against torch.load of the original file).

    assert_same(actual, expected)          # raises AssertionError naming the first difference
    assert_same_sharing(actual, expected)  # tensors that shared memory still do
    canonical_tree(render_tree(obj, fixtures)) == canonical_tree(expected_json["tree"])
                                           # against the fixture corpus's expected tree

Rules: the same container types (dict vs OrderedDict vs Counter, list vs tuple, set vs
frozenset, Parameter vs Tensor, ...); dict keys in the same order; attributes (``vars``) of
OrderedDicts, Counters, Namespaces and tensors compared too; floats and complex parts
bit-exact (so NaN equals NaN and -0.0 differs from 0.0; ``nan_payloads=False`` relaxes this to
"nan where nan"); tensors and numpy arrays with equal dtype, shape, ``requires_grad`` and
bit-equal bytes; numpy scalars with equal dtype and bytes. Only the standard library is needed
to import this module; torch and numpy are used when present.
"""

from __future__ import annotations

import argparse
import collections
import math
import struct
import sys


def _torch():
    return sys.modules.get("torch")


def _np():
    return sys.modules.get("numpy")


def _float_same(a, b, nan_payloads):
    if math.isnan(a) and math.isnan(b) and not nan_payloads:
        return True
    return struct.pack("<d", a) == struct.pack("<d", b)


def tensor_bytes(t) -> bytes:
    """C-contiguous little-endian bytes of a dense torch tensor or numpy array."""
    np = _np()
    if np is not None and isinstance(t, np.ndarray):
        a = np.ascontiguousarray(t)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        return a.tobytes()
    torch = _torch()
    t = t.detach().cpu()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _numpy_dtype_key(dtype):
    # Byte order is representation, not value: '>i4' data loads back as '<i4'.
    return dtype.newbyteorder("=") if dtype.byteorder in "<>" else dtype


class _Comparer:
    def __init__(self, nan_payloads):
        self.nan_payloads = nan_payloads

    def fail(self, path, what):
        raise AssertionError(f"{path}: {what}")

    def pairs(self, a, e, path):
        ka, ke = list(a.keys()), list(e.keys())
        if len(ka) != len(ke):
            self.fail(path, f"{len(ka)} keys, expected {len(ke)}: {ka[:5]!r} vs {ke[:5]!r}")
        for i, (x, y) in enumerate(zip(ka, ke)):
            self.same(x, y, f"{path}<key {i}>")
        for k in ke:
            self.same(a[k], e[k], f"{path}[{k!r:.60}]")

    def attrs(self, a, e, path):
        va = vars(a) if hasattr(a, "__dict__") else {}
        ve = vars(e) if hasattr(e, "__dict__") else {}
        if list(va) != list(ve):
            self.fail(path, f"attributes {list(va)} != {list(ve)}")
        for k in ve:
            self.same(va[k], ve[k], f"{path}.{k}")

    def same(self, a, e, path="obj"):
        ta, te = type(a), type(e)
        if ta is not te:
            self.fail(path, f"type {ta.__module__}.{ta.__qualname__}, expected "
                            f"{te.__module__}.{te.__qualname__}")
        if e is None or te in (bool, int, str, bytes, bytearray):
            if a != e:
                self.fail(path, f"{a!r:.200} != {e!r:.200}")
            return
        if te is float:
            if not _float_same(a, e, self.nan_payloads):
                self.fail(path, f"{a!r} != {e!r} (bitwise)")
            return
        if te is complex:
            if not (_float_same(a.real, e.real, self.nan_payloads)
                    and _float_same(a.imag, e.imag, self.nan_payloads)):
                self.fail(path, f"{a!r} != {e!r} (bitwise)")
            return
        if te in (list, tuple):
            if len(a) != len(e):
                self.fail(path, f"length {len(a)}, expected {len(e)}")
            for i, (x, y) in enumerate(zip(a, e)):
                self.same(x, y, f"{path}[{i}]")
            return
        if te in (dict, collections.OrderedDict, collections.Counter):
            self.pairs(a, e, path)
            if te is not dict:
                self.attrs(a, e, path)
            return
        if te in (set, frozenset):
            if a != e or sorted(type(x).__name__ for x in a) != sorted(type(x).__name__ for x in e):
                self.fail(path, f"{a!r:.200} != {e!r:.200}")
            return
        if te is argparse.Namespace:
            self.attrs(a, e, path)
            return
        if te is slice:
            for part in ("start", "stop", "step"):
                self.same(getattr(a, part), getattr(e, part), f"{path}.{part}")
            return
        torch, np = _torch(), _np()
        if torch is not None and isinstance(e, torch.Tensor):
            if a.dtype != e.dtype or tuple(a.shape) != tuple(e.shape):
                self.fail(path, f"tensor {a.dtype}{list(a.shape)}, expected {e.dtype}{list(e.shape)}")
            if a.requires_grad != e.requires_grad:
                self.fail(path, f"requires_grad {a.requires_grad}, expected {e.requires_grad}")
            if tensor_bytes(a) != tensor_bytes(e):
                self.fail(path, "tensor bytes differ")
            self.attrs(a, e, path)
            return
        if np is not None and te is np.ndarray:
            if _numpy_dtype_key(a.dtype) != _numpy_dtype_key(e.dtype) or a.shape != e.shape:
                self.fail(path, f"array {a.dtype}{list(a.shape)}, expected {e.dtype}{list(e.shape)}")
            if tensor_bytes(a) != tensor_bytes(e):
                self.fail(path, "array bytes differ")
            return
        if np is not None and isinstance(e, np.generic):
            if a.dtype != e.dtype or a.tobytes() != e.tobytes():
                self.fail(path, f"numpy scalar {a!r} ({a.dtype}) != {e!r} ({e.dtype})")
            return
        if hasattr(e, "__dataclass_fields__"):  # tensorseal.Object / Global / Typed / ...
            for f in e.__dataclass_fields__:
                self.same(getattr(a, f), getattr(e, f), f"{path}.{f}")
            return
        if a != e:  # torch.Size, torch.dtype, torch.device, ...
            self.fail(path, f"{a!r:.200} != {e!r:.200}")


def assert_same(actual, expected, path="obj", nan_payloads=True):
    """Raises AssertionError at the first difference between two loaded objects."""
    _Comparer(nan_payloads).same(actual, expected, path)


def iter_arrays(obj):
    """Every tensor and numpy array in ``obj`` (containers, attributes, records), in order."""
    torch, np = _torch(), _np()
    stack, seen = [obj], set()
    while stack:
        x = stack.pop()
        if torch is not None and isinstance(x, torch.Tensor) or np is not None and type(x) is np.ndarray:
            yield x
            if hasattr(x, "__dict__"):
                stack.extend(reversed(list(vars(x).values())))
            continue
        if isinstance(x, (list, tuple, set, frozenset)):
            if id(x) in seen:
                continue
            seen.add(id(x))
            stack.extend(reversed(list(x)))
        elif isinstance(x, dict):
            if id(x) in seen:
                continue
            seen.add(id(x))
            for k, v in reversed(list(x.items())):
                stack.append(v)
                stack.append(k)
            if type(x) is not dict:
                stack.extend(reversed(list(vars(x).values())))
        elif isinstance(x, argparse.Namespace):
            stack.extend(reversed(list(vars(x).values())))


def sharing(obj):
    """For each array in order, the index of the first array holding exactly the same memory
    (same start, same size, C-contiguous): the memory sharing tensorseal.save preserves."""
    np, firsts, out = _np(), {}, []
    for i, x in enumerate(iter_arrays(obj)):
        if np is not None and type(x) is np.ndarray:
            key = (x.__array_interface__["data"][0], x.nbytes) if x.flags.c_contiguous else None
        else:
            key = (x.data_ptr(), x.numel() * x.element_size()) if x.is_contiguous() else None
        if key is None or key[1] == 0:
            out.append(i)
        else:
            out.append(firsts.setdefault(key, i))
    return out


def assert_same_sharing(actual, expected):
    """Tensors that shared memory exactly in ``expected`` share it in ``actual``, and no others."""
    sa, se = sharing(actual), sharing(expected)
    if sa != se:
        raise AssertionError(f"memory sharing differs: {sa} != {se}")


# -- the fixture corpus's tree rendering ---------------------------------------------------------
def render_tree(obj, fixtures):
    """``obj`` in the tree rendering of the fixture corpus (``fixtures/render.py``, what each
    ``X.expected.json`` holds as ``tree``), as JSON values."""
    import importlib.util
    import json

    module = sys.modules.get("tensorseal_fixture_render")
    if module is None:
        spec = importlib.util.spec_from_file_location(
            "tensorseal_fixture_render", fixtures / "render.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return json.loads(json.dumps(module.render(obj)))


def canonical_tree(v):
    """A rendered tree in a form where sets are unordered, floats compare by value (NaN equal to
    NaN, -0.0 distinct from 0.0) and tensors by dtype, shape, data digest, kind,
    ``requires_grad`` and attributes (the Rust converter test's ``canonical``)."""
    import json

    if isinstance(v, dict):
        if len(v) == 1 and "float" in v:
            f = v["float"]
            return "float:" + (f if isinstance(f, str) else repr(float(f)))
        if len(v) == 1 and ("set" in v or "frozenset" in v):
            (kind, items), = v.items()
            return {kind: sorted(json.dumps(canonical_tree(i), sort_keys=True) for i in items)}
        if isinstance(v.get("tensor"), dict):
            t = v["tensor"]
            keep = ("dtype", "shape", "sha256", "kind", "requires_grad", "attrs")
            return {"tensor": {k: canonical_tree(t[k]) for k in keep if k in t}}
        return {k: canonical_tree(x) for k, x in v.items()}
    if isinstance(v, list):
        return [canonical_tree(x) for x in v]
    return v
