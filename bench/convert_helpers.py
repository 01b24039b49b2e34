"""Helpers of bench/convert.sh: make the torch checkpoint, run the Python conversion path, and
measure a command's peak memory.

    python bench/convert_helpers.py make OUT.pt --size-mib 1024
    python bench/convert_helpers.py make-many OUT.pt --params 20000
    python bench/convert_helpers.py python-convert IN.pt OUT.safetensors
    python bench/convert_helpers.py peak-mem -- CMD ARGS...

`make` writes a training checkpoint as `torch.save` (zip format) writes it: a transformer-like
model state dict (float32 matrices, bfloat16 embedding, many small vectors, a tied head and one
transposed view), an Adam optimizer state dict with int keys and 0-d `step` tensors, and small
Python values. Deterministic for a given size.

`make-many` writes what stresses per-tensor costs: an Adam optimizer state dict of PARAMS
parameters of 64 float32 each (three tensors per parameter, one storage each).

`python-convert` is the path users run today: `torch.load(f, weights_only=False)` and
`safetensors.torch.save_file`. save_file takes a flat dict of contiguous tensors that share no
memory, so the nested checkpoint is flattened to dotted names (dict keys and list indices, as
`tensorseal export` names them), non-tensor values are left out, a tensor whose storage was
already taken by another name is cloned, and a non-contiguous view is made contiguous. It prints
`load_s=` and `save_s=` (in-process times, without the interpreter and `import torch`).

`peak-mem` runs a command and samples /proc/PID/status every millisecond: RssAnon (anonymous
memory: heap, stacks, private copies; not the page-cache pages of mapped files, which the kernel
can drop at any time) and VmHWM (the kernel's own peak of the whole RSS, mapped file pages
included). It prints `peak_anon_kib=`, `hwm_kib=`, `samples=` and the command's exit status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def make(out: str, size_mib: int) -> None:
    import argparse as ap
    from collections import OrderedDict

    import torch

    g = torch.Generator().manual_seed(0)
    d, heads = 1024, 64
    target = size_mib << 20
    per_layer = 12 * d * d * 4 * 3  # float32 weights + Adam's exp_avg and exp_avg_sq
    layers = max(1, (target - (256 << 20)) // per_layer)
    # The bfloat16 vocabulary (with its Adam state) takes the rest of the size.
    vocab = max(64, (target - layers * per_layer - 2 * d * d * 4 * 3) // (d * 2 * 3) // 64 * 64)

    def randn(*shape, dtype=torch.float32):
        return (torch.randn(*shape, generator=g) * 0.02).to(dtype)

    model = OrderedDict()
    # bfloat16 embedding, as in mixed-precision training; the head is tied to it (one storage).
    model["embed.weight"] = randn(vocab, d, dtype=torch.bfloat16)
    # A transposed view saved as it is (torch keeps the storage and the strides).
    model["proj_in.weight"] = randn(d, 2 * d).t()
    for i in range(layers):
        p = f"layers.{i}."
        for name in ("q", "k", "v", "o"):
            model[p + f"attn.{name}.weight"] = randn(d, d)
            model[p + f"attn.{name}.bias"] = randn(d)
        model[p + "mlp.up.weight"] = randn(4 * d, d)
        model[p + "mlp.up.bias"] = randn(4 * d)
        model[p + "mlp.down.weight"] = randn(d, 4 * d)
        model[p + "mlp.down.bias"] = randn(d)
        for ln in ("ln1", "ln2"):
            model[p + f"{ln}.weight"] = torch.ones(d)
            model[p + f"{ln}.bias"] = torch.zeros(d)
        # Many small buffers: per-head scales and an int64 counter.
        for h in range(heads):
            model[p + f"attn.head_scale.{h}"] = randn(16)
        model[p + "attn.calls"] = torch.tensor(1000 + i, dtype=torch.int64)
    model["norm.weight"] = torch.ones(d)
    model["head.weight"] = model["embed.weight"]

    # Adam state: int keys, exp_avg/exp_avg_sq like the parameter, a 0-d float32 step.
    params = [k for k in model if k != "head.weight" and model[k].is_floating_point()]
    state = {}
    for i, k in enumerate(params):
        t = model[k]
        state[i] = {
            "step": torch.tensor(1234.0),
            "exp_avg": randn(*t.shape, dtype=t.dtype),
            "exp_avg_sq": (randn(*t.shape, dtype=t.dtype) ** 2),
        }
    optimizer = {
        "state": state,
        "param_groups": [
            {
                "lr": 3e-4,
                "betas": (0.9, 0.95),
                "eps": 1e-8,
                "weight_decay": 0.1,
                "amsgrad": False,
                "params": list(range(len(params))),
            }
        ],
    }
    ckpt = {
        "model": model,
        "optimizer": optimizer,
        "epoch": 3,
        "global_step": 1234,
        "args": ap.Namespace(lr=3e-4, batch_size=512, layers=layers, dim=d),
        "rng_state": torch.zeros(5056, dtype=torch.uint8),
        "best_val_loss": 2.7182818,
    }
    torch.save(ckpt, out)
    tensors = sum(1 for _ in _flatten(ckpt))
    print(
        f"wrote {out}: {os.path.getsize(out) / (1 << 20):.1f} MiB, {layers} layers, "
        f"{tensors} tensors",
        file=sys.stderr,
    )


def make_many(out: str, params: int) -> None:
    import torch

    g = torch.Generator().manual_seed(0)
    state = {
        i: {
            "step": torch.tensor(5.0),
            "exp_avg": torch.randn(64, generator=g),
            "exp_avg_sq": torch.rand(64, generator=g),
        }
        for i in range(params)
    }
    torch.save({"state": state, "param_groups": [{"lr": 1e-3, "params": list(range(params))}]}, out)
    print(f"wrote {out}: {os.path.getsize(out) / (1 << 20):.1f} MiB, {3 * params} tensors", file=sys.stderr)


def _flatten(value, prefix=""):
    """(dotted name, tensor) for every tensor in a nested checkpoint."""
    import torch

    if isinstance(value, torch.Tensor):
        yield prefix or "tensor", value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}.{i}" if prefix else str(i))


def python_convert(src: str, dst: str) -> None:
    import safetensors.torch
    import torch

    t0 = time.perf_counter()
    ckpt = torch.load(src, weights_only=False)  # benign file, generated above
    t1 = time.perf_counter()
    flat, seen = {}, set()
    for name, t in _flatten(ckpt):
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel() > 0:
            t = t.clone()  # save_file refuses tensors sharing memory
        seen.add(ptr)
        flat[name] = t.contiguous()
    safetensors.torch.save_file(flat, dst)
    t2 = time.perf_counter()
    print(f"load_s={t1 - t0:.4f}\nsave_s={t2 - t1:.4f}\ntensors={len(flat)}")


def status_kib(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def peak_mem(cmd: list[str]) -> int:
    proc = subprocess.Popen(cmd)
    peak_anon, hwm, samples = 0, 0, 0
    while proc.poll() is None:
        try:
            s = status_kib(proc.pid)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            break
        # A zombie has no memory fields left: keep the last values seen.
        peak_anon = max(peak_anon, s.get("RssAnon", 0))
        hwm = max(hwm, s.get("VmHWM", 0))
        samples += 1
        time.sleep(0.001)
    status = proc.wait()
    print(f"peak_anon_kib={peak_anon}\nhwm_kib={hwm}\nsamples={samples}\nstatus={status}")
    return status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    m.add_argument("--size-mib", type=int, default=1024)
    mm = sub.add_parser("make-many")
    mm.add_argument("out")
    mm.add_argument("--params", type=int, default=20000)
    p = sub.add_parser("python-convert")
    p.add_argument("src")
    p.add_argument("dst")
    k = sub.add_parser("peak-mem")
    k.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.out, a.size_mib)
    elif a.cmd == "make-many":
        make_many(a.out, a.params)
    elif a.cmd == "python-convert":
        python_convert(a.src, a.dst)
    else:
        command = a.command[1:] if a.command[:1] == ["--"] else a.command
        return peak_mem(command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
