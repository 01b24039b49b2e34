//! File bytes, memory-mapped where possible. The workspace's `unsafe` lives here, apart from
//! two calls of BMI2-compiled loops after a CPU feature check in `tans.rs` (measured need: the
//! decode speed target of issue 12).

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;

/// The bytes of an opened file: a read-only mapping, a private copy-on-write mapping, or an
/// owned buffer.
///
/// Other crates of the workspace map their inputs through [`FileBytes::open`] so that the
/// workspace's mapping `unsafe` stays in this module.
pub enum FileBytes {
    /// A read-only memory mapping.
    #[doc(hidden)]
    Mapped(memmap2::Mmap),
    /// A private, writable (copy-on-write) memory mapping.
    #[doc(hidden)]
    Private(PrivateMap),
    /// Bytes read into memory.
    #[doc(hidden)]
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Opens `path` and brings its bytes into memory as `mode` says.
    pub fn open(path: &std::path::Path, mode: MapMode) -> io::Result<FileBytes> {
        FileBytes::from_file(&mut File::open(path)?, mode)
    }

    /// Brings an already opened file's bytes into memory.
    pub fn from_file(file: &mut File, mode: MapMode) -> io::Result<FileBytes> {
        let meta = file.metadata()?;
        not_a_directory(&meta)?;
        load(file, meta.len(), mode)
    }

    /// Hints the kernel that the bytes will be read in order (mapped files only).
    pub fn advise_sequential(&self) {
        advise_sequential(self);
    }

    /// Hints the kernel how the mapping will be read (mapped files only; best effort).
    pub(crate) fn advise(&self, advice: memmap2::Advice) {
        match self {
            FileBytes::Mapped(m) => {
                let _ = m.advise(advice);
            }
            FileBytes::Private(p) => {
                let _ = p.map.advise(advice);
            }
            FileBytes::Owned(_) => {}
        }
    }

    /// The bytes of `range`, borrowing only that range.
    ///
    /// Unlike `&bytes[range]`, which borrows the whole file first, this never creates a reference
    /// to bytes outside `range`: a [`PrivateMap`] may have handed out other ranges for writing
    /// (see [`PrivateMap::ptr`]), and reading them here while they are written would be a data
    /// race.
    ///
    /// # Panics
    /// If `range` is not within the file, as slicing does.
    pub(crate) fn range(&self, range: std::ops::Range<usize>) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => &m[range],
            FileBytes::Private(p) => p.range(range),
            FileBytes::Owned(v) => &v[range],
        }
    }
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            FileBytes::Mapped(_) => "Mapped",
            FileBytes::Private(_) => "Private",
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
            FileBytes::Private(p) => &p.map,
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
    /// Memory-map the file private and writable (`MAP_PRIVATE`, copy-on-write): a page written
    /// through the mapping becomes the process's own copy and the file never changes. Pages not
    /// written are the file's page cache, exactly as with [`MapMode::Map`]: a concurrent writer
    /// of the file changes them and a truncation raises SIGBUS on access. Used by
    /// [`MappedLoader`](crate::MappedLoader), which hands verified ranges out for writing.
    CopyOnWrite,
}

/// A private, writable (copy-on-write) mapping of a file.
///
/// The mapping is created by [`MapMode::CopyOnWrite`]. Reading it whole (through
/// [`FileBytes`]' `Deref`) is for the time before any range has been handed out; afterwards only
/// [`PrivateMap::range`] reads, and [`PrivateMap::ptr`] hands ranges out for writing.
///
/// # Invariants
/// `map` is never written by this crate: the only writes are made by the holders of pointers from
/// [`PrivateMap::ptr`], in the ranges those were taken for.
pub struct PrivateMap {
    map: memmap2::MmapMut,
}

