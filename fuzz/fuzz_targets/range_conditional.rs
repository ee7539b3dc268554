//! `skyhost_fuzz_targets::range_conditional`: the body and its properties are shared with the stable run
//! in `make test` (crates/fuzz-targets).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| skyhost_fuzz_targets::range_conditional(data));
