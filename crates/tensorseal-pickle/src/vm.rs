//! The interpreter: decodes opcodes, keeps the stack, marks and memo, and builds the value graph.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// The VM's maps: SipHash costs more than the rest of an opcode; foldhash is seeded per
/// process, so an input cannot be crafted to collide.
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use crate::compat;
use crate::error::PickleError;
use crate::int::PyInt;
use crate::keys::{KeyTable, NO_KEY};
use crate::limits::Limits;
use crate::opcode::Opcode;
use crate::policy::{self, Known};
use crate::report::{Finding, FindingKind, GlobalName, ScanReport, Verdict};
use crate::storage::StorageResolver;
use crate::text;
use crate::value::{ByteData, CallKind, GlobalId, GlobalRef, Graph, Node, NodeId, ObjectRecord};

pub(crate) type Result<T> = std::result::Result<T, PickleError>;

/// How Python 2 `str` values (STRING, BINSTRING, SHORT_BINSTRING) are decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Py2Strings {
    /// As UTF-8 text, refusing invalid UTF-8 (what `torch.load` does: it passes
    /// `encoding='utf-8'`).
    #[default]
    Utf8,
    /// As latin-1 text (`encoding='latin1'`, what numpy recommends for Python 2 pickles).
    Latin1,
    /// As bytes (`encoding='bytes'`).
    Bytes,
}

/// What the interpreter accepts beyond the defaults.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// Resource limits.
    pub limits: Limits,
    /// Keep calls of unknown globals as inert [`ObjectRecord`]s and unknown globals used as
    /// values as [`Node::Global`], instead of refusing them. Unsafe globals are refused whatever
    /// this says.
    pub keep_unknown_objects: bool,
    /// Decoding of Python 2 strings.
    pub py2_strings: Py2Strings,
    /// Record every opcode executed, with its offset, in [`ScanReport::trace`] (at most
    /// `Limits::max_findings` of them): a disassembly for a verbose `scan`.
    pub trace_opcodes: bool,
    /// Accept bytes after STOP (default: refuse them). Set it when walking a file that holds
    /// more than one pickle or data after the pickle (legacy torch files); leave it unset for a
    /// plain pickle or a zip's `data.pkl`, where trailing bytes are a stacked-pickle trick.
    pub allow_trailing_bytes: bool,
    /// The copyreg extension registry the writer used, as `(code, module, name)`: EXT1/2/4 codes
    /// found here are resolved and judged like any global; others are refused as unsafe.
    pub extension_registry: Vec<(i32, String, String)>,
    /// The tensors of a pre-0.1.10 tar checkpoint, for its object pickle only: a BINPERSID
    /// whose id is an int or a decimal str is looked up here and becomes that tensor
    /// (bounds-checked like a rebuild call), and `('storage', ...)` ids are refused, as they
    /// mean something else to torch's tar reader. Unset (the default), bare-key ids are refused.
    pub tensor_table: Option<Arc<crate::keyed::TensorTable>>,
}

impl Options {
    /// Options with the given limits and everything else default.
    pub fn with_limits(limits: Limits) -> Options {
        Options {
            limits,
            ..Options::default()
        }
    }
}

/// Interprets the pickle that starts at `input[start]` under the policy and returns its value
/// graph. Stops at the first refusal; the graph's [`ScanReport`] lists every global and call,
/// all allowed (or unknown, when opted into).
///
/// `storages` resolves torch storage persistent ids; use [`NoStorages`](crate::NoStorages) for
/// plain pickles. For files holding several pickles back to back (legacy torch files), set
/// [`Options::allow_trailing_bytes`] and call this again at [`Graph::end`].
pub fn load<'a>(
    input: &'a [u8],
    start: usize,
    options: &Options,
    storages: &mut dyn StorageResolver,
) -> Result<Graph<'a>> {
    let mut machine = Machine::new(input, start, options, storages, false)?;
    let root = machine.run()?;
    let graph = machine.finish(root)?;
    if !options.allow_trailing_bytes && graph.end < input.len() {
        return Err(PickleError::TrailingBytes {
            offset: graph.end,
            len: input.len() - graph.end,
        });
    }
    Ok(graph)
}

/// At most this many further pickles are scanned after a pickle with trailing bytes.
const MAX_STACKED_SCANS: usize = 1_000;

/// Interprets the pickle that starts at `input[start]` without stopping at policy refusals, and
/// reports everything it saw. Never fails: parse errors and limits end the scan and are recorded
/// in [`ScanReport::error`]; findings before the error are kept, so a payload followed by garbage
/// is still [`ScanStatus::Unsafe`](crate::ScanStatus::Unsafe).
///
/// Unless [`Options::allow_trailing_bytes`] is set, bytes after STOP are an error
/// ([`PickleError::TrailingBytes`]), and the pickles stacked after this one are scanned too,
/// their findings added to the report, so a payload hidden in a second pickle is seen.
pub fn scan(
    input: &[u8],
    start: usize,
    options: &Options,
    storages: &mut dyn StorageResolver,
) -> ScanReport {
    let mut report = scan_one(input, start, options, storages);
    let Some(end) = report
        .end
        .filter(|&e| e < input.len() && report.error.is_none())
    else {
        return report;
    };
    if options.allow_trailing_bytes {
        return report;
    }
    report.error = Some(PickleError::TrailingBytes {
        offset: end,
        len: input.len() - end,
    });
    let mut next = end;
    for _ in 0..MAX_STACKED_SCANS {
        let more = scan_one(input, next, options, storages);
        report.findings.extend(more.findings);
        report.trace.extend(more.trace);
        report.findings_dropped += more.findings_dropped;
        report.dropped_verdict = report.dropped_verdict.max(more.dropped_verdict);
        report.opcodes += more.opcodes;
        report.protocol = report.protocol.max(more.protocol);
        match more.end {
            Some(e) if more.error.is_none() && e < input.len() => next = e,
            _ => break,
        }
    }
    report
}

fn scan_one(
    input: &[u8],
    start: usize,
    options: &Options,
    storages: &mut dyn StorageResolver,
) -> ScanReport {
    let mut machine = match Machine::new(input, start, options, storages, true) {
        Ok(m) => m,
        Err(e) => {
            return ScanReport {
                start,
                error: Some(e),
                ..ScanReport::default()
            };
        }
    };
    let result = machine
        .run()
        .and_then(|root| machine.validate(root).map(|_| ()));
    let mut report = std::mem::take(&mut machine.report);
    if let Err(e) = result {
        report.error = Some(e);
    }
    report
}

/// The memo: a dense vector for the usual 0, 1, 2, ... indices, a map for anything sparse, so a
/// huge index costs one entry.
#[derive(Default)]
struct Memo {
    dense: Vec<Option<NodeId>>,
    sparse: Map<u64, NodeId>,
    len: usize,
}

const MEMO_DENSE_SLACK: u64 = 4096;

/// The shared small ints are `-SMALL_INT_BIAS..SMALL_INTS - SMALL_INT_BIAS`.
const SMALL_INT_BIAS: i64 = 5;
const SMALL_INTS: usize = 1029;

/// Shared immutable singletons.
#[derive(Clone, Copy)]
pub(crate) enum Singleton {
    None = 0,
    True = 1,
    False = 2,
    EmptyTuple = 3,
}

/// Containers up to this size de-duplicate keys by a linear scan of cached key ids.
const SMALL: usize = 16;

