//! Reading the bundles of OpenSSF `model-signing` (PyPI `model-signing` 1.x, `model_signing sign
//! key`): a Sigstore bundle whose DSSE envelope holds an in-toto statement listing the SHA-256 of
//! every file (or file shard) of a model, signed with an ECDSA key. model-signing cannot verify
//! tensorseal's Ed25519 signatures (its key verifier accepts only NIST curves), so this is the
//! other direction: tensorseal checks its bundles, with the same verdicts (spec/ATTESTATION.md).
//!
//! The checks, in order: the bundle's shape and the key hint, the ECDSA signature over the DSSE
//! PAE, the statement's root digest over its resources, and the model on disk against those
//! resources (no file missing, none extra, every digest equal).

use crate::attest::{PAYLOAD_TYPE, STATEMENT_TYPE, pae};
use base64ct::{Base64, Encoding as _};
use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Component, Path, PathBuf};
use tensorseal::{Classify, FailureClass};

/// model-signing's predicate type (v1.0, the one model-signing 1.x writes).
pub const MODEL_SIGNING_PREDICATE: &str = "https://model_signing/signature/v1.0";
/// The largest bundle file read, in bytes.
pub const MAX_BUNDLE_FILE: u64 = 16 << 20;
/// The most resources (files or shards) a statement may list, and the most a model may hold.
pub const MAX_RESOURCES: usize = 1 << 20;
/// The deepest directory nesting walked in a model.
pub const MAX_DEPTH: usize = 64;
/// The smallest shard size accepted (the resource bound limits how many shards a file makes).
pub const MIN_SHARD_SIZE: u64 = 1;
/// How many differences a mismatch error lists before counting the rest.
const LISTED_DIFFERENCES: usize = 8;

/// A model-signing bundle could not be read, or does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// A file of the model or the bundle could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The bundle or its statement is not of the shape model-signing writes.
    #[error("malformed model-signing bundle: {0}")]
    Malformed(String),
    /// The bundle uses something this reader does not check (a certificate or Sigstore
    /// identity instead of a key, a hash other than SHA-256, a curve other than P-256/384/521).
    #[error("unsupported model-signing bundle: {0}")]
    Unsupported(String),
    /// The key hint differs from the key, or the signature does not verify with the key.
    #[error("model-signing bundle not signed by this key: {0}")]
    Untrusted(String),
    /// The model on disk differs from what the bundle lists.
    #[error("model does not match its model-signing bundle: {0}")]
    Mismatch(String),
}

impl Classify for BundleError {
    fn class(&self) -> FailureClass {
        match self {
            BundleError::Io { .. } | BundleError::Malformed(_) => FailureClass::Invalid,
            BundleError::Unsupported(_) => FailureClass::Unsupported,
            BundleError::Untrusted(_) | BundleError::Mismatch(_) => FailureClass::Verification,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            BundleError::Io { .. } => "io",
            BundleError::Malformed(_) => "bundle_malformed",
            BundleError::Unsupported(_) => "bundle_unsupported",
            BundleError::Untrusted(_) => "bundle_untrusted",
            BundleError::Mismatch(_) => "model_mismatch",
        }
    }
}

fn malformed(what: impl Into<String>) -> BundleError {
    BundleError::Malformed(what.into())
}

/// An ECDSA public key on a curve model-signing signs with; each curve's hash is the one
/// model-signing pairs with it (SHA-256, SHA-384, SHA-512).
#[derive(Debug, Clone)]
pub enum EcPublicKey {
    /// NIST P-256 (secp256r1), signatures over SHA-256.
    P256(p256::ecdsa::VerifyingKey),
    /// NIST P-384 (secp384r1), signatures over SHA-384.
    P384(p384::ecdsa::VerifyingKey),
    /// NIST P-521 (secp521r1), signatures over SHA-512.
    P521(p521::ecdsa::VerifyingKey),
}

