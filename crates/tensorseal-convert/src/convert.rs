//! `convert`: legacy checkpoint in, signed tensorseal file out, nothing executed.
//!
//! Order of work: map every input and create the output's temporary file; lock the process down
//! (sandbox); recognise the format from content; interpret pickles under the policy (a refusal
//! ends here, and the temporary file is removed); materialize tensors into blobs; write the
//! manifest with the source's SHA-256 in the signed metadata; fsync and rename.

use crate::error::ConvertError;
use crate::hf_index::HfIndex;
use crate::limits::Limits;
use crate::materialize::View;
use crate::npy::{NpyArray, Npz};
use crate::pickle_tree::{BlobSink, TreeStats};
use crate::safetensors_in::SafetensorsFile;
use crate::sandbox::{SandboxMode, SandboxPolicy, SandboxReport};
use crate::torch::{self, PickleContext, PickleOutcome};
use crate::{
    ByteOrder, DeferredCrcs, Format, TorchZip, ZipArchive, ZipError, ZipKind, detect, zip_kind,
};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tensorseal::{
    BlobId, Compression, DType, FileBytes, MapMode, Node, SecretKey, Tensor, TensorKind,
    WriteOptions, Writer, WrittenFile,
};
use tensorseal_pickle as pk;

/// Version of this converter, recorded in the output's `producer` metadata.
pub const PRODUCER: &str = concat!("tensorseal-convert ", env!("CARGO_PKG_VERSION"));

/// Metadata keys the converter sets itself; callers cannot override them.
pub const RESERVED_METADATA: [&str; 3] = ["producer", "source_format", "source_sha256"];

/// Options of [`convert`].
pub struct ConvertOptions<'a> {
    /// Keep instances of unknown classes as inert records instead of refusing the file.
    /// Code-execution and I/O primitives are refused whatever this says.
    pub allow_objects: bool,
    /// Blob encoding of the output.
    pub compression: Compression,
    /// Keys that sign the output.
    pub signers: Vec<&'a SecretKey>,
    /// Extra signed metadata (`run_id`, `step`, ...); the keys of [`RESERVED_METADATA`] are set
    /// by the converter.
    pub metadata: BTreeMap<String, String>,
    /// OS sandbox: off by default, because it locks down the calling process for good (the
    /// `tensorseal convert` command runs in its own process and turns it on). A library caller
    /// that converts in a dedicated process should set it.
    pub sandbox: SandboxMode,
    /// Container limits.
    pub limits: Limits,
    /// Pickle interpreter limits.
    pub pickle_limits: pk::Limits,
    /// Limits of the written file (a reader with the same limits accepts it).
    pub format_limits: tensorseal::Limits,
    /// Called with (bytes written, total bytes) as tensors are written.
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
}

impl Default for ConvertOptions<'_> {
    fn default() -> Self {
        ConvertOptions {
            allow_objects: false,
            compression: Compression::None,
            signers: Vec::new(),
            metadata: BTreeMap::new(),
            sandbox: SandboxMode::Disabled,
            limits: Limits::default(),
            pickle_limits: pk::Limits::default(),
            format_limits: tensorseal::Limits::default(),
            progress: None,
        }
    }
}

/// What a successful conversion did.
#[derive(Debug)]
pub struct ConvertReport {
    /// The source format, as recorded in the `source_format` metadata.
    pub source_format: &'static str,
    /// SHA-256 of the input file (the index file for a sharded checkpoint), hex.
    pub source_sha256: String,
    /// The written file.
    pub output: WrittenFile,
    /// Key ids of the keys that signed it.
    pub signed_by: Vec<String>,
    /// Tensors, blobs and bytes written.
    pub stats: TreeStats,
    /// Unknown globals kept as inert records (only with `allow_objects`).
    pub inert_objects: Vec<String>,
    /// What the sandbox enforced.
    pub sandbox: SandboxReport,
    /// Notes for the user (e.g. a CRC-less zip, a big-endian source).
    pub notes: Vec<String>,
}

