//! Attestations: an in-toto Statement v1 about a `.tseal` file, in a DSSE envelope signed with
//! a tensorseal Ed25519 key (spec/ATTESTATION.md).

use crate::error::AttestError;
use base64ct::{Base64, Encoding as _};
use serde_json::{Value, json};
use std::io::Read as _;
use std::path::Path;
use tensorseal::{Checkpoint, Limits, PublicKey, SecretKey, TrustPolicy};

/// DSSE `payloadType` of in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Our predicate: a tensorseal checkpoint and how it was made.
pub const PREDICATE_TYPE: &str = "https://tensorseal.dev/attestation/checkpoint/v1";
/// Largest envelope file read, in bytes.
const MAX_ENVELOPE_FILE: u64 = 16 << 20;

/// The DSSE v1 pre-authentication encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP
/// body`, lengths in ASCII decimal. This is what the signatures sign.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    m.extend_from_slice(body);
    m
}

fn file_sha256(path: &Path) -> Result<String, AttestError> {
    let (digest, _) = crate::file_digest::sha256_to_end(std::fs::File::open(path)?)?;
    Ok(hex::encode(digest))
}

/// Facts about how the file was made, recorded in the predicate (all optional).
#[derive(Debug, Clone, Default)]
pub struct AttestationInput {
    /// Source format (`torch-zip`, `safetensors`, ...), from the converter.
    pub source_format: Option<String>,
    /// SHA-256 of the source file (hex).
    pub source_sha256: Option<String>,
    /// Where the source came from (path or URL).
    pub source_uri: Option<String>,
    /// The scan verdict of the source, as `tensorseal scan` names it (`safe`,
    /// `unknown-objects`): what the converter's pickle VM concluded on the way.
    pub scan_verdict: Option<String>,
    /// The classes recorded as inert objects (with `allow_objects`), sorted.
    pub inert_objects: Vec<String>,
    /// Conversion options, as JSON.
    pub options: Value,
}

/// A signed attestation: the envelope as one JSON line.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The DSSE envelope, serialized on one line (no trailing newline).
    pub envelope: String,
    /// The statement inside it.
    pub statement: Value,
}

/// Attests `file`: checks its integrity (every digest), then signs a statement whose subject is
/// the file (name, SHA-256, and the manifest SHA-256) and whose predicate records `input` and the
/// file's signed metadata.
pub fn attest(
    file: &Path,
    key: &SecretKey,
    input: &AttestationInput,
) -> Result<Attestation, AttestError> {
    let (ckpt, report) =
        Checkpoint::open_verified(file, &TrustPolicy::integrity_only(), &Limits::default())
            .map_err(|e| AttestError::Malformed(format!("{}: {e}", file.display())))?;
    let metadata = &ckpt.manifest().metadata;
    let name = file
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let manifest_sha256 = hex::encode(report.manifest_sha256);
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{
            "name": name,
            "digest": {"sha256": file_sha256(file)?, "tensorsealManifestSha256": manifest_sha256},
        }],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "manifest_sha256": manifest_sha256,
            "file_length": report.file_length,
            "converter": {"name": "tensorseal", "version": env!("CARGO_PKG_VERSION")},
            "source": {
                "format": input.source_format,
                "sha256": input.source_sha256,
                "uri": input.source_uri,
                "scan": input.scan_verdict.as_ref().map(|v| json!({
                    "verdict": v,
                    "inert_objects": input.inert_objects,
                })),
            },
            "options": input.options,
            "metadata": metadata,
            "run_id": metadata.get("run_id"),
            "step": metadata.get("step"),
            "file_signers": report.signers.iter().map(|s| s.key_id.clone()).collect::<Vec<_>>(),
        },
    });
    let body = serde_json::to_vec(&statement).expect("JSON values serialize");
    let sig = key.sign_message(&pae(PAYLOAD_TYPE, &body));
    let envelope = json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": Base64::encode_string(&body),
        "signatures": [{"keyid": key.public_key().key_id(), "sig": Base64::encode_string(&sig)}],
    });
    Ok(Attestation {
        envelope: serde_json::to_string(&envelope).expect("JSON values serialize"),
        statement,
    })
}

/// Checks every envelope (one per non-empty line) of the attestation file at `path` against
/// `trusted` keys and `file`: a signature by a trusted key over the exact PAE, an in-toto v1
/// statement of our predicate type, and a subject whose SHA-256 and manifest SHA-256 are the
/// file's. Returns the statements.
pub fn check_attestation(
    path: &Path,
    file: &Path,
    trusted: &[PublicKey],
) -> Result<Vec<Value>, AttestError> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_ENVELOPE_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_ENVELOPE_FILE {
        return Err(AttestError::Malformed(format!(
            "larger than {MAX_ENVELOPE_FILE} bytes"
        )));
    }
    let file_sha = file_sha256(file)?;
    let (_, report) =
        Checkpoint::open_verified(file, &TrustPolicy::integrity_only(), &Limits::default())
            .map_err(|e| AttestError::SubjectMismatch(format!("{}: {e}", file.display())))?;
    let manifest_sha = hex::encode(report.manifest_sha256);
    let mut statements = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = |what: String| format!("envelope on line {}: {what}", i + 1);
        let malformed = |what: &str| AttestError::Malformed(at(what.to_string()));
        let env: Value = serde_json::from_str(line).map_err(|e| malformed(&e.to_string()))?;
        if env["payloadType"] != PAYLOAD_TYPE {
            return Err(malformed("payloadType is not application/vnd.in-toto+json"));
        }
        let body = env["payload"]
            .as_str()
            .and_then(|p| Base64::decode_vec(p).ok())
            .ok_or_else(|| malformed("payload is not base64"))?;
        let message = pae(PAYLOAD_TYPE, &body);
        let sigs = env["signatures"]
            .as_array()
            .ok_or_else(|| malformed("no signatures"))?;
        let signed = sigs.iter().any(|s| {
            let sig: Option<[u8; 64]> = s["sig"]
                .as_str()
                .and_then(|b| Base64::decode_vec(b).ok())
                .and_then(|b| b.try_into().ok());
            sig.is_some_and(|sig| trusted.iter().any(|k| k.verify_message(&message, &sig)))
        });
        if !signed {
            let ids: Vec<&str> = sigs.iter().filter_map(|s| s["keyid"].as_str()).collect();
            return Err(AttestError::Untrusted(at(format!(
                "no valid signature by a trusted key (signatures claim key ids: {})",
                if ids.is_empty() {
                    "none".into()
                } else {
                    ids.join(", ")
                }
            ))));
        }
        let st: Value = serde_json::from_slice(&body).map_err(|e| malformed(&e.to_string()))?;
        if st["_type"] != STATEMENT_TYPE || st["predicateType"] != PREDICATE_TYPE {
            return Err(malformed(
                "not an in-toto v1 statement of the tensorseal predicate",
            ));
        }
        let matches = st["subject"].as_array().is_some_and(|subjects| {
            subjects.iter().any(|s| {
                s["digest"]["sha256"] == file_sha.as_str()
                    && s["digest"]["tensorsealManifestSha256"] == manifest_sha.as_str()
            })
        });
        if !matches {
            return Err(AttestError::SubjectMismatch(at(format!(
                "no subject has the file's sha256 {file_sha} and manifest sha256 {manifest_sha}"
            ))));
        }
        statements.push(st);
    }
    if statements.is_empty() {
        return Err(AttestError::Malformed("no envelope in the file".into()));
    }
    Ok(statements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // DSSE protocol.md test vector.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }
}
