"""The public functions: load, open, save, verify."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time

from . import _native
from ._audit import audited
from ._encode import Encoder
from ._devices import Placement
from ._errors import InvalidInputError, VerificationError
from ._restore import FRAMEWORKS, Restorer, materialize


# -- arguments ---------------------------------------------------------------------------------
_KEY_FILE_MAX = 1 << 20
_KEY_FILES_CACHED = 64
_KEY_FILE_SETTLED_NS = 2_000_000_000
# path -> (identity from stat, bytes) of trusted public keys: read again only when the file
# changes (another inode, size, mtime or ctime), since opening one costs more than a lazy open's
# parse of its manifest. The Rust side caches what the bytes parse to. Private keys are never
# kept.
_key_files = {}


def _key_file(path, cache):
    name = os.fspath(path)
    try:
        st = os.stat(name)
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        hit = _key_files.get(name) if cache else None
        if hit is not None and hit[0] == ident:
            return hit[1]
        if st.st_size > _KEY_FILE_MAX:
            raise InvalidInputError(
                f"{name}: {st.st_size} bytes, too large for a key file (at most {_KEY_FILE_MAX})")
        with _builtin_open(name, "rb", buffering=0) as f:
            # Sized by stat: read(1 MiB) would allocate a megabyte per key every time.
            data = f.read(st.st_size + 1) if st.st_size else f.read(_KEY_FILE_MAX)
    except OSError as e:
        raise InvalidInputError(f"{name}: cannot read key: {e}") from None
    # As git does for its index: a file changed within the last seconds may change again with
    # the same coarse timestamp and size, so only files older than that are remembered.
    if cache and len(data) == st.st_size and time.time_ns() - st.st_ctime_ns > _KEY_FILE_SETTLED_NS:
        if len(_key_files) >= _KEY_FILES_CACHED:
            _key_files.clear()
        _key_files[name] = (ident, data)
    return data


def _keys(keys, arg, public=False):
    """Key arguments as ``[(label, bytes)]``: each is a path (``str`` / ``os.PathLike``) to a
    key file, or the key itself as ``bytes``. ``public``: trusted public keys, whose files may
    be remembered."""
    if keys is None:
        return []
    if isinstance(keys, (str, bytes, bytearray, memoryview, os.PathLike)):
        keys = [keys]
    out = []
    for i, k in enumerate(keys):
        if isinstance(k, (bytes, bytearray, memoryview)):
            out.append((f"{arg}[{i}]", bytes(k)))
        elif isinstance(k, (str, os.PathLike)):
            out.append((os.fspath(k), _key_file(k, public)))
        else:
            raise InvalidInputError(
                f"{arg}[{i}]: a key is a path or bytes, not {type(k).__name__}")
    return out


_builtin_open = open  # noqa: A001 - `open` below is tensorseal.open


def _path(path, arg="path"):
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise InvalidInputError(f"{arg} must be a path, not {type(path).__name__}")
    return os.fsdecode(os.fspath(path))


def _framework(framework):
    if framework not in FRAMEWORKS:
        raise InvalidInputError(f"framework must be 'torch' or 'numpy', not {framework!r}")
    return framework


MODES = ("copy", "mmap")


def _mode(mode, mmap=None):
    """``mode``, with torch.load's ``mmap=True`` as an alias of ``mode="mmap"``."""
    if mmap is not None and type(mmap) is not bool:
        raise InvalidInputError(f"mmap must be True, False or None, not {mmap!r}")
    if mmap:
        if mode not in (None, "mmap"):
            raise InvalidInputError(f"mmap=True contradicts mode={mode!r}")
        mode = "mmap"
    if mode is None:
        mode = "copy"
    if mode not in MODES:
        raise InvalidInputError(f"mode must be 'copy' or 'mmap', not {mode!r}")
    return mode


#: Leading bytes of the formats people pass to load() before converting them, for the error.
_NOT_CONVERTED = (
    (b"PK\x03\x04", "a zip archive (torch.save's format since torch 1.6, or .npz)"),
    (b"\x80", "a pickle (torch.save's legacy format or a plain pickle)"),
    (b"\x93NUMPY", "a numpy .npy file"),
)


