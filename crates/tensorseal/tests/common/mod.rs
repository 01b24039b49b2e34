//! A second, deliberately independent implementation of the file layout (spec §1), canonical CBOR
//! (spec §3.1) and the signed message (spec §6), written from the spec alone. Tests use it to craft
//! valid and invalid files byte by byte, so that the reader is checked against the spec rather
//! than against its own writer.
//!
//! Each integration binary uses a different subset of these helpers.
#![allow(
    dead_code,
    reason = "shared by several test binaries, each using a subset"
)]
#![allow(
    unreachable_pub,
    reason = "items are `pub` so that every test binary can use them"
)]

use ed25519_dalek::{Signer, SigningKey};

/// Header magic, spec §1.1.
pub const MAGIC: [u8; 8] = [0x89, b'T', b'S', b'E', b'A', b'L', b'\r', b'\n'];
/// Footer end magic, spec §1.2.
pub const END_MAGIC: [u8; 8] = *b"TSEALEND";
/// Signature domain, spec §6.
pub const DOMAIN: &[u8] = b"tensorseal-manifest-signature-v1\0";
/// Digest chunk size, spec §4.1.
pub const CHUNK: usize = 1 << 24;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    tensorseal::sha256(bytes)
}

// ---------------------------------------------------------------------------------------------
// CBOR

/// A CBOR item, encoded exactly as built: map entries keep their order (use [`C::map`] for
/// canonical order) and heads are shortest unless [`C::Raw`] says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum C {
    U(u64),
    /// The integer `-1 - n`.
    N(u64),
    B(Vec<u8>),
    T(String),
    A(Vec<C>),
    M(Vec<(C, C)>),
    Tag(u64, Box<C>),
    /// A float in its shortest canonical form.
    F(f64),
    Bool(bool),
    Null,
    /// Bytes inserted verbatim.
    Raw(Vec<u8>),
}

pub fn t(s: &str) -> C {
    C::T(s.to_string())
}

/// The shortest head for major type `major` and argument `n`.
pub fn head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xff => vec![m | 24, n as u8],
        0x100..=0xffff => [&[m | 25][..], &(n as u16).to_be_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[m | 26][..], &(n as u32).to_be_bytes()].concat(),
        _ => [&[m | 27][..], &n.to_be_bytes()].concat(),
    }
}

impl C {
    /// A map with text keys in canonical order (sorted by encoded key).
    pub fn map(entries: Vec<(&str, C)>) -> C {
        let mut e: Vec<(C, C)> = entries.into_iter().map(|(k, v)| (t(k), v)).collect();
        e.sort_by_key(|(k, _)| k.enc());
        C::M(e)
    }

    /// `{kind: value}`: a wrapped node (spec §3.3).
    pub fn wrap(kind: &str, value: C) -> C {
        C::M(vec![(t(kind), value)])
    }

    pub fn enc(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.enc_into(&mut out);
        out
    }

    fn enc_into(&self, out: &mut Vec<u8>) {
        match self {
            C::U(n) => out.extend(head(0, *n)),
            C::N(n) => out.extend(head(1, *n)),
            C::B(b) => {
                out.extend(head(2, b.len() as u64));
                out.extend_from_slice(b);
            }
            C::T(s) => {
                out.extend(head(3, s.len() as u64));
                out.extend_from_slice(s.as_bytes());
            }
            C::A(items) => {
                out.extend(head(4, items.len() as u64));
                items.iter().for_each(|i| i.enc_into(out));
            }
            C::M(entries) => {
                out.extend(head(5, entries.len() as u64));
                for (k, v) in entries {
                    k.enc_into(out);
                    v.enc_into(out);
                }
            }
            C::Tag(tag, inner) => {
                out.extend(head(6, *tag));
                inner.enc_into(out);
            }
            C::F(f) => out.extend(canonical_float(*f)),
            C::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
            C::Null => out.push(0xf6),
            C::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }
}

/// binary16 -> binary64 as IEEE 754 widening (spec §3.1: NaN payload shifted up, quiet bit set).
pub fn widen16(h: u16) -> u64 {
    let sign = u64::from(h >> 15) << 63;
    let exp = (h >> 10) & 0x1f;
    let man = u64::from(h & 0x3ff);
    match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: m × 2^-24; normalise.
            let shift = m.leading_zeros() - 53; // bring the top set bit to position 10
            let m = (m << shift) & 0x3ff;
            let e = 1023 - 15 + 1 - u64::from(shift);
            sign | e << 52 | m << 42
        }
        (0x1f, 0) => sign | 0x7ff << 52,
        (0x1f, m) => sign | 0x7ff << 52 | 1 << 51 | m << 42,
        (e, m) => sign | (u64::from(e) + 1023 - 15) << 52 | m << 42,
    }
}

