//! Where a checkpoint lives: a local path or an object URL.

use crate::error::StoreError;
use std::path::PathBuf;

/// A checkpoint's location as given on a command line or to an API.
///
/// # Invariants
/// For [`Location::S3`], `bucket` and `key` are non-empty and `key` does not end in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path on the local file system.
    Local(PathBuf),
    /// An object in an S3 (or S3-compatible) bucket.
    S3 {
        /// The bucket name.
        bucket: String,
        /// The object key, without a leading `/`.
        key: String,
    },
}

impl Location {
    /// Parses `s3://bucket/key`; anything without a `scheme://` prefix is a local path. Other
    /// schemes are refused rather than taken as a relative path.
    pub fn parse(arg: &str) -> Result<Location, StoreError> {
        let invalid = |what| StoreError::InvalidUrl {
            url: arg.to_string(),
            what,
        };
        let Some((scheme, rest)) = arg.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(arg)));
        };
        if scheme != "s3" {
            return Err(invalid(
                "unsupported URL scheme: only s3:// URLs and local paths are read",
            ));
        }
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| invalid("an s3:// URL needs a key after the bucket: s3://BUCKET/KEY"))?;
        if bucket.is_empty() {
            return Err(invalid("an s3:// URL needs a bucket name"));
        }
        if key.is_empty() || key.ends_with('/') {
            return Err(invalid(
                "an s3:// URL must name one object, not a prefix: s3://BUCKET/KEY",
            ));
        }
        if key.contains(['?', '#']) {
            return Err(invalid(
                "query strings and fragments are not part of an s3:// key",
            ));
        }
        Ok(Location::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// Whether `arg` is a URL (has a `scheme://` prefix) rather than a path.
    pub fn is_url(arg: &str) -> bool {
        arg.contains("://")
    }

    /// The URL a path argument holds, when it is one rather than a local path.
    pub fn url_of(arg: &std::path::Path) -> Option<&str> {
        arg.to_str().filter(|s| Location::is_url(s))
    }

    /// The bucket and key of `url`, which must be an `s3://` URL.
    pub(crate) fn s3_parts(url: &str) -> Result<(String, String), StoreError> {
        match Location::parse(url)? {
            Location::S3 { bucket, key } => Ok((bucket, key)),
            Location::Local(_) => Err(StoreError::InvalidUrl {
                url: url.to_string(),
                what: "not an s3:// URL",
            }),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_paths() {
        assert_eq!(
            Location::parse("s3://b/dir/m.tseal").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "dir/m.tseal".into()
            }
        );
        assert_eq!(
            Location::parse("dir/m.tseal").unwrap(),
            Location::Local("dir/m.tseal".into())
        );
        assert_eq!(Location::parse("s3://b/k").unwrap().to_string(), "s3://b/k");
    }

    #[test]
    fn refuses_what_is_not_one_object() {
        for bad in [
            "s3://b",
            "s3://b/",
            "s3:///k",
            "s3://b/dir/",
            "gs://b/k",
            "s3://b/k?x=1",
        ] {
            let e = Location::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with(bad), "{e}");
        }
    }
}
