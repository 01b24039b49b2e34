//! Entry points of the fuzz targets in `fuzz/`. They live in the crate so that `cargo test`
//! replays the committed fuzz corpus (`tests/fuzz_corpus.rs`) through exactly the code the
//! fuzzer runs. Not part of the API: each panics when it finds a bug, which is the point.

use crate::layout::{self, FOOTER_LEN, Footer};
use crate::limits::{ALIGN, Limits, align_up};
use crate::manifest::{BlobEntry, Manifest};
use crate::tree::{Global, Int, Node, Object, Tensor, TensorKind, Typed};
use crate::{Checkpoint, DType, PublicKey, SecretKey, TrustPolicy, codec};
use std::collections::BTreeMap;

/// Tensors larger than this are not read back by `format_reader`: a valid file may legitimately
/// declare more logical bytes than the fuzzer's memory limit (16 MiB zstd frames of a few bytes).
const MAX_READ_BACK: u64 = 64 << 20;

/// The published test key of `spec/vectors` (seed bytes 0..31), trusted by `format_reader`.
fn test_key() -> PublicKey {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    SecretKey::from_seed(&seed).public_key()
}

/// `format_reader`: arbitrary bytes as a whole file. Opening must fail cleanly or yield a
/// manifest that re-encodes to the exact bytes in the file; verification (integrity only, and
/// trusting the test key) and reading every tensor must not panic.
pub fn format_reader(data: &[u8]) {
    let limits = Limits::default();
    let Ok(ckpt) = Checkpoint::from_vec(data.to_vec(), &limits) else {
        return;
    };
    let footer = ckpt.footer();
    let start = footer.manifest_offset as usize;
    let stored = &data[start..start + footer.manifest_length as usize];
    let again = ckpt
        .manifest()
        .to_bytes(&limits)
        .expect("an accepted manifest re-encodes");
    assert!(again == stored, "an accepted manifest is not canonical");
    let _ = ckpt.verify(&TrustPolicy::integrity_only());
    let _ = ckpt.verify(&TrustPolicy::trusting(vec![test_key()]));
    for (_, t) in ckpt.root().tensors() {
        if t.byte_size().is_some_and(|n| n <= MAX_READ_BACK)
            && let Ok(bytes) = ckpt.tensor_bytes(t)
        {
            assert_eq!(Some(bytes.len() as u64), t.byte_size());
        }
    }
}

/// `format_manifest`: arbitrary bytes as a manifest. Whatever decodes re-encodes to the same
/// bytes (one byte string per manifest).
pub fn format_manifest(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(m) = Manifest::from_bytes(data, 0, &limits) {
        let again = m.to_bytes(&limits).expect("a decoded manifest re-encodes");
        assert!(again == data, "a decoded manifest is not canonical");
    }
}

