//! Errors of the storage layer. Every variant names the URL it is about.

/// What went wrong reaching or reading an object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The argument looked like a URL but is not one this crate reads.
    #[error("{url}: {what}")]
    InvalidUrl {
        /// The argument as given.
        url: String,
        /// What is wrong with it.
        what: &'static str,
    },
    /// The store's configuration (from the environment) is unusable.
    #[error("{url}: S3 configuration: {source}")]
    Config {
        /// The object's URL.
        url: String,
        /// The client's message.
        #[source]
        source: object_store::Error,
    },
    /// The AWS shared files name a profile that cannot be used (spec: `profile.rs`).
    #[error("{url}: {what}")]
    Profile {
        /// The object's URL.
        url: String,
        /// What is wrong, naming the file or profile.
        what: String,
    },
    /// A plain-HTTP endpoint that is not on this machine: credentials and data would cross the
    /// network in the clear.
    #[error(
        "{url}: AWS_ENDPOINT_URL {endpoint} is plain http:// to another machine; use https:// (plain http:// is allowed only to a loopback address)"
    )]
    InsecureEndpoint {
        /// The object's URL.
        url: String,
        /// The endpoint configured.
        endpoint: String,
    },
    /// No object under this key (HTTP 404).
    #[error("{url}: no such object")]
    NotFound {
        /// The object's URL.
        url: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// The credentials were refused (HTTP 401/403).
    #[error("{url}: access denied")]
    Denied {
        /// The object's URL.
        url: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// The object's ETag or version changed since it was first seen (HTTP 412 on a pinned read).
    #[error("{url}: the object changed while it was being read (ETag {etag} no longer matches)")]
    Changed {
        /// The object's URL.
        url: String,
        /// The ETag (or version id) first seen.
        etag: String,
    },
    /// The server answered a range read with a different number of bytes than asked for.
    #[error("{url}: asked for {wanted} bytes at offset {offset}, the server sent {got}")]
    ShortRead {
        /// The object's URL.
        url: String,
        /// Range start.
        offset: u64,
        /// Bytes asked for.
        wanted: u64,
        /// Bytes received.
        got: u64,
    },
    /// The server gave no ETag: reads could not be pinned to one object.
    #[error("{url}: the server sent no ETag, so range reads cannot be pinned to one object")]
    NoEtag {
        /// The object's URL.
        url: String,
    },
    /// Any other request failure, after retries.
    #[error("{url}: {source}")]
    Request {
        /// The object's URL.
        url: String,
        /// The client's error.
        #[source]
        source: object_store::Error,
    },
    /// The local side of a transfer failed: the file to upload, or the one downloaded into.
    #[error("{path}: {source}")]
    Local {
        /// The local file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime under the synchronous API could not start.
    #[error("cannot start the I/O runtime")]
    Runtime(#[source] std::io::Error),
}

impl StoreError {
    /// Classifies a client error about `url`.
    pub(crate) fn from_client(url: &str, source: object_store::Error) -> StoreError {
        let url = url.to_string();
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound { url, source },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => StoreError::Denied { url, source },
            source => StoreError::Request { url, source },
        }
    }

    /// As an `io::Error` for [`tensorseal::ReadAt`], keeping this error as the source. A changed
    /// object becomes [`tensorseal::SourceChanged`], which the loader reports as a verification
    /// failure rather than an I/O error.
    pub(crate) fn into_io(self) -> std::io::Error {
        use std::io::{Error, ErrorKind};
        let kind = match &self {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::Denied { .. } => ErrorKind::PermissionDenied,
            StoreError::Changed { .. } => {
                return Error::other(tensorseal::SourceChanged::new(self.to_string()));
            }
            _ => ErrorKind::Other,
        };
        Error::new(kind, self)
    }
}
