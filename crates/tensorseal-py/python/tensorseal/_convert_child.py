"""Both ends of the child process that runs a sandboxed conversion or scan.

The OS sandbox (Landlock + seccomp) cannot be undone and covers the whole process, so it must
never be applied to the caller's interpreter. :func:`run` starts a fresh interpreter::

    sys.executable -I -c <bootstrap> <this package directory>

(``-I``: no ``PYTHON*`` variables, no user site, no current directory on ``sys.path``; the
bootstrap imports this module from the parent's package directory, so the child runs the same
``tensorseal`` as the parent.) The request, JSON with the key material in base64, goes through the child's stdin,
never the command line. The child (:func:`main`) calls the native function with the sandbox on,
which locks the child down after opening its files and before parsing a byte, and writes one
JSON answer on its stdout: the report, or the exception with its class name, message and
attributes, which the parent raises again as the same class with the same message.
"""

from __future__ import annotations

import binascii
import json
import os
import sys

from . import _errors, _native

# The child needs only this module, `_native` and `_errors`: the bootstrap registers the
# package without running its `__init__` (which imports the loader's modules), halving the
# child's start-up time.
_BOOTSTRAP = """\
import sys, types
package = types.ModuleType("tensorseal")
package.__path__ = [sys.argv[1]]
sys.modules["tensorseal"] = package
from tensorseal._convert_child import main
main()
"""
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# Exceptions the child may report, by name; anything else is reported as a crash.
_CLASSES = {c.__name__: c for c in vars(_errors).values()
            if isinstance(c, type) and issubclass(c, _errors.Error)}


# -- parent ------------------------------------------------------------------------------------
def _temporaries(output):
    """Names of the converter's temporary files for ``output`` (``.NAME.tmp-<hex>``) now in its
    directory."""
    if output is None:
        return set()
    directory, name = os.path.split(output)
    try:
        entries = os.listdir(directory or ".")
    except OSError:
        return set()
    prefix = f".{name}.tmp-"
    return {os.path.join(directory, e) for e in entries if e.startswith(prefix)}


def _remove_new(output, before):
    """Removes the temporary files of ``output`` that were not there ``before`` the child."""
    for leftover in _temporaries(output) - before:
        try:
            os.unlink(leftover)
        except OSError:
            pass


def run(request: dict, output=None) -> str:
    """Runs ``request`` (``{"op": "convert" | "scan", ...}``) in a child process and returns the
    report JSON; raises the child's exception. ``output``: the conversion's output path, whose
    temporary file is removed if the child is killed (Ctrl-C) before it could clean up."""
    import subprocess  # here, not at the top: the child does not need it

    payload = json.dumps(request).encode()
    before = _temporaries(output)
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _BOOTSTRAP, _PACKAGE_DIR],
            input=payload, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError as e:
        raise _errors.Error(
            f"cannot start the conversion process ({sys.executable}): {e}") from None
    except BaseException:
        # KeyboardInterrupt while waiting: subprocess.run killed and reaped the child, which
        # had no chance to remove its temporary output file.
        _remove_new(output, before)
        raise
    answer = None
    try:
        answer = json.loads(proc.stdout)
    except ValueError:
        pass
    if not isinstance(answer, dict) or "ok" not in answer:  # killed, or crashed hard
        _remove_new(output, before)
        stderr = proc.stderr.decode(errors="replace").strip()
        raise _errors.Error(
            f"the conversion process failed (exit status {proc.returncode}) without a report"
            + (f": {stderr[-2000:]}" if stderr else ""))
    if proc.stderr:
        sys.stderr.write(proc.stderr.decode(errors="replace"))
    if answer["ok"]:
        return answer["report"]
    if "crash" in answer:
        raise _errors.Error(f"the conversion process failed: {answer['crash']}")
    err = answer["error"]
    cls = _CLASSES.get(err["class"], _errors.Error)
    try:
        exc = cls(err["message"], **err["attrs"])
    except TypeError:
        exc = _errors.Error(err["message"])
    raise exc


# -- child -------------------------------------------------------------------------------------
def _serve(request):
    if request["op"] == "convert":
        signers = [(label, binascii.a2b_base64(key)) for label, key in request["signers"]]
        return _native.convert(
            request["src"], request["dst"], signers, request["compress"],
            request["allow_objects"], request["metadata"], request["sandbox"],
            lock_down_this_process=True)
    if request["op"] == "scan":
        return _native.scan(request["src"], request["sandbox"], lock_down_this_process=True,
                            allow_objects=request.get("allow_objects", False))
    raise ValueError(f"unknown request {request['op']!r}")


def main():
    """The child: one request on stdin, one JSON answer on stdout. Everything the answer needs is
    imported before the native call locks the process down (no file can be opened after)."""
    # stdout carries the answer only: keep it on a private descriptor and send anything else
    # that writes to fd 1 to stderr.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        report = _serve(json.loads(sys.stdin.buffer.read()))
        answer = '{"ok": true, "report": ' + json.dumps(report) + "}"
    except _errors.Error as e:
        answer = json.dumps({"ok": False, "error": {
            "class": type(e).__name__, "message": str(e), "attrs": vars(e)}})
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises
        answer = json.dumps({"ok": False, "crash": f"{type(e).__name__}: {e}"})
    out.write(answer)
    out.flush()
