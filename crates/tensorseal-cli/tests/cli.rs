//! The `tensorseal` binary end to end: every command, exact exit codes, JSON shapes.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tensorseal"))
}

fn run(args: &[&str], cwd: &Path) -> Output {
    bin()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run tensorseal")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors")
}

/// A copy of the golden shard set (spec/vectors/shard-set) at `to`, to change.
fn copy_shard_set(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(vectors().join("shard-set")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A copy of an unsigned-then-signed vector in a scratch directory.
fn scratch_file(dir: &Path, vector: &str) -> PathBuf {
    let dst = dir.join(vector);
    std::fs::copy(vectors().join(vector), &dst).unwrap();
    dst
}

#[test]
fn keygen_sign_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run(&["keygen", "--out", "signer"], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("signer.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Refuses to overwrite.
    assert_eq!(code(&run(&["keygen", "--out", "signer"], d)), 1);

    let f = scratch_file(d, "empty.tseal");
    let f = f.to_str().unwrap();
    // Unsigned: no trust given -> 3; untrusted -> 3; digests-only -> 0.
    assert_eq!(code(&run(&["verify", f], d)), 3);
    assert_eq!(code(&run(&["verify", f, "--trust", "signer.pub"], d)), 3);
    assert_eq!(code(&run(&["verify", f, "--digests-only"], d)), 0);
    let o = run(&["sign", f, "--key", "signer.key"], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&["verify", f, "--trust", "signer.pub"], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Signing again is a no-op.
    let before = std::fs::read(f).unwrap();
    assert_eq!(code(&run(&["sign", f, "--key", "signer.key"], d)), 0);
    assert_eq!(std::fs::read(f).unwrap(), before);
}

#[test]
fn verify_json_reports_success_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = scratch_file(d, "simple.tseal");
    let key = vectors().join("test-key.pub");
    let o = run(
        &[
            "verify",
            f.to_str().unwrap(),
            "--trust",
            key.to_str().unwrap(),
            "--json",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["signers"][0]["trusted"], true);
    assert_eq!(
        v["signers"][0]["key_id"],
        "a050837d85070582ccf7394b0988847cc312cb88259b894899f6f239cf1791a5"
    );
    assert_eq!(
        v["manifest_sha256"],
        "552d12110bef33fb69977b494240d12f17e0ada5902d1df3bb143e2901b9dcab"
    );

    // Rollback protection through signed metadata.
    let args = |extra: &[&str]| {
        let mut a = vec![
            "verify",
            f.to_str().unwrap(),
            "--trust",
            key.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let o = bin()
        .args(args(&["--min-step", "43", "--json"]))
        .output()
        .unwrap();
    assert_eq!(code(&o), 3);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "step_too_old");
    assert!(
        stderr(&o).contains("simple.tseal"),
        "errors name the file: {}",
        stderr(&o)
    );
    assert_eq!(
        code(
            &bin()
                .args(args(&["--min-step", "42", "--expect", "run_id=vectors"]))
                .output()
                .unwrap()
        ),
        0
    );
    assert_eq!(
        code(
            &bin()
                .args(args(&["--expect", "run_id=other"]))
                .output()
                .unwrap()
        ),
        3
    );

    // Tampering with one tensor byte.
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[64] ^= 0x01;
    std::fs::write(&f, &bytes).unwrap();
    let o = bin().args(args(&["--json"])).output().unwrap();
    assert_eq!(code(&o), 3);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "digest_mismatch");
    assert!(
        stderr(&o).contains("weight"),
        "names the tensor: {}",
        stderr(&o)
    );
}

#[test]
fn exit_codes_for_bad_input_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = vectors().join("test-key.pub");
    let key = key.to_str().unwrap();
    // Missing file: I/O error -> 1.
    assert_eq!(
        code(&run(&["verify", "missing.tseal", "--trust", key], d)),
        1
    );
    assert_eq!(code(&run(&["inspect", "missing.tseal"], d)), 1);
    // A file that is not a tensorseal file: verify 3 (malformed), inspect 1 (invalid input).
    std::fs::write(d.join("junk.tseal"), b"this is not a checkpoint at all, just text that is long enough for a header and a footer to be read from it.....................").unwrap();
    let o = run(&["verify", "junk.tseal", "--trust", key], d);
    assert_eq!(code(&o), 3);
    assert!(
        stderr(&o).contains("junk.tseal") && stderr(&o).contains("magic"),
        "{}",
        stderr(&o)
    );
    assert_eq!(code(&run(&["inspect", "junk.tseal"], d)), 1);
    // Truncated signed file.
    let f = scratch_file(d, "simple.tseal");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(
        code(&run(&["verify", f.to_str().unwrap(), "--trust", key], d)),
        3
    );
    // A bad trust key file -> 1.
    std::fs::write(d.join("bad.pub"), b"not a key").unwrap();
    assert_eq!(
        code(&run(
            &["verify", f.to_str().unwrap(), "--trust", "bad.pub"],
            d
        )),
        1
    );
    // Usage errors -> 2; help -> 0.
    assert_eq!(code(&run(&["verify"], d)), 2);
    assert_eq!(code(&run(&["frobnicate"], d)), 2);
    assert_eq!(
        code(&run(&["verify", "x", "--digests-only", "--trust", key], d)),
        2
    );
    assert_eq!(code(&run(&["--help"], d)), 0);
    for cmd in ["keygen", "sign", "verify", "inspect"] {
        let o = run(&[cmd, "--help"], d);
        assert_eq!(code(&o), 0);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Example"),
            "{cmd} --help has an example"
        );
    }
}

#[test]
fn openssl_keys_interoperate() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: openssl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = |args: &[&str]| {
        assert!(
            Command::new("openssl")
                .args(args)
                .current_dir(d)
                .status()
                .unwrap()
                .success()
        )
    };
    ok(&["genpkey", "-algorithm", "ed25519", "-out", "o.key"]);
    ok(&["pkey", "-in", "o.key", "-pubout", "-out", "o.pub"]);
    let f = scratch_file(d, "empty.tseal");
    let o = run(&["sign", f.to_str().unwrap(), "--key", "o.key"], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(
        &["verify", f.to_str().unwrap(), "--trust", "o.pub", "--json"],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let der = Command::new("openssl")
        .args(["pkey", "-pubin", "-in", "o.pub", "-outform", "DER"])
        .current_dir(d)
        .output()
        .unwrap();
    let mut dgst = Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    dgst.stdin.take().unwrap().write_all(&der.stdout).unwrap();
    let out = String::from_utf8(dgst.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(
        v["signers"][0]["key_id"].as_str().unwrap(),
        out.split_whitespace().next().unwrap()
    );
    // Our keys are readable by openssl.
    assert_eq!(code(&run(&["keygen", "--out", "ours"], d)), 0);
    ok(&["pkey", "-in", "ours.key", "-noout"]);
    ok(&["pkey", "-pubin", "-in", "ours.pub", "-noout"]);
}

#[test]
fn inspect_json_lists_tensors_tree_and_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "inspect",
            vectors().join("simple.tseal").to_str().unwrap(),
            "--json",
            "--hash",
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["metadata"]["step"], "42");
    assert_eq!(v["tensors"][0]["name"], "weight");
    assert_eq!(v["tensors"][0]["dtype"], "float32");
    assert_eq!(v["tensors"][0]["shape"], serde_json::json!([2, 3]));
    // SHA-256 of the six little-endian float32 values 1..6.
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    let expected = hex_sha256(&data);
    assert_eq!(v["tensors"][0]["sha256"], expected.as_str());
    assert_eq!(v["tree"]["dict"][0][0], "weight");
    assert_eq!(
        v["tree"]["dict"][0][1]["tensor"]["sha256"],
        expected.as_str()
    );
    let o = run(
        &[
            "inspect",
            vectors().join("all-kinds.tseal").to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("collections.OrderedDict"));
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(tensorseal::sha256(data))
}

fn fixture(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
        .display()
        .to_string()
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    // `tensorseal inspect f | head -n 1`: the reader goes away after the first bytes.
    let mut child = bin()
        .args([
            "inspect",
            vectors().join("all-kinds.tseal").to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 8];
    use std::io::Read;
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // dropped: pipe closed
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn convert_scan_and_export_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = |name: &str| d.join(name).display().to_string();
    // A real checkpoint converts, signed, and verifies; scan calls it safe.
    assert_eq!(code(&run(&["keygen", "--out", "k"], d)), 0);
    let o = run(
        &[
            "convert",
            &fixture("real/silero_vad_16k.pt"),
            &out("vad.tseal"),
            "--sign",
            "k.key",
            "--json",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["source_format"], "torch-zip");
    assert_eq!(v["tensors"], 15);
    assert_eq!(
        code(&run(&["verify", &out("vad.tseal"), "--trust", "k.pub"], d)),
        0
    );
    assert_eq!(
        code(&run(&["scan", &fixture("real/silero_vad_16k.pt")], d)),
        0
    );
    assert_eq!(
        code(&run(
            &[
                "export",
                &out("vad.tseal"),
                &out("vad.safetensors"),
                "--trust",
                "k.pub"
            ],
            d
        )),
        0
    );
    // Unsafe content: convert and scan both exit 4, and nothing is written.
    let hostile = fixture("hostile/p_global_os_system_proto0.pkl");
    let o = run(&["convert", &hostile, &out("bad.tseal"), "--json"], d);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "unsafe");
    assert!(!d.join("bad.tseal").exists());
    let o = run(&["scan", &hostile, "--json"], d);
    assert_eq!(code(&o), 4);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "unsafe");
    assert!(
        v["members"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["global"] == "os.system" && f["verdict"] == "unsafe")
    );
    // Unknown classes: exit 4 unless --allow-objects.
    let unknown = fixture("torch/zip_unknown_objects.pt");
    assert_eq!(code(&run(&["convert", &unknown, &out("u.tseal")], d)), 4);
    assert_eq!(
        code(&run(
            &["convert", &unknown, &out("u.tseal"), "--allow-objects"],
            d
        )),
        0
    );
    // Malformed and unsupported input: exit 1.
    assert_eq!(
        code(&run(
            &[
                "convert",
                &fixture("hostile/z_duplicate_data_pkl.pt"),
                &out("x.tseal")
            ],
            d
        )),
        1
    );
    assert_eq!(
        code(&run(
            &["convert", &fixture("torch/torchscript.pt"), &out("x.tseal")],
            d
        )),
        1
    );
    assert_eq!(
        code(&run(&["convert", "missing.pt", &out("x.tseal")], d)),
        1
    );
    // Usage error: exit 2.
    assert_eq!(
        code(&run(
            &["convert", &unknown, &out("x.tseal"), "--compress", "lz4"],
            d
        )),
        2
    );
    // Export of a tampered file: exit 3.
    let mut bytes = std::fs::read(d.join("vad.tseal")).unwrap();
    bytes[100] ^= 1;
    std::fs::write(d.join("vad.tseal"), &bytes).unwrap();
    assert_eq!(
        code(&run(
            &["export", &out("vad.tseal"), &out("y.safetensors")],
            d
        )),
        3
    );
    assert!(!d.join("y.safetensors").exists());
    for cmd in ["convert", "scan", "export"] {
        let o = run(&[cmd, "--help"], d);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Example"),
            "{cmd} --help has an example"
        );
    }
}

#[test]
fn verify_many_files_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = vectors().join("test-key.pub");
    let key = key.to_str().unwrap();
    let repo = d.join("repo");
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    let good = scratch_file(d, "simple.tseal");
    std::fs::copy(&good, repo.join("a.tseal")).unwrap();
    std::fs::copy(&good, repo.join("sub/b.tseal")).unwrap();
    std::fs::write(repo.join("README.md"), b"not a checkpoint, not verified").unwrap();

    // A directory: every *.tseal below it, in path order, one JSON array.
    let o = run(&["verify", "repo", "--trust", key, "--json"], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let files: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["repo/a.tseal", "repo/sub/b.tseal"]);
    assert!(v.as_array().unwrap().iter().all(|r| r["ok"] == true));

    // One tampered file: exit 3, the others still reported as verified, stderr names it.
    let mut bytes = std::fs::read(repo.join("sub/b.tseal")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(repo.join("sub/b.tseal"), &bytes).unwrap();
    let o = run(&["verify", "repo", "--trust", key, "--json"], d);
    assert_eq!(code(&o), 3);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["ok"], true);
    assert_eq!(
        (v[1]["ok"].clone(), v[1]["exit_code"].clone()),
        (false.into(), 3.into())
    );
    assert!(stderr(&o).contains("repo/sub/b.tseal"), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 of 2 files failed"), "{}", stderr(&o));

    // The worst exit code wins: a missing file (1) with a good one gives 1, with a tampered
    // one 3; several files always print an array, in the order given.
    let o = run(
        &[
            "verify",
            "repo/a.tseal",
            "missing.tseal",
            "--trust",
            key,
            "--json",
        ],
        d,
    );
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[1]["file"], "missing.tseal");
    assert_eq!(v[1]["error"]["kind"], "io");
    assert_eq!(
        code(&run(
            &[
                "verify",
                "missing.tseal",
                "repo/sub/b.tseal",
                "--trust",
                key
            ],
            d
        )),
        3
    );
    // Without keys every file is refused, as for one file.
    let o = run(&["verify", "repo", "--json"], d);
    assert_eq!(code(&o), 3);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|r| r["error"]["kind"] == "no_trust")
    );
    // A directory without checkpoints is a usage problem, not a pass.
    std::fs::create_dir(d.join("empty")).unwrap();
    let o = run(&["verify", "empty", "--trust", key], d);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("no *.tseal files"), "{}", stderr(&o));
}

