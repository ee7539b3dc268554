//! Every problem fails the deploy with `file:line: reason`; nothing is dropped silently and
//! limits are reported, never truncated.

use skyhost_rules::{parse_site, parse_site_with, Limits, RuleError, SiteFiles};

fn redirects_errors(text: &str) -> Vec<String> {
    errors(SiteFiles {
        redirects: Some(text),
        ..SiteFiles::default()
    })
}

fn headers_errors(text: &str) -> Vec<String> {
    errors(SiteFiles {
        headers: Some(text),
        ..SiteFiles::default()
    })
}

fn config_errors(text: &str) -> Vec<String> {
    errors(SiteFiles {
        config: Some(text),
        ..SiteFiles::default()
    })
}

fn errors(files: SiteFiles<'_>) -> Vec<String> {
    match parse_site(files) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn redirects_file_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "/a /b 999",
            "_redirects:1: invalid status '999': expected 200, 301, 302, 303, 307, 308, 404 or 410, optionally followed by '!'",
        ),
        (
            "/a /b 30",
            "_redirects:1: invalid status '30': expected 200, 301, 302, 303, 307, 308, 404 or 410, optionally followed by '!'",
        ),
        (
            "/a /b 301!!",
            "_redirects:1: invalid status '301!!': expected 200, 301, 302, 303, 307, 308, 404 or 410, optionally followed by '!'",
        ),
        (
            "/a",
            "_redirects:1: missing target: a rule is 'from to [status]', e.g. '/old /new 301'",
        ),
        (
            "/a 301",
            "_redirects:1: missing target: expected a path starting with '/' or an http(s) URL before '301'",
        ),
        (
            "/a id=:id",
            "_redirects:1: missing target: a rule is 'from to [status]', e.g. '/old /new 301'",
        ),
        (
            "/a /b 301 extra",
            "_redirects:1: too many fields: unexpected 'extra' after the target (expected a status such as 301 or a Country=/Language= condition)",
        ),
        (
            "/a /b /c",
            "_redirects:1: too many fields: unexpected '/c' after the target (expected a status such as 301 or a Country=/Language= condition)",
        ),
        ("/a /b 301 302", "_redirects:1: too many fields: a second status '302'"),
        // A status is exactly three digits of an allowed one.
        (
            "/a /b 0301",
            "_redirects:1: invalid status '0301': expected 200, 301, 302, 303, 307, 308, 404 or 410, optionally followed by '!'",
        ),
        (
            "/a /b 304",
            "_redirects:1: invalid status '304': expected 200, 301, 302, 303, 307, 308, 404 or 410, optionally followed by '!'",
        ),
        (
            "/a /b 301 Role=admin",
            "_redirects:1: unsupported condition 'Role=': skyhost supports Country= and Language=",
        ),
        (
            "/a /b 301 Country=usa",
            "_redirects:1: 'usa' is not an ISO 3166 country code (two letters, e.g. 'us')",
        ),
        ("/a /b 301 Country=", "_redirects:1: Country= lists no country"),
        (
            "/a /b 301 Language=en_US",
            "_redirects:1: 'en_US' is not a language tag (e.g. 'en' or 'zh-tw')",
        ),
        // A language tag: a primary subtag of 1 to 8 letters, then subtags of 1 to 8
        // letters or digits.
        (
            "/a /b 301 Language=e1",
            "_redirects:1: 'e1' is not a language tag (e.g. 'en' or 'zh-tw')",
        ),
        (
            "/a /b 301 Language=abcdefghi",
            "_redirects:1: 'abcdefghi' is not a language tag (e.g. 'en' or 'zh-tw')",
        ),
        (
            "/a /b 301 Language=en-",
            "_redirects:1: 'en-' is not a language tag (e.g. 'en' or 'zh-tw')",
        ),
        (
            "/a /b 301 Language=en-abcdefghi",
            "_redirects:1: 'en-abcdefghi' is not a language tag (e.g. 'en' or 'zh-tw')",
        ),
        (
            "/a /b 301 Language=en-x_y",
            "_redirects:1: 'en-x_y' is not a language tag (e.g. 'en' or 'zh-tw')",
        ),
        ("/a /b 301 Language=,", "_redirects:1: Language= lists no language"),
        (
            "/a /b 301 Language=en Language=fr",
            "_redirects:1: Language= is given twice",
        ),
        (
            "/a /b 301 Country=u1",
            "_redirects:1: 'u1' is not an ISO 3166 country code (two letters, e.g. 'us')",
        ),
        (
            "/a /b 301 Country=us Country=ca",
            "_redirects:1: Country= is given twice",
        ),
        (
            "/a /b/:splat",
            "_redirects:1: target uses ':splat' but the source '/a' has no '*'",
        ),
        (
            "/a /b/:id",
            "_redirects:1: target uses ':id' which the source does not define",
        ),
        (
            "/a https://example.com/x 404",
            "_redirects:1: a 404 rule serves a page of this site: its target must be a path, not 'https://example.com/x'",
        ),
        (
            "/a/* https://:splat.example.com/ 302",
            "_redirects:1: target 'https://:splat.example.com/': placeholders are not allowed in the host",
        ),
        ("/a https:///x 302", "_redirects:1: target 'https:///x' has no host"),
        ("a /b", "_redirects:1: 'a' is not a path: it must start with '/'"),
        (
            "https://old.example.com/* /new 301",
            "_redirects:1: 'https://old.example.com/*': host-specific rules are not supported; use a path starting with '/'",
        ),
        (
            "/store id=:id id=:x /p 301",
            "_redirects:1: query parameter 'id' is given twice",
        ),
        (
            "/a id=:1x /b",
            "_redirects:1: query parameter 'id': invalid placeholder ':1x'",
        ),
        (
            "/a/:id id=:id /p 301",
            "_redirects:1: placeholder ':id' is bound twice",
        ),
        ("/a\u{7} /b", "_redirects:1: line contains a control character"),
    ];
    for (text, message) in cases {
        assert_eq!(
            redirects_errors(text),
            vec![message.to_string()],
            "{text:?}"
        );
    }
}

