//! End-to-end tests of the format: write, open, verify, sign, and refuse tampering.

use std::collections::BTreeMap;
use std::path::Path;
use tensorseal::*;

fn t(dtype: DType, shape: &[u64], blob: Option<usize>) -> Node {
    Node::Tensor(Box::new(Tensor::new(dtype, shape.to_vec(), blob)))
}

fn write_sample(path: &Path, compression: Compression, signers: &[&SecretKey]) -> WrittenFile {
    let mut w = Writer::create(
        path,
        WriteOptions {
            compression,
            ..Default::default()
        },
    )
    .unwrap();
    let a: Vec<u8> = (0..24u32)
        .flat_map(|i| (i as f32 / 7.0).to_le_bytes())
        .collect();
    let b: Vec<u8> = (0..5000u32)
        .flat_map(|i| ((i % 17) as f32).to_le_bytes())
        .collect();
    let ba = w.write_blob(&a, DType::F32).unwrap();
    let bb = w.write_blob(&b, DType::F32).unwrap();
    let root = Node::Dict(vec![
        (Node::Str("a".into()), t(DType::F32, &[2, 3, 4], Some(ba))),
        (Node::Str("b".into()), t(DType::F32, &[5000], Some(bb))),
        (
            Node::Str("b_tied".into()),
            t(DType::F32, &[50, 100], Some(bb)),
        ),
        (Node::Str("step".into()), Node::Int(7i64.into())),
    ]);
    let mut meta = BTreeMap::new();
    meta.insert("step".to_string(), "7".to_string());
    w.finish(root, meta, signers).unwrap()
}

#[test]
fn write_open_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tseal");
    let key = SecretKey::from_seed(&[3; 32]);
    for compression in [Compression::None, Compression::Zstd { level: 1 }] {
        let written = write_sample(&path, compression, &[&key]);
        let ckpt = Checkpoint::open(&path, &Limits::default()).unwrap();
        assert_eq!(ckpt.file_length(), written.length);
        let report = ckpt
            .verify(&TrustPolicy::trusting(vec![key.public_key()]))
            .unwrap();
        assert!(report.authenticated);
        assert_eq!(report.blobs, 2);
        let tensors = ckpt.root().tensors();
        assert_eq!(tensors.len(), 3);
        let b = ckpt.tensor_bytes(tensors[1].1).unwrap();
        assert_eq!(b.len(), 20000);
        assert_eq!(&b[4..8], &1f32.to_le_bytes());
        if compression != Compression::None {
            assert!(
                ckpt.manifest().blobs[1].codec.is_some(),
                "repetitive data compresses"
            );
        }
        let (_, report2) = Checkpoint::open_verified(
            &path,
            &TrustPolicy::trusting(vec![key.public_key()]),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(report, report2);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn untrusted_and_unsigned_files_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tseal");
    let key = SecretKey::from_seed(&[3; 32]);
    let other = SecretKey::from_seed(&[4; 32]);
    write_sample(&path, Compression::None, &[]);
    let err = Checkpoint::open_verified(
        &path,
        &TrustPolicy::trusting(vec![key.public_key()]),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::Untrusted { trusted: 0, .. }),
        "{err}"
    );
    Checkpoint::open_verified(&path, &TrustPolicy::integrity_only(), &Limits::default()).unwrap();
    assert!(add_signature(&path, &other, &Limits::default()).unwrap());
    assert!(!add_signature(&path, &other, &Limits::default()).unwrap());
    let err = Checkpoint::open_verified(
        &path,
        &TrustPolicy::trusting(vec![key.public_key()]),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::Untrusted { trusted: 0, .. }),
        "{err}"
    );
    assert!(add_signature(&path, &key, &Limits::default()).unwrap());
    let policy = TrustPolicy::trusting(vec![key.public_key(), other.public_key()]).threshold(2);
    let (_, report) = Checkpoint::open_verified(&path, &policy, &Limits::default()).unwrap();
    assert_eq!(report.signers.len(), 2);
    let err = Checkpoint::open_verified(&path, &policy.clone().min_step(8), &Limits::default())
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::StepTooOld { found: 7, min: 8 }),
        "{err}"
    );
    let err = Checkpoint::open_verified(&path, &policy.expect("run_id", "x"), &Limits::default())
        .unwrap_err();
    assert!(matches!(err, VerifyError::MetadataMismatch { .. }), "{err}");
}

