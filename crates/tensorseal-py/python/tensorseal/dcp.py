"""A signed, pickle-free storage backend for ``torch.distributed.checkpoint`` (DCP).

::

    import torch.distributed.checkpoint as dcp
    from tensorseal.dcp import SealReader, SealWriter

    dcp.save(state_dict, storage_writer=SealWriter("ckpt/step-100", sign_with="rank.key",
                                                  run_id="run-7", step=100))
    dcp.load(state_dict, storage_reader=SealReader("ckpt/step-100", trust=["rank.pub"]))

Every rank writes its own shard ``__{rank}_0.tseal``, a tensorseal file signed with the rank's
key that holds the rank's tensor chunks as blobs and its non-tensor values (``int``, ``float``,
``str``, lists, dicts, ...) as the manifest's typed tree; nothing is gathered to the coordinator.
When every shard is in place the coordinator writes ``index.tseal``, the signed shard index: DCP's
global metadata (every tensor's size, dtype and chunks, the non-tensor entries, where each one is
stored) and, for every shard, its file name, byte length and manifest SHA-256 (spec §11). The
index is written last and atomically (temporary file, fsync, rename), so a save that fails or is
killed on any rank leaves no index and nothing that verifies.

The reader verifies the index's signature before parsing it, then, on every rank and before any
tensor is restored, that the folder holds exactly the shards the index lists and that each is
signed by a trusted key and has the length and manifest digest the index binds: a shard from
another checkpoint, step or run, a missing, extra, renamed or truncated shard raises
:class:`tensorseal.VerificationError`. Each rank then reads only the chunks its plan needs (one
positioned read per chunk, verified against the signed digests) and copies the requested slices
into the state dict, so loading at another world size (resharding) works as with DCP's
``FileSystemReader``. No pickle is written or read.

The checkpoint location may be a folder in a bucket, ``s3://BUCKET/PREFIX`` (configured as for
:func:`tensorseal.load`): each rank writes its shard to a local temporary file and uploads it in
one multipart upload completed after its last part, and the coordinator uploads the index the
same way, last; the reader lists the prefix to check that it holds exactly the listed shards, and
reads each rank's chunks by range GETs pinned to the object it verified.

``VerificationError.kind`` adds, for shard sets: ``shard_missing`` (a listed shard is absent),
``shard_unlisted`` (a ``.tseal`` file the index does not list), ``shard_mismatch`` (length or
manifest digest differs from the index), ``index_invalid`` (a signed index whose content is not
a valid shard index).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import uuid

import torch
from torch.distributed.checkpoint.metadata import (BytesStorageMetadata, ChunkStorageMetadata,
                                                   Metadata, MetadataIndex, StorageMeta,
                                                   TensorProperties, TensorStorageMetadata)
from torch.distributed.checkpoint.planner import (LoadItemType, LoadPlan, LoadPlanner, SavePlan,
                                                  SavePlanner, WriteItemType)
from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
from torch.futures import Future

from . import _native
from ._api import _is_url, _keys, _local_copy, _path, _policy, compression
from ._encode import Encoder
from ._errors import InvalidInputError, UnsupportedError, VerificationError
from . import _dtypes
from ._restore import materialize

__all__ = ["SealWriter", "SealReader", "save", "load", "verify", "ShardSetReport", "INDEX_NAME",
           "INDEX_FORMAT"]

#: File name of the signed shard index inside a checkpoint folder.
INDEX_NAME = "index.tseal"
#: The ``format`` value of a shard index's tree (spec §11).
INDEX_FORMAT = "tensorseal.dcp.index/1"
#: Suffix of shard (and index) files; any other file in the folder is ignored.
SUFFIX = ".tseal"
#: SealReader reads and verifies the chunks a rank needs in batches of at most this many bytes
#: (a chunk larger than this is one batch), each batch verified before any of it is copied: the
#: memory a rank needs beyond its state dict (bench/python_dcp.py measures it).
READ_BATCH_BYTES = 32 << 20

# Names of the TensorProperties values DCP uses, and only these (no getattr by a file's name).
_LAYOUTS = {"strided": torch.strided}
_MEMORY_FORMATS = {
    "contiguous_format": torch.contiguous_format,
    "channels_last": torch.channels_last,
    "preserve_format": torch.preserve_format,
}
_HAS_STRIDES = "strides" in {f.name for f in dataclasses.fields(TensorProperties)}
try:  # the DCP version FileSystemWriter records (torch >= 2.4)
    from torch.distributed.checkpoint.filesystem import CURRENT_DCP_VERSION as _DCP_VERSION
except ImportError:  # pragma: no cover
    _DCP_VERSION = None


def _shard_name(rank: int) -> str:
    return f"__{rank}_0{SUFFIX}"


@dataclasses.dataclass(frozen=True)
class _ShardPlan:
    """A rank's part of the global save plan: the shard file it writes."""

    file: str
    rank: int


