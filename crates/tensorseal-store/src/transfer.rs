//! Whole objects moved between a local file and a store: an upload that appears under its key
//! only once complete, and a download pinned to one object.

use crate::error::StoreError;
use crate::location::Location;
use crate::object::{ObjectReader, StoreOptions, connect};
use crate::remote::in_read_pool;
use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use rayon::prelude::*;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes per part of an upload (S3 takes 5 MiB to 5 GiB per part, at most 10,000 parts: with
/// 16 MiB parts, objects up to 156 GiB).
pub const PART_SIZE: usize = 16 << 20;
/// Parts uploading at once; with [`PART_SIZE`], the memory an upload holds.
pub const UPLOAD_CONCURRENCY: usize = 4;
/// Bytes per range GET of a download.
const DOWNLOAD_RANGE: u64 = 16 << 20;

/// Which object a transfer wrote or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// `s3://bucket/key`.
    pub url: String,
    /// Its length in bytes.
    pub length: u64,
    /// Its ETag, when the store gave one.
    pub etag: Option<String>,
    /// Its version id, on a versioned bucket.
    pub version: Option<String>,
}

/// Uploads the file at `source` to `url` as one multipart upload, completed only after its
/// last part is stored: until then no object appears under the key (an existing one stays as
/// it was), and on any failure the upload is aborted. Of two uploads to one key, the one that
/// completes last is the object; neither is ever mixed with the other.
pub fn upload_file(
    source: &Path,
    url: &str,
    options: &StoreOptions,
) -> Result<ObjectVersion, StoreError> {
    let (bucket, key) = Location::s3_parts(url)?;
    let (store, runtime) = connect(url, &bucket, options)?;
    let local = |e: std::io::Error| StoreError::Local {
        path: source.display().to_string(),
        source: e,
    };
    let mut file = File::open(source).map_err(local)?;
    let path = ObjectPath::from(key.as_str());
    let client = |e| StoreError::from_client(url, e);
    runtime
        .block_on(async {
            let mut upload = store.put_multipart(&path).await.map_err(client)?;
            let sent = send_parts(&mut *upload, &mut file, url).await;
            let done = match sent {
                Ok(length) => upload
                    .complete()
                    .await
                    .map(|r| (length, r))
                    .map_err(|e| SendError::Store(client(e))),
                Err(e) => Err(e),
            };
            match done {
                Ok((length, result)) => Ok(ObjectVersion {
                    url: url.to_string(),
                    length,
                    etag: result.e_tag,
                    version: result.version,
                }),
                Err(e) => {
                    // Best effort: the failure that stopped the upload is the one to report.
                    let _ = upload.abort().await;
                    Err(e)
                }
            }
        })
        .map_err(|e: SendError| match e {
            SendError::Store(e) => e,
            SendError::Local(e) => local(e),
        })
}

/// Why sending parts stopped.
enum SendError {
    Store(StoreError),
    Local(std::io::Error),
}

impl From<StoreError> for SendError {
    fn from(e: StoreError) -> SendError {
        SendError::Store(e)
    }
}

/// Reads `file` in [`PART_SIZE`] parts and uploads them, [`UPLOAD_CONCURRENCY`] at a time;
/// returns the bytes sent.
async fn send_parts(
    upload: &mut dyn MultipartUpload,
    file: &mut File,
    url: &str,
) -> Result<u64, SendError> {
    let mut length = 0u64;
    loop {
        let mut window = Vec::with_capacity(UPLOAD_CONCURRENCY);
        let mut end = false;
        while window.len() < UPLOAD_CONCURRENCY {
            let part = read_part(file).map_err(SendError::Local)?;
            if part.is_empty() && !(length == 0 && window.is_empty()) {
                end = true;
                break;
            }
            let last = part.len() < PART_SIZE;
            length += part.len() as u64;
            window.push(upload.put_part(PutPayload::from(part)));
            if last {
                end = true;
                break;
            }
        }
        futures_util::future::try_join_all(window)
            .await
            .map_err(|e| SendError::Store(StoreError::from_client(url, e)))?;
        if end {
            return Ok(length);
        }
    }
}

