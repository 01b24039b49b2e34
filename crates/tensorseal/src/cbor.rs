//! Canonical CBOR (spec §3.1): a strict decoder into borrowed items and an encoder.
//!
//! Heads are read and written with `ciborium-ll`. Strictness is layered on top: every decoded head
//! is re-encoded and compared with the input bytes (shortest integers, lengths and floats), map
//! keys must be strictly increasing by their encoded bytes, and only the item kinds the format uses
//! are accepted. Items borrow strings from the input, so decoding copies nothing.

use ciborium_ll::{Decoder, Encoder, Header};

/// What went wrong while decoding, with the byte offset of the offending item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CborError {
    /// Offset of the item within the decoded buffer.
    pub(crate) offset: usize,
    pub(crate) kind: CborErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CborErrorKind {
    Truncated,
    Malformed,
    NotShortestForm,
    IndefiniteLength,
    UnsupportedTag(u64),
    UnsupportedSimple,
    InvalidUtf8,
    MapKeysNotSorted,
    NonTextKey,
    BignumNotCanonical,
    BignumTooLarge { len: usize, limit: usize },
    TooDeep { limit: usize },
    TooManyItems { limit: usize },
    TrailingBytes,
}

impl std::fmt::Display for CborErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => write!(f, "truncated item"),
            Self::Malformed => write!(f, "malformed head"),
            Self::NotShortestForm => write!(f, "head is not in shortest form"),
            Self::IndefiniteLength => write!(f, "indefinite length"),
            Self::UnsupportedTag(t) => write!(f, "unsupported tag {t}"),
            Self::UnsupportedSimple => write!(f, "unsupported simple value"),
            Self::InvalidUtf8 => write!(f, "text string is not valid UTF-8"),
            Self::MapKeysNotSorted => {
                write!(f, "map keys are duplicated or not in canonical order")
            }
            Self::NonTextKey => write!(f, "map key is not a text string"),
            Self::BignumNotCanonical => {
                write!(f, "bignum has a leading zero or fits a plain integer")
            }
            Self::BignumTooLarge { len, limit } => {
                write!(f, "bignum of {len} bytes exceeds the limit of {limit}")
            }
            Self::TooDeep { limit } => write!(f, "nesting deeper than {limit}"),
            Self::TooManyItems { limit } => write!(f, "more than {limit} items"),
            Self::TrailingBytes => write!(f, "bytes follow the item"),
        }
    }
}

/// A decoded item and where it started.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item<'a> {
    pub(crate) offset: usize,
    /// Offset just past the item's last byte.
    pub(crate) end: usize,
    pub(crate) value: Value<'a>,
}

/// The item kinds of the canonical subset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Uint(u64),
    /// The integer `-1 - n`.
    Nint(u64),
    /// Tag 2: big-endian magnitude, no leading zero, value ≥ 2^64.
    BigPos(&'a [u8]),
    /// Tag 3: the integer `-1 - n` for the big-endian magnitude n ≥ 2^64.
    BigNeg(&'a [u8]),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Item<'a>>),
    Map(Vec<(Item<'a>, Item<'a>)>),
    Bool(bool),
    Null,
    Float(f64),
}

/// Bounds applied while decoding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeLimits {
    pub(crate) max_depth: usize,
    pub(crate) max_items: usize,
    pub(crate) max_bigint_bytes: usize,
}

/// Decodes exactly one canonical item filling `input`.
pub(crate) fn decode<'a>(input: &'a [u8], limits: DecodeLimits) -> Result<Item<'a>, CborError> {
    let mut d = StrictDecoder {
        input,
        pos: 0,
        items: 0,
        limits,
    };
    let item = d.item(0)?;
    if d.pos != input.len() {
        return Err(CborError {
            offset: d.pos,
            kind: CborErrorKind::TrailingBytes,
        });
    }
    Ok(item)
}

struct StrictDecoder<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: DecodeLimits,
}

impl<'a> StrictDecoder<'a> {
    fn err(&self, offset: usize, kind: CborErrorKind) -> CborError {
        CborError { offset, kind }
    }

    /// Reads one head at `pos`, checks it is canonical, and advances past it.
    fn head(&mut self) -> Result<Header, CborError> {
        let start = self.pos;
        let rest = &self.input[start..];
        let mut dec = Decoder::from(rest);
        let header = dec.pull().map_err(|e| match e {
            ciborium_ll::Error::Io(_) => self.err(start, CborErrorKind::Truncated),
            ciborium_ll::Error::Syntax(_) => self.err(start, CborErrorKind::Malformed),
        })?;
        let len = dec.offset();
        // Re-encode on the stack: this runs once per item, a heap buffer here was a malloc/free
        // pair per item of every manifest.
        let (buf, n) = head_bytes(header);
        if buf[..n] != rest[..len] {
            return Err(self.err(start, CborErrorKind::NotShortestForm));
        }
        self.pos = start + len;
        Ok(header)
    }

