//! `skyhost.toml` parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhost_rules::{config, Limits};

fuzz_target!(|text: &str| {
    let _ = config::parse(text, &Limits::default());
});
