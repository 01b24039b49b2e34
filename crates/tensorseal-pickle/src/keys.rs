//! Python hash equality for dict keys and set elements, without recursion.
//!
//! Every hashable node gets a canonical key id, computed on first use and cached: numbers that
//! compare equal in Python share one id (`1 == 1.0 == True`, `0.0 == -0.0 == 0`), tuples and
//! frozensets are interned from their elements' ids bottom-up with an explicit stack, and objects
//! without value equality (tensors, records, NaN) are keyed by identity.

use std::sync::Arc;

use crate::dtype::Dtype;
use crate::int::PyInt;
use crate::value::{Node, NodeId};

pub(crate) const NO_KEY: u32 = u32::MAX;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeyShape {
    None,
    Int(PyInt),
    Float(u64),
    Complex(u64, u64),
    Str(Arc<str>),
    Bytes(Box<[u8]>),
    Tuple(Box<[u32]>),
    FrozenSet(Box<[u32]>),
    Dtype(Dtype),
    Device(Box<str>),
    Layout(Box<str>),
    QScheme(&'static str),
    Global(u32),
    Identity(u32),
}

#[derive(Default)]
pub(crate) struct KeyTable {
    shapes: crate::vm::Map<KeyShape, u32>,
}

/// `Err(type name)` for unhashable values.
pub(crate) type KeyResult = Result<u32, &'static str>;

impl KeyTable {
    fn intern(&mut self, shape: KeyShape) -> u32 {
        let next = self.shapes.len() as u32;
        *self.shapes.entry(shape).or_insert(next)
    }

    /// The key id of `id`, computing (and caching in `cache`) those of its elements first.
    pub(crate) fn key(
        &mut self,
        nodes: &[Node],
        cache: &mut crate::vm::Map<u32, u32>,
        input: &[u8],
        id: NodeId,
    ) -> KeyResult {
        if let Some(&k) = cache.get(&id.0) {
            return Ok(k);
        }
        if !matches!(
            nodes[id.index()],
            Node::Tuple(_) | Node::FrozenSet(_) | Node::TorchSize(_)
        ) {
            // The common case (str, int keys): no stack needed.
            let shape = scalar_shape(&nodes[id.index()], id, input)?;
            let k = self.intern(shape);
            cache.insert(id.0, k);
            return Ok(k);
        }
        let mut stack: Vec<(NodeId, bool)> = vec![(id, false)];
        while let Some((n, expanded)) = stack.pop() {
            if cache.contains_key(&n.0) {
                continue;
            }
            let shape = match &nodes[n.index()] {
                Node::Tuple(items) | Node::FrozenSet(items) if !expanded => {
                    stack.push((n, true));
                    for &c in items {
                        if !cache.contains_key(&c.0) {
                            stack.push((c, false));
                        }
                    }
                    continue;
                }
                Node::Tuple(items) => KeyShape::Tuple(items.iter().map(|c| cache[&c.0]).collect()),
                Node::FrozenSet(items) => {
                    let mut ids: Vec<u32> = items.iter().map(|c| cache[&c.0]).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    KeyShape::FrozenSet(ids.into())
                }
                Node::TorchSize(dims) => {
                    let ids: Vec<u32> = dims
                        .iter()
                        .map(|&d| self.intern(KeyShape::Int(PyInt::Small(d))))
                        .collect();
                    KeyShape::Tuple(ids.into())
                }
                other => scalar_shape(other, n, input)?,
            };
            let k = self.intern(shape);
            cache.insert(n.0, k);
        }
        Ok(cache[&id.0])
    }
}

fn float_shape(f: f64, id: NodeId) -> KeyShape {
    if f.is_nan() {
        // NaN != NaN: only the same object finds itself again.
        return KeyShape::Identity(id.0);
    }
    if f.is_finite() && f.fract() == 0.0 {
        return KeyShape::Int(integral_float_to_int(f));
    }
    KeyShape::Float(f.to_bits())
}

/// The int equal to an integral, finite float.
fn integral_float_to_int(f: f64) -> PyInt {
    if f.abs() < 9.2e18 {
        return PyInt::Small(f as i64);
    }
    let bits = f.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1075;
    let mantissa = (bits & ((1u64 << 52) - 1)) | (1u64 << 52);
    // |f| >= 2^63 > 2^53, so exponent > 0: value = mantissa << exponent.
    let shift = exponent as usize;
    let mut mag = vec![0u8; shift / 8 + 10];
    let m = u128::from(mantissa) << (shift % 8);
    for (i, b) in m.to_le_bytes().iter().enumerate().take(9) {
        mag[shift / 8 + i] = *b;
    }
    if f < 0.0 {
        let mut carry = true;
        for b in mag.iter_mut() {
            let (v, c) = (!*b).overflowing_add(u8::from(carry));
            *b = v;
            carry = c;
        }
    }
    PyInt::from_le_twos(&mag)
}

fn scalar_shape(node: &Node, id: NodeId, input: &[u8]) -> Result<KeyShape, &'static str> {
    Ok(match node {
        Node::None => KeyShape::None,
        Node::Bool(b) => KeyShape::Int(PyInt::Small(i64::from(*b))),
        Node::Int(i) => KeyShape::Int(i.clone()),
        Node::Float(f) => float_shape(*f, id),
        Node::Complex(re, im) => {
            if *im == 0.0 {
                float_shape(*re, id)
            } else if re.is_nan() || im.is_nan() {
                KeyShape::Identity(id.0)
            } else {
                // +0.0 and -0.0 compare equal.
                KeyShape::Complex((re + 0.0).to_bits(), (im + 0.0).to_bits())
            }
        }
        Node::Str(s) => KeyShape::Str(s.clone()),
        Node::Bytes(data) => KeyShape::Bytes(match data {
            crate::value::ByteData::Input(r) => input[r.clone()].into(),
            crate::value::ByteData::Owned(b) => b.as_ref().into(),
        }),
        Node::TorchDtype(d) => KeyShape::Dtype(*d),
        Node::TorchDevice(d) => KeyShape::Device(d.clone()),
        Node::TorchLayout(l) => KeyShape::Layout(l.clone()),
        Node::TorchQScheme(q) => KeyShape::QScheme(q),
        Node::Global(g) => KeyShape::Global(g.0),
        Node::Tensor(_)
        | Node::Storage(_)
        | Node::Object(_)
        | Node::NumpyDtype(_)
        | Node::NumpyScalar(_)
        | Node::Unsupported(_)
        | Node::Refused => KeyShape::Identity(id.0),
        other => return Err(other.type_name()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integral_floats_equal_ints() {
        assert_eq!(
            integral_float_to_int(1e20).to_string(),
            "100000000000000000000"
        );
        assert_eq!(
            integral_float_to_int(-1e20).to_string(),
            "-100000000000000000000"
        );
        assert_eq!(
            integral_float_to_int(9.223_372_036_854_776e18).to_string(),
            "9223372036854775808"
        );
    }
}
