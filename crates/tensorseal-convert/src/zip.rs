//! A strict zip reader over `&[u8]` (a mapped file).
//!
//! Zip is a container many tools read differently, and attackers use the differences (scanner
//! research §3.1, C2-C13): a scanner and `torch.load` must never see different bytes. This reader
//! therefore accepts one reading only, and refuses everything else:
//!
//! * the end-of-central-directory record ends the file (its comment runs exactly to the last
//!   byte) and is unique; a ZIP64 locator and record, when present, sit right before it and agree
//!   with every 32-bit field that is not saturated;
//! * the central directory is exactly `cd_size` bytes at `cd_offset`, holds exactly the declared
//!   number of entries, and is followed directly by the end records;
//! * every entry's local header is parsed and agrees with its central record (name bytes, flags,
//!   method, and CRC and sizes where the local header carries them);
//! * entries tile the file from offset 0 up to the central directory: local header, data,
//!   optional data descriptor, next local header, with no gap, no overlap and nothing in front
//!   (polyglots);
//! * only general-purpose flag bits 3 (data descriptor) and 11 (UTF-8 name) may be set, and only
//!   methods stored (0) and deflate (8) are accepted;
//! * names are unique, also after normalisation (case, trailing `/`), and contain no `..`, `.`
//!   or empty segment, no leading `/` or drive letter, no backslash, NUL or control character;
//!   non-ASCII names need the UTF-8 flag; the Info-ZIP Unicode path/comment extra fields (which
//!   some tools use instead of the header name) are refused;
//! * every member's CRC-32 is checked, except in torch's `set_crc32_options(False)` mode, where
//!   every CRC is 0: that is accepted only when all are, and reported by
//!   [`ZipArchive::crc_absent`];
//! * deflated members are bounded: declared size and ratio are checked against [`Limits`] before
//!   anything is inflated, inflation stops at the declared size, and the stream must end exactly
//!   at the member's compressed size and produce exactly its declared size.
//!
//! Stored members are returned as zero-copy slices of the input; deflated ones are inflated into
//! owned buffers whose size was checked first.

use crate::error::ZipError;
use crate::limits::{self, Limits};
use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};
use std::borrow::Cow;
use std::collections::HashMap;

const LOCAL_SIG: [u8; 4] = *b"PK\x03\x04";
const CENTRAL_SIG: [u8; 4] = *b"PK\x01\x02";
const EOCD_SIG: [u8; 4] = *b"PK\x05\x06";
const ZIP64_EOCD_SIG: [u8; 4] = *b"PK\x06\x06";
const ZIP64_LOCATOR_SIG: [u8; 4] = *b"PK\x06\x07";
const DESCRIPTOR_SIG: [u8; 4] = *b"PK\x07\x08";

const LOCAL_LEN: u64 = 30;
const CENTRAL_LEN: u64 = 46;
const EOCD_LEN: u64 = 22;
const ZIP64_EOCD_LEN: u64 = 56;
const ZIP64_LOCATOR_LEN: u64 = 20;

/// Flag bit 3: CRC and sizes follow the data in a data descriptor.
const FLAG_DESCRIPTOR: u16 = 1 << 3;
/// Flag bit 11: the name is UTF-8.
const FLAG_UTF8: u16 = 1 << 11;

const EXTRA_ZIP64: u16 = 0x0001;
/// Info-ZIP Unicode Path: another name for the member, honoured by some tools only.
const EXTRA_UNICODE_PATH: u16 = 0x7075;
/// Info-ZIP Unicode Comment.
const EXTRA_UNICODE_COMMENT: u16 = 0x6375;

/// How a member's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Method 0: the bytes as they are.
    Stored,
    /// Method 8: raw deflate.
    Deflated,
}

/// One member of a [`ZipArchive`], as its central directory record and local header agree.
///
/// # Invariants
/// `data_offset + compressed_size` is within the file; for [`Method::Stored`],
/// `compressed_size == size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    name: String,
    method: Method,
    flags: u16,
    crc32: u32,
    compressed_size: u64,
    size: u64,
    header_offset: u64,
    data_offset: u64,
    central_offset: u64,
    descriptor_len: u64,
}

impl ZipEntry {
    /// The member name, exactly as stored (UTF-8).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stored or deflated.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The general-purpose flags (only bits 3 and 11 can be set).
    pub fn flags(&self) -> u16 {
        self.flags
    }

    /// The CRC-32 recorded for the data (0 for every member of a CRC-less torch file).
    pub fn crc32(&self) -> u32 {
        self.crc32
    }

    /// Size of the data as stored in the file.
    pub fn compressed_size(&self) -> u64 {
        self.compressed_size
    }

    /// Size of the data once inflated (equal to the compressed size when stored).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Offset of the local file header.
    pub fn header_offset(&self) -> u64 {
        self.header_offset
    }

    /// Offset of the member's (compressed) data.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Offset of the member's central directory record.
    pub fn central_offset(&self) -> u64 {
        self.central_offset
    }

    /// Whether the name ends with `/` (a directory entry, always empty).
    pub fn is_dir(&self) -> bool {
        self.name.ends_with('/')
    }

    /// End of the member's bytes: data plus data descriptor.
    fn end(&self) -> u64 {
        self.data_offset + self.compressed_size + self.descriptor_len
    }
}

/// A zip archive whose every structural rule has been checked (see the module docs).
///
/// # Example
/// ```
/// use tensorseal_convert::{Limits, ZipArchive};
/// # let bytes = tensorseal_convert::zip_test_support::stored_zip(&[("a/x", b"hello")]);
/// let zip = ZipArchive::new(&bytes, &Limits::default())?;
/// let entry = zip.by_name("a/x").expect("present");
/// assert_eq!(&*zip.read(entry)?, b"hello");
/// # Ok::<(), tensorseal_convert::ZipError>(())
/// ```
#[derive(Debug)]
pub struct ZipArchive<'a> {
    bytes: &'a [u8],
    entries: Vec<ZipEntry>,
    by_name: HashMap<String, usize>,
    crc_absent: bool,
    zip64: bool,
    comment: &'a [u8],
}

/// Little-endian field reads from a record known to be in bounds.
struct Rec<'a>(&'a [u8]);

impl Rec<'_> {
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().expect("4 bytes"))
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }
}

