"""tensorseal.convert and tensorseal.scan as an API: the sandboxed child process and what it
must never do to the caller, error classes and messages, options, atomic output, and parity
with the `tensorseal` CLI (same JSON reports, same bytes, same messages)."""

import base64
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest

import tensorseal
from conftest import FIXTURES, REPO
from tensorseal import _convert_child, _native

T = FIXTURES / "torch"
H = FIXTURES / "hostile"

# One file per outcome class, with the exception each raises (None: converts).
OUTCOMES = [
    (T / "zip_views.pt", None),
    (T / "legacy_state_dict.pt", None),
    (FIXTURES / "numpy" / "np_pickle_p5.pkl", None),
    (FIXTURES / "safetensors" / "hf_bin" / "pytorch_model.bin.index.json", None),
    (H / "z_data_pkl_os_system.pt", tensorseal.UnsafeError),
    (H / "l_payload_in_4th_pickle.pt", tensorseal.UnsafeError),
    (T / "zip_unknown_objects.pt", tensorseal.UnknownObjectError),
    (H / "z_bad_crc.pt", tensorseal.InvalidInputError),
    (T / "zip_quantized.pt", tensorseal.InvalidInputError),
    (T / "tar_format.pt", None),
    (FIXTURES / "no-such-file.pt", tensorseal.InvalidInputError),
]
IDS = [p.name for p, _ in OUTCOMES]


def attempt(src, dst, **kw):
    """(report, None) or (None, exception) of a conversion."""
    try:
        return tensorseal.convert(src, dst, **kw), None
    except tensorseal.Error as e:
        return None, e


def same_error(a, b):
    assert type(a) is type(b)
    assert str(a) == str(b)
    assert vars(a) == vars(b)


# -- the child process ---------------------------------------------------------------------------
@pytest.mark.parametrize("src,error", OUTCOMES, ids=IDS)
def test_the_sandboxed_child_converts_exactly_as_in_process(src, error, tmp):
    child, e_child = attempt(src, tmp / "child.tseal")
    here, e_here = attempt(src, tmp / "here.tseal", sandbox="off")
    if error is None:
        assert e_child is None and e_here is None, (e_child, e_here)
        assert (tmp / "child.tseal").read_bytes() == (tmp / "here.tseal").read_bytes()
        assert child.sandbox.child_process and child.sandbox.mode == "best-effort"
        assert child.sandbox.threads == 1  # locked down before any thread existed
        assert child.sandbox.fully_enforced or child.sandbox.warnings
        assert not here.sandbox.child_process and here.sandbox.mode == "off"
        assert not here.sandbox.seccomp and here.sandbox.threads == 0
        strip = lambda r: {k: v for k, v in r.to_dict().items() if k not in ("output", "sandbox")}
        assert strip(child) == strip(here)
    else:
        assert isinstance(e_child, error), e_child
        same_error(e_child, e_here)
        assert sorted(os.listdir(tmp)) == []


def proc_status():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields.get("Seccomp"), fields.get("NoNewPrivs")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")
def test_the_calling_process_is_never_locked_down(tmp):
    before = proc_status()
    tensorseal.convert(T / "zip_views.pt", tmp / "a.tseal", sandbox="required")
    tensorseal.scan(H / "z_data_pkl_os_system.pt")
    with pytest.raises(tensorseal.UnsafeError):
        tensorseal.convert(H / "z_data_pkl_os_system.pt", tmp / "b.tseal")
    assert proc_status() == before
    # What the child may not do, this process still can: exec, sockets, other paths.
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    (tmp.parent / "elsewhere.txt").write_text("x")
    assert (REPO / "README.md").read_bytes()


