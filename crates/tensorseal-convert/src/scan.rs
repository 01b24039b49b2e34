//! `scan`: every global and call in every pickle a file holds, with offsets, verdicts and
//! reasons, found by the same code paths `convert` uses; and whether `convert` with the same
//! options would succeed, found by running it to the end without writing
//! ([`crate::dry_run`]).

use crate::convert::{ConvertOptions, Inputs};
use crate::dry_run::{ConvertedBytes, dry_convert};
use crate::error::ConvertError;
use crate::limits::Limits;
use crate::pickles::{self, MemberScan};
use crate::sandbox::SandboxPolicy;
use crate::{Format, TorchZip, ZipArchive, ZipKind, detect, zip_kind};
use std::path::Path;
use tensorseal::{Classify, FailureClass};
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
    /// A problem the container pass met while looking for pickles (malformed container,
    /// unsupported content); the conversion's own verdict is [`ScanOutcome::conversion`].
    pub problem: Option<String>,
    /// What `convert` with the same options does: the manifest it would write, or the error
    /// it would stop with (member, offset, tensor path and what is wrong are in the message).
    pub conversion: Result<ConvertedBytes, ConvertError>,
}

impl ScanOutcome {
    /// Code safety alone, from the pickles' findings: [`ScanVerdict::Unsafe`],
    /// [`ScanVerdict::UnknownObjects`] or [`ScanVerdict::Safe`].
    pub fn safety(&self) -> ScanVerdict {
        let worst = self
            .members
            .iter()
            .map(|m| {
                if self.format == "dcp" {
                    crate::dcp::verdict_of_metadata(&m.report)
                } else {
                    m.report.verdict()
                }
            })
            .max()
            .unwrap_or(pk::Verdict::Allowed);
        match worst {
            pk::Verdict::Unsafe => ScanVerdict::Unsafe,
            pk::Verdict::Unknown => ScanVerdict::UnknownObjects,
            pk::Verdict::Allowed => ScanVerdict::Safe,
        }
    }

    /// Whether `convert` with the same options would succeed.
    pub fn convertible(&self) -> bool {
        self.conversion.is_ok()
    }

    /// The most severe verdict: unsafe findings first, then unknown classes, then a file that
    /// would not convert.
    pub fn verdict(&self) -> ScanVerdict {
        match self.safety() {
            ScanVerdict::Safe if !self.convertible() => ScanVerdict::Invalid,
            safety => safety,
        }
    }

    /// The exit code of `tensorseal scan`: 4 when a pickle is unsafe, otherwise the exit code
    /// `convert` with the same options has (0 converted, 1 malformed or unsupported, 4 unknown
    /// classes without inert records allowed).
    pub fn exit_code(&self) -> u8 {
        if self.safety() == ScanVerdict::Unsafe {
            return FailureClass::Unsafe.exit_code();
        }
        match &self.conversion {
            Ok(_) => 0,
            Err(e) => e.class().exit_code(),
        }
    }

    /// The scan as the JSON object `tensorseal scan --json` prints (less `input`) and the
    /// Python `tensorseal.scan` reads (documented in README.md).
    pub fn to_json(&self) -> serde_json::Value {
        let (problem, conversion_error) = match &self.conversion {
            Ok(_) => (self.problem.clone(), serde_json::Value::Null),
            Err(e) => {
                let message = tensorseal::error_chain(e);
                (
                    Some(message.clone()),
                    serde_json::json!({"kind": e.kind(), "message": message}),
                )
            }
        };
        serde_json::json!({
            "format": self.format,
            "verdict": self.verdict().name(),
            "safety": self.safety().name(),
            "convertible": self.convertible(),
            "exit_code": self.exit_code(),
            "problem": problem,
            "conversion_error": conversion_error,
            "inert_objects": self.conversion.as_ref().map_or(&[][..], |c| &c.inert_objects[..]),
            "members": self.members_json(),
        })
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

/// What the container pass found: the format, the pickles and their reports, a problem.
#[derive(Default)]
struct Pass {
    format: &'static str,
    members: Vec<MemberScan>,
    problem: Option<String>,
}

/// Scans `input`: recognises its format from content, reads the container with the converter's
/// strict readers, interprets every pickle without stopping at refusals, and runs the conversion
/// `options` describe to the end without writing anything, so that the outcome says what
/// `convert` would do. `options.sandbox` locks the process down (read-only) before parsing.
///
/// # Errors
/// Only when an input file cannot be opened, or the sandbox is required and unavailable;
/// everything else is reported in the outcome.
pub fn scan(input: &Path, options: &ConvertOptions<'_>) -> Result<ScanOutcome, ConvertError> {
    let inputs = match Inputs::open(input, &options.limits) {
        Ok(inputs) => inputs,
        Err(e @ ConvertError::Io { .. }) => return Err(e),
        Err(e) => {
            return Ok(ScanOutcome {
                format: "unknown",
                members: Vec::new(),
                problem: None,
                conversion: Err(e),
            });
        }
    };
    let mut policy = SandboxPolicy::new(options.sandbox);
    for p in &inputs.read_paths {
        policy = policy.read(p);
    }
    policy.apply()?;

    let source = inputs.source();
    let conversion = dry_convert(inputs.format, &source, inputs.len(), options);
    let mut pass = Pass {
        format: "unknown",
        ..Pass::default()
    };
    let (limits, pickle_limits) = (&options.limits, &options.pickle_limits);
    match (inputs.format, source.index) {
        (Format::HfIndex, Some(index)) => {
            pass.format = "hf-index";
            for (shard, data) in index.shards().iter().zip(&source.shards) {
                let mut inner = Pass::default();
                let name = shard.file_name();
                scan_bytes(data, name, limits, pickle_limits, &mut inner);
                pass.members.extend(inner.members);
                if let Some(p) = inner.problem {
                    pass.problem.get_or_insert(format!("{name}: {p}"));
                }
            }
        }
        (Format::Dcp, _) => {
            // `.metadata` is the folder's one pickle; the `.distcp` items are torch.save zips
            // that the conversion above read entirely.
            pass.format = "dcp";
            pass.members.push(crate::pickles::scan_member(
                source.bytes,
                0,
                crate::dcp::METADATA_FILE.into(),
                pickle_limits,
                false,
            ));
        }
        _ => scan_bytes(source.bytes, &source.name, limits, pickle_limits, &mut pass),
    }
    Ok(ScanOutcome {
        format: pass.format,
        members: pass.members,
        problem: pass.problem,
        conversion,
    })
}

fn scan_bytes(
    bytes: &[u8],
    name: &str,
    limits: &Limits,
    pickle_limits: &pk::Limits,
    out: &mut Pass,
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
        Format::Tensorseal | Format::Dcp => {}
    }
}

/// A `.npy` file: numeric arrays hold no pickle; an object array's data is one, scanned so its
/// globals are reported.
fn scan_npy(bytes: &[u8], name: &str, pickle_limits: &pk::Limits, out: &mut Pass) {
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
