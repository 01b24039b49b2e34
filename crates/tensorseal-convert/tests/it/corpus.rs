//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and the minimised crashes
//! (`fuzz/regressions/<target>/`, named after what they found) through the fuzz targets'
//! checks, so `cargo test` covers every seed and every regression the fuzzers found.

use std::path::Path;
use tensorseal_convert::fuzz_support::{
    check_dcp, check_npy, check_safetensors, check_torch_loader, check_zip, convert_dcp_bytes,
    small_convert_options,
};

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let corpus = fuzz.join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .chain(
            std::fs::read_dir(fuzz.join("regressions").join(target))
                .into_iter()
                .flatten(),
        )
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for path in &files {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} panics", path.display());
    }
    files.len()
}

#[test]
fn fuzz_corpora_replay_without_panics() {
    assert!(replay("zip_reader", check_zip) >= 10);
    assert!(replay("npy", check_npy) >= 10);
    assert!(replay("safetensors_in", check_safetensors) >= 5);
    assert!(replay("torch_loader", check_torch_loader) >= 50);
    assert!(replay("dcp_folder", check_dcp) >= 5);
}

#[test]
fn the_dcp_seed_of_a_real_checkpoint_converts_in_memory() {
    // The seed must reach the end of the reader, or the fuzzer starts from refusals only.
    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/dcp_folder/seed_two_rank");
    let data = std::fs::read(seed).unwrap();
    let out = convert_dcp_bytes(&data, &small_convert_options(false))
        .expect("the seed splits")
        .expect("the seed converts");
    assert_eq!((out.source_format, out.stats.tensors), ("dcp", 4));
}