@dataclasses.dataclass(frozen=True)
class _Stored:
    """Where one write item is stored: a shard file and the top-level key of its tree. The
    writer also reports the finished shard's length and manifest digest for the index."""

    file: str
    key: str
    shard_length: int = 0
    shard_manifest_sha256: str = ""


def _write_tseal(path, pairs, enc, metadata, signers, compress=None):
    """Writes a tensorseal file whose tree is the dict ``pairs`` (already encoded) and returns
    ``(length, manifest SHA-256 hex)``; atomically (temporary file, fsync, rename; for an
    ``s3://`` path a local file, then one multipart upload completed after its last part)."""
    if not _is_url(path):
        return _native.save(path, ("dict", pairs), enc.sources, metadata, signers, compress)
    with _local_copy(path) as local:
        written = _native.save(local, ("dict", pairs), enc.sources, metadata, signers, compress)
        _native.upload(local, path)
    return written


def _join(folder, name):
    """``folder/name`` for a local folder or an ``s3://`` prefix alike."""
    return f"{folder.rstrip('/')}/{name}" if _is_url(folder) else os.path.join(folder, name)


def _listing(folder):
    """``{name: length}`` of the files (objects) directly in ``folder``."""
    if _is_url(folder):
        return dict(_native.list_folder(folder))
    return {n: os.stat(os.path.join(folder, n)).st_size for n in os.listdir(folder)}


def _meta(kind, run_id, step, **extra):
    meta = {"tensorseal.dcp": kind}
    if run_id is not None:
        meta["run_id"] = run_id
    if step is not None:
        meta["step"] = str(step)
    meta.update(extra)
    return meta


