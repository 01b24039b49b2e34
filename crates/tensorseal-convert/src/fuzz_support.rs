//! The checks the fuzz targets, the never-panic properties and the corpus replay test share.
//! Not part of the supported API.
//!
//! Each takes arbitrary bytes, runs the parsers with small limits, and asserts the invariants
//! of whatever they accept; a panic is a bug.

use crate::{HfIndex, Limits, NpyArray, Npz, SafetensorsFile, TorchZip, ZipArchive, detect};
use std::path::Path;

/// Limits small enough that a fuzzer cannot spend its time inflating.
pub fn small_limits() -> Limits {
    Limits {
        max_inflated_member: 1 << 20,
        max_inflated_total: 4 << 20,
        ..Limits::default()
    }
}

/// Zip reader, torch zip layer, npz, zip kind, detection.
pub fn check_zip(data: &[u8]) {
    let limits = small_limits();
    let _ = detect(data, &limits);
    if let Ok(zip) = ZipArchive::new(data, &limits) {
        for e in zip.entries() {
            let content = zip
                .read(e)
                .expect("members of an accepted archive read back");
            assert_eq!(content.len() as u64, e.size());
            assert!(e.data_offset() + e.compressed_size() <= data.len() as u64);
            assert!(zip.by_name(e.name()).is_some());
        }
        let _ = crate::zip_kind(&zip);
        let _ = Npz::from_archive(&zip, &limits);
        if let Ok(t) = TorchZip::new(zip, &limits) {
            for key in t.storage_keys() {
                let s = t
                    .storage(key)
                    .expect("storages of an accepted archive read back");
                assert_eq!(
                    s.map(|b| b.len() as u64),
                    t.storage_entry(key).map(|e| e.size())
                );
            }
        }
    }
}

/// `.npy` arrays and `.npz` archives.
pub fn check_npy(data: &[u8]) {
    let limits = small_limits();
    if let Ok(a) = NpyArray::parse(data, &limits) {
        assert_eq!(Some(a.data().len() as u64), a.dtype().byte_size(a.shape()));
        assert!(a.shape().len() as u64 <= limits.max_rank);
    }
    if let Ok(npz) = Npz::parse(data, &limits) {
        for (_, a) in npz.arrays() {
            assert_eq!(Some(a.data().len() as u64), a.dtype().byte_size(a.shape()));
        }
    }
}

/// safetensors input and HF indexes.
pub fn check_safetensors(data: &[u8]) {
    let limits = small_limits();
    let _ = detect(data, &limits);
    if let Ok(f) = SafetensorsFile::parse(data, &limits) {
        for t in f.tensors() {
            assert_eq!(Some(t.data().len() as u64), t.dtype().byte_size(t.shape()));
            let start = t.data_offset() as usize;
            assert_eq!(&data[start..start + t.data().len()], t.data());
        }
    }
    if let Ok(idx) = HfIndex::parse(data, Path::new("."), &limits) {
        for (i, shard) in idx.shards().iter().enumerate() {
            assert!(!shard.tensors().is_empty());
            idx.check_shard(i, shard.tensors().iter().map(String::as_str))
                .expect("a shard providing exactly its tensors passes");
        }
    }
}
