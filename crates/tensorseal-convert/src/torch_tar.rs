//! torch's pre-0.1.10 tar checkpoints, read after torch's own reader
//! (`_legacy_load.legacy_load`): a POSIX tar whose `storages` member holds the storage data,
//! `tensors` the tensor metadata and `pickle` the object, which names tensors by key. Every
//! pickle in every member is judged by the same policy as elsewhere; every count, size, view and
//! bound is checked before the object pickle runs, and the tensors it names become the same
//! tensor nodes the legacy format gives.
//!
//! Layout (all integers little-endian):
//! * `storages`: `pickle(count)`, then per storage `pickle((key, location, storage class))`,
//!   `int64 numel` and `numel × itemsize` bytes; then `pickle([(view key, root key, offset,
//!   numel), ...])`, offsets and sizes in elements of the root.
//! * `tensors`: `pickle(count)`, then per tensor `pickle((key, storage key, tensor class))`,
//!   `int32 ndim`, 4 zero bytes, `ndim × int64` sizes, `ndim × int64` strides, `int64` offset.
//! * `pickle`: the object; its persistent ids are tensor keys (`int(saved_id)`) or
//!   `('module', class, source_file, source)`.
//! * `sys_info` (optional): a pickled dict, read and ignored as torch does.

use crate::error::ConvertError;
use crate::limits::{LimitExceeded, Limits};
use crate::pickle_tree::{BlobSink, StorageBytes};
use crate::pickles::{self, MemberScan};
use crate::tar::{self, TarMember};
use crate::torch::{self, PickleContext, PickleOutcome};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tensorseal::Node;
use tensorseal_pickle as pk;

/// The members torch's tar reader opens; `sys_info` is also allowed (read and ignored).
const REQUIRED: [&str; 3] = ["storages", "tensors", "pickle"];

/// A root storage: its element type and its bytes in the file.
struct RootStorage<'a> {
    dtype: pk::Dtype,
    numel: u64,
    location: String,
    data: &'a [u8],
}

/// What a storage key (a root or a view of one) lets a tensor see: `numel` elements of the
/// root `root` starting at element `offset`.
#[derive(Clone, Copy)]
struct StorageRef {
    root: i64,
    offset: u64,
    numel: u64,
}

/// The `storages` and `tensors` members, read and cross-checked.
struct Tables<'a> {
    roots: HashMap<i64, RootStorage<'a>>,
    tensors: pk::TensorTable,
}

/// A pickle met while reading the members, for `scan`.
struct Visit {
    member: String,
    start: usize,
    end: usize,
}

/// The tar members by name, each present once.
struct Members<'a> {
    storages: TarMember<'a>,
    tensors: TarMember<'a>,
    pickle: TarMember<'a>,
    sys_info: Option<TarMember<'a>>,
}

fn invalid(member: &str, at: usize, key: Option<i64>, what: impl Into<String>) -> ConvertError {
    ConvertError::Invalid {
        member: format!("tar member {member}"),
        path: match key {
            Some(k) => format!("offset {at}, key {k}"),
            None => format!("offset {at}"),
        },
        what: what.into(),
    }
}

fn members<'a>(file: &'a [u8]) -> Result<Members<'a>, ConvertError> {
    let mut found: HashMap<&'static str, TarMember<'a>> = HashMap::new();
    let mut sys_info = None;
    for m in tar::members(file)? {
        let at = m.offset as usize;
        let slot = match m.name.as_str() {
            "sys_info" => {
                if sys_info.replace(m).is_some() {
                    return Err(invalid("sys_info", at, None, "the member appears twice"));
                }
                continue;
            }
            n => REQUIRED.iter().find(|r| **r == n).copied().ok_or_else(|| {
                invalid(
                    &m.name,
                    at,
                    None,
                    "unexpected member (a tar checkpoint holds storages, tensors, pickle and sys_info)",
                )
            })?,
        };
        if found.insert(slot, m).is_some() {
            return Err(invalid(slot, at, None, "the member appears twice"));
        }
    }
    let mut take = |name: &'static str| {
        found.remove(name).ok_or_else(|| ConvertError::Invalid {
            member: "tar archive".into(),
            path: "the members".into(),
            what: format!(
                "no `{name}` member (a tar checkpoint needs storages, tensors and pickle)"
            ),
        })
    };
    Ok(Members {
        storages: take("storages")?,
        tensors: take("tensors")?,
        pickle: take("pickle")?,
        sys_info,
    })
}

