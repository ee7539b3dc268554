//! `_redirects` parsing never panics, and every error it reports names a real line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhost_rules::{redirects, Limits};

fuzz_target!(|text: &str| {
    if let Err(errors) = redirects::parse(text, &Limits::default()) {
        let lines = text.split('\n').count();
        assert!(!errors.is_empty());
        for e in errors {
            assert!(
                e.line >= 1 && e.line <= lines,
                "{e} is past the last line {lines}"
            );
        }
    }
});
