//! Replays every committed fuzz input (`fuzz/corpus/<target>/`, and minimised crashes in
//! `fuzz/regressions/<target>/`) through the entry points the fuzz targets call, so that
//! `cargo test` catches a regression without cargo-fuzz.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, entry: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let corpus = inputs(&fuzz.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "no committed corpus for {target} in {}",
        fuzz.display()
    );
    let regressions = inputs(&fuzz.join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| entry(&data));
        assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
    }
    println!(
        "{target}: {} corpus and {} regression inputs replayed",
        corpus.len(),
        regressions.len()
    );
}

#[test]
fn format_reader_corpus() {
    replay("format_reader", tensorseal::fuzz::format_reader);
}

#[test]
fn format_manifest_corpus() {
    replay("format_manifest", tensorseal::fuzz::format_manifest);
}

#[test]
fn format_roundtrip_corpus() {
    replay("format_roundtrip", tensorseal::fuzz::format_roundtrip);
}

#[test]
fn planes_decode_corpus() {
    replay("planes_decode", tensorseal::fuzz::planes_decode);
}
