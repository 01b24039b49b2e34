//! Prints the scan report of a pickle file:
//! `cargo run -p tensorseal-pickle --example scan -- [--trace] [--multi] FILE [OFFSET]`.
//!
//! `--trace` lists every opcode with its offset; `--multi` accepts bytes after STOP (legacy
//! files: scan again at the printed end offset).

use std::io::Write;

use tensorseal_pickle::{DeclaredStorages, Options, scan};

fn main() {
    let mut options = Options::default();
    let mut positional = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--trace" => options.trace_opcodes = true,
            "--multi" => options.allow_trailing_bytes = true,
            _ => positional.push(arg),
        }
    }
    let path = positional
        .first()
        .expect("usage: scan [--trace] [--multi] FILE [OFFSET]");
    let offset = positional.get(1).map_or(0, |o| o.parse().expect("offset"));
    let data = std::fs::read(path).expect("read");
    let report = scan(&data, offset, &options, &mut DeclaredStorages);
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a panic.
    for (at, op) in report.trace() {
        let _ = writeln!(out, "{at:>8} {op}");
    }
    let _ = write!(out, "{report}");
    if let Some(end) = report.end() {
        let _ = writeln!(out, "  ends at offset {end} of {}", data.len());
    }
}
