"""Nothing is returned from a file that fails verification; every failure class has its type."""

import struct

import pytest
import torch

import tensorseal


def write(path, keys, signers=(0,), metadata=None, obj=None):
    obj = obj if obj is not None else {"w": torch.arange(64, dtype=torch.float32), "b": torch.ones(3)}
    tensorseal.save(obj, path, sign_with=[keys[i][0] for i in signers], metadata=metadata)
    return path


def footer(path):
    data = path.read_bytes()
    manifest_offset, manifest_length, sig_length = struct.unpack_from("<QQQ", data, len(data) - 64)
    return data, manifest_offset, manifest_length, sig_length


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def load_raises(path, pub, kind, **kw):
    with pytest.raises(tensorseal.VerificationError) as e:
        tensorseal.load(path, trust=[pub], **kw)
    assert e.value.kind == kind, str(e.value)
    return e.value


def test_flipped_tensor_byte(tmp, keys):
    p = write(tmp / "x.tseal", keys)
    flip(p, 64 + 10)  # inside the first blob
    e = load_raises(p, keys[0][1], "digest_mismatch")
    assert "tensor w" in str(e)
    # verify=False skips authenticity, never integrity.
    with pytest.raises(tensorseal.VerificationError, match="does not match its SHA-256"):
        tensorseal.load(p, verify=False)
    with pytest.raises(tensorseal.VerificationError):
        tensorseal.verify(p, trust=[keys[0][1]])