def test_sandbox_required_is_enforced_or_refused(tmp):
    try:
        r = tensorseal.convert(T / "zip_views.pt", tmp / "a.tseal", sandbox="required")
    except tensorseal.SandboxError as e:  # a kernel without Landlock or seccomp
        assert e.kind == "sandbox" and "sandbox required" in str(e)
        assert not (tmp / "a.tseal").exists()
        return
    assert r.sandbox.fully_enforced and r.sandbox.seccomp and r.sandbox.no_new_privs
    assert r.sandbox.landlock.startswith("Enforced") and r.sandbox.warnings == []
    assert tensorseal.scan(T / "zip_views.pt", sandbox="required").verdict == "safe"


def test_the_native_functions_refuse_to_lock_down_their_caller(tmp):
    for mode in ("best-effort", "required"):
        with pytest.raises(tensorseal.InvalidInputError, match="lock down this process"):
            _native.convert(str(T / "zip_views.pt"), str(tmp / "a.tseal"), [], None, False, {},
                            mode)
        with pytest.raises(tensorseal.InvalidInputError, match="lock down this process"):
            _native.scan(str(T / "zip_views.pt"), mode)
    assert not (tmp / "a.tseal").exists()


def test_keys_reach_the_child_through_its_stdin_not_its_command_line(tmp, keys, monkeypatch):
    private, public = keys[0]
    seen = []
    real_run = subprocess.run

    def spy(args, **kw):
        seen.append((list(args), kw.get("input")))
        return real_run(args, **kw)

    monkeypatch.setattr(subprocess, "run", spy)
    key_file = tmp / "signer.key"
    key_file.write_bytes(private)
    r = tensorseal.convert(T / "zip_views.pt", tmp / "a.tseal", sign_with=[key_file, private])
    assert r.signed_by == [tensorseal.key_id(public)] * 2
    [(argv, stdin)] = seen
    assert argv[:2] == [sys.executable, "-I"]
    assert not any(b"PRIVATE" in os.fsencode(a) or str(key_file) in a for a in argv)
    assert base64.b64encode(private) in stdin and b"PRIVATE KEY" not in stdin
    tensorseal.load(tmp / "a.tseal", trust=[public])


def test_a_child_that_fails_is_reported(tmp, monkeypatch):
    monkeypatch.setattr(sys, "executable", shutil.which("false"))
    with pytest.raises(tensorseal.Error, match=r"exit status 1\) without a report"):
        tensorseal.convert(T / "zip_views.pt", tmp / "a.tseal")
    monkeypatch.setattr(sys, "executable", str(tmp / "no-such-python"))
    with pytest.raises(tensorseal.Error, match="cannot start the conversion process"):
        tensorseal.scan(T / "zip_views.pt")
    assert os.listdir(tmp) == []


def test_an_interrupted_child_leaves_no_temporary_file(tmp, monkeypatch):
    other = tmp / ".a.tseal.tmp-0123456789abcdef"  # another conversion's, already there
    other.write_bytes(b"")

    def interrupted(args, **kw):
        (tmp / ".a.tseal.tmp-fedcba9876543210").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tensorseal.convert(T / "zip_views.pt", tmp / "a.tseal")
    assert os.listdir(tmp) == [other.name]


def test_sandbox_warnings_are_python_warnings(tmp, monkeypatch):
    report = json.loads(_native.convert(str(T / "zip_views.pt"), str(tmp / "a.tseal"), [], None,
                                        False, {}, "off"))
    report["sandbox"].update(mode="best-effort", warnings=["the kernel has no Landlock: ..."])
    monkeypatch.setattr(_convert_child, "run", lambda request, output=None: json.dumps(report))
    with pytest.warns(tensorseal.SandboxWarning, match="sandbox: the kernel has no Landlock"):
        r = tensorseal.convert(T / "zip_views.pt", tmp / "a.tseal")
    assert r.sandbox.warnings == ["the kernel has no Landlock: ..."]


