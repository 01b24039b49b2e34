//! Never panic, never allocate what a file merely declares: arbitrary and spliced inputs, huge
//! declared counts, zstd bombs and over-long declared lengths, measured by a counting allocator.
//!
//! The allocator counts every thread (rayon's included), so the tests of this binary run one at
//! a time under [`LOCK`].

mod common;

use common::*;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use tensorseal::{Checkpoint, Limits, Manifest, ReadError, TrustPolicy};

/// Records the largest single allocation and the peak of live bytes while armed.
struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK_LIVE: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    if ARMED.load(Relaxed) {
        LARGEST.fetch_max(size, Relaxed);
        PEAK_LIVE.fetch_max(live, Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to the system allocator, which meets the
// `GlobalAlloc` contract; the bookkeeping around it only touches atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Relaxed);
        grew(new_size);
        // SAFETY: as for `dealloc` and `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static LOCK: Mutex<()> = Mutex::new(());

/// What a closure allocated: the largest single request and the growth of live bytes.
#[derive(Debug)]
struct Allocated {
    largest: usize,
    peak_growth: usize,
}

fn measure<T>(f: impl FnOnce() -> T) -> (T, Allocated) {
    let base = LIVE.load(Relaxed);
    LARGEST.store(0, Relaxed);
    PEAK_LIVE.store(base, Relaxed);
    ARMED.store(true, Relaxed);
    let out = f();
    ARMED.store(false, Relaxed);
    let allocated = Allocated {
        largest: LARGEST.load(Relaxed),
        peak_growth: PEAK_LIVE.load(Relaxed).saturating_sub(base),
    };
    (out, allocated)
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens `file`, and if it opens, verifies it in both modes and reads every tensor; nothing may
/// panic. Returns the open error, if any.
fn exercise(file: Vec<u8>) -> Option<ReadError> {
    let trusted = tensorseal::PublicKey::from_bytes(&signing_key(1).verifying_key().to_bytes())
        .expect("a valid key");
    match Checkpoint::from_vec(file, &Limits::default()) {
        Err(e) => {
            let _ = e.to_string();
            Some(e)
        }
        Ok(ckpt) => {
            let _ = ckpt.verify(&TrustPolicy::integrity_only());
            let _ = ckpt.verify(&TrustPolicy::trusting(vec![trusted]));
            for (_, t) in ckpt.root().tensors() {
                let _ = ckpt.tensor_bytes(t);
            }
            None
        }
    }
}

/// A file with a valid header and a footer that tiles `body` as manifest and signature block,
/// so random bytes reach the signature-block and manifest parsers.
fn framed(body: &[u8], manifest_len: usize) -> Vec<u8> {
    let manifest_len = manifest_len.min(body.len());
    let (m, s) = body.split_at(manifest_len);
    assemble(&header(), m, s)
}

fn vectors() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors");
    ["all-kinds.tseal", "zstd.tseal", "simple.tseal"]
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .chain([small_file(&[&signing_key(1)]).0])
        .collect()
}

/// Allocation allowed for parsing `n` input bytes: decoded items are a few dozen bytes each.
fn budget(n: usize) -> usize {
    128 * n + (256 << 10)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _g = serial();
        let n = bytes.len();
        let (_, a) = measure(|| exercise(bytes));
        prop_assert!(a.largest <= budget(n), "{a:?} for {n} bytes");
    }

    #[test]
    fn arbitrary_manifests_and_signature_blocks_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        manifest_len in 0usize..2048,
    ) {
        let _g = serial();
        let file = framed(&body, manifest_len);
        let n = file.len();
        let (_, a) = measure(|| exercise(file));
        prop_assert!(a.largest <= budget(n), "{a:?} for {n} bytes");
        let (_, a) = measure(|| Manifest::from_bytes(&body, 0, &Limits::default()).is_ok());
        prop_assert!(a.largest <= budget(body.len()), "{a:?}");
    }

    #[test]
    fn bytes_spliced_into_a_manifest_never_panic(
        which in 0usize..4,
        at in any::<prop::sample::Index>(),
        cut in 0usize..48,
        insert in proptest::collection::vec(any::<u8>(), 0..48),
    ) {
        let _g = serial();
        let file = &vectors()[which];
        let mut m = manifest_of(file).to_vec();
        let start = at.index(m.len());
        let end = (start + cut).min(m.len());
        m.splice(start..end, insert);
        // The footer's digest is fixed up so that the manifest parser is reached.
        let spliced = with_manifest(file, &m);
        let n = spliced.len();
        let (_, a) = measure(|| exercise(spliced));
        prop_assert!(a.largest <= budget(n), "{a:?} for {n} bytes");
    }

    #[test]
    fn single_byte_changes_anywhere_never_panic(
        which in 0usize..4,
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let _g = serial();
        let mut file = vectors()[which].clone();
        let i = at.index(file.len());
        file[i] = value;
        let n = file.len();
        let (_, a) = measure(|| exercise(file));
        prop_assert!(a.largest <= budget(n), "{a:?} for {n} bytes");
    }
}