/// `format_roundtrip`: bytes drive the construction of a tree with tensors; if the manifest
/// encoder accepts it, the file assembled around it opens, verifies, and gives back the same
/// tree, metadata and tensor bytes.
pub fn format_roundtrip(data: &[u8]) {
    let limits = Limits::default();
    let mut g = Gen { data, pos: 0 };
    let mut root = g.node(1);
    let metadata = g.metadata();
    // Blobs: one per non-empty tensor, with bytes drawn from the input.
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    tensors_mut(&mut root, &mut |t| {
        let size = t.byte_size().unwrap_or(0) as usize;
        t.blob = (size > 0).then(|| {
            let seed = g.u8();
            blobs.push((0..size).map(|i| (i as u8).wrapping_mul(seed)).collect());
            blobs.len() - 1
        });
    });
    let mut file = layout::header(1).to_vec();
    let mut entries = Vec::new();
    for b in &blobs {
        let offset = file.len() as u64;
        file.extend_from_slice(b);
        let end = align_up(file.len() as u64).expect("small");
        file.resize(end as usize, 0);
        entries.push(BlobEntry {
            offset,
            length: b.len() as u64,
            sha256: codec::chunk_digests(b),
            codec: None,
        });
    }
    let manifest = Manifest {
        root,
        blobs: entries,
        metadata,
        ext: BTreeMap::new(),
    };
    let Ok(bytes) = manifest.to_bytes(&limits) else {
        return;
    };
    let back = Manifest::from_bytes(&bytes, 0, &limits).expect("encoder output decodes");
    assert_eq!(back, manifest);
    assert!(back.to_bytes(&limits).expect("re-encodes") == bytes);
    let manifest_offset = file.len() as u64;
    assert_eq!(manifest_offset % ALIGN, 0);
    file.extend_from_slice(&bytes);
    let signatures = layout::encode_signatures(&[]);
    file.extend_from_slice(&signatures);
    let footer = Footer {
        manifest_offset,
        manifest_length: bytes.len() as u64,
        signatures_length: signatures.len() as u64,
        manifest_sha256: codec::sha256(&bytes),
    };
    file.extend_from_slice(&footer.encode());
    assert_eq!(
        file.len() as u64,
        footer.content_length() + signatures.len() as u64 + FOOTER_LEN
    );
    let ckpt = Checkpoint::from_vec(file, &limits).expect("an assembled file opens");
    assert_eq!(ckpt.root(), &manifest.root);
    assert_eq!(ckpt.metadata(), &manifest.metadata);
    ckpt.verify(&TrustPolicy::integrity_only())
        .expect("an assembled file verifies");
    for (i, b) in blobs.iter().enumerate() {
        assert!(*ckpt.blob_bytes(i).expect("raw blobs read") == b[..]);
    }
}

fn tensors_mut(node: &mut Node, f: &mut dyn FnMut(&mut Tensor)) {
    match node {
        Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => {
            v.iter_mut().for_each(|n| tensors_mut(n, f));
        }
        Node::Dict(pairs) => pairs.iter_mut().for_each(|(k, v)| {
            tensors_mut(k, f);
            tensors_mut(v, f);
        }),
        Node::Tensor(t) => {
            f(t);
            t.attrs.iter_mut().for_each(|(_, v)| tensors_mut(v, f));
        }
        Node::Typed(t) => match &mut **t {
            Typed::OrderedDict { items, attrs } | Typed::Counter { items, attrs } => {
                items.iter_mut().for_each(|(k, v)| {
                    tensors_mut(k, f);
                    tensors_mut(v, f);
                });
                attrs.iter_mut().for_each(|(_, v)| tensors_mut(v, f));
            }
            Typed::Namespace(fields) => fields.iter_mut().for_each(|(_, v)| tensors_mut(v, f)),
            Typed::Slice(parts) => parts.iter_mut().for_each(|n| tensors_mut(n, f)),
            _ => {}
        },
        Node::Object(o) => {
            o.args.iter_mut().for_each(|n| tensors_mut(n, f));
            o.kwargs.iter_mut().for_each(|(_, v)| tensors_mut(v, f));
            if let Some(s) = &mut o.state {
                tensors_mut(s, f);
            }
        }
        _ => {}
    }
}

/// Reads the input as a recipe; past its end every read is zero, so every input is a tree.
struct Gen<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Deepest nesting the generator builds: enough to mix every kind, small enough to stay fast.
const MAX_DEPTH: usize = 8;

