//! The `tensorseal` command. This is the only place where errors become exit codes.

// Declared first: its macros are textually scoped to the modules after it.
#[macro_use]
mod output;

mod attest;
mod audit;
mod convert;
mod failure;
mod inspect;
mod keys;
mod keysource;
mod model_signing;
mod remote;
mod render;
mod trust;
mod verify;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use failure::Failure;
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit codes (the same for every command):
  0  success
  1  invalid input or I/O error
  2  usage error
  3  verification failed (missing, untrusted or bad signature, digest mismatch,
     malformed or truncated signed file)
  4  refused as unsafe (the converter)";

/// Signed, pickle-free ML checkpoints.
#[derive(Debug, Parser)]
#[command(name = "tensorseal", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    audit: audit::AuditOptions,
}

#[derive(Debug, Subcommand)]
enum Command {
    Keygen(keys::KeygenArgs),
    Sign(keys::SignArgs),
    Verify(verify::VerifyArgs),
    Inspect(inspect::InspectArgs),
    Convert(convert::ConvertArgs),
    Scan(convert::ScanArgs),
    Export(convert::ExportArgs),
    Key(keysource::KeyArgs),
    Audit(audit::AuditArgs),
    Attest(attest::AttestArgs),
    ModelSigning(model_signing::ModelSigningArgs),
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)));
    let (matches, cli) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // clap prints help and version to stdout with exit 0, usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { Failure::USAGE } else { 0 });
        }
    };
    if let Err(f) = cli.audit.check() {
        eprintln!("tensorseal: error: {}", f.message);
        return ExitCode::from(f.code);
    }
    let result = match cli.command {
        Command::Audit(args) => audit::run(args),
        Command::Attest(args) => attest::run(args),
        Command::Keygen(args) => keys::keygen(args),
        Command::Sign(args) => keys::sign(args),
        Command::Verify(args) => verify::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Convert(args) => convert::convert(args),
        Command::Scan(args) => convert::scan(args),
        Command::Export(args) => convert::export(args),
        Command::Key(args) => keysource::run(args),
        Command::ModelSigning(args) => model_signing::run(args),
    };
    let result = match audit::record(&cli.audit, &matches, &result) {
        Ok(()) => result,
        Err(f) => {
            if let Err(first) = &result {
                eprintln!("tensorseal: error: {}", first.message);
            }
            Err(f)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("tensorseal: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
