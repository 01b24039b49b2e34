//! The zip reader and the torch zip layer on real torch files and on every hostile zip trick.

use crate::data;
use tensorseal_convert::{ByteOrder, Limits, TorchZip, TorchZipError, ZipArchive, ZipError};

fn torch(rel: &str) -> Result<(), TorchZipError> {
    let bytes = data(rel);
    TorchZip::parse(&bytes, &Limits::default()).map(|_| ())
}

#[test]
fn real_torch_files_parse() {
    let bytes = data("torch/zip_bytesio.pt");
    let t = TorchZip::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(t.prefix(), "archive");
    assert_eq!(t.byte_order(), ByteOrder::Little);
    assert!(t.byte_order_recorded());
    assert_eq!(t.version(), Some(3));
    assert_eq!(t.format_version(), Some(1));
    assert_eq!(t.storage_alignment(), Some(64));
    assert_eq!(t.serialization_id().map(str::len), Some(40));
    assert_eq!(t.storage_keys().collect::<Vec<_>>(), ["0"]);
    let e = t.storage_entry("0").unwrap();
    // torch aligns record data to 64 bytes with its FB extra field.
    assert_eq!(e.data_offset() % 64, 0);
    assert_eq!(t.storage("0").unwrap().unwrap().len(), 8);
    assert!(t.archive().is_zip64());
    assert!(!t.crc_absent());
    assert_eq!(t.data_pkl()[..2], [0x80, 0x02]);

    for (rel, prefix) in [
        ("torch/zip_no_crc.pt", "zip_no_crc"),
        ("torch/zip_align4096.pt", "zip_align4096"),
        ("torch/zip_no_byteorder.pt", "zip_no_byteorder"),
        ("torch/zip_big_endian.pt", "zip_big_endian"),
        ("torch/zip_views.pt", "zip_views"),
        ("torch/zip_dotted.name.v2.pt", "zip_dotted.name.v2"),
        ("torch/zip_lightning.ckpt", "archive"),
        ("torch/zip_protocol_0.pt", "zip_protocol_0"),
        ("torch/zip_protocol_4.pt", "zip_protocol_4"),
        ("hostile/z_baseline_rezipped.pt", "archive"),
        ("hostile/z_hand_built_ok.pt", "archive"),
        ("hostile/z_data_pkl_os_system.pt", "archive"),
    ] {
        let bytes = data(rel);
        let t =
            TorchZip::parse(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(t.prefix(), prefix, "{rel}");
    }
    let bytes = data("torch/zip_no_crc.pt");
    assert!(
        TorchZip::parse(&bytes, &Limits::default())
            .unwrap()
            .crc_absent()
    );
    let bytes = data("torch/zip_align4096.pt");
    let t = TorchZip::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(t.storage_alignment(), Some(4096));
    for key in t.storage_keys() {
        assert_eq!(t.storage_entry(key).unwrap().data_offset() % 4096, 0);
    }
    // `_disable_byteorder_record=True` only moves the record: torch's C++ writer adds it at
    // the end of the file when Python did not write it.
    let bytes = data("torch/zip_no_byteorder.pt");
    let t = TorchZip::parse(&bytes, &Limits::default()).unwrap();
    assert!(t.byte_order_recorded());
    let names: Vec<&str> = t.archive().entries().iter().map(|e| e.name()).collect();
    assert_eq!(names[names.len() - 2], "zip_no_byteorder/byteorder");
    let bytes = data("torch/zip_big_endian.pt");
    assert_eq!(
        TorchZip::parse(&bytes, &Limits::default())
            .unwrap()
            .byte_order(),
        ByteOrder::Big
    );
}

#[test]
fn torchscript_is_named() {
    let err = torch("torch/torchscript.pt").unwrap_err();
    assert!(matches!(err, TorchZipError::TorchScript { .. }), "{err}");
    assert!(err.to_string().contains("TorchScript"));
}

macro_rules! refused {
    ($rel:expr, $pat:pat) => {{
        let err = torch($rel).unwrap_err();
        assert!(matches!(err, $pat), "{}: {err}", $rel);
        err
    }};
}

#[test]
fn hostile_zips_give_specific_errors() {
    use TorchZipError::Zip;
    refused!(
        "hostile/z_7z_signature.pt",
        Zip(ZipError::NotAtStart { .. })
    );
    refused!(
        "hostile/z_gzip_wrapped.pt",
        Zip(ZipError::NotAtStart { .. })
    );
    refused!(
        "hostile/z_polyglot_pickle_zip.pt",
        Zip(ZipError::NotAtStart { .. })
    );
    refused!(
        "hostile/z_prepended_junk.pt",
        Zip(ZipError::NotAtStart { .. })
    );
    let e = refused!("hostile/z_bad_crc.pt", Zip(ZipError::CrcMismatch { .. }));
    assert!(e.to_string().contains("archive/data.pkl"));
    let e = refused!("hostile/z_deflate_bomb.pt", Zip(ZipError::Limit { .. }));
    assert!(e.to_string().contains("archive/data/0"), "{e}");
    let e = refused!(
        "hostile/z_duplicate_data_pkl.pt",
        Zip(ZipError::DuplicateName { .. })
    );
    assert!(e.to_string().contains("archive/data.pkl"));
    refused!(
        "hostile/z_extra_pickle_member.pt",
        TorchZipError::UnexpectedMember { .. }
    );
    for rel in [
        "hostile/z_flag_encrypted.pt",
        "hostile/z_flag_patched_data.pt",
        "hostile/z_flag_strong_encryption.pt",
    ] {
        refused!(rel, Zip(ZipError::UnsupportedFlags { .. }));
    }
    refused!(
        "hostile/z_local_name_mismatch.pt",
        Zip(ZipError::HeaderMismatch { field: "name", .. })
    );
    refused!(
        "hostile/z_member_outside_dir.pt",
        TorchZipError::NotInDirectory { .. }
    );
    let e = refused!("hostile/z_name_dotdot.pt", Zip(ZipError::BadName { .. }));
    assert!(e.to_string().contains("traversal"));
    let e = refused!("hostile/z_name_nul.pt", Zip(ZipError::BadName { .. }));
    assert!(e.to_string().contains("NUL"));
    refused!(
        "hostile/z_overlapping_entries.pt",
        Zip(ZipError::Overlap { .. })
    );
    refused!(
        "hostile/z_two_prefixes.pt",
        TorchZipError::MultiplePrefixes { .. }
    );
}

#[test]
fn deflate_bomb_is_refused_before_inflating() {
    // The declared ratio is checked first: refusing takes no time and no memory.
    let bytes = data("hostile/z_deflate_bomb.pt");
    let start = std::time::Instant::now();
    let err = ZipArchive::new(&bytes, &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, ZipError::Limit { source, .. } if source.what == "max_inflate_ratio"),
        "{err}"
    );
    assert!(start.elapsed().as_secs() < 2);
    // With the ratio lifted the size limit still holds when set below 128 MiB.
    let limits = Limits {
        max_inflate_ratio: u64::MAX,
        max_inflated_member: 64 << 20,
        ..Limits::default()
    };
    let err = ZipArchive::new(&bytes, &limits).unwrap_err();
    assert!(
        matches!(&err, ZipError::Limit { source, .. } if source.what == "max_inflated_member"),
        "{err}"
    );
}
