//! Real pickles: CPython's pickler at every protocol, numpy's, and torch.save's. Each is
//! compared with the tree CPython or torch read back from the same bytes.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tensorseal_pickle::{
    DeclaredStorages, Graph, NoStorages, Node, Options, PyInt, ScanStatus, StorageError,
    StorageKind, StorageRequest, load, scan,
};

use crate::tree::{Records, Renderer, has_unsupported, normalize};

pub(crate) fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn assert_tree(
    name: &str,
    graph: &Graph<'_>,
    records: &Records<'_>,
    expected: &Value,
) -> Vec<Value> {
    let mut r = Renderer::new(graph, records);
    let mut got = r.render(graph.root());
    let mut want = expected["tree"].clone();
    normalize(&mut got);
    normalize(&mut want);
    // Compare serialized forms: -0.0 and 0.0 differ there, as they do in the fixtures.
    assert_eq!(
        serde_json::to_string(&got).unwrap(),
        serde_json::to_string(&want).unwrap(),
        "{name}: tree differs"
    );
    r.tensors.into_iter().map(|t| t.value).collect()
}

/// Pickle files next to `X.expected.json` (`X.pkl` or `X.pN.pkl`).
fn pickles_with_expected(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(stem) = file.strip_suffix(".pkl") else {
            continue;
        };
        let base = match stem.rsplit_once(".p") {
            Some((b, n)) if n.len() == 1 && n.as_bytes()[0].is_ascii_digit() => b,
            _ => stem,
        };
        let candidates = [
            dir.join(format!("{base}.expected.json")),
            dir.join(format!("{file}.expected.json")),
        ];
        let exp = candidates
            .iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no expected for {file}"));
        out.push((path, read_json(exp)));
    }
    out
}

fn check_plain_pickles(dir: &Path) -> usize {
    let mut count = 0;
    for (path, expected) in pickles_with_expected(dir) {
        let name = path.display().to_string();
        let data = fs::read(&path).unwrap();
        let graph = load(&data, 0, &Options::default(), &mut NoStorages)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(graph.end(), data.len(), "{name}: STOP is the last byte");
        let status = graph.report().status();
        if expected.get("unsupported").is_some() {
            assert!(
                has_unsupported(&graph),
                "{name}: expected an unsupported value"
            );
        } else {
            assert_eq!(status, ScanStatus::Clean, "{name}");
            assert_tree(&name, &graph, &Records::default(), &expected);
        }
        let report = scan(&data, 0, &Options::default(), &mut NoStorages);
        assert_eq!(report.status(), status, "{name}: scan and load agree");
        count += 1;
    }
    count
}

#[test]
fn cpython_fixtures_read_as_cpython_reads_them() {
    let n = check_plain_pickles(&data_dir().join("cpython"));
    assert!(n > 200, "only {n} fixtures");
}

#[test]
fn numpy_fixtures_from_the_corpus() {
    let n = check_plain_pickles(&data_dir().join("numpy"));
    assert_eq!(n, 5);
}

/// A storage handler backed by the records of an unpacked torch zip.
fn zip_records(dir: &Path) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    // A checkpoint without tensors has no records, and git does not keep an empty `data/`.
    let Ok(entries) = fs::read_dir(dir.join("data")) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        out.insert(
            p.file_name().unwrap().to_str().unwrap().to_owned(),
            fs::read(&p).unwrap(),
        );
    }
    out
}

fn compare_tensors(name: &str, got: &[Value], expected: &Value) {
    let Some(want) = expected["tensors"].as_array() else {
        return;
    };
    assert_eq!(got.len(), want.len(), "{name}: tensor count");
    for (g, w) in got.iter().zip(want) {
        for key in [
            "dtype",
            "shape",
            "stride",
            "storage_offset",
            "storage_nbytes",
            "sha256",
            "kind",
        ] {
            if let Some(wv) = w.get(key) {
                assert_eq!(
                    g.get(key),
                    Some(wv),
                    "{name}: tensor {} field {key}",
                    w["path"]
                );
            }
        }
    }
}

