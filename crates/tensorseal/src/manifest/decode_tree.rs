//! Decoding the checkpoint tree (spec §3.3-§3.8) from CBOR tokens straight into nodes.
//!
//! Containers under construction wait on an explicit stack of frames, each knowing what it
//! expects next. The loop in [`TreeDecoder::decode`] asks the top frame for its next step,
//! decodes the child node it needs (a leaf at once, a container by pushing its frame) and hands
//! every finished node to its parent. The native stack therefore stays the same size whatever the
//! depth of the tree; the depth is bounded by [`Limits::tree_depth`] as the spec requires.
//!
//! Errors carry the path of the offending node, built from the frames only when an error occurs.

use super::{
    R, SchemaError, add_one, array, at, bytes, float, key, key_segment, map, missing, text, uint,
    unknown_field,
};
use crate::cbor::{Reader, Token};
use crate::dtype::{self, DType};
use crate::limits::{self, Limits};
use crate::python_eq::key_identity;
use crate::tree::{Global, Int, Node, Object, Tensor, TensorKind, Typed};
use std::borrow::Cow;
use std::collections::HashSet;

/// Decodes one tree from a reader positioned at its root.
pub(super) struct TreeDecoder<'r, 'a> {
    r: &'r mut Reader<'a>,
    max_depth: usize,
    max_rank: usize,
    /// Logical length of each blob, when the blob table is known: tensors are then checked
    /// against it as they are decoded.
    blob_lengths: Option<&'r [u64]>,
    /// `(blob index, tensor byte size)` of every tensor with a blob, in document order, for the
    /// caller to check against the blob table when it was not known.
    uses: Vec<(u64, u64)>,
}

/// What a frame needs next.
enum Need {
    /// One node at this tree depth, handed to [`Frame::accept`] when complete.
    Node(usize),
    /// Nothing more: the frame is complete.
    Done,
}

/// How a node starts: complete already, or a container whose frame goes on the stack, with the
/// depth of the child it needs first if it already knows (it has read up to that child).
enum Begin<'a> {
    Leaf(Node),
    Frame(Frame<'a>, Option<usize>),
}

impl<'r, 'a> TreeDecoder<'r, 'a> {
    pub(super) fn new(
        r: &'r mut Reader<'a>,
        limits: &Limits,
        blob_lengths: Option<&'r [u64]>,
    ) -> TreeDecoder<'r, 'a> {
        TreeDecoder {
            r,
            max_depth: limits.tree_depth(),
            max_rank: limits.max_rank,
            blob_lengths,
            uses: Vec::new(),
        }
    }

    /// The blob references of the tensors decoded, `(blob index, byte size)`.
    pub(super) fn into_uses(self) -> Vec<(u64, u64)> {
        self.uses
    }

    /// Decodes the node at the reader's position, which is at tree depth 1.
    pub(super) fn decode(&mut self) -> R<Node> {
        let mut stack: Vec<Frame<'a>> = Vec::new();
        // The depth of the child the top frame needs, when it said so before it was pushed.
        let mut pending = match self.begin(1) {
            Ok(Begin::Leaf(node)) => return Ok(node),
            Ok(Begin::Frame(f, first)) => {
                stack.push(f);
                first
            }
            Err(e) => return Err(located(e, &stack, false)),
        };
        loop {
            let top = stack.len() - 1;
            let need = match pending.take() {
                Some(depth) => Need::Node(depth),
                None => match stack[top].step(self) {
                    Ok(need) => need,
                    Err(e) => return Err(located(e, &stack, true)),
                },
            };
            match need {
                Need::Node(depth) => {
                    let start = self.r.pos();
                    match self.begin(depth) {
                        Ok(Begin::Leaf(node)) => {
                            if let Err(e) = stack[top].accept(self, node, start) {
                                return Err(located(e, &stack, true));
                            }
                        }
                        Ok(Begin::Frame(f, first)) => {
                            stack.push(f);
                            pending = first;
                        }
                        Err(e) => return Err(located(e, &stack, false)),
                    }
                }
                Need::Done => {
                    let frame = stack
                        .pop()
                        .expect("the loop runs with a frame on the stack");
                    let (own, start) = (frame.own(), frame.start());
                    let node = match frame.finish(self) {
                        Ok(node) => node,
                        Err(mut e) => {
                            e.path.extend(own.map(String::from));
                            return Err(located(e, &stack, false));
                        }
                    };
                    let Some(parent) = stack.last_mut() else {
                        return Ok(node);
                    };
                    if let Err(e) = parent.accept(self, node, start) {
                        return Err(located(e, &stack, true));
                    }
                }
            }
        }
    }

