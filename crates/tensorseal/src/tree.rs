//! The checkpoint tree: Python-like values whose leaves may be tensors (spec §3.3-§3.8).

use crate::dtype::DType;
use std::fmt;

/// Index of a blob in the manifest's blob table.
pub type BlobId = usize;

/// One value of the checkpoint tree.
///
/// Equality compares floats by their bits, so a tree equals itself even when it holds NaN, and
/// `0.0` differs from `-0.0`: two trees are equal exactly when they encode to the same bytes.
#[derive(Debug, Clone)]
pub enum Node {
    /// Python `None`.
    None,
    /// `bool`.
    Bool(bool),
    /// `int`, unbounded.
    Int(Int),
    /// `float` (binary64, bit-exact).
    Float(f64),
    /// `str`.
    Str(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `list`.
    List(Vec<Node>),
    /// `tuple`.
    Tuple(Vec<Node>),
    /// `dict` in insertion order; keys must be hashable kinds (spec §3.3).
    Dict(Vec<(Node, Node)>),
    /// `set`, in the order the producer iterated it.
    Set(Vec<Node>),
    /// `frozenset`.
    FrozenSet(Vec<Node>),
    /// `bytearray`.
    ByteArray(Vec<u8>),
    /// `complex`: real and imaginary parts.
    Complex(f64, f64),
    /// A tensor or numpy array.
    Tensor(Box<Tensor>),
    /// A value of a registered type (spec §3.7).
    Typed(Box<Typed>),
    /// An inert record of an unknown class instance (spec §3.8).
    Object(Box<Object>),
    /// An inert reference to a class or function (spec §3.8).
    Global(Box<Global>),
}

/// The flavour of array a tensor node restores to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TensorKind {
    /// `torch.Tensor`.
    #[default]
    Tensor,
    /// `torch.nn.Parameter`.
    Parameter,
    /// `numpy.ndarray`.
    NdArray,
}

impl TensorKind {
    /// The manifest spelling, `None` for the default.
    pub const fn name(self) -> Option<&'static str> {
        match self {
            TensorKind::Tensor => None,
            TensorKind::Parameter => Some("parameter"),
            TensorKind::NdArray => Some("ndarray"),
        }
    }
}

/// A tensor node: element type, shape and the blob holding its C-contiguous little-endian bytes.
#[derive(Debug, Clone)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first; empty for a 0-d tensor.
    pub shape: Vec<u64>,
    /// The blob with the data, `None` exactly when the byte size is 0.
    pub blob: Option<BlobId>,
    /// Torch tensor, parameter or numpy array.
    pub kind: TensorKind,
    /// `requires_grad` of a torch tensor.
    pub requires_grad: bool,
    /// Python attributes set on the tensor object, in order.
    pub attrs: Vec<(String, Node)>,
}

impl Tensor {
    /// A plain torch tensor with no attributes.
    pub fn new(dtype: DType, shape: Vec<u64>, blob: Option<BlobId>) -> Self {
        Self {
            dtype,
            shape,
            blob,
            kind: TensorKind::Tensor,
            requires_grad: false,
            attrs: Vec::new(),
        }
    }

    /// Byte size (`product(shape) × itemsize`), or `None` if it exceeds 2^62.
    pub fn byte_size(&self) -> Option<u64> {
        self.dtype.byte_size(&self.shape)
    }
}

/// A value of a registered type (spec §3.7).
#[derive(Debug, Clone)]
pub enum Typed {
    /// `collections.OrderedDict` with its attributes (a state dict's `_metadata`).
    OrderedDict {
        /// The items, in order.
        items: Vec<(Node, Node)>,
        /// Instance attributes, in order.
        attrs: Vec<(String, Node)>,
    },
    /// `collections.Counter` with its attributes.
    Counter {
        /// The items, in order.
        items: Vec<(Node, Node)>,
        /// Instance attributes, in order.
        attrs: Vec<(String, Node)>,
    },
    /// `argparse.Namespace`: its attributes in order.
    Namespace(Vec<(String, Node)>),
    /// `torch.Size`.
    TorchSize(Vec<u64>),
    /// `torch.dtype` by name (spec §3.7.1); may name dtypes tensors cannot have.
    TorchDtype(String),
    /// `torch.device`, e.g. `cpu` or `cuda:0`.
    TorchDevice(String),
    /// A numpy scalar: its dtype and little-endian value bytes.
    NumpyScalar {
        /// Element type; numpy-native types only.
        dtype: DType,
        /// The value, `dtype.itemsize()` bytes.
        bytes: Vec<u8>,
    },
    /// `slice(start, stop, step)`.
    Slice(Box<[Node; 3]>),
}

