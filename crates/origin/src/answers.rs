//! Each serving thread's copy of its most requested answers: a `GET` of a small file that
//! was served whole from the cache, with every header, kept so that the next identical
//! request is answered without resolving the host, the site and the manifest again.
//!
//! An answer is kept only while nothing it was derived from can have changed:
//! - the site records: every change to them raises the cache's site generation, and an
//!   answer made under another generation is never served (a notification or a rollback
//!   takes effect on the very next request);
//! - everything else it depends on is immutable (manifest, blobs, the origin's settings),
//!   or part of the key: the host, the path and query, and `Accept-Encoding`.
//!
//! Requests whose answer depends on more (conditional and range requests, credentials) and
//! sites whose rules look at more (basic auth, `[geo]`, country or language conditions) are never
//! kept. An answer also expires after [`TTL`], so the full path still runs a few times a
//! second and its periodic re-checks of site records (against Redis, against the store)
//! keep their cadence.
//!
//! Per thread, so that serving a kept answer touches no memory another serving thread
//! writes: the answer's body and header values are the thread's own copies.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use thread_local::ThreadLocal;

/// How long an answer is served before the full path runs again.
pub const TTL: Duration = Duration::from_millis(250);

/// Answers kept per thread at most.
const MAX_ENTRIES: usize = 4096;

/// Longest key kept: host, path and query, and `Accept-Encoding`. Real requests for the
/// same few files fit easily; a longer key (a long random query, a padded header) is a
/// one-off whose keeping would only cost memory, so it is never kept nor built.
pub const MAX_KEY: usize = 1024;

/// What an answer costs beyond its key, site, headers and body: the map entry, the
/// answer's fields and the allocations' headers.
const ANSWER_OVERHEAD: usize = 192;
/// What each header of an answer costs beyond its name and value.
const HEADER_OVERHEAD: usize = 32;

/// Request headers that make an answer depend on more than the key.
const VARYING: [header::HeaderName; 7] = [
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::AUTHORIZATION,
];

/// Whether a request may be answered from (and its answer kept in) the thread's answers.
pub fn request_qualifies(parts: &Parts) -> bool {
    parts.method == Method::GET && !VARYING.iter().any(|h| parts.headers.contains_key(h))
}

/// A kept answer.
struct Answer {
    /// What it counts against the thread's bytes ([`footprint`]).
    size: usize,
    site: String,
    generation: u64,
    expires: Instant,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Local {
    map: HashMap<String, Answer>,
    bytes: usize,
    /// Keys asked for once: an answer is kept from its second request on, so a stream of
    /// one-off requests does not churn the kept ones.
    seen: HashSet<String>,
    /// Bytes of the keys in `seen`.
    seen_bytes: usize,
    /// The key being built (reused: building it allocates nothing).
    key: String,
    /// Answers served from here.
    served: u64,
}

/// A kept answer, as served.
pub struct Kept {
    /// The status.
    pub status: StatusCode,
    /// Every header.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The site it came from, when asked for (the request log).
    pub site: Option<String>,
}

/// The answers of every serving thread.
pub struct Answers {
    threads: ThreadLocal<RefCell<Local>>,
    max_bytes: usize,
    max_body: usize,
}

impl Answers {
    /// Answers of at most `max_bytes` per thread, bodies of at most `max_body` bytes.
    pub fn new(max_bytes: usize, max_body: usize) -> Self {
        Answers {
            threads: ThreadLocal::new(),
            max_bytes,
            max_body,
        }
    }