#[test]
fn torch_zip_pickles_match_torch_load() {
    let root = data_dir().join("torch_files");
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 30);
    for dir in dirs {
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let expected = read_json(&dir.join("expected.json"));
        let pickle = fs::read(dir.join("data.pkl")).unwrap();
        let records = zip_records(&dir);
        let big_endian = fs::read(dir.join("byteorder"))
            .map(|b| b == b"big")
            .unwrap_or(false);
        let mut options = Options::default();
        let expect = expected["expect"].as_str().unwrap();
        options.keep_unknown_objects = expect == "unknown-objects";
        let mut handler = |req: &StorageRequest<'_>| -> Result<u64, StorageError> {
            records
                .get(req.key)
                .map(|r| r.len() as u64)
                .ok_or_else(|| StorageError::new(format!("no record data/{}", req.key)))
        };
        let result = load(&pickle, 0, &options, &mut handler);
        let report = scan(&pickle, 0, &options, &mut handler);
        match expect {
            "ok" | "unknown-objects" => {
                let graph = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                let want_status = if expect == "ok" {
                    ScanStatus::Clean
                } else {
                    ScanStatus::Unknown
                };
                assert_eq!(graph.report().status(), want_status, "{name}");
                assert_eq!(report.status(), want_status, "{name}: scan");
                let recs = Records {
                    by_key: records
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_slice()))
                        .collect(),
                    big_endian,
                };
                let tensors = assert_tree(&name, &graph, &recs, &expected);
                compare_tensors(&name, &tensors, &expected);
                if expect == "unknown-objects" {
                    // Without the opt-in, the same file is refused, naming the global.
                    let err = load(&pickle, 0, &Options::default(), &mut handler).unwrap_err();
                    assert!(err.global().is_some(), "{name}: {err}");
                }
            }
            "unsupported" => {
                let graph = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(has_unsupported(&graph), "{name}: no unsupported value");
                assert_eq!(
                    report.status(),
                    ScanStatus::Clean,
                    "{name}: allowed, not unknown"
                );
            }
            "invalid" => {
                let err = result.err().unwrap_or_else(|| panic!("{name}: loaded"));
                assert_eq!(report.status(), ScanStatus::Invalid, "{name}: {err}");
            }
            other => panic!("{name}: unexpected expectation {other}"),
        }
    }
}

/// The legacy format: five pickles back to back, then the storages. This walks it the way the
/// converter does: magic, protocol, sys_info, the object (recording storage requests), the key
/// list, then the count-prefixed records.
fn legacy(name: &str) {
    let path = data_dir().join("torch_files").join(name);
    let data = fs::read(&path).unwrap();
    let expected = read_json(
        &data_dir()
            .join("torch_files")
            .join(format!("{name}.expected.json")),
    );
    let mut opts = Options::default();
    opts.allow_trailing_bytes = true; // more pickles, then the storages, follow each pickle
    let magic = load(&data, 0, &opts, &mut NoStorages).unwrap();
    let want_magic = PyInt::from_le_twos(&0x1950a86a20f9469cfc6c_u128.to_le_bytes());
    assert_eq!(magic.node(magic.root()), &Node::Int(want_magic));
    let proto = load(&data, magic.end(), &opts, &mut NoStorages).unwrap();
    assert_eq!(proto.node(proto.root()), &Node::Int(PyInt::Small(1001)));
    let sys_info = load(&data, proto.end(), &opts, &mut NoStorages).unwrap();
    assert!(matches!(sys_info.node(sys_info.root()), Node::Dict(_)));
    let mut requests: HashMap<String, (StorageKind, u64)> = HashMap::new();
    let mut record = |req: &StorageRequest<'_>| -> Result<u64, StorageError> {
        requests.insert(req.key.to_owned(), (req.kind, req.numel));
        DeclaredStorages.resolve_declared(req)
    };
    let main = load(&data, sys_info.end(), &opts, &mut record).unwrap();
    let keys = load(&data, main.end(), &opts, &mut NoStorages).unwrap();
    let Node::List(items) = keys.node(keys.root()) else {
        panic!("key list")
    };
    let mut offset = keys.end();
    let mut records = HashMap::new();
    for &k in items {
        let key = keys.as_str(k).unwrap().to_owned();
        let (kind, numel) = requests[&key];
        let count = u64::from_le_bytes(data[offset..offset + 8].try_into().unwrap());
        assert_eq!(count, numel, "{name}: record count of {key}");
        let len = (numel * kind.unit_size().unwrap()) as usize;
        records.insert(key, &data[offset + 8..offset + 8 + len]);
        offset += 8 + len;
    }
    assert_eq!(
        offset,
        data.len(),
        "{name}: no bytes after the last storage"
    );
    let recs = Records {
        by_key: records,
        big_endian: false,
    };
    let tensors = assert_tree(name, &main, &recs, &expected);
    compare_tensors(name, &tensors, &expected);
}

trait ResolveDeclared {
    fn resolve_declared(&mut self, req: &StorageRequest<'_>) -> Result<u64, StorageError>;
}

impl ResolveDeclared for DeclaredStorages {
    fn resolve_declared(&mut self, req: &StorageRequest<'_>) -> Result<u64, StorageError> {
        tensorseal_pickle::StorageResolver::resolve(self, req)
    }
}

#[test]
fn legacy_state_dict_walks_five_pickles() {
    legacy("legacy_state_dict.pt");
}

#[test]
fn legacy_file_with_v3_dtypes() {
    legacy("legacy_v3_dtypes.pt");
}

/// Genuine legacy files written by a 2018 torch (LPIPS weights, from the corpus's `real/`).
#[test]
fn legacy_files_from_an_old_torch() {
    legacy("legacy_real_lpips_alex_v0.1.pth");
    legacy("legacy_real_lpips_vgg_v0.1.pth");
}
