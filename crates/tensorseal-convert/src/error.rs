//! Errors of each container layer. Every parse error names the member (or key) and the absolute
//! byte offset in the input file where the problem is.

use crate::limits::LimitExceeded;
use tensorseal::{Classify, FailureClass};

/// A zip archive the strict reader refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZipError {
    /// Shorter than the smallest archive.
    #[error("{len} bytes is too short for a zip archive")]
    TooShort {
        /// File length.
        len: u64,
    },
    /// The file does not start with a local file header. A zip whose end records are valid but
    /// that has other bytes in front is a polyglot (torch itself only reads files with
    /// `PK\x03\x04` at offset 0).
    #[error(
        "no local file header at offset 0 (found {found:02x?}): data before the first zip entry \
         (a polyglot or prepended file) is refused"
    )]
    NotAtStart {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// No end-of-central-directory record whose comment ends exactly at the end of the file.
    #[error("no end-of-central-directory record ending the file")]
    NoEndRecord,
    /// Several candidate end records end the file (a comment that holds another end record).
    #[error("ambiguous end of central directory: records at offsets {first} and {second}")]
    AmbiguousEndRecord {
        /// Offset of the last candidate.
        first: u64,
        /// Offset of another candidate.
        second: u64,
    },
    /// A structural record is malformed (bad signature, truncated, inconsistent field).
    #[error("{record} at offset {offset}{}: {what}", member_suffix(.member))]
    Malformed {
        /// The record: `"end of central directory"`, `"central directory entry"`, ...
        record: &'static str,
        /// The member the record belongs to, if known.
        member: Option<String>,
        /// Offset of the record or field.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A ZIP64 value disagrees with the 32-bit value it extends.
    #[error(
        "ZIP64 {field} is {zip64} but the 32-bit field at offset {offset} says {classic}{}",
        member_suffix(.member)
    )]
    Zip64Mismatch {
        /// Field name.
        field: &'static str,
        /// Member, for per-entry fields.
        member: Option<String>,
        /// The 32-bit (or 16-bit) value.
        classic: u64,
        /// The ZIP64 value.
        zip64: u64,
        /// Offset of the 32-bit field.
        offset: u64,
    },
    /// A general-purpose flag other than bit 3 (data descriptor) and bit 11 (UTF-8 name) is set:
    /// encryption (bit 0), patched data (bit 5), strong encryption (bit 6), ...
    #[error(
        "member {member:?} at offset {offset}: unsupported general-purpose flags {flags:#06x} ({what})"
    )]
    UnsupportedFlags {
        /// Member name.
        member: String,
        /// The flags field.
        flags: u16,
        /// The offending bits, described.
        what: String,
        /// Offset of the record.
        offset: u64,
    },
    /// A compression method other than stored (0) and deflate (8).
    #[error("member {member:?} at offset {offset}: unsupported compression method {method}")]
    UnsupportedMethod {
        /// Member name.
        member: String,
        /// The method field.
        method: u16,
        /// Offset of the record.
        offset: u64,
    },
    /// A member name that could mean a different file to another tool: traversal, absolute,
    /// backslash, NUL or control characters, empty segments, non-UTF-8.
    #[error("member name {member:?} at offset {offset} is refused: {reason}")]
    BadName {
        /// The name, lossily decoded.
        member: String,
        /// Why it is refused.
        reason: &'static str,
        /// Offset of the record holding it.
        offset: u64,
    },
    /// Two members with the same name, or names equal after normalisation (case, trailing `/`).
    #[error(
        "duplicate member {member:?} at offset {offset}: same name as {other:?} at offset {other_offset}"
    )]
    DuplicateName {
        /// The later member.
        member: String,
        /// Offset of its central record.
        offset: u64,
        /// The earlier member with the same (normalised) name.
        other: String,
        /// Offset of the earlier central record.
        other_offset: u64,
    },
    /// The local header disagrees with the central directory.
    #[error(
        "member {member:?}: local header at offset {offset} says {field} = {local}, the central \
         directory says {central}"
    )]
    HeaderMismatch {
        /// Member name (from the central directory).
        member: String,
        /// Field that differs.
        field: &'static str,
        /// Central directory value.
        central: String,
        /// Local header value.
        local: String,
        /// Offset of the local header.
        offset: u64,
    },
    /// Two members' byte ranges (local header, data, descriptor) overlap.
    #[error(
        "member {member:?} at offset {offset} overlaps member {other:?} (which ends at offset {other_end})"
    )]
    Overlap {
        /// The member starting later.
        member: String,
        /// Its local header offset.
        offset: u64,
        /// The member it overlaps.
        other: String,
        /// End of the other member's range.
        other_end: u64,
    },
    /// Bytes that belong to no member and no record.
    #[error("{len} unaccounted bytes at offset {offset} ({after})")]
    Gap {
        /// Offset of the first unaccounted byte.
        offset: u64,
        /// How many.
        len: u64,
        /// What they follow.
        after: String,
    },
    /// Stored member whose compressed and uncompressed sizes differ.
    #[error(
        "stored member {member:?} at offset {offset}: compressed size {compressed} != size {size}"
    )]
    StoredSizeMismatch {
        /// Member name.
        member: String,
        /// Compressed size.
        compressed: u64,
        /// Uncompressed size.
        size: u64,
        /// Offset of the central record.
        offset: u64,
    },
    /// The CRC-32 of a member's data is not the one recorded.
    #[error(
        "member {member:?}: CRC-32 of the data at offset {offset} is {actual:#010x}, the archive \
         records {expected:#010x}"
    )]
    CrcMismatch {
        /// Member name.
        member: String,
        /// Recorded CRC.
        expected: u32,
        /// Computed CRC.
        actual: u32,
        /// Offset of the data.
        offset: u64,
    },
    /// A deflated member is not a valid deflate stream, or it does not end where it should.
    #[error("member {member:?}: deflate data at offset {offset}: {what}")]
    Inflate {
        /// Member name.
        member: String,
        /// Offset of the compressed data (or of the problem).
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A limit was exceeded.
    #[error("{}{source}", member_prefix(.member))]
    Limit {
        /// The member, if the limit is per member.
        member: Option<String>,
        /// The limit.
        #[source]
        source: LimitExceeded,
    },
}

