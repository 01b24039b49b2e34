//! The converter's tree rendering (tests/fixtures/render.py at the repository root), computed from a value graph, so
//! fixtures written by CPython and torch can be compared with what the interpreter read.

use std::collections::HashMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tensorseal_pickle::{ByteOrder, Dtype, Graph, Node, NodeId, PyInt, TensorFlavour};

/// Storage records by key, and whether their bytes are big-endian.
#[derive(Default)]
pub(crate) struct Records<'r> {
    pub(crate) by_key: HashMap<String, &'r [u8]>,
    pub(crate) big_endian: bool,
}

/// One tensor as the walk meets it (compared with the fixtures' `tensors` lists).
#[derive(Debug)]
pub(crate) struct TensorInfo {
    pub(crate) value: Value,
}

pub(crate) struct Renderer<'g, 'r> {
    graph: &'g Graph<'g>,
    records: &'r Records<'r>,
    pub(crate) tensors: Vec<TensorInfo>,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn render_float(f: f64) -> Value {
    if f.is_nan() {
        json!({"float": "nan"})
    } else if f.is_infinite() {
        json!({"float": if f > 0.0 { "inf" } else { "-inf" }})
    } else {
        json!({ "float": f })
    }
}

fn render_int(i: &PyInt) -> Value {
    match i {
        PyInt::Small(v) => json!(v),
        PyInt::Big(_) => {
            let s = i.to_string();
            match s.parse::<u64>() {
                Ok(v) => json!(v),
                Err(_) => json!({ "int": s }),
            }
        }
    }
}

/// Byte-swaps every `unit`-byte group.
fn swap(data: &mut [u8], unit: usize) {
    if unit > 1 {
        for chunk in data.chunks_exact_mut(unit) {
            chunk.reverse();
        }
    }
}

fn component_size(d: Dtype) -> usize {
    match d {
        Dtype::C64 => 4,
        Dtype::C128 => 8,
        other => other.itemsize().unwrap() as usize,
    }
}

fn is_float(d: Dtype) -> bool {
    matches!(
        d,
        Dtype::F16
            | Dtype::BF16
            | Dtype::F32
            | Dtype::F64
            | Dtype::C64
            | Dtype::C128
            | Dtype::F8E4M3FN
            | Dtype::F8E5M2
            | Dtype::F8E4M3FNUZ
            | Dtype::F8E5M2FNUZ
    )
}

/// Gathers a strided view into C order.
fn gather(data: &[u8], start: u64, shape: &[u64], strides: &[u64], itemsize: u64) -> Vec<u8> {
    let numel: u64 = shape.iter().product();
    let mut out = Vec::with_capacity((numel * itemsize) as usize);
    if numel == 0 {
        return out;
    }
    let mut index = vec![0u64; shape.len()];
    loop {
        let elem: u64 = index.iter().zip(strides).map(|(i, s)| i * s).sum();
        let at = (start + elem * itemsize) as usize;
        out.extend_from_slice(&data[at..at + itemsize as usize]);
        let mut dim = shape.len();
        loop {
            if dim == 0 {
                return out;
            }
            dim -= 1;
            index[dim] += 1;
            if index[dim] < shape[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
}

impl<'g, 'r> Renderer<'g, 'r> {
    pub(crate) fn new(graph: &'g Graph<'g>, records: &'r Records<'r>) -> Self {
        Renderer {
            graph,
            records,
            tensors: Vec::new(),
        }
    }

    fn pairs(&mut self, pairs: &[(NodeId, NodeId)]) -> Value {
        Value::Array(
            pairs
                .iter()
                .map(|&(k, v)| json!([self.render(k), self.render(v)]))
                .collect(),
        )
    }

    fn list(&mut self, items: &[NodeId]) -> Vec<Value> {
        items.iter().map(|&i| self.render(i)).collect()
    }

    pub(crate) fn render(&mut self, id: NodeId) -> Value {
        let g = self.graph;
        match g.node(id) {
            Node::None => Value::Null,
            Node::Bool(b) => json!(b),
            Node::Int(i) => render_int(i),
            Node::Float(f) => render_float(*f),
            Node::Complex(re, im) => json!({"complex": [render_float(*re), render_float(*im)]}),
            Node::Str(s) => json!(s.as_ref()),
            Node::Bytes(d) => json!({"bytes": hex(g.bytes(d))}),
            Node::ByteArray(d) => json!({"bytearray": hex(g.bytes(d))}),
            Node::List(v) => Value::Array(self.list(v)),
            Node::Tuple(v) => json!({"tuple": self.list(v)}),
            Node::Set(v) => json!({"set": self.list(v)}),
            Node::FrozenSet(v) => json!({"frozenset": self.list(v)}),
            Node::Dict(p) => json!({"dict": self.pairs(p)}),
            Node::OrderedDict(o) => {
                let mut node = json!({"typed": "collections.OrderedDict",
                                      "value": {"dict": self.pairs(o.items())}});
                if !o.attributes().is_empty() {
                    node["attrs"] = json!({"dict": self.pairs(o.attributes())});
                }
                node
            }
            Node::Counter(p) => {
                json!({"typed": "collections.Counter", "value": {"dict": self.pairs(p)}})
            }
            Node::Namespace(p) => {
                json!({"typed": "argparse.Namespace", "value": {"dict": self.pairs(p)}})
            }
            Node::Slice(s) => {
                json!({"typed": "builtins.slice", "value": {"tuple": self.list(&s[..])}})
            }
            Node::TorchSize(d) => json!({"typed": "torch.Size", "value": {"tuple": d.to_vec()}}),
            Node::TorchDtype(d) => json!({"typed": "torch.dtype", "value": d.torch_name()}),
            Node::TorchDevice(d) => json!({"typed": "torch.device", "value": d.as_ref()}),
            Node::TorchLayout(l) => json!({"typed": "torch.layout", "value": l.as_ref()}),
            Node::TorchQScheme(q) => json!({"typed": "torch.qscheme", "value": q}),
            Node::Tensor(t) => {
                let storage = match g.node(t.storage()) {
                    Node::Storage(s) => s,
                    other => panic!("tensor storage is a {}", other.type_name()),
                };
                let isz = t.dtype().itemsize().unwrap();
                let record = self.records.by_key.get(storage.key()).copied();
                let mut node = json!({"dtype": t.dtype().torch_name(), "shape": t.size()});
                if let Some(record) = record {
                    let mut data = gather(record, t.byte_range().start, t.size(), t.stride(), isz);
                    if self.records.big_endian {
                        swap(&mut data, component_size(t.dtype()));
                    }
                    let comp = component_size(t.dtype());
                    if t.conj() {
                        for elem in data.chunks_exact_mut(isz as usize) {
                            elem[2 * comp - 1] ^= 0x80;
                        }
                    }
                    if t.neg() {
                        if is_float(t.dtype()) {
                            for c in data.chunks_exact_mut(comp) {
                                c[comp - 1] ^= 0x80;
                            }
                        } else {
                            for c in data.chunks_exact_mut(comp) {
                                let mut carry = true;
                                for b in c.iter_mut() {
                                    let (v, o) = (!*b).overflowing_add(u8::from(carry));
                                    *b = v;
                                    carry = o;
                                }
                            }
                        }
                    }
                    node["sha256"] = json!(hex(&Sha256::digest(&data)));
                }
                if t.flavour() == TensorFlavour::Parameter {
                    node["kind"] = json!("parameter");
                }
                if t.requires_grad() {
                    node["requires_grad"] = json!(true);
                }
                if let Some(a) = t.attributes() {
                    let Node::Dict(p) = g.node(a) else {
                        panic!("attrs not a dict")
                    };
                    node["attrs"] = json!({"dict": self.pairs(p)});
                }
                let mut info = json!({
                    "dtype": node["dtype"], "shape": node["shape"],
                    "storage_offset": t.storage_offset(), "stride": t.stride(),
                    "storage_nbytes": storage.nbytes(),
                });
                if let Some(s) = node.get("sha256") {
                    info["sha256"] = s.clone();
                }
                if t.flavour() == TensorFlavour::Parameter {
                    info["kind"] = json!("parameter");
                }
                self.tensors.push(TensorInfo { value: info });
                json!({ "tensor": node })
            }
            Node::Array(a) => {
                let isz = a.dtype().itemsize();
                let dtype = a.dtype().dtype().unwrap();
                let mut data = gather(g.bytes(a.data()), 0, a.shape(), a.strides(), isz);
                if a.dtype().byte_order() == ByteOrder::Big {
                    swap(&mut data, component_size(dtype));
                }
                let sha = hex(&Sha256::digest(&data));
                self.tensors.push(TensorInfo {
                    value: json!({"dtype": dtype.torch_name(), "shape": a.shape(),
                                  "sha256": sha, "kind": "ndarray"}),
                });
                json!({"tensor": {"dtype": dtype.torch_name(), "shape": a.shape(),
                                  "sha256": sha, "kind": "ndarray"}})
            }
            Node::NumpyScalar(s) => {
                let dtype = s.dtype().dtype().unwrap();
                let mut data = g.bytes(s.data()).to_vec();
                if s.dtype().byte_order() == ByteOrder::Big {
                    swap(&mut data, component_size(dtype));
                }
                json!({"typed": "numpy.scalar", "value": [dtype.torch_name(), {"bytes": hex(&data)}]})
            }
            Node::NumpyDtype(d) => json!({"typed": "numpy.dtype", "value": d.to_string()}),
            Node::Global(gid) => {
                let n = g.global(*gid).name();
                json!({"global": {"module": n.module.as_ref(), "name": n.name.as_ref()}})
            }
            Node::Object(o) => {
                let callee = match g.node(o.callee()) {
                    Node::Global(gid) => g.global(*gid).name().clone(),
                    other => panic!("object callee is a {}", other.type_name()),
                };
                let args = match g.node(o.args()) {
                    Node::Tuple(v) => self.list(v),
                    _ => panic!("object args not a tuple"),
                };
                let mut node = json!({"module": callee.module.as_ref(), "name": callee.name.as_ref(),
                                      "args": args});
                if let Some(s) = o.state()
                    && !matches!(g.node(s), Node::None)
                {
                    node["state"] = self.render(s);
                }
                if !o.list_items().is_empty() {
                    node["listitems"] = Value::Array(self.list(o.list_items()));
                }
                if !o.dict_items().is_empty() {
                    node["dictitems"] = self.pairs(o.dict_items());
                }
                json!({ "object": node })
            }
            Node::Storage(s) => json!({"storage": s.key()}),
            Node::Unsupported(u) => json!({"unsupported": u.detail()}),
            other => json!({"other": other.type_name()}),
        }
    }
}

/// Sorts set members so set comparisons ignore order (CPython iterates sets by hash).
pub(crate) fn normalize(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                normalize(x);
                if (k == "set" || k == "frozenset")
                    && let Value::Array(items) = x
                {
                    items.sort_by_key(|i| i.to_string());
                }
            }
        }
        _ => {}
    }
}

/// True when any node reachable from the root is `Unsupported`.
pub(crate) fn has_unsupported(g: &Graph<'_>) -> bool {
    g.iter().any(|(_, n)| matches!(n, Node::Unsupported(_)))
}
