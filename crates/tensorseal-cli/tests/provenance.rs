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

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(p: &Path, lines: &[String]) {
    std::fs::write(
        p,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn audit_verify(d: &Path, log: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["audit", "verify", log, "--json"];
    args.extend(extra);
    let o = run(&args, d);
    (code(&o), serde_json::from_slice(&o.stdout).expect("JSON"))
}

#[test]
fn every_command_appends_a_chained_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let input = fixture("numpy/be_i4.npy");
    let o = run(
        &[
            "--audit-log",
            "a.jsonl",
            "convert",
            &input,
            "m.tseal",
            "--sign",
            "old.key",
            "--quiet",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The environment variable works too, and the option is global (after the subcommand).
    let o = bin()
        .args(["verify", "m.tseal", "--trust", "new.pub"])
        .env("TENSORSEAL_AUDIT_LOG", "a.jsonl")
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(code(&o), 3);
    let o = run(
        &[
            "verify",
            "m.tseal",
            "--trust",
            "old.pub",
            "--audit-log",
            "a.jsonl",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let recs: Vec<Value> = lines(&d.join("a.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 3);
    let input_sha = hex::encode(tensorseal::sha256(&std::fs::read(&input).unwrap()));
    assert_eq!(recs[0]["action"], "convert");
    assert_eq!(recs[0]["inputs"][0]["sha256"], input_sha.as_str());
    assert_eq!(recs[0]["outputs"][0]["path"], "m.tseal");
    assert_eq!(recs[0]["signer_key_ids"][0], key_id(d, "old.pub").as_str());
    assert_eq!(recs[0]["prev"], tensorseal_genesis());
    assert_eq!(
        (recs[1]["action"].as_str(), recs[1]["exit_code"].as_u64()),
        (Some("verify"), Some(3))
    );
    assert!(
        recs[1]["error"].as_str().unwrap().contains("untrusted")
            || recs[1]["error"].as_str().unwrap().contains("trusted")
    );
    // The kind is the one `verify --json` reports for the same refusal.
    assert_eq!(recs[1]["error_kind"], "untrusted");
    assert_eq!(recs[0]["error_kind"], Value::Null);
    assert_eq!(recs[2]["trust_key_ids"][0], key_id(d, "old.pub").as_str());
    assert_eq!(recs[2]["result"], "ok");
    for r in &recs {
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
        assert!(r["host"].is_string() && r["user"].is_string());
    }
    let (c, report) = audit_verify(d, "a.jsonl", &[]);
    assert_eq!(c, 0, "{report}");
    assert_eq!(report["records"], 3);
    // --audit-key without a log is a usage error before anything runs.
    let o = run(
        &[
            "--audit-key",
            "old.key",
            "convert",
            &input,
            "n.tseal",
            "--quiet",
        ],
        d,
    );
    assert_eq!(code(&o), 2);
    assert!(!d.join("n.tseal").exists());
}

fn tensorseal_genesis() -> &'static str {
    "0000000000000000000000000000000000000000000000000000000000000000"
}

#[test]
fn concurrent_writers_keep_one_linear_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    std::fs::write(d.join("x.bin"), b"not a checkpoint").unwrap();
    // 8 processes x 50 commands each, all appending to one log at once, half of them sealing.
    let script = format!(
        "for i in $(seq 1 50); do \"{}\" --audit-log log.jsonl $SEAL inspect x.bin >/dev/null 2>&1; done; exit 0",
        env!("CARGO_BIN_EXE_tensorseal")
    );
    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new("sh")
                .arg("-c")
                .arg(&script)
                .env(
                    "SEAL",
                    if i % 2 == 0 {
                        "--audit-key old.key"
                    } else {
                        ""
                    },
                )
                .env_remove("TENSORSEAL_AUDIT_LOG")
                .current_dir(d)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let all = lines(&d.join("log.jsonl"));
    let records = all
        .iter()
        .filter(|l| l.contains("\"type\":\"record\""))
        .count();
    let checkpoints = all
        .iter()
        .filter(|l| l.contains("\"type\":\"checkpoint\""))
        .count();
    assert_eq!((records, checkpoints), (400, 200));
    let (c, report) = audit_verify(d, "log.jsonl", &[]);
    assert_eq!(c, 0, "{report}");
    assert_eq!(
        (report["lines"].as_u64(), report["checkpoints"].as_u64()),
        (Some(600), Some(200))
    );
}

#[test]
fn deleted_reordered_edited_and_truncated_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    std::fs::write(d.join("x.bin"), b"x").unwrap();
    for _ in 0..5 {
        run(
            &[
                "--audit-log",
                "log.jsonl",
                "--audit-key",
                "old.key",
                "inspect",
                "x.bin",
            ],
            d,
        );
    }
    let good = lines(&d.join("log.jsonl"));
    assert_eq!(good.len(), 10); // record, checkpoint, ...
    assert_eq!(audit_verify(d, "log.jsonl", &["--key", "old.pub"]).0, 0);

    let broken = |mutated: Vec<String>, extra: &[&str]| {
        write_lines(&d.join("t.jsonl"), &mutated);
        let (c, report) = audit_verify(d, "t.jsonl", extra);
        assert_eq!(c, 3, "{report}");
        report["error"].clone()
    };
    // Deleted line 3: line 4 (now third) has seq 4.
    let mut m = good.clone();
    m.remove(2);
    let e = broken(m, &[]);
    assert_eq!(
        (e["kind"].as_str(), e["line"].as_u64()),
        (Some("chain_broken"), Some(3))
    );
    // Reordered lines 5 and 6.
    let mut m = good.clone();
    m.swap(4, 5);
    assert_eq!(broken(m, &[])["line"], 5);
    // Edited line 3, keeping its seq: line 4's prev no longer matches.
    let mut m = good.clone();
    m[2] = m[2].replace("\"action\":\"inspect\"", "\"action\":\"inspecT\"");
    let e = broken(m, &[]);
    assert_eq!(e["line"], 4);
    assert!(e["message"].as_str().unwrap().contains("line 3"), "{e}");
    // An edited checkpoint signature.
    let mut m = good.clone();
    let sig_at = m[9].find("\"signature\":\"").unwrap() + 13;
    let flipped = if &m[9][sig_at..sig_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    m[9].replace_range(sig_at..sig_at + 1, flipped);
    assert!(
        broken(m, &[])["message"]
            .as_str()
            .unwrap()
            .contains("invalid")
    );
    // Truncated tail: the last checkpoint removed. The chain alone is intact, but with the
    // audit key the unsealed record is detected.
    let m = good[..9].to_vec();
    write_lines(&d.join("t.jsonl"), &m);
    assert_eq!(audit_verify(d, "t.jsonl", &[]).0, 0);
    let e = broken(m, &["--key", "old.pub"]);
    assert_eq!(e["kind"], "unsealed");
    assert!(
        e["message"].as_str().unwrap().contains("lines 9..=9"),
        "{e}"
    );
    // A torn last line.
    let mut text = std::fs::read_to_string(d.join("log.jsonl")).unwrap();
    text.truncate(text.len() - 20);
    std::fs::write(d.join("t.jsonl"), &text).unwrap();
    assert_eq!(audit_verify(d, "t.jsonl", &[]).1["error"]["line"], 10);
    // ... and a writer refuses to extend it rather than chaining from half a line.
    let o = run(&["--audit-log", "t.jsonl", "inspect", "x.bin"], d);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("partial line"), "{}", stderr(&o));
    // Checkpoints by a key other than the trusted one.
    assert_eq!(
        broken(good.clone(), &["--key", "new.pub"])["kind"],
        "chain_broken"
    );
}

fn b64(bytes: &[u8]) -> String {
    use base64ct::Encoding as _;
    base64ct::Base64::encode_string(bytes)
}

fn unb64(s: &Value) -> Vec<u8> {
    use base64ct::Encoding as _;
    base64ct::Base64::decode_vec(s.as_str().unwrap()).unwrap()
}

#[test]
fn attestations_verify_and_forgeries_fail() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let input = fixture("numpy/be_i4.npy");
    let o = run(
        &[
            "convert",
            &input,
            "m.tseal",
            "--sign",
            "old.key",
            "--meta",
            "run_id=r-1",
            "--meta",
            "step=9",
            "--attest",
            "m.intoto.jsonl",
            "--quiet",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let envelope: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("m.intoto.jsonl")).unwrap()).unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    let statement: Value = serde_json::from_slice(&unb64(&envelope["payload"])).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    let file_sha = hex::encode(tensorseal::sha256(
        &std::fs::read(d.join("m.tseal")).unwrap(),
    ));
    assert_eq!(statement["subject"][0]["name"], "m.tseal");
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        file_sha.as_str()
    );
    let src_sha = hex::encode(tensorseal::sha256(&std::fs::read(&input).unwrap()));
    assert_eq!(statement["predicate"]["source"]["sha256"], src_sha.as_str());
    assert_eq!(statement["predicate"]["source"]["format"], "npy");
    assert_eq!(
        statement["predicate"]["source"]["scan"],
        serde_json::json!({"verdict": "safe", "inert_objects": []})
    );
    assert_eq!(
        (
            statement["predicate"]["run_id"].as_str(),
            statement["predicate"]["step"].as_str()
        ),
        (Some("r-1"), Some("9"))
    );
    // The signature is over the exact DSSE PAE.
    let body = unb64(&envelope["payload"]);
    let mut pae = format!("DSSEv1 28 application/vnd.in-toto+json {} ", body.len()).into_bytes();
    pae.extend_from_slice(&body);
    let sig: [u8; 64] = unb64(&envelope["signatures"][0]["sig"]).try_into().unwrap();
    let old = tensorseal::PublicKey::read(&d.join("old.pub")).unwrap();
    assert!(old.verify_message(&pae, &sig));

    let verify = |att: &str, trust: &str| {
        let o = run(
            &[
                "verify",
                "m.tseal",
                "--trust",
                trust,
                "--attestation",
                att,
                "--json",
            ],
            d,
        );
        (code(&o), json_report(&o)["error"]["kind"].clone())
    };
    assert_eq!(verify("m.intoto.jsonl", "old.pub"), (0, Value::Null));
    // `attest` on an existing file makes an equivalent envelope.
    let o = run(&["attest", "m.tseal", "--key", "old.key"], d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(verify("m.tseal.intoto.jsonl", "old.pub").0, 0);

    let forge = |name: &str, env: Value| {
        std::fs::write(d.join(name), format!("{env}\n")).unwrap();
        verify(name, "old.pub")
    };
    // An edited statement under the old signature.
    let mut st = statement.clone();
    st["predicate"]["run_id"] = "r-2".into();
    let mut e = envelope.clone();
    e["payload"] = b64(&serde_json::to_vec(&st).unwrap()).into();
    assert_eq!(
        forge("edited.jsonl", e),
        (3, "attestation_untrusted".into())
    );
    // A different payloadType, the signature unchanged (PAE binds the type).
    let mut e = envelope.clone();
    e["payloadType"] = "application/json".into();
    assert_eq!(forge("type.jsonl", e).0, 1);
    // Signed by a key that is not trusted.
    let o = run(
        &[
            "attest",
            "m.tseal",
            "--key",
            "new.key",
            "--out",
            "new.jsonl",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        verify("new.jsonl", "old.pub"),
        (3, "attestation_untrusted".into())
    );
    // The payload replaced by the PAE its signature covers: the verifier computes the PAE
    // of the payload, it never takes signed bytes from the envelope.
    let mut e = envelope.clone();
    e["payload"] = b64(&pae).into();
    assert_eq!(forge("pae.jsonl", e).0, 3);
    // A genuine attestation of another file.
    convert(d, "other.tseal", "r-1", &["old.key"]);
    let o = run(
        &[
            "attest",
            "other.tseal",
            "--key",
            "old.key",
            "--out",
            "other.jsonl",
        ],
        d,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        verify("other.jsonl", "old.pub"),
        (3, "attestation_subject_mismatch".into())
    );
    // --attest without --sign is a usage error.
    let o = run(&["convert", &input, "x.tseal", "--attest", "x.jsonl"], d);
    assert_eq!(code(&o), 2);
}

#[test]
fn attestation_records_the_scan_verdict_of_a_source_with_inert_objects() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let input = fixture("torch/zip_unknown_objects.pt");
    let args = [
        "convert",
        &input,
        "u.tseal",
        "--sign",
        "old.key",
        "--allow-objects",
        "--attest",
        "u.intoto.jsonl",
        "--quiet",
    ];
    let o = run(&args, d);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let envelope: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("u.intoto.jsonl")).unwrap()).unwrap();
    let statement: Value = serde_json::from_slice(&unb64(&envelope["payload"])).unwrap();
    let scan = &statement["predicate"]["source"]["scan"];
    assert_eq!(scan["verdict"], "unknown-objects", "{statement}");
    let classes = scan["inert_objects"].as_array().unwrap();
    assert!(!classes.is_empty(), "{statement}");
    // The same verdict `scan --allow-objects` gives the source.
    let o = run(&["scan", &input, "--allow-objects", "--json"], d);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["safety"], "unknown-objects", "{report}");
}

