//! Canonical encoding of the manifest and of nodes (spec §3). The tree is walked with an explicit
//! stack of tasks, so encoding a deep tree costs heap, not native stack.

use super::{BlobEntry, Digest, Encoding, Manifest, sub_one};
use crate::cbor::{CborWriter, Sink, text_key_order};
use crate::error::WriteError;
use crate::limits::Limits;
use crate::tree::{Int, Node, Object, Tensor, Typed};

pub(crate) fn encode_manifest<S: Sink>(
    w: &mut CborWriter<S>,
    m: &Manifest,
    limits: &Limits,
) -> Result<(), WriteError> {
    w.map(if m.ext.is_empty() { 4 } else { 5 });
    if !m.ext.is_empty() {
        w.text("ext");
        let mut entries: Vec<(&String, &Vec<u8>)> = m.ext.iter().collect();
        entries.sort_by(|a, b| text_key_order(a.0, b.0));
        w.map(entries.len());
        for (k, v) in entries {
            w.text(k);
            w.raw(v);
        }
    }
    w.text("root");
    encode_tree(w, &m.root, limits, "root")?;
    w.text("blobs");
    w.array(m.blobs.len());
    for b in &m.blobs {
        encode_blob(w, b);
    }
    w.text("version");
    w.uint(u64::from(m.version()));
    w.text("metadata");
    let mut entries: Vec<(&String, &String)> = m.metadata.iter().collect();
    entries.sort_by(|a, b| text_key_order(a.0, b.0));
    w.map(entries.len());
    for (k, v) in entries {
        w.text(k);
        w.text(v);
    }
    Ok(())
}

fn encode_digests<S: Sink>(w: &mut CborWriter<S>, digests: &[Digest]) {
    w.array(digests.len());
    for d in digests {
        w.bytes(d);
    }
}

fn encode_blob<S: Sink>(w: &mut CborWriter<S>, b: &BlobEntry) {
    w.map(if b.codec.is_some() { 4 } else { 3 });
    if let Some(c) = &b.codec {
        w.text("codec");
        w.map(5);
        w.text("name");
        match c.encoding {
            Encoding::Zstd { group } => {
                w.text("zstd");
                w.text("group");
                w.uint(u64::from(group));
            }
            // Canonical order puts "frames" before "layout" (same length, bytewise).
            Encoding::Planes { .. } => w.text("planes"),
        }
        w.text("frames");
        w.array(c.frames.len());
        for &f in &c.frames {
            w.uint(f);
        }
        if let Encoding::Planes { layout } = c.encoding {
            w.text("layout");
            w.uint(u64::from(layout.id()));
        }
        w.text("raw_length");
        w.uint(c.raw_length);
        w.text("raw_sha256");
        encode_digests(w, &c.raw_sha256);
    }
    w.text("length");
    w.uint(b.length);
    w.text("offset");
    w.uint(b.offset);
    w.text("sha256");
    encode_digests(w, &b.sha256);
}

pub(crate) fn encode_int<S: Sink>(w: &mut CborWriter<S>, i: &Int) {
    if let Some(v) = i.to_i128() {
        if v >= 0 {
            w.uint(v as u64);
        } else {
            // v in [-2^64, -1]: CBOR stores -1 - v.
            w.nint((-1 - v) as u64);
        }
    } else {
        let (negative, magnitude) = i.to_sign_magnitude();
        if negative {
            w.bignum(true, &sub_one(&magnitude));
        } else {
            w.bignum(false, &magnitude);
        }
    }
}

