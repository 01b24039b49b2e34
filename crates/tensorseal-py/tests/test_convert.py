"""tensorseal.convert over the whole fixture corpus (tests/fixtures, issue 5 §3): every file
converts or is refused as its X.expected.json says, with the right exception class, and every
converted file loads back (tensorseal.load, framework="torch") deep-equal to what the library
that wrote the original returns: torch.load(weights_only=False), numpy.load, pickle.load,
safetensors.torch.load_file, or the merged shards of a Hugging Face index. Also: the same file
scans to the verdict that matches the conversion's outcome.

Only benign files are ever given to torch.load / pickle.load / numpy.load: never anything under
hostile/ (those `ok` controls are compared with their expected tree instead).
"""

import hashlib
import json
import pickle

import numpy as np
import pytest
import safetensors.torch
import torch

import tensorseal
from conftest import FIXTURES
from deep_compare import assert_same, assert_same_sharing, canonical_tree, render_tree

OUTCOME = {
    tensorseal.UnsafeError: "unsafe",
    tensorseal.UnknownObjectError: "unknown-objects",
    tensorseal.InvalidInputError: "invalid",
}
# The scan verdicts each conversion outcome allows: scan and convert judge pickles with the
# same code, so they agree on refusals. A scan reads containers and pickles, not tensor
# metadata: a file refused for a quantized tensor or a missing storage record scans as safe.
VERDICTS = {"ok": {"safe"}, "unsafe": {"unsafe"}, "unknown-objects": {"unknown-objects"},
            "invalid": {"invalid", "safe"}}


def cases():
    if not FIXTURES.is_dir():
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=f"no fixtures at {FIXTURES}"))]
    out = []
    for exp in sorted(FIXTURES.rglob("*.expected.json")):
        meta = json.loads(exp.read_text())
        path = exp.parent / meta["input"]
        name = path.relative_to(FIXTURES).as_posix()
        out.append(pytest.param(path, meta, id=name))
    return out


CASES = cases()


def rel(path):
    return path.relative_to(FIXTURES).as_posix()


def acceptable(meta):
    """Outcomes the corpus accepts; invalid and unsupported are one class (exit 1,
    InvalidInputError)."""
    names = {meta["expect"], *meta.get("also_acceptable", [])}
    return {"invalid" if n == "unsupported" else n for n in names}


def reference(path, meta):
    """What the original holds, read by the library that wrote it; None where that library
    cannot read it right (the corpus then gives the saved object's tree). Benign files only."""
    assert rel(path).split("/")[0] != "hostile", "never load hostile fixtures"
    if "object passed to torch.save" in meta.get("reference", ""):
        return None  # torch.load fails on it or returns wrong values (see X.expected.json)
    fmt = meta["format"]
    if fmt in ("torch-zip", "torch-legacy", "torch-tar"):
        return torch.load(path, weights_only=False, map_location="cpu")
    if fmt == "npy":
        return np.load(path, allow_pickle=False)
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if fmt == "pickle":
        with open(path, "rb") as f:
            return pickle.load(f)  # noqa: S301 - a benign fixture the generator wrote
    if fmt == "safetensors":
        return safetensors.torch.load_file(path)
    if fmt == "hf-index":
        index = json.loads(path.read_text())
        shards = {}
        for shard in dict.fromkeys(index["weight_map"].values()):
            p = path.parent / shard
            shards[shard] = (safetensors.torch.load_file(p) if shard.endswith(".safetensors")
                             else torch.load(p, weights_only=False, map_location="cpu"))
        return {name: shards[shard][name] for name, shard in index["weight_map"].items()}
    raise AssertionError(f"no reference loader for {fmt}")


def outcome_of(exc):
    for cls, name in OUTCOME.items():
        if isinstance(exc, cls):
            return name
    raise AssertionError(f"unexpected exception class {type(exc).__name__}: {exc}")


@pytest.mark.parametrize("path,meta", CASES)
def test_fixture_converts_as_the_original_loads(path, meta, tmp, keys):
    name = rel(path)
    out = tmp / "converted.tseal"
    scanned = tensorseal.scan(path, sandbox="off")
    try:
        report = tensorseal.convert(path, out, sign_with=keys[0][0], sandbox="off")
    except tensorseal.Error as exc:
        outcome = outcome_of(exc)
        assert outcome in acceptable(meta), f"{name}: expected {meta['expect']}, got {exc!r}"
        assert not out.exists() and list(tmp.iterdir()) == [], "a refused conversion left files"
        assert scanned.verdict in VERDICTS[outcome], (scanned.verdict, str(exc))
        if isinstance(exc, tensorseal.RefusedError):
            assert exc.findings and exc.member and exc.kind == outcome.replace("-", "_")
        return
    assert "ok" in acceptable(meta), f"{name}: expected {meta['expect']}, converted"
    assert scanned.verdict in VERDICTS["ok"], scanned

    # The report.
    # The manifest has no tar value: the tar format is recorded as its successor, with a note.
    tar = meta["format"] == "torch-tar"
    assert report.source_format == ("torch-legacy" if tar else meta["format"])
    assert not tar or any("tar format" in n for n in report.notes), report.notes
    assert report.source_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.signed_by == [tensorseal.key_id(keys[0][1])]
    if "tensors" in meta:
        assert report.tensors == len(meta["tensors"])
    assert report.file_length == out.stat().st_size

    loaded = tensorseal.load(out, trust=[keys[0][1]], framework="torch")
    compared = 0
    if not name.startswith("hostile/"):
        expected = reference(path, meta)
        if expected is not None:
            if meta["format"] == "safetensors":
                # load_file returns the names sorted; the converter keeps the header's order.
                assert list(loaded) == [t["path"][0] for t in meta["tensors"]]
                expected = {k: expected[k] for k in loaded}
            assert_same(loaded, expected)
            assert_same_sharing(loaded, expected)
            if meta["format"] in ("npy", "npz", "pickle"):
                as_numpy = tensorseal.load(out, trust=[keys[0][1]], framework="numpy")
                assert_same(as_numpy, expected)
            compared += 1
    if not compared and "tree" in meta:
        # No library reads the original right (or it is under hostile/): the corpus's tree of
        # the saved object, which the Rust converter test also checks the file against.
        got, want = canonical_tree(render_tree(loaded, FIXTURES)), canonical_tree(meta["tree"])
        assert got == want, f"{name}: the loaded tree differs from the expected tree"
        compared += 1
    assert compared, f"{name}: nothing to compare with"


def test_the_corpus_is_all_there():
    """Every folder of the corpus is covered: a moved corpus must not make the test vacuous."""
    names = [p.values[0] and rel(p.values[0]) for p in CASES]
    for folder, at_least in [("torch/", 35), ("numpy/", 19), ("safetensors/", 9), ("real/", 3),
                             ("hostile/", 70)]:
        assert sum(1 for n in names if n and n.startswith(folder)) >= at_least, folder