/// `bytes[offset..offset + len]`, or `None` when it runs past the end.
fn slice(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

fn malformed(
    record: &'static str,
    member: Option<&str>,
    offset: u64,
    what: impl Into<String>,
) -> ZipError {
    ZipError::Malformed {
        record,
        member: member.map(str::to_owned),
        offset,
        what: what.into(),
    }
}

/// The ZIP64 extended-information values an extra field supplies.
#[derive(Debug, Default, Clone, Copy)]
struct Zip64Extra {
    /// The raw 8-byte values in order.
    values: [u64; 4],
    /// How many 8-byte values the field holds.
    count: usize,
    /// Whether a ZIP64 extra field is present at all.
    present: bool,
}

/// Parses an extra-field area: well-formed TLVs that exactly fill it, no duplicate ZIP64 field,
/// no Unicode path/comment field. Returns the ZIP64 field's values.
fn parse_extra(
    extra: &[u8],
    offset: u64,
    record: &'static str,
    member: &str,
) -> Result<Zip64Extra, ZipError> {
    let mut z = Zip64Extra::default();
    let mut pos = 0usize;
    while pos < extra.len() {
        let Some(head) = extra.get(pos..pos + 4) else {
            return Err(malformed(
                record,
                Some(member),
                offset + pos as u64,
                "extra field area ends inside a field header",
            ));
        };
        let id = u16::from_le_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let Some(body) = extra.get(pos + 4..pos + 4 + len) else {
            return Err(malformed(
                record,
                Some(member),
                offset + pos as u64,
                format!("extra field {id:#06x} of {len} bytes runs past the extra field area"),
            ));
        };
        match id {
            EXTRA_ZIP64 => {
                if z.present {
                    return Err(malformed(
                        record,
                        Some(member),
                        offset + pos as u64,
                        "two ZIP64 extra fields",
                    ));
                }
                if len % 8 != 0 && len != 28 {
                    return Err(malformed(
                        record,
                        Some(member),
                        offset + pos as u64,
                        format!("ZIP64 extra field of {len} bytes"),
                    ));
                }
                z.present = true;
                // Up to three 8-byte values, then an optional 4-byte disk number.
                z.count = (len / 8).min(3);
                for (i, v) in z.values.iter_mut().take(z.count).enumerate() {
                    *v = u64::from_le_bytes(body[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
                }
                if len == 28 && u32::from_le_bytes(body[24..28].try_into().expect("4")) != 0 {
                    return Err(malformed(
                        record,
                        Some(member),
                        offset + pos as u64,
                        "ZIP64 extra field names another disk",
                    ));
                }
            }
            EXTRA_UNICODE_PATH | EXTRA_UNICODE_COMMENT => {
                return Err(malformed(
                    record,
                    Some(member),
                    offset + pos as u64,
                    "Info-ZIP Unicode path/comment extra field: some tools use it instead of the \
                     header name, so the member could have two names",
                ));
            }
            _ => {}
        }
        pos += 4 + len;
    }
    Ok(z)
}

/// Why a member name is refused, or `None` when it is acceptable.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty name");
    }
    if name.contains('\0') {
        return Some("NUL byte in the name");
    }
    if name.chars().any(|c| c.is_control()) {
        return Some("control character in the name");
    }
    if name.contains('\\') {
        return Some("backslash in the name (a path separator on Windows)");
    }
    if name.starts_with('/') {
        return Some("absolute path");
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Some("drive-letter path");
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    for seg in trimmed.split('/') {
        match seg {
            ".." => return Some("'..' segment (path traversal)"),
            "." => return Some("'.' segment"),
            "" => return Some("empty path segment"),
            _ => {}
        }
    }
    None
}

/// The name two members must not share: case-folded, without a trailing `/`.
fn normalized(name: &str) -> String {
    name.strip_suffix('/').unwrap_or(name).to_lowercase()
}

/// Describes flag bits other than 3 and 11.
fn describe_flags(bad: u16) -> String {
    let mut parts = Vec::new();
    for bit in 0..16 {
        if bad & (1 << bit) != 0 {
            parts.push(match bit {
                0 => "bit 0: encrypted",
                1 | 2 => "bits 1-2: compression options",
                4 => "bit 4: enhanced deflate",
                5 => "bit 5: compressed patched data",
                6 => "bit 6: strong encryption",
                13 => "bit 13: encrypted central directory",
                _ => "reserved bit",
            });
        }
    }
    parts.dedup();
    parts.join(", ")
}

/// End records located and reconciled.
struct EndRecords<'a> {
    entries: u64,
    cd_size: u64,
    cd_offset: u64,
    /// Where the central directory must end: the ZIP64 record, or the classic one.
    cd_end: u64,
    zip64: bool,
    comment: &'a [u8],
}

/// Whether an end-of-central-directory record ends `bytes` (used to name polyglots).
pub(crate) fn ends_like_zip(bytes: &[u8]) -> bool {
    bytes.len() as u64 >= EOCD_LEN && find_eocd(bytes).is_ok()
}

/// Finds the unique end-of-central-directory record whose comment ends the file.
fn find_eocd(bytes: &[u8]) -> Result<u64, ZipError> {
    let len = bytes.len() as u64;
    let mut found: Option<u64> = None;
    let max_comment = (len - EOCD_LEN).min(u64::from(u16::MAX));
    for comment_len in 0..=max_comment {
        let pos = len - EOCD_LEN - comment_len;
        let rec = &bytes[pos as usize..];
        if rec[..4] == EOCD_SIG && u64::from(Rec(rec).u16(20)) == comment_len {
            match found {
                None => found = Some(pos),
                Some(first) => {
                    return Err(ZipError::AmbiguousEndRecord { first, second: pos });
                }
            }
        }
    }
    found.ok_or(ZipError::NoEndRecord)
}

fn reconcile(
    field: &'static str,
    classic: u64,
    saturated: u64,
    zip64: Option<u64>,
    offset: u64,
) -> Result<u64, ZipError> {
    match zip64 {
        None if classic == saturated => Err(malformed(
            "end of central directory",
            None,
            offset,
            format!("{field} is saturated ({classic:#x}) but there is no ZIP64 record"),
        )),
        None => Ok(classic),
        Some(v) if classic == saturated => Ok(v),
        Some(v) if v == classic => Ok(v),
        Some(v) => Err(ZipError::Zip64Mismatch {
            field,
            member: None,
            classic,
            zip64: v,
            offset,
        }),
    }
}

fn parse_end_records<'a>(bytes: &'a [u8], eocd: u64) -> Result<EndRecords<'a>, ZipError> {
    const R: &str = "end of central directory";
    let rec = Rec(&bytes[eocd as usize..]);
    let disk = rec.u16(4);
    let cd_disk = rec.u16(6);
    let entries_disk = rec.u16(8);
    let entries_total = rec.u16(10);
    let cd_size = rec.u32(12);
    let cd_offset = rec.u32(16);
    let comment_len = rec.u16(20);
    let comment = &bytes[(eocd + EOCD_LEN) as usize..][..usize::from(comment_len)];
    if entries_disk != entries_total {
        return Err(malformed(
            R,
            None,
            eocd + 8,
            format!("{entries_disk} entries on this disk but {entries_total} in total"),
        ));
    }

    // ZIP64: a locator right before the classic record, pointing at a record right before it.
    let mut z64: Option<[u64; 5]> = None;
    let mut cd_end = eocd;
    if eocd >= ZIP64_LOCATOR_LEN {
        let loc_off = eocd - ZIP64_LOCATOR_LEN;
        let loc = &bytes[loc_off as usize..eocd as usize];
        if loc[..4] == ZIP64_LOCATOR_SIG {
            const RL: &str = "ZIP64 end of central directory locator";
            let loc = Rec(loc);
            if loc.u32(4) != 0 || loc.u32(16) != 1 {
                return Err(malformed(RL, None, loc_off, "multi-disk archive"));
            }
            let rec_off = loc.u64(8);
            if rec_off.checked_add(ZIP64_EOCD_LEN) != Some(loc_off) {
                return Err(malformed(
                    RL,
                    None,
                    loc_off + 8,
                    format!(
                        "the ZIP64 record at offset {rec_off} does not end where the locator \
                         starts ({loc_off}); extensible data and gaps are refused"
                    ),
                ));
            }
            const RZ: &str = "ZIP64 end of central directory record";
            let r = Rec(&bytes[rec_off as usize..loc_off as usize]);
            if r.0[..4] != ZIP64_EOCD_SIG {
                return Err(malformed(RZ, None, rec_off, "bad signature"));
            }
            if r.u64(4) != ZIP64_EOCD_LEN - 12 {
                return Err(malformed(
                    RZ,
                    None,
                    rec_off + 4,
                    format!("record size {} (44 expected)", r.u64(4)),
                ));
            }
            if r.u32(16) != 0 || r.u32(20) != 0 {
                return Err(malformed(RZ, None, rec_off + 16, "multi-disk archive"));
            }
            if r.u64(24) != r.u64(32) {
                return Err(malformed(
                    RZ,
                    None,
                    rec_off + 24,
                    "entries on this disk differ from the total",
                ));
            }
            z64 = Some([r.u64(32), r.u64(40), r.u64(48), 0, 0]);
            cd_end = rec_off;
        }
    }
    if z64.is_none() && (disk != 0 || cd_disk != 0) {
        return Err(malformed(R, None, eocd + 4, "multi-disk archive"));
    }
    if let Some(z) = z64 {
        // With ZIP64 the 16-bit disk numbers may be saturated; otherwise they must be 0.
        for (v, at) in [(disk, 4), (cd_disk, 6)] {
            if v != 0 && v != u16::MAX {
                return Err(malformed(R, None, eocd + at, "multi-disk archive"));
            }
        }
        let entries = reconcile(
            "entry count",
            u64::from(entries_total),
            u64::from(u16::MAX),
            Some(z[0]),
            eocd + 10,
        )?;
        let cd_size = reconcile(
            "central directory size",
            u64::from(cd_size),
            u64::from(u32::MAX),
            Some(z[1]),
            eocd + 12,
        )?;
        let cd_offset = reconcile(
            "central directory offset",
            u64::from(cd_offset),
            u64::from(u32::MAX),
            Some(z[2]),
            eocd + 16,
        )?;
        return Ok(EndRecords {
            entries,
            cd_size,
            cd_offset,
            cd_end,
            zip64: true,
            comment,
        });
    }
    Ok(EndRecords {
        entries: reconcile(
            "entry count",
            u64::from(entries_total),
            u64::from(u16::MAX),
            None,
            eocd + 10,
        )?,
        cd_size: reconcile(
            "central directory size",
            u64::from(cd_size),
            u64::from(u32::MAX),
            None,
            eocd + 12,
        )?,
        cd_offset: reconcile(
            "central directory offset",
            u64::from(cd_offset),
            u64::from(u32::MAX),
            None,
            eocd + 16,
        )?,
        cd_end,
        zip64: false,
        comment,
    })
}

