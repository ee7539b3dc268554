//! The limits every plain-HTTP listener of local mode holds — the origins' ([`crate::server`])
//! and the edge router's — so that no client can hold a listener's memory or connections:
//!
//! | limit | default | beyond it |
//! |---|---|---|
//! | time to send a request head (also the idle time between requests) | 10 s | connection closed |
//! | request head (request line and headers) | 32 KiB | 431 |
//! | header count | 100 | 431 |
//! | head buffer while a head is still arriving | 64 KiB | 431 |
//! | request body, declared or streamed | 6 MiB; under `/_skyhost/` [`notify::MAX_BODY`] | 413, before the body is read |
//! | time to send a request body | 30 s | 408 |
//! | open connections | 1024 | later ones wait, unanswered and unread, until one closes |
//!
//! Waiting rather than closing at the connection cap: a visitor beyond the cap is served
//! late rather than refused, and a client that holds its slot without sending a head loses
//! it after the head timeout, so the wait is bounded. Waiting connections sit in the
//! kernel's accept queue and cost no memory here.
//!
//! Framing is hyper's, which refuses (400) every ambiguous request framing: a
//! `Transfer-Encoding` whose last coding is not `chunked` (`xchunked`, `chunked, identity`,
//! a second header naming another coding), `Transfer-Encoding` on HTTP/1.0, differing or
//! malformed `Content-Length` values, a space before a header's colon and folded header
//! lines. A request carrying both `Content-Length` and `Transfer-Encoding: chunked` is read
//! by its chunked framing alone and the connection is closed after the answer (RFC 9112
//! §6.1), so bytes framed as a second request by the length are never parsed as one.
//!
//! [`notify::MAX_BODY`]: skyhost_meta::notify::MAX_BODY

use bytes::Bytes;
use http::StatusCode;
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest request body accepted outside `/_skyhost/` (API Gateway's own limit is close).
pub const MAX_REQUEST_BODY: usize = 6 * 1024 * 1024;

/// Hyper's smallest allowed read buffer; a smaller one would make it panic.
const MIN_BUF: usize = 8192;

/// The header count hyper holds to when told none: its header table is then a stack array
/// built at no cost, where a count of its own is filled in per request (on the heap above
/// 100), so this count is left to hyper.
const HYPER_MAX_HEADERS: usize = 100;

/// What one listener accepts; [`Limits::default`] is what local mode runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a whole request head, counted from the first read of it (so also the
    /// longest a kept-alive connection may sit idle).
    pub header_read: Duration,
    /// Time to send a whole request body.
    pub body_read: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_head: usize,
    /// Most headers in a request head.
    pub max_headers: usize,
    /// Largest read buffer of a connection (at least 8 KiB): bounds a head still arriving.
    pub max_buf: usize,
    /// Largest request body outside `/_skyhost/`.
    pub max_body: usize,
    /// Most connections open at once; later ones wait to be accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            max_head: 32 * 1024,
            max_headers: HYPER_MAX_HEADERS,
            max_buf: 64 * 1024,
            max_body: MAX_REQUEST_BODY,
            max_connections: 1024,
        }
    }
}

