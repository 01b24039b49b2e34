//! Arbitrary bytes as a plane-coded chunk. See `tensorseal::fuzz::planes_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tensorseal::fuzz::planes_decode(data));
