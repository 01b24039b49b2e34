//! `--audit-log` (and `TENSORSEAL_AUDIT_LOG`): one hash-chained JSON line per command, and
//! `tensorseal audit verify` (spec/AUDIT.md).

use crate::failure::Failure;
use clap::{ArgMatches, Args, Subcommand};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tensorseal::error_chain as chain;
use tensorseal::{PublicKey, SecretKey};
use tensorseal_provenance::{AuditLog, file_facts, host_and_user, verify_log};

/// Files up to this size are hashed for the log; larger ones are recorded with their length.
const HASH_LIMIT: u64 = 64 << 20;

/// Where and how to log, from the global options.
#[derive(Debug, Args)]
pub(crate) struct AuditOptions {
    /// Append a hash-chained JSON record of this command to PATH (also TENSORSEAL_AUDIT_LOG).
    #[arg(long, global = true, value_name = "PATH")]
    audit_log: Option<PathBuf>,
    /// Seal the audit log with a checkpoint signed by this private key (path, env:VAR, fd:N).
    #[arg(long, global = true, value_name = "KEY")]
    audit_key: Option<PathBuf>,
}

impl AuditOptions {
    fn log_path(&self) -> Option<PathBuf> {
        self.audit_log.clone().or_else(|| {
            std::env::var_os("TENSORSEAL_AUDIT_LOG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }
}

impl AuditOptions {
    /// Refuses `--audit-key` without a log before the command runs (exit 2).
    pub(crate) fn check(&self) -> Result<(), Failure> {
        if self.audit_key.is_some() && self.log_path().is_none() {
            return Err(Failure::new(
                Failure::USAGE,
                "--audit-key needs --audit-log PATH or TENSORSEAL_AUDIT_LOG",
            ));
        }
        Ok(())
    }
}

/// The raw values of argument `id` of a subcommand, if it has that argument.
fn raw(m: &ArgMatches, id: &str) -> Vec<PathBuf> {
    m.try_get_raw(id)
        .ok()
        .flatten()
        .map(|v| v.map(PathBuf::from).collect())
        .unwrap_or_default()
}

fn public_key_id(p: &Path) -> Value {
    PublicKey::read(p).map_or(Value::Null, |k| Value::String(k.key_id()))
}

/// A signing key's id where it can be read again (a file or env:VAR; a descriptor is spent).
fn secret_key_id(p: &Path) -> Value {
    let spec = p.to_str().unwrap_or("");
    let key = if let Some(var) = spec.strip_prefix("env:") {
        std::env::var(var)
            .ok()
            .and_then(|pem| SecretKey::from_pem(&pem).ok())
    } else if spec.starts_with("fd:") {
        None
    } else {
        SecretKey::read(p).ok()
    };
    key.map_or(Value::Null, |k| Value::String(k.public_key().key_id()))
}

/// Appends the record of one command; a log that cannot be written fails the command (exit 1):
/// an audited action must not pass unrecorded.
pub(crate) fn record(
    options: &AuditOptions,
    matches: &ArgMatches,
    result: &Result<(), Failure>,
) -> Result<(), Failure> {
    // Reading the log (`audit verify`) and key utilities are not actions on artifacts; logging
    // `audit verify` into the log it checks would also unseal that log's tail.
    if matches!(matches.subcommand_name(), Some("audit" | "key")) {
        return Ok(());
    }
    let Some(path) = options.log_path() else {
        return Ok(());
    };
    // The action is the subcommand path (`verify`, `audit verify`, `key id`).
    let mut action = Vec::new();
    let mut args = matches;
    while let Some((name, sub)) = args.subcommand() {
        action.push(name);
        args = sub;
    }
    let action = action.join(" ");
    let key = match &options.audit_key {
        Some(k) => Some(crate::keysource::secret_key(k)?),
        None => None,
    };
    let inputs: Vec<Value> = ["file", "files", "input", "log", "attestation", "signature"]
        .iter()
        .flat_map(|id| raw(args, id))
        .map(|p| file_facts(&p, HASH_LIMIT))
        .collect();
    let outputs: Vec<Value> = ["output", "out", "attest"]
        .iter()
        .flat_map(|id| raw(args, id))
        .map(|p| file_facts(&p, HASH_LIMIT))
        .collect();
    let trust: Vec<Value> = raw(args, "trust")
        .iter()
        .map(|p| public_key_id(p))
        .collect();
    let signers: Vec<Value> = ["key", "sign"]
        .iter()
        .flat_map(|id| raw(args, id))
        .map(|p| secret_key_id(&p))
        .collect();
    let (host, user) = host_and_user();
    let (exit_code, error, error_kind) = match result {
        Ok(()) => (0, Value::Null, Value::Null),
        Err(f) => (f.code, f.message.clone().into(), f.kind().into()),
    };
    let rec = json!({
        "host": host,
        "user": user,
        "pid": std::process::id(),
        "tool": format!("tensorseal {}", env!("CARGO_PKG_VERSION")),
        "action": action,
        "inputs": inputs,
        "outputs": outputs,
        "policy": raw(args, "policy").first().map(|p| file_facts(p, HASH_LIMIT)),
        "trust_key_ids": trust,
        "signer_key_ids": signers,
        "result": if exit_code == 0 { "ok" } else { "error" },
        "exit_code": exit_code,
        "error": error,
        "error_kind": error_kind,
    });
    let fail = |e: &dyn std::error::Error| {
        Failure::new(
            crate::trust::INVALID,
            format!("{}: audit log: {}", path.display(), chain(e)),
        )
    };
    let mut log = AuditLog::open(&path, key.as_ref()).map_err(|e| fail(&e))?;
    log.append(rec).map_err(|e| fail(&e))?;
    log.seal().map_err(|e| fail(&e))
}

/// Check an audit log.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check an audit log's hash chain and checkpoint signatures.
    #[command(after_help = "\
Examples:
  tensorseal audit verify audit.jsonl
  tensorseal audit verify audit.jsonl --key audit.pub   # also: sealed by this key to the end

Exit 0 when the chain is intact, 3 when a line was edited, deleted, reordered, torn, or
(with --key) the log does not end with a checkpoint signed by a trusted key, naming the
line; 1 when the log cannot be read. The head printed is the SHA-256 of the last line:
keep it elsewhere to detect a later truncation back to an earlier checkpoint.")]
    Verify {
        /// The log (JSON lines).
        log: PathBuf,
        /// Trusted checkpoint key (public); repeatable. Requires the log to be sealed.
        #[arg(long, value_name = "PUB")]
        key: Vec<PathBuf>,
        /// Print a JSON report on stdout (also on failure).
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: AuditArgs) -> Result<(), Failure> {
    let AuditCommand::Verify { log, key, json } = args.command;
    let mut keys = Vec::with_capacity(key.len());
    for p in &key {
        keys.push(PublicKey::read(p).map_err(|e| crate::trust::invalid(p, &e))?);
    }
    match verify_log(&log, &keys) {
        Ok(r) => {
            if json {
                let v = json!({"log": log.display().to_string(), "ok": true, "exit_code": 0,
                    "lines": r.lines, "records": r.records, "checkpoints": r.checkpoints,
                    "head": r.head, "checkpoint_key_ids": r.checkpoint_keys, "error": null});
                crate::output::json(&v);
            } else {
                outln!(
                    "{}: OK, {} line(s): {} record(s), {} signed checkpoint(s); head {}",
                    log.display(),
                    r.lines,
                    r.records,
                    r.checkpoints,
                    r.head
                );
            }
            Ok(())
        }
        Err(e) => {
            let code = if e.kind() == "io" {
                crate::trust::INVALID
            } else {
                crate::trust::VERIFICATION
            };
            let message = format!("{}: {}", log.display(), chain(&e));
            if json {
                let v = json!({"log": log.display().to_string(), "ok": false, "exit_code": code,
                    "error": {"kind": e.kind(), "message": message,
                              "line": match &e { tensorseal_provenance::AuditError::Broken { line, .. } => Some(*line), _ => None }}});
                crate::output::json(&v);
            }
            Err(Failure::new(code, message).with_kind(e.kind()))
        }
    }
}