def _unconverted_hint(path):
    """What to say when ``path`` is a legacy checkpoint rather than a tensorseal file: the
    bytes are only looked at, never unpickled."""
    try:
        with _builtin_open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    for magic, what in _NOT_CONVERTED:
        if head.startswith(magic):
            break
    else:
        if len(head) >= 262 and head[257:262] == b"ustar":
            what = "a tar archive (torch's pre-0.1.10 format)"
        elif len(head) > 8 and head[8:9] == b"{":
            what = "a safetensors file"
        else:
            return None
    return (f"{path} is {what}, not a tensorseal file, and was not unpickled or executed: "
            f"convert it first with tensorseal.convert({path!r}, 'model.tseal', sign_with=...) "
            f"or `tensorseal convert`, then load the result")


def _policy(path, trust, verify, threshold, expect, min_step, policy=None):
    """Arguments for the native open/verify: (keys, threshold, expect, min_step, authenticate)."""
    if policy is not None:
        # The policy file (spec/POLICY.md) names the keys and the threshold itself.
        if trust or not verify or threshold != 1:
            raise InvalidInputError(
                "policy= replaces trust= and threshold= and needs verify=True; drop the others")
        keys = []
    elif verify:
        keys = _keys(trust, "trust", public=True)
        if not keys:
            raise VerificationError(
                f"{path}: no trusted keys given: pass trust=[public key path or bytes], or "
                f"verify=False to check integrity without authenticity", "no_trust")
    elif trust:
        raise InvalidInputError(
            "trust was given with verify=False; drop one (verify=False checks integrity only)")
    else:
        keys = []
    if type(threshold) is not int or threshold < 1:
        raise InvalidInputError(f"threshold must be an int >= 1, not {threshold!r}")
    expect = dict(expect or {})
    for k, v in expect.items():
        if type(k) is not str or type(v) is not str:
            raise InvalidInputError(f"expect must map str to str, got {k!r}: {v!r}")
    if min_step is not None and (type(min_step) is not int or not 0 <= min_step < 2**64):
        raise InvalidInputError(f"min_step must be a non-negative int, not {min_step!r}")
    return keys, threshold, expect, min_step, bool(verify)


def _open_native(path, trust, verify, threshold, expect, min_step, mode, policy=None):
    path = _path(path)
    try:
        args = _policy(path, trust, verify, threshold, expect, min_step, policy)
        return _native.open(path, *args, mode == "mmap",
                            policy_file=None if policy is None else _path(policy, "policy"))
    except VerificationError as e:
        # Also without keys: the first call people try is tensorseal.load("model.pt").
        hint = _unconverted_hint(path) if e.kind in ("malformed", "no_trust") else None
        if hint is None:
            raise
        # The kind stays what `tensorseal verify --json` says for the file (or no_trust).
        raise VerificationError(f"{e}; {hint}", e.kind) from None