/// One piece of work of the encoder: a node to encode, the rest of a run of children, or fixed
/// bytes that follow children already scheduled.
enum Task<'n> {
    /// A node at a tree depth.
    Node(&'n Node, usize),
    /// The remaining nodes of an array, at a depth.
    Nodes(std::slice::Iter<'n, Node>, usize),
    /// The remaining `[key, value]` entries of a dict, at a depth.
    Pairs(std::slice::Iter<'n, (Node, Node)>, usize),
    /// The remaining `[name, value]` entries of an attribute dict, at a depth.
    TextPairs(std::slice::Iter<'n, (String, Node)>, usize),
    /// A text string.
    Text(&'n str),
    /// An array head.
    ArrayHead(usize),
    /// `{"dict": [` with the array head for `n` entries.
    DictHead(usize),
    /// The fields of a tensor after its attributes.
    TensorTail(&'n Tensor),
}

/// Encodes a node and everything under it. The root is at depth 1; a node deeper than
/// [`Limits::tree_depth`] is an error naming `path`.
pub(crate) fn encode_tree<S: Sink>(
    w: &mut CborWriter<S>,
    root: &Node,
    limits: &Limits,
    path: &str,
) -> Result<(), WriteError> {
    let max_depth = limits.tree_depth();
    let mut stack = vec![Task::Node(root, 1)];
    while let Some(task) = stack.pop() {
        match task {
            Task::Node(n, depth) => {
                if depth > max_depth {
                    return Err(WriteError::Invalid {
                        what: "tree",
                        path: path.to_string(),
                        detail: format!("nesting deeper than max_tree_depth {max_depth}"),
                    });
                }
                node(w, n, depth + 1, &mut stack);
            }
            Task::Nodes(mut items, depth) => {
                if let Some(n) = items.next() {
                    stack.push(Task::Nodes(items, depth));
                    stack.push(Task::Node(n, depth));
                }
            }
            Task::Pairs(mut pairs, depth) => {
                if let Some((k, v)) = pairs.next() {
                    w.array(2);
                    stack.push(Task::Pairs(pairs, depth));
                    stack.push(Task::Node(v, depth));
                    stack.push(Task::Node(k, depth));
                }
            }
            Task::TextPairs(mut pairs, depth) => {
                if let Some((k, v)) = pairs.next() {
                    w.array(2);
                    w.text(k);
                    stack.push(Task::TextPairs(pairs, depth));
                    stack.push(Task::Node(v, depth));
                }
            }
            Task::Text(s) => w.text(s),
            Task::ArrayHead(n) => w.array(n),
            Task::DictHead(n) => {
                wrap(w, "dict");
                w.array(n);
            }
            Task::TensorTail(t) => tensor_tail(w, t),
        }
    }
    Ok(())
}

fn wrap<S: Sink>(w: &mut CborWriter<S>, kind: &str) {
    w.map(1);
    w.text(kind);
}

/// Writes the head of `n` and schedules its children, which sit at tree depth `d`. Tasks are
/// pushed in reverse order: the last one pushed runs first.
fn node<'n, S: Sink>(w: &mut CborWriter<S>, n: &'n Node, d: usize, stack: &mut Vec<Task<'n>>) {
    match n {
        Node::None => w.null(),
        Node::Bool(b) => w.bool(*b),
        Node::Int(i) => encode_int(w, i),
        Node::Float(f) => w.float(*f),
        Node::Str(s) => w.text(s),
        Node::Bytes(b) => w.bytes(b),
        Node::List(items) => {
            w.array(items.len());
            stack.push(Task::Nodes(items.iter(), d));
        }
        Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
            wrap(w, n.kind_name());
            w.array(items.len());
            stack.push(Task::Nodes(items.iter(), d));
        }
        Node::Dict(pairs) => {
            wrap(w, "dict");
            w.array(pairs.len());
            stack.push(Task::Pairs(pairs.iter(), d));
        }
        Node::ByteArray(b) => {
            wrap(w, "bytearray");
            w.bytes(b);
        }
        Node::Complex(re, im) => {
            wrap(w, "complex");
            w.array(2);
            w.float(*re);
            w.float(*im);
        }
        Node::Tensor(t) => {
            wrap(w, "tensor");
            let fields = 3
                + usize::from(t.kind.name().is_some())
                + usize::from(!t.attrs.is_empty())
                + usize::from(t.requires_grad);
            w.map(fields);
            w.text("blob");
            match t.blob {
                Some(b) => w.uint(b as u64),
                None => w.null(),
            }
            if let Some(kind) = t.kind.name() {
                w.text("kind");
                w.text(kind);
            }
            if t.attrs.is_empty() {
                tensor_tail(w, t);
            } else {
                w.text("attrs");
                wrap(w, "dict");
                w.array(t.attrs.len());
                stack.push(Task::TensorTail(t));
                stack.push(Task::TextPairs(t.attrs.iter(), d));
            }
        }
        Node::Typed(t) => typed(w, t, d, stack),
        Node::Object(o) => object(w, o, d, stack),
        Node::Global(g) => {
            wrap(w, "global");
            w.map(2);
            w.text("name");
            w.text(&g.name);
            w.text("module");
            w.text(&g.module);
        }
    }
}

fn tensor_tail<S: Sink>(w: &mut CborWriter<S>, t: &Tensor) {
    w.text("dtype");
    w.text(t.dtype.name());
    w.text("shape");
    w.array(t.shape.len());
    for &dim in &t.shape {
        w.uint(dim);
    }
    if t.requires_grad {
        w.text("requires_grad");
        w.bool(true);
    }
}

fn typed<'n, S: Sink>(w: &mut CborWriter<S>, t: &'n Typed, d: usize, stack: &mut Vec<Task<'n>>) {
    wrap(w, "typed");
    if let Typed::OrderedDict { items, attrs } | Typed::Counter { items, attrs } = t
        && !attrs.is_empty()
    {
        w.map(3);
        w.text("type");
        w.text(t.type_name());
        w.text("attrs");
        wrap(w, "dict");
        w.array(attrs.len());
        // After the attributes: "value": {"dict": [entries]}.
        stack.push(Task::Pairs(items.iter(), d));
        stack.push(Task::DictHead(items.len()));
        stack.push(Task::Text("value"));
        stack.push(Task::TextPairs(attrs.iter(), d));
        return;
    }
    w.map(2);
    w.text("type");
    w.text(t.type_name());
    w.text("value");
    match t {
        Typed::OrderedDict { items, .. } | Typed::Counter { items, .. } => {
            wrap(w, "dict");
            w.array(items.len());
            stack.push(Task::Pairs(items.iter(), d));
        }
        Typed::Namespace(fields) => {
            wrap(w, "dict");
            w.array(fields.len());
            stack.push(Task::TextPairs(fields.iter(), d));
        }
        Typed::TorchSize(dims) => {
            wrap(w, "tuple");
            w.array(dims.len());
            for &dim in dims {
                w.uint(dim);
            }
        }
        Typed::TorchDtype(s) | Typed::TorchDevice(s) => w.text(s),
        Typed::NumpyScalar { dtype, bytes } => {
            w.array(2);
            w.text(dtype.name());
            w.bytes(bytes);
        }
        Typed::Slice(parts) => {
            wrap(w, "tuple");
            w.array(3);
            stack.push(Task::Nodes(parts.iter(), d));
        }
    }
}

fn object<'n, S: Sink>(w: &mut CborWriter<S>, o: &'n Object, d: usize, stack: &mut Vec<Task<'n>>) {
    wrap(w, "object");
    w.map(
        3 + usize::from(o.state.is_some())
            + usize::from(!o.kwargs.is_empty())
            + usize::from(!o.dict_items.is_empty())
            + usize::from(!o.list_items.is_empty()),
    );
    // Fields in canonical order: args, name, state, kwargs, module, dictitems, listitems. Tasks
    // are pushed last field first.
    if !o.list_items.is_empty() {
        stack.push(Task::Nodes(o.list_items.iter(), d));
        stack.push(Task::ArrayHead(o.list_items.len()));
        stack.push(Task::Text("listitems"));
    }
    if !o.dict_items.is_empty() {
        stack.push(Task::Pairs(o.dict_items.iter(), d));
        stack.push(Task::DictHead(o.dict_items.len()));
        stack.push(Task::Text("dictitems"));
    }
    stack.push(Task::Text(&o.module));
    stack.push(Task::Text("module"));
    if !o.kwargs.is_empty() {
        stack.push(Task::TextPairs(o.kwargs.iter(), d));
        stack.push(Task::DictHead(o.kwargs.len()));
        stack.push(Task::Text("kwargs"));
    }
    if let Some(state) = &o.state {
        stack.push(Task::Node(state, d));
        stack.push(Task::Text("state"));
    }
    stack.push(Task::Text(&o.name));
    stack.push(Task::Text("name"));
    w.text("args");
    w.array(o.args.len());
    stack.push(Task::Nodes(o.args.iter(), d));
}

impl Node {
    /// The node's canonical CBOR encoding, exactly as it appears inside a manifest (spec §3.1).
    ///
    /// Two nodes have the same encoding exactly when they are equal (`==`), so the encoding is a
    /// total order that does not depend on Python's hash randomisation: writers sort set
    /// elements by it to make their output deterministic. Nesting deeper than
    /// [`Limits::tree_depth`] is an error, as in a manifest.
    ///
    /// ```
    /// use tensorseal::{Limits, Node};
    /// let a = Node::Str("a".into()).canonical_bytes(&Limits::default()).unwrap();
    /// assert_eq!(a, [0x61, b'a']);
    /// ```
    pub fn canonical_bytes(&self, limits: &Limits) -> Result<Vec<u8>, WriteError> {
        let mut w = CborWriter::new(Vec::new());
        encode_tree(&mut w, self, limits, "node")?;
        Ok(w.sink)
    }
}
