//! torch's pre-0.1.10 tar checkpoints: the fixture written by `tests/data/make_tar.py` (and
//! loaded by torch there) converts to exactly the bytes the script recorded, and checkpoints
//! built here from the same documented layout, valid and then broken one field at a time, are
//! refused with an error that says where.

use serde_json::{Map, Value};
use std::path::Path;
use tensorseal::{Checkpoint, Limits, TrustPolicy};
use tensorseal_convert::{ConvertError, ConvertOptions, convert};

fn test_data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The `{"dict": [[k, v], ...]}` pairs of a rendered dict, through an OrderedDict wrapper.
fn pairs(v: &Value) -> &Vec<Value> {
    let v = if v.get("typed").is_some() {
        &v["value"]
    } else {
        v
    };
    v["dict"].as_array().expect("a dict")
}

fn lookup<'v>(v: &'v Value, key: &str) -> &'v Value {
    pairs(v)
        .iter()
        .find(|p| p[0] == key)
        .map(|p| &p[1])
        .unwrap_or_else(|| panic!("no key {key:?} in {v}"))
}

fn rendered(path: &Path) -> Value {
    let ckpt = Checkpoint::open(path, &Limits::default()).unwrap();
    ckpt.verify(&TrustPolicy::integrity_only()).unwrap();
    assert_eq!(ckpt.metadata()["source_format"], "torch-legacy");
    tensorseal::json::tree_to_json(ckpt.root(), &mut |t| {
        let mut m = Map::new();
        m.insert(
            "hex".into(),
            Value::String(hex::encode(ckpt.tensor_bytes(t).unwrap())),
        );
        m
    })
}

