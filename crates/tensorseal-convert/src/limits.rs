//! Every bound the container parsers apply to untrusted input, in one place.
//!
//! Declared sizes are never trusted for allocation: a parser first checks a declared length
//! against the bytes actually present and against the limit here, and only then allocates.

use std::fmt;

/// Bounds on the containers the converter reads.
///
/// The defaults are conservative for checkpoints and arrays as people save them (a torch zip of a
/// 70-billion-parameter model has a few thousand entries; numpy headers are under 1 KiB); raise a
/// field when a real file needs it. A file over a limit is refused with [`LimitExceeded`], which
/// names the limit and the file offset where it was met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most entries in one zip archive (central directory records). Default 100,000.
    pub max_entries: u64,
    /// Largest zip central directory, in bytes. Default 64 MiB.
    pub max_central_directory: u64,
    /// Longest zip member name, in bytes. Default 1024.
    pub max_name_length: u64,
    /// Largest size one deflated zip member may inflate to, declared or actual. Default 1 GiB.
    /// Stored members are bounded by the file itself and are never copied.
    pub max_inflated_member: u64,
    /// Largest sum of the inflated sizes of all deflated members of one archive. Default 4 GiB.
    pub max_inflated_total: u64,
    /// Largest ratio of inflated to compressed size of a deflated member. Default 200 (deflate
    /// reaches about 1030:1 on constant data, real arrays stay far below 100:1).
    pub max_inflate_ratio: u64,
    /// Inflated size below which [`Limits::max_inflate_ratio`] is not applied: a small member
    /// of zeros compresses very well and costs nothing. Default 1 MiB.
    pub inflate_ratio_floor: u64,
    /// Largest `data.pkl` of a torch zip archive, in bytes. Default 256 MiB.
    pub max_pickle_size: u64,
    /// Largest `.npy` header (the dict literal), in bytes. Default 16 KiB; numpy itself refuses
    /// headers over 10,000 bytes unless told otherwise.
    pub max_npy_header: u64,
    /// Most dimensions of one array or tensor (a tar checkpoint's `ndim` too). Default 64
    /// (numpy's `NPY_MAXDIMS`, and the format's `max_rank`).
    pub max_rank: u64,
    /// Largest safetensors JSON header, in bytes. Default 100,000,000 (the safetensors crate's
    /// own bound).
    pub max_safetensors_header: u64,
    /// Deepest nesting of JSON arrays and objects in a safetensors header or an HF index.
    /// Default 64 (real headers nest 3 deep).
    pub max_json_depth: u64,
    /// Most tensors in one safetensors file, `.npz` archive or HF index, and most storage or
    /// tensor records in a torch tar checkpoint. Default 1,000,000.
    pub max_tensors: u64,
    /// Most shard files an HF index may name. Default 10,000.
    pub max_shards: u64,
    /// Largest HF `*.index.json`, in bytes. Default 64 MiB.
    pub max_index_size: u64,
    /// The converter's output may be at most this many times the size of its input(s), plus
    /// [`Limits::output_slack`], so that stride-0 views or shared-storage fan-out cannot turn a
    /// small file into a huge one. Default 4.
    pub max_output_ratio: u64,
    /// Bytes of output allowed on top of [`Limits::max_output_ratio`] (manifest, padding,
    /// small files). Default 64 MiB.
    pub output_slack: u64,
    /// Largest tensor of a DCP checkpoint assembled from its chunks, in bytes: the converter
    /// holds one such tensor in memory at a time. Default 4 GiB.
    pub max_dcp_tensor: u64,
    /// Most chunks of one tensor of a DCP checkpoint (the tiling check compares every pair).
    /// Default 4096.
    pub max_dcp_chunks: u64,
    /// Most `*.distcp` files in a DCP checkpoint folder. Default 10,000.
    pub max_dcp_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_central_directory: 64 << 20,
            max_name_length: 1024,
            max_inflated_member: 1 << 30,
            max_inflated_total: 4 << 30,
            max_inflate_ratio: 200,
            inflate_ratio_floor: 1 << 20,
            max_pickle_size: 256 << 20,
            max_npy_header: 16 << 10,
            max_rank: 64,
            max_safetensors_header: 100_000_000,
            max_json_depth: 64,
            max_tensors: 1_000_000,
            max_shards: 10_000,
            max_index_size: 64 << 20,
            max_output_ratio: 4,
            output_slack: 64 << 20,
            max_dcp_tensor: 4 << 30,
            max_dcp_chunks: 4096,
            max_dcp_files: 10_000,
        }
    }
}

