//! Canonical CBOR (spec §3.1): a strict pull reader and an encoder.
//!
//! The [`Reader`] hands out one [`Token`] per item (its head, with the payload of strings and
//! bignums) and keeps the containers it is inside on an explicit stack, so deep nesting costs
//! heap, never native stack, whatever the input. Strictness is checked as tokens are read: every
//! head is re-encoded and compared with the input bytes (shortest integers, lengths and floats),
//! map keys are text and strictly increasing by their encoded bytes, only the item kinds the
//! format uses are accepted, and [`Reader::finish`] refuses trailing bytes. Tokens borrow strings
//! from the input, so reading copies nothing.
//!
//! [`CborWriter`] writes canonical CBOR to a [`Sink`]: a `Vec<u8>`, or a [`Compare`] that checks
//! the bytes against an expected encoding without building a second copy.

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

/// One item as the reader returns it: scalars with their value, strings and bignums with their
/// payload, arrays and maps with their element count (a map's count is its number of entries).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Token<'a> {
    Uint(u64),
    /// The integer `-1 - n`.
    Nint(u64),
    /// Tag 2: big-endian magnitude, no leading zero, value ≥ 2^64.
    BigPos(&'a [u8]),
    /// Tag 3: the integer `-1 - n` for the big-endian magnitude n ≥ 2^64.
    BigNeg(&'a [u8]),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(usize),
    Map(usize),
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

/// A container the reader is inside.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Items still to start: one per array element, two per map entry.
    left: usize,
    map: bool,
    /// Byte range of the previous key of a map, for the ordering check.
    previous_key: Option<(usize, usize)>,
}

/// A strict pull reader over one canonical item; see the module documentation.
///
/// The reader checks the CBOR layer only. The caller reads the structure it expects (an array of
/// `n` tokens after `Token::Array(n)`, ...) and calls [`Reader::finish`] after the top-level item.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    items: usize,
    limits: DecodeLimits,
    open: Vec<Open>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(input: &'a [u8], limits: DecodeLimits) -> Reader<'a> {
        Reader {
            input,
            pos: 0,
            items: 0,
            limits,
            open: Vec::new(),
        }
    }

    /// A reader positioned at `pos`, inside one array (so that the item there is read with the
    /// depth it has in the whole input when that item sits directly in the top-level map). Used
    /// to read an item a second time after the whole input was checked once.
    pub(crate) fn resume_at(input: &'a [u8], pos: usize, limits: DecodeLimits) -> Reader<'a> {
        Reader {
            input,
            pos,
            items: 0,
            limits,
            open: vec![Open {
                left: 1,
                map: false,
                previous_key: None,
            }],
        }
    }

    /// Offset of the next token.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The input the reader reads.
    pub(crate) fn input(&self) -> &'a [u8] {
        self.input
    }

    /// How many more tokens the item limit allows.
    pub(crate) fn items_left(&self) -> usize {
        self.limits.max_items.saturating_sub(self.items)
    }

    /// Number of containers the next token is inside.
    #[cfg(test)]
    pub(crate) fn depth(&self) -> usize {
        self.open.len()
    }

    fn err(offset: usize, kind: CborErrorKind) -> CborError {
        CborError { offset, kind }
    }

    /// Reads the next item's head, and the payload of a string or bignum.
    pub(crate) fn next(&mut self) -> Result<Token<'a>, CborError> {
        let start = self.pos;
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(Self::err(
                start,
                CborErrorKind::TooManyItems {
                    limit: self.limits.max_items,
                },
            ));
        }
        let token = self.token(start)?;
        if let Some(top) = self.open.last_mut() {
            if top.map && top.left % 2 == 0 {
                // Spec §3.1: every map in a manifest or signature block has text keys,
                // including maps inside the extension area that no schema looks at.
                if !matches!(token, Token::Text(_)) {
                    return Err(Self::err(start, CborErrorKind::NonTextKey));
                }
                if let Some((a, b)) = top.previous_key
                    && self.input[a..b] >= self.input[start..self.pos]
                {
                    return Err(Self::err(start, CborErrorKind::MapKeysNotSorted));
                }
                top.previous_key = Some((start, self.pos));
            }
            top.left -= 1;
        }
        if let Token::Array(n) | Token::Map(n) = token {
            // Empty containers count too: nesting is a property of the encoding.
            if self.open.len() >= self.limits.max_depth {
                return Err(Self::err(
                    start,
                    CborErrorKind::TooDeep {
                        limit: self.limits.max_depth,
                    },
                ));
            }
            if n > 0 {
                let map = matches!(token, Token::Map(_));
                self.open.push(Open {
                    left: if map { 2 * n } else { n },
                    map,
                    previous_key: None,
                });
                return Ok(token);
            }
        }
        while self.open.last().is_some_and(|o| o.left == 0) {
            self.open.pop();
        }
        Ok(token)
    }

    /// Reads one whole item and everything inside it, with every check applied.
    pub(crate) fn skip(&mut self) -> Result<(), CborError> {
        let depth = self.open.len();
        self.next()?;
        while self.open.len() > depth {
            self.next()?;
        }
        Ok(())
    }

    /// Checks that nothing follows the top-level item.
    pub(crate) fn finish(&self) -> Result<(), CborError> {
        if self.pos != self.input.len() {
            return Err(Self::err(self.pos, CborErrorKind::TrailingBytes));
        }
        Ok(())
    }

    /// Reads the head at `start` (major type and argument), checks that re-encoding it gives the
    /// same bytes, and advances past it.
    fn head(&mut self, start: usize) -> Result<(u8, u64), CborError> {
        let input = self.input;
        let initial = *input
            .get(start)
            .ok_or_else(|| Self::err(start, CborErrorKind::Truncated))?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        if info < 24 {
            // A one-byte head is the only encoding of its value: nothing to compare.
            self.pos = start + 1;
            return Ok((major, u64::from(info)));
        }
        let truncated = || Self::err(start, CborErrorKind::Truncated);
        let arg_at = start + 1;
        let arg = match info {
            24 => u64::from(*input.get(arg_at).ok_or_else(truncated)?),
            25 => u64::from(u16::from_be_bytes(be(input, arg_at).ok_or_else(truncated)?)),
            26 => u64::from(u32::from_be_bytes(be(input, arg_at).ok_or_else(truncated)?)),
            27 => u64::from_be_bytes(be(input, arg_at).ok_or_else(truncated)?),
            31 if matches!(major, 2..=5 | 7) => {
                return Err(Self::err(start, CborErrorKind::IndefiniteLength));
            }
            _ => return Err(Self::err(start, CborErrorKind::Malformed)),
        };
        let end = arg_at + (1 << (info - 24));
        let canonical = match (major, info) {
            // Floats are compared byte for byte: two binary16 (or binary32) NaNs that differ in
            // their quiet bit widen to the same binary64 value, and only one is canonical.
            (7, 25..=27) => {
                let canonical = float_head(float_bits(info, arg));
                if canonical.as_slice() != &input[start..end] {
                    return Err(Self::err(start, CborErrorKind::NotShortestForm));
                }
                canonical
            }
            (7, 24) => return Err(Self::err(start, CborErrorKind::UnsupportedSimple)),
            _ => encode_head(major, arg),
        };
        // An integer head re-encodes with the same major type and argument, so it equals the
        // input bytes exactly when it has their length (compared without a memcmp call).
        debug_assert!(
            usize::from(canonical.len) != end - start || canonical.as_slice() == &input[start..end]
        );
        if usize::from(canonical.len) != end - start {
            return Err(Self::err(start, CborErrorKind::NotShortestForm));
        }
        self.pos = end;
        Ok((major, arg))
    }

    fn payload(&mut self, start: usize, len: u64) -> Result<&'a [u8], CborError> {
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| self.pos.checked_add(len))
            .filter(|&end| end <= self.input.len())
            .ok_or_else(|| Self::err(start, CborErrorKind::Truncated))?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// Checks a declared element count against the bytes left: every item takes at least one
    /// byte, so a count larger than that is truncated input and must not drive an allocation.
    fn count(&self, start: usize, len: u64, per_item: usize) -> Result<usize, CborError> {
        let left = self.input.len() - self.pos;
        usize::try_from(len)
            .ok()
            .filter(|&n| n.checked_mul(per_item).is_some_and(|need| need <= left))
            .ok_or_else(|| Self::err(start, CborErrorKind::Truncated))
    }

    fn token(&mut self, start: usize) -> Result<Token<'a>, CborError> {
        let (major, arg) = self.head(start)?;
        Ok(match major {
            0 => Token::Uint(arg),
            1 => Token::Nint(arg),
            2 => Token::Bytes(self.payload(start, arg)?),
            3 => {
                let bytes = self.payload(start, arg)?;
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| Self::err(start, CborErrorKind::InvalidUtf8))?;
                Token::Text(text)
            }
            4 => Token::Array(self.count(start, arg, 1)?),
            5 => Token::Map(self.count(start, arg, 2)?),
            6 if arg == 2 || arg == 3 => self.bignum(start, arg)?,
            6 => return Err(Self::err(start, CborErrorKind::UnsupportedTag(arg))),
            _ => match (self.input[start] & 0x1f, arg) {
                (20, _) => Token::Bool(false),
                (21, _) => Token::Bool(true),
                (22, _) => Token::Null,
                (25..=27, bits) => {
                    Token::Float(f64::from_bits(float_bits(self.input[start] & 0x1f, bits)))
                }
                _ => return Err(Self::err(start, CborErrorKind::UnsupportedSimple)),
            },
        })
    }

    fn bignum(&mut self, start: usize, tag: u64) -> Result<Token<'a>, CborError> {
        let inner = self.pos;
        let bytes = match self.head(inner)? {
            (2, len) => self.payload(inner, len)?,
            _ => return Err(Self::err(inner, CborErrorKind::BignumNotCanonical)),
        };
        if bytes.len() > self.limits.max_bigint_bytes {
            return Err(Self::err(
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
            return Err(Self::err(start, CborErrorKind::BignumNotCanonical));
        }
        Ok(if tag == 2 {
            Token::BigPos(bytes)
        } else {
            Token::BigNeg(bytes)
        })
    }
}

