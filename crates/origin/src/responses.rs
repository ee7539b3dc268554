//! The small answers every part of the origin makes (plain text, JSON, redirects, the
//! unknown host), the `X-Skyhost-*` header names, and how `_headers` values are laid on an
//! answer. Below every serving module, so none of them imports from the handler.

use crate::body::OriginBody;
use crate::cache_control;
use crate::data::DataError;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

/// `X-Skyhost-Region`.
pub const X_SKYHOST_REGION: HeaderName = HeaderName::from_static("x-skyhost-region");
/// `X-Skyhost-Deployment`.
pub const X_SKYHOST_DEPLOYMENT: HeaderName = HeaderName::from_static("x-skyhost-deployment");
/// The revision of the site record the answer was made from: how far behind a region is
/// (`skyhost status`).
pub const X_SKYHOST_REVISION: HeaderName = HeaderName::from_static("x-skyhost-revision");
/// `X-Skyhost-Cache`.
pub const X_SKYHOST_CACHE: HeaderName = HeaderName::from_static("x-skyhost-cache");

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// The headers of a plain-text answer of `len` bytes that nobody keeps.
pub(crate) fn plain_headers(h: &mut http::HeaderMap, len: usize) {
    h.insert(header::CONTENT_TYPE, TEXT);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control::NO_STORE),
    );
}

/// A plain-text answer that nobody keeps.
pub fn plain(status: StatusCode, text: &'static str) -> Response<OriginBody> {
    let mut r = Response::new(OriginBody::from(text));
    *r.status_mut() = status;
    plain_headers(r.headers_mut(), text.len());
    r
}

/// A JSON answer that nobody keeps.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<OriginBody> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let len = body.len();
    let mut r = Response::new(OriginBody::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control::NO_STORE),
    );
    r
}

/// The answer to every host that serves nothing: it says nothing about other sites.
pub fn unknown_host() -> Response<OriginBody> {
    plain(StatusCode::NOT_FOUND, "Not Found\n")
}

/// 405 with the methods the resource allows.
pub fn method_not_allowed(allow: &'static str) -> Response<OriginBody> {
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// A redirect to `location` (a 500 if it cannot be a header value).
pub fn redirect(status: StatusCode, location: &str) -> Response<OriginBody> {
    let Ok(loc) = HeaderValue::from_str(location) else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
    };
    let mut r = Response::new(OriginBody::empty());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::LOCATION, loc);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control::REVALIDATE),
    );
    r
}

/// `s` as a header value; the values built here come from validated names and ids, so an
/// invalid one stands out as `invalid` rather than failing the answer.
pub fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Sets `_headers` values on an answer; they override defaults such as `Cache-Control`,
/// never the headers the server owns.
pub fn apply_headers(resp: &mut Response<OriginBody>, headers: Vec<(String, String)>) {
    for (name, value) in headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if owned_header(&name) {
            continue;
        }
        let Ok(value) = HeaderValue::from_str(&value) else {
            continue;
        };
        let h = resp.headers_mut();
        if name == header::VARY {
            h.append(name, value);
        } else {
            h.insert(name, value);
        }
    }
}

/// Headers `_headers` may never set, whatever the manifest says.
fn owned_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "content-encoding"
            | "content-range"
            | "keep-alive"
            | "upgrade"
            | "trailer"
            | "te"
    ) || name.as_str().starts_with("x-skyhost-")
}

/// The status of a failed read: a missing object is the deployment's fault (500), a
/// failing bucket the region's (503).
pub fn data_status(e: &DataError) -> StatusCode {
    match e {
        DataError::Missing(_) => StatusCode::INTERNAL_SERVER_ERROR,
        DataError::Blob(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The plain text of a server error.
pub fn error_text(status: StatusCode) -> &'static str {
    match status {
        StatusCode::INTERNAL_SERVER_ERROR => "Internal Server Error\n",
        StatusCode::BAD_GATEWAY => "Bad Gateway\n",
        StatusCode::GATEWAY_TIMEOUT => "Gateway Timeout\n",
        _ => "Service Unavailable\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_never_set_the_headers_the_server_owns() {
        let cases = [
            ("cache-control", "max-age=60", Some("max-age=60")),
            ("x-frame-options", "DENY", Some("DENY")),
            ("content-length", "1", None),
            ("Transfer-Encoding", "chunked", None),
            ("content-encoding", "br", None),
            ("X-Skyhost-Region", "elsewhere", None),
            ("bad name", "v", None),
            ("x-ok", "bad\nvalue", None),
        ];
        for (name, value, expected) in cases {
            let mut r = plain(StatusCode::OK, "x");
            r.headers_mut().remove(header::CACHE_CONTROL);
            r.headers_mut().remove(header::CONTENT_LENGTH);
            apply_headers(&mut r, vec![(name.to_owned(), value.to_owned())]);
            let got = HeaderName::from_bytes(name.as_bytes())
                .ok()
                .and_then(|n| r.headers().get(n))
                .and_then(|v| v.to_str().ok());
            assert_eq!(got, expected, "{name}: {value}");
        }
    }
}