/// Values a central record declares, with ZIP64 extensions applied.
struct Central {
    name: String,
    flags: u16,
    method: Method,
    crc32: u32,
    compressed_size: u64,
    size: u64,
    header_offset: u64,
    offset: u64,
}

fn parse_central(
    bytes: &[u8],
    pos: u64,
    cd_end: u64,
    limits: &Limits,
) -> Result<(Central, u64), ZipError> {
    const R: &str = "central directory entry";
    let head = slice(bytes, pos, CENTRAL_LEN)
        .filter(|_| pos + CENTRAL_LEN <= cd_end)
        .ok_or_else(|| malformed(R, None, pos, "runs past the central directory"))?;
    let r = Rec(head);
    if r.0[..4] != CENTRAL_SIG {
        return Err(malformed(R, None, pos, "bad signature"));
    }
    let flags = r.u16(8);
    let method = r.u16(10);
    let crc32 = r.u32(16);
    let csize32 = r.u32(20);
    let usize32 = r.u32(24);
    let name_len = u64::from(r.u16(28));
    let extra_len = u64::from(r.u16(30));
    let comment_len = u64::from(r.u16(32));
    let disk = r.u16(34);
    let lho32 = r.u32(42);
    let var_len = name_len + extra_len + comment_len;
    if pos + CENTRAL_LEN + var_len > cd_end {
        return Err(malformed(
            R,
            None,
            pos,
            "name, extra field and comment run past the central directory",
        ));
    }
    limits::check(
        "max_name_length",
        name_len,
        limits.max_name_length,
        pos + 28,
    )
    .map_err(|source| ZipError::Limit {
        member: None,
        source,
    })?;
    let name_bytes = slice(bytes, pos + CENTRAL_LEN, name_len).expect("checked above");
    let name = decode_name(name_bytes, flags, pos)?;
    let extra = slice(bytes, pos + CENTRAL_LEN + name_len, extra_len).expect("checked above");
    let z = parse_extra(extra, pos + CENTRAL_LEN + name_len, R, &name)?;

    // ZIP64 values appear in order for exactly the saturated 32-bit fields (APPNOTE 4.5.3).
    let mut next = 0usize;
    let mut take = |classic: u32, field: &'static str| -> Result<u64, ZipError> {
        if classic != u32::MAX {
            return Ok(u64::from(classic));
        }
        if next >= z.count {
            return Err(malformed(
                R,
                Some(&name),
                pos,
                format!("{field} is saturated but the ZIP64 extra field does not supply it"),
            ));
        }
        next += 1;
        Ok(z.values[next - 1])
    };
    let size = take(usize32, "size")?;
    let compressed_size = take(csize32, "compressed size")?;
    let header_offset = take(lho32, "local header offset")?;
    if z.present && next != z.count {
        return Err(malformed(
            R,
            Some(&name),
            pos,
            "the ZIP64 extra field holds values for fields that are not saturated",
        ));
    }
    if disk != 0 && !(disk == u16::MAX && z.present) {
        return Err(malformed(R, Some(&name), pos + 34, "entry on another disk"));
    }
    check_flags(&name, flags, pos)?;
    let method = match method {
        0 => Method::Stored,
        8 => Method::Deflated,
        m => {
            return Err(ZipError::UnsupportedMethod {
                member: name,
                method: m,
                offset: pos,
            });
        }
    };
    if method == Method::Stored && compressed_size != size {
        return Err(ZipError::StoredSizeMismatch {
            member: name,
            compressed: compressed_size,
            size,
            offset: pos,
        });
    }
    if name.ends_with('/') && size != 0 {
        return Err(malformed(R, Some(&name), pos, "directory entry with data"));
    }
    Ok((
        Central {
            name,
            flags,
            method,
            crc32,
            compressed_size,
            size,
            header_offset,
            offset: pos,
        },
        pos + CENTRAL_LEN + var_len,
    ))
}

fn check_flags(name: &str, flags: u16, offset: u64) -> Result<(), ZipError> {
    let bad = flags & !(FLAG_DESCRIPTOR | FLAG_UTF8);
    if bad != 0 {
        return Err(ZipError::UnsupportedFlags {
            member: name.to_owned(),
            flags,
            what: describe_flags(bad),
            offset,
        });
    }
    Ok(())
}

