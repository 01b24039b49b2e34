//! `keygen` and `sign`.

use crate::failure::Failure;
use clap::Args;
use std::path::PathBuf;
use tensorseal::{Limits, SecretKey};

/// Generate an Ed25519 key pair: PATH.key (private, mode 0600) and PATH.pub.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  tensorseal keygen --out ci-signer
  # writes ci-signer.key (keep it secret) and ci-signer.pub (give it to verifiers)

Keys are PKCS#8 / SubjectPublicKeyInfo PEM, the same as
  openssl genpkey -algorithm ed25519 -out k.key && openssl pkey -in k.key -pubout -out k.pub
Existing files are never overwritten.")]
pub(crate) struct KeygenArgs {
    /// Path prefix of the key files.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
}

pub(crate) fn keygen(args: KeygenArgs) -> Result<(), Failure> {
    let key = SecretKey::generate().map_err(|e| Failure::of(&args.out, &e))?;
    let (key_path, pub_path) = key
        .write_pair(&args.out)
        .map_err(|e| Failure::of(&args.out, &e))?;
    outln!("private key: {}", key_path.display());
    outln!("public key:  {}", pub_path.display());
    outln!("key id:      {}", key.public_key().key_id());
    Ok(())
}

/// Add a signature to a tensorseal file, in place and atomically.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  tensorseal sign model.tseal --key ci-signer.key

The file's digests are verified first: a corrupt file is never signed. Header,
blobs and manifest keep their bytes and offsets; existing signatures stay valid.
Signing twice with the same key changes nothing.")]
pub(crate) struct SignArgs {
    /// The file to sign.
    file: PathBuf,
    /// Private key (PKCS#8 PEM): a path, env:VAR or fd:N.
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
}

pub(crate) fn sign(args: SignArgs) -> Result<(), Failure> {
    let key = crate::keysource::secret_key(&args.key)?;
    let id = key.public_key().key_id();
    let added = tensorseal::add_signature(&args.file, &key, &Limits::default())
        .map_err(|e| Failure::of(&args.file, &e))?;
    if added {
        outln!("signed {} with key {id}", args.file.display());
    } else {
        outln!(
            "{} is already signed by key {id}; unchanged",
            args.file.display()
        );
    }
    Ok(())
}