# -- writer ------------------------------------------------------------------------------------
class SealWriter(StorageWriter):
    """A DCP ``StorageWriter`` that writes a signed shard per rank and a signed shard index.

    ``path``: the checkpoint folder (created if missing; it must not hold ``.tseal`` files yet).
    ``sign_with``: this rank's private key (PKCS#8 PEM path or bytes), or several; every shard
    and the index are signed with it. ``run_id`` and ``step`` are written as signed metadata of
    every file (``SealReader(expect={"run_id": ...}, min_step=...)`` checks them).

    Non-tensor values are stored as the typed tree (ints, floats, str, bytes, bool, None, lists,
    tuples, dicts, sets, torch.Size/dtype/device, tensors inside them). A value the tree cannot
    represent raises :class:`tensorseal.UnsupportedError` naming its fully qualified name,
    unless ``allow_objects=True``: then it is stored as an inert :class:`tensorseal.Object`
    record (class name, ``__reduce_ex__`` arguments and state), which loading gives back as that
    record, never importing the class.

    ``compress``: as for :func:`tensorseal.save` (``None``, ``"auto"``, ``"planes"``, ``"zstd"``,
    ``"zstd=LEVEL"``); each rank's shard is compressed on that rank, chunk by chunk.
    """

    def __init__(self, path, sign_with, run_id=None, step=None, allow_objects=False,
                 compress=None):
        super().__init__()
        self.path = _path(path)
        self._signers = _keys(sign_with, "sign_with")
        if not self._signers:
            raise InvalidInputError("sign_with: a private key is required (path or bytes)")
        if run_id is not None and type(run_id) is not str:
            raise InvalidInputError(f"run_id must be a str, not {type(run_id).__name__}")
        if step is not None and (type(step) is not int or not 0 <= step < 2**64):
            raise InvalidInputError(f"step must be a non-negative int, not {step!r}")
        self.run_id = run_id
        self.step = step
        self.allow_objects = bool(allow_objects)
        self.compress = compression(compress)
        self.is_coordinator = False
        self.save_id = uuid.uuid4().hex

    @property
    def checkpoint_id(self):
        return self.path

    def reset(self, checkpoint_id=None) -> None:
        if checkpoint_id:
            self.path = _path(checkpoint_id, "checkpoint_id")
        self.save_id = uuid.uuid4().hex

    def set_up_storage_writer(self, is_coordinator: bool, *args, **kwargs) -> None:
        self.is_coordinator = is_coordinator
        if not kwargs.get("use_collectives", True):
            raise UnsupportedError(
                "tensorseal.dcp.SealWriter needs use_collectives=True: the coordinator writes "
                "one signed index for all ranks' shards")

    def storage_meta(self):
        return StorageMeta(checkpoint_id=self.path, save_id=self.save_id)

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        if not _is_url(self.path):  # a bucket prefix needs no creating
            os.makedirs(self.path, exist_ok=True)
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        # On the coordinator, before any rank writes: a folder that already holds shards or an
        # index would mix two checkpoints (and a stale shard would make this one unloadable).
        try:
            present = sorted(n for n in _listing(self.path) if n.endswith(SUFFIX))
        except OSError as e:
            raise InvalidInputError(
                f"{self.path}: cannot list the checkpoint folder: {e}") from None
        if present:
            raise InvalidInputError(
                f"{self.path}: the folder already holds {', '.join(present[:4])}"
                f"{' ...' if len(present) > 4 else ''}: save each checkpoint to a fresh folder")
        return [dataclasses.replace(p, storage_data=_ShardPlan(_shard_name(i), i))
                for i, p in enumerate(plans)]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future:
        shard = plan.storage_data
        if not isinstance(shard, _ShardPlan):
            raise UnsupportedError("SealWriter.write_data: the plan was not prepared by SealWriter")
        fut: Future = Future()
        items = list(plan.items)
        if not items:
            fut.set_result([])
            return fut
        enc = Encoder(allow_objects=self.allow_objects)
        pairs, stored = [], []
        for i, item in enumerate(items):
            fqn = item.index.fqn
            if item.type == WriteItemType.BYTE_IO:
                key = f"b{i}"
                obj = _lookup_object(planner, item)
                node = enc.node(obj, f"state_dict[{fqn!r}]")
                nbytes = 0
            else:
                key = f"t{i}"
                tensor = planner.resolve_data(item)
                if not isinstance(tensor, torch.Tensor):
                    raise UnsupportedError(
                        f"state_dict[{fqn!r}]: the planner resolved a tensor item to "
                        f"{type(tensor).__name__}")
                tensor = tensor.detach()
                expected = tuple(item.tensor_data.chunk.sizes)
                if tuple(tensor.shape) != expected:
                    raise UnsupportedError(
                        f"state_dict[{fqn!r}]: chunk has shape {tuple(tensor.shape)}, the plan "
                        f"says {expected}")
                node = enc.torch_tensor(tensor, f"state_dict[{fqn!r}]", None)
                nbytes = tensor.numel() * tensor.element_size()
            pairs.append((key, node))
            stored.append((item, key, nbytes))
        meta = _meta("shard", self.run_id, self.step, **{"tensorseal.dcp.rank": str(shard.rank)})
        length, digest = _write_tseal(_join(self.path, shard.file), pairs, enc, meta,
                                      self._signers, self.compress)
        fut.set_result([
            WriteResult(index=item.index, size_in_bytes=nbytes,
                        storage_data=_Stored(shard.file, key, length, digest))
            for item, key, nbytes in stored])
        return fut

    def finish(self, metadata: Metadata, results: list) -> None:
        metadata.version = metadata.version or _DCP_VERSION
        shards, storage = {}, []
        for rank_results in results:
            for wr in rank_results:
                s = wr.storage_data
                if not isinstance(s, _Stored):
                    raise UnsupportedError(
                        f"{wr.index.fqn}: a write result not made by SealWriter")
                shards[s.file] = (s.shard_length, s.shard_manifest_sha256)
                storage.append((wr.index, s))
        tree = _index_tree(metadata, storage, shards, len(results), self.run_id, self.step)
        enc = Encoder()
        pairs = [(k, enc.node(v, f"index.{k}")) for k, v in tree.items()]
        if enc.sources:  # pragma: no cover - the index holds no tensors by construction
            raise UnsupportedError("the shard index would hold tensor data")
        _write_tseal(_join(self.path, INDEX_NAME), pairs, enc,
                     _meta("index", self.run_id, self.step), self._signers)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id) -> bool:
        return isinstance(checkpoint_id, (str, os.PathLike))


def _lookup_object(planner, item):
    """The Python object of a BYTE_IO item, unserialized: DCP's ``resolve_data`` would pickle
    it (``torch.save``), so the default planner's ``lookup_object`` is used instead."""
    lookup = getattr(planner, "lookup_object", None)
    if lookup is None:
        raise UnsupportedError(
            f"state_dict[{item.index.fqn!r}]: planner {type(planner).__name__} has no "
            f"lookup_object(); SealWriter stores non-tensor values as data, never as the pickle "
            f"resolve_data() makes (use DefaultSavePlanner or a subclass)")
    return lookup(item.index)


