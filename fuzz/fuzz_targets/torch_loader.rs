//! Fuzzes the whole conversion pipeline in memory, as `tensorseal convert` runs it on a file:
//! format detection, strict containers, the pickle interpreter under the policy, the tree,
//! tensor materialization, the source hash with the zip CRCs, and the manifest. No panic, and an
//! accepted input's manifest decodes with a blob of the right size for every tensor. See
//! `tensorseal_convert::fuzz_support::check_torch_loader`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_convert::fuzz_support::check_torch_loader;

fuzz_target!(|data: &[u8]| check_torch_loader(data));
