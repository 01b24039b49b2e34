"""Exceptions, one class per failure class. All derive from :class:`Error`."""


class Error(Exception):
    """Base class of every tensorseal error."""


class VerificationError(Error):
    """The file is not what a trusted key signed: bad, missing or untrusted signature, digest
    mismatch, malformed or truncated file, unexpected metadata (``expect``) or a rollback
    (``min_step``). Nothing from the file was returned.

    ``kind`` is machine-readable, the same strings as ``tensorseal verify --json``:
    ``malformed``, ``bad_signature``, ``unsigned``, ``untrusted``, ``no_trust``,
    ``digest_mismatch``, ``metadata_mismatch``, ``step_too_old``, ``step_missing``.
    """

    def __init__(self, message, kind="malformed"):
        super().__init__(message)
        self.kind = kind


class InvalidInputError(Error, ValueError):
    """An argument cannot be used: the file is missing, unreadable or not a file, a key cannot be
    read or parsed, an option is invalid."""


class UnsupportedError(Error, TypeError):
    """A value cannot be represented: saving an object the format has no kind for (the message
    names where it is in the object), or loading a valid file into an environment that lacks
    something it needs (e.g. ``framework="numpy"`` for a bfloat16 tensor without ``ml_dtypes``).
    """
