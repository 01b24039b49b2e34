"""Writes the float weights of resemblyzer's pretrained.pt (a real trained checkpoint shipped in
its PyPI wheel) as one raw little-endian FP32 plane and its BF16/FP16 casts, and the checkpoint
itself cast to BF16 (`bf16.pt`), for bench/compress.sh:
`python compress_planes.py PRETRAINED_PT OUTDIR`."""

import sys

import torch

sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
sd = sd.get("model_state", sd)
a = torch.cat([v.float().contiguous().flatten() for v in sd.values() if torch.is_tensor(v) and v.is_floating_point()])
out = sys.argv[2]
open(f"{out}/fp32.bin", "wb").write(a.numpy().tobytes())
open(f"{out}/bf16.bin", "wb").write(a.bfloat16().view(torch.int16).numpy().tobytes())
open(f"{out}/fp16.bin", "wb").write(a.half().numpy().tobytes())
torch.save({k: v.bfloat16() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in sd.items()}, f"{out}/bf16.pt")
# For timing loads from a throttled disk, 256 MiB checkpoints of the same real weights cycled
# into 32 tensors (tANS codes each 16 MiB chunk alone, so repetition cannot help it).
n = 256 * 2**20 // 4 // 32
tiled = a.repeat(-(-n * 32 // a.numel()))[: n * 32].reshape(32, n)
torch.save({f"w{i}": tiled[i].clone() for i in range(32)}, f"{out}/tiled_fp32.pt")
torch.save({f"w{i}": tiled[i].bfloat16() for i in range(32)}, f"{out}/tiled_bf16.pt")
print(f"{a.numel()} float weights from {len(sd)} tensors")
