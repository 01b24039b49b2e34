//! Bytes as a recipe for a tree with tensors: written, reopened and verified, it must
//! come back identical. See `tensorseal::fuzz::format_roundtrip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tensorseal::fuzz::format_roundtrip(data));
