//! The container layer of `torch.save`'s zip format (torch >= 1.6): which records exist and what
//! the small ones say. The pickle in `data.pkl` is left to the pickle layer, which resolves
//! persistent ids through [`TorchZip::storage`].
//!
//! Names are looked up exactly as torch does (research brief §2.2): the archive prefix is the
//! first central-directory entry's name up to its first `/`, and every record is
//! `<prefix>/<record>`. Anything torch would not read is refused rather than ignored, so that a
//! scanner and `torch.load` can never see different pickles: entries under a second top-level
//! folder, a second `*.pkl`, TorchScript code.

use crate::ByteOrder;
use crate::error::TorchZipError;
use crate::limits::{self, Limits};
use crate::zip::{ZipArchive, ZipEntry};
use std::borrow::Cow;
use std::collections::HashMap;

/// A `torch.save` zip archive whose records have been located and checked.
///
/// # Invariants
/// Every entry is `<prefix>/<record>` for one prefix; the records are `data.pkl` (present),
/// `data/<key>`, and at most one each of `byteorder`, `version` or `.data/version`,
/// `.format_version`, `.storage_alignment`, `.data/serialization_id` (plus empty directory
/// entries for the prefix, `data/` and `.data/`).
#[derive(Debug)]
pub struct TorchZip<'a> {
    zip: ZipArchive<'a>,
    prefix: String,
    data_pkl: Cow<'a, [u8]>,
    data_pkl_entry: usize,
    byte_order: Option<ByteOrder>,
    version: Option<u64>,
    format_version: Option<u64>,
    storage_alignment: Option<u64>,
    serialization_id: Option<String>,
    storages: HashMap<String, usize>,
    storage_order: Vec<usize>,
}

/// What a record name under the prefix is.
enum Record<'n> {
    DataPkl,
    ByteOrder,
    Version,
    DataVersion,
    FormatVersion,
    StorageAlignment,
    SerializationId,
    Storage(&'n str),
    Directory,
}

fn classify(rest: &str) -> Option<Record<'_>> {
    Some(match rest {
        "data.pkl" => Record::DataPkl,
        "byteorder" => Record::ByteOrder,
        "version" => Record::Version,
        ".data/version" => Record::DataVersion,
        ".format_version" => Record::FormatVersion,
        ".storage_alignment" => Record::StorageAlignment,
        ".data/serialization_id" => Record::SerializationId,
        "" | "data/" | ".data/" => Record::Directory,
        _ => match rest.strip_prefix("data/") {
            Some(key) if !key.is_empty() && !key.contains('/') => Record::Storage(key),
            _ => return None,
        },
    })
}

/// Whether a record name under the prefix shows a TorchScript (`torch.jit.save`) archive.
fn is_torchscript(rest: &str) -> bool {
    rest == "constants.pkl"
        || rest == "bytecode.pkl"
        || rest.starts_with("code/")
        || rest.starts_with("constants/")
        || rest.ends_with(".debug_pkl")
}

