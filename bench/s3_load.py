"""Verified load of a checkpoint from a local S3 server, against downloading it first.

    python bench/s3_load.py [--size-mib 1024] [--runs 3] [--s3s-fs PATH]

Starts a local S3 server on loopback: with --s3s-fs, that binary (the `s3s-fs` crate's
file-system-backed server, `cargo install s3s-fs@0.14.1 --locked --features binary`), which
serves a range GET by reading that range; else tools/s3-server.py (moto), which copies the whole
object for every range GET and so cannot serve a 1 GiB object by ranges in useful time. Uploads a signed checkpoint of --size-mib MiB of
float32 / bfloat16 matrices, then, alternating the order each run:

* tensorseal: ``tensorseal.load("s3://...", trust=...)``: footer and manifest by range GETs,
  signatures checked, then every chunk fetched (8 range GETs in flight) into its tensor and
  hashed there;
* download, then verify: boto3's ``download_file`` (its default transfer manager: 8 MiB parts,
  10 threads) to a local file, then ``tensorseal.load(local, trust=...)``; what a user does with
  the fastest plain client installed here (the AWS CLI's ``aws s3 cp`` is the same manager).

Each case runs in a fresh interpreter; times are wall seconds, peak memory is the child's peak
resident set (VmHWM). Prints the medians and the ratio tensorseal / (download + load).
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

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUCKET = "bench"

CHILD = r"""
import json, os, sys, time
import torch, tensorseal, boto3
case, url, pub, scratch = sys.argv[1:5]
def hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
base = hwm()
t0 = time.perf_counter()
if case == "tensorseal":
    sd = tensorseal.load(url, trust=[pub])
    t_dl = 0.0
else:
    bucket, key = url[len("s3://"):].split("/", 1)
    local = os.path.join(scratch, "download.tseal")
    boto3.client("s3").download_file(bucket, key, local)
    t_dl = time.perf_counter() - t0
    sd = tensorseal.load(local, trust=[pub])
    os.remove(local)
total = time.perf_counter() - t0
n = sum(t.numel() for t in sd.values())
print(json.dumps({"total": total, "download": t_dl, "elements": n, "peak": hwm() - base}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--s3s-fs", default=None, metavar="PATH",
                    help="serve with this s3s-fs binary instead of moto")
    args = ap.parse_args()

    import boto3
    import torch

    import tensorseal

    store_dir = tempfile.TemporaryDirectory(prefix="tensorseal-s3s-")
    if args.s3s_fs:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
               "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        server = subprocess.Popen([args.s3s_fs, "--host", "127.0.0.1", "--port", str(port),
                                   "--access-key", "bench", "--secret-key", "bench-secret",
                                   store_dir.name], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.environ.update(env)
        for _ in range(100):
            try:
                boto3.client("s3").create_bucket(Bucket=BUCKET)
                break
            except Exception:  # not listening yet
                import time
                time.sleep(0.1)
        name = "s3s-fs"
    else:
        server = subprocess.Popen([sys.executable, str(ROOT / "tools" / "s3-server.py"),
                                   BUCKET], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        env = {}
        for line in server.stdout:
            line = line.strip()
            if line == "ready":
                break
            if line.startswith("export "):
                k, v = line[len("export "):].split("=", 1)
                env[k] = v
        os.environ.update(env)
        name = "moto"
    try:
        with tempfile.TemporaryDirectory(prefix="tensorseal-s3-bench-") as d:
            d = pathlib.Path(d)
            g = torch.Generator().manual_seed(0)
            sd, total, i = {}, 0, 0
            while total < args.size_mib << 20:
                dtype = torch.float32 if i % 4 else torch.bfloat16
                t = torch.randn(2048, 1024, generator=g).to(dtype)
                sd[f"layers.{i}.weight"] = t
                total += t.nbytes
                i += 1
            priv, pub = tensorseal.generate_key()
            (d / "k.key").write_bytes(priv)
            (d / "k.pub").write_bytes(pub)
            tensorseal.save(sd, d / "ckpt.tseal", sign_with=d / "k.key")
            del sd
            size = (d / "ckpt.tseal").stat().st_size
            boto3.client("s3").upload_file(str(d / "ckpt.tseal"), BUCKET, "ckpt.tseal")
            (d / "ckpt.tseal").unlink()
            url = f"s3://{BUCKET}/ckpt.tseal"
            runs = {"tensorseal": [], "download+load": []}
            for r in range(args.runs):
                order = list(runs) if r % 2 == 0 else list(reversed(runs))
                for case in order:
                    out = subprocess.run([sys.executable, "-c", CHILD, case, url,
                                          str(d / "k.pub"), str(d)],
                                         check=True, capture_output=True, text=True)
                    runs[case].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"object: {size / 2**30:.2f} GiB from {name} on loopback, {os.cpu_count()} "
                  f"cores, {args.runs} runs each (median)\n")
            print("| case | total | of which download | peak memory above start |")
            print("|---|---|---|---|")
            med = {}
            for case, rs in runs.items():
                med[case] = statistics.median(x["total"] for x in rs)
                dl = statistics.median(x["download"] for x in rs)
                peak = max(x["peak"] for x in rs)
                print(f"| {case} | {med[case]:.2f} s | {dl:.2f} s | {peak / 2**20:.0f} MiB |")
            ratio = med["tensorseal"] / med["download+load"]
            print(f"\ntensorseal / (download + verified load) = {ratio:.2f} (target <= 0.8)")
            print("(both hold the loaded state dict, the checkpoint's size, at the end)")
    finally:
        server.stdin.close()
        if args.s3s_fs:
            server.terminate()
        server.wait(timeout=60)
        store_dir.cleanup()


if __name__ == "__main__":
    main()
