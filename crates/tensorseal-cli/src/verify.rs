//! `verify`: signatures against trusted keys, metadata expectations, every digest.

use crate::failure::{self, Failure};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use tensorseal::{Checkpoint, Limits, PublicKey, TrustPolicy, VerifyReport};

/// Verify a file's signatures and every digest before it is used.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  tensorseal verify model.tseal --trust ci-signer.pub
  tensorseal verify model.tseal --trust a.pub --trust b.pub --threshold 2 --json
  tensorseal verify model.tseal --trust ci.pub --expect run_id=run-42 --min-step 12000
  tensorseal verify model.tseal --policy trust.toml  # spec/POLICY.md
  tensorseal verify model.tseal --digests-only     # integrity only, no authenticity

Without --trust, verify refuses (exit 3) unless --digests-only is given.
--expect and --min-step check signed metadata, refusing a validly signed but wrong
or older checkpoint (rollback). Exit 0 when verified, 3 when verification fails,
1 when the file or a key cannot be read.")]
pub(crate) struct VerifyArgs {
    /// The file to verify.
    file: PathBuf,
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
    /// Check integrity only (digests, structure, validity of signatures present), not who signed.
    #[arg(long, conflicts_with_all = ["trust", "threshold", "policy"])]
    digests_only: bool,
    /// Require signed metadata KEY to equal VALUE; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_expectation)]
    expect: Vec<(String, String)>,
    /// Require the signed `step` metadata to be at least N.
    #[arg(long, value_name = "N")]
    min_step: Option<u64>,
    /// Also check this in-toto attestation (DSSE envelope, `tensorseal attest`): signed by a
    /// trusted key, about this file.
    #[arg(long, value_name = "F.intoto.jsonl", conflicts_with = "digests_only")]
    attestation: Option<PathBuf>,
    /// Print a JSON report on stdout (also on failure).
    #[arg(long)]
    json: bool,
}

fn parse_expectation(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

pub(crate) fn run(args: VerifyArgs) -> Result<(), Failure> {
    let mut policy = if let Some(path) = &args.policy {
        crate::trust::read_policy(path)?
    } else if args.digests_only {
        TrustPolicy::integrity_only()
    } else {
        if args.trust.is_empty() {
            let f = Failure::new(
                Failure::VERIFICATION,
                format!(
                    "{}: no trusted keys given: pass --trust PUB or --policy POLICY.toml, or --digests-only to check integrity without authenticity",
                    args.file.display()
                ),
            );
            if args.json {
                print_json(&args, None, Some(("no_trust", f.message.as_str())), f.code);
            }
            return Err(f);
        }
        let mut keys = Vec::with_capacity(args.trust.len());
        for path in &args.trust {
            keys.push(PublicKey::read(path).map_err(|e| Failure::invalid(path, &e))?);
        }
        TrustPolicy::trusting(keys).threshold(args.threshold as usize)
    };
    for (k, v) in &args.expect {
        policy = policy.expect(k, v);
    }
    if let Some(min) = args.min_step {
        policy = policy.min_step(min);
    }
    match Checkpoint::open_verified(&args.file, &policy, &Limits::default()) {
        Ok((_, report)) => {
            if let Some(a) = &args.attestation
                && let Err((f, kind)) = crate::attest::check(a, &args.file, policy.keys())
            {
                if args.json {
                    print_json(&args, None, Some((kind, &f.message)), f.code);
                }
                return Err(f);
            }
            if args.json {
                print_json(&args, Some(&report), None, 0);
            } else {
                print_human(&args, &report);
            }
            Ok(())
        }
        Err(e) => {
            let f = Failure::verify(&args.file, &e);
            if args.json {
                print_json(
                    &args,
                    None,
                    Some((failure::verify_error_kind(&e), &failure::chain(&e))),
                    f.code,
                );
            }
            Err(f)
        }
    }
}

fn print_human(args: &VerifyArgs, r: &VerifyReport) {
    let trusted: Vec<&str> = r
        .signers
        .iter()
        .filter(|s| s.trusted)
        .map(|s| &s.key_id[..16])
        .collect();
    if r.authenticated {
        outln!(
            "{}: OK, signed by trusted key(s) {}",
            args.file.display(),
            trusted.join(", ")
        );
    } else {
        outln!(
            "{}: OK (integrity only: digests match; authenticity was NOT checked)",
            args.file.display()
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

/// The `--json` report. Its members are documented in README.md and stable.
fn print_json(
    args: &VerifyArgs,
    report: Option<&VerifyReport>,
    error: Option<(&str, &str)>,
    exit_code: u8,
) {
    let value = json!({
        "file": args.file.display().to_string(),
        "ok": report.is_some(),
        "exit_code": exit_code,
        "authenticity_checked": !args.digests_only,
        "manifest_sha256": report.map(|r| hex::encode(r.manifest_sha256)),
        "file_length": report.map(|r| r.file_length),
        "signers": report.map(|r| r.signers.iter().map(crate::trust::signer_json).collect::<Vec<_>>()),
        "blobs": report.map(|r| r.blobs),
        "chunks": report.map(|r| r.chunks),
        "bytes_hashed": report.map(|r| r.bytes_hashed),
        "error": error.map(|(kind, message)| json!({"kind": kind, "message": message})),
    });
    outln!(
        "{}",
        serde_json::to_string_pretty(&value).expect("JSON values serialize")
    );
}