#[test]
fn verify_shard_sets_by_folder_index_or_inside_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = vectors().join("test-key.pub");
    let key = key.to_str().unwrap();
    let repo = d.join("repo");
    copy_shard_set(&repo.join("step-1"));
    std::fs::copy(scratch_file(d, "simple.tseal"), repo.join("a.tseal")).unwrap();

    let o = run(&["verify", "repo/step-1", "--trust", key, "--json"], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["file"], "repo/step-1");
    let shards: Vec<&str> = v["shard_set"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap())
        .collect();
    assert_eq!(shards, ["__0_0.tseal", "__1_0.tseal"]);
    assert_eq!(v["shard_set"]["world_size"], 2);
    // The index file names the same set; a directory above holds it as one item.
    let o = run(&["verify", "repo/step-1/index.tseal", "--trust", key], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("shard set: 2 shard(s)"));
    let o = run(&["verify", "repo", "--trust", key, "--json"], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let files: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["repo/a.tseal", "repo/step-1"]);
    assert!(v[0]["shard_set"].is_null() && v[1]["shard_set"].is_object());

    // A shard from elsewhere dropped in, then a missing one: exit 3 with the set's kinds.
    std::fs::copy(repo.join("a.tseal"), repo.join("step-1/__2_0.tseal")).unwrap();
    let o = run(&["verify", "repo/step-1", "--trust", key, "--json"], d);
    assert_eq!(code(&o), 3);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "shard_unlisted");
    std::fs::remove_file(repo.join("step-1/__2_0.tseal")).unwrap();
    std::fs::remove_file(repo.join("step-1/__1_0.tseal")).unwrap();
    let o = run(&["verify", "repo", "--trust", key, "--json"], d);
    assert_eq!(code(&o), 3);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[1]["error"]["kind"], "shard_missing");
    assert!(stderr(&o).contains("__1_0.tseal"), "{}", stderr(&o));
}

