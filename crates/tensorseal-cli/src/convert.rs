//! `convert`, `scan` and `export`.

use crate::failure::Failure;
use clap::Args;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use tensorseal::{Classify, Compression, PublicKey, TrustPolicy, error_chain};
use tensorseal_convert::{ConvertOptions, ExportOptions, SandboxMode, ScanVerdict};

mod objects;

#[derive(Debug, Args)]
pub(crate) struct SandboxArgs {
    /// Fail if the OS sandbox (seccomp + Landlock) cannot be fully applied.
    #[arg(long, conflicts_with = "no_sandbox")]
    require_sandbox: bool,
    /// Do not lock the process down (for debugging; the converter still never executes anything).
    #[arg(long)]
    no_sandbox: bool,
}

impl SandboxArgs {
    fn mode(&self) -> SandboxMode {
        if self.no_sandbox {
            SandboxMode::Disabled
        } else if self.require_sandbox {
            SandboxMode::Required
        } else {
            SandboxMode::BestEffort
        }
    }
}

/// Convert a legacy checkpoint into a signed tensorseal file, executing nothing.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  tensorseal convert model.pt model.tseal --sign ci-signer.key
  tensorseal convert pytorch_model.bin.index.json model.tseal --compress zstd --meta run_id=run-42
  tensorseal convert checkpoint.ckpt out.tseal --allow-objects --json
  tensorseal convert ckpt/step-1000 step-1000.tseal   # a torch.distributed.checkpoint folder
  tensorseal convert dcp-set/ whole.tseal             # a tensorseal.dcp shard set, consolidated
  tensorseal convert ckpt/step-1000 sealed/step-1000/ --sign ci-signer.key --meta step=1000
                                                      # a DCP folder to a signed shard set

Inputs (recognised from content, never from the file name): torch zip checkpoints
(torch >= 1.6), torch legacy files and pre-0.1.10 tar checkpoints, plain pickles, numpy
.npy/.npz, safetensors, Hugging Face sharded checkpoints given by their *.index.json, and
torch.distributed.checkpoint (DCP) folders written by FileSystemWriter (.metadata and
*.distcp), consolidated into one file whose tree is what dcp_to_torch_save gives: every
tensor's chunks must tile it exactly once, each chunk read as the torch.save zip it is.
When OUTPUT is a folder (an existing directory, or a path ending in '/'), a DCP folder becomes
a shard set instead (spec §11): each __RANK_N.distcp file one signed shard __RANK_N.tseal with
its chunks as saved, then the signed index.tseal that binds them, which tensorseal.dcp loads at
any world size; the folder must not hold .tseal files, and a failed run leaves none.
A tensorseal shard set (a folder holding index.tseal) is consolidated the same way, every
shard bound to the index and every chunk's digests checked as it is read.
Pickles are interpreted as data: known constructors become typed values, code-execution
primitives make the file refused (exit 4), and unknown classes are refused (exit 4) unless
--allow-objects keeps them as inert records. The process locks itself down (seccomp + Landlock) after
opening its files; --require-sandbox fails if that is not possible, --no-sandbox skips it.

The output is written to a temporary file and renamed only on success; the input is never
modified. Same input and options give a byte-identical file. Exit 0 converted, 1 invalid
or unsupported input, 2 usage, 4 refused as unsafe or unknown.")]
pub(crate) struct ConvertArgs {
    /// The checkpoint to convert: a file, or a DCP checkpoint folder.
    input: PathBuf,
    /// The tensorseal file to write (for a DCP folder: or a folder, for a shard set).
    output: PathBuf,
    /// Sign with this private key (PKCS#8 PEM: a path, env:VAR or fd:N); repeatable.
    #[arg(long, value_name = "KEY")]
    sign: Vec<PathBuf>,
    /// Compress blobs: `auto` (the plane codec where it saves 5%, raw elsewhere), `planes` (the
    /// plane codec wherever it saves anything), `zstd` (byte-grouped, level 1), `zstd=LEVEL`
    /// (1-22) or `none`. Plane-coded files are format version 2; zstd blobs that do not shrink
    /// by 5% stay raw.
    #[arg(
        long,
        value_name = "auto|planes|zstd[=LEVEL]|none",
        value_parser = str::parse::<Compression>
    )]
    compress: Option<Compression>,
    /// Keep instances of unknown classes as inert records (never instantiated) instead of
    /// refusing the file. Code-execution primitives are refused regardless.
    #[arg(long)]
    allow_objects: bool,
    /// Add signed metadata KEY=VALUE (e.g. run_id, step, created_at); repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_pair)]
    meta: Vec<(String, String)>,
    /// Also write an in-toto attestation (DSSE) of the output and its source, signed with the
    /// first --sign key, to PATH.
    #[arg(long, value_name = "PATH", requires = "sign")]
    attest: Option<PathBuf>,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// Print a JSON report on stdout (also on failure); no progress bar.
    #[arg(long)]
    json: bool,
    /// No progress bar or summary.
    #[arg(long)]
    quiet: bool,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

