//! numpy `.npy` arrays (format versions 1.0, 2.0, 3.0) and `.npz` archives of them.
//!
//! The header is a Python dict literal that numpy reads with `ast.literal_eval`. It is parsed
//! here by a small hand-written parser that accepts exactly the literals numpy (and the common
//! writers that imitate it) produce: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`
//! padded with spaces and ended by a newline. Anything else is refused with the offset of the
//! offending byte; nothing is ever evaluated.

use crate::ByteOrder;
use crate::error::NpyError;
use crate::limits::{self, Limits};
use crate::zip::ZipArchive;
use std::borrow::Cow;
use tensorseal::DType;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// One array read from a `.npy` file or `.npz` member.
///
/// # Invariants
/// `data.len() == product(shape) × dtype.itemsize()`, computed without overflow.
#[derive(Debug, Clone)]
pub struct NpyArray<'a> {
    version: (u8, u8),
    descr: String,
    dtype: DType,
    byte_order: ByteOrder,
    fortran_order: bool,
    shape: Vec<u64>,
    data: Cow<'a, [u8]>,
    data_offset: u64,
}

impl<'a> NpyArray<'a> {
    /// Parses a whole `.npy` file.
    ///
    /// # Errors
    /// * [`NpyError::NotNpy`]: bad magic or truncated preamble (offset 0..12);
    /// * [`NpyError::Version`]: a version other than 1.0, 2.0, 3.0;
    /// * [`NpyError::Header`]: the header is not the dict literal numpy writes (the offset of the
    ///   offending byte), a shape that overflows, or more than [`Limits::max_rank`] dimensions;
    /// * [`NpyError::ObjectArray`]: `descr` is an object dtype (`|O`): its data is a pickle;
    /// * [`NpyError::UnsupportedDtype`]: strings, datetimes, void, structured, long double;
    /// * [`NpyError::DataLength`]: the data after the header is not exactly
    ///   `product(shape) × itemsize` bytes;
    /// * [`NpyError::Limit`]: the header is over [`Limits::max_npy_header`].
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<NpyArray<'a>, NpyError> {
        parse_npy(Cow::Borrowed(bytes), 0, None, limits)
    }

    /// The format version, `(1, 0)`, `(2, 0)` or `(3, 0)`.
    pub fn version(&self) -> (u8, u8) {
        self.version
    }

    /// The `descr` as written, e.g. `"<f4"`.
    pub fn descr(&self) -> &str {
        &self.descr
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Byte order of the data (the converter swaps big-endian data).
    pub fn byte_order(&self) -> ByteOrder {
        self.byte_order
    }

    /// Whether the data is in Fortran (column-major) order.
    pub fn fortran_order(&self) -> bool {
        self.fortran_order
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// The array data as stored (zero-copy for `.npy` files and stored `.npz` members).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Takes the data out.
    pub fn into_data(self) -> Cow<'a, [u8]> {
        self.data
    }

    /// Offset of the data: in the file for `.npy` files and stored `.npz` members, in the
    /// inflated member for deflated ones.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
}

