//! Request paths: percent-decoded exactly once, refused when unsafe, and resolved against
//! the paths of a deployment (directory index, pretty URLs, trailing-slash policy). Pure.

use skyhost_rules::TrailingSlash;
use std::borrow::Cow;

/// Why a request path was refused (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("the path has a malformed percent-escape")]
    BadEscape,
    /// The decoded bytes are not UTF-8.
    #[error("the path is not valid UTF-8 once decoded")]
    InvalidUtf8,
    /// A NUL byte.
    #[error("the path contains a NUL byte")]
    Nul,
    /// A backslash (a path separator on some systems).
    #[error("the path contains a backslash")]
    Backslash,
    /// A `.` or `..` segment.
    #[error("the path contains a '.' or '..' segment")]
    DotSegment,
}

/// Decodes a raw request path (without query) exactly once and checks it: an escape that
/// decodes to `/`, `.` or `\` is judged after decoding, and a decoded `%` is never decoded
/// again. Runs of `/` collapse to one, so no path ever starts with `//`.
///
/// A path that needs none of that (the common case) is returned as it is, borrowed.
pub fn decode(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = raw.as_bytes();
    if is_clean(bytes) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| hex(*c));
            let lo = bytes.get(i + 2).and_then(|c| hex(*c));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push(h << 4 | l),
                _ => return Err(PathError::BadEscape),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)?;
    if decoded.contains('\0') {
        return Err(PathError::Nul);
    }
    if decoded.contains('\\') {
        return Err(PathError::Backslash);
    }
    let mut clean = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        if c == '/' && clean.ends_with('/') {
            continue;
        }
        clean.push(c);
    }
    if clean.split('/').any(|s| s == "." || s == "..") {
        return Err(PathError::DotSegment);
    }
    Ok(Cow::Owned(clean))
}

/// Whether `decode` would return `raw` unchanged: no escape, NUL, backslash or run of `/`,
/// and no `.` or `..` segment.
fn is_clean(raw: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in raw {
        if matches!(b, b'%' | b'\\' | 0) || (b == b'/' && prev == b'/') {
            return false;
        }
        prev = b;
    }
    !raw.split(|&b| b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A decoded path encoded for a `Location` header (non-ASCII and reserved bytes escaped).
pub fn encode(path: &str) -> String {
    skyhost_rules::escape::path(path)
}

/// How a decoded path maps onto a deployment's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Serve the file at this manifest path.
    File(String),
    /// Answer 301 to this decoded path (the canonical form of the URL).
    Redirect(String),
    /// No file answers this path.
    NotFound,
}

/// How paths are resolved for a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Canonical form of directory-like URLs.
    pub trailing_slash: TrailingSlash,
    /// `/about` may be served from `about.html`.
    pub pretty_urls: bool,
}

impl Policy {
    /// The same lookups without canonical redirects (rewrite targets, shadowing checks).
    pub fn lenient(self) -> Policy {
        Policy {
            trailing_slash: TrailingSlash::Auto,
            ..self
        }
    }
}