impl ConvertReport {
    /// The report as the members `tensorseal convert --json` prints after `input`, `output`,
    /// `ok` and `exit_code`, and the Python `convert` returns (documented in README.md): one
    /// definition for both. `mode` is the sandbox mode that was asked for.
    pub fn to_json(&self, mode: SandboxMode) -> serde_json::Value {
        serde_json::json!({
            "source_format": self.source_format,
            "source_sha256": self.source_sha256,
            "manifest_sha256": hex::encode(self.output.manifest_sha256),
            "file_length": self.output.length,
            "tensors": self.stats.tensors,
            "blobs": self.stats.blobs,
            "bytes": self.stats.bytes,
            "shared": self.stats.shared,
            "signed_by": self.signed_by,
            "inert_objects": self.inert_objects,
            "notes": self.notes,
            "sandbox": self.sandbox.to_json(mode),
        })
    }
}

/// The writer of an output file (its temporary file created now) with `options`' compression
/// and limits; an I/O failure names `output`.
pub(crate) fn create_writer(
    output: &Path,
    options: &ConvertOptions<'_>,
) -> Result<Writer, ConvertError> {
    let write = WriteOptions {
        compression: options.compression,
        limits: options.format_limits.clone(),
    };
    Writer::create(output, write).map_err(|e| match e {
        tensorseal::WriteError::Io(source) => ConvertError::Io {
            path: output.to_path_buf(),
            source,
        },
        other => other.into(),
    })
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where converted blobs go: the output file's [`Writer`], or, when fuzzing, a store that only
/// records their digests ([`crate::fuzz_support`]).
pub(crate) trait BlobStore {
    /// Stores one blob of contiguous bytes.
    fn store_slice(&mut self, data: &[u8], dtype: DType) -> Result<BlobId, ConvertError>;
    /// Stores one blob of `len` bytes materialized piece by piece.
    fn store_view(
        &mut self,
        view: &mut View<'_>,
        len: u64,
        dtype: DType,
    ) -> Result<BlobId, ConvertError>;
}

impl BlobStore for Writer {
    fn store_slice(&mut self, data: &[u8], dtype: DType) -> Result<BlobId, ConvertError> {
        Ok(self.write_blob(data, dtype)?)
    }

    fn store_view(
        &mut self,
        view: &mut View<'_>,
        len: u64,
        dtype: DType,
    ) -> Result<BlobId, ConvertError> {
        Ok(self.write_blob_from(view, len, dtype)?)
    }
}

/// Hands blobs to a [`BlobStore`], enforcing the output budget and reporting progress.
pub(crate) struct BudgetSink<'s, 'o> {
    store: &'s mut dyn BlobStore,
    written: u64,
    budget: u64,
    input_len: u64,
    progress: Option<&'o (dyn Fn(u64, u64) + Sync)>,
}

impl<'s, 'o> BudgetSink<'s, 'o> {
    /// A sink allowing [`Limits::max_output_for`] the inputs' total size.
    pub(crate) fn new(
        store: &'s mut dyn BlobStore,
        limits: &Limits,
        input_len: u64,
        progress: Option<&'o (dyn Fn(u64, u64) + Sync)>,
    ) -> Self {
        BudgetSink {
            store,
            written: 0,
            budget: limits.max_output_for(input_len),
            input_len,
            progress,
        }
    }

    fn charge(&mut self, len: u64, what: &str) -> Result<(), ConvertError> {
        let after = self.written.saturating_add(len);
        if after > self.budget {
            return Err(ConvertError::Invalid {
                member: "output".into(),
                path: what.to_string(),
                what: format!(
                    "the tensors expand to more than {} bytes from a {}-byte input (stride-0 or shared-storage fan-out?); \
                     raise the output limit if this is intended",
                    self.budget, self.input_len
                ),
            });
        }
        self.written = after;
        Ok(())
    }

    fn done(&self) {
        if let Some(p) = self.progress {
            p(self.written, self.input_len.max(self.written));
        }
    }
}

impl BlobSink for BudgetSink<'_, '_> {
    fn slice(&mut self, data: &[u8], dtype: DType, what: &str) -> Result<BlobId, ConvertError> {
        self.charge(data.len() as u64, what)?;
        let id = self.store.store_slice(data, dtype)?;
        self.done();
        Ok(id)
    }

    fn view(
        &mut self,
        view: &mut View<'_>,
        dtype: DType,
        what: &str,
    ) -> Result<BlobId, ConvertError> {
        let len = view.byte_len();
        self.charge(len, what)?;
        let id = self.store.store_view(view, len, dtype)?;
        self.done();
        Ok(id)
    }
}

/// The mapped inputs: the file itself and, for a sharded checkpoint, its shards.
pub(crate) struct Inputs {
    main: FileBytes,
    index: Option<HfIndex>,
    shards: Vec<FileBytes>,
    /// The format recognised from the main file's content.
    pub(crate) format: Format,
    /// Every file read, for the sandbox policy.
    pub(crate) read_paths: Vec<PathBuf>,
    name: String,
    /// The shards' file names (DCP folders).
    shard_names: Vec<String>,
}

impl Inputs {
    /// Maps `input` (and, for a Hugging Face index, every shard it names) while the process may
    /// still open files, and recognises its format.
    pub(crate) fn open(input: &Path, limits: &Limits) -> Result<Inputs, ConvertError> {
        if input.is_dir() {
            if input.join(crate::dcp::METADATA_FILE).is_file() {
                return Inputs::open_dcp(input, limits);
            }
            return Err(directory_input(input));
        }
        let main = FileBytes::open(input, MapMode::Map).map_err(io(input))?;
        let format = detect(&main, limits)?;
        let mut inputs = Inputs {
            main,
            index: None,
            shards: Vec::new(),
            format,
            read_paths: vec![input.to_path_buf()],
            name: input.file_name().map_or_else(
                || input.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            shard_names: Vec::new(),
        };
        if format == Format::HfIndex {
            let dir = input.parent().unwrap_or(Path::new("."));
            let index = HfIndex::parse(&inputs.main, dir, limits)?;
            for shard in index.shards() {
                inputs
                    .shards
                    .push(FileBytes::open(shard.path(), MapMode::Map).map_err(io(shard.path()))?);
                inputs.read_paths.push(shard.path().to_path_buf());
            }
            inputs.index = Some(index);
        }
        Ok(inputs)
    }

    /// Maps a DCP folder: `.metadata` and every `*.distcp` file in it (which of them `.metadata`
    /// names is only known once it is parsed, under the sandbox).
    fn open_dcp(dir: &Path, limits: &Limits) -> Result<Inputs, ConvertError> {
        let meta_path = dir.join(crate::dcp::METADATA_FILE);
        let main = FileBytes::open(&meta_path, MapMode::Map).map_err(io(&meta_path))?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(crate::dcp::DATA_SUFFIX)
                && entry.file_type().map_err(io(dir))?.is_file()
            {
                names.push(name);
            }
        }
        names.sort();
        crate::limits::check("max_dcp_files", names.len() as u64, limits.max_dcp_files, 0)?;
        let mut inputs = Inputs {
            main,
            index: None,
            shards: Vec::with_capacity(names.len()),
            format: Format::Dcp,
            read_paths: vec![meta_path],
            name: dir.file_name().map_or_else(
                || dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            shard_names: Vec::new(),
        };
        for name in names {
            let path = dir.join(&name);
            inputs
                .shards
                .push(FileBytes::open(&path, MapMode::Map).map_err(io(&path))?);
            inputs.read_paths.push(path);
            inputs.shard_names.push(name);
        }
        Ok(inputs)
    }

    /// The total size of every input file.
    pub(crate) fn len(&self) -> u64 {
        self.main.len() as u64 + self.shards.iter().map(|s| s.len() as u64).sum::<u64>()
    }

    /// The inputs as a conversion reads them.
    pub(crate) fn source(&self) -> Source<'_> {
        Source {
            bytes: &self.main,
            name: self.name.clone(),
            index: self.index.as_ref(),
            shards: self.shards.iter().map(|s| &**s).collect(),
            shard_names: self.shard_names.iter().map(String::as_str).collect(),
        }
    }
}

/// Refuses metadata that the converter sets itself or that the format does not allow.
pub(crate) fn check_metadata(options: &ConvertOptions<'_>) -> Result<(), ConvertError> {
    for key in RESERVED_METADATA {
        if options.metadata.contains_key(key) {
            return Err(ConvertError::Invalid {
                member: "metadata".into(),
                path: key.into(),
                what: "set by the converter itself".into(),
            });
        }
    }
    for (k, v) in &options.metadata {
        tensorseal::check_metadata_entry(k, v).map_err(|what| ConvertError::Invalid {
            member: "metadata".into(),
            path: k.clone(),
            what,
        })?;
    }
    Ok(())
}

/// The signed metadata of the output: the caller's, plus what the converter records.
pub(crate) fn output_metadata(
    options: &ConvertOptions<'_>,
    conversion: &Conversion,
) -> BTreeMap<String, String> {
    let mut metadata = options.metadata.clone();
    metadata.insert("producer".into(), PRODUCER.into());
    metadata.insert("source_format".into(), conversion.source_format.into());
    metadata.insert("source_sha256".into(), conversion.source_sha256.clone());
    metadata
}

/// Converts `input` to a tensorseal file at `output`.
///
/// Nothing is created under `output` unless the conversion succeeds: the file is written to a
/// temporary name in the same directory, fsynced and renamed. An existing `output` is untouched
/// until that rename, and the input is only ever read.
///
/// # Errors
/// [`ConvertError::is_refusal`] for unsafe or (without `allow_objects`) unknown content; other
/// variants for malformed or unsupported input and I/O errors. Every error names the file or
/// member and the offset or tree path involved.
pub fn convert(
    input: &Path,
    output: &Path,
    options: &ConvertOptions<'_>,
) -> Result<ConvertReport, ConvertError> {
    check_metadata(options)?;

    // 1. Map every input while the process may still open files.
    let inputs = Inputs::open(input, &options.limits)?;

    // 2. The output's temporary file.
    let mut writer = create_writer(output, options)?;

    // 3. Lock down before parsing anything untrusted.
    let mut policy = SandboxPolicy::new(options.sandbox).write_dir_of(output);
    for p in &inputs.read_paths {
        policy = policy.read(p);
    }
    let sandbox = policy.apply()?;

    // 4. Convert, hashing the source on the way.
    let mut sink = BudgetSink::new(&mut writer, &options.limits, inputs.len(), options.progress);
    let conversion = convert_source(inputs.format, &inputs.source(), options, &mut sink)?;

    let metadata = output_metadata(options, &conversion);
    let written = writer.finish(conversion.root, metadata, &options.signers)?;
    Ok(ConvertReport {
        source_format: conversion.source_format,
        source_sha256: conversion.source_sha256,
        output: written,
        signed_by: options
            .signers
            .iter()
            .map(|k| k.public_key().key_id())
            .collect(),
        stats: conversion.stats,
        inert_objects: conversion.inert_objects,
        sandbox,
        notes: conversion.notes,
    })
}

/// The refusal of a folder as input, naming what the folder looks like.
pub(crate) fn directory_input(input: &Path) -> ConvertError {
    let what = if tensorseal::is_shard_set(input) {
        "a tensorseal shard set (spec §11): it is already tensorseal; verify it with `tensorseal \
         verify`, load it with tensorseal.dcp"
    } else {
        "a directory without a DCP .metadata file: give one checkpoint file (for a sharded \
         Hugging Face checkpoint, its *.index.json), or a torch.distributed.checkpoint folder"
    };
    ConvertError::Unsupported {
        member: input.display().to_string(),
        path: "the input".into(),
        what: what.into(),
    }
}

/// The input of a conversion, once mapped.
pub(crate) struct Source<'s> {
    /// The input file's bytes (the index file for a sharded checkpoint).
    pub(crate) bytes: &'s [u8],
    /// Its file name, for messages.
    pub(crate) name: String,
    /// The parsed index of a sharded checkpoint.
    pub(crate) index: Option<&'s HfIndex>,
    /// The shards' bytes, in the index's order (a DCP folder: its `*.distcp` files, by name).
    pub(crate) shards: Vec<&'s [u8]>,
    /// The shards' file names, for a DCP folder.
    pub(crate) shard_names: Vec<&'s str>,
}

