"""ZipNN on the same planes bench/compress.sh feeds tensorseal's codec:
`python compress_zipnn.py ZIPNN_DIR DATA_DIR`. Best of three runs, MiB/s of logical bytes."""

import sys
import time

sys.path.insert(0, sys.argv[1])
from zipnn import ZipNN  # noqa: E402


def best(runs, f):
    t_best, out = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        out = f()
        t_best = min(t_best, time.perf_counter() - t)
    return t_best, out


for name, dt in [("fp32", "float32"), ("bf16", "bfloat16"), ("fp16", "float16")]:
    orig = open(f"{sys.argv[2]}/{name}.bin", "rb").read()
    mib = len(orig) / 2**20
    for threads in (1, 0):
        kw = dict(input_format="byte", bytearray_dtype=dt)
        if threads:
            kw["threads"] = threads
        z = ZipNN(**kw)
        # zipnn 0.5.4 rewrites its input buffer in place (even an immutable bytes): hand it a copy.
        e, c = best(3, lambda: bytes(z.compress(bytearray(orig))))
        d_t, d = best(3, lambda: z.decompress(c))
        assert bytes(d) == orig, "zipnn round trip"
        print(f"zipnn 0.5.4 {name} threads={threads or 'all'}: ratio {len(orig) / len(c):.3f}  "
              f"compress {mib / e:.0f} MiB/s  decode {mib / d_t:.0f} MiB/s")