def _properties(p: TensorProperties, fqn):
    layout = next((n for n, v in _LAYOUTS.items() if v == p.layout), None)
    memory = next((n for n, v in _MEMORY_FORMATS.items() if v == p.memory_format), None)
    if layout is None or memory is None:
        raise UnsupportedError(
            f"state_dict[{fqn!r}]: layout {p.layout} / memory format {p.memory_format} cannot "
            f"be saved (only dense tensors)")
    strides = getattr(p, "strides", None)
    return {
        "dtype": p.dtype, "layout": layout, "requires_grad": bool(p.requires_grad),
        "memory_format": memory, "pin_memory": bool(p.pin_memory),
        "strides": None if strides is None else [int(s) for s in strides],
    }


def _index_tree(metadata, storage, shards, world_size, run_id, step):
    """The shard index as a plain tree (spec §11)."""
    where = {}
    for index, s in storage:
        where[(index.fqn, None if index.offset is None else tuple(index.offset))] = s
    entries = []
    for fqn, md in metadata.state_dict_metadata.items():
        if isinstance(md, BytesStorageMetadata):
            s = where.get((fqn, None))
            if s is None:
                raise UnsupportedError(f"state_dict[{fqn!r}]: no rank wrote it")
            entries.append({"fqn": fqn, "type": "bytes", "file": s.file, "key": s.key})
            continue
        chunks = []
        for c in md.chunks:
            s = where.get((fqn, tuple(c.offsets)))
            if s is None:
                raise UnsupportedError(
                    f"state_dict[{fqn!r}]: no rank wrote the chunk at {tuple(c.offsets)}")
            chunks.append({"offsets": [int(x) for x in c.offsets],
                           "sizes": [int(x) for x in c.sizes], "file": s.file, "key": s.key})
        entries.append({"fqn": fqn, "type": "tensor", "size": [int(x) for x in md.size],
                        **_properties(md.properties, fqn), "chunks": chunks})
    sm = metadata.storage_meta
    return {
        "format": INDEX_FORMAT,
        "run_id": run_id,
        "step": step,
        "world_size": world_size,
        "dcp_version": metadata.version,
        "shards": [{"file": f, "length": n, "manifest_sha256": d}
                   for f, (n, d) in sorted(shards.items())],
        "entries": entries,
        "planner_data": metadata.planner_data,
        "modules": list(sm.modules) if sm is not None and sm.modules else [],
    }


