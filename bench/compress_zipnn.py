import sys, time
sys.path.insert(0, sys.argv[1])
from zipnn import ZipNN
for name, dt in [("fp32", "float32"), ("bf16", "bfloat16")]:
    path = f"{sys.argv[2]}/{name}.bin"
    orig = open(path, "rb").read()
    for threads in (1, 0):
        kw = dict(input_format="byte", bytearray_dtype=dt)
        if threads: kw["threads"] = threads
        z = ZipNN(**kw)
        # zipnn 0.5.4 rewrites its input buffer in place (even an immutable bytes): hand it a copy.
        buf = bytearray(orig)
        t = time.perf_counter(); c = bytes(z.compress(buf)); e = time.perf_counter() - t
        t = time.perf_counter(); d = z.decompress(c); dd = time.perf_counter() - t
        assert bytes(d) == orig, "zipnn round trip"
        mib = len(orig) / 2**20
        print(f"zipnn 0.5.4 {name} threads={threads or 'all'}: ratio {len(orig)/len(c):.3f}  compress {mib/e:.0f} MiB/s  decode {mib/dd:.0f} MiB/s")
