"""Real torch and numpy files from the fixture corpus (tests/fixtures): what torch.load or
numpy.load returns survives tensorseal.save -> tensorseal.load unchanged.

Until the converter (issue 4) lands, the originals are loaded with torch.load / numpy.load
(benign fixtures only: those the corpus marks "expect": "ok" and torch loads); the converter
tests will compare tensorseal.load(converted) with the same helper.
"""

import json

import numpy as np
import pytest
import torch

import tensorseal
from conftest import FIXTURES
from deep_compare import assert_same, assert_same_sharing


def benign(folder, *, torch_file):
    if not (FIXTURES / folder).is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no fixtures at {FIXTURES}"))]
    out = []
    for exp in sorted((FIXTURES / folder).glob("*.expected.json")):
        meta = json.loads(exp.read_text())
        if meta["expect"] != "ok" or (torch_file and not meta.get("torch_loads")):
            continue
        if not torch_file and not meta["input"].endswith((".npy", ".npz")):
            continue  # pickles of numpy values: only the converter reads those
        out.append(pytest.param(exp.parent / meta["input"], id=meta["input"]))
    return out


@pytest.mark.parametrize("path", benign("torch", torch_file=True) + benign("real", torch_file=True))
def test_torch_fixture_round_trip(path, tmp, keys):
    original = torch.load(path, weights_only=False, map_location="cpu")
    tensorseal.save(original, tmp / "x.tseal", sign_with=keys[0][0])
    back = tensorseal.load(tmp / "x.tseal", trust=[keys[0][1]])
    assert_same(back, original)
    assert_same_sharing(back, original)


@pytest.mark.parametrize("path", benign("numpy", torch_file=False))
def test_numpy_fixture_round_trip(path, tmp, keys):
    loaded = np.load(path, allow_pickle=False)
    original = dict(loaded) if path.suffix == ".npz" else loaded
    tensorseal.save(original, tmp / "x.tseal", sign_with=keys[0][0])
    back = tensorseal.load(tmp / "x.tseal", trust=[keys[0][1]], framework="numpy")
    assert_same(back, original)