impl EcPublicKey {
    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as `openssl ec -pubout` and Python's
    /// `cryptography` write it.
    pub fn from_pem(pem: &str) -> Result<EcPublicKey, BundleError> {
        use p256::pkcs8::DecodePublicKey as _;
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
            return Ok(EcPublicKey::P256(k));
        }
        if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_pem(pem) {
            return Ok(EcPublicKey::P384(k));
        }
        if let Ok(k) = p521::ecdsa::VerifyingKey::from_public_key_pem(pem) {
            return Ok(EcPublicKey::P521(k));
        }
        Err(BundleError::Unsupported(
            "the public key is not a PEM ECDSA key on P-256, P-384 or P-521 \
             (model-signing signs with no other keys)"
                .into(),
        ))
    }

    /// Reads [`EcPublicKey::from_pem`] from a file.
    pub fn read(path: &Path) -> Result<EcPublicKey, BundleError> {
        let mut text = String::new();
        File::open(path)
            .and_then(|f| f.take(1 << 16).read_to_string(&mut text))
            .map_err(|source| BundleError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        EcPublicKey::from_pem(&text)
    }

    /// The curve's name as OpenSSL spells it.
    pub fn curve(&self) -> &'static str {
        match self {
            EcPublicKey::P256(_) => "secp256r1",
            EcPublicKey::P384(_) => "secp384r1",
            EcPublicKey::P521(_) => "secp521r1",
        }
    }

    /// model-signing's key hint: the hex SHA-256 of the key's SubjectPublicKeyInfo PEM, 64-column
    /// base64 and `\n` line ends, as `cryptography` writes it.
    pub fn hint(&self) -> String {
        use p256::pkcs8::{EncodePublicKey as _, LineEnding};
        let pem = match self {
            EcPublicKey::P256(k) => k.to_public_key_pem(LineEnding::LF),
            EcPublicKey::P384(k) => k.to_public_key_pem(LineEnding::LF),
            EcPublicKey::P521(k) => k.to_public_key_pem(LineEnding::LF),
        }
        .expect("a valid point encodes");
        hex::encode(Sha256::digest(pem.as_bytes()))
    }

    /// Whether `der` is this key's ECDSA signature (ASN.1 DER) over `message`.
    pub fn verify(&self, message: &[u8], der: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        match self {
            EcPublicKey::P256(k) => p256::ecdsa::DerSignature::try_from(der)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            EcPublicKey::P384(k) => p384::ecdsa::DerSignature::try_from(der)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            EcPublicKey::P521(k) => p521::ecdsa::DerSignature::try_from(der)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
        }
    }
}

/// What a verified model-signing bundle said, and what was checked.
#[derive(Debug, Clone)]
pub struct BundleReport {
    /// The statement's subject name (the model directory's or file's name when signed).
    pub model_name: String,
    /// The subject's SHA-256: over every resource digest, in the statement's order.
    pub root_sha256: String,
    /// `files` or `shards`.
    pub method: String,
    /// The curve of the key that signed it.
    pub curve: &'static str,
    /// Files of the model checked.
    pub files: usize,
    /// Resources (files or shards) checked.
    pub resources: usize,
    /// Bytes hashed.
    pub bytes: u64,
}

/// How the statement says the model was serialized.
struct Serialization {
    shard_size: Option<u64>,
    allow_symlinks: bool,
    ignore: Vec<PathBuf>,
}

/// Verifies the model at `model` (a directory or one file) against the model-signing bundle at
/// `bundle` and the signer's public `key`.
pub fn verify_model_signing(
    model: &Path,
    bundle: &Path,
    key: &EcPublicKey,
) -> Result<BundleReport, BundleError> {
    let statement = verified_statement(bundle, key)?;
    let (model_name, root, resources) = statement_resources(&statement)?;
    let ser = serialization(&statement["predicate"]["serialization"])?;
    let algorithm = match ser.shard_size {
        None => "sha256".to_string(),
        Some(n) => format!("sha256-sharded-{n}"),
    };
    let mut expected = BTreeMap::new();
    for (name, alg, digest) in resources {
        if alg != algorithm {
            return Err(malformed(format!(
                "resource {name:?} has algorithm {alg:?}, the serialization says {algorithm:?}"
            )));
        }
        if expected.insert(name.clone(), digest).is_some() {
            return Err(malformed(format!("resource {name:?} is listed twice")));
        }
    }
    let files = model_files(model, bundle, &ser)?;
    let items = work_items(model, &files, ser.shard_size)?;
    let digests: Vec<Result<(String, String), BundleError>> = items
        .par_iter()
        .map(|item| Ok((item.name.clone(), hex::encode(hash_range(item)?))))
        .collect();
    let mut problems = Vec::new();
    let mut seen = 0usize;
    for d in digests {
        let (name, actual) = d?;
        match expected.get(&name) {
            None => problems.push(format!("{name} is not in the bundle")),
            Some(want) if *want != actual => {
                problems.push(format!("{name}: sha256 {actual}, the bundle says {want}"))
            }
            Some(_) => seen += 1,
        }
    }
    if seen < expected.len() {
        let present: std::collections::HashSet<&str> =
            items.iter().map(|i| i.name.as_str()).collect();
        problems.extend(
            expected
                .keys()
                .filter(|n| !present.contains(n.as_str()))
                .map(|n| format!("{n} is in the bundle but not in the model")),
        );
    }
    if !problems.is_empty() {
        let more = problems.len().saturating_sub(LISTED_DIFFERENCES);
        let mut what = problems[..problems.len().min(LISTED_DIFFERENCES)].join("; ");
        if more > 0 {
            what.push_str(&format!("; and {more} more"));
        }
        return Err(BundleError::Mismatch(format!(
            "{}: {what}",
            model.display()
        )));
    }
    Ok(BundleReport {
        model_name,
        root_sha256: root,
        method: if ser.shard_size.is_some() {
            "shards"
        } else {
            "files"
        }
        .into(),
        curve: key.curve(),
        files: files.len(),
        resources: items.len(),
        bytes: items.iter().map(|i| i.end - i.start).sum(),
    })
}

