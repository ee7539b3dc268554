//! Default `Cache-Control` of served files. Pure. `_headers` rules may override it.
//!
//! A file whose name carries a content hash (`app.3f9a1c2b.js`, `index-BXk3c9aZ.js`) never
//! changes under that name, so browsers may keep it a year without asking again. HTML and
//! every other file are revalidated on each use, which costs a 304 thanks to the ETag.

/// Fingerprinted assets.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// HTML and files without a content hash in their name.
pub const REVALIDATE: &str = "public, max-age=0, must-revalidate";
/// Server errors and answers that must not be reused.
pub const NO_STORE: &str = "no-store";

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
        ];
        for (name, want) in cases {
            assert_eq!(is_fingerprinted(name), *want, "{name:?}");
        }
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