impl Limits {
    /// An HTTP/1.1 connection builder holding the head limits and the head timeout.
    pub fn http1(&self) -> http1::Builder {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.header_read)
            .max_header_size(self.max_head)
            .max_buf_size(self.max_buf.max(MIN_BUF));
        if self.max_headers != HYPER_MAX_HEADERS {
            b.max_headers(self.max_headers);
        }
        b
    }

    /// The largest body a request to `raw_path` may carry: the reserved endpoints (the
    /// notification the largest of them) take far less than a site's proxied requests.
    /// The path is judged as the origin judges it, percent-decoded.
    pub fn body_cap(&self, raw_path: &str) -> usize {
        let decoded = crate::path::decode(raw_path).unwrap_or(Cow::Borrowed(raw_path));
        if decoded == "/_skyhost" || decoded.starts_with("/_skyhost/") {
            skyhost_meta::notify::MAX_BODY.min(self.max_body)
        } else {
            self.max_body
        }
    }

    /// Reads the body of a request to `raw_path` whole, refusing it when it is larger than
    /// [`Limits::body_cap`] (before reading any of it when its length is declared), and
    /// when it takes longer than [`Limits::body_read`].
    pub async fn read_body(&self, body: Incoming, raw_path: &str) -> Result<Bytes, Refusal> {
        if body.is_end_stream() {
            // Most requests (GET, HEAD) carry no body: nothing to collect or judge.
            return Ok(Bytes::new());
        }
        let cap = self.body_cap(raw_path);
        if declared_over(body.size_hint().exact(), cap) {
            return Err(Refusal::TooLarge);
        }
        match tokio::time::timeout(self.body_read, Limited::new(body, cap).collect()).await {
            Err(_) => Err(Refusal::Timeout),
            Ok(Ok(b)) => Ok(b.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::TooLarge),
            Ok(Err(_)) => Err(Refusal::Unreadable),
        }
    }
}

/// Whether a body of `declared` length is refused without reading it.
fn declared_over(declared: Option<u64>, cap: usize) -> bool {
    declared.is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
}

/// Why a request body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Larger than the cap.
    #[error("Payload Too Large")]
    TooLarge,
    /// Not sent in time.
    #[error("Request Timeout: the request body was not sent in time")]
    Timeout,
    /// The connection failed or the chunked framing was broken mid-body.
    #[error("Bad Request: the request body could not be read")]
    Unreadable,
}

impl Refusal {
    /// The status to answer with; the connection is closed after it.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::Unreadable => StatusCode::BAD_REQUEST,
        }
    }
}

/// The connection cap of one listener: a permit per open connection.
#[derive(Debug, Clone)]
pub struct Slots(Arc<Semaphore>);

impl Slots {
    /// Room for `n` connections (at least one).
    pub fn new(n: usize) -> Self {
        Slots(Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))))
    }

    /// Waits for a free slot, then accepts the next connection; the permit is held for as
    /// long as the connection is open. While every slot is taken, nothing is accepted.
    pub async fn accept(
        &self,
        listener: &TcpListener,
    ) -> std::io::Result<(TcpStream, std::net::SocketAddr, OwnedSemaphorePermit)> {
        let permit = self
            .0
            .clone()
            .acquire_owned()
            .await
            // The semaphore is never closed.
            .map_err(std::io::Error::other)?;
        let (stream, peer) = listener.accept().await?;
        Ok((stream, peer, permit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_caps() {
        let l = Limits::default();
        let notify = skyhost_meta::notify::MAX_BODY;
        let cases: &[(&str, usize)] = &[
            ("/", MAX_REQUEST_BODY),
            ("/api/upload", MAX_REQUEST_BODY),
            ("/_skyhostx", MAX_REQUEST_BODY),
            ("/_skyhost", notify),
            ("/_skyhost/notify", notify),
            ("/_skyhost/health", notify),
            ("/%5Fskyhost/notify", notify),
            ("/%5fskyhost/%6Eotify", notify),
            ("//_skyhost/notify", notify),
            ("/_skyhost/%zz", notify),
        ];
        for (path, want) in cases {
            assert_eq!(l.body_cap(path), *want, "{path}");
        }
        let small = Limits {
            max_body: 10,
            ..Limits::default()
        };
        assert_eq!(small.body_cap("/_skyhost/notify"), 10);
    }

    #[test]
    fn declared_lengths() {
        let cases: &[(Option<u64>, usize, bool)] = &[
            (None, 10, false),
            (Some(0), 10, false),
            (Some(10), 10, false),
            (Some(11), 10, true),
            (Some(u64::MAX), usize::MAX, false),
            (Some(u64::MAX), 0, true),
        ];
        for (declared, cap, want) in cases {
            assert_eq!(declared_over(*declared, *cap), *want, "{declared:?} {cap}");
        }
    }

    #[test]
    fn refusal_statuses() {
        assert_eq!(Refusal::TooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(Refusal::Timeout.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(Refusal::Unreadable.status(), StatusCode::BAD_REQUEST);
    }
}