/// The `N` bytes at `at`, if there are that many.
fn be<const N: usize>(input: &[u8], at: usize) -> Option<[u8; N]> {
    input.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// An encoded head: up to 9 bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    buf: [u8; 9],
    len: u8,
}

impl Head {
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// The shortest head for major type `major` and argument `n` (integers, lengths, tags).
pub(crate) fn encode_head(major: u8, n: u64) -> Head {
    let m = major << 5;
    let mut buf = [0u8; 9];
    let len = if n < 24 {
        buf[0] = m | n as u8;
        1
    } else if n <= 0xff {
        buf[0] = m | 24;
        buf[1] = n as u8;
        2
    } else if n <= 0xffff {
        buf[0] = m | 25;
        buf[1..3].copy_from_slice(&(n as u16).to_be_bytes());
        3
    } else if n <= 0xffff_ffff {
        buf[0] = m | 26;
        buf[1..5].copy_from_slice(&(n as u32).to_be_bytes());
        5
    } else {
        buf[0] = m | 27;
        buf[1..9].copy_from_slice(&n.to_be_bytes());
        9
    };
    Head { buf, len }
}

/// The binary64 bits of a float head's argument (`info` 25, 26 or 27).
fn float_bits(info: u8, arg: u64) -> u64 {
    match info {
        25 => widen16(arg as u16),
        26 => widen32(arg as u32),
        _ => arg,
    }
}

/// binary16 → binary64 bits by IEEE 754 widening: sign, exponent and significand preserved; a
/// NaN's payload moves to the top of the wider significand and its quiet bit is set.
pub(crate) fn widen16(h: u16) -> u64 {
    let sign = u64::from(h >> 15) << 63;
    let exp = (h >> 10) & 0x1f;
    let man = u64::from(h & 0x3ff);
    match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal m × 2^-24: move the top set bit to the implicit position.
            let shift = m.leading_zeros() - 53;
            sign | (1023 - 15 + 1 - u64::from(shift)) << 52 | ((m << shift) & 0x3ff) << 42
        }
        (0x1f, 0) => sign | 0x7ff << 52,
        (0x1f, m) => sign | 0x7ff << 52 | 1 << 51 | m << 42,
        (e, m) => sign | (u64::from(e) + 1023 - 15) << 52 | m << 42,
    }
}

