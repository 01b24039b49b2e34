//! The one error type of the crate.

use std::borrow::Cow;

use crate::opcode::Opcode;
use crate::report::Verdict;
use crate::storage::StorageError;

/// Why a pickle could not be interpreted. Every variant names the byte offset (in the whole input
/// buffer, not relative to the start offset) and, where there is one, the opcode and the global.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The input ends inside an opcode or before STOP.
    #[error("pickle truncated at offset {offset}: {what} needs {needed} bytes, {available} remain")]
    Truncated {
        /// Offset of the opcode being read.
        offset: usize,
        /// The opcode, when its byte was read.
        opcode: Option<Opcode>,
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes left in the input.
        available: u64,
    },
    /// A byte that is not a pickle opcode.
    #[error("invalid opcode byte 0x{byte:02x} at offset {offset}")]
    UnknownOpcode {
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// PROTO with a version above 5.
    #[error("PROTO at offset {offset}: unsupported protocol {protocol}")]
    UnsupportedProtocol {
        /// Offset of PROTO.
        offset: usize,
        /// The declared protocol.
        protocol: u8,
    },
    /// An opcode argument that is malformed (bad literal, bad escape, invalid UTF-8, ...).
    #[error("{opcode} at offset {offset}: {reason}")]
    InvalidArgument {
        /// Offset of the opcode.
        offset: usize,
        /// The opcode.
        opcode: Opcode,
        /// What is wrong.
        reason: Cow<'static, str>,
    },
    /// An opcode needs more values than the stack holds above the topmost mark.
    #[error("{opcode} at offset {offset}: stack underflow")]
    StackUnderflow {
        /// Offset of the opcode.
        offset: usize,
        /// The opcode.
        opcode: Opcode,
    },
    /// An opcode that needs a MARK found none.
    #[error("{opcode} at offset {offset}: no MARK on the stack")]
    MissingMark {
        /// Offset of the opcode.
        offset: usize,
        /// The opcode.
        opcode: Opcode,
    },
    /// GET of a memo index that was never stored.
    #[error("{opcode} at offset {offset}: memo entry {index} was never stored")]
    MemoMissing {
        /// Offset of the opcode.
        offset: usize,
        /// The opcode.
        opcode: Opcode,
        /// The index asked for.
        index: u64,
    },
    /// A value of the wrong type for the opcode (APPEND to a dict, unhashable dict key, ...).
    #[error("{opcode} at offset {offset}: expected {expected}, found {found}")]
    TypeMismatch {
        /// Offset of the opcode.
        offset: usize,
        /// The opcode.
        opcode: Opcode,
        /// What the opcode needs.
        expected: &'static str,
        /// What it found.
        found: &'static str,
    },
    /// An opcode crosses the end of its frame, a frame opens inside another, or STOP comes before
    /// the end of its frame (CPython 3.13.15+ refuses these too; older C unpicklers read across
    /// frame ends and run what such frames hide from scanners).
    #[error("frame violation at offset {offset}: {reason}")]
    FrameViolation {
        /// Offset of the opcode.
        offset: usize,
        /// The opcode, when its byte was read.
        opcode: Option<Opcode>,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A [`Limits`](crate::Limits) bound was reached.
    #[error("limit exceeded at offset {offset}: {what} would be {value}, limit is {limit}")]
    LimitExceeded {
        /// Which limit (the `Limits` field name).
        what: &'static str,
        /// The value that was refused.
        value: u64,
        /// The limit.
        limit: u64,
        /// Offset of the opcode.
        offset: usize,
    },
    /// A global the policy refuses: unsafe always, unknown unless the caller opted in.
    #[error("{opcode} at offset {offset}: global {module}.{name} refused as {verdict}: {reason}")]
    GlobalRefused {
        /// Offset of the opcode.
        offset: usize,
        /// The opcode.
        opcode: Opcode,
        /// Module after name remapping.
        module: String,
        /// Qualified name after name remapping.
        name: String,
        /// The policy's verdict.
        verdict: Verdict,
        /// Why.
        reason: Cow<'static, str>,
    },
    /// A known constructor refused its arguments (wrong count or type, a tensor view outside its
    /// storage, a bad dtype, ...).
    #[error("{opcode} at offset {offset}: {callee}: {reason}")]
    BadArguments {
        /// Offset of the opcode.
        offset: usize,
        /// The opcode.
        opcode: Opcode,
        /// The constructor, `module.name`.
        callee: String,
        /// What is wrong.
        reason: String,
    },
    /// A construct this interpreter refuses: EXT codes without a registry, out-of-band buffers,
    /// text persistent ids, BUILD on a class or function, calling a non-callable value, ...
    #[error("{opcode} at offset {offset}: {reason}")]
    Refused {
        /// Offset of the opcode.
        offset: usize,
        /// The opcode.
        opcode: Opcode,
        /// The verdict the construct gets in the report.
        verdict: Verdict,
        /// What was refused and why.
        reason: Cow<'static, str>,
    },
    /// The storage handler refused a persistent id.
    #[error("{opcode} at offset {offset}: storage {key:?}: {source}")]
    Storage {
        /// Offset of BINPERSID.
        offset: usize,
        /// The opcode.
        opcode: Opcode,
        /// The storage key.
        key: String,
        /// The handler's error.
        #[source]
        source: StorageError,
    },
    /// The value graph contains a cycle (a container that contains itself).
    #[error("cycle in the value graph: the value created at offset {offset} contains itself")]
    Cycle {
        /// Offset of the opcode that created the value on the cycle.
        offset: usize,
    },
    /// STOP with values or marks left over, or with an empty stack.
    #[error("STOP at offset {offset}: {reason}")]
    BadStop {
        /// Offset of STOP.
        offset: usize,
        /// What is wrong.
        reason: Cow<'static, str>,
    },
    /// Bytes follow STOP where the caller said the pickle ends the input.
    #[error("{len} bytes after STOP (which ends at offset {offset}): a stacked pickle or garbage")]
    TrailingBytes {
        /// Offset just past STOP.
        offset: usize,
        /// Bytes after it.
        len: usize,
    },
    /// The start offset is outside the input.
    #[error("start offset {start} is past the end of the {len}-byte input")]
    StartOutOfRange {
        /// The start offset.
        start: usize,
        /// The input length.
        len: usize,
    },
}

impl PickleError {
    /// The byte offset the error points at.
    pub fn offset(&self) -> usize {
        match self {
            PickleError::Truncated { offset, .. }
            | PickleError::UnknownOpcode { offset, .. }
            | PickleError::UnsupportedProtocol { offset, .. }
            | PickleError::InvalidArgument { offset, .. }
            | PickleError::StackUnderflow { offset, .. }
            | PickleError::MissingMark { offset, .. }
            | PickleError::MemoMissing { offset, .. }
            | PickleError::TypeMismatch { offset, .. }
            | PickleError::FrameViolation { offset, .. }
            | PickleError::LimitExceeded { offset, .. }
            | PickleError::GlobalRefused { offset, .. }
            | PickleError::BadArguments { offset, .. }
            | PickleError::Refused { offset, .. }
            | PickleError::Storage { offset, .. }
            | PickleError::Cycle { offset }
            | PickleError::TrailingBytes { offset, .. }
            | PickleError::BadStop { offset, .. } => *offset,
            PickleError::StartOutOfRange { start, .. } => *start,
        }
    }

    /// The opcode the error is about, when there is one.
    pub fn opcode(&self) -> Option<Opcode> {
        match self {
            PickleError::Truncated { opcode, .. } | PickleError::FrameViolation { opcode, .. } => {
                *opcode
            }
            PickleError::InvalidArgument { opcode, .. }
            | PickleError::StackUnderflow { opcode, .. }
            | PickleError::MissingMark { opcode, .. }
            | PickleError::MemoMissing { opcode, .. }
            | PickleError::TypeMismatch { opcode, .. }
            | PickleError::GlobalRefused { opcode, .. }
            | PickleError::BadArguments { opcode, .. }
            | PickleError::Refused { opcode, .. }
            | PickleError::Storage { opcode, .. } => Some(*opcode),
            PickleError::BadStop { .. } => Some(Opcode::Stop),
            PickleError::UnsupportedProtocol { .. } => Some(Opcode::Proto),
            _ => None,
        }
    }

    /// The global `(module, name)` the error is about, when there is one.
    pub fn global(&self) -> Option<(&str, &str)> {
        match self {
            PickleError::GlobalRefused { module, name, .. } => Some((module, name)),
            _ => None,
        }
    }

    /// The verdict this error implies, when it is a policy decision rather than a parse failure:
    /// refused globals carry theirs; EXT codes and BUILD on globals are unsafe.
    pub fn verdict(&self) -> Option<Verdict> {
        match self {
            PickleError::GlobalRefused { verdict, .. } | PickleError::Refused { verdict, .. } => {
                Some(*verdict)
            }
            _ => None,
        }
    }
}
