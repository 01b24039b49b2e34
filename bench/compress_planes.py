"""Writes the float weights of resemblyzer's pretrained.pt (a real trained checkpoint shipped in
its PyPI wheel) as one raw little-endian FP32 plane and its BF16/FP16 casts, for
bench/compress.sh: `python compress_planes.py PRETRAINED_PT OUTDIR`."""

import sys

import torch

sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
sd = sd.get("model_state", sd)
a = torch.cat([v.float().contiguous().flatten() for v in sd.values() if torch.is_tensor(v) and v.is_floating_point()])
out = sys.argv[2]
open(f"{out}/fp32.bin", "wb").write(a.numpy().tobytes())
open(f"{out}/bf16.bin", "wb").write(a.bfloat16().view(torch.int16).numpy().tobytes())
open(f"{out}/fp16.bin", "wb").write(a.half().numpy().tobytes())
print(f"{a.numel()} float weights from {len(sd)} tensors")
