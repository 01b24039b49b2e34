#!/usr/bin/env bash
# Side-by-side compression of real trained weights in one run: resemblyzer 0.1.4's pretrained.pt
# (a trained checkpoint from its PyPI wheel) as FP32 and cast to BF16 and FP16 (casts keep the
# real exponent distribution). Compared: plain zstd CLI levels 1/3/19, the format's byte-grouped
# zstd (levels 1/3/19), the plane codec (spec §4.4, tANS exponent planes) and ZipNN 0.5.4.
# Then whole checkpoints through `tensorseal convert --compress ...` and a timed verify, for the
# load-from-a-slow-disk comparison. Needs network for `pip download`.
# Usage: TENSORSEAL_VENV=... bash bench/compress.sh
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
cargo build -q --release --locked -p tensorseal-cli
echo "== zstd CLI (whole file, no grouping)"
for f in fp32 bf16 fp16; do
  n=$(stat -c %s "$W/$f.bin")
  for l in 1 3 19; do
    z=$(zstd -q -c "-$l" "$W/$f.bin" | wc -c)
    echo "zstd CLI $f -$l: ratio $(echo "scale=3; $n / $z" | bc)"
  done
done
for k in "fp32 f32" "bf16 bf16" "fp16 bytes2"; do
  set -- $k
  echo "== tensorseal codecs, $1"
  target/release/examples/planes_bench "$W/$1.bin" "$2"
done
echo "== ZipNN"
"$PY" bench/compress_zipnn.py "$W/zp" "$W" 2>&1 | grep -v -i warn
echo "== whole checkpoints: convert, then verify (warm page cache, all cores)"
for src in "$W/resemblyzer/pretrained.pt" "$W/bf16.pt"; do
  for c in none zstd auto; do
    out="$W/$(basename "$src" .pt)-$c.tseal"
    target/release/tensorseal convert "$src" "$out" --compress "$c" >/dev/null
    echo "$(basename "$src") --compress $c: $(stat -c %s "$out") bytes"
  done
done
# Verified loads from a slow disk (bench/compress_load.py): page cache dropped before each run,
# reads throttled by a cgroup-v1 blkio limit. Needs root and blkio; skipped otherwise.
dev=$(lsblk -no MAJ:MIN "$(df --output=source "$W" | tail -1)" 2>/dev/null | head -1 | tr -d ' ' || true)
if [ -w /proc/sys/vm/drop_caches ] && [ -d /sys/fs/cgroup/blkio ] && [ -n "$dev" ]; then
  files=()
  for src in tiled_fp32 tiled_bf16; do
    for c in none auto; do
      target/release/tensorseal convert "$W/$src.pt" "$W/$src-$c.tseal" --compress "$c" >/dev/null
      files+=("$W/$src-$c.tseal")
    done
  done
  "$PY" bench/compress_load.py target/release/tensorseal "$dev" "${files[@]}"
else
  echo "cold-cache throttled loads skipped: needs root, /proc/sys/vm/drop_caches and cgroup-v1 blkio"
fi