/// binary32 → binary64 bits, as [`widen16`].
pub(crate) fn widen32(s: u32) -> u64 {
    let sign = u64::from(s >> 31) << 63;
    let exp = (s >> 23) & 0xff;
    let man = u64::from(s & 0x7f_ffff);
    match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            let shift = m.leading_zeros() - 40;
            sign | (1023 - 127 + 1 - u64::from(shift)) << 52 | ((m << shift) & 0x7f_ffff) << 29
        }
        (0xff, 0) => sign | 0x7ff << 52,
        (0xff, m) => sign | 0x7ff << 52 | 1 << 51 | m << 29,
        (e, m) => sign | (u64::from(e) + 1023 - 127) << 52 | m << 29,
    }
}

/// The binary32 pattern that widens to `bits`, if any.
fn narrow32(bits: u64) -> Option<u32> {
    let sign = ((bits >> 63) as u32) << 31;
    let candidate = if (bits >> 52) & 0x7ff == 0x7ff {
        // Infinity or NaN: keep the top of the significand.
        sign | 0x7f80_0000 | ((bits & ((1 << 52) - 1)) >> 29) as u32
    } else {
        // Round to nearest; exact exactly when widening gives the same bits back.
        (f64::from_bits(bits) as f32).to_bits()
    };
    (widen32(candidate) == bits).then_some(candidate)
}

