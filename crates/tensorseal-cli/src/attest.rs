//! `attest`, `convert --attest` and `verify --attestation`: in-toto statements in DSSE
//! envelopes (spec/ATTESTATION.md).

use crate::failure::Failure;
use clap::Args;
use std::path::{Path, PathBuf};
use tensorseal::error_chain as chain;
use tensorseal::{AtomicFile, PublicKey, SecretKey};
use tensorseal_provenance::{AttestError, AttestationInput};

/// Write a signed in-toto attestation (DSSE envelope) about a tensorseal file.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  tensorseal attest model.tseal --key ci-signer.key              # writes model.tseal.intoto.jsonl
  tensorseal verify model.tseal --trust ci-signer.pub --attestation model.tseal.intoto.jsonl
  tensorseal convert model.pt model.tseal --sign ci.key --attest model.tseal.intoto.jsonl

The file's digests are verified first. The statement's subject is the file (its SHA-256
and manifest SHA-256); its predicate (https://tensorseal.dev/attestation/checkpoint/v1)
records the converter version, the signed metadata (run_id, step) and, from convert
--attest, the source format and SHA-256.")]
pub(crate) struct AttestArgs {
    /// The tensorseal file.
    file: PathBuf,
    /// Private key (PKCS#8 PEM: a path, env:VAR or fd:N).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
    /// Where to write the envelope (default FILE.intoto.jsonl).
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

fn failure(path: &Path, e: &AttestError) -> Failure {
    let code = match e {
        AttestError::Io(_) => crate::trust::INVALID,
        AttestError::Malformed(_) => crate::trust::INVALID,
        _ => crate::trust::VERIFICATION,
    };
    Failure::new(code, format!("{}: {}", path.display(), chain(e))).with_kind(e.kind())
}

/// Attests `file` with `key` into `out`, written atomically.
pub(crate) fn write(
    file: &Path,
    key: &SecretKey,
    input: &AttestationInput,
    out: &Path,
) -> Result<(), Failure> {
    let a = tensorseal_provenance::attest(file, key, input).map_err(|e| failure(file, &e))?;
    let io = |e: std::io::Error| crate::trust::invalid(out, &e);
    let mut f = AtomicFile::create(out).map_err(io)?;
    std::io::Write::write_all(f.file(), format!("{}\n", a.envelope).as_bytes()).map_err(io)?;
    f.commit().map_err(io)?;
    Ok(())
}

pub(crate) fn run(args: AttestArgs) -> Result<(), Failure> {
    let key = crate::keysource::secret_key(&args.key)?;
    let out = args.out.unwrap_or_else(|| {
        let mut s = args.file.clone().into_os_string();
        s.push(".intoto.jsonl");
        s.into()
    });
    write(&args.file, &key, &AttestationInput::default(), &out)?;
    outln!(
        "attested {} with key {}: {}",
        args.file.display(),
        key.public_key().key_id(),
        out.display()
    );
    Ok(())
}

/// `verify --attestation`: the envelope must be signed by a key of the verification's trust set
/// and be about `file`. Exit 3 otherwise; the error carries its stable JSON kind.
pub(crate) fn check(
    attestation: &Path,
    file: &Path,
    trusted: &[PublicKey],
) -> Result<(), (Failure, &'static str)> {
    if trusted.is_empty() {
        let message = format!(
            "{}: --attestation needs trusted keys (--trust or --policy)",
            attestation.display()
        );
        return Err((
            Failure::new(crate::trust::VERIFICATION, message).with_kind("attestation_untrusted"),
            "attestation_untrusted",
        ));
    }
    tensorseal_provenance::check_attestation(attestation, file, trusted)
        .map(|_| ())
        .map_err(|e| (failure(attestation, &e), e.kind()))
}
