//! From a pickle value graph to the tensorseal tree: every value mapped to its node kind, every
//! tensor view materialized into a blob (identical views once), nothing dropped silently.

use crate::error::ConvertError;
use crate::materialize::View;
use std::collections::HashMap;
use tensorseal::{BlobId, DType, Global, Int, Node, Object, Tensor, TensorKind, Typed};
use tensorseal_pickle as pk;

/// Where the bytes of a storage come from, and in which byte order they are stored.
pub(crate) trait StorageBytes {
    /// The whole storage record named by a storage node.
    fn storage(&self, storage: &pk::Storage) -> Result<&[u8], ConvertError>;
    /// Whether multi-byte elements are stored big-endian.
    fn big_endian(&self) -> bool;
}

/// Identity of a materialized view: two tensors with the same key have the same bytes. Borrowed
/// from the graph: checkpoints hold tens of thousands of tensors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ViewKey<'g> {
    storage: &'g str,
    dtype: DType,
    offset: u64,
    shape: &'g [u64],
    strides: &'g [u64],
    conj: bool,
    neg: bool,
}

/// Counts of what the conversion wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Tensor nodes in the tree.
    pub tensors: u64,
    /// Blobs written.
    pub blobs: u64,
    /// Tensor data bytes written (before compression).
    pub bytes: u64,
    /// Tensor nodes that reused the blob of an identical view (tied weights).
    pub shared: u64,
}

/// Receives the tensor bytes the tree builder materializes. Implemented by the converter on top
/// of [`tensorseal::Writer`], with the output-size budget and progress reporting.
pub(crate) trait BlobSink {
    /// Writes one blob of contiguous bytes.
    fn slice(&mut self, data: &[u8], dtype: DType, what: &str) -> Result<BlobId, ConvertError>;
    /// Writes one blob produced piece by piece.
    fn view(
        &mut self,
        view: &mut View<'_>,
        dtype: DType,
        what: &str,
    ) -> Result<BlobId, ConvertError>;
}

/// Builds the tree of one pickle graph.
pub(crate) struct TreeBuilder<'g, 'a, 's> {
    graph: &'g pk::Graph<'a>,
    storages: &'s dyn StorageBytes,
    member: &'s str,
    max_depth: usize,
    tensors: HashMap<pk::NodeId, Tensor>,
    views: HashMap<ViewKey<'g>, BlobId>,
    pub(crate) stats: TreeStats,
}

fn path_text(path: &[String]) -> String {
    if path.is_empty() {
        "the root".to_string()
    } else {
        path.concat()
    }
}

impl<'g, 'a, 's> TreeBuilder<'g, 'a, 's> {
    pub(crate) fn new(
        graph: &'g pk::Graph<'a>,
        storages: &'s dyn StorageBytes,
        member: &'s str,
        max_depth: usize,
    ) -> Self {
        TreeBuilder {
            graph,
            storages,
            member,
            max_depth,
            tensors: HashMap::new(),
            views: HashMap::new(),
            stats: TreeStats::default(),
        }
    }

    fn unsupported(&self, path: &[String], what: impl Into<String>) -> ConvertError {
        ConvertError::Unsupported {
            member: self.member.to_string(),
            path: path_text(path),
            what: what.into(),
        }
    }

    fn invalid(&self, path: &[String], what: impl Into<String>) -> ConvertError {
        ConvertError::Invalid {
            member: self.member.to_string(),
            path: path_text(path),
            what: what.into(),
        }
    }

    /// Converts the graph's root.
    pub(crate) fn root(&mut self, sink: &mut dyn BlobSink) -> Result<Node, ConvertError> {
        let mut path = Vec::new();
        self.node(self.graph.root(), sink, &mut path, 1)
    }

    fn text(&self, id: pk::NodeId, path: &[String], what: &str) -> Result<String, ConvertError> {
        self.graph
            .as_str(id)
            .map(str::to_string)
            .ok_or_else(|| self.invalid(path, format!("{what} must be a str")))
    }

