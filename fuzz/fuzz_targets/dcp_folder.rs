//! Fuzzes the reader of torch.distributed.checkpoint folders: `.metadata` through the pickle VM
//! and its DCP records, the byte ranges of the `.distcp` files, the tiling of every tensor by its
//! chunks, each chunk's torch.save zip. The input packs the three files (see `split_dcp`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorseal_convert::fuzz_support::check_dcp;

fuzz_target!(|data: &[u8]| check_dcp(data));
