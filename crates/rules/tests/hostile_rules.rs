//! Hostile rule files, as a deploy would read them: pathological patterns, every limit,
//! and pre-hashed passwords whose cost would stall the origin. Each case says whether
//! the files are accepted or which `file:line` the first error names; accepted rules are
//! then matched against hostile paths, which must not panic and must produce only what
//! is safe to put in a response.

use skyhost_rules::{parse_site, HashParams, RedirectAction, RequestFacts, SiteFiles};

/// What parsing must say.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Accepted.
    Ok,
    /// Refused; the first error starts with this `file:line:`.
    Err(&'static str),
}

struct Case {
    name: &'static str,
    redirects: Option<String>,
    headers: Option<String>,
    config: Option<String>,
    want: Want,
}

fn redirects(name: &'static str, text: impl Into<String>, want: Want) -> Case {
    Case {
        name,
        redirects: Some(text.into()),
        headers: None,
        config: None,
        want,
    }
}

fn headers(name: &'static str, text: impl Into<String>, want: Want) -> Case {
    Case {
        name,
        redirects: None,
        headers: Some(text.into()),
        config: None,
        want,
    }
}

fn config(name: &'static str, text: impl Into<String>, want: Want) -> Case {
    Case {
        name,
        redirects: None,
        headers: None,
        config: Some(text.into()),
        want,
    }
}

