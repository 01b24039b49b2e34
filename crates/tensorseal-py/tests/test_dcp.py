"""tensorseal.dcp with the real distributed engine: torch.distributed.checkpoint save and load
through SealWriter / SealReader in gloo process groups of 4 and 2 CPU processes (dcp_worker.py),
and without a process group in this process (world size 1).

The jobs are module fixtures, each running many operations in one process group, because each
process imports torch (seconds on this machine): a 4-rank job saves three checkpoints and loads
one back; tampered copies of one are made here; a 2-rank job loads the 4-rank checkpoint
(resharding), saves and reloads its own, and tries every tampered copy; a third job kills a rank
mid-save. Tests then read each rank's outcome.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

import tensorseal
from tensorseal import InvalidInputError, UnsupportedError, VerificationError

torch = pytest.importorskip("torch")  # the venv pins torch; this only names the module
import torch.distributed.checkpoint as dcp  # noqa: E402

from dcp_worker import (full_state, fsdp_load, template, untouched,  # noqa: E402
                        vector_state)
from conftest import REPO, S3_BUCKET, VECTORS  # noqa: E402
from deep_compare import assert_same  # noqa: E402
from tensorseal.dcp import INDEX_NAME, SealReader, SealWriter  # noqa: E402
from tensorseal import dcp as tdcp  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:torch.distributed is disabled, unavailable or uninitialized")

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dcp_worker.py")
JOB_TIMEOUT = 240  # seconds for one job: generous, a loaded 2-core machine imports torch slowly


def launch(root, name, world, ops, keys):
    """Runs ``ops`` in a ``world``-rank gloo job; returns ``(results per rank, return codes)``
    (a rank's results are None when it wrote none, e.g. was killed)."""
    job_dir = root / name
    job_dir.mkdir()
    job = {"store": str(job_dir / "store"), "out": str(job_dir), "keys": keys, "ops": ops}
    (job_dir / "job.json").write_text(json.dumps(job))
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), PYTHONWARNINGS="ignore")
        log = open(job_dir / f"log-{rank}.txt", "wb")
        procs.append(subprocess.Popen([sys.executable, WORKER, str(job_dir / "job.json")],
                                      env=env, stdout=log, stderr=subprocess.STDOUT))
        log.close()
    codes = []
    try:
        for p in procs:
            codes.append(p.wait(timeout=JOB_TIMEOUT))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for rank in range(world):
        f = job_dir / f"result-{rank}.json"
        results.append(json.loads(f.read_text()) if f.exists() else None)
    return results, codes, job_dir


def logs(job_dir):
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}"
                     for p in sorted(job_dir.glob("log-*")))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("dcp")


@pytest.fixture(scope="module")
def key_files(root):
    """Two key pairs as files; ranks sign with ``keys[rank % 2]``; loads trust both."""
    out = []
    for i in range(2):
        private, public = tensorseal.generate_key()
        (root / f"rank{i}.key").write_bytes(private)
        (root / f"rank{i}.pub").write_bytes(public)
        out.append([str(root / f"rank{i}.key"), str(root / f"rank{i}.pub")])
    return out


@pytest.fixture(scope="module")
def trust(key_files):
    return [pub for _, pub in key_files]


