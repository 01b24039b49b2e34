//! One S3 object read by pinned range GETs, synchronously.

use crate::error::StoreError;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, RetryConfig,
};
use std::time::Duration;

/// Network bounds of an [`ObjectReader`]. The defaults suit a checkpoint read over a LAN or
/// from a cloud region: a stalled connection fails within `request_timeout`, a flaky one is
/// retried `max_retries` times with exponential backoff, never for longer than `retry_budget`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for one whole request, headers and body (one range of at most a chunk, 16 MiB).
    pub request_timeout: Duration,
    /// Retries of one request after a network error or a 5xx answer.
    pub max_retries: usize,
    /// Total time one request may spend being retried.
    pub retry_budget: Duration,
    /// Settings applied over the environment, named as the environment names them
    /// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...): for callers that pass configuration
    /// explicitly instead of through the process environment.
    pub config: Vec<(String, String)>,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_retries: 5,
            retry_budget: Duration::from_secs(180),
            config: Vec::new(),
        }
    }
}

/// One S3 object, read by range GETs that are all pinned to the object [`ObjectReader::open`]
/// saw: `If-Match` on its ETag, plus its version id on a versioned bucket.
///
/// Implements [`tensorseal::ReadAt`], so [`tensorseal::Loader::from_source`] verifies it as it
/// verifies a file. Reads may come from several threads: each blocks on its own request, and
/// the caller's thread pool bounds how many are in flight.
///
/// # Invariants
/// `length` and `etag` are those of the `HEAD` made when opening; they never change.
pub struct ObjectReader {
    url: String,
    store: AmazonS3,
    path: ObjectPath,
    length: u64,
    etag: String,
    version: Option<String>,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("url", &self.url)
            .field("length", &self.length)
            .field("etag", &self.etag)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A client for `bucket` configured from the environment and `options`, and the runtime that
/// drives its requests. `url` names the object, for errors.
pub(crate) fn connect(
    url: &str,
    bucket: &str,
    options: &StoreOptions,
) -> Result<(AmazonS3, tokio::runtime::Runtime), StoreError> {
    let url = url.to_string();
    let given = |name: &str| {
        options
            .config
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    };
    // The profile fills in only what the caller and the environment leave unset.
    let profile = crate::profile::settings(given).map_err(|what| StoreError::Profile {
        url: url.clone(),
        what,
    })?;
    let setting = |name: &str| {
        given(name).or_else(|| {
            profile
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    };
    let mut builder = AmazonS3Builder::from_env();
    // The profile's settings first, so that the caller's override them.
    for (name, value) in profile.iter().chain(&options.config) {
        let key = name
            .to_ascii_lowercase()
            .parse()
            .map_err(|source| StoreError::Config {
                url: url.clone(),
                source,
            })?;
        builder = builder.with_config(key, value);
    }
    let endpoint = setting("AWS_ENDPOINT_URL");
    if let Some(e) = endpoint.as_deref().filter(|e| {
        e.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
            && !is_loopback(e)
    }) {
        return Err(StoreError::InsecureEndpoint {
            url,
            endpoint: e.to_string(),
        });
    }
    builder = builder
        .with_bucket_name(bucket)
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: options.max_retries,
            retry_timeout: options.retry_budget,
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(options.connect_timeout)
                .with_timeout(options.request_timeout)
                .with_allow_http(endpoint.as_deref().is_some_and(is_loopback)),
        );
    // S3-compatible stores on a custom endpoint expect path-style requests; the setting
    // still wins when given.
    if setting("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_none() {
        builder = builder.with_virtual_hosted_style_request(false);
    }
    if setting("AWS_REGION").is_none() && setting("AWS_DEFAULT_REGION").is_none() {
        builder = builder.with_region("us-east-1");
    }
    let store = builder.build().map_err(|source| StoreError::Config {
        url: url.clone(),
        source,
    })?;
    // Worker threads drive the connections, so that the callers' threads (up to
    // READ_CONCURRENCY, each blocked on its own range GET) are served in parallel: on a
    // current-thread runtime only the one caller holding its driver makes progress.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tensorseal-s3-io")
        .enable_all()
        .build()
        .map_err(StoreError::Runtime)?;
    Ok((store, runtime))
}

/// Whether an endpoint URL is on this machine, where plain HTTP exposes nothing.
fn is_loopback(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ObjectReader {
    /// Opens `s3://bucket/key` with configuration from the environment (`AWS_*` variables) and
    /// `options`, and `HEAD`s it to learn its length, ETag and version.
    pub fn open(
        bucket: &str,
        key: &str,
        options: &StoreOptions,
    ) -> Result<ObjectReader, StoreError> {
        let url = format!("s3://{bucket}/{key}");
        let (store, runtime) = connect(&url, bucket, options)?;
        let path = ObjectPath::from(key);
        let meta = runtime
            .block_on(store.head(&path))
            .map_err(|e| StoreError::from_client(&url, e))?;
        let etag = meta
            .e_tag
            .ok_or_else(|| StoreError::NoEtag { url: url.clone() })?;
        Ok(ObjectReader {
            url,
            store,
            path,
            length: meta.size,
            etag,
            version: meta.version,
            runtime,
        })
    }

    /// The object's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object's length as first seen.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The version id every read is pinned to, on a versioned bucket.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The ETag every read is pinned to.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Reads `len` bytes at `offset` with one range GET pinned to the object first seen.
    pub fn read_range(&self, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        // Checked before allocating: a range past the object's end is refused, not reserved.
        if offset.checked_add(len).is_none_or(|end| end > self.length) {
            return Err(StoreError::ShortRead {
                url: self.url.clone(),
                offset,
                wanted: len,
                got: self.length.saturating_sub(offset),
            });
        }
        let mut buf = vec![0u8; len as usize];
        self.read_into(offset, &mut buf)?;
        Ok(buf)
    }

    /// Fills `buf` from `offset` with one range GET pinned to the object first seen, copying
    /// the body's pieces straight into `buf` as they arrive (collecting them first, then
    /// copying, cost two extra passes over every byte: 0.2 s of a 1 GiB load on two cores).
    pub fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        use futures_util::StreamExt;
        let len = buf.len() as u64;
        if len == 0 {
            return Ok(());
        }
        let short = |got: u64| StoreError::ShortRead {
            url: self.url.clone(),
            offset,
            wanted: len,
            got,
        };
        let end = offset.checked_add(len).filter(|&e| e <= self.length);
        let Some(end) = end else {
            return Err(short(self.length.saturating_sub(offset)));
        };
        let options = GetOptions {
            if_match: Some(self.etag.clone()),
            version: self.version.clone(),
            range: Some(GetRange::Bounded(offset..end)),
            ..GetOptions::default()
        };
        let client = |e| match e {
            object_store::Error::Precondition { .. } => StoreError::Changed {
                url: self.url.clone(),
                etag: self.etag.clone(),
            },
            e => StoreError::from_client(&self.url, e),
        };
        self.runtime.block_on(async {
            let mut body = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(client)?
                .into_stream();
            let mut got = 0usize;
            while let Some(piece) = body.next().await {
                let piece = piece.map_err(client)?;
                let Some(dest) = buf.get_mut(got..got + piece.len()) else {
                    return Err(short((got + piece.len()) as u64));
                };
                dest.copy_from_slice(&piece);
                got += piece.len();
            }
            if got != buf.len() {
                return Err(short(got as u64));
            }
            Ok(())
        })
    }
}

impl tensorseal::ReadAt for ObjectReader {
    fn length(&self) -> std::io::Result<u64> {
        Ok(self.length)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.read_into(offset, buf).map_err(StoreError::into_io)
    }

    /// Every read is a range GET: a whole chunk (16 MiB) per request, not a cache-sized piece.
    fn piece_size(&self) -> usize {
        16 << 20
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn plain_http_only_to_this_machine() {
        for ok in [
            "http://127.0.0.1:9000",
            "http://localhost:5000/",
            "http://[::1]:80",
        ] {
            assert!(is_loopback(ok), "{ok}");
        }
        for no in [
            "http://example.com",
            "https://127.0.0.1",
            "http://127.0.0.1.evil.com:1",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }
}
