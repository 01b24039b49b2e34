//! Known constructors: each validates its arguments strictly and produces a typed value.

use std::sync::Arc;

use crate::dtype::{ByteOrder, NumpyDtype, NumpyElement};
use crate::error::PickleError;
use crate::int::PyInt;
use crate::keyed::TensorTable;
use crate::policy::Known;
use crate::report::{FindingKind, GlobalName, Verdict};
use crate::storage::{StorageKind, StorageRequest, StorageView};
use crate::value::{
    ArraySource, ByteData, CallKind, GlobalId, NdArray, Node, NodeId, NumpyScalar, Storage, Tensor,
    TensorFlavour, Unsupported, UnsupportedKind,
};
use crate::vm::{Machine, Result, Singleton, StorageEntry};

const LAYOUTS: &[&str] = &[
    "torch.strided",
    "torch.sparse_coo",
    "torch.sparse_csr",
    "torch.sparse_csc",
    "torch.sparse_bsr",
    "torch.sparse_bsc",
    "torch._mkldnn",
    "torch.jagged",
];

/// Encodes a str as latin-1 (`None` if a code point is above U+00FF). ASCII bytes are copied
/// as they are; U+0080..U+00FF are the two-byte sequences starting 0xC2/0xC3.
fn latin1(text: &str) -> Option<Box<[u8]>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let lead = usize::from(b >> 7);
        if lead == 1 && b & 0xfe != 0xc2 {
            return None;
        }
        // Branch-free on the (unpredictable) ASCII / two-byte choice: 110000xx 10xxxxxx.
        let next = bytes.get(i + 1).copied().unwrap_or(0);
        let two = ((b & 0x03) << 6) | (next & 0x3f);
        out.push(if lead == 1 { two } else { b });
        i += 1 + lead;
    }
    Some(out.into_boxed_slice())
}

/// What a tensor rebuild needs from its storage.
struct StorageFacts {
    node: NodeId,
    kind: StorageKind,
    nbytes: u64,
    view: Option<(u64, u64)>,
}

/// Why a tensor view does not fit its storage.
enum ViewError {
    Overflow,
    Outside { end: u64, available: u64 },
}

/// The byte range of the storage record a view of `size`/`stride` elements at `offset` touches:
/// inside the legacy view of the storage when there is one, else inside the record.
fn view_range(
    storage: &StorageFacts,
    offset: u64,
    size: &[u64],
    stride: &[u64],
    itemsize: u64,
) -> std::result::Result<std::ops::Range<u64>, ViewError> {
    let overflow = || ViewError::Overflow;
    let unit = storage.kind.unit_size().unwrap_or(1);
    let (base, available) = match storage.view {
        Some((offset, size)) => (
            offset.checked_mul(unit).ok_or_else(overflow)?,
            size.checked_mul(unit).ok_or_else(overflow)?,
        ),
        None => (0, storage.nbytes),
    };
    let first = offset.checked_mul(itemsize).ok_or_else(overflow)?;
    if size.contains(&0) {
        let at = base
            .checked_add(first.min(available))
            .ok_or_else(overflow)?;
        return Ok(at..at);
    }
    let mut last = offset;
    for (&s, &st) in size.iter().zip(stride) {
        last = (s - 1)
            .checked_mul(st)
            .and_then(|x| last.checked_add(x))
            .ok_or_else(overflow)?;
    }
    let end = last
        .checked_add(1)
        .and_then(|x| x.checked_mul(itemsize))
        .ok_or_else(overflow)?;
    if end > available {
        return Err(ViewError::Outside { end, available });
    }
    Ok(
        base.checked_add(first).ok_or_else(overflow)?
            ..base.checked_add(end).ok_or_else(overflow)?,
    )
}

/// Which tensor rebuild function.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rebuild {
    V1,
    V2,
    V3,
}

impl Machine<'_, '_> {
    // ----- argument helpers ------------------------------------------------------------------

    /// The items of a tuple or list, copied out when there are at most `max` of them.
    fn items(&self, id: NodeId, max: usize) -> Option<Vec<NodeId>> {
        match self.node(id) {
            Node::Tuple(v) | Node::List(v) if v.len() <= max => Some(v.clone()),
            _ => None,
        }
    }

    /// Charges a copy of `items` node references (from a memoized container into a new one)
    /// to the materialization budget, so reusing one big container many times stays linear.
    fn charge_copy(&mut self, items: usize) -> Result<()> {
        self.materialize((items as u64).saturating_mul(16))
    }

    /// The items of an argument tuple, copied out (no known constructor takes more than 8).
    fn small_args(&self, id: NodeId) -> Option<([NodeId; 8], usize)> {
        let mut buf = [NodeId(0); 8];
        match self.node(id) {
            Node::Tuple(v) if v.len() <= 8 => {
                buf[..v.len()].copy_from_slice(v);
                Some((buf, v.len()))
            }
            Node::Tuple(_) => None,
            _ => Some((buf, 0)),
        }
    }

