#!/usr/bin/env bash
# Runs bench/python_convert.py (the cost of tensorseal.convert's sandboxed child process) with
# the pinned venv and the wheel built from this tree.
#   bash bench/python-convert.sh [--size-mib 256] [--runs 9]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$(bash "${TENSORSEAL_PYTHON_ENV:-$root/tools/python-env.sh}" | tail -n1)
wheels=$root/target/wheels
rm -f "$wheels"/tensorseal-*.whl
"$venv/bin/maturin" build --quiet --release --locked -m "$root/crates/tensorseal-py/Cargo.toml" -o "$wheels"
"$venv/bin/python" -m pip install --disable-pip-version-check -q --force-reinstall --no-deps "$wheels"/tensorseal-*.whl
cd "$root"
exec "$venv/bin/python" bench/python_convert.py "$@"
