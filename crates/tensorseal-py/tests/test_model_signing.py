"""tensorseal's reader of OpenSSF model-signing bundles, side by side with the real package
(pinned in tools/requirements.txt): the same model, bundle and key, changed in the ways an
attacker or an accident would, get the same verdict from `model_signing`'s verifier and from
`tensorseal model-signing verify`."""

import json
import pathlib
import shutil

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import model_signing

from test_convert_api import CLI, cli, needs_cli

HERE = pathlib.Path(__file__).resolve().parent
REAL = HERE.parents[2] / "tests" / "fixtures" / "real"


def keypair(tmp, name, curve):
    key = ec.generate_private_key(curve)
    priv, pub = tmp / f"{name}.pem", tmp / f"{name}.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def theirs(model, sig, pub):
    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(model, sig)
        return True
    except Exception:  # noqa: BLE001 - any refusal is a refusal
        return False


def ours(model, sig, pub):
    code, out, err = cli("model-signing", "verify", model, "--signature", sig, "--public-key", pub,
                         "--json")
    report = json.loads(out)
    assert report["exit_code"] == code, (out, err)
    return code == 0, report


@needs_cli
@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()],
                         ids=lambda c: c.name)
def test_same_verdicts_as_model_signing(tmp, curve):
    model = tmp / "model"
    (model / "sub").mkdir(parents=True)
    shutil.copyfile(REAL / "silero_vad_16k.pt", model / "silero_vad_16k.pt")
    shutil.copyfile(REAL / "lpips_vgg_v0.1.pth", model / "sub" / "lpips_vgg.pth")
    (model / "config.json").write_text('{"sample_rate": 16000}\n')
    priv, pub = keypair(tmp, "signer", curve)
    _, other = keypair(tmp, "other", curve)
    sig = tmp / "model.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=priv).sign(model, sig)

    def agree(expect_ok, what, kind=None, key=pub):
        a, (b, report) = theirs(model, sig, key), ours(model, sig, key)
        assert (a, b) == (expect_ok, expect_ok), f"{what}: model_signing {a}, tensorseal {b}: {report}"
        if kind:
            assert report["error"]["kind"] == kind, (what, report)
        return report

    report = agree(True, "intact")
    assert (report["files"], report["method"]) == (3, "files")
    agree(False, "another key", "bundle_untrusted", key=other)

    w = model / "silero_vad_16k.pt"
    orig = w.read_bytes()
    w.write_bytes(orig[:1000] + bytes([orig[1000] ^ 0x40]) + orig[1001:])
    report = agree(False, "one flipped bit", "model_mismatch")
    assert "silero_vad_16k.pt: sha256" in report["error"]["message"]
    w.write_bytes(orig[:-1])
    agree(False, "truncated", "model_mismatch")
    w.write_bytes(orig)
    agree(True, "restored")

    (model / "sub" / "extra.pt").write_bytes(b"PK\x03\x04")
    agree(False, "extra file", "model_mismatch")
    (model / "sub" / "extra.pt").unlink()
    (model / "config.json").unlink()
    agree(False, "missing file", "model_mismatch")
    (model / "config.json").write_text('{"sample_rate": 16000}\n')
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    agree(True, "git metadata is ignored")

    b = json.loads(sig.read_text())
    b["dsseEnvelope"]["signatures"][0]["sig"] = b["dsseEnvelope"]["signatures"][0]["sig"][::-1]
    sig.write_text(json.dumps(b))
    agree(False, "mangled signature")
