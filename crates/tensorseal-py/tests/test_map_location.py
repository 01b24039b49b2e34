"""tensorseal.load as a torch.load drop-in: map_location in every form torch accepts, mmap=True,
weights_only, and what a legacy checkpoint passed by mistake gets (never unpickled)."""

import pickle

import pytest
import torch

import tensorseal

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine: the CUDA "
                                "restore path (pinned staging, device copy) is not exercised")


@pytest.fixture
def ckpt(tmp, signer):
    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    obj = {"w": w, "tied": w, "b": torch.tensor([1, 2, 3], dtype=torch.int64),
           "empty": torch.empty(0, 5), "step": 7}
    path = tmp / "m.tseal"
    tensorseal.save(obj, path, sign_with=signer[0])
    return path, signer[1], obj


def test_strings_devices_and_dicts_place_every_tensor(ckpt):
    path, pub, obj = ckpt
    for where in ("cpu", torch.device("cpu"), b"cpu", {"cpu": "cpu"}, {"cuda:1": "cuda:0"}):
        out = tensorseal.load(path, trust=[pub], map_location=where)
        assert out["w"].device.type == "cpu" and torch.equal(out["w"], obj["w"])
        assert out["w"].data_ptr() == out["tied"].data_ptr()
    for where in ("meta", torch.device("meta"), {"cpu": "meta"}, {"cpu": torch.device("meta")}):
        out = tensorseal.load(path, trust=[pub], map_location=where)
        assert {t.device.type for t in (out["w"], out["b"], out["empty"])} == {"meta"}
        assert out["w"].shape == (3, 4) and out["b"].dtype == torch.int64
        assert out["step"] == 7


def test_a_callable_is_called_as_torch_calls_it(ckpt):
    path, pub, obj = ckpt
    calls = []

    def keep(storage, location):
        calls.append((type(storage), location, storage.nbytes()))
        return None

    out = tensorseal.load(path, trust=[pub], map_location=keep)
    assert torch.equal(out["w"], obj["w"]) and out["w"].data_ptr() == out["tied"].data_ptr()
    # One call per stored blob (tied tensors share one), each with the verified storage.
    assert sorted(calls) == sorted([(torch.UntypedStorage, "cpu", 48),
                                    (torch.UntypedStorage, "cpu", 24)])

    copies = tensorseal.load(path, trust=[pub], map_location=lambda s, loc: s.clone())
    assert torch.equal(copies["w"], obj["w"]) and torch.equal(copies["b"], obj["b"])
    assert copies["w"].data_ptr() == copies["tied"].data_ptr()
    typed = tensorseal.load(path, trust=[pub], map_location=lambda s, loc: torch.storage.TypedStorage(
        wrap_storage=s, dtype=torch.uint8, _internal=True))
    assert torch.equal(typed["b"], obj["b"])

    with pytest.raises(tensorseal.UnsupportedError, match="returned Tensor"):
        tensorseal.load(path, trust=[pub], map_location=lambda s, loc: torch.zeros(3))
    with pytest.raises(tensorseal.UnsupportedError, match="of 1 bytes"):
        tensorseal.load(path, trust=[pub], map_location=lambda s, loc: torch.UntypedStorage(1))


def test_bad_map_locations_fail_before_anything_is_read(ckpt):
    path, pub, _ = ckpt
    for bad, cls, msg in [
        ("not-a-device", tensorseal.InvalidInputError, "not a device"),
        (5, tensorseal.InvalidInputError, "map_location must be"),
        ({0: "cpu"}, tensorseal.InvalidInputError, "keys are saved locations"),
        ({"cpu": 3}, tensorseal.InvalidInputError, "must be a device"),
    ]:
        with pytest.raises(cls, match=msg):
            tensorseal.load(path, trust=[pub], map_location=bad)
    with pytest.raises(tensorseal.InvalidInputError, match="framework='numpy'"):
        tensorseal.load(path, trust=[pub], framework="numpy", map_location="cpu")
    if not CUDA:
        with pytest.raises(tensorseal.UnsupportedError, match="is_available"):
            tensorseal.load(path, trust=[pub], map_location="cuda:0")
        with pytest.raises(tensorseal.UnsupportedError, match="is_available"):
            tensorseal.load(path, trust=[pub], map_location={"cpu": "cuda"})


def test_open_places_what_get_returns(ckpt):
    path, pub, obj = ckpt
    with tensorseal.open(path, trust=[pub], map_location="meta") as c:
        assert c.get("w").device.type == "meta"
        assert c.load()["b"].device.type == "meta"
    with tensorseal.open(path, trust=[pub], mmap=True) as c:
        assert c.mode == "mmap" and torch.equal(c.get("w"), obj["w"])


def test_mmap_and_weights_only_as_in_torch_load(ckpt):
    path, pub, obj = ckpt
    out = tensorseal.load(path, trust=[pub], mmap=True, weights_only=True)
    assert torch.equal(out["w"], obj["w"])
    assert torch.equal(tensorseal.load(path, trust=[pub], mmap=False, weights_only=False)["w"],
                       obj["w"])
    with pytest.raises(tensorseal.InvalidInputError, match="contradicts"):
        tensorseal.load(path, trust=[pub], mmap=True, mode="copy")
    with pytest.raises(tensorseal.InvalidInputError, match="mmap must be"):
        tensorseal.load(path, trust=[pub], mmap="yes")


@pytest.mark.parametrize("zipfile", [True, False])
def test_an_unconverted_torch_checkpoint_names_convert_and_is_not_unpickled(tmp, signer, zipfile):
    path = tmp / "model.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=zipfile)
    for trust, kind in ((None, "no_trust"), ([signer[1]], "malformed")):
        with pytest.raises(tensorseal.VerificationError) as e:
            tensorseal.load(path, trust=trust)
        assert e.value.kind == kind
        assert "tensorseal.convert" in str(e.value) and "not unpickled" in str(e.value)
    with pytest.raises(tensorseal.VerificationError, match="tensorseal.convert"):
        tensorseal.open(path, trust=[signer[1]])


def test_a_hostile_pickle_passed_to_load_runs_nothing(tmp, signer):
    marker = tmp / "pwned"
    payload = pickle.dumps(0, protocol=2)[:2] + (
        b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    path = tmp / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(tensorseal.VerificationError, match="tensorseal.convert") as e:
        tensorseal.load(path, trust=[signer[1]], map_location="cpu")
    assert e.value.kind == "malformed"
    assert not marker.exists()


@needs_cuda
def test_cuda_restore_verifies_then_copies_to_the_device(ckpt):
    path, pub, obj = ckpt
    for where in ("cuda:0", torch.device("cuda", 0), {"cpu": "cuda:0"},
                  lambda s, loc: s.cuda(0)):
        out = tensorseal.load(path, trust=[pub], map_location=where)
        assert out["w"].device == torch.device("cuda", 0)
        assert torch.equal(out["w"].cpu(), obj["w"]) and torch.equal(out["b"].cpu(), obj["b"])
        assert out["w"].data_ptr() == out["tied"].data_ptr()
    with tensorseal.open(path, trust=[pub], map_location="cuda", mmap=True) as c:
        assert c.get("b").is_cuda and torch.equal(c.get("b").cpu(), obj["b"])
