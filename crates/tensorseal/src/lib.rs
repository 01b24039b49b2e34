#![doc = include_str!("../README.md")]
mod cbor;
mod codec;
mod dtype;
mod error;
mod failure;
#[doc(hidden)]
pub mod fuzz;
pub mod json;
mod keys;
mod layout;
mod limits;
mod loader;
mod manifest;
mod mapped;
mod mmap;
pub mod planes;
mod policy;
mod python_eq;
mod reader;
mod shard_index;
mod shard_set;
mod source;
mod tans;
mod tree;
mod verify;
mod writer;

pub use codec::{chunk_digests, group, sha256, ungroup};
pub use dtype::{DType, TORCH_DTYPE_EXTRA_NAMES, is_torch_dtype_name};
pub use error::{KeyError, PolicyError, ReadError, VerifyError, WriteError};
pub use failure::{Classify, FailureClass, error_chain};
pub use keys::{PARSED_KEYS_MAX, PublicKey, SecretKey};
pub use layout::{
    END_MAGIC, FOOTER_LEN, Footer, HEADER_LEN, MAGIC, SIGNATURE_DOMAIN, SignatureEntry,
};
pub use limits::{ALIGN, CBOR_LEVELS_PER_TREE_LEVEL, CHUNK, Limits, MAX_SIZE, MAX_TREE_DEPTH_HARD};
pub use loader::Loader;
pub use manifest::{
    BlobCodec, BlobEntry, Digest, Encoding, FORMAT_VERSION, FORMAT_VERSIONS, Manifest,
    check_metadata_entry, is_device_name, parse_step,
};
pub use mapped::{BlobMemory, MappedLoader};
pub use mmap::{FileBytes, MapMode, PrivateMap};
pub use policy::{
    KeyRefusal, KeyRule, MAX_POLICY_FILE, MAX_POLICY_KEYS, MAX_RUN_ID_PATTERNS, format_utc,
};
pub use reader::Checkpoint;
pub use shard_index::{
    IndexChunk, IndexEntry, IndexTensor, IndexValue, MAX_SHARDS, MEMORY_FORMATS, SHARD_INDEX_FILE,
    SHARD_INDEX_FORMAT, ShardBinding, ShardIndex, ShardPlace,
};
pub use shard_set::{
    BoundShardSet, ShardSetError, ShardSetReport, bind_shard_set, is_shard_set, verify_shard_set,
};
pub use source::{ReadAt, SourceChanged};
pub use tree::{
    BlobId, Global, Int, Node, Object, PathSegment, Tensor, TensorKind, Typed, dotted_path,
    write_dotted_path,
};
pub use verify::{SignerStatus, TrustPolicy, VerifyReport};
pub use writer::{
    AtomicFile, BlobSource, Compression, CompressionSyntaxError, WriteOptions, Writer, WrittenFile,
    ZSTD_LEVELS, add_signature,
};
