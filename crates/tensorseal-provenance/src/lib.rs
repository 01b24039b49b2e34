#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod attest;
mod audit;
mod error;
mod file_digest;
mod model_signing;

pub use attest::{
    Attestation, AttestationInput, PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, attest,
    check_attestation, pae,
};
pub use audit::{
    AuditLog, CHECKPOINT_DOMAIN, GENESIS, LogReport, MAX_LINE, file_facts, host_and_user,
    verify_log,
};
pub use error::{AttestError, AuditError};
pub use model_signing::{
    BundleError, BundleReport, EcPublicKey, MAX_BUNDLE_FILE, MAX_DEPTH, MAX_RESOURCES,
    MIN_SHARD_SIZE, MODEL_SIGNING_PREDICATE, fuzz_bundle, verify_model_signing,
};
