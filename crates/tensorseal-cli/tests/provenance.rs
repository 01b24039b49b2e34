//! Provenance on the command line: trust policy files, the audit log, attestations, key ids.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tensorseal"));
    c.env_remove("TENSORSEAL_AUDIT_LOG");
    c
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

fn fixture(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(rel)
        .display()
        .to_string()
}

/// The one report of a `--json` run, whether printed alone or as a one-element array.
fn json_report(o: &Output) -> Value {
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        v => v,
    }
}

/// Two key pairs `old` and `new` and files converted from a real numpy fixture, each with the
/// given run_id, signed by the given keys.
fn setup(d: &Path) {
    for k in ["old", "new"] {
        let o = run(&["keygen", "--out", k], d);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
}

fn convert(d: &Path, out: &str, run_id: &str, sign: &[&str]) -> Output {
    let input = fixture("numpy/be_i4.npy");
    let meta = format!("run_id={run_id}");
    let mut args = vec![
        "convert", &input, out, "--meta", &meta, "--meta", "step=5", "--quiet",
    ];
    for k in sign {
        args.extend(["--sign", k]);
    }
    let o = run(&args, d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    o
}

fn key_id(d: &Path, public: &str) -> String {
    let o = run(&["key", "id", public], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn write_policy(d: &Path, top: &str, old_not_after: &str) {
    let text = format!(
        "version = 1\n{top}\n\
         [[key]]\nname = \"ci-old\"\npublic_key = \"old.pub\"\nnot_after = {old_not_after}\n\
         [[key]]\nname = \"ci-new\"\npublic_key = \"new.pub\"\nrun_ids = [\"nightly-*\"]\n"
    );
    std::fs::write(d.join("policy.toml"), text).unwrap();
}

#[test]
fn verify_with_a_policy_names_keys_and_refuses_with_stable_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    convert(d, "both.tseal", "nightly-1", &["old.key", "new.key"]);
    convert(d, "old.tseal", "nightly-1", &["old.key"]);
    convert(d, "adhoc.tseal", "adhoc", &["new.key"]);

    write_policy(d, "", "2999-01-01T00:00:00Z");
    let o = run(
        &["verify", "both.tseal", "--policy", "policy.toml", "--json"],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let names: Vec<Value> = json_report(&o)["signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, ["ci-old", "ci-new"]);

    // run_id outside the key's patterns.
    let o = run(
        &["verify", "adhoc.tseal", "--policy", "policy.toml", "--json"],
        d,
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert_eq!(json_report(&o)["error"]["kind"], "run_id_not_allowed");

    // Expired.
    write_policy(d, "", "2020-01-01T00:00:00Z");
    let o = run(
        &["verify", "old.tseal", "--policy", "policy.toml", "--json"],
        d,
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let report = json_report(&o);
    assert_eq!(report["error"]["kind"], "key_expired");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ci-old")
    );
    // ... while a file also signed by the new key still verifies, the expired signer reported.
    let o = run(
        &["verify", "both.tseal", "--policy", "policy.toml", "--json"],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json_report(&o)["signers"][0]["refused"], "key_expired");

    // Revoked.
    let revoked = format!("revoked = [\"{}\"]", key_id(d, "old.pub"));
    write_policy(d, &revoked, "2999-01-01T00:00:00Z");
    let o = run(
        &["verify", "old.tseal", "--policy", "policy.toml", "--json"],
        d,
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert_eq!(json_report(&o)["error"]["kind"], "revoked_key");

    // export takes the same policy.
    let o = run(
        &[
            "export",
            "old.tseal",
            "out.safetensors",
            "--policy",
            "policy.toml",
        ],
        d,
    );
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(!d.join("out.safetensors").exists());
    let o = run(
        &[
            "export",
            "both.tseal",
            "out.safetensors",
            "--policy",
            "policy.toml",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // A policy with an unknown field is invalid input, naming the field.
    std::fs::write(d.join("bad.toml"), "version = 1\ntrheshold = 2\n").unwrap();
    let o = run(&["verify", "both.tseal", "--policy", "bad.toml"], d);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("trheshold"), "{}", stderr(&o));
    // --policy and --trust are exclusive.
    let o = run(
        &[
            "verify",
            "both.tseal",
            "--policy",
            "policy.toml",
            "--trust",
            "old.pub",
        ],
        d,
    );
    assert_eq!(code(&o), 2);
}

#[test]
fn keys_from_env_and_descriptors_and_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let id = key_id(d, "old.pub");
    assert_eq!(id.len(), 64);
    // A private key prints its public key's id.
    assert_eq!(key_id(d, "old.key"), id);
    let pem = std::fs::read_to_string(d.join("old.key")).unwrap();

    convert(d, "f.tseal", "r", &[]);
    let o = bin()
        .args(["sign", "f.tseal", "--key", "env:TS_TEST_KEY"])
        .env("TS_TEST_KEY", &pem)
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        code(&run(&["verify", "f.tseal", "--trust", "old.pub"], d)),
        0
    );

    // fd:N reads an inherited descriptor (here through the shell's redirection).
    convert(d, "g.tseal", "r", &[]);
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "\"{}\" sign g.tseal --key fd:3 3<old.key",
            env!("CARGO_BIN_EXE_tensorseal")
        ))
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        code(&run(&["verify", "g.tseal", "--trust", "old.pub"], d)),
        0
    );

    // A missing variable or a bad descriptor spec is a clear error.
    let o = run(
        &["sign", "g.tseal", "--key", "env:TS_TEST_UNSET_VARIABLE"],
        d,
    );
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("TS_TEST_UNSET_VARIABLE"),
        "{}",
        stderr(&o)
    );
    assert_eq!(code(&run(&["sign", "g.tseal", "--key", "fd:x"], d)), 2);
    let o = run(&["key", "id", "f.tseal"], d);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}
