//! The JSON rendering of a tree (spec §10), used by `tensorseal inspect --json` and by tests that
//! compare converted files with what torch and numpy loaded.

use crate::manifest::Manifest;
use crate::tree::{Int, Node, PathSegment, Tensor, Typed};
use serde_json::{Map, Value, json};

/// Renders a tree as JSON. `tensor_extra` adds members to each tensor's object (e.g. `blob`,
/// `bytes`, `encoding`, or a `sha256` of its data); it sees the tensor and may return nothing.
pub fn tree_to_json(
    node: &Node,
    tensor_extra: &mut dyn FnMut(&Tensor) -> Map<String, Value>,
) -> Value {
    match node {
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
        Node::List(items) => Value::Array(
            items
                .iter()
                .map(|n| tree_to_json(n, tensor_extra))
                .collect(),
        ),
        Node::Tuple(items) => json!({ "tuple": nodes(items, tensor_extra) }),
        Node::Set(items) => json!({ "set": nodes(items, tensor_extra) }),
        Node::FrozenSet(items) => json!({ "frozenset": nodes(items, tensor_extra) }),
        Node::Dict(pairs) => json!({ "dict": pairs_to_json(pairs, tensor_extra) }),
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
                m.insert(
                    "attrs".into(),
                    json!({ "dict": text_pairs(&t.attrs, tensor_extra) }),
                );
            }
            m.extend(tensor_extra(t));
            json!({ "tensor": m })
        }
        Node::Typed(t) => {
            let mut m = Map::new();
            m.insert("typed".into(), Value::String(t.type_name().into()));
            let value = match &**t {
                Typed::OrderedDict { items, attrs } | Typed::Counter { items, attrs } => {
                    if !attrs.is_empty() {
                        m.insert(
                            "attrs".into(),
                            json!({ "dict": text_pairs(attrs, tensor_extra) }),
                        );
                    }
                    json!({ "dict": pairs_to_json(items, tensor_extra) })
                }
                Typed::Namespace(fields) => json!({ "dict": text_pairs(fields, tensor_extra) }),
                Typed::TorchSize(dims) => json!({ "tuple": dims }),
                Typed::TorchDtype(s) | Typed::TorchDevice(s) => Value::String(s.clone()),
                Typed::NumpyScalar { dtype, bytes } => {
                    json!([dtype.name(), { "bytes": hex::encode(bytes) }])
                }
                Typed::Slice(parts) => json!({ "tuple": nodes(&parts[..], tensor_extra) }),
            };
            m.insert("value".into(), value);
            Value::Object(m)
        }
        Node::Object(o) => {
            let mut m = Map::new();
            m.insert("module".into(), Value::String(o.module.clone()));
            m.insert("name".into(), Value::String(o.name.clone()));
            m.insert("args".into(), nodes(&o.args, tensor_extra));
            if !o.kwargs.is_empty() {
                m.insert(
                    "kwargs".into(),
                    json!({ "dict": text_pairs(&o.kwargs, tensor_extra) }),
                );
            }
            if let Some(state) = &o.state {
                m.insert("state".into(), tree_to_json(state, tensor_extra));
            }
            if !o.list_items.is_empty() {
                m.insert("listitems".into(), nodes(&o.list_items, tensor_extra));
            }
            if !o.dict_items.is_empty() {
                m.insert(
                    "dictitems".into(),
                    json!({ "dict": pairs_to_json(&o.dict_items, tensor_extra) }),
                );
            }
            json!({ "object": m })
        }
        Node::Global(g) => json!({ "global": { "module": g.module, "name": g.name } }),
    }
}

fn nodes(items: &[Node], extra: &mut dyn FnMut(&Tensor) -> Map<String, Value>) -> Value {
    Value::Array(items.iter().map(|n| tree_to_json(n, extra)).collect())
}

fn pairs_to_json(
    pairs: &[(Node, Node)],
    extra: &mut dyn FnMut(&Tensor) -> Map<String, Value>,
) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(k, v)| json!([tree_to_json(k, extra), tree_to_json(v, extra)]))
            .collect(),
    )
}

fn text_pairs(
    pairs: &[(String, Node)],
    extra: &mut dyn FnMut(&Tensor) -> Map<String, Value>,
) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(k, v)| json!([k, tree_to_json(v, extra)]))
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