/// Parses a `.npy` image; `base` is the offset of its first byte in the file (for messages).
fn parse_npy<'a>(
    bytes: Cow<'a, [u8]>,
    base: u64,
    member: Option<&str>,
    limits: &Limits,
) -> Result<NpyArray<'a>, NpyError> {
    let m = || member.map(str::to_owned);
    let not_npy = |offset: u64, what: &str| NpyError::NotNpy {
        member: m(),
        offset,
        what: what.into(),
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(not_npy(base, "no \\x93NUMPY magic"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_start, header_len) = match (major, minor) {
        (1, 0) => (10u64, u64::from(u16::from_le_bytes([bytes[8], bytes[9]]))),
        (2, 0) | (3, 0) => {
            let Some(b) = bytes.get(8..12) else {
                return Err(not_npy(base + 8, "truncated header length"));
            };
            (12, u64::from(u32::from_le_bytes(b.try_into().expect("4"))))
        }
        _ => {
            return Err(NpyError::Version {
                member: m(),
                major,
                minor,
            });
        }
    };
    limits::check(
        "max_npy_header",
        header_len,
        limits.max_npy_header,
        base + 8,
    )
    .map_err(|source| NpyError::Limit {
        member: m(),
        source,
    })?;
    let header_end = header_start + header_len;
    let Some(header) = bytes.get(header_start as usize..header_end as usize) else {
        return Err(not_npy(
            base + 8,
            "the header length runs past the end of the data",
        ));
    };
    let h = parse_header(header, base + header_start, major, member, limits)?;
    let (dtype, byte_order) = map_descr(&h.descr, h.descr_offset, member)?;
    let expected = dtype.byte_size(&h.shape).ok_or_else(|| NpyError::Header {
        member: m(),
        offset: h.shape_offset,
        what: format!(
            "shape {:?} × itemsize {} overflows",
            h.shape,
            dtype.itemsize()
        ),
    })?;
    let actual = bytes.len() as u64 - header_end;
    if actual != expected {
        return Err(NpyError::DataLength {
            member: m(),
            expected,
            actual,
            offset: base + header_end,
        });
    }
    let data = match bytes {
        Cow::Borrowed(b) => Cow::Borrowed(&b[header_end as usize..]),
        Cow::Owned(mut v) => {
            v.drain(..header_end as usize);
            Cow::Owned(v)
        }
    };
    Ok(NpyArray {
        version: (major, minor),
        descr: h.descr,
        dtype,
        byte_order,
        fortran_order: h.fortran_order,
        shape: h.shape,
        data,
        data_offset: base + header_end,
    })
}

struct Header {
    descr: String,
    descr_offset: u64,
    fortran_order: bool,
    shape: Vec<u64>,
    shape_offset: u64,
}

/// A cursor over the header literal; offsets reported are absolute.
struct Lit<'h, 'm> {
    s: &'h [u8],
    pos: usize,
    base: u64,
    member: Option<&'m str>,
}

impl Lit<'_, '_> {
    fn err(&self, what: impl Into<String>) -> NpyError {
        NpyError::Header {
            member: self.member.map(str::to_owned),
            offset: self.base + self.pos as u64,
            what: what.into(),
        }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), NpyError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {:?}", c as char)))
        }
    }

    /// A quoted string without escapes (numpy's keys and simple descrs never need any).
    fn string(&mut self) -> Result<String, NpyError> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            Some(b'[') => return Err(self.err("structured dtype (a list descr)")),
            _ => return Err(self.err("expected a quoted string")),
        };
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(c) if c == quote => break,
                Some(c) if c == b'\\' || !(0x20..0x7f).contains(&c) => {
                    return Err(self.err("escape or non-printable character in a string"));
                }
                Some(_) => self.pos += 1,
            }
        }
        let s = std::str::from_utf8(&self.s[start..self.pos]).expect("printable ASCII");
        self.pos += 1;
        Ok(s.to_owned())
    }

    fn word(&mut self, w: &[u8]) -> bool {
        if self.s[self.pos..].starts_with(w) {
            self.pos += w.len();
            true
        } else {
            false
        }
    }

    fn boolean(&mut self) -> Result<bool, NpyError> {
        if self.word(b"True") {
            Ok(true)
        } else if self.word(b"False") {
            Ok(false)
        } else {
            Err(self.err("expected True or False"))
        }
    }

    /// A non-negative decimal int; Python 2's `L` suffix only in versions 1 and 2, as numpy's
    /// own reader filters it.
    fn int(&mut self, allow_long: bool) -> Result<u64, NpyError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let s = self.s;
        let digits = &s[start..self.pos];
        if digits.is_empty() {
            return Err(self.err("expected a non-negative integer"));
        }
        if digits.len() > 1 && digits[0] == b'0' {
            self.pos = start;
            return Err(self.err("integer with a leading zero"));
        }
        let text = std::str::from_utf8(digits).expect("ASCII digits");
        let Ok(v) = text.parse::<u64>() else {
            self.pos = start;
            return Err(self.err("dimension does not fit in 64 bits"));
        };
        if allow_long && self.peek() == Some(b'L') {
            self.pos += 1;
        }
        Ok(v)
    }

    /// A tuple of ints: `()`, `(n,)`, `(n, m)`, `(n, m,)`.
    fn shape(&mut self, allow_long: bool, max_rank: u64) -> Result<Vec<u64>, NpyError> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        self.spaces();
        let mut trailing_comma = false;
        while self.peek() != Some(b')') {
            if dims.len() as u64 >= max_rank {
                let offset = self.offset();
                return Err(NpyError::Limit {
                    member: self.member.map(str::to_owned),
                    source: crate::LimitExceeded {
                        what: "max_rank",
                        value: dims.len() as u64 + 1,
                        limit: max_rank,
                        offset,
                    },
                });
            }
            dims.push(self.int(allow_long)?);
            self.spaces();
            trailing_comma = false;
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    trailing_comma = true;
                    self.spaces();
                }
                Some(b')') => {}
                _ => return Err(self.err("expected ',' or ')' in the shape")),
            }
        }
        if dims.len() == 1 && !trailing_comma {
            // `(3)` is the int 3 in Python, not a tuple.
            return Err(self.err("one-element shape without a trailing comma is not a tuple"));
        }
        self.pos += 1;
        Ok(dims)
    }
}