# -- options -------------------------------------------------------------------------------------
def test_signing_metadata_and_compression(tmp, keys):
    (k1, p1), (k2, p2) = keys
    src = T / "zip_training_ckpt.pt"
    r = tensorseal.convert(src, tmp / "a.tseal", sign_with=[k1, k2], compress="zstd:3",
                           metadata={"run_id": "run-42", "step": "1000"})
    raw = tensorseal.convert(src, tmp / "b.tseal", sandbox="off")
    assert r.signed_by == [tensorseal.key_id(p1), tensorseal.key_id(p2)]
    assert raw.signed_by == [] and r.manifest_sha256 != raw.manifest_sha256
    with tensorseal.open(tmp / "a.tseal", trust=[p2], expect={"run_id": "run-42"},
                         min_step=1000) as ckpt:
        meta = ckpt.metadata
    assert meta["source_format"] == "torch-zip" and meta["source_sha256"] == r.source_sha256
    assert meta["producer"].startswith("tensorseal-convert ")
    from deep_compare import assert_same
    assert_same(tensorseal.load(tmp / "a.tseal", trust=[p1]),
                tensorseal.load(tmp / "b.tseal", verify=False))
    with pytest.raises(tensorseal.VerificationError) as e:
        tensorseal.load(tmp / "b.tseal", trust=[p1])
    assert e.value.kind == "unsigned"


@pytest.mark.parametrize("kwargs,match", [
    ({"compress": "gzip"}, "compress must be"),
    ({"compress": "zstd:0"}, "compress must be"),
    ({"compress": "zstd:23"}, "compress must be"),
    ({"compress": "zstd=+3"}, "compress must be"),
    ({"compress": 3}, "compress must be"),
    ({"sandbox": "on"}, "sandbox must be"),
    ({"allow_objects": "yes"}, "allow_objects must be a bool"),
    ({"metadata": {"step": 5}}, "metadata must map str to str"),
    ({"metadata": {"producer": "me"}}, "producer: set by the converter itself"),
    ({"metadata": {"": "x"}}, "metadata"),
    ({"sign_with": b"not a key"}, r"sign_with\[0\]"),
    ({"sign_with": "/no/such.key"}, "cannot read key"),
])
def test_invalid_arguments(tmp, kwargs, match):
    with pytest.raises(tensorseal.InvalidInputError, match=match):
        tensorseal.convert(T / "zip_views.pt", tmp / "a.tseal", **kwargs)
    assert os.listdir(tmp) == []


def test_paths_may_be_str_bytes_or_pathlike(tmp):
    src = T / "zip_views.pt"
    a = tensorseal.convert(str(src), os.fsencode(tmp / "a.tseal"), sandbox="off")
    b = tensorseal.convert(src, tmp / "b.tseal", compress="zstd=1", sandbox="off")
    assert a.input == str(src) and a.output == str(tmp / "a.tseal")
    assert a.manifest_sha256 != b.manifest_sha256  # compressed
    with pytest.raises(tensorseal.InvalidInputError, match="src must be a path"):
        tensorseal.convert(3, tmp / "c.tseal")
    with pytest.raises(tensorseal.InvalidInputError, match="must be a path"):
        tensorseal.scan(None)


def test_unknown_objects_convert_as_inert_records_when_allowed(tmp):
    src = T / "zip_unknown_objects.pt"
    with pytest.raises(tensorseal.UnknownObjectError) as e:
        tensorseal.convert(src, tmp / "a.tseal")
    assert e.value.kind == "unknown_objects" and e.value.member.endswith("data.pkl")
    assert any("pathlib.PurePosixPath" in f for f in e.value.findings)
    assert "allow-objects" in str(e.value)
    r = tensorseal.convert(src, tmp / "a.tseal", allow_objects=True)
    assert any("pathlib.PurePosixPath" in f for f in r.inert_objects)
    obj = tensorseal.load(tmp / "a.tseal", verify=False)
    records = [v for v in obj.values() if isinstance(v, tensorseal.Object)]
    assert any(o.module == "pathlib" and o.name == "PurePosixPath" for o in records)
    # Code execution stays refused whatever allow_objects says.
    with pytest.raises(tensorseal.UnsafeError) as e:
        tensorseal.convert(H / "p_gadget_functools_partial.pkl", tmp / "b.tseal",
                           allow_objects=True)
    assert e.value.kind == "unsafe" and any("os.system" in f for f in e.value.findings)


