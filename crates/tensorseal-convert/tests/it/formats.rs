//! safetensors input and content-based format detection.

use crate::data;
use tensorseal_convert::{
    DetectError, Format, Limits, SafetensorsError, SafetensorsFile, ZipArchive, ZipKind, detect,
    zip_kind,
};

#[test]
fn safetensors_all_dtypes() {
    let bytes = data("safetensors/dtypes.safetensors");
    let f = SafetensorsFile::parse(&bytes, &Limits::default()).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&data("safetensors/dtypes.safetensors.expected.json")).unwrap();
    let want = expected["tensors"].as_array().unwrap();
    assert_eq!(f.tensors().len(), want.len());
    for (t, w) in f.tensors().iter().zip(want) {
        assert_eq!(t.name(), w["path"][0].as_str().unwrap());
        assert_eq!(
            t.dtype().name(),
            w["dtype"].as_str().unwrap(),
            "{}",
            t.name()
        );
        let shape: Vec<u64> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.shape(), &shape[..]);
        assert_eq!(
            hex::encode(tensorseal::sha256(t.data())),
            w["sha256"].as_str().unwrap(),
            "{}",
            t.name()
        );
        assert_eq!(
            &bytes[t.data_offset() as usize..][..t.data().len()],
            t.data()
        );
    }
    assert_eq!(
        f.metadata().unwrap(),
        &[("format".to_string(), "pt".to_string())]
    );
}

#[test]
fn hostile_safetensors() {
    let parse = |rel: &str| {
        let bytes = data(rel);
        SafetensorsFile::parse(&bytes, &Limits::default())
            .map(|_| ())
            .unwrap_err()
    };
    let e = parse("hostile/s_duplicate_keys.safetensors");
    assert!(
        matches!(&e, SafetensorsError::DuplicateKey { key, .. } if key == "w"),
        "{e}"
    );
    let e = parse("hostile/s_header_len_beyond_file.safetensors");
    assert!(
        matches!(e, SafetensorsError::HeaderLength { len, file_len: 40 } if len == 1 << 40),
        "{e}"
    );
    let e = parse("hostile/s_overlapping_offsets.safetensors");
    assert!(matches!(e, SafetensorsError::Invalid(_)), "{e}");
    let e = parse("hostile/s_size_mismatch.safetensors");
    assert!(matches!(e, SafetensorsError::Invalid(_)), "{e}");
    let e = parse("hostile/s_pickle_renamed.safetensors");
    assert!(
        matches!(&e, SafetensorsError::NotSafetensors { found } if found == "pickle"),
        "{e}"
    );
}

fn det(rel: &str) -> Result<Format, DetectError> {
    detect(&data(rel), &Limits::default())
}

#[test]
fn formats_come_from_content() {
    let pickle = |p| Format::Pickle { protocol: p };
    for (rel, want) in [
        ("torch/zip_bytesio.pt", Format::Zip),
        ("torch/zip_lightning.ckpt", Format::Zip),
        ("torch/legacy_state_dict.pt", Format::TorchLegacy),
        ("torch/tar_format.pt", Format::TorchTar),
        ("numpy/f32.npy", Format::Npy),
        ("numpy/object.npy", Format::Npy),
        ("numpy/stored.npz", Format::Zip),
        ("numpy/np_pickle_p2.pkl", pickle(Some(2))),
        ("numpy/py_protocol0.pkl", pickle(None)),
        ("safetensors/dtypes.safetensors", Format::Safetensors),
        (
            "safetensors/hf_safetensors/model.safetensors.index.json",
            Format::HfIndex,
        ),
        (
            "safetensors/hf_bin/pytorch_model.bin.index.json",
            Format::HfIndex,
        ),
        ("hostile/s_pickle_renamed.safetensors", pickle(Some(2))),
        ("hostile/z_polyglot_pickle_zip.pt", pickle(Some(2))),
        ("hostile/l_payload_in_4th_pickle.pt", Format::TorchLegacy),
        ("hostile/p_global_os_system_proto0.pkl", pickle(None)),
        ("hostile/p_stack_global_eval.pkl", pickle(Some(4))),
    ] {
        assert_eq!(
            det(rel).unwrap_or_else(|e| panic!("{rel}: {e}")),
            want,
            "{rel}"
        );
    }
    let e = det("hostile/z_7z_signature.pt").unwrap_err();
    assert!(matches!(e, DetectError::Compressed { kind: "7z" }), "{e}");
    let e = det("hostile/z_gzip_wrapped.pt").unwrap_err();
    assert!(matches!(e, DetectError::Compressed { kind: "gzip" }), "{e}");
    let e = det("hostile/z_prepended_junk.pt").unwrap_err();
    assert!(
        matches!(e, DetectError::PrependedZip { prefix_len: 1024 }),
        "{e}"
    );
}

#[test]
fn zip_kinds() {
    for (rel, want) in [
        ("torch/zip_bytesio.pt", ZipKind::TorchZip),
        ("torch/torchscript.pt", ZipKind::TorchScript),
        ("numpy/stored.npz", ZipKind::Npz),
        ("numpy/compressed.npz", ZipKind::Npz),
        ("hostile/z_member_outside_dir.pt", ZipKind::TorchZip),
    ] {
        let bytes = data(rel);
        let zip = ZipArchive::new(&bytes, &Limits::default()).unwrap();
        assert_eq!(zip_kind(&zip).unwrap(), want, "{rel}");
    }
    let bytes = tensorseal_convert::zip_test_support::stored_zip(&[("readme.txt", b"hi")]);
    let zip = ZipArchive::new(&bytes, &Limits::default()).unwrap();
    assert!(matches!(
        zip_kind(&zip),
        Err(DetectError::UnknownZip { .. })
    ));
}

#[test]
fn hf_sharded_safetensors() {
    use tensorseal_convert::HfIndex;
    let path = crate::data_path("safetensors/hf_safetensors/model.safetensors.index.json");
    let idx = HfIndex::open(&path, &Limits::default()).unwrap();
    let names: Vec<&str> = idx.shards().iter().map(|s| s.file_name()).collect();
    assert_eq!(
        names,
        [
            "model-00001-of-00003.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors"
        ]
    );
    assert_eq!(idx.metadata()[0].0, "total_parameters");
    for (i, shard) in idx.shards().iter().enumerate() {
        let bytes = std::fs::read(shard.path()).unwrap();
        assert_eq!(
            detect(&bytes, &Limits::default()).unwrap(),
            Format::Safetensors
        );
        let f = SafetensorsFile::parse(&bytes, &Limits::default()).unwrap();
        idx.check_shard(i, f.tensors().iter().map(|t| t.name()))
            .unwrap();
        // The wrong shard's tensors are refused.
        let other = (i + 1) % 3;
        assert!(
            idx.check_shard(other, f.tensors().iter().map(|t| t.name()))
                .is_err()
        );
    }
    let bin = crate::data_path("safetensors/hf_bin/pytorch_model.bin.index.json");
    let idx = HfIndex::open(&bin, &Limits::default()).unwrap();
    assert_eq!(idx.shards().len(), 3);
    assert!(idx.shards()[0].file_name().ends_with(".bin"));
}
