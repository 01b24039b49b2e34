#!/usr/bin/env bash
# The main job end to end on a fresh machine with only the Rust toolchain: build, make a
# signing key, convert a real torch checkpoint (trained Silero VAD weights) without executing
# its pickle, verify it, inspect it, and show that hostile and tampered inputs are refused.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --locked -p tensorseal-cli --bin tensorseal
ts=$PWD/target/release/tensorseal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

expect_exit() { # expect_exit CODE COMMAND...: the command must fail with exactly CODE
  local want=$1; shift
  set +e; "$@"; local got=$?; set -e
  [ "$got" -eq "$want" ] || { echo "demo: expected exit $want, got $got: $*" >&2; exit 1; }
  echo "   (exit $got, as expected)"
}

echo "== keygen"
"$ts" keygen --out "$work/signer"
echo "== convert a real torch checkpoint (torch.save zip of trained weights)"
"$ts" convert tests/fixtures/real/silero_vad_16k.pt "$work/vad.tseal" \
  --sign "$work/signer.key" --meta run_id=demo --meta step=1
echo "== verify: signature by a trusted key, every digest, no rollback below step 1"
"$ts" verify "$work/vad.tseal" --trust "$work/signer.pub" --expect run_id=demo --min-step 1
echo "== inspect"
"$ts" inspect "$work/vad.tseal" | head -n 20
echo "== export the tensors to safetensors for other tools"
"$ts" export "$work/vad.tseal" "$work/vad.safetensors" --trust "$work/signer.pub"
echo "== a pickle that runs os.system is refused as unsafe (exit 4), and nothing is written"
"$ts" scan tests/fixtures/hostile/p_global_os_system_proto0.pkl || true
expect_exit 4 "$ts" convert tests/fixtures/hostile/p_global_os_system_proto0.pkl "$work/bad.tseal"
[ ! -e "$work/bad.tseal" ]
echo "== one flipped bit in the converted file fails verification (exit 3)"
cp "$work/vad.tseal" "$work/tampered.tseal"
printf '\x01' | dd of="$work/tampered.tseal" bs=1 seek=100 conv=notrunc status=none
expect_exit 3 "$ts" verify "$work/tampered.tseal" --trust "$work/signer.pub"
echo "== demo OK"