#[test]
fn every_bad_line_is_reported_with_its_number() {
    let text = "/ok /fine 302\n/bad /x 999\n# comment\n/also-bad\n/ok2 /fine2\n/x /y 301 z\n";
    let got = redirects_errors(text);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].starts_with("_redirects:2: invalid status '999'"));
    assert!(got[1].starts_with("_redirects:4: missing target"));
    assert!(got[2].starts_with("_redirects:6: too many fields"));
}

#[test]
fn headers_file_errors() {
    let cases: &[(&str, &str)] = &[
        // A host-specific block starts a (refused) block, `http://` as `https://`.
        (
            "http://example.com/*\n  X-A: a\n",
            "_headers:1: 'http://example.com/*': host-specific rules are not supported; use a path starting with '/'",
        ),
        (
            "/*\n  X-A: a\rb\n",
            "_headers:2: header 'X-A' value contains a carriage return or line feed",
        ),
        (
            "/*\n  X-A: a\r\r\n",
            "_headers:2: header 'X-A' value contains a carriage return or line feed",
        ),
        (
            "/*\n  Content-Length: 5\n",
            "_headers:2: header 'Content-Length' is set by the server and cannot be configured",
        ),
        (
            "/*\n  transfer-encoding: chunked\n",
            "_headers:2: header 'transfer-encoding' is set by the server and cannot be configured",
        ),
        (
            "/*\n  X-Skyhost-Region: fake\n",
            "_headers:2: header 'X-Skyhost-Region' is set by the server and cannot be configured",
        ),
        (
            "  X-A: b\n",
            "_headers:1: header line before any path: start a block with a path line such as '/*'",
        ),
        (
            "/*\n  just words\n",
            "_headers:2: expected 'Name: value' or a path starting with '/', found 'just words'",
        ),
        (
            "/*\n  Bad Name: x\n",
            "_headers:2: 'Bad Name' is not a valid header name",
        ),
        ("/*\n  X-A:\n", "_headers:2: header 'X-A' has no value"),
        (
            "/*\n  X-A: café\n",
            "_headers:2: header 'X-A' value contains non-ASCII characters; percent-encode them",
        ),
        (
            "/*\n  X-A: a\u{1}b\n",
            "_headers:2: header 'X-A' value contains a control character",
        ),
        (
            "/empty\n/*\n  X-A: b\n",
            "_headers:1: path '/empty' has no headers below it (indent 'Name: value' lines under the path)",
        ),
        (
            "/a /b\n  X-A: b\n",
            "_headers:1: a path line holds a single path pattern",
        ),
        (
            "/a*\n  X-A: b\n",
            "_headers:1: path '/a*': '*' must be a whole segment at the end (e.g. '/blog/*')",
        ),
        (
            "/p\n  Basic-Auth: alice\n",
            "_headers:2: credential 'ali…' must be written 'user:password'",
        ),
        (
            "/p\n  Basic-Auth: alice:a alice:b\n",
            "_headers:2: user 'alice' is listed twice",
        ),
        ("/p\n  Basic-Auth:\n", "_headers:2: 'Basic-Auth' lists no 'user:password' pairs"),
    ];
    for (text, message) in cases {
        assert_eq!(headers_errors(text), vec![message.to_string()], "{text:?}");
    }
}

