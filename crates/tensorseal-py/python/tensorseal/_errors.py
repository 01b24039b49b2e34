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
    read or parsed, an option is invalid. From :func:`convert` and :func:`scan` also: a
    malformed or unsupported input (the CLI's exit 1), with ``kind`` ``io``, ``invalid`` or
    ``unsupported`` (``None`` elsewhere)."""

    def __init__(self, message, kind=None):
        super().__init__(message)
        self.kind = kind


class UnsupportedError(Error, TypeError):
    """A value cannot be represented: saving an object the format has no kind for (the message
    names where it is in the object), or loading a valid file into an environment that lacks
    something it needs (e.g. ``framework="numpy"`` for a bfloat16 tensor without ``ml_dtypes``).
    ``kind`` is ``unsupported`` when the library raised it, ``None`` otherwise.
    """

    def __init__(self, message, kind=None):
        super().__init__(message)
        self.kind = kind


class RefusedError(Error):
    """:func:`convert` refused the content of a pickle (the CLI's exit 4): see
    :class:`UnsafeError` and :class:`UnknownObjectError`. ``member`` is the pickle (e.g.
    ``archive/data.pkl``), ``findings`` each refused global or call with its byte offset and
    reason, ``kind`` ``unsafe`` or ``unknown_objects``."""

    def __init__(self, message, kind=None, member=None, findings=()):
        super().__init__(message)
        self.kind = kind
        self.member = member
        self.findings = list(findings)


class UnsafeError(RefusedError):
    """The file names code-execution or I/O primitives (``os.system``, ``builtins.eval``, ...).
    Always refused, whatever ``allow_objects`` says."""


class UnknownObjectError(RefusedError):
    """The file holds instances of classes the converter does not know. Refused unless
    ``allow_objects=True``, which keeps them as inert :class:`Object` records."""


class SandboxError(Error, RuntimeError):
    """``sandbox="required"`` and the OS sandbox (Landlock and seccomp) cannot be fully applied
    on this system (the CLI's ``--require-sandbox``, exit 1). ``kind`` is ``sandbox``."""

    def __init__(self, message, kind="sandbox"):
        super().__init__(message)
        self.kind = kind


class SandboxWarning(UserWarning):
    """The OS sandbox was applied only in part (``sandbox="best-effort"`` on a kernel without
    Landlock or seccomp): the message says what is missing."""