# -- reader ------------------------------------------------------------------------------------
class SealReader(StorageReader):
    """A DCP ``StorageReader`` for checkpoints written by :class:`SealWriter`.

    ``trust``: the public keys (paths or bytes) that may sign the index and the shards; at least
    ``threshold`` of them must have signed each file. ``expect`` and ``min_step`` are checked on
    the index and on every shard, as for :func:`tensorseal.load`.

    Refusals raise :class:`tensorseal.VerificationError` (see the module documentation for the
    kinds). Inside ``dcp.load`` a failure of the index surfaces as DCP's ``AssertionError``
    (``metadata is None; global metadata read failed: ...`` with the message of ours), because DCP
    catches what ``read_metadata`` raises; shard failures raise the ``VerificationError`` itself
    without a process group, or DCP's ``CheckpointException`` holding it per rank with one.
    """

    def __init__(self, path, trust, *, threshold=1, expect=None, min_step=None):
        super().__init__()
        self.path = _path(path)
        self._policy = _policy(self.path, trust, True, threshold, expect, min_step)
        self.load_id = uuid.uuid4().hex
        self._index = None
        self._opened = {}
        #: What the last read_metadata() raised (None if it succeeded or did not run).
        self.metadata_error = None

    @property
    def checkpoint_id(self):
        return self.path

    def reset(self, checkpoint_id=None) -> None:
        self.close()
        if checkpoint_id:
            self.path = _path(checkpoint_id, "checkpoint_id")
        self.load_id = uuid.uuid4().hex
        self._index = None

    def close(self) -> None:
        """Closes the shards opened by the last load."""
        for native in self._opened.values():
            native.close()
        self._opened = {}

    def _open(self, path):
        return _native.open(path, *self._policy, False)

    def read_metadata(self) -> Metadata:  # no rank-local metadata: no `rank` keyword
        # DCP's load catches what this raises and raises an AssertionError of its own: the
        # failure is kept for tensorseal.dcp.load to raise instead.
        self.metadata_error = None
        try:
            self._index = _read_index(_join(self.path, INDEX_NAME), self._open)
        except Exception as e:
            self.metadata_error = e
            raise
        return self._index.metadata(self.path, self.load_id)

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args,
                              **kwargs) -> None:
        if self._index is None:
            raise UnsupportedError("SealReader: read_metadata() must run first")
        self._verify_shards()

    def _verify_shards(self):
        """Binds the folder to the index: exactly the listed shards, each signed by a trusted key,
        with the listed length and manifest digest. Opens every shard (no tensor byte read)."""
        self.close()
        listed = {s["file"]: s for s in self._index.shards}
        try:
            sizes = _listing(self.path)
            present = {n for n in sizes if n.endswith(SUFFIX)} - {INDEX_NAME}
        except OSError as e:
            raise InvalidInputError(
                f"{self.path}: cannot list the checkpoint folder: {e}") from None
        unlisted = sorted(present - set(listed))
        if unlisted:
            raise VerificationError(
                f"{self.path}: {', '.join(unlisted)}: shard file(s) that the signed index does "
                f"not list (from another checkpoint, or renamed)", "shard_unlisted")
        missing = sorted(set(listed) - present)
        if missing:
            raise VerificationError(
                f"{self.path}: {', '.join(missing)}: shard(s) listed in the signed index are "
                f"missing", "shard_missing")
        opened = {}
        try:
            for name, s in sorted(listed.items()):
                path = _join(self.path, name)
                length = sizes[name]
                if length != s["length"]:
                    raise VerificationError(
                        f"{path}: {length} bytes, the signed index says {s['length']} "
                        f"(truncated or replaced)", "shard_mismatch")
                try:
                    native = self._open(path)
                except VerificationError as e:
                    raise VerificationError(f"{e} (shard of {self.path})", e.kind) from None
                opened[name] = native
                digest = native.manifest_sha256()
                if digest != s["manifest_sha256"] or native.file_length() != s["length"]:
                    raise VerificationError(
                        f"{path}: manifest SHA-256 {digest}, the signed index says "
                        f"{s['manifest_sha256']} (a shard from another checkpoint, step or run)",
                        "shard_mismatch")
        except BaseException:
            for native in opened.values():
                native.close()
            raise
        self._opened = opened

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future:
        storage = self._index.storage
        per_file = {}
        for req in plan.items:
            where = storage.get(req.storage_index)
            if where is None:
                raise VerificationError(
                    f"{self.path}: {req.storage_index.fqn} at {req.storage_index.offset}: not in "
                    f"the signed index", "index_invalid")
            per_file.setdefault(where.file, []).append((req, where))
        try:
            for name, reqs in per_file.items():
                self._read_shard(name, reqs, planner)
        finally:
            self.close()
        fut: Future = Future()
        fut.set_result(None)
        return fut

    def _read_shard(self, name, reqs, planner):
        native = self._opened.get(name)
        if native is None:  # pragma: no cover - set_up_storage_reader opened every listed shard
            raise VerificationError(f"{self.path}/{name}: shard not verified", "shard_missing")
        path = _join(self.path, name)
        top = native.tree()
        nodes = dict(top[1]) if type(top) is tuple and top[0] == "dict" else {}
        by_key = {}
        for req, where in reqs:
            by_key.setdefault(where.key, []).append((req, where))
        missing = [k for k in by_key if k not in nodes]
        if missing:
            raise VerificationError(f"{path}: has no entry {missing[0]!r} that the index names",
                                    "index_invalid")
        # Chunks that a request takes whole into a CPU-contiguous target of its dtype and shape
        # (a load at the saving world size, mostly) are read straight into the target and hashed
        # there, in parallel: no staging copy. A chunk that fails its digest check makes every
        # target of that read zeroed before the error is raised, so no unverified byte stays.
        in_place = []
        for key in list(by_key):
            targets = self._in_place_targets(nodes[key], by_key[key], planner)
            if targets is not None:
                in_place.extend((nodes[key][1], req, t) for (req, _), t in zip(by_key[key], targets))
                del by_key[key]
        if in_place:
            views = [(blob, t.view(-1).view(torch.uint8).numpy()) for blob, _, t in in_place]
            try:
                native.read_into(views)
            except BaseException:
                for _, _, t in in_place:
                    t.zero_()
                raise
            for _, req, t in in_place:
                planner.commit_tensor(req, t)
        # The rest in batches of at most READ_BATCH_BYTES (or one larger chunk): each batch's
        # blobs are read and verified (in parallel) into staging memory before any of them is
        # copied into a target, and memory stays bounded.
        batch, size = [], 0
        for key, key_reqs in by_key.items():
            n = self._index.nbytes.get(key_reqs[0][0].storage_index, 0)
            if batch and size + n > READ_BATCH_BYTES:
                self._restore(path, native, nodes, batch, by_key, planner)
                batch, size = [], 0
            batch.append(key)
            size += n
        if batch:
            self._restore(path, native, nodes, batch, by_key, planner)

    def _in_place_targets(self, node, reqs, planner):
        """The targets of a key's requests if every one takes the key's chunk whole into a
        CPU-contiguous tensor of the chunk's dtype and shape; else None (the batched path,
        which also reports a chunk that is not what the index says)."""
        if type(node) is not tuple or node[0] != "tensor" or node[1] is None:
            return None
        targets = []
        for req, _ in reqs:
            if req.type == LoadItemType.BYTE_IO:
                return None
            expected = self._index.chunk_sizes.get(req.storage_index)
            dtype = self._index.dtypes[req.storage_index.fqn]
            if (tuple(node[3]) != expected or _dtypes.torch_dtype(node[2], "a chunk") != dtype
                    or any(req.storage_offsets) or tuple(req.lengths) != expected):
                return None
            target = planner.resolve_tensor(req).detach()
            if (target.device.type != "cpu" or target.dtype != dtype
                    or tuple(target.shape) != expected or not target.is_contiguous()):
                return None
            targets.append(target)
        return targets

    def _restore(self, path, native, nodes, keys, by_key, planner):
        values = dict(zip(keys, materialize(native, [nodes[k] for k in keys], "torch")))
        reqs = [r for k in keys for r in by_key[k]]
        for req, where in reqs:
            value = values[where.key]
            fqn = req.storage_index.fqn
            if req.type == LoadItemType.BYTE_IO:
                # The planner's load_bytes takes a stream that it torch.load()s: ours holds only
                # the verified plain values just built, so nothing from the file is unpickled.
                buf = io.BytesIO()
                torch.save(value, buf)
                buf.seek(0)
                planner.load_bytes(req, buf)
                continue
            expected = self._index.chunk_sizes.get(req.storage_index)
            if (not isinstance(value, torch.Tensor) or tuple(value.shape) != expected
                    or value.dtype != self._index.dtypes[fqn]):
                raise VerificationError(
                    f"{path}: entry {where.key!r} is not the {expected} chunk of {fqn} the index "
                    f"describes", "index_invalid")
            src = value
            for dim, (off, n) in enumerate(zip(req.storage_offsets, req.lengths)):
                src = src.narrow(dim, off, n)
            target = planner.resolve_tensor(req).detach()
            if target.size() != src.size():
                raise UnsupportedError(
                    f"{fqn}: the planner's target has size {tuple(target.size())}, the "
                    f"checkpoint slice {tuple(src.size())}")
            target.copy_(src)
            planner.commit_tensor(req, target)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id) -> bool:
        if _is_url(checkpoint_id):
            return True  # a prefix is checked by read_metadata, with the index's signature
        return (isinstance(checkpoint_id, (str, os.PathLike))
                and os.path.isfile(os.path.join(os.fspath(checkpoint_id), INDEX_NAME)))