impl Limits {
    /// The largest output the converter may write for inputs totalling `input_len` bytes:
    /// `input_len × max_output_ratio + output_slack`, saturating.
    pub fn max_output_for(&self, input_len: u64) -> u64 {
        input_len
            .saturating_mul(self.max_output_ratio)
            .saturating_add(self.output_slack)
    }

    /// Checks the converter's output size against [`Limits::max_output_for`].
    ///
    /// # Errors
    /// [`LimitExceeded`] with `what = "max_output_ratio"` when `output_len` is over the bound;
    /// `offset` is the output offset where the bound was crossed.
    pub fn check_output(&self, input_len: u64, output_len: u64) -> Result<(), LimitExceeded> {
        let limit = self.max_output_for(input_len);
        check("max_output_ratio", output_len, limit, limit)
    }
}

/// A declared or actual size, count or depth over one of the [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// The limit's field name in [`Limits`], e.g. `"max_inflated_member"`.
    pub what: &'static str,
    /// The value found (or the least value known to be reached).
    pub value: u64,
    /// The limit in force.
    pub limit: u64,
    /// Absolute offset in the input where the value was read or reached.
    pub offset: u64,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {} at offset {}, over the limit {} (Limits::{})",
            describe(self.what),
            self.value,
            self.offset,
            self.limit,
            self.what
        )
    }
}

impl std::error::Error for LimitExceeded {}

fn describe(what: &str) -> &'static str {
    match what {
        "max_entries" => "the number of zip entries",
        "max_dcp_tensor" => "a DCP tensor's byte size",
        "max_dcp_chunks" => "the number of chunks of a DCP tensor",
        "max_dcp_files" => "the number of .distcp files",
        "max_central_directory" => "the zip central directory size",
        "max_name_length" => "a member name's length",
        "max_inflated_member" => "a member's inflated size",
        "max_inflated_total" => "the archive's total inflated size",
        "max_inflate_ratio" => "a member's compression ratio",
        "max_pickle_size" => "the pickle size",
        "max_npy_header" => "the .npy header length",
        "max_rank" => "the number of dimensions",
        "max_safetensors_header" => "the safetensors header length",
        "max_json_depth" => "the JSON nesting depth",
        "max_tensors" => "the number of tensors",
        "max_shards" => "the number of shards",
        "max_index_size" => "the index file size",
        "max_output_ratio" => "the output size",
        _ => "a size",
    }
}

/// `Ok` when `value <= limit`.
pub(crate) fn check(
    what: &'static str,
    value: u64,
    limit: u64,
    offset: u64,
) -> Result<(), LimitExceeded> {
    if value > limit {
        Err(LimitExceeded {
            what,
            value,
            limit,
            offset,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_bound_saturates() {
        let l = Limits::default();
        assert_eq!(l.max_output_for(10), 40 + (64 << 20));
        assert_eq!(l.max_output_for(u64::MAX), u64::MAX);
        assert!(l.check_output(10, 40 + (64 << 20)).is_ok());
        let e = l.check_output(10, 41 + (64 << 20)).unwrap_err();
        assert_eq!(e.what, "max_output_ratio");
        assert!(e.to_string().contains("Limits::max_output_ratio"));
    }
}
