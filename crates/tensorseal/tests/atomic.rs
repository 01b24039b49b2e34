//! Atomic writes and signing (spec §6, issue 2 §3): the final name never holds a partial file, no
//! temporary file survives a failure, and a failure never touches an existing file.

use std::collections::BTreeMap;
use std::path::Path;
use tensorseal::*;

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn u8_tensor(len: u64, blob: usize) -> Node {
    Node::Tensor(Box::new(Tensor::new(DType::U8, vec![len], Some(blob))))
}

fn write_valid(path: &Path) -> Vec<u8> {
    let mut w = Writer::create(path, WriteOptions::default()).unwrap();
    let b = w.write_blob(&[1, 2, 3], DType::U8).unwrap();
    w.finish(u8_tensor(3, b), BTreeMap::new(), &[]).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn a_writer_dropped_before_finish_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tseal");
    let mut w = Writer::create(&path, WriteOptions::default()).unwrap();
    w.write_blob(&[0; 1000], DType::U8).unwrap();
    assert_eq!(
        entries(dir.path()).len(),
        1,
        "the temporary file exists while writing"
    );
    assert!(!path.exists(), "nothing under the final name before finish");
    drop(w);
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn a_failed_finish_leaves_an_existing_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tseal");
    let original = write_valid(&path);
    // Invalid trees: an unreferenced blob, a tensor of the wrong size, an unhashable key.
    let bad_roots = [
        Node::None,
        u8_tensor(4, 0),
        Node::Dict(vec![(Node::List(vec![]), u8_tensor(3, 0))]),
    ];
    for root in bad_roots {
        let mut w = Writer::create(&path, WriteOptions::default()).unwrap();
        w.write_blob(&[9, 9, 9], DType::U8).unwrap();
        let err = w.finish(root, BTreeMap::new(), &[]).unwrap_err();
        assert!(matches!(err, WriteError::Invalid { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), original);
        assert_eq!(entries(dir.path()), ["m.tseal"]);
    }
}

#[test]
fn a_failed_rename_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    // The final name is a non-empty directory: the rename fails after everything was written.
    let path = dir.path().join("m.tseal");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), b"x").unwrap();
    let w = Writer::create(&path, WriteOptions::default()).unwrap();
    let err = w.finish(Node::None, BTreeMap::new(), &[]).unwrap_err();
    assert!(matches!(err, WriteError::Io(_)), "{err:?}");
    assert_eq!(entries(dir.path()), ["m.tseal"]);
    assert_eq!(entries(&path), ["keep"]);
}

/// A blob source that fails once `offset` reaches `fail_at`.
struct Failing {
    fail_at: u64,
}

impl BlobSource for Failing {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset >= self.fail_at {
            return Err(std::io::Error::other("source failed"));
        }
        buf.fill(0x5a);
        Ok(())
    }
}

#[test]
fn a_failed_blob_write_leaves_the_writer_consistent() {
    // One thread: the writer reads 2 chunks (32 MiB), writes them, then asks for more. The
    // source fails on the second batch, after the first was written.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for compression in [Compression::None, Compression::Zstd { level: 1 }] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.tseal");
        pool.install(|| {
            let options = WriteOptions {
                compression,
                ..Default::default()
            };
            let mut w = Writer::create(&path, options).unwrap();
            let len = 3 * CHUNK;
            let err = w
                .write_blob_from(&mut Failing { fail_at: 2 * CHUNK }, len, DType::U8)
                .unwrap_err();
            assert!(matches!(err, WriteError::Io(_)), "{err:?}");
            assert!(w.blobs().is_empty());
            // The writer goes on as if the failed blob had never been started.
            let b = w.write_blob(&[1, 2, 3], DType::U8).unwrap();
            w.finish(u8_tensor(3, b), BTreeMap::new(), &[]).unwrap();
        });
        let (ckpt, _) =
            Checkpoint::open_verified(&path, &TrustPolicy::integrity_only(), &Limits::default())
                .unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        assert_eq!(ckpt.manifest().blobs[0].offset, 64);
        assert_eq!(ckpt.file_length(), std::fs::metadata(&path).unwrap().len());
    }
}

