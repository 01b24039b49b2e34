//! The JSON rendering of a tree (spec §10), used by `tensorseal inspect --json` and by tests that
//! compare converted files with what torch and numpy loaded.

use crate::manifest::Manifest;
use crate::tree::{Int, Node, PathSegment, Tensor, Typed};
use serde_json::{Map, Value, json};

/// Renders a tree as JSON. `tensor_extra` adds members to each tensor's object (e.g. `blob`,
/// `bytes`, `encoding`, or a `sha256` of its data); it sees the tensor and may return nothing.
/// Tensors are seen in document order, a tensor's attributes before the tensor.
///
/// The tree is walked with an explicit stack, so rendering needs no more native stack for a deep
/// tree than for a flat one.
pub fn tree_to_json(
    node: &Node,
    tensor_extra: &mut dyn FnMut(&Tensor) -> Map<String, Value>,
) -> Value {
    enum Step<'n> {
        /// Render this node: at once if it holds no nodes, else after its children.
        Visit(&'n Node),
        /// The children's values are on top of the value stack: build the node's value.
        Build(&'n Node, usize),
    }
    let mut steps = vec![Step::Visit(node)];
    let mut values: Vec<Value> = Vec::new();
    while let Some(step) = steps.pop() {
        match step {
            Step::Visit(n) => {
                let children = child_nodes(n);
                if children.is_empty() {
                    values.push(build(n, &mut std::iter::empty(), tensor_extra));
                } else {
                    steps.push(Step::Build(n, children.len()));
                    steps.extend(children.into_iter().rev().map(Step::Visit));
                }
            }
            Step::Build(n, count) => {
                let children = values.split_off(values.len() - count);
                let value = build(n, &mut children.into_iter(), tensor_extra);
                values.push(value);
            }
        }
    }
    values.pop().expect("the root's value")
}

/// The nodes inside `n`, in the order [`build`] takes their values.
fn child_nodes(n: &Node) -> Vec<&Node> {
    fn pairs(p: &[(Node, Node)]) -> impl Iterator<Item = &Node> {
        p.iter().flat_map(|(k, v)| [k, v])
    }
    fn values<K>(p: &[(K, Node)]) -> impl Iterator<Item = &Node> {
        p.iter().map(|(_, v)| v)
    }
    match n {
        Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
            items.iter().collect()
        }
        Node::Dict(p) => pairs(p).collect(),
        Node::Tensor(t) => values(&t.attrs).collect(),
        Node::Typed(t) => match &**t {
            Typed::OrderedDict { items, attrs } | Typed::Counter { items, attrs } => {
                pairs(items).chain(values(attrs)).collect()
            }
            Typed::Namespace(fields) => values(fields).collect(),
            Typed::Slice(parts) => parts.iter().collect(),
            _ => Vec::new(),
        },
        Node::Object(o) => o
            .args
            .iter()
            .chain(values(&o.kwargs))
            .chain(&o.state)
            .chain(&o.list_items)
            .chain(pairs(&o.dict_items))
            .collect(),
        _ => Vec::new(),
    }
}

/// The value of `n`, given the values of its [`child_nodes`] in order.
fn build(
    n: &Node,
    children: &mut dyn Iterator<Item = Value>,
    tensor_extra: &mut dyn FnMut(&Tensor) -> Map<String, Value>,
) -> Value {
    let mut take =
        |count: usize| -> Vec<Value> { (0..count).map_while(|_| children.next()).collect() };
    match n {
        Node::None => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => int_to_json(i),
        Node::Float(f) => json!({ "float": float_to_json(*f) }),
        Node::Str(s) => Value::String(s.clone()),
        Node::Bytes(b) => json!({ "bytes": hex::encode(b) }),
        Node::ByteArray(b) => json!({ "bytearray": hex::encode(b) }),
        Node::Complex(re, im) => {
            json!({ "complex": [{ "float": float_to_json(*re) }, { "float": float_to_json(*im) }] })
        }
        Node::List(items) => Value::Array(take(items.len())),
        Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
            wrap(n.kind_name(), Value::Array(take(items.len())))
        }
        Node::Dict(p) => wrap("dict", pairs(take(2 * p.len()))),
        Node::Tensor(t) => {
            let mut m = Map::new();
            m.insert("dtype".into(), Value::String(t.dtype.name().into()));
            m.insert("shape".into(), json!(t.shape));
            if let Some(kind) = t.kind.name() {
                m.insert("kind".into(), Value::String(kind.into()));
            }
            if t.requires_grad {
                m.insert("requires_grad".into(), Value::Bool(true));
            }
            if !t.attrs.is_empty() {
                let values = take(t.attrs.len());
                m.insert("attrs".into(), wrap("dict", named(&t.attrs, values)));
            }
            m.extend(tensor_extra(t));
            wrap("tensor", Value::Object(m))
        }
        Node::Typed(t) => {
            let mut m = Map::new();
            m.insert("typed".into(), Value::String(t.type_name().into()));
            let value = match &**t {
                Typed::OrderedDict { items, attrs } | Typed::Counter { items, attrs } => {
                    let items = pairs(take(2 * items.len()));
                    if !attrs.is_empty() {
                        let values = take(attrs.len());
                        m.insert("attrs".into(), wrap("dict", named(attrs, values)));
                    }
                    wrap("dict", items)
                }
                Typed::Namespace(fields) => wrap("dict", named(fields, take(fields.len()))),
                Typed::TorchSize(dims) => json!({ "tuple": dims }),
                Typed::TorchDtype(s) | Typed::TorchDevice(s) => Value::String(s.clone()),
                Typed::NumpyScalar { dtype, bytes } => {
                    json!([dtype.name(), { "bytes": hex::encode(bytes) }])
                }
                Typed::Slice(_) => wrap("tuple", Value::Array(take(3))),
            };
            m.insert("value".into(), value);
            Value::Object(m)
        }
        Node::Object(o) => {
            let mut m = Map::new();
            m.insert("module".into(), Value::String(o.module.clone()));
            m.insert("name".into(), Value::String(o.name.clone()));
            m.insert("args".into(), Value::Array(take(o.args.len())));
            if !o.kwargs.is_empty() {
                let values = take(o.kwargs.len());
                m.insert("kwargs".into(), wrap("dict", named(&o.kwargs, values)));
            }
            if o.state.is_some() {
                m.insert("state".into(), take(1).pop().unwrap_or(Value::Null));
            }
            if !o.list_items.is_empty() {
                m.insert("listitems".into(), Value::Array(take(o.list_items.len())));
            }
            if !o.dict_items.is_empty() {
                m.insert(
                    "dictitems".into(),
                    wrap("dict", pairs(take(2 * o.dict_items.len()))),
                );
            }
            wrap("object", Value::Object(m))
        }
        Node::Global(g) => json!({ "global": { "module": g.module, "name": g.name } }),
    }
}