    fn int_u64(&self, id: NodeId) -> Option<u64> {
        match self.node(id) {
            Node::Int(PyInt::Small(v)) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    fn int_i64(&self, id: NodeId) -> Option<i64> {
        match self.node(id) {
            Node::Int(PyInt::Small(v)) => Some(*v),
            _ => None,
        }
    }

    fn boolean(&self, id: NodeId) -> Option<bool> {
        match self.node(id) {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn string(&self, id: NodeId) -> Option<&str> {
        match self.node(id) {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Bytes of a bytes value, or of a str through latin-1 (Python 2 data loaded as text).
    fn byte_data(&mut self, id: NodeId) -> Result<Option<ByteData>> {
        if let Some(raw) = self.py2_raw.get(&id.0) {
            // A Python 2 str: its bytes as written, whatever the decoding.
            return Ok(Some(raw.clone()));
        }
        Ok(match self.node(id) {
            Node::Bytes(d) | Node::ByteArray(d) => Some(d.clone()),
            Node::Str(s) => {
                if s.chars().any(|c| u32::from(c) > 255) {
                    return Ok(None);
                }
                let bytes: Arc<[u8]> = s.chars().map(|c| u32::from(c) as u8).collect();
                self.materialize(bytes.len() as u64)?;
                Some(ByteData::Owned(bytes))
            }
            _ => None,
        })
    }

    /// Appends a tuple (or torch.Size or list) of non-negative ints to `out`; returns how many.
    fn push_dims(&self, id: NodeId, out: &mut Vec<u64>) -> Option<usize> {
        let max = self.limits.max_rank;
        match self.node(id) {
            Node::TorchSize(d) if d.len() > max => None,
            Node::Tuple(v) | Node::List(v) if v.len() > max => None,
            Node::TorchSize(d) => {
                out.reserve(2 * d.len());
                for &v in d.iter() {
                    out.push(u64::try_from(v).ok()?);
                }
                Some(d.len())
            }
            Node::Tuple(v) | Node::List(v) => {
                out.reserve(2 * v.len());
                for &x in v {
                    out.push(self.int_u64(x)?);
                }
                Some(v.len())
            }
            _ => None,
        }
    }

    /// A tuple (or torch.Size or list) of non-negative ints.
    fn dims(&self, id: NodeId) -> Option<Vec<u64>> {
        let max = self.limits.max_rank;
        match self.node(id) {
            Node::TorchSize(d) if d.len() > max => None,
            Node::Tuple(v) | Node::List(v) if v.len() > max => None,
            Node::TorchSize(d) => d.iter().map(|&v| u64::try_from(v).ok()).collect(),
            Node::Tuple(v) | Node::List(v) => v.iter().map(|&x| self.int_u64(x)).collect(),
            _ => None,
        }
    }

    pub(crate) fn bad(&self, gid: GlobalId, reason: impl Into<String>) -> PickleError {
        PickleError::BadArguments {
            offset: self.op_offset,
            opcode: self.op,
            callee: self.global_name(gid).to_string(),
            reason: reason.into(),
        }
    }

    fn arity(&self, gid: GlobalId, args: &[NodeId], allowed: &[usize]) -> Result<()> {
        if allowed.contains(&args.len()) {
            Ok(())
        } else {
            Err(self.bad(
                gid,
                format!("takes {allowed:?} arguments, got {}", args.len()),
            ))
        }
    }

    fn unsupported(&mut self, kind: UnsupportedKind, gid: GlobalId, what: &str) -> Result<NodeId> {
        let detail = format!("{what} ({})", self.global_name(gid));
        self.new_node(Node::Unsupported(Box::new(Unsupported {
            kind,
            callee: gid,
            detail,
        })))
    }

    /// A propagating non-value (refused in scan mode, or unsupported) among the arguments.
    fn passthrough(&self, id: NodeId) -> bool {
        matches!(self.node(id), Node::Refused | Node::Unsupported(_))
    }

    // ----- dispatch --------------------------------------------------------------------------

    pub(crate) fn known_call(
        &mut self,
        known: Known,
        gid: GlobalId,
        args_node: NodeId,
        kwargs: Option<NodeId>,
        call: CallKind,
    ) -> Result<NodeId> {
        let Some((buf, len)) = self.small_args(args_node) else {
            return Err(self.bad(gid, "too many arguments"));
        };
        let args = &buf[..len];
        let is_class_call = matches!(
            call,
            CallKind::NewObj | CallKind::NewObjEx | CallKind::Reconstructor
        );
        if let Some(kw) = kwargs
            && !matches!(self.node(kw), Node::Dict(p) if p.is_empty())
            && known != Known::Namespace
        {
            return Err(self.bad(gid, "keyword arguments are not accepted"));
        }
        let class = matches!(
            known,
            Known::OrderedDict
                | Known::Counter
                | Known::Namespace
                | Known::Set
                | Known::FrozenSet
                | Known::Complex
                | Known::Slice
                | Known::ByteArray
                | Known::Bytes
                | Known::TorchSize
                | Known::TorchDevice
                | Known::TensorClass
                | Known::ParameterClass
                | Known::LegacyTensorClass
                | Known::NumpyNdarray
                | Known::NumpyDtype
        );
        if is_class_call && !class {
            return Err(self.bad(gid, "is not a class: NEWOBJ does not apply"));
        }
        match known {
            Known::RebuildTensor => self.rebuild_tensor(gid, args, Rebuild::V1),
            Known::RebuildTensorV2 => self.rebuild_tensor(gid, args, Rebuild::V2),
            Known::RebuildTensorV3 => self.rebuild_tensor(gid, args, Rebuild::V3),
            Known::RebuildParameter => {
                self.arity(gid, args, &[3])?;
                self.rebuild_parameter(gid, args[0], args[1], args[2], None)
            }
            Known::RebuildParameterWithState => {
                self.arity(gid, args, &[4])?;
                self.rebuild_parameter(gid, args[0], args[1], args[2], Some(args[3]))
            }
            Known::RebuildFromTypeV2 | Known::RebuildFromType => self.rebuild_from_type(gid, args),
            Known::RebuildDeviceTensorFromCpuTensor => {
                self.arity(gid, args, &[4])?;
                if self.passthrough(args[0]) {
                    return Ok(args[0]);
                }
                let Node::Tensor(t) = self.node(args[0]) else {
                    return Err(self.bad(gid, "data must be a tensor"));
                };
                let mut t = (**t).clone();
                match self.node(args[1]) {
                    Node::TorchDtype(d) if *d == t.dtype => {}
                    _ => return Err(self.bad(gid, "dtype must be the data's torch dtype")),
                }
                self.string(args[2])
                    .ok_or_else(|| self.bad(gid, "device must be a str"))?;
                t.requires_grad = self
                    .boolean(args[3])
                    .ok_or_else(|| self.bad(gid, "requires_grad must be a bool"))?;
                self.new_tensor(t)
            }
            Known::UnsupportedRebuild(what) => {
                self.unsupported(UnsupportedKind::TensorLayout, gid, what)
            }
            Known::TensorClass | Known::ParameterClass | Known::LegacyTensorClass => self
                .unsupported(
                    UnsupportedKind::TensorLayout,
                    gid,
                    "tensor object built by instantiating a tensor class (pre-0.4 legacy form)",
                ),
            Known::StorageClass(_) => {
                Err(self.bad(gid, "storage classes are only valid inside persistent ids"))
            }
            Known::Dtype(_) | Known::QScheme(_) => Err(self.bad(gid, "is a value, not callable")),
            Known::Object => Err(self.bad(
                gid,
                "builtins.object is only accepted as copyreg._reconstructor's base",
            )),
            Known::TorchSize => {
                self.arity(gid, args, &[0, 1])?;
                let dims: Vec<i64> = match args.first() {
                    None => Vec::new(),
                    Some(&a) => {
                        let items = self.items(a, self.limits.max_rank).ok_or_else(|| {
                            self.bad(gid, "argument must be a tuple of at most max_rank ints")
                        })?;
                        items
                            .iter()
                            .map(|&x| self.int_i64(x))
                            .collect::<Option<_>>()
                            .ok_or_else(|| self.bad(gid, "argument must be a tuple of ints"))?
                    }
                };
                self.limit("max_rank", dims.len() as u64, self.limits.max_rank as u64)?;
                self.new_node(Node::TorchSize(dims.into()))
            }
            Known::TorchDevice => self.torch_device(gid, args),
            Known::GetLayout => {
                self.arity(gid, args, &[1])?;
                let name = self
                    .string(args[0])
                    .filter(|n| LAYOUTS.contains(n))
                    .ok_or_else(|| self.bad(gid, "argument must name a torch layout"))?
                    .to_owned();
                self.new_node(Node::TorchLayout(name.into()))
            }
            Known::OrderedDict => {
                self.arity(gid, args, &[0, 1])?;
                let od = self.new_node(Node::OrderedDict(Box::default()))?;
                if let Some(&src) = args.first() {
                    self.fill_mapping(gid, od, src)?;
                }
                Ok(od)
            }
            Known::Counter => {
                self.arity(gid, args, &[0, 1])?;
                let c = self.new_node(Node::Counter(Vec::new()))?;
                if let Some(&src) = args.first() {
                    self.fill_mapping(gid, c, src)?;
                }
                Ok(c)
            }
            Known::Namespace => {
                if !args.is_empty() {
                    return Err(self.bad(gid, "takes keyword arguments only"));
                }
                let ns = self.new_node(Node::Namespace(Vec::new()))?;
                if let Some(kw) = kwargs {
                    let pairs = match self.node(kw) {
                        Node::Dict(p) => p.clone(),
                        _ => Vec::new(),
                    };
                    self.set_attributes(gid, ns, &pairs)?;
                }
                Ok(ns)
            }
            Known::CodecsEncode => {
                self.arity(gid, args, &[2])?;
                match self.string(args[1]) {
                    Some("latin1" | "latin-1") => {}
                    _ => return Err(self.bad(gid, "only the 'latin1' encoding is accepted")),
                }
                let text = self
                    .string(args[0])
                    .ok_or_else(|| self.bad(gid, "first argument must be a str"))?;
                let bytes = latin1(text)
                    .ok_or_else(|| self.bad(gid, "str has code points above U+00FF"))?;
                self.materialize(bytes.len() as u64)?;
                self.new_node(Node::Bytes(ByteData::Owned(bytes.into())))
            }
            Known::Set | Known::FrozenSet => {
                self.arity(gid, args, &[0, 1])?;
                if let Some(Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v)) =
                    args.first().map(|&a| self.node(a))
                {
                    let len = v.len();
                    self.charge_copy(len)?;
                }
                let items = match args.first() {
                    None => Vec::new(),
                    Some(&a) => match self.node(a) {
                        Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => {
                            v.clone()
                        }
                        _ => return Err(self.bad(gid, "argument must be a list, tuple or set")),
                    },
                };
                self.new_set_from(known == Known::FrozenSet, &items)
            }
            Known::Complex => {
                self.arity(gid, args, &[0, 1, 2])?;
                let mut parts = [0.0f64; 2];
                for (i, &a) in args.iter().enumerate() {
                    parts[i] = match self.node(a) {
                        Node::Float(f) => *f,
                        Node::Bool(b) => f64::from(u8::from(*b)),
                        Node::Int(v) => v
                            .to_f64()
                            .ok_or_else(|| self.bad(gid, "int argument too large"))?,
                        _ => return Err(self.bad(gid, "arguments must be numbers")),
                    };
                }
                self.new_node(Node::Complex(parts[0], parts[1]))
            }
            Known::Slice => {
                self.arity(gid, args, &[1, 2, 3])?;
                let none = self.singleton(Singleton::None)?;
                let parts = match args.len() {
                    1 => [none, args[0], none],
                    2 => [args[0], args[1], none],
                    _ => [args[0], args[1], args[2]],
                };
                self.new_node(Node::Slice(Box::new(parts)))
            }
            Known::ByteArray => {
                self.arity(gid, args, &[0, 1, 2])?;
                let data = match args.len() {
                    0 => ByteData::Owned(Arc::new([])),
                    1 => match self.node(args[0]) {
                        Node::Bytes(d) | Node::ByteArray(d) => d.clone(),
                        _ => return Err(self.bad(gid, "argument must be bytes")),
                    },
                    _ => {
                        match self.string(args[1]) {
                            Some("latin1" | "latin-1") => {}
                            _ => {
                                return Err(
                                    self.bad(gid, "only the 'latin-1' encoding is accepted")
                                );
                            }
                        }
                        if self.string(args[0]).is_none() {
                            return Err(self.bad(gid, "first argument must be a str"));
                        }
                        self.byte_data(args[0])?
                            .ok_or_else(|| self.bad(gid, "str has code points above U+00FF"))?
                    }
                };
                self.new_node(Node::ByteArray(data))
            }
            Known::Bytes => {
                self.arity(gid, args, &[0])?;
                self.new_node(Node::Bytes(ByteData::Owned(Arc::new([]))))
            }
            Known::Reconstructor => self.reconstructor(gid, args),
            Known::NewObjFunction => {
                if args.is_empty() {
                    return Err(self.bad(gid, "needs a class"));
                }
                let rest = self.new_node(Node::Tuple(args[1..].to_vec()))?;
                self.class_call(args[0], rest, None, CallKind::NewObj)
            }
            Known::NewObjExFunction => {
                self.arity(gid, args, &[3])?;
                if !matches!(self.node(args[2]), Node::Dict(_)) {
                    return Err(self.bad(gid, "kwargs must be a dict"));
                }
                self.class_call(args[0], args[1], Some(args[2]), CallKind::NewObjEx)
            }
            Known::NumpyReconstruct => {
                self.arity(gid, args, &[3])?;
                match self.node(args[0]) {
                    Node::Global(g) if self.global_ref(*g).known == Some(Known::NumpyNdarray) => {}
                    Node::Refused => return Ok(args[0]),
                    Node::Global(g) => {
                        let g = *g;
                        return self.unsupported(
                            UnsupportedKind::NumpyDtype,
                            g,
                            "ndarray subclass (masked array, matrix, ...)",
                        );
                    }
                    _ => return Err(self.bad(gid, "first argument must be numpy.ndarray")),
                }
                if !matches!(self.node(args[1]), Node::Tuple(_) | Node::List(_)) {
                    return Err(self.bad(gid, "shape argument must be a tuple"));
                }
                self.new_node(Node::ArrayShell)
            }
            Known::NumpyNdarray => Err(self.bad(gid, "ndarrays are built by _reconstruct")),
            Known::NumpyDtype => {
                self.arity(gid, args, &[1, 2, 3])?;
                let type_string = match self.node(args[0]) {
                    Node::Str(s) => s.to_string(),
                    Node::Bytes(d) => {
                        let d = d.clone();
                        String::from_utf8_lossy(self.bytes_of(&d)).into_owned()
                    }
                    _ => return Err(self.bad(gid, "type must be a type string")),
                };
                for &flag in &args[1..] {
                    if self.boolean(flag).is_none() && self.int_i64(flag).is_none() {
                        return Err(self.bad(gid, "align and copy must be bools"));
                    }
                }
                let dtype = NumpyDtype::from_type_string(&type_string).ok_or_else(|| {
                    self.bad(gid, format!("unknown numpy type string {type_string:?}"))
                })?;
                self.new_node(Node::NumpyDtype(Box::new(dtype)))
            }
            Known::NumpyScalar => self.numpy_scalar(gid, args),
            Known::NumpyFromBuffer => self.numpy_frombuffer(gid, args),
        }
    }

    pub(crate) fn bytes_of<'d>(&'d self, data: &'d ByteData) -> &'d [u8] {
        match data {
            ByteData::Input(r) => &self.input[r.clone()],
            ByteData::Owned(b) => b,
        }
    }

    /// Calls a class given as a value (from `copyreg.__newobj__` or `_reconstructor`).
    fn class_call(
        &mut self,
        class: NodeId,
        args: NodeId,
        kwargs: Option<NodeId>,
        call: CallKind,
    ) -> Result<NodeId> {
        let gid = match self.node(class) {
            Node::Global(g) => *g,
            Node::Refused => return Ok(class),
            _ => return Err(self.mismatch("a class", class)),
        };
        if !matches!(self.node(args), Node::Tuple(_)) {
            return Err(self.mismatch("an argument tuple", args));
        }
        let g = self.global_ref(gid).clone();
        self.finding(FindingKind::Call(g.name.clone()), g.verdict, g.reason);
        match (g.verdict, g.known) {
            (Verdict::Allowed, Some(k)) => self.known_call(k, gid, args, kwargs, call),
            (Verdict::Unsafe, _) if self.scan => self.new_node(Node::Refused),
            (Verdict::Unsafe, _) => {
                Err(self.refused(Verdict::Unsafe, format!("call of unsafe global {}", g.name)))
            }
            _ => self.unknown_call(class, call, args, kwargs),
        }
    }

    /// `copyreg._reconstructor(cls, base, state)`: protocol 0/1 objects.
    fn reconstructor(&mut self, gid: GlobalId, args: &[NodeId]) -> Result<NodeId> {
        self.arity(gid, args, &[3])?;
        match self.node(args[1]) {
            Node::Global(b) if self.global_ref(*b).known == Some(Known::Object) => {
                if !matches!(self.node(args[2]), Node::None) {
                    return Err(self.bad(gid, "state must be None when the base is object"));
                }
                let empty = self.singleton(Singleton::EmptyTuple)?;
                self.class_call(args[0], empty, None, CallKind::Reconstructor)
            }
            Node::Global(_) | Node::Refused => {
                // A subclass of a builtin type (`dict`, `list`, ...): only ever an unknown class.
                let class = args[0];
                if let Node::Global(c) = self.node(class) {
                    let g = self.global_ref(*c).clone();
                    self.finding(FindingKind::Call(g.name.clone()), g.verdict, g.reason);
                    if g.verdict == Verdict::Unsafe && !self.scan {
                        return Err(self.refused(
                            Verdict::Unsafe,
                            format!("call of unsafe global {}", g.name),
                        ));
                    }
                    if g.verdict == Verdict::Allowed {
                        return Err(self.bad(gid, "known classes are only rebuilt on object"));
                    }
                }
                let rest = self.new_node(Node::Tuple(args[1..].to_vec()))?;
                self.unknown_call(class, CallKind::Reconstructor, rest, None)
            }
            _ => Err(self.bad(gid, "base must be a class")),
        }
    }

    fn fill_mapping(&mut self, gid: GlobalId, target: NodeId, src: NodeId) -> Result<()> {
        let len = match self.node(src) {
            Node::Dict(p) | Node::Counter(p) => p.len(),
            Node::OrderedDict(o) => o.items.len(),
            Node::List(v) | Node::Tuple(v) => v.len(),
            _ => 0,
        };
        self.charge_copy(len)?;
        let pairs: Vec<(NodeId, NodeId)> = match self.node(src) {
            Node::Dict(p) | Node::Counter(p) => p.clone(),
            Node::OrderedDict(o) => o.items.clone(),
            Node::List(v) | Node::Tuple(v) => {
                let v = v.clone();
                let mut pairs = Vec::with_capacity(v.len());
                for item in v {
                    match self.node(item) {
                        Node::Tuple(kv) | Node::List(kv) if kv.len() == 2 => {
                            pairs.push((kv[0], kv[1]))
                        }
                        _ => return Err(self.bad(gid, "items must be (key, value) pairs")),
                    }
                }
                pairs
            }
            _ => return Err(self.bad(gid, "argument must be a mapping or a list of pairs")),
        };
        for (k, v) in pairs {
            self.map_insert(target, 0, k, v)?;
        }
        Ok(())
    }

    /// Instance attributes from a BUILD state or kwargs: str keys only.
    fn set_attributes(
        &mut self,
        gid: GlobalId,
        target: NodeId,
        pairs: &[(NodeId, NodeId)],
    ) -> Result<()> {
        for &(k, v) in pairs {
            if self.string(k).is_none() {
                return Err(self.bad(gid, "attribute names must be str"));
            }
            self.map_insert(target, 1, k, v)?;
        }
        Ok(())
    }

    /// The attribute pairs of a BUILD state: a dict, or `(dict | None, slots dict | None)`.
    fn state_pairs(&mut self, gid: GlobalId, state: NodeId) -> Result<Vec<(NodeId, NodeId)>> {
        let len = match self.node(state) {
            Node::Dict(p) => p.len(),
            Node::Tuple(v) => v
                .iter()
                .map(|&part| match self.node(part) {
                    Node::Dict(p) => p.len(),
                    _ => 0,
                })
                .sum(),
            _ => 0,
        };
        self.charge_copy(len)?;
        match self.node(state) {
            Node::Dict(p) => Ok(p.clone()),
            Node::None => Ok(Vec::new()),
            Node::Tuple(v) if v.len() == 2 => {
                let mut out = Vec::new();
                for &part in v {
                    match self.node(part) {
                        Node::Dict(p) => out.extend(p.iter().copied()),
                        Node::None => {}
                        _ => return Err(self.bad(gid, "state must be a dict or (dict, slots)")),
                    }
                }
                Ok(out)
            }
            _ => Err(self.bad(gid, "state must be a dict or (dict, slots)")),
        }
    }

    // ----- torch -------------------------------------------------------------------------------

    fn torch_device(&mut self, gid: GlobalId, args: &[NodeId]) -> Result<NodeId> {
        self.arity(gid, args, &[1, 2])?;
        let kind = self
            .string(args[0])
            .ok_or_else(|| self.bad(gid, "device type must be a str"))?
            .to_owned();
        let valid_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        let (name, index) = match kind.split_once(':') {
            Some((n, i)) => (n.to_owned(), Some(i.to_owned())),
            None => (kind.clone(), None),
        };
        if !valid_name(&name) {
            return Err(self.bad(gid, format!("invalid device type {kind:?}")));
        }
        if let Some(i) = &index
            && (i.is_empty() || i.len() > 9 || !i.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(self.bad(gid, format!("invalid device index in {kind:?}")));
        }
        let device = match args.get(1) {
            None => kind,
            Some(&i) if matches!(self.node(i), Node::None) => kind,
            Some(&i) => {
                if index.is_some() {
                    return Err(self.bad(gid, "device index given twice"));
                }
                let i = self
                    .int_u64(i)
                    .filter(|&i| i < 1 << 20)
                    .ok_or_else(|| self.bad(gid, "device index must be a non-negative int"))?;
                format!("{name}:{i}")
            }
        };
        self.new_node(Node::TorchDevice(device.into()))
    }

    /// Counts a tensor or array of `bytes` materialized bytes against the limits.
    fn charge_tensor(&mut self, bytes: u64) -> Result<()> {
        self.tensors += 1;
        self.limit("max_tensors", self.tensors, self.limits.max_tensors)?;
        self.limit("max_tensor_bytes", bytes, self.limits.max_tensor_bytes)?;
        self.tensor_bytes = self.tensor_bytes.saturating_add(bytes);
        self.limit(
            "max_total_tensor_bytes",
            self.tensor_bytes,
            self.limits.max_total_tensor_bytes,
        )
    }

    pub(crate) fn new_tensor(&mut self, tensor: Tensor) -> Result<NodeId> {
        let isz = tensor.dtype.itemsize().unwrap_or(1);
        self.charge_tensor(tensor.numel().saturating_mul(isz))?;
        self.new_node(Node::Tensor(Box::new(tensor)))
    }

    fn empty_hooks(&self, id: NodeId) -> bool {
        match self.node(id) {
            Node::OrderedDict(o) => o.items.is_empty(),
            Node::Dict(p) => p.is_empty(),
            Node::None => true,
            _ => false,
        }
    }

    fn rebuild_tensor(
        &mut self,
        gid: GlobalId,
        args: &[NodeId],
        version: Rebuild,
    ) -> Result<NodeId> {
        match version {
            Rebuild::V1 => self.arity(gid, args, &[4])?,
            Rebuild::V2 => self.arity(gid, args, &[6, 7])?,
            Rebuild::V3 => self.arity(gid, args, &[7, 8])?,
        }
        if self.passthrough(args[0]) {
            return Ok(args[0]);
        }
        let Node::Storage(storage) = self.node(args[0]) else {
            return Err(self.bad(gid, "storage must come from a persistent id"));
        };
        let storage = StorageFacts {
            node: args[0],
            kind: storage.kind,
            nbytes: storage.nbytes,
            view: storage.view.as_ref().map(|v| (v.offset, v.size)),
        };
        let storage_offset = self
            .int_u64(args[1])
            .ok_or_else(|| self.bad(gid, "storage_offset must be a non-negative int"))?;
        // Sizes then strides, in one allocation (the tensor keeps it).
        let mut dims: Vec<u64> = Vec::new();
        let rank = self.push_dims(args[2], &mut dims).ok_or_else(|| {
            self.bad(
                gid,
                "size must be a tuple of at most max_rank non-negative ints",
            )
        })?;
        self.limit("max_rank", rank as u64, self.limits.max_rank as u64)?;
        let stride_rank = self.push_dims(args[3], &mut dims).ok_or_else(|| {
            self.bad(
                gid,
                "stride must be a tuple of at most max_rank non-negative ints",
            )
        })?;
        if rank != stride_rank {
            return Err(self.bad(gid, "size and stride have different lengths"));
        }
        let (size, stride) = dims.split_at(rank);
        let mut requires_grad = false;
        let (mut conj, mut neg) = (false, false);
        let mut dtype = match storage.kind {
            StorageKind::Typed(d) => Some(d),
            StorageKind::Untyped => None,
        };
        if version != Rebuild::V1 {
            requires_grad = self
                .boolean(args[4])
                .ok_or_else(|| self.bad(gid, "requires_grad must be a bool"))?;
            if !self.empty_hooks(args[5]) {
                return Err(self.bad(gid, "backward hooks are not supported (must be empty)"));
            }
            let metadata = match version {
                Rebuild::V3 => {
                    let Node::TorchDtype(d) = self.node(args[6]) else {
                        return Err(self.bad(gid, "dtype must be a torch dtype"));
                    };
                    if dtype.is_some_and(|s| s != *d) {
                        return Err(self.bad(gid, "dtype differs from the storage's dtype"));
                    }
                    dtype = Some(*d);
                    args.get(7)
                }
                _ => args.get(6),
            };
            if let Some(&m) = metadata {
                match self.node(m) {
                    Node::None => {}
                    Node::Dict(pairs) => {
                        for &(k, v) in pairs {
                            let flag = self
                                .boolean(v)
                                .ok_or_else(|| self.bad(gid, "metadata values must be bools"))?;
                            match self.string(k) {
                                Some("conj") => conj = flag,
                                Some("neg") => neg = flag,
                                _ => {
                                    return Err(self.bad(gid, "metadata keys other than conj/neg"));
                                }
                            }
                        }
                    }
                    _ => return Err(self.bad(gid, "metadata must be a dict")),
                }
            }
        }
        let Some(dtype) = dtype else {
            return Err(self.bad(
                gid,
                "an UntypedStorage needs _rebuild_tensor_v3, which names the dtype",
            ));
        };
        // Element count must fit in u64 whatever the storage says.
        size.iter()
            .try_fold(1u64, |acc, &s| acc.checked_mul(s))
            .ok_or_else(|| self.bad(gid, "element count overflows"))?;
        let Some(itemsize) = dtype.itemsize().filter(|_| dtype.is_supported()) else {
            return self.unsupported(
                UnsupportedKind::TensorDtype,
                gid,
                &format!("tensor of dtype {dtype}, which has no dense bit-exact representation"),
            );
        };
        let byte_range = self.view_bytes(gid, &storage, storage_offset, size, stride, itemsize)?;
        self.new_tensor(Tensor {
            storage: args[0],
            dtype,
            storage_offset,
            dims: dims.into_boxed_slice(),
            requires_grad,
            conj,
            neg,
            flavour: TensorFlavour::Tensor,
            attributes: None,
            byte_range,
        })
    }

    /// The byte range of the storage record a view touches, refusing views outside it.
    fn view_bytes(
        &self,
        gid: GlobalId,
        storage: &StorageFacts,
        offset: u64,
        size: &[u64],
        stride: &[u64],
        itemsize: u64,
    ) -> Result<std::ops::Range<u64>> {
        view_range(storage, offset, size, stride, itemsize).map_err(|what| {
            self.bad(
                gid,
                match what {
                    ViewError::Overflow => "tensor view arithmetic overflows".to_string(),
                    ViewError::Outside { end, available } => format!(
                        "tensor view needs bytes up to {end} of its storage {:?}, which has {available}",
                        match self.node(storage.node) {
                            Node::Storage(s) => s.key(),
                            _ => "",
                        }
                    ),
                },
            )
        })
    }

    fn attributes_node(&mut self, gid: GlobalId, state: NodeId) -> Result<Option<NodeId>> {
        let pairs = self.state_pairs(gid, state)?;
        if pairs.is_empty() {
            return Ok(None);
        }
        for &(k, _) in &pairs {
            if self.string(k).is_none() {
                return Err(self.bad(gid, "attribute names must be str"));
            }
        }
        if let Node::Dict(p) = self.node(state)
            && p.len() == pairs.len()
        {
            return Ok(Some(state));
        }
        Ok(Some(self.new_dict_from_pairs(&pairs)?))
    }

    fn rebuild_parameter(
        &mut self,
        gid: GlobalId,
        data: NodeId,
        requires_grad: NodeId,
        hooks: NodeId,
        state: Option<NodeId>,
    ) -> Result<NodeId> {
        if self.passthrough(data) {
            return Ok(data);
        }
        let Node::Tensor(t) = self.node(data) else {
            return Err(self.bad(gid, "data must be a tensor"));
        };
        let mut t = (**t).clone();
        t.flavour = TensorFlavour::Parameter;
        t.requires_grad = self
            .boolean(requires_grad)
            .ok_or_else(|| self.bad(gid, "requires_grad must be a bool"))?;
        if !self.empty_hooks(hooks) {
            return Err(self.bad(gid, "backward hooks are not supported (must be empty)"));
        }
        if let Some(s) = state {
            t.attributes = self.attributes_node(gid, s)?;
        }
        self.new_tensor(t)
    }

    /// `_rebuild_from_type_v2(func, new_type, args, state)`: only around the tensor rebuilds,
    /// and only for `torch.Tensor` / `nn.Parameter`.
    fn rebuild_from_type(&mut self, gid: GlobalId, args: &[NodeId]) -> Result<NodeId> {
        self.arity(gid, args, &[4])?;
        let Node::Global(func) = self.node(args[0]) else {
            return if self.passthrough(args[0]) {
                Ok(args[0])
            } else {
                Err(self.bad(gid, "func must be a tensor rebuild function"))
            };
        };
        let func = *func;
        let inner_known = self.global_ref(func).known;
        if !matches!(
            inner_known,
            Some(
                Known::RebuildTensor
                    | Known::RebuildTensorV2
                    | Known::RebuildTensorV3
                    | Known::RebuildParameter
                    | Known::RebuildParameterWithState
                    | Known::RebuildDeviceTensorFromCpuTensor
                    | Known::UnsupportedRebuild(_)
            )
        ) {
            return Err(self.bad(gid, "func must be a tensor rebuild function"));
        }
        let flavour = match self.node(args[1]) {
            Node::Global(t) => match self.global_ref(*t).known {
                Some(Known::TensorClass) => TensorFlavour::Tensor,
                Some(Known::ParameterClass) => TensorFlavour::Parameter,
                _ => {
                    let t = *t;
                    return self.unsupported(UnsupportedKind::TensorLayout, t, "tensor subclass");
                }
            },
            Node::Refused => return Ok(args[1]),
            _ => return Err(self.bad(gid, "new_type must be a tensor class")),
        };
        if !matches!(self.node(args[2]), Node::Tuple(_)) {
            return Err(self.bad(gid, "args must be a tuple"));
        }
        let g = self.global_ref(func).clone();
        self.finding(FindingKind::Call(g.name.clone()), g.verdict, g.reason);
        let Some(known) = inner_known else {
            return Err(self.bad(gid, "func must be a tensor rebuild function"));
        };
        let inner = self.known_call(known, func, args[2], None, CallKind::Reduce)?;
        let Node::Tensor(t) = self.node(inner) else {
            return Ok(inner);
        };
        let mut t = (**t).clone();
        if flavour == TensorFlavour::Parameter {
            t.flavour = TensorFlavour::Parameter;
        }
        if let Some(attrs) = self.attributes_node(gid, args[3])? {
            if t.attributes.is_some() {
                return Err(self.bad(gid, "attributes set twice"));
            }
            t.attributes = Some(attrs);
        }
        // The inner rebuild was counted already; this node replaces it.
        self.tensors -= 1;
        self.tensor_bytes = self
            .tensor_bytes
            .saturating_sub(t.numel().saturating_mul(t.dtype.itemsize().unwrap_or(1)));
        self.new_tensor(t)
    }

    /// BINPERSID: `('storage', class, key, location, numel[, view])` or
    /// `('module', class, source_file, source)`.
    pub(crate) fn persistent_load(&mut self, pid: NodeId) -> Result<NodeId> {
        let opts = self.opts;
        if let Some(table) = opts.tensor_table.as_deref()
            && matches!(self.node(pid), Node::Int(_) | Node::Str(_))
        {
            return self.keyed_tensor(table, pid);
        }
        let Some((buf, len)) = self
            .small_args(pid)
            .filter(|_| matches!(self.node(pid), Node::Tuple(_)))
        else {
            return Err(self.mismatch("a persistent id tuple", pid));
        };
        let items = &buf[..len];
        let tag = items.first().and_then(|&t| self.string(t));
        let bad = |m: &Self, reason: &str| {
            m.refused(Verdict::Unknown, format!("persistent id refused: {reason}"))
        };
        match tag {
            Some("module") if items.len() == 4 => {
                // Legacy torch.save(model): the class of an nn.Module, with its source text.
                return match self.node(items[1]) {
                    Node::Global(_) | Node::Refused => Ok(items[1]),
                    _ => Err(bad(self, "('module', ...) must carry a class")),
                };
            }
            Some("storage") if self.opts.tensor_table.is_some() => {
                return Err(self.invalid(
                    "a ('storage', ...) persistent id in a tar checkpoint's object pickle \
                     (torch's tar reader names tensors by key there)",
                ));
            }
            Some("storage") if items.len() == 5 || items.len() == 6 => {}
            _ => return Err(bad(self, "not a ('storage', ...) tuple")),
        }
        let kind = match self.node(items[1]) {
            Node::Global(g) => match self.global_ref(*g).known {
                Some(Known::StorageClass(Some(d))) => StorageKind::Typed(d),
                Some(Known::StorageClass(None)) => StorageKind::Untyped,
                _ => return Err(bad(self, "the storage class is not a torch storage type")),
            },
            Node::Refused => return Ok(items[1]),
            _ => return Err(bad(self, "the storage class is not a class")),
        };
        let key: Arc<str> = match self.node(items[2]) {
            Node::Str(s) => s.clone(),
            _ => return Err(bad(self, "the storage key must be a str")),
        };
        let location: Arc<str> = match self.node(items[3]) {
            Node::Str(s) => s.clone(),
            Node::Bytes(d) => {
                let d = d.clone();
                let b = self.bytes_of(&d);
                if !b.is_ascii() {
                    return Err(bad(self, "the location must be ASCII"));
                }
                String::from_utf8_lossy(b).into()
            }
            _ => return Err(bad(self, "the location must be a str")),
        };
        let numel = self
            .int_u64(items[4])
            .ok_or_else(|| bad(self, "numel must be a non-negative int"))?;
        let view = match items.get(5) {
            None => None,
            Some(&v) => match self.node(v) {
                Node::None => None,
                Node::Tuple(t) if t.len() == 3 => {
                    let (vk, vo, vs) = (t[0], t[1], t[2]);
                    let view_key = self
                        .string(vk)
                        .ok_or_else(|| bad(self, "the view key must be a str"))?
                        .to_owned();
                    let offset = self
                        .int_u64(vo)
                        .ok_or_else(|| bad(self, "the view offset must be a non-negative int"))?;
                    let size = self
                        .int_u64(vs)
                        .ok_or_else(|| bad(self, "the view size must be a non-negative int"))?;
                    if offset.checked_add(size).is_none_or(|end| end > numel) {
                        return Err(bad(self, "the view lies outside its storage"));
                    }
                    Some(StorageView {
                        key: view_key,
                        offset,
                        size,
                    })
                }
                _ => return Err(bad(self, "view metadata must be None or a 3-tuple")),
            },
        };
        let unit = kind
            .unit_size()
            .ok_or_else(|| bad(self, "the storage dtype has no byte size"))?;
        let nbytes = numel
            .checked_mul(unit)
            .ok_or_else(|| bad(self, "the storage size overflows"))?;
        let existing = match self.storages_by_key.get(key.as_ref()) {
            Some(e) if e.kind != kind || e.numel != numel => {
                return Err(bad(
                    self,
                    "the same storage key is declared with a different type or size",
                ));
            }
            Some(e) => Some(match &view {
                None => e.plain,
                Some(v) => e.views.get(v).copied(),
            }),
            None => None,
        };
        if let Some(Some(node)) = existing {
            return Ok(node);
        }
        if existing.is_none() {
            let request = StorageRequest {
                key: &key,
                kind,
                numel,
                nbytes,
                location: &location,
                view: view.as_ref(),
                offset: self.op_offset,
            };
            let confirmed = self.storages.resolve(&request).map_err(|source| {
                crate::error::PickleError::Storage {
                    offset: self.op_offset,
                    opcode: self.op,
                    key: key.to_string(),
                    source,
                }
            })?;
            if confirmed != nbytes {
                return Err(bad(
                    self,
                    &format!(
                        "storage {key:?} declares {nbytes} bytes, the container has {confirmed}"
                    ),
                ));
            }
        }
        let shared_key = key;
        let node = self.new_node(Node::Storage(Box::new(Storage {
            key: shared_key.clone(),
            kind,
            numel,
            nbytes,
            location,
            view: view.clone(),
        })))?;
        let entry = self
            .storages_by_key
            .get_or_insert_with(shared_key, || StorageEntry {
                kind,
                numel,
                plain: None,
                views: crate::vm::Map::default(),
            });
        match view {
            None => entry.plain = Some(node),
            Some(v) => {
                entry.views.insert(v, node);
            }
        }
        Ok(node)
    }

    /// BINPERSID with a bare key (a tar checkpoint's object pickle): the tensor of that key in
    /// the caller's table, checked against its storage like a rebuild call's arguments.
    fn keyed_tensor(&mut self, table: &TensorTable, pid: NodeId) -> Result<NodeId> {
        // torch looks the id up as `int(saved_id)`; only plain decimal text is accepted here.
        let key = match self.node(pid) {
            Node::Str(s) => s.parse::<i64>().ok(),
            _ => self.int_i64(pid),
        }
        .ok_or_else(|| {
            self.invalid(format!(
                "persistent id {} is not a tensor key (an int or a decimal str)",
                match self.node(pid) {
                    Node::Str(s) => format!("{s:?}"),
                    other => other.type_name().to_string(),
                }
            ))
        })?;
        if let Some(&node) = self.keyed_tensors.get(&key) {
            return Ok(node);
        }
        let tensor = table.get(key).ok_or_else(|| {
            self.invalid(format!(
                "persistent id {key}: no tensor has this key in the tar checkpoint's `tensors` member"
            ))
        })?;
        let what = |m: &Self, reason: String| m.invalid(format!("tensor key {key}: {reason}"));
        let dtype = tensor.dtype();
        let Some(itemsize) = dtype.itemsize().filter(|_| dtype.is_supported()) else {
            return Err(what(
                self,
                format!("dtype {dtype} has no dense bit-exact representation"),
            ));
        };
        let (size, stride) = (tensor.size(), tensor.stride());
        self.limit("max_rank", size.len() as u64, self.limits.max_rank as u64)?;
        size.iter()
            .try_fold(1u64, |acc, &s| acc.checked_mul(s))
            .ok_or_else(|| what(self, "element count overflows".into()))?;
        let kind = StorageKind::Typed(dtype);
        let numel = tensor.storage_numel();
        let nbytes = numel
            .checked_mul(itemsize)
            .ok_or_else(|| what(self, "the storage size overflows".into()))?;
        let storage_key = tensor.storage_key();
        let existing = match self.storages_by_key.get(storage_key) {
            Some(e) if e.kind != kind || e.numel != numel => {
                return Err(what(
                    self,
                    format!("storage {storage_key:?} is declared with a different type or size"),
                ));
            }
            Some(e) => e.plain,
            None => None,
        };
        let storage = match existing {
            Some(node) => node,
            None => {
                let request = StorageRequest {
                    key: storage_key,
                    kind,
                    numel,
                    nbytes,
                    location: tensor.location(),
                    view: None,
                    offset: self.op_offset,
                };
                let confirmed =
                    self.storages
                        .resolve(&request)
                        .map_err(|source| PickleError::Storage {
                            offset: self.op_offset,
                            opcode: self.op,
                            key: storage_key.to_string(),
                            source,
                        })?;
                if confirmed != nbytes {
                    return Err(what(
                        self,
                        format!(
                            "storage {storage_key:?} declares {nbytes} bytes, the container has {confirmed}"
                        ),
                    ));
                }
                let shared: Arc<str> = storage_key.into();
                let node = self.new_node(Node::Storage(Box::new(Storage {
                    key: shared.clone(),
                    kind,
                    numel,
                    nbytes,
                    location: tensor.location().into(),
                    view: None,
                })))?;
                self.storages_by_key
                    .get_or_insert_with(shared, || StorageEntry {
                        kind,
                        numel,
                        plain: None,
                        views: crate::vm::Map::default(),
                    })
                    .plain = Some(node);
                node
            }
        };
        let facts = StorageFacts {
            node: storage,
            kind,
            nbytes,
            view: None,
        };
        let offset = tensor.storage_offset();
        let byte_range = view_range(&facts, offset, size, stride, itemsize).map_err(|e| {
            what(
                self,
                match e {
                    ViewError::Overflow => "tensor view arithmetic overflows".into(),
                    ViewError::Outside { end, available } => format!(
                        "the tensor needs bytes up to {end} of storage {storage_key:?}, which has {available}"
                    ),
                },
            )
        })?;
        let node = self.new_tensor(Tensor {
            storage,
            dtype,
            storage_offset: offset,
            dims: tensor.dims().into(),
            requires_grad: false,
            conj: false,
            neg: false,
            flavour: TensorFlavour::Tensor,
            attributes: None,
            byte_range,
        })?;
        self.keyed_tensors.insert(key, node);
        Ok(node)
    }

    // ----- numpy -------------------------------------------------------------------------------

    fn numpy_dtype_arg(&self, id: NodeId) -> Option<NumpyDtype> {
        match self.node(id) {
            Node::NumpyDtype(d) => Some((**d).clone()),
            _ => None,
        }
    }

    fn numpy_scalar(&mut self, gid: GlobalId, args: &[NodeId]) -> Result<NodeId> {
        self.arity(gid, args, &[1, 2])?;
        let dtype = self
            .numpy_dtype_arg(args[0])
            .ok_or_else(|| self.bad(gid, "first argument must be a numpy dtype"))?;
        if let NumpyElement::Unsupported(t) = &dtype.element {
            let what = format!("numpy scalar of dtype {t:?}");
            return self.unsupported(UnsupportedKind::NumpyDtype, gid, &what);
        }
        let Some(&raw) = args.get(1) else {
            return Err(self.bad(gid, "needs the raw bytes of the value"));
        };
        let data = self
            .byte_data(raw)?
            .ok_or_else(|| self.bad(gid, "value must be bytes"))?;
        if data.len() as u64 != dtype.itemsize {
            return Err(self.bad(gid, "value bytes do not match the dtype's size"));
        }
        self.new_node(Node::NumpyScalar(Box::new(NumpyScalar { dtype, data })))
    }

    fn c_strides(shape: &[u64]) -> Vec<u64> {
        let mut strides = vec![0u64; shape.len()];
        let mut acc = 1u64;
        for i in (0..shape.len()).rev() {
            strides[i] = acc;
            acc = acc.saturating_mul(shape[i]);
        }
        strides
    }

    fn check_array_len(
        &self,
        gid: GlobalId,
        shape: &[u64],
        dtype: &NumpyDtype,
        data: &ByteData,
    ) -> Result<()> {
        self.limit("max_rank", shape.len() as u64, self.limits.max_rank as u64)?;
        let expected = shape
            .iter()
            .try_fold(dtype.itemsize, |acc, &s| acc.checked_mul(s))
            .ok_or_else(|| self.bad(gid, "array size overflows"))?;
        if data.len() as u64 != expected {
            return Err(self.bad(
                gid,
                format!(
                    "array data has {} bytes, shape and dtype need {expected}",
                    data.len()
                ),
            ));
        }
        Ok(())
    }

    fn new_array(&mut self, array: NdArray) -> Result<Node> {
        self.charge_tensor(array.data.len() as u64)?;
        Ok(Node::Array(Box::new(array)))
    }

    fn numpy_frombuffer(&mut self, gid: GlobalId, args: &[NodeId]) -> Result<NodeId> {
        self.arity(gid, args, &[4, 5])?;
        let data = match self.node(args[0]) {
            Node::Bytes(d) | Node::ByteArray(d) => d.clone(),
            _ => return Err(self.bad(gid, "buffer must be in-band bytes")),
        };
        let dtype = self
            .numpy_dtype_arg(args[1])
            .ok_or_else(|| self.bad(gid, "dtype must be a numpy dtype"))?;
        let shape = self.dims(args[2]).ok_or_else(|| {
            self.bad(
                gid,
                "shape must be a tuple of at most max_rank non-negative ints",
            )
        })?;
        let order = self
            .string(args[3])
            .ok_or_else(|| self.bad(gid, "order must be 'C', 'F' or 'K'"))?
            .to_owned();
        if let NumpyElement::Unsupported(t) = &dtype.element {
            let what = format!("numpy array of dtype {t:?}");
            return self.unsupported(UnsupportedKind::NumpyDtype, gid, &what);
        }
        self.check_array_len(gid, &shape, &dtype, &data)?;
        let c = Self::c_strides(&shape);
        let (shape, strides) = match (order.as_str(), args.get(4)) {
            ("C", None) => (shape, c),
            ("F", None) => {
                let mut strides = vec![0u64; shape.len()];
                let mut acc = 1u64;
                for i in 0..shape.len() {
                    strides[i] = acc;
                    acc = acc.saturating_mul(shape[i]);
                }
                (shape, strides)
            }
            ("K", Some(&axes)) => {
                let axes = self
                    .dims(axes)
                    .ok_or_else(|| self.bad(gid, "axis_order must be a tuple of ints"))?;
                let mut seen = vec![false; shape.len()];
                if axes.len() != shape.len()
                    || !axes.iter().all(|&a| {
                        (a as usize) < seen.len() && !std::mem::replace(&mut seen[a as usize], true)
                    })
                {
                    return Err(self.bad(gid, "axis_order must be a permutation of the axes"));
                }
                let new_shape = axes.iter().map(|&a| shape[a as usize]).collect();
                let new_strides = axes.iter().map(|&a| c[a as usize]).collect();
                (new_shape, new_strides)
            }
            _ => return Err(self.bad(gid, "order must be 'C' or 'F', or 'K' with axis_order")),
        };
        let node = self.new_array(NdArray {
            dtype,
            shape: shape.into(),
            strides: strides.into(),
            data,
            source: ArraySource::FromBuffer,
        })?;
        self.new_node(node)
    }

    fn build_array(&mut self, target: NodeId, state: NodeId) -> Result<()> {
        let gid = self.static_global("numpy._core.multiarray", "_reconstruct");
        let items = match self.node(state) {
            Node::Tuple(v) => v.clone(),
            _ => return Err(self.bad(gid, "ndarray state must be a tuple")),
        };
        let items = match items.len() {
            5 => {
                if self.int_i64(items[0]) != Some(1) {
                    return Err(self.bad(gid, "unknown ndarray state version"));
                }
                items[1..].to_vec()
            }
            4 => items,
            _ => return Err(self.bad(gid, "ndarray state must have 4 or 5 items")),
        };
        let shape = self.dims(items[0]).ok_or_else(|| {
            self.bad(
                gid,
                "shape must be a tuple of at most max_rank non-negative ints",
            )
        })?;
        let dtype = self
            .numpy_dtype_arg(items[1])
            .ok_or_else(|| self.bad(gid, "dtype must be a numpy dtype"))?;
        let fortran = match self.node(items[2]) {
            Node::Bool(b) => *b,
            Node::Int(PyInt::Small(v)) if *v == 0 || *v == 1 => *v == 1,
            _ => return Err(self.bad(gid, "is_fortran must be a bool")),
        };
        let replacement = if let NumpyElement::Unsupported(t) = &dtype.element {
            let what = if t.starts_with('O') {
                "numpy object array".to_owned()
            } else {
                format!("numpy array of dtype {t:?}")
            };
            Node::Unsupported(Box::new(Unsupported {
                kind: UnsupportedKind::NumpyDtype,
                callee: gid,
                detail: format!("{what} ({})", self.global_name(gid)),
            }))
        } else {
            let data = self
                .byte_data(items[3])?
                .ok_or_else(|| self.bad(gid, "array data must be bytes"))?;
            self.check_array_len(gid, &shape, &dtype, &data)?;
            let strides = if fortran {
                let mut strides = vec![0u64; shape.len()];
                let mut acc = 1u64;
                for i in 0..shape.len() {
                    strides[i] = acc;
                    acc = acc.saturating_mul(shape[i]);
                }
                strides
            } else {
                Self::c_strides(&shape)
            };
            self.new_array(NdArray {
                dtype,
                shape: shape.into(),
                strides: strides.into(),
                data,
                source: ArraySource::Reconstruct,
            })?
        };
        self.nodes[target.index()] = replacement;
        Ok(())
    }

    fn build_dtype(&mut self, target: NodeId, state: NodeId) -> Result<()> {
        let gid = self.static_global("numpy", "dtype");
        let items = match self.node(state) {
            Node::Tuple(v) if v.len() == 8 || v.len() == 9 => v.clone(),
            _ => return Err(self.bad(gid, "dtype state must be an 8- or 9-tuple")),
        };
        match self.int_i64(items[0]) {
            Some(3 | 4) => {}
            _ => return Err(self.bad(gid, "unknown dtype state version")),
        }
        let order = match self.node(items[1]) {
            Node::Str(s) => s.to_string(),
            Node::Bytes(d) => {
                let d = d.clone();
                String::from_utf8_lossy(self.bytes_of(&d)).into_owned()
            }
            _ => return Err(self.bad(gid, "byte order must be a str")),
        };
        let structured = items[2..5]
            .iter()
            .any(|&i| !matches!(self.node(i), Node::None));
        for &i in &items[5..8] {
            if self.int_i64(i).is_none() {
                return Err(self.bad(gid, "elsize, alignment and flags must be ints"));
            }
        }
        let Node::NumpyDtype(d) = self.node(target) else {
            return Err(self.bad(gid, "BUILD target is not a dtype"));
        };
        let mut d = (**d).clone();
        if d.built {
            return Err(self.bad(gid, "dtype state set twice"));
        }
        d.built = true;
        let multi_byte_numeric =
            matches!(d.element, NumpyElement::Numeric(x) if x.itemsize().unwrap_or(1) > 1);
        d.byte_order = match order.as_str() {
            "<" => ByteOrder::Little,
            ">" => ByteOrder::Big,
            "|" if !multi_byte_numeric => ByteOrder::NotApplicable,
            "|" => return Err(self.bad(gid, "byte order '|' on a multi-byte number")),
            _ => return Err(self.bad(gid, format!("invalid byte order {order:?}"))),
        };
        if !multi_byte_numeric && d.byte_order != ByteOrder::NotApplicable {
            // numpy writes '|' for single-byte types; '<'/'>' there is harmless.
            d.byte_order = ByteOrder::NotApplicable;
        }
        if structured {
            d.element = NumpyElement::Unsupported(
                format!("{} (structured or subarray)", d.type_string).into(),
            );
        }
        self.nodes[target.index()] = Node::NumpyDtype(Box::new(d));
        Ok(())
    }

    // ----- BUILD -------------------------------------------------------------------------------

    fn typed_build_finding(&mut self, module: &str, name: &str) {
        let name = GlobalName {
            module: module.into(),
            name: name.into(),
        };
        self.finding(FindingKind::Build(name), Verdict::Allowed, "known state");
    }

    pub(crate) fn build(&mut self, target: NodeId, state: NodeId) -> Result<()> {
        match self.node(target) {
            Node::OrderedDict(_) => {
                self.typed_build_finding("collections", "OrderedDict");
                let gid = self.static_global("collections", "OrderedDict");
                let pairs = self.state_pairs(gid, state)?;
                self.set_attributes(gid, target, &pairs)
            }
            Node::Namespace(_) => {
                self.typed_build_finding("argparse", "Namespace");
                let gid = self.static_global("argparse", "Namespace");
                let pairs = self.state_pairs(gid, state)?;
                self.set_attributes(gid, target, &pairs)
            }
            Node::ArrayShell => {
                self.typed_build_finding("numpy", "ndarray");
                self.build_array(target, state)
            }
            Node::NumpyDtype(_) => {
                self.typed_build_finding("numpy", "dtype");
                self.build_dtype(target, state)
            }
            Node::Object(o) => {
                let name = match self.node(o.callee) {
                    Node::Global(g) => Some(self.global_name(*g)),
                    _ => None,
                };
                match name {
                    Some(n) => self.finding(
                        FindingKind::Build(n),
                        Verdict::Unknown,
                        "state of an unknown object",
                    ),
                    None => self.finding(
                        FindingKind::CallOnValue,
                        Verdict::Unknown,
                        "state of an unknown object",
                    ),
                }
                if let Node::Object(o) = &mut self.nodes[target.index()] {
                    if o.state.is_some() {
                        return Err(self.invalid("BUILD applied twice to one object"));
                    }
                    o.state = Some(state);
                }
                Ok(())
            }
            Node::Refused | Node::Unsupported(_) => Ok(()),
            Node::Global(g) => {
                let name = self.global_name(*g);
                let reason = format!(
                    "BUILD on the class or function {name} would overwrite its attributes (module shadowing)"
                );
                self.finding(FindingKind::Build(name), Verdict::Unsafe, reason.clone());
                if self.scan {
                    Ok(())
                } else {
                    Err(self.refused(Verdict::Unsafe, reason))
                }
            }
            _ => Err(self.mismatch("an object that accepts state", target)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::latin1;

    #[test]
    fn latin1_matches_code_points() {
        let all: String = (0u32..256).filter_map(char::from_u32).collect();
        assert_eq!(
            latin1(&all).unwrap().to_vec(),
            (0u8..=255).collect::<Vec<_>>()
        );
        assert!(latin1("\u{100}").is_none());
        assert!(latin1("€").is_none());
    }
}