#[test]
fn config_file_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "pretty_urls = true\ntrailing_slashes = \"always\"\n",
            "skyhost.toml:2: unknown field `trailing_slashes`, expected one of `trailing_slash`, `pretty_urls`, `spa_fallback`, `not_found_page`, `error_page`, `redirects`, `headers`, `auth`, `proxy`, `geo`, `previews`",
        ),
        (
            "trailing_slash = \"sometimes\"\n",
            "skyhost.toml:1: unknown variant `sometimes`, expected one of `auto`, `always`, `never`",
        ),
        (
            "[[redirects]]\nfrom = \"/a\"\nto = \"/b\"\nsigned = \"x\"\n",
            "skyhost.toml:4: unknown field `signed`, expected one of `from`, `to`, `status`, `force`, `query`, `conditions`",
        ),
        (
            "[proxy]\nallowlist = []\ntimeout = 5\n",
            "skyhost.toml:3: unknown field `timeout`, expected one of `allowlist`, `apply_headers`, `max_response_bytes`, `forward_credentials`",
        ),
        (
            "[auth]\n[[auth.rules]]\npath = \"/p/*\"\nusers = [\"a:b\"]\npassword = \"x\"\n",
            "skyhost.toml:5: unknown field `password`, expected one of `path`, `users`, `realm`",
        ),
        (
            "pretty_urls = true\n\n[[redirects]]\nfrom = \"/a\"\nto = \"/b\"\nstatus = 999\n",
            "skyhost.toml:3: invalid status '999': expected 200, 301, 302, 303, 307, 308, 404 or 410, optionally followed by '!'",
        ),
        ("[[redirects]]\nfrom = \"/a\"\n", "skyhost.toml:1: missing field `to`"),
        // A target in skyhost.toml is one TOML string: it may hold a space _redirects cannot.
        (
            "[[redirects]]\nfrom = \"/a\"\nto = \"/b c\"\n",
            "skyhost.toml:1: target '/b c' contains whitespace or a control character; percent-encode it",
        ),
        (
            "[[headers]]\nfor = \"/*\"\n[headers.values]\nX-A = \"a\\nb\"\n",
            "skyhost.toml:4: header 'X-A' value contains a carriage return or line feed",
        ),
        (
            "[[headers]]\nfor = \"/*\"\n[headers.values]\nConnection = \"close\"\n",
            "skyhost.toml:4: header 'Connection' is set by the server and cannot be configured",
        ),
        (
            "[proxy]\nallowlist = [\n  \"ok.example.com\",\n  \"*.example.com\",\n]\n",
            "skyhost.toml:4: allowlist entry '*.example.com': wildcards are not supported; list each host",
        ),
        (
            "[proxy]\nforward_credentials = [\n  \"api.example.com\",\n  \"https://api.example.com/\",\n]\n",
            "skyhost.toml:4: forward_credentials entry 'https://api.example.com/' must be a host name or IP address, not a URL",
        ),
        (
            "[proxy]\nforward_credentials = [\"api.example.com:8443\"]\n",
            "skyhost.toml:2: forward_credentials entry 'api.example.com:8443' must not include a port",
        ),
        (
            "[proxy]\nforward_credentials = \"api.example.com\"\n",
            "skyhost.toml:2: invalid type: string \"api.example.com\", expected a sequence",
        ),
        (
            "[proxy]\nmax_response_bytes = 0\n",
            "skyhost.toml:2: max_response_bytes must be between 1 and 1073741824",
        ),
        (
            "spa_fallback = \"index.html\"\n",
            "skyhost.toml:1: spa_fallback must be a path starting with '/' without spaces, e.g. '/404.html'",
        ),
        (
            "[auth]\nrealm = \"a\\\"b\"\n[[auth.rules]]\npath = \"/p/*\"\nusers = [\"a:b\"]\n",
            "skyhost.toml:2: realm 'a\"b' must be printable ASCII without '\"' or '\\'",
        ),
        (
            "[auth]\n[[auth.rules]]\npath = \"/p/*\"\nusers = []\n",
            "skyhost.toml:2: auth rule for '/p/*' lists no users",
        ),
        (
            "[[redirects]]\nfrom = \"/a\"\nto = \"/b\"\nconditions = { Role = [\"admin\"] }\n",
            "skyhost.toml:4: unknown field `Role`, expected one of `Country`, `country`, `Language`, `language`",
        ),
        ("x = [\n", "skyhost.toml:1: unclosed array, expected `]`"),
    ];
    for (text, message) in cases {
        assert_eq!(config_errors(text), vec![message.to_string()], "{text:?}");
    }
}