/// Reads the bundle, checks its shape, key hint and signature, and returns the statement.
fn verified_statement(bundle: &Path, key: &EcPublicKey) -> Result<Value, BundleError> {
    let io = |source| BundleError::Io {
        path: bundle.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(bundle)
        .and_then(|f| f.take(MAX_BUNDLE_FILE + 1).read_to_end(&mut bytes))
        .map_err(io)?;
    if bytes.len() as u64 > MAX_BUNDLE_FILE {
        return Err(malformed(format!("larger than {MAX_BUNDLE_FILE} bytes")));
    }
    statement_of_bundle(&bytes, key)
}

/// [`verified_statement`] of bundle bytes already read.
fn statement_of_bundle(bytes: &[u8], key: &EcPublicKey) -> Result<Value, BundleError> {
    let b: Value = serde_json::from_slice(bytes).map_err(|e| malformed(format!("JSON: {e}")))?;
    let media = b["mediaType"].as_str().unwrap_or_default();
    if !media.starts_with("application/vnd.dev.sigstore.bundle") {
        return Err(malformed(format!(
            "mediaType {media:?} is not a Sigstore bundle"
        )));
    }
    let material = &b["verificationMaterial"];
    if ["certificate", "x509CertificateChain"]
        .iter()
        .any(|k| !material[*k].is_null())
    {
        return Err(BundleError::Unsupported(
            "signed with a certificate (Sigstore or PKI); tensorseal reads key-signed bundles \
             (model_signing sign key) only"
                .into(),
        ));
    }
    match material["publicKey"]["hint"].as_str() {
        Some(hint) if !hint.is_empty() && hint != key.hint() => {
            return Err(BundleError::Untrusted(format!(
                "the bundle's key hint {hint} is not the key's ({})",
                key.hint()
            )));
        }
        _ => {}
    }
    let env = &b["dsseEnvelope"];
    if env.is_null() {
        return Err(BundleError::Unsupported(
            "no DSSE envelope (a message-signature bundle)".into(),
        ));
    }
    if env["payloadType"] != PAYLOAD_TYPE {
        return Err(malformed(format!(
            "payloadType {} is not {PAYLOAD_TYPE}",
            env["payloadType"]
        )));
    }
    let payload = env["payload"]
        .as_str()
        .and_then(|p| Base64::decode_vec(p).ok())
        .ok_or_else(|| malformed("the envelope's payload is not base64"))?;
    let sigs = env["signatures"]
        .as_array()
        .ok_or_else(|| malformed("the envelope has no signatures"))?;
    // model-signing writes and checks exactly one signature.
    let [sig] = sigs.as_slice() else {
        return Err(malformed(format!(
            "{} signatures; model-signing bundles carry one",
            sigs.len()
        )));
    };
    let der = sig["sig"]
        .as_str()
        .and_then(|s| Base64::decode_vec(s).ok())
        .ok_or_else(|| malformed("the signature is not base64"))?;
    if !key.verify(&pae(PAYLOAD_TYPE, &payload), &der) {
        return Err(BundleError::Untrusted(format!(
            "the ECDSA ({}) signature over the envelope does not verify with the key",
            key.curve()
        )));
    }
    let statement: Value =
        serde_json::from_slice(&payload).map_err(|e| malformed(format!("statement: {e}")))?;
    if statement["_type"] != STATEMENT_TYPE {
        return Err(malformed("the payload is not an in-toto Statement v1"));
    }
    if statement["predicateType"] != MODEL_SIGNING_PREDICATE {
        return Err(BundleError::Unsupported(format!(
            "predicateType {} (this reader knows {MODEL_SIGNING_PREDICATE})",
            statement["predicateType"]
        )));
    }
    Ok(statement)
}

/// The subject name, the root digest (checked against the resources) and the resources as
/// `(name, algorithm, hex digest)`.
#[allow(clippy::type_complexity)]
fn statement_resources(
    st: &Value,
) -> Result<(String, String, Vec<(String, String, String)>), BundleError> {
    let subjects = st["subject"]
        .as_array()
        .ok_or_else(|| malformed("no subject"))?;
    let [subject] = subjects.as_slice() else {
        return Err(malformed(format!(
            "{} subjects; model-signing statements have one",
            subjects.len()
        )));
    };
    let name = subject["name"].as_str().unwrap_or_default().to_string();
    let root = subject["digest"]["sha256"]
        .as_str()
        .ok_or_else(|| malformed("the subject has no sha256 digest"))?
        .to_string();
    let list = st["predicate"]["resources"]
        .as_array()
        .ok_or_else(|| malformed("the predicate has no resources"))?;
    if list.len() > MAX_RESOURCES {
        return Err(malformed(format!(
            "{} resources, more than {MAX_RESOURCES}",
            list.len()
        )));
    }
    let mut hasher = Sha256::new();
    let mut out = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let field = |k: &str| {
            r[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| malformed(format!("resource {i} has no {k}")))
        };
        let (n, alg, digest) = (field("name")?, field("algorithm")?, field("digest")?);
        let raw = hex::decode(&digest)
            .ok()
            .filter(|d| d.len() == 32)
            .ok_or_else(|| malformed(format!("resource {n:?}: digest is not 32 hex bytes")))?;
        hasher.update(&raw);
        out.push((n, alg, digest.to_ascii_lowercase()));
    }
    let computed = hex::encode(hasher.finalize());
    if !computed.eq_ignore_ascii_case(&root) {
        return Err(BundleError::Untrusted(format!(
            "the subject digest {root} is not the digest of the resources listed ({computed})"
        )));
    }
    Ok((name, computed, out))
}