    /// Calls `f` with the request's key, unless the key would be longer than [`MAX_KEY`]
    /// (then the request has no kept answer, and its answer is not kept).
    fn with_key<R>(
        &self,
        host: &str,
        parts: &Parts,
        f: impl FnOnce(&mut Local, &str) -> R,
    ) -> Option<R> {
        let target = parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |pq| pq.as_str());
        let codings = parts.headers.get_all(header::ACCEPT_ENCODING);
        // Measured before it is built, so the reused buffer never grows past the bound.
        let len = host.len()
            + target.len()
            + 2
            + codings
                .iter()
                .map(|v| v.to_str().map_or(UNREADABLE.len(), str::len) + 1)
                .sum::<usize>();
        if len > MAX_KEY {
            return None;
        }
        let cell = self.threads.get_or_default();
        let mut local = cell.borrow_mut();
        let mut key = std::mem::take(&mut local.key);
        key.clear();
        key.push_str(host);
        key.push('\n');
        key.push_str(target);
        key.push('\n');
        for v in codings {
            key.push_str(v.to_str().unwrap_or(UNREADABLE));
            key.push(',');
        }
        let r = f(&mut local, &key);
        local.key = key;
        Some(r)
    }

    /// The kept answer to this request, if one was made under `generation` and has not
    /// expired. The caller has checked [`request_qualifies`].
    pub fn get(
        &self,
        host: &str,
        parts: &Parts,
        generation: u64,
        now: Instant,
        want_site: bool,
    ) -> Option<Kept> {
        self.with_key(host, parts, |local, key| {
            let a = local.map.get(key)?;
            if a.generation != generation || a.expires <= now {
                return None;
            }
            let kept = Kept {
                status: a.status,
                headers: a.headers.clone(),
                body: a.body.clone(),
                site: want_site.then(|| a.site.clone()),
            };
            local.served += 1;
            Some(kept)
        })
        .flatten()
    }

    /// How many kept answers the calling thread has served (tests, diagnostics).
    pub fn served_here(&self) -> u64 {
        self.threads.get().map_or(0, |l| l.borrow().served)
    }

    /// Keeps `site`'s answer to this request, made under `generation`. Kept from the
    /// key's second request on, as the thread's own copy.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        &self,
        host: &str,
        parts: &Parts,
        generation: u64,
        now: Instant,
        site: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
    ) {
        if body.len() > self.max_body {
            return;
        }
        let max_bytes = self.max_bytes;
        self.with_key(host, parts, |local, key| {
            if !local.seen.contains(key) {
                // The keys seen once get a quarter of the thread's bytes.
                if local.seen.len() >= MAX_ENTRIES || local.seen_bytes + key.len() > max_bytes / 4 {
                    local.seen.clear();
                    local.seen_bytes = 0;
                }
                local.seen.insert(key.to_owned());
                local.seen_bytes += key.len();
                return;
            }
            let size = footprint(key, site, headers, body.len());
            if size > max_bytes {
                return;
            }
            if local.bytes + size > max_bytes || local.map.len() >= MAX_ENTRIES {
                // Full: start again; the answers most asked for come back first.
                local.map.clear();
                local.bytes = 0;
            }
            let answer = Answer {
                size,
                site: site.to_owned(),
                generation,
                expires: now + TTL,
                status,
                headers: own_copy(headers),
                body: Bytes::copy_from_slice(body),
            };
            if let Some(old) = local.map.insert(key.to_owned(), answer) {
                local.bytes -= old.size;
            }
            local.bytes += size;
        });
    }
}

/// How a header value that is not text shows in a key.
const UNREADABLE: &str = "\u{fffd}";

/// What an answer counts against its thread's bytes: its key, site, every header and its
/// body, and what holding them costs.
fn footprint(key: &str, site: &str, headers: &HeaderMap, body: usize) -> usize {
    let headers: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + HEADER_OVERHEAD)
        .sum();
    key.len() + site.len() + headers + body + ANSWER_OVERHEAD
}

