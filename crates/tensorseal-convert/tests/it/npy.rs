//! `.npy` and `.npz` files written by numpy 2.4.6, and hostile ones.

use crate::data;
use tensorseal::DType;
use tensorseal_convert::{ByteOrder, Limits, NpyArray, NpyError, Npz, ZipError};

/// dtype, byte order, Fortran order, shape, data.
type Parsed = (DType, ByteOrder, bool, Vec<u64>, Vec<u8>);

fn npy(rel: &str) -> Result<Parsed, NpyError> {
    let bytes = data(rel);
    let a = NpyArray::parse(&bytes, &Limits::default())?;
    Ok((
        a.dtype(),
        a.byte_order(),
        a.fortran_order(),
        a.shape().to_vec(),
        a.data().to_vec(),
    ))
}

#[test]
fn numpy_files() {
    use ByteOrder::*;
    for (rel, dtype, order, fortran, shape) in [
        ("numpy/f32.npy", DType::F32, Little, false, &[2u64, 3][..]),
        ("numpy/be_i4.npy", DType::I32, Big, false, &[2, 3]),
        ("numpy/bool.npy", DType::Bool, Little, false, &[2, 2]),
        ("numpy/c64.npy", DType::C64, Little, false, &[3]),
        ("numpy/empty.npy", DType::F32, Little, false, &[0, 3]),
        ("numpy/f16.npy", DType::F16, Little, false, &[3]),
        ("numpy/f64_fortran.npy", DType::F64, Little, true, &[3, 2]),
        ("numpy/i16.npy", DType::I16, Little, false, &[4]),
        ("numpy/scalar_0d.npy", DType::F64, Little, false, &[]),
        ("numpy/u64.npy", DType::U64, Little, false, &[3]),
        ("numpy/u8.npy", DType::U8, Little, false, &[2, 2]),
    ] {
        let (d, o, f, s, bytes) = npy(rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!((d, o, f, &s[..]), (dtype, order, fortran, shape), "{rel}");
        assert_eq!(bytes.len() as u64, dtype.byte_size(shape).unwrap(), "{rel}");
    }
    // numpy's data starts at a multiple of 64 bytes; u64 holds 2**64-1.
    let (.., bytes) = npy("numpy/u64.npy").unwrap();
    assert_eq!(bytes[8..16], [0xff; 8]);
    let (.., bytes) = npy("numpy/be_i4.npy").unwrap();
    assert_eq!(bytes[..8], [0, 0, 0, 0, 0, 0, 0, 1]);
}

#[test]
fn object_arrays_are_refused() {
    for rel in ["numpy/object.npy", "hostile/n_object_payload.npy"] {
        let err = npy(rel).unwrap_err();
        assert!(matches!(err, NpyError::ObjectArray { .. }), "{rel}: {err}");
    }
}

#[test]
fn hostile_npy() {
    let err = npy("hostile/n_header_not_literal.npy").unwrap_err();
    assert!(matches!(err, NpyError::Header { offset: 10, .. }), "{err}");
    let err = npy("hostile/n_huge_shape.npy").unwrap_err();
    assert!(err.to_string().contains("overflows"), "{err}");
    let bytes = data("hostile/n_traversal_member.npz");
    let err = Npz::parse(&bytes, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, NpyError::Zip(ZipError::BadName { reason, .. }) if reason.contains("traversal")),
        "{err}"
    );
}

#[test]
fn npz_stored_and_deflated() {
    let bytes = data("numpy/stored.npz");
    let npz = Npz::parse(&bytes, &Limits::default()).unwrap();
    let keys: Vec<&str> = npz.arrays().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["f32", "be_i4", "f64_fortran", "empty"]);
    let alone = data("numpy/f32.npy");
    let alone = NpyArray::parse(&alone, &Limits::default()).unwrap();
    assert_eq!(npz.arrays()[0].1.data(), alone.data());
    assert_eq!(npz.arrays()[1].1.byte_order(), ByteOrder::Big);
    assert!(npz.arrays()[2].1.fortran_order());

    let bytes = data("numpy/compressed.npz");
    let npz = Npz::parse(&bytes, &Limits::default()).unwrap();
    let keys: Vec<&str> = npz.arrays().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["u8", "c64", "scalar_0d", "zeros"]);
    let u8_alone = data("numpy/u8.npy");
    assert_eq!(
        npz.arrays()[0].1.data(),
        NpyArray::parse(&u8_alone, &Limits::default())
            .unwrap()
            .data()
    );
    let zeros = &npz.arrays()[3].1;
    assert!(zeros.data().iter().all(|&b| b == 0));
    assert_eq!(zeros.data().len(), 4000);
}

#[test]
fn npz_members_must_be_npy() {
    use tensorseal_convert::zip_test_support::stored_zip;
    let f32 = data("numpy/f32.npy");
    let bytes = stored_zip(&[("a.npy", &f32), ("notes.txt", b"hi")]);
    let err = Npz::parse(&bytes, &Limits::default()).unwrap_err();
    assert!(matches!(err, NpyError::NotNpyMember { .. }), "{err}");
    let obj = data("numpy/object.npy");
    let bytes = stored_zip(&[("a.npy", &f32), ("o.npy", &obj)]);
    let err = Npz::parse(&bytes, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, NpyError::ObjectArray { member: Some(m), .. } if m == "o.npy"),
        "{err}"
    );
}