impl Memo {
    fn get(&self, index: u64) -> Option<NodeId> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.dense.get(i).copied().flatten())
            .or_else(|| self.sparse.get(&index).copied())
    }

    /// Stores and returns the new entry count.
    fn put(&mut self, index: u64, value: NodeId) -> usize {
        let dense_len = self.dense.len() as u64;
        // Grow the dense part only while it stays proportional to the entries stored, so a
        // run of PUTs with ever larger indices cannot make it huge.
        let proportional = index < 2 * self.len as u64 + MEMO_DENSE_SLACK;
        if index < dense_len + MEMO_DENSE_SLACK && proportional {
            let i = index as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, None);
            }
            let was_sparse = !self.sparse.is_empty() && self.sparse.remove(&index).is_some();
            if self.dense[i].is_none() && !was_sparse {
                self.len += 1;
            }
            self.dense[i] = Some(value);
        } else if self.sparse.insert(index, value).is_none() {
            self.len += 1;
        }
        self.len
    }
}

/// The seeded 64-bit hash of strs used to index big dicts and storages. Unit tests can make
/// every str collide, to exercise the exact fallback.
#[derive(Default)]
pub(crate) struct StrHasher {
    state: foldhash::quality::RandomState,
    #[cfg(test)]
    collide: bool,
}

impl StrHasher {
    pub(crate) fn hash_one(&self, s: &str) -> u64 {
        #[cfg(test)]
        if self.collide {
            return 0;
        }
        self.state.hash_one(s)
    }
}

/// A map keyed by strs, indexed by a seeded 64-bit hash of the str (cheap to grow: the table
/// rehashes integers, not strings); the str is compared on lookup and true collisions go to an
/// exact side map.
pub(crate) struct StrMap<V> {
    by_hash: Map<u64, (Arc<str>, V)>,
    collisions: Map<Arc<str>, V>,
    hasher: StrHasher,
}

impl<V> Default for StrMap<V> {
    fn default() -> Self {
        StrMap {
            by_hash: Map::default(),
            collisions: Map::default(),
            hasher: StrHasher::default(),
        }
    }
}

impl<V> StrMap<V> {
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        match self.by_hash.get(&self.hasher.hash_one(key)) {
            Some((k, v)) if k.as_ref() == key => Some(v),
            Some(_) => self.collisions.get(key),
            None => None,
        }
    }

    pub(crate) fn get_or_insert_with(&mut self, key: Arc<str>, make: impl FnOnce() -> V) -> &mut V {
        use std::collections::hash_map::Entry;
        match self.by_hash.entry(self.hasher.hash_one(key.as_ref())) {
            Entry::Occupied(e) if e.get().0 == key => &mut e.into_mut().1,
            Entry::Occupied(_) => self.collisions.entry(key).or_insert_with(make),
            Entry::Vacant(e) => &mut e.insert((key, make())).1,
        }
    }
}

/// What is known about one storage key: the handler confirmed it once; its nodes (the plain
/// storage and each legacy view of it) are shared by every persistent id naming them.
pub(crate) struct StorageEntry {
    pub(crate) kind: crate::storage::StorageKind,
    pub(crate) numel: u64,
    pub(crate) plain: Option<NodeId>,
    pub(crate) views: Map<crate::storage::StorageView, NodeId>,
}

pub(crate) struct Machine<'a, 'o> {
    pub(crate) input: &'a [u8],
    pos: usize,
    frame_end: Option<usize>,
    pub(crate) opts: &'o Options,
    pub(crate) limits: &'o Limits,
    pub(crate) scan: bool,
    pub(crate) storages: &'o mut dyn StorageResolver,
    pub(crate) nodes: Vec<Node>,
    pub(crate) offsets: Vec<usize>,
    /// Canonical key ids of the nodes used as keys (other than str dict keys) or set elements.
    pub(crate) key_cache: Map<u32, u32>,
    pub(crate) keys: KeyTable,
    /// (container, slot, key id) -> position, for dict and set de-duplication.
    pub(crate) entries: Map<(u32, u8, u32), u32>,
    /// (container, slot, seeded hash of a str key) -> position, for containers past SMALL;
    /// the key at that position is compared, and true collisions go to `str_collisions`.
    pub(crate) str_entries: Map<(u32, u8, u64), u32>,
    pub(crate) str_collisions: Map<(u32, u8, Arc<str>), u32>,
    pub(crate) str_hasher: StrHasher,
    stack: Vec<NodeId>,
    marks: Vec<usize>,
    memo: Memo,
    protocol: u8,
    pub(crate) globals: Vec<GlobalRef>,
    global_index: Map<(Box<str>, Box<str>), GlobalId>,
    pub(crate) storages_by_key: StrMap<StorageEntry>,
    /// Tensor nodes made from [`Options::tensor_table`], by key: one node per key, as torch
    /// returns the same tensor object for every reference.
    pub(crate) keyed_tensors: Map<i64, NodeId>,
    /// The undecoded bytes of strs read from Python 2 string opcodes.
    pub(crate) py2_raw: Map<u32, ByteData>,
    pub(crate) report: ScanReport,
    pub(crate) materialized: u64,
    pub(crate) tensors: u64,
    pub(crate) tensor_bytes: u64,
    pub(crate) op_offset: usize,
    pub(crate) op: Opcode,
    singletons: [u32; 4],
    small_ints: Vec<u32>,
}

impl<'a, 'o> Machine<'a, 'o> {
    fn new(
        input: &'a [u8],
        start: usize,
        opts: &'o Options,
        storages: &'o mut dyn StorageResolver,
        scan: bool,
    ) -> Result<Machine<'a, 'o>> {
        if start > input.len() {
            return Err(PickleError::StartOutOfRange {
                start,
                len: input.len(),
            });
        }
        // Pickles are dense (a node every 4-8 bytes): reserving up front avoids re-copying
        // the arena as it grows. Unused reservation is only address space.
        let reserve = ((input.len() - start) / 8)
            .min(opts.limits.max_nodes)
            .min(1 << 23);
        Ok(Machine {
            input,
            pos: start,
            frame_end: None,
            opts,
            limits: &opts.limits,
            scan,
            storages,
            nodes: Vec::with_capacity(reserve),
            offsets: Vec::with_capacity(reserve),
            key_cache: Map::default(),
            keys: KeyTable::default(),
            entries: Map::default(),
            str_entries: Map::default(),
            str_collisions: Map::default(),
            str_hasher: StrHasher::default(),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: Memo::default(),
            protocol: 0,
            globals: Vec::new(),
            global_index: Map::default(),
            storages_by_key: StrMap::default(),
            keyed_tensors: Map::default(),
            py2_raw: Map::default(),
            report: ScanReport {
                start,
                ..ScanReport::default()
            },
            materialized: 0,
            tensors: 0,
            tensor_bytes: 0,
            op_offset: start,
            op: Opcode::Proto,
            singletons: [NO_KEY; 4],
            small_ints: vec![NO_KEY; SMALL_INTS],
        })
    }

    // ----- errors and limits -------------------------------------------------------------

    pub(crate) fn limit(&self, what: &'static str, value: u64, limit: u64) -> Result<()> {
        if value > limit {
            Err(PickleError::LimitExceeded {
                what,
                value,
                limit,
                offset: self.op_offset,
            })
        } else {
            Ok(())
        }
    }