fn serialization(s: &Value) -> Result<Serialization, BundleError> {
    let hash = s["hash_type"].as_str().unwrap_or_default();
    if hash != "sha256" {
        return Err(BundleError::Unsupported(format!(
            "hash_type {hash:?} (tensorseal checks sha256)"
        )));
    }
    let shard_size = match s["method"].as_str() {
        Some("files") => None,
        Some("shards") => {
            // Python writes it through protobuf's Struct, so an integer arrives as 1000.0.
            let n = s["shard_size"]
                .as_f64()
                .filter(|n| n.fract() == 0.0 && *n >= MIN_SHARD_SIZE as f64 && *n < 2f64.powi(53))
                .ok_or_else(|| {
                    malformed(format!(
                        "shard_size {} is not an integer of at least {MIN_SHARD_SIZE}",
                        s["shard_size"]
                    ))
                })?;
            Some(n as u64)
        }
        other => {
            return Err(BundleError::Unsupported(format!(
                "serialization method {other:?} (files and shards are known)"
            )));
        }
    };
    let allow_symlinks = match &s["allow_symlinks"] {
        Value::Bool(b) => *b,
        // Older model-signing wrote the string.
        Value::String(t) if t == "false" => false,
        Value::String(t) if t == "true" => true,
        other => {
            return Err(malformed(format!(
                "allow_symlinks {other} is not a boolean"
            )));
        }
    };
    let ignore = match &s["ignore_paths"] {
        Value::Null => Vec::new(),
        Value::Array(a) => a
            .iter()
            .map(|p| p.as_str().map(PathBuf::from))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| malformed("ignore_paths holds a non-string"))?,
        _ => return Err(malformed("ignore_paths is not a list")),
    };
    Ok(Serialization {
        shard_size,
        allow_symlinks,
        ignore,
    })
}