fn parse_header(
    s: &[u8],
    base: u64,
    major: u8,
    member: Option<&str>,
    limits: &Limits,
) -> Result<Header, NpyError> {
    let mut p = Lit {
        s,
        pos: 0,
        base,
        member,
    };
    // The literal ends with a newline, preceded by space padding.
    if s.last() != Some(&b'\n') {
        p.pos = s.len();
        return Err(p.err("the header does not end with a newline"));
    }
    let body = &s[..s.len() - 1];
    p.s = body;
    p.spaces();
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.spaces();
        if p.peek() == Some(b'}') {
            break;
        }
        let key_offset = p.offset();
        let key = p.string()?;
        p.spaces();
        p.expect(b':')?;
        p.spaces();
        let dup = |p: &Lit<'_, '_>| {
            let mut e = p.err(format!("key {key:?} appears twice"));
            if let NpyError::Header { offset, .. } = &mut e {
                *offset = key_offset;
            }
            e
        };
        match key.as_str() {
            "descr" if descr.is_none() => {
                let at = p.offset();
                descr = Some((p.string()?, at));
            }
            "fortran_order" if fortran.is_none() => fortran = Some(p.boolean()?),
            "shape" if shape.is_none() => {
                let at = p.offset();
                shape = Some((p.shape(major < 3, limits.max_rank)?, at));
            }
            "descr" | "fortran_order" | "shape" => return Err(dup(&p)),
            other => {
                p.pos -= 1;
                let mut e = p.err(format!(
                    "unexpected key {other:?} (numpy writes only descr, fortran_order, shape)"
                ));
                if let NpyError::Header { offset, .. } = &mut e {
                    *offset = key_offset;
                }
                return Err(e);
            }
        }
        p.spaces();
        match p.peek() {
            Some(b',') => p.pos += 1,
            Some(b'}') => {}
            _ => return Err(p.err("expected ',' or '}'")),
        }
    }
    p.pos += 1;
    p.spaces();
    if p.pos != body.len() {
        return Err(p.err("characters after the dict (only space padding may follow)"));
    }
    let missing = |k: &str| {
        let mut e = p.err(format!("key {k:?} is missing"));
        if let NpyError::Header { offset, .. } = &mut e {
            *offset = base;
        }
        e
    };
    let (descr, descr_offset) = descr.ok_or_else(|| missing("descr"))?;
    let fortran_order = fortran.ok_or_else(|| missing("fortran_order"))?;
    let (shape, shape_offset) = shape.ok_or_else(|| missing("shape"))?;
    Ok(Header {
        descr,
        descr_offset,
        fortran_order,
        shape,
        shape_offset,
    })
}

