#!/usr/bin/env bash
# Builds the tensorseal wheel (release, abi3), installs it into the pinned Python venv and runs
# the Python tests (crates/tensorseal-py/tests). CI calls this; so can you.
#
#   bash tools/python-test.sh            # extra arguments go to pytest, e.g. -k vectors -x
#
# Environment:
#   TENSORSEAL_PYTHON_ENV  the venv script (default tools/python-env.sh; it honours
#                          TENSORSEAL_VENV and TENSORSEAL_PYTHON)
#   TENSORSEAL_FIXTURES    the torch/numpy fixture corpus (default tests/fixtures)
#
# Measured on the 2-core machine, venv already made (making it is python-env.sh's ~100 s),
# shared with other builds (load ~5):
#   cold (fresh clone, no target/)   162 s: 141 s release build of the extension (which links
#                                    the converter since convert/scan: +43 s), 19 s pytest
#   warm (nothing changed)            18-21 s: 3 s build check and install, 15-18 s pytest
# (Before convert/scan, back to back on the same machine: cold 109 s, warm 16 s; warm was 11 s
# on a quiet machine.)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
env_sh=${TENSORSEAL_PYTHON_ENV:-$root/tools/python-env.sh}
start=$SECONDS
log() { printf 'python-test: %s (%ds)\n' "$*" $((SECONDS - start)) >&2; }

venv=$(bash "$env_sh" | tail -n1)
py=$venv/bin/python
log "venv $venv"

wheels=$root/target/wheels
rm -f "$wheels"/tensorseal-*.whl
"$venv/bin/maturin" build --quiet --release --locked \
  -m "$root/crates/tensorseal-py/Cargo.toml" -o "$wheels"
log "built $(basename "$wheels"/tensorseal-*.whl)"
"$py" -m pip install --disable-pip-version-check --no-input -q --force-reinstall --no-deps \
  "$wheels"/tensorseal-*.whl
log "installed"

# From the repository root: `import tensorseal` must find the installed wheel, not a source tree.
cd "$root"
"$py" -m pytest -p no:cacheprovider -q crates/tensorseal-py/tests "$@"
log "done"