/// The binary16 pattern that widens to `bits`, if any.
fn narrow16(bits: u64) -> Option<u16> {
    let s = narrow32(bits)?;
    let sign = ((s >> 31) as u16) << 15;
    let exp = ((s >> 23) & 0xff) as i32;
    let man = s & 0x7f_ffff;
    let candidate = match exp {
        0xff => sign | 0x7c00 | (man >> 13) as u16,
        // Zero (a binary32 subnormal is far below binary16's range).
        0 => sign,
        _ => {
            let e = exp - 127;
            if (-14..=15).contains(&e) {
                sign | ((e + 15) as u16) << 10 | (man >> 13) as u16
            } else if (-24..-14).contains(&e) {
                // binary16 subnormal: the full significand shifted down.
                sign | (((1 << 23) | man) >> (13 + (-14 - e))) as u16
            } else {
                return None;
            }
        }
    };
    (widen16(candidate) == bits).then_some(candidate)
}

/// The canonical head of a float: the shortest of binary16, binary32 and binary64 that widens
/// back to the identical 64-bit pattern (spec §3.1).
pub(crate) fn float_head(bits: u64) -> Head {
    let mut buf = [0u8; 9];
    let len = if let Some(h) = narrow16(bits) {
        buf[0] = 0xf9;
        buf[1..3].copy_from_slice(&h.to_be_bytes());
        3
    } else if let Some(s) = narrow32(bits) {
        buf[0] = 0xfa;
        buf[1..5].copy_from_slice(&s.to_be_bytes());
        5
    } else {
        buf[0] = 0xfb;
        buf[1..9].copy_from_slice(&bits.to_be_bytes());
        9
    };
    Head { buf, len }
}

/// Where encoded bytes go.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);

    /// Writes a head (most items are only a head).
    fn put_head(&mut self, head: &Head) {
        self.put(head.as_slice());
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A sink that compares what is written with an expected encoding, byte for byte, and remembers
/// the first difference: "re-encode and compare" without a second copy of the bytes.
#[derive(Debug)]
pub(crate) struct Compare<'a> {
    expected: &'a [u8],
    pos: usize,
    mismatch: Option<usize>,
}

