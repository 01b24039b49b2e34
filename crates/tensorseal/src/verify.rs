//! Verification (spec §7): signatures against trusted keys, metadata expectations, and every
//! digest, hashed in parallel across blobs and chunks.

use crate::codec;
use crate::error::VerifyError;
use crate::keys::PublicKey;
use crate::layout::{self, SignatureEntry};
use crate::limits::{CHUNK, Limits};
use crate::manifest::{self, Digest, Manifest};
use crate::mmap::{self, FileBytes, MapMode};
use crate::policy::{self, KeyRefusal, KeyRule};
use crate::reader::{self, Checkpoint, Envelope};
use crate::tree::BlobId;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::Mutex;

/// Whom to trust and what to require of a file.
///
/// # Example
/// ```
/// # let key = tensorseal::SecretKey::from_seed(&[1; 32]).public_key();
/// use tensorseal::TrustPolicy;
/// let policy = TrustPolicy::trusting(vec![key]).expect("run_id", "run-42").min_step(1000);
/// ```
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    keys: Vec<PublicKey>,
    threshold: usize,
    authenticate: bool,
    expected: BTreeMap<String, String>,
    min_step: Option<u64>,
    /// Per-key rules by key id (see [`KeyRule`]); keys without one are trusted unconditionally.
    pub(crate) rules: BTreeMap<String, KeyRule>,
    /// Revoked key ids: their signatures never count.
    pub(crate) revoked: BTreeSet<String>,
    /// The verification time in Unix seconds; `None` reads the clock.
    now: Option<u64>,
}

impl TrustPolicy {
    /// Requires a valid signature from at least one of `keys`.
    pub fn trusting(keys: Vec<PublicKey>) -> TrustPolicy {
        TrustPolicy {
            keys,
            threshold: 1,
            authenticate: true,
            expected: BTreeMap::new(),
            min_step: None,
            rules: BTreeMap::new(),
            revoked: BTreeSet::new(),
            now: None,
        }
    }

    /// Checks integrity only: structure, digests and that every signature present is valid for
    /// its own key, but not who signed. Detects corruption, not tampering.
    pub fn integrity_only() -> TrustPolicy {
        TrustPolicy {
            keys: Vec::new(),
            threshold: 0,
            authenticate: false,
            expected: BTreeMap::new(),
            min_step: None,
            rules: BTreeMap::new(),
            revoked: BTreeSet::new(),
            now: None,
        }
    }

    /// Requires signatures from at least `n` distinct trusted keys (default 1).
    pub fn threshold(mut self, n: usize) -> TrustPolicy {
        self.threshold = n;
        self
    }

    /// Requires the signed metadata `key` to equal `value`.
    pub fn expect(mut self, key: impl Into<String>, value: impl Into<String>) -> TrustPolicy {
        self.expected.insert(key.into(), value.into());
        self
    }

    /// Requires the signed `step` metadata to be at least `min` (refuses rollbacks).
    pub fn min_step(mut self, min: u64) -> TrustPolicy {
        self.min_step = Some(min);
        self
    }

    /// Attaches `rule` (name, validity window, allowed `run_id`s) to a trusted key.
    pub fn with_rule(mut self, key: &PublicKey, rule: KeyRule) -> TrustPolicy {
        self.rules.insert(key.key_id(), rule);
        self
    }

    /// Refuses signatures by the key with this id (64 hex digits), trusted or not.
    pub fn revoke(mut self, key_id: impl Into<String>) -> TrustPolicy {
        self.revoked.insert(key_id.into());
        self
    }