fn member_suffix(member: &Option<String>) -> String {
    member
        .as_ref()
        .map(|m| format!(" (member {m:?})"))
        .unwrap_or_default()
}

fn member_prefix(member: &Option<String>) -> String {
    member
        .as_ref()
        .map(|m| format!("member {m:?}: "))
        .unwrap_or_default()
}

/// A zip archive that is not a torch checkpoint the converter reads (`torch.save` zip format).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TorchZipError {
    /// The container itself is refused.
    #[error(transparent)]
    Zip(#[from] ZipError),
    /// The first entry is not in a directory, so torch has no archive prefix.
    #[error(
        "member {member:?} at offset {offset} is not in a directory: a torch archive keeps every \
         record under one top-level folder"
    )]
    NotInDirectory {
        /// The member.
        member: String,
        /// Offset of its local header.
        offset: u64,
    },
    /// Entries under more than one top-level folder: torch would read only the first entry's.
    #[error(
        "member {member:?} at offset {offset} is outside the archive prefix {prefix:?} taken from \
         the first entry: more than one top-level folder"
    )]
    MultiplePrefixes {
        /// The prefix from the first central-directory entry.
        prefix: String,
        /// The member outside it.
        member: String,
        /// Offset of its local header.
        offset: u64,
    },
    /// A TorchScript archive (`torch.jit.save`): it holds code, not just data.
    #[error(
        "TorchScript archive ({evidence:?} at offset {offset}): torch.jit.save files hold \
         compiled code that torch.load would run; they are refused. Save the weights with \
         torch.save(model.state_dict()) instead"
    )]
    TorchScript {
        /// The member that shows it (`<prefix>/constants.pkl`, `<prefix>/code/...`).
        evidence: String,
        /// Offset of its local header.
        offset: u64,
    },
    /// No `<prefix>/data.pkl`.
    #[error("no {expected:?} in the archive: not a torch.save checkpoint")]
    MissingDataPkl {
        /// The expected member name.
        expected: String,
    },
    /// A member torch does not write (a second pickle, a stray file, ...).
    #[error(
        "unexpected member {member:?} at offset {offset}: torch.save archives hold only data.pkl, \
         data/<key>, byteorder, version and format records"
    )]
    UnexpectedMember {
        /// The member.
        member: String,
        /// Offset of its local header.
        offset: u64,
    },
    /// A small record (`byteorder`, `version`, ...) has content torch never writes.
    #[error("record {member:?} at offset {offset}: {what}")]
    BadRecord {
        /// The member.
        member: String,
        /// Offset of its data.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A limit was exceeded.
    #[error("member {member:?}: {source}")]
    Limit {
        /// The member.
        member: String,
        /// The limit.
        #[source]
        source: LimitExceeded,
    },
}