#[test]
fn a_blob_over_max_logical_length_is_refused_before_it_is_written() {
    // The writer checks the limit the reader applies (spec §8) before writing a byte, so the
    // caller learns early and can go on.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tseal");
    let options = WriteOptions {
        limits: Limits {
            max_logical_length: 100,
            ..Limits::default()
        },
        ..Default::default()
    };
    let mut w = Writer::create(&path, options).unwrap();
    let a = w.write_blob(&[7; 60], DType::U8).unwrap();
    let err = w.write_blob(&[8; 41], DType::U8).unwrap_err();
    assert!(err.to_string().contains("max_logical_length"), "{err}");
    let err = w
        .write_blob_from(&mut &[8u8; 41][..], 41, DType::U8)
        .unwrap_err();
    assert!(err.to_string().contains("max_logical_length"), "{err}");
    let b = w.write_blob(&[9; 40], DType::U8).unwrap();
    let root = tensorseal::Node::List(vec![u8_tensor(60, a), u8_tensor(40, b)]);
    w.finish(root, BTreeMap::new(), &[]).unwrap();
    let ckpt = Checkpoint::open(&path, &Limits::default()).unwrap();
    assert_eq!(ckpt.manifest().blobs.len(), 2);
    // A reader with a lower limit refuses the file, naming the limit.
    let low = Limits {
        max_logical_length: 99,
        ..Limits::default()
    };
    assert!(matches!(
        Checkpoint::open(&path, &low),
        Err(tensorseal::ReadError::LimitExceeded {
            what: "max_logical_length",
            value: 100,
            limit: 99,
            ..
        })
    ));
}

#[test]
fn signing_a_missing_or_corrupt_file_fails_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::from_seed(&[1; 32]);
    let missing = dir.path().join("missing.tseal");
    let err = add_signature(&missing, &key, &Limits::default()).unwrap_err();
    assert!(matches!(err, WriteError::NotIntact(_)), "{err:?}");
    assert!(entries(dir.path()).is_empty());

    let path = dir.path().join("m.tseal");
    let original = write_valid(&path);
    // A corrupt blob, a truncated file, a flipped manifest bit.
    let corruptions: Vec<Vec<u8>> = vec![
        {
            let mut c = original.clone();
            c[64] ^= 1;
            c
        },
        original[..original.len() - 1].to_vec(),
        {
            let mut c = original.clone();
            c[130] ^= 0x10;
            c
        },
    ];
    for corrupt in corruptions {
        std::fs::write(&path, &corrupt).unwrap();
        let err = add_signature(&path, &key, &Limits::default()).unwrap_err();
        assert!(matches!(err, WriteError::NotIntact(_)), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), corrupt);
        assert_eq!(entries(dir.path()), ["m.tseal"]);
    }
}

#[test]
fn signing_rewrites_only_the_signature_block_and_footer() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.tseal");
    let original = write_valid(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let content_length = Checkpoint::open(&path, &Limits::default())
        .unwrap()
        .footer()
        .content_length() as usize;
    let keys: Vec<SecretKey> = (1..=3u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
    for key in &keys {
        assert!(add_signature(&path, key, &Limits::default()).unwrap());
        let now = std::fs::read(&path).unwrap();
        assert_eq!(now[..content_length], original[..content_length]);
    }
    assert!(!add_signature(&path, &keys[0], &Limits::default()).unwrap());
    assert_eq!(entries(dir.path()), ["m.tseal"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // Every signature stays valid, in the order added.
    let publics: Vec<PublicKey> = keys.iter().map(SecretKey::public_key).collect();
    let (ckpt, report) = Checkpoint::open_verified(
        &path,
        &TrustPolicy::trusting(publics.clone()).threshold(3),
        &Limits::default(),
    )
    .unwrap();
    let order: Vec<PublicKey> = ckpt.signatures().iter().map(|s| s.key).collect();
    assert_eq!(order, publics);
    assert_eq!(report.signers.len(), 3);
    // The signature limit is enforced when adding.
    let limits = Limits {
        max_signatures: 3,
        ..Limits::default()
    };
    let fourth = SecretKey::from_seed(&[4; 32]);
    assert!(matches!(
        add_signature(&path, &fourth, &limits),
        Err(WriteError::Invalid { .. })
    ));
}
