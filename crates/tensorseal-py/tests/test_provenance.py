"""Trust policy files (spec/POLICY.md) in the Python API: the same rules and error kinds as
``tensorseal verify --policy``, through load, open and verify."""

import pytest
import torch

import tensorseal


def write(path, keys, signers, run_id="nightly-1"):
    obj = {"w": torch.arange(16, dtype=torch.float32)}
    tensorseal.save(obj, path, sign_with=[keys[i][0] for i in signers],
                    metadata={"run_id": run_id, "step": "5"})
    return path


def policy(tmp, keys, top="", old_not_after="2999-01-01T00:00:00Z"):
    (tmp / "old.pub").write_bytes(keys[0][1])
    (tmp / "new.pub").write_bytes(keys[1][1])
    p = tmp / "policy.toml"
    p.write_text(
        f"version = 1\n{top}\n"
        f'[[key]]\nname = "ci-old"\npublic_key = "old.pub"\nnot_after = {old_not_after}\n'
        f'[[key]]\nname = "ci-new"\npublic_key = "new.pub"\nrun_ids = ["nightly-*"]\n')
    return p


def refused(kind, fn, *args, **kw):
    with pytest.raises(tensorseal.VerificationError) as e:
        fn(*args, **kw)
    assert e.value.kind == kind, str(e.value)
    return e.value


def test_policy_names_keys_in_verify_load_and_open(tmp, keys):
    f = write(tmp / "both.tseal", keys, (0, 1))
    pol = policy(tmp, keys)
    r = tensorseal.verify(f, policy=pol)
    assert [(s.name, s.trusted, s.refused) for s in r.signers] == [
        ("ci-old", True, None), ("ci-new", True, None)]
    assert torch.equal(tensorseal.load(f, policy=pol)["w"], torch.arange(16, dtype=torch.float32))
    with tensorseal.open(f, policy=str(pol), mode="mmap") as ckpt:
        assert ckpt.names() == ["w"]


def test_expired_revoked_and_run_id_kinds(tmp, keys):
    old = write(tmp / "old.tseal", keys, (0,))
    both = write(tmp / "both.tseal", keys, (0, 1))
    pol = policy(tmp, keys, old_not_after="2020-01-01T00:00:00Z")
    e = refused("key_expired", tensorseal.load, old, policy=pol)
    assert "ci-old" in str(e) and "2020-01-01T00:00:00Z" in str(e)
    refused("key_expired", tensorseal.open, old, policy=pol)
    r = tensorseal.verify(both, policy=pol)
    assert [(s.trusted, s.refused) for s in r.signers] == [(False, "key_expired"), (True, None)]

    pol = policy(tmp, keys, top=f'revoked = ["{tensorseal.key_id(keys[0][1])}"]')
    refused("revoked_key", tensorseal.verify, old, policy=pol)

    adhoc = write(tmp / "adhoc.tseal", keys, (1,), run_id="adhoc-3")
    refused("run_id_not_allowed", tensorseal.load, adhoc, policy=policy(tmp, keys))
    # expect= and min_step= add to the policy's requirements.
    refused("step_too_old", tensorseal.verify, both, policy=policy(tmp, keys), min_step=6)


def test_bad_policies_and_conflicting_arguments(tmp, keys):
    f = write(tmp / "f.tseal", keys, (0,))
    bad = tmp / "bad.toml"
    bad.write_text("version = 1\nthreshhold = 1\n")
    with pytest.raises(tensorseal.InvalidInputError, match="threshhold"):
        tensorseal.verify(f, policy=bad)
    pol = policy(tmp, keys)
    with pytest.raises(tensorseal.InvalidInputError, match="policy= replaces"):
        tensorseal.load(f, trust=[keys[0][1]], policy=pol)
    with pytest.raises(tensorseal.InvalidInputError, match="policy= replaces"):
        tensorseal.load(f, verify=False, policy=pol)


def test_audit_log_records_load_and_verify_and_chains(tmp, keys, monkeypatch):
    import json
    import subprocess

    f = write(tmp / "f.tseal", keys, (0,))
    log = tmp / "audit.jsonl"
    tensorseal.load(f, trust=[keys[0][1]], audit_log=log)
    with pytest.raises(tensorseal.VerificationError):
        tensorseal.verify(f, trust=[keys[1][1]], audit_log=str(log))
    monkeypatch.setenv("TENSORSEAL_AUDIT_LOG", str(log))
    r = tensorseal.verify(f, policy=policy(tmp, keys))
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["action"], x["result"], x["error_kind"]) for x in recs] == [
        ("load", "ok", None), ("verify", "error", "untrusted"), ("verify", "ok", None)]
    assert recs[0]["trust_key_ids"] == [tensorseal.key_id(keys[0][1])]
    assert recs[0]["inputs"][0]["length"] == f.stat().st_size
    assert recs[2]["manifest_sha256"] == r.manifest_sha256
    assert recs[2]["signer_key_ids"] == [tensorseal.key_id(keys[0][1])]
    assert [x["seq"] for x in recs] == [1, 2, 3]
    import hashlib
    lines = log.read_bytes().splitlines()
    assert recs[1]["prev"] == hashlib.sha256(lines[0]).hexdigest()
    assert recs[2]["prev"] == hashlib.sha256(lines[1]).hexdigest()


def test_audit_key_seals_each_record_with_a_signed_checkpoint(tmp, keys):
    import hashlib
    import json

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    f = write(tmp / "f.tseal", keys, (0,))
    log = tmp / "audit.jsonl"
    (tmp / "audit.key").write_bytes(keys[1][0])
    tensorseal.verify(f, trust=[keys[0][1]], audit_log=log, audit_key=tmp / "audit.key")
    with pytest.raises(tensorseal.VerificationError):
        tensorseal.load(f, trust=[keys[1][1]], audit_log=log, audit_key=keys[1][0])
    lines = log.read_bytes().splitlines()
    recs = [json.loads(x) for x in lines]
    assert [r["type"] for r in recs] == ["record", "checkpoint", "record", "checkpoint"]
    assert recs[2]["error_kind"] == "untrusted"
    for i in (1, 3):
        cp = recs[i]
        assert cp["key_id"] == tensorseal.key_id(keys[1][1])
        # spec/AUDIT.md: Ed25519 over the domain, seq (u64 big-endian) and SHA-256 of the line
        # before, checked here with an independent implementation.
        message = (b"tensorseal-audit-checkpoint-v1\0" + cp["seq"].to_bytes(8, "big")
                   + hashlib.sha256(lines[i - 1]).digest())
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp["public_key"])).verify(
            bytes.fromhex(cp["signature"]), message)


def test_audit_key_without_a_log_or_with_a_bad_key_is_refused_before_the_call(tmp, keys):
    f = write(tmp / "f.tseal", keys, (0,))
    with pytest.raises(tensorseal.InvalidInputError, match="audit_key needs audit_log"):
        tensorseal.verify(f, trust=[keys[0][1]], audit_key=keys[1][0])
    log = tmp / "audit.jsonl"
    with pytest.raises(tensorseal.InvalidInputError, match="audit_key"):
        tensorseal.verify(f, trust=[keys[0][1]], audit_log=log, audit_key=b"not a key")
    assert not log.exists() or log.read_bytes() == b""
