//! `_headers` parsing never panics; accepted headers are valid HTTP header values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhost_rules::{headers, Limits};

fuzz_target!(|text: &str| {
    if let Ok((rules, _auth)) = headers::parse(text, &Limits::default()) {
        for rule in rules {
            for (name, value) in rule.headers {
                assert!(!name.is_empty());
                assert!(
                    value
                        .bytes()
                        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
                    "{value:?} is not a valid header value"
                );
            }
        }
    }
});