#[test]
fn file_too_large() {
    let limits = Limits::default();
    // 1 MiB of comment lines, plus one byte.
    let line = format!("#{}\n", "x".repeat(1022));
    let mut text = line.repeat(1024);
    text.push('#');
    assert_eq!(text.len(), 1024 * 1024 + 1);
    let errors = parse_site_with(
        SiteFiles {
            redirects: Some(&text),
            headers: Some(&text),
            config: Some(&text),
        },
        &limits,
    )
    .unwrap_err();
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        vec![
            "_redirects:1025: file is 1048577 bytes; the limit is 1048576 bytes",
            "_headers:1025: file is 1048577 bytes; the limit is 1048576 bytes",
            "skyhost.toml:1025: file is 1048577 bytes; the limit is 1048576 bytes",
        ]
    );
    // Exactly at the limit is fine.
    text.pop();
    assert!(parse_site(SiteFiles {
        redirects: Some(&text),
        ..SiteFiles::default()
    })
    .is_ok());
}

#[test]
fn line_too_long() {
    let long_target = format!("/{}", "a".repeat(4096 - "/x ".len() - 1));
    let ok = format!("/ok /fine 302\n/x {long_target}\n");
    assert!(
        redirects_errors(&ok).is_empty(),
        "a 4096-byte line is accepted"
    );
    let too_long = format!("/ok /fine 302\n/x {long_target}a\n/also /fine 302\n");
    assert_eq!(
        redirects_errors(&too_long),
        vec!["_redirects:2: line is 4097 bytes long; the limit is 4096 bytes"]
    );
    let header = format!("/*\n  X-A: {}\n", "v".repeat(5000));
    assert_eq!(
        headers_errors(&header),
        vec!["_headers:2: line is 5007 bytes long; the limit is 4096 bytes"]
    );
}

#[test]
fn too_many_rules() {
    let mut text = String::new();
    for i in 0..10_000 {
        text.push_str(&format!("/r{i} /t{i} 302\n"));
    }
    assert!(
        redirects_errors(&text).is_empty(),
        "10,000 rules are accepted"
    );
    text.push_str("/one-more /t 302\n");
    assert_eq!(
        redirects_errors(&text),
        vec!["_redirects:10001: too many rules: the limit is 10000"]
    );

    let mut headers = String::new();
    for i in 0..10_001 {
        headers.push_str(&format!("/h{i}\n  X-A: {i}\n"));
    }
    assert_eq!(
        headers_errors(&headers),
        vec!["_headers:20001: too many rules: the limit is 10000"]
    );

    let limits = Limits {
        max_rules: 2,
        ..Limits::default()
    };
    let config = "[[redirects]]\nfrom = \"/a\"\nto = \"/b\"\n[[redirects]]\nfrom = \"/c\"\nto = \"/d\"\n[[redirects]]\nfrom = \"/e\"\nto = \"/f\"\n";
    let errors = parse_site_with(
        SiteFiles {
            config: Some(config),
            ..SiteFiles::default()
        },
        &limits,
    )
    .unwrap_err();
    assert_eq!(
        errors,
        vec![RuleError::new(
            "skyhost.toml",
            7,
            "too many rules: the limit is 2"
        )]
    );
}

#[test]
fn errors_from_all_files_are_reported_together() {
    let errors = parse_site(SiteFiles {
        redirects: Some("/a /b 999\n"),
        headers: Some("/*\n  Content-Length: 1\n"),
        config: Some("bogus = 1\n"),
    })
    .unwrap_err();
    let files: Vec<(&str, usize)> = errors.iter().map(|e| (e.file.as_str(), e.line)).collect();
    assert_eq!(
        files,
        vec![("_redirects", 1), ("_headers", 2), ("skyhost.toml", 1)]
    );
}

#[test]
fn error_flood_is_capped_with_a_count() {
    let text = "/a /b 999\n".repeat(1500);
    let got = redirects_errors(&text);
    assert_eq!(got.len(), 1001);
    assert_eq!(
        got[1000],
        "_redirects:1000: 500 more errors not listed; fix the ones above and deploy again"
    );
}
