//! Bundles written by the real OpenSSF model-signing package (tests/data/model-signing, made by
//! its generate.py) verify; every change to the model, the key, the signature or the statement
//! is refused with the error class model-signing's own verdict corresponds to.

use base64ct::{Base64, Encoding as _};
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use tensorseal_provenance::{BundleError, EcPublicKey, pae, verify_model_signing};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/model-signing")
}

fn key(name: &str) -> EcPublicKey {
    EcPublicKey::read(&data().join(format!("{name}.pub"))).unwrap()
}

/// A copy of the signed model directory, to change.
fn model_copy(dir: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    let to = dir.join("model");
    copy(&data().join("model"), &to);
    to
}

fn bundle(name: &str) -> PathBuf {
    data().join(format!("{name}.sig"))
}

#[test]
fn bundles_of_the_real_package_verify_on_every_curve_and_method() {
    let model = data().join("model");
    for (sig, k, method, resources) in [
        ("files-p256", "p256", "files", 6),
        ("files-p384", "p384", "files", 6),
        ("files-p521", "p521", "files", 6),
        ("shards-p256", "p256", "shards", 10),
    ] {
        let r = verify_model_signing(&model, &bundle(sig), &key(k))
            .unwrap_or_else(|e| panic!("{sig}: {e}"));
        assert_eq!(
            (r.method.as_str(), r.files, r.resources),
            (method, 6, resources)
        );
        assert_eq!(r.model_name, "model");
        assert_eq!(r.bytes, 14910);
    }
    let one = model.join("lpips_alex.pth");
    let r = verify_model_signing(&one, &bundle("file-p256"), &key("p256")).unwrap();
    assert_eq!((r.files, r.model_name.as_str()), (1, "lpips_alex.pth"));
}

fn mismatch(e: BundleError) -> String {
    match e {
        BundleError::Mismatch(m) => m,
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[test]
fn a_changed_missing_or_extra_file_is_a_mismatch_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(dir.path());
    let (b, k) = (bundle("files-p256"), key("p256"));
    let w = model.join("lpips_alex.pth");
    let orig = std::fs::read(&w).unwrap();
    let mut bytes = orig.clone();
    bytes[3000] ^= 1;
    std::fs::write(&w, &bytes).unwrap();
    let m = mismatch(verify_model_signing(&model, &b, &k).unwrap_err());
    assert!(m.contains("lpips_alex.pth: sha256"), "{m}");
    // The shard bundle names the one shard that changed.
    let m = mismatch(verify_model_signing(&model, &bundle("shards-p256"), &k).unwrap_err());
    assert!(
        m.contains("lpips_alex.pth:2048:4096") && !m.contains(":0:2048"),
        "{m}"
    );
    std::fs::write(&w, &orig).unwrap();

    std::fs::write(model.join("hf/extra.bin"), b"x").unwrap();
    let m = mismatch(verify_model_signing(&model, &b, &k).unwrap_err());
    assert!(m.contains("hf/extra.bin is not in the bundle"), "{m}");
    std::fs::remove_file(model.join("hf/extra.bin")).unwrap();

    std::fs::remove_file(model.join("config.json")).unwrap();
    let m = mismatch(verify_model_signing(&model, &b, &k).unwrap_err());
    assert!(
        m.contains("config.json is in the bundle but not in the model"),
        "{m}"
    );
}

#[test]
fn ignored_paths_and_the_bundle_itself_are_not_part_of_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(dir.path());
    std::fs::create_dir_all(model.join(".git/objects")).unwrap();
    std::fs::write(model.join(".git/objects/x"), b"git").unwrap();
    std::fs::write(model.join(".gitattributes"), b"*.pth lfs").unwrap();
    let inside = model.join("model.sig");
    std::fs::copy(bundle("files-p256"), &inside).unwrap();
    verify_model_signing(&model, &inside, &key("p256")).unwrap();
    // A second copy of the bundle is an ordinary, unsigned file.
    std::fs::copy(bundle("files-p256"), model.join("copy.sig")).unwrap();
    let m = mismatch(verify_model_signing(&model, &inside, &key("p256")).unwrap_err());
    assert!(m.contains("copy.sig is not in the bundle"), "{m}");
}

