//! File bytes, memory-mapped where possible. The only `unsafe` in the workspace lives here.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;

/// The bytes of an opened file: a read-only mapping, or an owned buffer.
///
/// Other crates of the workspace map their inputs through [`FileBytes::open`] so that the
/// workspace's only `unsafe` stays in this module.
pub enum FileBytes {
    /// A read-only memory mapping.
    #[doc(hidden)]
    Mapped(memmap2::Mmap),
    /// Bytes read into memory.
    #[doc(hidden)]
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Opens `path` and brings its bytes into memory as `mode` says.
    pub fn open(path: &std::path::Path, mode: MapMode) -> io::Result<FileBytes> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        load(&mut file, len, mode)
    }

    /// Brings an already opened file's bytes into memory.
    pub fn from_file(file: &mut File, mode: MapMode) -> io::Result<FileBytes> {
        let len = file.metadata()?.len();
        load(file, len, mode)
    }

    /// Hints the kernel that the bytes will be read in order (mapped files only).
    pub fn advise_sequential(&self) {
        advise_sequential(self);
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            FileBytes::Mapped(_) => "Mapped",
            FileBytes::Owned(_) => "Owned",
        };
        write!(f, "FileBytes::{kind}({} bytes)", self.len())
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}

/// How a file's bytes are brought into memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapMode {
    /// Memory-map the file. Zero-copy, but see the safety discussion on [`FileBytes`]: if another
    /// process modifies or truncates the file while it is mapped, the bytes seen may change (they
    /// are re-checked only by verification) and a truncation raises SIGBUS.
    #[default]
    Map,
    /// Read the whole file into memory owned by the process. Immune to later changes of the file,
    /// at the cost of a copy and of memory equal to the file size.
    Read,
}

/// Maps `file` read-only, or reads it when `mode` asks for it or the file is empty (a zero-length
/// mapping is an error on Linux).
pub(crate) fn load(file: &mut File, len: u64, mode: MapMode) -> io::Result<FileBytes> {
    if len == 0 || mode == MapMode::Read {
        let mut v = Vec::with_capacity(usize::try_from(len).map_err(io::Error::other)?);
        file.read_to_end(&mut v)?;
        return Ok(FileBytes::Owned(v));
    }
    // A sealed memfd or an fs-verity file cannot change under the mapping: no unsafe needed.
    if let Ok(m) = memmap2::MmapOptions::new().map_if_safe(&*file) {
        return Ok(FileBytes::Mapped(m));
    }
    // SAFETY: memmap2 marks file mappings unsafe because another process may modify the file
    // while it is mapped, which Rust's model treats as undefined behaviour for `&[u8]`. The
    // reader never trusts mapped bytes: every offset and length is bounds-checked against the
    // mapping's length, and every byte handed out as verified has just been hashed. A concurrent
    // writer can therefore change what a later read returns (documented on `MapMode::Map` and
    // in spec §7), and truncation can raise SIGBUS; callers who share the directory with
    // untrusted writers use `MapMode::Read` or the hash-while-copy loader instead.
    let map = unsafe { memmap2::Mmap::map(&*file)? };
    Ok(FileBytes::Mapped(map))
}

/// Hints the kernel that `range` of a mapped file is about to be read in order.
pub(crate) fn advise_sequential(bytes: &FileBytes) {
    if let FileBytes::Mapped(m) = bytes {
        let _ = m.advise(memmap2::Advice::Sequential);
    }
}
