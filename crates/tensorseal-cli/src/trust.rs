//! Trust policy files on the command line (spec/POLICY.md), shared by every command that
//! verifies.

use crate::failure::{Failure, chain};
use serde_json::{Value, json};
use std::path::Path;
use tensorseal::{SignerStatus, TrustPolicy};

/// Reads `--policy`; an unreadable or invalid policy is invalid input (exit 1).
pub(crate) fn read_policy(path: &Path) -> Result<TrustPolicy, Failure> {
    TrustPolicy::read_policy_file(path).map_err(|e| {
        Failure::new(
            Failure::INVALID,
            format!("{}: invalid trust policy: {}", path.display(), chain(&e)),
        )
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
