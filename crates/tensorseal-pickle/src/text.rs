//! Decoders for the arguments of the text opcodes (protocol 0) and for UTF-8 payloads.
//!
//! Each follows what CPython's writers emit and what its C unpickler accepts, and refuses the
//! quirks where CPython's C and Python unpicklers disagree (e.g. `INT 010` is 8 in C and an error
//! in Python): a form no writer produces is refused rather than guessed at.

use crate::int::PyInt;

/// The result of an INT line: CPython pushes `True`/`False` for `01`/`00`.
pub(crate) enum IntLine {
    Bool(bool),
    Int(PyInt),
}

/// Decimal digits with an optional leading `-`; no `+`, spaces, underscores or leading zeros.
pub(crate) fn decimal(line: &[u8], max_digits: u64) -> Result<PyInt, &'static str> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return Err("empty integer literal");
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err("integer literal is not decimal digits");
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return Err("integer literal has leading zeros");
    }
    if negative && digits == b"0" {
        return Err("integer literal -0 (CPython's C and Python unpicklers disagree on it)");
    }
    if digits.len() as u64 > max_digits {
        return Err("integer literal has more digits than Limits::max_int_digits");
    }
    Ok(PyInt::from_decimal(negative, digits))
}

/// The argument of INT.
pub(crate) fn int_line(line: &[u8], max_digits: u64) -> Result<IntLine, &'static str> {
    match line {
        b"00" => Ok(IntLine::Bool(false)),
        b"01" => Ok(IntLine::Bool(true)),
        _ => decimal(line, max_digits).map(IntLine::Int),
    }
}

/// The argument of LONG: decimal with an optional trailing `L`.
pub(crate) fn long_line(line: &[u8], max_digits: u64) -> Result<PyInt, &'static str> {
    let digits = line.strip_suffix(b"L").unwrap_or(line);
    decimal(digits, max_digits)
}

/// A memo index line (GET/PUT): non-negative decimal.
pub(crate) fn memo_index(line: &[u8]) -> Result<u64, &'static str> {
    if line.is_empty() || line.len() > 20 || !line.iter().all(u8::is_ascii_digit) {
        return Err("memo index is not a non-negative decimal number");
    }
    if line.len() > 1 && line[0] == b'0' {
        return Err("memo index has leading zeros");
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or("memo index out of range")
}

/// The argument of FLOAT: `repr(float)` output (`1.5`, `1e+100`, `inf`, `-inf`, `nan`).
pub(crate) fn float_line(line: &[u8]) -> Result<f64, &'static str> {
    let ok_chars = line
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'-'));
    if line.is_empty() || !ok_chars {
        return Err("float literal has characters repr(float) never writes");
    }
    let text = std::str::from_utf8(line).map_err(|_| "float literal is not ASCII")?;
    text.parse::<f64>().map_err(|_| "not a float literal")
}

/// The argument of STRING: a quoted line with Python string escapes (`codecs.escape_decode`).
pub(crate) fn quoted_string(line: &[u8]) -> Result<Vec<u8>, &'static str> {
    let inner = match line {
        [q, inner @ .., q2] if q == q2 && (*q == b'\'' || *q == b'"') => inner,
        _ => return Err("the STRING opcode argument must be quoted"),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = inner.get(i) else {
            return Err("trailing backslash in STRING");
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                // CPython keeps the low 8 bits of octal escapes above \377.
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let hex = inner.get(i..i + 2).ok_or("invalid \\x escape in STRING")?;
                let v = hex_value(hex).ok_or("invalid \\x escape in STRING")?;
                out.push(v as u8);
                i += 2;
            }
            other => {
                // Unknown escapes are kept verbatim, backslash included.
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// The argument of UNICODE: raw-unicode-escape (latin-1 bytes, `\uXXXX`, `\UXXXXXXXX`).
pub(crate) fn raw_unicode_escape(line: &[u8]) -> Result<String, &'static str> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        i += 1;
        if c != b'\\' {
            out.push(char::from(c));
            continue;
        }
        let Some(&e) = line.get(i) else {
            out.push('\\');
            break;
        };
        i += 1;
        let count = match e {
            b'u' => 4,
            b'U' => 8,
            other => {
                out.push('\\');
                out.push(char::from(other));
                continue;
            }
        };
        let hex = line
            .get(i..i + count)
            .ok_or("truncated \\u escape in UNICODE")?;
        let v = hex_value(hex).ok_or("invalid \\u escape in UNICODE")?;
        i += count;
        if (0xd800..0xe000).contains(&v) {
            return Err("lone surrogate in UNICODE (not representable as UTF-8)");
        }
        out.push(char::from_u32(v).ok_or("\\U escape out of range in UNICODE")?);
    }
    Ok(out)
}

/// Strict UTF-8 for the binary str opcodes. CPython decodes with `surrogatepass`, so encoded
/// surrogates are legal Python strings, but they cannot be UTF-8: they are refused with a clear
/// reason rather than replaced.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, &'static str> {
    std::str::from_utf8(bytes).map_err(|_| {
        if contains_encoded_surrogate(bytes) {
            "string holds a lone surrogate (valid in Python, not representable as UTF-8)"
        } else {
            "string is not valid UTF-8"
        }
    })
}

fn contains_encoded_surrogate(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|w| w[0] == 0xed && (0xa0..=0xbf).contains(&w[1]))
}

fn hex_value(hex: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &h in hex {
        let d = char::from(h).to_digit(16)?;
        v = v.checked_mul(16)?.checked_add(d)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints() {
        assert!(matches!(int_line(b"01", 10), Ok(IntLine::Bool(true))));
        assert!(matches!(int_line(b"00", 10), Ok(IntLine::Bool(false))));
        assert!(matches!(
            int_line(b"0", 10),
            Ok(IntLine::Int(PyInt::Small(0)))
        ));
        assert!(int_line(b"010", 10).is_err());
        assert!(int_line(b"-0", 10).is_err());
        assert!(int_line(b"+1", 10).is_err());
        assert!(int_line(b"0x10", 10).is_err());
        assert!(int_line(b"1_0", 10).is_err());
        assert_eq!(long_line(b"-12L", 10).unwrap(), PyInt::Small(-12));
        assert!(decimal(b"12345678901", 10).is_err());
    }

    #[test]
    fn strings() {
        assert_eq!(
            quoted_string(b"'a\\nb\\x41\\101\\\\\\q'").unwrap(),
            b"a\nbAA\\\\q"
        );
        assert!(quoted_string(b"'abc").is_err());
        assert_eq!(
            raw_unicode_escape(b"\xe9\\u20ac\\U0001f600\\\\x").unwrap(),
            "é€😀\\\\x"
        );
        assert!(raw_unicode_escape(b"\\ud800").is_err());
        assert_eq!(float_line(b"-inf").unwrap(), f64::NEG_INFINITY);
        assert!(float_line(b"1 ").is_err());
    }
}
