//! Shard sets (spec §11.3) verified as a whole, on the golden set of spec/vectors/shard-set
//! (written by torch.distributed.checkpoint through tensorseal.dcp): every way of breaking the
//! binding between the index and its shards is refused with its kind.

use std::path::{Path, PathBuf};
use tensorseal::{
    Classify, Limits, PublicKey, ShardSetError, TrustPolicy, is_shard_set, verify_shard_set,
};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors")
}

fn policy() -> TrustPolicy {
    TrustPolicy::trusting(vec![
        PublicKey::read(&vectors().join("test-key.pub")).unwrap(),
    ])
}

fn copy_set(dir: &Path) -> PathBuf {
    let to = dir.join("set");
    std::fs::create_dir(&to).unwrap();
    for e in std::fs::read_dir(vectors().join("shard-set")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

fn kind(path: &Path) -> String {
    let e = verify_shard_set(path, &policy(), &Limits::default()).unwrap_err();
    format!("{} ({})", e.kind(), tensorseal::error_chain(&e))
}

#[test]
fn the_golden_set_verifies_by_folder_or_index() {
    let set = vectors().join("shard-set");
    assert!(is_shard_set(&set) && is_shard_set(&set.join("index.tseal")));
    assert!(!is_shard_set(&vectors()));
    for p in [set.clone(), set.join("index.tseal")] {
        let r = verify_shard_set(&p, &policy(), &Limits::default()).unwrap();
        let files: Vec<&str> = r.shards.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(files, ["__0_0.tseal", "__1_0.tseal"]);
        assert_eq!(r.shard_index.world_size, 2);
        assert!(r.shard_index.chunk_count() >= 2, "{:?}", r.shard_index);
        assert!(
            r.shards
                .iter()
                .all(|(_, s)| s.authenticated && s.bytes_hashed > 0)
        );
    }
}

#[test]
fn missing_extra_truncated_and_swapped_shards_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let set = copy_set(dir.path());
    std::fs::copy(vectors().join("simple.tseal"), set.join("__2_0.tseal")).unwrap();
    let k = kind(&set);
    assert!(
        k.starts_with("shard_unlisted") && k.contains("__2_0.tseal"),
        "{k}"
    );
    std::fs::remove_file(set.join("__2_0.tseal")).unwrap();

    let shard = set.join("__1_0.tseal");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 1]).unwrap();
    let k = kind(&set);
    assert!(
        k.starts_with("shard_mismatch") && k.contains("truncated"),
        "{k}"
    );
    std::fs::remove_file(&shard).unwrap();
    let k = kind(&set);
    assert!(
        k.starts_with("shard_missing") && k.contains("__1_0.tseal"),
        "{k}"
    );
    std::fs::write(&shard, &bytes).unwrap();

    // Two shards under each other's names.
    std::fs::rename(set.join("__0_0.tseal"), set.join("tmp")).unwrap();
    std::fs::rename(&shard, set.join("__0_0.tseal")).unwrap();
    std::fs::rename(set.join("tmp"), &shard).unwrap();
    assert!(kind(&set).starts_with("shard_mismatch"));

    // A byte of a shard's tensor data: the shard's own digests.
    let dir = tempfile::tempdir().unwrap();
    let set = copy_set(dir.path());
    let shard = set.join("__0_0.tseal");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[64] ^= 1;
    std::fs::write(&shard, &bytes).unwrap();
    assert!(kind(&set).starts_with("digest_mismatch"), "{}", kind(&set));
}

#[test]
fn the_index_must_verify_and_be_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let set = copy_set(dir.path());
    let untrusted = TrustPolicy::trusting(vec![
        tensorseal::SecretKey::from_seed(&[9; 32]).public_key(),
    ]);
    let e = verify_shard_set(&set, &untrusted, &Limits::default()).unwrap_err();
    assert!(
        matches!(e, ShardSetError::Index { .. }) && e.kind() == "untrusted",
        "{e}"
    );
    // A signed file that is not an index, under the index's name.
    std::fs::copy(vectors().join("simple.tseal"), set.join("index.tseal")).unwrap();
    let k = kind(&set);
    assert!(k.starts_with("index_invalid"), "{k}");
    let dir = tempfile::tempdir().unwrap();
    let set = copy_set(dir.path());
    let index = set.join("index.tseal");
    let mut bytes = std::fs::read(&index).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&index, &bytes).unwrap();
    let e = verify_shard_set(&set, &policy(), &Limits::default()).unwrap_err();
    assert!(matches!(e, ShardSetError::Index { .. }), "{e}");
    assert_eq!(e.class(), tensorseal::FailureClass::Verification);
}