# -- index parsing -----------------------------------------------------------------------------
def _read_index(path, open_native):
    native = open_native(path)  # signatures checked before the manifest is parsed
    try:
        if native.metadata().get("tensorseal.dcp") != "index":
            raise VerificationError(f"{path}: not a tensorseal shard index", "index_invalid")
        tree = materialize(native, native.tree(), "torch")
    finally:
        native.close()
    return _parse_index(path, tree)


class _Index:
    """A verified shard index, checked for shape and consistency."""

    def __init__(self, state_dict_metadata, storage, chunk_sizes, nbytes, dtypes, shards,
                 planner_data, modules, version, run_id, step):
        self.nbytes = nbytes
        self.run_id = run_id
        self.step = step
        self.state_dict_metadata = state_dict_metadata
        self.storage = storage
        self.chunk_sizes = chunk_sizes
        self.dtypes = dtypes
        self.shards = shards
        self.planner_data = planner_data
        self.modules = modules
        self.version = version

    def metadata(self, path, load_id):
        return Metadata(
            state_dict_metadata=dict(self.state_dict_metadata),
            planner_data=self.planner_data,
            storage_data=dict(self.storage),
            storage_meta=StorageMeta(checkpoint_id=path, load_id=load_id,
                                     modules=list(self.modules)),
            version=self.version)


