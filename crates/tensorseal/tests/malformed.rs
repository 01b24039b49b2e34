//! Malformed files, built byte by byte with the spec kit in `common`: each must be rejected with
//! the specific error variant, naming the section and the offset of the offending bytes.

mod common;

use common::*;
use tensorseal::{Checkpoint, Limits, MAX_TREE_DEPTH_HARD, ReadError};

fn open(bytes: Vec<u8>) -> Result<Checkpoint, ReadError> {
    Checkpoint::from_vec(bytes, &Limits::default())
}

fn open_err(bytes: Vec<u8>) -> ReadError {
    match open(bytes) {
        Ok(c) => panic!("a malformed file was accepted: {c:?}"),
        Err(e) => e,
    }
}

/// Asserts a manifest CBOR error at `offset` whose message contains `what`.
#[track_caller]
fn assert_cbor(err: ReadError, section: &str, offset: usize, what: &str) {
    match &err {
        ReadError::Cbor {
            section: s,
            offset: o,
            what: w,
        } if *s == section && *o == offset as u64 && w.contains(what) => {}
        _ => panic!("expected a {section} CBOR error {what:?} at offset {offset}, got {err:?}"),
    }
}

/// Asserts a schema error at `offset` whose path and message contain the given text.
#[track_caller]
fn assert_schema(err: ReadError, section: &str, offset: usize, path: &str, what: &str) {
    match &err {
        ReadError::Schema {
            section: s,
            offset: o,
            path: p,
            what: w,
        } if *s == section && *o == offset as u64 && p == path && w.contains(what) => {}
        _ => panic!(
            "expected a {section} schema error {what:?} at {path} (offset {offset}), got {err:?}"
        ),
    }
}

#[track_caller]
fn assert_limit(err: ReadError, what: &str, limit: u64, offset: usize) {
    match &err {
        ReadError::LimitExceeded {
            what: w,
            limit: l,
            offset: o,
            ..
        } if *w == what && *l == limit && *o == offset as u64 => {}
        _ => panic!("expected {what} (limit {limit}) at offset {offset}, got {err:?}"),
    }
}

/// A manifest with no blobs whose root is `root`, in a file; returns the file and the offset of
/// the root item.
fn file_with_root(root: C) -> (Vec<u8>, usize) {
    let m = manifest(root.clone(), vec![], &[]).enc();
    let file = assemble(&header(), &m, &signature_block(&[]));
    // "root" is the first key after "ext" (absent), so the root item follows it directly.
    let at = 64 + find(&m, &t("root").enc()) + 5;
    (file, at)
}

#[test]
fn the_spec_kit_builds_files_the_reader_accepts() {
    let key = signing_key(1);
    let (file, _) = small_file(&[&key]);
    let ckpt = open(file).unwrap();
    let trusted = tensorseal::PublicKey::from_bytes(&key.verifying_key().to_bytes()).unwrap();
    let report = ckpt
        .verify(&tensorseal::TrustPolicy::trusting(vec![trusted]))
        .unwrap();
    assert!(report.authenticated);
    assert_eq!(report.blobs, 2);
    assert_eq!(ckpt.root().tensors().len(), 3);
}

#[test]
fn truncation_at_every_offset_is_detected() {
    let (file, _) = small_file(&[&signing_key(1), &signing_key(2)]);
    for n in 0..file.len() {
        let err = open_err(file[..n].to_vec());
        match err {
            ReadError::TooShort { len } if n < 128 => assert_eq!(len, n as u64),
            // The last 8 bytes of a truncated file are not the end magic.
            ReadError::BadMagic {
                which: "footer",
                offset,
            } if n >= 128 => assert_eq!(offset, n as u64 - 8),
            other => panic!("truncated to {n} bytes: {other:?}"),
        }
    }
    // Through the file system too, and as a verification failure.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tseal");
    for n in [0, 1, 64, 127, 128, 200, file.len() - 1] {
        std::fs::write(&path, &file[..n]).unwrap();
        let err = tensorseal::Checkpoint::open_verified(
            &path,
            &tensorseal::TrustPolicy::integrity_only(),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                tensorseal::VerifyError::Malformed(
                    ReadError::TooShort { .. } | ReadError::BadMagic { .. }
                )
            ),
            "{n}: {err:?}"
        );
    }
}

