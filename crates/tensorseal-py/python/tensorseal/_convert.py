"""``convert``: a legacy checkpoint in, a tensorseal file out, nothing executed; as
``tensorseal convert`` does it."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import warnings

from . import _convert_child, _native
from ._api import _is_url, _keys, _local_copy, _path, compression
from ._errors import InvalidInputError, SandboxWarning

SANDBOX_MODES = ("best-effort", "required", "off")


def sandbox_arg(sandbox):
    if sandbox not in SANDBOX_MODES:
        raise InvalidInputError(
            f"sandbox must be 'best-effort', 'required' or 'off', not {sandbox!r}")
    return sandbox


@dataclasses.dataclass(frozen=True)
class SandboxReport:
    """What the OS sandbox enforced during a conversion."""

    mode: str  # best-effort, required or off
    fully_enforced: bool  # Landlock and seccomp both in force on every thread
    seccomp: bool
    landlock: str  # "Enforced { abi: N }", "Partial { abi: N }", "NotApplied { reason: ... }"
    landlock_all_threads: bool
    no_new_privs: bool
    threads: int  # threads of the (child) process at lock-down
    warnings: list  # what could not be applied, one line each
    child_process: bool  # whether the conversion ran in a child process (sandbox != "off")

    def to_dict(self) -> dict:
        """The ``sandbox`` member of ``tensorseal convert --json`` (all but ``child_process``,
        which only the Python API has)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del d["child_process"]
        d["warnings"] = list(self.warnings)
        return d


@dataclasses.dataclass(frozen=True)
class ConvertReport:
    """What :func:`convert` wrote."""

    input: str
    output: str
    source_format: str  # torch-zip, torch-legacy, pickle, npy, npz, safetensors, hf-index
    source_sha256: str  # of the input file (the index file of a sharded checkpoint)
    manifest_sha256: str
    file_length: int
    tensors: int
    blobs: int
    bytes: int  # tensor bytes written, before compression
    shared: int  # tensors that reuse another's blob (tied weights)
    signed_by: list  # key ids
    inert_objects: list  # unknown classes kept as inert records (allow_objects=True)
    notes: list
    sandbox: SandboxReport
    # A DCP folder converted to a shard set (``dst`` a folder): manifest_sha256 and file_length
    # are the index's, and each shard is {"file", "length", "manifest_sha256"}.
    shard_set: bool = False
    shards: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON object ``tensorseal convert --json`` prints for this conversion."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if not self.shard_set:
            del d["shard_set"], d["shards"]
        d["sandbox"] = self.sandbox.to_dict()
        d.update(ok=True, exit_code=0, error=None)
        return d