#[test]
fn another_key_or_a_changed_statement_is_untrusted() {
    let model = data().join("model");
    let e = verify_model_signing(&model, &bundle("files-p256"), &key("p384")).unwrap_err();
    assert!(
        matches!(&e, BundleError::Untrusted(m) if m.contains("key hint")),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut b: Value =
        serde_json::from_slice(&std::fs::read(bundle("files-p256")).unwrap()).unwrap();
    // Without the hint, the signature itself decides.
    b["verificationMaterial"]["publicKey"] = json!({});
    let unhinted = dir.path().join("unhinted.sig");
    std::fs::write(&unhinted, b.to_string()).unwrap();
    verify_model_signing(&model, &unhinted, &key("p256")).unwrap();
    let e = verify_model_signing(&model, &unhinted, &key("p384")).unwrap_err();
    assert!(
        matches!(&e, BundleError::Untrusted(m) if m.contains("does not verify")),
        "{e}"
    );
    // A statement re-written to bless a changed file, its root digest recomputed: the signature
    // no longer covers it.
    let payload = Base64::decode_vec(b["dsseEnvelope"]["payload"].as_str().unwrap()).unwrap();
    let mut st: Value = serde_json::from_slice(&payload).unwrap();
    st["predicate"]["resources"][0]["digest"] = json!(hex::encode([7u8; 32]));
    let root = root_of(&st);
    st["subject"][0]["digest"]["sha256"] = json!(root);
    b["dsseEnvelope"]["payload"] = json!(Base64::encode_string(st.to_string().as_bytes()));
    let forged = dir.path().join("forged.sig");
    std::fs::write(&forged, b.to_string()).unwrap();
    let e = verify_model_signing(&model, &forged, &key("p256")).unwrap_err();
    assert!(matches!(e, BundleError::Untrusted(_)), "{e}");
}

fn root_of(st: &Value) -> String {
    let mut h = Sha256::new();
    for r in st["predicate"]["resources"].as_array().unwrap() {
        h.update(hex::decode(r["digest"].as_str().unwrap()).unwrap());
    }
    hex::encode(h.finalize())
}

/// A P-256 key of our own, to sign statements model-signing would never write.
fn test_signer() -> (p256::ecdsa::SigningKey, EcPublicKey) {
    let sk = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
    let vk = *sk.verifying_key();
    (sk, EcPublicKey::P256(vk))
}

/// Writes a bundle around `statement`, signed by the test key, and returns its path.
fn signed_bundle(dir: &Path, name: &str, statement: &Value, edit: impl Fn(&mut Value)) -> PathBuf {
    let (sk, _) = test_signer();
    let body = statement.to_string().into_bytes();
    let sig: p256::ecdsa::DerSignature = sk.sign(&pae("application/vnd.in-toto+json", &body));
    let mut b = json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": Base64::encode_string(&body),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": Base64::encode_string(sig.as_bytes()), "keyid": ""}],
        },
    });
    edit(&mut b);
    let path = dir.join(name);
    std::fs::write(&path, b.to_string()).unwrap();
    path
}

/// The statement of the real files-p256 bundle, to vary.
fn real_statement() -> Value {
    let b: Value = serde_json::from_slice(&std::fs::read(bundle("files-p256")).unwrap()).unwrap();
    serde_json::from_slice(
        &Base64::decode_vec(b["dsseEnvelope"]["payload"].as_str().unwrap()).unwrap(),
    )
    .unwrap()
}

