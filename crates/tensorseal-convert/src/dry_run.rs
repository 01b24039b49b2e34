//! A conversion run to the end without writing a file: what `scan` uses to say whether
//! `convert` would succeed, and what the fuzz targets run on bytes in memory.
//!
//! It is [`crate::convert`]'s own code: format detection, the strict containers, the pickle
//! interpreter under the policy, the tree, tensor materialization under the output budget, the
//! source's SHA-256 with the zip CRCs checked in the same pass, and the canonical manifest under
//! the format's limits. The one difference is where blobs go: they are read and hashed into
//! manifest entries laid out as the writer lays them out, and nothing touches the file system.

use crate::ConvertOptions;
use crate::Format;
use crate::convert::{
    BlobStore, BudgetSink, Source, check_metadata, convert_source, output_metadata,
};
use crate::error::ConvertError;
use crate::materialize::View;
use crate::pickle_tree::TreeStats;
use std::collections::BTreeMap;
use tensorseal::{BlobEntry, BlobId, BlobSource, CHUNK, DType, HEADER_LEN, Manifest};

/// What a dry conversion produced: the manifest the output file would hold, and the counts.
#[derive(Debug)]
pub struct ConvertedBytes {
    /// The canonical manifest bytes, as [`tensorseal::Writer::finish`] would write them (without
    /// signatures).
    pub manifest: Vec<u8>,
    /// Tensors, blobs and bytes.
    pub stats: TreeStats,
    /// The `source_format` metadata.
    pub source_format: &'static str,
    /// Unknown globals kept as inert records (only with `allow_objects`).
    pub inert_objects: Vec<String>,
}

/// Converts `source` (of `format`, `input_len` bytes in all) as [`crate::convert`] would, without
/// writing anything.
///
/// # Errors
/// What [`crate::convert`] would report for the same input and options, except for errors of
/// the output file itself (creating, writing, renaming it).
pub(crate) fn dry_convert(
    format: Format,
    source: &Source<'_>,
    input_len: u64,
    options: &ConvertOptions<'_>,
) -> Result<ConvertedBytes, ConvertError> {
    check_metadata(options)?;
    let mut store = DigestStore::default();
    let mut sink = BudgetSink::new(&mut store, &options.limits, input_len, None);
    let conversion = convert_source(format, source, options, &mut sink)?;
    let metadata = output_metadata(options, &conversion);
    let manifest = Manifest {
        root: conversion.root,
        blobs: store.blobs,
        metadata,
        ext: BTreeMap::new(),
    }
    .to_bytes(&options.format_limits)?;
    Ok(ConvertedBytes {
        manifest,
        stats: conversion.stats,
        source_format: conversion.source_format,
        inert_objects: conversion.inert_objects,
    })
}

/// Lays blobs out as [`tensorseal::Writer`] does and keeps only their manifest entries.
#[derive(Default)]
struct DigestStore {
    blobs: Vec<BlobEntry>,
}

impl DigestStore {
    fn push(&mut self, length: u64, sha256: Vec<tensorseal::Digest>) -> BlobId {
        assert!(length > 0, "the converter never stores an empty blob");
        let offset = self.blobs.last().map_or(HEADER_LEN, |b| {
            (b.offset + b.length).next_multiple_of(tensorseal::ALIGN)
        });
        self.blobs.push(BlobEntry {
            offset,
            length,
            sha256,
            codec: None,
        });
        self.blobs.len() - 1
    }
}

impl BlobStore for DigestStore {
    fn store_slice(&mut self, data: &[u8], _dtype: DType) -> Result<BlobId, ConvertError> {
        Ok(self.push(data.len() as u64, tensorseal::chunk_digests(data)))
    }

    fn store_view(
        &mut self,
        view: &mut View<'_>,
        len: u64,
        _dtype: DType,
    ) -> Result<BlobId, ConvertError> {
        // Chunk by chunk, as the writer asks for them, through one buffer.
        let mut sha256 = Vec::new();
        let mut buf = vec![0u8; CHUNK.min(len) as usize];
        let mut offset = 0;
        while offset < len {
            let piece = &mut buf[..CHUNK.min(len - offset) as usize];
            view.read_at(offset, piece)
                .map_err(tensorseal::WriteError::Io)?;
            sha256.push(tensorseal::sha256(piece));
            offset += piece.len() as u64;
        }
        Ok(self.push(len, sha256))
    }
}
