#!/usr/bin/env bash
# Builds and runs every fuzz target in fuzz/fuzz_targets/ for FUZZ_SECONDS seconds each (default
# 30), on the stable toolchain (-s none: no sanitizer, which stable cannot build). Exits non-zero
# if any target crashes, leaks past the memory limit or times out; the failing input is left in
# fuzz/artifacts/<target>/. CI calls this script.
#
# The committed corpus in fuzz/corpus/<target>/ seeds each run but is not written to: new inputs
# go to a temporary directory, so a local run leaves the checkout clean.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-30}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

targets=()
for f in fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
done

cargo fuzz build -s none

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$work/$target" "corpus/$target"
    echo "== fuzz $target for ${seconds}s"
    # -rss_limit_mb: the decoders' bounds are far below this; hitting it is a bug.
    if ! cargo fuzz run -s none "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz smoke FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz smoke passed: ${targets[*]} (${seconds}s each)"
