"""Verified loads of raw and plane-coded checkpoints from a throttled disk, for bench/compress.sh:
`python compress_load.py TENSORSEAL_BIN MAJ:MIN FILE...`. Needs root: it joins a cgroup-v1 blkio
group that limits reads from device MAJ:MIN, and drops the page cache before every run, so each
run reads the file from the disk. For each limit (250 and 500 MB/s, then none) and file it
reports the best of three of `tensorseal verify --digests-only` (a fresh process) and of
`tensorseal.load(verify=False)` (every byte checked against its digest; in this process, torch
already imported, so the import does not read the disk)."""

import os
import subprocess
import sys
import time

import tensorseal
import torch  # noqa: F401  (imported before the cache is dropped)

BLK = "/sys/fs/cgroup/blkio/tensorseal-bench"
binary, dev, files = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(BLK, exist_ok=True)
with open(f"{BLK}/tasks", "w") as f:
    f.write(str(os.getpid()))


def cold(run):
    best = float("inf")
    for _ in range(3):
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return best


for mbps in (250, 500, 0):
    with open(f"{BLK}/blkio.throttle.read_bps_device", "w") as f:
        f.write(f"{dev} {mbps * 1000000}")  # 0 removes the limit
    for path in files:
        v = cold(lambda: subprocess.run([binary, "verify", path, "--digests-only"], check=True,
                                        stdout=subprocess.DEVNULL))
        ld = cold(lambda: tensorseal.load(path, verify=False))
        print(f"disk limit {mbps or 'none'} MB/s  {os.path.basename(path):24} "
              f"{os.path.getsize(path) / 2**20:6.1f} MiB  verify {v * 1000:5.0f} ms  load {ld * 1000:5.0f} ms")
