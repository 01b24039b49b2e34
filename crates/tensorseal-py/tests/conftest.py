import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]
VECTORS = REPO / "spec" / "vectors"
# The torch/numpy fixture corpus (tests/fixtures in the repository); overridable for worktrees.
FIXTURES = pathlib.Path(os.environ.get("TENSORSEAL_FIXTURES", REPO / "tests" / "fixtures"))

sys.path.insert(0, str(HERE))  # deep_compare, gen


@pytest.fixture(scope="session")
def keys():
    """Two key pairs: (private PEM, public PEM) each."""
    import tensorseal

    return tensorseal.generate_key(), tensorseal.generate_key()


@pytest.fixture
def signer(keys):
    return keys[0]


@pytest.fixture
def tmp(tmp_path):
    return tmp_path
