//! Matching never panics, and what it produces is safe to send: a `Location` or proxy URL
//! holds no byte that is invalid in a header, and header values stay valid.
//!
//! Input: `_redirects`, `_headers`, path, query, country and `Accept-Language`, separated
//! by NUL bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyhost_rules::{parse_site, HashParams, RedirectAction, RequestFacts, SiteFiles};

fn header_safe(text: &str) -> bool {
    text.bytes().all(|b| (0x21..0x7f).contains(&b))
}

fuzz_target!(|input: &str| {
    let mut parts = input.split('\0');
    let redirects = parts.next().unwrap_or("");
    let headers = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/");
    let query = parts.next().unwrap_or("");
    let country = parts.next();
    let accept_language = parts.next();
    let Ok(parsed) = parse_site(SiteFiles {
        redirects: Some(redirects),
        headers: Some(headers),
        config: None,
    }) else {
        return;
    };
    // Cheapest argon2 cost: the fuzzer explores parsing and matching, not hashing.
    let Ok(params) = HashParams::new(8, 1, 1, None) else {
        return;
    };
    let Ok(rules) = parsed.seal_with(params) else {
        return;
    };
    let facts = RequestFacts {
        path,
        query,
        country,
        accept_language,
    };
    let shadowed = path.len().is_multiple_of(2);
    match rules.match_redirect(&facts, &|_| shadowed) {
        Some(RedirectAction::Redirect { status, location }) => {
            assert!(matches!(status, 301 | 302 | 303 | 307 | 308));
            assert!(header_safe(&location), "unsafe Location {location:?}");
        }
        Some(RedirectAction::Proxy { url }) => {
            assert!(url.starts_with("http://") || url.starts_with("https://"));
            assert!(header_safe(&url), "unsafe proxy URL {url:?}");
        }
        Some(RedirectAction::Status { status, .. }) => assert!(matches!(status, 404 | 410)),
        Some(RedirectAction::Rewrite { .. }) | None => {}
    }
    for (_, value) in rules.headers_for(path) {
        assert!(value
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)));
    }
    if let Some(auth) = rules.auth_for(path) {
        let _ = auth.verify(accept_language);
    }
});
