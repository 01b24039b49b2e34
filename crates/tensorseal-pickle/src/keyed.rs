//! Bare-key persistent ids: torch's pre-0.1.10 tar checkpoints keep their tensors in a member of
//! their own (`tensors`) and the object pickle names them by key (`BINPERSID "10"`). The caller
//! reads that member and hands the interpreter a [`TensorTable`]; only then are such ids
//! accepted ([`Options::tensor_table`](crate::Options::tensor_table)). Every other container
//! keeps refusing them.

use std::collections::HashMap;

use crate::dtype::Dtype;

/// One tensor of a tar checkpoint, as its `tensors` record and the `storages` member describe
/// it: the interpreter turns it into the same [`Tensor`](crate::Tensor) node the rebuild
/// functions make, bounds-checked against its storage.
///
/// # Invariants
/// `size` and `stride` have the same length (the constructor refuses anything else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedTensor {
    storage_key: String,
    dtype: Dtype,
    storage_numel: u64,
    location: String,
    storage_offset: u64,
    /// The sizes, then the strides.
    dims: Box<[u64]>,
}

impl KeyedTensor {
    /// A tensor over the root storage `storage_key` of `storage_numel` elements of `dtype`,
    /// starting `storage_offset` elements into it. A tensor over a storage view passes the root
    /// storage and an offset that includes the view's own. `None` when `size` and `stride`
    /// differ in length.
    pub fn new(
        storage_key: impl Into<String>,
        dtype: Dtype,
        storage_numel: u64,
        location: impl Into<String>,
        size: &[u64],
        stride: &[u64],
        storage_offset: u64,
    ) -> Option<KeyedTensor> {
        if size.len() != stride.len() {
            return None;
        }
        Some(KeyedTensor {
            storage_key: storage_key.into(),
            dtype,
            storage_numel,
            location: location.into(),
            storage_offset,
            dims: size.iter().chain(stride).copied().collect(),
        })
    }

    /// The root storage's key (the data the container holds under it).
    pub fn storage_key(&self) -> &str {
        &self.storage_key
    }
    /// Element type (that of the storage: the tensor class in the record is not consulted,
    /// as torch does not consult it).
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }
    /// Elements in the root storage.
    pub fn storage_numel(&self) -> u64 {
        self.storage_numel
    }
    /// The device the storage was saved from; informational.
    pub fn location(&self) -> &str {
        &self.location
    }
    /// Offset of element 0 in the root storage, in elements.
    pub fn storage_offset(&self) -> u64 {
        self.storage_offset
    }
    /// Shape.
    pub fn size(&self) -> &[u64] {
        &self.dims[..self.dims.len() / 2]
    }
    /// Strides in elements.
    pub fn stride(&self) -> &[u64] {
        &self.dims[self.dims.len() / 2..]
    }
    pub(crate) fn dims(&self) -> &[u64] {
        &self.dims
    }
}

/// The tensors a tar checkpoint's object pickle may name, keyed as torch keys them: the
/// persistent id is an int or a str holding one (`deserialized_objects[int(saved_id)]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TensorTable {
    entries: HashMap<i64, KeyedTensor>,
}

impl TensorTable {
    /// An empty table.
    pub fn new() -> TensorTable {
        TensorTable::default()
    }

    /// Adds the tensor under `key`; gives it back when the key is already taken.
    pub fn insert(&mut self, key: i64, tensor: KeyedTensor) -> Result<(), KeyedTensor> {
        match self.entries.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => Err(tensor),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(tensor);
                Ok(())
            }
        }
    }

    /// The tensor under `key`.
    pub fn get(&self, key: i64) -> Option<&KeyedTensor> {
        self.entries.get(&key)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
