//! Fuzzes the reader of OpenSSF model-signing bundles: the Sigstore bundle JSON, the DSSE
//! envelope, base64 and DER signatures, the in-toto statement, its resources and serialization.
//! No panic, no unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tensorseal_provenance::fuzz_bundle(data));
