"""Loading the same ~1 GiB checkpoint: tensorseal (fully verified, copy and mmap modes) vs
safetensors vs torch.load.

    python bench/python_load.py [--size-mib 1024] [--runs 5] [--dir DIR] [--wait-idle 0.9]

Every case runs in a fresh interpreter (so allocator state and peak RSS are its own), after
reading the file once so the page cache is equally warm for all. Runs are interleaved (run 1 of
every case, then run 2, ...) so that load from other processes spreads over all cases alike.
Reported: median wall time of "load only" and of "load + touch" (a byte sum over every tensor:
safetensors' load_file maps the file lazily, so only the second figure compares equal work) with
the range over the runs, the CPU time (user + system, all threads) of load + touch, which other
processes disturb less than wall time, peak RSS above the interpreter's baseline (torch
imported), and for the lazy handles the time to open a file and list its tensors.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "tensorseal.load (verified, mode=\"copy\")": "tseal",
    "tensorseal.load (verified, mode=\"mmap\")": "tseal",
    "safetensors.torch.load_file": "st",
    "torch.load(weights_only=True)": "pt",
    "torch.load(weights_only=True, mmap=True)": "pt",
}
LAZY = {"tensorseal.open (mode=\"copy\")": "tseal", "tensorseal.open (mode=\"mmap\")": "tseal",
        "safetensors.safe_open": "st"}
COPY, MMAP = list(CASES)[:2]
ST, TORCH = "safetensors.torch.load_file", "torch.load(weights_only=True)"


def make_checkpoint(size_mib):
    """A transformer-like state dict: large float32 / bfloat16 matrices and small vectors."""
    import torch

    g = torch.Generator().manual_seed(0)
    sd, total, i = {}, 0, 0
    target = size_mib << 20
    while total < target - (16 << 20):
        dtype = torch.float32 if i % 4 else torch.bfloat16
        rows = 4096 if dtype == torch.float32 else 8192
        t = torch.randn(rows, 1024, generator=g).to(dtype)
        sd[f"layers.{i}.weight"] = t
        sd[f"layers.{i}.norm"] = torch.randn(1024, generator=g)
        total += t.nbytes + 4096
        i += 1
    sd["embed"] = torch.randn((target - total) // 4 // 1024, 1024, generator=g)
    sd["head"] = sd["embed"]  # tied
    return sd


def prepare(d: pathlib.Path, size_mib):
    import safetensors.torch
    import torch

    import tensorseal

    paths = {"tseal": d / "ckpt.tseal", "st": d / "ckpt.safetensors", "pt": d / "ckpt.pt",
             "key": d / "k.key", "pub": d / "k.pub"}
    if all(p.exists() for p in paths.values()):
        return paths
    sd = make_checkpoint(size_mib)
    priv, pub = tensorseal.generate_key()
    paths["key"].write_bytes(priv)
    paths["pub"].write_bytes(pub)
    tensorseal.save(sd, paths["tseal"], sign_with=paths["key"], metadata={"step": "1"})
    untied = dict(sd, head=sd["head"].clone())  # safetensors refuses shared tensors
    safetensors.torch.save_file(untied, paths["st"])
    torch.save(sd, paths["pt"])
    return paths


CHILD = r"""
import builtins, json, os, resource, sys, time
import torch
case, path, pub, mode = sys.argv[1:5]
torch.set_num_threads(os.cpu_count())
with open(path, "rb") as f:  # warm the page cache equally for every case
    while f.read(1 << 24):
        pass
def rss():
    # Peak resident set (VmHWM), anonymous and file-backed pages alike: a mapped file counts
    # once touched. (ru_maxrss reads 0 in some VMs.)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
import safetensors, safetensors.torch, tensorseal
tsmode = "mmap" if "mmap" in case else "copy"
base = rss()
def touch(obj):
    # Reads every byte (as int64 words; every tensor here is a multiple of 8 bytes).
    s = 0
    for t in obj.values():
        s += int(t.view(-1).view(torch.uint8).view(torch.int64).sum())
    return s
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
out = {}
if mode == "load":
    c0 = cpu()
    t0 = time.perf_counter()
    if case.startswith("tensorseal"):
        obj = tensorseal.load(path, trust=[pub], mode=tsmode)
    elif case.startswith("safetensors"):
        obj = safetensors.torch.load_file(path)
    elif "mmap" in case:
        obj = torch.load(path, weights_only=True, mmap=True)
    else:
        obj = torch.load(path, weights_only=True)
    t1 = time.perf_counter()
    out["checksum"] = touch(obj)
    t2 = time.perf_counter()
    out.update(load=t1 - t0, touch=t2 - t0, cpu=cpu() - c0, rss=rss() - base)