impl<'a> TorchZip<'a> {
    /// Parses `bytes` with the strict zip reader, then checks the torch layout.
    ///
    /// # Errors
    /// [`TorchZipError::Zip`] for container problems, then as [`TorchZip::new`].
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<TorchZip<'a>, TorchZipError> {
        TorchZip::new(ZipArchive::new(bytes, limits)?, limits)
    }

    /// Checks the torch layout of an already parsed archive.
    ///
    /// # Errors
    /// * [`TorchZipError::NotInDirectory`]: the first entry has no `/` (no prefix);
    /// * [`TorchZipError::MultiplePrefixes`]: an entry outside the first entry's top folder;
    /// * [`TorchZipError::TorchScript`]: `constants.pkl`, `code/`, `bytecode.pkl` or
    ///   `*.debug_pkl` under the prefix;
    /// * [`TorchZipError::UnexpectedMember`]: any other record torch does not write;
    /// * [`TorchZipError::MissingDataPkl`]: no `<prefix>/data.pkl`;
    /// * [`TorchZipError::BadRecord`]: `byteorder` other than `little`/`big`, a version that is
    ///   not a decimal, both `version` and `.data/version`;
    /// * [`TorchZipError::Limit`]: `data.pkl` over [`Limits::max_pickle_size`].
    ///
    /// Every error names the member and its offset.
    pub fn new(zip: ZipArchive<'a>, limits: &Limits) -> Result<TorchZip<'a>, TorchZipError> {
        let first = &zip.entries()[0];
        let Some((prefix, _)) = first.name().split_once('/') else {
            return Err(TorchZipError::NotInDirectory {
                member: first.name().to_owned(),
                offset: first.header_offset(),
            });
        };
        let prefix = prefix.to_owned();
        let dir = format!("{prefix}/");

        // TorchScript first: its archives also hold data.pkl and data/ records, and the message
        // must say what the file is rather than name a stray member.
        for e in zip.entries() {
            if let Some(rest) = e.name().strip_prefix(&dir)
                && is_torchscript(rest)
            {
                return Err(TorchZipError::TorchScript {
                    evidence: e.name().to_owned(),
                    offset: e.header_offset(),
                });
            }
        }

        let mut found: HashMap<&'static str, usize> = HashMap::new();
        let mut storages = HashMap::new();
        let mut storage_order = Vec::new();
        for (i, e) in zip.entries().iter().enumerate() {
            let Some(rest) = e.name().strip_prefix(&dir) else {
                return Err(TorchZipError::MultiplePrefixes {
                    prefix,
                    member: e.name().to_owned(),
                    offset: e.header_offset(),
                });
            };
            let unexpected = || TorchZipError::UnexpectedMember {
                member: e.name().to_owned(),
                offset: e.header_offset(),
            };
            let slot = match classify(rest).ok_or_else(unexpected)? {
                Record::Directory if e.is_dir() => continue,
                Record::Directory => return Err(unexpected()),
                Record::Storage(key) => {
                    // The zip reader refuses duplicate names, so keys are unique.
                    storages.insert(key.to_owned(), i);
                    storage_order.push(i);
                    continue;
                }
                Record::DataPkl => "data.pkl",
                Record::ByteOrder => "byteorder",
                Record::Version => "version",
                Record::DataVersion => ".data/version",
                Record::FormatVersion => ".format_version",
                Record::StorageAlignment => ".storage_alignment",
                Record::SerializationId => ".data/serialization_id",
            };
            found.insert(slot, i);
        }

        let entry = |name: &str| found.get(name).map(|&i| &zip.entries()[i]);
        if let (Some(_), Some(e)) = (entry("version"), entry(".data/version")) {
            return Err(TorchZipError::BadRecord {
                member: e.name().to_owned(),
                offset: e.header_offset(),
                what: format!(
                    "both {prefix}/version and {prefix}/.data/version exist; torch would read \
                     only one of them"
                ),
            });
        }
        let Some(&data_pkl_entry) = found.get("data.pkl") else {
            return Err(TorchZipError::MissingDataPkl {
                expected: format!("{prefix}/data.pkl"),
            });
        };
        let pkl = &zip.entries()[data_pkl_entry];
        limits::check(
            "max_pickle_size",
            pkl.size(),
            limits.max_pickle_size,
            pkl.central_offset(),
        )
        .map_err(|source| TorchZipError::Limit {
            member: pkl.name().to_owned(),
            source,
        })?;
        let data_pkl = zip.read(pkl)?;

        let small = |e: &ZipEntry| -> Result<Cow<'a, [u8]>, TorchZipError> {
            if e.size() > 256 {
                return Err(bad(e, format!("{} bytes; torch writes a few", e.size())));
            }
            Ok(zip.read(e)?)
        };
        let byte_order = match entry("byteorder") {
            None => None,
            Some(e) => Some(match &*small(e)? {
                b"little" => ByteOrder::Little,
                b"big" => ByteOrder::Big,
                other => {
                    return Err(bad(
                        e,
                        format!(
                            "{:?} is neither \"little\" nor \"big\"",
                            String::from_utf8_lossy(other)
                        ),
                    ));
                }
            }),
        };
        let decimal = |name: &str| -> Result<Option<u64>, TorchZipError> {
            let Some(e) = entry(name) else {
                return Ok(None);
            };
            let data = small(e)?;
            let text = data.strip_suffix(b"\n").unwrap_or(&data);
            let ok = !text.is_empty() && text.len() <= 19 && text.iter().all(u8::is_ascii_digit);
            if !ok {
                return Err(bad(
                    e,
                    format!(
                        "{:?} is not a decimal number",
                        String::from_utf8_lossy(&data)
                    ),
                ));
            }
            let s = std::str::from_utf8(text).expect("ASCII digits");
            Ok(Some(s.parse().expect("at most 19 digits")))
        };
        let version = match decimal("version")? {
            Some(v) => Some(v),
            None => decimal(".data/version")?,
        };
        let format_version = decimal(".format_version")?;
        let storage_alignment = decimal(".storage_alignment")?;
        let serialization_id = match entry(".data/serialization_id") {
            None => None,
            Some(e) => {
                let data = small(e)?;
                if data.is_empty() || !data.iter().all(u8::is_ascii_alphanumeric) {
                    return Err(bad(e, "not an ASCII identifier".into()));
                }
                Some(String::from_utf8(data.into_owned()).expect("ASCII"))
            }
        };
        Ok(TorchZip {
            zip,
            prefix,
            data_pkl,
            data_pkl_entry,
            byte_order,
            version,
            format_version,
            storage_alignment,
            serialization_id,
            storages,
            storage_order,
        })
    }

    /// The archive prefix (`archive` for files saved to a buffer, the file stem otherwise).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bytes of `<prefix>/data.pkl`.
    pub fn data_pkl(&self) -> &[u8] {
        &self.data_pkl
    }

    /// The `data.pkl` member (its data offset locates pickle errors in the file).
    pub fn data_pkl_entry(&self) -> &ZipEntry {
        &self.zip.entries()[self.data_pkl_entry]
    }

    /// The byte order of the storages: the `byteorder` record, little when there is none (as
    /// torch >= 2.1 assumes).
    pub fn byte_order(&self) -> ByteOrder {
        self.byte_order.unwrap_or(ByteOrder::Little)
    }

    /// Whether the archive has a `byteorder` record.
    pub fn byte_order_recorded(&self) -> bool {
        self.byte_order.is_some()
    }

    /// The `version` (or `.data/version`) record.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The `.format_version` record (torch >= 2.7).
    pub fn format_version(&self) -> Option<u64> {
        self.format_version
    }

    /// The `.storage_alignment` record (torch >= 2.7).
    pub fn storage_alignment(&self) -> Option<u64> {
        self.storage_alignment
    }

    /// The `.data/serialization_id` record.
    pub fn serialization_id(&self) -> Option<&str> {
        self.serialization_id.as_deref()
    }

    /// Storage keys (`<prefix>/data/<key>`), in archive order.
    pub fn storage_keys(&self) -> impl Iterator<Item = &str> + '_ {
        let dir_len = self.prefix.len() + "/data/".len();
        self.storage_order
            .iter()
            .map(move |&i| &self.zip.entries()[i].name()[dir_len..])
    }

    /// Number of storage records.
    pub fn storage_count(&self) -> usize {
        self.storage_order.len()
    }

    /// The zip entry of storage `key`, for its offset and size.
    pub fn storage_entry(&self, key: &str) -> Option<&ZipEntry> {
        self.storages.get(key).map(|&i| &self.zip.entries()[i])
    }

    /// The bytes of storage `key`: a zero-copy slice of the input when stored (as torch always
    /// writes), an owned buffer when the archive was re-zipped with deflate. `None` when there
    /// is no such record.
    ///
    /// # Errors
    /// [`TorchZipError::Zip`] if inflating fails (checked at parse time already, so only if the
    /// input changed since).
    pub fn storage(&self, key: &str) -> Result<Option<Cow<'a, [u8]>>, TorchZipError> {
        match self.storage_entry(key) {
            None => Ok(None),
            Some(e) => Ok(Some(self.zip.read(e)?)),
        }
    }

    /// The underlying archive.
    pub fn archive(&self) -> &ZipArchive<'a> {
        &self.zip
    }

    /// Whether every CRC in the archive is 0 (`set_crc32_options(False)`), so the data was
    /// accepted without a CRC check.
    pub fn crc_absent(&self) -> bool {
        self.zip.crc_absent()
    }
}