/// A syntactically valid argon2id PHC string with the given cost (the hash is never
/// computed: the cost alone must be judged).
fn phc(m: u32, t: u32, p: u32) -> String {
    format!(
        "$argon2id$v=19$m={m},t={t},p={p}$c29tZXNhbHQxMjM0NTY$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    )
}

fn cases() -> Vec<Case> {
    use Want::*;
    let many_rules: String = (0..10_001).map(|i| format!("/r{i} /t{i} 301\n")).collect();
    let max_rules: String = (0..10_000).map(|i| format!("/r{i} /t{i} 301\n")).collect();
    let many_blocks: String = (0..10_001).map(|i| format!("/p{i}\n  X-A: b\n")).collect();
    let users: String = (0..101).map(|i| format!(" u{i}:pw{i}")).collect();
    let hundred_users: String = (0..100).map(|i| format!(" u{i}:pw{i}")).collect();
    let placeholders: String = (0..40).map(|i| format!("/:p{i}")).collect();
    let to_placeholders: String = (0..40).map(|i| format!("/:p{i}")).collect();
    let nested_arrays = format!("x = {}{}\n", "[".repeat(2000), "]".repeat(2000));
    let nested_lines = format!("x = {}{}\n", "[\n".repeat(20_000), "]\n".repeat(20_000));
    let nested_tables = format!("x = {}1{}\n", "{a=".repeat(1000), "}".repeat(1000));
    vec![
        // _redirects
        redirects("empty", "", Ok),
        redirects("comments-only", "# a\n#b\n\n   \n", Ok),
        redirects("crlf-lines", "/a /b 301\r\n/c /d 302\r\n", Ok),
        redirects("line-at-limit", format!("/{} /b 301", "a".repeat(4000)), Ok),
        redirects(
            "line-over-limit",
            format!("/a /b 301\n/{} /b 301", "a".repeat(5000)),
            Err("_redirects:2:"),
        ),
        redirects(
            "file-over-limit",
            "# padding padding padding padding\n".repeat(40_000),
            Err("_redirects:"),
        ),
        redirects("rules-at-limit", max_rules, Ok),
        redirects("rules-over-limit", many_rules, Err("_redirects:10001:")),
        redirects(
            "forty-placeholders",
            format!("{placeholders} /x{to_placeholders} 301"),
            Ok,
        ),
        redirects(
            "stars-everywhere",
            "/*/*/*/*/*/*/*/* /x 301",
            Err("_redirects:1:"),
        ),
        redirects("splat-then-more", "/a/*/b /x 301", Err("_redirects:1:")),
        redirects("bad-status", "/a /b 299", Err("_redirects:1:")),
        redirects(
            "status-overflow",
            "/a /b 99999999999999999999",
            Err("_redirects:1:"),
        ),
        redirects("no-target", "/a", Err("_redirects:1:")),
        redirects("relative-source", "a /b 301", Err("_redirects:1:")),
        redirects("nul-byte", "/a\0 /b 301", Err("_redirects:1:")),
        redirects("control-in-target", "/a /b\u{7}c 301", Err("_redirects:1:")),
        redirects(
            "second-line-bad",
            "/a /b 301\n/c /d nope",
            Err("_redirects:2:"),
        ),
        redirects(
            "javascript-target",
            "/a javascript:alert(1) 301",
            Err("_redirects:1:"),
        ),
        redirects(
            "proxy-to-file-scheme",
            "/a file:///etc/passwd 200",
            Err("_redirects:1:"),
        ),
        redirects("self-loop", "/a /a 301", Ok),
        redirects(
            "country-list",
            format!("/a /b 302 Country={}", vec!["us"; 500].join(",")),
            Ok,
        ),
        redirects("unicode-source", "/é/* /e/:splat 301", Ok),
        // _headers
        headers("empty", "", Ok),
        headers("value-without-path", "  X-A: b\n", Err("_headers:1:")),
        headers("no-colon", "/a\n  X-A b\n", Err("_headers:2:")),
        headers("space-in-name", "/a\n  X A: b\n", Err("_headers:2:")),
        headers(
            "control-in-value",
            "/a\n  X-A: b\u{1}c\n",
            Err("_headers:2:"),
        ),
        headers(
            "line-over-limit",
            format!("/a\n  X-A: {}\n", "b".repeat(5000)),
            Err("_headers:2:"),
        ),
        headers("blocks-over-limit", many_blocks, Err("_headers:")),
        headers(
            "users-at-limit",
            format!("/a\n  Basic-Auth:{hundred_users}\n"),
            Ok,
        ),
        headers(
            "users-over-limit",
            format!("/a\n  Basic-Auth:{users}\n"),
            Err("_headers:2:"),
        ),
        headers(
            "auth-no-password",
            "/a\n  Basic-Auth: ann\n",
            Err("_headers:2:"),
        ),
        headers(
            "auth-empty-password",
            "/a\n  Basic-Auth: ann:\n",
            Err("_headers:2:"),
        ),
        headers(
            "auth-fake-hash",
            "/a\n  Basic-Auth: ann:$argon2id$nothing\n",
            Err("_headers:2:"),
        ),
        headers(
            "auth-hash-sane",
            format!("/a\n  Basic-Auth: ann:{}\n", phc(65536, 3, 4)),
            Ok,
        ),
        headers(
            "auth-hash-memory",
            format!("/a\n  Basic-Auth: ann:{}\n", phc(1_048_576, 3, 1)),
            Err("_headers:2:"),
        ),
        headers(
            "auth-hash-memory-just-over",
            format!("/a\n  X-A: b\n  Basic-Auth: ann:{}\n", phc(65537, 1, 1)),
            Err("_headers:3:"),
        ),
        headers(
            "auth-hash-time",
            format!("/a\n  Basic-Auth: ann:{}\n", phc(19456, 11, 1)),
            Err("_headers:2:"),
        ),
        headers(
            "auth-hash-time-huge",
            format!("/a\n  Basic-Auth: ann:{}\n", phc(19456, 1_000_000, 1)),
            Err("_headers:2:"),
        ),
        headers(
            "auth-hash-lanes",
            format!("/a\n  Basic-Auth: ann:{}\n", phc(19456, 2, 5)),
            Err("_headers:2:"),
        ),
        headers(
            "stars-pattern",
            "/*/*/*/*/*/*\n  X-A: b\n",
            Err("_headers:1:"),
        ),
        // skyhost.toml
        config("empty", "", Ok),
        config("unknown-key", "evil = true\n", Err("skyhost.toml:1:")),
        config(
            "bad-page",
            "spa_fallback = \"../../etc/passwd\"\n",
            Err("skyhost.toml:1:"),
        ),
        config(
            "page-with-space",
            "not_found_page = \"/a b.html\"\n",
            Err("skyhost.toml:1:"),
        ),
        config("nested-arrays", nested_arrays, Err("skyhost.toml:1:")),
        config("nested-array-lines", nested_lines, Err("skyhost.toml:")),
        config("nested-tables", nested_tables, Err("skyhost.toml:1:")),
        config(
            "line-over-limit",
            format!("# {}\n", "x".repeat(5000)),
            Err("skyhost.toml:1:"),
        ),
        config(
            "auth-hash-memory",
            format!(
                "[auth]\n[[auth.rules]]\npath = \"/a\"\nusers = [\"ann:{}\"]\n",
                phc(4_194_304, 1, 1)
            ),
            Err("skyhost.toml:"),
        ),
        config(
            "auth-hash-lanes",
            format!(
                "[auth]\n[[auth.rules]]\npath = \"/a\"\nusers = [\"ann:{}\"]\n",
                phc(19456, 1, 64)
            ),
            Err("skyhost.toml:"),
        ),
        config(
            "auth-hash-sane",
            format!(
                "[auth]\n[[auth.rules]]\npath = \"/a\"\nusers = [\"ann:{}\"]\n",
                phc(65536, 10, 4)
            ),
            Ok,
        ),
        config(
            "proxy-huge-limit",
            "[proxy]\nmax_response_bytes = 18446744073709551615\n",
            Err("skyhost.toml:2:"),
        ),
        config(
            "redirect-bad-status",
            "[[redirects]]\nfrom = \"/a\"\nto = \"/b\"\nstatus = 65535\n",
            Err("skyhost.toml:"),
        ),
    ]
}

/// Paths and queries an attacker sends to the rules that were accepted.
const PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/b/c/d/e/f/g/h/i/j",
    "/\r\n",
    "/%0d%0a",
    "/a\r\nSet-Cookie: x=1",
    "/é/ü",
    "/\u{202e}",
];

