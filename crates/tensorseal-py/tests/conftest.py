import os
import pathlib
import subprocess
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


#: The bucket the ``s3`` fixture creates.
S3_BUCKET = "tensorseal-py"


@pytest.fixture(scope="module")
def s3():
    """A local S3 server (moto's, tools/s3-server.py) with ``S3_BUCKET``; the process environment
    points tensorseal, and processes started meanwhile, at it. Yields a boto3 client."""
    boto3 = pytest.importorskip("boto3")
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "s3-server.py"), S3_BUCKET],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    env = {}
    for line in proc.stdout:
        line = line.strip()
        if line == "ready":
            break
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            env[k] = v
    else:
        proc.kill()
        pytest.fail("tools/s3-server.py exited before it was ready")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.stdin.close()
        proc.wait(timeout=30)