fn decode_name(raw: &[u8], flags: u16, offset: u64) -> Result<String, ZipError> {
    let lossy = || String::from_utf8_lossy(raw).into_owned();
    let name = if raw.is_ascii() {
        std::str::from_utf8(raw).expect("ASCII")
    } else if flags & FLAG_UTF8 == 0 {
        // Without bit 11 the name is CP437 to some tools and UTF-8 to others.
        return Err(ZipError::BadName {
            member: lossy(),
            reason: "non-ASCII name without the UTF-8 flag (CP437 or UTF-8 depending on the tool)",
            offset,
        });
    } else {
        std::str::from_utf8(raw).map_err(|_| ZipError::BadName {
            member: lossy(),
            reason: "the UTF-8 flag is set but the name is not valid UTF-8",
            offset,
        })?
    };
    if let Some(reason) = name_problem(name) {
        return Err(ZipError::BadName {
            member: name.to_owned(),
            reason,
            offset,
        });
    }
    Ok(name.to_owned())
}

/// Parses and checks the local header of `c`; returns the entry with its data offset and the
/// length of its data descriptor.
fn parse_local(bytes: &[u8], c: Central, cd_offset: u64) -> Result<ZipEntry, ZipError> {
    const R: &str = "local file header";
    let pos = c.header_offset;
    let member = Some(c.name.as_str());
    let head = slice(bytes, pos, LOCAL_LEN)
        .filter(|_| pos + LOCAL_LEN <= cd_offset)
        .ok_or_else(|| malformed(R, member, pos, "outside the entries area of the file"))?;
    let r = Rec(head);
    if r.0[..4] != LOCAL_SIG {
        return Err(malformed(R, member, pos, "bad signature"));
    }
    let mismatch = |field: &'static str, central: String, local: String| ZipError::HeaderMismatch {
        member: c.name.clone(),
        field,
        central,
        local,
        offset: pos,
    };
    let flags = r.u16(6);
    if flags != c.flags {
        return Err(mismatch(
            "flags",
            format!("{:#06x}", c.flags),
            format!("{flags:#06x}"),
        ));
    }
    let method = r.u16(8);
    let central_method = match c.method {
        Method::Stored => 0,
        Method::Deflated => 8,
    };
    if method != central_method {
        return Err(mismatch(
            "method",
            central_method.to_string(),
            method.to_string(),
        ));
    }
    let crc32 = r.u32(14);
    let csize32 = r.u32(18);
    let usize32 = r.u32(22);
    let name_len = u64::from(r.u16(26));
    let extra_len = u64::from(r.u16(28));
    let data_offset = pos + LOCAL_LEN + name_len + extra_len;
    if data_offset > cd_offset {
        return Err(malformed(
            R,
            member,
            pos,
            "name and extra field run into the central directory",
        ));
    }
    let name = slice(bytes, pos + LOCAL_LEN, name_len).expect("within cd_offset");
    if name != c.name.as_bytes() {
        return Err(mismatch(
            "name",
            format!("{:?}", c.name),
            format!("{:?}", String::from_utf8_lossy(name)),
        ));
    }
    let extra = slice(bytes, pos + LOCAL_LEN + name_len, extra_len).expect("within cd_offset");
    let z = parse_extra(extra, pos + LOCAL_LEN + name_len, R, &c.name)?;

    // What the local header declares, with ZIP64 values for saturated fields. A local ZIP64
    // field holds the size and then the compressed size (APPNOTE 4.5.3). torch (miniz) also
    // writes an 8-byte field holding only the local header offset for records beyond 4 GiB.
    let (mut lsize, mut lcsize) = (u64::from(usize32), u64::from(csize32));
    if z.present {
        if z.count >= 2 {
            if usize32 == u32::MAX {
                lsize = z.values[0];
            }
            if csize32 == u32::MAX {
                lcsize = z.values[1];
            }
        } else if !(z.count == 1 && c.flags & FLAG_DESCRIPTOR != 0 && z.values[0] == pos) {
            return Err(malformed(
                R,
                member,
                pos,
                "ZIP64 extra field without both sizes",
            ));
        }
    }
    let saturated_unresolved = (usize32 == u32::MAX && lsize == u64::from(u32::MAX) && z.count < 2)
        || (csize32 == u32::MAX && lcsize == u64::from(u32::MAX) && z.count < 2);

    let descriptor = c.flags & FLAG_DESCRIPTOR != 0;
    // With a data descriptor, the local CRC and sizes are 0 (or, by some writers, the real
    // values); without one they must be the real values.
    let ok = |local: u64, central: u64| local == central || (descriptor && local == 0);
    if !ok(u64::from(crc32), u64::from(c.crc32)) {
        return Err(mismatch(
            "CRC-32",
            format!("{:#010x}", c.crc32),
            format!("{crc32:#010x}"),
        ));
    }
    if !saturated_unresolved || !descriptor {
        if !ok(lsize, c.size) {
            return Err(mismatch("size", c.size.to_string(), lsize.to_string()));
        }
        if !ok(lcsize, c.compressed_size) {
            return Err(mismatch(
                "compressed size",
                c.compressed_size.to_string(),
                lcsize.to_string(),
            ));
        }
    }

    let data_end = data_offset
        .checked_add(c.compressed_size)
        .filter(|&e| e <= cd_offset)
        .ok_or_else(|| {
            malformed(
                R,
                member,
                data_offset,
                format!(
                    "{} bytes of data run into the central directory at offset {cd_offset}",
                    c.compressed_size
                ),
            )
        })?;
    let descriptor_len = if descriptor {
        match_descriptor(bytes, data_end, cd_offset, &c).ok_or_else(|| {
            malformed(
                "data descriptor",
                member,
                data_end,
                "flag bit 3 is set but no data descriptor matching the central directory \
                     follows the data",
            )
        })?
    } else {
        0
    };
    Ok(ZipEntry {
        name: c.name,
        method: c.method,
        flags: c.flags,
        crc32: c.crc32,
        compressed_size: c.compressed_size,
        size: c.size,
        header_offset: pos,
        data_offset,
        central_offset: c.offset,
        descriptor_len,
    })
}

/// Length of the data descriptor at `at` whose values equal the central record's: 16 or 24
/// bytes with the `PK\x07\x08` signature, 12 or 20 without; 0 when none is there and the member
/// is empty (torch writes no descriptor for zero-length records).
fn match_descriptor(bytes: &[u8], at: u64, limit: u64, c: &Central) -> Option<u64> {
    let avail = limit - at;
    let fits32 = c.compressed_size <= u64::from(u32::MAX) && c.size <= u64::from(u32::MAX);
    let matches = |d: &[u8], wide: bool| -> bool {
        let r = Rec(d);
        if r.u32(0) != c.crc32 {
            return false;
        }
        if wide {
            r.u64(4) == c.compressed_size && r.u64(12) == c.size
        } else {
            fits32 && u64::from(r.u32(4)) == c.compressed_size && u64::from(r.u32(8)) == c.size
        }
    };
    let tail = slice(bytes, at, avail.min(24)).unwrap_or(&[]);
    let signed = tail.len() >= 4 && tail[..4] == DESCRIPTOR_SIG;
    // Candidates in order of preference; the tiling check decides if a choice was wrong.
    let candidates: [(u64, bool, bool); 4] = [
        (16, true, false),
        (24, true, true),
        (12, false, false),
        (20, false, true),
    ];
    for (len, with_sig, wide) in candidates {
        if with_sig != signed || (tail.len() as u64) < len {
            continue;
        }
        let body = if with_sig {
            &tail[4..len as usize]
        } else {
            &tail[..len as usize]
        };
        if matches(body, wide) {
            return Some(len);
        }
    }
    (c.compressed_size == 0).then_some(0)
}