/// Reads one member front to back: record pickles and raw fields, offsets absolute in the file.
struct Cursor<'a, 'v> {
    /// The file up to the member's end, so no pickle can run into the next member.
    file: &'a [u8],
    member: &'static str,
    at: usize,
    options: pk::Options,
    visits: &'v mut Vec<Visit>,
}

impl<'a> Cursor<'a, '_> {
    fn new<'v>(
        file: &'a [u8],
        m: &TarMember<'a>,
        member: &'static str,
        limits: &pk::Limits,
        visits: &'v mut Vec<Visit>,
    ) -> Cursor<'a, 'v> {
        let start = m.offset as usize;
        Cursor {
            file: &file[..start + m.data.len()],
            member,
            at: start,
            // Metadata records hold ints, strs and torch classes, never objects.
            options: pickles::options(limits, false, true),
            visits,
        }
    }

    fn invalid(&self, at: usize, key: Option<i64>, what: impl Into<String>) -> ConvertError {
        invalid(self.member, at, key, what)
    }

    fn remaining(&self) -> usize {
        self.file.len() - self.at
    }

    fn pickle(&mut self, what: &str) -> Result<pk::Graph<'a>, ConvertError> {
        let label = format!("tar member {}: {what} at offset {}", self.member, self.at);
        self.visits.push(Visit {
            member: label.clone(),
            start: self.at,
            end: self.file.len(),
        });
        let graph = pickles::load(
            self.file,
            self.at,
            &label,
            &self.options,
            &mut pk::NoStorages,
        )?;
        self.at = graph.end();
        Ok(graph)
    }

    fn take(&mut self, n: u64, what: &str, key: Option<i64>) -> Result<&'a [u8], ConvertError> {
        let at = self.at;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| at.checked_add(n))
            .filter(|&e| e <= self.file.len())
            .ok_or_else(|| {
                self.invalid(
                    at,
                    key,
                    format!(
                        "{what}: needs {n} bytes, {} remain in the member",
                        self.remaining()
                    ),
                )
            })?;
        self.at = end;
        Ok(&self.file[at..end])
    }

    /// A non-negative int64 field.
    fn u64(&mut self, what: &str, key: Option<i64>) -> Result<u64, ConvertError> {
        let at = self.at;
        let b = self.take(8, what, key)?;
        let v = i64::from_le_bytes(b.try_into().expect("8 bytes"));
        u64::try_from(v).map_err(|_| self.invalid(at, key, format!("{what} is negative ({v})")))
    }

    /// The record count that starts the member, bounded by a limit and by the bytes left
    /// (every record takes at least 4 bytes), before anything is read per record.
    fn count(&mut self, what: &str, limit: u64) -> Result<u64, ConvertError> {
        let at = self.at;
        let g = self.pickle(what)?;
        let n = int(&g, g.root())
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                self.invalid(at, None, format!("the {what} is not a non-negative int"))
            })?;
        if n > limit {
            return Err(LimitExceeded {
                what: "max_tensors",
                value: n,
                limit,
                offset: at as u64,
            }
            .into());
        }
        if n > (self.remaining() / 4) as u64 {
            return Err(self.invalid(
                at,
                None,
                format!(
                    "{n} records cannot fit in the {} bytes left",
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    fn finish(&self) -> Result<(), ConvertError> {
        if self.remaining() != 0 {
            return Err(self.invalid(
                self.at,
                None,
                format!("{} bytes after the last record", self.remaining()),
            ));
        }
        Ok(())
    }
}

fn int(g: &pk::Graph<'_>, id: pk::NodeId) -> Option<i64> {
    match g.node(id) {
        pk::Node::Int(i) => i.to_i64(),
        _ => None,
    }
}

fn tuple<'g>(g: &'g pk::Graph<'_>, id: pk::NodeId, len: usize) -> Option<&'g [pk::NodeId]> {
    match g.node(id) {
        pk::Node::Tuple(items) if items.len() == len => Some(items),
        _ => None,
    }
}

fn global_name(g: &pk::Graph<'_>, id: pk::NodeId) -> String {
    match g.node(id) {
        pk::Node::Global(gid) => g.global(*gid).name().to_string(),
        other => other.type_name().to_string(),
    }
}

/// Reads `storages` then `tensors`, recording every pickle met in `visits`.
fn read_tables<'a>(
    file: &'a [u8],
    m: &Members<'a>,
    limits: &Limits,
    pickle_limits: &pk::Limits,
    visits: &mut Vec<Visit>,
) -> Result<Tables<'a>, ConvertError> {
    let mut roots: HashMap<i64, RootStorage<'a>> = HashMap::new();
    let mut refs: HashMap<i64, StorageRef> = HashMap::new();

    let mut cur = Cursor::new(file, &m.storages, "storages", pickle_limits, visits);
    let count = cur.count("storage count", limits.max_tensors)?;
    for i in 0..count {
        let at = cur.at;
        let g = cur.pickle(&format!("storage record {i}"))?;
        let bad = |what: &str| invalid("storages", at, None, format!("record {i}: {what}"));
        let items = tuple(&g, g.root(), 3)
            .ok_or_else(|| bad("not a (key, location, storage class) tuple"))?;
        let key = int(&g, items[0]).ok_or_else(|| bad("the storage key is not an int"))?;
        let location = g
            .as_str(items[1])
            .ok_or_else(|| bad("the location is not a str"))?
            .to_string();
        let kind = match g.node(items[2]) {
            pk::Node::Global(gid) => g.global(*gid).storage_kind(),
            _ => None,
        };
        let dtype = match kind {
            Some(pk::StorageKind::Typed(d)) => d,
            Some(pk::StorageKind::Untyped) => {
                return Err(cur.invalid(
                    at,
                    Some(key),
                    "UntypedStorage: torch's tar reader needs a typed storage class",
                ));
            }
            None => {
                return Err(cur.invalid(
                    at,
                    Some(key),
                    format!(
                        "the storage class {} is not a torch storage class",
                        global_name(&g, items[2])
                    ),
                ));
            }
        };
        let Some(itemsize) = dtype.itemsize().filter(|_| dtype.is_supported()) else {
            return Err(ConvertError::Unsupported {
                member: "tar member storages".into(),
                path: format!("offset {at}, key {key}"),
                what: format!(
                    "a storage of dtype {dtype}, which has no dense bit-exact representation"
                ),
            });
        };
        let count_at = cur.at;
        let numel = cur.u64("the element count", Some(key))?;
        let nbytes = numel.checked_mul(itemsize).ok_or_else(|| {
            cur.invalid(count_at, Some(key), format!("{numel} elements overflow"))
        })?;
        let data = cur.take(nbytes, &format!("{numel} elements of {dtype}"), Some(key))?;
        if refs
            .insert(
                key,
                StorageRef {
                    root: key,
                    offset: 0,
                    numel,
                },
            )
            .is_some()
        {
            return Err(cur.invalid(at, Some(key), "duplicate storage key"));
        }
        roots.insert(
            key,
            RootStorage {
                dtype,
                numel,
                location,
                data,
            },
        );
    }
    let at = cur.at;
    let g = cur.pickle("storage views")?;
    let pk::Node::List(views) = g.node(g.root()) else {
        return Err(cur.invalid(at, None, "the storage views are not a list"));
    };
    for (i, &v) in views.iter().enumerate() {
        let bad = |what: &str| invalid("storages", at, None, format!("storage view {i}: {what}"));
        let items = tuple(&g, v, 4)
            .ok_or_else(|| bad("not a (view key, root key, offset, numel) tuple"))?;
        let mut field = [0i64; 4];
        for (f, &id) in field.iter_mut().zip(items) {
            *f = int(&g, id).ok_or_else(|| bad("a field is not an int"))?;
        }
        let [target, root, offset, numel] = field;
        let (Ok(offset), Ok(numel)) = (u64::try_from(offset), u64::try_from(numel)) else {
            return Err(cur.invalid(at, Some(target), "negative view offset or size"));
        };
        // torch resolves the root when it meets the view: a view of a later key fails there.
        let base = *refs.get(&root).ok_or_else(|| {
            cur.invalid(
                at,
                Some(target),
                format!("the view's root {root} is not a storage defined before it"),
            )
        })?;
        if offset.checked_add(numel).is_none_or(|e| e > base.numel) {
            return Err(cur.invalid(
                at,
                Some(target),
                format!(
                    "the view covers elements {offset}..{offset}+{numel} of storage {root}, which has {}",
                    base.numel
                ),
            ));
        }
        let view = StorageRef {
            root: base.root,
            offset: base.offset + offset,
            numel,
        };
        if refs.insert(target, view).is_some() {
            return Err(cur.invalid(at, Some(target), "duplicate storage key"));
        }
    }
    cur.finish()?;

    let mut tensors = pk::TensorTable::new();
    let mut cur = Cursor::new(file, &m.tensors, "tensors", pickle_limits, visits);
    let count = cur.count("tensor count", limits.max_tensors)?;
    for i in 0..count {
        let at = cur.at;
        let g = cur.pickle(&format!("tensor record {i}"))?;
        let bad = |what: &str| invalid("tensors", at, None, format!("record {i}: {what}"));
        let items = tuple(&g, g.root(), 3)
            .ok_or_else(|| bad("not a (key, storage key, tensor class) tuple"))?;
        let key = int(&g, items[0]).ok_or_else(|| bad("the tensor key is not an int"))?;
        let storage_key = int(&g, items[1])
            .ok_or_else(|| bad("the storage key is not an int (a tensor without storage?)"))?;
        let is_tensor_class = match g.node(items[2]) {
            pk::Node::Global(gid) => g.global(*gid).is_tensor_class(),
            _ => false,
        };
        if !is_tensor_class {
            return Err(cur.invalid(
                at,
                Some(key),
                format!(
                    "the tensor class {} is not a torch tensor class",
                    global_name(&g, items[2])
                ),
            ));
        }
        let ndim_at = cur.at;
        let ndim = i32::from_le_bytes(cur.take(4, "ndim", Some(key))?.try_into().expect("4 bytes"));
        let ndim = u64::try_from(ndim)
            .map_err(|_| cur.invalid(ndim_at, Some(key), format!("ndim is negative ({ndim})")))?;
        if ndim > limits.max_rank {
            return Err(LimitExceeded {
                what: "max_rank",
                value: ndim,
                limit: limits.max_rank,
                offset: ndim_at as u64,
            }
            .into());
        }
        // torch wrote ndim as 8 bytes: the high half of a valid ndim is zero.
        if cur.take(4, "the ndim padding", Some(key))? != [0; 4] {
            return Err(cur.invalid(
                ndim_at + 4,
                Some(key),
                "the 4 bytes after ndim are not zero",
            ));
        }
        let mut size = Vec::with_capacity(ndim as usize);
        for _ in 0..ndim {
            size.push(cur.u64("a size", Some(key))?);
        }
        let mut stride = Vec::with_capacity(ndim as usize);
        for _ in 0..ndim {
            stride.push(cur.u64("a stride", Some(key))?);
        }
        let offset = cur.u64("the storage offset", Some(key))?;
        let storage = *refs.get(&storage_key).ok_or_else(|| {
            cur.invalid(
                at,
                Some(key),
                format!("storage {storage_key} is not in the `storages` member"),
            )
        })?;
        let needed = elements_needed(&size, &stride, offset)
            .ok_or_else(|| cur.invalid(at, Some(key), "the tensor's extent overflows"))?;
        if needed > storage.numel {
            return Err(cur.invalid(
                at,
                Some(key),
                format!(
                    "size {size:?}, stride {stride:?} and offset {offset} need {needed} elements of storage {storage_key}, which has {}",
                    storage.numel
                ),
            ));
        }
        if refs.contains_key(&key) {
            return Err(cur.invalid(at, Some(key), "the key names a storage too"));
        }
        let root = &roots[&storage.root];
        let tensor = pk::KeyedTensor::new(
            storage.root.to_string(),
            root.dtype,
            root.numel,
            root.location.clone(),
            &size,
            &stride,
            storage.offset + offset,
        )
        .expect("sizes and strides have ndim entries each");
        if tensors.insert(key, tensor).is_err() {
            return Err(cur.invalid(at, Some(key), "duplicate tensor key"));
        }
    }
    cur.finish()?;
    Ok(Tables { roots, tensors })
}

/// Elements a view must be able to address: one past its last element (0 when it is empty).
fn elements_needed(size: &[u64], stride: &[u64], offset: u64) -> Option<u64> {
    if size.contains(&0) {
        return Some(0);
    }
    let mut last = offset;
    for (&s, &st) in size.iter().zip(stride) {
        last = last.checked_add((s - 1).checked_mul(st)?)?;
    }
    last.checked_add(1)
}

struct TarStorages<'a> {
    records: HashMap<String, &'a [u8]>,
}

