//! The plain-Python form of a checkpoint tree that crosses the boundary between Rust and the
//! Python package (which builds torch and numpy objects from it, and back).
//!
//! `None`, `bool`, `int`, `float`, `str` and `bytes` are themselves and a `list` is a list of
//! nodes. Every other node is a tuple whose first item names its kind:
//!
//! | node | form |
//! |---|---|
//! | tuple, set, frozenset | `("tuple" / "set" / "frozenset", [node, ...])` |
//! | dict | `("dict", [(key, value), ...])` |
//! | bytearray | `("bytearray", bytes)` |
//! | complex | `("complex", real, imag)` |
//! | tensor | `("tensor", blob, dtype, shape, kind, requires_grad, [(name, node), ...], index)` |
//! | typed | `("typed", type, value, [(name, node), ...])` |
//! | object | `("object", module, name, [node, ...], [(name, node), ...], state, has_state)` |
//! | global | `("global", module, name)` |
//!
//! A tensor's `blob` is its blob index (or, when saving, the index of its byte source), `None`
//! for zero-size tensors; `shape` is a tuple; `kind` is `None`, `"parameter"` or `"ndarray"`;
//! `index` is its position in document order (`None` when saving). A typed value's `value` is
//! `[(key, value), ...]` for `collections.OrderedDict` / `Counter`, `[(name, value), ...]` for
//! `argparse.Namespace`, a tuple of ints for `torch.Size`, text for `torch.dtype` /
//! `torch.device`, `(dtype, bytes)` for `numpy.scalar` and `[start, stop, step]` for
//! `builtins.slice`.

use crate::errors;
use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::collections::HashMap;
use tensorseal::{DType, Global, Int, Limits, Node, Object, Tensor, TensorKind, Typed};

/// Converts a verified tree to its Python form.
pub(crate) struct ToPython<'a> {
    /// Document-order index of every tensor, by address.
    indices: HashMap<*const Tensor, usize>,
    _root: std::marker::PhantomData<&'a Node>,
}

impl<'a> ToPython<'a> {
    pub(crate) fn new(root: &'a Node) -> Self {
        let indices = root
            .tensors()
            .into_iter()
            .enumerate()
            .map(|(i, (_, t))| (t as *const Tensor, i))
            .collect();
        ToPython {
            indices,
            _root: std::marker::PhantomData,
        }
    }