/// A `.npy` array or `.npz` archive the converter refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// The `.npz` container is refused.
    #[error(transparent)]
    Zip(#[from] ZipError),
    /// Not a `.npy` file: wrong magic or truncated preamble.
    #[error("{}not a .npy array at offset {offset}: {what}", member_prefix(.member))]
    NotNpy {
        /// The `.npz` member, if any.
        member: Option<String>,
        /// Offset of the problem.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A format version other than 1.0, 2.0 and 3.0.
    #[error("{}unsupported .npy format version {major}.{minor}", member_prefix(.member))]
    Version {
        /// The `.npz` member, if any.
        member: Option<String>,
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// The header is not the dict literal numpy writes.
    #[error("{}.npy header at offset {offset}: {what}", member_prefix(.member))]
    Header {
        /// The `.npz` member, if any.
        member: Option<String>,
        /// Offset of the offending character.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// An object array: its data is a pickle, which `numpy.load(allow_pickle=True)` would run.
    #[error(
        "{}object array (descr {descr:?}, header at offset {offset}): its data is a pickle; object \
         arrays are refused",
        member_prefix(.member)
    )]
    ObjectArray {
        /// The `.npz` member, if any.
        member: Option<String>,
        /// The descr.
        descr: String,
        /// Offset of the header.
        offset: u64,
    },
    /// A dtype with no tensorseal equivalent (strings, datetimes, void, structured, long double).
    #[error("{}unsupported dtype {descr:?} at offset {offset}: {why}", member_prefix(.member))]
    UnsupportedDtype {
        /// The `.npz` member, if any.
        member: Option<String>,
        /// The descr as written.
        descr: String,
        /// Why.
        why: &'static str,
        /// Offset of the descr.
        offset: u64,
    },
    /// The data is not exactly `prod(shape) × itemsize` bytes.
    #[error(
        "{}data at offset {offset} is {actual} bytes, the header says {expected} (shape × itemsize)",
        member_prefix(.member)
    )]
    DataLength {
        /// The `.npz` member, if any.
        member: Option<String>,
        /// Expected length (`None`-free: overflow is reported as a limit).
        expected: u64,
        /// Bytes present.
        actual: u64,
        /// Offset of the data.
        offset: u64,
    },
    /// An `.npz` member that is not `<name>.npy`.
    #[error("member {member:?} at offset {offset} of the .npz is not a .npy array")]
    NotNpyMember {
        /// The member.
        member: String,
        /// Offset of its local header.
        offset: u64,
    },
    /// A limit was exceeded.
    #[error("{}{source}", member_prefix(.member))]
    Limit {
        /// The `.npz` member, if any.
        member: Option<String>,
        /// The limit.
        #[source]
        source: LimitExceeded,
    },
}

/// A safetensors file the converter refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SafetensorsError {
    /// The file is something else (detected from its content).
    #[error("not a safetensors file: the content is {found}")]
    NotSafetensors {
        /// What the content looks like.
        found: String,
    },
    /// The 8-byte header length does not fit the file.
    #[error("header length {len} (bytes 0..8) does not fit in the {file_len}-byte file")]
    HeaderLength {
        /// Declared header length.
        len: u64,
        /// File length.
        file_len: u64,
    },
    /// The JSON header is malformed or breaks the schema (strict pre-pass).
    #[error("JSON header at offset {offset}{}: {what}", key_suffix(.key))]
    Header {
        /// The tensor name or metadata key concerned, if any.
        key: Option<String>,
        /// Offset in the file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A key appears twice in one JSON object (the safetensors crate silently keeps one).
    #[error("duplicate key {key:?} in the JSON header (second at offset {offset})")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Offset of the second occurrence.
        offset: u64,
    },
    /// The safetensors crate refused the file.
    #[error("invalid safetensors file: {0}")]
    Invalid(#[source] safetensors::SafeTensorError),
    /// A dtype tensorseal cannot hold (sub-byte F4/F6 types).
    #[error(
        "tensor {name:?}: unsupported dtype {dtype} (sub-byte floats have no tensorseal dtype)"
    )]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// The safetensors dtype.
        dtype: String,
    },
    /// A limit was exceeded.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
}

fn key_suffix(key: &Option<String>) -> String {
    key.as_ref()
        .map(|k| format!(" (key {k:?})"))
        .unwrap_or_default()
}

