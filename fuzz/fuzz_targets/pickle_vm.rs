//! Fuzzes the pickle interpreter: `scan` and `load` on arbitrary bytes, with default and small
//! limits, must never panic, and must agree on whether the pickle is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_pickle::{DeclaredStorages, Limits, Options, Py2Strings, load, scan};

fuzz_target!(|data: &[u8]| {
    let mut small = Limits::default();
    small.max_opcodes = 100_000;
    small.max_nodes = 100_000;
    small.max_tree_nodes = 1_000_000;
    let mut opt_in = Options::with_limits(small);
    opt_in.keep_unknown_objects = true;
    opt_in.allow_trailing_bytes = true;
    opt_in.py2_strings = Py2Strings::Latin1;
    for options in [Options::default(), opt_in] {
        let report = scan(data, 0, &options, &mut DeclaredStorages);
        let _ = report.to_string();
        if let Ok(graph) = load(data, 0, &options, &mut DeclaredStorages) {
            assert!(graph.end() <= data.len());
            assert!(report.error().is_none());
            // Legacy files: the next pickle starts where this one ended.
            let _ = scan(data, graph.end(), &options, &mut DeclaredStorages);
        }
    }
});
