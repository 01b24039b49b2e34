//! The hostile inputs of the project's fixture corpus (tests/data/hostile, built from bytes by
//! another engineer from the same research): each must get its expected outcome.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use serde_json::Value;
use tensorseal_pickle::{
    DeclaredStorages, Options, ScanStatus, StorageError, StorageRequest, load, scan,
};

use crate::fixtures::data_dir;

fn outcome(status: ScanStatus) -> &'static str {
    match status {
        ScanStatus::Clean => "ok",
        ScanStatus::Unknown => "unknown-objects",
        ScanStatus::Invalid => "invalid",
        ScanStatus::Unsafe => "unsafe",
    }
}

fn accepted(expected: &Value) -> Vec<String> {
    let mut out = vec![expected["expect"].as_str().unwrap().to_owned()];
    if let Some(also) = expected["also_acceptable"].as_array() {
        out.extend(also.iter().map(|v| v.as_str().unwrap().to_owned()));
    }
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn hostile_pickles_get_their_expected_outcome() {
    let dir = data_dir().join("hostile");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.starts_with("p_") || !name.ends_with(".pkl") {
            continue;
        }
        let expected = read_json(&dir.join(format!("{name}.expected.json")));
        let data = fs::read(&path).unwrap();
        let report = scan(&data, 0, &Options::default(), &mut DeclaredStorages);
        let got = outcome(report.status());
        assert!(
            accepted(&expected).iter().any(|a| a == got),
            "{name}: {got}\n{report}"
        );
        // load agrees: it succeeds exactly when the report is clean.
        let loaded = load(&data, 0, &Options::default(), &mut DeclaredStorages);
        assert_eq!(
            loaded.is_ok(),
            report.status() == ScanStatus::Clean,
            "{name}"
        );
        count += 1;
    }
    assert!(count >= 30, "{count}");
}

#[test]
fn hostile_legacy_files_are_walked_pickle_by_pickle() {
    let dir = data_dir().join("hostile");
    for name in ["l_magic_by_reduce.pt", "l_payload_in_4th_pickle.pt"] {
        let data = fs::read(dir.join(name)).unwrap();
        let expected = read_json(&dir.join(format!("{name}.expected.json")));
        let mut opts = Options::default();
        opts.allow_trailing_bytes = true;
        let mut worst = ScanStatus::Clean;
        let mut at = 0;
        for _ in 0..5 {
            let report = scan(&data, at, &opts, &mut DeclaredStorages);
            worst = worst.max(report.status());
            match report.end() {
                Some(end) if report.error().is_none() => at = end,
                _ => break,
            }
        }
        let got = outcome(worst);
        assert!(
            accepted(&expected).iter().any(|a| a == got),
            "{name}: {got}"
        );
    }
}

#[test]
fn hostile_tensor_metadata_is_refused() {
    let dir = data_dir().join("hostile");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let expected = read_json(&path.join("expected.json"));
        let pickle = fs::read(path.join("data.pkl")).unwrap();
        let mut records = HashMap::new();
        for e in fs::read_dir(path.join("data")).unwrap() {
            let p = e.unwrap().path();
            let len = fs::metadata(&p).unwrap().len();
            records.insert(p.file_name().unwrap().to_str().unwrap().to_owned(), len);
        }
        let mut handler = |req: &StorageRequest<'_>| -> Result<u64, StorageError> {
            records
                .get(req.key)
                .copied()
                .ok_or_else(|| StorageError::new(format!("no record data/{}", req.key)))
        };
        let report = scan(&pickle, 0, &Options::default(), &mut handler);
        let got = outcome(report.status());
        assert!(
            accepted(&expected).iter().any(|a| a == got),
            "{name}: {got}\n{report}"
        );
        if got != "ok" {
            assert!(
                load(&pickle, 0, &Options::default(), &mut handler).is_err(),
                "{name}"
            );
        }
        count += 1;
    }
    assert!(count >= 9, "{count}");
}