impl Typed {
    /// The registered type name, e.g. `collections.OrderedDict`.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Typed::OrderedDict { .. } => "collections.OrderedDict",
            Typed::Counter { .. } => "collections.Counter",
            Typed::Namespace(_) => "argparse.Namespace",
            Typed::TorchSize(_) => "torch.Size",
            Typed::TorchDtype(_) => "torch.dtype",
            Typed::TorchDevice(_) => "torch.device",
            Typed::NumpyScalar { .. } => "numpy.scalar",
            Typed::Slice(_) => "builtins.slice",
        }
    }
}

/// An inert record of a value whose class the producer did not know. Nothing instantiates it.
#[derive(Debug, Clone)]
pub struct Object {
    /// Module of the callable or class.
    pub module: String,
    /// Qualified name of the callable or class.
    pub name: String,
    /// Positional arguments it was called with.
    pub args: Vec<Node>,
    /// Keyword arguments, in order.
    pub kwargs: Vec<(String, Node)>,
    /// State applied after construction (`None`: none was).
    pub state: Option<Node>,
    /// Items appended after construction (a list subclass), in order.
    pub list_items: Vec<Node>,
    /// Items set after construction (a dict subclass), in order.
    pub dict_items: Vec<(Node, Node)>,
}

/// An inert reference to a class or function used as a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Module name.
    pub module: String,
    /// Qualified name.
    pub name: String,
}

/// An unbounded integer with Python semantics.
///
/// # Invariants
/// Values in [-2^64, 2^64 - 1] are held as `Small`; others as a sign and a big-endian magnitude
/// without leading zeros. Each value therefore has one representation, and `==` is value equality.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Int(IntRepr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum IntRepr {
    Small(i128),
    Big { negative: bool, magnitude: Vec<u8> },
}

const SMALL_MIN: i128 = -(1i128 << 64);
const SMALL_MAX: i128 = (1i128 << 64) - 1;

impl Int {
    /// Builds an integer from a sign and a big-endian magnitude (leading zeros allowed).
    pub fn from_sign_magnitude(negative: bool, magnitude_be: &[u8]) -> Int {
        let start = magnitude_be
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(magnitude_be.len());
        let magnitude = &magnitude_be[start..];
        if magnitude.len() <= 16 {
            let mut buf = [0u8; 16];
            buf[16 - magnitude.len()..].copy_from_slice(magnitude);
            let m = u128::from_be_bytes(buf);
            if let Ok(m) = i128::try_from(m) {
                let v = if negative { -m } else { m };
                if (SMALL_MIN..=SMALL_MAX).contains(&v) {
                    return Int(IntRepr::Small(v));
                }
            }
        }
        Int(IntRepr::Big {
            negative,
            magnitude: magnitude.to_vec(),
        })
    }

    /// An integer from an `i128`.
    pub(crate) fn from_i128(v: i128) -> Int {
        if (SMALL_MIN..=SMALL_MAX).contains(&v) {
            Int(IntRepr::Small(v))
        } else {
            Int::from_sign_magnitude(v < 0, &v.unsigned_abs().to_be_bytes())
        }
    }

    /// Builds an integer from little-endian two's complement bytes, as pickle's LONG1 and LONG4
    /// store them. An empty slice is zero.
    pub fn from_le_twos_complement(bytes: &[u8]) -> Int {
        let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
        let mut be: Vec<u8> = bytes.iter().rev().copied().collect();
        if negative {
            // Magnitude of a negative two's complement value: invert and add one.
            for b in be.iter_mut() {
                *b = !*b;
            }
            for b in be.iter_mut().rev() {
                let (v, carry) = b.overflowing_add(1);
                *b = v;
                if !carry {
                    break;
                }
            }
        }
        Int::from_sign_magnitude(negative, &be)
    }