    fn payload(&mut self, start: usize, len: Option<usize>) -> Result<&'a [u8], CborError> {
        let len = len.ok_or_else(|| self.err(start, CborErrorKind::IndefiniteLength))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or_else(|| self.err(start, CborErrorKind::Truncated))?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// Checks a declared element count against the bytes left: every item takes at least one
    /// byte, so a count larger than that is truncated input and must not drive an allocation.
    fn count(&self, start: usize, len: Option<usize>, per_item: usize) -> Result<usize, CborError> {
        let len = len.ok_or_else(|| self.err(start, CborErrorKind::IndefiniteLength))?;
        let left = self.input.len() - self.pos;
        match len.checked_mul(per_item) {
            Some(need) if need <= left => Ok(len),
            _ => Err(self.err(start, CborErrorKind::Truncated)),
        }
    }

    fn item(&mut self, depth: usize) -> Result<Item<'a>, CborError> {
        let start = self.pos;
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(self.err(
                start,
                CborErrorKind::TooManyItems {
                    limit: self.limits.max_items,
                },
            ));
        }
        let value = match self.head()? {
            Header::Positive(n) => Value::Uint(n),
            Header::Negative(n) => Value::Nint(n),
            Header::Float(f) => Value::Float(f),
            Header::Simple(ciborium_ll::simple::FALSE) => Value::Bool(false),
            Header::Simple(ciborium_ll::simple::TRUE) => Value::Bool(true),
            Header::Simple(ciborium_ll::simple::NULL) => Value::Null,
            Header::Simple(_) => return Err(self.err(start, CborErrorKind::UnsupportedSimple)),
            Header::Break => return Err(self.err(start, CborErrorKind::IndefiniteLength)),
            Header::Bytes(len) => Value::Bytes(self.payload(start, len)?),
            Header::Text(len) => {
                let bytes = self.payload(start, len)?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| self.err(start, CborErrorKind::InvalidUtf8))?;
                Value::Text(text)
            }
            Header::Tag(tag @ (2 | 3)) => self.bignum(start, tag)?,
            Header::Tag(tag) => return Err(self.err(start, CborErrorKind::UnsupportedTag(tag))),
            Header::Array(len) => {
                let n = self.count(start, len, 1)?;
                let depth = self.deeper(start, depth)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth)?);
                }
                Value::Array(items)
            }
            Header::Map(len) => {
                let n = self.count(start, len, 2)?;
                let depth = self.deeper(start, depth)?;
                let mut entries = Vec::with_capacity(n);
                let mut previous_key: Option<&'a [u8]> = None;
                for _ in 0..n {
                    let key_start = self.pos;
                    let key = self.item(depth)?;
                    // Spec §3.1: every map in a manifest or signature block has text keys,
                    // including maps inside the extension area that no schema looks at.
                    if !matches!(key.value, Value::Text(_)) {
                        return Err(self.err(key_start, CborErrorKind::NonTextKey));
                    }
                    let key_bytes = &self.input[key_start..self.pos];
                    if previous_key.is_some_and(|prev| prev >= key_bytes) {
                        return Err(self.err(key_start, CborErrorKind::MapKeysNotSorted));
                    }
                    previous_key = Some(key_bytes);
                    let value = self.item(depth)?;
                    entries.push((key, value));
                }
                Value::Map(entries)
            }
        };
        Ok(Item {
            offset: start,
            end: self.pos,
            value,
        })
    }

    fn deeper(&self, start: usize, depth: usize) -> Result<usize, CborError> {
        if depth >= self.limits.max_depth {
            return Err(self.err(
                start,
                CborErrorKind::TooDeep {
                    limit: self.limits.max_depth,
                },
            ));
        }
        Ok(depth + 1)
    }

    fn bignum(&mut self, start: usize, tag: u64) -> Result<Value<'a>, CborError> {
        let inner = self.pos;
        let bytes = match self.head()? {
            Header::Bytes(len) => self.payload(inner, len)?,
            _ => return Err(self.err(inner, CborErrorKind::BignumNotCanonical)),
        };
        if bytes.len() > self.limits.max_bigint_bytes {
            return Err(self.err(
                start,
                CborErrorKind::BignumTooLarge {
                    len: bytes.len(),
                    limit: self.limits.max_bigint_bytes,
                },
            ));
        }
        // Values that fit 64 bits have exactly one encoding, the plain integer; a leading zero
        // byte would give a second encoding of the same bignum.
        if bytes.len() <= 8 || bytes[0] == 0 {
            return Err(self.err(start, CborErrorKind::BignumNotCanonical));
        }
        Ok(if tag == 2 {
            Value::BigPos(bytes)
        } else {
            Value::BigNeg(bytes)
        })
    }
}

