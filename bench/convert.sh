#!/usr/bin/env bash
# Measures `tensorseal convert` on a generated 1 GiB torch zip checkpoint against the physical
# work (cp + openssl dgst -sha256 of the same file) and against the Python path users run
# today (safetensors.torch.save_file(torch.load(f))), in one run on the same file, and its peak
# anonymous memory on that file and on a larger one. Prints the table BENCHMARKS.md records.
#
#   bench/convert.sh                        # RUNS=3, a 1 GiB and a 3 GiB checkpoint
#   RUNS=5 SIZE_MIB=1024 BIG_MIB=3072 MANY_PARAMS=20000 BENCH_DIR=/var/tmp/b bench/convert.sh
#   TENSORSEAL_BIN=/path/to/older/tensorseal bench/convert.sh   # measure another build
#
# A third file stresses per-tensor costs: an Adam state of MANY_PARAMS parameters (three small
# tensors each), converted by both paths (BIG_MIB=0 or MANY_PARAMS=0 skips a file).
#
# Every contestant gets the same preparation before each timed run: its outputs removed, dirty
# pages flushed (`sync`), and the input read once (`cat IN >/dev/null`) so that it sits in the
# page cache. The order of contestants rotates from one run to the next. Medians of RUNS runs
# are reported, with the spread (min-max), and CPU time (user + system, all threads) because
# the machine is shared. Memory is measured in separate runs (the sampler costs a little CPU):
# see `peak-mem` in bench/convert_helpers.py. Files go to BENCH_DIR (default: a new directory
# under /var/tmp, on disk, outside the repository) and are removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-3}"
size_mib="${SIZE_MIB:-1024}"
big_mib="${BIG_MIB:-3072}"
many_params="${MANY_PARAMS:-20000}"
dir="${BENCH_DIR:-$(mktemp -d /var/tmp/tensorseal-convbench.XXXXXX)}"
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

if [ -z "${TENSORSEAL_BIN:-}" ]; then
    cargo build --release --locked -p tensorseal-cli >&2
fi
bin="${TENSORSEAL_BIN:-$PWD/target/release/tensorseal}"
venv=$(bash tools/python-env.sh | tail -n1)
py="$venv/bin/python"
helpers="$PWD/bench/convert_helpers.py"

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
spread() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }'; }
field() { grep "^$1=" | tail -1 | cut -d= -f2; }
prepare() { rm -f "$dir/out.tseal" "$dir/copy.bin" "$dir/out.safetensors"; sync; cat "$1" >/dev/null; }

# Runs a command under the memory sampler (bench/convert_helpers.py peak-mem) into $dir/$name.mem.
peak() { # name input command...
    local name="$1" in="$2"; shift 2
    prepare "$in"
    "$py" "$helpers" peak-mem -- "$@" >"$dir/$name.mem"
}

# Runs "$@" and appends wall seconds to $dir/$name.wall and user+sys seconds to $dir/$name.cpu.
timed() {
    local name="$1"; shift
    local t0 t1
    t0=$(now)
    /usr/bin/time -f "%U %S" -o "$dir/time.tmp" "$@" >"$dir/$name.out"
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }' >>"$dir/$name.wall"
    awk '{ print $1 + $2 }' "$dir/time.tmp" >>"$dir/$name.cpu"
}

convert() { "$bin" convert "$1" "$dir/out.tseal" --quiet; }
cp_openssl() { cp "$1" "$dir/copy.bin" && openssl dgst -sha256 "$1"; }
cp_sync_openssl() { cp "$1" "$dir/copy.bin" && sync "$dir/copy.bin" && openssl dgst -sha256 "$1"; }
python_path() { "$py" "$helpers" python-convert "$1" "$dir/out.safetensors"; }
export -f convert cp_openssl cp_sync_openssl python_path
export bin dir py helpers

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
    "$(openssl version | cut -d' ' -f1-2), kernel $(uname -r)" >&2

input="$dir/in.pt"
"$py" "$helpers" make "$input" --size-mib "$size_mib"
contestants=(convert cp_openssl cp_sync_openssl python_path)
for c in "${contestants[@]}"; do : >"$dir/$c.wall"; : >"$dir/$c.cpu"; : >"$dir/$c.load"; done
for r in $(seq "$runs"); do
    echo "run $r/$runs, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    n=${#contestants[@]}
    for k in $(seq 0 $((n - 1))); do
        c=${contestants[$(((k + r) % n))]}
        prepare "$input"
        cut -d' ' -f1 /proc/loadavg >>"$dir/$c.load"
        timed "$c" bash -c "$c \"\$0\"" "$input"
        if [ "$c" = python_path ]; then
            field load_s <"$dir/$c.out" >>"$dir/py_load.s"
            field save_s <"$dir/$c.out" >>"$dir/py_save.s"
        fi
    done
done
tensors=$(field tensors <"$dir/python_path.out")

# Many small tensors: the same two paths, alternating.
many="$dir/many.pt"
if [ "$many_params" -gt 0 ]; then
    "$py" "$helpers" make-many "$many" --params "$many_params"
    for c in many_convert many_python; do : >"$dir/$c.wall"; : >"$dir/$c.cpu"; done
    for r in $(seq "$runs"); do
        prepare "$many"; timed many_convert bash -c 'convert "$0"' "$many"
        prepare "$many"; timed many_python bash -c 'python_path "$0"' "$many"
    done
    many_tensors=$(field tensors <"$dir/many_python.out")
    peak mem_many "$many" "$bin" convert "$many" "$dir/out.tseal" --quiet
    rm -f "$many" "$dir/out.tseal" "$dir/out.safetensors"
