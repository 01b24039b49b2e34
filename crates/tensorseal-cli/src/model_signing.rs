//! `model-signing verify`: checks a model against a bundle made by OpenSSF model-signing
//! (`model_signing sign key`), with the signer's ECDSA public key.

use crate::failure::Failure;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use tensorseal::{Classify as _, error_chain};
use tensorseal_provenance::{EcPublicKey, verify_model_signing};

/// Read bundles made by OpenSSF model-signing.
#[derive(Debug, Args)]
pub(crate) struct ModelSigningArgs {
    #[command(subcommand)]
    command: ModelSigningCommand,
}

#[derive(Debug, Subcommand)]
enum ModelSigningCommand {
    /// Verify a model directory (or file) against its model-signing bundle.
    #[command(after_help = "\
Examples:
  model_signing sign key --private_key signer.pem --signature model.sig ./model
  tensorseal model-signing verify ./model --signature model.sig --public-key signer.pub

Checks what `model_signing verify key` checks, with the same verdicts: the key hint, the
ECDSA signature (P-256, P-384 or P-521) over the DSSE envelope, the statement's root digest,
and every file (or shard) of the model against the SHA-256 the bundle lists, with no file
missing or extra. Ignored paths are the bundle's, and the bundle itself.
model-signing cannot verify tensorseal's Ed25519 signatures; this is the other direction.

Exit 0 when the model matches, 3 when the signature, key or any file does not, 1 when the
bundle is malformed, unreadable, or uses a certificate or a hash other than SHA-256.")]
    Verify {
        /// The model: a directory, or the one file that was signed.
        input: PathBuf,
        /// The bundle (`model_signing sign --signature`).
        #[arg(long, value_name = "PATH", default_value = "model.sig")]
        signature: PathBuf,
        /// The signer's public key (PEM, ECDSA P-256/384/521).
        #[arg(long, value_name = "PUB")]
        public_key: PathBuf,
        /// Print a JSON report on stdout (also on failure).
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: ModelSigningArgs) -> Result<(), Failure> {
    let ModelSigningCommand::Verify {
        input,
        signature,
        public_key,
        json,
    } = args.command;
    let result =
        EcPublicKey::read(&public_key).and_then(|k| verify_model_signing(&input, &signature, &k));
    match result {
        Ok(r) => {
            if json {
                let v = json!({
                    "input": input.display().to_string(),
                    "signature": signature.display().to_string(),
                    "ok": true,
                    "exit_code": 0,
                    "model_name": r.model_name,
                    "root_sha256": r.root_sha256,
                    "method": r.method,
                    "curve": r.curve,
                    "files": r.files,
                    "resources": r.resources,
                    "bytes": r.bytes,
                    "error": null,
                });
                crate::output::json(&v);
            } else {
                outln!(
                    "OK {}: {} file(s), {} {} resource(s), {} bytes, signed with {} \
                     (model-signing bundle {})",
                    input.display(),
                    r.files,
                    r.resources,
                    r.method,
                    r.bytes,
                    r.curve,
                    signature.display()
                );
            }
            Ok(())
        }
        Err(e) => {
            let (code, kind) = (e.class().exit_code(), e.kind());
            let message = format!("{}: {}", signature.display(), error_chain(&e));
            if json {
                let v = json!({
                    "input": input.display().to_string(),
                    "signature": signature.display().to_string(),
                    "ok": false,
                    "exit_code": code,
                    "error": {"kind": kind, "message": message},
                });
                crate::output::json(&v);
            }
            Err(Failure::new(code, message).with_kind(kind))
        }
    }
}