# -- load --------------------------------------------------------------------------------------
@audited("load")
def load(path, trust=None, *, framework="torch", verify=True, threshold=1, expect=None,
         min_step=None, mode=None, map_location=None, mmap=None, weights_only=None,
         policy=None):
    """Loads a checkpoint, verified first, and returns the object that was saved.

    ``trust`` is the public keys you trust (paths of PEM/DER key files, or key bytes); at
    least ``threshold`` of them must have signed the file. ``expect`` (``{"run_id": "..."}``)
    and ``min_step`` require signed metadata values, refusing a validly signed but wrong or
    older checkpoint (rollback). ``policy`` (a path) is a trust policy file (spec/POLICY.md:
    named keys, validity windows, revoked key ids, per-key run_id patterns, threshold,
    minimum step) used instead of ``trust`` and ``threshold``, with the CLI's semantics.

    The signatures are checked before the manifest is parsed; then every tensor's bytes are
    checked against the signed digests, and only then is anything built. Nothing is returned
    unless every check passed: a failure raises :class:`VerificationError`. ``mode`` says where
    the verified bytes live:

    - ``"copy"`` (the default): each tensor's bytes are read from the file **into the memory
      that the returned tensor uses** and hashed there, so a file changed on disk during or
      after loading cannot slip in. Costs a copy and fresh memory for every byte.
    - ``"mmap"``: the file is mapped private and copy-on-write, every raw tensor is hashed in
      place in the mapping (in parallel), and the returned tensors and arrays are zero-copy,
      writable views of it: writing one changes the process's private copy of those pages,
      never the file. The mapping stays alive while any of them does (it is unmapped when the
      last is garbage-collected). Compressed tensors are decoded into memory of their own,
      verified there. **Pages not written remain the file's page cache: if the file is
      modified after verification, the tensors show the new bytes, unverified, and if it is
      truncated, touching them crashes the process (SIGBUS).** Use ``"mmap"`` only for files
      nobody can write once you have verified them (read-only storage, fs-verity, a sealed
      memfd): the exposure of safetensors' and ``torch.load(mmap=True)``'s mappings, with
      verification added. Tensors loaded this way cannot be resized in place.

    ``verify=False`` skips authenticity only (who signed; ``trust`` must then be omitted):
    integrity is still checked, every byte against its digest and any signature present
    against its own key, so corruption is detected but an attacker who rewrites the file is
    not. Without ``trust`` and with ``verify=True`` (the default) loading refuses.

    ``framework="torch"`` returns torch tensors (``nn.Parameter``, ``requires_grad`` and
    tensor attributes restored) and numpy arrays where numpy arrays were saved.
    ``framework="numpy"`` returns every tensor as a numpy array (parameter kind,
    ``requires_grad`` and tensor attributes are dropped) and never imports torch: torch
    values (``torch.Size``, ``dtype``, ``device``) come back as :class:`Typed` records.
    bfloat16 and float8 tensors need the ``ml_dtypes`` package there; without it they raise
    :class:`UnsupportedError` naming the tensor, before anything is read.

    Tensors that shared memory when saved (tied weights) share memory when loaded. Classes the
    producer did not know come back as inert :class:`Object` / :class:`Global` records;
    nothing named in the file is ever imported or called.

    The arguments of ``torch.load`` work as there, so a call can switch by its name:

    - ``map_location``: a str or :class:`torch.device` (every tensor goes there), a dict of
      saved location to device, or a callable ``(storage, location) -> storage | None``. The
      bytes are verified before they reach the device: for CUDA each blob is read and hashed
      into pinned host memory (the one host copy), then copied to the device. A tensorseal
      file records host bytes, not the device a tensor was saved from, so the saved location
      is always ``"cpu"``: a dict remap applies only to ``"cpu"``, and a callable is called
      with ``(storage, "cpu")``. Not available with ``framework="numpy"``.
    - ``mmap=True`` is ``mode="mmap"``.
    - ``weights_only`` is accepted and ignored: nothing in a tensorseal file is executed
      either way, and every object it holds is restored as data or an inert record.

    A legacy checkpoint (a ``torch.save`` zip, a pickle, ...) given by mistake is never
    unpickled: it fails verification (kind ``malformed``, or ``no_trust`` without keys) with a
    message naming :func:`tensorseal.convert`.
    """
    del weights_only  # nothing executes either way (docstring)
    framework = _framework(framework)
    placement = Placement(map_location, framework)
    native = _open_native(path, trust, verify, threshold, expect, min_step, _mode(mode, mmap),
                          policy)
    try:
        return materialize(native, native.tree(), framework, placement)
    finally:
        native.close()


