//! Writing files: blobs are streamed to a temporary file in the target directory as they arrive,
//! then the manifest, signatures and footer; the file is fsynced and renamed into place, so the
//! final name never holds a partial file.

use crate::codec;
use crate::dtype::DType;
use crate::error::{ReadError, VerifyError, WriteError};
use crate::keys::SecretKey;
use crate::layout::{self, Footer, SignatureEntry};
use crate::limits::{self, ALIGN, CHUNK, Limits};
use crate::manifest::{BlobCodec, BlobEntry, Digest, Encoding, Manifest};
use crate::planes::PlaneLayout;
use crate::reader::Envelope;
use crate::tree::{BlobId, Node};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How blobs are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Store raw: zero-copy for readers.
    #[default]
    None,
    /// zstd at `level` over byte-grouped chunks; a blob is stored raw unless this saves 5%.
    Zstd {
        /// zstd level; 1 is best on float weights (higher levels gain nothing measurable).
        level: i32,
    },
    /// The plane codec (spec §4.4): each chunk's elements split into sign/exponent/mantissa or
    /// byte planes by dtype, each plane tANS-coded, zstd-coded or raw, whichever is smallest. A
    /// blob is stored raw only when this saves nothing. Makes a version-2 file.
    Planes,
    /// The plane codec where it saves at least 5%, raw elsewhere (keeping zero-copy reads where
    /// compression would gain little); never bigger than raw.
    Auto,
}

/// The zstd levels [`Compression::Zstd`] takes.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=22;

/// A `--compress` / `compress=` value that is not one of the spellings [`Compression`] parses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected none, auto, planes, zstd or zstd=LEVEL with LEVEL in 1..=22, got {0:?}")]
pub struct CompressionSyntaxError(String);

impl std::str::FromStr for Compression {
    type Err = CompressionSyntaxError;

    /// The one parser of the compression option, for the CLI's `--compress` and the Python
    /// package's `compress=` alike: `none`, `auto`, `planes`, `zstd` (level 1), `zstd=LEVEL`.
    /// `zstd:LEVEL` is read too, the spelling the Python package documented first.
    fn from_str(s: &str) -> Result<Compression, CompressionSyntaxError> {
        let bad = || CompressionSyntaxError(s.to_string());
        match s {
            "none" => return Ok(Compression::None),
            "auto" => return Ok(Compression::Auto),
            "planes" => return Ok(Compression::Planes),
            "zstd" => return Ok(Compression::Zstd { level: 1 }),
            _ => {}
        }
        let level = s
            .strip_prefix("zstd=")
            .or_else(|| s.strip_prefix("zstd:"))
            .ok_or_else(bad)?;
        // Digits only: `i32::from_str` would also take `+3`.
        if level.is_empty() || !level.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let level: i32 = level.parse().map_err(|_| bad())?;
        if !ZSTD_LEVELS.contains(&level) {
            return Err(bad());
        }
        Ok(Compression::Zstd { level })
    }
}

impl std::fmt::Display for Compression {
    /// The canonical spelling, which [`Compression::from_str`](std::str::FromStr) reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd { level } => write!(f, "zstd={level}"),
            Compression::Planes => f.write_str("planes"),
            Compression::Auto => f.write_str("auto"),
        }
    }
}

/// Options of a [`Writer`].
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Blob encoding.
    pub compression: Compression,
    /// Limits the written manifest must satisfy (a reader with the same limits accepts it).
    pub limits: Limits,
}

/// Supplies the bytes of a blob piece by piece, for data that is not one contiguous slice
/// (strided views being materialized, byte-swapped data, ...). The writer asks for consecutive
/// pieces of at most 16 MiB, and may ask for the same range again.
pub trait BlobSource {
    /// Fills `buf` with the blob's bytes starting at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl BlobSource for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let src = self.get(start..start + buf.len()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the blob",
            )
        })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// The result of a successful write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// Final path.
    pub path: PathBuf,
    /// File length.
    pub length: u64,
    /// SHA-256 of the manifest.
    pub manifest_sha256: Digest,
}

/// Streams a tensorseal file to disk.
///
/// Dropping a writer without calling [`Writer::finish`] removes the temporary file.
pub struct Writer {
    file: File,
    temp: Option<PathBuf>,
    path: PathBuf,
    pos: u64,
    blobs: Vec<BlobEntry>,
    options: WriteOptions,
    /// A failed blob could not be cut off the file: its layout is unknown.
    broken: bool,
    /// Logical bytes of the blobs written so far.
    logical: u64,
    /// Write-back started while blobs stream in.
    flush: EarlyFlush,
}

