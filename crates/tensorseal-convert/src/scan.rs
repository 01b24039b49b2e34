//! `scan`: every global and call in every pickle a file holds, with offsets, verdicts and
//! reasons, found by the same code paths `convert` uses.

use crate::error::ConvertError;
use crate::hf_index::HfIndex;
use crate::limits::Limits;
use crate::pickles::{self, MemberScan};
use crate::sandbox::{SandboxMode, SandboxPolicy};
use crate::{Format, TorchZip, ZipArchive, ZipKind, detect, zip_kind};
use std::path::Path;
use tensorseal::{FileBytes, MapMode};
use tensorseal_pickle as pk;

/// The overall verdict of a scan, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScanVerdict {
    /// No pickle names anything outside the allowed constructors.
    Safe,
    /// The file could not be fully read (malformed or unsupported), and nothing refused was seen
    /// before the problem.
    Invalid,
    /// Unknown classes: refused by `convert` unless inert records are allowed.
    UnknownObjects,
    /// Code-execution or I/O primitives: always refused.
    Unsafe,
}

impl ScanVerdict {
    /// The name `scan --json` prints.
    pub fn name(self) -> &'static str {
        match self {
            ScanVerdict::Safe => "safe",
            ScanVerdict::Invalid => "invalid",
            ScanVerdict::UnknownObjects => "unknown-objects",
            ScanVerdict::Unsafe => "unsafe",
        }
    }
}

/// Everything a scan found.
#[derive(Debug)]
pub struct ScanOutcome {
    /// The recognised format.
    pub format: &'static str,
    /// One report per pickle, in file order.
    pub members: Vec<MemberScan>,
    /// A problem that stopped the scan or would stop a conversion (malformed container,
    /// unsupported content, parse error).
    pub problem: Option<String>,
}

impl ScanOutcome {
    /// The most severe verdict: unsafe findings first, then unknown classes, then problems.
    pub fn verdict(&self) -> ScanVerdict {
        let worst = self
            .members
            .iter()
            .map(|m| m.report.verdict())
            .max()
            .unwrap_or(pk::Verdict::Allowed);
        match worst {
            pk::Verdict::Unsafe => ScanVerdict::Unsafe,
            pk::Verdict::Unknown => ScanVerdict::UnknownObjects,
            pk::Verdict::Allowed => {
                let parse_error = self.members.iter().any(|m| m.report.error().is_some());
                if parse_error || self.problem.is_some() {
                    ScanVerdict::Invalid
                } else {
                    ScanVerdict::Safe
                }
            }
        }
    }