/// The canonical encoding of a head: the bytes and how many of them are used.
fn head_bytes(header: Header) -> ([u8; 9], usize) {
    // A head is at most 9 bytes; encoding into a stack buffer of that size cannot fail.
    let mut buf = [0u8; 9];
    let mut slice = &mut buf[..];
    let _ = Encoder::from(&mut slice).push(header);
    let written = 9 - slice.len();
    (buf, written)
}

fn encode_head(out: &mut Vec<u8>, header: Header) {
    let (buf, n) = head_bytes(header);
    out.extend_from_slice(&buf[..n]);
}

/// Appends canonical CBOR to a buffer. Callers emit map keys in canonical order; `sorted_map`
/// sorts keys that are only known at run time.
#[derive(Debug, Default)]
pub(crate) struct CborWriter {
    pub(crate) buf: Vec<u8>,
}

impl CborWriter {
    pub(crate) fn uint(&mut self, n: u64) {
        encode_head(&mut self.buf, Header::Positive(n));
    }

    /// Writes the integer `-1 - n`.
    pub(crate) fn nint(&mut self, n: u64) {
        encode_head(&mut self.buf, Header::Negative(n));
    }

    /// Writes a bignum; `magnitude` is big-endian without leading zeros and longer than 8 bytes.
    pub(crate) fn bignum(&mut self, negative: bool, magnitude: &[u8]) {
        encode_head(&mut self.buf, Header::Tag(if negative { 3 } else { 2 }));
        self.bytes(magnitude);
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        encode_head(&mut self.buf, Header::Bytes(Some(bytes.len())));
        self.buf.extend_from_slice(bytes);
    }

    pub(crate) fn text(&mut self, text: &str) {
        encode_head(&mut self.buf, Header::Text(Some(text.len())));
        self.buf.extend_from_slice(text.as_bytes());
    }

    pub(crate) fn array(&mut self, len: usize) {
        encode_head(&mut self.buf, Header::Array(Some(len)));
    }

    pub(crate) fn map(&mut self, len: usize) {
        encode_head(&mut self.buf, Header::Map(Some(len)));
    }

    pub(crate) fn bool(&mut self, b: bool) {
        let simple = if b {
            ciborium_ll::simple::TRUE
        } else {
            ciborium_ll::simple::FALSE
        };
        encode_head(&mut self.buf, Header::Simple(simple));
    }

    pub(crate) fn null(&mut self) {
        encode_head(&mut self.buf, Header::Simple(ciborium_ll::simple::NULL));
    }

    pub(crate) fn float(&mut self, f: f64) {
        encode_head(&mut self.buf, Header::Float(f));
    }

