//! Every bound the reader applies to untrusted files, in one place (spec §8).

/// Alignment of every blob and of the manifest, in bytes (spec §1.3).
pub const ALIGN: u64 = 64;

/// Size of a digest chunk and of a zstd frame's logical content, in bytes (spec §4.1).
pub const CHUNK: u64 = 1 << 24;

// Plane-coded chunks (spec §4.4-4.5) need no limits of their own: every size a decoder
// allocates for comes from `CHUNK` and the signed manifest, and the tANS constants (tables of
// 2^12 states, blocks of 2^17 symbols) are fixed by the format in `tans.rs`.

/// Largest tensor byte size and file length the format allows (spec §2, §1.3).
pub const MAX_SIZE: u64 = 1 << 62;

/// The most levels of CBOR nesting (arrays and maps) one level of the tree adds. A value in an
/// attribute dict sits five levels below its tensor, typed value or object
/// (`{"tensor": {"attrs": {"dict": [[name, value]]}}}`), and no node holds more than four levels
/// below its own start (a `torch.Size`: `{"typed": {"value": {"tuple": [...]}}}`), so a
/// manifest whose tree is at most `d` deep nests at most `5 × d` arrays and maps; the blob table
/// needs five (spec §8).
pub const CBOR_LEVELS_PER_TREE_LEVEL: usize = 5;

/// The deepest tree this implementation reads or writes, whatever [`Limits::max_tree_depth`]
/// asks (spec §8).
///
/// Decoding and encoding keep their own stacks, but trees are also dropped, cloned, compared and
/// rendered (JSON, Python objects) by code that recurses once per level. At this depth that
/// stays well within the 2 MiB stack of a spawned thread even in unoptimised builds. It is four
/// times the default; Python itself (pickle, `repr`, `copy`) gives up near 1,000 levels.
pub const MAX_TREE_DEPTH_HARD: usize = 512;

/// Bounds on the files a reader accepts.
///
/// The defaults are conservative: any file within them is portable between implementations, and
/// decoding a manifest within them needs at most a few hundred MiB of memory. Raise a field only
/// for files you produced yourself; any value is safe to set (`usize::MAX` means no limit beyond
/// what the format and [`MAX_TREE_DEPTH_HARD`] allow). A file over a limit is rejected with
/// [`ReadError::LimitExceeded`](crate::ReadError::LimitExceeded), naming the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest, in bytes. Default 64 MiB (about 500,000 tensors).
    pub max_manifest_length: u64,
    /// Most CBOR items in one manifest. Default 4,194,304.
    pub max_cbor_items: usize,
    /// Deepest node nesting in the checkpoint tree; the root is at depth 1. Default 128. Values
    /// above [`MAX_TREE_DEPTH_HARD`] act as that. The CBOR nesting bound follows from it: see
    /// [`Limits::max_cbor_depth`].
    pub max_tree_depth: usize,
    /// Most dimensions of one tensor. Default 64 (numpy's limit).
    pub max_rank: usize,
    /// Longest bignum magnitude, in bytes. Default 2048 (Python prints ints up to 4300 digits).
    pub max_bigint_bytes: usize,
    /// Most signatures on one file. Default 64.
    pub max_signatures: usize,
    /// Most metadata entries. Default 1024.
    pub max_metadata_entries: usize,
    /// Largest file, in bytes. Default 2^62, the format's maximum.
    pub max_file_length: u64,
    /// Most logical bytes in all blobs together (stored bytes for raw blobs, decoded bytes for
    /// compressed ones). Default 1 TiB, more than any single checkpoint file we know of (large
    /// models are saved in shards). zstd turns a 16 MiB chunk of zeros into a few bytes, so
    /// without this bound a small file could make digests-only verification, which runs before
    /// anyone vouches for the manifest, decompress and hash terabytes; with it, a file costs at
    /// most this much decoding, however it is built.
    pub max_logical_length: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_manifest_length: 64 << 20,
            max_cbor_items: 4 << 20,
            max_tree_depth: 128,
            max_rank: 64,
            max_bigint_bytes: 2048,
            max_signatures: 64,
            max_metadata_entries: 1024,
            max_file_length: MAX_SIZE,
            max_logical_length: 1 << 40,
        }
    }
}

impl Limits {
    /// The tree depth bound applied: [`Limits::max_tree_depth`], at most
    /// [`MAX_TREE_DEPTH_HARD`].
    pub fn tree_depth(&self) -> usize {
        self.max_tree_depth.min(MAX_TREE_DEPTH_HARD)
    }

    /// The deepest CBOR nesting of arrays and maps in a manifest:
    /// [`CBOR_LEVELS_PER_TREE_LEVEL`] × [`Limits::tree_depth`] (at least one level of tree), so
    /// that every tree within the tree depth bound can be written and read, and nothing deeper
    /// can (the extension area included). Default 640. Errors name it `max_cbor_depth`.
    pub fn max_cbor_depth(&self) -> usize {
        CBOR_LEVELS_PER_TREE_LEVEL * self.tree_depth().max(1)
    }
}

/// Longest metadata key, in bytes (spec §5).
pub(crate) const MAX_METADATA_KEY: usize = 256;
/// Longest metadata value, in bytes (spec §5).
pub(crate) const MAX_METADATA_VALUE: usize = 65536;
/// Longest module or name of an inert object or global, in bytes (spec §3.8).
pub(crate) const MAX_QUALNAME: usize = 1024;

/// Rounds `x` up to the next multiple of [`ALIGN`], or `None` on overflow.
pub(crate) fn align_up(x: u64) -> Option<u64> {
    x.checked_add(ALIGN - 1).map(|v| v & !(ALIGN - 1))
}

/// Number of [`CHUNK`]-sized chunks covering `len` bytes.
pub(crate) fn chunk_count(len: u64) -> u64 {
    len.div_ceil(CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_bounds_follow_the_tree_depth() {
        let limits = Limits::default();
        assert_eq!((limits.tree_depth(), limits.max_cbor_depth()), (128, 640));
        let raised = Limits {
            max_tree_depth: usize::MAX,
            ..Limits::default()
        };
        assert_eq!(raised.tree_depth(), MAX_TREE_DEPTH_HARD);
        assert_eq!(raised.max_cbor_depth(), 5 * MAX_TREE_DEPTH_HARD);
        let zero = Limits {
            max_tree_depth: 0,
            ..Limits::default()
        };
        assert_eq!((zero.tree_depth(), zero.max_cbor_depth()), (0, 5));
    }

    #[test]
    fn alignment_and_chunks() {
        assert_eq!(align_up(0), Some(0));
        assert_eq!(align_up(1), Some(64));
        assert_eq!(align_up(64), Some(64));
        assert_eq!(align_up(65), Some(128));
        assert_eq!(align_up(u64::MAX), None);
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK), 1);
        assert_eq!(chunk_count(CHUNK + 1), 2);
    }
}
