//! Trust policy files (spec/POLICY.md): strict loading, revocation, validity windows, per-key
//! `run_id` patterns, threshold and minimum step, through both verification paths.

use std::collections::BTreeMap;
use std::path::Path;
use tensorseal::*;

/// 2026-01-01T00:00:00Z.
const JAN_2026: u64 = 1_767_225_600;
const DAY: u64 = 86_400;

fn write(path: &Path, run_id: &str, step: u64, signers: &[&SecretKey]) {
    let mut w = Writer::create(path, WriteOptions::default()).unwrap();
    let data: Vec<u8> = (0..64u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let b = w.write_blob(&data, DType::F32).unwrap();
    let root = Node::Dict(vec![(
        Node::Str("w".into()),
        Node::Tensor(Box::new(Tensor::new(DType::F32, vec![64], Some(b)))),
    )]);
    let mut meta = BTreeMap::new();
    meta.insert("run_id".to_string(), run_id.to_string());
    meta.insert("step".to_string(), step.to_string());
    w.finish(root, meta, signers).unwrap();
}

struct Setup {
    dir: tempfile::TempDir,
    old: SecretKey,
    new: SecretKey,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        SecretKey::from_seed(&[1; 32]),
        SecretKey::from_seed(&[2; 32]),
    );
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    for (name, k) in [("old", &old), ("new", &new)] {
        let p = dir.path().join(format!("keys/{name}.pub"));
        std::fs::write(p, k.public_key().to_pem().unwrap()).unwrap();
    }
    Setup { dir, old, new }
}

impl Setup {
    fn policy(&self, toml: &str) -> Result<TrustPolicy, PolicyError> {
        let p = self.dir.path().join("policy.toml");
        std::fs::write(&p, toml).unwrap();
        TrustPolicy::read_policy_file(&p)
    }

    fn file(&self, run_id: &str, step: u64, signers: &[&SecretKey]) -> std::path::PathBuf {
        let p = self
            .dir
            .path()
            .join(format!("{run_id}-{step}-{}.tseal", signers.len()));
        write(&p, run_id, step, signers);
        p
    }
}

/// Verifies through `open_verified`, `Checkpoint::verify` and the `Loader`, which must agree.
fn verify(path: &Path, policy: &TrustPolicy) -> Result<VerifyReport, VerifyError> {
    let limits = Limits::default();
    let a = Checkpoint::open_verified(path, policy, &limits).map(|(_, r)| r);
    let b = Checkpoint::open(path, &limits)
        .map_err(VerifyError::from)
        .and_then(|c| c.verify(policy));
    let c = Loader::open(path, policy, &limits).map(|l| l.signers().to_vec());
    assert_eq!(
        a.as_ref()
            .map(|r| r.signers.clone())
            .map_err(|e| e.to_string()),
        b.as_ref()
            .map(|r| r.signers.clone())
            .map_err(|e| e.to_string())
    );
    assert_eq!(
        a.as_ref()
            .map(|r| r.signers.clone())
            .map_err(|e| e.to_string()),
        c.map_err(|e| e.to_string())
    );
    a
}

fn refusal(r: Result<VerifyReport, VerifyError>) -> (String, Option<String>, KeyRefusal) {
    match r {
        Err(VerifyError::KeyRefused {
            key_id,
            name,
            reason,
            ..
        }) => (key_id, name, reason),
        other => panic!("expected a key refusal, got {other:?}"),
    }
}

const KEYS: &str = r#"
[[key]]
name = "ci-old"
public_key = "keys/old.pub"
not_before = 2025-01-01T00:00:00Z
not_after = 2026-06-30T23:59:59Z
[[key]]
name = "ci-new"
public_key = "keys/new.pub"
not_before = 2026-01-01
run_ids = ["nightly-*", "release-?"]
"#;

/// A policy of top-level `top` lines followed by the two keys.
fn base(top: &str) -> String {
    format!("version = 1\n{top}\n{KEYS}")
}

