#!/usr/bin/env bash
# The main job end to end: build, make a signing key, write a checkpoint, sign, verify, inspect.
# Runs on a fresh machine with only the Rust toolchain installed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p tensorseal-cli --bin tensorseal
ts=target/release/tensorseal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== keygen"
"$ts" keygen --out "$work/signer"
echo "== sign (an unsigned golden file from spec/vectors)"
cp spec/vectors/empty.tseal "$work/model.tseal"
"$ts" sign "$work/model.tseal" --key "$work/signer.key"
echo "== verify"
"$ts" verify "$work/model.tseal" --trust "$work/signer.pub"
echo "== verify a signed file with many kinds of values"
"$ts" verify spec/vectors/all-kinds.tseal --trust spec/vectors/test-key.pub
echo "== inspect"
"$ts" inspect spec/vectors/simple.tseal
echo "== tamper: one flipped bit must fail verification (exit 3)"
cp spec/vectors/simple.tseal "$work/tampered.tseal"
printf '\x01' | dd of="$work/tampered.tseal" bs=1 seek=70 conv=notrunc status=none
set +e
"$ts" verify "$work/tampered.tseal" --trust spec/vectors/test-key.pub
status=$?
set -e
[ "$status" -eq 3 ] || { echo "expected exit 3, got $status" >&2; exit 1; }
echo "== demo OK"
