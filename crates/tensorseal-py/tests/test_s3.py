"""``s3://`` URLs in the Python API against a real S3 server on the loopback interface (moto's,
started from tools/s3-server.py in the venv these tests run in): ``tensorseal.load``, ``open``
and ``verify`` read an object by range GETs pinned to its ETag, verify it as they verify a file,
and refuse a tampered, missing, untrusted or replaced object with the same exceptions and kinds.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import tensorseal
from tensorseal import InvalidInputError, VerificationError

from conftest import REPO, S3_BUCKET
from deep_compare import assert_same

torch = pytest.importorskip("torch")
boto3 = pytest.importorskip("boto3")

BUCKET = S3_BUCKET


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, keys):
    """A signed checkpoint whose largest tensor spans two 16 MiB chunks, and its state."""
    private, public = keys[0]
    g = torch.Generator().manual_seed(3)
    state = {
        "model": {"big": torch.randn(5 << 20, generator=g),  # 20 MiB: two chunks
                  "norm": torch.randn(33, generator=g).to(torch.bfloat16),
                  "empty": torch.zeros(0, 4)},
        "step": 12, "betas": (0.9, 0.999), "name": "run-7",
    }
    path = tmp_path_factory.mktemp("s3") / "model.tseal"
    tensorseal.save(state, path, sign_with=private, metadata={"run_id": "run-7"})
    return path, state, public


def put(s3, key, data):
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return f"s3://{BUCKET}/{key}"


def test_load_open_and_verify_read_an_object_as_they_read_the_file(s3, ckpt):
    path, state, public = ckpt
    url = put(s3, "a/model.tseal", path.read_bytes())
    assert_same(tensorseal.load(url, trust=[public]), state)
    assert_same(tensorseal.load(url, trust=[public], expect={"run_id": "run-7"}), state)
    remote, local = tensorseal.verify(url, trust=[public]), tensorseal.verify(path, trust=[public])
    assert (remote.manifest_sha256, remote.bytes, remote.chunks) == (
        local.manifest_sha256, local.bytes, local.chunks)
    with tensorseal.open(url, trust=[public]) as c:
        assert c.names() == ["model.big", "model.norm", "model.empty"]
        assert torch.equal(c.get("model.norm"), state["model"]["norm"])


def test_a_tampered_untrusted_or_missing_object_is_refused(s3, ckpt, keys):
    path, _, public = ckpt
    data = bytearray(path.read_bytes())
    data[4096] ^= 0x01  # inside the first blob
    url = put(s3, "b/flipped.tseal", bytes(data))
    with pytest.raises(VerificationError) as e:
        tensorseal.load(url, trust=[public])
    assert e.value.kind == "digest_mismatch" and url in str(e.value), e.value
    with pytest.raises(VerificationError) as e:
        tensorseal.verify(url, trust=[public])
    assert e.value.kind == "digest_mismatch"
    url = put(s3, "b/model.tseal", path.read_bytes())
    with pytest.raises(VerificationError) as e:
        tensorseal.load(url, trust=[keys[1][1]])
    assert e.value.kind == "untrusted"
    with pytest.raises(VerificationError) as e:
        tensorseal.load(url, trust=[public], expect={"run_id": "other"})
    assert e.value.kind == "metadata_mismatch"
    missing = f"s3://{BUCKET}/b/absent.tseal"
    with pytest.raises(InvalidInputError) as e:
        tensorseal.load(missing, trust=[public])
    assert str(e.value) == f"{missing}: no such object" and e.value.kind == "io", e.value
    with pytest.raises(InvalidInputError) as e:
        tensorseal.load(url, trust=[public], mode="mmap")
    assert "local file" in str(e.value)


def test_an_object_replaced_after_open_is_refused_not_mixed(s3, ckpt, tmp_path, keys):
    """Every range GET is pinned to the ETag seen at open: a tensor read after the object was
    overwritten (here by another validly signed checkpoint) fails instead of mixing the two."""
    path, state, public = ckpt
    other = tmp_path / "other.tseal"
    tensorseal.save({"model": {"big": torch.ones(5 << 20), "norm": state["model"]["norm"],
                               "empty": torch.zeros(0, 4)}}, other, sign_with=keys[0][0])
    url = put(s3, "c/model.tseal", path.read_bytes())
    with tensorseal.open(url, trust=[public]) as c:
        put(s3, "c/model.tseal", other.read_bytes())
        with pytest.raises(VerificationError) as e:
            c.get("model.big")
    assert "changed" in str(e.value), e.value
    # Opened afresh, the new object is what loads.
    assert torch.equal(tensorseal.load(url, trust=[public])["model"]["big"], torch.ones(5 << 20))


def test_save_and_convert_write_objects_only_when_complete(s3, ckpt, keys, tmp_path):
    path, state, public = ckpt
    private = keys[0][0]
    url = f"s3://{BUCKET}/d/saved.tseal"
    tensorseal.save(state, url, sign_with=private, metadata={"step": "3"})
    assert_same(tensorseal.load(url, trust=[public], min_step=3), state)
    before = s3.get_object(Bucket=BUCKET, Key="d/saved.tseal")["Body"].read()
    # A save that fails (a value the format cannot hold) uploads nothing: the object stays.
    with pytest.raises(tensorseal.UnsupportedError):
        tensorseal.save({"x": object()}, url, sign_with=private)
    assert s3.get_object(Bucket=BUCKET, Key="d/saved.tseal")["Body"].read() == before
    with pytest.raises(tensorseal.UnsupportedError):
        tensorseal.save({"x": object()}, f"s3://{BUCKET}/d/never.tseal", sign_with=private)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="d/never")
    # A legacy checkpoint converted from a bucket to a bucket: the source object's URL and
    # ETag are signed metadata next to source_sha256.
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.arange(12.0).view(3, 4), "epoch": 2}, legacy)
    src = put(s3, "d/legacy.pt", legacy.read_bytes())
    etag = s3.head_object(Bucket=BUCKET, Key="d/legacy.pt")["ETag"].strip('"')
    out = f"s3://{BUCKET}/d/converted.tseal"
    report = tensorseal.convert(src, out, sign_with=private)
    assert (report.input, report.output, report.source_format) == (src, out, "torch-zip")
    with tensorseal.open(out, trust=[public]) as c:
        assert c.metadata["source_url"] == src and c.metadata["source_etag"] == etag
        assert c.metadata["source_sha256"] == report.source_sha256
    assert torch.equal(tensorseal.load(out, trust=[public])["w"], torch.arange(12.0).view(3, 4))
    # Two writers to one key: the object is one of the two checkpoints, whole.
    import threading

    a, b = {"w": torch.zeros(3 << 20)}, {"w": torch.ones(3 << 20)}
    race = f"s3://{BUCKET}/d/race.tseal"
    threads = [threading.Thread(target=tensorseal.save, args=(x, race), kwargs={
        "sign_with": private}) for x in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = tensorseal.load(race, trust=[public])["w"]
    assert torch.equal(got, a["w"]) or torch.equal(got, b["w"])
