//! Human-readable rendering: a Python-like view of the tree and byte sizes.

use std::fmt::Write as _;
use tensorseal::{Node, Typed};

/// A byte count with a binary unit.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{f:?}")
    }
}

/// Writes one node as an indented, Python-like block. Depth is bounded by the reader's
/// `max_tree_depth`, so recursion is bounded too.
pub(crate) fn tree(out: &mut String, node: &Node, level: usize) {
    indent(out, level);
    inline_or_open(out, node, level);
}

fn seq(out: &mut String, open: &str, close: &str, items: &[Node], level: usize) {
    if items.is_empty() {
        let _ = writeln!(out, "{open}{close}");
        return;
    }
    let _ = writeln!(out, "{open}");
    for item in items {
        tree(out, item, level + 1);
    }
    indent(out, level);
    let _ = writeln!(out, "{close}");
}

fn pairs<'a>(
    out: &mut String,
    open: &str,
    close: &str,
    items: impl ExactSizeIterator<Item = (String, &'a Node)>,
    level: usize,
) {
    if items.len() == 0 {
        let _ = writeln!(out, "{open}{close}");
        return;
    }
    let _ = writeln!(out, "{open}");
    for (k, v) in items {
        indent(out, level + 1);
        let _ = write!(out, "{k}: ");
        inline_or_open(out, v, level + 1);
    }
    indent(out, level);
    let _ = writeln!(out, "{close}");
}

fn key(k: &Node) -> String {
    let mut s = String::new();
    scalar(&mut s, k);
    s
}

/// Writes a scalar inline; returns false for containers.
fn scalar(out: &mut String, node: &Node) -> bool {
    match node {
        Node::None => out.push_str("None"),
        Node::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Node::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Node::Float(f) => out.push_str(&float(*f)),
        Node::Str(s) => {
            let _ = write!(out, "{s:?}");
        }
        Node::Bytes(b) => {
            let _ = write!(out, "bytes({} B)", b.len());
        }
        Node::ByteArray(b) => {
            let _ = write!(out, "bytearray({} B)", b.len());
        }
        Node::Complex(re, im) => {
            let _ = write!(out, "complex({}, {})", float(*re), float(*im));
        }
        Node::Tensor(t) => {
            let kind = match t.kind {
                tensorseal::TensorKind::Tensor => "tensor",
                tensorseal::TensorKind::Parameter => "parameter",
                tensorseal::TensorKind::NdArray => "ndarray",
            };
            let _ = write!(out, "{kind}({}, {:?}", t.dtype, t.shape);
            if t.requires_grad {
                out.push_str(", requires_grad");
            }
            if !t.attrs.is_empty() {
                let _ = write!(out, ", {} attr(s)", t.attrs.len());
            }
            out.push(')');
        }
        Node::Global(g) => {
            let _ = write!(out, "<global {}.{}>", g.module, g.name);
        }
        Node::Tuple(items) | Node::FrozenSet(items)
            if items.iter().all(|n| !is_container(n)) && items.len() <= 8 =>
        {
            let (open, close) = if matches!(node, Node::Tuple(_)) {
                ("(", ")")
            } else {
                ("frozenset({", "})")
            };
            out.push_str(open);
            for (i, n) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                scalar(out, n);
            }
            if items.len() == 1 && open == "(" {
                out.push(',');
            }
            out.push_str(close);
        }
        Node::Typed(t) => match &**t {
            Typed::TorchSize(d) => {
                let _ = write!(out, "torch.Size({d:?})");
            }
            Typed::TorchDtype(d) => {
                let _ = write!(out, "torch.{d}");
            }
            Typed::TorchDevice(d) => {
                let _ = write!(out, "device({d:?})");
            }
            Typed::NumpyScalar { dtype, bytes } => {
                let _ = write!(out, "numpy.{dtype}(0x{})", hex::encode(bytes));
            }
            _ => return false,
        },
        _ => return false,
    }
    true
}

fn is_container(n: &Node) -> bool {
    let mut s = String::new();
    !scalar(&mut s, n)
}

fn inline_or_open(out: &mut String, node: &Node, level: usize) {
    if scalar(out, node) {
        out.push('\n');
        return;
    }
    match node {
        Node::List(items) => seq(out, "[", "]", items, level),
        Node::Tuple(items) => seq(out, "(", ")", items, level),
        Node::Set(items) => seq(out, "{", "}", items, level),
        Node::FrozenSet(items) => seq(out, "frozenset({", "})", items, level),
        Node::Dict(p) => pairs(out, "{", "}", p.iter().map(|(k, v)| (key(k), v)), level),
        Node::Typed(t) => match &**t {
            Typed::OrderedDict { items, attrs } | Typed::Counter { items, attrs } => {
                let name = t.type_name();
                pairs(
                    out,
                    &format!("{name}({{"),
                    "})",
                    items.iter().map(|(k, v)| (key(k), v)),
                    level,
                );
                for (k, v) in attrs {
                    indent(out, level);
                    let _ = write!(out, ".{k} = ");
                    inline_or_open(out, v, level);
                }
            }
            Typed::Namespace(fields) => {
                pairs(
                    out,
                    "Namespace(",
                    ")",
                    fields.iter().map(|(k, v)| (k.clone(), v)),
                    level,
                );
            }
            Typed::Slice(parts) => seq(out, "slice(", ")", &parts[..], level),
            _ => unreachable!("scalar typed values render inline"),
        },
        Node::Object(o) => {
            let _ = writeln!(out, "<object {}.{}>(", o.module, o.name);
            for a in &o.args {
                tree(out, a, level + 1);
            }
            for (k, v) in &o.kwargs {
                indent(out, level + 1);
                let _ = write!(out, "{k}=");
                inline_or_open(out, v, level + 1);
            }
            if let Some(state) = &o.state {
                indent(out, level + 1);
                out.push_str("state=");
                inline_or_open(out, state, level + 1);
            }
            indent(out, level);
            out.push_str(")\n");
        }
        _ => unreachable!("every other kind renders inline"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensorseal::{DType, Tensor};

    #[test]
    fn renders_nested_trees() {
        let t = Node::Tensor(Box::new(Tensor::new(DType::F32, vec![2, 3], Some(0))));
        let root = Node::Dict(vec![
            (Node::Str("w".into()), t),
            (
                Node::Int(0i64.into()),
                Node::List(vec![Node::Float(0.5), Node::None]),
            ),
            (
                Node::Str("pair".into()),
                Node::Tuple(vec![Node::Int(1i64.into())]),
            ),
        ]);
        let mut s = String::new();
        tree(&mut s, &root, 0);
        assert_eq!(
            s,
            "{\n  \"w\": tensor(float32, [2, 3])\n  0: [\n    0.5\n    None\n  ]\n  \"pair\": (1,)\n}\n"
        );
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