/// A Hugging Face sharded-checkpoint index the converter refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HfIndexError {
    /// The index file could not be read.
    #[error("cannot read the index file")]
    Io(#[from] std::io::Error),
    /// Malformed JSON or a schema violation.
    #[error("index JSON at offset {offset}{}: {what}", key_suffix(.key))]
    Json {
        /// The key concerned, if any.
        key: Option<String>,
        /// Offset in the index file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A key appears twice in one JSON object.
    #[error("duplicate key {key:?} in the index (second at offset {offset})")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Offset of the second occurrence.
        offset: u64,
    },
    /// A shard file name that could point outside the index's directory.
    #[error(
        "tensor {tensor:?}: shard name {shard:?} is refused ({reason}); shard names are plain file \
         names of [A-Za-z0-9._-]"
    )]
    BadShardName {
        /// The tensor it was given for.
        tensor: String,
        /// The shard name.
        shard: String,
        /// Why.
        reason: &'static str,
    },
    /// A shard does not provide exactly the tensors the index assigns it.
    #[error("shard {shard:?}: {what}")]
    ShardMismatch {
        /// The shard file name.
        shard: String,
        /// Which names are missing or extra.
        what: String,
    },
    /// A limit was exceeded.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
}

/// Input whose format the converter does not accept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// The file is empty.
    #[error("the file is empty")]
    Empty,
    /// A compressed archive (gzip, xz, bzip2, zstd, 7z, ...).
    #[error(
        "compressed archive ({kind}): decompress it first (not done automatically, so that what \
         is converted is exactly what you inspected)"
    )]
    Compressed {
        /// The compression format.
        kind: &'static str,
    },
    /// A zip archive with bytes before its first entry.
    #[error(
        "a zip archive whose central directory ends the file, but with {prefix_len} bytes before \
         its first entry: a polyglot or prepended file is refused"
    )]
    PrependedZip {
        /// Bytes before the archive (where its first local header was found, or the file length).
        prefix_len: u64,
    },
    /// A zip archive that is neither a torch checkpoint nor an `.npz`.
    #[error("zip archive that is neither a torch.save checkpoint nor a numpy .npz: {what}")]
    UnknownZip {
        /// What it holds.
        what: String,
    },
    /// JSON that is not a Hugging Face index.
    #[error("JSON that is not a Hugging Face sharded-checkpoint index ({what})")]
    UnknownJson {
        /// What is wrong.
        what: String,
    },
    /// Nothing recognised.
    #[error(
        "unknown format (first bytes {head:02x?}); the format is recognised from the content, never from the file name"
    )]
    Unknown {
        /// Up to 16 leading bytes.
        head: Vec<u8>,
    },
}

/// The sandbox could not be applied (only returned when the caller requires it, or on misuse).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A required feature is not available on this kernel or platform.
    #[error("sandbox required but unavailable: {what}")]
    Unavailable {
        /// What is missing.
        what: String,
    },
    /// A path given to the sandbox could not be opened for a rule.
    #[error("sandbox rule for {path}: {what}")]
    Rule {
        /// The path.
        path: String,
        /// What failed.
        what: String,
    },
    /// Landlock or seccomp failed in a way that is not "unsupported".
    #[error("sandbox: {what}")]
    Failed {
        /// What failed.
        what: String,
    },
}

