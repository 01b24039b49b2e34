//! Python ints of any size, without a big-integer dependency.

use std::fmt;

/// A Python `int` of any size.
///
/// # Invariants
/// `Big` holds the minimal little-endian two's-complement encoding of a value that does not fit in
/// an `i64`; every value that fits is `Small`. So two equal ints always compare equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PyInt {
    /// A value that fits in an `i64`.
    Small(i64),
    /// A value outside the `i64` range, as minimal little-endian two's complement.
    Big(Box<[u8]>),
}

impl PyInt {
    /// Decodes little-endian two's complement, as LONG1/LONG4 carry it (empty means 0).
    pub fn from_le_twos(bytes: &[u8]) -> PyInt {
        let minimal = minimal_twos(bytes);
        if minimal.len() <= 8 {
            let negative = minimal.last().is_some_and(|b| b & 0x80 != 0);
            let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
            buf[..minimal.len()].copy_from_slice(minimal);
            PyInt::Small(i64::from_le_bytes(buf))
        } else {
            PyInt::Big(minimal.into())
        }
    }

    /// The value as an `i64`, if it fits.
    pub fn to_i64(&self) -> Option<i64> {
        match self {
            PyInt::Small(v) => Some(*v),
            PyInt::Big(_) => None,
        }
    }

    /// The minimal little-endian two's-complement encoding (0 is one zero byte).
    pub fn to_le_twos(&self) -> Vec<u8> {
        match self {
            PyInt::Small(v) => minimal_twos(&v.to_le_bytes()).to_vec(),
            PyInt::Big(b) => b.to_vec(),
        }
    }

    /// True for values below zero.
    pub fn is_negative(&self) -> bool {
        match self {
            PyInt::Small(v) => *v < 0,
            PyInt::Big(b) => b.last().is_some_and(|x| x & 0x80 != 0),
        }
    }

    /// Parses decimal digits (ASCII, no sign, no leading zeros checked by the caller).
    pub(crate) fn from_decimal(negative: bool, digits: &[u8]) -> PyInt {
        if digits.len() <= 18 {
            let mut v: i64 = 0;
            for &d in digits {
                v = v * 10 + i64::from(d - b'0');
            }
            return PyInt::Small(if negative { -v } else { v });
        }
        // Magnitude as base-2^32 limbs, little-endian. Quadratic in the digit count, which
        // `Limits::max_int_digits` bounds (4,300 digits: ~0.2 M limb operations).
        let mut limbs: Vec<u32> = Vec::with_capacity(digits.len() / 9 + 1);
        for chunk in digits.chunks(9) {
            let mut mul: u64 = 1;
            let mut add: u64 = 0;
            for &d in chunk {
                mul *= 10;
                add = add * 10 + u64::from(d - b'0');
            }
            let mut carry = add;
            for limb in limbs.iter_mut() {
                let t = u64::from(*limb) * mul + carry;
                *limb = t as u32;
                carry = t >> 32;
            }
            if carry != 0 {
                limbs.push(carry as u32);
            }
        }
        let mut bytes: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).collect();
        bytes.push(0); // sign byte: the magnitude is non-negative
        if negative {
            negate_twos(&mut bytes);
        }
        PyInt::from_le_twos(&bytes)
    }

    /// Converts to the nearest `f64` the way Python's `float(int)` does, or `None` when the value
    /// is too large for a float (Python raises OverflowError) or not exactly representable by a
    /// simple conversion (big values are refused rather than rounded differently from CPython).
    pub fn to_f64(&self) -> Option<f64> {
        match self {
            // `as` rounds to nearest, ties to even: the same as CPython's int -> float.
            PyInt::Small(v) => Some(*v as f64),
            PyInt::Big(_) => None,
        }
    }
}

impl fmt::Display for PyInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyInt::Small(v) => write!(f, "{v}"),
            PyInt::Big(b) => {
                let negative = b.last().is_some_and(|x| x & 0x80 != 0);
                let mut mag = b.to_vec();
                if negative {
                    negate_twos(&mut mag);
                }
                // Base-2^32 limbs, most significant last.
                let mut limbs: Vec<u32> = mag
                    .chunks(4)
                    .map(|c| {
                        let mut w = [0u8; 4];
                        w[..c.len()].copy_from_slice(c);
                        u32::from_le_bytes(w)
                    })
                    .collect();
                let mut parts: Vec<u32> = Vec::new();
                while limbs.iter().any(|&l| l != 0) {
                    let mut rem: u64 = 0;
                    for limb in limbs.iter_mut().rev() {
                        let cur = (rem << 32) | u64::from(*limb);
                        *limb = (cur / 1_000_000_000) as u32;
                        rem = cur % 1_000_000_000;
                    }
                    parts.push(rem as u32);
                    while limbs.last() == Some(&0) {
                        limbs.pop();
                    }
                }
                let mut s = String::new();
                if negative {
                    s.push('-');
                }
                match parts.split_last() {
                    None => s.push('0'),
                    Some((top, rest)) => {
                        s.push_str(&top.to_string());
                        for p in rest.iter().rev() {
                            s.push_str(&format!("{p:09}"));
                        }
                    }
                }
                f.write_str(&s)
            }
        }
    }
}

/// Strips redundant sign-extension bytes.
fn minimal_twos(bytes: &[u8]) -> &[u8] {
    let mut len = bytes.len();
    while len > 1 {
        let top = bytes[len - 1];
        let next_sign = bytes[len - 2] & 0x80;
        if (top == 0 && next_sign == 0) || (top == 0xff && next_sign != 0) {
            len -= 1;
        } else {
            break;
        }
    }
    &bytes[..len]
}

/// In-place two's-complement negation.
fn negate_twos(bytes: &mut [u8]) {
    let mut carry = true;
    for b in bytes.iter_mut() {
        let (v, c) = (!*b).overflowing_add(u8::from(carry));
        *b = v;
        carry = c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_twos_round_trip() {
        assert_eq!(PyInt::from_le_twos(&[]), PyInt::Small(0));
        assert_eq!(PyInt::from_le_twos(&[0xff]), PyInt::Small(-1));
        assert_eq!(PyInt::from_le_twos(&[0x80, 0x00]), PyInt::Small(128));
        assert_eq!(PyInt::from_le_twos(&[0xff, 0xff, 0xff]), PyInt::Small(-1));
        let big = PyInt::from_le_twos(&[0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(big.to_string(), "18446744073709551616");
        let neg = PyInt::from_le_twos(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff]);
        assert_eq!(neg.to_string(), "-18446744073709551616");
        assert_eq!(
            PyInt::Small(i64::MIN).to_le_twos(),
            i64::MIN.to_le_bytes().to_vec()
        );
    }

    #[test]
    fn decimal_round_trip() {
        for s in [
            "0",
            "123456789012345678",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "1180591620717411303424",
            "-340282366920938463463374607431768211456",
        ] {
            let (neg, digits) = match s.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, s),
            };
            let v = PyInt::from_decimal(neg, digits.as_bytes());
            assert_eq!(v.to_string(), s);
        }
        assert_eq!(
            PyInt::from_decimal(true, b"9223372036854775808"),
            PyInt::Small(i64::MIN)
        );
    }
}
