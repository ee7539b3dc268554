//! The bodies of skyhost's fuzz targets, one function per target taking the fuzzer's
//! bytes. The cargo-fuzz binaries in `fuzz/` (nightly, `make fuzz`) call them, and so does
//! this crate's stable test (`tests/stable.rs`, in `make test`), which mutates the seeds
//! in `fuzz/seeds/` with a seeded generator for a bounded number of iterations: both run
//! the same code and check the same properties.
//!
//! Each body must never panic on any input; the `assert!`s are the properties checked.

use arbitrary::Unstructured;
use skyhost_origin::{conditional, path, range};
use skyhost_rules::{parse_site, HashParams, RedirectAction, RequestFacts, SiteFiles};
use skyhost_rules::{Limits, TrailingSlash};

/// A target: its name (a folder of `fuzz/seeds/` and a cargo-fuzz binary) and body.
pub struct Target {
    /// The name.
    pub name: &'static str,
    /// The body.
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "parse_redirects",
        run: parse_redirects,
    },
    Target {
        name: "parse_headers",
        run: parse_headers,
    },
    Target {
        name: "parse_config",
        run: parse_config,
    },
    Target {
        name: "match_request",
        run: match_request,
    },
    Target {
        name: "decode_path",
        run: decode_path,
    },
    Target {
        name: "range_conditional",
        run: range_conditional,
    },
    Target {
        name: "notify_signature",
        run: notify_signature,
    },
];

/// Bytes a `Location`, proxy URL or path may carry into a response header.
fn header_safe(text: &str) -> bool {
    text.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// A header value `_headers` may set: visible ASCII, space and tab.
fn value_safe(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// `_redirects` parsing never panics, and every error it reports names a real line.
pub fn parse_redirects(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(errors) = skyhost_rules::redirects::parse(&text, &Limits::default()) {
        let lines = text.split('\n').count();
        assert!(!errors.is_empty());
        for e in errors {
            assert!(
                e.line >= 1 && e.line <= lines,
                "{e} is past the last line {lines}"
            );
        }
    }
}

/// `_headers` parsing never panics; accepted headers are valid HTTP header values.
pub fn parse_headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok((rules, _auth)) = skyhost_rules::headers::parse(&text, &Limits::default()) {
        for rule in rules {
            for (name, value) in rule.headers {
                assert!(!name.is_empty());
                assert!(value_safe(&value), "{value:?} is not a valid header value");
            }
        }
    }
}

/// `skyhost.toml` parsing never panics.
pub fn parse_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = skyhost_rules::config::parse(&text, &Limits::default());
}

/// Matching never panics, and what it produces is safe to send: a `Location` or proxy URL
/// holds no byte that is invalid in a header, and header values stay valid.
///
/// Input: `_redirects`, `_headers`, path, query, country and `Accept-Language`, separated
/// by NUL bytes.
pub fn match_request(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
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
        assert!(value_safe(&value));
    }
    if let Some(auth) = rules.auth_for(path) {
        let _ = auth.verify(accept_language);
    }
}

/// Request paths: decoding never panics and never lets through what would escape the
/// site (no `.`/`..` segment, NUL, backslash or `//`); resolution only serves files that
/// exist and only redirects to site paths; a decoded path re-encoded for `Location` is
/// header-safe.
///
/// Input: the raw path, then NUL and the deployment's files, one per line.
pub fn decode_path(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let (raw, files) = input.split_once('\0').unwrap_or((&input, "/index.html"));
    let Ok(decoded) = path::decode(raw) else {
        return;
    };
    let p: &str = &decoded;
    assert!(p.starts_with('/'), "{p:?} is not absolute");
    assert!(!p.contains("//"), "{p:?} keeps a run of slashes");
    assert!(!p.contains('\0') && !p.contains('\\'), "{p:?}");
    assert!(
        !p.split('/').any(|s| s == "." || s == ".."),
        "{p:?} has a dot segment"
    );
    if !raw.contains('%') && !raw.contains("//") {
        assert_eq!(p, raw, "a path with nothing to decode changed");
    }
    assert!(header_safe(&path::encode(p)), "unsafe encoding of {p:?}");
    let files: Vec<&str> = files.lines().collect();
    let exists = |f: &str| files.contains(&f);
    for trailing_slash in [
        TrailingSlash::Auto,
        TrailingSlash::Always,
        TrailingSlash::Never,
    ] {
        for pretty_urls in [false, true] {
            let policy = path::Policy {
                trailing_slash,
                pretty_urls,
            };
            match path::resolve(p, &exists, policy) {
                path::Resolved::File(f) => assert!(exists(&f), "{f:?} does not exist"),
                path::Resolved::Redirect(to) => {
                    assert!(to.starts_with('/'), "redirect to {to:?}");
                    assert!(header_safe(&path::encode(&to)), "unsafe redirect {to:?}");
                }
                path::Resolved::NotFound => {}
            }
        }
    }
}