    /// Reads the start of a node at `depth`.
    fn begin(&mut self, depth: usize) -> R<Begin<'a>> {
        let start = self.r.pos();
        let node = match self.r.next()? {
            Token::Null => Node::None,
            Token::Bool(b) => Node::Bool(b),
            Token::Uint(n) => Node::Int(Int::from(n)),
            Token::Nint(n) => Node::Int(Int::from_i128(-1 - i128::from(n))),
            Token::BigPos(m) => Node::Int(Int::from_sign_magnitude(false, m)),
            Token::BigNeg(m) => Node::Int(Int::from_sign_magnitude(true, &add_one(m))),
            Token::Float(f) => Node::Float(f),
            Token::Text(s) => Node::Str(s.to_owned()),
            Token::Bytes(b) => Node::Bytes(b.to_vec()),
            Token::Array(n) => return self.seq(SeqKind::List, n, depth, start),
            Token::Map(n) => {
                if n != 1 {
                    return Err(SchemaError::new(
                        start,
                        "a wrapped node must be a map with exactly one key",
                    ));
                }
                let (kind, _) = key(self.r)?;
                return self.wrapped(kind, depth, start).map_err(at(kind));
            }
        };
        Ok(Begin::Leaf(node))
    }

    fn wrapped(&mut self, kind: &str, depth: usize, start: usize) -> R<Begin<'a>> {
        let leaf = match kind {
            "tuple" => return self.seq_of(SeqKind::Tuple, depth, start),
            "set" => return self.seq_of(SeqKind::Set, depth, start),
            "frozenset" => return self.seq_of(SeqKind::FrozenSet, depth, start),
            "dict" => {
                let wrapper = self.r.pos();
                let n = array(self.r)?;
                if n == 0 {
                    Node::Dict(Vec::new())
                } else {
                    let entries = self.entries(n, depth, Keys::Nodes, wrapper)?;
                    return Ok(Begin::Frame(
                        Frame::Dict(DictFrame { start, entries }),
                        None,
                    ));
                }
            }
            "bytearray" => Node::ByteArray(bytes(self.r)?.to_vec()),
            "complex" => {
                let value_at = self.r.pos();
                match self.r.next()? {
                    Token::Array(2) => {}
                    Token::Array(_) => {
                        return Err(SchemaError::new(value_at, "a complex is [real, imaginary]"));
                    }
                    _ => return Err(SchemaError::new(value_at, "expected an array")),
                }
                let re = float(self.r)?;
                Node::Complex(re, float(self.r)?)
            }
            "tensor" | "typed" | "object" => {
                let map_at = self.r.pos();
                let left = map(self.r, kind)?;
                let head = Fields {
                    start,
                    map_at,
                    left,
                    depth,
                };
                // Most of these hold no nodes (a tensor without attributes, a torch.Size):
                // decode the fields here, and put a frame on the stack only when a child node
                // is due, with the fields read so far.
                return match kind {
                    "tensor" => {
                        let mut f = TensorFrame::new(head);
                        Ok(match f.step(self)? {
                            Need::Done => Begin::Leaf(f.finish(self)?),
                            Need::Node(d) => Begin::Frame(Frame::Tensor(Box::new(f)), Some(d)),
                        })
                    }
                    "typed" => {
                        let mut f = TypedFrame::new(head);
                        Ok(match f.step(self)? {
                            Need::Done => Begin::Leaf(f.finish()?),
                            Need::Node(d) => Begin::Frame(Frame::Typed(Box::new(f)), Some(d)),
                        })
                    }
                    _ => {
                        let mut f = ObjectFrame::new(head);
                        Ok(match f.step(self)? {
                            Need::Done => Begin::Leaf(f.finish()?),
                            Need::Node(d) => Begin::Frame(Frame::Object(Box::new(f)), Some(d)),
                        })
                    }
                };
            }
            "global" => Node::Global(Box::new(self.global()?)),
            other => {
                return Err(SchemaError::new(
                    self.r.pos(),
                    format!("unknown node kind {other:?}"),
                ));
            }
        };
        Ok(Begin::Leaf(leaf))
    }

    /// A tuple, set or frozenset: `kind` wraps an array of nodes.
    fn seq_of(&mut self, kind: SeqKind, depth: usize, start: usize) -> R<Begin<'a>> {
        let n = array(self.r)?;
        self.seq(kind, n, depth, start)
    }

    fn seq(&mut self, kind: SeqKind, n: usize, depth: usize, start: usize) -> R<Begin<'a>> {
        if n == 0 {
            return Ok(Begin::Leaf(kind.node(Vec::new())));
        }
        let run = self.run(n, depth)?;
        let keys = matches!(kind, SeqKind::Set | SeqKind::FrozenSet)
            .then(|| KeySet::for_count(self.capacity(n)));
        Ok(Begin::Frame(
            Frame::Seq(SeqFrame {
                kind,
                start,
                run,
                keys,
            }),
            None,
        ))
    }

    /// The depth of the `n` children of a container at `depth`. Children sit one level deeper
    /// (spec §3.3); an empty container has none, so it may itself be at the maximum depth. The
    /// error names the first child too deep, which starts at the reader's position.
    fn child_depth(&self, n: usize, depth: usize) -> R<usize> {
        if n > 0 && depth >= self.max_depth {
            return Err(SchemaError::limit(
                self.r.pos(),
                "max_tree_depth",
                depth as u64 + 1,
                self.max_depth as u64,
            ));
        }
        Ok(depth + 1)
    }

    /// Room for `n` children, but never more than the items the reader may still return: a
    /// count alone must not decide an allocation.
    fn capacity(&self, n: usize) -> usize {
        n.min(self.r.items_left())
    }

    fn run(&self, n: usize, depth: usize) -> R<Run> {
        Ok(Run {
            items: Vec::with_capacity(self.capacity(n)),
            left: n,
            depth: self.child_depth(n, depth)?,
        })
    }

    fn entries(&self, n: usize, depth: usize, keys: Keys, wrapper: usize) -> R<Entries<'a>> {
        let depth = self.child_depth(n, depth)?;
        let (nodes, texts) = match keys {
            Keys::Nodes => (Vec::with_capacity(self.capacity(n)), Vec::new()),
            Keys::Text => (Vec::new(), Vec::with_capacity(self.capacity(n))),
        };
        Ok(Entries {
            keys,
            nodes,
            texts,
            key: None,
            left: n,
            depth,
            seen: KeySet::for_count(self.capacity(n)),
            wrapper,
        })
    }

    /// `{"dict": [...]}` around entries; `what` names the map in errors. Returns the number of
    /// entries.
    fn dict_wrapper(&mut self, what: &str) -> R<usize> {
        let wrapper = self.r.pos();
        let n = map(self.r, what)?;
        if n == 0 {
            return Err(missing(wrapper, "dict"));
        }
        let (k, key_at) = key(self.r)?;
        if k != "dict" {
            return Err(unknown_field(key_at, k, what));
        }
        if n > 1 {
            // Keys are unique: whatever follows "dict" is another, unknown, field.
            self.r.skip()?;
            let (k, key_at) = key(self.r)?;
            return Err(unknown_field(key_at, k, what));
        }
        array(self.r)
    }

    /// An attribute dict (tensor and OrderedDict attributes, Namespace fields, keyword
    /// arguments): `{"dict": [[name, node], ...]}` with text names.
    fn attr_dict(&mut self, depth: usize) -> R<Entries<'a>> {
        let wrapper = self.r.pos();
        let n = self.dict_wrapper("attribute dict")?;
        self.entries(n, depth, Keys::Text, wrapper)
    }

    fn global(&mut self) -> R<Global> {
        let map_at = self.r.pos();
        let n = map(self.r, "global")?;
        let (mut name, mut module) = (None, None);
        for _ in 0..n {
            let (k, key_at) = key(self.r)?;
            match k {
                "name" => name = Some(qualname(self.r).map_err(at("name"))?),
                "module" => module = Some(qualname(self.r).map_err(at("module"))?),
                other => return Err(unknown_field(key_at, other, "global")),
            }
        }
        Ok(Global {
            module: module.ok_or_else(|| missing(map_at, "module"))?,
            name: name.ok_or_else(|| missing(map_at, "name"))?,
        })
    }

    /// Records (or, with the blob table known, checks) that a tensor of `size` bytes uses
    /// `blob`, whose index was read at `blob_at`.
    fn use_blob(&mut self, blob: u64, size: u64, blob_at: usize) -> R<()> {
        let Some(lengths) = self.blob_lengths else {
            self.uses.push((blob, size));
            return Ok(());
        };
        let len = usize::try_from(blob)
            .ok()
            .and_then(|i| lengths.get(i).copied())
            .ok_or_else(|| {
                at("blob")(SchemaError::new(
                    blob_at,
                    format!("blob index {blob} out of range"),
                ))
            })?;
        if len != size {
            return Err(at("blob")(SchemaError::new(
                blob_at,
                format!("tensor is {size} bytes but blob {blob} holds {len}"),
            )));
        }
        Ok(())
    }

    /// The input bytes from `start` to the reader's position: the encoding of the item just
    /// completed.
    fn encoding_since(&self, start: usize) -> &'a [u8] {
        &self.r.input()[start..self.r.pos()]
    }
}

