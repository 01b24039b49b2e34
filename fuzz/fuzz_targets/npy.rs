//! Fuzzes the `.npy` header parser and `.npz` reading: no panic, and an accepted array's data
//! is exactly shape × itemsize.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_convert::fuzz_support::check_npy;

fuzz_target!(|data: &[u8]| check_npy(data));
