//! Fuzzes safetensors input (strict JSON pre-pass + the safetensors crate) and the HF index
//! parser: no panic, and accepted tensors have exactly shape × itemsize bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_convert::fuzz_support::check_safetensors;

fuzz_target!(|data: &[u8]| check_safetensors(data));
