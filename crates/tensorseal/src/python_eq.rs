//! Python equality of dict keys and set elements (spec §3.3).
//!
//! Python merges keys that compare equal: `{1: a, 1.0: b, True: c}` has one entry. A manifest
//! whose dict holds two such keys, with different encodings, would lose values when loaded in
//! Python, so the decoder refuses it. Each key is mapped to an *identity*: a byte string that two
//! keys share exactly when Python's `==` holds between them (or, for keys without value equality
//! such as NaN or tensors, when their encodings are identical). Identities are canonical CBOR of
//! a normal form, so the kinds of keys cannot collide:
//!
//! - numbers (bool, int, float, complex, numpy scalars of those kinds) by exact value: an
//!   integral float or a complex with a zero imaginary part is the integer or float it equals,
//!   encoded as that integer or float; `-0.0` is `0`. No conversion loses precision: a float's
//!   integer value is built from its bits (`1e300` is the integer it equals exactly);
//! - a NaN, a tensor, a `torch.dtype`, a `torch.device`, an object and a global are their own
//!   encoding, so only an identical key equals them;
//! - `None`, text and bytes are their own encoding (text never equals bytes);
//! - a tuple is `{"tuple": [identities]}`, and a `torch.Size`, a tuple subclass, is the tuple of
//!   its integers; a frozenset is `{"frozenset": [identities, sorted]}`; a slice is
//!   `{"slice": [identities of start, stop, step]}`.
//!
//! The computation recurses into tuples, frozensets and slices: keys are decoded data, so their
//! depth is bounded by [`Limits::tree_depth`](crate::Limits::tree_depth).

use crate::cbor::{self, CborWriter};
use crate::dtype::DType;
use crate::manifest::encode_int;
use crate::tree::{Int, Node, Typed};
use std::borrow::Cow;

/// The identity of a key whose canonical encoding is `encoding`: borrowed when it is the
/// encoding itself (text, bytes, ints, None, most floats), computed otherwise.
pub(crate) fn key_identity<'a>(key: &Node, encoding: &'a [u8]) -> Cow<'a, [u8]> {
    match key {
        Node::None | Node::Str(_) | Node::Bytes(_) | Node::Int(_) => Cow::Borrowed(encoding),
        Node::Float(f) if integral(*f).is_none() => Cow::Borrowed(encoding),
        Node::Tensor(_) | Node::Object(_) | Node::Global(_) => Cow::Borrowed(encoding),
        Node::Typed(t) if matches!(**t, Typed::TorchDtype(_) | Typed::TorchDevice(_)) => {
            Cow::Borrowed(encoding)
        }
        _ => {
            let mut out = CborWriter::new(Vec::new());
            identity(key, &mut out);
            Cow::Owned(out.sink)
        }
    }
}

/// Writes the identity of `key`.
fn identity(key: &Node, w: &mut CborWriter<Vec<u8>>) {
    match key {
        Node::Bool(b) => w.uint(u64::from(*b)),
        Node::Float(f) => real(*f, w),
        Node::Complex(re, im) => {
            if !complex(*re, *im, w) {
                own(key, w);
            }
        }
        Node::Tuple(items) => {
            w.map(1);
            w.text("tuple");
            w.array(items.len());
            items.iter().for_each(|item| identity(item, w));
        }
        Node::FrozenSet(items) => {
            let mut ids: Vec<Vec<u8>> = items
                .iter()
                .map(|item| {
                    let mut one = CborWriter::new(Vec::new());
                    identity(item, &mut one);
                    one.sink
                })
                .collect();
            ids.sort_unstable();
            w.map(1);
            w.text("frozenset");
            w.array(ids.len());
            ids.iter().for_each(|id| w.raw(id));
        }
        Node::Typed(t) => match &**t {
            Typed::TorchSize(dims) => {
                w.map(1);
                w.text("tuple");
                w.array(dims.len());
                dims.iter().for_each(|&d| w.uint(d));
            }
            Typed::Slice(parts) => {
                w.map(1);
                w.text("slice");
                w.array(3);
                parts.iter().for_each(|part| identity(part, w));
            }
            Typed::NumpyScalar { dtype, bytes } => {
                if !numpy_scalar(*dtype, bytes, w) {
                    own(key, w);
                }
            }
            _ => own(key, w),
        },
        _ => own(key, w),
    }
}

/// Writes the node's own canonical encoding.
fn own(node: &Node, w: &mut CborWriter<Vec<u8>>) {
    // A key is a node of the tree: it was decoded, or is being written, within the depth limit
    // the encoder applies, so this cannot fail; a key too deep would be refused elsewhere.
    let limits = crate::Limits {
        max_tree_depth: usize::MAX,
        ..crate::Limits::default()
    };
    let _ = crate::manifest::encode_tree(w, node, &limits, "key");
}

/// Writes the identity of a real number, NaN included.
fn real(f: f64, w: &mut CborWriter<Vec<u8>>) {
    match integral(f) {
        Some(i) => encode_int(w, &i),
        // Non-integral values, infinities and NaN: the float itself. A NaN identity is its own
        // bit pattern, so only an identical NaN matches it.
        None => w.float(f),
    }
}