pub(crate) fn convert(args: ConvertArgs) -> Result<(), Failure> {
    if crate::remote::url_of(&args.input).is_some() || crate::remote::url_of(&args.output).is_some()
    {
        return objects::convert(&args);
    }
    let mut keys = Vec::with_capacity(args.sign.len());
    for path in &args.sign {
        keys.push(crate::keysource::secret_key(path)?);
    }
    let show_progress = !args.json && !args.quiet && std::io::stderr().is_terminal();
    let bar = show_progress.then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} converting [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    });
    let progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let options = ConvertOptions {
        allow_objects: args.allow_objects,
        compression: args.compress.unwrap_or_default(),
        signers: keys.iter().collect(),
        metadata: args.meta.iter().cloned().collect::<BTreeMap<_, _>>(),
        sandbox: args.sandbox.mode(),
        progress: Some(&progress),
        ..ConvertOptions::default()
    };
    if tensorseal::is_shard_set(&args.input) {
        return consolidate(&args, &options);
    }
    if tensorseal_convert::is_folder_output(&args.output) {
        let result = tensorseal_convert::convert_to_shard_set(&args.input, &args.output, &options);
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        return match result {
            Ok(report) => to_shard_set(&args, keys.first(), &report),
            Err(e) => Err(refused(&args, &e)),
        };
    }
    let result = tensorseal_convert::convert(&args.input, &args.output, &options);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match result {
        Ok(report) => {
            report.sandbox.eprint_warnings();
            if let (Some(out), Some(key)) = (&args.attest, keys.first()) {
                let input = attestation_input(
                    &args,
                    report.source_format,
                    &report.source_sha256,
                    &report.inert_objects,
                );
                crate::attest::write(&args.output, key, &input, out)?;
            }
            if args.json {
                let mut v = json!({
                    "input": args.input.display().to_string(),
                    "output": args.output.display().to_string(),
                    "ok": true,
                    "exit_code": 0,
                });
                let report_json = report.to_json(args.sandbox.mode());
                merge(&mut v, report_json);
                v["error"] = Value::Null;
                crate::output::json(&v);
            } else if !args.quiet {
                eprintln!(
                    "converted {} ({}) -> {}: {} tensors, {} blobs, {} bytes{}{}",
                    args.input.display(),
                    report.source_format,
                    args.output.display(),
                    report.stats.tensors,
                    report.stats.blobs,
                    report.stats.bytes,
                    if report.stats.shared > 0 {
                        format!(", {} shared", report.stats.shared)
                    } else {
                        String::new()
                    },
                    if keys.is_empty() {
                        ", unsigned".to_string()
                    } else {
                        format!(", signed by {} key(s)", keys.len())
                    },
                );
                for note in &report.notes {
                    eprintln!("  note: {note}");
                }
                if !report.inert_objects.is_empty() {
                    eprintln!(
                        "  kept {} unknown object(s) as inert records",
                        report.inert_objects.len()
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(refused(&args, &e)),
    }
}

/// The attestation's account of a conversion that succeeded: it passed the same pickle policy
/// that `scan` applies, so its verdict is safe, or unknown classes kept as inert records.
fn attestation_input(
    args: &ConvertArgs,
    source_format: &str,
    source_sha256: &str,
    inert_objects: &[String],
) -> tensorseal_provenance::AttestationInput {
    tensorseal_provenance::AttestationInput {
        source_format: Some(source_format.to_string()),
        source_sha256: Some(source_sha256.to_string()),
        source_uri: Some(args.input.display().to_string()),
        scan_verdict: Some(
            if inert_objects.is_empty() {
                ScanVerdict::Safe
            } else {
                ScanVerdict::UnknownObjects
            }
            .name()
            .to_string(),
        ),
        inert_objects: inert_objects.to_vec(),
        options: json!({
            "allow_objects": args.allow_objects,
            "compress": args.compress.is_some(),
            "inert_objects": inert_objects.len(),
        }),
    }
}

/// A failed conversion: its JSON report (with --json) and its exit code and kind.
fn refused(args: &ConvertArgs, e: &tensorseal_convert::ConvertError) -> Failure {
    let (code, kind) = (e.class().exit_code(), e.kind());
    let message = format!("{}: {}", args.input.display(), error_chain(e));
    if args.json {
        let v = json!({
            "input": args.input.display().to_string(),
            "output": args.output.display().to_string(),
            "ok": false,
            "exit_code": code,
            "error": {"kind": kind, "message": message},
        });
        crate::output::json(&v);
    }
    Failure::new(code, message).with_kind(kind)
}

/// `convert DCP_DIR SET/`: reports the shard set written; an attestation covers its index,
/// which binds every shard.
fn to_shard_set(
    args: &ConvertArgs,
    key: Option<&tensorseal::SecretKey>,
    report: &tensorseal_convert::ShardSetConversion,
) -> Result<(), Failure> {
    report.sandbox.eprint_warnings();
    if let (Some(out), Some(key)) = (&args.attest, key) {
        let input = attestation_input(args, "dcp", &report.source_sha256, &report.inert_objects);
        crate::attest::write(&report.index.path, key, &input, out)?;
    }
    if args.json {
        let mut v = json!({
            "input": args.input.display().to_string(),
            "output": args.output.display().to_string(),
            "ok": true,
            "exit_code": 0,
        });
        merge(&mut v, report.to_json(args.sandbox.mode()));
        v["error"] = Value::Null;
        crate::output::json(&v);
    } else if !args.quiet {
        eprintln!(
            "converted {} (dcp) -> {}: shard set of {} shard(s) bound by {}, {} tensors, {} \
             blobs, {} bytes{}",
            args.input.display(),
            args.output.display(),
            report.shards.len(),
            report.index.path.display(),
            report.stats.tensors,
            report.stats.blobs,
            report.stats.bytes,
            if report.signed_by.is_empty() {
                ", unsigned".to_string()
            } else {
                format!(", signed by {} key(s)", report.signed_by.len())
            },
        );
    }
    Ok(())
}

/// Adds the members of `more` (an object) to `v` (an object).
fn merge(v: &mut Value, more: Value) {
    if let (Value::Object(v), Value::Object(more)) = (v, more) {
        v.extend(more);
    }
}

/// Report every global and call in a checkpoint's pickles, and whether it converts.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  tensorseal scan model.pt
  tensorseal scan suspicious.bin --json | jq '.members[].findings[] | select(.verdict != \"allowed\")'
  tensorseal scan checkpoint.ckpt --allow-objects   # would convert --allow-objects succeed?

The verdict has two parts. Code safety: safe, unknown-objects or unsafe, from every pickle's
findings (the most severe decides: a payload followed by garbage is still unsafe). And
convertibility: scan runs the conversion itself to the end (containers, storages, tensor
metadata, output bounds) without writing anything, so it reports what convert with the same
options would refuse, naming the member, offset or tensor path. Exit 0 only when convert would
succeed; 4 when a pickle is unsafe, or holds unknown classes and --allow-objects is not given;
1 when the file is malformed or unsupported.")]
pub(crate) struct ScanArgs {
    /// The file to scan.
    input: PathBuf,
    /// Judge convertibility as `convert --allow-objects` would: unknown classes become inert
    /// records instead of a refusal. Code-execution primitives are refused regardless.
    #[arg(long)]
    allow_objects: bool,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub(crate) fn scan(args: ScanArgs) -> Result<(), Failure> {
    let options = ConvertOptions {
        allow_objects: args.allow_objects,
        sandbox: args.sandbox.mode(),
        ..ConvertOptions::default()
    };
    // An object is scanned from a local copy, downloaded before the sandbox locks this down.
    let local = objects::LocalInput::of(&args.input)?;
    let input = local.path();
    let outcome =
        tensorseal_convert::scan(input, &options).map_err(|e| Failure::of(&args.input, &e))?;
    let verdict = outcome.verdict();
    let code = outcome.exit_code();
    if args.json {
        let mut v = json!({"input": args.input.display().to_string()});
        merge(&mut v, outcome.to_json());
        crate::output::json(&v);
    } else {
        outln!(
            "{}: {} ({})",
            args.input.display(),
            verdict.name(),
            outcome.format
        );
        for m in &outcome.members {
            let mut allowed: BTreeMap<String, usize> = BTreeMap::new();
            outln!("  {}: {}", m.member, m.report.status());
            for f in m.report.findings() {
                if f.verdict == tensorseal_pickle::Verdict::Allowed {
                    if let Some(g) = f.kind.global() {
                        *allowed.entry(g.to_string()).or_default() += 1;
                    }
                } else {
                    outln!("    {f}");
                }
            }
            if let Some(e) = m.report.error() {
                outln!("    error: {e}");
            }
            if !allowed.is_empty() {
                let list: Vec<String> = allowed.iter().map(|(g, n)| format!("{g} ({n})")).collect();
                outln!("    allowed: {}", list.join(", "));
            }
        }
        match &outcome.conversion {
            Ok(c) => outln!(
                "  converts: {} tensors, {} blobs, {} bytes{}",
                c.stats.tensors,
                c.stats.blobs,
                c.stats.bytes,
                if c.inert_objects.is_empty() {
                    String::new()
                } else {
                    format!(", {} inert object(s)", c.inert_objects.len())
                }
            ),
            Err(e) => outln!("  does not convert: {}", error_chain(e)),
        }
        if let Some(p) = outcome.problem.as_ref().filter(|_| outcome.convertible()) {
            outln!("  problem: {p}");
        }
    }
    if code == 0 {
        Ok(())
    } else {
        Err(Failure::new(
            code,
            format!("{}: {}", args.input.display(), verdict.name()),
        ))
    }
}

/// `convert SET OUT.tseal` of a shard set: one file, every shard bound and every chunk verified
/// as it is read (integrity: signatures present must be valid; none is required). No pickle is
/// involved, so no sandbox either.
fn consolidate(args: &ConvertArgs, options: &ConvertOptions<'_>) -> Result<(), Failure> {
    let report = tensorseal_convert::consolidate(
        &args.input,
        &args.output,
        &TrustPolicy::integrity_only(),
        options,
    )
    .map_err(|e| Failure::of(&args.input, &e))?;
    if args.json {
        let v = json!({
            "input": args.input.display().to_string(),
            "output": args.output.display().to_string(),
            "ok": true,
            "exit_code": 0,
            "source_format": "tensorseal-shard-set",
            "index_manifest_sha256": report.index_manifest_sha256,
            "shards": report.shards,
            "tensors": report.tensors,
            "values": report.values,
            "manifest_sha256": hex::encode(report.output.manifest_sha256),
            "file_length": report.output.length,
            "error": null,
        });
        crate::output::json(&v);
    } else if !args.quiet {
        eprintln!(
            "consolidated {} (shard set, {} shard(s)) -> {}: {} tensors, {} other values",
            args.input.display(),
            report.shards,
            args.output.display(),
            report.tensors,
            report.values
        );
    }
    Ok(())
}

/// Write a tensorseal file's tensors as a safetensors file, after verifying it.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  tensorseal export model.tseal model.safetensors
  tensorseal export model.tseal model.safetensors --trust ci-signer.pub

Digests are verified first (and, with --trust, signatures). One safetensors entry per
tensor, named by joining its tree path with '.' (list indices and int keys in decimal);
a checkpoint whose root is a single tensor names it 'tensor'. Values safetensors cannot
hold (scalars, strings, objects, complex128, ...) are left out and counted on stderr; a
JSON rendering of the tree is kept in __metadata__. Exit 0 written, 1 invalid input,
3 verification failed.")]
pub(crate) struct ExportArgs {
    /// The tensorseal file.
    input: PathBuf,
    /// The safetensors file to write.
    output: PathBuf,
    /// Require a signature by this public key; repeatable (default: integrity only).
    #[arg(long, value_name = "PUB")]
    trust: Vec<PathBuf>,
    /// Require what this trust policy file requires (spec/POLICY.md) instead of --trust.
    #[arg(long, value_name = "POLICY.toml", conflicts_with = "trust")]
    policy: Option<PathBuf>,
}

pub(crate) fn export(args: ExportArgs) -> Result<(), Failure> {
    let mut options = ExportOptions::default();
    if let Some(path) = &args.policy {
        options.policy = crate::trust::read_policy(path)?;
    } else if !args.trust.is_empty() {
        let mut keys = Vec::new();
        for path in &args.trust {
            keys.push(PublicKey::read(path).map_err(|e| Failure::of(path, &e))?);
        }
        options.policy = TrustPolicy::trusting(keys);
    }
    // An object is exported from a local copy (pinned to one object), verified as a file is.
    let local = objects::LocalInput::of(&args.input)?;
    let input = local.path();
    let report = if tensorseal::is_shard_set(input) {
        tensorseal_convert::export_shard_set(input, &args.output, &options)
            .map_err(|e| Failure::of(&args.input, &e))?
    } else {
        tensorseal_convert::export(input, &args.output, &options)
            .map_err(|e| Failure::of(&args.input, &e))?
    };
    eprintln!(
        "exported {} tensor(s), {} bytes, to {}",
        report.written.len(),
        report.bytes_written,
        report.output.display()
    );
    for s in &report.skipped {
        eprintln!("  left out tensor {} ({}): {}", s.path, s.dtype, s.reason);
    }
    if report.values_left_out > 0 {
        eprintln!(
            "  left out {} non-tensor value(s){}",
            report.values_left_out,
            if report.tree_in_metadata {
                " (their JSON rendering is in __metadata__)"
            } else {
                ""
            }
        );
    }
    Ok(())
}