/// Write-back started while the file is being written, so that the fsync in
/// [`Writer::finish`] has little left to wait for: after every [`FLUSH_EVERY`] bytes, a
/// background thread calls `fdatasync` on the file (one call at a time), while this thread and
/// the hashing threads go on. Without it, the page cache holds the whole file until `finish`, and
/// its fsync waits for the disk to take all of it (a third of a second per GiB here).
/// `sync_file_range` would start write-back without waiting, but needs `unsafe` or another
/// dependency; a thread waiting in `fdatasync` costs neither.
#[derive(Debug, Default)]
struct EarlyFlush {
    running: Option<std::thread::JoinHandle<io::Result<()>>>,
    /// Bytes written since the last flush started.
    unflushed: u64,
}

/// Bytes written between two early flushes.
const FLUSH_EVERY: u64 = 64 << 20;

impl EarlyFlush {
    /// Counts `n` bytes written to `file`, and starts a flush when enough have accumulated and
    /// none is running.
    fn wrote(&mut self, file: &File, n: u64) -> io::Result<()> {
        self.unflushed += n;
        if self.unflushed < FLUSH_EVERY || self.running.as_ref().is_some_and(|r| !r.is_finished()) {
            return Ok(());
        }
        self.wait()?;
        let file = file.try_clone()?;
        self.running = Some(std::thread::spawn(move || file.sync_data()));
        self.unflushed = 0;
        Ok(())
    }

    /// Waits for the running flush, and reports its error: a failed write-back means data may
    /// be lost, and a later fsync is not guaranteed to report it again.
    fn wait(&mut self) -> io::Result<()> {
        match self.running.take() {
            None => Ok(()),
            Some(running) => running
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the flushing thread panicked"))),
        }
    }
}

/// Blobs up to this size are hashed on the calling thread: at 64 KiB hashing takes about as long
/// as handing the work to another thread.
const INLINE_HASH_MAX: usize = 64 << 10;

/// Blob data goes to the page cache in writes of this size. Writing a mapped 1 GiB input in
/// pieces of 16 MiB or more cost about twice the system time of 1 MiB pieces (0.5-0.65 s
/// against 0.3 s on Linux 6.18, ext4; BENCHMARKS.md, "Converter").
const PIECE: usize = 1 << 20;

/// Chunks processed together: enough to keep every core busy hashing or compressing, few enough
/// to bound memory at a few dozen MiB.
fn batch_chunks() -> usize {
    2 * rayon::current_num_threads().max(1)
}

impl Writer {
    /// Starts a file that will be renamed to `path` by [`Writer::finish`].
    pub fn create(path: &Path, options: WriteOptions) -> Result<Writer, WriteError> {
        let temp = temp_path(path)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        // From here on, Drop removes the temporary file if anything fails.
        let mut w = Writer {
            file,
            temp: Some(temp),
            path: path.to_path_buf(),
            pos: 0,
            blobs: Vec::new(),
            options,
            broken: false,
            logical: 0,
            flush: EarlyFlush::default(),
        };
        w.file.write_all(&layout::header(1))?;
        w.pos = layout::HEADER_LEN;
        Ok(w)
    }

    /// Blobs written so far.
    pub fn blobs(&self) -> &[BlobEntry] {
        &self.blobs
    }

    /// Writes one blob of tensor bytes and returns its id for [`Tensor::blob`](crate::Tensor).
    /// `dtype` selects the byte-grouping width when compressing. Empty data is an error: zero-size
    /// tensors have no blob.
    ///
    /// If writing fails, the file is cut back to where the blob started, so the writer can go on
    /// as if this call had never been made.
    pub fn write_blob(&mut self, data: &[u8], dtype: DType) -> Result<BlobId, WriteError> {
        self.check_logical(data.len() as u64)?;
        let start = self.pos;
        let result = self.write_blob_inner(data, dtype);
        let result = self.undo_on_error(start, result);
        self.count_logical(data.len() as u64, result)
    }