#[test]
fn huge_declared_counts_allocate_nothing_big() {
    let _g = serial();
    for raw in [
        vec![0x9b, 0, 0, 1, 0, 0, 0, 0, 0],
        vec![0xbb, 0x80, 0, 0, 0, 0, 0, 0, 0],
        vec![0x5b, 0x40, 0, 0, 0, 0, 0, 0, 0],
        vec![0x7b, 0x40, 0, 0, 0, 0, 0, 0, 0],
        vec![0xc2, 0x5a, 0xff, 0xff, 0xff, 0xff],
    ] {
        let m = manifest(C::Raw(raw.clone()), vec![], &[]).enc();
        let file = assemble(&header(), &m, &signature_block(&[]));
        let (err, a) = measure(|| exercise(file));
        assert!(err.is_some(), "{raw:02x?}");
        assert!(a.largest < 64 << 10, "{raw:02x?}: {a:?}");
    }
    // In the signature block.
    let (prefix, m) = small_parts();
    let file = assemble(&prefix, &m.enc(), &[0x9b, 0, 0, 1, 0, 0, 0, 0, 0]);
    let (err, a) = measure(|| exercise(file));
    assert!(err.is_some());
    assert!(a.largest < 64 << 10, "{a:?}");
}

/// One zstd blob of the given frames (group 1), signed by key 1.
fn zstd_blob_file(frames: &[Vec<u8>], raw_length: u64) -> Vec<u8> {
    let stored: Vec<u8> = frames.concat();
    let mut blobs = Blobs::new();
    let offset = blobs.add(&stored);
    let chunks = raw_length.div_ceil(CHUNK as u64) as usize;
    let codec = C::map(vec![
        ("name", t("zstd")),
        ("group", C::U(1)),
        (
            "frames",
            C::A(frames.iter().map(|f| C::U(f.len() as u64)).collect()),
        ),
        ("raw_length", C::U(raw_length)),
        ("raw_sha256", C::A(vec![C::B(vec![0; 32]); chunks])),
    ]);
    let blob = C::map(vec![
        ("codec", codec),
        ("offset", C::U(offset)),
        ("length", C::U(stored.len() as u64)),
        (
            "sha256",
            C::A(frames.iter().map(|f| C::B(sha256(f).to_vec())).collect()),
        ),
    ]);
    let m = manifest(tensor(Some(0), "uint8", &[raw_length]), vec![blob], &[]).enc();
    assemble_signed(&blobs.bytes, &m, &[&signing_key(1)])
}