else:
    n = 200
    def open_and_list():
        if case.startswith("tensorseal"):
            with tensorseal.open(path, trust=[pub], mode=tsmode) as c:
                return c.names()
        with safetensors.safe_open(path, framework="pt") as c:
            return list(c.keys())
    # The first open of the process on its own: nothing remembered yet (key file, parsed key,
    # verified signature), as a process that opens a checkpoint once sees it. The header (or,
    # for tensorseal, the manifest at the end) is read again first, so that both come from the
    # page cache.
    with builtins.open(path, "rb") as f:
        f.read(1 << 20)
        f.seek(max(0, os.path.getsize(path) - (1 << 20)))
        f.read()
    t0 = time.perf_counter()
    names = open_and_list()
    out["first_open"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        names = open_and_list()
    out["open"] = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(20):
        if case.startswith("tensorseal"):
            with tensorseal.open(path, trust=[pub], mode=tsmode) as c:
                x = c.get("layers.1.weight")
        else:
            with safetensors.safe_open(path, framework="pt") as c:
                x = c.get_tensor("layers.1.weight")
        x.view(-1).view(torch.uint8).view(torch.int64).sum()
    out["get_one"] = (time.perf_counter() - t0) / 20
    out["tensors"] = len(names)
print(json.dumps(out))
"""


def cpu_idle(seconds):
    """Fraction of CPU time idle over the next `seconds`, all cores (Linux /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    i0, t0 = sample()
    time.sleep(seconds)
    i1, t1 = sample()
    return (i1 - i0) / max(t1 - t0, 1)


WAIT_IDLE = None  # --wait-idle: (fraction, max seconds)


def wait_idle():
    """With --wait-idle, waits until the machine has been idle for two seconds (other
    processes' load distorts every figure on a shared machine), for at most a set time."""
    if WAIT_IDLE is None:
        return
    fraction, limit = WAIT_IDLE
    deadline = time.monotonic() + limit
    while cpu_idle(2.0) < fraction and time.monotonic() < deadline:
        pass


def run(case, path, pub, mode):
    wait_idle()
    r = subprocess.run([sys.executable, "-c", CHILD, case, str(path), str(pub), mode],
                       check=True, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", type=pathlib.Path, default=None,
                    help="where to keep the checkpoints (default: a temporary directory)")
    ap.add_argument("--wait-idle", type=float, default=None, metavar="FRACTION",
                    help="before each run, wait (up to 10 minutes) until the CPUs have been at "
                         "least this idle for 2 s, e.g. 0.9 on a shared machine")
    args = ap.parse_args()
    global WAIT_IDLE
    if args.wait_idle is not None:
        WAIT_IDLE = (args.wait_idle, 600.0)
    tmp = None
    if args.dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="tensorseal-bench-")
        args.dir = pathlib.Path(tmp.name)
    args.dir.mkdir(parents=True, exist_ok=True)
    paths = prepare(args.dir, args.size_mib)
    size = paths["tseal"].stat().st_size
    print(f"checkpoint: {size / 2**30:.2f} GiB, {os.cpu_count()} cores, {args.runs} runs each "
          f"(median); files in {args.dir}")

    def spread(runs, key, scale=1.0, fmt="{:.3f}"):
        xs = [r[key] * scale for r in runs]
        return statistics.median(xs), fmt.format(min(xs)) + "-" + fmt.format(max(xs))

    load_runs = {case: [] for case in CASES}
    for _ in range(args.runs):
        for case, kind in CASES.items():
            load_runs[case].append(run(case, paths[kind], paths["pub"], "load"))
    results = {}
    for case, runs in load_runs.items():
        assert len({r["checksum"] for r in runs}) == 1
        results[case] = {k: statistics.median(r[k] for r in runs)
                         for k in ("load", "touch", "cpu", "rss")}
        results[case]["touch_range"] = spread(runs, "touch")[1]
        results[case]["checksum"] = runs[0]["checksum"]
    checks = {r["checksum"] for r in results.values()}
    assert len(checks) == 1, f"the loaders returned different bytes: {results}"

    st = results[ST]
    print("\n| loader | load only | load + touch (range) | vs safetensors (load + touch) "
          "| CPU time (load + touch) | peak RSS |")
    print("|---|---|---|---|---|---|")
    for case, r in results.items():
        print(f"| {case} | {r['load']:.3f} s | {r['touch']:.3f} s ({r['touch_range']}) "
              f"| {r['touch'] / st['touch']:.2f}x | {r['cpu']:.2f} s | {r['rss'] / 2**30:.2f} GiB |")

    lazy_runs = {case: [] for case in LAZY}
    for _ in range(args.runs):
        for case, kind in LAZY.items():
            lazy_runs[case].append(run(case, paths[kind], paths["pub"], "lazy"))
    lazy = {}
    for case, runs in lazy_runs.items():
        lazy[case] = {k: statistics.median(r[k] for r in runs)
                      for k in ("open", "first_open", "get_one")}
        lazy[case]["open_range"] = spread(runs, "open", 1e3)[1]
        lazy[case]["tensors"] = runs[0]["tensors"]
    so = lazy["safetensors.safe_open"]
    print("\n| lazy handle | open + list names (range) | vs safe_open | first open of a process "
          "| vs safe_open | open + get one 16 MiB tensor |")
    print("|---|---|---|---|---|---|")
    for case, r in lazy.items():
        print(f"| {case} | {r['open'] * 1e3:.3f} ms ({r['open_range']}) "
              f"| {r['open'] / so['open']:.2f}x | {r['first_open'] * 1e3:.3f} ms "
              f"| {r['first_open'] / so['first_open']:.2f}x | {r['get_one'] * 1e3:.2f} ms |")
    tl = results[TORCH]
    print("\ntargets:")
    for case in (COPY, MMAP):
        ts = results[case]
        print(f"  {case}: / safetensors load+touch = {ts['touch'] / st['touch']:.2f} (target <= 1.5); "
              f"/ torch.load = {ts['touch'] / tl['touch']:.2f} (target < 1)")
    for case in LAZY:
        if case.startswith("tensorseal"):
            print(f"  {case} / safe_open = {lazy[case]['open'] / so['open']:.2f} (target <= 1); "
                  f"first open of a process: {lazy[case]['first_open'] / so['first_open']:.2f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
