//! The checks the fuzz targets, the never-panic properties and the corpus replay test share.
//! Not part of the supported API.
//!
//! Each takes arbitrary bytes, runs the parsers with small limits, and asserts the invariants
//! of whatever they accept; a panic is a bug.

use crate::convert::Source;
pub use crate::dry_run::ConvertedBytes;
use crate::dry_run::dry_convert;
use crate::{
    ConvertError, ConvertOptions, Format, HfIndex, Limits, NpyArray, Npz, SafetensorsFile,
    TorchZip, ZipArchive, detect,
};
use std::path::Path;
use tensorseal::Manifest;
use tensorseal_pickle as pk;

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

/// Options for fuzzing [`convert_bytes`]: small container and pickle limits, and an output
/// budget of 4 times the input plus 1 MiB, so that one input cannot spend the fuzzer's time.
pub fn small_convert_options(allow_objects: bool) -> ConvertOptions<'static> {
    let mut pickle_limits = pk::Limits::default();
    pickle_limits.max_opcodes = 100_000;
    pickle_limits.max_nodes = 100_000;
    pickle_limits.max_tree_nodes = 1_000_000;
    ConvertOptions {
        allow_objects,
        limits: Limits {
            output_slack: 1 << 20,
            ..small_limits()
        },
        pickle_limits,
        ..ConvertOptions::default()
    }
}

/// [`crate::convert`] over bytes in memory, as `scan` runs it ([`dry_convert`]): everything but
/// writing, with no sandbox, and a Hugging Face index only parsed, since its shards are other
/// files.
///
/// # Errors
/// What [`crate::convert`] would report for a file holding `data`.
pub fn convert_bytes(
    data: &[u8],
    options: &ConvertOptions<'_>,
) -> Result<ConvertedBytes, ConvertError> {
    let format = detect(data, &options.limits)?;
    if format == Format::HfIndex {
        HfIndex::parse(data, Path::new("."), &options.limits)?;
        return Err(ConvertError::Unsupported {
            member: "input".into(),
            path: "the index".into(),
            what: "a sharded checkpoint's shards are other files (not converted in memory)".into(),
        });
    }
    let source = Source {
        bytes: data,
        name: "input".into(),
        index: None,
        shards: Vec::new(),
        shard_names: Vec::new(),
    };
    dry_convert(format, &source, data.len() as u64, options)
}

/// The torch loader and every other input path of the converter, on arbitrary bytes: never a
/// panic, and an accepted input gives a manifest that decodes, whose every tensor has a blob of
/// exactly its byte size, with counts that agree. An input refused only for unknown classes is
/// converted again with `allow_objects`, as `--allow-objects` would.
pub fn check_torch_loader(data: &[u8]) {
    for allow_objects in [false, true] {
        let options = small_convert_options(allow_objects);
        match convert_bytes(data, &options) {
            Ok(out) => {
                check_converted(&out, &options);
                return;
            }
            Err(e) => {
                let _ = e.to_string();
                if !matches!(e, ConvertError::UnknownObjects { .. }) {
                    return;
                }
                assert!(e.is_refusal());
            }
        }
    }
}

fn check_converted(out: &ConvertedBytes, options: &ConvertOptions<'_>) {
    let manifest = Manifest::from_bytes(&out.manifest, 0, &options.format_limits)
        .expect("the converter's manifest decodes");
    assert_eq!(manifest.metadata["source_format"], out.source_format);
    let tensors = manifest.root.tensors();
    assert_eq!(tensors.len() as u64, out.stats.tensors);
    assert_eq!(manifest.blobs.len() as u64, out.stats.blobs);
    assert_eq!(
        manifest.blobs.iter().map(|b| b.length).sum::<u64>(),
        out.stats.bytes
    );
    for (path, t) in tensors {
        let size = t.byte_size().expect("tensor sizes fit");
        match t.blob {
            None => assert_eq!(size, 0, "{path:?}"),
            Some(b) => assert_eq!(manifest.blobs[b].length, size, "{path:?}"),
        }
    }
}

/// The bytes of a DCP folder packed into one input: `u32` LE length of `.metadata`, `.metadata`,
/// `u32` LE length of `__0_0.distcp`, its bytes, then `__1_0.distcp` to the end. `None` if the
/// lengths do not fit.
pub fn split_dcp(data: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    fn take(d: &[u8]) -> Option<(usize, &[u8])> {
        let n = u32::from_le_bytes(d.get(..4)?.try_into().ok()?) as usize;
        (d.len() >= 4 + n).then_some((n, &d[4..]))
    }
    let (n, rest) = take(data)?;
    let (meta, rest) = rest.split_at(n);
    let (n, rest) = take(rest)?;
    let (a, b) = rest.split_at(n);
    Some((meta, a, b))
}

/// [`crate::convert`] of a DCP folder packed by [`split_dcp`], in memory ([`dry_convert`]);
/// `None` if the bytes do not split.
///
/// # Errors
/// What [`crate::convert`] would report for the folder.
pub fn convert_dcp_bytes(
    data: &[u8],
    options: &ConvertOptions<'_>,
) -> Option<Result<ConvertedBytes, ConvertError>> {
    let (meta, a, b) = split_dcp(data)?;
    let source = Source {
        bytes: meta,
        name: "dcp".into(),
        index: None,
        shards: vec![a, b],
        shard_names: vec!["__0_0.distcp", "__1_0.distcp"],
    };
    Some(dry_convert(
        Format::Dcp,
        &source,
        data.len() as u64,
        options,
    ))
}

/// The DCP folder reader on [`split_dcp`] bytes: never a panic, and an accepted folder gives a
/// manifest whose every tensor has a blob of exactly its size.
pub fn check_dcp(data: &[u8]) {
    for allow_objects in [false, true] {
        let options = small_convert_options(allow_objects);
        match convert_dcp_bytes(data, &options) {
            None => return,
            Some(Ok(out)) => {
                check_converted(&out, &options);
                return;
            }
            Some(Err(e)) => {
                let _ = e.to_string();
                if !matches!(e, ConvertError::UnknownObjects { .. }) {
                    return;
                }
            }
        }
    }
}
