//! The local edge router's listener at the socket level, in front of an upstream that
//! records what reaches it: smuggling attempts never put a second request on the
//! upstream, and what is forwarded carries a length of its own; a head sent a byte a
//! second is cut off while others are served; oversized bodies are refused 413 before
//! they are read or forwarded, slow ones 408, oversized heads 431; the connection cap
//! holds.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use skyhost_cli::local::edge::{self, Edge, EdgeOptions};
use skyhost_meta::notify::MAX_BODY as NOTIFY_MAX_BODY;
use skyhost_origin::listener::{Limits, MAX_REQUEST_BODY};
use skyhost_testkit::raw_http::{
    assert_a_cap_of_two_holds, connect, exchange, read_head, read_until_closed,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A request as the upstream got it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// What the upstream answers every request with.
const UPSTREAM: &str = "upstream-ok";

/// An upstream on a free port recording every request but health checks.
async fn upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let record = record.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = BodyExt::collect(body).await?.to_bytes();
                        if parts.uri.path() != "/_skyhost/health" {
                            record.lock().unwrap().push(Seen {
                                path: parts.uri.path().to_owned(),
                                headers: parts.headers,
                                body,
                            });
                        }
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(UPSTREAM))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (base, seen)
}

/// The edge router in front of a recording upstream.
struct Routed {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Routed {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn route(limits: Limits) -> Routed {
    let (base, seen) = upstream().await;
    let edge = Edge::new(
        vec![("us-west-2".to_owned(), base)],
        EdgeOptions {
            interval: Duration::from_secs(1),
            threshold: 1,
            emulate_latency: false,
            origin_verify: None,
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(edge::serve_limited(listener, edge, stop_rx, limits));
    Routed {
        addr,
        seen,
        _stop: stop,
    }
}

const GET: &[u8] = b"GET /page HTTP/1.1\r\nHost: site.test\r\n\r\n";
const WAIT: Duration = Duration::from_secs(5);

/// A request on a new connection is answered 200 by the upstream within `wait`.
async fn served(r: &Routed, wait: Duration) -> bool {
    let mut s = connect(r.addr).await;
    s.write_all(GET).await.unwrap();
    matches!(read_head(&mut s, wait).await, Some(h) if h.starts_with("HTTP/1.1 200"))
}

#[tokio::test]
async fn smuggling_never_puts_a_second_request_on_the_upstream() {
    let r = route(Limits::default()).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: site.test\r\n\r\n";
    let cases = [
        // CL.TE, both header orders.
        format!(
            "POST /a HTTP/1.1\r\nHost: site.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        ),
        format!(
            "POST /b HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        ),
        // TE.CL: the length ends inside the chunk that carries the smuggled request.
        format!(
            "POST /c HTTP/1.1\r\nHost: site.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        ),
    ];
    for (i, attack) in cases.iter().enumerate() {
        let reply = exchange(r.addr, attack.as_bytes(), WAIT).await;
        assert_eq!(reply.statuses(), vec![200], "case {i}:\n{}", reply.text);
        assert!(reply.closed, "case {i}: the connection stays open");
    }
    let seen = r.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/a", "/b", "/c"]);
    for s in &seen {
        // Forwarded with a length of its own, whatever framing the visitor used.
        assert_eq!(s.headers.get("transfer-encoding"), None, "{s:?}");
        let len = s.headers.get("content-length").map(|v| v.to_str().unwrap());
        assert!(
            len == Some(&s.body.len().to_string()) || (len.is_none() && s.body.is_empty()),
            "{s:?}"
        );
    }
    // What the length framed as a second request went on as the body it was.
    assert_eq!(seen[2].body, smuggled.as_bytes());
}

#[tokio::test]
async fn ambiguous_framing_is_refused_400_and_never_forwarded() {
    let r = route(Limits::default()).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: site.test\r\n\r\n";
    let heads = [
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding : chunked\r\n",
        "Transfer-Encoding:\r\n chunked\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -5\r\n",
    ];
    for extra in heads {
        let attack =
            format!("POST / HTTP/1.1\r\nHost: site.test\r\n{extra}\r\n0\r\n\r\n{smuggled}");
        let reply = exchange(r.addr, attack.as_bytes(), WAIT).await;
        assert_eq!(reply.status(), 400, "{extra:?}:\n{}", reply.text);
        assert!(reply.closed, "{extra:?}: the connection stays open");
    }
    // Chunked framing broken mid-body: refused, not forwarded cut short.
    let reply = exchange(
        r.addr,
        format!(
            "POST / HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n{smuggled}"
        )
        .as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(reply.status(), 400, "{}", reply.text);
    assert!(r.seen().is_empty(), "{:?}", r.seen());
}

#[tokio::test]
async fn slowloris_is_cut_off_after_the_head_timeout_while_others_are_served() {
    let header_read = Duration::from_secs(2);
    let r = route(Limits {
        header_read,
        ..Limits::default()
    })
    .await;
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let addr = r.addr;
            tokio::spawn(async move {
                let mut s = connect(addr).await;
                let start = Instant::now();
                s.write_all(b"GET /page HTTP/1.1\r\nHost: site.test\r\nX-Slow: ")
                    .await
                    .unwrap();
                while start.elapsed() < Duration::from_secs(15) {
                    if s.write_all(b"a").await.is_err() {
                        break;
                    }
                    if read_until_closed(&mut s, Duration::from_secs(1))
                        .await
                        .closed
                    {
                        break;
                    }
                }
                start.elapsed()
            })
        })
        .collect();
    for _ in 0..5 {
        assert!(served(&r, Duration::from_secs(2)).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for s in slow {
        let held = s.await.unwrap();
        assert!(
            held >= header_read - Duration::from_millis(200) && held < header_read * 3,
            "a slow head held its connection for {held:?}"
        );
    }
    assert_eq!(
        r.seen().len(),
        5,
        "only the whole requests reach the upstream"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_413_before_they_are_read() {
    let r = route(Limits::default()).await;
    let heads = [
        format!(
            "POST /upload HTTP/1.1\r\nHost: site.test\r\nContent-Length: {}\r\n\r\n",
            MAX_REQUEST_BODY + 1
        ),
        format!(
            "POST /_skyhost/notify HTTP/1.1\r\nHost: site.test\r\nContent-Length: {}\r\n\r\n",
            NOTIFY_MAX_BODY + 1
        ),
        format!(
            "POST /%5fskyhost/notify HTTP/1.1\r\nHost: site.test\r\nContent-Length: {}\r\n\r\n",
            NOTIFY_MAX_BODY + 1
        ),
    ];
    for head in &heads {
        let reply = exchange(r.addr, head.as_bytes(), WAIT).await;
        assert_eq!(reply.status(), 413, "{head:?}:\n{}", reply.text);
        assert!(reply.closed);
        assert!(
            reply.elapsed < Duration::from_secs(3),
            "{:?}",
            reply.elapsed
        );
    }
    // A chunked body one byte over the cap.
    let mut req =
        b"POST /_skyhost/notify HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..NOTIFY_MAX_BODY / 4096 {
        req.extend_from_slice(b"1000\r\n");
        req.extend_from_slice(&[b'x'; 4096]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"1\r\nx\r\n");
    let reply = exchange(r.addr, &req, WAIT).await;
    assert_eq!(reply.status(), 413, "{}", reply.text);
    assert!(r.seen().is_empty(), "{:?}", r.seen());
}

#[tokio::test]
async fn a_body_not_sent_in_time_is_answered_408() {
    let r = route(Limits {
        body_read: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let reply = exchange(
        r.addr,
        b"POST /form HTTP/1.1\r\nHost: site.test\r\nContent-Length: 100\r\n\r\n0123456789",
        WAIT,
    )
    .await;
    assert_eq!(reply.status(), 408, "{}", reply.text);
    assert!(reply.closed);
    assert!(
        reply.elapsed < Duration::from_secs(4),
        "{:?}",
        reply.elapsed
    );
    assert!(r.seen().is_empty());
}

#[tokio::test]
async fn oversized_heads_are_refused_431() {
    let r = route(Limits::default()).await;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "a".repeat(40 * 1024));
    for extra in [many, big] {
        let req = format!("GET /page HTTP/1.1\r\nHost: site.test\r\n{extra}\r\n");
        let reply = exchange(r.addr, req.as_bytes(), WAIT).await;
        assert_eq!(
            reply.status(),
            431,
            "{}",
            &reply.text[..reply.text.len().min(200)]
        );
        assert!(reply.closed);
    }
    assert!(r.seen().is_empty());
}

#[tokio::test]
async fn the_connection_cap_holds() {
    let r = route(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    assert!(served(&r, Duration::from_secs(2)).await);
    assert_a_cap_of_two_holds(r.addr, GET).await;
}