/// The golden index's tree, to break one rule of spec §11.2 at a time.
fn index_tree() -> tensorseal::Node {
    let (ckpt, _) = tensorseal::Checkpoint::open_verified(
        &vectors().join("shard-set/index.tseal"),
        &policy(),
        &Limits::default(),
    )
    .unwrap();
    ckpt.root().clone()
}

fn field<'n>(node: &'n mut tensorseal::Node, key: &str) -> &'n mut tensorseal::Node {
    let tensorseal::Node::Dict(items) = node else {
        panic!("not a dict")
    };
    &mut items
        .iter_mut()
        .find(|(k, _)| matches!(k, tensorseal::Node::Str(s) if s == key))
        .unwrap_or_else(|| panic!("no {key}"))
        .1
}

fn item(node: &mut tensorseal::Node, i: usize) -> &mut tensorseal::Node {
    let tensorseal::Node::List(items) = node else {
        panic!("not a list")
    };
    &mut items[i]
}

#[test]
fn the_python_writers_index_reads_back_to_the_identical_tree() {
    // The golden index was written by tensorseal.dcp.SealWriter: the Rust model of the index
    // (what `tensorseal convert DCP_DIR SET/` writes) must give its tree node for node.
    let tree = index_tree();
    let ix = tensorseal::ShardIndex::from_tree(&tree).unwrap();
    assert!(ix.entries.len() >= 2 && ix.chunk_count() >= 2, "{ix:?}");
    assert!(ix.planner_data.is_some());
    assert!(ix.to_tree() == tree, "{:#?}\n!=\n{tree:#?}", ix.to_tree());
}

#[test]
fn every_rule_of_the_index_tree_is_checked() {
    use tensorseal::{Node, ShardIndex};
    let ok = index_tree();
    let ix = ShardIndex::from_tree(&ok).unwrap();
    assert_eq!(ix.shards.len(), 2);
    fn s(t: &str) -> Node {
        Node::Str(t.into())
    }
    type Breaker = Box<dyn Fn(&mut Node)>;
    let cases: Vec<(&str, Breaker)> = vec![
        (
            "format",
            Box::new(|t| *field(t, "format") = s("tensorseal.dcp.index/2")),
        ),
        (
            "plain",
            Box::new(|t| *field(item(field(t, "shards"), 0), "file") = s("../x.tseal")),
        ),
        (
            "plain",
            Box::new(|t| *field(item(field(t, "shards"), 0), "file") = s("index.tseal")),
        ),
        (
            "twice",
            Box::new(|t| {
                let f = field(item(field(t, "shards"), 1), "file").clone();
                *field(item(field(t, "shards"), 0), "file") = f;
            }),
        ),
        (
            "lowercase hex",
            Box::new(|t| {
                *field(item(field(t, "shards"), 0), "manifest_sha256") = s(&"A".repeat(64))
            }),
        ),
        (
            "not in shards",
            Box::new(|t| {
                let e = item(field(t, "entries"), 0);
                let c = item(field(e, "chunks"), 0);
                *field(c, "file") = s("__7_0.tseal");
            }),
        ),
        (
            "outside",
            Box::new(|t| {
                let e = item(field(t, "entries"), 0);
                let Node::List(size) = field(e, "size").clone() else {
                    panic!()
                };
                let c = item(field(e, "chunks"), 0);
                *field(c, "offsets") = Node::List(size.clone());
            }),
        ),
        (
            "dimensions",
            Box::new(|t| {
                let e = item(field(t, "entries"), 0);
                let c = item(field(e, "chunks"), 0);
                *field(c, "sizes") = Node::List(vec![]);
            }),
        ),
        (
            "layout",
            Box::new(|t| *field(item(field(t, "entries"), 0), "layout") = s("sparse_coo")),
        ),
        (
            "memory_format",
            Box::new(|t| *field(item(field(t, "entries"), 0), "memory_format") = s("nchw")),
        ),
        (
            "requires_grad",
            Box::new(|t| *field(item(field(t, "entries"), 0), "requires_grad") = s("no")),
        ),
        (
            "no tensor encoding",
            Box::new(|t| {
                *field(item(field(t, "entries"), 0), "dtype") = tensorseal::Node::Typed(Box::new(
                    tensorseal::Typed::TorchDtype("quint8".into()),
                ))
            }),
        ),
        (
            "appears twice",
            Box::new(|t| {
                let Node::List(es) = field(t, "entries") else {
                    panic!()
                };
                let first = es[0].clone();
                es.push(first);
            }),
        ),
    ];
    for (want, break_it) in cases {
        let mut t = ok.clone();
        break_it(&mut t);
        let e = ShardIndex::from_tree(&t).unwrap_err();
        assert!(e.contains(want), "{want}: {e}");
    }
}