/// What [`convert_source`] produced.
pub(crate) struct Conversion {
    pub(crate) root: Node,
    pub(crate) source_format: &'static str,
    pub(crate) source_sha256: String,
    pub(crate) stats: TreeStats,
    pub(crate) inert_objects: Vec<String>,
    pub(crate) notes: Vec<String>,
}

/// Converts a source whose format was detected, handing its tensors to `sink`, while another
/// thread computes the source's SHA-256.
///
/// For a zip, the same pass over the input checks the CRC-32 of every stored member
/// ([`ZipArchive::new_deferred`]) instead of a pass of its own before conversion could start (a
/// second read of every byte, on the critical path). A mismatch is reported in preference to
/// whatever the conversion found, as the zip reader would have reported it first: the outcome
/// is the one of checking every CRC up front, as `scan` does.
pub(crate) fn convert_source(
    format: Format,
    source: &Source<'_>,
    options: &ConvertOptions<'_>,
    sink: &mut dyn BlobSink,
) -> Result<Conversion, ConvertError> {
    let (zip, crcs) = match format {
        Format::Zip => {
            let (zip, crcs) = ZipArchive::new_deferred(source.bytes, &options.limits)?;
            (Some(zip), Some(crcs))
        }
        _ => (None, None),
    };
    let mut notes = Vec::new();
    let (converted, (source_sha256, crc_check)) = std::thread::scope(|s| {
        let hasher = s.spawn(|| match format {
            // A folder: its `.metadata`, then every `.distcp` file in name order.
            Format::Dcp => (hex::encode(folder_digest(source)), Ok(())),
            _ => source_digest(source.bytes, crcs),
        });
        let converted = convert_format(format, zip, source, options, sink, &mut notes);
        (converted, hasher.join().expect("hashing does not panic"))
    });
    crc_check?;
    let (root, source_format, stats, inert_objects) = converted?;
    Ok(Conversion {
        root,
        source_format,
        source_sha256,
        stats,
        inert_objects,
        notes,
    })
}