#[test]
fn every_bit_flip_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tseal");
    let key = SecretKey::from_seed(&[3; 32]);
    let signer2 = SecretKey::from_seed(&[5; 32]);
    let mut w = Writer::create(&path, WriteOptions::default()).unwrap();
    let b0 = w.write_blob(&[1, 2, 3], DType::U8).unwrap();
    let b1 = w.write_blob(&[9; 16], DType::F32).unwrap();
    let root = Node::List(vec![
        t(DType::U8, &[3], Some(b0)),
        t(DType::F32, &[4], Some(b1)),
        Node::Float(0.5),
    ]);
    w.finish(root, BTreeMap::new(), &[&key, &signer2]).unwrap();
    let original = std::fs::read(&path).unwrap();
    let policy = TrustPolicy::trusting(vec![key.public_key()]);
    let limits = Limits::default();
    Checkpoint::from_vec(original.clone(), &limits)
        .unwrap()
        .verify(&policy)
        .unwrap();
    for byte in 0..original.len() {
        for bit in 0..8 {
            let mut bytes = original.clone();
            bytes[byte] ^= 1 << bit;
            let result = Checkpoint::from_vec(bytes, &limits)
                .map_err(VerifyError::from)
                .and_then(|c| c.verify(&policy));
            assert!(
                result.is_err(),
                "flipping bit {bit} of byte {byte} went unnoticed"
            );
        }
    }
}

#[test]
fn loader_verifies_what_it_copies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tseal");
    let key = SecretKey::from_seed(&[3; 32]);
    let policy = TrustPolicy::trusting(vec![key.public_key()]);
    for compression in [Compression::None, Compression::Zstd { level: 1 }] {
        write_sample(&path, compression, &[&key]);
        let ckpt = Checkpoint::open(&path, &Limits::default()).unwrap();
        let expected: Vec<Vec<u8>> = (0..2)
            .map(|b| ckpt.blob_bytes(b).unwrap().into_owned())
            .collect();
        drop(ckpt);
        let loader = Loader::open(&path, &policy, &Limits::default()).unwrap();
        assert_eq!(loader.read_all().unwrap(), expected);

        // A file modified after open: the loader reads the new bytes and refuses them.
        let mut bytes = std::fs::read(&path).unwrap();
        let blob = &loader.manifest().blobs[1];
        bytes[blob.offset as usize + 3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            loader.read_blob(0).unwrap(),
            expected[0],
            "blob 0 is intact"
        );
        let err = loader.read_blob(1).unwrap_err();
        assert!(
            matches!(err, VerifyError::DigestMismatch { blob: 1, .. }),
            "{err}"
        );
        // Truncated after open.
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(loader.read_all().is_err());
        std::fs::remove_file(&path).unwrap();
    }
    // Untrusted: refused at open, before any blob is read.
    write_sample(&path, Compression::None, &[]);
    assert!(matches!(
        Loader::open(&path, &policy, &Limits::default()).unwrap_err(),
        VerifyError::Untrusted { .. }
    ));
}

#[test]
fn mapped_loader_verifies_in_place_before_handing_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tseal");
    let key = SecretKey::from_seed(&[3; 32]);
    let policy = TrustPolicy::trusting(vec![key.public_key()]);
    let limits = Limits::default();
    for compression in [Compression::None, Compression::Zstd { level: 1 }] {
        write_sample(&path, compression, &[&key]);
        let ckpt = Checkpoint::open(&path, &limits).unwrap();
        let expected: Vec<Vec<u8>> = (0..2)
            .map(|b| ckpt.blob_bytes(b).unwrap().into_owned())
            .collect();
        drop(ckpt);

        let loader = MappedLoader::open(&path, &policy, &limits).unwrap();
        assert_eq!(loader.signers().len(), 1);
        for b in 0..2 {
            assert!(loader.blob_memory(b).is_none(), "not verified yet");
        }
        loader.verify_blobs(&[1, 0, 1]).unwrap();
        for (b, want) in expected.iter().enumerate() {
            assert!(loader.is_verified(b));
            let entry = &loader.manifest().blobs[b];
            match &entry.codec {
                None => {
                    let m = loader.blob_memory(b).unwrap();
                    assert_eq!(m.len(), want.len());
                    assert_eq!(m.as_ptr() as usize % ALIGN as usize, 0, "64-byte aligned");
                    assert!(loader.read_blob_into(b, &mut vec![0; m.len()]).is_err());
                }
                Some(_) => {
                    assert!(
                        loader.blob_memory(b).is_none(),
                        "compressed: never in place"
                    );
                    let mut buf = vec![0u8; want.len()];
                    loader.read_blob_into(b, &mut buf).unwrap();
                    assert_eq!(&buf, want);
                }
            }
        }
        assert!(loader.blob_memory(2).is_none());
        assert!(loader.verify_blobs(&[2]).is_err());

        // A flipped byte in blob 1: open succeeds (structure), verifying that blob fails and
        // its memory is never handed out; blob 0 is unaffected.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = loader.manifest().blobs[1].offset as usize + 3;
        drop(loader);
        bytes[at] ^= 0x40;
        let bad = dir.path().join("bad.tseal");
        std::fs::write(&bad, &bytes).unwrap();
        let loader = MappedLoader::open(&bad, &policy, &limits).unwrap();
        let err = loader.verify_blobs(&[0, 1]).unwrap_err();
        assert!(
            matches!(err, VerifyError::DigestMismatch { blob: 1, .. }),
            "{err}"
        );
        assert!(
            !loader.is_verified(0),
            "nothing is marked when a blob fails"
        );
        assert!(loader.blob_memory(1).is_none());
        if compression == Compression::None {
            loader.verify_blobs(&[0]).unwrap();
            assert!(loader.blob_memory(0).is_some());
        } else {
            let mut buf = vec![0u8; expected[1].len()];
            assert!(matches!(
                loader.read_blob_into(1, &mut buf).unwrap_err(),
                VerifyError::DigestMismatch { blob: 1, .. }
            ));
        }
    }
    // Untrusted: refused at open, before anything is mapped.
    write_sample(&path, Compression::None, &[]);
    assert!(matches!(
        MappedLoader::open(&path, &policy, &limits).unwrap_err(),
        VerifyError::Untrusted { .. }
    ));
    // Non-zero padding after a blob: refused when that blob is verified.
    write_sample(&path, Compression::None, &[&key]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[64 + 24 * 4 + 1] = 1; // after blob 0 (96 bytes), before blob 1
    std::fs::write(&path, &bytes).unwrap();
    let loader = MappedLoader::open(&path, &policy, &limits).unwrap();
    loader.verify_blobs(&[1]).unwrap();
    assert!(matches!(
        loader.verify_blobs(&[0]).unwrap_err(),
        VerifyError::Malformed(ReadError::NonZeroPadding { .. })
    ));
    assert!(loader.blob_memory(0).is_none());
    // A file that changed length between open and the first verification is not mapped.
    let loader = MappedLoader::open(&path, &policy, &limits).unwrap();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        loader.verify_blobs(&[1]).unwrap_err(),
        VerifyError::Malformed(ReadError::Layout { .. })
    ));
}

