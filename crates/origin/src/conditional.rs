//! Conditional requests (RFC 9110 §13): `If-Match`, `If-Unmodified-Since`, `If-None-Match`
//! and `If-Modified-Since`, evaluated in the RFC's order against a file's strong ETag and
//! its deployment time. Pure.

use http::Method;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The outcome of the preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the representation (200 or a range).
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// The request's conditional headers (raw values).
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions<'a> {
    /// `If-Match`.
    pub if_match: Option<&'a str>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a str>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a str>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<&'a str>,
}

impl<'a> Conditions<'a> {
    /// The conditional headers of a request.
    pub fn from_headers(h: &'a http::HeaderMap) -> Self {
        let get = |n: http::header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
        Conditions {
            if_match: get(http::header::IF_MATCH),
            if_none_match: get(http::header::IF_NONE_MATCH),
            if_modified_since: get(http::header::IF_MODIFIED_SINCE),
            if_unmodified_since: get(http::header::IF_UNMODIFIED_SINCE),
        }
    }

    /// Whether an entity-tag list (`If-Match` / `If-None-Match`) is present: only those
    /// compare the [`Validators::equivalent`] tags.
    pub fn has_tag_lists(&self) -> bool {
        self.if_match.is_some() || self.if_none_match.is_some()
    }
}

/// What the server knows about the selected representation.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// The strong ETag of the representation being served (quoted).
    pub etag: &'a str,
    /// Every ETag of the same content (each content coding): `If-None-Match` compares
    /// weakly, and all of them name unchanged content.
    pub equivalent: &'a [String],
    /// Last-Modified, unix seconds.
    pub last_modified: i64,
}

/// The strong ETag of a blob, per content coding (`None`: identity).
pub fn etag(hash: &str, coding: Option<&str>) -> String {
    // Built by hand: this runs on every file answer, and `format!` costs several times more.
    let coding = coding.unwrap_or("");
    let mut tag = String::with_capacity(hash.len() + coding.len() + 3);
    tag.push('"');
    tag.push_str(hash);
    if !coding.is_empty() {
        tag.push('-');
        tag.push_str(coding);
    }
    tag.push('"');
    tag
}

/// An HTTP date for unix seconds.
pub fn http_date(unix: i64) -> String {
    httpdate::fmt_http_date(system_time(unix))
}

fn system_time(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0))
}

/// Parses an HTTP date to unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// One entity tag of a list: whether it is weak, and its opaque part with quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tag<'a> {
    pub weak: bool,
    pub opaque: &'a str,
}

/// Parses `*` or a comma-separated list of entity tags. `None` when malformed;
/// `Some(None)` for `*`.
pub(crate) fn parse_tags(s: &str) -> Option<Option<Vec<Tag<'_>>>> {
    let s = s.trim();
    if s == "*" {
        return Some(None);
    }
    let mut tags = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let (weak, body) = match rest.strip_prefix("W/") {
            Some(b) => (true, b),
            None => (false, rest),
        };
        if !body.starts_with('"') {
            return None;
        }
        let end = body[1..].find('"')? + 2;
        let opaque = &body[..end];
        // etagc: %x21 / %x23-7E / obs-text; no spaces or controls inside.
        if opaque[1..end - 1]
            .bytes()
            .any(|b| b == b' ' || b.is_ascii_control())
        {
            return None;
        }
        tags.push(Tag { weak, opaque });
        rest = &body[end..];
        let next = rest.trim_start_matches([' ', '\t']);
        if !(next.is_empty() || next.starts_with(',')) {
            return None;
        }
    }
    if tags.is_empty() {
        None
    } else {
        Some(Some(tags))
    }
}

/// Strong comparison: both strong, same opaque tag.
pub(crate) fn strong_match(tag: &Tag<'_>, etag: &str) -> bool {
    !tag.weak && !etag.starts_with("W/") && tag.opaque == etag
}

fn weak_match(tag: &Tag<'_>, etag: &str) -> bool {
    tag.opaque == etag.strip_prefix("W/").unwrap_or(etag)
}