/// `{key: value}`. (`json!` would serialize `value` again, a deep copy.)
fn wrap(key: &str, value: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), value);
    Value::Object(m)
}

/// `[[key, value], ...]` from keys and values, alternating.
fn pairs(flat: Vec<Value>) -> Value {
    let mut flat = flat.into_iter();
    let mut out = Vec::with_capacity(flat.len() / 2);
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        out.push(Value::Array(vec![k, v]));
    }
    Value::Array(out)
}

/// `[[name, value], ...]` from attribute names and their values.
fn named(pairs: &[(String, Node)], values: Vec<Value>) -> Value {
    Value::Array(
        pairs
            .iter()
            .zip(values)
            .map(|((k, _), v)| Value::Array(vec![Value::String(k.clone()), v]))
            .collect(),
    )
}

/// An int as a JSON integer when -2^63 ≤ v < 2^64, else `{"int": "<decimal>"}`.
pub fn int_to_json(i: &Int) -> Value {
    if let Some(v) = i.to_i64() {
        return json!(v);
    }
    if let Some(v) = i.to_u64() {
        return json!(v);
    }
    json!({ "int": i.to_string() })
}

/// A float as a JSON number, or `"nan"`, `"inf"`, `"-inf"`.
pub fn float_to_json(f: f64) -> Value {
    if f.is_nan() {
        Value::String("nan".into())
    } else if f.is_infinite() {
        Value::String(if f > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// A path as JSON: text keys as strings, ints and indices as integers, other keys rendered,
/// attribute names as strings, an object's state as `"__state__"`.
pub fn path_to_json(path: &[PathSegment<'_>]) -> Value {
    Value::Array(
        path.iter()
            .map(|seg| match seg {
                PathSegment::Key(Node::Tuple(items)) => Value::Array(
                    items
                        .iter()
                        .map(|n| tree_to_json(n, &mut |_| Map::new()))
                        .collect(),
                ),
                PathSegment::Key(k) => tree_to_json(k, &mut |_| Map::new()),
                PathSegment::Index(i) => json!(i),
                PathSegment::Attr(a) => Value::String((*a).to_string()),
                PathSegment::State => Value::String("__state__".into()),
            })
            .collect(),
    )
}

/// Blob details for a tensor, as `inspect` shows them: `blob`, `bytes`, `encoding`.
pub fn tensor_storage_json(manifest: &Manifest, t: &Tensor) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("bytes".into(), json!(t.byte_size().unwrap_or(0)));
    match t.blob {
        Some(b) => {
            m.insert("blob".into(), json!(b));
            m.insert(
                "encoding".into(),
                Value::String(manifest.blobs[b].encoding_name()),
            );
        }
        None => {
            m.insert("blob".into(), Value::Null);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn renders_spec_forms() {
        let big = Int::from_sign_magnitude(false, &[1, 0, 0, 0, 0, 0, 0, 0, 0]);
        let tree = Node::Dict(vec![
            (Node::Int(0i64.into()), Node::Float(f64::NAN)),
            (Node::Str("b".into()), Node::Int(big)),
            (
                Node::Str("t".into()),
                Node::Tensor(Box::new(Tensor::new(DType::F32, vec![2], Some(0)))),
            ),
        ]);
        let v = tree_to_json(&tree, &mut |_| Map::new());
        assert_eq!(
            v,
            json!({"dict": [[0, {"float": "nan"}], ["b", {"int": "18446744073709551616"}],
                   ["t", {"tensor": {"dtype": "float32", "shape": [2]}}]]})
        );
        assert_eq!(float_to_json(-0.0), json!(-0.0));
    }
}