fi
"$bin" convert "$input" "$dir/check.tseal" --quiet --json >"$dir/report.json"
rm -f "$dir/check.tseal"

# Peak memory: convert on the benchmark file and on a bigger one, Python on the benchmark file.
peak mem_convert "$input" "$bin" convert "$input" "$dir/out.tseal" --quiet
peak mem_python "$input" "$py" "$helpers" python-convert "$input" "$dir/out.safetensors"
rm -f "$dir/out.tseal" "$dir/out.safetensors" "$dir/copy.bin"
big="$dir/big.pt"
if [ "$big_mib" -gt 0 ]; then
    rm -f "$input"
    "$py" "$helpers" make "$big" --size-mib "$big_mib"
    peak mem_convert_big "$big" "$bin" convert "$big" "$dir/out.tseal" --quiet
    prepare "$big"
    timed convert_big bash -c 'convert "$0"' "$big"
    rm -f "$big" "$dir/out.tseal"
fi

m() { median <"$dir/$1"; }
s() { spread <"$dir/$1"; }
kib() { field "$2" <"$dir/$1.mem"; }
m0() { if [ -s "$dir/$1" ]; then median <"$dir/$1"; else echo 0; fi; }
k0() { if [ -s "$dir/$1.mem" ]; then kib "$1" peak_anon_kib; else echo 0; fi; }
big_anon=0; big_wall=0
if [ "$big_mib" -gt 0 ]; then big_anon=$(kib mem_convert_big peak_anon_kib); big_wall=$(m convert_big.wall); fi
awk -v runs="$runs" -v size="$size_mib" -v big="$big_mib" -v tensors="$tensors" \
    -v cw="$(m convert.wall)" -v cws="$(s convert.wall)" -v cc="$(m convert.cpu)" \
    -v ow="$(m cp_openssl.wall)" -v ows="$(s cp_openssl.wall)" -v oc="$(m cp_openssl.cpu)" \
    -v sw="$(m cp_sync_openssl.wall)" -v sws="$(s cp_sync_openssl.wall)" -v sc="$(m cp_sync_openssl.cpu)" \
    -v pw="$(m python_path.wall)" -v pws="$(s python_path.wall)" -v pc="$(m python_path.cpu)" \
    -v pl="$(m py_load.s)" -v ps="$(m py_save.s)" \
    -v ca="$(kib mem_convert peak_anon_kib)" -v ch="$(kib mem_convert hwm_kib)" \
    -v pa="$(kib mem_python peak_anon_kib)" -v ph="$(kib mem_python hwm_kib)" \
    -v ba="$big_anon" -v bw="$big_wall" -v many="${many_tensors:-0}" \
    -v mcw="$(m0 many_convert.wall)" -v mcc="$(m0 many_convert.cpu)" \
    -v mpw="$(m0 many_python.wall)" -v mpc="$(m0 many_python.cpu)" -v ma="$(k0 mem_many)" \
    -v load="$(cat "$dir"/*.load | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }')" '
function mib(k) { return k / 1024 }
BEGIN {
    printf "\n%d MiB torch zip checkpoint, %d tensors; median of %d runs (min-max); load average %s\n\n", size, tensors, runs, load
    printf "| measurement | tensorseal convert | reference | ratio | target |\n|---|---|---|---|---|\n"
    printf "| wall time vs cp + openssl dgst -sha256 | %.2f s (%s) | %.2f s (%s) | **%.2fx** | <= 1.5x |\n", cw, cws, ow, ows, cw / ow
    printf "| wall time vs cp + sync FILE + openssl | %.2f s | %.2f s (%s) | %.2fx | |\n", cw, sw, sws, cw / sw
    printf "| CPU time (user + sys) vs cp + openssl | %.2f s | %.2f s | %.2fx | |\n", cc, oc, cc / oc
    printf "| wall time vs Python save_file(torch.load) | %.2f s | %.2f s (%s) | **%.1fx faster** | >= 3x |\n", cw, pw, pws, pw / cw
    printf "| same, Python in-process (load %.2f s + save %.2f s) | %.2f s | %.2f s | %.1fx faster | |\n", pl, ps, cw, pl + ps, (pl + ps) / cw
    printf "| CPU time vs Python | %.2f s | %.2f s | %.1fx less | |\n", cc, pc, pc / cc
    printf "| peak anonymous memory (RssAnon) vs Python | %.0f MiB | %.0f MiB | %.0fx less | < 256 MiB |\n", mib(ca), mib(pa), pa / ca
    printf "| peak RSS incl. mapped file pages (VmHWM) vs Python | %.0f MiB | %.0f MiB | %.1fx less | |\n", mib(ch), mib(ph), ph / ch
    if (big > 0) {
        printf "| %d MiB checkpoint: peak anonymous memory | %.0f MiB | | | < 256 MiB |\n", big, mib(ba)
        printf "| %d MiB checkpoint: wall time (1 run) | %.2f s | | | |\n", big, bw
    }
    if (many > 0) {
        printf "| %d small tensors (Adam state): wall time vs Python | %.2f s | %.2f s | %.1fx faster | |\n", many, mcw, mpw, mpw / mcw
        printf "| same, CPU time | %.2f s | %.2f s | | |\n", mcc, mpc
        printf "| same, peak anonymous memory | %.0f MiB | | | |\n", mib(ma)
    }
}'