/// Adds the path of the frames to an error raised while decoding: the top frame's own segment
/// when the error is the top frame's, and for every frame below the way to its child.
fn located(mut e: Box<SchemaError>, stack: &[Frame<'_>], top_own: bool) -> Box<SchemaError> {
    if e.cbor().is_some() {
        // CBOR errors are reported by offset alone.
        return e;
    }
    let mut frames = stack.iter().rev();
    if top_own && let Some(top) = frames.next() {
        e.path.extend(top.own().map(String::from));
    }
    for f in frames {
        f.child_path(&mut e.path);
    }
    e.path.push("root".into());
    e
}

fn qualname(r: &mut Reader<'_>) -> R<String> {
    let start = r.pos();
    let s = text(r)?;
    if s.is_empty() || s.len() > limits::MAX_QUALNAME || s.chars().any(char::is_control) {
        return Err(SchemaError::new(
            start,
            "must be 1 to 1024 bytes without control characters",
        ));
    }
    Ok(s.to_string())
}

/// Keys of one dict or elements of one set, by their identity under Python's `==`
/// ([`key_identity`]), for the duplicate check (spec §3.3). A short list is scanned; a long one
/// gets a hash set, seeded per process (foldhash: a crafted manifest cannot aim for collisions
/// it cannot predict, and it hashes short keys several times faster than SipHash, which was a
/// tenth of the time to open a 124-tensor state dict).
struct KeySet<'a> {
    list: Vec<Cow<'a, [u8]>>,
    set: Option<HashSet<Cow<'a, [u8]>, foldhash::fast::RandomState>>,
}

/// Up to this many keys are compared one by one: cheaper than hashing for small dicts.
const KEY_LIST_MAX: usize = 16;

impl<'a> KeySet<'a> {
    /// An empty set for a container of `count` members (already bounded by the input left), so
    /// that a large dict hashes from its first key and never rehashes.
    fn for_count(count: usize) -> KeySet<'a> {
        let set = (count > KEY_LIST_MAX).then(|| {
            HashSet::with_capacity_and_hasher(count, foldhash::fast::RandomState::default())
        });
        KeySet {
            list: Vec::new(),
            set,
        }
    }

    /// Adds the key `node` whose canonical encoding is `encoding`; `false` if a key equal to it
    /// in Python was there already.
    fn insert(&mut self, node: &Node, encoding: &'a [u8]) -> bool {
        let id = key_identity(node, encoding);
        if let Some(set) = &mut self.set {
            return set.insert(id);
        }
        if self.list.contains(&id) {
            return false;
        }
        self.list.push(id);
        if self.list.len() > KEY_LIST_MAX {
            let mut set = HashSet::with_capacity_and_hasher(
                2 * KEY_LIST_MAX,
                foldhash::fast::RandomState::default(),
            );
            set.extend(self.list.drain(..));
            self.set = Some(set);
        }
        true
    }
}

/// A run of `left` more nodes at tree depth `depth`.
struct Run {
    items: Vec<Node>,
    left: usize,
    depth: usize,
}

