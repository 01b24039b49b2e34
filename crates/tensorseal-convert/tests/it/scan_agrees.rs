//! `scan` agrees with `convert`: over every fixture in the repository (real checkpoints, hostile
//! files, the pickle corpus, the fuzz seeds), with and without inert records allowed, scan's
//! exit code equals the one `convert` has with the same options, and scan says the file
//! converts exactly when it does.

use std::path::{Path, PathBuf};
use tensorseal::Classify;
use tensorseal_convert::{ConvertOptions, convert, scan};

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn convert_exit_code(input: &Path, output: &Path, options: &ConvertOptions<'_>) -> u8 {
    match convert(input, output, options) {
        Ok(_) => 0,
        Err(e) => e.class().exit_code(),
    }
}

#[test]
fn scan_exit_code_equals_convert_exit_code_on_every_fixture() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in [
        "tests/fixtures",
        "crates/tensorseal-pickle/tests/data",
        "crates/tensorseal-convert/tests/data",
        "fuzz/corpus/torch_loader",
        "fuzz/corpus/zip_reader",
        "fuzz/corpus/npy",
        "fuzz/corpus/safetensors_in",
    ] {
        files_under(&root.join(dir), &mut files);
    }
    assert!(files.len() > 1000, "only {} fixtures found", files.len());
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("out.tseal");
    let mut disagreements = Vec::new();
    let mut by_code = [0usize; 5];
    for allow_objects in [false, true] {
        let options = ConvertOptions {
            allow_objects,
            ..ConvertOptions::default()
        };
        for input in &files {
            let converted = convert_exit_code(input, &output, &options);
            let _ = std::fs::remove_file(&output);
            let scanned = match scan(input, &options) {
                Ok(outcome) => {
                    assert_eq!(
                        outcome.convertible(),
                        converted == 0,
                        "{}: scan says convertible={}, convert exits {converted}",
                        input.display(),
                        outcome.convertible()
                    );
                    outcome.exit_code()
                }
                Err(e) => e.class().exit_code(),
            };
            by_code[usize::from(converted)] += 1;
            if scanned != converted {
                disagreements.push(format!(
                    "{} (allow_objects={allow_objects}): scan exits {scanned}, convert {converted}",
                    input.display()
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // The corpus exercises every outcome, so the equality above is not vacuous.
    assert!(
        by_code[0] > 100 && by_code[1] > 100 && by_code[4] > 50,
        "{by_code:?}"
    );
}