    /// Evaluates validity windows at `unix_seconds` instead of the current time.
    pub fn at(mut self, unix_seconds: u64) -> TrustPolicy {
        self.now = Some(unix_seconds);
        self
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The display name a policy gives `key`, if any.
    pub fn key_name(&self, key: &PublicKey) -> Option<&str> {
        self.rules.get(&key.key_id()).and_then(KeyRule::name)
    }

    /// Whether this policy checks who signed.
    pub fn authenticates(&self) -> bool {
        self.authenticate
    }
}

/// A signature and whether its key is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerStatus {
    /// Key id (spec §6).
    pub key_id: String,
    /// Whether the signature counts: the key is in the trust set and no policy rule refused it.
    pub trusted: bool,
    /// The key's name in the policy file, if it has one.
    pub name: Option<String>,
    /// Why a listed (or revoked) key's signature did not count, if a rule refused it.
    pub refused: Option<KeyRefusal>,
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// SHA-256 of the manifest.
    pub manifest_sha256: Digest,
    /// File length in bytes.
    pub file_length: u64,
    /// Every signature, in file order; all of them are valid.
    pub signers: Vec<SignerStatus>,
    /// Whether authenticity was checked (false in integrity-only mode).
    pub authenticated: bool,
    /// Number of blobs checked.
    pub blobs: usize,
    /// Number of digest chunks checked.
    pub chunks: usize,
    /// Bytes hashed (stored plus decoded).
    pub bytes_hashed: u64,
}

/// How many verified signatures [`strictly_valid`] remembers; the set is emptied when full.
const VERIFIED_CACHED: usize = 4096;

/// Whether `signature` is a strictly valid Ed25519 signature of `message` by `key`.
///
/// The answer is a function of exactly these bytes, so the ones that verified are remembered
/// for the life of the process, by all three in full: a file reopened with the same footer,
/// signature block and manifest bytes (the message holds the manifest's SHA-256, computed from
/// the bytes read on each open, and the content length) skips the curve arithmetic, about 40 µs
/// of a lazy open. Anything else, and every signature that failed, is checked again. Trust, key
/// rules and expiry are decided after this, on every open.
fn strictly_valid(key: &PublicKey, message: &[u8; 73], signature: &[u8; 64]) -> bool {
    type Entry = ([u8; 32], [u8; 64], [u8; 73]);
    static VERIFIED: Mutex<Option<HashSet<Entry>>> = Mutex::new(None);
    let entry = (key.to_bytes(), *signature, *message);
    let seen = VERIFIED
        .lock()
        .is_ok_and(|set| set.as_ref().is_some_and(|s| s.contains(&entry)));
    if seen {
        return true;
    }
    if !key.verify_strict(message, signature) {
        return false;
    }
    if let Ok(mut set) = VERIFIED.lock() {
        let set = set.get_or_insert_with(HashSet::new);
        if set.len() >= VERIFIED_CACHED {
            set.clear();
        }
        set.insert(entry);
    }
    true
}

/// Checks every signature against its own key, then counts trusted ones (spec §6).
pub(crate) fn check_signatures(
    signatures: &[SignatureEntry],
    content_length: u64,
    manifest_sha256: &Digest,
    policy: &TrustPolicy,
) -> Result<Vec<SignerStatus>, VerifyError> {
    let message = layout::signed_message(content_length, manifest_sha256);
    let now = policy.now.unwrap_or_else(policy::now_unix);
    let mut signers = Vec::with_capacity(signatures.len());
    for (index, s) in signatures.iter().enumerate() {
        if !strictly_valid(&s.key, &message, &s.signature) {
            return Err(VerifyError::BadSignature {
                index,
                key_id: s.key.short_id(),
            });
        }
        let key_id = s.key.key_id();
        let listed = policy.keys.contains(&s.key);
        let refused = if policy.authenticate && (listed || policy.revoked.contains(&key_id)) {
            policy::key_refusal(policy, &key_id, now)
        } else {
            None
        };
        signers.push(SignerStatus {
            name: policy.rules.get(&key_id).and_then(|r| r.name.clone()),
            trusted: listed && refused.is_none(),
            key_id,
            refused,
        });
    }
    if policy.authenticate {
        let trusted = signers.iter().filter(|s| s.trusted).count();
        if trusted < policy.threshold.max(1) {
            if let Some(e) = refusal_error(&signers, trusted, policy.threshold.max(1)) {
                return Err(e);
            }
            return Err(VerifyError::Untrusted {
                signers: signers.iter().map(|s| s.key_id[..16].to_string()).collect(),
                trusted,
                threshold: policy.threshold.max(1),
            });
        }
    }
    Ok(signers)
}

