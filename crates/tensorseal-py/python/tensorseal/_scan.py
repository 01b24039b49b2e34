"""``scan``: every global and call in every pickle a file holds, with the verdict; as
``tensorseal scan`` does it, with the same readers and interpreter as :func:`convert`."""

from __future__ import annotations

import dataclasses
import json

from . import _convert_child, _native
from ._api import _path
from ._convert import sandbox_arg

VERDICTS = ("safe", "invalid", "unknown-objects", "unsafe")


@dataclasses.dataclass(frozen=True)
class ScanFinding:
    """One global, call or construct the pickle machine met, and its verdict."""

    member: str  # the pickle it is in (e.g. "archive/data.pkl", "x.pt: pickle 4 of 5 (object)")
    offset: int  # byte offset of the opcode in the file (or in the zip member's data)
    opcode: str  # e.g. "REDUCE", "STACK_GLOBAL"
    what: str  # global, call, build, call on a value, construct
    global_: str | None  # "module.name" for global, call and build; else None
    verdict: str  # allowed, unknown or unsafe
    reason: str

    def to_dict(self) -> dict:
        """The finding as ``tensorseal scan --json`` prints it."""
        return {"offset": self.offset, "opcode": self.opcode, "what": self.what,
                "global": self.global_, "verdict": self.verdict, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class ScanMember:
    """The scan of one pickle."""

    member: str
    status: str  # clean, unknown, invalid or unsafe
    protocol: int
    opcodes: int  # opcodes interpreted
    error: str | None  # what stopped the pickle machine (malformed, over a limit), if anything
    findings_dropped: int  # findings beyond the report's limit, counted but not listed
    findings: list  # [ScanFinding] in stream order


@dataclasses.dataclass(frozen=True)
class ScanReport:
    """What :func:`scan` found, in two parts. Code safety (``safety``): ``unsafe`` (code
    execution or I/O: :func:`convert` always refuses), ``unknown-objects`` (refused unless
    ``allow_objects``) or ``safe``, from every pickle's findings. Convertibility
    (``convertible``, ``conversion_error``): whether :func:`convert` with the same
    ``allow_objects`` succeeds, found by running the conversion to the end without writing.
    ``verdict`` combines them, the most severe first: ``unsafe``, ``unknown-objects``,
    ``invalid`` (would not convert), ``safe``."""

    input: str
    format: str  # torch-zip, torch-legacy, torch-tar, pickle, npy, npz, safetensors, ...
    verdict: str
    safety: str  # safe, unknown-objects or unsafe
    convertible: bool
    conversion_error: dict | None  # {"kind", "message"}: what convert would stop with
    exit_code: int  # what ``tensorseal scan`` exits with: 0 only when convert would succeed
    problem: str | None  # what stops a conversion (or a container problem met while scanning)
    inert_objects: list  # unknown globals convert would keep as inert records (allow_objects)
    members: list  # [ScanMember], one per pickle in file order
    sandbox: str  # the sandbox mode the scan ran under

    @property
    def safe(self) -> bool:
        return self.verdict == "safe"

    @property
    def findings(self) -> list:
        """Every finding of every member, in file order."""
        return [f for m in self.members for f in m.findings]

    def to_dict(self) -> dict:
        """The JSON object ``tensorseal scan --json`` prints for this file."""
        return {
            "input": self.input, "format": self.format, "verdict": self.verdict,
            "safety": self.safety, "convertible": self.convertible,
            "conversion_error": self.conversion_error, "inert_objects": self.inert_objects,
            "exit_code": self.exit_code, "problem": self.problem,
            "members": [{
                "member": m.member, "status": m.status, "protocol": m.protocol,
                "opcodes": m.opcodes, "error": m.error, "findings_dropped": m.findings_dropped,
                "findings": [f.to_dict() for f in m.findings],
            } for m in self.members],
        }

    def __str__(self):
        lines = [f"{self.input}: {self.verdict} ({self.format})"]
        for m in self.members:
            lines.append(f"  {m.member}: {m.status}")
            lines += [f"    @{f.offset} {f.opcode} {f.what} {f.global_ or ''}: {f.verdict} "
                      f"({f.reason})" for f in m.findings if f.verdict != "allowed"]
            if m.error:
                lines.append(f"    error: {m.error}")
        if self.problem:
            lines.append(f"  problem: {self.problem}")
        return "\n".join(lines)


def scan(path, *, allow_objects=False, sandbox="best-effort") -> ScanReport:
    """Scans a checkpoint without executing it, as ``tensorseal scan``: recognises the format
    from the content, reads the container with the converter's strict readers and interprets
    every pickle, going on past refusals, so the report lists every finding with its member,
    byte offset, opcode, global, verdict and reason; then runs the conversion to the end
    without writing, so ``convertible`` says whether :func:`convert` with the same
    ``allow_objects`` succeeds and ``conversion_error`` what it would stop with.

    Returns the report whatever the verdict; raises :class:`InvalidInputError` only when the
    file cannot be opened. ``sandbox`` as for :func:`convert`: by default the scan runs in a
    locked-down child process.
    """
    path = _path(path)
    sandbox = sandbox_arg(sandbox)
    allow_objects = bool(allow_objects)
    if sandbox == "off":
        report = _native.scan(path, "off", allow_objects=allow_objects)
    else:
        report = _convert_child.run({"op": "scan", "src": path, "sandbox": sandbox,
                                     "allow_objects": allow_objects})
    r = json.loads(report)
    members = [ScanMember(
        member=m["member"], status=m["status"], protocol=m["protocol"], opcodes=m["opcodes"],
        error=m["error"], findings_dropped=m["findings_dropped"],
        findings=[ScanFinding(member=m["member"], offset=f["offset"], opcode=f["opcode"],
                          what=f["what"], global_=f["global"], verdict=f["verdict"],
                          reason=f["reason"]) for f in m["findings"]],
    ) for m in r["members"]]
    return ScanReport(input=path, format=r["format"], verdict=r["verdict"], safety=r["safety"],
                      convertible=r["convertible"], conversion_error=r["conversion_error"],
                      exit_code=r["exit_code"], problem=r["problem"],
                      inert_objects=r["inert_objects"], members=members, sandbox=r["sandbox"])