/// A number field: its decimal text, else whatever `arbitrary` makes of its bytes (so a
/// mutated field still reaches the extremes).
fn number<T: for<'a> arbitrary::Arbitrary<'a> + std::str::FromStr + Default>(field: &str) -> T {
    field.trim().parse().ok().unwrap_or_else(|| {
        Unstructured::new(field.as_bytes())
            .arbitrary()
            .unwrap_or_default()
    })
}

/// `Range`, `If-Range` and the conditional headers: parsing never panics, a partial range
/// lies inside the body, an HTTP date that parses formats back to itself, and a request
/// naming the served ETag (of a hash as skyhost writes them) in `If-None-Match`, nothing
/// else, is answered 304.
///
/// Input, separated by NUL: `Range`, body length, `If-Range`, Last-Modified (unix),
/// content hash, `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`,
/// method (0 GET, 1 HEAD, else POST). Missing fields are absent headers.
pub fn range_conditional(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let fields: Vec<&str> = input.split('\0').collect();
    let field = |i: usize| fields.get(i).copied();
    let header = field(0).unwrap_or("");
    let len: u64 = number(field(1).unwrap_or("100"));
    let if_range = field(2).unwrap_or("");
    let last_modified: i64 = number(field(3).unwrap_or("0"));
    let hash = field(4).unwrap_or("0");
    let etag = conditional::etag(hash, None);

    for ok in [true, false] {
        match range::decide(Some(header), ok, len) {
            range::RangeDecision::Partial(r) => {
                assert!(r.start < r.end && r.end <= len, "{r:?} of {len}");
                let _ = range::content_range(&r, len);
            }
            range::RangeDecision::Unsatisfiable => {
                let _ = range::unsatisfied(len);
            }
            range::RangeDecision::Full => {}
        }
    }
    let _ = range::if_range_matches(if_range, &etag, last_modified);
    if let Some(t) = conditional::parse_http_date(if_range) {
        if (0..=253_402_300_799).contains(&t) {
            assert_eq!(
                conditional::parse_http_date(&conditional::http_date(t)),
                Some(t)
            );
        }
    }

    let mut headers = http::HeaderMap::new();
    for (i, name) in [
        http::header::IF_MATCH,
        http::header::IF_NONE_MATCH,
        http::header::IF_MODIFIED_SINCE,
        http::header::IF_UNMODIFIED_SINCE,
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(v) = field(5 + i).and_then(|v| http::HeaderValue::from_str(v).ok()) {
            headers.insert(name, v);
        }
    }
    let method = match number::<u8>(field(9).unwrap_or("0")) {
        0 => http::Method::GET,
        1 => http::Method::HEAD,
        _ => http::Method::POST,
    };
    let equivalent = vec![conditional::etag(hash, Some("br"))];
    let validators = conditional::Validators {
        etag: &etag,
        equivalent: &equivalent,
        last_modified,
    };
    let _ = conditional::evaluate(
        &method,
        &conditional::Conditions::from_headers(&headers),
        &validators,
    );
    let real_hash = !hash.is_empty() && hash.bytes().all(|b| b.is_ascii_alphanumeric());
    if let (true, Ok(v)) = (real_hash, http::HeaderValue::from_str(&etag)) {
        let mut only = http::HeaderMap::new();
        only.insert(http::header::IF_NONE_MATCH, v);
        assert_eq!(
            conditional::evaluate(
                &http::Method::GET,
                &conditional::Conditions::from_headers(&only),
                &validators
            ),
            conditional::Precondition::NotModified
        );
    }
}

/// The notify signature header: verifying never panics, whatever the header, body,
/// secrets and clock; a header signed with one of the secrets verifies, and the same
/// header a second past the tolerance does not.
///
/// Input, separated by NUL: the `X-Skyhost-Signature` value, the body, the clock (unix),
/// then each accepted secret.
pub fn notify_signature(data: &[u8]) {
    use skyhost_meta::notify::{sign, verify, TOLERANCE_SECS};
    let mut fields = data.split(|&b| b == 0);
    let header = String::from_utf8_lossy(fields.next().unwrap_or(b""));
    let body = fields.next().unwrap_or(b"{}");
    let now: i64 = number(&String::from_utf8_lossy(fields.next().unwrap_or(b"0")));
    let secrets: Vec<Vec<u8>> = fields.take(4).map(<[u8]>::to_vec).collect();

    let _ = verify(&secrets, Some(&header), body, now);
    let _ = verify(&secrets, None, body, now);
    if let Some(secret) = secrets.first() {
        let signed = sign(secret, now, body);
        assert!(
            verify(&secrets, Some(&signed), body, now).is_ok(),
            "{signed:?} does not verify"
        );
        if let Some(later) = now.checked_add(TOLERANCE_SECS + 1) {
            assert!(verify(&secrets, Some(&signed), body, later).is_err());
        }
    }
}