impl Run {
    fn step(&self) -> Need {
        if self.left == 0 {
            Need::Done
        } else {
            Need::Node(self.depth)
        }
    }

    fn accept(&mut self, node: Node) {
        self.items.push(node);
        self.left -= 1;
    }

    /// The path segment of the node being decoded.
    fn position(&self) -> String {
        format!("[{}]", self.items.len())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Dict keys: any hashable node.
    Nodes,
    /// Attribute names: text.
    Text,
}

/// `[key, value]` entries of a dict or an attribute dict.
struct Entries<'a> {
    keys: Keys,
    nodes: Vec<(Node, Node)>,
    texts: Vec<(String, Node)>,
    /// The key of the entry whose value is being decoded.
    key: Option<Node>,
    left: usize,
    depth: usize,
    seen: KeySet<'a>,
    /// Offset of the `{"dict": ...}` map: where a non-text attribute name is reported.
    wrapper: usize,
}

impl<'a> Entries<'a> {
    fn done(&self) -> usize {
        self.nodes.len() + self.texts.len()
    }

    fn step(&mut self, r: &mut Reader<'_>) -> R<Need> {
        if self.key.is_some() {
            return Ok(Need::Node(self.depth));
        }
        if self.left == 0 {
            return Ok(Need::Done);
        }
        let entry_at = r.pos();
        match r.next()? {
            Token::Array(2) => Ok(Need::Node(self.depth)),
            other => Err(super::at_index(self.done())(SchemaError::new(
                entry_at,
                if matches!(other, Token::Array(_)) {
                    "a dict entry must be a [key, value] pair"
                } else {
                    "expected an array"
                },
            ))),
        }
    }

    /// Takes a completed key or value; `encoding` is its canonical encoding and `start` its
    /// offset.
    fn accept(&mut self, node: Node, start: usize, encoding: &'a [u8]) -> R<()> {
        let Some(key) = self.key.take() else {
            let i = super::at_index(self.done());
            match self.keys {
                Keys::Text if !matches!(node, Node::Str(_)) => {
                    return Err(SchemaError::new(
                        self.wrapper,
                        format!("attribute names must be text, found {}", node.kind_name()),
                    ));
                }
                Keys::Nodes if !node.is_hashable() => {
                    return Err(i(SchemaError::new(
                        start,
                        format!("a {} cannot be a dict key", node.kind_name()),
                    )));
                }
                _ => {}
            }
            if !self.seen.insert(&node, encoding) {
                return Err(i(SchemaError::new(
                    start,
                    "duplicate dict key: equal in Python to an earlier key",
                )));
            }
            self.key = Some(node);
            return Ok(());
        };
        match (self.keys, key) {
            (Keys::Text, Node::Str(name)) => self.texts.push((name, node)),
            (_, key) => self.nodes.push((key, node)),
        }
        self.left -= 1;
        Ok(())
    }

    /// The path segment of the node being decoded: the index of its entry while the key is
    /// decoded, the key once the value is.
    fn position(&self) -> String {
        match &self.key {
            Some(key) => key_segment(key),
            None => format!("[{}]", self.done()),
        }
    }
}

#[derive(Clone, Copy)]
enum SeqKind {
    List,
    Tuple,
    Set,
    FrozenSet,
}

impl SeqKind {
    fn node(self, items: Vec<Node>) -> Node {
        match self {
            SeqKind::List => Node::List(items),
            SeqKind::Tuple => Node::Tuple(items),
            SeqKind::Set => Node::Set(items),
            SeqKind::FrozenSet => Node::FrozenSet(items),
        }
    }

    fn name(self) -> Option<&'static str> {
        match self {
            SeqKind::List => None,
            SeqKind::Tuple => Some("tuple"),
            SeqKind::Set => Some("set"),
            SeqKind::FrozenSet => Some("frozenset"),
        }
    }
}