impl<'a> ZipArchive<'a> {
    /// Parses `bytes` as a zip archive and checks every rule of the module docs, including the
    /// CRC-32 of every member (deflated members are inflated once, into a small buffer that is
    /// dropped, to check their size and CRC).
    ///
    /// # Errors
    /// A [`ZipError`] naming the member and the offset of the first rule broken: structure
    /// ([`ZipError::Malformed`], [`ZipError::NotAtStart`], [`ZipError::Gap`],
    /// [`ZipError::Overlap`], [`ZipError::Zip64Mismatch`]), policy
    /// ([`ZipError::UnsupportedFlags`], [`ZipError::UnsupportedMethod`], [`ZipError::BadName`],
    /// [`ZipError::DuplicateName`]), agreement ([`ZipError::HeaderMismatch`]), content
    /// ([`ZipError::CrcMismatch`], [`ZipError::Inflate`]) or a limit ([`ZipError::Limit`]).
    pub fn new(bytes: &'a [u8], limits: &Limits) -> Result<ZipArchive<'a>, ZipError> {
        let archive = ZipArchive::parse(bytes, limits)?;
        archive.check_contents(limits, false)?;
        Ok(archive)
    }

    /// Parses `bytes` like [`ZipArchive::new`], but leaves the CRC-32s of stored members to the
    /// returned [`DeferredCrcs`], which checks them in one pass over the input that the caller
    /// can share with other work (the converter computes the input's SHA-256 in the same pass,
    /// on another thread, while it converts).
    ///
    /// A CRC only tells that a member is intact, it authenticates nothing, so checking it later
    /// loses nothing provided the caller reports an error of [`DeferredCrcs::check_reading`] in
    /// preference to anything it found after this call: the outcome is then exactly that of
    /// [`ZipArchive::new`]. (Meanwhile the caller may read a member whose CRC turns out wrong,
    /// such as a torch `data.pkl`; its parsers treat every input as hostile anyway, and what
    /// they produced is discarded.) Every other check, deflated members' CRCs included, is done
    /// here; when one fails, the CRCs of the stored members before it are checked first, so the
    /// error is the one [`ZipArchive::new`] would report.
    ///
    /// # Errors
    /// As [`ZipArchive::new`], except for stored members' CRC mismatches.
    pub fn new_deferred(
        bytes: &'a [u8],
        limits: &Limits,
    ) -> Result<(ZipArchive<'a>, DeferredCrcs<'a>), ZipError> {
        let archive = ZipArchive::parse(bytes, limits)?;
        archive.check_contents(limits, true)?;
        let mut members: Vec<PendingCrc> = archive
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.method == Method::Stored)
            .map(|(index, e)| PendingCrc {
                index,
                name: e.name.clone(),
                start: e.data_offset,
                end: e.data_offset + e.compressed_size,
                expected: e.crc32,
            })
            .collect();
        // The tiling check guarantees that members do not overlap.
        members.sort_by_key(|m| m.start);
        let crcs = DeferredCrcs {
            bytes,
            members,
            check: !archive.crc_absent,
        };
        Ok((archive, crcs))
    }

    /// Everything but the members' contents.
    fn parse(bytes: &'a [u8], limits: &Limits) -> Result<ZipArchive<'a>, ZipError> {
        let len = bytes.len() as u64;
        if len < EOCD_LEN + LOCAL_LEN {
            return Err(ZipError::TooShort { len });
        }
        if bytes[..4] != LOCAL_SIG {
            return Err(ZipError::NotAtStart {
                found: bytes[..4].try_into().expect("4 bytes"),
            });
        }
        let eocd = find_eocd(bytes)?;
        let end = parse_end_records(bytes, eocd)?;
        let lim = |what, value, limit, offset| {
            limits::check(what, value, limit, offset).map_err(|source| ZipError::Limit {
                member: None,
                source,
            })
        };
        lim("max_entries", end.entries, limits.max_entries, end.cd_end)?;
        lim(
            "max_central_directory",
            end.cd_size,
            limits.max_central_directory,
            end.cd_end,
        )?;
        if end.cd_offset.checked_add(end.cd_size) != Some(end.cd_end) {
            return Err(ZipError::Gap {
                offset: end.cd_offset.saturating_add(end.cd_size).min(end.cd_end),
                len: end
                    .cd_end
                    .abs_diff(end.cd_offset.saturating_add(end.cd_size)),
                after: format!(
                    "the central directory ({} bytes at offset {}) does not end where the end \
                     records start (offset {})",
                    end.cd_size, end.cd_offset, end.cd_end
                ),
            });
        }
        if end.entries == 0 {
            return Err(malformed(
                "end of central directory",
                None,
                eocd,
                "the archive has no entries",
            ));
        }
        // Each central record is at least 46 bytes: bound the count by the bytes present
        // before reserving anything.
        if end.entries.saturating_mul(CENTRAL_LEN) > end.cd_size {
            return Err(malformed(
                "end of central directory",
                None,
                eocd,
                format!(
                    "{} entries cannot fit in a {}-byte central directory",
                    end.entries, end.cd_size
                ),
            ));
        }

        let mut entries = Vec::with_capacity(end.entries as usize);
        let mut by_name: HashMap<String, usize> = HashMap::with_capacity(end.entries as usize);
        let mut by_norm: HashMap<String, usize> = HashMap::with_capacity(end.entries as usize);
        let mut pos = end.cd_offset;
        for index in 0..end.entries as usize {
            let (c, next) = parse_central(bytes, pos, end.cd_end, limits)?;
            pos = next;
            for (map, key) in [
                (&mut by_name, c.name.clone()),
                (&mut by_norm, normalized(&c.name)),
            ] {
                if let Some(&other) = map.get(&key) {
                    let other: &ZipEntry = &entries[other];
                    return Err(ZipError::DuplicateName {
                        member: c.name,
                        offset: c.offset,
                        other: other.name.clone(),
                        other_offset: other.central_offset,
                    });
                }
                map.insert(key, index);
            }
            entries.push(parse_local(bytes, c, end.cd_offset)?);
        }
        if pos != end.cd_end {
            return Err(ZipError::Gap {
                offset: pos,
                len: end.cd_end - pos,
                after: format!("the {} declared central directory entries", end.entries),
            });
        }
        check_tiling(&entries, end.cd_offset)?;

        Ok(ZipArchive {
            bytes,
            crc_absent: entries.iter().all(|e| e.crc32 == 0) && entries.iter().any(|e| e.size > 0),
            entries,
            by_name,
            zip64: end.zip64,
            comment: end.comment,
        })
    }

    /// Checks deflate bounds and inflates every deflated member once; checks every CRC, or with
    /// `defer_stored` only those of deflated members (and, before reporting a failing member, the
    /// stored members before it).
    fn check_contents(&self, limits: &Limits, defer_stored: bool) -> Result<(), ZipError> {
        let mut total: u64 = 0;
        for e in &self.entries {
            if e.method == Method::Deflated {
                let member_limit = |source| ZipError::Limit {
                    member: Some(e.name.clone()),
                    source,
                };
                limits::check(
                    "max_inflated_member",
                    e.size,
                    limits.max_inflated_member,
                    e.central_offset,
                )
                .map_err(member_limit)?;
                if e.size > limits.inflate_ratio_floor {
                    let ratio = e.size / e.compressed_size.max(1);
                    limits::check(
                        "max_inflate_ratio",
                        ratio,
                        limits.max_inflate_ratio,
                        e.central_offset,
                    )
                    .map_err(member_limit)?;
                }
                total = total.saturating_add(e.size);
                limits::check(
                    "max_inflated_total",
                    total,
                    limits.max_inflated_total,
                    e.central_offset,
                )
                .map_err(member_limit)?;
            }
        }
        for (i, e) in self.entries.iter().enumerate() {
            let result = match e.method {
                Method::Stored if defer_stored => continue,
                Method::Stored => self.check_crc(e, crc32fast::hash(self.raw(e))),
                Method::Deflated => {
                    let mut hasher = crc32fast::Hasher::new();
                    self.inflate(e, &mut |chunk| hasher.update(chunk))
                        .and_then(|()| self.check_crc(e, hasher.finalize()))
                }
            };
            if let Err(err) = result {
                if defer_stored {
                    for before in &self.entries[..i] {
                        if before.method == Method::Stored {
                            self.check_crc(before, crc32fast::hash(self.raw(before)))?;
                        }
                    }
                }
                return Err(err);
            }
        }
        Ok(())
    }

    fn check_crc(&self, e: &ZipEntry, actual: u32) -> Result<(), ZipError> {
        if !self.crc_absent && actual != e.crc32 {
            return Err(crc_mismatch(&e.name, e.crc32, actual, e.data_offset));
        }
        Ok(())
    }

    /// Every member, in central directory order.
    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// The member with exactly this name.
    pub fn by_name(&self, name: &str) -> Option<&ZipEntry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the archive has no members (never true: such archives are refused).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether every CRC-32 in the archive is 0 (torch's `set_crc32_options(False)`): the data
    /// was then accepted without a CRC check. Callers should say so.
    pub fn crc_absent(&self) -> bool {
        self.crc_absent
    }

    /// Whether the archive has ZIP64 end records.
    pub fn is_zip64(&self) -> bool {
        self.zip64
    }

    /// The archive comment (usually empty).
    pub fn comment(&self) -> &'a [u8] {
        self.comment
    }

    /// The input the archive was parsed from.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The member's data as stored (compressed for deflated members).
    pub fn raw(&self, entry: &ZipEntry) -> &'a [u8] {
        slice(self.bytes, entry.data_offset, entry.compressed_size)
            .expect("entry bounds were checked when the archive was parsed")
    }

