//! Ed25519 keys in the PEM forms openssl reads and writes (spec §6).

use crate::error::KeyError;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::Write as _;
use std::path::Path;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// An Ed25519 private key. Its bytes are wiped from memory when it is dropped.
pub struct SecretKey(SigningKey);

/// An Ed25519 public key that signatures are checked against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl SecretKey {
    /// Generates a key from the operating system's random number generator.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(SecretKey(key))
    }

    /// Builds a key from its 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// Parses a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), as written by
    /// `openssl genpkey -algorithm ed25519` or [`SecretKey::to_pem`].
    pub fn from_pem(pem: &str) -> Result<SecretKey, KeyError> {
        SigningKey::from_pkcs8_pem(pem.trim_start())
            .map(SecretKey)
            .map_err(|e| KeyError::Parse {
                expected: "private key (PKCS#8)",
                detail: e.to_string(),
            })
    }

    /// Reads a PKCS#8 PEM private key file.
    pub fn read(path: &Path) -> Result<SecretKey, KeyError> {
        SecretKey::from_pem(&std::fs::read_to_string(path)?)
    }

    /// The PKCS#8 PEM encoding (version 1, the form `openssl genpkey` writes).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let mut bytes = ed25519_dalek::pkcs8::KeypairBytes::from(&self.0);
        // Version 2 (with the public key) is not read by every openssl build; the public key is
        // derived from the seed anyway.
        bytes.public_key = None;
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| KeyError::Parse {
                expected: "private key (PKCS#8)",
                detail: e.to_string(),
            })
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Signs `message` for another protocol than checkpoint signatures (audit-log checkpoints,
    /// DSSE attestations). The caller's message must start with a prefix of its own protocol,
    /// so that no such signature is ever also a valid checkpoint signature (those sign
    /// [`SIGNATURE_DOMAIN`](crate::SIGNATURE_DOMAIN)-prefixed messages).
    pub fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        self.sign(message)
    }

    /// Writes `PREFIX.key` (mode 0600) and `PREFIX.pub`, refusing to overwrite either.
    ///
    /// Each file is written to a temporary name and renamed, so an interrupted run never leaves
    /// a truncated key under the final name.
    pub fn write_pair(
        &self,
        prefix: &Path,
    ) -> Result<(std::path::PathBuf, std::path::PathBuf), KeyError> {
        let key_path = with_suffix(prefix, "key");
        let pub_path = with_suffix(prefix, "pub");
        for p in [&key_path, &pub_path] {
            if p.exists() {
                return Err(KeyError::Io(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{} already exists; refusing to overwrite a key",
                        p.display()
                    ),
                )));
            }
        }
        write_new(&key_path, self.to_pem()?.as_bytes(), 0o600)?;
        write_new(&pub_path, self.public_key().to_pem()?.as_bytes(), 0o644)?;
        Ok((key_path, pub_path))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key().short_id())
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    s.into()
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = crate::writer::temp_path(path)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        // A rename onto an existing name would replace it; `hard_link` fails instead.
        std::fs::hard_link(&tmp, path)?;
        std::fs::remove_file(&tmp)?;
        crate::writer::sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let _ = mode;
    Ok(result?)
}

/// How many parsed public keys [`PublicKey::from_any`] remembers; past this the memory is
/// emptied and starts again (a process trusting more keys than this only re-parses).
pub const PARSED_KEYS_MAX: usize = 64;

/// Parsed public keys by the exact bytes they were parsed from. Only successes are kept, so
/// the outcome for any input is the same with or without the cache.
static PARSED_KEYS: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashMap<Vec<u8>, PublicKey>>,
> = std::sync::OnceLock::new();

impl PublicKey {
    /// Parses a SubjectPublicKeyInfo PEM public key (`-----BEGIN PUBLIC KEY-----`), as written by
    /// `openssl pkey -pubout`. Weak (small-order) keys are refused.
    pub fn from_pem(pem: &str) -> Result<PublicKey, KeyError> {
        let key =
            VerifyingKey::from_public_key_pem(pem.trim_start()).map_err(|e| KeyError::Parse {
                expected: "public key (SubjectPublicKeyInfo)",
                detail: e.to_string(),
            })?;
        PublicKey::checked(key)
    }

    /// Parses a public key given as PEM, DER SubjectPublicKeyInfo, or the raw 32 bytes.
    ///
    /// Keys parsed once are remembered for the life of the process ([`PARSED_KEYS_MAX`] of
    /// them): a service that opens many checkpoints under the same trust set pays for the PEM
    /// decoding and the point decompression once, not on every open.
    pub fn from_any(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let cache = PARSED_KEYS.get_or_init(Default::default);
        if let Some(key) = cache.lock().ok().and_then(|c| c.get(bytes).copied()) {
            return Ok(key);
        }
        let key = PublicKey::parse_any(bytes)?;
        if let Ok(mut c) = cache.lock() {
            if c.len() >= PARSED_KEYS_MAX {
                c.clear();
            }
            c.insert(bytes.to_vec(), key);
        }
        Ok(key)
    }

