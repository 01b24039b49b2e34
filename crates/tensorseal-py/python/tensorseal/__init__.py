"""tensorseal: signed, pickle-free ML checkpoints for torch and numpy.

Drop-in for ``torch.load`` / ``torch.save`` that cannot run code and refuses anything not
signed by a key you trust::

    obj = tensorseal.load("model.tseal", trust=["ci-signer.pub"])      # was torch.load(p)
    tensorseal.save(obj, "model.tseal", sign_with="ci-signer.key")     # was torch.save(o, p)

Verification happens before anything is returned: a file that is unsigned, signed by an
untrusted key, altered in a single bit, or older than ``min_step`` raises
:class:`VerificationError` and nothing is built from it.

Existing checkpoints are converted without executing them, in a sandboxed child process::

    tensorseal.convert("model.pt", "model.tseal", sign_with="ci-signer.key")
    tensorseal.scan("suspicious.bin").verdict                          # 'unsafe'
"""

from __future__ import annotations

from ._api import Checkpoint, Signer, VerifyReport, generate_key, key_id, load, open, save, verify
from ._convert import ConvertReport, SandboxReport, convert
from ._errors import (Error, InvalidInputError, RefusedError, SandboxError, SandboxWarning,
                      UnknownObjectError, UnsafeError, UnsupportedError, VerificationError)
from ._native import __version__
from ._records import NO_STATE, Global, Object, TensorInfo, Typed
from ._scan import ScanFinding, ScanMember, ScanReport, scan

__all__ = [
    "load", "save", "open", "verify", "generate_key", "key_id",
    "Checkpoint", "VerifyReport", "Signer", "TensorInfo",
    "Object", "Global", "Typed", "NO_STATE",
    "Error", "VerificationError", "InvalidInputError", "UnsupportedError",
    "convert", "scan", "ConvertReport", "SandboxReport", "ScanReport", "ScanMember", "ScanFinding",
    "RefusedError", "UnsafeError", "UnknownObjectError", "SandboxError", "SandboxWarning",
    "__version__",
]