/// Writes the identity of `re + im·j`, or returns `false` for a NaN part (no value equality).
fn complex(re: f64, im: f64, w: &mut CborWriter<Vec<u8>>) -> bool {
    if re.is_nan() || im.is_nan() {
        return false;
    }
    if im == 0.0 {
        real(re, w);
    } else {
        w.map(1);
        w.text("complex");
        w.array(2);
        // -0.0 == 0.0: one identity for both.
        w.float(if re == 0.0 { 0.0 } else { re });
        w.float(im);
    }
    true
}

/// Writes the identity of a numpy scalar's value, or returns `false` for a NaN (no value
/// equality).
fn numpy_scalar(dtype: DType, bytes: &[u8], w: &mut CborWriter<Vec<u8>>) -> bool {
    // The decoder has checked that a numpy scalar holds exactly its itemsize; anything else has
    // no value to compare, and keeps its own encoding.
    if bytes.len() as u64 != dtype.itemsize() {
        return false;
    }
    fn le<const N: usize>(bytes: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&bytes[..N]);
        a
    }
    // Widening to binary64 is exact for every value: the identity is that of the Python float
    // numpy compares it as.
    let f16 = |b: &[u8]| f64::from_bits(cbor::widen16(u16::from_le_bytes(le(b))));
    let f32 = |b: &[u8]| f64::from_bits(cbor::widen32(u32::from_le_bytes(le(b))));
    match dtype {
        DType::Bool => w.uint(u64::from(bytes[0] != 0)),
        DType::U8 => w.uint(u64::from(bytes[0])),
        DType::U16 => w.uint(u64::from(u16::from_le_bytes(le(bytes)))),
        DType::U32 => w.uint(u64::from(u32::from_le_bytes(le(bytes)))),
        DType::U64 => w.uint(u64::from_le_bytes(le(bytes))),
        DType::I8 => encode_int(w, &Int::from(i64::from(i8::from_le_bytes(le(bytes))))),
        DType::I16 => encode_int(w, &Int::from(i64::from(i16::from_le_bytes(le(bytes))))),
        DType::I32 => encode_int(w, &Int::from(i64::from(i32::from_le_bytes(le(bytes))))),
        DType::I64 => encode_int(w, &Int::from(i64::from_le_bytes(le(bytes)))),
        DType::F16 | DType::F32 | DType::F64 => {
            let f = match dtype {
                DType::F16 => f16(bytes),
                DType::F32 => f32(bytes),
                _ => f64::from_le_bytes(le(bytes)),
            };
            if f.is_nan() {
                return false;
            }
            real(f, w);
        }
        DType::C64 => return complex(f32(bytes), f32(&bytes[4..]), w),
        DType::C128 => {
            let re = f64::from_le_bytes(le(bytes));
            return complex(re, f64::from_le_bytes(le(&bytes[8..])), w);
        }
        // Not numpy scalar types (spec §3.7): no value equality to honour.
        _ => return false,
    }
    true
}