impl Gen<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| acc << 8 | u64::from(self.u8()))
    }

    fn bytes(&mut self, max: u8) -> Vec<u8> {
        let n = self.u8() % (max + 1);
        (0..n).map(|_| self.u8()).collect()
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.bytes(12)).into_owned()
    }

    fn name(&mut self) -> String {
        let s: String = self
            .bytes(8)
            .into_iter()
            .map(|b| char::from(b'a' + b % 26))
            .collect();
        if s.is_empty() { "x".into() } else { s }
    }

    fn count(&mut self) -> usize {
        usize::from(self.u8() % 4)
    }

    fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn int(&mut self) -> Int {
        match self.u8() % 3 {
            0 => Int::from(self.u64() as i64),
            1 => Int::from(self.u64()),
            _ => {
                let negative = self.u8() & 1 == 1;
                Int::from_sign_magnitude(negative, &self.bytes(24))
            }
        }
    }

    fn dtype(&mut self) -> DType {
        DType::ALL[usize::from(self.u8()) % DType::ALL.len()]
    }

    fn typed_leaf(&mut self) -> Typed {
        match self.u8() % 4 {
            0 => Typed::TorchSize((0..self.count()).map(|_| self.u64()).collect()),
            1 => Typed::TorchDtype(self.dtype().name().to_string()),
            2 => Typed::TorchDevice(format!("{}:{}", self.name(), self.u8())),
            _ => {
                let dtype = DType::ALL
                    .into_iter()
                    .filter(|d| d.numpy_native())
                    .nth(usize::from(self.u8() % 14))
                    .unwrap_or(DType::F64);
                let bytes = (0..dtype.itemsize()).map(|_| self.u8()).collect();
                Typed::NumpyScalar { dtype, bytes }
            }
        }
    }

    /// A hashable node: a valid dict key or set element.
    fn key(&mut self, depth: usize) -> Node {
        match self.u8() % 10 {
            0 => Node::None,
            1 => Node::Bool(self.u8() & 1 == 1),
            2 => Node::Int(self.int()),
            3 => Node::Float(f64::from_bits(self.u64())),
            4 => Node::Str(self.text()),
            5 => Node::Bytes(self.bytes(8)),
            6 if depth < MAX_DEPTH => {
                Node::Tuple((0..self.count()).map(|_| self.key(depth + 1)).collect())
            }
            7 if depth < MAX_DEPTH => Node::FrozenSet(self.distinct_keys(depth + 1)),
            8 => Node::Typed(Box::new(self.typed_leaf())),
            _ => Node::Global(Box::new(Global {
                module: self.name(),
                name: self.name(),
            })),
        }
    }

    fn distinct_keys(&mut self, depth: usize) -> Vec<Node> {
        let mut out: Vec<Node> = Vec::new();
        for _ in 0..self.count() {
            let k = self.key(depth);
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }

    fn pairs(&mut self, depth: usize) -> Vec<(Node, Node)> {
        let mut out: Vec<(Node, Node)> = Vec::new();
        for _ in 0..self.count() {
            let k = self.key(depth);
            let v = self.node(depth);
            if !out.iter().any(|(o, _)| *o == k) {
                out.push((k, v));
            }
        }
        out
    }

    fn text_pairs(&mut self, depth: usize) -> Vec<(String, Node)> {
        let mut out: Vec<(String, Node)> = Vec::new();
        for _ in 0..self.count() {
            let k = self.name();
            let v = self.node(depth);
            if !out.iter().any(|(o, _)| *o == k) {
                out.push((k, v));
            }
        }
        out
    }

    fn tensor(&mut self, depth: usize) -> Tensor {
        let dtype = self.dtype();
        let shape = (0..self.count())
            .map(|_| u64::from(self.u8() % 4))
            .collect();
        let mut t = Tensor::new(dtype, shape, None);
        match self.u8() % 4 {
            0 => t.kind = TensorKind::NdArray,
            1 => {
                t.kind = TensorKind::Parameter;
                t.requires_grad = true;
            }
            2 => t.attrs = self.text_pairs(depth + 1),
            _ => {}
        }
        t
    }

    fn node(&mut self, depth: usize) -> Node {
        if depth >= MAX_DEPTH || self.exhausted() {
            return self.key(MAX_DEPTH);
        }
        let d = depth + 1;
        match self.u8() % 16 {
            0 => Node::List((0..self.count()).map(|_| self.node(d)).collect()),
            1 => Node::Tuple((0..self.count()).map(|_| self.node(d)).collect()),
            2 => Node::Dict(self.pairs(d)),
            3 => Node::Set(self.distinct_keys(d)),
            4 => Node::ByteArray(self.bytes(8)),
            5 => Node::Complex(f64::from_bits(self.u64()), f64::from_bits(self.u64())),
            6 | 7 => Node::Tensor(Box::new(self.tensor(depth))),
            8 => {
                let items = self.pairs(d);
                let attrs = self.text_pairs(d);
                Node::Typed(Box::new(if self.u8() & 1 == 0 {
                    Typed::OrderedDict { items, attrs }
                } else {
                    Typed::Counter { items, attrs }
                }))
            }
            9 => Node::Typed(Box::new(Typed::Namespace(self.text_pairs(d)))),
            10 => Node::Typed(Box::new(Typed::Slice(Box::new([
                self.node(d),
                self.node(d),
                self.node(d),
            ])))),
            11 => {
                let module = self.name();
                let name = self.name();
                let args = (0..self.count()).map(|_| self.node(d)).collect();
                let kwargs = self.text_pairs(d);
                let state = (self.u8() & 1 == 1).then(|| self.node(d));
                let list_items = (0..self.count()).map(|_| self.node(d)).collect();
                let dict_items = self.pairs(d);
                Node::Object(Box::new(Object {
                    module,
                    name,
                    args,
                    kwargs,
                    state,
                    list_items,
                    dict_items,
                }))
            }
            _ => self.key(depth),
        }
    }

    fn metadata(&mut self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for _ in 0..self.count() {
            m.insert(self.name(), self.text());
        }
        if self.u8() & 1 == 1 {
            m.insert("step".into(), self.u64().to_string());
        }
        m
    }
}