/// The model's files as `(name in the statement, path)`, sorted by name: every regular file
/// under `model` except ignored paths and the bundle itself, or `model` itself named `.`.
fn model_files(
    model: &Path,
    bundle: &Path,
    ser: &Serialization,
) -> Result<Vec<(String, PathBuf)>, BundleError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { path, source }
    };
    let meta = std::fs::symlink_metadata(model).map_err(io(model))?;
    if !meta.is_dir() {
        return Ok(vec![(".".into(), model.to_path_buf())]);
    }
    let bundle = std::fs::canonicalize(bundle).ok();
    let mut out = Vec::new();
    let mut stack = vec![(model.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(malformed(format!(
                "{}: directories nested more than {MAX_DEPTH} deep",
                dir.display()
            )));
        }
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let rel = path.strip_prefix(model).expect("under the model");
            if ser.ignore.iter().any(|p| rel.starts_with(p)) {
                continue;
            }
            let mut ty = entry.file_type().map_err(io(&path))?;
            if ty.is_symlink() {
                if !ser.allow_symlinks {
                    return Err(BundleError::Mismatch(format!(
                        "{}: a symbolic link, and the bundle's serialization does not allow them",
                        path.display()
                    )));
                }
                ty = std::fs::metadata(&path).map_err(io(&path))?.file_type();
            }
            if ty.is_dir() {
                stack.push((path, depth + 1));
            } else if ty.is_file() {
                if bundle.is_some() && std::fs::canonicalize(&path).ok() == bundle {
                    continue;
                }
                let name = statement_name(rel)
                    .ok_or_else(|| malformed(format!("{}: not a UTF-8 path", path.display())))?;
                out.push((name, path));
                if out.len() > MAX_RESOURCES {
                    return Err(malformed(format!(
                        "{}: more than {MAX_RESOURCES} files",
                        model.display()
                    )));
                }
            } else {
                return Err(BundleError::Mismatch(format!(
                    "{}: not a regular file or directory",
                    path.display()
                )));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A relative path as model-signing names it: components joined by `/`.
fn statement_name(rel: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    Some(parts?.join("/"))
}

/// One digest to compute: a whole file, or one shard of it.
struct WorkItem {
    name: String,
    path: PathBuf,
    start: u64,
    end: u64,
}

fn work_items(
    model: &Path,
    files: &[(String, PathBuf)],
    shard_size: Option<u64>,
) -> Result<Vec<WorkItem>, BundleError> {
    let mut items = Vec::with_capacity(files.len());
    for (name, path) in files {
        let len = std::fs::metadata(path)
            .map_err(|source| BundleError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        match shard_size {
            None => items.push(WorkItem {
                name: name.clone(),
                path: path.clone(),
                start: 0,
                end: len,
            }),
            Some(step) => {
                // model-signing names shards `path:start:end`; an empty file has one, `:0:0`.
                let mut start = 0;
                loop {
                    let end = len.min(start + step);
                    items.push(WorkItem {
                        name: format!("{name}:{start}:{end}"),
                        path: path.clone(),
                        start,
                        end,
                    });
                    if items.len() > MAX_RESOURCES {
                        return Err(malformed(format!(
                            "{}: more than {MAX_RESOURCES} shards",
                            model.display()
                        )));
                    }
                    start = end;
                    if start >= len {
                        break;
                    }
                }
            }
        }
    }
    Ok(items)
}

/// SHA-256 of bytes `start..end` of the item's file; a file that is shorter now is an error.
fn hash_range(item: &WorkItem) -> Result<[u8; 32], BundleError> {
    let io = |source| BundleError::Io {
        path: item.path.clone(),
        source,
    };
    let mut f = File::open(&item.path).map_err(io)?;
    f.seek(SeekFrom::Start(item.start)).map_err(io)?;
    let want = item.end - item.start;
    let (digest, n) = crate::file_digest::sha256_to_end(f.take(want)).map_err(io)?;
    if n < want {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("shorter than {} bytes while hashing", item.end),
        )));
    }
    Ok(digest)
}

/// Runs every parsing stage on arbitrary bytes, for the `model_signing_bundle` fuzz target: as a
/// bundle (with a fixed key, so the signature fails unless forged), and as a statement, whose
/// stages past the signature check the fuzzer could not reach otherwise. Never panics.
#[doc(hidden)]
pub fn fuzz_bundle(data: &[u8]) {
    let key = EcPublicKey::P256(
        *p256::ecdsa::SigningKey::from_slice(&[0x42; 32])
            .expect("a valid scalar")
            .verifying_key(),
    );
    let _ = statement_of_bundle(data, &key);
    if let Ok(st) = serde_json::from_slice::<Value>(data) {
        let _ = statement_resources(&st);
        let _ = serialization(&st["predicate"]["serialization"]);
    }
}