#[test]
fn loader_hashes_multi_chunk_blobs_piece_by_piece() {
    // Two chunks, the second not a whole number of the loader's read pieces: every piece of
    // every chunk is covered by the chunk's digest.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.tseal");
    let len = CHUNK as usize + (300 << 10) + 123;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut w = Writer::create(&path, WriteOptions::default()).unwrap();
    let b = w.write_blob(&data, DType::U8).unwrap();
    w.finish(t(DType::U8, &[len as u64], Some(b)), BTreeMap::new(), &[])
        .unwrap();
    let policy = TrustPolicy::integrity_only();
    let mut buf = vec![0u8; len];
    Loader::open(&path, &policy, &Limits::default())
        .unwrap()
        .read_blob_into(0, &mut buf)
        .unwrap();
    assert_eq!(buf, data);
    for (at, chunk) in [
        (5, 0),
        (CHUNK as usize - 1, 0),
        (len - 1, 1),
        (CHUNK as usize + (260 << 10), 1),
    ] {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[64 + at] ^= 1;
        let bad = dir.path().join("bad.tseal");
        std::fs::write(&bad, &bytes).unwrap();
        let err = Loader::open(&bad, &policy, &Limits::default())
            .unwrap()
            .read_blob_into(0, &mut buf)
            .unwrap_err();
        assert!(
            matches!(err, VerifyError::DigestMismatch { blob: 0, chunk: c, .. } if c == chunk),
            "byte {at}: {err}"
        );
    }
}

#[test]
fn blobs_around_a_multi_chunk_blob_keep_their_offsets() {
    // A large blob is written chunk by chunk on the thread pool at explicit offsets; the blobs
    // written before and after it, and its alignment padding, must land where the manifest
    // says, on one thread as on several.
    let dir = tempfile::tempdir().unwrap();
    let small: Vec<u8> = (0..1000u32).map(|i| (i % 253) as u8).collect();
    let mid: Vec<u8> = (0..(100 << 10) + 3).map(|i| (i % 241) as u8).collect();
    let big: Vec<u8> = (0..2 * CHUNK as usize + (1 << 20) + 5)
        .map(|i| (i * 13 % 251) as u8)
        .collect();
    for threads in [1, 3] {
        let path = dir.path().join(format!("m{threads}.tseal"));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut w = Writer::create(&path, WriteOptions::default()).unwrap();
            let ids: Vec<BlobId> = [&small, &big, &mid, &small]
                .iter()
                .map(|d| w.write_blob(d, DType::U8).unwrap())
                .collect();
            let root = Node::List(
                ids.iter()
                    .zip([&small, &big, &mid, &small])
                    .map(|(&id, d)| t(DType::U8, &[d.len() as u64], Some(id)))
                    .collect(),
            );
            w.finish(root, BTreeMap::new(), &[]).unwrap();
        });
        let (ckpt, _) =
            Checkpoint::open_verified(&path, &TrustPolicy::integrity_only(), &Limits::default())
                .unwrap();
        let blobs = &ckpt.manifest().blobs;
        assert_eq!(blobs[1].sha256, chunk_digests(&big));
        for (i, d) in [&small, &big, &mid, &small].iter().enumerate() {
            assert_eq!(
                &*ckpt.blob_bytes(i).unwrap(),
                &d[..],
                "blob {i}, {threads} threads"
            );
        }
    }
}
