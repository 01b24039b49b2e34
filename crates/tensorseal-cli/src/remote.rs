//! `s3://` arguments: the glue between the storage layer (`tensorseal-store`) and the format's
//! loader. Verification itself is the format crate's, run over range reads.

use crate::failure::Failure;
use std::path::Path;
use tensorseal::{
    Classify, FailureClass, Limits, Loader, TrustPolicy, VerifyError, VerifyReport, error_chain,
};
use tensorseal_store::{Location, ObjectReader};

/// The URL in `arg`, when it is one (`scheme://...`) rather than a path.
pub(crate) fn url_of(arg: &Path) -> Option<&str> {
    Location::url_of(arg)
}

/// An error as `verify` reports it: exit code, `--json` kind, message.
pub(crate) type Refusal = (u8, &'static str, String);

fn verify_refusal(e: &VerifyError) -> Refusal {
    (e.class().exit_code(), e.kind(), error_chain(e))
}

/// Opens the object at `url` and reads its footer, signatures and manifest under `policy`.
fn open(url: &str, policy: &TrustPolicy) -> Result<Loader<ObjectReader>, Refusal> {
    tensorseal_store::open_checkpoint(url, policy, &Limits::default()).map_err(|e| {
        // Store errors name the URL; the caller prefixes every message with it already.
        let message = match &e {
            tensorseal_store::OpenError::Verify(v) => return verify_refusal(v),
            other => other.to_string(),
        };
        let message = message
            .strip_prefix(&format!("{url}: "))
            .unwrap_or(&message)
            .to_string();
        (e.class().exit_code(), e.kind(), message)
    })
}

/// `verify` of one object: the loader's checks, then every chunk fetched and hashed, with
/// [`tensorseal_store::READ_CONCURRENCY`] range GETs in flight.
pub(crate) fn verify(url: &str, policy: &TrustPolicy) -> Result<VerifyReport, Refusal> {
    let loader = open(url, policy)?;
    tensorseal_store::in_read_pool(|| loader.verify_all())
        .map_err(|e| (FailureClass::Invalid.exit_code(), "io", e.to_string()))?
        .map_err(|e| verify_refusal(&e))
}

/// `inspect` of one object: footer, signature block and manifest only (a few range GETs). The
/// signatures present are checked for validity, not trust.
pub(crate) fn inspect(url: &str) -> Result<Loader<ObjectReader>, Failure> {
    open(url, &TrustPolicy::integrity_only()).map_err(|(code, kind, message)| {
        Failure::new(code, format!("{url}: {message}")).with_kind(kind)
    })
}