/// Resolves a decoded path against the files `exists` knows:
///
/// - an exact file is served as is (`/style.css`, `/about.html`, `/LICENSE`);
/// - a directory-like path is served from `{path}/index.html`, or with pretty URLs from
///   `{path}.html`; the trailing-slash policy may instead redirect (301) to the canonical
///   form (`always`: `/docs` → `/docs/`; `never`: `/docs/` → `/docs`);
/// - `/file.css/` redirects to `/file.css` when only the file exists.
pub fn resolve(path: &str, exists: &dyn Fn(&str) -> bool, policy: Policy) -> Resolved {
    if path == "/" {
        return if exists("/index.html") {
            Resolved::File("/index.html".into())
        } else {
            Resolved::NotFound
        };
    }
    let slash = path.ends_with('/');
    let base = path.trim_end_matches('/');
    if !slash && exists(base) {
        return Resolved::File(base.to_owned());
    }
    let index = format!("{base}/index.html");
    let html = format!("{base}.html");
    let found = if exists(&index) {
        Some(index)
    } else if policy.pretty_urls && exists(&html) {
        Some(html)
    } else {
        None
    };
    match found {
        Some(file) => match policy.trailing_slash {
            TrailingSlash::Always if !slash => Resolved::Redirect(format!("{base}/")),
            TrailingSlash::Never if slash => Resolved::Redirect(base.to_owned()),
            _ => Resolved::File(file),
        },
        None if slash && exists(base) => Resolved::Redirect(base.to_owned()),
        None => Resolved::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn decoding_table() {
        use PathError::*;
        // Cases after Go's TestServeFile_DotDot and static-web-server's handle_file_encoded /
        // handle_bad_encoded_path, plus the escapes skyhost must judge after decoding.
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/index.html", Ok("/index.html")),
            ("/assets/index%2ehtml", Ok("/assets/index.html")),
            (
                "/guides/caf%C3%A9%20menu.html",
                Ok("/guides/café menu.html"),
            ),
            ("/caf%c3%a9", Ok("/café")),
            ("/a%2Fb", Ok("/a/b")),
            ("/file/a..", Ok("/file/a..")),
            ("/..foo", Ok("/..foo")),
            ("/a/.well-known/x", Ok("/a/.well-known/x")),
            // Decoded exactly once: %25 becomes a literal '%' and stays so.
            ("/100%25.html", Ok("/100%.html")),
            ("/%252e%252e/secret", Ok("/%2e%2e/secret")),
            ("//evil.example/", Ok("/evil.example/")),
            ("/a//b///c/", Ok("/a/b/c/")),
            ("/docs/", Ok("/docs/")),
            ("/a+b", Ok("/a+b")),
            ("/..", Err(DotSegment)),
            ("/../", Err(DotSegment)),
            ("/../file", Err(DotSegment)),
            ("/file/a/..", Err(DotSegment)),
            ("/a/./b", Err(DotSegment)),
            ("/%2e%2e/file", Err(DotSegment)),
            ("/%2E%2e.html", Ok("/...html")),
            ("/a%2f..%2fb", Err(DotSegment)),
            ("/..\\foo", Err(Backslash)),
            ("/file/a\\..", Err(Backslash)),
            ("/a%5cb", Err(Backslash)),
            ("/a%00b", Err(Nul)),
            ("/%ff", Err(InvalidUtf8)),
            ("/%c3", Err(InvalidUtf8)),
            ("/%", Err(BadEscape)),
            ("/%2", Err(BadEscape)),
            ("/%zz", Err(BadEscape)),
            ("", Err(NotAbsolute)),
            ("index.html", Err(NotAbsolute)),
            ("*", Err(NotAbsolute)),
        ];
        for (raw, want) in cases {
            let got = decode(raw);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{raw:?}");
            // A path that decodes to itself is not copied.
            if let Ok(p) = &got {
                assert_eq!(matches!(p, Cow::Borrowed(_)), p == raw, "{raw:?}");
            }
        }
    }

    #[test]
    fn encoding_for_location() {
        let cases = [
            ("/docs/", "/docs/"),
            ("/guides/café menu", "/guides/caf%C3%A9%20menu"),
            ("/100%", "/100%25"),
            ("/a?b#c", "/a%3Fb%23c"),
        ];
        for (path, want) in cases {
            assert_eq!(encode(path), want, "{path:?}");
            assert_eq!(decode(&encode(path)).as_deref(), Ok(path), "{path:?}");
        }
    }

    fn files(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn resolution_table() {
        use Resolved::*;
        use TrailingSlash::*;
        let site = files(&[
            "/index.html",
            "/about.html",
            "/docs/index.html",
            "/docs/intro.html",
            "/style.css",
            "/LICENSE",
            "/blog.html",
            "/blog/index.html",
        ]);
        let exists = |p: &str| site.contains(p);
        let auto = Policy {
            trailing_slash: Auto,
            pretty_urls: true,
        };
        let always = Policy {
            trailing_slash: Always,
            ..auto
        };
        let never = Policy {
            trailing_slash: Never,
            ..auto
        };
        let plain = Policy {
            pretty_urls: false,
            ..auto
        };
        let file = |p: &str| File(p.to_owned());
        let redirect = |p: &str| Redirect(p.to_owned());
        let cases: Vec<(&str, Policy, Resolved)> = vec![
            // Directory → index.html (Go: "/" and "/dir/" open index.html).
            ("/", auto, file("/index.html")),
            ("/", always, file("/index.html")),
            ("/", never, file("/index.html")),
            ("/docs/", auto, file("/docs/index.html")),
            ("/docs", auto, file("/docs/index.html")),
            // Canonical trailing slash: 301 to the other form, only when a file answers.
            ("/docs", always, redirect("/docs/")),
            ("/docs/", always, file("/docs/index.html")),
            ("/docs/", never, redirect("/docs")),
            ("/docs", never, file("/docs/index.html")),
            ("/nope", always, NotFound),
            ("/nope/", never, NotFound),
            // Pretty URLs: /about serves about.html; index.html wins over name.html.
            ("/about", auto, file("/about.html")),
            ("/about/", auto, file("/about.html")),
            ("/about", always, redirect("/about/")),
            ("/about/", never, redirect("/about")),
            ("/about", plain, NotFound),
            ("/blog", auto, file("/blog/index.html")),
            ("/docs/intro", auto, file("/docs/intro.html")),
            // Exact files are served as they are, whatever the policy.
            ("/about.html", always, file("/about.html")),
            ("/style.css", always, file("/style.css")),
            ("/LICENSE", never, file("/LICENSE")),
            ("/docs/index.html", auto, file("/docs/index.html")),
            // A file asked for as a directory redirects to the file (Go's fsRedirectTestData).
            ("/style.css/", auto, redirect("/style.css")),
            ("/style.css/", always, redirect("/style.css")),
            ("/missing.css", auto, NotFound),
            ("/index.html/not-a-file", auto, NotFound),
        ];
        for (path, policy, want) in cases {
            assert_eq!(resolve(path, &exists, policy), want, "{path:?} {policy:?}");
        }
        let empty = files(&[]);
        assert_eq!(resolve("/", &|p| empty.contains(p), auto), NotFound);
        assert_eq!(always.lenient(), auto);
    }
}