# -- lazy handle -------------------------------------------------------------------------------
class Checkpoint:
    """A verified file open for partial loading; see :func:`open`.

    Opening checked the signatures, manifest and metadata but read no tensor data. Each
    :meth:`get` checks one tensor's bytes against the signed digests before returning it:
    in ``"copy"`` mode it reads them from the file into new memory, in ``"mmap"`` mode it
    verifies them in place in the mapping (the first time that tensor's blob is used) and
    returns a view of them, so two ``get`` of one tensor share memory.
    """

    def __init__(self, native, path, framework, placement=None):
        self._native = native
        self.path = path
        self.framework = framework
        self._placement = placement
        self._names = None  # tensor names in document order, on first use
        self._by_name = None  # name -> [document-order index]

    # context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Closes the file. In ``"mmap"`` mode, tensors already returned stay valid: the mapping
        is unmapped when the last of them is gone."""
        self._native.close()

    @property
    def closed(self) -> bool:
        return self._native.closed

    @property
    def mode(self) -> str:
        """``"copy"`` or ``"mmap"``, as opened."""
        return self._native.mode

    # what is known without reading tensors
    @property
    def metadata(self) -> dict:
        """The signed metadata (``run_id``, ``step``, ...)."""
        return self._native.metadata()

    @property
    def signers(self) -> list:
        """Every signature's key id and whether it is trusted."""
        return [Signer(k, t) for k, t in self._native.signers()]

    @property
    def manifest_sha256(self) -> str:
        return self._native.manifest_sha256()

    def _name_list(self):
        if self._names is None:
            self._names = self._native.names()
        return self._names

    def _index(self):
        # Built only when a name is looked up: listing names is the common first call and
        # needs no dict.
        if self._by_name is None:
            by_name = {}
            for i, name in enumerate(self._name_list()):
                by_name.setdefault(name, []).append(i)
            self._by_name = by_name
        return self._by_name

    def names(self) -> list:
        """Tensor names in document order, dotted as ``tensorseal inspect`` shows them."""
        return list(self._name_list())

    def keys(self):
        return self.names()

    def __iter__(self):
        return iter(self.names())

    def __len__(self):
        return len(self._name_list())

    def __contains__(self, name):
        return name in self._index()

    def _form(self, name):
        found = self._index().get(name)
        if not found:
            raise KeyError(name)
        if len(found) > 1:
            raise KeyError(f"{name!r} names {len(found)} tensors (keys containing dots?); "
                           f"use .tree to reach them")
        return self._native.tensor(found[0])

    def info(self, name):
        """Dtype, shape, kind and size of a tensor, without reading it."""
        form = self._form(name)
        return Restorer(self.framework, {}, placeholders=True,
                        names=self._names_by_index()).tensor(form, [name])

    def _names_by_index(self):
        return dict(enumerate(self._name_list()))

    @property
    def tree(self):
        """The saved structure with every tensor replaced by its :class:`TensorInfo`."""
        return Restorer(self.framework, {}, placeholders=True,
                        names=self._names_by_index()).restore(self._native.tree())

    def get(self, name):
        """Verifies and returns one tensor (a torch tensor, or numpy array)."""
        return materialize(self._native, self._form(name), self.framework, self._placement)

    def __getitem__(self, name):
        return self.get(name)

    def load(self):
        """Verifies everything and returns the same object :func:`load` returns."""
        return materialize(self._native, self._native.tree(), self.framework, self._placement)

    def __repr__(self):
        state = "closed" if self.closed else f"{len(self)} tensors"
        return f"<tensorseal.Checkpoint {self.path!r} ({state}, {self.mode})>"


@audited("open")
def open(path, trust=None, *, framework="torch", verify=True, threshold=1, expect=None,  # noqa: A001
         min_step=None, mode=None, map_location=None, mmap=None, policy=None) -> Checkpoint:
    """Opens a file for partial loading, with the same checks and arguments as :func:`load`
    up to the tensor data: the signatures (before the manifest is parsed), the manifest and
    the metadata expectations. No tensor byte is read; :meth:`Checkpoint.get` verifies one
    tensor at a time. ``mode`` is as for :func:`load`: ``"mmap"`` maps the file (the one
    opened) when a tensor is first used and verifies each tensor in place the first time, with
    the same exposure to later changes of the file. Use it as a context manager::

        with tensorseal.open("model.tseal", trust=["ci.pub"]) as ckpt:
            w = ckpt.get("model.embed.weight")
    """
    framework = _framework(framework)
    placement = Placement(map_location, framework)
    native = _open_native(path, trust, verify, threshold, expect, min_step, _mode(mode, mmap),
                          policy)
    return Checkpoint(native, _path(path), framework, placement)


# -- save --------------------------------------------------------------------------------------
def compression(compress):
    """The canonical spelling of a ``compress=`` argument (``None`` stays ``None``), checked by
    the parser the CLI's ``--compress`` uses, before any work starts."""
    if compress is None:
        return None
    if not isinstance(compress, str):
        raise InvalidInputError(f"compress must be None or a str such as 'zstd=3', not {compress!r}")
    return _native.canonical_compression(compress)