impl StorageBytes for TarStorages<'_> {
    fn storage(&self, storage: &pk::Storage) -> Result<&[u8], ConvertError> {
        self.records
            .get(storage.key())
            .copied()
            .ok_or_else(|| ConvertError::Invalid {
                member: "tar member storages".into(),
                path: format!("storage {:?}", storage.key()),
                what: "no such storage".into(),
            })
    }

    fn big_endian(&self) -> bool {
        // torch wrote storages in the host's order, and only little-endian hosts ran it.
        false
    }
}

fn object_options(
    limits: &pk::Limits,
    allow_objects: bool,
    tensors: pk::TensorTable,
) -> pk::Options {
    let mut options = pickles::options(limits, allow_objects, false);
    options.tensor_table = Some(Arc::new(tensors));
    options
}

/// Reads and checks every member and interprets the object pickle: everything conversion does
/// before building the tree.
fn prepare<'a>(
    file: &'a [u8],
    pickle_limits: &pk::Limits,
    allow_objects: bool,
    limits: &Limits,
) -> Result<(pk::Graph<'a>, TarStorages<'a>), ConvertError> {
    let m = members(file)?;
    if let Some(s) = &m.sys_info {
        let at = s.offset as usize;
        let options = pickles::options(pickle_limits, false, false);
        let g = pickles::load(
            &file[..at + s.data.len()],
            at,
            "tar member sys_info",
            &options,
            &mut pk::NoStorages,
        )?;
        if !matches!(g.node(g.root()), pk::Node::Dict(_)) {
            return Err(invalid("sys_info", at, None, "not a dict"));
        }
    }
    let tables = read_tables(file, &m, limits, pickle_limits, &mut Vec::new())?;
    let options = object_options(pickle_limits, allow_objects, tables.tensors);
    let mut referenced: HashSet<i64> = HashSet::new();
    let roots = &tables.roots;
    let mut resolver = |req: &pk::StorageRequest<'_>| -> Result<u64, pk::StorageError> {
        let root = req
            .key
            .parse::<i64>()
            .ok()
            .and_then(|k| roots.get_key_value(&k))
            .ok_or_else(|| pk::StorageError::new("not in the `storages` member"))?;
        referenced.insert(*root.0);
        Ok(root.1.data.len() as u64)
    };
    let at = m.pickle.offset as usize;
    let graph = pickles::load(
        &file[..at + m.pickle.data.len()],
        at,
        "tar member pickle",
        &options,
        &mut resolver,
    )?;
    // Every storage must be used by a tensor the object names: nothing in the file unaccounted.
    let mut unused: Vec<i64> = roots
        .keys()
        .filter(|k| !referenced.contains(k))
        .copied()
        .collect();
    unused.sort_unstable();
    if let Some(k) = unused.first() {
        return Err(invalid(
            "storages",
            m.storages.offset as usize,
            Some(*k),
            "storage not used by any tensor of the pickle",
        ));
    }
    let records = roots.iter().map(|(k, r)| (k.to_string(), r.data)).collect();
    Ok((graph, TarStorages { records }))
}

