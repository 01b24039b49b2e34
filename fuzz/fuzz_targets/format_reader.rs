//! Arbitrary bytes as a whole file: open, verify (integrity only, and trusting the
//! published test key), read every tensor. See `tensorseal::fuzz::format_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tensorseal::fuzz::format_reader(data));