/// binary32 -> binary64 as IEEE 754 widening.
pub fn widen32(x: u32) -> u64 {
    let sign = u64::from(x >> 31) << 63;
    let exp = (x >> 23) & 0xff;
    let man = u64::from(x & 0x7f_ffff);
    match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            let shift = m.leading_zeros() - 40; // top set bit to position 23
            let m = (m << shift) & 0x7f_ffff;
            let e = 1023 - 127 + 1 - u64::from(shift);
            sign | e << 52 | m << 29
        }
        (0xff, 0) => sign | 0x7ff << 52,
        (0xff, m) => sign | 0x7ff << 52 | 1 << 51 | m << 29,
        (e, m) => sign | (u64::from(e) + 1023 - 127) << 52 | m << 29,
    }
}

/// Candidate narrowings of a binary64 pattern; each is accepted only if it widens back exactly.
fn narrow(bits: u64, exp_bits: u32, man_bits: u32) -> Option<u64> {
    let sign = bits >> 63;
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let man = bits & ((1 << 52) - 1);
    let bias = (1i64 << (exp_bits - 1)) - 1;
    let max_exp = (1u64 << exp_bits) - 1;
    let out_sign = sign << (exp_bits + man_bits);
    if exp == 0x7ff {
        return Some(out_sign | max_exp << man_bits | man >> (52 - man_bits));
    }
    if exp == 0 {
        return (man == 0).then_some(out_sign);
    }
    let e = exp - 1023;
    if e >= 1 - bias && e <= bias {
        return Some(out_sign | ((e + bias) as u64) << man_bits | man >> (52 - man_bits));
    }
    let min_sub = 1 - bias - man_bits as i64;
    if e >= min_sub && e < 1 - bias {
        let full = (1u64 << 52) | man;
        let shift = 52 - (e - min_sub) as u32;
        return Some(out_sign | full >> shift);
    }
    None
}

/// The canonical encoding of a float: the shortest of binary16/32/64 that widens back to the
/// identical 64-bit pattern (spec §3.1).
pub fn canonical_float(f: f64) -> Vec<u8> {
    let bits = f.to_bits();
    if let Some(h) = narrow(bits, 5, 10).filter(|&h| widen16(h as u16) == bits) {
        return [&[0xf9][..], &(h as u16).to_be_bytes()].concat();
    }
    if let Some(s) = narrow(bits, 8, 23).filter(|&s| widen32(s as u32) == bits) {
        return [&[0xfa][..], &(s as u32).to_be_bytes()].concat();
    }
    [&[0xfb][..], &bits.to_be_bytes()].concat()
}

