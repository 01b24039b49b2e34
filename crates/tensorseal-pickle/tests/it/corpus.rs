//! Replays the fuzz corpus (`fuzz/corpus/pickle_vm/`) through the fuzz target's checks, so
//! `cargo test` covers every seed and every regression the fuzzer found.

use std::fs;
use std::path::Path;

use tensorseal_pickle::{DeclaredStorages, Limits, Options, Py2Strings, load, scan};

#[test]
fn fuzz_corpus_replays_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pickle_vm");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let data = fs::read(entry.unwrap().path()).unwrap();
        let mut small = Limits::default();
        small.max_opcodes = 100_000;
        small.max_nodes = 100_000;
        small.max_tree_nodes = 1_000_000;
        let mut opt_in = Options::with_limits(small);
        opt_in.keep_unknown_objects = true;
        opt_in.allow_trailing_bytes = true;
        opt_in.py2_strings = Py2Strings::Latin1;
        for options in [Options::default(), opt_in] {
            let report = scan(&data, 0, &options, &mut DeclaredStorages);
            let _ = report.to_string();
            if let Ok(graph) = load(&data, 0, &options, &mut DeclaredStorages) {
                assert!(graph.end() <= data.len());
                assert!(report.error().is_none());
                let _ = scan(&data, graph.end(), &options, &mut DeclaredStorages);
            }
        }
        count += 1;
    }
    assert!(count >= 100, "only {count} corpus files");
}
