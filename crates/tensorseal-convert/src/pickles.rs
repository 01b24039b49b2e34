//! Loading pickle streams under the policy, and turning refusals into precise errors.
//!
//! `convert` and `scan` share [`load`] and [`scan_member`]: a file converts exactly when its scan
//! finds nothing refused, so the two can never disagree.

use crate::error::ConvertError;
use tensorseal_pickle as pk;

/// Interpreter options for a conversion.
pub(crate) fn options(limits: &pk::Limits, allow_objects: bool, trailing: bool) -> pk::Options {
    let mut options = pk::Options::with_limits(limits.clone());
    options.keep_unknown_objects = allow_objects;
    options.allow_trailing_bytes = trailing;
    options
}

/// Interprets the pickle at `data[start..]`. On failure the stream is scanned from the same
/// point so the error reports the most severe finding: a stream that names `os.system` and is
/// then truncated is refused as unsafe, not as merely malformed.
pub(crate) fn load<'a>(
    data: &'a [u8],
    start: usize,
    member: &str,
    options: &pk::Options,
    storages: &mut dyn pk::StorageResolver,
) -> Result<pk::Graph<'a>, ConvertError> {
    match pk::load(data, start, options, storages) {
        Ok(graph) => Ok(graph),
        Err(error) => {
            let mut scan_options = options.clone();
            // Scan past refusals to find the worst of them.
            scan_options.keep_unknown_objects = false;
            let report = pk::scan(data, start, &scan_options, &mut pk::DeclaredStorages);
            Err(
                refusal(member, &report, options.keep_unknown_objects).unwrap_or(
                    ConvertError::Pickle {
                        member: member.to_string(),
                        source: error,
                    },
                ),
            )
        }
    }
}

/// The refusal a scan report implies, if any: unsafe findings always, unknown ones unless inert
/// records are allowed.
pub(crate) fn refusal(
    member: &str,
    report: &pk::ScanReport,
    allow_objects: bool,
) -> Option<ConvertError> {
    let list = |verdict: pk::Verdict| -> Vec<String> {
        report
            .findings()
            .iter()
            .filter(|f| f.verdict == verdict)
            .map(|f| f.to_string())
            .collect()
    };
    let unsafe_findings = list(pk::Verdict::Unsafe);
    if !unsafe_findings.is_empty() || report.verdict() == pk::Verdict::Unsafe {
        let findings = if unsafe_findings.is_empty() {
            vec![
                report
                    .error()
                    .map_or_else(|| "unsafe content".to_string(), |e| e.to_string()),
            ]
        } else {
            unsafe_findings
        };
        return Some(ConvertError::Unsafe {
            member: member.to_string(),
            findings,
        });
    }
    let unknown = list(pk::Verdict::Unknown);
    if !allow_objects && (!unknown.is_empty() || report.verdict() == pk::Verdict::Unknown) {
        return Some(ConvertError::UnknownObjects {
            member: member.to_string(),
            findings: unknown,
        });
    }
    None
}

/// The scan of one pickle member, as the `scan` command reports it.
#[derive(Debug)]
pub struct MemberScan {
    /// Where the pickle is: a zip member name, `pickle 4 of 5` of a legacy file, a file name.
    pub member: String,
    /// Every global and call with offset, verdict and reason.
    pub report: pk::ScanReport,
}

/// Scans the pickle at `data[start..]` without stopping at refusals. With `trailing` false,
/// bytes after STOP are an error and any pickles stacked after it are scanned too.
pub(crate) fn scan_member(
    data: &[u8],
    start: usize,
    member: String,
    limits: &pk::Limits,
    trailing: bool,
) -> MemberScan {
    let options = options(limits, false, trailing);
    let report = pk::scan(data, start, &options, &mut pk::DeclaredStorages);
    MemberScan { member, report }
}