    pub(crate) fn tensor<'py>(&self, py: Python<'py>, t: &Tensor) -> PyResult<Bound<'py, PyAny>> {
        (
            "tensor",
            t.blob,
            t.dtype.name(),
            PyTuple::new(py, &t.shape)?,
            t.kind.name(),
            t.requires_grad,
            self.text_pairs(py, &t.attrs)?,
            self.indices.get(&(t as *const Tensor)).copied(),
        )
            .into_bound_py_any(py)
    }

    fn list<'py>(&self, py: Python<'py>, items: &[Node]) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for n in items {
            list.append(self.node(py, n)?)?;
        }
        Ok(list)
    }

    fn pairs<'py>(&self, py: Python<'py>, pairs: &[(Node, Node)]) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (k, v) in pairs {
            list.append((self.node(py, k)?, self.node(py, v)?))?;
        }
        Ok(list)
    }

    fn text_pairs<'py>(
        &self,
        py: Python<'py>,
        pairs: &[(String, Node)],
    ) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (k, v) in pairs {
            list.append((k.as_str(), self.node(py, v)?))?;
        }
        Ok(list)
    }

    /// The Python form of `n`. Recursion is bounded by the manifest's `max_tree_depth`.
    pub(crate) fn node<'py>(&self, py: Python<'py>, n: &Node) -> PyResult<Bound<'py, PyAny>> {
        match n {
            Node::None => Ok(py.None().into_bound(py)),
            Node::Bool(b) => b.into_bound_py_any(py),
            Node::Int(i) => int_to_py(py, i),
            Node::Float(f) => Ok(PyFloat::new(py, *f).into_any()),
            Node::Str(s) => Ok(PyString::new(py, s).into_any()),
            Node::Bytes(b) => Ok(PyBytes::new(py, b).into_any()),
            Node::List(items) => Ok(self.list(py, items)?.into_any()),
            Node::Tuple(items) => ("tuple", self.list(py, items)?).into_bound_py_any(py),
            Node::Set(items) => ("set", self.list(py, items)?).into_bound_py_any(py),
            Node::FrozenSet(items) => ("frozenset", self.list(py, items)?).into_bound_py_any(py),
            Node::Dict(pairs) => ("dict", self.pairs(py, pairs)?).into_bound_py_any(py),
            Node::ByteArray(b) => ("bytearray", PyBytes::new(py, b)).into_bound_py_any(py),
            Node::Complex(re, im) => ("complex", *re, *im).into_bound_py_any(py),
            Node::Tensor(t) => self.tensor(py, t),
            Node::Typed(t) => {
                let empty = PyList::empty(py);
                let (value, attrs) = match &**t {
                    Typed::OrderedDict { items, attrs } | Typed::Counter { items, attrs } => (
                        self.pairs(py, items)?.into_any(),
                        self.text_pairs(py, attrs)?,
                    ),
                    Typed::Namespace(fields) => (self.text_pairs(py, fields)?.into_any(), empty),
                    Typed::TorchSize(dims) => (PyTuple::new(py, dims)?.into_any(), empty),
                    Typed::TorchDtype(s) | Typed::TorchDevice(s) => {
                        (PyString::new(py, s).into_any(), empty)
                    }
                    Typed::NumpyScalar { dtype, bytes } => (
                        (dtype.name(), PyBytes::new(py, bytes)).into_bound_py_any(py)?,
                        empty,
                    ),
                    Typed::Slice(parts) => (self.list(py, &parts[..])?.into_any(), empty),
                };
                ("typed", t.type_name(), value, attrs).into_bound_py_any(py)
            }
            Node::Object(o) => (
                "object",
                o.module.as_str(),
                o.name.as_str(),
                self.list(py, &o.args)?,
                self.text_pairs(py, &o.kwargs)?,
                match &o.state {
                    Some(s) => self.node(py, s)?,
                    None => py.None().into_bound(py),
                },
                o.state.is_some(),
                self.list(py, &o.list_items)?,
                self.pairs(py, &o.dict_items)?,
            )
                .into_bound_py_any(py),
            Node::Global(g) => ("global", g.module.as_str(), g.name.as_str()).into_bound_py_any(py),
        }
    }
}

fn int_to_py<'py>(py: Python<'py>, i: &Int) -> PyResult<Bound<'py, PyAny>> {
    if let Some(v) = i.to_i128() {
        return v.into_bound_py_any(py);
    }
    let (negative, magnitude) = i.to_sign_magnitude();
    let v = py
        .get_type::<PyInt>()
        .call_method1("from_bytes", (PyBytes::new(py, &magnitude), "big"))?;
    if negative { v.neg() } else { Ok(v) }
}

fn int_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Int> {
    if let Ok(v) = obj.extract::<i128>() {
        return Ok(Int::from_sign_magnitude(
            v < 0,
            &v.unsigned_abs().to_be_bytes(),
        ));
    }
    let negative = obj.lt(0)?;
    let magnitude = obj.abs()?;
    let bits: usize = magnitude.call_method0("bit_length")?.extract()?;
    let bytes = magnitude.call_method1("to_bytes", (bits.div_ceil(8), "big"))?;
    Ok(Int::from_sign_magnitude(
        negative,
        bytes.cast::<PyBytes>()?.as_bytes(),
    ))
}

/// Converts the Python form of a tree (built by the package's encoder) to a [`Node`]. Tensors
/// keep their source index in `blob`. Set elements are sorted by their canonical encoding with
/// blob indices cleared, so the order depends neither on hash randomisation nor on the order in
/// which byte sources were collected.
pub(crate) struct FromPython {
    pub(crate) limits: Limits,
    /// Number of byte sources: a tensor's `blob` must be below it.
    pub(crate) sources: usize,
}

