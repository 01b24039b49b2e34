//! Never-panic properties: arbitrary bytes and mutations of real files go through every parser
//! without a panic, and whatever is accepted satisfies the documented invariants.

use crate::data;
use proptest::prelude::*;
use tensorseal_convert::fuzz_support::{check_npy, check_safetensors, check_zip};

fn check_all(bytes: &[u8]) {
    check_zip(bytes);
    check_npy(bytes);
    check_safetensors(bytes);
}

/// Seeds to mutate: real files of every container kind.
fn seeds() -> Vec<Vec<u8>> {
    [
        "torch/zip_bytesio.pt",
        "hostile/z_hand_built_ok.pt",
        "numpy/compressed.npz",
        "numpy/stored.npz",
        "numpy/f32.npy",
        "numpy/be_i4.npy",
        "safetensors/dtypes.safetensors",
        "safetensors/hf_safetensors/model.safetensors.index.json",
    ]
    .iter()
    .map(|r| data(r))
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_all(&bytes);
    }

    #[test]
    fn prefixed_bytes_never_panic(
        prefix in prop::sample::select(vec![
            &b"PK\x03\x04"[..], b"\x93NUMPY\x01\x00", b"\x93NUMPY\x03\x00", b"\x80\x02", b"{",
        ]),
        rest in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = prefix.to_vec();
        bytes.extend(rest);
        check_all(&bytes);
    }

    #[test]
    fn mutated_real_files_never_panic(
        seed in 0usize..8,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = seeds()[seed].clone();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if truncate {
            let n = cut.index(bytes.len());
            bytes.truncate(n);
        }
        check_all(&bytes);
    }
}
