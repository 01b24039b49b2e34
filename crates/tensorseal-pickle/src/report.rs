//! The scan report: every global and call the pickle makes, with a verdict for each.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::error::PickleError;
use crate::opcode::Opcode;

/// How dangerous a global, a call or a construct is. Ordered: `Allowed < Unknown < Unsafe`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// A known constructor (tensor rebuilds, OrderedDict, numpy arrays, ...) whose arguments are
    /// validated; it becomes a typed value.
    #[default]
    Allowed,
    /// Any other global: refused by default, kept as an inert record only when the caller opts in
    /// ([`Options::keep_unknown_objects`](crate::Options::keep_unknown_objects)).
    Unknown,
    /// A code-execution or I/O primitive, or a construct whose only use is evading scanners:
    /// always refused.
    Unsafe,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allowed => "allowed",
            Verdict::Unknown => "unknown",
            Verdict::Unsafe => "unsafe",
        })
    }
}

/// A `(module, qualified name)` pair after Python 2 name remapping.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GlobalName {
    /// Module, e.g. `torch._utils`.
    pub module: Arc<str>,
    /// Qualified name inside the module, e.g. `_rebuild_tensor_v2`.
    pub name: Arc<str>,
}

impl fmt::Display for GlobalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// What a finding is about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FindingKind {
    /// A global referenced by GLOBAL, STACK_GLOBAL, INST or a resolved EXT code.
    Global(GlobalName),
    /// A call (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST) of this callable.
    Call(GlobalName),
    /// BUILD (set state) on an object of this class.
    Build(GlobalName),
    /// A call or BUILD whose target is not a global (e.g. calling a string).
    CallOnValue,
    /// The opcode itself (EXT codes without a registry, frame violations, ...).
    Construct,
}

impl FindingKind {
    /// The global the finding is about, if it is about one.
    pub fn global(&self) -> Option<&GlobalName> {
        match self {
            FindingKind::Global(g) | FindingKind::Call(g) | FindingKind::Build(g) => Some(g),
            FindingKind::CallOnValue | FindingKind::Construct => None,
        }
    }

    /// A short name of the kind, as JSON reports spell it.
    pub fn name(&self) -> &'static str {
        match self {
            FindingKind::Global(_) => "global",
            FindingKind::Call(_) => "call",
            FindingKind::Build(_) => "build",
            FindingKind::CallOnValue => "call on a value",
            FindingKind::Construct => "construct",
        }
    }
}

/// One entry of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Byte offset of the opcode in the input buffer.
    pub offset: usize,
    /// The opcode.
    pub opcode: Opcode,
    /// What was found.
    pub kind: FindingKind,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why, in a few words (e.g. "runs shell commands").
    pub reason: Cow<'static, str>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{} {} ", self.offset, self.opcode)?;
        match &self.kind {
            FindingKind::Global(g) => write!(f, "global {g}")?,
            FindingKind::Call(g) => write!(f, "call {g}")?,
            FindingKind::Build(g) => write!(f, "build {g}")?,
            FindingKind::CallOnValue => write!(f, "call on a non-global value")?,
            FindingKind::Construct => write!(f, "construct")?,
        }
        write!(f, ": {} ({})", self.verdict, self.reason)
    }
}

/// The overall outcome of a scan, most severe last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScanStatus {
    /// Every global and call is allowed and the pickle parsed completely.
    Clean,
    /// The pickle parsed, but it references globals outside the allowed table.
    Unknown,
    /// The pickle is malformed, truncated or over a limit, and nothing unsafe was seen before
    /// the error.
    Invalid,
    /// Something unsafe was seen, whatever happened after it.
    Unsafe,
}

impl fmt::Display for ScanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScanStatus::Clean => "clean",
            ScanStatus::Unknown => "unknown",
            ScanStatus::Invalid => "invalid",
            ScanStatus::Unsafe => "unsafe",
        })
    }
}

/// Everything the interpreter saw in one pickle: findings in stream order, where it stopped, and
/// the error that stopped it, if any. A report is complete up to the error: a payload followed by
/// garbage is still reported (and [`ScanReport::status`] is [`ScanStatus::Unsafe`]).
#[derive(Debug, Default)]
pub struct ScanReport {
    pub(crate) start: usize,
    pub(crate) end: Option<usize>,
    pub(crate) protocol: u8,
    pub(crate) opcodes: u64,
    pub(crate) findings: Vec<Finding>,
    pub(crate) findings_dropped: u64,
    pub(crate) dropped_verdict: Verdict,
    pub(crate) error: Option<PickleError>,
    pub(crate) trace: Vec<(usize, Opcode)>,
}

impl ScanReport {
    /// Offset of the first opcode.
    pub fn start(&self) -> usize {
        self.start
    }

    /// Offset just past STOP, when the pickle reached STOP.
    pub fn end(&self) -> Option<usize> {
        self.end
    }

    /// The highest protocol declared by PROTO (0 if none).
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Opcodes executed.
    pub fn opcodes(&self) -> u64 {
        self.opcodes
    }

    /// Findings in stream order.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Findings not kept because of `Limits::max_findings` (their verdicts still count towards
    /// [`ScanReport::verdict`]).
    pub fn findings_dropped(&self) -> u64 {
        self.findings_dropped
    }

    /// The global references (one per GLOBAL/STACK_GLOBAL/INST/EXT opcode).
    pub fn globals(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| matches!(f.kind, FindingKind::Global(_)))
    }

    /// Every opcode executed with its offset, when
    /// [`Options::trace_opcodes`](crate::Options::trace_opcodes) was set (empty otherwise).
    pub fn trace(&self) -> &[(usize, Opcode)] {
        &self.trace
    }

    /// The error that stopped interpretation, if any.
    pub fn error(&self) -> Option<&PickleError> {
        self.error.as_ref()
    }

    /// The most severe verdict among the findings (`Allowed` when there are none).
    pub fn verdict(&self) -> Verdict {
        self.findings
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Allowed)
            .max(self.dropped_verdict())
    }

    fn dropped_verdict(&self) -> Verdict {
        // Findings past the limit are not kept, but their most severe verdict is.
        self.dropped_verdict
    }

    /// The overall outcome: unsafe if anything unsafe was seen (even before an error), else
    /// invalid if parsing failed, else unknown or clean.
    pub fn status(&self) -> ScanStatus {
        match (self.verdict(), &self.error) {
            (Verdict::Unsafe, _) => ScanStatus::Unsafe,
            (_, Some(e)) if e.verdict() == Some(Verdict::Unsafe) => ScanStatus::Unsafe,
            (_, Some(_)) => ScanStatus::Invalid,
            (Verdict::Unknown, None) => ScanStatus::Unknown,
            (Verdict::Allowed, None) => ScanStatus::Clean,
        }
    }
}

impl fmt::Display for ScanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pickle at offset {}: {} (protocol {}, {} opcodes)",
            self.start,
            self.status(),
            self.protocol,
            self.opcodes
        )?;
        for finding in &self.findings {
            writeln!(f, "  {finding}")?;
        }
        if self.findings_dropped > 0 {
            writeln!(f, "  ... {} more findings not kept", self.findings_dropped)?;
        }
        if let Some(e) = &self.error {
            writeln!(f, "  error: {e}")?;
        }
        Ok(())
    }
}