/// The error naming the first refused signer, when refusals left too few trusted signatures.
fn refusal_error(
    signers: &[SignerStatus],
    trusted: usize,
    threshold: usize,
) -> Option<VerifyError> {
    let s = signers.iter().find(|s| s.refused.is_some())?;
    Some(VerifyError::KeyRefused {
        key_id: s.key_id[..16].to_string(),
        name: s.name.clone(),
        reason: s.refused.clone().expect("found by refused.is_some()"),
        trusted,
        threshold,
    })
}

/// Checks metadata expectations and the per-key `run_id` rules against the authenticated
/// manifest, marking signers whose key may not sign this run as untrusted.
pub(crate) fn check_metadata(
    manifest: &Manifest,
    policy: &TrustPolicy,
    signers: &mut [SignerStatus],
) -> Result<(), VerifyError> {
    if policy.authenticate {
        let run_id = manifest.metadata.get("run_id");
        let mut changed = false;
        for s in signers.iter_mut().filter(|s| s.trusted) {
            if let Some(r) = policy::run_id_refusal(policy, &s.key_id, run_id) {
                s.trusted = false;
                s.refused = Some(r);
                changed = true;
            }
        }
        let trusted = signers.iter().filter(|s| s.trusted).count();
        let threshold = policy.threshold.max(1);
        if changed
            && trusted < threshold
            && let Some(e) = refusal_error(signers, trusted, threshold)
        {
            return Err(e);
        }
    }
    for (key, expected) in &policy.expected {
        let found = manifest.metadata.get(key);
        if found != Some(expected) {
            return Err(VerifyError::MetadataMismatch {
                key: key.clone(),
                expected: expected.clone(),
                found: found.cloned(),
            });
        }
    }
    if let Some(min) = policy.min_step {
        let step = manifest
            .metadata
            .get("step")
            .and_then(|s| manifest::parse_step(s))
            .ok_or(VerifyError::StepMissing)?;
        if step < min {
            return Err(VerifyError::StepTooOld { found: step, min });
        }
    }
    Ok(())
}

/// One unit of digest work: a stored chunk or frame of one blob.
struct ChunkJob {
    blob: usize,
    chunk: usize,
    offset: u64,
    len: u64,
}

/// Verifies every stored digest and, for zstd blobs, every decoded chunk of `blobs` (ascending
/// blob indices). Chunks of all blobs are hashed in parallel; the error reported is the first
/// failing chunk in file order. Returns the number of chunks and of bytes hashed.
///
/// Only the ranges of `blobs` are read (through [`FileBytes::range`]), never the whole file: a
/// [`MappedLoader`](crate::MappedLoader) verifies blobs while others are handed out for writing.
pub(crate) fn check_blobs(
    manifest: &Manifest,
    bytes: &FileBytes,
    blobs: &[BlobId],
) -> Result<(usize, u64), VerifyError> {
    let jobs: Vec<ChunkJob> = blobs
        .iter()
        .flat_map(|&blob| {
            manifest.blobs[blob]
                .stored_chunks()
                .into_iter()
                .enumerate()
                .map(move |(chunk, (offset, len))| ChunkJob {
                    blob,
                    chunk,
                    offset,
                    len,
                })
        })
        .collect();
    let failure = jobs.par_iter().find_map_first(|job| {
        let entry = &manifest.blobs[job.blob];
        let stored = bytes.range(job.offset as usize..(job.offset + job.len) as usize);
        if codec::sha256(stored) != entry.sha256[job.chunk] {
            return Some(Err(job));
        }
        if let Some(c) = &entry.codec {
            let expected = CHUNK.min(c.raw_length - job.chunk as u64 * CHUNK) as usize;
            return match c.decode_frame(stored, expected) {
                Ok(raw) if codec::sha256(&raw) == c.raw_sha256[job.chunk] => None,
                Ok(_) => Some(Err(job)),
                Err(what) => Some(Ok((job, what))),
            };
        }
        None
    });
    match failure {
        None => {}
        Some(Err(job)) => {
            return Err(VerifyError::DigestMismatch {
                blob: job.blob,
                chunk: job.chunk,
                offset: job.offset,
                tensor: reader::tensor_path_of(&manifest.root, job.blob),
            });
        }
        Some(Ok((job, what))) => {
            return Err(VerifyError::Malformed(crate::ReadError::Decode {
                blob: job.blob,
                chunk: job.chunk,
                offset: job.offset,
                what,
            }));
        }
    }
    let hashed = blobs
        .iter()
        .map(|&blob| {
            let b = &manifest.blobs[blob];
            b.length + b.codec.as_ref().map_or(0, |c| c.raw_length)
        })
        .sum();
    Ok((jobs.len(), hashed))
}