#[test]
fn named_keys_inside_their_windows_verify() {
    let s = setup();
    let policy = s.policy(&base("")).unwrap().at(JAN_2026 + DAY);
    let report = verify(&s.file("nightly-7", 10, &[&s.old, &s.new]), &policy).unwrap();
    let names: Vec<_> = report.signers.iter().map(|s| s.name.as_deref()).collect();
    assert_eq!(names, [Some("ci-old"), Some("ci-new")]);
    assert!(
        report
            .signers
            .iter()
            .all(|s| s.trusted && s.refused.is_none())
    );
    assert_eq!(policy.key_name(&s.new.public_key()), Some("ci-new"));
}

#[test]
fn an_expired_key_is_refused_with_its_name_and_window() {
    let s = setup();
    let policy = s.policy(&base("")).unwrap().at(JAN_2026 + 365 * DAY);
    let file = s.file("nightly-7", 10, &[&s.old]);
    let (key_id, name, reason) = refusal(verify(&file, &policy));
    assert_eq!(key_id, s.old.public_key().short_id());
    assert_eq!(name.as_deref(), Some("ci-old"));
    assert_eq!(reason.kind(), "key_expired");
    let text = verify(&file, &policy).unwrap_err().to_string();
    assert!(
        text.contains("ci-old") && text.contains("not after 2026-06-30T23:59:59Z"),
        "{text}"
    );
    // During a rotation the new key carries the file alone once the old one expires; the
    // expired signature is reported but not counted.
    let both = s.file("nightly-7", 10, &[&s.old, &s.new]);
    let report = verify(&both, &policy).unwrap();
    assert_eq!(
        report.signers[0].refused.as_ref().map(KeyRefusal::kind),
        Some("key_expired")
    );
    assert!(!report.signers[0].trusted && report.signers[1].trusted);
}

#[test]
fn a_key_before_its_window_is_not_yet_valid() {
    let s = setup();
    let policy = s.policy(&base("")).unwrap().at(JAN_2026 - DAY);
    let (_, name, reason) = refusal(verify(&s.file("nightly-1", 1, &[&s.new]), &policy));
    assert_eq!(
        (name.as_deref(), reason.kind()),
        (Some("ci-new"), "key_not_yet_valid")
    );
}

#[test]
fn a_revoked_key_is_refused_even_if_listed() {
    let s = setup();
    let toml = base(&format!("revoked = [\"{}\"]", s.old.public_key().key_id()));
    let policy = s.policy(&toml).unwrap().at(JAN_2026 + DAY);
    let (key_id, _, reason) = refusal(verify(&s.file("nightly-1", 1, &[&s.old]), &policy));
    assert_eq!(
        (key_id, reason),
        (s.old.public_key().short_id(), KeyRefusal::Revoked)
    );
    // Revocation also applies to a key the policy does not otherwise list.
    let unlisted = SecretKey::from_seed(&[9; 32]);
    let policy = TrustPolicy::trusting(vec![s.new.public_key()])
        .revoke(unlisted.public_key().key_id())
        .at(JAN_2026);
    let (_, _, reason) = refusal(verify(&s.file("x", 1, &[&unlisted]), &policy));
    assert_eq!(reason.kind(), "revoked_key");
}

#[test]
fn run_id_patterns_restrict_what_a_key_may_sign() {
    let s = setup();
    let policy = s.policy(&base("")).unwrap().at(JAN_2026 + DAY);
    assert!(verify(&s.file("release-3", 1, &[&s.new]), &policy).is_ok());
    let (_, name, reason) = refusal(verify(&s.file("release-10", 1, &[&s.new]), &policy));
    assert_eq!(name.as_deref(), Some("ci-new"));
    assert_eq!(
        reason,
        KeyRefusal::RunIdNotAllowed {
            run_id: Some("release-10".into()),
            allowed: vec!["nightly-*".into(), "release-?".into()],
        }
    );
    // The old key has no run_id rule and signs anything in its window.
    assert!(verify(&s.file("adhoc", 1, &[&s.old]), &policy).is_ok());
}

