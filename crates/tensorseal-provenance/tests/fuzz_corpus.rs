//! Replays the committed corpus of the `model_signing_bundle` fuzz target through the same
//! function the target calls, so `cargo test` catches a regression without cargo-fuzz.

use std::path::Path;

#[test]
fn model_signing_bundle_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/model_signing_bundle");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        tensorseal_provenance::fuzz_bundle(&data);
        n += 1;
    }
    assert!(n >= 3, "seeds in {}", dir.display());
}
