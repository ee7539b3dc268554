//! Default `Cache-Control` of served files. Pure. `_headers` rules may override it.
//!
//! A file whose name carries a content hash (`app.3f9a1c2b.js`, `index-BXk3c9aZ.js`) never
//! changes under that name, so browsers may keep it a year without asking again. HTML and
//! every other file are revalidated on each use, which costs a 304 thanks to the ETag.
//! An answer behind basic auth is for its requester only: [`keep_private`].
//!
//! No default says `public`: any cache may already keep an answer with a freshness
//! lifetime, and `public` would only extend that to requests carrying `Authorization`
//! (RFC 9111 §3.5), which basic-auth answers rule out with [`keep_private`].

/// Fingerprinted assets.
pub const IMMUTABLE: &str = "max-age=31536000, immutable";
/// HTML and files without a content hash in their name.
pub const REVALIDATE: &str = "max-age=0, must-revalidate";
/// Server errors and answers that must not be reused.
pub const NO_STORE: &str = "no-store";

/// Directives that let a shared cache (a CDN, a proxy) keep an answer, or that only matter
/// to one; an answer for one requester drops them.
const SHARED_DIRECTIVES: [&str; 4] = ["public", "s-maxage", "proxy-revalidate", "private"];

/// Headers through which CDNs take caching orders meant for them alone.
const CDN_HEADERS: [&str; 2] = ["cdn-cache-control", "surrogate-control"];

/// `Cache-Control` for an answer only its requester may keep (an authorized request's, a
/// 401): `value` without its shared-cache directives, `private` in front, unless it
/// already says `no-store`. A browser still keeps a fingerprinted asset as long as before.
pub fn private(value: &str) -> String {
    let kept: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| {
            let name = d.split('=').next().unwrap_or(d).trim();
            !SHARED_DIRECTIVES
                .iter()
                .any(|s| name.eq_ignore_ascii_case(s))
        })
        .collect();
    if kept.iter().any(|d| d.eq_ignore_ascii_case(NO_STORE)) {
        return kept.join(", ");
    }
    std::iter::once("private")
        .chain(kept)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes an answer's caching headers [`private`]: `Cache-Control` rewritten (set to
/// `private` when absent) and CDN-only caching headers removed.
pub fn keep_private(headers: &mut http::HeaderMap) {
    let value = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let value = private(&value);
    match http::HeaderValue::from_str(&value) {
        Ok(v) => headers.insert(http::header::CACHE_CONTROL, v),
        // Every directive kept came from a valid header value; a join of them is one too.
        Err(_) => headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static(NO_STORE),
        ),
    };
    for name in CDN_HEADERS {
        headers.remove(name);
    }
}

/// The default `Cache-Control` for a file served with 200/206/304.
pub fn for_file(path: &str, content_type: &str) -> &'static str {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime == "text/html" || mime == "application/xhtml+xml" {
        return REVALIDATE;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    if is_fingerprinted(name) {
        IMMUTABLE
    } else {
        REVALIDATE
    }
}

/// Hex digest of 8–64 digits with both a letter and a digit (`3f9a1c2b`).
fn hex_hash(s: &str) -> bool {
    (8..=64).contains(&s.len())
        && (s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            || s.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)))
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Base64url digest of 8 characters with a digit and both cases (`BXk3c9aZ`), as
/// bundlers append after a `-`.
fn b64_hash(s: &str) -> bool {
    s.len() == 8
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_uppercase())
        && s.bytes().any(|b| b.is_ascii_lowercase())
}