def test_flipped_manifest_byte(tmp, keys):
    p = write(tmp / "x.tseal", keys)
    _, mo, ml, _ = footer(p)
    flip(p, mo + ml // 2)
    load_raises(p, keys[0][1], "malformed")
    with pytest.raises(tensorseal.VerificationError):
        tensorseal.load(p, verify=False)


def test_flipped_signature_byte(tmp, keys):
    p = write(tmp / "x.tseal", keys)
    data, mo, ml, sl = footer(p)
    flip(p, mo + ml + sl - 1)  # last byte of the signature
    load_raises(p, keys[0][1], "bad_signature")
    # A signature that is present must be valid even when authenticity is not asked for.
    with pytest.raises(tensorseal.VerificationError, match="invalid"):
        tensorseal.load(p, verify=False)


def test_flipped_padding_and_truncation(tmp, keys):
    p = write(tmp / "x.tseal", keys, obj={"w": torch.ones(3)})  # 12 bytes, then zero padding
    flip(p, 64 + 20)
    load_raises(p, keys[0][1], "malformed")
    q = write(tmp / "y.tseal", keys)
    q.write_bytes(q.read_bytes()[:-1])
    load_raises(q, keys[0][1], "malformed")


def test_every_single_byte_flip_is_detected(tmp, keys):
    p = write(tmp / "x.tseal", keys, obj={"w": torch.ones(2), "s": "text"})
    original = p.read_bytes()
    for i in range(len(original)):
        data = bytearray(original)
        data[i] ^= 0x80
        p.write_bytes(bytes(data))
        with pytest.raises(tensorseal.VerificationError):
            tensorseal.load(p, trust=[keys[0][1]])


def test_untrusted_and_unsigned(tmp, keys):
    p = write(tmp / "x.tseal", keys, signers=(0,))
    e = load_raises(p, keys[1][1], "untrusted")
    assert tensorseal.key_id(keys[0][1])[:16] in str(e)
    u = write(tmp / "u.tseal", keys, signers=())
    load_raises(u, keys[0][1], "unsigned")
    assert torch.equal(tensorseal.load(u, verify=False)["b"], torch.ones(3))


def test_no_trust_refuses(tmp, keys):
    p = write(tmp / "x.tseal", keys)
    with pytest.raises(tensorseal.VerificationError, match="no trusted keys") as e:
        tensorseal.load(p)
    assert e.value.kind == "no_trust"
    with pytest.raises(tensorseal.VerificationError):
        tensorseal.verify(p)
    with pytest.raises(tensorseal.InvalidInputError, match="verify=False"):
        tensorseal.load(p, trust=[keys[0][1]], verify=False)


def test_threshold(tmp, keys):
    both = [keys[0][1], keys[1][1]]
    one = write(tmp / "one.tseal", keys, signers=(0,))
    two = write(tmp / "two.tseal", keys, signers=(0, 1))
    tensorseal.load(two, trust=both, threshold=2)
    load_raises(one, keys[0][1], "untrusted", threshold=2)
    with pytest.raises(tensorseal.VerificationError, match="1 signature.*2 required"):
        tensorseal.load(one, trust=both, threshold=2)
    with pytest.raises(tensorseal.InvalidInputError, match="threshold"):
        tensorseal.load(two, trust=both, threshold=0)


def test_expect_and_min_step(tmp, keys):
    pub = keys[0][1]
    p = write(tmp / "x.tseal", keys, metadata={"run_id": "run-42", "step": "1200"})
    tensorseal.load(p, trust=[pub], expect={"run_id": "run-42"}, min_step=1000)
    tensorseal.load(p, trust=[pub], min_step=1200)
    load_raises(p, pub, "metadata_mismatch", expect={"run_id": "run-41"})
    load_raises(p, pub, "step_too_old", min_step=1201)
    q = write(tmp / "q.tseal", keys, metadata={"run_id": "run-42"})
    load_raises(q, pub, "step_missing", min_step=1)
    with pytest.raises(tensorseal.VerificationError):
        tensorseal.open(p, trust=[pub], min_step=5000)
    with pytest.raises(tensorseal.VerificationError):
        tensorseal.verify(p, trust=[pub], expect={"run_id": "x"})


def test_verify_report(tmp, keys):
    p = write(tmp / "x.tseal", keys, signers=(0, 1))
    r = tensorseal.verify(p, trust=[keys[1][1]])
    assert r.authenticated and r.blobs == 2 and r.chunks == 2 and r.bytes == 64 * 4 + 12
    assert r.file_length == p.stat().st_size and len(r.manifest_sha256) == 64
    assert [(s.key_id, s.trusted) for s in r.signers] == [
        (tensorseal.key_id(keys[0][1]), False), (tensorseal.key_id(keys[1][1]), True)]
    d = tensorseal.verify(p, digests_only=True)
    assert not d.authenticated and d.manifest_sha256 == r.manifest_sha256


def test_trust_as_paths_and_bytes(tmp, keys):
    priv, pub = keys[0]
    (tmp / "k.pub").write_bytes(pub)
    (tmp / "k.key").write_bytes(priv)
    tensorseal.save({"a": 1}, tmp / "x.tseal", sign_with=str(tmp / "k.key"))
    assert tensorseal.load(tmp / "x.tseal", trust=tmp / "k.pub") == {"a": 1}
    assert tensorseal.load(str(tmp / "x.tseal"), trust=[pub]) == {"a": 1}
    assert tensorseal.key_id(tmp / "k.key") == tensorseal.key_id(pub)


def test_invalid_inputs(tmp, keys):
    pub = keys[0][1]
    with pytest.raises(tensorseal.InvalidInputError, match="No such file"):
        tensorseal.load(tmp / "missing.tseal", trust=[pub])
    with pytest.raises(tensorseal.InvalidInputError):
        tensorseal.load(tmp, trust=[pub])  # a directory
    p = write(tmp / "x.tseal", keys)
    with pytest.raises(tensorseal.InvalidInputError, match="trust\\[0\\]"):
        tensorseal.load(p, trust=[b"garbage"])
    with pytest.raises(tensorseal.InvalidInputError, match="cannot read key"):
        tensorseal.load(p, trust=[tmp / "nope.pub"])
    with pytest.raises(tensorseal.InvalidInputError, match="framework"):
        tensorseal.load(p, trust=[pub], framework="jax")
    not_tseal = tmp / "model.pt"
    torch.save({"a": 1}, not_tseal)
    with pytest.raises(tensorseal.VerificationError, match="magic|short") as e:
        tensorseal.load(not_tseal, trust=[pub])
    assert e.value.kind == "malformed"


def test_file_changed_after_open_is_caught(tmp, keys):
    """Time of check to time of use: bytes are hashed in the memory they are returned in."""
    p = write(tmp / "x.tseal", keys)
    with tensorseal.open(p, trust=[keys[0][1]]) as ckpt:
        with open(p, "r+b") as f:  # same inode, rewritten in place after verification began
            f.seek(64)
            f.write(b"\xff")
        with pytest.raises(tensorseal.VerificationError, match="tensor w"):
            ckpt.get("w")
        assert torch.equal(ckpt.get("b"), torch.ones(3))


def test_all_errors_share_a_base():
    for cls in (tensorseal.VerificationError, tensorseal.InvalidInputError,
                tensorseal.UnsupportedError):
        assert issubclass(cls, tensorseal.Error)
    assert issubclass(tensorseal.InvalidInputError, ValueError)
    assert issubclass(tensorseal.UnsupportedError, TypeError)


def test_a_trusted_key_file_changed_in_place_is_read_again(tmp, keys):
    # Trusted key files are remembered per process once settled (by inode, size, mtime and
    # ctime): replacing the file's bytes, even with a key of the same length and within the
    # timestamp's granularity, must take effect at the next call.
    import time

    p = write(tmp / "x.tseal", keys, signers=(0,))
    pub = tmp / "trusted.pub"
    assert len(keys[0][1]) == len(keys[1][1])
    for settle in (0, 2.5):
        pub.write_bytes(keys[0][1])
        time.sleep(settle)  # 2.5 s: old enough to be remembered
        assert tensorseal.verify(p, trust=[pub]).authenticated
        assert tensorseal.verify(p, trust=[pub]).authenticated
        pub.write_bytes(keys[1][1])
        with pytest.raises(tensorseal.VerificationError) as e:
            tensorseal.verify(p, trust=[str(pub)])
        assert e.value.kind == "untrusted"
    pub.write_bytes(keys[0][1])
    with tensorseal.open(p, trust=[pub]) as c:
        assert sorted(c.names()) == ["b", "w"]
    pub.unlink()
    with pytest.raises(tensorseal.InvalidInputError, match="cannot read key"):
        tensorseal.verify(p, trust=[pub])