/// Evaluates the preconditions for a file that exists (RFC 9110 §13.2.2).
pub fn evaluate(method: &Method, c: &Conditions<'_>, v: &Validators<'_>) -> Precondition {
    let safe = method == Method::GET || method == Method::HEAD;
    // 1. If-Match, strong comparison; a malformed list matches nothing.
    if let Some(im) = c.if_match {
        let ok = match parse_tags(im) {
            Some(None) => true,
            Some(Some(tags)) => tags.iter().any(|t| strong_match(t, v.etag)),
            None => false,
        };
        if !ok {
            return Precondition::Failed;
        }
    } else if let Some(ius) = c.if_unmodified_since.and_then(parse_http_date) {
        // 2. If-Unmodified-Since, only without If-Match; an invalid date is ignored.
        if v.last_modified > ius {
            return Precondition::Failed;
        }
    }
    // 3. If-None-Match, weak comparison; a malformed list matches nothing.
    if let Some(inm) = c.if_none_match {
        let matched = match parse_tags(inm) {
            Some(None) => true,
            Some(Some(tags)) => tags
                .iter()
                .any(|t| weak_match(t, v.etag) || v.equivalent.iter().any(|e| weak_match(t, e))),
            None => false,
        };
        if matched {
            return if safe {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe {
        // 4. If-Modified-Since, only for GET/HEAD without If-None-Match.
        if let Some(ims) = c.if_modified_since.and_then(parse_http_date) {
            if v.last_modified <= ims {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

#[cfg(test)]
mod tests {
    use super::*;
    use Precondition::*;

    #[test]
    fn tag_lists() {
        let t = |weak, opaque| Tag { weak, opaque };
        type Case<'a> = (&'a str, Option<Option<Vec<Tag<'a>>>>);
        // After Go's TestScanETag.
        let cases: Vec<Case> = vec![
            ("*", Some(None)),
            (r#"W/"etag-1""#, Some(Some(vec![t(true, r#""etag-1""#)]))),
            (r#""etag-2""#, Some(Some(vec![t(false, r#""etag-2""#)]))),
            (
                r#""etag-1", "etag-2""#,
                Some(Some(vec![t(false, r#""etag-1""#), t(false, r#""etag-2""#)])),
            ),
            (
                r#""a","b""#,
                Some(Some(vec![t(false, r#""a""#), t(false, r#""b""#)])),
            ),
            ("", None),
            (",", None),
            ("W/", None),
            (r#"W/"truc"#, None),
            (r#"w/"case-sensitive""#, None),
            (r#""spaced etag""#, None),
            (r#""a" junk"#, None),
            ("abc", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_tags(s), want, "{s:?}");
        }
    }

    #[test]
    fn preconditions_table() {
        let get = Method::GET;
        let head = Method::HEAD;
        let post = Method::POST;
        let modified = 1_403_716_338; // Wed, 25 Jun 2014 17:12:18 GMT
        let at = "Wed, 25 Jun 2014 17:12:18 GMT";
        let before = "Wed, 25 Jun 2014 17:12:16 GMT";
        let after = "Wed, 25 Jun 2014 17:12:19 GMT";
        let etag = r#""abc""#;
        let br = vec![r#""abc-br""#.to_owned()];
        let c = |im, inm, ims, ius| Conditions {
            if_match: im,
            if_none_match: inm,
            if_modified_since: ims,
            if_unmodified_since: ius,
        };
        // (name, method, conditions, want) — cases after Go's TestServeContent and
        // static-web-server's tests/etag.rs, with the RFC 9110 ordering between headers.
        let cases: Vec<(&str, &Method, Conditions, Precondition)> = vec![
            ("no conditions", &get, c(None, None, None, None), Proceed),
            (
                "not_modified_etag",
                &get,
                c(None, Some(etag), None, None),
                NotModified,
            ),
            (
                "not_modified_etag head",
                &head,
                c(None, Some(etag), None, None),
                NotModified,
            ),
            (
                "weak client tag matches weakly",
                &get,
                c(None, Some(r#""baz", W/"abc""#), None, None),
                NotModified,
            ),
            (
                "if_none_match_mismatch (case)",
                &get,
                c(None, Some(r#""ABC""#), None, None),
                Proceed,
            ),
            (
                "if_none_match_malformed",
                &get,
                c(None, Some(","), None, None),
                Proceed,
            ),
            (
                "if_none_match star",
                &get,
                c(None, Some("*"), None, None),
                NotModified,
            ),
            (
                "if_none_match other coding's tag",
                &get,
                c(None, Some(r#""abc-br""#), None, None),
                NotModified,
            ),
            (
                "if_none_match on POST fails",
                &post,
                c(None, Some(etag), None, None),
                Failed,
            ),
            (
                "not_modified_modtime",
                &get,
                c(None, None, Some(at), None),
                NotModified,
            ),
            (
                "modified since earlier date",
                &get,
                c(None, None, Some(before), None),
                Proceed,
            ),
            (
                "not modified since later date",
                &get,
                c(None, None, Some(after), None),
                NotModified,
            ),
            (
                "invalid IMS ignored",
                &get,
                c(None, None, Some("yesterday"), None),
                Proceed,
            ),
            (
                "IMS ignored for POST",
                &post,
                c(None, None, Some(after), None),
                Proceed,
            ),
            (
                "INM mismatch wins over IMS",
                &get,
                c(None, Some(r#""zzz""#), Some(after), None),
                Proceed,
            ),
            (
                "ifmatch_matches",
                &get,
                c(Some(r#""Z", "abc""#), None, None, None),
                Proceed,
            ),
            (
                "ifmatch_star",
                &get,
                c(Some("*"), None, None, None),
                Proceed,
            ),
            (
                "ifmatch_failed",
                &get,
                c(Some(r#""B""#), None, None, None),
                Failed,
            ),
            (
                "ifmatch weak tag never matches",
                &get,
                c(Some(r#"W/"abc""#), None, None, None),
                Failed,
            ),
            (
                "ifmatch malformed",
                &get,
                c(Some("abc"), None, None, None),
                Failed,
            ),
            (
                "ifmatch is strong per coding",
                &get,
                c(Some(r#""abc-br""#), None, None, None),
                Failed,
            ),
            (
                "if_unmodified_since_true",
                &get,
                c(None, None, None, Some(at)),
                Proceed,
            ),
            (
                "if_unmodified_since_false",
                &get,
                c(None, None, None, Some(before)),
                Failed,
            ),
            (
                "IUS ignored with If-Match",
                &get,
                c(Some(etag), None, None, Some(before)),
                Proceed,
            ),
            (
                "IUS invalid date ignored",
                &get,
                c(None, None, None, Some("nope")),
                Proceed,
            ),
            (
                "412 wins over 304",
                &get,
                c(Some(r#""B""#), Some(etag), None, None),
                Failed,
            ),
            (
                "If-Match ok then 304",
                &get,
                c(Some(etag), Some(etag), None, None),
                NotModified,
            ),
        ];
        for (name, method, cond, want) in cases {
            let v = Validators {
                etag,
                equivalent: &br,
                last_modified: modified,
            };
            assert_eq!(evaluate(method, &cond, &v), want, "{name}");
        }
    }

    #[test]
    fn which_headers_are_tag_lists() {
        // Only If-Match and If-None-Match compare the other codings' tags.
        let cases: &[(&[(http::header::HeaderName, &str)], bool)] = &[
            (&[], false),
            (
                &[(
                    http::header::IF_MODIFIED_SINCE,
                    "Wed, 25 Jun 2014 17:12:18 GMT",
                )],
                false,
            ),
            (
                &[(
                    http::header::IF_UNMODIFIED_SINCE,
                    "Wed, 25 Jun 2014 17:12:18 GMT",
                )],
                false,
            ),
            (&[(http::header::IF_NONE_MATCH, r#""a""#)], true),
            (&[(http::header::IF_MATCH, "*")], true),
        ];
        for (headers, want) in cases {
            let mut h = http::HeaderMap::new();
            for (name, value) in *headers {
                h.insert(
                    name.clone(),
                    http::HeaderValue::from_str(value).expect("a valid value"),
                );
            }
            assert_eq!(
                Conditions::from_headers(&h).has_tag_lists(),
                *want,
                "{headers:?}"
            );
        }
    }

    #[test]
    fn etags_and_dates() {
        assert_eq!(etag("ab12", None), r#""ab12""#);
        assert_eq!(etag("ab12", Some("br")), r#""ab12-br""#);
        assert_eq!(http_date(1_403_716_338), "Wed, 25 Jun 2014 17:12:18 GMT");
        assert_eq!(
            parse_http_date("Wed, 25 Jun 2014 17:12:18 GMT"),
            Some(1_403_716_338)
        );
        assert_eq!(parse_http_date("Wednesday"), None);
        assert_eq!(http_date(-5), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