    /// The member's content: a zero-copy slice of the input for stored members, an owned buffer
    /// of exactly [`ZipEntry::size`] bytes for deflated ones.
    ///
    /// `entry` must come from this archive.
    ///
    /// # Errors
    /// [`ZipError::Inflate`] if the deflate stream is invalid or does not produce exactly the
    /// declared size (already checked when the archive was parsed, so only if the input changed
    /// since).
    pub fn read(&self, entry: &ZipEntry) -> Result<Cow<'a, [u8]>, ZipError> {
        match entry.method {
            Method::Stored => Ok(Cow::Borrowed(self.raw(entry))),
            Method::Deflated => {
                // The declared size was bounded by the limits when the archive was parsed.
                let mut out = Vec::with_capacity(entry.size as usize);
                self.inflate(entry, &mut |chunk| out.extend_from_slice(chunk))?;
                Ok(Cow::Owned(out))
            }
        }
    }

    /// Inflates `entry`, handing the output to `sink` in chunks; fails as soon as the output
    /// would exceed the declared size, and unless the stream ends exactly at the compressed
    /// size with exactly the declared output.
    fn inflate(&self, entry: &ZipEntry, sink: &mut dyn FnMut(&[u8])) -> Result<(), ZipError> {
        let err = |offset: u64, what: String| ZipError::Inflate {
            member: entry.name.clone(),
            offset,
            what,
        };
        let mut input = self.raw(entry);
        let mut state = InflateState::new_boxed(DataFormat::Raw);
        let mut buf = vec![0u8; 64 << 10];
        let mut consumed: u64 = 0;
        let mut produced: u64 = 0;
        loop {
            let r = inflate(&mut state, input, &mut buf, MZFlush::None);
            input = &input[r.bytes_consumed..];
            consumed += r.bytes_consumed as u64;
            produced += r.bytes_written as u64;
            if produced > entry.size {
                return Err(err(
                    entry.data_offset + consumed,
                    format!(
                        "inflates to more than the declared {} bytes (stopped at {produced})",
                        entry.size
                    ),
                ));
            }
            sink(&buf[..r.bytes_written]);
            match r.status {
                Ok(MZStatus::StreamEnd) => break,
                Ok(_) if r.bytes_consumed > 0 || r.bytes_written > 0 => {}
                Ok(_) | Err(MZError::Buf) => {
                    return Err(err(
                        entry.data_offset + consumed,
                        "the deflate stream is truncated".into(),
                    ));
                }
                Err(e) => {
                    return Err(err(
                        entry.data_offset + consumed,
                        format!("invalid deflate data ({e:?})"),
                    ));
                }
            }
        }
        if consumed != entry.compressed_size {
            return Err(err(
                entry.data_offset + consumed,
                format!(
                    "the deflate stream ends after {consumed} of the {} compressed bytes",
                    entry.compressed_size
                ),
            ));
        }
        if produced != entry.size {
            return Err(err(
                entry.data_offset,
                format!(
                    "inflates to {produced} bytes, the archive declares {}",
                    entry.size
                ),
            ));
        }
        Ok(())
    }
}

/// Entries, sorted by offset, must cover `[0, cd_offset)` exactly.
fn check_tiling(entries: &[ZipEntry], cd_offset: u64) -> Result<(), ZipError> {
    let mut order: Vec<&ZipEntry> = entries.iter().collect();
    order.sort_by_key(|e| e.header_offset);
    let mut cursor = 0u64;
    let mut prev: Option<&ZipEntry> = None;
    for e in order {
        if e.header_offset < cursor {
            let other = prev.expect("cursor > 0 only after an entry");
            return Err(ZipError::Overlap {
                member: e.name.clone(),
                offset: e.header_offset,
                other: other.name.clone(),
                other_end: cursor,
            });
        }
        if e.header_offset > cursor {
            return Err(ZipError::Gap {
                offset: cursor,
                len: e.header_offset - cursor,
                after: match prev {
                    Some(p) => format!("after member {:?}", p.name),
                    None => "before the first entry".into(),
                },
            });
        }
        cursor = e.end();
        prev = Some(e);
    }
    if cursor != cd_offset {
        return Err(ZipError::Gap {
            offset: cursor,
            len: cd_offset.saturating_sub(cursor),
            after: format!(
                "between the last member {:?} and the central directory",
                prev.map(|p| p.name.as_str()).unwrap_or("")
            ),
        });
    }
    Ok(())
}

fn crc_mismatch(member: &str, expected: u32, actual: u32, offset: u64) -> ZipError {
    ZipError::CrcMismatch {
        member: member.to_owned(),
        expected,
        actual,
        offset,
    }
}