#[test]
fn the_hand_written_fixture_converts_bit_exact() {
    let expected: Value =
        serde_json::from_slice(&std::fs::read(test_data("tar_state_dict.json")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.tseal");
    let report = convert(
        &test_data("tar_state_dict.pt"),
        &out,
        &ConvertOptions::default(),
    )
    .unwrap();
    assert!(
        report.notes.iter().any(|n| n.contains("tar format")),
        "{:?}",
        report.notes
    );
    let tree = rendered(&out);
    assert_eq!(lookup(&tree, "epoch"), &expected["epoch"]);
    let sd = lookup(&tree, "state_dict");
    let want = expected["tensors"].as_array().unwrap();
    assert_eq!(pairs(sd).len(), want.len());
    for (got, want) in pairs(sd).iter().zip(want) {
        assert_eq!(got[0], want["name"]);
        let t = &got[1]["tensor"];
        assert_eq!(t["dtype"], want["dtype"], "{}", want["name"]);
        assert_eq!(t["shape"], want["shape"], "{}", want["name"]);
        assert_eq!(t["hex"], want["hex"], "{}", want["name"]);
    }
    // Deterministic: the same input gives the same bytes.
    let again = dir.path().join("p.tseal");
    convert(
        &test_data("tar_state_dict.pt"),
        &again,
        &ConvertOptions::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

// ----- a writer for the format, from its documented layout --------------------------------------

/// Pickle opcodes of protocol 2, as torch wrote them.
mod p {
    pub(super) fn pickle(body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80, 2];
        v.extend_from_slice(body);
        v.push(b'.');
        v
    }
    pub(super) fn int(i: i64) -> Vec<u8> {
        let mut v = vec![b'J'];
        v.extend_from_slice(&i32::try_from(i).unwrap().to_le_bytes());
        v
    }
    pub(super) fn long(i: i64) -> Vec<u8> {
        let mut v = vec![0x8a, 8];
        v.extend_from_slice(&i.to_le_bytes());
        v
    }
    pub(super) fn text(s: &str) -> Vec<u8> {
        let mut v = vec![b'X'];
        v.extend_from_slice(&(s.len() as u32).to_le_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }
    pub(super) fn global(module: &str, name: &str) -> Vec<u8> {
        format!("c{module}\n{name}\n").into_bytes()
    }
    pub(super) fn tuple(items: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![b'('];
        for i in items {
            v.extend_from_slice(i);
        }
        v.push(b't');
        v
    }
    pub(super) fn list(items: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![b']', b'('];
        for i in items {
            v.extend_from_slice(i);
        }
        v.push(b'e');
        v
    }
    /// `{name: persistent_load(pid), ...}`.
    pub(super) fn dict_of_pids(items: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut v = vec![b'}', b'('];
        for (k, pid) in items {
            v.extend(text(k));
            v.extend_from_slice(pid);
            v.push(b'Q');
        }
        v.push(b'u');
        v
    }
    /// `os.system('echo tensorseal-hostile-fixture')`.
    pub(super) fn os_system() -> Vec<u8> {
        let mut v = global("os", "system");
        v.extend(tuple(&[text("echo tensorseal-hostile-fixture")]));
        v.push(b'R');
        v
    }
}

struct Storage {
    key: i64,
    class: &'static str,
    numel: i64,
    data: Vec<u8>,
}

struct TensorRec {
    key: i64,
    storage: i64,
    class: (&'static str, &'static str),
    ndim: i32,
    pad: [u8; 4],
    size: Vec<i64>,
    stride: Vec<i64>,
    offset: i64,
}

/// A tar checkpoint as fields, each of which a test may break.
struct Ckpt {
    storage_count: i64,
    storages: Vec<Storage>,
    views: Vec<[i64; 4]>,
    storages_tail: Vec<u8>,
    tensor_count: i64,
    tensors: Vec<TensorRec>,
    object: Vec<u8>,
    members: Vec<&'static str>,
    extra: Vec<(&'static str, Vec<u8>)>,
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn tensor(key: i64, storage: i64, size: &[i64], stride: &[i64], offset: i64) -> TensorRec {
    TensorRec {
        key,
        storage,
        class: ("torch", "FloatTensor"),
        ndim: size.len() as i32,
        pad: [0; 4],
        size: size.to_vec(),
        stride: stride.to_vec(),
        offset,
    }
}

/// `{"w": (2, 2) float32 of storage 1, "v": (2,) of the view 2 = elements 1..4 of storage 1}`.
fn valid() -> Ckpt {
    Ckpt {
        storage_count: 1,
        storages: vec![Storage {
            key: 1,
            class: "FloatStorage",
            numel: 5,
            data: f32s(&[1.0, 2.0, 3.0, 4.0, 5.0]),
        }],
        views: vec![[2, 1, 1, 3]],
        storages_tail: Vec::new(),
        tensor_count: 2,
        tensors: vec![
            tensor(10, 1, &[2, 2], &[2, 1], 0),
            tensor(11, 2, &[2], &[1], 1),
        ],
        object: p::pickle(&p::dict_of_pids(&[
            ("w", p::text("10")),
            ("v", p::text("11")),
        ])),
        members: vec!["storages", "tensors", "pickle"],
        extra: Vec::new(),
    }
}

impl Ckpt {
    fn storages_member(&self) -> Vec<u8> {
        let mut v = p::pickle(&p::int(self.storage_count));
        for s in &self.storages {
            v.extend(p::pickle(&p::tuple(&[
                p::int(s.key),
                p::text("cpu"),
                p::global("torch", s.class),
            ])));
            v.extend_from_slice(&s.numel.to_le_bytes());
            v.extend_from_slice(&s.data);
        }
        let views: Vec<Vec<u8>> = self
            .views
            .iter()
            .map(|w| p::tuple(&w.map(p::long)))
            .collect();
        v.extend(p::pickle(&p::list(&views)));
        v.extend_from_slice(&self.storages_tail);
        v
    }

    fn tensors_member(&self) -> Vec<u8> {
        let mut v = p::pickle(&p::int(self.tensor_count));
        for t in &self.tensors {
            v.extend(p::pickle(&p::tuple(&[
                p::int(t.key),
                p::int(t.storage),
                p::global(t.class.0, t.class.1),
            ])));
            v.extend_from_slice(&t.ndim.to_le_bytes());
            v.extend_from_slice(&t.pad);
            for x in t.size.iter().chain(&t.stride).chain([&t.offset]) {
                v.extend_from_slice(&x.to_le_bytes());
            }
        }
        v
    }

    fn bytes(&self) -> Vec<u8> {
        let mut parts: Vec<(&str, Vec<u8>)> = Vec::new();
        for m in &self.members {
            parts.push((
                m,
                match *m {
                    "storages" => self.storages_member(),
                    "tensors" => self.tensors_member(),
                    "pickle" => self.object.clone(),
                    other => unreachable!("{other}"),
                },
            ));
        }
        parts.extend(self.extra.iter().map(|(n, d)| (*n, d.clone())));
        tar(&parts)
    }
}

fn tar(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    for (name, data) in members {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..265].copy_from_slice(b"ustar\x0000");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        v.extend(h);
        v.extend_from_slice(data);
        v.resize(v.len().div_ceil(512) * 512, 0);
    }
    v.extend([0u8; 1024]);
    v
}

fn run(c: &Ckpt) -> Result<Value, ConvertError> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pt");
    let out = dir.path().join("o.tseal");
    std::fs::write(&input, c.bytes()).unwrap();
    let result = convert(&input, &out, &ConvertOptions::default());
    assert_eq!(
        result.is_ok(),
        out.exists(),
        "an output exists exactly when conversion succeeded"
    );
    result.map(|_| rendered(&out))
}

/// Converting `c` fails as invalid (exit 1) with a message holding every one of `needles`.
#[track_caller]
fn refused_invalid(c: &Ckpt, needles: &[&str]) {
    let e = run(c).expect_err("converted a malformed tar checkpoint");
    assert!(
        matches!(
            e,
            ConvertError::Invalid { .. } | ConvertError::Pickle { .. } | ConvertError::Limit(_)
        ),
        "not refused as invalid: {e:?}"
    );
    let text = e.to_string();
    for n in needles {
        assert!(text.contains(n), "{n:?} not in {text:?}");
    }
}

#[track_caller]
fn refused_unsafe(c: &Ckpt) {
    let e = run(c).expect_err("converted a hostile tar checkpoint");
    assert!(
        matches!(e, ConvertError::Unsafe { .. }),
        "not refused as unsafe: {e}"
    );
    assert!(e.to_string().contains("os.system"), "{e}");
}

#[test]
fn a_checkpoint_built_from_the_layout_converts() {
    let tree = run(&valid()).unwrap();
    let w = &lookup(&tree, "w")["tensor"];
    assert_eq!(w["shape"], serde_json::json!([2, 2]));
    assert_eq!(w["hex"], hex::encode(f32s(&[1.0, 2.0, 3.0, 4.0])));
    // The view starts at element 1 of storage 1, the tensor at element 1 of the view.
    let v = &lookup(&tree, "v")["tensor"];
    assert_eq!(v["hex"], hex::encode(f32s(&[3.0, 4.0])));
    // Protocol-0 text persistent ids name tensors too.
    let mut c = valid();
    c.object = b"(dp0\nVw\np1\nP10\nsVv\np2\nP11\ns.".to_vec();
    let tree = run(&c).unwrap();
    assert_eq!(
        lookup(&tree, "v")["tensor"]["hex"],
        hex::encode(f32s(&[3.0, 4.0]))
    );
}

#[test]
fn broken_storages_are_refused() {
    let mut c = valid();
    c.storages[0].data.truncate(12);
    c.views.clear();
    // The 8 bytes of the views pickle are counted as the missing element: short anyway.
    refused_invalid(&c, &["tar member storages", "key 1"]);

    let mut c = valid();
    c.storages[0].numel = 1000;
    refused_invalid(
        &c,
        &[
            "tar member storages",
            "key 1",
            "1000 elements of torch.float32: needs 4000 bytes",
        ],
    );

    let mut c = valid();
    c.storages[0].numel = -1;
    refused_invalid(&c, &["key 1", "negative"]);

    let mut c = valid();
    c.storage_count = 2;
    refused_invalid(&c, &["tar member storages", "record 1"]);

    let mut c = valid();
    c.storage_count = 1 << 30;
    refused_invalid(&c, &["max_tensors"]);

    let mut c = valid();
    c.storages_tail = vec![0; 3];
    refused_invalid(&c, &["3 bytes after the last record"]);

    let mut c = valid();
    c.views = vec![[2, 1, 3, 3]];
    refused_invalid(
        &c,
        &[
            "key 2",
            "view covers elements 3..3+3 of storage 1, which has 5",
        ],
    );

    let mut c = valid();
    c.views = vec![[2, 9, 0, 1]];
    refused_invalid(&c, &["key 2", "root 9"]);

    let mut c = valid();
    c.views = vec![[1, 1, 0, 1]];
    refused_invalid(&c, &["key 1", "duplicate storage key"]);

    let mut c = valid();
    c.storages[0].class = "QInt8Storage";
    c.storages[0].data.truncate(5);
    assert!(matches!(run(&c), Err(ConvertError::Unsupported { .. })));

    let mut c = valid();
    c.storages.push(Storage {
        key: 3,
        class: "FloatStorage",
        numel: 1,
        data: f32s(&[9.0]),
    });
    c.storage_count = 2;
    refused_invalid(&c, &["key 3", "not used by any tensor"]);
}

#[test]
fn broken_tensor_records_are_refused() {
    let broken = |f: &dyn Fn(&mut TensorRec)| {
        let mut c = valid();
        f(&mut c.tensors[0]);
        c
    };
    refused_invalid(
        &broken(&|t| t.offset = 100),
        &[
            "tar member tensors",
            "key 10",
            "need 104 elements of storage 1, which has 5",
        ],
    );
    refused_invalid(
        &broken(&|t| t.stride = vec![100, 1]),
        &["key 10", "need 102 elements"],
    );
    refused_invalid(&broken(&|t| t.size = vec![-1, 2]), &["key 10", "negative"]);
    refused_invalid(&broken(&|t| t.ndim = -1), &["key 10", "ndim is negative"]);
    refused_invalid(&broken(&|t| t.ndim = 65), &["max_rank"]);
    refused_invalid(&broken(&|t| t.pad = [1, 0, 0, 0]), &["key 10", "not zero"]);
    refused_invalid(
        &broken(&|t| t.storage = 7),
        &["key 10", "storage 7 is not in"],
    );
    refused_invalid(
        &broken(&|t| t.class = ("torch", "FloatStorage")),
        &["key 10", "not a torch tensor class"],
    );
    refused_invalid(
        &broken(&|t| t.key = 11),
        &["key 11", "duplicate tensor key"],
    );
    refused_invalid(&broken(&|t| t.key = 1), &["key 1", "names a storage too"]);
    let mut c = valid();
    c.tensor_count = 3;
    refused_invalid(&c, &["tar member tensors"]);
    let mut c = valid();
    c.tensors[1].size.pop();
    c.tensors[1].stride.pop();
    // ndim still says 1: the offset is read as the stride, then the member ends early.
    refused_invalid(&c, &["tar member tensors", "key 11"]);
}

#[test]
fn members_are_checked() {
    for missing in ["storages", "tensors", "pickle"] {
        let mut c = valid();
        c.members.retain(|m| *m != missing);
        refused_invalid(&c, &[&format!("no `{missing}` member")]);
    }
    let mut c = valid();
    c.extra.push(("evil", b"x".to_vec()));
    refused_invalid(&c, &["tar member evil", "unexpected member"]);
    let mut c = valid();
    c.members.push("pickle");
    refused_invalid(&c, &["tar member pickle", "appears twice"]);
    // sys_info is read (a pickled dict) and ignored, as torch does.
    let mut c = valid();
    c.extra.push(("sys_info", p::pickle(b"}(u")));
    run(&c).unwrap();
    c.extra[0].1 = p::pickle(&p::int(3));
    refused_invalid(&c, &["tar member sys_info", "not a dict"]);
}

#[test]
fn persistent_ids_must_name_tensors() {
    let mut c = valid();
    c.object = p::pickle(&p::dict_of_pids(&[("w", p::text("99"))]));
    refused_invalid(
        &c,
        &[
            "tar member pickle",
            "persistent id 99",
            "no tensor has this key",
        ],
    );
    // A storage key is not a tensor key (torch would hand back a bare storage).
    c.object = p::pickle(&p::dict_of_pids(&[("w", p::text("1"))]));
    refused_invalid(&c, &["persistent id 1:", "no tensor has this key"]);
    c.object = p::pickle(&p::dict_of_pids(&[("w", p::text("ten"))]));
    refused_invalid(&c, &["not a tensor key"]);
    // The zip/legacy form means something else to torch's tar reader.
    c.object = p::pickle(&p::dict_of_pids(&[(
        "w",
        p::tuple(&[
            p::text("storage"),
            p::global("torch", "FloatStorage"),
            p::text("1"),
            p::text("cpu"),
            p::int(5),
        ]),
    )]));
    refused_invalid(&c, &["('storage', ...) persistent id in a tar checkpoint"]);
    // Int ids are looked up like str ones (torch does int(saved_id)).
    c.object = p::pickle(&p::dict_of_pids(&[("w", p::int(10)), ("v", p::int(11))]));
    run(&c).unwrap();
}

#[test]
fn hostile_pickles_in_any_member_are_unsafe() {
    let mut c = valid();
    c.object = p::pickle(&p::os_system());
    refused_unsafe(&c);
    // Unsafe wins over a structural problem elsewhere.
    c.views = vec![[2, 1, 3, 3]];
    refused_unsafe(&c);

    let mut c = valid();
    c.tensors[0].class = ("os", "system");
    refused_unsafe(&c);

    let mut c = valid();
    let mut s = c.storages_member();
    let count = p::pickle(&p::int(1));
    s.splice(0..count.len(), p::pickle(&p::os_system()));
    c.storages.clear();
    c.views.clear();
    c.storage_count = 0;
    // Rebuilt by hand: the first pickle of `storages` is the payload.
    c.members = vec!["tensors", "pickle"];
    c.extra.push(("storages", s));
    refused_unsafe(&c);
}

fn scanned(c: &Ckpt) -> tensorseal_convert::ScanOutcome {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pt");
    std::fs::write(&input, c.bytes()).unwrap();
    tensorseal_convert::scan(&input, &tensorseal_convert::ConvertOptions::default()).unwrap()
}

#[test]
fn scan_walks_every_record_and_agrees_with_convert() {
    use tensorseal_convert::ScanVerdict;
    let ok = scanned(&valid());
    assert_eq!((ok.verdict(), &ok.problem), (ScanVerdict::Safe, &None));
    // Counts, one record pickle per storage and tensor, views, the object.
    assert_eq!(ok.members.len(), 1 + 1 + 1 + 1 + 2 + 1, "{:?}", ok.members);

    // A payload in the second tensor record, which a scan of each member's first pickle misses.
    let mut c = valid();
    c.tensors[1].class = ("os", "system");
    assert_eq!(scanned(&c).verdict(), ScanVerdict::Unsafe);

    for (c, needle) in [
        (
            {
                let mut c = valid();
                c.tensors[0].offset = 100;
                c
            },
            "need 104 elements",
        ),
        (
            {
                let mut c = valid();
                c.object = p::pickle(&p::dict_of_pids(&[("w", p::text("99"))]));
                c
            },
            "persistent id 99",
        ),
        (
            {
                let mut c = valid();
                c.storages.push(Storage {
                    key: 3,
                    class: "FloatStorage",
                    numel: 1,
                    data: f32s(&[9.0]),
                });
                c.storage_count = 2;
                c
            },
            "not used by any tensor",
        ),
    ] {
        let s = scanned(&c);
        assert_eq!(s.verdict(), ScanVerdict::Invalid, "{needle}");
        assert!(
            s.problem.as_deref().unwrap().contains(needle),
            "{:?}",
            s.problem
        );
        assert!(run(&c).is_err());
    }
}
