"""tensorseal.dcp against DCP's own FileSystemWriter / FileSystemReader, side by side in one job.

    python bench/python_dcp.py [--size-mib 256] [--ranks 4] [--runs 3] [--dir DIR]

Starts ``--ranks`` processes (a gloo job on CPU, FileStore rendezvous). They hold a state dict of
``--size-mib`` MiB in all: 16 float32 matrices, each a DTensor sharded by rows over the ranks,
plus a few non-tensor values. Each run saves it with ``FileSystemWriter`` and with
``SealWriter`` (signing every shard and the index), then loads each back into a zeroed copy with
``FileSystemReader`` and ``SealReader`` (verifying signatures, the shard binding and every
chunk's digest), the order of the two alternating between runs; each checkpoint goes to a fresh
folder. Times are wall seconds on rank 0 from a barrier before to a barrier after, so the
slowest rank counts. Prints the median of the runs and the ratios tensorseal / DCP. Loads read
from the page cache for both (the files were just written); nothing is dropped from it.

Memory: every rank samples its own anonymous resident memory (``RssAnon``, the heap; not the
page cache) every millisecond during each save and load, and reports the peak above what it held
just before (the state dict, and for a load the zeroed target): the extra memory the backend
needs. The figure printed is the largest over ranks and runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def rss_anon():
    """This process's anonymous resident memory, in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakExtra:
    """Samples RssAnon every millisecond while active; ``extra`` is the peak above the start."""

    def __enter__(self):
        self.base = self.peak = rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss_anon())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon())
        self.extra = self.peak - self.base


def rank_main(args):
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    from tensorseal.dcp import SealReader, SealWriter

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"file://{args.dir}/store", rank=rank,
                            world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    n = 16
    rows = max(world, (args.size_mib << 20) // (n * 1024 * 4))
    g = torch.Generator().manual_seed(0)

    def state(fill):
        sd = {f"layer{i}.weight": distribute_tensor(
            torch.randn(rows, 1024, generator=g) if fill else torch.zeros(rows, 1024),
            mesh, [Shard(0)]) for i in range(n)}
        sd["step"] = 1000
        sd["lr"] = [0.1, 0.01]
        return sd

    source = state(True)
    backends = {
        "dcp": (lambda p: dcp.FileSystemWriter(p), lambda p: dcp.FileSystemReader(p)),
        "tensorseal": (lambda p: SealWriter(p, sign_with=f"{args.dir}/k.key"),
                       lambda p: SealReader(p, trust=[f"{args.dir}/k.pub"])),
    }
    times = {b: {"save": [], "load": []} for b in backends}
    extra = {b: {"save": 0, "load": 0} for b in backends}

    def timed(fn, b, op):
        dist.barrier()
        t0 = time.perf_counter()
        with PeakExtra() as m:
            fn()
        dist.barrier()
        extra[b][op] = max(extra[b][op], m.extra)
        return time.perf_counter() - t0

    for run in range(args.runs):
        order = list(backends) if run % 2 == 0 else list(reversed(backends))
        for b in order:
            path = f"{args.dir}/ckpt-{b}-{run}"
            make_writer, make_reader = backends[b]
            times[b]["save"].append(timed(
                lambda: dcp.save(source, storage_writer=make_writer(path)), b, "save"))
        for b in order:
            path = f"{args.dir}/ckpt-{b}-{run}"
            make_writer, make_reader = backends[b]
            target = state(False)
            times[b]["load"].append(timed(
                lambda: dcp.load(target, storage_reader=make_reader(path)), b, "load"))
            for k in source:
                if k.endswith(".weight"):
                    assert torch.equal(target[k].to_local(), source[k].to_local()), (b, k)
            dist.barrier()
            if rank == 0:
                shutil.rmtree(path)
    extras = [None] * world
    dist.all_gather_object(extras, extra)
    if rank == 0:
        total = sum(v.to_local().numel() * 4 for k, v in source.items() if k.endswith(".weight"))
        out = {"ranks": world, "bytes": total * world, "runs": args.runs}
        for b in backends:
            for op in ("save", "load"):
                out[f"{b}_{op}_s"] = round(statistics.median(times[b][op]), 3)
        for op in ("save", "load"):
            out[f"ratio_{op}"] = round(out[f"tensorseal_{op}_s"] / out[f"dcp_{op}_s"], 2)
        for b in backends:
            for op in ("save", "load"):
                peak = max(e[b][op] for e in extras)
                out[f"{b}_{op}_peak_extra_mib_per_rank"] = round(peak / (1 << 20), 1)
        out["state_mib_per_rank"] = round(total / (1 << 20), 1)
        print(json.dumps(out))
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a fresh temp dir)")
    ap.add_argument("--rank-process", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_process:
        return rank_main(args)
    import tensorseal

    own = args.dir is None
    args.dir = args.dir or tempfile.mkdtemp(prefix="tensorseal-dcp-bench-")
    private, public = tensorseal.generate_key()
    with open(f"{args.dir}/k.key", "wb") as f:
        f.write(private)
    with open(f"{args.dir}/k.pub", "wb") as f:
        f.write(public)
    cmd = [sys.executable, os.path.abspath(__file__), "--rank-process", "--dir", args.dir,
           "--size-mib", str(args.size_mib), "--runs", str(args.runs)]
    procs = [subprocess.Popen(cmd, env=dict(os.environ, RANK=str(r),
                                            WORLD_SIZE=str(args.ranks),
                                            PYTHONWARNINGS="ignore"))
             for r in range(args.ranks)]
    codes = [p.wait() for p in procs]
    if own:
        shutil.rmtree(args.dir, ignore_errors=True)
    sys.exit(max(abs(c) for c in codes))


if __name__ == "__main__":
    main()