/// Maps a simple numpy descr (`<f4`, `|b1`, `>i8`, ...) to a dtype and byte order.
fn map_descr(
    descr: &str,
    offset: u64,
    member: Option<&str>,
) -> Result<(DType, ByteOrder), NpyError> {
    let unsupported = |why| NpyError::UnsupportedDtype {
        member: member.map(str::to_owned),
        descr: descr.to_owned(),
        why,
        offset,
    };
    let b = descr.as_bytes();
    let (order, rest) = match b.first() {
        Some(c @ (b'<' | b'>' | b'|' | b'=')) => (*c, &b[1..]),
        _ => (b'|', b),
    };
    let Some((&kind, size)) = rest.split_first() else {
        return Err(unsupported("empty descr"));
    };
    if kind == b'O' {
        return Err(NpyError::ObjectArray {
            member: member.map(str::to_owned),
            descr: descr.to_owned(),
            offset,
        });
    }
    match kind {
        b'S' | b'a' | b'U' => return Err(unsupported("string dtypes have no tensor equivalent")),
        b'M' | b'm' => return Err(unsupported("datetime/timedelta dtypes are not supported")),
        b'V' => {
            return Err(unsupported(
                "void (raw bytes) dtype: may be an extension type such as ml_dtypes' bfloat16, \
                 whose meaning the file does not record",
            ));
        }
        _ => {}
    }
    let size: u64 = std::str::from_utf8(size)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && s.len() <= 3)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| unsupported("not a simple numpy dtype string"))?;
    let dtype = match (kind, size) {
        (b'b', 1) => DType::Bool,
        (b'i', 1) => DType::I8,
        (b'i', 2) => DType::I16,
        (b'i', 4) => DType::I32,
        (b'i', 8) => DType::I64,
        (b'u', 1) => DType::U8,
        (b'u', 2) => DType::U16,
        (b'u', 4) => DType::U32,
        (b'u', 8) => DType::U64,
        (b'f', 2) => DType::F16,
        (b'f', 4) => DType::F32,
        (b'f', 8) => DType::F64,
        (b'c', 8) => DType::C64,
        (b'c', 16) => DType::C128,
        (b'f', 12 | 16) | (b'c', 24 | 32) => {
            return Err(unsupported(
                "long double has a platform-dependent layout and no tensorseal dtype",
            ));
        }
        _ => return Err(unsupported("no tensorseal dtype for this kind and size")),
    };
    let byte_order = match order {
        b'<' => ByteOrder::Little,
        b'>' if dtype.itemsize() == 1 => ByteOrder::Little,
        b'>' => ByteOrder::Big,
        b'|' if dtype.itemsize() == 1 => ByteOrder::Little,
        b'|' => return Err(unsupported("'|' (no byte order) on a multi-byte type")),
        _ => {
            return Err(unsupported(
                "'=' (the writer's native byte order) does not say which order the data is in",
            ));
        }
    };
    Ok((dtype, byte_order))
}

/// An `.npz` archive: a zip of `.npy` members (stored by `np.savez`, deflated by
/// `np.savez_compressed`).
#[derive(Debug)]
pub struct Npz<'a> {
    arrays: Vec<(String, NpyArray<'a>)>,
    crc_absent: bool,
}

