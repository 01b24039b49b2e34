//! `verify`: signatures against trusted keys, metadata expectations, every digest.

use crate::failure::Failure;
use clap::Args;
use rayon::prelude::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tensorseal::{
    Checkpoint, Classify, FailureClass, Limits, PublicKey, ShardSetReport, TrustPolicy,
    VerifyReport, error_chain, is_shard_set, verify_shard_set,
};

/// Verify files' signatures and every digest before they are used.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  tensorseal verify model.tseal --trust ci-signer.pub
  tensorseal verify model.tseal --trust a.pub --trust b.pub --threshold 2 --json
  tensorseal verify model.tseal --trust ci.pub --expect run_id=run-42 --min-step 12000
  tensorseal verify model.tseal --digests-only     # integrity only, no authenticity
  tensorseal verify checkpoints/ --trust ci.pub --json   # every *.tseal below, in parallel
  tensorseal verify s3://bucket/model.tseal --trust ci.pub  # range reads, no download
  tensorseal verify ckpt/step-1000 --trust ci.pub   # a DCP shard set (index.tseal + shards)

Without --trust, verify refuses (exit 3) unless --digests-only is given.
--expect and --min-step check signed metadata, refusing a validly signed but wrong
or older checkpoint (rollback). Exit 0 when verified, 3 when verification fails,
1 when the file or a key cannot be read. Several files, or a directory (its *.tseal
files, recursively, in path order), are verified in parallel: --json prints one array
in the order given, and the exit code is the worst of them (3 over 1 over 0).
A folder holding index.tseal (or that file) is a shard set written by tensorseal.dcp
(spec §11): the signed index, then every shard in parallel, each bound to the length and
manifest digest the index lists; a missing, extra, renamed, truncated or swapped shard
fails verification (kinds shard_missing, shard_unlisted, shard_mismatch, index_invalid).")]
pub(crate) struct VerifyArgs {
    /// The files to verify; a directory stands for every *.tseal file below it (a folder holding
    /// index.tseal for its shard set), and an `s3://BUCKET/KEY` URL for one object, verified by
    /// range reads.
    #[arg(required = true, value_name = "FILE|DIR|URL")]
    files: Vec<PathBuf>,
    /// Trusted public key (PEM, DER or raw 32 bytes); repeatable.
    #[arg(long, value_name = "PUB")]
    trust: Vec<PathBuf>,
    /// Signatures from this many distinct trusted keys are required.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    threshold: u64,
    /// Trust policy file (spec/POLICY.md): named keys, validity windows, revocations, run_id
    /// patterns, threshold, minimum step. Replaces --trust and --threshold.
    #[arg(long, value_name = "POLICY.toml", conflicts_with_all = ["trust", "threshold"])]
    policy: Option<PathBuf>,
    /// Also check this in-toto attestation (DSSE envelope, `tensorseal attest`): signed by a
    /// trusted key, about the file verified.
    #[arg(long, value_name = "F.intoto.jsonl", conflicts_with = "digests_only")]
    attestation: Option<PathBuf>,
    /// Check integrity only (digests, structure, validity of signatures present), not who signed.
    #[arg(long, conflicts_with_all = ["trust", "threshold", "policy"])]
    digests_only: bool,
    /// Require signed metadata KEY to equal VALUE; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_expectation)]
    expect: Vec<(String, String)>,
    /// Require the signed `step` metadata to be at least N.
    #[arg(long, value_name = "N")]
    min_step: Option<u64>,
    /// Print a JSON report on stdout (also on failure): an object for one file, an array for
    /// several or a directory.
    #[arg(long)]
    json: bool,
}

/// How deep `verify DIR` descends: far beyond any model repository's layout, and a bound on a
/// directory tree made to exhaust the walk.
const MAX_DIR_DEPTH: usize = 32;

