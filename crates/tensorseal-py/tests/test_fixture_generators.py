"""Fixture generators are deterministic: regenerating the committed fixtures, under any hash seed,
gives byte-identical files, so a regeneration never churns the repository."""

import filecmp
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]
PICKLE_DATA = ROOT / "crates" / "tensorseal-pickle" / "tests" / "data"


def test_pickle_fixtures_regenerate_identically(tmp_path):
    out = tmp_path / "cpython"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, str(PICKLE_DATA / "generate.py"), "--out", str(out)],
                   check=True, env=env, timeout=300)
    committed = PICKLE_DATA / "cpython"
    names = sorted(p.name for p in out.iterdir())
    assert names, "the generator wrote nothing"
    missing = sorted(set(names) - {p.name for p in committed.iterdir()})
    assert not missing, f"generated but not committed: {missing[:5]}"
    _, mismatch, errors = filecmp.cmpfiles(committed, out, names, shallow=False)
    assert not mismatch and not errors, f"regenerated fixtures differ: {mismatch[:5]} {errors[:5]}"