impl<'a> Npz<'a> {
    /// Parses `bytes` with the strict zip reader, then every member as a `.npy` array.
    ///
    /// # Errors
    /// [`NpyError::Zip`] for container problems; otherwise as [`Npz::from_archive`].
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<Npz<'a>, NpyError> {
        Npz::from_archive(&ZipArchive::new(bytes, limits)?, limits)
    }

    /// Reads every member of an already parsed archive: member `name.npy` gives key `name`.
    ///
    /// # Errors
    /// * [`NpyError::NotNpyMember`]: a member whose name does not end in `.npy` (or is only
    ///   `.npy`, or a directory);
    /// * [`NpyError::Limit`]: more than [`Limits::max_tensors`] members;
    /// * any [`NpyArray::parse`] error, naming the member (object arrays are refused).
    pub fn from_archive(zip: &ZipArchive<'a>, limits: &Limits) -> Result<Npz<'a>, NpyError> {
        limits::check("max_tensors", zip.len() as u64, limits.max_tensors, 0).map_err(
            |source| NpyError::Limit {
                member: None,
                source,
            },
        )?;
        let mut arrays = Vec::with_capacity(zip.len());
        for e in zip.entries() {
            let key = e
                .name()
                .strip_suffix(".npy")
                .filter(|k| !k.is_empty() && !k.ends_with('/'))
                .ok_or_else(|| NpyError::NotNpyMember {
                    member: e.name().to_owned(),
                    offset: e.header_offset(),
                })?;
            let data = zip.read(e)?;
            let base = match data {
                Cow::Borrowed(_) => e.data_offset(),
                Cow::Owned(_) => 0,
            };
            let array = parse_npy(data, base, Some(e.name()), limits)?;
            arrays.push((key.to_owned(), array));
        }
        Ok(Npz {
            arrays,
            crc_absent: zip.crc_absent(),
        })
    }

    /// The arrays in archive order, keyed by member name without `.npy`.
    pub fn arrays(&self) -> &[(String, NpyArray<'a>)] {
        &self.arrays
    }

    /// Takes the arrays out.
    pub fn into_arrays(self) -> Vec<(String, NpyArray<'a>)> {
        self.arrays
    }

    /// Whether every CRC in the archive was 0 (accepted without a CRC check).
    pub fn crc_absent(&self) -> bool {
        self.crc_absent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.as_bytes().to_vec();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend(h);
        out.extend_from_slice(data);
        out
    }

    fn parse(header: &str, data: &[u8]) -> Result<NpyArray<'static>, NpyError> {
        let bytes = npy(header, data);
        NpyArray::parse(&bytes, &Limits::default()).map(|a| NpyArray {
            data: Cow::Owned(a.data.into_owned()),
            descr: a.descr,
            ..a
        })
    }

    #[test]
    fn accepts_what_numpy_writes() {
        let a = parse(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            &[0; 24],
        )
        .unwrap();
        assert_eq!(a.dtype(), DType::F32);
        assert_eq!(a.shape(), &[2, 3]);
        assert_eq!(a.data().len(), 24);
        let a = parse(
            "{'descr': '>i8', 'fortran_order': True, 'shape': (3,), }",
            &[0; 24],
        )
        .unwrap();
        assert_eq!(a.byte_order(), ByteOrder::Big);
        assert!(a.fortran_order());
        let a = parse(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
            &[0; 8],
        )
        .unwrap();
        assert!(a.shape().is_empty());
        // Key order and quoting vary between writers; Python 2's L suffix in version 1.
        let a = parse(
            "{\"shape\":(2L,3L),\"fortran_order\":False,\"descr\":\"|u1\"}",
            &[0; 6],
        )
        .unwrap();
        assert_eq!(a.dtype(), DType::U8);
    }

    #[test]
    fn refuses_everything_else() {
        let cases: &[(&str, &str)] = &[
            ("__import__('os').system('x')", "expected '{'"),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }",
                "trailing comma",
            ),
            (
                "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }",
                "True or False",
            ),
            ("{'descr': '<f4', 'shape': (2,), }", "missing"),
            (
                "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
                "twice",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
                "unexpected key",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
                "non-negative",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (02,), }",
                "leading zero",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x",
                "after the dict",
            ),
            (
                "{'descr': '<\\x66\\x34', 'fortran_order': False, 'shape': (2,), }",
                "escape",
            ),
            (
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
                "structured",
            ),
        ];
        for (header, want) in cases {
            let err = parse(header, &[0; 8]).unwrap_err();
            assert!(err.to_string().contains(want), "{header}: {err}");
        }
        for (descr, want) in [
            ("|O", "object array"),
            ("<U3", "string"),
            ("<M8[ns]", "datetime"),
            ("|V2", "void"),
            ("<f16", "long double"),
            ("=f4", "native"),
            ("|f4", "multi-byte"),
        ] {
            let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}");
            let err = parse(&h, &[0; 16]).unwrap_err();
            assert!(err.to_string().contains(want), "{descr}: {err}");
        }
    }

    #[test]
    fn data_length_is_exact() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
        assert!(matches!(
            parse(h, &[0; 9]).unwrap_err(),
            NpyError::DataLength {
                expected: 8,
                actual: 9,
                ..
            }
        ));
        let h =
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }";
        assert!(
            parse(h, &[0; 16])
                .unwrap_err()
                .to_string()
                .contains("overflows")
        );
    }
}
