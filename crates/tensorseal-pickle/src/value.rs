//! The value graph: an arena of nodes that refer to each other by [`NodeId`].
//!
//! Sharing is explicit: a value the pickle references twice (through the memo or DUP) is one node
//! with two parents, so a tensor used under two names has one identity, and a "billion laughs"
//! pickle stays as small as its input. The graph is acyclic (the interpreter refuses cycles) and
//! its depth is bounded by [`Limits::max_depth`](crate::Limits::max_depth); dropping it is flat.

use std::ops::Range;
use std::sync::Arc;

use crate::dtype::{Dtype, NumpyDtype};
use crate::int::PyInt;
use crate::report::{GlobalName, ScanReport, Verdict};
use crate::storage::{StorageKind, StorageView};

/// Index of a node in its [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

impl NodeId {
    /// The index, for tables keyed by node.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Index of a distinct global in its [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GlobalId(pub(crate) u32);

/// Bytes of a bytes-like value: a range of the input (zero-copy) or owned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ByteData {
    /// `input[range]`.
    Input(Range<usize>),
    /// Bytes that had to be decoded (escapes, `_codecs.encode`, latin-1 strings); shared, so
    /// values built from them (arrays, bytearrays) never copy them again.
    Owned(Arc<[u8]>),
}

impl ByteData {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            ByteData::Input(r) => r.len(),
            ByteData::Owned(b) => b.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a tensor was an `nn.Parameter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorFlavour {
    /// A plain `torch.Tensor`.
    Tensor,
    /// `torch.nn.Parameter`.
    Parameter,
}

/// A storage referenced by a persistent id, resolved by the caller's handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storage {
    pub(crate) key: Arc<str>,
    pub(crate) kind: StorageKind,
    pub(crate) numel: u64,
    pub(crate) nbytes: u64,
    pub(crate) location: Arc<str>,
    pub(crate) view: Option<StorageView>,
}

impl Storage {
    /// The storage key (`data/<key>` in zip files).
    pub fn key(&self) -> &str {
        &self.key
    }
    /// Element type of the storage class.
    pub fn kind(&self) -> StorageKind {
        self.kind
    }
    /// Elements (typed) or bytes (untyped), as the persistent id declares.
    pub fn numel(&self) -> u64 {
        self.numel
    }
    /// Size of the storage record in bytes, as the handler confirmed.
    pub fn nbytes(&self) -> u64 {
        self.nbytes
    }
    /// Device string from the persistent id.
    pub fn location(&self) -> &str {
        &self.location
    }
    /// Legacy view metadata.
    pub fn view(&self) -> Option<&StorageView> {
        self.view.as_ref()
    }
}

/// A dense tensor: where its elements live in a storage, validated against the storage size.
///
/// # Invariants
/// Sizes, strides and the storage offset are non-negative and fit in `u64`; when no size is 0,
/// `storage_offset + Σ (size_i - 1) * stride_i` is inside the storage (in elements of `dtype`,
/// after the legacy view offset), computed with checked arithmetic; `size.len() == stride.len()`;
/// the dtype has a whole-byte item size.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub(crate) storage: NodeId,
    pub(crate) dtype: Dtype,
    pub(crate) storage_offset: u64,
    /// The sizes, then the strides.
    pub(crate) dims: Box<[u64]>,
    pub(crate) requires_grad: bool,
    pub(crate) conj: bool,
    pub(crate) neg: bool,
    pub(crate) flavour: TensorFlavour,
    pub(crate) attributes: Option<NodeId>,
    pub(crate) byte_range: Range<u64>,
}

impl Tensor {
    /// The [`Node::Storage`] node.
    pub fn storage(&self) -> NodeId {
        self.storage
    }
    /// Element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }
    /// Offset of element 0 in the storage (after any legacy view), in elements.
    pub fn storage_offset(&self) -> u64 {
        self.storage_offset
    }
    /// Shape.
    pub fn size(&self) -> &[u64] {
        &self.dims[..self.dims.len() / 2]
    }
    /// Strides in elements (may be 0 for expanded dimensions, not monotonic for transposes).
    pub fn stride(&self) -> &[u64] {
        &self.dims[self.dims.len() / 2..]
    }
    /// `requires_grad`.
    pub fn requires_grad(&self) -> bool {
        self.requires_grad
    }
    /// The data is stored unconjugated and must be conjugated when materialized.
    pub fn conj(&self) -> bool {
        self.conj
    }
    /// The data is stored un-negated and must be negated when materialized.
    pub fn neg(&self) -> bool {
        self.neg
    }
    /// Plain tensor or `nn.Parameter`.
    pub fn flavour(&self) -> TensorFlavour {
        self.flavour
    }
    /// Python attributes set on the tensor (a [`Node::Dict`] with str keys), if any.
    pub fn attributes(&self) -> Option<NodeId> {
        self.attributes
    }
    /// Number of elements (product of the sizes).
    pub fn numel(&self) -> u64 {
        self.size().iter().product()
    }
    /// The bytes of the storage record the view touches, `[first, last + itemsize)`, legacy view
    /// offset included. Empty for tensors with no elements.
    pub fn byte_range(&self) -> Range<u64> {
        self.byte_range.clone()
    }
}

/// How a numpy array was pickled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArraySource {
    /// `_reconstruct` + BUILD state (protocols 0-4, or non-contiguous arrays).
    Reconstruct,
    /// `_frombuffer` (protocol 5).
    FromBuffer,
}

/// A numpy array with a numeric dtype: contiguous data plus element strides into it.
///
/// # Invariants
/// `data.len() == product(shape) * itemsize`; `strides` (in elements, into `data`) describe C
/// order, Fortran order, or a permutation of C order (numpy ≥ 2.3 `order='K'`), so every element
/// of `shape` maps to exactly one element of `data`.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray {
    pub(crate) dtype: NumpyDtype,
    pub(crate) shape: Box<[u64]>,
    pub(crate) strides: Box<[u64]>,
    pub(crate) data: ByteData,
    pub(crate) source: ArraySource,
}

impl NdArray {
    /// Dtype, with byte order (big-endian data must be swapped per element).
    pub fn dtype(&self) -> &NumpyDtype {
        &self.dtype
    }
    /// Shape of the array.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }
    /// Strides in elements into [`NdArray::data`]: element `(i0..ik)` is at
    /// `Σ i_j * strides_j`. C order when strides decrease to 1.
    pub fn strides(&self) -> &[u64] {
        &self.strides
    }
    /// The raw element bytes.
    pub fn data(&self) -> &ByteData {
        &self.data
    }
    /// Which pickling path produced it.
    pub fn source(&self) -> ArraySource {
        self.source
    }
    /// True when the data is already in C order.
    pub fn is_c_contiguous(&self) -> bool {
        let mut expected = 1u64;
        for (&size, &stride) in self.shape.iter().zip(self.strides.iter()).rev() {
            if size > 1 && stride != expected {
                return false;
            }
            expected = expected.saturating_mul(size);
        }
        true
    }
}

/// A numpy scalar (`numpy.float32(1.5)`): dtype and the raw bytes of the value.
#[derive(Clone, Debug, PartialEq)]
pub struct NumpyScalar {
    pub(crate) dtype: NumpyDtype,
    pub(crate) data: ByteData,
}

impl NumpyScalar {
    /// Dtype with byte order.
    pub fn dtype(&self) -> &NumpyDtype {
        &self.dtype
    }
    /// Raw bytes (exactly `itemsize` of them).
    pub fn data(&self) -> &ByteData {
        &self.data
    }
}

/// What kind of allowed-but-unsupported value a [`Node::Unsupported`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnsupportedKind {
    /// A tensor layout with no dense equivalent: quantized, sparse, nested, meta (no data),
    /// wrapper subclass, a tensor subclass, or a legacy `torch.FloatTensor` object.
    TensorLayout,
    /// A tensor whose dtype a converter cannot write (quantized, complex32, packed or bit types).
    TensorDtype,
    /// A numpy array or scalar whose dtype is object, string, void/structured, datetime or a
    /// user type.
    NumpyDtype,
}

/// A value the policy allows but a converter cannot represent; kept so the caller can refuse
/// it with a precise message instead of dropping it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub(crate) kind: UnsupportedKind,
    pub(crate) callee: GlobalId,
    pub(crate) detail: String,
}

impl Unsupported {
    /// The category.
    pub fn kind(&self) -> UnsupportedKind {
        self.kind
    }
    /// The constructor that produced it.
    pub fn callee(&self) -> GlobalId {
        self.callee
    }
    /// A precise description (e.g. "quantized tensor (torch._utils._rebuild_qtensor)").
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// How an inert object record was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `REDUCE`: `callable(*args)`.
    Reduce,
    /// `NEWOBJ`: `cls.__new__(cls, *args)`.
    NewObj,
    /// `NEWOBJ_EX`: `cls.__new__(cls, *args, **kwargs)`.
    NewObjEx,
    /// `OBJ` (protocol 1).
    Obj,
    /// `INST` (protocol 0).
    Inst,
    /// `copyreg._reconstructor(cls, object, None)` (protocols 0-1).
    Reconstructor,
}

/// An inert record of a call the policy does not know (kept only with
/// [`Options::keep_unknown_objects`](crate::Options::keep_unknown_objects)). Nothing ever
/// instantiates it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectRecord {
    pub(crate) callee: NodeId,
    pub(crate) call: CallKind,
    pub(crate) args: NodeId,
    pub(crate) kwargs: Option<NodeId>,
    pub(crate) state: Option<NodeId>,
    pub(crate) list_items: Vec<NodeId>,
    pub(crate) dict_items: Vec<(NodeId, NodeId)>,
}

impl ObjectRecord {
    /// The callable: usually a [`Node::Global`] naming the class or function.
    pub fn callee(&self) -> NodeId {
        self.callee
    }
    /// How it was called.
    pub fn call(&self) -> CallKind {
        self.call
    }
    /// The positional arguments (a [`Node::Tuple`]).
    pub fn args(&self) -> NodeId {
        self.args
    }
    /// Keyword arguments (a [`Node::Dict`]), for NEWOBJ_EX.
    pub fn kwargs(&self) -> Option<NodeId> {
        self.kwargs
    }
    /// The BUILD state, if BUILD was applied.
    pub fn state(&self) -> Option<NodeId> {
        self.state
    }
    /// Items added by APPEND/APPENDS (list subclasses).
    pub fn list_items(&self) -> &[NodeId] {
        &self.list_items
    }
    /// Items set by SETITEM/SETITEMS (dict subclasses), in order.
    pub fn dict_items(&self) -> &[(NodeId, NodeId)] {
        &self.dict_items
    }
}

/// An `OrderedDict` (`collections.OrderedDict`): items, plus attributes set by BUILD (a
/// `state_dict()` carries `_metadata` there). BUILD never adds items.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OrderedDict {
    pub(crate) items: Vec<(NodeId, NodeId)>,
    pub(crate) attributes: Vec<(NodeId, NodeId)>,
}

impl OrderedDict {
    /// Items in insertion order.
    pub fn items(&self) -> &[(NodeId, NodeId)] {
        &self.items
    }
    /// Instance attributes (str keys), e.g. `_metadata`.
    pub fn attributes(&self) -> &[(NodeId, NodeId)] {
        &self.attributes
    }
}

/// One value.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Node {
    /// `None`.
    None,
    /// `True`/`False`.
    Bool(bool),
    /// An int of any size.
    Int(PyInt),
    /// A float, bit-exact (NaN payloads and -0.0 kept).
    Float(f64),
    /// `complex(real, imag)`.
    Complex(f64, f64),
    /// A str (always valid UTF-8).
    Str(Arc<str>),
    /// `bytes`.
    Bytes(ByteData),
    /// `bytearray`.
    ByteArray(ByteData),
    /// A list.
    List(Vec<NodeId>),
    /// A tuple.
    Tuple(Vec<NodeId>),
    /// A dict: pairs in insertion order, keys unique under Python equality.
    Dict(Vec<(NodeId, NodeId)>),
    /// A set, elements unique, in the order the pickle added them.
    Set(Vec<NodeId>),
    /// A frozenset.
    FrozenSet(Vec<NodeId>),
    /// `collections.OrderedDict`.
    OrderedDict(Box<OrderedDict>),
    /// `collections.Counter`: its items.
    Counter(Vec<(NodeId, NodeId)>),
    /// `argparse.Namespace`: its attributes (str keys).
    Namespace(Vec<(NodeId, NodeId)>),
    /// `slice(start, stop, step)`.
    Slice(Box<[NodeId; 3]>),
    /// `torch.Size`.
    TorchSize(Box<[i64]>),
    /// A torch dtype used as a value.
    TorchDtype(Dtype),
    /// `torch.device`, as a string like `cuda:0` or `cpu`.
    TorchDevice(Box<str>),
    /// A torch layout (`torch.sparse_coo`, ...), from `_get_layout`.
    TorchLayout(Box<str>),
    /// A torch quantization scheme (`per_tensor_affine`, ...).
    TorchQScheme(&'static str),
    /// A dense tensor.
    Tensor(Box<Tensor>),
    /// A storage reached through a persistent id.
    Storage(Box<Storage>),
    /// A numpy array.
    Array(Box<NdArray>),
    /// A numpy dtype used as a value.
    NumpyDtype(Box<NumpyDtype>),
    /// A numpy scalar.
    NumpyScalar(Box<NumpyScalar>),
    /// Allowed by the policy, not representable by a converter (quantized, sparse, ...).
    Unsupported(Box<Unsupported>),
    /// A class or function used as a value (not called).
    Global(GlobalId),
    /// An inert record of an unknown call.
    Object(Box<ObjectRecord>),
    /// Scan mode only: the result of a refused call. Never in a graph [`load`](crate::load)
    /// returns.
    Refused,
    /// Internal: a `_reconstruct` ndarray waiting for its BUILD. Never in a returned graph.
    ArrayShell,
}

impl Node {
    /// A short type name for messages (`list`, `dict`, `tensor`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::None => "None",
            Node::Bool(_) => "bool",
            Node::Int(_) => "int",
            Node::Float(_) => "float",
            Node::Complex(..) => "complex",
            Node::Str(_) => "str",
            Node::Bytes(_) => "bytes",
            Node::ByteArray(_) => "bytearray",
            Node::List(_) => "list",
            Node::Tuple(_) => "tuple",
            Node::Dict(_) => "dict",
            Node::Set(_) => "set",
            Node::FrozenSet(_) => "frozenset",
            Node::OrderedDict(_) => "OrderedDict",
            Node::Counter(_) => "Counter",
            Node::Namespace(_) => "Namespace",
            Node::Slice(_) => "slice",
            Node::TorchSize(_) => "torch.Size",
            Node::TorchDtype(_) => "torch.dtype",
            Node::TorchDevice(_) => "torch.device",
            Node::TorchLayout(_) => "torch.layout",
            Node::TorchQScheme(_) => "torch.qscheme",
            Node::Tensor(_) => "tensor",
            Node::Storage(_) => "storage",
            Node::Array(_) => "numpy.ndarray",
            Node::NumpyDtype(_) => "numpy.dtype",
            Node::NumpyScalar(_) => "numpy scalar",
            Node::Unsupported(_) => "unsupported value",
            Node::Global(_) => "global",
            Node::Object(_) => "object",
            Node::Refused => "refused value",
            Node::ArrayShell => "ndarray without state",
        }
    }

    /// Calls `f` on every node this one refers to.
    pub fn for_each_child(&self, mut f: impl FnMut(NodeId)) {
        match self {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => {
                v.iter().copied().for_each(f)
            }
            Node::Dict(p) | Node::Counter(p) | Node::Namespace(p) => {
                p.iter().for_each(|&(k, v)| {
                    f(k);
                    f(v)
                })
            }
            Node::OrderedDict(o) => {
                o.items
                    .iter()
                    .chain(o.attributes.iter())
                    .for_each(|&(k, v)| {
                        f(k);
                        f(v)
                    })
            }
            Node::Slice(s) => s.iter().copied().for_each(f),
            Node::Tensor(t) => {
                f(t.storage);
                if let Some(a) = t.attributes {
                    f(a)
                }
            }
            Node::Object(o) => {
                f(o.callee);
                f(o.args);
                o.kwargs.into_iter().chain(o.state).for_each(&mut f);
                o.list_items.iter().copied().for_each(&mut f);
                o.dict_items.iter().for_each(|&(k, v)| {
                    f(k);
                    f(v)
                });
            }
            _ => {}
        }
    }
}

/// One distinct global of a pickle and the policy's verdict on it.
#[derive(Clone, Debug)]
pub struct GlobalRef {
    pub(crate) name: GlobalName,
    pub(crate) verdict: Verdict,
    pub(crate) reason: &'static str,
    pub(crate) known: Option<crate::policy::Known>,
}

impl GlobalRef {
    /// Module and qualified name (after Python 2 remapping).
    pub fn name(&self) -> &GlobalName {
        &self.name
    }
    /// The policy's verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
    /// Why.
    pub fn reason(&self) -> &'static str {
        self.reason
    }
    /// The element type when this is a torch storage class (`torch.FloatStorage`,
    /// `torch.storage.UntypedStorage`, ...): what a tar checkpoint's `storages` records name.
    pub fn storage_kind(&self) -> Option<crate::storage::StorageKind> {
        match self.known {
            Some(crate::policy::Known::StorageClass(Some(d))) => {
                Some(crate::storage::StorageKind::Typed(d))
            }
            Some(crate::policy::Known::StorageClass(None)) => {
                Some(crate::storage::StorageKind::Untyped)
            }
            _ => None,
        }
    }
    /// Whether this is a torch tensor class (`torch.Tensor`, `torch.FloatTensor`, ...): what a
    /// tar checkpoint's `tensors` records name.
    pub fn is_tensor_class(&self) -> bool {
        matches!(
            self.known,
            Some(crate::policy::Known::TensorClass | crate::policy::Known::LegacyTensorClass)
        )
    }
}

/// The result of interpreting one pickle: the value graph, its root, where the pickle ended, and
/// the scan report.
#[derive(Debug)]
pub struct Graph<'a> {
    pub(crate) input: &'a [u8],
    pub(crate) nodes: Vec<Node>,
    pub(crate) offsets: Vec<usize>,
    pub(crate) globals: Vec<GlobalRef>,
    pub(crate) root: NodeId,
    pub(crate) end: usize,
    pub(crate) report: ScanReport,
    pub(crate) tree_size: u64,
}

impl<'a> Graph<'a> {
    /// The value the pickle returns.
    pub fn root(&self) -> NodeId {
        self.root
    }

    /// A node.
    ///
    /// # Panics
    /// If `id` is not from this graph.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// Number of nodes (node ids are `0..len`).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the graph has no nodes (never, for a loaded pickle).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Offset of the opcode that created a node.
    pub fn offset(&self, id: NodeId) -> usize {
        self.offsets[id.index()]
    }

    /// A global.
    pub fn global(&self, id: GlobalId) -> &GlobalRef {
        &self.globals[id.0 as usize]
    }

    /// The bytes of a bytes-like value.
    pub fn bytes<'g>(&'g self, data: &'g ByteData) -> &'g [u8] {
        match data {
            ByteData::Input(r) => &self.input[r.clone()],
            ByteData::Owned(b) => b,
        }
    }

    /// The input buffer the graph borrows from.
    pub fn input(&self) -> &'a [u8] {
        self.input
    }

    /// Offset just past STOP: where the next pickle of a multi-pickle file starts.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The scan report (every global and call, all allowed or opted into).
    pub fn report(&self) -> &ScanReport {
        &self.report
    }

    /// Nodes the graph would have written out as a tree (shared values counted once per
    /// reference), saturating; bounded by `Limits::max_tree_nodes`.
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }

    /// Every node id with its node, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (NodeId(i as u32), n))
    }

    /// Every tensor node, in creation order (a tensor referenced twice appears once).
    pub fn tensors(&self) -> impl Iterator<Item = (NodeId, &Tensor)> {
        self.iter().filter_map(|(id, n)| match n {
            Node::Tensor(t) => Some((id, &**t)),
            _ => None,
        })
    }

    /// The str of a [`Node::Str`] node.
    pub fn as_str(&self, id: NodeId) -> Option<&str> {
        match self.node(id) {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
}