#[test]
fn a_byte_cut_before_the_footer_breaks_the_tiling() {
    let (file, _) = small_file(&[&signing_key(1)]);
    let mut cut = file.clone();
    cut.remove(file.len() - 65);
    let len = cut.len();
    match open_err(cut) {
        ReadError::Layout { offset, what } => {
            assert_eq!(offset, len as u64 - 64);
            assert!(what.contains(&format!("the file has {len}")), "{what}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn trailing_bytes_after_the_footer_are_rejected() {
    let (file, _) = small_file(&[&signing_key(1)]);
    let mut one = file.clone();
    one.push(0);
    let len = one.len();
    assert!(matches!(
        open_err(one),
        ReadError::BadMagic { which: "footer", offset } if offset == len as u64 - 8
    ));
    // A second copy of the footer: the last 64 bytes are a valid footer that does not describe
    // this file's length.
    let mut twice = file.clone();
    twice.extend_from_slice(&file[file.len() - 64..]);
    let len = twice.len();
    assert!(matches!(
        open_err(twice),
        ReadError::Layout { offset, .. } if offset == len as u64 - 64
    ));
}

#[test]
fn header_fields_are_checked() {
    let (file, _) = small_file(&[]);
    let mut bad = file.clone();
    bad[0] = b'P';
    assert!(matches!(
        open_err(bad),
        ReadError::BadMagic {
            which: "header",
            offset: 0
        }
    ));
    let mut v3 = file.clone();
    v3[8] = 3;
    assert!(matches!(
        open_err(v3),
        ReadError::UnsupportedVersion { version: 3 }
    ));
    // Version 2 is read, but only for files with a plane-coded blob.
    let mut v2 = file.clone();
    v2[8] = 2;
    assert!(matches!(
        open_err(v2),
        ReadError::Layout { offset: 8, what } if what.contains("manifest is version 1")
    ));
    for at in [12, 40, 63] {
        let mut r = file.clone();
        r[at] = 0x80;
        assert!(
            matches!(open_err(r), ReadError::ReservedNotZero { offset } if offset == at as u64)
        );
    }
    let mut end = file.clone();
    let n = end.len();
    end[n - 1] = b'd';
    assert!(matches!(
        open_err(end),
        ReadError::BadMagic { which: "footer", offset } if offset == n as u64 - 8
    ));
}

/// Overwrites footer field `field` (0, 8 or 16) with `value`.
fn set_footer(file: &[u8], field: usize, value: u64) -> Vec<u8> {
    let mut f = file.to_vec();
    let at = f.len() - 64 + field;
    f[at..at + 8].copy_from_slice(&value.to_le_bytes());
    f
}

#[test]
fn footer_arithmetic_cannot_overflow() {
    let (file, _) = small_file(&[&signing_key(1)]);
    let footer_at = file.len() - 64;
    // Over the manifest length limit: refused before any arithmetic.
    assert_limit(
        open_err(set_footer(&file, 8, u64::MAX)),
        "max_manifest_length",
        64 << 20,
        footer_at + 8,
    );
    // With every limit raised, the sums overflow and must be reported, not wrap.
    let raised = Limits {
        max_manifest_length: u64::MAX,
        ..Limits::default()
    };
    for (field, value) in [
        (8, u64::MAX),
        (8, u64::MAX - 100),
        (16, u64::MAX),
        (16, u64::MAX - 63),
        (0, !63),
    ] {
        let err = Checkpoint::from_vec(set_footer(&file, field, value), &raised).unwrap_err();
        match err {
            ReadError::Layout { offset, what } => {
                assert_eq!(offset, footer_at as u64);
                assert!(what.contains("more than 2^64"), "{field} {value}: {what}");
            }
            other => panic!("{field} {value}: {other:?}"),
        }
    }
    // Misaligned or inside the header.
    for value in [0, 32, 65, 191] {
        assert!(matches!(
            open_err(set_footer(&file, 0, value)),
            ReadError::Layout { offset, .. } if offset == footer_at as u64
        ));
    }
}

#[test]
fn non_zero_padding_is_found_at_its_offset() {
    let (file, _) = small_file(&[&signing_key(1)]);
    // Blob 0 is 24 bytes at 64 (padding 88..128); blob 1 is 3 bytes at 128 (padding 131..192).
    for at in [88, 100, 127, 131, 191] {
        let mut bad = file.clone();
        bad[at] = 0x01;
        match open_err(bad) {
            ReadError::NonZeroPadding { offset } => assert_eq!(offset, at as u64),
            other => panic!("{at}: {other:?}"),
        }
    }
}

/// The small file with blob 1's entry changed by `edit`, the manifest re-encoded, and the offset
/// of blob 1's `field` value.
fn edit_blob1(prefix: Vec<u8>, edit: impl Fn(&mut Vec<(C, C)>), field: &str) -> (Vec<u8>, usize) {
    let (_, m) = small_parts();
    let C::M(mut top) = m else { unreachable!() };
    let blobs = top.iter_mut().find(|(k, _)| *k == t("blobs")).unwrap();
    let C::A(list) = &mut blobs.1 else {
        unreachable!()
    };
    let C::M(entry) = &mut list[1] else {
        unreachable!()
    };
    edit(entry);
    let entry_bytes = list[1].enc();
    let m = C::M(top).enc();
    let field_value = entry_bytes
        .windows(field.len() + 1)
        .position(|w| w == t(field).enc())
        .unwrap()
        + field.len()
        + 1;
    let at = prefix.len() + find(&m, &entry_bytes) + field_value;
    (assemble(&prefix, &m, &signature_block(&[])), at)
}

fn set(entry: &mut [(C, C)], field: &str, value: C) {
    entry.iter_mut().find(|(k, _)| *k == t(field)).unwrap().1 = value;
}

#[test]
fn overlapping_misaligned_and_gapped_blobs_are_rejected() {
    let (prefix, _) = small_parts();
    // Blob 1 starts where blob 0 starts (overlap), inside blob 0's padding, misaligned, or one
    // boundary too late (a gap).
    for offset in [64, 96, 131, 192] {
        let (file, at) = edit_blob1(prefix.clone(), |e| set(e, "offset", C::U(offset)), "offset");
        assert_schema(
            open_err(file),
            "manifest",
            at,
            "blobs[1].offset",
            "layout puts it at 128",
        );
    }
}

#[test]
fn blobs_running_past_the_manifest_or_the_format_limit_are_rejected() {
    let (prefix, _) = small_parts();
    // A blob of 3 stored bytes that claims 100 (its tensor agrees): it would end (aligned) at
    // 256, past the manifest at 192.
    let mut blobs = Blobs::new();
    let at = blobs.add(&[7, 8, 9]);
    let m = manifest(
        C::A(vec![tensor(Some(0), "uint8", &[100])]),
        vec![raw_blob(at, &[0; 100])],
        &[],
    );
    match open_err(assemble(&blobs.bytes, &m.enc(), &signature_block(&[]))) {
        ReadError::Layout { offset, what } => {
            assert_eq!(offset, 128);
            assert!(what.contains("blobs end (aligned) at 192"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    // Lengths whose end overflows or passes 2^62 are schema errors, not arithmetic panics.
    for length in [1u64 << 62, u64::MAX - 100, u64::MAX] {
        let (file, at) = edit_blob1(
            prefix.clone(),
            |e| {
                set(e, "length", C::U(length));
                set(e, "sha256", C::A(vec![]));
            },
            "length",
        );
        assert_schema(
            open_err(file),
            "manifest",
            at,
            "blobs[1].length",
            "past the maximum file length",
        );
    }
    // A zero-length blob.
    let (file, at) = edit_blob1(prefix, |e| set(e, "length", C::U(0)), "length");
    assert_schema(
        open_err(file),
        "manifest",
        at,
        "blobs[1].length",
        "at least 1",
    );
}

#[test]
fn gaps_before_the_manifest_and_between_regions_are_rejected() {
    let (prefix, m) = small_parts();
    let m = m.enc();
    // 64 zero bytes between the last blob and the manifest.
    let mut gapped = prefix.clone();
    gapped.extend([0u8; 64]);
    match open_err(assemble(&gapped, &m, &signature_block(&[]))) {
        ReadError::Layout { offset, what } => {
            assert_eq!(offset, 256);
            assert!(what.contains("blobs end (aligned) at 192"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    // A byte between the manifest and the signature block, counted in the manifest: trailing
    // bytes after the manifest item.
    let mut long = m.clone();
    long.push(0);
    assert_cbor(
        open_err(assemble(&prefix, &long, &signature_block(&[]))),
        "manifest",
        prefix.len() + m.len(),
        "bytes follow the item",
    );
    // A byte between the signature block and the footer, counted in the signature block.
    let key = signing_key(1);
    let entries = sign_entries(prefix.len() as u64, &m, &[&key]);
    let mut block = signature_block(&entries);
    let block_len = block.len();
    block.push(0);
    assert_cbor(
        open_err(assemble(&prefix, &m, &block)),
        "signature block",
        prefix.len() + m.len() + block_len,
        "bytes follow the item",
    );
    // A byte between the manifest and the signature block, counted in the signature block.
    let block = [vec![0u8], signature_block(&entries)].concat();
    assert_cbor(
        open_err(assemble(&prefix, &m, &block)),
        "signature block",
        prefix.len() + m.len() + 1,
        "bytes follow the item",
    );
}

#[test]
fn non_canonical_heads_and_floats_are_rejected() {
    // Each case: a root item that decodes to a valid value but is not canonical, and the message.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // Non-shortest integers.
        (vec![0x18, 0x05], "shortest"),
        (vec![0x19, 0x00, 0xff], "shortest"),
        (vec![0x1b, 0, 0, 0, 0, 0, 0, 0, 1], "shortest"),
        (vec![0x38, 0x00], "shortest"),
        // Non-shortest lengths.
        (vec![0x78, 0x01, b'a'], "shortest"),
        (vec![0x59, 0x00, 0x01, 0xaa], "shortest"),
        (vec![0x98, 0x00], "shortest"),
        // 0.5 as binary32 and binary64, where binary16 suffices.
        (vec![0xfa, 0x3f, 0x00, 0x00, 0x00], "shortest"),
        (vec![0xfb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0], "shortest"),
        // NaN, infinity and -0.0 as binary64.
        (vec![0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], "shortest"),
        (vec![0xfb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0], "shortest"),
        (vec![0xfb, 0x80, 0, 0, 0, 0, 0, 0, 0], "shortest"),
        // Indefinite lengths.
        (vec![0x9f, 0x01, 0xff], "indefinite"),
        (vec![0x7f, 0x61, b'a', 0xff], "indefinite"),
        (vec![0x5f, 0x41, 0x00, 0xff], "indefinite"),
        (vec![0xbf, 0xff], "indefinite"),
        (vec![0xff], "indefinite"),
        // Tags other than bignums, simple values other than false/true/null.
        (vec![0xc1, 0x01], "unsupported tag 1"),
        (vec![0xd8, 0x40, 0x40], "unsupported tag 64"),
        (vec![0xf7], "simple"),
        (vec![0xf0], "simple"),
        (vec![0xf8, 0x20], "simple"),
        // Bignums that fit 64 bits or have a leading zero.
        (vec![0xc2, 0x41, 0x01], "bignum"),
        (
            vec![
                0xc2, 0x49, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            "bignum",
        ),
        (
            vec![0xc3, 0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            "bignum",
        ),
        // A bignum tag around something other than bytes (the error names the inner item).
        (vec![0xc2, 0x01], "bignum"),
        // Invalid UTF-8.
        (vec![0x62, 0xc3, 0x28], "UTF-8"),
        // Reserved additional information.
        (vec![0x1c], "malformed"),
    ];
    for (raw, what) in cases {
        let (file, at) = file_with_root(C::Raw(raw.clone()));
        let err = open_err(file);
        match &err {
            ReadError::Cbor { .. } => {
                let at = if raw == [0xc2, 0x01] { at + 1 } else { at };
                assert_cbor(err, "manifest", at, what)
            }
            other => panic!("{raw:02x?}: {other:?}"),
        }
    }
}

#[test]
fn canonical_floats_are_accepted_bit_exactly() {
    for bits in [
        0x0000_0000_0000_0000u64,
        0x8000_0000_0000_0000,
        0x7ff0_0000_0000_0000,
        0xfff0_0000_0000_0000,
        0x7ff8_0000_0000_0000,
        0x7ff8_0000_0000_0001,
        0x7ff4_0000_0000_0000, // signalling NaN: binary64 only
        0x7ff0_0000_0000_0001,
        0xfff8_0000_dead_beef,
        0x7ffc_0000_0000_0000, // quiet NaN with a payload binary16 can hold
        0x0000_0000_0000_0001,
        0x3f10_0000_0000_0000, // 2^-14, smallest normal binary16
        0x3e70_0000_0000_0000, // 2^-24, smallest subnormal binary16
        0x3810_0000_0000_0000, // 2^-126
        0x36a0_0000_0000_0000, // 2^-149, smallest subnormal binary32
        0x3fb9_9999_9999_999a,
        0x40ef_fe00_0000_0000, // 65504, largest binary16
        0x47ef_ffff_e000_0000, // largest binary32
    ] {
        let f = f64::from_bits(bits);
        let (file, _) = file_with_root(C::A(vec![C::F(f)]));
        let ckpt = open(file).unwrap_or_else(|e| panic!("{bits:#018x}: {e}"));
        match ckpt.root() {
            tensorseal::Node::List(items) => match items[0] {
                tensorseal::Node::Float(g) => assert_eq!(g.to_bits(), bits, "{bits:#018x}"),
                ref other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn map_keys_must_be_sorted_and_unique() {
    let (prefix, m) = small_parts();
    let C::M(top) = m else { unreachable!() };
    // "blobs" before "root": the second key is out of order.
    let mut unsorted = top.clone();
    unsorted.swap(0, 1);
    let bytes = C::M(unsorted).enc();
    let at = prefix.len() + find(&bytes, &t("root").enc());
    assert_cbor(
        open_err(assemble(&prefix, &bytes, &signature_block(&[]))),
        "manifest",
        at,
        "not in canonical order",
    );
    // Longer keys sort after shorter ones even when their bytes are smaller: "aa" before "b".
    // In the extension area, where no schema looks at the map first.
    let C::M(mut with_ext) = manifest(C::Null, vec![], &[]) else {
        unreachable!()
    };
    let unsorted = C::M(vec![(t("aa"), C::Null), (t("b"), C::Null)]);
    with_ext.insert(
        0,
        (t("ext"), C::map(vec![("org.example.a", unsorted.clone())])),
    );
    let bytes = C::M(with_ext).enc();
    let at = 64 + find(&bytes, &unsorted.enc()) + 1 + 3 + 1;
    assert_cbor(
        open_err(assemble(&header(), &bytes, &signature_block(&[]))),
        "manifest",
        at,
        "not in canonical order",
    );
    // The fields of a tensor out of order: "shape" before "dtype".
    let fields = C::M(vec![
        (t("blob"), C::Null),
        (t("shape"), C::A(vec![C::U(0)])),
        (t("dtype"), t("uint8")),
    ]);
    let (file, at) = file_with_root(C::wrap("tensor", fields.clone()));
    let dtype_at = at + 1 + 7 + find(&fields.enc(), &t("dtype").enc());
    assert_cbor(
        open_err(file),
        "manifest",
        dtype_at,
        "not in canonical order",
    );
    // A duplicated metadata key.
    let meta = C::M(vec![(t("a"), t("1")), (t("a"), t("2"))]);
    let mut dup = top.clone();
    dup.iter_mut().find(|(k, _)| *k == t("metadata")).unwrap().1 = meta.clone();
    let bytes = C::M(dup).enc();
    let at = prefix.len() + find(&bytes, &meta.enc()) + 1 + 2 + 2;
    assert_cbor(
        open_err(assemble(&prefix, &bytes, &signature_block(&[]))),
        "manifest",
        at,
        "duplicated",
    );
}

fn dict(entries: Vec<(C, C)>) -> C {
    C::wrap(
        "dict",
        C::A(entries.into_iter().map(|(k, v)| C::A(vec![k, v])).collect()),
    )
}

#[test]
fn duplicate_dict_keys_and_set_elements_are_rejected() {
    let second = C::A(vec![C::U(1), C::U(2)]);
    let root = dict(vec![(C::U(1), C::Null), (C::U(1), C::Bool(true))]);
    let (file, root_at) = file_with_root(root.clone());
    // The second key: root map (1) + "dict" (5) + array head (1) + first pair (3) + pair head (1).
    assert_schema(
        open_err(file),
        "manifest",
        root_at + 1 + 5 + 1 + 3 + 1,
        "root.dict[1]",
        "duplicate dict key",
    );
    let _ = second;
    // Tuple keys compare by encoding too.
    let tup = || C::wrap("tuple", C::A(vec![t("a"), C::U(0)]));
    let (file, _) = file_with_root(dict(vec![(tup(), C::Null), (tup(), C::Null)]));
    assert!(
        matches!(open_err(file), ReadError::Schema { what, .. } if what.starts_with("duplicate dict key"))
    );
    for kind in ["set", "frozenset"] {
        let root = C::wrap(kind, C::A(vec![t("x"), t("y"), t("x")]));
        let (file, root_at) = file_with_root(root);
        assert_schema(
            open_err(file),
            "manifest",
            root_at + 1 + 1 + kind.len() + 1 + 2 + 2,
            &format!("root.{kind}"),
            "duplicate set element",
        );
    }
    // Unhashable keys.
    let (file, _) = file_with_root(dict(vec![(C::A(vec![]), C::Null)]));
    assert!(
        matches!(open_err(file), ReadError::Schema { what, .. } if what.contains("cannot be a dict key"))
    );
    let (file, _) = file_with_root(C::wrap("set", C::A(vec![dict(vec![])])));
    assert!(
        matches!(open_err(file), ReadError::Schema { what, .. } if what.contains("cannot be a set element"))
    );
}

/// `{"typed": {"type": "numpy.scalar", "value": [dtype, bytes]}}`.
fn numpy_scalar(dtype: &str, bytes: &[u8]) -> C {
    C::wrap(
        "typed",
        C::map(vec![
            ("type", t("numpy.scalar")),
            ("value", C::A(vec![t(dtype), C::B(bytes.to_vec())])),
        ]),
    )
}

/// Whether a dict of the two keys is refused as holding a duplicate, and a set of them too.
fn duplicates(a: &C, b: &C) -> bool {
    let as_dict = dict(vec![(a.clone(), C::Null), (b.clone(), C::Null)]);
    let dict_dup = match open(file_with_root(as_dict).0) {
        Ok(_) => false,
        Err(ReadError::Schema { what, path, .. }) if what.starts_with("duplicate dict key") => {
            assert_eq!(path, "root.dict[1]");
            true
        }
        Err(e) => panic!("{a:?}, {b:?}: {e:?}"),
    };
    let as_set = C::wrap("set", C::A(vec![a.clone(), b.clone()]));
    let set_dup = match open(file_with_root(as_set).0) {
        Ok(_) => false,
        Err(ReadError::Schema { what, .. }) if what.starts_with("duplicate set element") => true,
        Err(e) => panic!("{a:?}, {b:?}: {e:?}"),
    };
    assert_eq!(dict_dup, set_dup, "{a:?}, {b:?}");
    dict_dup
}

#[test]
fn keys_equal_in_python_are_duplicates() {
    // Spec §3.3: Python merges keys that compare equal, so a file must not hold two.
    let complex = |re: f64, im: f64| C::wrap("complex", C::A(vec![C::F(re), C::F(im)]));
    let tuple = |items: Vec<C>| C::wrap("tuple", C::A(items));
    let frozenset = |items: Vec<C>| C::wrap("frozenset", C::A(items));
    let one = [
        C::U(1),
        C::F(1.0),
        C::Bool(true),
        complex(1.0, 0.0),
        complex(1.0, -0.0),
        numpy_scalar("bool", &[1]),
        numpy_scalar("int64", &1i64.to_le_bytes()),
        numpy_scalar("float16", &[0x00, 0x3c]),
        numpy_scalar(
            "complex64",
            &[1f32.to_le_bytes(), 0f32.to_le_bytes()].concat(),
        ),
    ];
    for (i, a) in one.iter().enumerate() {
        for b in &one[i + 1..] {
            assert!(duplicates(a, b), "{a:?} and {b:?} are both 1");
        }
    }
    let zero = [
        C::U(0),
        C::F(0.0),
        C::F(-0.0),
        C::Bool(false),
        complex(-0.0, 0.0),
    ];
    for (i, a) in zero.iter().enumerate() {
        for b in &zero[i + 1..] {
            assert!(duplicates(a, b), "{a:?} and {b:?} are both 0");
        }
    }
    // A float with a huge integral value equals that integer exactly: int(1e300), 125 bytes.
    let mut int_1e300 = hex::decode("17e43c8800759c").unwrap();
    int_1e300.resize(125, 0);
    let big = C::Tag(2, Box::new(C::B(int_1e300.clone())));
    assert!(duplicates(&C::F(1e300), &big));
    int_1e300[124] = 1;
    assert!(!duplicates(
        &C::F(1e300),
        &C::Tag(2, Box::new(C::B(int_1e300)))
    ));
    assert!(duplicates(&C::F(-(2f64.powi(64))), &C::N(u64::MAX)));
    // Containers: tuples element-wise, torch.Size as a tuple, frozensets in any order.
    assert!(duplicates(
        &tuple(vec![C::U(1), t("a")]),
        &tuple(vec![C::F(1.0), t("a")])
    ));
    assert!(!duplicates(
        &tuple(vec![C::U(1), C::U(2)]),
        &tuple(vec![C::U(2), C::U(1)])
    ));
    let size = C::wrap(
        "typed",
        C::map(vec![
            ("type", t("torch.Size")),
            ("value", tuple(vec![C::U(2), C::U(3)])),
        ]),
    );
    assert!(duplicates(&size, &tuple(vec![C::U(2), C::F(3.0)])));
    assert!(duplicates(
        &frozenset(vec![C::U(1), t("x")]),
        &frozenset(vec![t("x"), C::Bool(true)])
    ));
    assert!(!duplicates(
        &frozenset(vec![C::U(1)]),
        &tuple(vec![C::U(1)])
    ));
    // Unequal values, and text never equals bytes.
    for (a, b) in [
        (C::F(0.5), C::U(0)),
        (C::U(1), C::U(2)),
        (t("1"), C::U(1)),
        (t("a"), C::B(b"a".to_vec())),
        (C::Null, C::U(0)),
        (complex(1.0, 1.0), C::F(1.0)),
        (numpy_scalar("float32", &0.1f32.to_le_bytes()), C::F(0.1)),
        (C::F(f64::INFINITY), C::F(f64::NEG_INFINITY)),
    ] {
        assert!(!duplicates(&a, &b), "{a:?} and {b:?} differ");
    }
    // NaN equals nothing: NaNs are duplicates only when their encodings are identical.
    let other_nan = C::F(f64::from_bits(0x7ff8_0000_0000_0001));
    assert!(!duplicates(&C::F(f64::NAN), &other_nan));
    assert!(!duplicates(&C::F(f64::NAN), &complex(f64::NAN, 0.0)));
    assert!(duplicates(&C::F(f64::NAN), &C::F(f64::NAN)));
    assert!(duplicates(&complex(f64::NAN, 0.0), &complex(f64::NAN, 0.0)));
}

#[test]
fn unknown_fields_dtypes_kinds_and_types_are_rejected() {
    // Top level.
    let (prefix, m) = small_parts();
    let C::M(mut top) = m else { unreachable!() };
    top.push((t("zzzzzzzzzz"), C::Null));
    let bytes = C::M(top).enc();
    let at = prefix.len() + find(&bytes, &t("zzzzzzzzzz").enc());
    assert_schema(
        open_err(assemble(&prefix, &bytes, &signature_block(&[]))),
        "manifest",
        at,
        "top level",
        "unknown field \"zzzzzzzzzz\" in manifest",
    );
    // In a blob.
    let (file, _) = edit_blob1(prefix.clone(), |e| e.push((t("zzzzzz"), C::Null)), "zzzzzz");
    assert!(matches!(
        open_err(file),
        ReadError::Schema { path, what, .. } if path == "blobs[1]" && what.contains("unknown field \"zzzzzz\" in blob")
    ));
    // In a tensor, and an unknown dtype, node kind, tensor kind and typed-value type.
    let tensor_with = |extra: (&str, C)| {
        C::wrap(
            "tensor",
            C::map(vec![
                ("blob", C::Null),
                ("dtype", t("float32")),
                ("shape", C::A(vec![C::U(0)])),
                extra,
            ]),
        )
    };
    let cases: Vec<(C, &str, &str)> = vec![
        (
            tensor_with(("zzz", C::Null)),
            "root.tensor",
            "unknown field \"zzz\" in tensor",
        ),
        (
            tensor(None, "float128", &[0]),
            "root.tensor.dtype",
            "unknown dtype \"float128\"",
        ),
        (
            tensor(None, "Float32", &[0]),
            "root.tensor.dtype",
            "unknown dtype",
        ),
        (
            tensor_with(("kind", t("variable"))),
            "root.tensor.kind",
            "unknown tensor kind",
        ),
        (
            tensor_with(("requires_grad", C::Bool(false))),
            "root.tensor.requires_grad",
            "absent or true",
        ),
        (
            C::wrap("weird", C::Null),
            "root.weird",
            "unknown node kind \"weird\"",
        ),
        (
            C::wrap(
                "typed",
                C::map(vec![
                    ("type", t("collections.deque")),
                    ("value", C::A(vec![])),
                ]),
            ),
            "root.typed.type",
            "unknown typed value type \"collections.deque\"",
        ),
        (
            C::wrap(
                "typed",
                C::map(vec![("type", t("torch.dtype")), ("value", t("float128"))]),
            ),
            "root.typed.value",
            "torch dtype name",
        ),
        (
            C::wrap(
                "global",
                C::map(vec![("module", t("os")), ("name", t("sys\ntem"))]),
            ),
            "root.global.name",
            "control characters",
        ),
        (
            C::M(vec![(t("tuple"), C::A(vec![])), (t("zlist"), C::A(vec![]))]),
            "root",
            "exactly one key",
        ),
    ];
    for (root, path, what) in cases {
        let (file, _) = file_with_root(root.clone());
        match open_err(file) {
            ReadError::Schema {
                section: "manifest",
                path: p,
                what: w,
                ..
            } if p == path && w.contains(what) => {}
            other => panic!("{root:?}: expected {what:?} at {path}, got {other:?}"),
        }
    }
}

#[test]
fn the_extension_area_is_ignored_but_must_hold_canonical_text_keyed_maps() {
    let with_ext = |ext: C| {
        let C::M(mut top) = manifest(C::Null, vec![], &[]) else {
            unreachable!()
        };
        top.insert(0, (t("ext"), ext));
        assemble(&header(), &C::M(top).enc(), &signature_block(&[]))
    };
    let ok = with_ext(C::map(vec![(
        "org.example.a",
        C::A(vec![C::U(1), C::F(0.5)]),
    )]));
    let ckpt = open(ok).unwrap();
    assert_eq!(ckpt.manifest().ext.len(), 1);
    // Empty: must be absent instead.
    assert!(
        matches!(open_err(with_ext(C::M(vec![]))), ReadError::Schema { path, .. } if path == "ext")
    );
    // Non-canonical inside ext.
    let err = open_err(with_ext(C::map(vec![(
        "org.example.a",
        C::Raw(vec![0x18, 0x01]),
    )])));
    assert!(matches!(err, ReadError::Cbor { .. }), "{err:?}");
    // A signalling binary16 NaN: as long as its canonical (quiet) form, but not it. Bytes in
    // ext are kept verbatim, so only the head check catches it.
    let err = open_err(with_ext(C::map(vec![(
        "org.example.a",
        C::Raw(vec![0xf9, 0xfc, 0x01]),
    )])));
    assert!(
        matches!(&err, ReadError::Cbor { what, .. } if what.contains("shortest")),
        "{err:?}"
    );
}

#[test]
fn maps_inside_the_extension_area_have_text_keys() {
    // Spec §3.1: "All maps in the manifest have text keys", ext included.
    let C::M(mut top) = manifest(C::Null, vec![], &[]) else {
        unreachable!()
    };
    let inner = C::M(vec![(C::U(1), C::U(2))]);
    top.insert(
        0,
        (t("ext"), C::map(vec![("org.example.a", inner.clone())])),
    );
    let m = C::M(top).enc();
    let at = 64 + find(&m, &inner.enc()) + 1;
    let err = open_err(assemble(&header(), &m, &signature_block(&[])));
    assert_cbor(err, "manifest", at, "text");
}

#[test]
fn huge_declared_counts_and_lengths_fail_fast() {
    let started = std::time::Instant::now();
    let cases: Vec<Vec<u8>> = vec![
        // An array of 2^40 items, a map of 2^63 entries, strings of 2^62 bytes.
        vec![0x9b, 0, 0, 1, 0, 0, 0, 0, 0],
        vec![0xbb, 0x80, 0, 0, 0, 0, 0, 0, 0],
        vec![0x5b, 0x40, 0, 0, 0, 0, 0, 0, 0],
        vec![0x7b, 0x40, 0, 0, 0, 0, 0, 0, 0],
        vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        vec![0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        // A bignum of 2^32 bytes.
        vec![0xc2, 0x5a, 0xff, 0xff, 0xff, 0xff],
    ];
    for raw in cases {
        let (file, at) = file_with_root(C::Raw(raw.clone()));
        let err = open_err(file);
        match &err {
            ReadError::Cbor { what, .. } if what.contains("truncated") => {
                // The bignum's error is at its byte string, the others at their own head.
                let expected = if raw[0] == 0xc2 { at + 1 } else { at };
                assert_cbor(err, "manifest", expected, "truncated");
            }
            other => panic!("{raw:02x?}: {other:?}"),
        }
    }
    // The same in the signature block.
    let (prefix, m) = small_parts();
    let m = m.enc();
    let err = open_err(assemble(&prefix, &m, &[0x9b, 0, 0, 1, 0, 0, 0, 0, 0]));
    assert_cbor(err, "signature block", prefix.len() + m.len(), "truncated");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn item_counts_signature_counts_and_bignum_sizes_have_limits() {
    // More items than max_cbor_items.
    let mut many = head(4, 2000);
    many.extend(std::iter::repeat_n(0xf6, 2000));
    let (file, _) = file_with_root(C::Raw(many));
    let limits = Limits {
        max_cbor_items: 1000,
        ..Limits::default()
    };
    let err = Checkpoint::from_vec(file, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            ReadError::LimitExceeded {
                what: "max_cbor_items",
                limit: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    // A bignum over max_bigint_bytes (2048).
    let (file, at) = file_with_root(C::Tag(2, Box::new(C::B(vec![0xff; 2049]))));
    assert_limit(open_err(file), "max_bigint_bytes", 2048, at);
    let (file, _) = file_with_root(C::Tag(2, Box::new(C::B(vec![0xff; 2048]))));
    open(file).unwrap();
    // 65 signatures.
    let (prefix, m) = small_parts();
    let m = m.enc();
    let entries: Vec<([u8; 32], [u8; 64])> = (1..=65u8)
        .map(|i| (signing_key(i).verifying_key().to_bytes(), [0; 64]))
        .collect();
    let err = open_err(assemble(&prefix, &m, &signature_block(&entries)));
    assert!(
        matches!(
            err,
            ReadError::LimitExceeded {
                what: "max_signatures",
                limit: 64,
                ..
            }
        ),
        "{err:?}"
    );
    // Rank over max_rank.
    let (file, _) = file_with_root(tensor(None, "float32", &[0; 65]));
    assert!(matches!(
        open_err(file),
        ReadError::LimitExceeded {
            what: "max_rank",
            ..
        }
    ));
    // Shape products that overflow or pass 2^62.
    for shape in [&[u64::MAX, 2][..], &[1 << 31, 1 << 31][..], &[1 << 61][..]] {
        let (file, _) = file_with_root(tensor(Some(0), "float32", shape));
        assert!(matches!(
            open_err(file),
            ReadError::Schema { what, .. } if what.contains("exceeds 2^62")
        ));
    }
}

#[test]
fn cbor_depth_bombs_are_bounded() {
    // In the tree, nesting is bounded by max_tree_depth first: the manifest map holds the root
    // list at depth 1, and the list at depth 129 is refused at its first child.
    let mut bomb = vec![0x81; 100_000];
    bomb.push(0xf6);
    let (file, at) = file_with_root(C::Raw(bomb));
    assert_limit(open_err(file), "max_tree_depth", 128, at + 128);
    // Wrapped nodes nest maps and arrays alternately: still one tree level per tuple.
    let mut bomb = Vec::new();
    for _ in 0..50_000 {
        bomb.extend(head(5, 1));
        bomb.extend(t("tuple").enc());
        bomb.extend(head(4, 1));
    }
    bomb.push(0xf6);
    let (file, _) = file_with_root(C::Raw(bomb));
    assert!(matches!(
        open_err(file),
        ReadError::LimitExceeded {
            what: "max_tree_depth",
            ..
        }
    ));
    // In the extension area, which holds any CBOR, by max_cbor_depth = 5 × max_tree_depth: the
    // manifest map is level 1, ext level 2, and the n-th nested array level n + 2.
    let C::M(mut top) = manifest(C::Null, vec![], &[]) else {
        unreachable!()
    };
    let mut bomb = vec![0x81; 100_000];
    bomb.push(0xf6);
    top.insert(
        0,
        (t("ext"), C::map(vec![("org.example.deep", C::Raw(bomb))])),
    );
    let m = C::M(top).enc();
    let at = 64 + find(&m, &t("org.example.deep").enc()) + 17;
    assert_limit(
        open_err(assemble(&header(), &m, &signature_block(&[]))),
        "max_cbor_depth",
        640,
        at + 638,
    );
}

fn nested_lists(levels: usize, inner: C) -> C {
    (0..levels).fold(inner, |acc, _| C::A(vec![acc]))
}

#[test]
fn tree_depth_is_limited_to_128_levels() {
    // 127 lists around a null: the null is at depth 128.
    let (file, _) = file_with_root(nested_lists(127, C::Null));
    open(file).unwrap();
    // 128 lists: the null is at depth 129, and the error names it.
    let (file, at) = file_with_root(nested_lists(128, C::Null));
    assert_limit(open_err(file), "max_tree_depth", 128, at + 128);
}

#[test]
fn an_empty_container_at_the_maximum_depth_is_accepted() {
    // Spec §3.3: depth counts nodes; an empty list at depth 128 has no node at depth 129.
    let (file, _) = file_with_root(nested_lists(127, C::A(vec![])));
    open(file).unwrap();
    let (file, _) = file_with_root(nested_lists(127, dict(vec![])));
    open(file).unwrap();
    let (file, _) = file_with_root(nested_lists(127, C::wrap("tuple", C::A(vec![]))));
    open(file).unwrap();
}

#[test]
fn metadata_values_are_checked() {
    let cases: &[(&str, &str)] = &[
        ("step", ""),
        ("step", "012"),
        ("step", "-1"),
        ("step", "+1"),
        ("step", "1.0"),
        ("step", " 1"),
        ("step", "18446744073709551616"),
        ("step", "١٢"),
        ("created_at", "2026-11-22 10:00:00Z"),
        ("created_at", "2026-11-22T10:00:00+00:00"),
        ("created_at", "2026-13-22T10:00:00Z"),
        ("created_at", "2026-11-32T10:00:00Z"),
        ("created_at", "2026-11-22T24:00:00Z"),
        ("created_at", "2026-11-22T10:00:00z"),
        ("source_format", "onnx"),
        ("source_format", "SAFETENSORS"),
        ("source_sha256", "abc"),
        ("source_sha256", &"A".repeat(64)),
        ("source_sha256", &"g".repeat(64)),
        ("source_sha256", &"a".repeat(65)),
    ];
    for (key, value) in cases {
        let m = manifest(C::Null, vec![], &[(key, value)]).enc();
        let file = assemble(&header(), &m, &signature_block(&[]));
        let at = 64 + find(&m, &t(value).enc());
        match open_err(file) {
            ReadError::Schema {
                section: "manifest",
                offset,
                what,
                ..
            } if offset == at as u64 && what.contains("well-known key") => {}
            other => panic!("{key}={value:?}: {other:?}"),
        }
        // The writer refuses them too.
        let dir = tempfile::tempdir().unwrap();
        let w = tensorseal::Writer::create(&dir.path().join("m"), Default::default()).unwrap();
        let meta = [(key.to_string(), value.to_string())].into();
        assert!(matches!(
            w.finish(tensorseal::Node::None, meta, &[]),
            Err(tensorseal::WriteError::Invalid { .. })
        ));
    }
    for ok in [
        ("step", "0"),
        ("step", "18446744073709551615"),
        ("created_at", "2026-11-22T10:00:00Z"),
        ("source_format", "hf-index"),
        ("source_sha256", &"0a".repeat(32)),
        ("anything", ""),
    ] {
        let m = manifest(C::Null, vec![], &[ok]).enc();
        open(assemble(&header(), &m, &signature_block(&[])))
            .unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
    // Key and value sizes, entry count.
    let long_key = "k".repeat(257);
    let long_value = "v".repeat(65537);
    for (key, value) in [
        ("", "x"),
        (long_key.as_str(), "x"),
        ("k", long_value.as_str()),
    ] {
        let m = manifest(C::Null, vec![], &[(key, value)]).enc();
        assert!(matches!(
            open_err(assemble(&header(), &m, &signature_block(&[]))),
            ReadError::Schema { .. }
        ));
    }
    let keys: Vec<String> = (0..1025).map(|i| format!("k{i:04}")).collect();
    let entries: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "")).collect();
    let m = manifest(C::Null, vec![], &entries).enc();
    assert!(matches!(
        open_err(assemble(&header(), &m, &signature_block(&[]))),
        ReadError::LimitExceeded {
            what: "max_metadata_entries",
            value: 1025,
            ..
        }
    ));
}

#[test]
fn metadata_errors_name_the_key_as_dict_errors_do() {
    let m = manifest(C::Null, vec![], &[("step", "x")]).enc();
    let at = 64 + find(&m, &t("x").enc());
    assert_schema(
        open_err(assemble(&header(), &m, &signature_block(&[]))),
        "manifest",
        at,
        "metadata[\"step\"]",
        "well-known key",
    );
}

#[test]
fn tensors_must_match_their_blobs() {
    let (prefix, m) = small_parts();
    let C::M(top) = m else { unreachable!() };
    let with_root = |root: C| {
        let mut top = top.clone();
        top.iter_mut().find(|(k, _)| *k == t("root")).unwrap().1 = root;
        assemble(&prefix, &C::M(top).enc(), &signature_block(&[]))
    };
    let both = |a: C| C::A(vec![a, tensor(Some(1), "uint8", &[3])]);
    let cases: Vec<(C, &str)> = vec![
        // 24 bytes of blob 0 read as 5 floats.
        (
            both(tensor(Some(0), "float32", &[5])),
            "tensor is 20 bytes but blob 0 holds 24",
        ),
        (
            both(tensor(Some(7), "float32", &[6])),
            "blob index 7 out of range",
        ),
        (both(tensor(None, "float32", &[6])), "needs a blob"),
        (
            both(tensor(Some(0), "float32", &[0, 6])),
            "must have blob null",
        ),
        // Blob 0 referenced by nobody.
        (
            C::A(vec![tensor(Some(1), "uint8", &[3])]),
            "blob 0 is not referenced",
        ),
    ];
    for (root, what) in cases {
        match open_err(with_root(root)) {
            ReadError::Schema { what: w, .. } if w.contains(what) => {}
            other => panic!("expected {what:?}, got {other:?}"),
        }
    }
    // The same blob seen as another dtype of the same size is fine (tied views).
    open(with_root(C::A(vec![
        tensor(Some(0), "uint8", &[24]),
        tensor(Some(0), "float64", &[3]),
        tensor(Some(1), "int8", &[3]),
    ])))
    .unwrap();
}

#[test]
fn limits_raised_to_their_maximum_do_not_overflow() {
    // Callers may raise limits (spec §8); "no limit" written as MAX must not overflow anything.
    let limits = Limits {
        max_manifest_length: u64::MAX,
        max_cbor_items: usize::MAX,
        max_tree_depth: usize::MAX,
        max_rank: usize::MAX,
        max_bigint_bytes: usize::MAX,
        max_signatures: usize::MAX,
        max_metadata_entries: usize::MAX,
        max_file_length: u64::MAX,
        max_logical_length: u64::MAX,
    };
    let (file, _) = small_file(&[&signing_key(1), &signing_key(2)]);
    Checkpoint::from_vec(file, &limits).unwrap();
    let vectors = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors");
    for name in ["all-kinds.tseal", "zstd.tseal"] {
        Checkpoint::open(&vectors.join(name), &limits).unwrap();
    }
    // Nesting bombs under those limits: errors, not stack overflows, on this ordinary test
    // thread. The tree depth stops at its hard maximum, the CBOR nesting at five times that.
    let hard = MAX_TREE_DEPTH_HARD as u64;
    let mut bomb = vec![0x81; 1_000_000];
    bomb.push(0xf6);
    let (file, at) = file_with_root(C::Raw(bomb.clone()));
    assert_limit(
        Checkpoint::from_vec(file, &limits).unwrap_err(),
        "max_tree_depth",
        hard,
        at + hard as usize,
    );
    let C::M(mut top) = manifest(C::Null, vec![], &[]) else {
        unreachable!()
    };
    top.insert(
        0,
        (t("ext"), C::map(vec![("org.example.deep", C::Raw(bomb))])),
    );
    let m = C::M(top).enc();
    let at = 64 + find(&m, &t("org.example.deep").enc()) + 17;
    let err = Checkpoint::from_vec(assemble(&header(), &m, &signature_block(&[])), &limits);
    assert_limit(
        err.unwrap_err(),
        "max_cbor_depth",
        5 * hard,
        at + 5 * hard as usize - 2,
    );
}
