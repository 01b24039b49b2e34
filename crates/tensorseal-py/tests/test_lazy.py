"""tensorseal.open: structure and metadata without reading tensors; get() reads one."""

import pytest
import torch

import tensorseal


@pytest.fixture
def ckpt_path(tmp, keys):
    obj = {"model": {"embed.weight": torch.randn(10, 4), "head": torch.nn.Parameter(torch.ones(4))},
           "step": 7, "tied": None, "e": torch.empty(0)}
    obj["tied"] = obj["model"]["embed.weight"]
    p = tmp / "m.tseal"
    tensorseal.save(obj, p, sign_with=keys[0][0], metadata={"run_id": "r1", "step": "7"})
    return p, obj


def test_open_lists_without_reading(ckpt_path, keys):
    p, obj = ckpt_path
    data = bytearray(p.read_bytes())
    data[64] ^= 0xFF  # corrupt model.embed.weight (blob 0): opening must not notice
    p.write_bytes(bytes(data))
    with tensorseal.open(p, trust=[keys[0][1]]) as ckpt:
        assert ckpt.names() == ["model.embed.weight", "model.head", "tied", "e"]
        assert ckpt.metadata == {"run_id": "r1", "step": "7"}
        assert "model.head" in ckpt and len(ckpt) == 4
        info = ckpt.info("model.embed.weight")
        assert (info.dtype, info.shape, info.nbytes, info.kind) == ("float32", (10, 4), 160, None)
        assert ckpt.info("model.head").kind == "parameter"
        tree = ckpt.tree
        assert tree["step"] == 7 and isinstance(tree["model"]["head"], tensorseal.TensorInfo)
        assert tree["tied"].name == "tied"
        head = ckpt.get("model.head")
        assert type(head) is torch.nn.Parameter and torch.equal(head, torch.ones(4))
        assert ckpt["e"].shape == (0,)
        with pytest.raises(tensorseal.VerificationError, match="model.embed.weight"):
            ckpt.get("model.embed.weight")
        with pytest.raises(tensorseal.VerificationError):
            ckpt.get("tied")  # the same blob
        with pytest.raises(KeyError):
            ckpt.get("nope")
        assert [s.trusted for s in ckpt.signers] == [True]
    assert ckpt.closed
    with pytest.raises(tensorseal.InvalidInputError, match="closed"):
        ckpt.get("model.head")


def test_open_load_everything(ckpt_path, keys):
    from deep_compare import assert_same

    p, obj = ckpt_path
    with tensorseal.open(p, trust=[keys[0][1]]) as ckpt:
        assert_same(ckpt.load(), obj)


def test_open_checks_signatures_first(ckpt_path, keys):
    p, _ = ckpt_path
    with pytest.raises(tensorseal.VerificationError) as e:
        tensorseal.open(p, trust=[keys[1][1]])
    assert e.value.kind == "untrusted"


def test_numpy_framework(ckpt_path, keys):
    import numpy as np

    p, obj = ckpt_path
    with tensorseal.open(p, trust=[keys[0][1]], framework="numpy") as ckpt:
        w = ckpt.get("model.embed.weight")
        assert type(w) is np.ndarray and np.array_equal(w, obj["tied"].numpy())
