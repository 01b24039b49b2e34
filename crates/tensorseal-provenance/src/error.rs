//! Errors of the audit log and of attestations.

use std::io;

/// The audit log could not be written, or does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The log could not be opened, locked, read or written.
    #[error("audit log I/O error")]
    Io(#[from] io::Error),
    /// Line `line` (from 1) breaks the chain or is not a valid record: the log was edited,
    /// reordered, had lines deleted, or was torn by a crash.
    #[error("line {line}: {what}")]
    Broken {
        /// Line number, from 1.
        line: u64,
        /// What is wrong.
        what: String,
    },
    /// Lines after the last signed checkpoint (or no checkpoint at all) where a signed log was
    /// required: the tail may have been truncated, or a writer died before sealing.
    #[error("{what}")]
    Unsealed {
        /// What is wrong.
        what: String,
    },
    /// A record could not be appended (not an object, too long).
    #[error("{0}")]
    Record(String),
}

impl AuditError {
    /// A stable machine-readable kind: `io`, `chain_broken`, `unsealed`, `record`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditError::Io(_) => "io",
            AuditError::Broken { .. } => "chain_broken",
            AuditError::Unsealed { .. } => "unsealed",
            AuditError::Record(_) => "record",
        }
    }
}

/// An attestation could not be made, or does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// A file could not be read or written.
    #[error("I/O error")]
    Io(#[from] io::Error),
    /// The envelope or statement is not of the expected shape, or the file to attest is not
    /// intact.
    #[error("malformed attestation: {0}")]
    Malformed(String),
    /// No signature by a trusted key verifies over the envelope's PAE.
    #[error("attestation not signed by a trusted key: {0}")]
    Untrusted(String),
    /// The statement's subject does not match the file.
    #[error("attestation subject does not match the file: {0}")]
    SubjectMismatch(String),
}

impl AttestError {
    /// A stable machine-readable kind: `io`, `attestation_malformed`, `attestation_untrusted`,
    /// `attestation_subject_mismatch`.
    pub fn kind(&self) -> &'static str {
        match self {
            AttestError::Io(_) => "io",
            AttestError::Malformed(_) => "attestation_malformed",
            AttestError::Untrusted(_) => "attestation_untrusted",
            AttestError::SubjectMismatch(_) => "attestation_subject_mismatch",
        }
    }
}
