//! The answer to a request for one manifest file, decided before a byte is read: status,
//! headers, which stored body (coding) and which bytes of it. Pure; built from [`range`],
//! [`conditional`], [`encoding`] and [`cache_control`], and tested by a table of (request
//! headers, file) → (status, headers, body) in the manner of tower-http's `ServeDir`.
//!
//! Order (RFC 9110 §13.2.2): preconditions, then the range, then the content coding; a
//! range applies to the identity body, so a partial answer is never encoded.
//!
//! Only the requested resource itself carries validators (`ETag`, `Last-Modified`): a page
//! standing in for a 404, 410 or 5xx is not the representation the request names, so
//! preconditions never apply to it (RFC 9110 §13.2.1) and it comes back whole, with its
//! status.

use crate::cache_control;
use crate::conditional::{self, Conditions, Precondition, Validators};
use crate::encoding;
use crate::range::{self, RangeDecision};
use crate::responses::{header_value, plain_headers};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use skyhost_meta::{Encoding, FileEntry};
use std::ops::Range;

/// How a file is being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The requested resource: preconditions and ranges apply.
    File,
    /// A page standing in for a 404/410 (or another status).
    Page,
    /// The 5xx page: a failure to read it is answered in plain text.
    ErrorPage,
}

/// The request, as far as a file answer depends on it.
#[derive(Debug, Clone, Copy)]
pub struct FileRequest<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its headers (`Range`, `If-*`, `Accept-Encoding`).
    pub headers: &'a HeaderMap,
}

/// The file being served.
#[derive(Debug, Clone, Copy)]
pub struct ServedFile<'a> {
    /// Its path in the manifest (the default `Cache-Control` looks at its name).
    pub path: &'a str,
    /// Its manifest entry.
    pub entry: &'a FileEntry,
    /// The deployment's creation time, unix seconds: every file's Last-Modified.
    pub created: i64,
    /// The same as an HTTP date, made once per deployment.
    pub last_modified: &'a HeaderValue,
}

/// Which stored body to send, and which of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRead {
    /// The content coding of the stored variant (`None`: identity).
    pub coding: Option<Encoding>,
    /// The stored variant's size.
    pub size: u64,
    /// The bytes to send, when not all of them.
    pub range: Option<Range<u64>>,
}

/// What follows the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedBody {
    /// Nothing: `HEAD`, 304, 416.
    Empty,
    /// A fixed text (412).
    Text(&'static str),
    /// A stored body.
    Blob(BlobRead),
}

/// The decided answer.
#[derive(Debug, Clone)]
pub struct FilePlan {
    /// Its status.
    pub status: StatusCode,
    /// Its headers, before `_headers` rules.
    pub headers: HeaderMap,
    /// Its body.
    pub body: PlannedBody,
}

