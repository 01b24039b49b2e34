"""Writes the DCP fixtures: a checkpoint saved by a real 2-rank torch.distributed.checkpoint job
(gloo, CPU, FileSystemWriter), the state dict torch's own dcp_to_torch_save makes of it
(expected.json: dtype, shape and SHA-256 of every tensor, and the plain values), and hostile
variants whose .metadata is rewritten with torch's own classes (a gap, an overlap, a range past
the end of a file, a dtype disagreement, a missing file) or built from bytes (an os.system
payload, an unknown class). Never load the hostile ones with pickle.

    VENV=$(tools/python-env.sh | tail -n1)
    "$VENV/bin/python" crates/tensorseal-convert/tests/data/dcp/generate.py

Runs in about 10 s. torch writes the same bytes each run except StorageMeta.save_id (a UUID),
so .metadata changes on every run and the .distcp files do not.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import pickle
import shutil
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor

HERE = pathlib.Path(__file__).resolve().parent


def state(mesh):
    torch.manual_seed(0)
    w = torch.randn(8, 6)
    cols = (torch.arange(30, dtype=torch.float32).view(5, 6) / 7).to(torch.bfloat16)
    return {
        "model": {
            "w": distribute_tensor(w, mesh, [Shard(0)]),        # rows split over the ranks
            "cols": distribute_tensor(cols, mesh, [Shard(1)]),  # columns split
            "bias": torch.tensor([0.5, -1.0, 2.0]),             # replicated
            "steps": torch.arange(4, dtype=torch.int64),
        },
        "optim": {"param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "params": [0, 1]}],
                  "step": 12},
        "epoch": 3,
        "name": "dcp-fixture",
    }


def work(rank, world, out, store):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    # Relative checkpoint_id: StorageMeta records the path as given.
    dcp.save(state(mesh), storage_writer=dcp.FileSystemWriter(out))
    dist.destroy_process_group()


def describe(v):
    if isinstance(v, torch.Tensor):
        data = v.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        return {"tensor": str(v.dtype).removeprefix("torch."), "shape": list(v.shape),
                "sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(v, dict):
        return {"dict": [[k, describe(x)] for k, x in v.items()]}
    if isinstance(v, (list, tuple)):
        return {type(v).__name__: [describe(x) for x in v]}
    return v


def variant(name, edit):
    d = HERE / name
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(HERE / "two_rank", d, ignore=shutil.ignore_patterns("expected.json"))
    md = pickle.loads((d / ".metadata").read_bytes())  # our own file, written by torch above
    edit(md)
    (d / ".metadata").write_bytes(pickle.dumps(md, protocol=4))


def oversized(m):
    """model.w declared as 2^26 x 6 floats (1.5 GiB), its two chunks stretched to tile that:
    more than the chunks' stored items can hold."""
    rows = 1 << 26
    c0, c1 = m.chunks
    m.size = torch.Size([rows, 6])
    m.chunks = [dataclasses.replace(c0, sizes=torch.Size([rows - 4, 6])),
                dataclasses.replace(c1, offsets=torch.Size([rows - 4, 0]), sizes=torch.Size([4, 6]))]


def chunk_edit(fqn, fn):
    def edit(md):
        fn(md.state_dict_metadata[fqn])
    return edit


def storage_edit(fqn, fn):
    def edit(md):
        for k, v in list(md.storage_data.items()):
            if k.fqn == fqn:
                md.storage_data[k] = fn(v)
                break
    return edit


def main():
    out = HERE / "two_rank"
    if out.exists():
        shutil.rmtree(out)
    cwd = os.getcwd()
    os.chdir(HERE)
    try:
        store = tempfile.mktemp()
        mp.spawn(work, args=(2, "two_rank", store), nprocs=2)
    finally:
        os.chdir(cwd)
    with tempfile.TemporaryDirectory() as tmp:
        dcp_to_torch_save(out, f"{tmp}/ref.pt")
        ref = torch.load(f"{tmp}/ref.pt", weights_only=False)
    (out / "expected.json").write_text(json.dumps(describe(ref), indent=1) + "\n")

    def drop_chunk(m):
        m.chunks.pop()

    def overlap(m):
        c = m.chunks[1]
        m.chunks[1] = dataclasses.replace(c, offsets=torch.Size([c.offsets[0] - 1, *c.offsets[1:]]))

    def f64(m):
        m.properties = dataclasses.replace(m.properties, dtype=torch.float64)

    variant("gap", chunk_edit("model.w", drop_chunk))
    variant("oversized", chunk_edit("model.w", oversized))
    variant("overlap", chunk_edit("model.w", overlap))
    variant("dtype_mismatch", chunk_edit("model.w", f64))
    variant("past_end", storage_edit("model.bias", lambda s: dataclasses.replace(s, length=s.length + 10**6)))
    variant("missing_file", storage_edit("model.w", lambda s: dataclasses.replace(s, relative_path="__9_0.distcp")))
    # Built from bytes, never by pickling real objects.
    for name, payload in {
        "payload": b"\x80\x04cos\nsystem\nX\x12\x00\x00\x00touch /tmp/pwned-x\x85R.",
        "unknown_class": b"\x80\x04cfinance.models\nLedger\n)\x81}X\x01\x00\x00\x00a\x4b\x01sb.",
    }.items():
        d = HERE / name
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(out, d, ignore=shutil.ignore_patterns("expected.json"))
        (d / ".metadata").write_bytes(payload)
    print("wrote", sorted(p.name for p in HERE.iterdir()))


if __name__ == "__main__":
    sys.exit(main())