    /// Refuses, before writing anything, a blob that would take the blobs over
    /// `max_logical_length`: the reader would refuse the file (spec §8).
    fn check_logical(&self, len: u64) -> Result<(), WriteError> {
        let limit = self.options.limits.max_logical_length;
        match self.logical.checked_add(len) {
            Some(total) if total <= limit => Ok(()),
            _ => Err(WriteError::Invalid {
                what: "blob",
                path: format!("blob {}", self.blobs.len()),
                detail: format!(
                    "{len} more bytes would take the blobs over max_logical_length ({limit})"
                ),
            }),
        }
    }

    fn count_logical(
        &mut self,
        len: u64,
        result: Result<BlobId, WriteError>,
    ) -> Result<BlobId, WriteError> {
        if result.is_ok() {
            self.logical += len;
        }
        result
    }

    fn write_blob_inner(&mut self, data: &[u8], dtype: DType) -> Result<BlobId, WriteError> {
        self.check_usable()?;
        if data.is_empty() {
            return Err(empty_blob());
        }
        if self.options.compression != Compression::None {
            let mut source = data;
            if let Some(id) = self.try_compressed(&mut source, data.len() as u64, dtype)? {
                return Ok(id);
            }
        }
        let start = self.pos;
        let sha256 = if data.len() <= INLINE_HASH_MAX {
            // Handing a small blob to the thread pool (a wake-up and a steal) costs more than
            // hashing it here: optimizer states hold thousands of tiny tensors.
            let sha256 = vec![codec::sha256(data)];
            self.file.write_all(data)?;
            sha256
        } else {
            let sha256 = hash_and_write_at(&self.file, data, start)?;
            self.file.seek(SeekFrom::Start(start + data.len() as u64))?;
            sha256
        };
        self.end_blob(start, data.len() as u64, sha256, None)
    }

    /// Writes one blob of `len` bytes supplied piece by piece, with memory bounded by a few
    /// chunks whatever `len` is.
    ///
    /// If the source or writing fails, the file is cut back to where the blob started, so the
    /// writer can go on as if this call had never been made.
    pub fn write_blob_from(
        &mut self,
        source: &mut dyn BlobSource,
        len: u64,
        dtype: DType,
    ) -> Result<BlobId, WriteError> {
        self.check_logical(len)?;
        let start = self.pos;
        let result = self.write_blob_from_inner(source, len, dtype);
        let result = self.undo_on_error(start, result);
        self.count_logical(len, result)
    }

    /// Cuts the file back to `start` after a failed blob write. Bytes of the failed blob would
    /// otherwise stay in the file and shift everything written after them away from the offsets
    /// the manifest records. If even that fails, the writer refuses all further work.
    fn undo_on_error(
        &mut self,
        start: u64,
        result: Result<BlobId, WriteError>,
    ) -> Result<BlobId, WriteError> {
        if result.is_err() {
            let rewound = self
                .file
                .set_len(start)
                .and_then(|()| self.file.seek(SeekFrom::Start(start)));
            if rewound.is_err() {
                self.broken = true;
            }
        }
        result
    }

    fn check_usable(&self) -> Result<(), WriteError> {
        if self.broken {
            return Err(WriteError::Io(io::Error::other(
                "an earlier failed blob could not be removed from the file",
            )));
        }
        Ok(())
    }

    fn write_blob_from_inner(
        &mut self,
        source: &mut dyn BlobSource,
        len: u64,
        dtype: DType,
    ) -> Result<BlobId, WriteError> {
        self.check_usable()?;
        if len == 0 {
            return Err(empty_blob());
        }
        if self.options.compression != Compression::None
            && let Some(id) = self.try_compressed(source, len, dtype)?
        {
            return Ok(id);
        }
        let start = self.pos;
        let mut sha256 = Vec::with_capacity(limits::chunk_count(len) as usize);
        let mut buffers: Vec<Vec<u8>> = Vec::new();
        let mut offset = 0;
        while offset < len {
            buffers.clear();
            while offset < len && buffers.len() < batch_chunks() {
                let n = CHUNK.min(len - offset) as usize;
                let mut buf = vec![0u8; n];
                source.read_at(offset, &mut buf)?;
                offset += n as u64;
                buffers.push(buf);
            }
            let batch_start = start + sha256.len() as u64 * CHUNK;
            let digests = buffers
                .par_iter()
                .enumerate()
                .map(|(k, b)| hash_and_write_chunk(&self.file, b, batch_start + k as u64 * CHUNK))
                .collect::<io::Result<Vec<_>>>()?;
            sha256.extend(digests);
        }
        self.file.seek(SeekFrom::Start(start + len))?;
        self.end_blob(start, len, sha256, None)
    }