    /// The value as `i128`, if it fits.
    pub fn to_i128(&self) -> Option<i128> {
        match &self.0 {
            IntRepr::Small(v) => Some(*v),
            IntRepr::Big { .. } => None,
        }
    }

    /// The value as `i64`, if it fits.
    pub fn to_i64(&self) -> Option<i64> {
        self.to_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// The value as `u64`, if it fits.
    pub fn to_u64(&self) -> Option<u64> {
        self.to_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// Sign and big-endian magnitude without leading zeros (empty for zero).
    pub fn to_sign_magnitude(&self) -> (bool, Vec<u8>) {
        match &self.0 {
            IntRepr::Small(v) => {
                let m = v.unsigned_abs().to_be_bytes();
                let start = m.iter().position(|&b| b != 0).unwrap_or(m.len());
                (*v < 0, m[start..].to_vec())
            }
            IntRepr::Big {
                negative,
                magnitude,
            } => (*negative, magnitude.clone()),
        }
    }

    /// Whether the value is negative.
    pub fn is_negative(&self) -> bool {
        match &self.0 {
            IntRepr::Small(v) => *v < 0,
            IntRepr::Big { negative, .. } => *negative,
        }
    }
}

impl From<i64> for Int {
    fn from(v: i64) -> Int {
        Int(IntRepr::Small(v.into()))
    }
}

impl From<u64> for Int {
    fn from(v: u64) -> Int {
        Int(IntRepr::Small(v.into()))
    }
}

impl From<i32> for Int {
    fn from(v: i32) -> Int {
        Int(IntRepr::Small(v.into()))
    }
}

impl fmt::Display for Int {
    /// Decimal, like Python's `str(int)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            IntRepr::Small(v) => write!(f, "{v}"),
            IntRepr::Big {
                negative,
                magnitude,
            } => {
                // Repeated division by 10^19 over base-256 digits; magnitudes are bounded by the
                // reader's bigint limit, so the quadratic cost stays small.
                const BASE: u64 = 10_000_000_000_000_000_000;
                let mut digits = magnitude.clone();
                let mut groups = Vec::new();
                while !digits.is_empty() {
                    let mut rem: u128 = 0;
                    let mut quotient = Vec::with_capacity(digits.len());
                    for &b in &digits {
                        let cur = (rem << 8) | u128::from(b);
                        let q = cur / u128::from(BASE);
                        rem = cur % u128::from(BASE);
                        if !(quotient.is_empty() && q == 0) {
                            quotient.push(q as u8);
                        }
                    }
                    groups.push(rem as u64);
                    digits = quotient;
                }
                if *negative {
                    f.write_str("-")?;
                }
                let mut iter = groups.iter().rev();
                if let Some(first) = iter.next() {
                    write!(f, "{first}")?;
                }
                for g in iter {
                    write!(f, "{g:019}")?;
                }
                Ok(())
            }
        }
    }
}

fn float_eq(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits()
}

