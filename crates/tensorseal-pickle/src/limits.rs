//! Every resource limit of the interpreter, in one place.

/// Resource limits for one pickle. Every count the input controls is bounded here; going over one
/// gives [`PickleError::LimitExceeded`](crate::PickleError::LimitExceeded) naming the limit and the
/// byte offset.
///
/// The defaults are generous for real checkpoints (a 100,000-tensor state dict uses a few percent of
/// them) and small enough that a hostile pickle cannot make the interpreter use more than a few GiB
/// or run for long. Raise a field when a legitimate file needs it:
///
/// ```
/// let mut limits = tensorseal_pickle::Limits::default();
/// limits.max_nodes = 200_000_000;
/// ```
///
/// Work is linear in the input: every opcode does O(1) work plus work proportional to the bytes or
/// items it consumes, so `max_opcodes` and the input length bound the run time.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Opcodes executed in one pickle (default 200,000,000).
    pub max_opcodes: u64,
    /// Values on the stack at once, across all marks (default 10,000,000).
    pub max_stack: usize,
    /// Open MARKs at once (default 100,000).
    pub max_marks: usize,
    /// Memo entries (default 50,000,000). Sparse indices go to a map, so a huge index costs one
    /// entry.
    pub max_memo_entries: usize,
    /// Values created (default 50,000,000, about 2 GiB). Each value costs about 40 bytes; a
    /// state dict needs about 10 per tensor.
    pub max_nodes: usize,
    /// Items in one list, tuple, dict, set or frozenset (default 100,000,000).
    pub max_container_len: usize,
    /// Nesting depth of the final value graph (default 1,000, Python's own recursion limit).
    pub max_depth: usize,
    /// Nodes the value graph would have if every shared reference were copied out as a tree
    /// (default 1,000,000,000). Sharing itself is free; this stops "billion laughs" graphs from
    /// reaching a consumer that writes a tree.
    pub max_tree_nodes: u64,
    /// Bytes of one str after decoding (default 256 MiB).
    pub max_str_len: u64,
    /// Bytes of one bytes or bytearray value (default 16 GiB). In-band bytes are borrowed from the
    /// input, never copied, so this mainly bounds what a converter is asked to copy.
    pub max_bytes_len: u64,
    /// Bytes of a binary integer (LONG1/LONG4; default 4,096, more than 9,800 decimal digits).
    pub max_int_bytes: u64,
    /// Decimal digits of a text integer (INT/LONG/GET/PUT; default 4,300, CPython's
    /// `sys.int_max_str_digits`).
    pub max_int_digits: u64,
    /// Bytes copied into owned storage in total: decoded strings, escaped byte strings, big
    /// integers, `_codecs.encode` results (default 4 GiB).
    pub max_materialized_bytes: u64,
    /// Tensors and arrays in one pickle (default 10,000,000).
    pub max_tensors: u64,
    /// Dimensions of one tensor or array (default 64).
    pub max_rank: usize,
    /// Bytes one tensor has when materialized, `numel * itemsize` (default 256 GiB). A view may
    /// repeat its storage's elements (stride 0), so this bounds what a converter is asked to
    /// write from a small record.
    pub max_tensor_bytes: u64,
    /// Materialized bytes of all distinct tensors and arrays together (default 1 TiB).
    pub max_total_tensor_bytes: u64,
    /// Findings kept in the scan report (default 1,000,000, about 64 MiB); past it the report
    /// keeps a count and the most severe verdict.
    pub max_findings: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_opcodes: 200_000_000,
            max_stack: 10_000_000,
            max_marks: 100_000,
            max_memo_entries: 50_000_000,
            max_nodes: 50_000_000,
            max_container_len: 100_000_000,
            max_depth: 1_000,
            max_tree_nodes: 1_000_000_000,
            max_str_len: 256 << 20,
            max_bytes_len: 16 << 30,
            max_int_bytes: 4_096,
            max_int_digits: 4_300,
            max_materialized_bytes: 4 << 30,
            max_tensors: 10_000_000,
            max_rank: 64,
            max_tensor_bytes: 256 << 30,
            max_total_tensor_bytes: 1 << 40,
            max_findings: 1_000_000,
        }
    }
}
