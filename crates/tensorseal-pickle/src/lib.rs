#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod calls;
mod compat;
mod dtype;
mod error;
mod int;
mod keyed;
mod keys;
mod limits;
mod opcode;
mod policy;
mod report;
mod storage;
mod text;
mod validate;
mod value;
mod vm;

pub use crate::dtype::{ByteOrder, Dtype, NumpyDtype, NumpyElement};
pub use crate::error::PickleError;
pub use crate::int::PyInt;
pub use crate::keyed::{KeyedTensor, TensorTable};
pub use crate::limits::Limits;
pub use crate::opcode::Opcode;
pub use crate::policy::{BUILTINS_HARMLESS, UNSAFE_MODULES, UNSAFE_NAMES};
pub use crate::report::{Finding, FindingKind, GlobalName, ScanReport, ScanStatus, Verdict};
pub use crate::storage::{
    DeclaredStorages, NoStorages, StorageError, StorageKind, StorageRequest, StorageResolver,
    StorageView,
};
pub use crate::value::{
    ArraySource, ByteData, CallKind, GlobalId, GlobalRef, Graph, NdArray, Node, NodeId,
    NumpyScalar, ObjectRecord, OrderedDict, Storage, Tensor, TensorFlavour, Unsupported,
    UnsupportedKind,
};
pub use crate::vm::{Options, Py2Strings, load, scan};