/// How pickles are read under `options`.
pub(crate) fn pickle_context<'o>(options: &'o ConvertOptions<'_>) -> PickleContext<'o> {
    PickleContext {
        limits: &options.pickle_limits,
        allow_objects: options.allow_objects,
        max_tree_depth: options.format_limits.max_tree_depth,
        max_tree_nodes: (options.format_limits.max_cbor_items / 4) as u64,
    }
}

/// The SHA-256 of a DCP folder's files as one stream: `.metadata`, then each `*.distcp` file in
/// name order (spec §5: `source_sha256` of a folder).
pub(crate) fn folder_digest(source: &Source<'_>) -> [u8; 32] {
    let mut sha = Sha256::new();
    sha.update(source.bytes);
    for shard in &source.shards {
        sha.update(shard);
    }
    sha.finalize().into()
}

/// The hex SHA-256 of `bytes` and, for a zip, the check of its deferred CRCs, in one pass.
fn source_digest(bytes: &[u8], crcs: Option<DeferredCrcs<'_>>) -> (String, Result<(), ZipError>) {
    match crcs {
        None => (hex::encode(tensorseal::sha256(bytes)), Ok(())),
        Some(crcs) => {
            let mut sha = Sha256::new();
            let checked = crcs.check_reading(|piece| sha.update(piece));
            (hex::encode(sha.finalize()), checked)
        }
    }
}