#[test]
fn model_signing_verify_exit_codes_and_audit_record() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tensorseal-provenance/tests/data/model-signing");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = data.join("model").display().to_string();
    let sig = |n: &str| data.join(n).display().to_string();
    let args = |bundle: &str, key: &str| {
        vec![
            "model-signing".to_string(),
            "verify".into(),
            model.clone(),
            "--signature".into(),
            bundle.into(),
            "--public-key".into(),
            sig(key),
            "--audit-log".into(),
            "a.jsonl".into(),
        ]
    };
    let go = |a: Vec<String>| run(&a.iter().map(String::as_str).collect::<Vec<_>>(), d);
    let o = go(args(&sig("files-p384.sig"), "p384.pub"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("OK "));
    let o = go(args(&sig("files-p384.sig"), "p256.pub"));
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("key hint"), "{}", stderr(&o));
    std::fs::write(d.join("bad.sig"), b"[]").unwrap();
    let bad = d.join("bad.sig").display().to_string();
    let o = go(args(&bad, "p256.pub"));
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let recs: Vec<Value> = lines(&d.join("a.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<_> = recs.iter().map(|r| r["error_kind"].clone()).collect();
    assert_eq!(
        kinds,
        [
            Value::Null,
            "bundle_untrusted".into(),
            "bundle_malformed".into()
        ]
    );
    assert_eq!(recs[0]["action"], "model-signing verify");
    // The bundle is recorded as an input, with its digest.
    let bundle_sha = hex::encode(tensorseal::sha256(
        &std::fs::read(data.join("files-p384.sig")).unwrap(),
    ));
    assert!(
        recs[0]["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["sha256"] == bundle_sha.as_str()),
        "{}",
        recs[0]
    );
}