/// `planes_decode`: the first two bytes give an expected length (in 4-byte units, at most
/// 256 KiB), the rest is a plane stream (`crate::planes`). Decoding must fail cleanly or yield
/// exactly that many bytes, which re-encode and decode to themselves.
pub fn planes_decode(data: &[u8]) {
    let Some((len, stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let expected = usize::from(u16::from_le_bytes(*len)) * 4;
    let Ok(out) = crate::planes::decode_chunk(stream, expected) else {
        return;
    };
    assert_eq!(
        out.len(),
        expected,
        "decoded length differs from the expected one"
    );
    for layout in [
        crate::planes::PlaneLayout::F32,
        crate::planes::PlaneLayout::Bf16,
        crate::planes::PlaneLayout::Bytes(4),
    ] {
        let again = crate::planes::encode_chunk(&out, layout, 1).expect("whole elements encode");
        let back = crate::planes::decode_chunk(&again, expected).expect("own output decodes");
        assert!(back == out, "plane round trip differs");
    }
}

/// `tans_decode`: the first three bytes give a symbol count (little-endian, below 2^18: two
/// blocks), the rest is a tANS plane body (`crate::tans`, spec §4.5). Decoding must fail cleanly
/// or fill exactly that many symbols, which re-encode and decode to themselves.
pub fn tans_decode(data: &[u8]) {
    let Some((m, body)) = data.split_first_chunk::<3>() else {
        return;
    };
    let m = (usize::from(m[0]) | usize::from(m[1]) << 8 | usize::from(m[2]) << 16) & 0x3_ffff;
    let mut out = vec![0u8; m];
    if crate::tans::decode(body, &mut out).is_err() {
        return;
    }
    let plan = crate::tans::Plan::new(&out);
    let mut again = Vec::new();
    crate::tans::encode(&out, &plan, &mut again);
    let mut back = vec![0u8; m];
    crate::tans::decode(&again, &mut back).expect("own output decodes");
    assert!(back == out, "tANS round trip differs");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_accept_trivial_inputs() {
        for data in [&[][..], &[0; 64], &[0xff; 300], b"\x89TSEAL\r\n"] {
            format_reader(data);
            format_manifest(data);
            format_roundtrip(data);
            tans_decode(data);
            planes_decode(data);
        }
        // A recipe that exercises most kinds.
        let recipe: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        format_roundtrip(&recipe);
    }
}
