"""What the sandbox's child process costs tensorseal.convert / tensorseal.scan.

    bash bench/python-convert.sh [--size-mib 256] [--runs 9]

Times, median of --runs, on a tiny checkpoint (the fixed cost) and on one of --size-mib MiB
(torch.save of float32 matrices; runs interleaved across rows): convert with sandbox="off" (in this process), "best-effort"
and "required" (each in a fresh child process that locks itself down), the `tensorseal` CLI
when target/release/tensorseal exists, and scan in-process and in a child. The first line is
the floor of any child: `python -I -c pass`.
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import tensorseal

ROOT = pathlib.Path(__file__).resolve().parents[1]


def median_ms(fn, runs):
    fn()  # warm the page cache and the imports
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    cli = ROOT / "target" / "release" / "tensorseal"
    with tempfile.TemporaryDirectory() as d:
        d = pathlib.Path(d)
        tiny = d / "tiny.pt"
        torch.save({"w": torch.arange(6.0).reshape(2, 3)}, tiny)
        big = d / "big.pt"
        n = args.size_mib // 16
        torch.save({f"layer{i}.weight": torch.randn(2048, 2048) for i in range(n)}, big)
        out = d / "out.tseal"
        print(f"python -I -c pass: {median_ms(lambda: subprocess.run([sys.executable, '-I', '-c', 'pass']), args.runs):.1f} ms")
        print(f"{'':24} {'tiny':>10} {f'{big.stat().st_size >> 20} MiB':>10}")
        rows = [
            ("convert sandbox=off", lambda p: tensorseal.convert(p, out, sandbox="off")),
            ("convert best-effort", lambda p: tensorseal.convert(p, out)),
            ("convert required", lambda p: tensorseal.convert(p, out, sandbox="required")),
        ]
        if cli.is_file():
            rows.append(("CLI convert", lambda p: subprocess.run(
                [cli, "convert", p, out, "--quiet"], check=True)))
        rows += [
            ("scan sandbox=off", lambda p: tensorseal.scan(p, sandbox="off")),
            ("scan best-effort", lambda p: tensorseal.scan(p)),
        ]
        tiny_ms = {name: median_ms(lambda: fn(tiny), args.runs) for name, fn in rows}
        # The big file's runs are interleaved, so a burst of disk activity from elsewhere
        # hits every row alike.
        big_times = {name: [] for name, _ in rows}
        for name, fn in rows:
            fn(big)  # warm up
        for _ in range(args.runs):
            for name, fn in rows:
                t = time.perf_counter()
                fn(big)
                big_times[name].append(time.perf_counter() - t)
        for name, _ in rows:
            times = big_times[name]
            print(f"{name:24} {tiny_ms[name]:8.1f} ms {statistics.median(times) * 1e3:8.1f} ms"
                  f" (min {min(times) * 1e3:.1f})")
        if out.exists():
            os.unlink(out)


if __name__ == "__main__":
    main()