/// A container node being decoded.
enum Frame<'a> {
    Seq(SeqFrame<'a>),
    Dict(DictFrame<'a>),
    Tensor(Box<TensorFrame<'a>>),
    Typed(Box<TypedFrame<'a>>),
    Object(Box<ObjectFrame<'a>>),
}

impl<'a> Frame<'a> {
    fn step(&mut self, d: &mut TreeDecoder<'_, 'a>) -> R<Need> {
        match self {
            Frame::Seq(f) => Ok(f.run.step()),
            Frame::Dict(f) => f.entries.step(d.r),
            Frame::Tensor(f) => f.step(d),
            Frame::Typed(f) => f.step(d),
            Frame::Object(f) => f.step(d),
        }
    }

    /// Takes the completed child node that started at `start`.
    fn accept(&mut self, d: &mut TreeDecoder<'_, 'a>, node: Node, start: usize) -> R<()> {
        let encoding = d.encoding_since(start);
        match self {
            Frame::Seq(f) => {
                if let Some(seen) = &mut f.keys {
                    if !node.is_hashable() {
                        return Err(SchemaError::new(
                            start,
                            format!("a {} cannot be a set element", node.kind_name()),
                        ));
                    }
                    if !seen.insert(&node, encoding) {
                        return Err(SchemaError::new(
                            start,
                            "duplicate set element: equal in Python to an earlier element",
                        ));
                    }
                }
                f.run.accept(node);
                Ok(())
            }
            Frame::Dict(f) => f.entries.accept(node, start, encoding),
            Frame::Tensor(f) => match &mut f.attrs {
                Some(attrs) => attrs.accept(node, start, encoding).map_err(at("attrs")),
                None => unreachable!("a tensor has children only in its attributes"),
            },
            Frame::Typed(f) => f.accept(node, start, encoding),
            Frame::Object(f) => f.accept(node, start, encoding),
        }
    }

    fn finish(self, d: &mut TreeDecoder<'_, 'a>) -> R<Node> {
        match self {
            Frame::Seq(f) => Ok(f.kind.node(f.run.items)),
            Frame::Dict(f) => Ok(Node::Dict(f.entries.nodes)),
            Frame::Tensor(f) => f.finish(d),
            Frame::Typed(f) => f.finish(),
            Frame::Object(f) => f.finish(),
        }
    }

    /// Offset where the node started.
    fn start(&self) -> usize {
        match self {
            Frame::Seq(f) => f.start,
            Frame::Dict(f) => f.start,
            Frame::Tensor(f) => f.head.start,
            Frame::Typed(f) => f.head.start,
            Frame::Object(f) => f.head.start,
        }
    }

    /// The node's own path segment: its kind, for wrapped nodes.
    fn own(&self) -> Option<&'static str> {
        match self {
            Frame::Seq(f) => f.kind.name(),
            Frame::Dict(_) => Some("dict"),
            Frame::Tensor(_) => Some("tensor"),
            Frame::Typed(_) => Some("typed"),
            Frame::Object(_) => Some("object"),
        }
    }

    /// Appends, innermost first, the path from this node to the child being decoded.
    fn child_path(&self, path: &mut Vec<String>) {
        match self {
            Frame::Seq(f) => path.push(f.run.position()),
            Frame::Dict(f) => path.push(f.entries.position()),
            Frame::Tensor(f) => {
                if let Some(attrs) = &f.attrs {
                    path.push(attrs.position());
                }
                path.push("attrs".into());
            }
            Frame::Typed(f) => f.child_path(path),
            Frame::Object(f) => f.child_path(path),
        }
        path.extend(self.own().map(String::from));
    }
}

struct SeqFrame<'a> {
    kind: SeqKind,
    start: usize,
    run: Run,
    /// Set and frozenset elements seen.
    keys: Option<KeySet<'a>>,
}

struct DictFrame<'a> {
    start: usize,
    entries: Entries<'a>,
}

/// Where a wrapped map node's fields are: its start, the offset of the field map, the fields
/// still to read, and the node's depth.
struct Fields {
    start: usize,
    map_at: usize,
    left: usize,
    depth: usize,
}

impl Fields {
    /// Reads the next field name, or `None` when all are read.
    fn next<'a>(&mut self, r: &mut Reader<'a>) -> R<Option<(&'a str, usize)>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        key(r).map(Some)
    }
}

struct TensorFrame<'a> {
    head: Fields,
    blob: Option<(Option<u64>, usize)>,
    kind: TensorKind,
    attrs: Option<Entries<'a>>,
    attrs_done: Vec<(String, Node)>,
    dtype: Option<DType>,
    shape: Option<(Vec<u64>, usize)>,
    requires_grad: bool,
}

impl<'a> TensorFrame<'a> {
    fn new(head: Fields) -> TensorFrame<'a> {
        TensorFrame {
            head,
            blob: None,
            kind: TensorKind::Tensor,
            attrs: None,
            attrs_done: Vec::new(),
            dtype: None,
            shape: None,
            requires_grad: false,
        }
    }

    fn step(&mut self, d: &mut TreeDecoder<'_, 'a>) -> R<Need> {
        loop {
            if let Some(attrs) = &mut self.attrs {
                match attrs.step(d.r).map_err(at("attrs"))? {
                    Need::Done => {
                        let wrapper = attrs.wrapper;
                        self.attrs_done = std::mem::take(&mut attrs.texts);
                        self.attrs = None;
                        if self.attrs_done.is_empty() {
                            return Err(empty(wrapper));
                        }
                    }
                    need => return Ok(need),
                }
            }
            let Some((k, key_at)) = self.head.next(d.r)? else {
                return Ok(Need::Done);
            };
            let value_at = d.r.pos();
            match k {
                "blob" => {
                    let blob = match d.r.next()? {
                        Token::Null => None,
                        Token::Uint(b) => Some(b),
                        _ => {
                            return Err(at("blob")(SchemaError::new(
                                value_at,
                                "blob must be an index or null",
                            )));
                        }
                    };
                    self.blob = Some((blob, value_at));
                }
                "kind" => {
                    self.kind = match text(d.r).map_err(at("kind"))? {
                        "parameter" => TensorKind::Parameter,
                        "ndarray" => TensorKind::NdArray,
                        other => {
                            return Err(at("kind")(SchemaError::new(
                                value_at,
                                format!("unknown tensor kind {other:?}"),
                            )));
                        }
                    };
                }
                "attrs" => {
                    self.attrs = Some(d.attr_dict(self.head.depth).map_err(at("attrs"))?);
                }
                "dtype" => {
                    let name = text(d.r).map_err(at("dtype"))?;
                    self.dtype = Some(DType::from_name(name).ok_or_else(|| {
                        at("dtype")(SchemaError::new(
                            value_at,
                            format!("unknown dtype {name:?}"),
                        ))
                    })?);
                }
                "shape" => {
                    let n = array(d.r).map_err(at("shape"))?;
                    if n > d.max_rank {
                        return Err(SchemaError::limit(
                            value_at,
                            "max_rank",
                            n as u64,
                            d.max_rank as u64,
                        ));
                    }
                    let mut dims = Vec::with_capacity(n);
                    for _ in 0..n {
                        dims.push(uint(d.r).map_err(at("shape"))?);
                    }
                    self.shape = Some((dims, value_at));
                }
                "requires_grad" => {
                    if d.r.next()? != Token::Bool(true) {
                        return Err(at("requires_grad")(SchemaError::new(
                            value_at,
                            "requires_grad must be absent or true",
                        )));
                    }
                    self.requires_grad = true;
                }
                other => return Err(unknown_field(key_at, other, "tensor")),
            }
        }
    }

    fn finish(self, d: &mut TreeDecoder<'_, 'a>) -> R<Node> {
        let map_at = self.head.map_at;
        let dtype = self.dtype.ok_or_else(|| missing(map_at, "dtype"))?;
        let (shape, shape_at) = self.shape.ok_or_else(|| missing(map_at, "shape"))?;
        let size = dtype.byte_size(&shape).ok_or_else(|| {
            at("shape")(SchemaError::new(shape_at, "tensor byte size exceeds 2^62"))
        })?;
        let (blob, blob_at) = self.blob.ok_or_else(|| missing(map_at, "blob"))?;
        match blob {
            None if size != 0 => {
                return Err(at("blob")(SchemaError::new(
                    blob_at,
                    format!("a tensor of {size} bytes needs a blob"),
                )));
            }
            Some(_) if size == 0 => {
                return Err(at("blob")(SchemaError::new(
                    blob_at,
                    "an empty tensor must have blob null",
                )));
            }
            Some(b) => d.use_blob(b, size, blob_at)?,
            None => {}
        }
        if self.kind == TensorKind::NdArray && (self.requires_grad || !self.attrs_done.is_empty()) {
            return Err(SchemaError::new(
                map_at,
                "an ndarray cannot have requires_grad or attrs",
            ));
        }
        Ok(Node::Tensor(Box::new(Tensor {
            dtype,
            shape,
            // An index beyond usize cannot match a blob: the check against the table fails.
            blob: blob.map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            kind: self.kind,
            requires_grad: self.requires_grad,
            attrs: self.attrs_done,
        })))
    }
}