/// The CRC-32 checks of stored members that [`ZipArchive::new_deferred`] left to be done in one
/// pass over the input, see [`DeferredCrcs::check_reading`].
#[derive(Debug)]
pub struct DeferredCrcs<'a> {
    bytes: &'a [u8],
    /// Stored members in file order.
    members: Vec<PendingCrc>,
    /// False when the archive has no CRCs at all (torch's `set_crc32_options(False)`).
    check: bool,
}

#[derive(Debug)]
struct PendingCrc {
    /// Position in the central directory: the order in which errors are reported.
    index: usize,
    name: String,
    start: u64,
    end: u64,
    expected: u32,
}

/// Bytes handed out at a time by [`DeferredCrcs::check_reading`]: small enough to be in the
/// core's cache for the second look.
const READ_PIECE: usize = 256 << 10;

impl DeferredCrcs<'_> {
    /// Reads the whole input once, in order, in pieces of up to 256 KiB handed to `also` (which
    /// can hash the file in the same pass), and checks the CRC-32 of every stored member on the
    /// way.
    ///
    /// # Errors
    /// [`ZipError::CrcMismatch`] for the first member in central directory order whose CRC
    /// differs, as [`ZipArchive::new`] reports it. `also` has then still seen every byte.
    pub fn check_reading(self, mut also: impl FnMut(&[u8])) -> Result<(), ZipError> {
        let mut first: Option<(usize, ZipError)> = None;
        let mut hasher = crc32fast::Hasher::new();
        let mut next = 0usize; // first member not finished
        let mut offset = 0u64;
        let mut finish = |m: &PendingCrc, hasher: &mut crc32fast::Hasher| {
            let actual = std::mem::take(hasher).finalize();
            if self.check
                && actual != m.expected
                && first.as_ref().is_none_or(|(i, _)| m.index < *i)
            {
                first = Some((m.index, crc_mismatch(&m.name, m.expected, actual, m.start)));
            }
        };
        for piece in self.bytes.chunks(READ_PIECE) {
            also(piece);
            let end = offset + piece.len() as u64;
            while let Some(m) = self.members.get(next) {
                if m.start > end || (m.start == end && m.end > end) {
                    break;
                }
                let (lo, hi) = (m.start.max(offset), m.end.min(end));
                if lo < hi {
                    hasher.update(&piece[(lo - offset) as usize..(hi - offset) as usize]);
                }
                if m.end > end {
                    break;
                }
                finish(m, &mut hasher);
                next += 1;
            }
            offset = end;
        }
        // Empty members at the very end of the input (none in a valid zip, which ends with
        // the central directory).
        for m in &self.members[next..] {
            finish(m, &mut hasher);
        }
        first.map_or(Ok(()), |(_, e)| Err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zip_test_support::{EntrySpec, Zip64Entry, ZipBuilder, stored_zip};

    fn open(bytes: &[u8]) -> Result<ZipArchive<'_>, ZipError> {
        ZipArchive::new(bytes, &Limits::default())
    }

    #[test]
    fn reads_stored_members_zero_copy() {
        let bytes = stored_zip(&[("a/x", b"hello"), ("a/y", b"")]);
        let zip = open(&bytes).unwrap();
        assert_eq!(zip.len(), 2);
        let x = zip.by_name("a/x").unwrap();
        let data = zip.read(x).unwrap();
        assert!(matches!(data, Cow::Borrowed(_)));
        assert_eq!(&*data, b"hello");
        assert_eq!(&*zip.read(zip.by_name("a/y").unwrap()).unwrap(), b"");
        assert!(!zip.crc_absent());
    }

    #[test]
    fn names_are_checked() {
        for (name, reason) in [
            ("a/../b", "traversal"),
            ("/abs", "absolute"),
            ("a\\b", "backslash"),
            ("a\0b", "NUL"),
            ("a//b", "empty path segment"),
            ("./a", "'.' segment"),
            ("C:/x", "drive-letter"),
            ("a\nb", "control"),
        ] {
            let bytes = stored_zip(&[(name, b"x")]);
            let err = open(&bytes).unwrap_err();
            assert!(
                matches!(&err, ZipError::BadName { reason: r, .. } if r.contains(reason)),
                "{name:?}: {err}"
            );
        }
        assert!(open(&stored_zip(&[("dir/", b"")])).is_ok());
        assert!(open(&stored_zip(&[("dir/", b"x")])).is_err());
    }

    #[test]
    fn duplicates_after_normalisation() {
        let bytes = stored_zip(&[("a/Data.pkl", b"1"), ("a/data.pkl", b"2")]);
        assert!(matches!(
            open(&bytes).unwrap_err(),
            ZipError::DuplicateName { .. }
        ));
    }

    #[test]
    fn deflate_round_trip_and_bounds() {
        let data = vec![7u8; 100_000];
        let bytes = ZipBuilder::new().deflated("z", &data).build();
        let zip = open(&bytes).unwrap();
        let e = zip.by_name("z").unwrap();
        assert_eq!(e.method(), Method::Deflated);
        assert_eq!(&*zip.read(e).unwrap(), &data[..]);

        let tight = Limits {
            max_inflated_member: 99_999,
            ..Limits::default()
        };
        let err = ZipArchive::new(&bytes, &tight).unwrap_err();
        assert!(matches!(
            err,
            ZipError::Limit { ref source, .. } if source.what == "max_inflated_member"
        ));
        let ratio = Limits {
            inflate_ratio_floor: 0,
            max_inflate_ratio: 10,
            ..Limits::default()
        };
        let err = ZipArchive::new(&bytes, &ratio).unwrap_err();
        assert!(matches!(
            err,
            ZipError::Limit { ref source, .. } if source.what == "max_inflate_ratio"
        ));
    }

    #[test]
    fn deflate_lying_about_size() {
        let data = vec![1u8; 1000];
        // Declared smaller than the stream: inflation stops at the declared size.
        let bytes = ZipBuilder::new()
            .deflated_with("z", &data, |e| e.size = 10)
            .build();
        let err = open(&bytes).unwrap_err();
        assert!(
            matches!(&err, ZipError::Inflate { what, .. } if what.contains("more than")),
            "{err}"
        );
        // Declared larger.
        let bytes = ZipBuilder::new()
            .deflated_with("z", &data, |e| e.size = 2000)
            .build();
        let err = open(&bytes).unwrap_err();
        assert!(
            matches!(&err, ZipError::Inflate { what, .. } if what.contains("declares")),
            "{err}"
        );
    }

    #[test]
    fn crc_rules() {
        let bytes = ZipBuilder::new()
            .stored_with("a", b"abc", |e| e.crc = 0)
            .stored("b", b"def")
            .build();
        assert!(matches!(
            open(&bytes).unwrap_err(),
            ZipError::CrcMismatch { .. }
        ));
        let bytes = ZipBuilder::new()
            .stored_with("a", b"abc", |e| e.crc = 0)
            .stored_with("b", b"def", |e| e.crc = 0)
            .build();
        assert!(open(&bytes).unwrap().crc_absent());
    }

    /// The outcome of [`ZipArchive::new_deferred`] followed by [`DeferredCrcs::check_reading`],
    /// as a caller reporting the deferred error first sees it.
    fn deferred(bytes: &[u8]) -> Result<usize, ZipError> {
        let (zip, crcs) = ZipArchive::new_deferred(bytes, &Limits::default())?;
        let mut seen = Vec::new();
        let result = crcs.check_reading(|piece| seen.extend_from_slice(piece));
        assert_eq!(seen, bytes, "check_reading hands out every byte, in order");
        result.map(|()| zip.len())
    }

    #[test]
    fn deferred_crcs_report_what_the_eager_check_reports() {
        let big: Vec<u8> = (0..600_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let bad = |e: &mut EntrySpec| e.crc ^= 1;
        let archives = [
            ZipBuilder::new()
                .stored("a", &big)
                .stored("b", b"xy")
                .build(),
            ZipBuilder::new()
                .stored_with("a", &big, bad)
                .stored("b", b"")
                .build(),
            ZipBuilder::new()
                .stored("a", b"")
                .stored_with("b", &big, bad)
                .build(),
            ZipBuilder::new()
                .stored("a", &big)
                .stored_with("b", b"", |e| e.crc = 7)
                .build(),
            // Two bad members: the first in central directory order is reported.
            ZipBuilder::new()
                .stored_with("a", b"abc", bad)
                .stored_with("b", &big, bad)
                .build(),
            // A failing deflated member after a bad stored one, and before one.
            ZipBuilder::new()
                .stored_with("a", &big, bad)
                .deflated_with("b", b"abcabc", bad)
                .build(),
            ZipBuilder::new()
                .deflated_with("a", b"abcabc", bad)
                .stored_with("b", &big, bad)
                .build(),
            ZipBuilder::new()
                .stored("a", &big)
                .deflated_with("b", &big, bad)
                .stored_with("c", b"x", bad)
                .build(),
            // No CRCs at all: accepted by both.
            ZipBuilder::new()
                .stored_with("a", &big, |e| e.crc = 0)
                .deflated_with("b", b"abcabc", |e| e.crc = 0)
                .build(),
        ];
        for (i, bytes) in archives.iter().enumerate() {
            let eager = open(bytes).map(|z| z.len());
            assert_eq!(
                format!("{eager:?}"),
                format!("{:?}", deferred(bytes)),
                "archive {i}"
            );
        }
        assert!(matches!(
            deferred(&archives[4]),
            Err(ZipError::CrcMismatch { member, .. }) if member == "a"
        ));
    }

    #[test]
    fn flags_and_methods() {
        for (flag, word) in [(1u16, "encrypted"), (0x20, "patched"), (0x40, "strong")] {
            let bytes = ZipBuilder::new()
                .stored_with("a", b"abc", |e| e.flags |= flag)
                .build();
            let err = open(&bytes).unwrap_err();
            assert!(
                matches!(&err, ZipError::UnsupportedFlags { what, .. } if what.contains(word)),
                "{err}"
            );
        }
        let bytes = ZipBuilder::new()
            .stored_with("a", b"abc", |e| e.method = 12)
            .build();
        assert!(matches!(
            open(&bytes).unwrap_err(),
            ZipError::UnsupportedMethod { method: 12, .. }
        ));
    }

    #[test]
    fn local_central_mismatch() {
        let bytes = ZipBuilder::new()
            .stored_with("a/data.pkl", b"abc", |e| {
                e.local_name = Some("a/datb.pkl".into())
            })
            .build();
        assert!(matches!(
            open(&bytes).unwrap_err(),
            ZipError::HeaderMismatch { field: "name", .. }
        ));
        let bytes = ZipBuilder::new()
            .stored_with("a", b"abc", |e| e.local_flags = Some(0x800))
            .build();
        assert!(matches!(
            open(&bytes).unwrap_err(),
            ZipError::HeaderMismatch { field: "flags", .. }
        ));
    }

    #[test]
    fn descriptors_torch_style() {
        // Flag bit 3, zero local CRC/sizes, 16-byte signed descriptor; an empty record without one.
        let bytes = ZipBuilder::new()
            .stored_with("p/data.pkl", b"pickle", |e| e.descriptor = true)
            .stored_with("p/data/0", b"", |e| e.descriptor = true)
            .stored_with("p/version", b"3\n", |e| e.descriptor = true)
            .zip64_end()
            .build();
        let zip = open(&bytes).unwrap();
        assert!(zip.is_zip64());
        assert_eq!(
            &*zip.read(zip.by_name("p/version").unwrap()).unwrap(),
            b"3\n"
        );
    }

    #[test]
    fn end_record_rules() {
        let mut bytes = stored_zip(&[("a", b"x")]);
        bytes.push(0);
        assert!(matches!(open(&bytes).unwrap_err(), ZipError::NoEndRecord));
        let mut pre = vec![0u8; 5];
        pre.extend(stored_zip(&[("a", b"x")]));
        assert!(matches!(
            open(&pre).unwrap_err(),
            ZipError::NotAtStart { .. }
        ));
        // A comment that ends the file is fine.
        let bytes = ZipBuilder::new().stored("a", b"x").comment(b"hi").build();
        assert_eq!(open(&bytes).unwrap().comment(), b"hi");
        // Junk between the data and the central directory.
        let bytes = ZipBuilder::new()
            .stored("a", b"x")
            .junk_before_cd(3)
            .build();
        assert!(matches!(
            open(&bytes).unwrap_err(),
            ZipError::Gap { len: 3, .. }
        ));
    }

    #[test]
    fn zip64_must_agree() {
        let bytes = ZipBuilder::new()
            .stored("a", b"x")
            .zip64_end()
            .tamper_zip64_entries(2)
            .build();
        assert!(matches!(
            open(&bytes).unwrap_err(),
            ZipError::Zip64Mismatch {
                field: "entry count",
                ..
            }
        ));
    }

    #[test]
    fn zip64_entries_as_writers_make_them() {
        let bytes = ZipBuilder::new()
            .stored_with("p/data.pkl", b"pickle", |e| {
                e.descriptor = true;
                e.zip64 = Zip64Entry::Full;
            })
            .stored_with("p/data/0", b"0123456789", |e| e.zip64 = Zip64Entry::Full)
            .stored_with("p/data/1", b"abcdef", |e| {
                e.descriptor = true;
                e.zip64 = Zip64Entry::TorchOffsetOnly;
            })
            .deflated_with("p/data/2", &[5u8; 3000], |e| {
                e.descriptor = true;
                e.zip64 = Zip64Entry::Full;
            })
            .zip64_end()
            .build();
        let zip = open(&bytes).unwrap();
        for (name, want) in [
            ("p/data.pkl", &b"pickle"[..]),
            ("p/data/0", b"0123456789"),
            ("p/data/1", b"abcdef"),
            ("p/data/2", &[5u8; 3000]),
        ] {
            assert_eq!(
                &*zip.read(zip.by_name(name).unwrap()).unwrap(),
                want,
                "{name}"
            );
        }
        // A local ZIP64 size that disagrees with the central one.
        let mut bad = bytes.clone();
        let at = bad.windows(8).position(|w| w == b"p/data/0").unwrap() + 8 + 4;
        bad[at] ^= 1;
        assert!(matches!(
            open(&bad).unwrap_err(),
            ZipError::HeaderMismatch { field: "size", .. }
        ));
    }
}