    pub(crate) fn invalid(&self, reason: impl Into<Cow<'static, str>>) -> PickleError {
        PickleError::InvalidArgument {
            offset: self.op_offset,
            opcode: self.op,
            reason: reason.into(),
        }
    }

    pub(crate) fn mismatch(&self, expected: &'static str, found: NodeId) -> PickleError {
        PickleError::TypeMismatch {
            offset: self.op_offset,
            opcode: self.op,
            expected,
            found: self.nodes[found.index()].type_name(),
        }
    }

    pub(crate) fn refused(
        &self,
        verdict: Verdict,
        reason: impl Into<Cow<'static, str>>,
    ) -> PickleError {
        PickleError::Refused {
            offset: self.op_offset,
            opcode: self.op,
            verdict,
            reason: reason.into(),
        }
    }

    pub(crate) fn materialize(&mut self, bytes: u64) -> Result<()> {
        self.materialized = self.materialized.saturating_add(bytes);
        self.limit(
            "max_materialized_bytes",
            self.materialized,
            self.limits.max_materialized_bytes,
        )
    }

    pub(crate) fn finding(
        &mut self,
        kind: FindingKind,
        verdict: Verdict,
        reason: impl Into<Cow<'static, str>>,
    ) {
        if self.report.findings.len() >= self.limits.max_findings {
            self.report.findings_dropped += 1;
            self.report.dropped_verdict = self.report.dropped_verdict.max(verdict);
            return;
        }
        self.report.findings.push(Finding {
            offset: self.op_offset,
            opcode: self.op,
            kind,
            verdict,
            reason: reason.into(),
        });
    }

    // ----- input ----------------------------------------------------------------------------

    #[inline]
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        let available = (self.input.len() - self.pos) as u64;
        if n > available {
            return Err(PickleError::Truncated {
                offset: self.op_offset,
                opcode: self.current_op(),
                what,
                needed: n,
                available,
            });
        }
        let n = n as usize;
        if let Some(end) = self.frame_end
            && self.pos + n > end
        {
            return Err(PickleError::FrameViolation {
                offset: self.op_offset,
                opcode: self.current_op(),
                reason: "an opcode crosses the end of its frame",
            });
        }
        let bytes = &self.input[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// The opcode being executed, once its byte has been read.
    fn current_op(&self) -> Option<Opcode> {
        if self.pos > self.op_offset {
            Opcode::from_byte(self.input[self.op_offset])
        } else {
            None
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let b = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A `\n`-terminated line, without the newline.
    fn line(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let rest = &self.input[self.pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated {
                offset: self.op_offset,
                opcode: Some(self.op),
                what,
                needed: rest.len() as u64 + 1,
                available: rest.len() as u64,
            });
        };
        let line = self.take(nl as u64 + 1, what)?;
        Ok(&line[..nl])
    }

    fn len_checked(&self, len: u64, limit: u64, what: &'static str) -> Result<()> {
        let available = (self.input.len() - self.pos) as u64;
        if len > available {
            return Err(PickleError::Truncated {
                offset: self.op_offset,
                opcode: Some(self.op),
                what,
                needed: len,
                available,
            });
        }
        self.limit(what, len, limit)
    }

    // ----- nodes and stack ----------------------------------------------------------------

    pub(crate) fn new_node(&mut self, node: Node) -> Result<NodeId> {
        let id = self.nodes.len();
        if id >= self.limits.max_nodes || id >= u32::MAX as usize - 1 {
            return Err(PickleError::LimitExceeded {
                what: "max_nodes",
                value: id as u64 + 1,
                limit: self.limits.max_nodes as u64,
                offset: self.op_offset,
            });
        }
        self.nodes.push(node);
        self.offsets.push(self.op_offset);
        Ok(NodeId(id as u32))
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    fn push(&mut self, id: NodeId) -> Result<()> {
        if self.stack.len() >= self.limits.max_stack {
            return Err(PickleError::LimitExceeded {
                what: "max_stack",
                value: self.stack.len() as u64 + 1,
                limit: self.limits.max_stack as u64,
                offset: self.op_offset,
            });
        }
        self.stack.push(id);
        Ok(())
    }

    fn push_new(&mut self, node: Node) -> Result<()> {
        let id = self.new_node(node)?;
        self.push(id)
    }

    /// None, True, False, the empty tuple and the ints -5..=1023 are immutable and shared, as in
    /// CPython: one node each, created at their first occurrence. Most values of a state dict
    /// are such small ints (sizes, strides, offsets), so this halves the arena.
    pub(crate) fn singleton(&mut self, which: Singleton) -> Result<NodeId> {
        let slot = which as usize;
        if self.singletons[slot] != NO_KEY {
            return Ok(NodeId(self.singletons[slot]));
        }
        let id = self.new_node(match which {
            Singleton::None => Node::None,
            Singleton::True => Node::Bool(true),
            Singleton::False => Node::Bool(false),
            Singleton::EmptyTuple => Node::Tuple(Vec::new()),
        })?;
        self.singletons[slot] = id.0;
        Ok(id)
    }

    fn push_singleton(&mut self, which: Singleton) -> Result<()> {
        let id = self.singleton(which)?;
        self.push(id)
    }

    fn push_int(&mut self, value: PyInt) -> Result<()> {
        if let PyInt::Small(v) = value
            && let Some(slot) = v
                .checked_add(SMALL_INT_BIAS)
                .and_then(|b| usize::try_from(b).ok())
                .filter(|&s| s < self.small_ints.len())
        {
            if self.small_ints[slot] == NO_KEY {
                let id = self.new_node(Node::Int(value))?;
                self.small_ints[slot] = id.0;
            }
            return self.push(NodeId(self.small_ints[slot]));
        }
        self.push_new(Node::Int(value))
    }

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn underflow(&self) -> PickleError {
        PickleError::StackUnderflow {
            offset: self.op_offset,
            opcode: self.op,
        }
    }

    fn pop(&mut self) -> Result<NodeId> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow());
        }
        Ok(self.stack.pop().unwrap_or(NodeId(0)))
    }

