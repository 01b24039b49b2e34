//! Arbitrary bytes as a manifest: whatever decodes re-encodes to the same bytes. See
//! `tensorseal::fuzz::format_manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tensorseal::fuzz::format_manifest(data));