    /// Compresses a blob chunk by chunk; if that saves too little (5%, or nothing for
    /// [`Compression::Planes`]), rewinds and returns `None` so the caller stores it raw.
    fn try_compressed(
        &mut self,
        source: &mut dyn BlobSource,
        len: u64,
        dtype: DType,
    ) -> Result<Option<BlobId>, WriteError> {
        let (encoding, level, min_saving) = match self.options.compression {
            Compression::None => return Ok(None),
            Compression::Zstd { level } => (
                Encoding::Zstd {
                    group: dtype.swap_width() as u8,
                },
                level,
                20,
            ),
            Compression::Planes => (
                Encoding::Planes {
                    layout: PlaneLayout::for_dtype(dtype),
                },
                1,
                u64::MAX,
            ),
            Compression::Auto => (
                Encoding::Planes {
                    layout: PlaneLayout::for_dtype(dtype),
                },
                1,
                20,
            ),
        };
        let group = match encoding {
            Encoding::Zstd { group } => u64::from(group),
            Encoding::Planes { layout } => layout.width() as u64,
        };
        if !len.is_multiple_of(group) {
            return Err(WriteError::Invalid {
                what: "blob",
                path: "blob".into(),
                detail: format!("{len} bytes is not a whole number of {dtype} elements"),
            });
        }
        let start = self.pos;
        let (mut frames, mut sha256, mut raw_sha256) = (Vec::new(), Vec::new(), Vec::new());
        let mut offset = 0;
        let mut stored = 0u64;
        while offset < len {
            let mut raws = Vec::new();
            while offset < len && raws.len() < batch_chunks() {
                let n = CHUNK.min(len - offset) as usize;
                let mut buf = vec![0u8; n];
                source.read_at(offset, &mut buf)?;
                offset += n as u64;
                raws.push(buf);
            }
            let encoded: Vec<(Vec<u8>, Digest, Digest)> = raws
                .par_iter()
                .map(|raw| {
                    let frame = match encoding {
                        Encoding::Zstd { group } => {
                            codec::compress_chunk(raw, usize::from(group), level)?
                        }
                        Encoding::Planes { layout } => {
                            crate::planes::encode_chunk(raw, layout, level)?
                        }
                    };
                    let frame_sha = codec::sha256(&frame);
                    Ok((frame, frame_sha, codec::sha256(raw)))
                })
                .collect::<io::Result<_>>()?;
            for (frame, frame_sha, raw_sha) in encoded {
                self.file.write_all(&frame)?;
                stored += frame.len() as u64;
                frames.push(frame.len() as u64);
                sha256.push(frame_sha);
                raw_sha256.push(raw_sha);
            }
        }
        // Compression must save at least 1 / `min_saving` of the blob (5% unless the user asked
        // for planes outright) to be worth losing zero-copy reads; never nothing.
        if stored >= len || stored > len - len / min_saving {
            self.file.seek(SeekFrom::Start(start))?;
            self.file.set_len(start)?;
            return Ok(None);
        }
        let codec = BlobCodec {
            encoding,
            frames,
            raw_length: len,
            raw_sha256,
        };
        self.end_blob(start, stored, sha256, Some(codec)).map(Some)
    }

    fn end_blob(
        &mut self,
        start: u64,
        length: u64,
        sha256: Vec<Digest>,
        codec: Option<BlobCodec>,
    ) -> Result<BlobId, WriteError> {
        let end = start + length;
        let aligned = limits::align_up(end).ok_or_else(|| io::Error::other("file too large"))?;
        self.file
            .write_all(&[0u8; ALIGN as usize][..(aligned - end) as usize])?;
        self.flush.wrote(&self.file, aligned - start)?;
        self.pos = aligned;
        self.blobs.push(BlobEntry {
            offset: start,
            length,
            sha256,
            codec,
        });
        Ok(self.blobs.len() - 1)
    }

