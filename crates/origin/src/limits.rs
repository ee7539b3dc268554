//! Bounds on a request's head, checked first in [`crate::Origin::handle`], so that no
//! request costs more work or memory than a reasonable one: a request whose target is too
//! long answers 414, one with too many or too large headers 431. Pure.
//!
//! The limits follow the fronts skyhost runs behind on AWS, so the origin never refuses a
//! request they let through, and local mode refuses what they would:
//!
//! | limit | skyhost | CloudFront | API Gateway (REST) |
//! |---|---|---|---|
//! | request target (path and query) | [`MAX_URI`] = 8,192 bytes → 414 | URL: 8,192 bytes | URL: 10,240 characters |
//! | header fields | [`MAX_HEADERS`] = 100 → 431 | — | — |
//! | header bytes (names, values, 4 per line) | [`MAX_HEADER_BYTES`] = 16,384 → 431 | whole request head: 20,480 bytes | request line and header values: 10,240 bytes |
//!
//! API Gateway passes at most 10,240 bytes of header values, which with the names of the
//! headers CloudFront and API Gateway add stays below [`MAX_HEADER_BYTES`]. 100 header
//! fields is hyper's own default, which local mode's listeners already apply.

use crate::body::OriginBody;
use crate::cache_control;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};

/// Longest request target (scheme, authority, path and query as sent), in bytes.
pub const MAX_URI: usize = 8 * 1024;
/// Most header fields (each value of a repeated header counts).
pub const MAX_HEADERS: usize = 100;
/// Most header bytes: every name and value, plus 4 per field for `: ` and CRLF.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// A bound the request's head exceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// The request target is longer than [`MAX_URI`].
    Uri,
    /// More than [`MAX_HEADERS`] header fields.
    HeaderCount,
    /// More than [`MAX_HEADER_BYTES`] of headers.
    HeaderBytes,
}

impl Exceeded {
    /// The status that answers it.
    pub fn status(self) -> StatusCode {
        match self {
            Exceeded::Uri => StatusCode::URI_TOO_LONG,
            Exceeded::HeaderCount | Exceeded::HeaderBytes => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
        }
    }

    fn text(self) -> &'static str {
        match self {
            Exceeded::Uri => "URI Too Long\n",
            Exceeded::HeaderCount | Exceeded::HeaderBytes => "Request Header Fields Too Large\n",
        }
    }

    /// The plain-text, never-stored answer.
    pub fn response(self) -> Response<OriginBody> {
        let text = self.text();
        let mut r = Response::new(OriginBody::from(text));
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control::NO_STORE),
        );
        r
    }
}

/// The request target's length as it was sent, without building it.
fn uri_len(uri: &http::Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let target = uri
        .path_and_query()
        .map_or(uri.path().len(), |pq| pq.as_str().len());
    scheme + authority + target
}

/// The first bound the request's head exceeds, if any. Counting stops as soon as a bound
/// is passed, so the check costs at most the bounds.
pub fn check(parts: &Parts) -> Result<(), Exceeded> {
    if uri_len(&parts.uri) > MAX_URI {
        return Err(Exceeded::Uri);
    }
    if parts.headers.len() > MAX_HEADERS {
        return Err(Exceeded::HeaderCount);
    }
    let mut bytes = 0usize;
    for (name, value) in &parts.headers {
        bytes += name.as_str().len() + value.len() + 4;
        if bytes > MAX_HEADER_BYTES {
            return Err(Exceeded::HeaderBytes);
        }
    }
    Ok(())
}

/// The answer to a request that exceeds a bound; `None` for every other request.
pub fn refuse(parts: &Parts) -> Option<Response<OriginBody>> {
    check(parts).err().map(Exceeded::response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(uri: &str, headers: &[(String, String)]) -> Parts {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(()).unwrap().into_parts().0
    }

    fn n_headers(n: usize, value_len: usize) -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("x-h{i}"), "v".repeat(value_len)))
            .collect()
    }

    /// Request target, headers, verdict.
    type Case = (String, Vec<(String, String)>, Result<(), Exceeded>);

    #[test]
    fn limits_table() {
        let path = |len: usize| format!("/{}", "a".repeat(len - 1));
        // One field of `len` bytes in all: name `x-big` (5) + value + 4.
        let big = |len: usize| vec![("x-big".to_string(), "v".repeat(len - 9))];
        let cases: Vec<Case> = vec![
            ("/".into(), vec![], Ok(())),
            (path(MAX_URI), vec![], Ok(())),
            (path(MAX_URI + 1), vec![], Err(Exceeded::Uri)),
            (format!("/?{}", "q".repeat(MAX_URI - 2)), vec![], Ok(())),
            (
                format!("/?{}", "q".repeat(MAX_URI - 1)),
                vec![],
                Err(Exceeded::Uri),
            ),
            // Absolute form counts scheme and authority too.
            (
                format!("http://s.test{}", path(MAX_URI - 13)),
                vec![],
                Ok(()),
            ),
            (
                format!("http://s.test{}", path(MAX_URI - 12)),
                vec![],
                Err(Exceeded::Uri),
            ),
            ("/".into(), n_headers(MAX_HEADERS, 1), Ok(())),
            (
                "/".into(),
                n_headers(MAX_HEADERS + 1, 1),
                Err(Exceeded::HeaderCount),
            ),
            ("/".into(), big(MAX_HEADER_BYTES), Ok(())),
            (
                "/".into(),
                big(MAX_HEADER_BYTES + 1),
                Err(Exceeded::HeaderBytes),
            ),
            // Many medium headers add up.
            ("/".into(), n_headers(45, 400), Err(Exceeded::HeaderBytes)),
            ("/".into(), n_headers(30, 400), Ok(())),
            // The target is judged first.
            (
                path(MAX_URI + 1),
                n_headers(MAX_HEADERS + 1, 1),
                Err(Exceeded::Uri),
            ),
        ];
        for (uri, headers, want) in cases {
            let p = parts(&uri, &headers);
            assert_eq!(
                check(&p),
                want,
                "uri of {} bytes, {} headers",
                uri.len(),
                headers.len()
            );
        }
    }

    #[test]
    fn repeated_headers_count_each_value() {
        let mut p = parts("/", &[]);
        for _ in 0..=MAX_HEADERS {
            p.headers
                .append(header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        assert_eq!(check(&p), Err(Exceeded::HeaderCount));
    }

    #[test]
    fn answers_are_plain_and_not_stored() {
        for (e, status) in [
            (Exceeded::Uri, 414),
            (Exceeded::HeaderCount, 431),
            (Exceeded::HeaderBytes, 431),
        ] {
            let r = e.response();
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(r.headers()[header::CACHE_CONTROL], cache_control::NO_STORE);
            assert!(r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain"));
        }
    }
}