fn bad(e: &ZipEntry, what: String) -> TorchZipError {
    TorchZipError::BadRecord {
        member: e.name().to_owned(),
        offset: e.data_offset(),
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zip_test_support::stored_zip;

    fn parse(members: &[(&str, &[u8])]) -> Result<(), TorchZipError> {
        let bytes = stored_zip(members);
        TorchZip::parse(&bytes, &Limits::default()).map(|_| ())
    }

    #[test]
    fn minimal_archive() {
        let bytes = stored_zip(&[
            ("m/data.pkl", b"\x80\x02}q\x00."),
            ("m/data/0", b"abcd"),
            ("m/byteorder", b"big"),
            ("m/version", b"3\n"),
        ]);
        let t = TorchZip::parse(&bytes, &Limits::default()).unwrap();
        assert_eq!(t.prefix(), "m");
        assert_eq!(t.byte_order(), ByteOrder::Big);
        assert_eq!(t.version(), Some(3));
        assert_eq!(t.storage_keys().collect::<Vec<_>>(), ["0"]);
        assert_eq!(&*t.storage("0").unwrap().unwrap(), b"abcd");
        assert!(t.storage("1").unwrap().is_none());
    }

    #[test]
    fn refusals() {
        let pkl: &[u8] = b".";
        assert!(matches!(
            parse(&[("data.pkl", pkl)]),
            Err(TorchZipError::NotInDirectory { .. })
        ));
        assert!(matches!(
            parse(&[("a/data.pkl", pkl), ("b/data.pkl", pkl)]),
            Err(TorchZipError::MultiplePrefixes { .. })
        ));
        assert!(matches!(
            parse(&[("a/data.pkl", pkl), ("a/constants.pkl", pkl)]),
            Err(TorchZipError::TorchScript { .. })
        ));
        assert!(matches!(
            parse(&[("a/data.pkl", pkl), ("a/extra.pkl", pkl)]),
            Err(TorchZipError::UnexpectedMember { .. })
        ));
        assert!(matches!(
            parse(&[("a/data.pkl", pkl), ("a/data/x/y", pkl)]),
            Err(TorchZipError::UnexpectedMember { .. })
        ));
        assert!(matches!(
            parse(&[("a/data/0", pkl)]),
            Err(TorchZipError::MissingDataPkl { .. })
        ));
        assert!(matches!(
            parse(&[("a/data.pkl", pkl), ("a/byteorder", b"little\n")]),
            Err(TorchZipError::BadRecord { .. })
        ));
        assert!(matches!(
            parse(&[("a/data.pkl", pkl), ("a/version", b"x")]),
            Err(TorchZipError::BadRecord { .. })
        ));
        assert!(matches!(
            parse(&[
                ("a/data.pkl", pkl),
                ("a/version", b"3"),
                ("a/.data/version", b"6")
            ]),
            Err(TorchZipError::BadRecord { .. })
        ));
        assert!(parse(&[("a/", b""), ("a/data.pkl", pkl), ("a/data/", b"")]).is_ok());
    }
}
