//! Trust policy files on the command line (spec/POLICY.md), shared by every command that
//! verifies.

use crate::failure::Failure;
use serde_json::{Value, json};
use std::path::Path;
use tensorseal::error_chain as chain;
use tensorseal::{SignerStatus, TrustPolicy};

/// Reads `--policy`; an unreadable or invalid policy is invalid input (exit 1).
pub(crate) fn read_policy(path: &Path) -> Result<TrustPolicy, Failure> {
    TrustPolicy::read_policy_file(path).map_err(|e| {
        Failure::new(
            INVALID,
            format!("{}: invalid trust policy: {}", path.display(), chain(&e)),
        )
        .with_kind(tensorseal::Classify::kind(&e))
    })
}

/// One signer in `--json` reports: `key_id`, `trusted`, and the policy's `name` and the
/// `refused` kind when a policy rule did not count the signature.
pub(crate) fn signer_json(s: &SignerStatus) -> Value {
    json!({
        "key_id": s.key_id,
        "trusted": s.trusted,
        "name": s.name,
        "refused": s.refused.as_ref().map(|r| r.kind()),
    })
}

/// Exit code of invalid input or an I/O error (`FailureClass::Invalid`).
pub(crate) const INVALID: u8 = 1;
/// Exit code of a failed verification (`FailureClass::Verification`).
pub(crate) const VERIFICATION: u8 = 3;

/// Invalid input or an I/O error about `path` (exit 1), for errors without a class of their own.
pub(crate) fn invalid(path: &Path, e: &dyn std::error::Error) -> Failure {
    Failure::new(INVALID, format!("{}: {}", path.display(), chain(e)))
}