/// [`check_blobs`] of every blob, reading the file in order.
fn check_all_blobs(ckpt: &Checkpoint) -> Result<(usize, u64), VerifyError> {
    mmap::advise_sequential(ckpt.bytes());
    let all: Vec<BlobId> = (0..ckpt.manifest().blobs.len()).collect();
    check_blobs(ckpt.manifest(), ckpt.bytes(), &all)
}

impl Checkpoint {
    /// Verifies an opened file under `policy`: signatures, metadata expectations, every digest.
    pub fn verify(&self, policy: &TrustPolicy) -> Result<VerifyReport, VerifyError> {
        let footer = self.footer();
        let mut signers = check_signatures(
            self.signatures(),
            footer.content_length(),
            &footer.manifest_sha256,
            policy,
        )?;
        check_metadata(self.manifest(), policy, &mut signers)?;
        let (chunks, bytes_hashed) = check_all_blobs(self)?;
        Ok(VerifyReport {
            manifest_sha256: footer.manifest_sha256,
            file_length: self.file_length(),
            signers,
            authenticated: policy.authenticate,
            blobs: self.manifest().blobs.len(),
            chunks,
            bytes_hashed,
        })
    }

    /// Opens and verifies a file in the order of spec §7: when `policy` names keys, the manifest
    /// is parsed only after a trusted signature over it has been checked, so unauthenticated
    /// manifests never reach the parser.
    pub fn open_verified(
        path: &Path,
        policy: &TrustPolicy,
        limits: &Limits,
    ) -> Result<(Checkpoint, VerifyReport), VerifyError> {
        Checkpoint::open_verified_with(path, policy, limits, MapMode::Map)
    }

    /// [`Checkpoint::open_verified`] choosing how the file's bytes are brought into memory.
    pub fn open_verified_with(
        path: &Path,
        policy: &TrustPolicy,
        limits: &Limits,
        mode: MapMode,
    ) -> Result<(Checkpoint, VerifyReport), VerifyError> {
        let env = Envelope::open(path, limits, mode)?;
        let footer = env.footer;
        let mut signers = check_signatures(
            &env.signatures,
            footer.content_length(),
            &footer.manifest_sha256,
            policy,
        )?;
        let ckpt = env.into_checkpoint(limits)?;
        check_metadata(ckpt.manifest(), policy, &mut signers)?;
        let (chunks, bytes_hashed) = check_all_blobs(&ckpt)?;
        let report = VerifyReport {
            manifest_sha256: footer.manifest_sha256,
            file_length: ckpt.file_length(),
            signers,
            authenticated: policy.authenticate,
            blobs: ckpt.manifest().blobs.len(),
            chunks,
            bytes_hashed,
        };
        Ok((ckpt, report))
    }
}

#[cfg(test)]
mod tests {
    use super::strictly_valid;
    use crate::keys::SecretKey;

    #[test]
    fn a_remembered_signature_counts_only_for_the_exact_key_message_and_signature() {
        let key = SecretKey::from_seed(&[9; 32]);
        let other = SecretKey::from_seed(&[10; 32]).public_key();
        let message = [7u8; 73];
        let signature = key.sign(&message);
        let public = key.public_key();
        assert!(strictly_valid(&public, &message, &signature));
        assert!(strictly_valid(&public, &message, &signature)); // remembered
        let mut changed = message;
        changed[72] ^= 1;
        assert!(!strictly_valid(&public, &changed, &signature));
        let mut forged = signature;
        forged[0] ^= 1;
        assert!(!strictly_valid(&public, &message, &forged));
        assert!(!strictly_valid(&other, &message, &signature));
        // A failure is never remembered as a success.
        assert!(!strictly_valid(&public, &changed, &signature));
    }
}