/// The integer a float equals, if it is finite and integral, computed from its bits.
fn integral(f: f64) -> Option<Int> {
    let bits = f.to_bits();
    let negative = bits >> 63 == 1;
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    if exp == 0x7ff {
        return None;
    }
    if exp == 0 {
        // Zero, or a subnormal, which is never integral.
        return (fraction == 0).then(|| Int::from(0i64));
    }
    // f = m × 2^e with a 53-bit integer m.
    let m = fraction | 1 << 52;
    let e = exp - 1075;
    if e < 0 {
        let shift = (-e) as u32;
        if shift > 52 || m & ((1 << shift) - 1) != 0 {
            return None;
        }
        return Some(Int::from_sign_magnitude(
            negative,
            &(m >> shift).to_be_bytes(),
        ));
    }
    // m × 2^e: shift m by e % 8 bits (at most 60 bits wide), then append e / 8 zero bytes.
    let mut magnitude = (m << (e % 8)).to_be_bytes().to_vec();
    magnitude.resize(magnitude.len() + (e / 8) as usize, 0);
    Some(Int::from_sign_magnitude(negative, &magnitude))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;

    fn id(n: &Node) -> Vec<u8> {
        let encoding = n.canonical_bytes(&Limits::default()).unwrap();
        key_identity(n, &encoding).into_owned()
    }

    fn int(v: i64) -> Node {
        Node::Int(v.into())
    }

    fn np(dtype: DType, bytes: &[u8]) -> Node {
        Node::Typed(Box::new(Typed::NumpyScalar {
            dtype,
            bytes: bytes.to_vec(),
        }))
    }

    #[test]
    fn numbers_equal_in_python_share_an_identity() {
        let one = [
            int(1),
            Node::Bool(true),
            Node::Float(1.0),
            Node::Complex(1.0, 0.0),
            Node::Complex(1.0, -0.0),
            np(DType::Bool, &[1]),
            np(DType::U8, &[1]),
            np(DType::I64, &1i64.to_le_bytes()),
            np(DType::F16, &[0x00, 0x3c]),
            np(DType::F32, &1f32.to_le_bytes()),
            np(
                DType::C64,
                &[1f32.to_le_bytes(), 0f32.to_le_bytes()].concat(),
            ),
        ];
        for n in &one {
            assert_eq!(id(n), id(&int(1)), "{n:?}");
        }
        let zero = [
            int(0),
            Node::Bool(false),
            Node::Float(0.0),
            Node::Float(-0.0),
            Node::Complex(-0.0, -0.0),
        ];
        for n in &zero {
            assert_eq!(id(n), id(&int(0)), "{n:?}");
        }
        // Unequal values stay apart.
        for (a, b) in [
            (Node::Float(0.5), int(0)),
            (Node::Float(1.5), Node::Complex(1.5, 1.0)),
            (Node::Complex(1.0, 1.0), Node::Complex(1.0, -1.0)),
            (Node::Str("1".into()), int(1)),
            (Node::Str("a".into()), Node::Bytes(b"a".to_vec())),
            (Node::None, int(0)),
            (np(DType::F32, &0.1f32.to_le_bytes()), Node::Float(0.1)),
        ] {
            assert_ne!(id(&a), id(&b), "{a:?} {b:?}");
        }
        // Non-integral and infinite values keep their own encoding.
        assert_eq!(id(&Node::Float(0.5)), [0xf9, 0x38, 0x00]);
        assert_eq!(
            id(&Node::Complex(f64::INFINITY, 0.0)),
            id(&Node::Float(f64::INFINITY))
        );
        assert_eq!(
            id(&np(DType::F32, &0.5f32.to_le_bytes())),
            id(&Node::Float(0.5))
        );
    }

    #[test]
    fn integral_floats_are_their_exact_integer() {
        // 1e300 equals the integer int(1e300) exactly (Python prints this), not 10**300.
        let big = integral(1e300).unwrap();
        assert_eq!(
            big.to_string(),
            "1000000000000000052504760255204420248704468581108159154915854115511802457988908195\
             7863713750804478640437044438328838781769425232353604305756447921847867069828483872\
             0092657580373783023379478809005936895323497079994508111903896764088007465274278014\
             2494579258788820056842838115669472196386865459400540160"
        );
        assert_eq!(id(&Node::Float(1e300)), id(&Node::Int(big)));
        assert_ne!(
            id(&Node::Float(1e300)),
            id(&Node::Int(Int::from_sign_magnitude(false, &{
                let mut ten = vec![0u8; 125];
                ten[0] = 1;
                ten
            })))
        );
        assert_eq!(
            integral(-2f64.powi(64)),
            Some(Int::from_i128(-(1i128 << 64)))
        );
        assert_eq!(integral(f64::MAX).unwrap().to_sign_magnitude().1.len(), 128);
        assert_eq!(
            integral(4503599627370497.0),
            Some(Int::from(4503599627370497i64))
        );
        assert_eq!(integral(0.5), None);
        assert_eq!(integral(f64::from_bits(1)), None);
        assert_eq!(integral(f64::INFINITY), None);
        assert_eq!(integral(f64::NAN), None);
        assert_eq!(integral(-0.0), Some(Int::from(0i64)));
    }

    #[test]
    fn nan_equals_only_an_identical_encoding() {
        let nan = Node::Float(f64::NAN);
        let other = Node::Float(f64::from_bits(0x7ff8_0000_0000_0001));
        assert_eq!(id(&nan), id(&nan.clone()));
        assert_ne!(id(&nan), id(&other));
        let c = Node::Complex(f64::NAN, 0.0);
        assert_ne!(id(&c), id(&nan));
        let np_nan = np(DType::F64, &f64::NAN.to_le_bytes());
        assert_ne!(id(&np_nan), id(&nan));
        assert_eq!(id(&np_nan), id(&np_nan.clone()));
    }

    #[test]
    fn containers_compare_like_python() {
        let t = |items: Vec<Node>| Node::Tuple(items);
        let fs = |items: Vec<Node>| Node::FrozenSet(items);
        assert_eq!(
            id(&t(vec![int(1), Node::Str("a".into())])),
            id(&t(vec![Node::Float(1.0), Node::Str("a".into())]))
        );
        assert_ne!(id(&t(vec![int(1), int(2)])), id(&t(vec![int(2), int(1)])));
        assert_eq!(
            id(&fs(vec![int(1), int(2)])),
            id(&fs(vec![Node::Float(2.0), Node::Bool(true)]))
        );
        assert_ne!(id(&fs(vec![int(1)])), id(&t(vec![int(1)])));
        let size = Node::Typed(Box::new(Typed::TorchSize(vec![2, 3])));
        assert_eq!(id(&size), id(&t(vec![int(2), Node::Float(3.0)])));
        let slice = |a: Node| {
            Node::Typed(Box::new(Typed::Slice(Box::new([
                a,
                Node::None,
                Node::None,
            ]))))
        };
        assert_eq!(id(&slice(int(1))), id(&slice(Node::Bool(true))));
        assert_ne!(
            id(&slice(int(1))),
            id(&t(vec![int(1), Node::None, Node::None]))
        );
    }
}
