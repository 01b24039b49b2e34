"""``audit_log=`` (or ``TENSORSEAL_AUDIT_LOG``): one hash-chained record per load, open or verify,
appended by the same Rust writer as ``tensorseal --audit-log`` (spec/AUDIT.md); ``audit_key=``
seals each record with a signed checkpoint, as ``tensorseal --audit-key`` does."""

from __future__ import annotations

import functools
import json
import os

from . import _native
from ._errors import InvalidInputError


def _key_ids(trust):
    from ._api import key_id

    if trust is None:
        return []
    items = trust if isinstance(trust, (list, tuple)) else [trust]
    ids = []
    for k in items:
        try:
            ids.append(key_id(k))
        except Exception:  # noqa: BLE001 - the call itself reports a bad key
            ids.append(None)
    return ids


def _fspath(p):
    try:
        return os.fsdecode(os.fspath(p))
    except TypeError:
        return None


def audited(action):
    """Adds ``audit_log=None`` to a function whose first argument is the file's path."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(path, *args, audit_log=None, audit_key=None, **kw):
            log = audit_log if audit_log is not None else os.environ.get("TENSORSEAL_AUDIT_LOG") or None
            if log is None:
                if audit_key is not None:
                    raise InvalidInputError(
                        "audit_key needs audit_log= or TENSORSEAL_AUDIT_LOG")
                return fn(path, *args, **kw)
            # Read before the call, so that an unreadable key fails before anything is done.
            key = None
            if audit_key is not None:
                from ._api import _keys

                keys = _keys(audit_key, "audit_key")
                if len(keys) != 1:
                    raise InvalidInputError("audit_key is one private key")
                key = keys[0]
                _native.check_secret_key(*key)
            trust = args[0] if args else kw.get("trust")
            policy = kw.get("policy")
            details = {"trust_key_ids": _key_ids(trust),
                       "policy": None if policy is None else _fspath(policy)}
            inputs = [p for p in [_fspath(path)] if p is not None]
            try:
                result = fn(path, *args, **kw)
            except BaseException as e:
                details.update(result="error", error_kind=getattr(e, "kind", None) or type(e).__name__,
                               error=str(e))
                _native.audit_append(_fspath(log), action, inputs, json.dumps(details), key)
                raise
            details.update(result="ok", error_kind=None, error=None)
            sha = getattr(result, "manifest_sha256", None)
            if isinstance(sha, str):
                details["manifest_sha256"] = sha
            signers = getattr(result, "signers", None)
            if isinstance(signers, list):
                details["signer_key_ids"] = [s.key_id for s in signers]
            _native.audit_append(_fspath(log), action, inputs, json.dumps(details), key)
            return result

        wrapper.__doc__ = (fn.__doc__ or "") + (
            "\n\n    ``audit_log`` (a path; default ``$TENSORSEAL_AUDIT_LOG``) appends one "
            "hash-chained record of this call,\n    success or failure, to that audit log "
            "(spec/AUDIT.md).\n    ``audit_key`` (a private key: PEM path or bytes) seals that record "
            "with a\n    checkpoint signed by it, so a truncated log is detectable "
            "(``tensorseal audit verify --key``).\n")
        return wrapper

    return decorate
