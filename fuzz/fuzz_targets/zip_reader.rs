//! Fuzzes the strict zip reader and the layers on it (torch zip, npz, zip kind, detection):
//! no panic, and every accepted archive reads back member by member at its declared size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_convert::fuzz_support::check_zip;

fuzz_target!(|data: &[u8]| check_zip(data));