def _parse_index(path, tree):
    def bad(what):
        return VerificationError(f"{path}: not a valid shard index: {what}", "index_invalid")

    def field(d, name, types, where):
        if type(d) is not dict or name not in d:
            raise bad(f"{where}: no {name!r}")
        v = d[name]
        if not isinstance(v, types) or (type(v) is bool and bool not in (
                types if isinstance(types, tuple) else (types,))):
            raise bad(f"{where}.{name}: {type(v).__name__}")
        return v

    def ints(v, where):
        if type(v) is not list or any(type(x) is not int or x < 0 for x in v):
            raise bad(f"{where}: not a list of non-negative ints")
        return v

    if type(tree) is not dict or tree.get("format") != INDEX_FORMAT:
        raise bad(f"format is not {INDEX_FORMAT!r}")
    shards = field(tree, "shards", list, "index")
    files = set()
    for i, s in enumerate(shards):
        name = field(s, "file", str, f"shards[{i}]")
        if (os.path.basename(name) != name or not name.endswith(SUFFIX) or name == INDEX_NAME
                or name in files):
            raise bad(f"shards[{i}].file {name!r}")
        files.add(name)
        field(s, "length", int, f"shards[{i}]")
        field(s, "manifest_sha256", str, f"shards[{i}]")
    sdm, storage, chunk_sizes, nbytes, dtypes = {}, {}, {}, {}, {}
    for i, e in enumerate(field(tree, "entries", list, "index")):
        where = f"entries[{i}]"
        fqn = field(e, "fqn", str, where)
        if fqn in sdm:
            raise bad(f"{where}: {fqn!r} twice")
        kind = field(e, "type", str, where)

        def locate(d, w, fqn=fqn):
            f = field(d, "file", str, w)
            if f not in files:
                raise bad(f"{w}: file {f!r} is not a listed shard")
            return _Stored(f, field(d, "key", str, w))

        if kind == "bytes":
            sdm[fqn] = BytesStorageMetadata()
            storage[MetadataIndex(fqn)] = locate(e, where)
            continue
        if kind != "tensor":
            raise bad(f"{where}: type {kind!r}")
        size = torch.Size(ints(field(e, "size", list, where), f"{where}.size"))
        dtype = field(e, "dtype", torch.dtype, where)
        itemsize = torch.empty((), dtype=dtype).element_size()
        layout = _LAYOUTS.get(field(e, "layout", str, where))
        memory = _MEMORY_FORMATS.get(field(e, "memory_format", str, where))
        if layout is None or memory is None:
            raise bad(f"{where}: layout or memory format")
        props = dict(dtype=dtype, layout=layout,
                     requires_grad=field(e, "requires_grad", bool, where),
                     memory_format=memory, pin_memory=field(e, "pin_memory", bool, where))
        strides = e.get("strides")
        if _HAS_STRIDES and strides is not None:
            props["strides"] = tuple(ints(strides, f"{where}.strides"))
        chunks = []
        for j, c in enumerate(field(e, "chunks", list, where)):
            w = f"{where}.chunks[{j}]"
            offsets = torch.Size(ints(field(c, "offsets", list, w), f"{w}.offsets"))
            sizes = torch.Size(ints(field(c, "sizes", list, w), f"{w}.sizes"))
            if len(offsets) != len(size) or len(sizes) != len(size) or any(
                    o + n > d for o, n, d in zip(offsets, sizes, size)):
                raise bad(f"{w}: chunk {tuple(offsets)}+{tuple(sizes)} outside {tuple(size)}")
            index = MetadataIndex(fqn, offsets, j)
            storage[index] = locate(c, w)
            chunk_sizes[index] = tuple(sizes)
            nbytes[index] = math.prod(sizes) * itemsize
            chunks.append(ChunkStorageMetadata(offsets=offsets, sizes=sizes))
        sdm[fqn] = TensorStorageMetadata(properties=TensorProperties(**props), size=size,
                                         chunks=chunks)
        dtypes[fqn] = dtype
    modules = tree.get("modules") or []
    version = tree.get("dcp_version")
    if version is not None and type(version) is not str:
        raise bad("dcp_version")
    run_id, step = tree.get("run_id"), tree.get("step")
    if ((run_id is not None and type(run_id) is not str)
            or (step is not None and type(step) is not int)):
        raise bad("run_id or step")
    return _Index(sdm, storage, chunk_sizes, nbytes, dtypes, shards, tree.get("planner_data"),
                  modules, version, run_id, step)


