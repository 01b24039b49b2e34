"""Writes fuzz/corpus/planes_decode/seed_* with an encoder independent of planes.rs (numpy bit
fields, the `zstandard` package) from the raw planes of bench/compress_planes.py:
`python fuzz/make_planes_seeds.py DIR_WITH_fp32.bin_AND_bf16.bin` (zstandard on sys.path)."""

import struct
import sys

import numpy as np
import zstandard


def stream(layout_id, planes):
    hdr, bodies = bytes([layout_id]), b""
    for p in planes:
        z = zstandard.ZstdCompressor(level=1, write_content_size=True).compress(p)
        m, b = (1, z) if len(z) < len(p) else (0, p)
        hdr += bytes([m]) + struct.pack("<I", len(b))
        bodies += b
    return hdr + bodies


d = sys.argv[1]
u = np.fromfile(f"{d}/fp32.bin", dtype=np.uint32)[:1024]
f32 = [(u >> 23) & 0xFF, ((u >> 31) << 7) | ((u >> 16) & 0x7F), (u >> 8) & 0xFF, u & 0xFF]
b = np.fromfile(f"{d}/bf16.bin", dtype=np.uint16)[:2048]
bf = [(b >> 7) & 0xFF, ((b >> 15) << 7) | (b & 0x7F)]
n = struct.pack("<H", 1024)  # expected length 4096 bytes, in 4-byte units
out = "fuzz/corpus/planes_decode/"
open(out + "seed_resemblyzer_f32", "wb").write(n + stream(0x84, [p.astype(np.uint8).tobytes() for p in f32]))
open(out + "seed_resemblyzer_bf16", "wb").write(n + stream(0x82, [p.astype(np.uint8).tobytes() for p in bf]))
open(out + "seed_zeros_bytes4", "wb").write(n + stream(4, [bytes(1024)] * 4))
