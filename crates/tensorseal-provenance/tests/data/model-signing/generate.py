"""Writes the model-signing fixtures: a small model directory of real weights, three ECDSA
public keys, and bundles made by the real OpenSSF model-signing package (tools/requirements.txt
pins it), which crates/tensorseal-provenance/tests/model_signing.rs reads.

    VENV=$(tools/python-env.sh | tail -n1)
    "$VENV/bin/python" crates/tensorseal-provenance/tests/data/model-signing/generate.py

The model's files are copies of tests/fixtures files (trained LPIPS weights written by an old
torch, a sharded Hugging Face safetensors checkpoint). ECDSA signatures are randomized and the
keys are new each run, so the bundles and keys change on every run; the model does not. The
private keys are not kept.
"""

import pathlib
import shutil
import tempfile

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import model_signing

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[4]
FIXTURES = REPO / "tests" / "fixtures"
CURVES = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}


def build_model(model):
    if model.exists():
        shutil.rmtree(model)
    (model / "hf").mkdir(parents=True)
    shutil.copyfile(FIXTURES / "real" / "lpips_alex_v0.1.pth", model / "lpips_alex.pth")
    hf = FIXTURES / "safetensors" / "hf_safetensors"
    for f in sorted(hf.iterdir()):
        if not f.name.endswith(".expected.json"):
            shutil.copyfile(f, model / "hf" / f.name)
    (model / "config.json").write_text('{"model_type": "lpips", "version": "0.1"}\n')


def sign(model, key_pem, out, shard_size=None):
    cfg = model_signing.signing.Config().use_elliptic_key_signer(private_key=key_pem)
    if shard_size is not None:
        cfg.set_hashing_config(
            model_signing.hashing.Config().use_shard_serialization(shard_size=shard_size))
    cfg.sign(model, out)


def main():
    model = HERE / "model"
    build_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        for name, curve in CURVES.items():
            key = ec.generate_private_key(curve)
            pem = pathlib.Path(tmp) / f"{name}.pem"
            pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
            (HERE / f"{name}.pub").write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
            sign(model, pem, HERE / f"files-{name}.sig")
            if name == "p256":
                sign(model, pem, HERE / "shards-p256.sig", shard_size=2048)
                sign(model / "lpips_alex.pth", pem, HERE / "file-p256.sig")
    print("wrote", sorted(p.name for p in HERE.iterdir()))


if __name__ == "__main__":
    main()