@pytest.mark.parametrize("sandbox", ["best-effort", "off"])
def test_a_refused_conversion_leaves_an_existing_output_untouched(tmp, sandbox):
    dst = tmp / "model.tseal"
    dst.write_bytes(b"the previous file")
    for src in (H / "z_data_pkl_os_system.pt", T / "zip_unknown_objects.pt", H / "z_bad_crc.pt"):
        with pytest.raises(tensorseal.Error):
            tensorseal.convert(src, dst, sandbox=sandbox)
    assert dst.read_bytes() == b"the previous file"
    assert os.listdir(tmp) == ["model.tseal"]


def test_errors_are_typed_and_the_hierarchy_is_stable():
    assert issubclass(tensorseal.UnsafeError, tensorseal.RefusedError)
    assert issubclass(tensorseal.UnknownObjectError, tensorseal.RefusedError)
    assert not issubclass(tensorseal.UnknownObjectError, tensorseal.UnsafeError)
    for cls in (tensorseal.RefusedError, tensorseal.InvalidInputError, tensorseal.SandboxError,
                tensorseal.VerificationError, tensorseal.UnsupportedError):
        assert issubclass(cls, tensorseal.Error)
    assert issubclass(tensorseal.SandboxWarning, UserWarning)


# -- scan ----------------------------------------------------------------------------------------
def test_scan_reports_every_finding(tmp):
    r = tensorseal.scan(H / "l_payload_in_4th_pickle.pt")
    assert (r.verdict, r.format, r.exit_code, r.safe) == ("unsafe", "torch-legacy", 4, False)
    assert len(r.members) == 5 and [m.status for m in r.members].count("unsafe") == 1
    assert r.members[3].status == "unsafe" and "pickle 4 of 5" in r.members[3].member
    bad = [f for f in r.findings if f.verdict == "unsafe"]
    assert bad and all(f.global_ == "os.system" and f.member == r.members[3].member for f in bad)
    assert {f.what for f in bad} == {"global", "call"} and all(f.offset > 0 for f in bad)
    assert "os.system" in str(r) and r.sandbox == "best-effort"

    ok = tensorseal.scan(T / "zip_views.pt", sandbox="off")
    assert (ok.verdict, ok.exit_code, ok.safe, ok.problem) == ("safe", 0, True, None)
    assert ok.findings and all(f.verdict == "allowed" for f in ok.findings)

    unknown = tensorseal.scan(T / "zip_whole_module.pt")
    assert unknown.verdict == "unknown-objects" and unknown.exit_code == 4
    assert unknown.conversion_error["kind"] == "unknown_objects" and not unknown.convertible
    inert = tensorseal.scan(T / "zip_whole_module.pt", allow_objects=True)
    assert (inert.safety, inert.convertible, inert.exit_code) == ("unknown-objects", True, 0)
    assert inert.inert_objects and inert.conversion_error is None

    # Code-safe but not convertible: scan runs the conversion's structural checks too.
    missing = tensorseal.scan(H / "t_missing_record.pt", sandbox="off")
    assert (missing.safety, missing.verdict, missing.convertible) == ("safe", "invalid", False)
    assert missing.conversion_error["kind"] == "invalid" and missing.exit_code == 1
    assert "no record archive/data/7" in missing.conversion_error["message"]
    tar = tensorseal.scan(T / "tar_format.pt")
    assert (tar.verdict, tar.exit_code, tar.problem) == ("safe", 0, None)  # converted since issue 11
    garbage = tmp / "garbage.bin"
    garbage.write_bytes(b"\x00garbage")
    assert tensorseal.scan(garbage).verdict == "invalid"
    with pytest.raises(tensorseal.InvalidInputError) as e:
        tensorseal.scan(tmp / "missing.pt")
    assert e.value.kind == "io" and "No such file" in str(e.value)