#[test]
fn a_zstd_bomb_allocates_at_most_its_declared_chunk() {
    let _g = serial();
    // 256 MiB of zeros whose frame header is patched to declare 4096 bytes.
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))
        .unwrap();
    let mut bomb = c.compress(&vec![0u8; 256 << 20]).unwrap();
    let descriptor = bomb[4];
    assert_eq!(descriptor >> 6, 2);
    let at = 5 + usize::from(descriptor & 0x20 == 0) + [0, 1, 2, 4][usize::from(descriptor & 3)];
    bomb[at..at + 4].copy_from_slice(&4096u32.to_le_bytes());
    let file = zstd_blob_file(&[bomb], 4096);
    let trusted =
        tensorseal::PublicKey::from_bytes(&signing_key(1).verifying_key().to_bytes()).unwrap();
    let ckpt = Checkpoint::from_vec(file, &Limits::default()).unwrap();
    let (result, a) = measure(|| ckpt.verify(&TrustPolicy::trusting(vec![trusted])));
    assert!(
        matches!(
            result,
            Err(tensorseal::VerifyError::Malformed(ReadError::Decode { .. }))
        ),
        "{result:?}"
    );
    assert!(a.largest <= 64 << 10, "{a:?}");
    assert!(a.peak_growth <= 1 << 20, "{a:?}");
    let (result, a) = measure(|| ckpt.blob_bytes(0).map(|b| b.len()));
    assert!(
        matches!(result, Err(ReadError::Decode { .. })),
        "{result:?}"
    );
    assert!(a.largest <= 64 << 10, "{a:?}");
}

#[test]
fn declared_logical_lengths_are_not_allocated_before_frames_decode() {
    let _g = serial();
    // 100 one-byte "frames" claiming 100 chunks: 1.6 GB of logical bytes in a file of 7 KiB.
    let frames: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i]).collect();
    let raw_length = 100 * CHUNK as u64;
    let file = zstd_blob_file(&frames, raw_length);
    let ckpt = Checkpoint::from_vec(file, &Limits::default()).unwrap();
    let (result, a) = measure(|| ckpt.blob_bytes(0).map(|b| b.len()));
    assert!(
        matches!(result, Err(ReadError::Decode { chunk: 0, .. })),
        "{result:?}"
    );
    assert!(
        a.largest <= 2 * CHUNK,
        "reading one bad frame allocated {} bytes",
        a.largest
    );
    let (result, a) = measure(|| ckpt.verify(&TrustPolicy::integrity_only()));
    assert!(result.is_err());
    assert!(a.largest <= 2 * CHUNK, "{a:?}");
}

#[test]
fn declared_logical_bytes_are_bounded_by_max_logical_length() {
    let _g = serial();
    // Spec §8: a 16 MiB chunk of zeros compresses to about 500 bytes, so a file of 35 MiB can
    // declare (correctly) more than a TiB of logical bytes that digests-only verification would
    // decode and hash. 65,537 such frames are one chunk over the default limit of 1 TiB.
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))
        .unwrap();
    let frame = c.compress(&vec![0u8; CHUNK]).unwrap();
    assert!(frame.len() < 1024, "{}", frame.len());
    let chunks = (1 << 40) / CHUNK as u64 + 1;
    let frames = vec![frame; chunks as usize];
    let file = zstd_blob_file(&frames, chunks * CHUNK as u64);
    assert!(file.len() < 64 << 20, "{}", file.len());
    let blob_at = {
        let m = manifest_of(&file);
        footer_fields(&file).0 + find(m, &t("blobs").enc()) + 6 + 1
    };
    let err = Checkpoint::from_vec(file.clone(), &Limits::default()).unwrap_err();
    match err {
        ReadError::LimitExceeded {
            what: "max_logical_length",
            value,
            limit,
            offset,
        } => {
            assert_eq!((value, limit), (chunks * CHUNK as u64, 1 << 40));
            assert_eq!(offset, blob_at as u64);
        }
        other => panic!("{other:?}"),
    }
    // The limit is what refused it: raised, the file opens.
    let raised = Limits {
        max_logical_length: u64::MAX,
        ..Limits::default()
    };
    Checkpoint::from_vec(file, &raised).unwrap();
}