/// `headers` with every value copied, so that no other thread shares a value's memory.
fn own_copy(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut v = HeaderValue::from_bytes(value.as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        v.set_sensitive(value.is_sensitive());
        out.append(name.clone(), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(method: Method, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    /// Method, request headers, whether it qualifies.
    type Case = (Method, &'static [(&'static str, &'static str)], bool);

    #[test]
    fn which_requests_qualify() {
        let cases: &[Case] = &[
            (Method::GET, &[], true),
            (Method::GET, &[("accept-encoding", "br, gzip")], true),
            (Method::GET, &[("cookie", "a=b")], true),
            (Method::HEAD, &[], false),
            (Method::POST, &[], false),
            (Method::GET, &[("range", "bytes=0-1")], false),
            (Method::GET, &[("if-none-match", "\"x\"")], false),
            (
                Method::GET,
                &[("if-modified-since", "Tue, 01 Dec 2026 00:00:00 GMT")],
                false,
            ),
            (Method::GET, &[("if-match", "*")], false),
            (Method::GET, &[("if-unmodified-since", "x")], false),
            (Method::GET, &[("if-range", "\"x\"")], false),
            (Method::GET, &[("authorization", "Basic eDp5")], false),
        ];
        for (method, headers, want) in cases {
            let p = parts(method.clone(), "/a", headers);
            assert_eq!(request_qualifies(&p), *want, "{method} {headers:?}");
        }
    }

    /// Asks `a` to keep an answer twice: it is kept from its second sight on.
    fn keep(a: &Answers, p: &Parts, generation: u64, now: Instant, h: &HeaderMap, body: &Bytes) {
        for _ in 0..2 {
            a.put("s.test", p, generation, now, "s", StatusCode::OK, h, body);
        }
    }

    fn answer(a: &Answers, host: &str, p: &Parts, generation: u64, now: Instant) -> Option<Bytes> {
        a.get(host, p, generation, now, false).map(|k| k.body)
    }

    #[test]
    fn kept_from_the_second_request_per_key_and_generation() {
        let a = Answers::new(1 << 20, 1024);
        let now = Instant::now();
        let p = parts(Method::GET, "/a?x=1", &[("accept-encoding", "gzip")]);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let body = Bytes::from_static(b"hello");
        a.put("s.test", &p, 7, now, "s", StatusCode::OK, &h, &body);
        assert_eq!(
            answer(&a, "s.test", &p, 7, now),
            None,
            "kept on first sight"
        );
        a.put("s.test", &p, 7, now, "s", StatusCode::OK, &h, &body);
        let k = a.get("s.test", &p, 7, now, true).unwrap();
        assert_eq!(a.served_here(), 1);
        assert_eq!((k.status, k.body), (StatusCode::OK, body.clone()));
        assert_eq!(k.headers.get(header::CONTENT_TYPE).unwrap(), "text/html");
        assert_eq!(k.site.as_deref(), Some("s"));
        // Another generation, host, query, coding, or too late: not this answer.
        assert_eq!(answer(&a, "s.test", &p, 8, now), None);
        assert_eq!(answer(&a, "t.test", &p, 7, now), None);
        let q = parts(Method::GET, "/a?x=2", &[("accept-encoding", "gzip")]);
        assert_eq!(answer(&a, "s.test", &q, 7, now), None);
        let r = parts(Method::GET, "/a?x=1", &[("accept-encoding", "br")]);
        assert_eq!(answer(&a, "s.test", &r, 7, now), None);
        assert_eq!(answer(&a, "s.test", &p, 7, now + TTL), None);
    }

    #[test]
    fn bounded_by_bytes_and_body_size() {
        let a = Answers::new(4096, 1024);
        let now = Instant::now();
        let h = HeaderMap::new();
        let big = Bytes::from(vec![1u8; 2048]);
        let p = parts(Method::GET, "/big", &[]);
        keep(&a, &p, 1, now, &h, &big);
        assert_eq!(
            answer(&a, "s.test", &p, 1, now),
            None,
            "body over the limit"
        );
        let body = Bytes::from(vec![2u8; 1000]);
        for i in 0..8 {
            let p = parts(Method::GET, &format!("/f{i}"), &[]);
            keep(&a, &p, 1, now, &h, &body);
        }
        let local = a.threads.get().unwrap().borrow();
        assert!(local.bytes <= 4096, "{} bytes kept", local.bytes);
        assert!(!local.map.is_empty());
    }

    /// The bytes the calling thread's answers and seen keys really hold.
    fn held(a: &Answers) -> (usize, usize) {
        let local = a.threads.get().unwrap().borrow();
        let answers = local
            .map
            .iter()
            .map(|(k, v)| {
                let headers: usize = v
                    .headers
                    .iter()
                    .map(|(n, v)| n.as_str().len() + v.len())
                    .sum();
                k.len() + v.site.len() + headers + v.body.len()
            })
            .sum();
        (answers, local.seen.iter().map(String::len).sum())
    }

    #[test]
    fn headers_count_against_the_bytes() {
        let max = 16 * 1024;
        let a = Answers::new(max, 1024);
        let now = Instant::now();
        let mut h = HeaderMap::new();
        h.insert("x-large", HeaderValue::from_str(&"v".repeat(4000)).unwrap());
        let body = Bytes::from_static(b"small");
        for i in 0..20 {
            keep(
                &a,
                &parts(Method::GET, &format!("/f{i}"), &[]),
                1,
                now,
                &h,
                &body,
            );
        }
        let (bytes, _) = held(&a);
        assert!(bytes <= max, "{bytes} bytes held for a cap of {max}");
        assert!(bytes > 0, "nothing kept");
        // An answer larger than the whole cap is not kept at all.
        let mut huge = HeaderMap::new();
        huge.insert("x-huge", HeaderValue::from_str(&"v".repeat(max)).unwrap());
        let p = parts(Method::GET, "/huge", &[]);
        keep(&a, &p, 1, now, &huge, &body);
        assert_eq!(answer(&a, "s.test", &p, 1, now), None);
        assert!(held(&a).0 > 0, "a too-large answer emptied the others");
    }

    #[test]
    fn long_keys_are_never_kept() {
        let a = Answers::new(1 << 20, 1024);
        let now = Instant::now();
        let h = HeaderMap::new();
        let body = Bytes::from_static(b"x");
        let long_query = format!("/a?{}", "q".repeat(MAX_KEY));
        let coding = "gzip, ".repeat(MAX_KEY / 6 + 1);
        let cases = [
            parts(Method::GET, &long_query, &[]),
            parts(Method::GET, "/a", &[("accept-encoding", &coding)]),
        ];
        for p in &cases {
            keep(&a, p, 1, now, &h, &body);
            assert_eq!(answer(&a, "s.test", p, 1, now), None);
        }
        let local = a.threads.get().map(|l| l.borrow().seen.len());
        assert_eq!(local.unwrap_or(0), 0, "a long key was remembered");
        // Just under the bound is kept as before.
        let p = parts(Method::GET, &format!("/a?{}", "q".repeat(900)), &[]);
        keep(&a, &p, 1, now, &h, &body);
        assert!(answer(&a, "s.test", &p, 1, now).is_some());
        let capacity = a.threads.get().unwrap().borrow().key.capacity();
        assert!(capacity <= 2 * MAX_KEY, "key buffer grew to {capacity}");
    }

    #[test]
    fn keys_seen_once_are_bounded_in_bytes() {
        let max = 64 * 1024;
        let a = Answers::new(max, 1024);
        let now = Instant::now();
        let h = HeaderMap::new();
        let body = Bytes::from_static(b"x");
        for i in 0..500 {
            let p = parts(Method::GET, &format!("/{i}?{}", "q".repeat(900)), &[]);
            a.put("s.test", &p, 1, now, "s", StatusCode::OK, &h, &body);
        }
        let (_, seen) = held(&a);
        assert!(seen <= max / 4, "{seen} bytes of keys seen once");
    }

    #[test]
    fn each_thread_has_its_own() {
        let a = std::sync::Arc::new(Answers::new(1 << 20, 1024));
        let now = Instant::now();
        let p = parts(Method::GET, "/a", &[]);
        keep(&a, &p, 1, now, &HeaderMap::new(), &Bytes::from_static(b"x"));
        assert!(a.get("s.test", &p, 1, now, false).is_some());
        let other = a.clone();
        let seen = std::thread::spawn(move || other.get("s.test", &p, 1, now, false).is_some())
            .join()
            .unwrap();
        assert!(!seen, "another thread's answer was served");
    }
}
