//! Signatures and verification semantics (spec §6, §7), zstd frames in signed files (spec §4.3),
//! and interoperability of keys with openssl.

mod common;

use common::*;
use ed25519_dalek::{Signer, SigningKey, Verifier};
use tensorseal::{
    Checkpoint, Limits, PublicKey, ReadError, SecretKey, TrustPolicy, VerifyError, VerifyReport,
};

fn public(key: &SigningKey) -> PublicKey {
    PublicKey::from_bytes(&key.verifying_key().to_bytes()).unwrap()
}

fn verify(file: Vec<u8>, policy: &TrustPolicy) -> Result<VerifyReport, VerifyError> {
    Checkpoint::from_vec(file, &Limits::default())?.verify(policy)
}

/// Verifies through the file system with `open_verified`, the order of spec §7.
fn open_verified(file: &[u8], policy: &TrustPolicy) -> Result<VerifyReport, VerifyError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.tseal");
    std::fs::write(&path, file).unwrap();
    Checkpoint::open_verified(&path, policy, &Limits::default()).map(|(_, r)| r)
}

/// Both verification paths must agree on the outcome's variant.
fn both(file: &[u8], policy: &TrustPolicy) -> Result<VerifyReport, VerifyError> {
    let a = verify(file.to_vec(), policy);
    let b = open_verified(file, policy);
    assert_eq!(
        std::mem::discriminant(&a.as_ref().map(|_| ()).map_err(std::mem::discriminant)),
        std::mem::discriminant(&b.as_ref().map(|_| ()).map_err(std::mem::discriminant)),
        "{a:?} vs {b:?}"
    );
    a
}

/// The small file with custom signature entries.
fn with_entries(entries: &[([u8; 32], [u8; 64])]) -> Vec<u8> {
    let (prefix, m) = small_parts();
    assemble(&prefix, &m.enc(), &signature_block(entries))
}

fn entries_by(keys: &[&SigningKey]) -> Vec<([u8; 32], [u8; 64])> {
    let (prefix, m) = small_parts();
    sign_entries(prefix.len() as u64, &m.enc(), keys)
}

#[test]
fn a_signature_from_an_untrusted_key_only_is_untrusted() {
    let (k1, k2) = (signing_key(1), signing_key(2));
    let (file, _) = small_file(&[&k2]);
    match both(&file, &TrustPolicy::trusting(vec![public(&k1)])) {
        Err(VerifyError::Untrusted {
            signers,
            trusted: 0,
            threshold: 1,
        }) => assert_eq!(signers, vec![public(&k2).short_id()]),
        other => panic!("{other:?}"),
    }
    // An unsigned file under a trust set is untrusted too, naming nobody.
    let (file, _) = small_file(&[]);
    match both(&file, &TrustPolicy::trusting(vec![public(&k1)])) {
        Err(VerifyError::Untrusted {
            signers,
            trusted: 0,
            ..
        }) => assert!(signers.is_empty()),
        other => panic!("{other:?}"),
    }
    // An empty trust set trusts nobody.
    let (file, _) = small_file(&[&k1]);
    assert!(matches!(
        both(&file, &TrustPolicy::trusting(vec![])),
        Err(VerifyError::Untrusted { trusted: 0, .. })
    ));
}

