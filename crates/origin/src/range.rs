//! Single byte ranges (RFC 9110 §14): `a-b`, `a-` and `-n`, honouring `If-Range`. Pure.
//!
//! Choices where servers differ: several ranges are answered with the whole body (200;
//! skyhost serves single ranges only), a malformed `bytes=` specifier is refused with 416
//! as static-web-server does, `-0` is unsatisfiable as RFC 9110 says, ranges of an empty
//! body are ignored as Go does, and other range units are ignored.

use crate::conditional::{parse_http_date, parse_tags, strong_match};
use std::ops::Range;

/// What to answer for a `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeDecision {
    /// 200 with the whole body.
    Full,
    /// 206 with bytes `start..end` (end exclusive).
    Partial(Range<u64>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Whether an `If-Range` value still names the current representation: a strong ETag
/// equal to `etag`, or an HTTP date equal to Last-Modified. A weak tag never matches.
pub fn if_range_matches(value: &str, etag: &str, last_modified: i64) -> bool {
    let v = value.trim();
    if v.starts_with('"') || v.starts_with("W/") {
        return match parse_tags(v) {
            Some(Some(tags)) if tags.len() == 1 => strong_match(&tags[0], etag),
            _ => false,
        };
    }
    parse_http_date(v) == Some(last_modified)
}

/// Decides a `Range` header for a body of `len` bytes. `if_range_ok` is false when an
/// `If-Range` was sent and does not match (the whole body is then served).
pub fn decide(range: Option<&str>, if_range_ok: bool, len: u64) -> RangeDecision {
    match range {
        Some(r) if if_range_ok => parse(r, len),
        _ => RangeDecision::Full,
    }
}

/// Parses a `Range` header for a body of `len` bytes.
pub fn parse(header: &str, len: u64) -> RangeDecision {
    let header = header.trim();
    let Some((unit, set)) = header.split_once('=') else {
        return RangeDecision::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeDecision::Full;
    }
    if len == 0 {
        return RangeDecision::Full;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    match specs.as_slice() {
        [] => RangeDecision::Unsatisfiable,
        [one] => spec(one, len),
        _ => RangeDecision::Full,
    }
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: only overflow can fail, and an overflowing position is past any body.
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

fn spec(s: &str, len: u64) -> RangeDecision {
    let Some((a, b)) = s.split_once('-') else {
        return RangeDecision::Unsatisfiable;
    };
    if a.is_empty() {
        return match digits(b) {
            Some(0) | None => RangeDecision::Unsatisfiable,
            Some(n) => RangeDecision::Partial(len.saturating_sub(n)..len),
        };
    }
    let Some(start) = digits(a) else {
        return RangeDecision::Unsatisfiable;
    };
    let end = if b.is_empty() {
        len
    } else {
        match digits(b) {
            Some(last) if last >= start => last.saturating_add(1).min(len),
            _ => return RangeDecision::Unsatisfiable,
        }
    };
    if start >= len {
        return RangeDecision::Unsatisfiable;
    }
    RangeDecision::Partial(start..end)
}

/// `Content-Range` of a partial response.
pub fn content_range(r: &Range<u64>, len: u64) -> String {
    format!("bytes {}-{}/{len}", r.start, r.end.saturating_sub(1))
}

/// `Content-Range` of a 416.
pub fn unsatisfied(len: u64) -> String {
    format!("bytes */{len}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeDecision::*;

    #[test]
    fn ranges_of_an_eleven_byte_body() {
        // Go's ServeFileRangeTests (testFileLen = 11), single ranges; several ranges are
        // answered with the whole body where Go sends multipart/byteranges.
        let len = 11;
        let cases: &[(&str, RangeDecision)] = &[
            ("bytes=0-4", Partial(0..5)),
            ("bytes=2-", Partial(2..11)),
            ("bytes=-5", Partial(6..11)),
            ("bytes=3-7", Partial(3..8)),
            // A single byte: first and last position equal.
            ("bytes=5-5", Partial(5..6)),
            ("bytes=0-0", Partial(0..1)),
            ("bytes=10-10", Partial(10..11)),
            ("bytes=-1", Partial(10..11)),
            ("bytes=5-1000", Partial(5..11)),
            ("bytes=0-9", Partial(0..10)),
            ("bytes=0-10", Partial(0..11)),
            ("bytes=0-11", Partial(0..11)),
            ("bytes=10-11", Partial(10..11)),
            ("bytes=10-", Partial(10..11)),
            ("bytes=11-", Unsatisfiable),
            ("bytes=11-12", Unsatisfiable),
            ("bytes=12-12", Unsatisfiable),
            ("bytes=11-100", Unsatisfiable),
            ("bytes=12-100", Unsatisfiable),
            ("bytes=100-", Unsatisfiable),
            ("bytes=100-1000", Unsatisfiable),
            ("bytes=0-0,-2", Full),
            ("bytes=0-1,5-8", Full),
            ("bytes=0-,1-,2-,3-,4-", Full),
            // Suffix longer than the body: the whole body, as a range (RFC 9110 §14.1.2).
            ("bytes=-12", Partial(0..11)),
            ("bytes=-99999999999999999999999", Partial(0..11)),
            ("bytes=0-99999999999999999999999", Partial(0..11)),
            // Go's TestServeFileRejectsInvalidSuffixLengths.
            ("bytes=--6", Unsatisfiable),
            ("bytes=--0", Unsatisfiable),
            ("bytes=---0", Unsatisfiable),
            ("bytes=-6-", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            // static-web-server's handle_byte_ranges_bad / _bad_non_numeric / _bad_3.
            ("bytes=10-1", Unsatisfiable),
            ("bytes=xyx-abc", Unsatisfiable),
            ("bytes=", Unsatisfiable),
            ("bytes=+1-2", Unsatisfiable),
            ("bytes=1", Unsatisfiable),
            // Spacing, case and trailing commas are tolerated; other units are ignored.
            ("bytes= 0-4 ", Partial(0..5)),
            ("Bytes=0-4", Partial(0..5)),
            ("bytes=0-4,", Partial(0..5)),
            ("items=0-4", Full),
            ("0-4", Full),
        ];
        for (h, want) in cases {
            assert_eq!(parse(h, len), *want, "{h:?}");
        }
    }

    #[test]
    fn empty_bodies_ignore_ranges() {
        // Go's TestServeContentWithEmptyContentIgnoreRanges.
        for h in ["bytes=0-128", "bytes=1-", "bytes=-1"] {
            assert_eq!(parse(h, 0), Full, "{h:?}");
        }
    }

    #[test]
    fn if_range_table() {
        let etag = r#""A""#;
        let modified = 1_403_716_338; // Wed, 25 Jun 2014 17:12:18 GMT
                                      // Go's range_match / range_match_weak_etag / range_no_match / range_with_modtime*.
        let cases: &[(&str, bool)] = &[
            (r#""A""#, true),
            (r#"W/"A""#, false),
            (r#""B""#, false),
            (r#""A", "B""#, false),
            ("Wed, 25 Jun 2014 17:12:18 GMT", true),
            ("Wed, 25 Jun 2014 17:12:19 GMT", false),
            ("Wed, 25 Jun 2014 17:12:17 GMT", false),
            ("garbage", false),
        ];
        for (v, want) in cases {
            assert_eq!(if_range_matches(v, etag, modified), *want, "{v:?}");
        }
        assert_eq!(decide(Some("bytes=0-4"), false, 8), Full);
        assert_eq!(decide(Some("bytes=0-4"), true, 8), Partial(0..5));
        assert_eq!(decide(None, true, 8), Full);
        // A weak validator could not have been sent by us: strong comparison fails.
        assert!(!if_range_matches(r#"W/"A""#, r#"W/"A""#, modified));
    }

    #[test]
    fn content_range_headers() {
        assert_eq!(content_range(&(0..5), 8), "bytes 0-4/8");
        assert_eq!(content_range(&(10..11), 11), "bytes 10-10/11");
        assert_eq!(unsatisfied(8), "bytes */8");
    }
}