/// Decides the answer to `req` serving `file` with `status` (200 for the resource itself,
/// the page's status otherwise).
pub fn plan(
    req: FileRequest<'_>,
    file: ServedFile<'_>,
    status: StatusCode,
    mode: Mode,
) -> FilePlan {
    let entry = file.entry;
    let hash = entry.hash.as_str();
    let header = |name: header::HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
    let get_or_head = req.method == Method::GET || req.method == Method::HEAD;
    let preconditions = mode == Mode::File && status == StatusCode::OK;
    let decision = if preconditions && get_or_head {
        let if_range_ok = match req.headers.get(header::IF_RANGE) {
            None => true,
            Some(v) => v.to_str().is_ok_and(|v| {
                range::if_range_matches(v, &conditional::etag(hash, None), file.created)
            }),
        };
        range::decide(header(header::RANGE), if_range_ok, entry.size)
    } else {
        RangeDecision::Full
    };
    let available: Vec<Encoding> = entry.encodings.keys().copied().collect();
    // Ranges apply to the identity body.
    let coding = match decision {
        RangeDecision::Full => encoding::negotiate(header(header::ACCEPT_ENCODING), &available),
        _ => None,
    };
    let etag = conditional::etag(hash, coding.map(Encoding::token));

    // Room for every header a file answer carries, so the map never regrows.
    let mut h = HeaderMap::with_capacity(16);
    if preconditions {
        h.insert(header::ETAG, header_value(&etag));
        h.insert(header::LAST_MODIFIED, file.last_modified.clone());
    }
    let cc = match mode {
        Mode::File => cache_control::for_file(file.path, &entry.content_type),
        Mode::Page => cache_control::REVALIDATE,
        Mode::ErrorPage => cache_control::NO_STORE,
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    if !available.is_empty() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if preconditions {
        let conditions = Conditions::from_headers(req.headers);
        // The tags of the other codings matter only to an If-None-Match / If-Match.
        let equivalent: Vec<String> = if conditions.has_tag_lists() {
            std::iter::once(conditional::etag(hash, None))
                .chain(
                    available
                        .iter()
                        .map(|e| conditional::etag(hash, Some(e.token()))),
                )
                .collect()
        } else {
            Vec::new()
        };
        let validators = Validators {
            etag: &etag,
            equivalent: &equivalent,
            last_modified: file.created,
        };
        match conditional::evaluate(req.method, &conditions, &validators) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                return FilePlan {
                    status: StatusCode::NOT_MODIFIED,
                    headers: h,
                    body: PlannedBody::Empty,
                }
            }
            Precondition::Failed => {
                const FAILED: &str = "Precondition Failed\n";
                let mut h = HeaderMap::with_capacity(4);
                plain_headers(&mut h, FAILED.len());
                return FilePlan {
                    status: StatusCode::PRECONDITION_FAILED,
                    headers: h,
                    body: PlannedBody::Text(FAILED),
                };
            }
        }
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let RangeDecision::Unsatisfiable = decision {
        h.insert(
            header::CONTENT_RANGE,
            header_value(&range::unsatisfied(entry.size)),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        return FilePlan {
            status: StatusCode::RANGE_NOT_SATISFIABLE,
            headers: h,
            body: PlannedBody::Empty,
        };
    }
    h.insert(header::CONTENT_TYPE, header_value(&entry.content_type));
    let (status, read, len) = match decision {
        RangeDecision::Partial(r) => {
            h.insert(
                header::CONTENT_RANGE,
                header_value(&range::content_range(&r, entry.size)),
            );
            let len = r.end - r.start;
            let read = BlobRead {
                coding: None,
                size: entry.size,
                range: Some(r),
            };
            (StatusCode::PARTIAL_CONTENT, read, len)
        }
        _ => {
            let size = match coding {
                Some(c) => {
                    h.insert(
                        header::CONTENT_ENCODING,
                        HeaderValue::from_static(c.token()),
                    );
                    entry.encodings.get(&c).copied().unwrap_or(entry.size)
                }
                None => entry.size,
            };
            let read = BlobRead {
                coding,
                size,
                range: None,
            };
            (status, read, size)
        }
    };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let body = if req.method == Method::HEAD {
        PlannedBody::Empty
    } else {
        PlannedBody::Blob(read)
    };
    FilePlan {
        status,
        headers: h,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhost_meta::BlobHash;
    use std::collections::BTreeMap;

    /// 2026-01-03T10:11:20Z, the deployment time of every case.
    const CREATED: i64 = 1_767_435_080;
    const LAST_MODIFIED: &str = "Sat, 03 Jan 2026 10:11:20 GMT";
    const EARLIER: &str = "Fri, 02 Jan 2026 10:11:20 GMT";

    fn entry(size: u64, content_type: &str, encodings: &[(Encoding, u64)]) -> FileEntry {
        FileEntry {
            hash: BlobHash::of(b"the file"),
            size,
            content_type: content_type.to_owned(),
            encodings: encodings.iter().copied().collect::<BTreeMap<_, _>>(),
        }
    }

    fn tag(coding: Option<&str>) -> String {
        conditional::etag(BlobHash::of(b"the file").as_str(), coding)
    }

    /// One case: the request, the file and how it is served, and the answer expected.
    struct Case {
        name: &'static str,
        method: Method,
        headers: Vec<(&'static str, String)>,
        path: &'static str,
        entry: FileEntry,
        status: StatusCode,
        mode: Mode,
        want_status: StatusCode,
        /// Headers that must be present with these values (`None`: absent).
        want_headers: Vec<(&'static str, Option<String>)>,
        want_body: PlannedBody,
    }

    fn blob(coding: Option<Encoding>, size: u64, range: Option<Range<u64>>) -> PlannedBody {
        PlannedBody::Blob(BlobRead {
            coding,
            size,
            range,
        })
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    fn cases() -> Vec<Case> {
        let html = || {
            entry(
                1000,
                "text/html; charset=utf-8",
                &[(Encoding::Br, 300), (Encoding::Gzip, 400)],
            )
        };
        let png = || entry(5000, "image/png", &[]);
        let get = Method::GET;
        let ok = StatusCode::OK;
        vec![
            Case {
                name: "plain GET of a page: whole identity body, validators, revalidated",
                method: get.clone(),
                headers: vec![],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![
                    ("etag", Some(tag(None))),
                    ("last-modified", s(LAST_MODIFIED)),
                    ("content-length", s("1000")),
                    ("content-type", s("text/html; charset=utf-8")),
                    ("cache-control", s(cache_control::REVALIDATE)),
                    ("vary", s("Accept-Encoding")),
                    ("accept-ranges", s("bytes")),
                    ("content-encoding", None),
                ],
                want_body: blob(None, 1000, None),
            },
            Case {
                name: "brotli accepted: the br variant, its own tag and length",
                method: get.clone(),
                headers: vec![("accept-encoding", "gzip, br".into())],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![
                    ("etag", Some(tag(Some("br")))),
                    ("content-encoding", s("br")),
                    ("content-length", s("300")),
                ],
                want_body: blob(Some(Encoding::Br), 300, None),
            },
            Case {
                name: "gzip only",
                method: get.clone(),
                headers: vec![("accept-encoding", "gzip".into())],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![
                    ("content-encoding", s("gzip")),
                    ("content-length", s("400")),
                ],
                want_body: blob(Some(Encoding::Gzip), 400, None),
            },
            Case {
                name: "HEAD: the GET's headers, no body",
                method: Method::HEAD,
                headers: vec![("accept-encoding", "br".into())],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![("content-length", s("300")), ("content-encoding", s("br"))],
                want_body: PlannedBody::Empty,
            },
            Case {
                name: "a fingerprinted image is immutable and has no Vary",
                method: get.clone(),
                headers: vec![],
                path: "/img/logo.3f9a1c2b.png",
                entry: png(),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![
                    ("cache-control", s(cache_control::IMMUTABLE)),
                    ("vary", None),
                ],
                want_body: blob(None, 5000, None),
            },
            Case {
                name: "a range: 206 of identity bytes even when br is accepted",
                method: get.clone(),
                headers: vec![
                    ("range", "bytes=10-19".into()),
                    ("accept-encoding", "br".into()),
                ],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: StatusCode::PARTIAL_CONTENT,
                want_headers: vec![
                    ("content-range", s("bytes 10-19/1000")),
                    ("content-length", s("10")),
                    ("content-encoding", None),
                    ("etag", Some(tag(None))),
                ],
                want_body: blob(None, 1000, Some(10..20)),
            },
            Case {
                name: "a suffix range",
                method: get.clone(),
                headers: vec![("range", "bytes=-100".into())],
                path: "/a.png",
                entry: png(),
                status: ok,
                mode: Mode::File,
                want_status: StatusCode::PARTIAL_CONTENT,
                want_headers: vec![("content-range", s("bytes 4900-4999/5000"))],
                want_body: blob(None, 5000, Some(4900..5000)),
            },
            Case {
                name: "an unsatisfiable range: 416 with the length",
                method: get.clone(),
                headers: vec![("range", "bytes=6000-".into())],
                path: "/a.png",
                entry: png(),
                status: ok,
                mode: Mode::File,
                want_status: StatusCode::RANGE_NOT_SATISFIABLE,
                want_headers: vec![
                    ("content-range", s("bytes */5000")),
                    ("content-length", s("0")),
                ],
                want_body: PlannedBody::Empty,
            },
            Case {
                name: "If-Range with the current tag: the range",
                method: get.clone(),
                headers: vec![("range", "bytes=0-0".into()), ("if-range", tag(None))],
                path: "/a.png",
                entry: png(),
                status: ok,
                mode: Mode::File,
                want_status: StatusCode::PARTIAL_CONTENT,
                want_headers: vec![("content-length", s("1"))],
                want_body: blob(None, 5000, Some(0..1)),
            },
            Case {
                name: "If-Range with another tag: the whole body",
                method: get.clone(),
                headers: vec![
                    ("range", "bytes=0-0".into()),
                    ("if-range", "\"other\"".into()),
                ],
                path: "/a.png",
                entry: png(),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![("content-length", s("5000")), ("content-range", None)],
                want_body: blob(None, 5000, None),
            },
            Case {
                name: "If-Range with an earlier date: the whole body",
                method: get.clone(),
                headers: vec![("range", "bytes=0-0".into()), ("if-range", EARLIER.into())],
                path: "/a.png",
                entry: png(),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![("content-range", None)],
                want_body: blob(None, 5000, None),
            },
            Case {
                name: "If-None-Match with the identity tag matches the br answer (weak comparison)",
                method: get.clone(),
                headers: vec![
                    ("if-none-match", tag(None)),
                    ("accept-encoding", "br".into()),
                ],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: StatusCode::NOT_MODIFIED,
                want_headers: vec![
                    ("etag", Some(tag(Some("br")))),
                    ("content-length", None),
                    ("content-type", None),
                ],
                want_body: PlannedBody::Empty,
            },
            Case {
                name: "If-None-Match with another tag: 200",
                method: get.clone(),
                headers: vec![("if-none-match", "\"other\"".into())],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![],
                want_body: blob(None, 1000, None),
            },
            Case {
                name: "If-Modified-Since the deployment: 304",
                method: get.clone(),
                headers: vec![("if-modified-since", LAST_MODIFIED.into())],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: StatusCode::NOT_MODIFIED,
                want_headers: vec![("last-modified", s(LAST_MODIFIED))],
                want_body: PlannedBody::Empty,
            },
            Case {
                name: "If-Modified-Since an earlier date: 200",
                method: get.clone(),
                headers: vec![("if-modified-since", EARLIER.into())],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![],
                want_body: blob(None, 1000, None),
            },
            Case {
                name: "If-Match with another tag: 412 in plain text, no validators",
                method: get.clone(),
                headers: vec![("if-match", "\"other\"".into())],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: StatusCode::PRECONDITION_FAILED,
                want_headers: vec![
                    ("etag", None),
                    ("content-type", s("text/plain; charset=utf-8")),
                    ("cache-control", s(cache_control::NO_STORE)),
                    ("content-length", s("20")),
                ],
                want_body: PlannedBody::Text("Precondition Failed\n"),
            },
            Case {
                name: "If-Unmodified-Since an earlier date: 412",
                method: get.clone(),
                headers: vec![("if-unmodified-since", EARLIER.into())],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::File,
                want_status: StatusCode::PRECONDITION_FAILED,
                want_headers: vec![],
                want_body: PlannedBody::Text("Precondition Failed\n"),
            },
            Case {
                name: "If-None-Match on a 404 page does not apply: the page with its status",
                method: get.clone(),
                headers: vec![("if-none-match", tag(None)), ("range", "bytes=0-0".into())],
                path: "/404.html",
                entry: html(),
                status: StatusCode::NOT_FOUND,
                mode: Mode::Page,
                want_status: StatusCode::NOT_FOUND,
                want_headers: vec![
                    ("content-length", s("1000")),
                    ("accept-ranges", None),
                    ("cache-control", s(cache_control::REVALIDATE)),
                    ("etag", None),
                    ("last-modified", None),
                ],
                want_body: blob(None, 1000, None),
            },
            Case {
                name: "a 410 page, brotli",
                method: get.clone(),
                headers: vec![("accept-encoding", "br".into())],
                path: "/404.html",
                entry: html(),
                status: StatusCode::GONE,
                mode: Mode::Page,
                want_status: StatusCode::GONE,
                want_headers: vec![("content-encoding", s("br"))],
                want_body: blob(Some(Encoding::Br), 300, None),
            },
            Case {
                name: "the 5xx page is never stored",
                method: get.clone(),
                headers: vec![("if-modified-since", LAST_MODIFIED.into())],
                path: "/50x.html",
                entry: html(),
                status: StatusCode::SERVICE_UNAVAILABLE,
                mode: Mode::ErrorPage,
                want_status: StatusCode::SERVICE_UNAVAILABLE,
                want_headers: vec![
                    ("cache-control", s(cache_control::NO_STORE)),
                    ("etag", None),
                    ("last-modified", None),
                ],
                want_body: blob(None, 1000, None),
            },
            Case {
                name: "a 404 page for a POST: the page, no range",
                method: Method::POST,
                headers: vec![("range", "bytes=0-0".into())],
                path: "/404.html",
                entry: html(),
                status: StatusCode::NOT_FOUND,
                mode: Mode::Page,
                want_status: StatusCode::NOT_FOUND,
                want_headers: vec![("content-range", None)],
                want_body: blob(None, 1000, None),
            },
            Case {
                name: "a POST of the file itself: ranges are for GET and HEAD, the whole body",
                method: Method::POST,
                headers: vec![("range", "bytes=10-19".into())],
                path: "/a.png",
                entry: png(),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![("content-range", None), ("content-length", s("5000"))],
                want_body: blob(None, 5000, None),
            },
            Case {
                name: "a page standing in at 200: still no validators, If-None-Match ignored",
                method: get.clone(),
                headers: vec![("if-none-match", tag(None))],
                path: "/index.html",
                entry: html(),
                status: ok,
                mode: Mode::Page,
                want_status: ok,
                want_headers: vec![("etag", None), ("last-modified", None)],
                want_body: blob(None, 1000, None),
            },
            Case {
                name: "an empty file: a range is ignored",
                method: get.clone(),
                headers: vec![("range", "bytes=0-0".into())],
                path: "/empty.txt",
                entry: entry(0, "text/plain", &[]),
                status: ok,
                mode: Mode::File,
                want_status: ok,
                want_headers: vec![("content-length", s("0"))],
                want_body: blob(None, 0, None),
            },
        ]
    }

    #[test]
    fn file_answers() {
        let last_modified = HeaderValue::from_static(LAST_MODIFIED);
        assert_eq!(conditional::http_date(CREATED), LAST_MODIFIED);
        for c in cases() {
            let mut headers = HeaderMap::new();
            for (name, value) in &c.headers {
                headers.append(*name, HeaderValue::from_str(value).unwrap());
            }
            let req = FileRequest {
                method: &c.method,
                headers: &headers,
            };
            let file = ServedFile {
                path: c.path,
                entry: &c.entry,
                created: CREATED,
                last_modified: &last_modified,
            };
            let p = plan(req, file, c.status, c.mode);
            assert_eq!(p.status, c.want_status, "{}", c.name);
            for (name, want) in &c.want_headers {
                let got = p.headers.get(*name).map(|v| v.to_str().unwrap().to_owned());
                assert_eq!(&got, want, "{}: {name}", c.name);
            }
            assert_eq!(p.body, c.want_body, "{}", c.name);
        }
    }
}
