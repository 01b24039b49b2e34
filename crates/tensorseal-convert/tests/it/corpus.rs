//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz targets' checks, so
//! `cargo test` covers every seed and every regression the fuzzers found.

use std::path::Path;
use tensorseal_convert::fuzz_support::{check_npy, check_safetensors, check_zip};

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} panics", path.display());
        count += 1;
    }
    count
}

#[test]
fn fuzz_corpora_replay_without_panics() {
    assert!(replay("zip_reader", check_zip) >= 10);
    assert!(replay("npy", check_npy) >= 10);
    assert!(replay("safetensors_in", check_safetensors) >= 5);
}