    fn text_pairs(
        &mut self,
        pairs: &[(pk::NodeId, pk::NodeId)],
        sink: &mut dyn BlobSink,
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<Vec<(String, Node)>, ConvertError> {
        let mut out = Vec::with_capacity(pairs.len());
        for &(k, v) in pairs {
            let key = self.text(k, path, "an attribute name")?;
            path.push(format!(".{key}"));
            let value = self.node(v, sink, path, depth + 1)?;
            path.pop();
            out.push((key, value));
        }
        Ok(out)
    }

    fn pairs(
        &mut self,
        pairs: &[(pk::NodeId, pk::NodeId)],
        sink: &mut dyn BlobSink,
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<Vec<(Node, Node)>, ConvertError> {
        let mut out = Vec::with_capacity(pairs.len());
        for &(k, v) in pairs {
            let key = self.node(k, sink, path, depth + 1)?;
            path.push(match self.graph.as_str(k) {
                Some(s) => format!("[{s:?}]"),
                None => format!("[{}]", tensorseal::PathSegment::Key(&key)),
            });
            let value = self.node(v, sink, path, depth + 1)?;
            path.pop();
            out.push((key, value));
        }
        Ok(out)
    }

    fn list(
        &mut self,
        items: &[pk::NodeId],
        sink: &mut dyn BlobSink,
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<Vec<Node>, ConvertError> {
        let mut out = Vec::with_capacity(items.len());
        for (i, &item) in items.iter().enumerate() {
            path.push(format!("[{i}]"));
            out.push(self.node(item, sink, path, depth + 1)?);
            path.pop();
        }
        Ok(out)
    }

    /// Converts one node. Recursion is bounded by `max_depth` (the format's tree depth limit),
    /// checked before descending.
    fn node(
        &mut self,
        id: pk::NodeId,
        sink: &mut dyn BlobSink,
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<Node, ConvertError> {
        if depth > self.max_depth {
            return Err(self.unsupported(
                path,
                format!(
                    "nesting deeper than the format's limit of {} levels",
                    self.max_depth
                ),
            ));
        }
        let g = self.graph;
        Ok(match g.node(id) {
            pk::Node::None => Node::None,
            pk::Node::Bool(b) => Node::Bool(*b),
            pk::Node::Int(i) => Node::Int(Int::from_le_twos_complement(&i.to_le_twos())),
            pk::Node::Float(f) => Node::Float(*f),
            pk::Node::Complex(re, im) => Node::Complex(*re, *im),
            pk::Node::Str(s) => Node::Str(s.to_string()),
            pk::Node::Bytes(b) => Node::Bytes(g.bytes(b).to_vec()),
            pk::Node::ByteArray(b) => Node::ByteArray(g.bytes(b).to_vec()),
            pk::Node::List(items) => Node::List(self.list(items, sink, path, depth)?),
            pk::Node::Tuple(items) => Node::Tuple(self.list(items, sink, path, depth)?),
            pk::Node::Set(items) => Node::Set(self.list(items, sink, path, depth)?),
            pk::Node::FrozenSet(items) => Node::FrozenSet(self.list(items, sink, path, depth)?),
            pk::Node::Dict(pairs) => Node::Dict(self.pairs(pairs, sink, path, depth)?),
            pk::Node::OrderedDict(od) => Node::Typed(Box::new(Typed::OrderedDict {
                items: self.pairs(od.items(), sink, path, depth)?,
                attrs: self.text_pairs(od.attributes(), sink, path, depth)?,
            })),
            pk::Node::Counter(items) => Node::Typed(Box::new(Typed::Counter {
                items: self.pairs(items, sink, path, depth)?,
                attrs: Vec::new(),
            })),
            pk::Node::Namespace(fields) => Node::Typed(Box::new(Typed::Namespace(
                self.text_pairs(fields, sink, path, depth)?,
            ))),
            pk::Node::Slice(parts) => {
                let parts = self.list(&parts[..], sink, path, depth)?;
                let parts: [Node; 3] = parts
                    .try_into()
                    .map_err(|_| self.invalid(path, "a slice has 3 parts"))?;
                Node::Typed(Box::new(Typed::Slice(Box::new(parts))))
            }
            pk::Node::TorchSize(dims) => {
                let dims = dims
                    .iter()
                    .map(|&d| u64::try_from(d))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| self.invalid(path, "torch.Size with a negative dimension"))?;
                Node::Typed(Box::new(Typed::TorchSize(dims)))
            }
            pk::Node::TorchDtype(d) => {
                let name = d.torch_name();
                if !tensorseal::is_torch_dtype_name(name) {
                    return Err(self.unsupported(path, format!("torch.{name} as a value")));
                }
                Node::Typed(Box::new(Typed::TorchDtype(name.to_string())))
            }
            pk::Node::TorchDevice(s) => {
                if !tensorseal::is_device_name(s) {
                    return Err(
                        self.invalid(path, format!("torch.device {s:?} is not a device string"))
                    );
                }
                Node::Typed(Box::new(Typed::TorchDevice(s.to_string())))
            }
            pk::Node::TorchLayout(l) => {
                return Err(self.unsupported(path, format!("a torch layout ({l}) as a value")));
            }
            pk::Node::TorchQScheme(q) => {
                return Err(self.unsupported(
                    path,
                    format!("a torch quantization scheme ({q}) as a value"),
                ));
            }
            pk::Node::Storage(s) => {
                return Err(self.unsupported(
                    path,
                    format!("a bare storage (data/{}) outside a tensor", s.key()),
                ));
            }
            pk::Node::Tensor(t) => Node::Tensor(Box::new(self.tensor(id, t, sink, path, depth)?)),
            pk::Node::Array(a) => Node::Tensor(Box::new(self.array(a, sink, path)?)),
            pk::Node::NumpyScalar(s) => {
                let dtype = numpy_dtype(s.dtype()).ok_or_else(|| {
                    self.unsupported(
                        path,
                        format!("numpy scalar of dtype {}", s.dtype().type_string()),
                    )
                })?;
                let mut bytes = g.bytes(s.data()).to_vec();
                if s.dtype().byte_order() == pk::ByteOrder::Big {
                    for c in bytes.chunks_exact_mut(dtype.swap_width() as usize) {
                        c.reverse();
                    }
                }
                Node::Typed(Box::new(Typed::NumpyScalar { dtype, bytes }))
            }
            pk::Node::NumpyDtype(d) => {
                return Err(self.unsupported(
                    path,
                    format!("a numpy dtype ({}) as a value", d.type_string()),
                ));
            }
            pk::Node::Unsupported(u) => return Err(self.unsupported(path, u.detail().to_string())),
            pk::Node::Global(gid) => {
                let name = g.global(*gid).name();
                Node::Global(Box::new(Global {
                    module: name.module.to_string(),
                    name: name.name.to_string(),
                }))
            }
            pk::Node::Object(o) => Node::Object(Box::new(self.object(o, sink, path, depth)?)),
            other => {
                return Err(self.invalid(
                    path,
                    format!("internal: unexpected {other:?} in a loaded graph"),
                ));
            }
        })
    }

    fn object(
        &mut self,
        o: &pk::ObjectRecord,
        sink: &mut dyn BlobSink,
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<Object, ConvertError> {
        let g = self.graph;
        let (module, name) = match g.node(o.callee()) {
            pk::Node::Global(gid) => {
                let n = g.global(*gid).name();
                (n.module.to_string(), n.name.to_string())
            }
            _ => return Err(self.unsupported(path, "an object whose class is not a named global")),
        };
        let args = match g.node(o.args()) {
            pk::Node::Tuple(items) => {
                path.push(".args".into());
                let a = self.list(items, sink, path, depth)?;
                path.pop();
                a
            }
            _ => return Err(self.invalid(path, "object arguments are not a tuple")),
        };
        let kwargs = match o.kwargs() {
            None => Vec::new(),
            Some(k) => match g.node(k) {
                pk::Node::Dict(pairs) => self.text_pairs(pairs, sink, path, depth)?,
                _ => return Err(self.invalid(path, "keyword arguments are not a dict")),
            },
        };
        let state = match o.state() {
            None => None,
            Some(s) => {
                path.push(".__state__".into());
                let n = self.node(s, sink, path, depth + 1)?;
                path.pop();
                Some(n)
            }
        };
        let list_items = self.list(o.list_items(), sink, path, depth)?;
        let dict_items = self.pairs(o.dict_items(), sink, path, depth)?;
        Ok(Object {
            module,
            name,
            args,
            kwargs,
            state,
            list_items,
            dict_items,
        })
    }

    fn tensor(
        &mut self,
        id: pk::NodeId,
        t: &'g pk::Tensor,
        sink: &mut dyn BlobSink,
        path: &mut Vec<String>,
        depth: usize,
    ) -> Result<Tensor, ConvertError> {
        // The same tensor object under two names (tied weights, memo): one identity, one blob.
        if let Some(done) = self.tensors.get(&id) {
            self.stats.tensors += 1;
            self.stats.shared += 1;
            return Ok(done.clone());
        }
        let dtype = DType::from_name(t.dtype().torch_name()).ok_or_else(|| {
            self.unsupported(
                path,
                format!("tensor dtype torch.{}", t.dtype().torch_name()),
            )
        })?;
        let graph: &'g pk::Graph<'a> = self.graph;
        let pk::Node::Storage(storage) = graph.node(t.storage()) else {
            return Err(self.invalid(path, "tensor without a storage"));
        };
        let shape = t.size().to_vec();
        let blob = if dtype.byte_size(&shape) == Some(0) {
            None
        } else {
            let key = ViewKey {
                storage: storage.key(),
                dtype,
                offset: t.storage_offset(),
                shape: t.size(),
                strides: t.stride(),
                conj: t.conj(),
                neg: t.neg(),
            };
            match self.views.get(&key) {
                Some(&b) => {
                    self.stats.shared += 1;
                    Some(b)
                }
                None => {
                    let record = self.storages.storage(storage)?;
                    let view = View::new(
                        record,
                        dtype,
                        t.storage_offset(),
                        shape.clone(),
                        t.stride().to_vec(),
                    )
                    .and_then(|v| v.big_endian(self.storages.big_endian()).conj(t.conj()))
                    .and_then(|v| v.neg(t.neg()))
                    .map_err(|e| {
                        self.invalid(path, format!("tensor view of data/{}: {e}", storage.key()))
                    })?;
                    let b = self.write(sink, view, dtype, path)?;
                    self.views.insert(key, b);
                    Some(b)
                }
            }
        };
        let attrs = match t.attributes() {
            None => Vec::new(),
            Some(a) => match self.graph.node(a) {
                pk::Node::Dict(pairs) => self.text_pairs(pairs, sink, path, depth)?,
                _ => return Err(self.invalid(path, "tensor attributes are not a dict")),
            },
        };
        let tensor = Tensor {
            dtype,
            shape,
            blob,
            kind: match t.flavour() {
                pk::TensorFlavour::Parameter => TensorKind::Parameter,
                _ => TensorKind::Tensor,
            },
            requires_grad: t.requires_grad(),
            attrs,
        };
        self.stats.tensors += 1;
        self.tensors.insert(id, tensor.clone());
        Ok(tensor)
    }

    fn array(
        &mut self,
        a: &pk::NdArray,
        sink: &mut dyn BlobSink,
        path: &[String],
    ) -> Result<Tensor, ConvertError> {
        let dtype = numpy_dtype(a.dtype()).ok_or_else(|| {
            self.unsupported(
                path,
                format!("numpy array of dtype {}", a.dtype().type_string()),
            )
        })?;
        let data: &[u8] = self.graph.bytes(a.data());
        let shape = a.shape().to_vec();
        let blob = if dtype.byte_size(&shape) == Some(0) {
            None
        } else {
            let view = View::new(data, dtype, 0, shape.clone(), a.strides().to_vec())
                .map(|v| v.big_endian(a.dtype().byte_order() == pk::ByteOrder::Big))
                .map_err(|e| self.invalid(path, format!("numpy array: {e}")))?;
            Some(self.write(sink, view, dtype, path)?)
        };
        self.stats.tensors += 1;
        Ok(Tensor {
            dtype,
            shape,
            blob,
            kind: TensorKind::NdArray,
            requires_grad: false,
            attrs: Vec::new(),
        })
    }

    /// Writes a view: straight from the storage when it is already contiguous little-endian,
    /// piece by piece otherwise.
    fn write(
        &mut self,
        sink: &mut dyn BlobSink,
        mut view: View<'_>,
        dtype: DType,
        path: &[String],
    ) -> Result<BlobId, ConvertError> {
        let what = path_text(path);
        let blob = match view.contiguous_slice() {
            Some(slice) => sink.slice(slice, dtype, &what)?,
            None => sink.view(&mut view, dtype, &what)?,
        };
        self.stats.blobs += 1;
        self.stats.bytes += view.byte_len();
        Ok(blob)
    }
}

/// The tensorseal dtype of a numeric numpy dtype.
pub(crate) fn numpy_dtype(d: &pk::NumpyDtype) -> Option<DType> {
    d.dtype().and_then(|t| DType::from_name(t.torch_name()))
}