# -- whole-checkpoint verification -------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ShardSetReport:
    """What :func:`verify` established about a checkpoint folder."""

    index_manifest_sha256: str
    run_id: str | None
    step: int | None
    shards: dict  # file name -> tensorseal.VerifyReport
    tensors: int  # entries of the global metadata
    values: int  # non-tensor entries

    @property
    def bytes(self) -> int:
        """Bytes hashed over all shards."""
        return sum(r.bytes for r in self.shards.values())


def verify(path, trust, *, threshold=1, expect=None, min_step=None) -> ShardSetReport:
    """Verifies a :class:`SealWriter` checkpoint folder completely, without torch.distributed:
    the index's signature, that the folder holds exactly the shards it lists, and every shard's
    signature, length, manifest digest and every byte of every blob. Raises
    :class:`tensorseal.VerificationError` on the first failure (the kinds of the module
    documentation and of :func:`tensorseal.verify`)."""
    from ._api import verify as verify_file

    reader = SealReader(path, trust, threshold=threshold, expect=expect, min_step=min_step)
    index_path = _join(reader.path, INDEX_NAME)
    index = verify_file(index_path, trust, threshold=threshold, expect=expect,
                        min_step=min_step)
    md = reader.read_metadata()
    reader._verify_shards()
    reader.close()
    reports = {}
    for s in reader._index.shards:
        report = verify_file(_join(reader.path, s["file"]), trust, threshold=threshold,
                             expect=expect, min_step=min_step)
        if report.manifest_sha256 != s["manifest_sha256"] or report.file_length != s["length"]:
            raise VerificationError(
                f"{reader.path}/{s['file']}: changed while it was verified", "shard_mismatch")
        reports[s["file"]] = report
    tensors = sum(isinstance(m, TensorStorageMetadata) for m in md.state_dict_metadata.values())
    return ShardSetReport(index.manifest_sha256, reader._index.run_id, reader._index.step,
                          reports, tensors, len(md.state_dict_metadata) - tensors)


# -- dcp.save / dcp.load with tensorseal's exceptions --------------------------------------------
def _unwrap(e, reader=None):
    """The tensorseal error behind a DCP failure: DCP raises ``CheckpointException`` (a
    ``BaseException``) holding each rank's exception, and an ``AssertionError`` of its own when
    ``read_metadata`` failed. This rank's error first, then any rank's."""
    from ._errors import Error

    if reader is not None and isinstance(reader.metadata_error, Error):
        return reader.metadata_error
    failures = getattr(e, "failures", None) or {}
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    ordered = [failures[rank]] if rank in failures else []
    ordered += [f for r, f in sorted(failures.items()) if r != rank]
    for exc, _ in ordered:
        if isinstance(exc, Error):
            return exc
    return None


def save(state_dict, path, sign_with, *, run_id=None, step=None, allow_objects=False,
         compress=None, **kwargs):
    """``torch.distributed.checkpoint.save`` through :class:`SealWriter` (``kwargs`` go to it:
    ``process_group``, ``planner``, ...), raising tensorseal's exception (for instance the
    :class:`tensorseal.UnsupportedError` naming a value that cannot be stored) instead of DCP's
    ``CheckpointException`` when one caused the failure, on this rank or another."""
    from torch.distributed.checkpoint import save as dcp_save

    writer = SealWriter(path, sign_with=sign_with, run_id=run_id, step=step,
                        allow_objects=allow_objects, compress=compress)
    try:
        return dcp_save(state_dict, storage_writer=writer, **kwargs)
    except BaseException as e:
        inner = _unwrap(e)
        if inner is None:
            raise
        raise inner.with_traceback(None) from e


def load(state_dict, path, trust, *, threshold=1, expect=None, min_step=None, **kwargs):
    """``torch.distributed.checkpoint.load`` through :class:`SealReader` (``kwargs`` go to it),
    raising :class:`tensorseal.VerificationError` itself (or another tensorseal exception)
    instead of DCP's ``CheckpointException`` or ``AssertionError`` when one caused the failure,
    on this rank or another: a tampered index, a swapped, missing, extra, renamed or truncated
    shard, a chunk whose bytes changed."""
    from torch.distributed.checkpoint import load as dcp_load

    reader = SealReader(path, trust, threshold=threshold, expect=expect, min_step=min_step)
    try:
        return dcp_load(state_dict, storage_reader=reader, **kwargs)
    except BaseException as e:
        inner = _unwrap(e, reader)
        if inner is None:
            raise
        raise inner.with_traceback(None) from e
