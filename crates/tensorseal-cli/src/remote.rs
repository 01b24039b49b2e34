//! `s3://` arguments: the glue between the storage layer (`tensorseal-store`) and the format's
//! loader. Verification itself is the format crate's, run over range reads.

use crate::failure::Failure;
use std::path::Path;
use tensorseal::{
    Classify, FailureClass, Limits, Loader, TrustPolicy, VerifyError, VerifyReport, error_chain,
};
use tensorseal_store::{Location, ObjectReader, StoreOptions};

/// Range GETs in flight at once while verifying an object: enough to hide request latency, and
/// with one chunk (16 MiB, twice for compressed chunks) per request, a bound on memory.
const CONCURRENCY: usize = 8;

/// The URL in `arg`, when it is one (`scheme://...`) rather than a path.
pub(crate) fn url_of(arg: &Path) -> Option<&str> {
    arg.to_str().filter(|s| Location::is_url(s))
}

/// An error as `verify` reports it: exit code, `--json` kind, message.
pub(crate) type Refusal = (u8, &'static str, String);

fn verify_refusal(e: &VerifyError) -> Refusal {
    (e.class().exit_code(), e.kind(), error_chain(e))
}

/// Opens the object at `url` and reads its footer, signatures and manifest under `policy`.
fn open(url: &str, policy: &TrustPolicy) -> Result<Loader<ObjectReader>, Refusal> {
    // Store errors name the URL; the caller prefixes every message with it already.
    let io = |e: tensorseal_store::StoreError| {
        let message = e.to_string();
        let message = message
            .strip_prefix(&format!("{url}: "))
            .unwrap_or(&message);
        (FailureClass::Invalid.exit_code(), "io", message.to_string())
    };
    let Location::S3 { bucket, key } = Location::parse(url).map_err(io)? else {
        unreachable!("url_of only passes URLs");
    };
    let object = ObjectReader::open(&bucket, &key, &StoreOptions::default()).map_err(io)?;
    Loader::from_source(object, policy, &Limits::default()).map_err(|e| verify_refusal(&e))
}

/// `verify` of one object: the loader's checks, then every chunk fetched and hashed, at most
/// [`CONCURRENCY`] range GETs at a time.
pub(crate) fn verify(url: &str, policy: &TrustPolicy) -> Result<VerifyReport, Refusal> {
    let loader = open(url, policy)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(CONCURRENCY)
        .build()
        .map_err(|e| (FailureClass::Invalid.exit_code(), "io", e.to_string()))?;
    pool.install(|| loader.verify_all())
        .map_err(|e| verify_refusal(&e))
}

/// `inspect` of one object: footer, signature block and manifest only (a few range GETs). The
/// signatures present are checked for validity, not trust.
pub(crate) fn inspect(url: &str) -> Result<Loader<ObjectReader>, Failure> {
    open(url, &TrustPolicy::integrity_only()).map_err(|(code, kind, message)| {
        Failure::new(code, format!("{url}: {message}")).with_kind(kind)
    })
}