    /// Writes the manifest, the signatures of `signers`, and the footer; syncs and renames the
    /// file into place. The tree must reference every blob written, each by tensors of its size.
    pub fn finish(
        mut self,
        root: Node,
        metadata: BTreeMap<String, String>,
        signers: &[&SecretKey],
    ) -> Result<WrittenFile, WriteError> {
        self.check_usable()?;
        let manifest = Manifest {
            root,
            blobs: std::mem::take(&mut self.blobs),
            metadata,
            ext: BTreeMap::new(),
        };
        let bytes = manifest.to_bytes(&self.options.limits)?;
        if manifest.version() != 1 {
            // The header was written as version 1 before any blob was known.
            std::os::unix::fs::FileExt::write_all_at(
                &self.file,
                &layout::header(manifest.version()),
                0,
            )?;
        }
        let manifest_sha256 = codec::sha256(&bytes);
        let manifest_offset = self.pos;
        self.file.write_all(&bytes)?;
        let content_length = manifest_offset + bytes.len() as u64;
        let message = layout::signed_message(content_length, &manifest_sha256);
        let mut entries: Vec<SignatureEntry> = Vec::with_capacity(signers.len());
        for key in signers {
            let key_pub = key.public_key();
            if entries.iter().any(|e| e.key == key_pub) {
                continue;
            }
            entries.push(SignatureEntry {
                key: key_pub,
                signature: key.sign(&message),
            });
        }
        let sig_block = layout::encode_signatures(&entries);
        self.file.write_all(&sig_block)?;
        let footer = Footer {
            manifest_offset,
            manifest_length: bytes.len() as u64,
            signatures_length: sig_block.len() as u64,
            manifest_sha256,
        };
        self.file.write_all(&footer.encode())?;
        let length = content_length + sig_block.len() as u64 + layout::FOOTER_LEN;
        // Until the rename succeeds, `Drop` still owns (and removes) the temporary file.
        let temp = self.temp.clone().expect("finish runs once");
        self.flush.wait()?;
        persist(&self.file, &temp, &self.path)?;
        self.temp = None;
        Ok(WrittenFile {
            path: self.path.clone(),
            length,
            manifest_sha256,
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Writes `data` at `offset` of `file` and returns its [`CHUNK`] digests, with no copy of the data
/// and no buffer. Chunks are spread over the thread pool, each hashed and written at its own
/// offset (positional writes) by [`hash_and_write_chunk`]. The file position is left unspecified.
fn hash_and_write_at(file: &File, data: &[u8], offset: u64) -> io::Result<Vec<Digest>> {
    data.par_chunks(CHUNK as usize)
        .enumerate()
        .map(|(i, chunk)| hash_and_write_chunk(file, chunk, offset + i as u64 * CHUNK))
        .collect()
}

/// Hashes one chunk and writes it at `at`, [`PIECE`] by [`PIECE`], as a pipeline: while one
/// thread hashes a piece, another writes the piece hashed before it. Write-back is started by
/// [`EarlyFlush`] as blobs end.
///
/// A piece is written only once it has been hashed, which maps every page of it when the chunk
/// is part of a memory-mapped input. `write()` copying from pages that are not mapped yet stops
/// short at the first one, and ext4 then zeroes the rest of the (large) page-cache folio before
/// the page is faulted in and the copy retried: writing a freshly mapped 1 GiB file in 1 MiB
/// pieces cost 0.55-2.25 s of system time, against 0.3 s once each piece had been read (Linux
/// 6.18). Hashing a whole chunk while another thread writes it lets the writes run ahead.
fn hash_and_write_chunk(file: &File, chunk: &[u8], at: u64) -> io::Result<Digest> {
    let mut hasher = Sha256::new();
    let mut hashed: Option<(u64, &[u8])> = None;
    for (k, piece) in chunk.chunks(PIECE).enumerate() {
        match hashed {
            None => hasher.update(piece),
            Some((offset, previous)) => {
                let (written, ()) = rayon::join(
                    || write_all_at(file, previous, offset),
                    || hasher.update(piece),
                );
                written?;
            }
        }
        hashed = Some((at + (k * PIECE) as u64, piece));
    }
    if let Some((offset, last)) = hashed {
        write_all_at(file, last, offset)?;
    }
    Ok(hasher.finalize().into())
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_write(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn empty_blob() -> WriteError {
    WriteError::Invalid {
        what: "blob",
        path: "blob".into(),
        detail: "a blob cannot be empty; zero-size tensors have blob None".into(),
    }
}

/// A fresh temporary name next to `path`, in the same directory so the final rename is atomic.
pub(crate) fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| io::Error::other(e.to_string()))?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp-{}", hex::encode(nonce)));
    Ok(path.with_file_name(tmp))
}

/// Makes a rename durable: fsync the directory holding the entry.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// fsyncs `file`, renames `temp` to `path`, fsyncs the directory.
pub(crate) fn persist(file: &File, temp: &Path, path: &Path) -> io::Result<()> {
    file.sync_all()?;
    std::fs::rename(temp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Adds a signature by `key` to the file at `path`, atomically.
///
/// The file is first copied, byte for byte (a reflink where the file system supports it), to a
/// temporary file in the same directory; that copy, which only this function writes, is then
/// verified (a signature attests the content, so a corrupt file is never signed) and signed, and
/// its signature block and footer replaced; it is fsynced and renamed over the original. What is
/// signed is therefore exactly what was verified, even if the file at `path` changes meanwhile.
/// The header, blobs and manifest keep their bytes and offsets. Returns `false` if `key` had
/// already signed the file (nothing is changed).
pub fn add_signature(path: &Path, key: &SecretKey, limits: &Limits) -> Result<bool, WriteError> {
    add_signature_with(path, key, limits, &mut || {})
}

/// [`add_signature`], calling `read` once the file at `path` has been read for the last time:
/// tests change the file there.
fn add_signature_with(
    path: &Path,
    key: &SecretKey,
    limits: &Limits,
    read: &mut dyn FnMut(),
) -> Result<bool, WriteError> {
    let temp = temp_path(path)?;
    let result = sign_copy(path, &temp, key, limits, read);
    if !matches!(result, Ok(true)) {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn not_intact(e: impl Into<VerifyError>) -> WriteError {
    WriteError::NotIntact(Box::new(e.into()))
}

/// Copies `path` to `temp`, verifies and signs the copy, and renames it over `path`.
fn sign_copy(
    path: &Path,
    temp: &Path,
    key: &SecretKey,
    limits: &Limits,
    read: &mut dyn FnMut(),
) -> Result<bool, WriteError> {
    let mut src = File::open(path).map_err(|e| not_intact(ReadError::Io(e)))?;
    let metadata = src.metadata().map_err(|e| not_intact(ReadError::Io(e)))?;
    if metadata.len() > limits.max_file_length {
        return Err(not_intact(ReadError::LimitExceeded {
            what: "max_file_length",
            value: metadata.len(),
            limit: limits.max_file_length,
            offset: 0,
        }));
    }
    let mut copy = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(temp)?;
    copy.set_permissions(metadata.permissions())?;
    // `io::copy` between files uses copy_file_range, which reflinks where it can.
    let len = io::copy(&mut src, &mut copy)?;
    drop(src);
    read();

    let bytes = crate::mmap::load(&mut copy, len, crate::MapMode::Map)?;
    let ckpt = Envelope::parse(bytes, limits)
        .and_then(|env| env.into_checkpoint(limits))
        .map_err(not_intact)?;
    ckpt.verify(&crate::TrustPolicy::integrity_only())
        .map_err(not_intact)?;
    let public = key.public_key();
    if ckpt.signatures().iter().any(|s| s.key == public) {
        return Ok(false);
    }
    let footer = *ckpt.footer();
    let mut entries = ckpt.signatures().to_vec();
    if entries.len() >= limits.max_signatures {
        return Err(WriteError::Invalid {
            what: "signature block",
            path: path.display().to_string(),
            detail: format!(
                "already holds the maximum of {} signatures",
                limits.max_signatures
            ),
        });
    }
    entries.push(SignatureEntry {
        key: public,
        signature: key.sign(&layout::signed_message(
            footer.content_length(),
            &footer.manifest_sha256,
        )),
    });
    // Unmapped before the file is cut back.
    drop(ckpt);
    let block = layout::encode_signatures(&entries);
    let new_footer = Footer {
        signatures_length: block.len() as u64,
        ..footer
    };
    copy.set_len(footer.content_length())?;
    copy.seek(SeekFrom::Start(footer.content_length()))?;
    copy.write_all(&block)?;
    copy.write_all(&new_footer.encode())?;
    persist(&copy, temp, path)?;
    Ok(true)
}

/// A file written under a temporary name in its final directory and renamed into place by
/// [`AtomicFile::commit`] after an fsync; dropped without a commit, it removes itself. The final
/// name therefore never holds a partial file, and an existing file there is untouched until the
/// rename.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    temp: Option<PathBuf>,
    path: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file next to `path`.
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let temp = temp_path(path)?;
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&temp)?;
        Ok(AtomicFile {
            file,
            temp: Some(temp),
            path: path.to_path_buf(),
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temporary file's path (for a sandbox rule, or a message).
    pub fn temp_path(&self) -> Option<&Path> {
        self.temp.as_deref()
    }

    /// fsyncs the file, renames it to the final path and fsyncs the directory.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        let temp = self.temp.take().expect("commit runs once");
        if let Err(e) = persist(&self.file, &temp, &self.path) {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        Ok(self.path.clone())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn compression_has_one_parser_and_a_canonical_spelling() {
        for (text, want) in [
            ("none", Compression::None),
            ("zstd", Compression::Zstd { level: 1 }),
            ("zstd=3", Compression::Zstd { level: 3 }),
            ("zstd:3", Compression::Zstd { level: 3 }),
            ("zstd=22", Compression::Zstd { level: 22 }),
        ] {
            let got: Compression = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string().parse::<Compression>().unwrap(), got);
        }
        assert_eq!(Compression::Zstd { level: 3 }.to_string(), "zstd=3");
        for bad in [
            "",
            "gzip",
            "zstd=",
            "zstd=0",
            "zstd=23",
            "zstd=-1",
            "zstd=+3",
            "zstd=3x",
            "ZSTD",
            "zstd = 3",
            "zstd=99999999999",
        ] {
            let e = bad.parse::<Compression>().unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    use super::*;
    use crate::{Checkpoint, Tensor, TrustPolicy};

    /// A valid, unsigned file of one 4 KiB blob; returns the offset of the blob.
    fn write_file(path: &Path) -> u64 {
        let mut w = Writer::create(path, WriteOptions::default()).unwrap();
        let b = w.write_blob(&[5; 4096], DType::U8).unwrap();
        let offset = w.blobs()[b].offset;
        let root = Node::Tensor(Box::new(Tensor::new(DType::U8, vec![4096], Some(b))));
        w.finish(root, BTreeMap::new(), &[]).unwrap();
        offset
    }

    #[test]
    fn files_larger_than_a_flush_interval_are_written_whole() {
        // Blobs totalling more than two flush intervals: write-back runs in the background while
        // later blobs are written, and finish waits for it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.tseal");
        let mut w = Writer::create(&path, WriteOptions::default()).unwrap();
        let blob_len = (FLUSH_EVERY / 2 + 4096) as usize;
        let mut tensors = Vec::new();
        for i in 0..5u8 {
            let b = w.write_blob(&vec![i; blob_len], DType::U8).unwrap();
            tensors.push(Node::Tensor(Box::new(Tensor::new(
                DType::U8,
                vec![blob_len as u64],
                Some(b),
            ))));
        }
        assert!(w.flush.running.is_some(), "a flush started");
        w.finish(Node::List(tensors), BTreeMap::new(), &[]).unwrap();
        let (ckpt, report) =
            Checkpoint::open_verified(&path, &TrustPolicy::integrity_only(), &Limits::default())
                .unwrap();
        assert_eq!(report.blobs, 5);
        assert_eq!(&*ckpt.blob_bytes(4).unwrap(), &vec![4u8; blob_len][..]);
    }

    #[test]
    fn what_is_signed_is_what_was_verified() {
        // The file is tampered with while it is being signed, after add_signature has read it
        // for the last time: the signature must cover the bytes it verified, not the new ones.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.tseal");
        let blob = write_file(&path);
        let original = std::fs::read(&path).unwrap();
        let key = SecretKey::from_seed(&[3; 32]);
        let tamper = &mut || {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[blob as usize] ^= 1;
            std::fs::write(&path, bytes).unwrap();
        };
        assert!(add_signature_with(&path, &key, &Limits::default(), tamper).unwrap());
        let policy = TrustPolicy::trusting(vec![key.public_key()]);
        Checkpoint::open_verified(&path, &policy, &Limits::default())
            .expect("the signed file is the verified one");
        let signed = std::fs::read(&path).unwrap();
        let content = Checkpoint::open(&path, &Limits::default())
            .unwrap()
            .footer()
            .content_length() as usize;
        assert_eq!(signed[..content], original[..content]);
        // Signing again by the same key changes nothing and leaves no temporary file behind.
        assert!(!add_signature(&path, &key, &Limits::default()).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), signed);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