type Converted = (Node, &'static str, TreeStats, Vec<String>);

fn convert_format(
    format: Format,
    zip: Option<ZipArchive<'_>>,
    source: &Source<'_>,
    options: &ConvertOptions<'_>,
    sink: &mut dyn BlobSink,
    notes: &mut Vec<String>,
) -> Result<Converted, ConvertError> {
    let bytes = source.bytes;
    let ctx = pickle_context(options);
    let name = source.name.clone();
    let pickled = |(root, outcome): (Node, PickleOutcome), format| {
        Ok((root, format, outcome.stats, outcome.inert))
    };
    match format {
        Format::Zip => {
            let zip = zip.expect("convert_source parses zip inputs");
            if zip.crc_absent() {
                notes.push("the archive has no CRC-32s (torch's set_crc32_options(False)); SHA-256 digests now cover the data".into());
            }
            match zip_kind(&zip)? {
                ZipKind::TorchZip => {
                    let tz = TorchZip::new(zip, &options.limits)?;
                    if tz.byte_order() == ByteOrder::Big {
                        notes.push("big-endian source: every element was byte-swapped to little-endian".into());
                    }
                    pickled(torch::zip_tree(&tz, &ctx, sink)?, "torch-zip")
                }
                ZipKind::TorchScript => Err(ConvertError::Unsupported {
                    member: name,
                    path: "the archive".into(),
                    what: "a TorchScript archive (torch.jit.save: code/ and constants.pkl hold a program, not just data); \
                           load it in a trusted environment and torch.save its state_dict() instead"
                        .into(),
                }),
                ZipKind::Npz => {
                    let npz = Npz::from_archive(&zip, &options.limits).map_err(|e| {
                        // An object member's data is a pickle: judge it, so a payload is refused
                        // as unsafe rather than merely unsupported.
                        object_array_refusal(&e, &zip, &options.pickle_limits).unwrap_or(e.into())
                    })?;
                    let mut items = Vec::with_capacity(npz.arrays().len());
                    let mut stats = TreeStats::default();
                    for (key, array) in npz.arrays() {
                        items.push((Node::Str(key.clone()), npy_tensor(array, sink, key, &mut stats)?));
                    }
                    Ok((Node::Dict(items), "npz", stats, Vec::new()))
                }
            }
        }
        Format::Npy => {
            let array = NpyArray::parse(bytes, &options.limits).map_err(|e| match &e {
                crate::NpyError::ObjectArray { .. } => {
                    crate::scan::npy_object_refusal(bytes, &name, &options.pickle_limits)
                        .unwrap_or(e.into())
                }
                _ => e.into(),
            })?;
            let mut stats = TreeStats::default();
            let root = npy_tensor(&array, sink, &name, &mut stats)?;
            Ok((root, "npy", stats, Vec::new()))
        }
        Format::Safetensors => {
            let file = SafetensorsFile::parse(bytes, &options.limits)?;
            let mut stats = TreeStats::default();
            let root = Node::Dict(safetensors_items(&file, sink, &mut stats)?);
            Ok((root, "safetensors", stats, Vec::new()))
        }
        Format::TorchLegacy => pickled(torch::legacy_tree(bytes, &ctx, sink)?, "torch-legacy"),
        Format::Pickle { .. } => {
            // torch legacy files saved with another pickle protocol start with a pickle too: the
            // first value decides.
            let options = crate::pickles::options(ctx.limits, false, true);
            let first = pk::load(bytes, 0, &options, &mut pk::NoStorages);
            if first
                .as_ref()
                .is_ok_and(|g| torch::is_legacy_magic(g) && g.end() < bytes.len())
            {
                pickled(torch::legacy_tree(bytes, &ctx, sink)?, "torch-legacy")
            } else {
                pickled(torch::pickle_tree(bytes, &name, &ctx, sink)?, "pickle")
            }
        }
        Format::HfIndex => {
            let index = source.index.expect("index parsed for HfIndex inputs");
            hf_tree(index, &source.shards, &ctx, options, sink)
                .map(|(root, stats, inert)| (root, "hf-index", stats, inert))
        }
        Format::Dcp => {
            let files = crate::dcp::DcpFiles {
                metadata: bytes,
                data: source
                    .shard_names
                    .iter()
                    .copied()
                    .zip(source.shards.iter().copied())
                    .collect(),
            };
            let (root, stats, inert) = crate::dcp::dcp_tree(&files, &ctx, &options.limits, sink)?;
            Ok((root, "dcp", stats, inert))
        }
        Format::TorchTar => {
            // The manifest's well-known `source_format` values have no tar entry: the tar
            // format is the legacy format's predecessor, read by the same torch function.
            notes.push(
                "torch's pre-0.1.10 tar format, recorded as source_format torch-legacy".into(),
            );
            pickled(
                crate::torch_tar::tar_tree(bytes, &ctx, &options.limits, sink)?,
                "torch-legacy",
            )
        }
        Format::Tensorseal => Err(ConvertError::Unsupported {
            member: name,
            path: "the file".into(),
            what: "already a tensorseal file (use `tensorseal sign` to add a signature)".into(),
        }),
    }
}

/// The refusal an `.npz` object member's pickle implies, if any.
fn object_array_refusal(
    e: &crate::NpyError,
    zip: &ZipArchive<'_>,
    limits: &pk::Limits,
) -> Option<ConvertError> {
    let crate::NpyError::ObjectArray {
        member: Some(member),
        ..
    } = e
    else {
        return None;
    };
    let entry = zip.by_name(member)?;
    let data = zip.read(entry).ok()?;
    crate::scan::npy_object_refusal(&data, member, limits)
}

/// A `.npy` array as an ndarray tensor node.
fn npy_tensor(
    array: &NpyArray<'_>,
    sink: &mut dyn BlobSink,
    what: &str,
    stats: &mut TreeStats,
) -> Result<Node, ConvertError> {
    let dtype = array.dtype();
    let shape = array.shape().to_vec();
    let rank = shape.len();
    // Element strides into the data: C order, or Fortran order (first dimension fastest).
    let mut strides = vec![0u64; rank];
    let mut step = 1u64;
    let order: Vec<usize> = if array.fortran_order() {
        (0..rank).collect()
    } else {
        (0..rank).rev().collect()
    };
    for d in order {
        strides[d] = step;
        step = step.saturating_mul(shape[d]);
    }
    let blob = if dtype.byte_size(&shape) == Some(0) {
        None
    } else {
        let mut view = View::new(array.data(), dtype, 0, shape.clone(), strides)
            .map(|v| v.big_endian(array.byte_order() == ByteOrder::Big))
            .map_err(|e| ConvertError::Invalid {
                member: what.to_string(),
                path: "the array".into(),
                what: e.to_string(),
            })?;
        stats.blobs += 1;
        stats.bytes += view.byte_len();
        Some(match view.contiguous_slice() {
            Some(slice) => sink.slice(slice, dtype, what)?,
            None => sink.view(&mut view, dtype, what)?,
        })
    };
    stats.tensors += 1;
    Ok(Node::Tensor(Box::new(Tensor {
        dtype,
        shape,
        blob,
        kind: TensorKind::NdArray,
        requires_grad: false,
        attrs: Vec::new(),
    })))
}

fn safetensors_items(
    file: &SafetensorsFile<'_>,
    sink: &mut dyn BlobSink,
    stats: &mut TreeStats,
) -> Result<Vec<(Node, Node)>, ConvertError> {
    let mut items = Vec::with_capacity(file.tensors().len());
    for t in file.tensors() {
        let blob = if t.data().is_empty() {
            None
        } else {
            stats.blobs += 1;
            stats.bytes += t.data().len() as u64;
            Some(sink.slice(t.data(), t.dtype(), t.name())?)
        };
        stats.tensors += 1;
        let tensor = Tensor::new(t.dtype(), t.shape().to_vec(), blob);
        items.push((
            Node::Str(t.name().to_string()),
            Node::Tensor(Box::new(tensor)),
        ));
    }
    Ok(items)
}

/// A sharded checkpoint: one dict of every tensor, in the index's `weight_map` order, each shard
/// providing exactly the names the index assigns it.
fn hf_tree(
    index: &HfIndex,
    shards: &[&[u8]],
    ctx: &PickleContext<'_>,
    options: &ConvertOptions<'_>,
    sink: &mut dyn BlobSink,
) -> Result<(Node, TreeStats, Vec<String>), ConvertError> {
    let mut by_name: BTreeMap<String, Node> = BTreeMap::new();
    let mut stats = TreeStats::default();
    let mut inert = Vec::new();
    for (i, (shard, &bytes)) in index.shards().iter().zip(shards).enumerate() {
        let mut names = Vec::new();
        match detect(bytes, &options.limits)? {
            Format::Safetensors => {
                let file = SafetensorsFile::parse(bytes, &options.limits)?;
                for (k, v) in safetensors_items(&file, sink, &mut stats)? {
                    if let Node::Str(name) = k {
                        names.push(name.clone());
                        by_name.insert(name, v);
                    }
                }
            }
            Format::Zip | Format::TorchLegacy | Format::Pickle { .. } => {
                let (root, outcome) = match detect(bytes, &options.limits)? {
                    Format::Zip => {
                        let tz = TorchZip::parse(bytes, &options.limits)?;
                        torch::zip_tree(&tz, ctx, sink)?
                    }
                    _ => torch::legacy_tree(bytes, ctx, sink)?,
                };
                let items = match root {
                    Node::Dict(items) => items,
                    Node::Typed(t) => match *t {
                        tensorseal::Typed::OrderedDict { items, .. } => items,
                        _ => return Err(shard_error(shard.file_name(), "is not a state dict")),
                    },
                    _ => return Err(shard_error(shard.file_name(), "is not a state dict")),
                };
                for (k, v) in items {
                    let Node::Str(name) = k else {
                        return Err(shard_error(
                            shard.file_name(),
                            "has a key that is not a str",
                        ));
                    };
                    if !matches!(v, Node::Tensor(_)) {
                        return Err(shard_error(
                            shard.file_name(),
                            &format!("entry {name:?} is not a tensor"),
                        ));
                    }
                    names.push(name.clone());
                    by_name.insert(name, v);
                }
                stats.tensors += outcome.stats.tensors;
                stats.blobs += outcome.stats.blobs;
                stats.bytes += outcome.stats.bytes;
                stats.shared += outcome.stats.shared;
                inert.extend(outcome.inert);
            }
            other => {
                return Err(shard_error(
                    shard.file_name(),
                    &format!(
                        "is a {} file, not safetensors or a torch checkpoint",
                        other.name()
                    ),
                ));
            }
        }
        index.check_shard(i, names.iter().map(String::as_str))?;
    }
    let mut items = Vec::with_capacity(by_name.len());
    for (name, _) in index.weight_map() {
        let node = by_name
            .remove(name)
            .ok_or_else(|| shard_error(name, "is in the weight map but no shard provides it"))?;
        items.push((Node::Str(name.to_string()), node));
    }
    Ok((Node::Dict(items), stats, inert))
}

fn shard_error(shard: &str, what: &str) -> ConvertError {
    ConvertError::Invalid {
        member: shard.to_string(),
        path: "the shard".into(),
        what: what.to_string(),
    }
}
