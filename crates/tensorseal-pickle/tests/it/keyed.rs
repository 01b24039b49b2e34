//! Bare-key persistent ids (torch's tar checkpoints): accepted only with a caller's
//! [`TensorTable`], turned into bounds-checked tensor nodes; refused everywhere else.

use std::sync::Arc;
use tensorseal_pickle::{
    Dtype, KeyedTensor, NoStorages, Node, Options, PickleError, StorageError, StorageRequest,
    TensorTable, load,
};

/// `{"a": pid(a), "b": pid(b)}` in protocol 2, each pid a SHORT_BINUNICODE key + BINPERSID.
fn two_refs(a: &str, b: &str) -> Vec<u8> {
    let mut v = vec![0x80, 2, b'}', b'('];
    for (k, pid) in [("a", a), ("b", b)] {
        for s in [k, pid] {
            v.push(0x8c);
            v.push(s.len() as u8);
            v.extend_from_slice(s.as_bytes());
        }
        v.push(b'Q');
    }
    v.extend_from_slice(b"u.");
    v
}

fn table(offset: u64) -> Arc<TensorTable> {
    let mut t = TensorTable::new();
    let tensor = KeyedTensor::new("1", Dtype::F32, 6, "cpu", &[2, 2], &[1, 2], offset).unwrap();
    t.insert(10, tensor.clone()).unwrap();
    assert!(t.insert(10, tensor).is_err(), "a key is taken once");
    Arc::new(t)
}

fn options(table: Arc<TensorTable>) -> Options {
    let mut o = Options::default();
    o.allow_trailing_bytes = false;
    o.tensor_table = Some(table);
    o
}

/// Confirms storage "1" at 24 bytes, counting calls.
fn resolver(calls: &mut u32) -> impl FnMut(&StorageRequest<'_>) -> Result<u64, StorageError> + '_ {
    move |req: &StorageRequest<'_>| {
        *calls += 1;
        assert_eq!((req.key, req.numel, req.nbytes), ("1", 6, 24));
        Ok(24)
    }
}

#[test]
fn bare_keys_are_refused_without_a_table() {
    let bytes = two_refs("10", "10");
    let err = load(&bytes, 0, &Options::default(), &mut NoStorages).unwrap_err();
    assert!(
        matches!(err, PickleError::TypeMismatch { .. })
            && err
                .to_string()
                .contains("expected a persistent id tuple, found str"),
        "{err}: a bare key is not a storage id"
    );
}

#[test]
fn a_table_turns_keys_into_checked_tensors() {
    let bytes = two_refs("10", "10");
    let mut calls = 0;
    let graph = load(&bytes, 0, &options(table(1)), &mut resolver(&mut calls)).unwrap();
    assert_eq!(calls, 1);
    let tensors: Vec<_> = graph.tensors().collect();
    assert_eq!(tensors.len(), 1, "both references are one tensor node");
    let t = tensors[0].1;
    assert_eq!(
        (t.dtype(), t.size(), t.stride()),
        (Dtype::F32, &[2, 2][..], &[1, 2][..])
    );
    assert_eq!(t.storage_offset(), 1);
    // Elements 1..=4 of the storage: bytes 4..20.
    assert_eq!(t.byte_range(), 4..20);
    let Node::Storage(s) = graph.node(t.storage()) else {
        panic!("tensor without a storage node")
    };
    assert_eq!((s.key(), s.nbytes()), ("1", 24));
}

#[test]
fn table_entries_are_bounds_checked() {
    // Offset 3: the last element is 3 + 1 + 2 = 6, past the 6-element storage.
    let err = load(
        &two_refs("10", "10"),
        0,
        &options(table(3)),
        &mut resolver(&mut 0),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "tensor key 10: the tensor needs bytes up to 28 of storage \"1\", which has 24"
        ),
        "{err}"
    );
    // The container's record disagrees with the table.
    let err = load(
        &two_refs("10", "10"),
        0,
        &options(table(0)),
        &mut |_: &StorageRequest<'_>| Ok(20),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("declares 24 bytes, the container has 20"),
        "{err}"
    );
}

#[test]
fn unknown_keys_and_storage_tuples_are_refused_with_a_table() {
    let err = load(
        &two_refs("10", "11"),
        0,
        &options(table(0)),
        &mut resolver(&mut 0),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("persistent id 11: no tensor has this key"),
        "{err}"
    );
    let err = load(
        &two_refs("10", " 10"),
        0,
        &options(table(0)),
        &mut resolver(&mut 0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not a tensor key"), "{err}");
    // ('storage', torch.FloatStorage, '1', 'cpu', 6)
    let mut storage_pid = vec![0x80, 2, b'('];
    storage_pid.extend_from_slice(b"\x8c\x07storage");
    storage_pid.extend_from_slice(b"ctorch\nFloatStorage\n");
    for s in ["1", "cpu"] {
        storage_pid.extend_from_slice(&[0x8c, s.len() as u8]);
        storage_pid.extend_from_slice(s.as_bytes());
    }
    storage_pid.extend_from_slice(b"K\x06tQ.");
    load(
        &storage_pid,
        0,
        &Options::default(),
        &mut |_: &StorageRequest<'_>| Ok(24),
    )
    .expect("a storage id outside tar mode");
    let err = load(&storage_pid, 0, &options(table(0)), &mut resolver(&mut 0)).unwrap_err();
    assert!(
        err.to_string().contains("('storage', ...) persistent id"),
        "{err}"
    );
}

#[test]
fn text_persistent_ids_only_in_tar_mode() {
    let bytes = b"P10\n.";
    let err = load(bytes, 0, &Options::default(), &mut NoStorages).unwrap_err();
    assert!(err.to_string().contains("PERSID"), "{err}");
    let graph = load(bytes, 0, &options(table(0)), &mut resolver(&mut 0)).unwrap();
    assert!(matches!(graph.node(graph.root()), Node::Tensor(_)));
}