@pytest.fixture(scope="module")
def world4(root, key_files):
    """4 ranks: checkpoints A step 1, A step 2, B step 1; A1 loaded back at world size 4."""
    ops = [
        {"do": "save", "dir": str(root / "a1"), "seed": 1, "run_id": "A", "step": 1},
        {"do": "save", "dir": str(root / "a2"), "seed": 2, "run_id": "A", "step": 2},
        {"do": "save", "dir": str(root / "b1"), "seed": 3, "run_id": "B", "step": 1},
        {"do": "load", "dir": str(root / "a1"), "seed": 1},
        {"do": "fsdp_save", "dir": str(root / "fsdp"), "expected": str(root / "fsdp.tseal")},
        {"do": "fsdp_load", "dir": str(root / "fsdp"), "expected": str(root / "fsdp.tseal")},
        {"do": "fs_save", "dir": str(root / "fs4"), "seed": 4},
        {"do": "fs_save", "dir": str(root / "fs4-fsdp"), "fsdp": True},
    ]
    results, codes, job_dir = launch(root, "job4", 4, ops, key_files)
    assert codes == [0] * 4, logs(job_dir)
    return results


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def make_tampered(root):
    """Copies of checkpoint A1, each altered one way: {name: folder}."""
    a1, a2, b1 = root / "a1", root / "a2", root / "b1"
    cases = {}

    def copy(name):
        d = root / f"t-{name}"
        shutil.copytree(a1, d)
        cases[name] = d
        return d

    shutil.copy(a2 / "__1_0.tseal", copy("swap_step") / "__1_0.tseal")  # same run, step 2
    shutil.copy(b1 / "__1_0.tseal", copy("swap_run") / "__1_0.tseal")  # another run
    d = copy("swap_ranks")  # two shards of the same checkpoint under each other's names
    os.rename(d / "__0_0.tseal", d / "tmp")
    os.rename(d / "__1_0.tseal", d / "__0_0.tseal")
    os.rename(d / "tmp", d / "__1_0.tseal")
    os.remove(copy("missing") / "__2_0.tseal")
    shutil.copy(b1 / "__0_0.tseal", copy("extra") / "__4_0.tseal")
    d = copy("renamed")
    os.rename(d / "__3_0.tseal", d / "__7_0.tseal")
    d = copy("truncated")
    with open(d / "__1_0.tseal", "r+b") as f:
        f.truncate(os.path.getsize(d / "__1_0.tseal") - 100)
    d = copy("index_flip")
    _flip(d / INDEX_NAME, os.path.getsize(d / INDEX_NAME) // 2)
    d = copy("blob_flip")  # a byte of tensor data: signature and binding hold, the digest not
    chunk = full_state(1)["model"]["embed.weight"][6:9].numpy().tobytes()  # rank 2's rows
    at = (d / "__2_0.tseal").read_bytes().find(chunk)
    assert at > 0
    _flip(d / "__2_0.tseal", at + 5)
    return cases


# What each tampered copy must be refused as (VerificationError.kind), before any restore.
EXPECTED_KIND = {
    "swap_step": "shard_mismatch", "swap_run": "shard_mismatch", "swap_ranks": "shard_mismatch",
    "missing": "shard_missing", "extra": "shard_unlisted", "renamed": "shard_unlisted",
    "truncated": "shard_mismatch", "blob_flip": "digest_mismatch",
}


# Also tried at world size 2 through tensorseal.dcp.load, which raises tensorseal's exception.
WRAPPED_CASES = ("index_flip", "swap_step", "blob_flip")


@pytest.fixture(scope="module")
def tampered(root, world4):
    return make_tampered(root)


def _cli_set(root, key_files):
    """`tensorseal convert fs4 fs4-set/ --sign rank0.key`; False where no CLI was built."""
    from test_convert_api import CLI

    if CLI is None:
        return False
    p = subprocess.run([CLI, "convert", str(root / "fs4"), str(root / "fs4-set") + "/",
                        "--sign", key_files[0][0], "--meta", "run_id=fs4", "--meta", "step=3",
                        "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    (root / "fs4-set.json").write_text(p.stdout)
    return True


@pytest.fixture(scope="module")
def world2(root, key_files, tampered):
    """2 ranks: A1 (saved by 4) loaded; C saved by 2 and loaded; every tampered copy tried."""
    ops = [
        {"do": "load", "dir": str(root / "a1"), "seed": 1},
        {"do": "save", "dir": str(root / "c"), "seed": 4, "run_id": "C", "step": 9},
        {"do": "load", "dir": str(root / "c"), "seed": 4},
        {"do": "save", "dir": str(root / "c-async"), "seed": 6, "async": True},
        {"do": "load", "dir": str(root / "c-async"), "seed": 6},
        {"do": "save", "dir": str(root / "vector"), "seed": 0, "state": "vector",
         "key": str(VECTORS / "test-key.key"), "run_id": "vectors", "step": 42},
        {"do": "fsdp_load", "dir": str(root / "fsdp"), "expected": str(root / "fsdp.tseal")},
    ] + [{"do": "load", "dir": str(d), "seed": 1, "case": name} for name, d in tampered.items()
         ] + [{"do": "load", "dir": str(tampered[name]), "seed": 1, "case": name, "wrapper": True}
              for name in WRAPPED_CASES]
    # Last, so that the positions above stay: FileSystemWriter's 4-rank checkpoint converted
    # by the CLI to a signed shard set, loaded at world size 2 (resharded).
    if _cli_set(root, key_files):
        ops.append({"do": "load", "dir": str(root / "fs4-set"), "seed": 4})
    results, codes, job_dir = launch(root, "job2", 2, ops, key_files)
    assert codes == [0, 0], logs(job_dir)
    return results


# -- saving and loading at the same and other world sizes ---------------------------------------
def test_save_at_4_writes_one_signed_shard_per_rank_and_the_index(world4, root, trust):
    for rank_results in world4:
        assert [r["ok"] for r in rank_results[:3]] == [True] * 3, rank_results
    for name in ("a1", "a2", "b1"):
        assert sorted(os.listdir(root / name)) == [
            "__0_0.tseal", "__1_0.tseal", "__2_0.tseal", "__3_0.tseal", INDEX_NAME]
    index = tensorseal.load(root / "a1" / INDEX_NAME, trust=trust)
    assert index["format"] == "tensorseal.dcp.index/1"
    assert (index["run_id"], index["step"], index["world_size"]) == ("A", 1, 4)
    entries = {e["fqn"]: e for e in index["entries"]}
    embed = entries["model.embed.weight"]
    # 10 rows over 4 ranks: DTensor's chunks 3, 3, 3, 1, each in its own rank's shard.
    assert [c["sizes"] for c in embed["chunks"]] == [[3, 6], [3, 6], [3, 6], [1, 6]]
    assert [c["file"] for c in embed["chunks"]] == [f"__{r}_0.tseal" for r in range(4)]
    assert entries["model.proj.weight"]["size"] == [6, 9]
    assert entries["model.norm.weight"]["dtype"] is torch.bfloat16
    assert entries["optim.state.embed.weight.step"]["type"] == "bytes"
    # Each shard's length and manifest digest, as the index binds them; each signed by its
    # rank's key (ranks alternate between two keys).
    for s in index["shards"]:
        path = root / "a1" / s["file"]
        report = tensorseal.verify(path, trust=trust)
        assert (report.file_length, report.manifest_sha256) == (s["length"], s["manifest_sha256"])
        rank = int(s["file"][2])
        assert [x.key_id for x in report.signers] == [tensorseal.key_id(trust[rank % 2])]
        meta = tensorseal.open(path, trust=trust).metadata
        assert meta == {"run_id": "A", "step": "1", "tensorseal.dcp": "shard",
                        "tensorseal.dcp.rank": str(rank)}
    # No pickle anywhere: no file of the folder holds a pickle protocol marker at its start,
    # and every shard is a tensorseal file.
    for f in os.listdir(root / "a1"):
        assert (root / "a1" / f).read_bytes()[:1] != b"\x80"


def test_load_at_same_world_size_4(world4):
    assert [r[3]["ok"] for r in world4] == [True] * 4, [r[3] for r in world4]


def test_load_at_world_size_2_reshards_from_4(world2):
    assert [r[0]["ok"] for r in world2] == [True, True], [r[0] for r in world2]


def test_save_at_2_and_load_at_2(world2):
    assert [(r[1]["ok"], r[2]["ok"]) for r in world2] == [(True, True)] * 2, world2


def test_async_save_at_2_and_load_at_2(world2):
    assert [(r[3]["ok"], r[4]["ok"]) for r in world2] == [(True, True)] * 2, world2


def test_golden_shard_set_is_reproduced_byte_for_byte(world2, root):
    """spec/vectors/shard-set: what 2 ranks write for vector_state() signed by the test key.
    TENSORSEAL_UPDATE_VECTORS=1 rewrites it (after an intended change of the format or of
    torch's planner)."""
    assert [r[5]["ok"] for r in world2] == [True, True], [r[5] for r in world2]
    made, golden = root / "vector", VECTORS / "shard-set"
    if os.environ.get("TENSORSEAL_UPDATE_VECTORS") == "1":
        shutil.rmtree(golden, ignore_errors=True)
        golden.mkdir()
        for f in os.listdir(made):
            shutil.copy(made / f, golden / f)
    names = sorted(f for f in os.listdir(golden) if f.endswith(".tseal"))
    assert names == sorted(os.listdir(made)) == ["__0_0.tseal", "__1_0.tseal", INDEX_NAME]
    for f in names:
        assert (made / f).read_bytes() == (golden / f).read_bytes(), f


def test_golden_shard_set_verifies_and_loads():
    golden, trust = VECTORS / "shard-set", [VECTORS / "test-key.pub"]
    report = tdcp.verify(golden, trust=trust, expect={"run_id": "vectors"}, min_step=42)
    assert (report.run_id, report.step, sorted(report.shards)) == (
        "vectors", 42, ["__0_0.tseal", "__1_0.tseal"])
    expected = vector_state()
    target = template(expected, None)
    dcp.load(target, storage_reader=SealReader(golden, trust=trust))
    assert_same(target, expected)


def test_fsdp_model_and_adam_state_saved_at_4_load_at_4_2_and_1(world4, world2, root, trust):
    """A real FSDP2 model with Adam state (DTensor parameters and moments, tensor steps,
    param_groups), through get_state_dict / set_state_dict."""
    assert [r[4]["ok"] for r in world4] == [True] * 4, [r[4] for r in world4]
    assert [r[5]["ok"] for r in world4] == [True] * 4, [r[5] for r in world4]
    assert [r[6]["ok"] for r in world2] == [True] * 2, [r[6] for r in world2]
    expected = tensorseal.load(root / "fsdp.tseal", trust=trust)
    assert sorted(expected["optim"]["state"]["0.weight"]) == ["exp_avg", "exp_avg_sq", "step"]
    assert_same(fsdp_load(root / "fsdp", trust, None), expected)  # no process group


def test_load_at_world_size_1_without_process_group(world4, world2, root, trust):
    # saved by 4 ranks, by 2 ranks, by 2 ranks with async_save
    for name, seed in (("a1", 1), ("c", 4), ("c-async", 6)):
        expected = full_state(seed)
        target = template(expected, None)
        dcp.load(target, storage_reader=SealReader(root / name, trust=trust))
        assert_same(target, expected)


def test_every_rank_refuses_every_tampered_copy_before_restoring(world2, tampered):
    for i, name in enumerate(tampered):
        for rank, rank_results in enumerate(world2):
            r = rank_results[7 + i]
            assert r["op"] == 7 + i and r["ok"] is False, (name, rank, r)
            # Refused before anything was restored, on every rank; except a byte of tensor data
            # changed after signing: the rank reading it refuses before copying that batch, but
            # other ranks may have restored theirs before DCP raises on all of them.
            assert r["untouched"] is True or name == "blob_flip", (name, rank, r)
            if name == "index_flip":
                # DCP catches what read_metadata raises and raises its own AssertionError,
                # keeping our message.
                assert r["error"] == "AssertionError", r
                assert "global metadata read failed" in r["message"], r
                assert INDEX_NAME in r["message"], r
            else:
                assert (r["error"], r["kind"]) == ("VerificationError", EXPECTED_KIND[name]), r


def test_dcp_load_wrapper_raises_verification_error_on_every_rank(world2, tampered):
    first = 7 + len(tampered)
    for i, name in enumerate(WRAPPED_CASES):
        for rank, rank_results in enumerate(world2):
            r = rank_results[first + i]
            assert r["op"] == first + i and r["ok"] is False, (name, rank, r)
            assert r["error"] == "VerificationError", (name, rank, r)
            if name == "index_flip":
                assert INDEX_NAME in r["message"], r
            else:
                assert r["kind"] == EXPECTED_KIND[name], (name, rank, r)


@pytest.mark.parametrize("case", sorted(EXPECTED_KIND) + ["index_flip"])
def test_world_size_1_refuses_tampered_copy(tampered, trust, case):
    expected = full_state(1)
    target = template(expected, None)
    with pytest.raises(BaseException) as info:  # DCP raises CheckpointException (BaseException)
        dcp.load(target, storage_reader=SealReader(tampered[case], trust=trust))
    assert untouched(target) or case == "blob_flip"
    with pytest.raises(VerificationError) as direct:
        tdcp.verify(tampered[case], trust=trust)
    with pytest.raises(VerificationError) as wrapped:
        tdcp.load(target, tampered[case], trust=trust)
    assert wrapped.value.kind == direct.value.kind
    if case == "index_flip":
        assert direct.value.kind in ("bad_signature", "digest_mismatch", "malformed")
        assert "global metadata read failed" in str(info.value)
    else:
        exc, _ = info.value.failures[0]
        assert isinstance(exc, VerificationError), exc
        assert exc.kind == EXPECTED_KIND[case] == direct.value.kind
    if case in ("missing", "renamed"):
        assert "__2_0.tseal" in str(direct.value) or "__7_0.tseal" in str(direct.value)


def test_verify_reports_the_whole_checkpoint(world4, root, trust):
    report = tdcp.verify(root / "a1", trust=trust)
    assert (report.run_id, report.step) == ("A", 1)
    assert sorted(report.shards) == [f"__{r}_0.tseal" for r in range(4)]
    assert report.tensors == 6 and report.values > 0
    assert report.bytes > 4 * 10 * 6
    with pytest.raises(VerificationError) as info:
        tdcp.verify(root / "a1", trust=trust, expect={"run_id": "B"})
    assert info.value.kind == "metadata_mismatch"
    with pytest.raises(VerificationError) as info:
        tdcp.verify(root / "a1", trust=trust, min_step=2)
    assert info.value.kind == "step_too_old"


def test_untrusted_signer_is_refused(world4, root):
    _, other = tensorseal.generate_key()
    with pytest.raises(VerificationError) as info:
        SealReader(root / "a1", trust=[other]).read_metadata()
    assert info.value.kind == "untrusted"


def test_shard_signed_by_untrusted_key_is_refused(world4, root, trust):
    # Trusting only key 0 accepts the index (rank 0) but not the shards of odd ranks.
    reader = SealReader(root / "a1", trust=[trust[0]])
    md = reader.read_metadata()
    with pytest.raises(VerificationError) as info:
        reader.set_up_storage_reader(md, True)
    assert info.value.kind == "untrusted" and "__1_0.tseal" in str(info.value)


# -- a rank killed mid-save -------------------------------------------------------------------
def test_rank_killed_mid_save_leaves_no_index(root, key_files, trust):
    d = root / "killed"
    results, codes, job_dir = launch(
        root, "job-kill", 2, [{"do": "save_killed", "dir": str(d), "seed": 5, "victim": 1}],
        key_files)
    assert codes[1] == -signal.SIGKILL, logs(job_dir)
    assert codes[0] != 0 or results[0][0]["ok"] is False, logs(job_dir)
    names = os.listdir(d)
    assert INDEX_NAME not in names
    assert "__0_0.tseal" in names  # rank 0's shard was written: the save was under way
    with pytest.raises(InvalidInputError, match=INDEX_NAME):
        SealReader(d, trust=trust).read_metadata()
    with pytest.raises(InvalidInputError):
        tdcp.verify(d, trust=trust)


# -- in this process: what is refused when saving, determinism ---------------------------------
def test_non_tensor_value_the_tree_cannot_hold_is_refused_naming_its_fqn(tmp_path, signer):
    private, _ = signer
    state = {"model": {"w": torch.ones(2)}, "extra": {"hook": object()}}
    with pytest.raises(BaseException) as info:
        dcp.save(state, storage_writer=SealWriter(tmp_path / "x", sign_with=private))
    exc, _ = info.value.failures[0]
    assert isinstance(exc, UnsupportedError)
    assert "extra.hook" in str(exc) and "builtins.object" in str(exc)
    assert INDEX_NAME not in os.listdir(tmp_path / "x")
    with pytest.raises(UnsupportedError, match=r"extra\.hook"):
        tdcp.save(state, tmp_path / "y", sign_with=private)


class _Schedule:
    """A training-loop object that the tree cannot hold, kept as an inert record on request."""

    def __init__(self, warmup):
        self.warmup = warmup
        self.seen = [1, 2]


def test_allow_objects_keeps_such_values_as_inert_records(tmp_path, signer):
    private, public = signer
    state = {"model": {"w": torch.arange(6.0)}, "extra": {"sched": _Schedule(100)}}
    tdcp.save(state, tmp_path / "x", sign_with=private, allow_objects=True)
    target = {"model": {"w": torch.zeros(6)}, "extra": {"sched": None}}
    tdcp.load(target, tmp_path / "x", trust=[public])
    assert torch.equal(target["model"]["w"], torch.arange(6.0))
    sched = target["extra"]["sched"]
    assert type(sched) is tensorseal.Object, sched
    assert (sched.module, sched.name) == (__name__, "_Schedule")
    assert sched.state == {"warmup": 100, "seen": [1, 2]}


def test_writer_refuses_a_folder_that_already_holds_a_checkpoint(tmp_path, signer):
    private, _ = signer
    state = {"w": torch.ones(3), "step": 1}
    dcp.save(state, storage_writer=SealWriter(tmp_path / "x", sign_with=private))
    with pytest.raises(BaseException) as info:
        dcp.save(state, storage_writer=SealWriter(tmp_path / "x", sign_with=private))
    exc, _ = info.value.failures[0]
    assert isinstance(exc, InvalidInputError) and "fresh folder" in str(exc)


def test_same_state_gives_byte_identical_checkpoints(tmp_path, signer):
    private, _ = signer
    state = full_state(7)
    for name in ("x", "y"):
        dcp.save(state, storage_writer=SealWriter(tmp_path / name, sign_with=private,
                                                  run_id="r", step=3))
    digests = [{f: hashlib.sha256((tmp_path / n / f).read_bytes()).hexdigest()
                for f in sorted(os.listdir(tmp_path / n))} for n in ("x", "y")]
    assert digests[0] == digests[1] and len(digests[0]) == 2


def test_compressed_shards_load_bit_exact(tmp_path, signer):
    """``SealWriter(compress=...)``: each shard plane-coded on its rank (format version 2), the
    index raw; loading restores every tensor bit for bit. Real trained weights (the lpips
    fixture's, small: the shard shrinks, not by the codec's full ratio)."""
    from conftest import FIXTURES

    private, public = signer
    weights = torch.load(FIXTURES / "real" / "lpips_vgg_v0.1.pth", map_location="cpu",
                         weights_only=True)
    state = {"w": {k.replace(".", "_"): v.bfloat16() for k, v in weights.items()}, "step": 3}
    tdcp.save(state, tmp_path / "raw", sign_with=private)
    tdcp.save(state, tmp_path / "z", sign_with=private, compress="auto")
    shard, raw_shard = tmp_path / "z" / "__0_0.tseal", tmp_path / "raw" / "__0_0.tseal"
    assert shard.read_bytes()[8] == 2 and (tmp_path / "z" / INDEX_NAME).read_bytes()[8] == 1
    assert shard.stat().st_size < raw_shard.stat().st_size
    target = {"w": {k: torch.zeros_like(v) for k, v in state["w"].items()}, "step": 0}
    tdcp.load(target, tmp_path / "z", trust=[public])
    for k, v in state["w"].items():
        assert torch.equal(target["w"][k].view(torch.int16), v.view(torch.int16)), k
    with pytest.raises(InvalidInputError, match="compress"):
        SealWriter(tmp_path / "bad", sign_with=private, compress="lz4")


def test_signed_file_that_is_not_a_shard_index_is_refused(tmp_path, signer):
    private, public = signer
    d = tmp_path / "ckpt"
    d.mkdir()
    # A trusted signature on something else: a plain checkpoint, then a fake index tree.
    tensorseal.save({"w": torch.ones(2)}, d / INDEX_NAME, sign_with=private)
    with pytest.raises(VerificationError) as info:
        SealReader(d, trust=[public]).read_metadata()
    assert info.value.kind == "index_invalid"
    fake = {"format": "tensorseal.dcp.index/1", "shards": [{"file": "../x.tseal", "length": 1,
                                                           "manifest_sha256": "00"}],
            "entries": []}
    os.remove(d / INDEX_NAME)
    tensorseal.save(fake, d / INDEX_NAME, sign_with=private, metadata={"tensorseal.dcp": "index"})
    with pytest.raises(VerificationError, match=r"shards\[0\]\.file '\.\./x\.tseal'") as info:
        SealReader(d, trust=[public]).read_metadata()
    assert info.value.kind == "index_invalid"


def test_reader_needs_trusted_keys(tmp_path):
    with pytest.raises(VerificationError) as info:
        SealReader(tmp_path, trust=None)
    assert info.value.kind == "no_trust"


def test_readme_example_runs(tmp_path):
    """The README's "Distributed training" example, run as its own script (2 spawned ranks)."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Distributed training", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "dcp_demo.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, timeout=JOB_TIMEOUT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        "['__0_0.tseal', '__1_0.tseal', 'index.tseal']",
        "100 (0.9, 0.99)",
        "VerificationError shard_mismatch",
    ], out.stdout + out.stderr


def test_load_in_batches_of_one_chunk(world4, root, trust, monkeypatch):
    # Each chunk its own read-verify-copy batch: the bounded-memory path gives the same state
    # (whole chunks are read in place otherwise, so that is turned off here).
    monkeypatch.setattr(tdcp, "READ_BATCH_BYTES", 1)
    monkeypatch.setattr(SealReader, "_in_place_targets", lambda *a: None)
    expected = full_state(1)
    target = template(expected, None)
    tdcp.load(target, root / "a1", trust=trust)
    assert_same(target, expected)


def test_whole_chunks_are_read_in_place_and_scrubbed_when_a_digest_fails(tmp_path, signer):
    """At the saving world size every chunk is taken whole: it is read and hashed straight in
    its target (no staging buffer; only non-tensor values go through materialize). A chunk
    whose bytes changed after signing leaves no unverified byte in any target: the targets of
    that read are zeroed before VerificationError reaches the caller."""
    state = {"w": torch.arange(64 * 1024, dtype=torch.float32).view(256, 256),
             "b": torch.ones(7, dtype=torch.bfloat16), "step": 3}
    private, public = signer
    path = tmp_path / "ckpt"
    tdcp.save(state, path, sign_with=private)
    calls = []
    real = tdcp.materialize

    def counting(native, nodes, framework, *a):
        if type(nodes) is list:  # a batch of chunks and values (the index is one tree)
            calls.append(len(nodes))
        return real(native, nodes, framework, *a)

    target = {"w": torch.zeros(256, 256), "b": torch.zeros(7, dtype=torch.bfloat16), "step": 0}
    tdcp.materialize = counting
    try:
        tdcp.load(target, path, trust=[public])
    finally:
        tdcp.materialize = real
    assert_same(target, state)
    assert calls == [1], calls  # the int only
    # One byte of w's data flipped on disk: the file still opens (its manifest is intact).
    shard = path / "__0_0.tseal"
    data = bytearray(shard.read_bytes())
    needle = state["w"][100].numpy().tobytes()
    at = bytes(data).index(needle)
    data[at + 5] ^= 0x40
    shard.write_bytes(bytes(data))
    target = {"w": torch.full((256, 256), 7.0), "b": torch.full((7,), 7.0, dtype=torch.bfloat16),
              "step": 0}
    with pytest.raises(VerificationError) as e:
        tdcp.load(target, path, trust=[public])
    assert e.value.kind == "digest_mismatch", e.value
    assert bool((target["w"] == 0).all()) and bool((target["b"] == 0).all())


@pytest.mark.parametrize("name", ["fs4", "fs4-fsdp"])
def test_filesystemwriter_checkpoints_convert_to_what_dcp_to_torch_save_gives(world4, root, name):
    """DCP's own pickle-based checkpoints, saved by 4 real ranks (DTensors over 4 ranks with an
    uneven split, an FSDP2 model with its Adam state), convert without executing .metadata to
    the state dict torch's dcp_to_torch_save consolidates."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    folder = root / name
    out = root / f"{name}.tseal"
    report = tensorseal.convert(folder, out)
    assert report.source_format == "dcp"
    assert tensorseal.scan(folder).verdict == "safe"
    dcp_to_torch_save(folder, root / f"{name}.ref.pt")
    expected = torch.load(root / f"{name}.ref.pt", weights_only=False)
    assert_same(tensorseal.load(out, verify=False), expected)


def test_cli_converts_a_filesystemwriter_checkpoint_to_a_set_loadable_at_2_and_1(
        world2, root, trust):
    """`tensorseal convert DCP_DIR SET/`: DCP's pickle-based 4-rank checkpoint (DTensors split
    unevenly over 4 ranks) becomes a signed shard set, one shard per .distcp file, that
    tensorseal.dcp loads at world size 2 and 1 to the state that was saved, and that refuses a
    shard swapped in from another set."""
    from test_convert_api import CLI

    if CLI is None:
        pytest.skip("no tensorseal CLI binary (cargo build, or set TENSORSEAL_CLI)")
    report = json.loads((root / "fs4-set.json").read_text())
    assert report["ok"] and report["shard_set"] and report["source_format"] == "dcp"
    distcp = sorted(p.name[:-len(".distcp")] for p in (root / "fs4").glob("*.distcp"))
    assert [s["file"] for s in report["shards"]] == [f"{n}.tseal" for n in distcp]
    last = [r[-1] for r in world2]
    assert [r["dir"] for r in last] == [str(root / "fs4-set")] * 2
    assert [r["ok"] for r in last] == [True, True], last
    expected = full_state(4)
    target = template(expected, None)
    dcp.load(target, storage_reader=SealReader(root / "fs4-set", trust=trust,
                                               expect={"run_id": "fs4"}, min_step=3))
    assert_same(target, expected)
    assert tdcp.verify(root / "fs4-set", trust=trust).bytes > 0
    # The Python API writes the same set, byte for byte (same key, options and input).
    r = tensorseal.convert(root / "fs4", f"{root}/fs4-set-py/", sign_with=root / "rank0.key",
                           metadata={"run_id": "fs4", "step": "3"})
    assert r.shard_set and r.shards == report["shards"]
    assert r.manifest_sha256 == report["manifest_sha256"]
    for name in [INDEX_NAME] + [s["file"] for s in report["shards"]]:
        assert (root / "fs4-set-py" / name).read_bytes() == (root / "fs4-set" / name).read_bytes()
    # A shard of the same name from another conversion (another step) is refused.
    other = root / "fs4-set-step4"
    p = subprocess.run([CLI, "convert", str(root / "fs4"), str(other) + "/", "--sign",
                        root / "rank0.key", "--meta", "step=4"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    swapped = root / "fs4-set-swapped"
    shutil.copytree(root / "fs4-set", swapped)
    shutil.copy(other / report["shards"][0]["file"], swapped / report["shards"][0]["file"])
    with pytest.raises(VerificationError) as e:
        tdcp.load(template(expected, None), swapped, trust=trust)
    assert e.value.kind == "shard_mismatch", e.value


def test_cli_consolidates_a_set_saved_at_4_into_the_whole_state(world4, root, trust):
    """`tensorseal convert SET OUT.tseal`: one file holding what a load at any world size gives
    (chunks of 10 rows over 4 ranks, Adam state, non-tensor values), binding every shard."""
    from test_convert_api import CLI

    if CLI is None:
        pytest.skip("no tensorseal CLI binary (cargo build, or set TENSORSEAL_CLI)")
    out = root / "a1-whole.tseal"
    p = subprocess.run([CLI, "convert", str(root / "a1"), str(out)], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr

    def by_key(x):
        # Entries come in DCP's metadata order, as dcp_to_torch_save gives them, not the
        # original dicts' insertion order.
        if isinstance(x, dict):
            return {k: by_key(x[k]) for k in sorted(x, key=str)}
        if isinstance(x, list):
            return [by_key(v) for v in x]
        return x

    assert_same(by_key(tensorseal.load(out, verify=False)), by_key(full_state(1)))
    assert tensorseal.verify(out, digests_only=True).blobs > 0


def test_save_to_and_load_from_a_bucket_prefix(s3, root, key_files, trust):
    """Issue 10 item 1 with issue 9: a 2-rank job saves to ``s3://`` (each shard uploaded whole
    after it is written, the index last), loads back at world size 2 by range GETs, and refuses
    to save again into a prefix that holds a checkpoint; world size 1 reloads it and the whole
    set verifies from the bucket; an object the index does not list is refused."""
    prefix = "dcp/run-s/step-1"
    url = f"s3://{S3_BUCKET}/{prefix}"
    ops = [
        {"do": "save", "dir": url, "seed": 11, "run_id": "S", "step": 1},
        {"do": "load", "dir": url, "seed": 11},
        {"do": "save", "dir": url + "/", "seed": 12},
    ]
    results, codes, job_dir = launch(root, "job-s3", 2, ops, key_files)
    assert codes == [0, 0], logs(job_dir)
    for rank, res in enumerate(results):
        assert res[0]["ok"] and res[1]["ok"], (rank, res)
    refused = [r[2] for r in results]
    assert not any(r["ok"] for r in refused), refused
    assert "already holds __0_0.tseal" in refused[0]["message"], refused[0]
    listed = s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix + "/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed) == [
        "__0_0.tseal", "__1_0.tseal", INDEX_NAME]

    expected = full_state(11)
    target = template(expected, None)
    dcp.load(target, storage_reader=SealReader(url, trust=trust))
    assert_same(target, expected)
    report = tdcp.verify(url, trust=trust, expect={"run_id": "S"})
    assert sorted(report.shards) == ["__0_0.tseal", "__1_0.tseal"] and report.step == 1

    s3.put_object(Bucket=S3_BUCKET, Key=f"{prefix}/__5_0.tseal", Body=b"not listed")
    with pytest.raises(VerificationError) as info:
        tdcp.verify(url, trust=trust)
    assert info.value.kind == "shard_unlisted" and "__5_0.tseal" in str(info.value)
