//! Where private keys come from: a file, an environment variable (`env:VAR`) or an inherited
//! file descriptor (`fd:N`), so CI secrets need not touch the disk; and `key id`.

use crate::failure::Failure;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use tensorseal::{PublicKey, SecretKey};

/// Largest key read from an environment variable or descriptor; a PEM key is ~120 bytes.
const MAX_KEY_TEXT: u64 = 64 * 1024;

/// Reads a private key named by `spec`: `env:VAR` (the PEM text in variable VAR), `fd:N` (read
/// from inherited descriptor N, e.g. `--key fd:3 3<secret.pem`), or a file path.
pub(crate) fn secret_key(spec: &Path) -> Result<SecretKey, Failure> {
    let text = spec.to_str().unwrap_or("");
    let fail = |e: &dyn std::error::Error| crate::trust::invalid(spec, e);
    if let Some(var) = text.strip_prefix("env:") {
        let pem = std::env::var(var).map_err(|e| {
            Failure::new(
                crate::trust::INVALID,
                format!("{text}: environment variable {var}: {e}"),
            )
        })?;
        return SecretKey::from_pem(&pem).map_err(|e| fail(&e));
    }
    if let Some(fd) = text.strip_prefix("fd:") {
        let n: u32 = fd.parse().map_err(|_| {
            Failure::new(
                Failure::USAGE,
                format!("{text}: expected fd:N with N a descriptor number"),
            )
        })?;
        // /dev/fd/N reopens the inherited descriptor without unsafe code (Linux, macOS, BSDs).
        let path = PathBuf::from(format!("/dev/fd/{n}"));
        let mut pem = String::new();
        use std::io::Read as _;
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_KEY_TEXT).read_to_string(&mut pem))
            .map_err(|e| fail(&e))?;
        return SecretKey::from_pem(&pem).map_err(|e| fail(&e));
    }
    SecretKey::read(spec).map_err(|e| fail(&e))
}

/// Key utilities.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Print a key's id (SHA-256 of its DER SubjectPublicKeyInfo, spec §6), the id used by
    /// signatures, policy files (`revoked`, `key_id`) and the audit log.
    #[command(after_help = "\
Examples:
  tensorseal key id ci-signer.pub
  tensorseal key id ci-signer.key        # a private key prints its public key's id
  tensorseal key id env:TENSORSEAL_KEY   # private key PEM in an environment variable")]
    Id {
        /// A public key (PEM, DER or raw 32 bytes), or a private key (path, env:VAR or fd:N).
        key: PathBuf,
    },
}

pub(crate) fn run(args: KeyArgs) -> Result<(), Failure> {
    match args.command {
        KeyCommand::Id { key } => {
            let text = key.to_str().unwrap_or("");
            let public = if text.starts_with("env:") || text.starts_with("fd:") {
                secret_key(&key)?.public_key()
            } else {
                let bytes = std::fs::read(&key).map_err(|e| crate::trust::invalid(&key, &e))?;
                match PublicKey::from_any(&bytes) {
                    Ok(k) => k,
                    Err(public_err) => std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|pem| SecretKey::from_pem(pem).ok())
                        .map(|k| k.public_key())
                        .ok_or_else(|| crate::trust::invalid(&key, &public_err))?,
                }
            };
            outln!("{}", public.key_id());
            Ok(())
        }
    }
}