/// `tensorseal export` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The tensorseal file is malformed or could not be read.
    #[error(transparent)]
    Read(#[from] tensorseal::ReadError),
    /// The tensorseal file failed verification.
    #[error(transparent)]
    Verify(#[from] tensorseal::VerifyError),
    /// Two tensors would get the same safetensors name.
    #[error(
        "tensors at {first} and {second} would both be named {name:?} in the safetensors file; \
         rename one of the keys"
    )]
    NameCollision {
        /// The safetensors name.
        name: String,
        /// The first tree path.
        first: String,
        /// The second tree path.
        second: String,
    },
    /// The safetensors header could not be built (too large, invalid).
    #[error("cannot build the safetensors header: {0}")]
    Header(#[source] safetensors::SafeTensorError),
    /// Writing the output failed.
    #[error("cannot write the output")]
    Io(#[from] std::io::Error),
}

/// What the converter refused or failed on. [`ConvertError::is_refusal`] separates content
/// refused as unsafe or unknown (the CLI's exit 4) from malformed or unsupported input and I/O
/// errors (exit 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The input format could not be recognised.
    #[error(transparent)]
    Detect(#[from] DetectError),
    /// The zip container is refused.
    #[error(transparent)]
    Zip(#[from] ZipError),
    /// The torch zip layout is refused.
    #[error(transparent)]
    TorchZip(#[from] TorchZipError),
    /// A `.npy`/`.npz` file is refused.
    #[error(transparent)]
    Npy(#[from] NpyError),
    /// A safetensors file is refused.
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    /// A Hugging Face index is refused.
    #[error(transparent)]
    HfIndex(#[from] HfIndexError),
    /// A limit of the converter was exceeded.
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
    /// The pickle stream names globals that execute code or do I/O: always refused.
    #[error("{member}: refused as unsafe: {}", findings.join("; "))]
    Unsafe {
        /// The pickle member (e.g. `archive/data.pkl`).
        member: String,
        /// Each unsafe finding: global, byte offset and reason.
        findings: Vec<String>,
    },
    /// The pickle stream holds classes the converter does not know; refused unless inert
    /// records are allowed.
    #[error(
        "{member}: refused: unknown classes {} (rerun with --allow-objects to keep them as inert \
         records that nothing instantiates)",
        findings.join("; ")
    )]
    UnknownObjects {
        /// The pickle member.
        member: String,
        /// Each unknown global with its byte offset.
        findings: Vec<String>,
    },
    /// The pickle stream is malformed (truncated, bad opcode, limits, ...).
    #[error("{member}: {source}")]
    Pickle {
        /// The pickle member.
        member: String,
        /// The interpreter's error, with offset and opcode.
        #[source]
        source: tensorseal_pickle::PickleError,
    },
    /// A value the format cannot hold faithfully (quantized or sparse tensors, exotic dtypes,
    /// ...): refused rather than dropped.
    #[error("{member}: {path}: unsupported: {what}")]
    Unsupported {
        /// The member or file.
        member: String,
        /// Where in the checkpoint.
        path: String,
        /// What it is.
        what: String,
    },
    /// The input is inconsistent (a missing storage record, a view outside its storage, a
    /// legacy file whose layout does not add up, ...).
    #[error("{member}: {path}: {what}")]
    Invalid {
        /// The member or file.
        member: String,
        /// Where.
        path: String,
        /// What is wrong.
        what: String,
    },
    /// The OS sandbox could not be applied and was required.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Writing the tensorseal file failed.
    #[error(transparent)]
    Write(#[from] tensorseal::WriteError),
    /// A shard set given as input does not verify or bind (spec §11.3).
    #[error(transparent)]
    ShardSet(#[from] tensorseal::ShardSetError),
}

impl ConvertError {
    /// Whether this is a refusal of the content (unsafe or unknown globals): exit 4 in the CLI.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ConvertError::Unsafe { .. } | ConvertError::UnknownObjects { .. }
        )
    }
}

impl Classify for ConvertError {
    fn class(&self) -> FailureClass {
        match self {
            ConvertError::Unsafe { .. } => FailureClass::Unsafe,
            ConvertError::UnknownObjects { .. } => FailureClass::UnknownObjects,
            ConvertError::Sandbox(_) => FailureClass::Sandbox,
            ConvertError::ShardSet(e) => e.class(),
            // A source the format cannot hold faithfully is bad input for `convert` (exit 1).
            _ => FailureClass::Invalid,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ConvertError::Unsafe { .. } => "unsafe",
            ConvertError::UnknownObjects { .. } => "unknown_objects",
            ConvertError::Io { .. } => "io",
            ConvertError::Unsupported { .. } => "unsupported",
            ConvertError::Sandbox(_) => "sandbox",
            ConvertError::ShardSet(e) => e.kind(),
            ConvertError::Write(tensorseal::WriteError::Io(_)) => "io",
            ConvertError::Detect(_)
            | ConvertError::Zip(_)
            | ConvertError::TorchZip(_)
            | ConvertError::Npy(_)
            | ConvertError::Safetensors(_)
            | ConvertError::HfIndex(_)
            | ConvertError::Limit(_)
            | ConvertError::Pickle { .. }
            | ConvertError::Invalid { .. }
            | ConvertError::Write(_) => "invalid",
        }
    }
}

impl Classify for ExportError {
    fn class(&self) -> FailureClass {
        match self {
            ExportError::Verify(v) => v.class(),
            ExportError::Read(_)
            | ExportError::NameCollision { .. }
            | ExportError::Header(_)
            | ExportError::Io(_) => FailureClass::Invalid,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ExportError::Verify(v) => v.kind(),
            ExportError::Read(tensorseal::ReadError::Io(_)) | ExportError::Io(_) => "io",
            ExportError::Read(_) => "malformed",
            ExportError::NameCollision { .. } => "name_collision",
            ExportError::Header(_) => "invalid",
        }
    }
}