/// Whether a file name carries a content hash: a hex digest between dots
/// (`app.3f9a1c2b.js`), after the last `-` or `_` of the stem (`chunk-3f9a1c2b.js`), an
/// 8-character base64url digest after a `-` (`index-BXk3c9aZ.js`), or a long hex stem
/// (`9f86d081884c7d65.js`).
pub fn is_fingerprinted(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() < 2 {
        return false;
    }
    let stem = parts[0];
    if parts[1..parts.len() - 1].iter().any(|p| hex_hash(p)) {
        return true;
    }
    if stem.len() >= 16 && hex_hash(stem) {
        return true;
    }
    if let Some((_, last)) = stem.rsplit_once(['-', '_']) {
        if hex_hash(last) {
            return true;
        }
    }
    // base64url digests may contain '-' or '_' themselves: look at the last 8 characters.
    if stem.len() > 9 && stem.is_char_boundary(stem.len() - 9) {
        let (head, tail) = stem.split_at(stem.len() - 9);
        if !head.is_empty() && tail.starts_with('-') && b64_hash(&tail[1..]) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_table() {
        let cases: &[(&str, bool)] = &[
            ("app.3f9a1c2b.js", true),
            ("app.3F9A1C2B.js", true),
            ("main.3f9a1c2b.chunk.js", true),
            ("chunk.a1b2c3d4e5f6a7b8c9d0.js", true),
            ("styles.3f9a1c2b.min.css", true),
            ("chunk-3f9a1c2b.js", true),
            ("vendor_9e107d9d372bb682.js", true),
            ("index-BXk3c9aZ.js", true),
            ("index-D-5Gw3Qb.js", true),
            ("my-page-Ab3_x9Zq.css", true),
            ("9f86d081884c7d65.js", true),
            ("main.css", false),
            ("logo.png", false),
            ("app.js", false),
            ("README", false),
            ("jquery-3.7.1.min.js", false),
            ("styles.20240101.css", false),
            ("photo-20240101.jpg", false),
            ("my-homepage.js", false),
            ("app.version2.js", false),
            ("app.deadbeef.js", false),
            ("my-project.js", false),
            ("hello-world.js", false),
            ("3f9a1c2b.js", false),
            ("index-abcdefgh.js", false),
            ("café.3f9a1c2b.js", true),
            ("cafécafé.js", false),
            // A hex extension is not a digest between dots.
            ("notes.3f9a1c2b", false),
            // The 9th byte from the end falls inside `é`: no base64url digest there.
            ("abcdefghéBXk3c9aZ.js", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_fingerprinted(name), *want, "{name:?}");
        }
    }

    #[test]
    fn private_table() {
        let cases: &[(&str, &str)] = &[
            (IMMUTABLE, "private, max-age=31536000, immutable"),
            (REVALIDATE, "private, max-age=0, must-revalidate"),
            (NO_STORE, "no-store"),
            ("", "private"),
            ("public", "private"),
            ("PUBLIC, Max-Age=600", "private, Max-Age=600"),
            (
                "public, max-age=60, s-maxage=3600, proxy-revalidate",
                "private, max-age=60",
            ),
            ("s-maxage = 3600", "private"),
            ("private=\"Set-Cookie\", max-age=5", "private, max-age=5"),
            ("private, no-cache", "private, no-cache"),
            ("no-store, public", "no-store"),
            (
                "max-age=0,,  ,must-revalidate",
                "private, max-age=0, must-revalidate",
            ),
        ];
        for (value, want) in cases {
            assert_eq!(private(value), *want, "{value:?}");
        }
    }

    #[test]
    fn keep_private_rewrites_every_caching_header() {
        use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL};
        let mut h = HeaderMap::new();
        h.append(CACHE_CONTROL, HeaderValue::from_static("public"));
        h.append(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        h.insert("cdn-cache-control", HeaderValue::from_static("max-age=600"));
        h.insert("surrogate-control", HeaderValue::from_static("max-age=600"));
        h.insert("etag", HeaderValue::from_static("\"x\""));
        keep_private(&mut h);
        assert_eq!(
            h.get_all(CACHE_CONTROL).iter().collect::<Vec<_>>(),
            ["private, max-age=60"]
        );
        assert!(h.get("cdn-cache-control").is_none());
        assert!(h.get("surrogate-control").is_none());
        assert_eq!(h.get("etag").unwrap(), "\"x\"");
        let mut none = HeaderMap::new();
        keep_private(&mut none);
        assert_eq!(none.get(CACHE_CONTROL).unwrap(), "private");
    }

    #[test]
    fn defaults_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("/assets/app.3f9a1c2b.js", "text/javascript", IMMUTABLE),
            ("/assets/app.js", "text/javascript", REVALIDATE),
            ("/index.html", "text/html; charset=utf-8", REVALIDATE),
            ("/page.3f9a1c2b.html", "text/html", REVALIDATE),
            ("/doc.3f9a1c2b.xhtml", "application/xhtml+xml", REVALIDATE),
            ("/img/logo.3f9a1c2b.png", "image/png", IMMUTABLE),
            ("/fonts/inter-BXk3c9aZ.woff2", "font/woff2", IMMUTABLE),
            ("/robots.txt", "text/plain", REVALIDATE),
            ("/a.3f9a1c2b/plain.css", "text/css", REVALIDATE),
        ];
        for (path, ct, want) in cases {
            assert_eq!(for_file(path, ct), *want, "{path}");
        }
    }
}