fn pairs_eq<K: PartialEq>(a: &[(K, Node)], b: &[(K, Node)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && va == vb)
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        use Node::*;
        match (self, other) {
            (None, None) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Float(a), Float(b)) => float_eq(*a, *b),
            (Str(a), Str(b)) => a == b,
            (Bytes(a), Bytes(b)) | (ByteArray(a), ByteArray(b)) => a == b,
            (List(a), List(b))
            | (Tuple(a), Tuple(b))
            | (Set(a), Set(b))
            | (FrozenSet(a), FrozenSet(b)) => a == b,
            (Dict(a), Dict(b)) => pairs_eq(a, b),
            (Complex(ar, ai), Complex(br, bi)) => float_eq(*ar, *br) && float_eq(*ai, *bi),
            (Tensor(a), Tensor(b)) => a == b,
            (Typed(a), Typed(b)) => a == b,
            (Object(a), Object(b)) => a == b,
            (Global(a), Global(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq for Tensor {
    fn eq(&self, o: &Tensor) -> bool {
        self.dtype == o.dtype
            && self.shape == o.shape
            && self.blob == o.blob
            && self.kind == o.kind
            && self.requires_grad == o.requires_grad
            && pairs_eq(&self.attrs, &o.attrs)
    }
}

impl PartialEq for Typed {
    fn eq(&self, other: &Typed) -> bool {
        use Typed::*;
        match (self, other) {
            (OrderedDict { items: a, attrs: x }, OrderedDict { items: b, attrs: y })
            | (Counter { items: a, attrs: x }, Counter { items: b, attrs: y }) => {
                pairs_eq(a, b) && pairs_eq(x, y)
            }
            (Namespace(a), Namespace(b)) => pairs_eq(a, b),
            (TorchSize(a), TorchSize(b)) => a == b,
            (TorchDtype(a), TorchDtype(b)) | (TorchDevice(a), TorchDevice(b)) => a == b,
            (NumpyScalar { dtype: a, bytes: x }, NumpyScalar { dtype: b, bytes: y }) => {
                a == b && x == y
            }
            (Slice(a), Slice(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq for Object {
    fn eq(&self, o: &Object) -> bool {
        self.module == o.module
            && self.name == o.name
            && self.args == o.args
            && pairs_eq(&self.kwargs, &o.kwargs)
            && self.state == o.state
            && self.list_items == o.list_items
            && pairs_eq(&self.dict_items, &o.dict_items)
    }
}

/// One step of a path from the root to a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PathSegment<'a> {
    /// A dict, OrderedDict or Counter key.
    Key(&'a Node),
    /// A list or tuple index, or a positional argument of an object.
    Index(usize),
    /// An attribute name (Namespace field, tensor or OrderedDict attribute, object keyword).
    Attr(&'a str),
    /// The state of an inert object.
    State,
}

impl fmt::Display for PathSegment<'_> {
    /// The segment as it appears in a dotted name: text keys verbatim, ints in decimal, other
    /// keys in a Python-like rendering.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathSegment::Key(Node::Str(s)) => f.write_str(s),
            PathSegment::Key(Node::Int(i)) => write!(f, "{i}"),
            PathSegment::Key(k) => write_key(f, k),
            PathSegment::Index(i) => write!(f, "{i}"),
            PathSegment::Attr(a) => f.write_str(a),
            PathSegment::State => f.write_str("__state__"),
        }
    }
}

fn write_key(f: &mut fmt::Formatter<'_>, k: &Node) -> fmt::Result {
    match k {
        Node::None => f.write_str("None"),
        Node::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
        Node::Int(i) => write!(f, "{i}"),
        Node::Float(x) => write!(f, "{x:?}"),
        Node::Str(s) => write!(f, "{s:?}"),
        Node::Bytes(b) => write!(f, "b'{}'", hex::encode(b)),
        Node::Tuple(items) | Node::FrozenSet(items) => {
            f.write_str("(")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_key(f, item)?;
            }
            f.write_str(")")
        }
        other => write!(f, "<{}>", other.kind_name()),
    }
}

/// Joins path segments with `.`, the naming `tensorseal inspect` and safetensors export use.
pub fn dotted_path(path: &[PathSegment<'_>]) -> String {
    let mut s = String::new();
    write_dotted_path(&mut s, path);
    s
}

/// [`dotted_path`] appended to `out`, so that one buffer serves a whole listing.
pub fn write_dotted_path(out: &mut String, path: &[PathSegment<'_>]) {
    use fmt::Write;
    for (i, seg) in path.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match seg {
            // The common case, a state dict's text keys, without the formatting machinery.
            PathSegment::Key(Node::Str(k)) => out.push_str(k),
            PathSegment::Attr(a) => out.push_str(a),
            // Writing to a String cannot fail.
            _ => {
                let _ = write!(out, "{seg}");
            }
        }
    }
}

impl Node {
    /// Short name of the node's kind, as used in error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) => "int",
            Node::Float(_) => "float",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::Set(_) => "set",
            Node::FrozenSet(_) => "frozenset",
            Node::ByteArray(_) => "bytearray",
            Node::Complex(..) => "complex",
            Node::Tensor(_) => "tensor",
            Node::Typed(_) => "typed",
            Node::Object(_) => "object",
            Node::Global(_) => "global",
        }
    }

    /// Whether the node may be a dict key or set element (spec §3.3): Python's hashable kinds.
    pub fn is_hashable(&self) -> bool {
        match self {
            Node::List(_) | Node::Dict(_) | Node::Set(_) | Node::ByteArray(_) => false,
            Node::Typed(t) => !matches!(
                **t,
                Typed::OrderedDict { .. } | Typed::Counter { .. } | Typed::Namespace(_)
            ),
            Node::Tuple(items) | Node::FrozenSet(items) => items.iter().all(Node::is_hashable),
            _ => true,
        }
    }

    /// Children of this node with the path segment leading to each.
    pub fn children(&self) -> Vec<(PathSegment<'_>, &Node)> {
        fn attrs(a: &[(String, Node)]) -> impl Iterator<Item = (PathSegment<'_>, &Node)> {
            a.iter().map(|(k, v)| (PathSegment::Attr(k.as_str()), v))
        }
        match self {
            Node::List(items) | Node::Tuple(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (PathSegment::Index(i), n))
                .collect(),
            Node::Set(items) | Node::FrozenSet(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (PathSegment::Index(i), n))
                .collect(),
            Node::Dict(pairs) => pairs
                .iter()
                .map(|(k, v)| (PathSegment::Key(k), v))
                .collect(),
            Node::Tensor(t) => attrs(&t.attrs).collect(),
            Node::Typed(t) => match &**t {
                Typed::OrderedDict { items, attrs: a } | Typed::Counter { items, attrs: a } => {
                    items
                        .iter()
                        .map(|(k, v)| (PathSegment::Key(k), v))
                        .chain(attrs(a))
                        .collect()
                }
                Typed::Namespace(fields) => attrs(fields).collect(),
                Typed::Slice(parts) => parts
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (PathSegment::Index(i), n))
                    .collect(),
                _ => Vec::new(),
            },
            Node::Object(o) => o
                .args
                .iter()
                .enumerate()
                .map(|(i, n)| (PathSegment::Index(i), n))
                .chain(attrs(&o.kwargs))
                .chain(o.state.iter().map(|s| (PathSegment::State, s)))
                .chain(o.dict_items.iter().map(|(k, v)| (PathSegment::Key(k), v)))
                .chain(
                    o.list_items
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (PathSegment::Index(i), n)),
                )
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The children of this node that [`Node::children`] lists, mutable, in the same order.
    pub fn children_mut(&mut self) -> Vec<&mut Node> {
        fn attrs(a: &mut [(String, Node)]) -> impl Iterator<Item = &mut Node> {
            a.iter_mut().map(|(_, v)| v)
        }
        match self {
            Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
                items.iter_mut().collect()
            }
            Node::Dict(pairs) => pairs.iter_mut().map(|(_, v)| v).collect(),
            Node::Tensor(t) => attrs(&mut t.attrs).collect(),
            Node::Typed(t) => match &mut **t {
                Typed::OrderedDict { items, attrs: a } | Typed::Counter { items, attrs: a } => {
                    items.iter_mut().map(|(_, v)| v).chain(attrs(a)).collect()
                }
                Typed::Namespace(fields) => attrs(fields).collect(),
                Typed::Slice(parts) => parts.iter_mut().collect(),
                _ => Vec::new(),
            },
            Node::Object(o) => {
                let o = &mut **o;
                o.args
                    .iter_mut()
                    .chain(attrs(&mut o.kwargs))
                    .chain(o.state.iter_mut())
                    .chain(o.dict_items.iter_mut().map(|(_, v)| v))
                    .chain(o.list_items.iter_mut())
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Calls `f` with every tensor in the tree, mutable, in depth-first document order (an
    /// explicit stack: the tree may be deeper than the native stack allows); stops at the first
    /// error. What moving a subtree's blobs to another file needs.
    pub fn try_for_each_tensor_mut<E>(
        &mut self,
        mut f: impl FnMut(&mut Tensor) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            if let Node::Tensor(t) = node {
                f(t)?;
            }
            let mut children = node.children_mut();
            children.reverse();
            stack.extend(children);
        }
        Ok(())
    }

    /// Every tensor in the tree with its path, in depth-first document order.
    pub fn tensors(&self) -> Vec<(Vec<PathSegment<'_>>, &Tensor)> {
        let mut out = Vec::new();
        self.for_each_tensor(|path, t| out.push((path.to_vec(), t)));
        out
    }

    /// Calls `f` with every tensor in the tree and its path, in depth-first document order,
    /// without copying a path: what listing the names of a large state dict needs.
    pub fn for_each_tensor<'n>(&'n self, mut f: impl FnMut(&[PathSegment<'n>], &'n Tensor)) {
        if let Node::Tensor(t) = self {
            f(&[], t);
        }
        // Explicit stack (the caller's tree may be deeper than the native stack allows) of the
        // children still to visit at each level, and one path, extended on the way down and cut
        // on the way up.
        let mut path: Vec<PathSegment<'n>> = Vec::new();
        let mut stack = vec![self.children().into_iter()];
        while let Some(level) = stack.last_mut() {
            let Some((segment, child)) = level.next() else {
                stack.pop();
                path.pop();
                continue;
            };
            path.push(segment);
            if let Node::Tensor(t) = child {
                f(&path, t);
            }
            let children = child.children();
            if children.is_empty() {
                path.pop();
            } else {
                stack.push(children.into_iter());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_have_one_representation() {
        assert_eq!(Int::from_sign_magnitude(false, &[0, 0, 5]), Int::from(5i64));
        assert_eq!(Int::from_sign_magnitude(true, &[0]), Int::from(0i64));
        let two64 = Int::from_sign_magnitude(false, &[1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(two64.to_i128().is_none());
        let minus_two64 = Int::from_sign_magnitude(true, &[1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(minus_two64.to_i128(), Some(-(1i128 << 64)));
        assert_eq!(two64.to_string(), "18446744073709551616");
        let big = Int::from_sign_magnitude(true, &[0x40; 20]);
        assert_eq!(big.to_sign_magnitude(), (true, vec![0x40; 20]));
    }

    #[test]
    fn twos_complement_matches_python() {
        // (2**70).to_bytes(9, 'little', signed=True) and the negatives Python's pickle writes.
        let p70 = Int::from_le_twos_complement(&[0, 0, 0, 0, 0, 0, 0, 0, 0x40]);
        assert_eq!(p70.to_string(), "1180591620717411303424");
        let m1 = Int::from_le_twos_complement(&[0xff]);
        assert_eq!(m1.to_i64(), Some(-1));
        let m128 = Int::from_le_twos_complement(&[0x80]);
        assert_eq!(m128.to_i64(), Some(-128));
        let m2_100 = Int::from_le_twos_complement(&{
            let mut v = vec![0u8; 13];
            v[12] = 0xf0;
            v
        });
        assert_eq!(m2_100.to_string(), "-1267650600228229401496703205376");
        assert_eq!(Int::from_le_twos_complement(&[]).to_i64(), Some(0));
    }

    #[test]
    fn float_equality_is_bitwise() {
        assert_eq!(Node::Float(f64::NAN), Node::Float(f64::NAN));
        assert_ne!(Node::Float(0.0), Node::Float(-0.0));
    }

    #[test]
    fn tensors_are_listed_with_paths() {
        let t = |b| Node::Tensor(Box::new(Tensor::new(DType::F32, vec![1], Some(b))));
        let tree = Node::Dict(vec![
            (Node::Str("a".into()), t(0)),
            (
                Node::Str("b".into()),
                Node::List(vec![t(1), Node::None, t(2)]),
            ),
            (Node::Int(3i64.into()), t(3)),
        ]);
        let names: Vec<String> = tree.tensors().iter().map(|(p, _)| dotted_path(p)).collect();
        assert_eq!(names, ["a", "b.0", "b.2", "3"]);
        // Nested containers, tensor attributes, and a tensor at the root.
        let mut with_attr = Tensor::new(DType::F32, vec![1], Some(5));
        with_attr.attrs = vec![("inner".into(), Node::List(vec![Node::None, t(6)]))];
        let tree = Node::List(vec![
            Node::Dict(vec![(
                Node::Str("x".into()),
                Node::Tuple(vec![Node::List(vec![t(4)])]),
            )]),
            Node::Tensor(Box::new(with_attr)),
            t(7),
        ]);
        let names: Vec<String> = tree.tensors().iter().map(|(p, _)| dotted_path(p)).collect();
        assert_eq!(names, ["0.x.0.0", "1", "1.inner.1", "2"]);
        let root = t(9);
        assert_eq!(root.tensors().len(), 1);
        assert!(root.tensors()[0].0.is_empty());
    }
}