/// Up to [`PART_SIZE`] bytes of `file`, fewer only at its end.
fn read_part(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut part = Vec::with_capacity(PART_SIZE);
    file.take(PART_SIZE as u64).read_to_end(&mut part)?;
    Ok(part)
}

/// Downloads the object at `url` into `dest` (from offset 0; `dest_name` names it in errors), every range GET pinned to the
/// object first seen (as [`ObjectReader`] reads), several at once; returns which object it was.
/// A replaced object fails the download ([`StoreError::Changed`]) rather than mixing two.
pub fn download_file(
    url: &str,
    dest: &File,
    dest_name: &str,
    options: &StoreOptions,
) -> Result<ObjectVersion, StoreError> {
    let (bucket, key) = Location::s3_parts(url)?;
    let object = ObjectReader::open(&bucket, &key, options)?;
    let length = object.length();
    let ranges: Vec<u64> = (0..length.div_ceil(DOWNLOAD_RANGE))
        .map(|i| i * DOWNLOAD_RANGE)
        .collect();
    let local = |e: std::io::Error| StoreError::Local {
        path: dest_name.to_string(),
        source: e,
    };
    dest.set_len(length).map_err(local)?;
    in_read_pool(|| {
        ranges.par_iter().try_for_each(|&offset| {
            let bytes = object.read_range(offset, DOWNLOAD_RANGE.min(length - offset))?;
            dest.write_all_at(&bytes, offset).map_err(local)
        })
    })??;
    Ok(ObjectVersion {
        url: url.to_string(),
        length,
        etag: Some(object.etag().to_string()),
        version: object.version().map(str::to_string),
    })
}

/// Most objects [`list_folder`] reads under one prefix before giving up: a checkpoint folder
/// holds at most [`tensorseal::MAX_SHARDS`] shards and an index, so this leaves room for other
/// files while bounding the memory a hostile bucket can make a listing take.
pub const MAX_LISTED: usize = 4 * tensorseal::MAX_SHARDS;

/// The objects directly under the folder `url` (`s3://BUCKET/PREFIX`, with or without a
/// trailing `/`): each one's name after the prefix and its length, sorted by name. Objects in
/// deeper "folders" are skipped. For the distributed-checkpoint backend, which must see every
/// shard a folder holds, listed or not.
///
/// # Errors
/// A bad URL, the store's refusal, or more than [`MAX_LISTED`] objects under the prefix.
pub fn list_folder(url: &str, options: &StoreOptions) -> Result<Vec<(String, u64)>, StoreError> {
    use futures_util::StreamExt;
    use object_store::ObjectStore;
    let trimmed = url.trim_end_matches('/');
    let (bucket, prefix) = Location::s3_parts(trimmed)?;
    let (store, runtime) = connect(url, &bucket, options)?;
    let prefix = ObjectPath::from(prefix.as_str());
    let client = |e| StoreError::from_client(url, e);
    runtime.block_on(async {
        let mut listing = store.list(Some(&prefix));
        let mut out = Vec::new();
        let mut seen = 0usize;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(client)?;
            seen += 1;
            if seen > MAX_LISTED {
                return Err(StoreError::InvalidUrl {
                    url: url.to_string(),
                    what: "more objects under this prefix than a checkpoint folder may hold",
                });
            }
            let Some(name) = meta
                .location
                .as_ref()
                .strip_prefix(prefix.as_ref())
                .and_then(|rest| rest.strip_prefix('/'))
            else {
                continue;
            };
            if !name.is_empty() && !name.contains('/') {
                out.push((name.to_string(), meta.size));
            }
        }
        out.sort();
        Ok(out)
    })
}