fn bad(obj: &Bound<'_, PyAny>, what: &str) -> PyErr {
    let repr = obj
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into());
    errors::unsupported(
        obj.py(),
        format!("malformed tree form ({what}): {repr:.200}"),
    )
}

fn text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let s = obj.cast_exact::<PyString>().map_err(|_| bad(obj, "text"))?;
    // Lone surrogates have no UTF-8 encoding; say so rather than with a codec error.
    s.to_str().map(str::to_owned).map_err(|_| {
        errors::unsupported(
            obj.py(),
            format!("{s:.100}: a str that is not valid Unicode (lone surrogate) cannot be saved"),
        )
    })
}

impl FromPython {
    fn items(&self, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Vec<Node>> {
        let list = obj.cast_exact::<PyList>().map_err(|_| bad(obj, "list"))?;
        list.iter().map(|x| self.node(&x, depth)).collect()
    }

    fn pairs(&self, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Vec<(Node, Node)>> {
        let list = obj.cast_exact::<PyList>().map_err(|_| bad(obj, "pairs"))?;
        list.iter()
            .map(|p| {
                let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
                    p.extract().map_err(|_| bad(&p, "pair"))?;
                Ok((self.node(&k, depth)?, self.node(&v, depth)?))
            })
            .collect()
    }

    fn text_pairs(&self, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Vec<(String, Node)>> {
        let list = obj.cast_exact::<PyList>().map_err(|_| bad(obj, "pairs"))?;
        list.iter()
            .map(|p| {
                let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
                    p.extract().map_err(|_| bad(&p, "pair"))?;
                Ok((text(&k)?, self.node(&v, depth)?))
            })
            .collect()
    }

    /// Elements of a set, in canonical order.
    fn set(&self, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Vec<Node>> {
        let items = self.items(obj, depth)?;
        let mut keyed = items
            .into_iter()
            .map(|n| {
                let mut masked = n.clone();
                for_each_tensor_mut(&mut masked, &mut |t| t.blob = None);
                let key = masked
                    .canonical_bytes(&self.limits)
                    .map_err(|e| errors::unsupported(obj.py(), tensorseal::error_chain(&e)))?;
                Ok((key, n))
            })
            .collect::<PyResult<Vec<_>>>()?;
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(keyed.into_iter().map(|(_, n)| n).collect())
    }

    fn tensor(&self, t: &Bound<'_, PyTuple>, depth: usize) -> PyResult<Node> {
        let py = t.py();
        if t.len() != 8 {
            return Err(bad(t.as_any(), "tensor"));
        }
        let blob: Option<usize> = t
            .get_item(1)?
            .extract()
            .map_err(|_| bad(t.as_any(), "blob"))?;
        if blob.is_some_and(|b| b >= self.sources) {
            return Err(bad(t.as_any(), "source index out of range"));
        }
        let dtype_name = text(&t.get_item(2)?)?;
        let dtype = DType::from_name(&dtype_name)
            .ok_or_else(|| errors::unsupported(py, format!("unknown dtype {dtype_name:?}")))?;
        let shape: Vec<u64> = t
            .get_item(3)?
            .extract()
            .map_err(|_| bad(t.as_any(), "shape"))?;
        let kind_obj = t.get_item(4)?;
        let kind = if kind_obj.is_none() {
            TensorKind::Tensor
        } else {
            match text(&kind_obj)?.as_str() {
                "parameter" => TensorKind::Parameter,
                "ndarray" => TensorKind::NdArray,
                _ => return Err(bad(t.as_any(), "tensor kind")),
            }
        };
        let requires_grad: bool = t
            .get_item(5)?
            .extract()
            .map_err(|_| bad(t.as_any(), "requires_grad"))?;
        let attrs = self.text_pairs(&t.get_item(6)?, depth)?;
        Ok(Node::Tensor(Box::new(Tensor {
            dtype,
            shape,
            blob,
            kind,
            requires_grad,
            attrs,
        })))
    }

    fn typed(&self, t: &Bound<'_, PyTuple>, depth: usize) -> PyResult<Node> {
        if t.len() != 4 {
            return Err(bad(t.as_any(), "typed"));
        }
        let name = text(&t.get_item(1)?)?;
        let value = t.get_item(2)?;
        let attrs = self.text_pairs(&t.get_item(3)?, depth)?;
        let no_attrs = |typed: Typed| {
            if attrs.is_empty() {
                Ok(typed)
            } else {
                Err(bad(t.as_any(), "attributes on a type without them"))
            }
        };
        let typed = match name.as_str() {
            "collections.OrderedDict" => Typed::OrderedDict {
                items: self.pairs(&value, depth)?,
                attrs,
            },
            "collections.Counter" => Typed::Counter {
                items: self.pairs(&value, depth)?,
                attrs,
            },
            "argparse.Namespace" => no_attrs(Typed::Namespace(self.text_pairs(&value, depth)?))?,
            "torch.Size" => no_attrs(Typed::TorchSize(
                value.extract().map_err(|_| bad(&value, "torch.Size"))?,
            ))?,
            "torch.dtype" => no_attrs(Typed::TorchDtype(text(&value)?))?,
            "torch.device" => no_attrs(Typed::TorchDevice(text(&value)?))?,
            "numpy.scalar" => {
                let (dtype, bytes): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
                    value.extract().map_err(|_| bad(&value, "numpy.scalar"))?;
                let dtype_name = text(&dtype)?;
                let dtype = DType::from_name(&dtype_name).ok_or_else(|| {
                    errors::unsupported(t.py(), format!("unknown dtype {dtype_name:?}"))
                })?;
                let bytes = bytes
                    .cast_exact::<PyBytes>()
                    .map_err(|_| bad(&bytes, "numpy.scalar bytes"))?
                    .as_bytes()
                    .to_vec();
                no_attrs(Typed::NumpyScalar { dtype, bytes })?
            }
            "builtins.slice" => {
                let parts: [Node; 3] = self
                    .items(&value, depth)?
                    .try_into()
                    .map_err(|_| bad(&value, "slice"))?;
                no_attrs(Typed::Slice(Box::new(parts)))?
            }
            _ => return Err(bad(t.as_any(), "typed value")),
        };
        Ok(Node::Typed(Box::new(typed)))
    }

    /// Converts one node; `depth` is its depth in the tree (the root is 1).
    pub(crate) fn node(&self, obj: &Bound<'_, PyAny>, depth: usize) -> PyResult<Node> {
        if depth > self.limits.max_tree_depth {
            return Err(errors::unsupported(
                obj.py(),
                format!(
                    "the object nests deeper than the format allows ({} levels)",
                    self.limits.max_tree_depth
                ),
            ));
        }
        let d = depth + 1;
        if obj.is_none() {
            return Ok(Node::None);
        }
        if let Ok(b) = obj.cast_exact::<PyBool>() {
            return Ok(Node::Bool(b.is_true()));
        }
        if obj.is_exact_instance_of::<PyInt>() {
            return Ok(Node::Int(int_from_py(obj)?));
        }
        if let Ok(f) = obj.cast_exact::<PyFloat>() {
            return Ok(Node::Float(f.value()));
        }
        if obj.is_exact_instance_of::<PyString>() {
            return Ok(Node::Str(text(obj)?));
        }
        if let Ok(b) = obj.cast_exact::<PyBytes>() {
            return Ok(Node::Bytes(b.as_bytes().to_vec()));
        }
        if obj.is_exact_instance_of::<PyList>() {
            return Ok(Node::List(self.items(obj, d)?));
        }
        let t = obj.cast_exact::<PyTuple>().map_err(|_| bad(obj, "node"))?;
        if t.is_empty() {
            return Err(bad(obj, "node"));
        }
        let tag = text(&t.get_item(0)?)?;
        let arg = |i: usize| t.get_item(i);
        let arity = |n: usize| {
            if t.len() == n {
                Ok(())
            } else {
                Err(bad(obj, "arity"))
            }
        };
        Ok(match tag.as_str() {
            "tuple" => {
                arity(2)?;
                Node::Tuple(self.items(&arg(1)?, d)?)
            }
            "set" => {
                arity(2)?;
                Node::Set(self.set(&arg(1)?, d)?)
            }
            "frozenset" => {
                arity(2)?;
                Node::FrozenSet(self.set(&arg(1)?, d)?)
            }
            "dict" => {
                arity(2)?;
                Node::Dict(self.pairs(&arg(1)?, d)?)
            }
            "bytearray" => {
                arity(2)?;
                let b = arg(1)?;
                let bytes = b
                    .cast_exact::<PyBytes>()
                    .map_err(|_| bad(&b, "bytearray"))?;
                Node::ByteArray(bytes.as_bytes().to_vec())
            }
            "complex" => {
                arity(3)?;
                Node::Complex(arg(1)?.extract()?, arg(2)?.extract()?)
            }
            "tensor" => self.tensor(t, d)?,
            "typed" => self.typed(t, d)?,
            "object" => {
                arity(9)?;
                let has_state: bool = arg(6)?.extract()?;
                Node::Object(Box::new(Object {
                    module: text(&arg(1)?)?,
                    name: text(&arg(2)?)?,
                    args: self.items(&arg(3)?, d)?,
                    kwargs: self.text_pairs(&arg(4)?, d)?,
                    state: if has_state {
                        Some(self.node(&arg(5)?, d)?)
                    } else {
                        None
                    },
                    list_items: self.items(&arg(7)?, d)?,
                    dict_items: self.pairs(&arg(8)?, d)?,
                }))
            }
            "global" => {
                arity(3)?;
                Node::Global(Box::new(Global {
                    module: text(&arg(1)?)?,
                    name: text(&arg(2)?)?,
                }))
            }
            _ => return Err(bad(obj, "unknown tag")),
        })
    }
}

/// Calls `f` on every tensor of the tree. Recursion is bounded by the depth check of
/// [`FromPython::node`], which built the tree.
pub(crate) fn for_each_tensor_mut(n: &mut Node, f: &mut dyn FnMut(&mut Tensor)) {
    let pairs = |items: &mut Vec<(Node, Node)>, f: &mut dyn FnMut(&mut Tensor)| {
        for (k, v) in items {
            for_each_tensor_mut(k, f);
            for_each_tensor_mut(v, f);
        }
    };
    match n {
        Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
            items.iter_mut().for_each(|x| for_each_tensor_mut(x, f));
        }
        Node::Dict(items) => pairs(items, f),
        Node::Tensor(t) => {
            f(t);
            t.attrs
                .iter_mut()
                .for_each(|(_, v)| for_each_tensor_mut(v, f));
        }
        Node::Typed(t) => match &mut **t {
            Typed::OrderedDict { items, attrs } | Typed::Counter { items, attrs } => {
                pairs(items, f);
                attrs
                    .iter_mut()
                    .for_each(|(_, v)| for_each_tensor_mut(v, f));
            }
            Typed::Namespace(fields) => {
                fields
                    .iter_mut()
                    .for_each(|(_, v)| for_each_tensor_mut(v, f));
            }
            Typed::Slice(parts) => parts.iter_mut().for_each(|x| for_each_tensor_mut(x, f)),
            _ => {}
        },
        Node::Object(o) => {
            o.args.iter_mut().for_each(|x| for_each_tensor_mut(x, f));
            o.kwargs
                .iter_mut()
                .for_each(|(_, v)| for_each_tensor_mut(v, f));
            if let Some(s) = &mut o.state {
                for_each_tensor_mut(s, f);
            }
            o.list_items
                .iter_mut()
                .for_each(|x| for_each_tensor_mut(x, f));
            for (k, v) in &mut o.dict_items {
                for_each_tensor_mut(k, f);
                for_each_tensor_mut(v, f);
            }
        }
        _ => {}
    }
}
