#!/usr/bin/env bash
# Side-by-side compression of real trained weights (resemblyzer pretrained.pt, FP32 and cast to
# BF16/FP16) in one run: plain zstd CLI levels 1/3/19, byte-grouped zstd (the format's current
# encoding) and the plane codec (crates/tensorseal/src/planes.rs) at levels 1/3/19, and ZipNN.
# Needs network for `pip download`. Usage: TENSORSEAL_VENV=... bash bench/compress.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${TENSORSEAL_VENV:?set TENSORSEAL_VENV}/bin/python"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
"$PY" -m pip download -q --no-deps resemblyzer==0.1.4 -d "$W"
(cd "$W" && unzip -q ./*.whl resemblyzer/pretrained.pt)
# zipnn 0.5.4 and its compiled zstandard, kept out of the venv (numpy/torch come from it).
"$PY" -m pip install -q --no-deps --target "$W/zp" zipnn==0.5.4 zstandard==0.25.0
"$PY" bench/compress_planes.py "$W/resemblyzer/pretrained.pt" "$W"
cargo build -q --release --locked -p tensorseal --example planes_bench
for f in fp32 bf16 fp16; do
  n=$(stat -c %s "$W/$f.bin")
  for l in 1 3 19; do
    z=$(zstd -q -c "-$l" "$W/$f.bin" | wc -c)
    echo "zstd CLI  $f level $l: ratio $(echo "scale=3; $n / $z" | bc)"
  done
done
for l in 1 3 19; do
  echo "== fp32 level $l"; target/release/examples/planes_bench "$W/fp32.bin" f32 "$l"
  echo "== bf16 level $l"; target/release/examples/planes_bench "$W/bf16.bin" bf16 "$l"
  echo "== fp16 level $l"; target/release/examples/planes_bench "$W/fp16.bin" bytes2 "$l"
done
"$PY" bench/compress_zipnn.py "$W/zp" "$W" 2>&1 | grep -v -i warn