// Its own file, still this one test binary.
#[path = "cli/s3.rs"]
mod s3;

#[test]
fn inspect_a_shard_set_folder_shows_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let set = vectors().join("shard-set");
    let o = run(&["inspect", set.to_str().unwrap(), "--json"], dir.path());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["metadata"]["tensorseal.dcp"], "index", "{v}");
}

#[test]
fn convert_and_export_consolidate_a_shard_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let set = d.join("set");
    copy_shard_set(&set);
    let key = vectors().join("test-key.pub");
    let key = key.to_str().unwrap();
    let o = run(&["convert", "set", "one.tseal", "--json"], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["shards"].clone(), v["tensors"].clone()),
        (2.into(), 2.into())
    );
    // The whole weight, assembled from the two ranks' rows: 0..12 as float32.
    let ckpt =
        tensorseal::Checkpoint::open(&d.join("one.tseal"), &tensorseal::Limits::default()).unwrap();
    let tensors = ckpt.root().tensors();
    let (_, w) = tensors
        .iter()
        .find(|(p, _)| tensorseal::dotted_path(p) == "model.weight")
        .unwrap();
    let want: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
    assert_eq!(
        (w.shape.clone(), &*ckpt.tensor_bytes(w).unwrap()),
        (vec![4, 3], &want[..])
    );
    assert_eq!(ckpt.metadata()["run_id"], "vectors");

    // export: the same tensors as safetensors, under the policy given.
    let o = run(&["export", "set", "out.safetensors", "--trust", key], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let bytes = std::fs::read(d.join("out.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("model.weight").unwrap().data(), &want[..]);
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("consolidating"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let other = d.join("other.pub");
    std::fs::write(
        &other,
        tensorseal::SecretKey::from_seed(&[5; 32])
            .public_key()
            .to_pem()
            .unwrap(),
    )
    .unwrap();
    let o = run(
        &[
            "export",
            "set",
            "no.safetensors",
            "--trust",
            other.to_str().unwrap(),
        ],
        d,
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(!d.join("no.safetensors").exists());

    // A swapped shard is refused by both, binding checked even without trusted keys.
    std::fs::rename(set.join("__0_0.tseal"), d.join("tmp")).unwrap();
    std::fs::rename(set.join("__1_0.tseal"), set.join("__0_0.tseal")).unwrap();
    std::fs::rename(d.join("tmp"), set.join("__1_0.tseal")).unwrap();
    let o = run(&["convert", "set", "two.tseal"], d);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("truncated or replaced") || stderr(&o).contains("another checkpoint")
    );
    assert!(!d.join("two.tseal").exists());
}

#[test]
fn convert_a_dcp_folder_to_a_signed_shard_set_when_output_is_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dcp = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tensorseal-convert/tests/data/dcp/two_rank");
    let dcp = dcp.to_str().unwrap();
    let key = vectors().join("test-key.key");
    let key = key.to_str().unwrap();
    let trust = vectors().join("test-key.pub");
    let trust = trust.to_str().unwrap();
    let o = run(
        &[
            "convert", dcp, "set/", "--sign", key, "--meta", "step=5", "--json",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["shard_set"].clone()),
        (true.into(), true.into())
    );
    let files: Vec<&str> = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["__0_0.tseal", "__1_0.tseal"]);
    let o = run(
        &[
            "verify",
            "set",
            "--trust",
            trust,
            "--min-step",
            "5",
            "--json",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["shard_set"]["entries"], 10, "{v}");

    // An existing folder is a folder output too, but one that holds a set is refused as it is.
    let o = run(&["convert", dcp, "set", "--json"], d);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already holds __0_0.tseal, __1_0.tseal, index.tseal"),
        "{v}"
    );
    // A hostile .metadata: exit 4, and nothing is left in the folder (the sandbox, on by
    // default, forbids removing the folder itself once it is in force).
    let payload = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tensorseal-convert/tests/data/dcp/payload");
    let o = run(&["convert", payload.to_str().unwrap(), "bad/"], d);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(d.join("bad")).unwrap().count(), 0);
    let o = run(
        &[
            "convert",
            payload.to_str().unwrap(),
            "bad2/",
            "--no-sandbox",
        ],
        d,
    );
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(!d.join("bad2").exists());
    // A single file does not convert to a set.
    let single = vectors().join("simple.tseal");
    let o = run(&["convert", single.to_str().unwrap(), "other/"], d);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("only a torch.distributed.checkpoint folder"));
    assert!(!d.join("other").exists());
}