    /// Every member's report as the JSON that `tensorseal scan --json` and the Python
    /// `tensorseal.scan` print under `members` (documented in README): one definition, so the
    /// two cannot drift apart.
    pub fn members_json(&self) -> Vec<serde_json::Value> {
        self.members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "member": m.member,
                    "status": m.report.status().to_string(),
                    "protocol": m.report.protocol(),
                    "opcodes": m.report.opcodes(),
                    "error": m.report.error().map(|e| e.to_string()),
                    "findings_dropped": m.report.findings_dropped(),
                    "findings": m.report.findings().iter().map(|f| serde_json::json!({
                        "offset": f.offset,
                        "opcode": f.opcode.to_string(),
                        "what": f.kind.name(),
                        "global": f.kind.global().map(ToString::to_string),
                        "verdict": f.verdict.to_string(),
                        "reason": f.reason,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect()
    }
}

/// Scans `input`: recognises its format from content, reads the container with the converter's
/// strict readers, and interprets every pickle without stopping at refusals.
///
/// # Errors
/// Only when the file cannot be opened; everything else is reported in the outcome.
pub fn scan(
    input: &Path,
    limits: &Limits,
    pickle_limits: &pk::Limits,
    sandbox: SandboxMode,
) -> Result<ScanOutcome, ConvertError> {
    let bytes = FileBytes::open(input, MapMode::Map).map_err(|source| ConvertError::Io {
        path: input.to_path_buf(),
        source,
    })?;
    let mut shards = Vec::new();
    let format = detect(&bytes, limits);
    if let Ok(Format::HfIndex) = format {
        let dir = input.parent().unwrap_or(Path::new("."));
        if let Ok(index) = HfIndex::parse(&bytes, dir, limits) {
            for shard in index.shards() {
                let mapped = FileBytes::open(shard.path(), MapMode::Map).map_err(|source| {
                    ConvertError::Io {
                        path: shard.path().to_path_buf(),
                        source,
                    }
                })?;
                shards.push((shard.file_name().to_string(), mapped));
            }
        }
    }
    let mut policy = SandboxPolicy::new(sandbox).read(input);
    for (name, _) in &shards {
        policy = policy.read(input.parent().unwrap_or(Path::new(".")).join(name));
    }
    policy.apply()?;

    let name = input.file_name().map_or_else(
        || input.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut outcome = ScanOutcome {
        format: "unknown",
        members: Vec::new(),
        problem: None,
    };
    match format {
        Err(e) => outcome.problem = Some(e.to_string()),
        Ok(Format::HfIndex) => {
            outcome.format = "hf-index";
            if let Err(e) = HfIndex::parse(&bytes, input.parent().unwrap_or(Path::new(".")), limits)
            {
                outcome.problem = Some(e.to_string());
            }
            for (shard, data) in &shards {
                let mut inner = ScanOutcome {
                    format: "",
                    members: Vec::new(),
                    problem: None,
                };
                scan_bytes(data, shard, limits, pickle_limits, &mut inner);
                outcome.members.extend(inner.members);
                if let Some(p) = inner.problem {
                    outcome.problem.get_or_insert(format!("{shard}: {p}"));
                }
            }
        }
        Ok(_) => scan_bytes(&bytes, &name, limits, pickle_limits, &mut outcome),
    }
    Ok(outcome)
}

fn scan_bytes(
    bytes: &[u8],
    name: &str,
    limits: &Limits,
    pickle_limits: &pk::Limits,
    out: &mut ScanOutcome,
) {
    let format = match detect(bytes, limits) {
        Ok(f) => f,
        Err(e) => {
            out.problem = Some(e.to_string());
            return;
        }
    };
    out.format = match format {
        Format::Zip => "zip",
        other => other.name(),
    };
    match format {
        Format::Zip => {
            let zip = match ZipArchive::new(bytes, limits) {
                Ok(z) => z,
                Err(e) => {
                    out.problem = Some(e.to_string());
                    return;
                }
            };
            match zip_kind(&zip) {
                Ok(ZipKind::TorchZip) => {
                    out.format = "torch-zip";
                    match TorchZip::new(zip, limits) {
                        Ok(tz) => {
                            let member = format!("{}/data.pkl", tz.prefix());
                            out.members.push(pickles::scan_member(
                                tz.data_pkl(),
                                0,
                                member,
                                pickle_limits,
                                false,
                            ));
                        }
                        Err(e) => out.problem = Some(e.to_string()),
                    }
                }
                Ok(ZipKind::TorchScript) => {
                    out.format = "torchscript";
                    out.problem = Some("a TorchScript archive (code/ and constants.pkl hold a program): not converted".into());
                }
                Ok(ZipKind::Npz) => {
                    out.format = "npz";
                    for entry in zip.entries() {
                        if let Ok(data) = zip.read(entry) {
                            scan_npy(&data, entry.name(), pickle_limits, out);
                        }
                    }
                    if let Err(e) = crate::Npz::from_archive(&zip, limits) {
                        out.problem.get_or_insert(e.to_string());
                    }
                }
                Err(e) => out.problem = Some(e.to_string()),
            }
        }
        Format::TorchLegacy | Format::Pickle { .. } => {
            let first = pk::load(
                bytes,
                0,
                &pickles::options(pickle_limits, true, true),
                &mut pk::NoStorages,
            );
            let legacy = first
                .as_ref()
                .is_ok_and(|g| crate::torch::is_legacy_magic(g) && g.end() < bytes.len());
            if legacy {
                out.format = "torch-legacy";
                let names = [
                    "magic number",
                    "protocol version",
                    "sys_info",
                    "object",
                    "storage keys",
                ];
                let mut start = 0;
                for (i, what) in names.iter().enumerate() {
                    let member = format!("{name}: pickle {} of 5 ({what})", i + 1);
                    let scanned = pickles::scan_member(bytes, start, member, pickle_limits, true);
                    let next = scanned.report.end();
                    let failed = scanned.report.error().is_some();
                    out.members.push(scanned);
                    match next {
                        Some(e) if !failed => start = e,
                        _ => break,
                    }
                }
            } else {
                out.format = "pickle";
                out.members.push(pickles::scan_member(
                    bytes,
                    0,
                    name.to_string(),
                    pickle_limits,
                    false,
                ));
            }
        }
        Format::Npy => scan_npy(bytes, name, pickle_limits, out),
        Format::Safetensors => {
            if let Err(e) = crate::SafetensorsFile::parse(bytes, limits) {
                out.problem = Some(e.to_string());
            }
        }
        Format::HfIndex => {
            out.problem = Some("a sharded-checkpoint index inside another index".into())
        }
        Format::TorchTar => {
            let (members, problem) = crate::torch_tar::scan(bytes, name, limits, pickle_limits);
            out.members.extend(members);
            out.problem = problem;
        }
        Format::Tensorseal => {}
    }
}

/// A `.npy` file: numeric arrays hold no pickle; an object array's data is one, scanned so its
/// globals are reported.
fn scan_npy(bytes: &[u8], name: &str, pickle_limits: &pk::Limits, out: &mut ScanOutcome) {
    match crate::NpyArray::parse(bytes, &Limits::default()) {
        Ok(_) => {}
        Err(crate::NpyError::ObjectArray { .. }) => {
            out.problem.get_or_insert(format!(
                "{name}: an object array (its data is a pickle): not converted"
            ));
            if let Some(start) = npy_data_start(bytes) {
                out.members.push(pickles::scan_member(
                    bytes,
                    start,
                    format!("{name}: object array data"),
                    pickle_limits,
                    false,
                ));
            }
        }
        Err(e) => {
            out.problem.get_or_insert(e.to_string());
        }
    }
}

/// The refusal an object `.npy` file's embedded pickle implies (unsafe or unknown globals), if
/// any; the caller reports a benign object array as unsupported.
pub(crate) fn npy_object_refusal(
    bytes: &[u8],
    name: &str,
    limits: &pk::Limits,
) -> Option<ConvertError> {
    let start = npy_data_start(bytes)?;
    let scanned = pickles::scan_member(
        bytes,
        start,
        format!("{name}: object array data"),
        limits,
        false,
    );
    pickles::refusal(&scanned.member, &scanned.report, false)
}

/// Where the data of a `.npy` file starts: magic (6), version (2), header length (2 bytes in
/// version 1, 4 in versions 2 and 3), header.
fn npy_data_start(bytes: &[u8]) -> Option<usize> {
    let major = *bytes.get(6)?;
    let (len, at): (usize, usize) = match major {
        1 => (
            u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?) as usize,
            10,
        ),
        2 | 3 => (
            u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize,
            12,
        ),
        _ => return None,
    };
    at.checked_add(len).filter(|&s| s <= bytes.len())
}