#[test]
fn threshold_expectations_and_min_step_come_from_the_file() {
    let s = setup();
    let toml = base("threshold = 2\nmin_step = 100\n[expect]\nrun_id = \"nightly-9\"");
    let policy = s.policy(&toml).unwrap().at(JAN_2026 + DAY);
    assert!(verify(&s.file("nightly-9", 100, &[&s.old, &s.new]), &policy).is_ok());
    assert!(matches!(
        verify(&s.file("nightly-9", 100, &[&s.new]), &policy),
        Err(VerifyError::Untrusted {
            trusted: 1,
            threshold: 2,
            ..
        })
    ));
    assert!(matches!(
        verify(&s.file("nightly-9", 99, &[&s.old, &s.new]), &policy),
        Err(VerifyError::StepTooOld {
            found: 99,
            min: 100
        })
    ));
    assert!(matches!(
        verify(&s.file("nightly-8", 100, &[&s.old, &s.new]), &policy),
        Err(VerifyError::MetadataMismatch { .. })
    ));
    // One of two signers refused by its run_id rule leaves one: below the threshold.
    let toml = toml.replace("run_id = \"nightly-9\"", "");
    let policy = s.policy(&toml).unwrap().at(JAN_2026 + DAY);
    let (_, name, reason) = refusal(verify(&s.file("adhoc", 100, &[&s.old, &s.new]), &policy));
    assert_eq!(
        (name.as_deref(), reason.kind()),
        (Some("ci-new"), "run_id_not_allowed")
    );
}

#[test]
fn policy_files_are_loaded_strictly() {
    let s = setup();
    let err = |toml: &str| s.policy(toml).unwrap_err().to_string();
    let unknown = err(&base("").replace("run_ids", "run_idz"));
    assert!(unknown.contains("run_idz"), "{unknown}");
    assert!(err(&format!("{}\nextra = 1", base(""))).contains("extra"));
    assert!(err(&base("").replace("version = 1", "version = 2")).contains("version 1"));
    assert!(err("version = 1\n").contains("at least one key"));
    assert!(err(&base("").replace("ci-new", "ci-old")).contains("used by another key"));
    assert!(err(&base("").replace("keys/new.pub", "keys/old.pub")).contains("listed twice"));
    assert!(err(&base("").replace("keys/new.pub", "keys/missing.pub")).contains("missing.pub"));
    assert!(
        err(&base("").replace("2026-06-30T23:59:59Z", "2026-06-30T23:59:59"))
            .contains("no UTC offset")
    );
    assert!(
        err(&base("").replace("2026-06-30T23:59:59Z", "2024-06-30T23:59:59Z"))
            .contains("not_before is after")
    );
    assert!(err(&base("").replace("[\"nightly-*\", \"release-?\"]", "[]")).contains("run_ids"));
    assert!(err(&base("threshold = 3")).contains("threshold 3"));
    assert!(err(&base("revoked = [\"abc\"]")).contains("not a key id"));
    let pinned = base("").replacen(
        "name = \"ci-old\"",
        "name = \"ci-old\"\nkey_id = \"0000000000000000000000000000000000000000000000000000000000000000\"",
        1,
    );
    assert!(err(&pinned).contains("does not match the key"));
    // An inline PEM works as well as a path, and a correct pin is accepted.
    let inline = format!(
        "version = 1\n[[key]]\nname = \"k\"\nkey_id = \"{}\"\npublic_key_pem = \"\"\"\n{}\"\"\"\n",
        s.new.public_key().key_id(),
        s.new.public_key().to_pem().unwrap()
    );
    assert_eq!(s.policy(&inline).unwrap().keys(), &[s.new.public_key()]);
}

#[test]
fn integrity_only_ignores_rules() {
    let s = setup();
    let file = s.file("x", 1, &[&s.old]);
    let report = verify(
        &file,
        &TrustPolicy::integrity_only().revoke(s.old.public_key().key_id()),
    )
    .unwrap();
    assert!(report.signers[0].refused.is_none());
}