/// Issue 12: `--compress planes|auto` on a real trained checkpoint (lpips' FP32 weights) gives a
/// version-2 file that verifies, whose tensors are bit-exact with the raw conversion's, and whose
/// blobs `inspect` shows with their ratios.
#[test]
fn convert_with_the_plane_codec_is_bit_exact_and_inspect_shows_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = fixture("real/lpips_vgg_v0.1.pth");
    let o = run(&["convert", &src, "raw.tseal"], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let raw = tensorseal::Checkpoint::open(&d.join("raw.tseal"), &Default::default()).unwrap();
    for mode in ["planes", "auto"] {
        let out = format!("{mode}.tseal");
        let o = run(&["convert", &src, &out, "--compress", mode], d);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let o = run(&["verify", &out, "--digests-only"], d);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let o = run(&["inspect", &out, "--json"], d);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["format_version"], 2);
        let coded: Vec<&Value> = v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["encoding"] == "planes+f32")
            .collect();
        assert!(!coded.is_empty(), "{mode}: {}", v["blobs"]);
        for b in coded {
            let ratio = b["ratio"].as_f64().unwrap();
            let expected = b["raw_length"].as_f64().unwrap() / b["length"].as_f64().unwrap();
            assert!((ratio - expected).abs() < 1e-9 && ratio > 1.0, "{b}");
        }
        let text = run(&["inspect", &out], d);
        let text = String::from_utf8(text.stdout).unwrap();
        assert!(text.contains("format version 2"), "{text}");
        assert!(text.contains("planes+f32 1."), "{text}");
        assert!(text.contains("stored: "), "{text}");
        let ckpt = tensorseal::Checkpoint::open(&d.join(&out), &Default::default()).unwrap();
        let (a, b) = (raw.root().tensors(), ckpt.root().tensors());
        assert_eq!(a.len(), b.len());
        for ((pa, ta), (pb, tb)) in a.iter().zip(&b) {
            assert_eq!(pa, pb);
            assert_eq!(
                &*raw.tensor_bytes(ta).unwrap(),
                &*ckpt.tensor_bytes(tb).unwrap(),
                "{}",
                tensorseal::dotted_path(pa)
            );
        }
    }
    let o = run(&["convert", &src, "x.tseal", "--compress", "planes=3"], d);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("auto, planes"), "{}", stderr(&o));
}