def convert(src, dst, sign_with=None, compress=None, allow_objects=False, metadata=None,
            sandbox="best-effort") -> ConvertReport:
    """Converts a legacy checkpoint to a signed tensorseal file, as ``tensorseal convert``.

    ``src`` is a torch checkpoint (zip or legacy format), a plain pickle of numpy arrays and
    Python values, a numpy ``.npy`` / ``.npz``, a safetensors file, or the ``*.index.json`` of a
    Hugging Face sharded checkpoint; the format is recognised from the content, never from the
    name. Pickles are interpreted as data by tensorseal's own pickle machine: nothing in the
    file is imported or called. ``dst`` is written atomically (temporary file, fsync, rename):
    a refused or failed conversion creates nothing and leaves an existing ``dst`` untouched.
    Same input and options give a byte-identical file.

    ``sign_with``: private key(s) (PKCS#8 PEM path or bytes). ``compress``: ``None``,
    ``"auto"``, ``"planes"``, ``"zstd"`` or ``"zstd=LEVEL"`` (1-22), as for :func:`tensorseal.save`. ``metadata``: extra signed ``str -> str`` entries;
    ``producer``, ``source_format`` and ``source_sha256`` are set by the converter.
    ``allow_objects=True`` keeps instances of unknown classes as inert records instead of
    refusing the file.

    A ``torch.distributed.checkpoint`` folder converts to one consolidated file, or, when
    ``dst`` is a folder (an existing directory, or a path ending in ``/``), to a signed shard
    set that :mod:`tensorseal.dcp` loads at any world size (``report.shards`` lists it; the
    folder must not hold ``.tseal`` files yet); as ``tensorseal convert DCP_DIR SET/``.

    ``sandbox``: ``"best-effort"`` (default) and ``"required"`` run the conversion in a fresh
    child process that locks itself down (seccomp: no exec, no new sockets, no ptrace, ...;
    Landlock: read only the inputs, write only the output's directory) before parsing a byte;
    the calling process is never restricted. Best effort warns (:class:`SandboxWarning`) about
    what the kernel cannot enforce; ``"required"`` raises :class:`SandboxError` instead.
    ``"off"`` converts in this process, unsandboxed (the converter still executes nothing).

    Raises :class:`UnsafeError` (code-execution content; always) or
    :class:`UnknownObjectError` (unknown classes without ``allow_objects``), both
    :class:`RefusedError` (the CLI's exit 4); :class:`InvalidInputError` for malformed or
    unsupported input and I/O errors (exit 1; ``kind`` says which). Messages are the CLI's.
    """
    src_path, dst_path = _path(src, "src"), _path(dst, "dst")
    compress = compression(compress)
    if not isinstance(allow_objects, bool):
        raise InvalidInputError(f"allow_objects must be a bool, not {allow_objects!r}")
    meta = {}
    for k, v in (metadata or {}).items():
        if type(k) is not str or type(v) is not str:
            raise InvalidInputError(f"metadata must map str to str, got {k!r}: {v!r}")
        meta[k] = v
    sandbox = sandbox_arg(sandbox)
    signers = _keys(sign_with, "sign_with")
    if _is_url(src_path) or _is_url(dst_path):
        return _convert_remote(src_path, dst_path, signers, compress, allow_objects, meta,
                               sandbox)
    if sandbox == "off":
        report = _native.convert(src_path, dst_path, signers, compress, allow_objects, meta, "off")
    else:
        report = _convert_child.run({
            "op": "convert", "src": src_path, "dst": dst_path,
            "signers": [(label, base64.b64encode(key).decode()) for label, key in signers],
            "compress": compress, "allow_objects": allow_objects, "metadata": meta,
            "sandbox": sandbox}, output=dst_path)
    r = json.loads(report)
    for w in r["sandbox"]["warnings"]:
        warnings.warn(f"sandbox: {w}", SandboxWarning, stacklevel=2)
    return ConvertReport(
        input=src_path, output=dst_path,
        sandbox=SandboxReport(child_process=sandbox != "off", **r.pop("sandbox")), **r)


def _convert_remote(src, dst, signers, compress, allow_objects, meta, sandbox):
    """``convert`` with an ``s3://`` source or destination: the source is downloaded first (its
    range GETs pinned to one object, whose URL, ETag and version id become signed metadata
    next to ``source_sha256``), the conversion runs on local files as usual (sandboxed in its
    child process), and the result is uploaded in one multipart upload completed only after
    its last part, from this process, which the sandbox never restricts."""
    with contextlib.ExitStack() as stack:
        local_src, local_dst, meta = src, dst, dict(meta)
        if _is_url(src):
            local_src = stack.enter_context(_local_copy(src))
            _, etag, version = _native.download(src, local_src)
            etag = None if etag is None else etag.strip("\"")
            for key, value in (("source_url", src), ("source_etag", etag),
                               ("source_version", version)):
                if value is not None:
                    meta.setdefault(key, value)
        if _is_url(dst):
            local_dst = stack.enter_context(_local_copy(dst))
        report = convert(local_src, local_dst, sign_with=[k for _, k in signers],
                         compress=compress, allow_objects=allow_objects, metadata=meta,
                         sandbox=sandbox)
        if _is_url(dst):
            _native.upload(local_dst, dst)
        return dataclasses.replace(report, input=src, output=dst)
