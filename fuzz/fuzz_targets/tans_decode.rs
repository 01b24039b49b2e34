//! Arbitrary bytes as a tANS plane body. See `tensorseal::fuzz::tans_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tensorseal::fuzz::tans_decode(data));