fn parse_expectation(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

/// One file's outcome: its report, or the exit code, `--json` kind and message of its failure.
/// For a shard set the report is the index's, and `set` has every shard's.
struct Outcome {
    file: PathBuf,
    result: Result<VerifyReport, (u8, &'static str, String)>,
    set: Option<ShardSetReport>,
}

impl Outcome {
    fn code(&self) -> u8 {
        self.result
            .as_ref()
            .map_or_else(|(code, _, _)| *code, |_| 0)
    }
}

/// The files a `verify` argument stands for: itself, or a directory's `*.tseal` files, recursively,
/// in path order (symbolic links to directories are not followed).
fn expand(arg: &Path, out: &mut Vec<PathBuf>) -> Result<(), Failure> {
    let Ok(meta) = std::fs::metadata(arg) else {
        // Missing or unreadable: verifying it reports the I/O error.
        out.push(arg.to_path_buf());
        return Ok(());
    };
    if !meta.is_dir() || is_shard_set(arg) {
        out.push(arg.to_path_buf());
        return Ok(());
    }
    let before = out.len();
    walk(arg, 0, out)?;
    if out.len() == before {
        return Err(Failure::new(
            FailureClass::Invalid.exit_code(),
            format!(
                "{}: no *.tseal files or shard sets in this directory",
                arg.display()
            ),
        ));
    }
    Ok(())
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), Failure> {
    if depth > MAX_DIR_DEPTH {
        return Err(Failure::new(
            FailureClass::Invalid.exit_code(),
            format!(
                "{}: directories nested more than {MAX_DIR_DEPTH} deep",
                dir.display()
            ),
        ));
    }
    if is_shard_set(dir) {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let io = |e: std::io::Error| Failure::of(dir, &tensorseal::ReadError::Io(e));
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        entries.push((entry.path(), entry.file_type().map_err(io)?));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, kind) in entries {
        if kind.is_dir() {
            walk(&path, depth + 1, out)?;
        } else if path.extension().is_some_and(|e| e == "tseal") {
            out.push(path);
        }
    }
    Ok(())
}

pub(crate) fn run(args: VerifyArgs) -> Result<(), Failure> {
    let mut files = Vec::new();
    for arg in &args.files {
        expand(arg, &mut files)?;
    }
    // A folder of checkpoints is many even when it holds one; a shard set is one item.
    let many = files.len() > 1 || args.files.iter().any(|f| f.is_dir() && !is_shard_set(f));
    let outcomes: Vec<Outcome> = match policy(&args) {
        Ok(policy) => files
            .par_iter()
            .map(|file| {
                let url = crate::remote::url_of(file);
                if url.is_none() && is_shard_set(file) {
                    return shard_set_outcome(file, &policy, &args);
                }
                let result = match url {
                    Some(url) => crate::remote::verify(url, &policy),
                    None => Checkpoint::open_verified(file, &policy, &Limits::default())
                        .map(|(_, report)| report)
                        .map_err(|e| (e.class().exit_code(), e.kind(), error_chain(&e))),
                }
                .and_then(|report| match &args.attestation {
                    Some(a) => crate::attest::check(a, file, policy.keys())
                        .map(|()| report)
                        .map_err(|(f, kind)| (f.code, kind, f.message)),
                    None => Ok(report),
                });
                Outcome {
                    file: file.clone(),
                    set: None,
                    result,
                }
            })
            .collect(),
        Err(PolicyError::NoTrust) => files
            .iter()
            .map(|file| Outcome {
                file: file.clone(),
                set: None,
                result: Err((
                    FailureClass::Verification.exit_code(),
                    "no_trust",
                    "no trusted keys given: pass --trust PUB or --policy POLICY.toml, or --digests-only to check integrity without authenticity".to_string(),
                )),
            })
            .collect(),
        Err(PolicyError::Key(f)) => return Err(f),
    };
    if args.json {
        let values: Vec<Value> = outcomes.iter().map(|o| to_json(&args, o)).collect();
        let value = if many {
            Value::Array(values)
        } else {
            values.into_iter().next().expect("one file")
        };
        crate::output::json(&value);
    } else {
        for o in &outcomes {
            if let Ok(report) = &o.result {
                print_human(&o.file, report);
                if let Some(set) = &o.set {
                    print_set(set);
                }
            }
        }
    }
    let failed: Vec<(&Path, u8, &'static str, &str)> = outcomes
        .iter()
        .filter_map(|o| {
            let (code, kind, message) = o.result.as_ref().err()?;
            Some((o.file.as_path(), *code, *kind, message.as_str()))
        })
        .collect();
    let worst = failed.iter().map(|f| f.1).max().unwrap_or(0);
    match failed.as_slice() {
        [] => Ok(()),
        [(file, code, kind, message)] if !many => {
            Err(Failure::new(*code, format!("{}: {message}", file.display())).with_kind(kind))
        }
        _ => {
            for (file, _, _, message) in &failed {
                eprintln!("tensorseal: error: {}: {message}", file.display());
            }
            Err(Failure::new(
                worst,
                format!(
                    "{} of {} files failed verification",
                    failed.len(),
                    outcomes.len()
                ),
            ))
        }
    }
}

enum PolicyError {
    NoTrust,
    Key(Failure),
}

fn policy(args: &VerifyArgs) -> Result<TrustPolicy, PolicyError> {
    let mut policy = if let Some(path) = &args.policy {
        crate::trust::read_policy(path).map_err(PolicyError::Key)?
    } else if args.digests_only {
        TrustPolicy::integrity_only()
    } else {
        if args.trust.is_empty() {
            return Err(PolicyError::NoTrust);
        }
        let mut keys = Vec::with_capacity(args.trust.len());
        for path in &args.trust {
            keys.push(PublicKey::read(path).map_err(|e| PolicyError::Key(Failure::of(path, &e)))?);
        }
        TrustPolicy::trusting(keys).threshold(args.threshold as usize)
    };
    for (k, v) in &args.expect {
        policy = policy.expect(k, v);
    }
    if let Some(min) = args.min_step {
        policy = policy.min_step(min);
    }
    Ok(policy)
}

/// A shard set's outcome: the set verified as spec §11.3 says, reported as its index.
fn shard_set_outcome(path: &Path, policy: &TrustPolicy, args: &VerifyArgs) -> Outcome {
    let refusal = |e: &dyn Classify| (e.class().exit_code(), e.kind(), error_chain(e));
    if args.attestation.is_some() {
        return Outcome {
            file: path.to_path_buf(),
            set: None,
            result: Err((
                Failure::USAGE,
                "usage",
                "--attestation is about one file, not a shard set".into(),
            )),
        };
    }
    match verify_shard_set(path, policy, &Limits::default()) {
        Ok(set) => Outcome {
            file: path.to_path_buf(),
            result: Ok(set.index.clone()),
            set: Some(set),
        },
        Err(e) => Outcome {
            file: path.to_path_buf(),
            set: None,
            result: Err(refusal(&e)),
        },
    }
}

fn print_set(set: &ShardSetReport) {
    let ix = &set.shard_index;
    outln!(
        "  shard set: {} shard(s) bound by {} (world size {}, {} entries, {} chunks{}{})",
        set.shards.len(),
        set.index_path.display(),
        ix.world_size,
        ix.entries.len(),
        ix.chunk_count(),
        ix.run_id
            .as_ref()
            .map_or_else(String::new, |r| format!(", run_id {r}")),
        ix.step.map_or_else(String::new, |s| format!(", step {s}")),
    );
    for (file, r) in &set.shards {
        outln!(
            "    {file}: OK, {} bytes, {} blob(s), {} bytes hashed",
            r.file_length,
            r.blobs,
            r.bytes_hashed
        );
    }
}

fn print_human(file: &Path, r: &VerifyReport) {
    let trusted: Vec<&str> = r
        .signers
        .iter()
        .filter(|s| s.trusted)
        .map(|s| &s.key_id[..16])
        .collect();
    if r.authenticated {
        outln!(
            "{}: OK, signed by trusted key(s) {}",
            file.display(),
            trusted.join(", ")
        );
    } else {
        outln!(
            "{}: OK (integrity only: digests match; authenticity was NOT checked)",
            file.display()
        );
    }
    outln!(
        "  manifest sha256 {}; {} blob(s), {} chunk(s), {} bytes hashed; {} signature(s)",
        hex::encode(r.manifest_sha256),
        r.blobs,
        r.chunks,
        r.bytes_hashed,
        r.signers.len()
    );
}

/// One file's `--json` report. Its members are documented in README.md and stable.
fn to_json(args: &VerifyArgs, o: &Outcome) -> Value {
    let report = o.result.as_ref().ok();
    let error = o.result.as_ref().err();
    json!({
        "file": o.file.display().to_string(),
        "ok": report.is_some(),
        "exit_code": o.code(),
        "authenticity_checked": !args.digests_only,
        "manifest_sha256": report.map(|r| hex::encode(r.manifest_sha256)),
        "file_length": report.map(|r| r.file_length),
        "signers": report.map(|r| r.signers.iter().map(crate::trust::signer_json).collect::<Vec<_>>()),
        "blobs": report.map(|r| r.blobs),
        "chunks": report.map(|r| r.chunks),
        "bytes_hashed": report.map(|r| r.bytes_hashed),
        "shard_set": o.set.as_ref().map(|set| json!({
            "index": set.index_path.display().to_string(),
            "run_id": set.shard_index.run_id,
            "step": set.shard_index.step,
            "world_size": set.shard_index.world_size,
            "entries": set.shard_index.entries.len(),
            "chunks": set.shard_index.chunk_count(),
            "shards": set.shards.iter().map(|(file, r)| json!({
                "file": file,
                "file_length": r.file_length,
                "manifest_sha256": hex::encode(r.manifest_sha256),
                "signers": r.signers.iter().map(crate::trust::signer_json).collect::<Vec<_>>(),
                "blobs": r.blobs,
                "chunks": r.chunks,
                "bytes_hashed": r.bytes_hashed,
            })).collect::<Vec<_>>(),
        })),
        "error": error.map(|(_, kind, message)| json!({"kind": kind, "message": message})),
    })
}