#[test]
fn statements_this_reader_cannot_check_or_that_are_malformed_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = data().join("model");
    let (_, k) = test_signer();
    let st = real_statement();
    let ok = signed_bundle(d, "ok.sig", &st, |_| {});
    verify_model_signing(&model, &ok, &k).unwrap();

    let check = |name: &str, st: &Value, edit: &dyn Fn(&mut Value), want: &str| {
        let p = signed_bundle(d, name, st, edit);
        let e = verify_model_signing(&model, &p, &k).unwrap_err();
        let kind = tensorseal::Classify::kind(&e);
        assert_eq!(kind, want, "{name}: {e}");
        e.to_string()
    };
    let mut blake = st.clone();
    blake["predicate"]["serialization"]["hash_type"] = json!("blake2");
    check("blake2.sig", &blake, &|_| {}, "bundle_unsupported");
    check(
        "cert.sig",
        &st,
        &|b| b["verificationMaterial"]["certificate"] = json!({"rawBytes": "AA=="}),
        "bundle_unsupported",
    );
    let mut method = st.clone();
    method["predicate"]["serialization"]["method"] = json!("digest");
    check("method.sig", &method, &|_| {}, "bundle_unsupported");
    let mut root = st.clone();
    root["subject"][0]["digest"]["sha256"] = json!(hex::encode([0u8; 32]));
    let m = check("root.sig", &root, &|_| {}, "bundle_untrusted");
    assert!(m.contains("not the digest of the resources"), "{m}");
    let mut twice = st.clone();
    let first = twice["predicate"]["resources"][0].clone();
    twice["predicate"]["resources"]
        .as_array_mut()
        .unwrap()
        .push(first);
    let r = root_of(&twice);
    twice["subject"][0]["digest"]["sha256"] = json!(r);
    let m = check("twice.sig", &twice, &|_| {}, "bundle_malformed");
    assert!(m.contains("listed twice"), "{m}");
    let mut alg = st.clone();
    alg["predicate"]["resources"][0]["algorithm"] = json!("sha256-sharded-4096");
    check("alg.sig", &alg, &|_| {}, "bundle_malformed");
    check(
        "two.sig",
        &st,
        &|b| {
            let s = b["dsseEnvelope"]["signatures"][0].clone();
            b["dsseEnvelope"]["signatures"]
                .as_array_mut()
                .unwrap()
                .push(s);
        },
        "bundle_malformed",
    );
    check(
        "type.sig",
        &st,
        &|b| b["dsseEnvelope"]["payloadType"] = json!("text/plain"),
        "bundle_malformed",
    );
    let mut pred = st.clone();
    pred["predicateType"] = json!("https://example.com/other/v1");
    check("pred.sig", &pred, &|_| {}, "bundle_unsupported");
    std::fs::write(d.join("junk.sig"), b"{\"mediaType\": 1").unwrap();
    let e = verify_model_signing(&model, &d.join("junk.sig"), &k).unwrap_err();
    assert!(matches!(e, BundleError::Malformed(_)), "{e}");
}

#[test]
fn symlinks_are_refused_unless_the_serialization_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_copy(dir.path());
    std::fs::rename(model.join("config.json"), dir.path().join("config.json")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("config.json"), model.join("config.json")).unwrap();
    let (_, k) = test_signer();
    let mut st = real_statement();
    let strict = signed_bundle(dir.path(), "strict.sig", &st, |_| {});
    let m = mismatch(verify_model_signing(&model, &strict, &k).unwrap_err());
    assert!(m.contains("symbolic link"), "{m}");
    st["predicate"]["serialization"]["allow_symlinks"] = json!(true);
    let lax = signed_bundle(dir.path(), "lax.sig", &st, |_| {});
    verify_model_signing(&model, &lax, &k).unwrap();
}

#[test]
fn keys_other_than_nist_ecdsa_are_refused_clearly() {
    let ed = tensorseal::SecretKey::from_seed(&[1; 32])
        .public_key()
        .to_pem()
        .unwrap();
    let e = EcPublicKey::from_pem(&ed).unwrap_err();
    assert!(
        matches!(&e, BundleError::Unsupported(m) if m.contains("P-256")),
        "{e}"
    );
    assert_eq!(key("p384").curve(), "secp384r1");
    // The hint is what model-signing recorded in the bundle it made with this key.
    let b: Value = serde_json::from_slice(&std::fs::read(bundle("files-p521")).unwrap()).unwrap();
    assert_eq!(
        b["verificationMaterial"]["publicKey"]["hint"],
        key("p521").hint().as_str()
    );
}