    /// Writes a map whose entries are (encoded key, encoded value) pairs, sorted by key bytes.
    /// Keys must be unique.
    pub(crate) fn sorted_map(&mut self, mut entries: Vec<(Vec<u8>, Vec<u8>)>) {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.map(entries.len());
        for (k, v) in entries {
            self.buf.extend_from_slice(&k);
            self.buf.extend_from_slice(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_depth: 16,
        max_items: 1000,
        max_bigint_bytes: 64,
    };

    fn kind(bytes: &[u8]) -> CborErrorKind {
        decode(bytes, LIMITS).unwrap_err().kind
    }

    #[test]
    fn accepts_canonical_items() {
        assert_eq!(decode(&[0x17], LIMITS).unwrap().value, Value::Uint(23));
        assert_eq!(
            decode(&[0x18, 0x18], LIMITS).unwrap().value,
            Value::Uint(24)
        );
        assert_eq!(decode(&[0x20], LIMITS).unwrap().value, Value::Nint(0));
        assert_eq!(
            decode(&[0xf9, 0x3c, 0x00], LIMITS).unwrap().value,
            Value::Float(1.0)
        );
        assert_eq!(
            decode(&[0x62, b'h', b'i'], LIMITS).unwrap().value,
            Value::Text("hi")
        );
    }

    #[test]
    fn rejects_non_shortest_heads() {
        assert_eq!(kind(&[0x18, 0x05]), CborErrorKind::NotShortestForm);
        assert_eq!(kind(&[0x19, 0x00, 0x05]), CborErrorKind::NotShortestForm);
        // 1.0 as binary64 has a shorter binary16 form.
        assert_eq!(
            kind(&[0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
            CborErrorKind::NotShortestForm
        );
        assert_eq!(kind(&[0x58, 0x01, 0x00]), CborErrorKind::NotShortestForm);
    }

    #[test]
    fn rejects_indefinite_lengths_tags_and_simple_values() {
        assert_eq!(kind(&[0x9f, 0x01, 0xff]), CborErrorKind::IndefiniteLength);
        assert_eq!(kind(&[0xc1, 0x01]), CborErrorKind::UnsupportedTag(1));
        assert_eq!(kind(&[0xf7]), CborErrorKind::UnsupportedSimple);
        assert_eq!(kind(&[0xff]), CborErrorKind::IndefiniteLength);
    }

    #[test]
    fn rejects_unsorted_and_duplicate_keys() {
        // {"b": 1, "a": 2}
        assert_eq!(
            kind(&[0xa2, 0x61, b'b', 1, 0x61, b'a', 2]),
            CborErrorKind::MapKeysNotSorted
        );
        // {"a": 1, "a": 2}
        assert_eq!(
            kind(&[0xa2, 0x61, b'a', 1, 0x61, b'a', 2]),
            CborErrorKind::MapKeysNotSorted
        );
        // {"aa": 1, "b": 2}: the shorter key sorts first.
        assert_eq!(
            kind(&[0xa2, 0x62, b'a', b'a', 1, 0x61, b'b', 2]),
            CborErrorKind::MapKeysNotSorted
        );
    }

    #[test]
    fn rejects_non_text_map_keys() {
        // {1: 2}
        assert_eq!(kind(&[0xa1, 0x01, 0x02]), CborErrorKind::NonTextKey);
        // {"a": {h'00': null}}
        assert_eq!(
            decode(&[0xa1, 0x61, b'a', 0xa1, 0x41, 0x00, 0xf6], LIMITS)
                .unwrap_err()
                .offset,
            4
        );
    }

    #[test]
    fn rejects_trailing_bytes_and_truncation() {
        assert_eq!(kind(&[0x01, 0x00]), CborErrorKind::TrailingBytes);
        assert_eq!(kind(&[0x62, b'h']), CborErrorKind::Truncated);
        assert_eq!(kind(&[0x19, 0x01]), CborErrorKind::Truncated);
        assert_eq!(kind(&[]), CborErrorKind::Truncated);
        // An array declaring 2^32 items in 5 bytes must fail before allocating.
        assert_eq!(
            kind(&[0x9a, 0xff, 0xff, 0xff, 0xff]),
            CborErrorKind::Truncated
        );
        assert_eq!(
            kind(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            CborErrorKind::Truncated
        );
    }

    #[test]
    fn enforces_depth_and_item_limits() {
        let deep = vec![0x81; 17].into_iter().chain([0x00]).collect::<Vec<_>>();
        assert_eq!(kind(&deep), CborErrorKind::TooDeep { limit: 16 });
        let mut many = vec![0x99, 0x03, 0xe8];
        many.extend(std::iter::repeat_n(0u8, 1000));
        assert_eq!(kind(&many), CborErrorKind::TooManyItems { limit: 1000 });
    }

    #[test]
    fn bignums_are_minimal() {
        let mut big = vec![0xc2, 0x49, 0x01];
        big.extend([0; 8]);
        assert_eq!(
            decode(&big, LIMITS).unwrap().value,
            Value::BigPos(&big[2..])
        );
        // Fits in 64 bits.
        assert_eq!(kind(&[0xc2, 0x41, 0x01]), CborErrorKind::BignumNotCanonical);
        // Leading zero.
        let mut lead = vec![0xc3, 0x4a, 0x00, 0x01];
        lead.extend([0; 8]);
        assert_eq!(kind(&lead), CborErrorKind::BignumNotCanonical);
    }

    #[test]
    fn floats_round_trip_bit_exactly() {
        for bits in [
            0x0000_0000_0000_0000u64,
            0x8000_0000_0000_0000,
            0x7ff0_0000_0000_0000,
            0xfff0_0000_0000_0000,
            0x7ff8_0000_0000_0000,
            0x7ff8_0000_0000_0001,
            0x7ff0_0000_0000_0001, // signalling NaN
            0xfff8_0000_dead_beef,
            0x0000_0000_0000_0001, // smallest subnormal
            0x3fb9_9999_9999_999a, // 0.1
        ] {
            let mut w = CborWriter::default();
            w.float(f64::from_bits(bits));
            match decode(&w.buf, LIMITS).unwrap().value {
                Value::Float(f) => assert_eq!(f.to_bits(), bits, "{bits:#x}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