impl<'a> Compare<'a> {
    pub(crate) fn new(expected: &'a [u8]) -> Compare<'a> {
        Compare {
            expected,
            pos: 0,
            mismatch: None,
        }
    }

    /// `Err(offset)` of the first byte that differs, or of the end of the shorter encoding.
    pub(crate) fn finish(&self) -> Result<(), usize> {
        match self.mismatch {
            Some(at) => Err(at),
            None if self.pos != self.expected.len() => Err(self.pos),
            None => Ok(()),
        }
    }
}

impl Compare<'_> {
    /// Records where `bytes`, written at the current position, first differ from the input.
    #[cold]
    fn differ(&mut self, bytes: &[u8]) {
        let rest = self.expected.get(self.pos..).unwrap_or_default();
        let same = rest.iter().zip(bytes).take_while(|(a, b)| a == b).count();
        self.mismatch = Some(self.pos + same);
    }
}

impl Sink for Compare<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if self.mismatch.is_none() && self.expected.get(self.pos..end) == Some(bytes) {
            self.pos = end;
        } else if self.mismatch.is_none() {
            self.differ(bytes);
        }
    }

    fn put_head(&mut self, head: &Head) {
        // A byte loop: a slice comparison would call memcmp for one to nine bytes.
        let len = usize::from(head.len);
        let same = self.mismatch.is_none()
            && self
                .expected
                .get(self.pos..self.pos + len)
                .is_some_and(|e| e.iter().zip(&head.buf).all(|(a, b)| a == b));
        if same {
            self.pos += len;
        } else if self.mismatch.is_none() {
            self.differ(head.as_slice());
        }
    }
}

/// Writes canonical CBOR to a sink. Callers emit map keys in canonical order.
#[derive(Debug, Default)]
pub(crate) struct CborWriter<S = Vec<u8>> {
    pub(crate) sink: S,
}

impl<S: Sink> CborWriter<S> {
    pub(crate) fn new(sink: S) -> CborWriter<S> {
        CborWriter { sink }
    }

    fn head(&mut self, major: u8, n: u64) {
        self.sink.put_head(&encode_head(major, n));
    }

    pub(crate) fn uint(&mut self, n: u64) {
        self.head(0, n);
    }

    /// Writes the integer `-1 - n`.
    pub(crate) fn nint(&mut self, n: u64) {
        self.head(1, n);
    }

    /// Writes a bignum; `magnitude` is big-endian without leading zeros and longer than 8 bytes.
    pub(crate) fn bignum(&mut self, negative: bool, magnitude: &[u8]) {
        self.head(6, if negative { 3 } else { 2 });
        self.bytes(magnitude);
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.head(2, bytes.len() as u64);
        self.sink.put(bytes);
    }

    pub(crate) fn text(&mut self, text: &str) {
        self.head(3, text.len() as u64);
        self.sink.put(text.as_bytes());
    }

    pub(crate) fn array(&mut self, len: usize) {
        self.head(4, len as u64);
    }

    pub(crate) fn map(&mut self, len: usize) {
        self.head(5, len as u64);
    }

    pub(crate) fn bool(&mut self, b: bool) {
        self.head(7, if b { 21 } else { 20 });
    }

    pub(crate) fn null(&mut self) {
        self.head(7, 22);
    }

    pub(crate) fn float(&mut self, f: f64) {
        self.sink.put_head(&float_head(f.to_bits()));
    }

    /// Writes bytes that already are one canonical item.
    pub(crate) fn raw(&mut self, item: &[u8]) {
        self.sink.put(item);
    }
}