fn header_safe(text: &str) -> bool {
    text.bytes().all(|b| (0x21..0x7f).contains(&b))
}

#[test]
fn hostile_rule_files() {
    let long_path = format!("/{}", "x/".repeat(5000));
    let mut failed = Vec::new();
    let all = cases();
    let total = all.len();
    for c in all {
        let got = std::panic::catch_unwind(|| {
            parse_site(SiteFiles {
                redirects: c.redirects.as_deref(),
                headers: c.headers.as_deref(),
                config: c.config.as_deref(),
            })
        });
        let parsed = match got {
            Err(_) => {
                failed.push(format!("  {}: parsing panicked", c.name));
                continue;
            }
            Result::Ok(r) => r,
        };
        match (c.want, parsed) {
            (Want::Ok, Result::Ok(site)) => {
                // Cheapest cost: the sealing is not what is tested.
                let Result::Ok(rules) =
                    site.seal_with(HashParams::new(8, 1, 1, None).expect("valid parameters"))
                else {
                    failed.push(format!("  {}: accepted but does not seal", c.name));
                    continue;
                };
                let paths = PATHS
                    .iter()
                    .copied()
                    .chain(std::iter::once(long_path.as_str()));
                for path in paths {
                    let facts = RequestFacts {
                        path,
                        query: "q=%0d%0a&id=\r\n",
                        country: Some("us"),
                        accept_language: Some("*;q=0, \r\n"),
                    };
                    let matched =
                        std::panic::catch_unwind(|| rules.match_redirect(&facts, &|_| false));
                    match matched {
                        Err(_) => failed.push(format!("  {}: matching {path:?} panicked", c.name)),
                        Result::Ok(Some(RedirectAction::Redirect { location, .. }))
                            if !header_safe(&location) =>
                        {
                            failed.push(format!("  {}: unsafe Location {location:?}", c.name))
                        }
                        Result::Ok(_) => {}
                    }
                    for (name, value) in rules.headers_for(path) {
                        if value
                            .bytes()
                            .any(|b| b != b'\t' && !(0x20..0x7f).contains(&b))
                        {
                            failed.push(format!("  {}: unsafe value of {name}", c.name));
                        }
                    }
                }
            }
            (Want::Ok, Err(errors)) => failed.push(format!(
                "  {}: refused, expected accepted: {}",
                c.name,
                errors.first().map(ToString::to_string).unwrap_or_default()
            )),
            (Want::Err(at), Result::Ok(_)) => {
                failed.push(format!("  {}: accepted, expected an error at {at}", c.name))
            }
            (Want::Err(at), Err(errors)) => {
                let first = errors.first().map(ToString::to_string).unwrap_or_default();
                if !first.starts_with(at) {
                    failed.push(format!(
                        "  {}: first error {first:?}, expected {at}…",
                        c.name
                    ));
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} rule-file cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