impl PrivateMap {
    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn check(&self, range: &std::ops::Range<usize>) {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "range {range:?} out of bounds of a mapping of {} bytes",
            self.len()
        );
    }

    /// The bytes of `range`, borrowing only that range (see [`FileBytes::range`]).
    ///
    /// # Panics
    /// If `range` is not within the mapping.
    pub(crate) fn range(&self, range: std::ops::Range<usize>) -> &[u8] {
        self.check(&range);
        if range.is_empty() {
            return &[];
        }
        let start = self.map.as_ptr().wrapping_add(range.start);
        // SAFETY: `start..start + len` lies within the live mapping (checked above), which stays
        // mapped while `self` is borrowed. The slice covers only this range, never the whole
        // mapping, so writes that holders of `ptr` make to other ranges do not alias it; callers
        // (`MappedLoader`) never read a range after handing it out for writing, and this crate
        // never writes (type invariant). The bytes are plain `u8`, valid whatever they hold.
        unsafe { std::slice::from_raw_parts(start, range.len()) }
    }

    /// A pointer to the start of `range`, through which the caller may read and write the range's
    /// `range.len()` bytes for as long as `self` is alive. Writes go to the process's private
    /// copy of each page (copy-on-write); the file never changes.
    ///
    /// Creating the pointer is safe; using it is up to the caller, who must not let it outlive
    /// `self`, must not write a range while this crate may read it, and must synchronise
    /// concurrent writers. [`MappedLoader::blob_memory`](crate::MappedLoader::blob_memory) is
    /// the API that upholds the second rule.
    ///
    /// # Panics
    /// If `range` is not within the mapping.
    pub(crate) fn ptr(&self, range: std::ops::Range<usize>) -> *mut u8 {
        self.check(&range);
        // The pointer is a copy of the mapping's address, not derived from a reference to the
        // mapped bytes, so writing through it is allowed wherever the mapping is writable.
        self.map.as_ptr().cast_mut().wrapping_add(range.start)
    }
}

/// Maps `file` read-only, or reads it when `mode` asks for it or the file is empty (a zero-length
/// mapping is an error on Linux).
/// Refuses a directory by name: mapping one fails with ENODEV ("No such device"), which says
/// nothing useful.
pub(crate) fn not_a_directory(meta: &std::fs::Metadata) -> io::Result<()> {
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "a directory, not a file",
        ));
    }
    Ok(())
}

pub(crate) fn load(file: &mut File, len: u64, mode: MapMode) -> io::Result<FileBytes> {
    if len == 0 || mode == MapMode::Read {
        let mut v = Vec::with_capacity(usize::try_from(len).map_err(io::Error::other)?);
        file.read_to_end(&mut v)?;
        return Ok(FileBytes::Owned(v));
    }
    if mode == MapMode::CopyOnWrite {
        return Ok(FileBytes::Private(map_private(file)?));
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

/// Maps `file` private and writable (copy-on-write). The file must not be empty (a zero-length
/// mapping is an error on Linux).
pub(crate) fn map_private(file: &File) -> io::Result<PrivateMap> {
    // SAFETY: as for the read-only mapping in `load`: mapped bytes are never trusted unchecked,
    // every offset is bounds-checked against the mapping's length, and the bytes a caller uses
    // are hashed in the mapping itself first (`MappedLoader`). The mapping is private
    // (`MAP_PRIVATE`), so writes through it never reach the file or other processes; pages not
    // yet written still show the page cache, so a concurrent writer of the file can change
    // bytes after they were verified and a truncation raises SIGBUS. That exposure is
    // documented on `MapMode::CopyOnWrite`, `MappedLoader` and in spec §7: the mode is for files
    // nobody can write (read-only storage, fs-verity, a sealed memfd).
    let map = unsafe { memmap2::MmapOptions::new().map_copy(file)? };
    Ok(PrivateMap { map })
}

/// Hints the kernel that `range` of a mapped file is about to be read in order.
pub(crate) fn advise_sequential(bytes: &FileBytes) {
    bytes.advise(memmap2::Advice::Sequential);
}