    fn parse_any(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
            return PublicKey::from_bytes(&raw);
        }
        if bytes.len() == 44 && bytes[..12] == SPKI_PREFIX {
            let raw: [u8; 32] = bytes[12..].try_into().expect("44 - 12 = 32");
            return PublicKey::from_bytes(&raw);
        }
        match std::str::from_utf8(bytes) {
            Ok(pem) => PublicKey::from_pem(pem),
            Err(_) => Err(KeyError::Parse {
                expected: "public key (SubjectPublicKeyInfo)",
                detail: format!(
                    "{} bytes that are neither PEM, DER nor a raw 32-byte key",
                    bytes.len()
                ),
            }),
        }
    }

    /// Reads a public key file (PEM, DER or raw 32 bytes).
    pub fn read(path: &Path) -> Result<PublicKey, KeyError> {
        PublicKey::from_any(&std::fs::read(path)?)
    }

    /// Builds a key from its 32-byte RFC 8032 encoding. Invalid and weak keys are refused.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|e| KeyError::Parse {
            expected: "public key (SubjectPublicKeyInfo)",
            detail: e.to_string(),
        })?;
        PublicKey::checked(key)
    }

    fn checked(key: VerifyingKey) -> Result<PublicKey, KeyError> {
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        Ok(PublicKey(key))
    }

    /// Builds a key from bytes found in a file without rejecting weak keys: such a signature
    /// must still be reported as invalid by verification, not as a malformed file.
    pub(crate) fn from_bytes_unchecked(bytes: &[u8; 32]) -> Option<PublicKey> {
        VerifyingKey::from_bytes(bytes).ok().map(PublicKey)
    }

    /// The 32-byte RFC 8032 encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The SubjectPublicKeyInfo PEM encoding.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Parse {
                expected: "public key (SubjectPublicKeyInfo)",
                detail: e.to_string(),
            })
    }

    /// The key id: lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (spec §6), the same as
    /// `openssl pkey -pubin -outform DER | openssl dgst -sha256`.
    pub fn key_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(SPKI_PREFIX);
        h.update(self.0.as_bytes());
        hex::encode(h.finalize())
    }

    /// The first 16 hex digits of the key id, for display.
    pub fn short_id(&self) -> String {
        self.key_id()[..16].to_string()
    }

    /// Checks a [`SecretKey::sign_message`] signature strictly (no malleable or small-order
    /// encodings).
    pub fn verify_message(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.verify_strict(message, signature)
    }

    /// Checks a signature strictly (no malleable or small-order encodings).
    pub(crate) fn verify_strict(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(message, &sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_key_id() {
        let sk = SecretKey::from_seed(&[7; 32]);
        let pem = sk.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SecretKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key(), sk.public_key());
        let pk = sk.public_key();
        let pub_pem = pk.to_pem().unwrap();
        assert!(pub_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(PublicKey::from_pem(&pub_pem).unwrap(), pk);
        assert_eq!(PublicKey::from_any(&pk.to_bytes()).unwrap(), pk);
        assert_eq!(pk.key_id().len(), 64);
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point is of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            PublicKey::from_bytes(&identity),
            Err(KeyError::Weak)
        ));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(
            PublicKey::from_any(b"hello"),
            Err(KeyError::Parse { .. })
        ));
        assert!(matches!(
            SecretKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(KeyError::Parse { .. })
        ));
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn remembered_keys_parse_as_before_and_failures_are_not_remembered() {
        let secret = SecretKey::generate().unwrap();
        let pem = secret.public_key().to_pem().unwrap();
        let first = PublicKey::from_any(pem.as_bytes()).unwrap();
        let again = PublicKey::from_any(pem.as_bytes()).unwrap();
        assert_eq!(first, again);
        assert_eq!(first, secret.public_key());
        // A weak key is refused every time, and raw bytes of the same key parse to the same key.
        let weak = [0u8; 32];
        assert!(matches!(PublicKey::from_any(&weak), Err(KeyError::Weak)));
        assert!(matches!(PublicKey::from_any(&weak), Err(KeyError::Weak)));
        assert_eq!(PublicKey::from_any(&first.to_bytes()).unwrap(), first);
        // More keys than the cache holds: every one still parses to itself.
        for _ in 0..PARSED_KEYS_MAX + 3 {
            let k = SecretKey::generate().unwrap().public_key();
            assert_eq!(PublicKey::from_any(&k.to_bytes()).unwrap(), k);
        }
    }
}