#[test]
fn a_bad_signature_by_an_untrusted_co_signer_fails_the_file() {
    let (k1, k2) = (signing_key(1), signing_key(2));
    let mut entries = entries_by(&[&k1, &k2]);
    entries[1].1[10] ^= 1;
    let file = with_entries(&entries);
    for policy in [
        TrustPolicy::trusting(vec![public(&k1)]),
        TrustPolicy::integrity_only(),
    ] {
        match both(&file, &policy) {
            Err(VerifyError::BadSignature { index: 1, key_id }) => {
                assert_eq!(key_id, public(&k2).short_id())
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_threshold_counts_distinct_trusted_signers() {
    let (k1, k2, k3) = (signing_key(1), signing_key(2), signing_key(3));
    let (file, _) = small_file(&[&k1, &k2]);
    // Two valid signatures, only one trusted.
    let policy = TrustPolicy::trusting(vec![public(&k1), public(&k3)]).threshold(2);
    assert!(matches!(
        both(&file, &policy),
        Err(VerifyError::Untrusted {
            trusted: 1,
            threshold: 2,
            ..
        })
    ));
    // Listing the trusted key twice does not count it twice.
    let policy = TrustPolicy::trusting(vec![public(&k1), public(&k1)]).threshold(2);
    assert!(matches!(
        both(&file, &policy),
        Err(VerifyError::Untrusted { trusted: 1, .. })
    ));
    let policy = TrustPolicy::trusting(vec![public(&k1), public(&k2)]).threshold(2);
    let report = both(&file, &policy).unwrap();
    assert!(report.signers.iter().all(|s| s.trusted));
    // Threshold 0 still requires one trusted signature when keys are given.
    let (unsigned, _) = small_file(&[]);
    assert!(matches!(
        both(
            &unsigned,
            &TrustPolicy::trusting(vec![public(&k1)]).threshold(0)
        ),
        Err(VerifyError::Untrusted { .. })
    ));
}

#[test]
fn digests_only_mode_passes_unsigned_files_and_says_so() {
    let (file, _) = small_file(&[]);
    let report = both(&file, &TrustPolicy::integrity_only()).unwrap();
    assert!(!report.authenticated);
    assert!(report.signers.is_empty());
    assert_eq!(report.blobs, 2);
    assert_eq!(report.chunks, 2);
    assert_eq!(report.bytes_hashed, 24 + 3);
    // Signatures present are still checked and reported, untrusted.
    let (file, _) = small_file(&[&signing_key(1)]);
    let report = both(&file, &TrustPolicy::integrity_only()).unwrap();
    assert!(!report.authenticated);
    assert_eq!(report.signers.len(), 1);
    assert!(!report.signers[0].trusted);
    // It still detects corruption of a blob, naming the tensor.
    let (mut file, _) = small_file(&[]);
    file[64 + 5] ^= 0x40;
    match both(&file, &TrustPolicy::integrity_only()) {
        Err(VerifyError::DigestMismatch {
            blob: 0,
            chunk: 0,
            offset: 64,
            tensor,
        }) => assert_eq!(tensor, "tensor w"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn signatures_bind_the_content_length_and_the_domain() {
    let k1 = signing_key(1);
    let (prefix, m) = small_parts();
    let m = m.enc();
    let digest = sha256(&m);
    let content = prefix.len() as u64 + m.len() as u64;
    let forged = |message: Vec<u8>| {
        let sig = k1.sign(&message).to_bytes();
        assemble(
            &prefix,
            &m,
            &signature_block(&[(k1.verifying_key().to_bytes(), sig)]),
        )
    };
    let policy = TrustPolicy::trusting(vec![public(&k1)]);
    both(&forged(signed_message(content, &digest)), &policy).unwrap();
    for message in [
        signed_message(content + 1, &digest),
        signed_message(content - 64, &digest),
        [
            b"tensorseal-manifest-signature-v2\0",
            &content.to_le_bytes()[..],
            &digest,
        ]
        .concat(),
        [&content.to_le_bytes()[..], &digest].concat(),
        m.clone(),
    ] {
        assert!(matches!(
            both(&forged(message), &policy),
            Err(VerifyError::BadSignature { index: 0, .. })
        ));
    }
}

#[test]
fn a_signature_under_another_key_is_bad() {
    let (k1, k2) = (signing_key(1), signing_key(2));
    let mut entries = entries_by(&[&k2]);
    entries[0].0 = k1.verifying_key().to_bytes();
    assert!(matches!(
        both(
            &with_entries(&entries),
            &TrustPolicy::trusting(vec![public(&k1)])
        ),
        Err(VerifyError::BadSignature { index: 0, .. })
    ));
}

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[test]
fn non_canonical_s_is_rejected() {
    let k1 = signing_key(1);
    let mut entries = entries_by(&[&k1]);
    // S + L encodes the same scalar: a malleable second signature.
    let s = &mut entries[0].1[32..];
    let mut carry = 0u16;
    for (b, l) in s.iter_mut().zip(L) {
        let sum = u16::from(*b) + u16::from(l) + carry;
        *b = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    assert!(matches!(
        both(&with_entries(&entries), &TrustPolicy::integrity_only()),
        Err(VerifyError::BadSignature { index: 0, .. })
    ));
}

#[test]
fn weak_keys_never_verify() {
    // The identity point, of small order. With it, R = identity and S = 0 satisfy the plain
    // verification equation for every message: lax verifiers accept this forgery.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut sig = [0u8; 64];
    sig[0] = 1;
    let lax = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
    assert!(
        lax.verify(b"anything", &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok(),
        "the forgery is valid under non-strict verification"
    );
    let file = with_entries(&[(identity, sig)]);
    for policy in [
        TrustPolicy::integrity_only(),
        TrustPolicy::trusting(vec![public(&signing_key(1))]),
    ] {
        assert!(matches!(
            both(&file, &policy),
            Err(VerifyError::BadSignature { index: 0, .. })
        ));
    }
    // Nobody can put a weak key in a trust set.
    assert!(matches!(
        PublicKey::from_bytes(&identity),
        Err(tensorseal::KeyError::Weak)
    ));
    let der = [
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ][..],
        &identity,
    ]
    .concat();
    assert!(matches!(
        PublicKey::from_any(&der),
        Err(tensorseal::KeyError::Weak)
    ));
}

#[test]
fn malformed_signature_entries_are_structural_errors() {
    let k1 = signing_key(1);
    let good = entries_by(&[&k1])[0];
    // Bytes that do not decode to a curve point.
    let not_a_point = (0u8..=255)
        .map(|i| [i; 32])
        .find(|b| ed25519_dalek::VerifyingKey::from_bytes(b).is_err())
        .unwrap();
    let (prefix, m) = small_parts();
    let sig_at = prefix.len() + m.enc().len();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            signature_block(&[good, good]),
            "[1]",
            "two signatures by the same key",
        ),
        (
            signature_block(&[(not_a_point, good.1)]),
            "[0]",
            "not a valid Ed25519 public key",
        ),
        (
            C::A(vec![C::map(vec![
                ("key", C::B(good.0[..31].to_vec())),
                ("sig", C::B(good.1.to_vec())),
            ])])
            .enc(),
            "[0]",
            "32 bytes",
        ),
        (
            C::A(vec![C::map(vec![
                ("key", C::B(good.0.to_vec())),
                ("sig", C::B(good.1[..63].to_vec())),
            ])])
            .enc(),
            "[0]",
            "64 bytes",
        ),
        (
            C::A(vec![C::map(vec![("key", C::B(good.0.to_vec()))])]).enc(),
            "[0]",
            "missing field \"sig\"",
        ),
        (
            C::A(vec![C::map(vec![
                ("key", C::B(good.0.to_vec())),
                ("sig", C::B(good.1.to_vec())),
                ("time", C::U(0)),
            ])])
            .enc(),
            "[0]",
            "unknown field \"time\"",
        ),
        (C::map(vec![]).enc(), "top level", "expected an array"),
    ];
    for (block, path, what) in cases {
        let file = assemble(&prefix, &m.enc(), &block);
        match both(&file, &TrustPolicy::integrity_only()) {
            Err(VerifyError::Malformed(ReadError::Schema {
                section: "signature block",
                offset,
                path: p,
                what: w,
            })) if p == path && w.contains(what) => {
                assert!(offset as usize >= sig_at && (offset as usize) < sig_at + block.len());
            }
            other => panic!("expected {what:?} at {path}, got {other:?}"),
        }
    }
}

#[test]
fn unauthenticated_manifests_never_reach_the_parser() {
    // A manifest that breaks the schema, validly signed by an untrusted key.
    let (k1, k2) = (signing_key(1), signing_key(2));
    let m = manifest(C::wrap("weird", C::Null), vec![], &[]).enc();
    let file = assemble_signed(&header(), &m, &[&k2]);
    // Spec §7: with keys given, trust is decided before the manifest is decoded.
    assert!(matches!(
        open_verified(&file, &TrustPolicy::trusting(vec![public(&k1)])),
        Err(VerifyError::Untrusted { .. })
    ));
    assert!(matches!(
        open_verified(&file, &TrustPolicy::trusting(vec![public(&k2)])),
        Err(VerifyError::Malformed(ReadError::Schema { .. }))
    ));
}

#[test]
fn metadata_expectations_refuse_rollback_and_replay() {
    let k1 = signing_key(1);
    let (file, _) = small_file(&[&k1]);
    let policy = || TrustPolicy::trusting(vec![public(&k1)]);
    both(&file, &policy().expect("run_id", "kit").min_step(3)).unwrap();
    assert!(matches!(
        both(&file, &policy().min_step(4)),
        Err(VerifyError::StepTooOld { found: 3, min: 4 })
    ));
    match both(&file, &policy().expect("run_id", "other")) {
        Err(VerifyError::MetadataMismatch {
            key,
            expected,
            found,
        }) => {
            assert_eq!((key.as_str(), expected.as_str()), ("run_id", "other"));
            assert_eq!(found.as_deref(), Some("kit"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        both(&file, &policy().expect("producer", "x")),
        Err(VerifyError::MetadataMismatch { found: None, .. })
    ));
    // No step at all, while a minimum is required.
    let m = manifest(C::Null, vec![], &[]).enc();
    let file = assemble_signed(&header(), &m, &[&k1]);
    assert!(matches!(
        both(&file, &policy().min_step(0)),
        Err(VerifyError::StepMissing)
    ));
}

// ---------------------------------------------------------------------------------------------
// zstd blobs in signed files: the decoder is reached only after the stored digests match.

fn frame(raw: &[u8], content_size: bool) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(content_size))
        .unwrap();
    c.compress(raw).unwrap()
}

/// A signed file with one zstd blob whose stored bytes are `stored` (one frame), claiming to
/// decode to `raw_length` bytes whose digest is that of `logical`.
fn zstd_file(stored: &[u8], raw_length: u64, logical: &[u8], key: &SigningKey) -> Vec<u8> {
    let mut blobs = Blobs::new();
    let offset = blobs.add(stored);
    let codec = C::map(vec![
        ("name", t("zstd")),
        ("group", C::U(1)),
        ("frames", C::A(vec![C::U(stored.len() as u64)])),
        ("raw_length", C::U(raw_length)),
        ("raw_sha256", C::A(vec![C::B(sha256(logical).to_vec())])),
    ]);
    let blob = C::map(vec![
        ("codec", codec),
        ("offset", C::U(offset)),
        ("length", C::U(stored.len() as u64)),
        ("sha256", C::A(vec![C::B(sha256(stored).to_vec())])),
    ]);
    let root = tensor(Some(0), "uint8", &[raw_length]);
    let m = manifest(root, vec![blob], &[]).enc();
    assemble_signed(&blobs.bytes, &m, &[key])
}

fn decode_error(file: Vec<u8>, key: &SigningKey) -> String {
    let policy = TrustPolicy::trusting(vec![public(key)]);
    match both(&file, &policy) {
        Err(VerifyError::Malformed(ReadError::Decode {
            blob: 0,
            chunk: 0,
            offset: 64,
            what,
        })) => {
            // Reading the tensor without verifying reports the same problem.
            let ckpt = Checkpoint::from_vec(file, &Limits::default()).unwrap();
            assert!(matches!(
                ckpt.blob_bytes(0),
                Err(ReadError::Decode {
                    blob: 0,
                    chunk: 0,
                    ..
                })
            ));
            what
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn zstd_frames_must_declare_exactly_their_chunk() {
    let k = signing_key(1);
    let raw: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
    // The honest file verifies.
    let good = frame(&raw, true);
    both(
        &zstd_file(&good, 4096, &raw, &k),
        &TrustPolicy::trusting(vec![public(&k)]),
    )
    .unwrap();
    // A frame declaring 4096 bytes where the manifest says 2048 (or 8192).
    for claimed in [2048, 8192] {
        let what = decode_error(zstd_file(&good, claimed, &raw[..2048], &k), &k);
        assert!(what.contains("declares 4096"), "{what}");
    }
    // A frame that does not declare its size.
    let what = decode_error(zstd_file(&frame(&raw, false), 4096, &raw, &k), &k);
    assert!(what.contains("does not declare"), "{what}");
    // Trailing data after the frame, and two frames in one chunk.
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0; 5]);
    let what = decode_error(zstd_file(&trailing, 4096, &raw, &k), &k);
    assert!(what.contains("stored"), "{what}");
    let half = frame(&raw[..2048], true);
    let two = [half.clone(), half].concat();
    let what = decode_error(zstd_file(&two, 4096, &raw, &k), &k);
    assert!(what.contains("stored"), "{what}");
    // Not zstd at all.
    let what = decode_error(zstd_file(b"definitely not zstd", 4096, &raw, &k), &k);
    assert!(what.contains("not a zstd frame"), "{what}");
}

#[test]
fn a_frame_that_decodes_to_other_bytes_is_a_digest_mismatch() {
    let k = signing_key(1);
    let raw = vec![1u8; 4096];
    let other = vec![2u8; 4096];
    let file = zstd_file(&frame(&other, true), 4096, &raw, &k);
    assert!(matches!(
        both(&file, &TrustPolicy::trusting(vec![public(&k)])),
        Err(VerifyError::DigestMismatch {
            blob: 0,
            chunk: 0,
            ..
        })
    ));
}

#[test]
fn stored_digests_are_checked_before_decoding() {
    // Corrupting a frame changes its stored digest: reported as a mismatch, not a decode error.
    let k = signing_key(1);
    let raw: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
    let mut file = zstd_file(&frame(&raw, true), 4096, &raw, &k);
    file[64 + 2] ^= 0xff;
    assert!(matches!(
        both(&file, &TrustPolicy::trusting(vec![public(&k)])),
        Err(VerifyError::DigestMismatch {
            blob: 0,
            chunk: 0,
            offset: 64,
            ..
        })
    ));
}

/// A frame of `n` zero bytes whose header is patched to declare `declared` bytes.
fn lying_frame(n: usize, declared: u32) -> Vec<u8> {
    let mut f = frame(&vec![0u8; n], true);
    // Frame header (RFC 8878 §3.1.1.1): magic (4), descriptor (1), window descriptor (1, absent
    // with the single-segment flag), dictionary id (0-4), then the content size field.
    let descriptor = f[4];
    assert_eq!(descriptor >> 6, 2, "a 4-byte content size field");
    let mut at = 5;
    if descriptor & 0x20 == 0 {
        at += 1;
    }
    at += [0, 1, 2, 4][usize::from(descriptor & 3)];
    assert_eq!(
        u32::from_le_bytes(f[at..at + 4].try_into().unwrap()) as usize,
        n
    );
    f[at..at + 4].copy_from_slice(&declared.to_le_bytes());
    f
}

#[test]
fn a_zstd_bomb_in_a_signed_file_fails_in_bounded_time() {
    // 256 MiB of zeros in a few KiB, with a header that claims 4096 bytes.
    let k = signing_key(1);
    let bomb = lying_frame(256 << 20, 4096);
    assert!(bomb.len() < 64 << 10);
    let started = std::time::Instant::now();
    let what = decode_error(zstd_file(&bomb, 4096, &[0; 4096], &k), &k);
    assert!(what.starts_with("zstd:"), "{what}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// openssl interoperability (spec §6 key files and key ids)

fn openssl() -> Option<std::path::PathBuf> {
    let found = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: openssl is not installed; key interoperability was not tested");
        return None;
    }
    Some("openssl".into())
}

fn run(cmd: &mut std::process::Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn openssl_keys_sign_files_that_verify() {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k.key");
    let pub_path = dir.path().join("k.pub");
    run(std::process::Command::new(&openssl)
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key_path));
    run(std::process::Command::new(&openssl)
        .args(["pkey", "-pubout", "-in"])
        .arg(&key_path)
        .arg("-out")
        .arg(&pub_path));
    let secret = SecretKey::read(&key_path).unwrap();
    let public = PublicKey::read(&pub_path).unwrap();
    assert_eq!(secret.public_key(), public);
    // Sign with the library, then with add_signature, and verify under the openssl public key.
    let path = dir.path().join("m.tseal");
    let mut w = tensorseal::Writer::create(&path, Default::default()).unwrap();
    let b = w.write_blob(&[1, 2, 3, 4], tensorseal::DType::U8).unwrap();
    let root = tensorseal::Node::Tensor(Box::new(tensorseal::Tensor::new(
        tensorseal::DType::U8,
        vec![4],
        Some(b),
    )));
    w.finish(root, Default::default(), &[]).unwrap();
    assert!(tensorseal::add_signature(&path, &secret, &Limits::default()).unwrap());
    Checkpoint::open_verified(
        &path,
        &TrustPolicy::trusting(vec![public]),
        &Limits::default(),
    )
    .unwrap();
    // openssl verifies our signature over the spec's message.
    let ckpt = Checkpoint::open(&path, &Limits::default()).unwrap();
    let message = signed_message(ckpt.footer().content_length(), &ckpt.manifest_sha256());
    let msg_path = dir.path().join("msg");
    let sig_path = dir.path().join("sig");
    std::fs::write(&msg_path, &message).unwrap();
    std::fs::write(&sig_path, ckpt.signatures()[0].signature).unwrap();
    let out = run(std::process::Command::new(&openssl)
        .args(["pkeyutl", "-verify", "-rawin", "-pubin", "-inkey"])
        .arg(&pub_path)
        .arg("-in")
        .arg(&msg_path)
        .arg("-sigfile")
        .arg(&sig_path));
    assert!(String::from_utf8_lossy(&out).contains("Signature Verified Successfully"));
}

#[test]
fn key_ids_match_openssl_and_our_keys_read_in_openssl() {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let secret = SecretKey::from_seed(&[9; 32]);
    let (key_path, pub_path) = secret.write_pair(&dir.path().join("ours")).unwrap();
    let der = run(std::process::Command::new(&openssl)
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(&pub_path));
    let id = run(std::process::Command::new(&openssl)
        .args(["dgst", "-sha256", "-r"])
        .arg({
            let p = dir.path().join("der");
            std::fs::write(&p, &der).unwrap();
            p
        }));
    let id = String::from_utf8(id).unwrap();
    assert_eq!(
        id.split_whitespace().next().unwrap(),
        secret.public_key().key_id()
    );
    // openssl derives the same public key from our private key file.
    let derived = run(std::process::Command::new(&openssl)
        .args(["pkey", "-pubout", "-in"])
        .arg(&key_path));
    assert_eq!(
        PublicKey::from_pem(std::str::from_utf8(&derived).unwrap()).unwrap(),
        secret.public_key()
    );
    // The published test key's id, as spec/vectors/README.md states it.
    let vectors = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors");
    assert_eq!(
        PublicKey::read(&vectors.join("test-key.pub"))
            .unwrap()
            .key_id(),
        "a050837d85070582ccf7394b0988847cc312cb88259b894899f6f239cf1791a5"
    );
}