    fn top(&self) -> Result<NodeId> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow());
        }
        Ok(self.stack[self.stack.len() - 1])
    }

    fn pop_mark(&mut self) -> Result<Vec<NodeId>> {
        let Some(mark) = self.marks.pop() else {
            return Err(PickleError::MissingMark {
                offset: self.op_offset,
                opcode: self.op,
            });
        };
        let items = self.stack.split_off(mark);
        self.limit(
            "max_container_len",
            items.len() as u64,
            self.limits.max_container_len as u64,
        )?;
        Ok(items)
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<NodeId>> {
        if self.stack.len() < self.fence() + n {
            return Err(self.underflow());
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    // ----- dict and set semantics -----------------------------------------------------------

    pub(crate) fn key_id(&mut self, key: NodeId) -> Result<u32> {
        let id = self
            .keys
            .key(&self.nodes, &mut self.key_cache, self.input, key)
            .map_err(|type_name| PickleError::TypeMismatch {
                offset: self.op_offset,
                opcode: self.op,
                expected: "a hashable key",
                found: type_name,
            })?;
        Ok(id)
    }

    /// `container[key] = value` with Python's rules: an equal key keeps its first position and
    /// object and takes the new value. `slot` separates a container's items (0) from its
    /// attributes (1).
    pub(crate) fn map_insert(
        &mut self,
        container: NodeId,
        slot: u8,
        key: NodeId,
        value: NodeId,
    ) -> Result<()> {
        use std::collections::hash_map::Entry;
        // str keys (nearly all keys) are compared as strings; other keys by canonical key id.
        let str_key = match self.node(key) {
            Node::Str(s) => Some(s.clone()),
            _ => None,
        };
        let kid = match str_key {
            Some(_) => NO_KEY,
            None => self.key_id(key)?,
        };
        let max = self.limits.max_container_len;
        let mut pairs = match (&mut self.nodes[container.index()], slot) {
            (Node::Dict(p) | Node::Counter(p) | Node::Namespace(p), 0) => std::mem::take(p),
            (Node::OrderedDict(o), 0) => std::mem::take(&mut o.items),
            (Node::OrderedDict(o), _) => std::mem::take(&mut o.attributes),
            (Node::Namespace(p), _) => std::mem::take(p),
            _ => return Err(self.mismatch("a dict", container)),
        };
        let nodes = &self.nodes;
        let cache = &self.key_cache;
        let same = |k: NodeId| match (&str_key, &nodes[k.index()]) {
            (Some(s), Node::Str(t)) => s == t,
            (Some(_), _) => false,
            (None, _) => cache.get(&k.0) == Some(&kid),
        };
        // Small containers are searched linearly; larger ones through an index, which they
        // join when they outgrow SMALL.
        let len = pairs.len() as u32;
        let existing = if pairs.len() <= SMALL {
            pairs.iter().position(|&(k, _)| same(k)).map(|p| p as u32)
        } else {
            // One hash per insert: the entry is claimed for the next position up front.
            match &str_key {
                Some(s) => {
                    let h = self.str_hasher.hash_one(s.as_ref());
                    match self.str_entries.entry((container.0, slot, h)) {
                        Entry::Occupied(e) if same(pairs[*e.get() as usize].0) => Some(*e.get()),
                        Entry::Occupied(_) => {
                            // A 64-bit hash collision between different strings: rare (the
                            // hash is seeded per process), handled exactly.
                            match self.str_collisions.entry((container.0, slot, s.clone())) {
                                Entry::Occupied(e) => Some(*e.get()),
                                Entry::Vacant(e) => {
                                    e.insert(len);
                                    None
                                }
                            }
                        }
                        Entry::Vacant(e) => {
                            e.insert(len);
                            None
                        }
                    }
                }
                None => match self.entries.entry((container.0, slot, kid)) {
                    Entry::Occupied(e) => Some(*e.get()),
                    Entry::Vacant(e) => {
                        e.insert(len);
                        None
                    }
                },
            }
        };
        let result = match existing {
            Some(pos) => {
                pairs[pos as usize].1 = value;
                Ok(())
            }
            None if pairs.len() >= max => Err(PickleError::LimitExceeded {
                what: "max_container_len",
                value: pairs.len() as u64 + 1,
                limit: max as u64,
                offset: self.op_offset,
            }),
            None => {
                pairs.push((key, value));
                if pairs.len() == SMALL + 1 {
                    // Outgrew the linear scan: index every key.
                    for (pos, &(k, _)) in pairs.iter().enumerate() {
                        match &self.nodes[k.index()] {
                            Node::Str(s) => {
                                let h = self.str_hasher.hash_one(s.as_ref());
                                match self.str_entries.entry((container.0, slot, h)) {
                                    Entry::Vacant(e) => {
                                        e.insert(pos as u32);
                                    }
                                    Entry::Occupied(_) => {
                                        self.str_collisions
                                            .insert((container.0, slot, s.clone()), pos as u32);
                                    }
                                }
                            }
                            _ => {
                                self.entries.insert(
                                    (
                                        container.0,
                                        slot,
                                        self.key_cache.get(&k.0).copied().unwrap_or(NO_KEY),
                                    ),
                                    pos as u32,
                                );
                            }
                        }
                    }
                }
                Ok(())
            }
        };
        match (&mut self.nodes[container.index()], slot) {
            (Node::Dict(p) | Node::Counter(p) | Node::Namespace(p), 0) => *p = pairs,
            (Node::OrderedDict(o), 0) => o.items = pairs,
            (Node::OrderedDict(o), _) => o.attributes = pairs,
            (Node::Namespace(p), _) => *p = pairs,
            _ => {}
        }
        result
    }

    pub(crate) fn set_insert(&mut self, container: NodeId, item: NodeId) -> Result<()> {
        let kid = self.key_id(item)?;
        let max = self.limits.max_container_len;
        let items = match &mut self.nodes[container.index()] {
            Node::Set(v) | Node::FrozenSet(v) => v,
            _ => return Err(self.mismatch("a set", container)),
        };
        let cache = &self.key_cache;
        let present = if items.len() <= SMALL {
            items.iter().any(|k| cache.get(&k.0) == Some(&kid))
        } else {
            self.entries.contains_key(&(container.0, 0, kid))
        };
        if present {
            return Ok(());
        }
        if items.len() >= max {
            return Err(PickleError::LimitExceeded {
                what: "max_container_len",
                value: items.len() as u64 + 1,
                limit: max as u64,
                offset: self.op_offset,
            });
        }
        items.push(item);
        if items.len() == SMALL + 1 {
            for (pos, k) in items.iter().enumerate() {
                let k = cache.get(&k.0).copied().unwrap_or(NO_KEY);
                self.entries.insert((container.0, 0, k), pos as u32);
            }
        } else if items.len() > SMALL + 1 {
            self.entries
                .insert((container.0, 0, kid), items.len() as u32 - 1);
        }
        Ok(())
    }

    pub(crate) fn new_dict_from_pairs(&mut self, pairs: &[(NodeId, NodeId)]) -> Result<NodeId> {
        let dict = self.new_node(Node::Dict(Vec::with_capacity(pairs.len())))?;
        for &(k, v) in pairs {
            self.map_insert(dict, 0, k, v)?;
        }
        Ok(dict)
    }

    fn new_set(&mut self, frozen: bool, items: &[NodeId]) -> Result<NodeId> {
        let node = if frozen {
            Node::FrozenSet(Vec::with_capacity(items.len()))
        } else {
            Node::Set(Vec::with_capacity(items.len()))
        };
        let set = self.new_node(node)?;
        for &item in items {
            self.set_insert(set, item)?;
        }
        Ok(set)
    }

    pub(crate) fn new_set_from(&mut self, frozen: bool, items: &[NodeId]) -> Result<NodeId> {
        self.new_set(frozen, items)
    }

    // ----- globals ---------------------------------------------------------------------------

    pub(crate) fn static_global(&mut self, module: &str, name: &str) -> GlobalId {
        self.intern_global(module, name)
    }

    fn intern_global(&mut self, module: &str, name: &str) -> GlobalId {
        if let Some(&id) = self.global_index.get(&(module.into(), name.into())) {
            return id;
        }
        let class = policy::classify(module, name);
        let id = GlobalId(self.globals.len() as u32);
        self.globals.push(GlobalRef {
            name: GlobalName {
                module: Arc::from(module),
                name: Arc::from(name),
            },
            verdict: class.verdict,
            reason: class.reason,
            known: class.known,
        });
        self.global_index.insert((module.into(), name.into()), id);
        id
    }

    /// Applies Python 2 remapping (protocol < 3) and classifies. For protocol >= 3 the
    /// remapped spelling is still checked for unsafety: `__builtin__.eval` is unsafe even where
    /// Python would fail to import it.
    fn resolve_global(&mut self, module: &str, name: &str) -> GlobalId {
        let mapped = compat::map_name(module, name);
        if self.protocol < 3 {
            if let Some((m, n)) = mapped {
                return self.intern_global(m, n.unwrap_or(name));
            }
            return self.intern_global(module, name);
        }
        let id = self.intern_global(module, name);
        if let Some((m, n)) = mapped
            && let Some(reason) = policy::unsafe_reason(m, n.unwrap_or(name))
        {
            let g = &mut self.globals[id.0 as usize];
            g.verdict = Verdict::Unsafe;
            g.reason = reason;
            g.known = None;
        }
        id
    }

    pub(crate) fn global_name(&self, id: GlobalId) -> GlobalName {
        self.globals[id.0 as usize].name.clone()
    }

    pub(crate) fn global_ref(&self, id: GlobalId) -> &GlobalRef {
        &self.globals[id.0 as usize]
    }

    fn refuse_global(&self, id: GlobalId) -> PickleError {
        let g = &self.globals[id.0 as usize];
        PickleError::GlobalRefused {
            offset: self.op_offset,
            opcode: self.op,
            module: g.name.module.to_string(),
            name: g.name.name.to_string(),
            verdict: g.verdict,
            reason: Cow::Borrowed(g.reason),
        }
    }

    /// Records a global reference and decides whether interpretation may go on with it.
    fn global_reference(&mut self, id: GlobalId) -> Result<NodeId> {
        let g = self.global_ref(id).clone();
        self.finding(FindingKind::Global(g.name.clone()), g.verdict, g.reason);
        match g.verdict {
            Verdict::Unsafe if !self.scan => Err(self.refuse_global(id)),
            Verdict::Unknown if !self.scan && !self.opts.keep_unknown_objects => {
                Err(self.refuse_global(id))
            }
            Verdict::Allowed => match g.known {
                Some(Known::Dtype(d)) => self.new_node(Node::TorchDtype(d)),
                Some(Known::QScheme(q)) => self.new_node(Node::TorchQScheme(q)),
                _ => self.new_node(Node::Global(id)),
            },
            _ => self.new_node(Node::Global(id)),
        }
    }

    fn utf8_line(&self, line: &[u8]) -> Result<String> {
        text::utf8(line)
            .map(str::to_owned)
            .map_err(|r| self.invalid(r))
    }

    // ----- calls -----------------------------------------------------------------------------

    /// An inert record of an unknown call, or a refusal.
    pub(crate) fn unknown_call(
        &mut self,
        callee: NodeId,
        call: CallKind,
        args: NodeId,
        kwargs: Option<NodeId>,
    ) -> Result<NodeId> {
        if !self.scan && !self.opts.keep_unknown_objects {
            let reason = match self.node(callee) {
                Node::Global(g) => {
                    format!("call of unknown global {}", self.globals[g.0 as usize].name)
                }
                other => format!("call of a {} value", other.type_name()),
            };
            return Err(self.refused(Verdict::Unknown, reason));
        }
        self.new_node(Node::Object(Box::new(ObjectRecord {
            callee,
            call,
            args,
            kwargs,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        })))
    }

    /// Records a call of a global and returns its verdict and what it is.
    pub(crate) fn call_finding(&mut self, gid: GlobalId) -> (Verdict, Option<Known>) {
        let g = &self.globals[gid.0 as usize];
        let (verdict, known, reason, name) = (g.verdict, g.known, g.reason, g.name.clone());
        self.finding(FindingKind::Call(name), verdict, reason);
        (verdict, known)
    }

    fn call(
        &mut self,
        callee: NodeId,
        args: NodeId,
        kwargs: Option<NodeId>,
        call: CallKind,
    ) -> Result<NodeId> {
        let gid = match self.node(callee) {
            Node::Global(g) => *g,
            Node::Refused => return self.new_node(Node::Refused),
            Node::Object(_) => {
                self.finding(
                    FindingKind::CallOnValue,
                    Verdict::Unknown,
                    "call of an unknown object (its class's __call__)",
                );
                return self.unknown_call(callee, call, args, kwargs);
            }
            _ => {
                self.finding(
                    FindingKind::CallOnValue,
                    Verdict::Unknown,
                    "call of a value that is not a class or function",
                );
                return Err(self.mismatch("a class or function", callee));
            }
        };
        if !matches!(self.node(args), Node::Tuple(_)) {
            return Err(self.mismatch("an argument tuple", args));
        }
        let (verdict, known) = self.call_finding(gid);
        match (verdict, known) {
            (Verdict::Allowed, Some(known)) => self.known_call(known, gid, args, kwargs, call),
            (Verdict::Unsafe, _) => {
                if self.scan {
                    self.new_node(Node::Refused)
                } else {
                    Err(self.refuse_global(gid))
                }
            }
            _ => self.unknown_call(callee, call, args, kwargs),
        }
    }

    // ----- the loop ----------------------------------------------------------------------------

    fn run(&mut self) -> Result<NodeId> {
        let limits = self.limits;
        loop {
            self.op_offset = self.pos;
            self.report.opcodes += 1;
            if self.report.opcodes > limits.max_opcodes {
                return Err(PickleError::LimitExceeded {
                    what: "max_opcodes",
                    value: self.report.opcodes,
                    limit: limits.max_opcodes,
                    offset: self.op_offset,
                });
            }
            // A frame ends between opcodes, never inside one: an opcode that starts in a frame
            // must end in it (CPython 3.13+), so this is the only place a frame closes.
            if self.frame_end == Some(self.pos) {
                self.frame_end = None;
            }
            // Fast path for the opcode byte; the general path reports truncation.
            let byte = match self.input.get(self.pos) {
                Some(&b) => {
                    self.pos += 1;
                    b
                }
                None => self.array::<1>("an opcode (the pickle ends without STOP)")?[0],
            };
            let Some(op) = Opcode::from_byte(byte) else {
                return Err(PickleError::UnknownOpcode {
                    offset: self.op_offset,
                    byte,
                });
            };
            self.op = op;
            if self.opts.trace_opcodes && self.report.trace.len() < limits.max_findings {
                self.report.trace.push((self.op_offset, op));
            }
            if let Some(root) = self.step(op)? {
                return Ok(root);
            }
        }
    }

    fn memo_get(&mut self, index: u64) -> Result<()> {
        let id = self.memo.get(index).ok_or(PickleError::MemoMissing {
            offset: self.op_offset,
            opcode: self.op,
            index,
        })?;
        self.push(id)
    }

    fn memo_put(&mut self, index: u64) -> Result<()> {
        let top = self.top()?;
        let len = self.memo.put(index, top);
        self.limit(
            "max_memo_entries",
            len as u64,
            self.limits.max_memo_entries as u64,
        )
    }

    fn py2_string(&mut self, data: ByteData) -> Result<()> {
        let bytes: &[u8] = match &data {
            ByteData::Input(r) => &self.input[r.clone()],
            ByteData::Owned(b) => b,
        };
        let node = match self.opts.py2_strings {
            Py2Strings::Bytes => Node::Bytes(data.clone()),
            Py2Strings::Utf8 => {
                let s = text::utf8(bytes).map_err(|_| {
                    self.invalid(
                        "Python 2 string is not UTF-8 (load with Py2Strings::Latin1 or Bytes)",
                    )
                })?;
                let len = s.len() as u64;
                let node = Node::Str(s.into());
                self.materialize(len)?;
                node
            }
            Py2Strings::Latin1 => {
                let s: String = bytes.iter().map(|&b| char::from(b)).collect();
                self.materialize(s.len() as u64)?;
                Node::Str(s.into())
            }
        };
        let is_str = matches!(node, Node::Str(_));
        let id = self.new_node(node)?;
        if is_str {
            // numpy reads Python 2 array data from such strs: keep the exact bytes.
            self.py2_raw.insert(id.0, data);
        }
        self.push(id)
    }

    fn str_value(&mut self, s: &str) -> Result<()> {
        self.limit("max_str_len", s.len() as u64, self.limits.max_str_len)?;
        self.materialize(s.len() as u64)?;
        self.push_new(Node::Str(s.into()))
    }

    fn binary_str(&mut self, len: u64) -> Result<()> {
        self.len_checked(len, self.limits.max_str_len, "max_str_len")?;
        let bytes = self.take(len, "string bytes")?;
        let s = text::utf8(bytes).map_err(|r| self.invalid(r))?;
        self.str_value(s)
    }

    fn binary_bytes(&mut self, len: u64, array: bool) -> Result<()> {
        self.len_checked(len, self.limits.max_bytes_len, "max_bytes_len")?;
        let start = self.pos;
        self.take(len, "bytes payload")?;
        let data = ByteData::Input(start..self.pos);
        self.push_new(if array {
            Node::ByteArray(data)
        } else {
            Node::Bytes(data)
        })
    }

    fn binary_py2_str(&mut self, len: u64) -> Result<()> {
        self.len_checked(len, self.limits.max_bytes_len, "max_bytes_len")?;
        let start = self.pos;
        self.take(len, "string bytes")?;
        self.py2_string(ByteData::Input(start..self.pos))
    }

    fn long(&mut self, len: u64) -> Result<()> {
        self.len_checked(len, self.limits.max_int_bytes, "max_int_bytes")?;
        let bytes = self.take(len, "int bytes")?;
        let value = PyInt::from_le_twos(bytes);
        if matches!(value, PyInt::Big(_)) {
            self.materialize(len)?;
        }
        self.push_int(value)
    }

    fn ext(&mut self, code: i64) -> Result<()> {
        if code <= 0 {
            return Err(self.invalid("EXT specifies code <= 0"));
        }
        let entry = self
            .opts
            .extension_registry
            .iter()
            .find(|(c, _, _)| i64::from(*c) == code)
            .map(|(_, m, n)| (m.clone(), n.clone()));
        match entry {
            Some((m, n)) => {
                let id = self.resolve_global(&m, &n);
                let node = self.global_reference(id)?;
                self.push(node)
            }
            None => {
                let reason = format!(
                    "extension code {code}: the copyreg registry hides which global this is, and none was supplied"
                );
                self.finding(FindingKind::Construct, Verdict::Unsafe, reason.clone());
                Err(self.refused(Verdict::Unsafe, reason))
            }
        }
    }

    fn append(&mut self, target: NodeId, items: Vec<NodeId>) -> Result<()> {
        let max = self.limits.max_container_len;
        match &mut self.nodes[target.index()] {
            Node::List(v) => {
                if v.len() + items.len() > max {
                    return Err(PickleError::LimitExceeded {
                        what: "max_container_len",
                        value: (v.len() + items.len()) as u64,
                        limit: max as u64,
                        offset: self.op_offset,
                    });
                }
                v.extend(items);
                Ok(())
            }
            Node::Object(o) => {
                o.list_items.extend(items);
                Ok(())
            }
            Node::Refused => Ok(()),
            _ => Err(self.mismatch("a list", target)),
        }
    }

    fn set_items(&mut self, target: NodeId, items: Vec<NodeId>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.invalid("odd number of items for SETITEMS"));
        }
        match self.node(target) {
            Node::Dict(_) | Node::OrderedDict(_) | Node::Counter(_) => {
                for pair in items.chunks_exact(2) {
                    self.map_insert(target, 0, pair[0], pair[1])?;
                }
                Ok(())
            }
            Node::Object(_) => {
                if let Node::Object(o) = &mut self.nodes[target.index()] {
                    o.dict_items
                        .extend(items.chunks_exact(2).map(|p| (p[0], p[1])));
                }
                Ok(())
            }
            Node::Refused => Ok(()),
            _ => Err(self.mismatch("a dict", target)),
        }
    }

    fn step(&mut self, op: Opcode) -> Result<Option<NodeId>> {
        let limits = self.limits;
        match op {
            Opcode::Proto => {
                let [v] = self.array::<1>("protocol number")?;
                if v > 5 {
                    return Err(PickleError::UnsupportedProtocol {
                        offset: self.op_offset,
                        protocol: v,
                    });
                }
                self.protocol = v;
                self.report.protocol = self.report.protocol.max(v);
            }
            Opcode::Frame => {
                if self.frame_end.is_some() {
                    let reason = "FRAME starts before the end of the current frame";
                    return Err(PickleError::FrameViolation {
                        offset: self.op_offset,
                        opcode: Some(op),
                        reason,
                    });
                }
                let len = u64::from_le_bytes(self.array::<8>("frame length")?);
                let available = (self.input.len() - self.pos) as u64;
                if len > available {
                    return Err(PickleError::Truncated {
                        offset: self.op_offset,
                        opcode: Some(op),
                        what: "frame",
                        needed: len,
                        available,
                    });
                }
                self.frame_end = Some(self.pos + len as usize);
            }
            Opcode::Stop => {
                if let Some(end) = self.frame_end
                    && end != self.pos
                {
                    let reason = "STOP before the end of its frame";
                    self.finding(FindingKind::Construct, Verdict::Unsafe, reason);
                    return Err(PickleError::FrameViolation {
                        offset: self.op_offset,
                        opcode: Some(op),
                        reason,
                    });
                }
                if !self.marks.is_empty() {
                    return Err(PickleError::BadStop {
                        offset: self.op_offset,
                        reason: format!("{} MARK(s) left open", self.marks.len()).into(),
                    });
                }
                let root = self.pop().map_err(|_| PickleError::BadStop {
                    offset: self.op_offset,
                    reason: "empty stack".into(),
                })?;
                if !self.stack.is_empty() {
                    return Err(PickleError::BadStop {
                        offset: self.op_offset,
                        reason: format!("{} value(s) left on the stack", self.stack.len()).into(),
                    });
                }
                self.report.end = Some(self.pos);
                return Ok(Some(root));
            }
            Opcode::Int => {
                let line = self.line("INT argument")?;
                let node = match text::int_line(line, limits.max_int_digits)
                    .map_err(|r| self.invalid(r))?
                {
                    text::IntLine::Bool(b) => Node::Bool(b),
                    text::IntLine::Int(i) => Node::Int(i),
                };
                match node {
                    Node::Int(i) => self.push_int(i)?,
                    other => self.push_new(other)?,
                }
            }
            Opcode::Long => {
                let line = self.line("LONG argument")?;
                let v =
                    text::long_line(line, limits.max_int_digits).map_err(|r| self.invalid(r))?;
                self.materialize(line.len() as u64 / 2)?;
                self.push_int(v)?;
            }
            Opcode::BinInt => {
                let v = i32::from_le_bytes(self.array::<4>("BININT argument")?);
                self.push_int(PyInt::Small(i64::from(v)))?;
            }
            Opcode::BinInt1 => {
                let [v] = self.array::<1>("BININT1 argument")?;
                self.push_int(PyInt::Small(i64::from(v)))?;
            }
            Opcode::BinInt2 => {
                let v = u16::from_le_bytes(self.array::<2>("BININT2 argument")?);
                self.push_int(PyInt::Small(i64::from(v)))?;
            }
            Opcode::Long1 => {
                let [n] = self.array::<1>("LONG1 length")?;
                self.long(u64::from(n))?;
            }
            Opcode::Long4 => {
                let n = i32::from_le_bytes(self.array::<4>("LONG4 length")?);
                if n < 0 {
                    return Err(self.invalid("LONG pickle has negative byte count"));
                }
                self.long(n as u64)?;
            }
            Opcode::String => {
                let line = self.line("STRING argument")?;
                let bytes = text::quoted_string(line).map_err(|r| self.invalid(r))?;
                self.limit("max_bytes_len", bytes.len() as u64, limits.max_bytes_len)?;
                self.materialize(bytes.len() as u64)?;
                self.py2_string(ByteData::Owned(bytes.into()))?;
            }
            Opcode::BinString => {
                let n = i32::from_le_bytes(self.array::<4>("BINSTRING length")?);
                if n < 0 {
                    return Err(self.invalid("BINSTRING pickle has negative byte count"));
                }
                self.binary_py2_str(n as u64)?;
            }
            Opcode::ShortBinString => {
                let [n] = self.array::<1>("SHORT_BINSTRING length")?;
                self.binary_py2_str(u64::from(n))?;
            }
            Opcode::BinBytes => {
                let n = u32::from_le_bytes(self.array::<4>("BINBYTES length")?);
                self.binary_bytes(u64::from(n), false)?;
            }
            Opcode::ShortBinBytes => {
                let [n] = self.array::<1>("SHORT_BINBYTES length")?;
                self.binary_bytes(u64::from(n), false)?;
            }
            Opcode::BinBytes8 => {
                let n = u64::from_le_bytes(self.array::<8>("BINBYTES8 length")?);
                self.binary_bytes(n, false)?;
            }
            Opcode::ByteArray8 => {
                let n = u64::from_le_bytes(self.array::<8>("BYTEARRAY8 length")?);
                self.binary_bytes(n, true)?;
            }
            Opcode::NextBuffer => {
                // The data is not in the stream: the file cannot be read, whatever the policy.
                return Err(PickleError::InvalidArgument {
                    offset: self.op_offset,
                    opcode: self.op,
                    reason: "out-of-band buffers (NEXT_BUFFER) are not supported: the data is \
                             not in the file and none were supplied"
                        .into(),
                });
            }
            Opcode::ReadonlyBuffer => {
                let top = self.top()?;
                match self.node(top) {
                    Node::Bytes(_) => {}
                    Node::ByteArray(data) => {
                        // A read-only view of the bytearray: a new object with the same bytes.
                        let data = data.clone();
                        self.pop()?;
                        self.push_new(Node::Bytes(data))?;
                    }
                    _ => return Err(self.mismatch("a bytes-like buffer", top)),
                }
            }
            Opcode::None => self.push_singleton(Singleton::None)?,
            Opcode::NewTrue => self.push_singleton(Singleton::True)?,
            Opcode::NewFalse => self.push_singleton(Singleton::False)?,
            Opcode::Unicode => {
                let line = self.line("UNICODE argument")?;
                let s = text::raw_unicode_escape(line).map_err(|r| self.invalid(r))?;
                self.str_value(&s)?;
            }
            Opcode::ShortBinUnicode => {
                let [n] = self.array::<1>("SHORT_BINUNICODE length")?;
                self.binary_str(u64::from(n))?;
            }
            Opcode::BinUnicode => {
                let n = u32::from_le_bytes(self.array::<4>("BINUNICODE length")?);
                self.binary_str(u64::from(n))?;
            }
            Opcode::BinUnicode8 => {
                let n = u64::from_le_bytes(self.array::<8>("BINUNICODE8 length")?);
                self.binary_str(n)?;
            }
            Opcode::Float => {
                let line = self.line("FLOAT argument")?;
                let f = text::float_line(line).map_err(|r| self.invalid(r))?;
                self.push_new(Node::Float(f))?;
            }
            Opcode::BinFloat => {
                let f = f64::from_be_bytes(self.array::<8>("BINFLOAT argument")?);
                self.push_new(Node::Float(f))?;
            }
            Opcode::EmptyList => self.push_new(Node::List(Vec::new()))?,
            Opcode::EmptyTuple => self.push_singleton(Singleton::EmptyTuple)?,
            Opcode::EmptyDict => self.push_new(Node::Dict(Vec::new()))?,
            Opcode::EmptySet => self.push_new(Node::Set(Vec::new()))?,
            Opcode::Append => {
                let value = self.pop()?;
                let target = self.top()?;
                self.append(target, vec![value])?;
            }
            Opcode::Appends => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                self.append(target, items)?;
            }
            Opcode::List => {
                let items = self.pop_mark()?;
                self.push_new(Node::List(items))?;
            }
            Opcode::Tuple => {
                let items = self.pop_mark()?;
                self.push_new(Node::Tuple(items))?;
            }
            Opcode::Tuple1 | Opcode::Tuple2 | Opcode::Tuple3 => {
                let n = match op {
                    Opcode::Tuple1 => 1,
                    Opcode::Tuple2 => 2,
                    _ => 3,
                };
                let items = self.pop_n(n)?;
                self.push_new(Node::Tuple(items))?;
            }
            Opcode::Dict => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(self.invalid("odd number of items for DICT"));
                }
                let pairs: Vec<(NodeId, NodeId)> =
                    items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                let dict = self.new_dict_from_pairs(&pairs)?;
                self.push(dict)?;
            }
            Opcode::SetItem => {
                let value = self.pop()?;
                let key = self.pop()?;
                let target = self.top()?;
                self.set_items(target, vec![key, value])?;
            }
            Opcode::SetItems => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                self.set_items(target, items)?;
            }
            Opcode::AddItems => {
                let items = self.pop_mark()?;
                let target = self.top()?;
                match self.node(target) {
                    Node::Set(_) => {
                        for item in items {
                            self.set_insert(target, item)?;
                        }
                    }
                    Node::Refused => {}
                    _ => return Err(self.mismatch("a set", target)),
                }
            }
            Opcode::FrozenSet => {
                let items = self.pop_mark()?;
                let set = self.new_set(true, &items)?;
                self.push(set)?;
            }
            Opcode::Pop => {
                // CPython: if the topmost mark is at the top of the stack, POP removes the mark.
                if self.marks.last() == Some(&self.stack.len()) {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            Opcode::Dup => {
                let top = self.top()?;
                self.push(top)?;
            }
            Opcode::Mark => {
                self.limit(
                    "max_marks",
                    self.marks.len() as u64 + 1,
                    limits.max_marks as u64,
                )?;
                self.marks.push(self.stack.len());
            }
            Opcode::PopMark => {
                self.pop_mark()?;
            }
            Opcode::Get => {
                let line = self.line("GET argument")?;
                let i = text::memo_index(line).map_err(|r| self.invalid(r))?;
                self.memo_get(i)?;
            }
            Opcode::BinGet => {
                let [i] = self.array::<1>("BINGET argument")?;
                self.memo_get(u64::from(i))?;
            }
            Opcode::LongBinGet => {
                let i = u32::from_le_bytes(self.array::<4>("LONG_BINGET argument")?);
                self.memo_get(u64::from(i))?;
            }
            Opcode::Put => {
                let line = self.line("PUT argument")?;
                let i = text::memo_index(line).map_err(|r| self.invalid(r))?;
                self.memo_put(i)?;
            }
            Opcode::BinPut => {
                let [i] = self.array::<1>("BINPUT argument")?;
                self.memo_put(u64::from(i))?;
            }
            Opcode::LongBinPut => {
                let i = u32::from_le_bytes(self.array::<4>("LONG_BINPUT argument")?);
                self.memo_put(u64::from(i))?;
            }
            Opcode::Memoize => {
                let index = self.memo.len as u64;
                self.memo_put(index)?;
            }
            Opcode::Ext1 => {
                let [c] = self.array::<1>("EXT1 code")?;
                self.ext(i64::from(c))?;
            }
            Opcode::Ext2 => {
                let c = u16::from_le_bytes(self.array::<2>("EXT2 code")?);
                self.ext(i64::from(c))?;
            }
            Opcode::Ext4 => {
                let c = i32::from_le_bytes(self.array::<4>("EXT4 code")?);
                self.ext(i64::from(c))?;
            }
            Opcode::Global => {
                let module = self.line("GLOBAL module")?;
                let name = self.line("GLOBAL name")?;
                let (module, name) = (self.utf8_line(module)?, self.utf8_line(name)?);
                let id = self.resolve_global(&module, &name);
                let node = self.global_reference(id)?;
                self.push(node)?;
            }
            Opcode::StackGlobal => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Node::Str(m), Node::Str(n)) = (self.node(module), self.node(name)) else {
                    let bad = if matches!(self.node(module), Node::Str(_)) {
                        name
                    } else {
                        module
                    };
                    return Err(self.mismatch("str module and name for STACK_GLOBAL", bad));
                };
                let (m, n) = (m.to_string(), n.to_string());
                let id = self.resolve_global(&m, &n);
                let node = self.global_reference(id)?;
                self.push(node)?;
            }
            Opcode::Reduce => {
                let args = self.pop()?;
                let callee = self.pop()?;
                let result = self.call(callee, args, None, CallKind::Reduce)?;
                self.push(result)?;
            }
            Opcode::Build => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(target, state)?;
            }
            Opcode::Inst => {
                let module = self.line("INST module")?;
                let name = self.line("INST name")?;
                let (module, name) = (self.utf8_line(module)?, self.utf8_line(name)?);
                let id = self.resolve_global(&module, &name);
                let class = self.global_reference(id)?;
                let items = self.pop_mark()?;
                let args = self.new_node(Node::Tuple(items))?;
                let result = self.call(class, args, None, CallKind::Inst)?;
                self.push(result)?;
            }
            Opcode::Obj => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return Err(self.underflow());
                }
                let class = items.remove(0);
                let args = self.new_node(Node::Tuple(items))?;
                let result = self.call(class, args, None, CallKind::Obj)?;
                self.push(result)?;
            }
            Opcode::NewObj => {
                let args = self.pop()?;
                let class = self.pop()?;
                let result = self.call(class, args, None, CallKind::NewObj)?;
                self.push(result)?;
            }
            Opcode::NewObjEx => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let class = self.pop()?;
                if !matches!(self.node(kwargs), Node::Dict(_)) {
                    return Err(self.mismatch("a keyword-argument dict", kwargs));
                }
                let result = self.call(class, args, Some(kwargs), CallKind::NewObjEx)?;
                self.push(result)?;
            }
            Opcode::PersId => {
                let line = self.line("PERSID argument")?;
                if self.opts.tensor_table.is_some() {
                    // Python's pickle passes the line as an ASCII str: a tar checkpoint pickled
                    // with protocol 0 or 1 names its tensors this way.
                    let text = std::str::from_utf8(line)
                        .ok()
                        .filter(|t| t.is_ascii())
                        .ok_or_else(|| self.invalid("PERSID argument is not ASCII"))?;
                    self.materialize(text.len() as u64)?;
                    let pid = self.new_node(Node::Str(text.into()))?;
                    let value = self.persistent_load(pid)?;
                    self.push(value)?;
                    return Ok(None);
                }
                // torch's protocol-0 files write the repr of the id tuple here, which torch
                // itself cannot load: unreadable input, not a policy question.
                return Err(PickleError::InvalidArgument {
                    offset: self.op_offset,
                    opcode: self.op,
                    reason: "text persistent ids (PERSID) are not supported; torch writes \
                             BINPERSID (protocol-0 torch files cannot be loaded by torch either)"
                        .into(),
                });
            }
            Opcode::BinPersId => {
                let pid = self.pop()?;
                let value = self.persistent_load(pid)?;
                self.push(value)?;
            }
        }
        Ok(None)
    }

    // ----- finish ------------------------------------------------------------------------------

    fn finish(mut self, root: NodeId) -> Result<Graph<'a>> {
        let tree_size = self.validate(root)?;
        let report = std::mem::take(&mut self.report);
        Ok(Graph {
            input: self.input,
            nodes: self.nodes,
            offsets: self.offsets,
            globals: self.globals,
            root,
            end: self.pos,
            report,
            tree_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DeclaredStorages;

    /// Every str hashes to 0: big dicts and the storage map must still find exactly their own
    /// keys through the collision fallback.
    #[test]
    fn hash_collisions_are_resolved_exactly() {
        // A dict of 40 str keys (past SMALL), each set twice, then a lookup-heavy repeat.
        let mut data = vec![0x80, 2, b'}', b'('];
        for round in 0..2u8 {
            for i in 0..40u8 {
                let key = format!("k{i}");
                data.push(0x8c);
                data.push(key.len() as u8);
                data.extend(key.as_bytes());
                data.extend([b'K', i.wrapping_add(round)]);
            }
        }
        data.extend(b"u.");
        let opts = Options::default();
        let mut storages = DeclaredStorages;
        let mut m = Machine::new(&data, 0, &opts, &mut storages, false).unwrap();
        m.str_hasher.collide = true;
        let root = m.run().unwrap();
        let Node::Dict(pairs) = m.node(root) else {
            panic!()
        };
        assert_eq!(pairs.len(), 40);
        for (i, &(k, v)) in pairs.iter().enumerate() {
            assert!(matches!(m.node(k), Node::Str(s) if s.as_ref() == format!("k{i}")));
            assert_eq!(m.node(v), &Node::Int(PyInt::Small(i as i64 + 1)));
        }

        let mut map: StrMap<u32> = StrMap::default();
        map.hasher.collide = true;
        for i in 0..10u32 {
            *map.get_or_insert_with(format!("s{i}").into(), || 0) += i;
            *map.get_or_insert_with(format!("s{i}").into(), || 0) += 1;
        }
        for i in 0..10u32 {
            assert_eq!(map.get(&format!("s{i}")), Some(&(i + 1)));
        }
        assert_eq!(map.get("missing"), None);
    }
}