# -- parity with the CLI -------------------------------------------------------------------------
def find_cli():
    """$TENSORSEAL_CLI, else the newest `tensorseal` binary cargo built in this tree that has the
    converter (CI's `cargo test` builds target/debug/tensorseal before the Python tests)."""
    if os.environ.get("TENSORSEAL_CLI"):
        return os.environ["TENSORSEAL_CLI"]
    built = [REPO / "target" / p / "tensorseal" for p in ("debug", "release")]
    for binary in sorted((p for p in built if p.is_file()), key=lambda p: -p.stat().st_mtime):
        if subprocess.run([binary, "scan", "--help"], capture_output=True).returncode == 0:
            return str(binary)
    return None


CLI = find_cli()
needs_cli = pytest.mark.skipif(
    CLI is None, reason="no tensorseal CLI binary (cargo build, or set TENSORSEAL_CLI)")


def cli(*args):
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def all_fixtures():
    return sorted(p.with_name(p.name[:-len(".expected.json")])
                  for p in FIXTURES.rglob("*.expected.json"))


@needs_cli
def test_scan_matches_the_cli_on_every_fixture():
    for path in all_fixtures():
        code, out, _ = cli("scan", "--json", "--no-sandbox", path)
        report = tensorseal.scan(path, sandbox="off")
        assert report.to_dict() == json.loads(out), path
        assert report.exit_code == code, path


@needs_cli
@pytest.mark.parametrize("src,error", OUTCOMES, ids=IDS)
def test_convert_matches_the_cli(src, error, tmp, keys):
    key = tmp / "k.key"
    key.write_bytes(keys[0][0])
    code, out, err = cli("convert", src, tmp / "cli.tseal", "--sign", key, "--meta", "run_id=7",
                         "--compress", "zstd=2", "--json")
    report, exc = attempt(src, tmp / "py.tseal", sign_with=key, metadata={"run_id": "7"},
                          compress="zstd:2")
    want = json.loads(out)
    if error is None:
        assert code == 0 and exc is None, (err, exc)
        got = report.to_dict()
        assert got.pop("output") == str(tmp / "py.tseal") and want.pop("output")
        assert got == want
        assert (tmp / "py.tseal").read_bytes() == (tmp / "cli.tseal").read_bytes()
    else:
        assert isinstance(exc, error)
        assert code == (4 if isinstance(exc, tensorseal.RefusedError) else 1)
        assert err.strip() == f"tensorseal: error: {exc}"
        assert want["error"] == {"kind": exc.kind, "message": str(exc)}


@needs_cli
def test_convert_sandbox_report_matches_the_cli(tmp):
    code, out, _ = cli("convert", T / "zip_views.pt", tmp / "cli.tseal", "--json")
    r = tensorseal.convert(T / "zip_views.pt", tmp / "py.tseal")
    assert code == 0 and r.sandbox.to_dict() == json.loads(out)["sandbox"]


@needs_cli
@pytest.mark.parametrize("spelling", ["none", "auto", "planes", "zstd", "zstd=3", "zstd:3",
                                      "zstd=22", "zstd=0", "zstd=23", "zstd=+3", "zstd=", "gzip",
                                      "ZSTD", "planes=1", "AUTO"])
def test_compress_spellings_mean_the_same_in_cli_and_python(spelling, tmp):
    # One parser in the library serves both front ends: the same spellings are accepted, and an
    # accepted one writes the same file.
    src = T / "zip_views.pt"
    code, _, err = cli("convert", src, tmp / "cli.tseal", "--compress", spelling, "--no-sandbox")
    report, exc = attempt(src, tmp / "py.tseal", compress=spelling, sandbox="off")
    if code == 2:
        assert isinstance(exc, tensorseal.InvalidInputError), (spelling, err)
        assert ("compress must be None, or expected none, auto, planes, zstd or zstd=LEVEL"
                in str(exc))
        assert not (tmp / "py.tseal").exists()
    else:
        assert code == 0 and exc is None, (spelling, err, exc)
        assert (tmp / "cli.tseal").read_bytes() == (tmp / "py.tseal").read_bytes()
