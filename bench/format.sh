#!/usr/bin/env bash
# Measures the tensorseal format against cp and openssl on the same files, in one run, and
# prints the figures and ratios that BENCHMARKS.md records. Usage, from anywhere:
#
#   bench/format.sh                 # RUNS=5 alternating runs per comparison
#   RUNS=9 BENCH_DIR=/var/tmp/b bench/format.sh
#
# Each comparison alternates our run and the reference run, RUNS times, with the same
# preparation before each (destination removed and dirty pages flushed with `sync` for writes;
# the source read once so that it sits in the page cache for reads), and reports medians.
# Files are written to BENCH_DIR (default: a new directory under /var/tmp, on disk) and removed.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-5}"
dir="${BENCH_DIR:-$(mktemp -d /var/tmp/tensorseal-bench.XXXXXX)}"
mkdir -p "$dir"
trap 'rm -f "$dir"/*.tseal "$dir"/*.bin "$dir"/*.txt "$dir"/*.t' EXIT

cargo build --release -p tensorseal --example bench_format >&2
bin=target/release/examples/bench_format

now() { date +%s.%N; }
# Runs a command, appending its CPU time (user + system) in seconds to file $1.
cpu() { local out="$1"; shift; /usr/bin/time -f "%U %S" -o "$out.t" "$@"; awk '{ print $1 + $2 }' "$out.t" >>"$out"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f\n", b - a }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
field() { grep "^$1=" | tail -1 | cut -d= -f2; }
warm() { cat "$1" >/dev/null; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg), $(openssl version | cut -d' ' -f1-2)"

# (a) Writing 1 GiB of float32 weights (signed, fsynced, renamed into place) vs cp of the same
# bytes, without and with `sync FILE` (the writer's fsync: same durability).
: >"$dir/w.txt"; : >"$dir/wc.txt"; : >"$dir/cp.txt"; : >"$dir/cpc.txt"; : >"$dir/cps.txt"
for _ in $(seq "$runs"); do
    "$bin" write "$dir/w.tseal" --runs 1 >"$dir/w1.txt"
    field write_s <"$dir/w1.txt" >>"$dir/w.txt"; field write_cpu_s <"$dir/w1.txt" >>"$dir/wc.txt"
    warm "$dir/w.tseal"
    rm -f "$dir/cp.bin"; sync
    t0=$(now); cpu "$dir/cpc.txt" cp "$dir/w.tseal" "$dir/cp.bin"; t1=$(now)
    elapsed "$t0" "$t1" >>"$dir/cp.txt"
    rm -f "$dir/cp.bin"; sync
    t0=$(now); cp "$dir/w.tseal" "$dir/cp.bin"; sync "$dir/cp.bin"; t1=$(now)
    elapsed "$t0" "$t1" >>"$dir/cps.txt"
done
rm -f "$dir/cp.bin"
write_s=$(median <"$dir/w.txt"); cp_s=$(median <"$dir/cp.txt"); cps_s=$(median <"$dir/cps.txt")
write_cpu=$(median <"$dir/wc.txt"); cp_cpu=$(median <"$dir/cpc.txt")

# (b) Verifying it (every chunk digest, the signature) vs openssl dgst -sha256 of the same file,
# both from the page cache.
: >"$dir/v.txt"; : >"$dir/vc.txt"; : >"$dir/o.txt"; : >"$dir/oc.txt"
for _ in $(seq "$runs"); do
    "$bin" verify "$dir/w.tseal" --runs 1 >"$dir/v1.txt"
    field verify_s <"$dir/v1.txt" >>"$dir/v.txt"; field verify_cpu_s <"$dir/v1.txt" >>"$dir/vc.txt"
    warm "$dir/w.tseal"
    t0=$(now); cpu "$dir/oc.txt" openssl dgst -sha256 -out /dev/null "$dir/w.tseal"; t1=$(now)
    elapsed "$t0" "$t1" >>"$dir/o.txt"
done
verify_s=$(median <"$dir/v.txt"); openssl_s=$(median <"$dir/o.txt")
verify_cpu=$(median <"$dir/vc.txt"); openssl_cpu=$(median <"$dir/oc.txt")

# (c) Opening and validating a file of 10,000 tensors (median of 51 in one process).
"$bin" many "$dir/many.tseal" --tensors 10000 >"$dir/many.txt"
"$bin" open "$dir/many.tseal" --runs 51 >"$dir/open.txt"
open_ms=$(field open_ms <"$dir/open.txt"); open_verified_ms=$(field open_verified_ms <"$dir/open.txt")
open_cpu_ms=$(field open_cpu_ms <"$dir/open.txt")

# (d) zstd: write and verify throughput on the same weights.
"$bin" write "$dir/z.tseal" --zstd --runs 3 >"$dir/z.txt"
"$bin" verify "$dir/z.tseal" --runs 3 >"$dir/zv.txt"
zw_s=$(field write_s <"$dir/z.txt"); zbytes=$(field write_bytes <"$dir/z.txt")
zv_s=$(field verify_s <"$dir/zv.txt")

awk -v w="$write_s" -v cp="$cp_s" -v cps="$cps_s" -v v="$verify_s" -v o="$openssl_s" \
    -v wc="$write_cpu" -v cpc="$cp_cpu" -v vc="$verify_cpu" -v oc="$openssl_cpu" \
    -v om="$open_ms" -v ovm="$open_verified_ms" -v ocm="$open_cpu_ms" -v zw="$zw_s" -v zb="$zbytes" -v zv="$zv_s" \
    -v runs="$runs" 'BEGIN {
    gib = 1073741824
    printf "\n| measurement (median of %d alternating runs) | tensorseal | reference | ratio | target |\n", runs
    printf "|---|---|---|---|---|\n"
    printf "| write 1 GiB float32, signed + fsync | %.3f s | cp %.3f s | %.2fx | <= 1.2x cp |\n", w, cp, w / cp
    printf "| same, reference with sync FILE | %.3f s | cp+sync %.3f s | %.2fx | |\n", w, cps, w / cps
    printf "| write, CPU time (user + sys) | %.2f s | cp %.2f s | %.2fx | |\n", wc, cpc, wc / cpc
    printf "| verify 1 GiB (digests + signature) | %.3f s | openssl dgst -sha256 %.3f s | %.2fx | < 1x |\n", v, o, v / o
    printf "| verify, CPU time (user + sys) | %.2f s | openssl %.2f s | %.2fx | |\n", vc, oc, vc / oc
    printf "| open + validate 10,000 tensors | %.1f ms | | | < 20 ms |\n", om
    printf "| same, CPU time (mean) | %.1f ms | | | |\n", ocm
    printf "| open_verified 10,000 tensors | %.1f ms | | | |\n", ovm
    printf "| zstd level 1 write 1 GiB | %.3f s (%.0f MB/s), stored %.1f%% | | | |\n", zw, gib / zw / 1e6, 100 * zb / gib
    printf "| zstd verify (stored + decoded digests) | %.3f s (%.0f MB/s logical) | | | |\n", zv, gib / zv / 1e6
}'