/// Re-encodes a value decoded by ciborium in this project's canonical form (spec §3.1), with
/// maps sorted by encoded key: an oracle independent of the crate's encoder.
pub fn canonical_from_ciborium(v: &ciborium::Value) -> Vec<u8> {
    use ciborium::Value as V;
    match v {
        V::Integer(i) => {
            let i = i128::from(*i);
            if i >= 0 && i <= i128::from(u64::MAX) {
                C::U(i as u64).enc()
            } else if (-(1i128 << 64)..0).contains(&i) {
                C::N((-1 - i) as u64).enc()
            } else {
                let (tag, mag) = if i > 0 {
                    (2, i as u128)
                } else {
                    (3, (-1 - i) as u128)
                };
                let be = mag.to_be_bytes();
                let start = be.iter().position(|&b| b != 0).unwrap_or(16);
                C::Tag(tag, Box::new(C::B(be[start..].to_vec()))).enc()
            }
        }
        V::Bytes(b) => C::B(b.clone()).enc(),
        V::Text(s) => C::T(s.clone()).enc(),
        V::Float(f) => canonical_float(*f),
        V::Bool(b) => C::Bool(*b).enc(),
        V::Null => C::Null.enc(),
        V::Tag(tag, inner) => [head(6, *tag), canonical_from_ciborium(inner)].concat(),
        V::Array(items) => {
            let mut out = head(4, items.len() as u64);
            items
                .iter()
                .for_each(|i| out.extend(canonical_from_ciborium(i)));
            out
        }
        V::Map(entries) => {
            let mut encoded: Vec<(Vec<u8>, Vec<u8>)> = entries
                .iter()
                .map(|(k, v)| (canonical_from_ciborium(k), canonical_from_ciborium(v)))
                .collect();
            encoded.sort();
            let mut out = head(5, encoded.len() as u64);
            for (k, v) in encoded {
                out.extend(k);
                out.extend(v);
            }
            out
        }
        other => panic!("item kind outside the canonical subset: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest pieces (spec §3)

pub fn raw_blob(offset: u64, data: &[u8]) -> C {
    let digests = data
        .chunks(CHUNK)
        .map(|c| C::B(sha256(c).to_vec()))
        .collect();
    C::map(vec![
        ("offset", C::U(offset)),
        ("length", C::U(data.len() as u64)),
        ("sha256", C::A(digests)),
    ])
}

pub fn tensor(blob: Option<u64>, dtype: &str, shape: &[u64]) -> C {
    C::wrap(
        "tensor",
        C::map(vec![
            ("blob", blob.map_or(C::Null, C::U)),
            ("dtype", t(dtype)),
            ("shape", C::A(shape.iter().map(|&d| C::U(d)).collect())),
        ]),
    )
}

pub fn manifest(root: C, blobs: Vec<C>, metadata: &[(&str, &str)]) -> C {
    C::map(vec![
        ("root", root),
        ("blobs", C::A(blobs)),
        ("version", C::U(1)),
        (
            "metadata",
            C::map(metadata.iter().map(|(k, v)| (*k, t(v))).collect()),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// Layout (spec §1)

pub fn header() -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// Header and blob region, built blob by blob.
pub struct Blobs {
    pub bytes: Vec<u8>,
}

impl Blobs {
    pub fn new() -> Blobs {
        Blobs { bytes: header() }
    }

    /// Appends `data` and its zero padding; returns its offset.
    pub fn add(&mut self, data: &[u8]) -> u64 {
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(data);
        while !self.bytes.len().is_multiple_of(64) {
            self.bytes.push(0);
        }
        offset
    }
}

pub fn footer(manifest_offset: u64, manifest: &[u8], signatures_length: u64) -> [u8; 64] {
    let mut f = [0u8; 64];
    f[0..8].copy_from_slice(&manifest_offset.to_le_bytes());
    f[8..16].copy_from_slice(&(manifest.len() as u64).to_le_bytes());
    f[16..24].copy_from_slice(&signatures_length.to_le_bytes());
    f[24..56].copy_from_slice(&sha256(manifest));
    f[56..64].copy_from_slice(&END_MAGIC);
    f
}

/// The message of spec §6.
pub fn signed_message(content_length: u64, manifest_sha256: &[u8; 32]) -> Vec<u8> {
    [DOMAIN, &content_length.to_le_bytes(), manifest_sha256].concat()
}

pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn signature_block(entries: &[([u8; 32], [u8; 64])]) -> Vec<u8> {
    C::A(
        entries
            .iter()
            .map(|(k, s)| C::map(vec![("key", C::B(k.to_vec())), ("sig", C::B(s.to_vec()))]))
            .collect(),
    )
    .enc()
}

/// Signature entries by each key in `signers` over `prefix ‖ manifest`.
pub fn sign_entries(
    prefix_len: u64,
    manifest: &[u8],
    signers: &[&SigningKey],
) -> Vec<([u8; 32], [u8; 64])> {
    let message = signed_message(prefix_len + manifest.len() as u64, &sha256(manifest));
    signers
        .iter()
        .map(|k| (k.verifying_key().to_bytes(), k.sign(&message).to_bytes()))
        .collect()
}

/// A complete file: `prefix` (header and blobs), manifest, signature block, footer.
pub fn assemble(prefix: &[u8], manifest: &[u8], signatures: &[u8]) -> Vec<u8> {
    let mut f = prefix.to_vec();
    f.extend_from_slice(manifest);
    f.extend_from_slice(signatures);
    f.extend(footer(
        prefix.len() as u64,
        manifest,
        signatures.len() as u64,
    ));
    f
}

/// A complete file signed by `signers`.
pub fn assemble_signed(prefix: &[u8], manifest: &[u8], signers: &[&SigningKey]) -> Vec<u8> {
    let entries = sign_entries(prefix.len() as u64, manifest, signers);
    assemble(prefix, manifest, &signature_block(&entries))
}

/// The footer fields of a file: (manifest_offset, manifest_length, signatures_length).
pub fn footer_fields(file: &[u8]) -> (usize, usize, usize) {
    let f = &file[file.len() - 64..];
    let u = |i: usize| u64::from_le_bytes(f[i..i + 8].try_into().unwrap()) as usize;
    (u(0), u(8), u(16))
}

/// The manifest bytes of a well-formed file.
pub fn manifest_of(file: &[u8]) -> &[u8] {
    let (off, len, _) = footer_fields(file);
    &file[off..off + len]
}

/// The signature block of a well-formed file.
pub fn signatures_of(file: &[u8]) -> &[u8] {
    let (off, len, sig) = footer_fields(file);
    &file[off + len..off + len + sig]
}

/// The file with its manifest replaced (footer fixed up, signature block kept as it was).
pub fn with_manifest(file: &[u8], manifest: &[u8]) -> Vec<u8> {
    let (off, _, _) = footer_fields(file);
    assemble(&file[..off], manifest, signatures_of(file))
}

/// Offset of the only occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> usize {
    let hits: Vec<usize> = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "needle {needle:02x?} found {} times",
        hits.len()
    );
    hits[0]
}

/// A small signed file built by the spec kit: two blobs, a dict of tensors, metadata.
/// Returns the file, its prefix length and the manifest item.
pub fn small_file(signers: &[&SigningKey]) -> (Vec<u8>, C) {
    let (prefix, m) = small_parts();
    (assemble_signed(&prefix, &m.enc(), signers), m)
}

/// The prefix (header and blobs) and manifest of [`small_file`].
pub fn small_parts() -> (Vec<u8>, C) {
    let mut blobs = Blobs::new();
    let a: Vec<u8> = (1..=6u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let b = [7u8, 8, 9];
    let oa = blobs.add(&a);
    let ob = blobs.add(&b);
    let root = C::wrap(
        "dict",
        C::A(vec![
            C::A(vec![t("w"), tensor(Some(0), "float32", &[2, 3])]),
            C::A(vec![t("b"), tensor(Some(1), "uint8", &[3])]),
            C::A(vec![t("e"), tensor(None, "int64", &[0, 5])]),
        ]),
    );
    let m = manifest(
        root,
        vec![raw_blob(oa, &a), raw_blob(ob, &b)],
        &[("run_id", "kit"), ("step", "3")],
    );
    (blobs.bytes, m)
}

// ---------------------------------------------------------------------------------------------
// Python equality of keys (spec §3.3), written from the spec: numbers as exact binary fractions,
// compared pairwise, independently of the crate's key identities.

use tensorseal::{DType, Node, Typed};

/// An exact real value: NaN, an infinity, or `(-1)^negative × odd × 2^exp` with `odd` an odd
/// big-endian magnitude without leading zeros (zero is `odd` empty, positive, `exp` 0).
#[derive(Debug, Clone, PartialEq)]
pub enum Real {
    NaN,
    Inf(bool),
    Exact {
        negative: bool,
        odd: Vec<u8>,
        exp: i64,
    },
}

impl Real {
    /// `(-1)^negative × magnitude × 2^exp`, normalised.
    pub fn exact(negative: bool, magnitude: &[u8], exp: i64) -> Real {
        let mut m: Vec<u8> = magnitude.iter().copied().skip_while(|&b| b == 0).collect();
        if m.is_empty() {
            return Real::Exact {
                negative: false,
                odd: m,
                exp: 0,
            };
        }
        let mut exp = exp;
        // Divide by two while even: shift the big-endian bytes right by one bit.
        while m.last().is_some_and(|b| b & 1 == 0) {
            let mut carry = 0u8;
            for b in m.iter_mut() {
                let next = *b & 1;
                *b = (*b >> 1) | (carry << 7);
                carry = next;
            }
            if m[0] == 0 {
                m.remove(0);
            }
            exp += 1;
        }
        Real::Exact {
            negative,
            odd: m,
            exp,
        }
    }

    /// An IEEE 754 binary value with `e` exponent bits and `f` fraction bits.
    pub fn ieee(bits: u64, e: u32, f: u32) -> Real {
        let negative = bits >> (e + f) & 1 == 1;
        let exponent = (bits >> f) & ((1 << e) - 1);
        let fraction = bits & ((1 << f) - 1);
        let bias = (1i64 << (e - 1)) - 1;
        if exponent == (1 << e) - 1 {
            return if fraction == 0 {
                Real::Inf(negative)
            } else {
                Real::NaN
            };
        }
        let (mantissa, exp) = if exponent == 0 {
            (fraction, 1 - bias - i64::from(f))
        } else {
            (fraction | 1 << f, exponent as i64 - bias - i64::from(f))
        };
        Real::exact(negative, &mantissa.to_be_bytes(), exp)
    }
}

/// A number: its real and imaginary parts.
fn number(n: &Node) -> Option<(Real, Real)> {
    let zero = Real::exact(false, &[], 0);
    let int =
        |negative: bool, magnitude: &[u8]| (Real::exact(negative, magnitude, 0), zero.clone());
    let f64_of = |b: &[u8]| Real::ieee(u64::from_le_bytes(b[..8].try_into().unwrap()), 11, 52);
    let f32_of = |b: &[u8]| {
        Real::ieee(
            u64::from(u32::from_le_bytes(b[..4].try_into().unwrap())),
            8,
            23,
        )
    };
    Some(match n {
        Node::Bool(b) => int(false, &[u8::from(*b)]),
        Node::Int(i) => {
            let (negative, magnitude) = i.to_sign_magnitude();
            int(negative, &magnitude)
        }
        Node::Float(f) => (Real::ieee(f.to_bits(), 11, 52), zero),
        Node::Complex(re, im) => (
            Real::ieee(re.to_bits(), 11, 52),
            Real::ieee(im.to_bits(), 11, 52),
        ),
        Node::Typed(t) => match &**t {
            Typed::NumpyScalar { dtype, bytes: b } => match dtype {
                DType::Bool => int(false, &[u8::from(b[0] != 0)]),
                DType::U8 | DType::U16 | DType::U32 | DType::U64 => {
                    let be: Vec<u8> = b.iter().rev().copied().collect();
                    int(false, &be)
                }
                DType::I8 | DType::I16 | DType::I32 | DType::I64 => {
                    let mut v = [if b[b.len() - 1] & 0x80 != 0 { 0xff } else { 0 }; 8];
                    v[..b.len()].copy_from_slice(b);
                    let v = i64::from_le_bytes(v);
                    int(v < 0, &v.unsigned_abs().to_be_bytes())
                }
                DType::F16 => (
                    Real::ieee(u64::from(u16::from_le_bytes([b[0], b[1]])), 5, 10),
                    zero,
                ),
                DType::F32 => (f32_of(b), zero),
                DType::F64 => (f64_of(b), zero),
                DType::C64 => (f32_of(b), f32_of(&b[4..])),
                DType::C128 => (f64_of(b), f64_of(&b[8..])),
                _ => return None,
            },
            _ => return None,
        },
        _ => return None,
    })
}

/// Whether Python's `==` holds between two keys (spec §3.3), without the rule that identical
/// encodings are always equal: see [`duplicate_keys`].
pub fn python_equal(a: &Node, b: &Node) -> bool {
    if let (Some((ar, ai)), Some((br, bi))) = (number(a), number(b)) {
        // NaN equals nothing.
        return ar != Real::NaN && ai != Real::NaN && ar == br && ai == bi;
    }
    // torch.Size is a tuple subclass: it compares as the tuple of its ints.
    let as_tuple = |n: &Node| -> Option<Vec<Node>> {
        match n {
            Node::Tuple(items) => Some(items.clone()),
            Node::Typed(t) => match &**t {
                Typed::TorchSize(dims) => Some(dims.iter().map(|&d| Node::Int(d.into())).collect()),
                _ => None,
            },
            _ => None,
        }
    };
    match (a, b) {
        (Node::None, Node::None) => true,
        (Node::Str(x), Node::Str(y)) => x == y,
        (Node::Bytes(x), Node::Bytes(y)) => x == y,
        (Node::FrozenSet(x), Node::FrozenSet(y)) => {
            x.len() == y.len() && x.iter().all(|e| y.iter().any(|f| duplicate_keys(e, f)))
        }
        (Node::Typed(x), Node::Typed(y)) => match (&**x, &**y) {
            (Typed::Slice(p), Typed::Slice(q)) => {
                p.iter().zip(q.iter()).all(|(e, f)| duplicate_keys(e, f))
            }
            _ => match (as_tuple(a), as_tuple(b)) {
                (Some(x), Some(y)) => tuples_equal(&x, &y),
                _ => false,
            },
        },
        _ => match (as_tuple(a), as_tuple(b)) {
            (Some(x), Some(y)) => tuples_equal(&x, &y),
            _ => false,
        },
    }
}

fn tuples_equal(x: &[Node], y: &[Node]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(e, f)| duplicate_keys(e, f))
}

/// Whether two keys of one dict (or elements of one set) are duplicates (spec §3.3): identical
/// encodings (`==` on nodes is bitwise), or equal in Python. Containers compare their elements
/// the same way, as Python compares identical objects as equal first.
pub fn duplicate_keys(a: &Node, b: &Node) -> bool {
    a == b || python_equal(a, b)
}