/// Canonical order of text map keys: by encoded bytes, which for text is by length, then bytes.
pub(crate) fn text_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_depth: 16,
        max_items: 1000,
        max_bigint_bytes: 64,
    };

    /// Reads one whole item and checks nothing follows it; returns its first token.
    fn decode(bytes: &[u8], limits: DecodeLimits) -> Result<Token<'_>, CborError> {
        let mut r = Reader::new(bytes, limits);
        let first = r.next()?;
        while r.depth() > 0 {
            r.next()?;
        }
        r.finish()?;
        Ok(first)
    }

    fn kind(bytes: &[u8]) -> CborErrorKind {
        decode(bytes, LIMITS).unwrap_err().kind
    }

    #[test]
    fn accepts_canonical_items() {
        assert_eq!(decode(&[0x17], LIMITS).unwrap(), Token::Uint(23));
        assert_eq!(decode(&[0x18, 0x18], LIMITS).unwrap(), Token::Uint(24));
        assert_eq!(decode(&[0x20], LIMITS).unwrap(), Token::Nint(0));
        assert_eq!(
            decode(&[0xf9, 0x3c, 0x00], LIMITS).unwrap(),
            Token::Float(1.0)
        );
        assert_eq!(
            decode(&[0x62, b'h', b'i'], LIMITS).unwrap(),
            Token::Text("hi")
        );
        assert_eq!(
            decode(&[0x82, 0x01, 0x81, 0xf6], LIMITS).unwrap(),
            Token::Array(2)
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
        // A signalling binary16 NaN widens to the quiet NaN that 0x7e01 encodes: same length,
        // not the canonical bytes.
        assert_eq!(kind(&[0xf9, 0x7c, 0x01]), CborErrorKind::NotShortestForm);
        match decode(&[0xf9, 0x7e, 0x01], LIMITS).unwrap() {
            Token::Float(f) => assert_eq!(f.to_bits(), widen16(0x7e01)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            kind(&[0xfa, 0x7f, 0x80, 0x00, 0x01]),
            CborErrorKind::NotShortestForm
        );
        assert_eq!(kind(&[0x58, 0x01, 0x00]), CborErrorKind::NotShortestForm);
        assert_eq!(kind(&[0x98, 0x01, 0x00]), CborErrorKind::NotShortestForm);
    }

    #[test]
    fn rejects_indefinite_lengths_tags_and_simple_values() {
        assert_eq!(kind(&[0x9f, 0x01, 0xff]), CborErrorKind::IndefiniteLength);
        assert_eq!(kind(&[0xc1, 0x01]), CborErrorKind::UnsupportedTag(1));
        assert_eq!(kind(&[0xf7]), CborErrorKind::UnsupportedSimple);
        assert_eq!(kind(&[0xf8, 0x20]), CborErrorKind::UnsupportedSimple);
        assert_eq!(kind(&[0xff]), CborErrorKind::IndefiniteLength);
        assert_eq!(kind(&[0x1c]), CborErrorKind::Malformed);
        assert_eq!(kind(&[0x1f]), CborErrorKind::Malformed);
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
        // Keys of a map nested in a value are ordered separately from the outer ones.
        decode(
            &[0xa2, 0x61, b'a', 0xa1, 0x61, b'b', 1, 0x61, b'b', 2],
            LIMITS,
        )
        .unwrap();
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
        assert_eq!(kind(&[0x82, 0x01]), CborErrorKind::Truncated);
        // An array declaring 2^32 items in 5 bytes must fail before allocating.
        assert_eq!(
            kind(&[0x9a, 0xff, 0xff, 0xff, 0xff]),
            CborErrorKind::Truncated
        );
        assert_eq!(
            kind(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            CborErrorKind::Truncated
        );
        assert_eq!(
            kind(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            CborErrorKind::Truncated
        );
    }

    #[test]
    fn enforces_depth_and_item_limits() {
        let deep = vec![0x81; 17].into_iter().chain([0x00]).collect::<Vec<_>>();
        assert_eq!(kind(&deep), CborErrorKind::TooDeep { limit: 16 });
        // An empty container counts as a level of its own.
        let mut deep = vec![0x81; 16];
        deep.push(0x80);
        assert_eq!(kind(&deep), CborErrorKind::TooDeep { limit: 16 });
        deep.truncate(15);
        deep.push(0x80);
        decode(&deep, LIMITS).unwrap();
        let mut many = vec![0x99, 0x03, 0xe8];
        many.extend(std::iter::repeat_n(0u8, 1000));
        assert_eq!(kind(&many), CborErrorKind::TooManyItems { limit: 1000 });
    }

    #[test]
    fn nesting_costs_no_native_stack() {
        // A million levels on a small thread: the reader's stack is on the heap.
        let mut deep = vec![0x81; 1_000_000];
        deep.push(0xf6);
        let limits = DecodeLimits {
            max_depth: usize::MAX,
            max_items: usize::MAX,
            max_bigint_bytes: 0,
        };
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || decode(&deep, limits).map(|_| ()))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
    }

    #[test]
    fn skip_reads_one_whole_item() {
        let bytes = [0x82, 0x82, 0x01, 0x02, 0xa1, 0x61, b'a', 0x80, 0x07];
        let mut r = Reader::new(&bytes, LIMITS);
        assert_eq!(r.next().unwrap(), Token::Array(2));
        r.skip().unwrap();
        assert_eq!(r.pos(), 4);
        r.skip().unwrap();
        assert_eq!(r.depth(), 0);
        assert_eq!(r.finish().unwrap_err().offset, 8);
    }

    #[test]
    fn bignums_are_minimal() {
        let mut big = vec![0xc2, 0x49, 0x01];
        big.extend([0; 8]);
        assert_eq!(decode(&big, LIMITS).unwrap(), Token::BigPos(&big[2..]));
        // Fits in 64 bits.
        assert_eq!(kind(&[0xc2, 0x41, 0x01]), CborErrorKind::BignumNotCanonical);
        // Leading zero.
        let mut lead = vec![0xc3, 0x4a, 0x00, 0x01];
        lead.extend([0; 8]);
        assert_eq!(kind(&lead), CborErrorKind::BignumNotCanonical);
        // Not a byte string.
        assert_eq!(kind(&[0xc2, 0x01]), CborErrorKind::BignumNotCanonical);
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
            0x3e70_0000_0000_0000, // 2^-24, the smallest binary16 subnormal
            0x3f10_0000_0000_0000, // 2^-14, the smallest binary16 normal
            0x40ef_fe00_0000_0000, // 65504, the largest binary16
            0x3810_0000_0000_0000, // 2^-126, the smallest binary32 normal
            0x36a0_0000_0000_0000, // 2^-149, the smallest binary32 subnormal
        ] {
            let mut w = CborWriter::<Vec<u8>>::default();
            w.float(f64::from_bits(bits));
            match decode(&w.sink, LIMITS).unwrap() {
                Token::Float(f) => assert_eq!(f.to_bits(), bits, "{bits:#x}"),
                other => panic!("{other:?}"),
            }
        }
        // The shortest form is chosen.
        let len = |f: f64| float_head(f.to_bits()).as_slice().len();
        assert_eq!(len(1.0), 3);
        assert_eq!(len(f64::from_bits(0x3e70_0000_0000_0000)), 3);
        assert_eq!(len(f64::from_bits(0x36a0_0000_0000_0000)), 5);
        assert_eq!(len(f64::NAN), 3);
        assert_eq!(len(0.1), 9);
        assert_eq!(len(f64::from_bits(0x7ff0_0000_0000_0001)), 9);
    }

    #[test]
    fn compare_finds_the_first_difference() {
        let expected = [0x82, 0x01, 0x02];
        let mut c = CborWriter::new(Compare::new(&expected));
        c.array(2);
        c.uint(1);
        c.uint(2);
        assert_eq!(c.sink.finish(), Ok(()));
        let mut c = CborWriter::new(Compare::new(&expected));
        c.array(2);
        c.uint(1);
        assert_eq!(c.sink.finish(), Err(2));
        let mut c = CborWriter::new(Compare::new(&expected));
        c.array(2);
        c.uint(1);
        c.uint(3);
        c.uint(4);
        assert_eq!(c.sink.finish(), Err(2));
        let mut c = CborWriter::new(Compare::new(&expected));
        c.text("ab");
        assert_eq!(c.sink.finish(), Err(0));
    }
}