fn tree_inner(
    file: &[u8],
    ctx: &PickleContext<'_>,
    limits: &Limits,
    sink: &mut dyn BlobSink,
) -> Result<(Node, PickleOutcome), ConvertError> {
    let (graph, storages) = prepare(file, ctx.limits, ctx.allow_objects, limits)?;
    torch::build(&graph, &storages, "tar member pickle", ctx, sink)
}

/// Converts a tar checkpoint. A structural error is reported as such only when no pickle of the
/// file is refused: a payload anywhere makes the file unsafe, whatever else is wrong with it.
pub(crate) fn tar_tree(
    file: &[u8],
    ctx: &PickleContext<'_>,
    limits: &Limits,
    sink: &mut dyn BlobSink,
) -> Result<(Node, PickleOutcome), ConvertError> {
    tree_inner(file, ctx, limits, sink).map_err(|e| {
        if matches!(e, ConvertError::Unsafe { .. }) {
            return e;
        }
        let (scans, _) = scan(file, "", limits, ctx.limits);
        scans
            .iter()
            .filter_map(|s| pickles::refusal(&s.member, &s.report, true))
            .find(|r| matches!(r, ConvertError::Unsafe { .. }))
            .unwrap_or(e)
    })
}

/// Scans every pickle of a tar checkpoint (each record of `storages` and `tensors`, the object
/// and `sys_info`), walking the members as conversion does; the second value is the first
/// structural problem, if any.
pub(crate) fn scan(
    file: &[u8],
    name: &str,
    limits: &Limits,
    pickle_limits: &pk::Limits,
) -> (Vec<MemberScan>, Option<String>) {
    let label = |m: &str| {
        if name.is_empty() {
            m.to_string()
        } else {
            format!("{name}: {m}")
        }
    };
    let m = match members(file) {
        Ok(m) => m,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let mut visits = Vec::new();
    let tables = read_tables(file, &m, limits, pickle_limits, &mut visits);
    let mut problem = tables.as_ref().err().map(|e| e.to_string());
    let mut out: Vec<MemberScan> = visits
        .iter()
        .map(|v| MemberScan {
            member: label(&v.member),
            report: pk::scan(
                &file[..v.end],
                v.start,
                &pickles::options(pickle_limits, false, true),
                &mut pk::DeclaredStorages,
            ),
        })
        .collect();
    let table = tables.map(|t| t.tensors).unwrap_or_default();
    let whole = [
        (
            "pickle",
            Some(&m.pickle),
            object_options(pickle_limits, false, table),
        ),
        (
            "sys_info",
            m.sys_info.as_ref(),
            pickles::options(pickle_limits, false, false),
        ),
    ];
    for (name, member, options) in whole {
        let Some(member) = member else { continue };
        let at = member.offset as usize;
        let report = pk::scan(
            &file[..at + member.data.len()],
            at,
            &options,
            &mut pk::DeclaredStorages,
        );
        if let (None, Some(e)) = (&problem, report.error()) {
            problem = Some(format!("tar member {name}: {e}"));
        }
        out.push(MemberScan {
            member: label(&format!("tar member {name}")),
            report,
        });
    }
    if problem.is_none() {
        // The checks that need the whole file (sys_info's type, storages no tensor uses), as
        // conversion runs them; unknown classes are the scan verdict's business, not a problem.
        if let Err(e) = prepare(file, pickle_limits, true, limits)
            && !e.is_refusal()
        {
            problem = Some(e.to_string());
        }
    }
    (out, problem)
}