/// "must be absent rather than empty", for optional fields that hold a container.
fn empty(at: usize) -> Box<SchemaError> {
    SchemaError::new(at, "must be absent rather than empty")
}

/// The registered types of typed values (spec §3.7).
#[derive(Clone, Copy, PartialEq, Eq)]
enum TypeName {
    OrderedDict,
    Counter,
    Namespace,
    Size,
    Dtype,
    Device,
    NumpyScalar,
    Slice,
}

impl TypeName {
    fn from_name(name: &str) -> Option<TypeName> {
        Some(match name {
            "collections.OrderedDict" => TypeName::OrderedDict,
            "collections.Counter" => TypeName::Counter,
            "argparse.Namespace" => TypeName::Namespace,
            "torch.Size" => TypeName::Size,
            "torch.dtype" => TypeName::Dtype,
            "torch.device" => TypeName::Device,
            "numpy.scalar" => TypeName::NumpyScalar,
            "builtins.slice" => TypeName::Slice,
            _ => return None,
        })
    }
}

/// A part of a typed value that holds nodes.
enum TypedPart<'a> {
    Attrs(Entries<'a>),
    /// OrderedDict and Counter items.
    Items(Entries<'a>),
    /// Namespace fields.
    Fields(Entries<'a>),
    Slice(Run),
}

struct TypedFrame<'a> {
    head: Fields,
    type_name: Option<(TypeName, &'a str)>,
    attrs: Vec<(String, Node)>,
    part: Option<TypedPart<'a>>,
    value: Option<Typed>,
}

impl<'a> TypedFrame<'a> {
    fn new(head: Fields) -> TypedFrame<'a> {
        TypedFrame {
            head,
            type_name: None,
            attrs: Vec::new(),
            part: None,
            value: None,
        }
    }

    fn step(&mut self, d: &mut TreeDecoder<'_, 'a>) -> R<Need> {
        loop {
            if let Some(part) = &mut self.part {
                let need = match part {
                    TypedPart::Attrs(e) => e.step(d.r).map_err(at("attrs"))?,
                    TypedPart::Items(e) | TypedPart::Fields(e) => {
                        e.step(d.r).map_err(at("value"))?
                    }
                    TypedPart::Slice(run) => run.step(),
                };
                if let Need::Node(_) = need {
                    return Ok(need);
                }
                self.part_done()?;
            }
            let Some((k, key_at)) = self.head.next(d.r)? else {
                return Ok(Need::Done);
            };
            let value_at = d.r.pos();
            match k {
                "type" => {
                    let name = text(d.r).map_err(at("type"))?;
                    let ty = TypeName::from_name(name).ok_or_else(|| {
                        at("type")(SchemaError::new(
                            value_at,
                            format!("unknown typed value type {name:?}"),
                        ))
                    })?;
                    self.type_name = Some((ty, name));
                }
                "attrs" => {
                    let (ty, name) = self
                        .type_name
                        .ok_or_else(|| missing(self.head.map_at, "type"))?;
                    if !matches!(ty, TypeName::OrderedDict | TypeName::Counter) {
                        return Err(at("attrs")(SchemaError::new(
                            value_at,
                            format!("{name} cannot have attrs"),
                        )));
                    }
                    let attrs = d.attr_dict(self.head.depth).map_err(at("attrs"))?;
                    self.part = Some(TypedPart::Attrs(attrs));
                }
                "value" => {
                    let (ty, name) = self
                        .type_name
                        .ok_or_else(|| missing(self.head.map_at, "type"))?;
                    self.value(d, ty, name, value_at)?;
                }
                other => return Err(unknown_field(key_at, other, "typed value")),
            }
        }
    }

    /// Reads the value of a typed value of type `ty` (named `name`), starting at `value_at`.
    fn value(
        &mut self,
        d: &mut TreeDecoder<'_, 'a>,
        ty: TypeName,
        name: &str,
        value_at: usize,
    ) -> R<()> {
        let bad = |what: &str| {
            at("value")(SchemaError::new(
                value_at,
                format!("{name} value must be {what}"),
            ))
        };
        let depth = self.head.depth;
        match ty {
            TypeName::OrderedDict | TypeName::Counter => {
                if !wrapper_is(d.r, "dict")? {
                    return Err(bad("a dict"));
                }
                let wrapper = d.r.pos();
                let n = array(d.r).map_err(at("value"))?;
                let items = d.entries(n, depth, Keys::Nodes, wrapper)?;
                self.part = Some(TypedPart::Items(items));
            }
            TypeName::Namespace => {
                let fields = d.attr_dict(depth).map_err(at("value"))?;
                self.part = Some(TypedPart::Fields(fields));
            }
            TypeName::Size => {
                if !wrapper_is(d.r, "tuple")? {
                    return Err(bad("a tuple"));
                }
                let n = array(d.r).map_err(at("value"))?;
                let mut dims = Vec::with_capacity(n);
                for _ in 0..n {
                    match d.r.next()? {
                        Token::Uint(dim) => dims.push(dim),
                        _ => return Err(bad("a tuple of non-negative ints")),
                    }
                }
                self.value = Some(Typed::TorchSize(dims));
            }
            TypeName::Dtype => {
                let s = text(d.r).map_err(|_| bad("a dtype name"))?;
                if !dtype::is_torch_dtype_name(s) {
                    return Err(bad("a torch dtype name"));
                }
                self.value = Some(Typed::TorchDtype(s.to_string()));
            }
            TypeName::Device => {
                let s = text(d.r).map_err(|_| bad("a device string"))?;
                if !super::is_device_name(s) {
                    return Err(bad("a device string like cpu or cuda:0"));
                }
                self.value = Some(Typed::TorchDevice(s.to_string()));
            }
            TypeName::NumpyScalar => {
                if array(d.r).map_err(at("value"))? != 2 {
                    return Err(bad("[dtype, bytes]"));
                }
                let dtype_name = text(d.r).map_err(at("value"))?;
                let dtype = DType::from_name(dtype_name)
                    .filter(|t| t.numpy_native())
                    .ok_or_else(|| bad("[numpy dtype, bytes]"))?;
                let raw = bytes(d.r).map_err(at("value"))?;
                if raw.len() as u64 != dtype.itemsize() {
                    return Err(bad("[dtype, bytes] with itemsize bytes"));
                }
                self.value = Some(Typed::NumpyScalar {
                    dtype,
                    bytes: raw.to_vec(),
                });
            }
            TypeName::Slice => {
                if !wrapper_is(d.r, "tuple")? {
                    return Err(bad("a tuple"));
                }
                if array(d.r).map_err(at("value"))? != 3 {
                    return Err(bad("a tuple of 3 nodes"));
                }
                self.part = Some(TypedPart::Slice(d.run(3, depth)?));
            }
        }
        Ok(())
    }

    /// Stores a part whose nodes are all decoded.
    fn part_done(&mut self) -> R<()> {
        let part = self.part.take().expect("a part is being decoded");
        let attrs = std::mem::take(&mut self.attrs);
        self.value = Some(match part {
            TypedPart::Attrs(e) => {
                if e.texts.is_empty() {
                    return Err(empty(e.wrapper));
                }
                self.attrs = e.texts;
                return Ok(());
            }
            TypedPart::Items(e) => match self.type_name {
                Some((TypeName::Counter, _)) => Typed::Counter {
                    items: e.nodes,
                    attrs,
                },
                _ => Typed::OrderedDict {
                    items: e.nodes,
                    attrs,
                },
            },
            TypedPart::Fields(e) => Typed::Namespace(e.texts),
            TypedPart::Slice(run) => {
                let parts: [Node; 3] = run
                    .items
                    .try_into()
                    .unwrap_or_else(|_| unreachable!("a slice run has 3 nodes"));
                Typed::Slice(Box::new(parts))
            }
        });
        Ok(())
    }

    fn accept(&mut self, node: Node, start: usize, encoding: &'a [u8]) -> R<()> {
        match &mut self.part {
            Some(TypedPart::Attrs(e)) => e.accept(node, start, encoding).map_err(at("attrs")),
            Some(TypedPart::Items(e) | TypedPart::Fields(e)) => {
                e.accept(node, start, encoding).map_err(at("value"))
            }
            Some(TypedPart::Slice(run)) => {
                run.accept(node);
                Ok(())
            }
            None => unreachable!("a typed value has children only in a part"),
        }
    }

    fn finish(self) -> R<Node> {
        self.type_name
            .ok_or_else(|| missing(self.head.map_at, "type"))?;
        let value = self
            .value
            .ok_or_else(|| missing(self.head.map_at, "value"))?;
        Ok(Node::Typed(Box::new(value)))
    }

    fn child_path(&self, path: &mut Vec<String>) {
        match &self.part {
            Some(TypedPart::Attrs(e)) => {
                path.push(e.position());
                path.push("attrs".into());
            }
            Some(TypedPart::Items(e) | TypedPart::Fields(e)) => {
                path.push(e.position());
                path.push("value".into());
            }
            Some(TypedPart::Slice(run)) => {
                path.push(run.position());
                path.push("value".into());
            }
            None => {}
        }
    }
}

/// Reads `{name: ` (a one-entry map and its key); `false` if the item is anything else.
fn wrapper_is(r: &mut Reader<'_>, name: &str) -> R<bool> {
    if r.next()? != Token::Map(1) {
        return Ok(false);
    }
    Ok(key(r)?.0 == name)
}

/// A part of an inert object that holds nodes.
enum ObjectPart<'a> {
    Args(Run),
    /// The state: one node, `true` once it is decoded.
    State(bool),
    Kwargs(Entries<'a>),
    DictItems(Entries<'a>),
    ListItems(Run),
}

struct ObjectFrame<'a> {
    head: Fields,
    part: Option<(ObjectPart<'a>, usize)>,
    object: Object,
    have_args: bool,
    have_name: bool,
    have_module: bool,
}

impl<'a> ObjectFrame<'a> {
    fn new(head: Fields) -> ObjectFrame<'a> {
        ObjectFrame {
            head,
            part: None,
            object: Object {
                module: String::new(),
                name: String::new(),
                args: Vec::new(),
                kwargs: Vec::new(),
                state: None,
                list_items: Vec::new(),
                dict_items: Vec::new(),
            },
            have_args: false,
            have_name: false,
            have_module: false,
        }
    }

    fn step(&mut self, d: &mut TreeDecoder<'_, 'a>) -> R<Need> {
        loop {
            if let Some((part, part_at)) = &mut self.part {
                let need = match part {
                    ObjectPart::Args(run) | ObjectPart::ListItems(run) => run.step(),
                    ObjectPart::State(false) => Need::Node(self.head.depth + 1),
                    ObjectPart::State(true) => Need::Done,
                    ObjectPart::Kwargs(e) => e.step(d.r).map_err(at("kwargs"))?,
                    ObjectPart::DictItems(e) => e.step(d.r).map_err(at("dictitems"))?,
                };
                if let Need::Node(_) = need {
                    return Ok(need);
                }
                let part_at = *part_at;
                let (part, _) = self.part.take().expect("a part is being decoded");
                let o = &mut self.object;
                let is_empty = match part {
                    ObjectPart::Args(run) => {
                        o.args = run.items;
                        false
                    }
                    ObjectPart::State(_) => false,
                    ObjectPart::Kwargs(e) => {
                        o.kwargs = e.texts;
                        o.kwargs.is_empty()
                    }
                    ObjectPart::DictItems(e) => {
                        o.dict_items = e.nodes;
                        o.dict_items.is_empty()
                    }
                    ObjectPart::ListItems(run) => {
                        o.list_items = run.items;
                        o.list_items.is_empty()
                    }
                };
                if is_empty {
                    return Err(empty(part_at));
                }
            }
            let Some((k, key_at)) = self.head.next(d.r)? else {
                return Ok(Need::Done);
            };
            let value_at = d.r.pos();
            let depth = self.head.depth;
            let part = match k {
                "args" => {
                    let n = array(d.r).map_err(at("args"))?;
                    self.have_args = true;
                    ObjectPart::Args(d.run(n, depth)?)
                }
                "name" => {
                    self.object.name = qualname(d.r).map_err(at("name"))?;
                    self.have_name = true;
                    continue;
                }
                "state" => {
                    d.child_depth(1, depth)?;
                    ObjectPart::State(false)
                }
                "kwargs" => ObjectPart::Kwargs(d.attr_dict(depth).map_err(at("kwargs"))?),
                "module" => {
                    self.object.module = qualname(d.r).map_err(at("module"))?;
                    self.have_module = true;
                    continue;
                }
                "dictitems" => {
                    let wrapper = d.r.pos();
                    let n = d.dict_wrapper("dictitems")?;
                    ObjectPart::DictItems(
                        d.entries(n, depth, Keys::Nodes, wrapper)
                            .map_err(at("dictitems"))?,
                    )
                }
                "listitems" => {
                    let n = array(d.r).map_err(at("listitems"))?;
                    ObjectPart::ListItems(d.run(n, depth)?)
                }
                other => return Err(unknown_field(key_at, other, "object")),
            };
            self.part = Some((part, value_at));
        }
    }

    fn accept(&mut self, node: Node, start: usize, encoding: &'a [u8]) -> R<()> {
        match &mut self.part {
            Some((ObjectPart::Args(run) | ObjectPart::ListItems(run), _)) => {
                run.accept(node);
                Ok(())
            }
            Some((ObjectPart::State(done), _)) => {
                self.object.state = Some(node);
                *done = true;
                Ok(())
            }
            Some((ObjectPart::Kwargs(e), _)) => {
                e.accept(node, start, encoding).map_err(at("kwargs"))
            }
            Some((ObjectPart::DictItems(e), _)) => {
                e.accept(node, start, encoding).map_err(at("dictitems"))
            }
            None => unreachable!("an object has children only in a part"),
        }
    }

    fn finish(self) -> R<Node> {
        let map_at = self.head.map_at;
        if !self.have_module {
            return Err(missing(map_at, "module"));
        }
        if !self.have_name {
            return Err(missing(map_at, "name"));
        }
        if !self.have_args {
            return Err(missing(map_at, "args"));
        }
        Ok(Node::Object(Box::new(self.object)))
    }

    fn child_path(&self, path: &mut Vec<String>) {
        let (position, field) = match &self.part {
            Some((ObjectPart::Args(run), _)) => (Some(run.position()), "args"),
            Some((ObjectPart::State(_), _)) => (None, "state"),
            Some((ObjectPart::Kwargs(e), _)) => (Some(e.position()), "kwargs"),
            Some((ObjectPart::DictItems(e), _)) => (Some(e.position()), "dictitems"),
            Some((ObjectPart::ListItems(run), _)) => (Some(run.position()), "listitems"),
            None => return,
        };
        path.extend(position);
        path.push(field.into());
    }
}