def save(obj, path, sign_with=None, compress=None, metadata=None, allow_objects=False) -> None:
    """Saves ``obj`` to ``path`` (atomically: written to a temporary file, synced, renamed).
    ``path`` may be ``s3://BUCKET/KEY``: the file is written locally in full, then uploaded in
    one multipart upload that completes only after its last part (nothing appears under the key
    before, and a failure aborts it, leaving an existing object untouched).

    Accepts what :func:`load` returns: dict, OrderedDict (with attributes such as a state
    dict's ``_metadata``), Counter, list, tuple, set, frozenset, str, bytes, bytearray, int
    (any size), float, complex, bool, None, slice, argparse.Namespace, torch tensors and
    ``nn.Parameter`` of every dtype (on any device; stored as CPU bytes), numpy arrays and
    scalars, torch.Size, torch.dtype, torch.device, and :class:`Object` / :class:`Global` /
    :class:`Typed` records. Anything else raises :class:`UnsupportedError` naming where it is
    in ``obj``, unless ``allow_objects=True``: then it is recorded as an inert :class:`Object`
    (its class's module and name, and the arguments and state its ``__reduce_ex__`` gives,
    encoded like everything else), as ``tensorseal convert --allow-objects`` records unknown
    classes; :func:`load` gives that record back and never imports the class. Nothing is ever
    pickled.

    ``sign_with``: a private key (PKCS#8 PEM file path, or its bytes), or several.
    ``compress``: ``None`` (raw, zero-copy readable), ``"auto"`` (the plane codec where it saves
    5%: exponent planes entropy-coded, best on float weights), ``"planes"`` (the plane codec
    wherever it saves anything), ``"zstd"`` (byte-grouped zstd, level 1) or ``"zstd=LEVEL"``
    (1-22; ``"zstd:LEVEL"`` is read too), as ``tensorseal convert --compress`` takes it; with
    ``"auto"`` and zstd a tensor is stored raw unless compressing saves 5%. Plane-coded files
    are format version 2 (readable by this release on). ``metadata``: signed ``str -> str``
    entries (spec §5: e.g. ``run_id``, ``step``).

    Deterministic: the same object gives a byte-identical file. Set elements are ordered by
    their canonical encoding (not by hash), dicts keep insertion order, tensors that share
    memory exactly (tied weights) are stored once.
    """
    path = _path(path)
    compress = compression(compress)
    meta = {}
    for k, v in (metadata or {}).items():
        if type(k) is not str or type(v) is not str:
            raise InvalidInputError(f"metadata must map str to str, got {k!r}: {v!r}")
        meta[k] = v
    signers = _keys(sign_with, "sign_with")
    enc = Encoder(allow_objects=bool(allow_objects))
    root = enc.node(obj)
    if not _is_url(path):
        _native.save(path, root, enc.sources, meta, signers, compress)
        return
    with _local_copy(path) as local:
        _native.save(local, root, enc.sources, meta, signers, compress)
        _native.upload(local, path)


def _is_url(path):
    return isinstance(path, str) and path.startswith("s3://")


@contextlib.contextmanager
def _local_copy(url):
    """A fresh local file name for what goes to (or comes from) ``url``, removed afterwards:
    a save or conversion to ``s3://`` is written there in full, then uploaded in one multipart
    upload that is completed only after its last part (so no half-written object ever appears
    under the key, and a failure leaves an existing object untouched)."""
    with tempfile.TemporaryDirectory(prefix="tensorseal-s3-") as d:
        yield os.path.join(d, os.path.basename(url.rstrip("/")) or "object")


# -- verify ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Signer:
    """A valid signature on a file."""

    key_id: str
    trusted: bool
    name: str = None  # the key's name in the trust policy file, if any
    refused: str = None  # why a policy rule did not count it (e.g. "key_expired"), if it did not


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` established."""

    manifest_sha256: str
    file_length: int
    signers: list
    authenticated: bool  # False in digests-only mode: authenticity was NOT checked
    blobs: int
    chunks: int
    bytes: int  # bytes hashed (stored plus decoded)


@audited("verify")
def verify(path, trust=None, *, threshold=1, expect=None, min_step=None,
           digests_only=False, policy=None) -> VerifyReport:
    """Verifies a whole file as ``tensorseal verify`` does: signatures by at least
    ``threshold`` trusted keys, metadata expectations, every digest. Raises
    :class:`VerificationError` (without ``trust`` too, unless ``digests_only``, which checks
    integrity only and reports ``authenticated=False``). ``policy`` is a trust policy file,
    as for :func:`load`."""
    path = _path(path)
    args = _policy(path, trust, not digests_only, threshold, expect, min_step, policy)
    r = _native.verify(path, *args, policy_file=None if policy is None else _path(policy, "policy"))
    return VerifyReport(
        manifest_sha256=r["manifest_sha256"], file_length=r["file_length"],
        signers=[Signer(*s) for s in r["signers"]], authenticated=r["authenticated"],
        blobs=r["blobs"], chunks=r["chunks"], bytes=r["bytes_hashed"])


def generate_key() -> tuple:
    """A new Ed25519 key pair as ``(private_pem, public_pem)`` bytes, the files
    ``tensorseal keygen`` writes. Keep the private key secret."""
    return _native.generate_key()


def key_id(key) -> str:
    """The key id (spec §6) of a public or private key given as a path or bytes."""
    [(label, data)] = _keys(key, "key")
    return _native.key_id(label, data)
