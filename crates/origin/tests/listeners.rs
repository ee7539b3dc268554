//! The origin's plain-HTTP listener at the socket level: request smuggling (CL.TE, TE.CL
//! and ambiguous framings) never reaches a second request, a head sent a byte a second is
//! cut off while other visitors are served, oversized bodies are refused 413 before they
//! are read, slow bodies 408, oversized heads 431, and the connection cap holds.

mod common;

use common::*;
use skyhost_meta::notify::MAX_BODY as NOTIFY_MAX_BODY;
use skyhost_origin::server::{self, Limits, MAX_REQUEST_BODY};
use skyhost_testkit::raw_http::{
    assert_a_cap_of_two_holds, connect, exchange, read_head, read_until_closed,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// What the site's only page says: seen in a reply, a request was served.
const PAGE: &str = "listener-test-page";

/// An origin over embedded backends, serving one page at `/index.html`, on a free port.
struct Listening {
    addr: SocketAddr,
    host: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _env: Embedded,
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Serves with `serve_limited`, or `serve_threads_limited` on two threads when `threads`.
async fn listen(limits: Limits, threads: bool) -> Listening {
    let env = Embedded::new("us-west-2");
    let (_, host) = one_page_site(env.meta.as_ref(), env.local.as_ref(), "listen", PAGE).await;
    let origin = env.origin(config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = rx.await;
    };
    tokio::spawn(async move {
        if threads {
            server::serve_threads_limited(listener, origin, shutdown, 2, limits).await
        } else {
            server::serve_limited(listener, origin, shutdown, limits).await
        }
    });
    Listening {
        addr,
        host,
        stop: Some(tx),
        _env: env,
    }
}

fn get(host: &str) -> Vec<u8> {
    format!("GET /index.html HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// A request for the page on a new connection answers 200 with the page within `wait`.
async fn served(l: &Listening, wait: Duration) -> bool {
    let mut s = connect(l.addr).await;
    s.write_all(&get(&l.host)).await.unwrap();
    matches!(read_head(&mut s, wait).await, Some(h) if h.starts_with("HTTP/1.1 200"))
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn cl_te_and_te_cl_smuggling_never_reach_a_second_request() {
    let l = listen(Limits::default(), false).await;
    let h = &l.host;
    let smuggled = format!("GET /index.html HTTP/1.1\r\nHost: {h}\r\n\r\n");
    // Each request is read by its chunked framing alone and the connection closes after
    // the answer, so whatever the length header frames as a second request is never one.
    let cases = [
        // CL.TE: the length covers the smuggled request, the chunked framing ends before.
        format!(
            "POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        ),
        // The same with the headers the other way round.
        format!(
            "POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n0\r\n\r\n{smuggled}",
            5 + smuggled.len()
        ),
        // TE.CL: the length ends inside the first chunk, which carries the smuggled request.
        format!(
            "POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
            smuggled.len()
        ),
        // CL.TE where the chunked framing is left unfinished after the smuggled bytes.
        format!(
            "POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n{smuggled}"
        ),
    ];
    for (i, attack) in cases.iter().enumerate() {
        let r = exchange(l.addr, attack.as_bytes(), WAIT).await;
        assert!(r.closed, "case {i}: the connection stays open:\n{}", r.text);
        assert_eq!(r.statuses().len(), 1, "case {i}: {}", r.text);
        assert!(
            !r.text.contains(PAGE),
            "case {i}: the smuggled request was served:\n{}",
            r.text
        );
    }
}

#[tokio::test]
async fn ambiguous_framing_is_refused_with_400_before_a_second_request() {
    let l = listen(Limits::default(), false).await;
    let h = &l.host;
    let smuggled = format!("GET /index.html HTTP/1.1\r\nHost: {h}\r\n\r\n");
    let heads = [
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        "Transfer-Encoding : chunked\r\n",
        "Transfer-Encoding:\r\n chunked\r\n",
        "X-Folded: a\r\n Transfer-Encoding: chunked\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -5\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Content-Length : 5\r\n",
    ];
    for extra in heads {
        let attack = format!("POST / HTTP/1.1\r\nHost: {h}\r\n{extra}\r\n0\r\n\r\n{smuggled}");
        let r = exchange(l.addr, attack.as_bytes(), WAIT).await;
        assert_eq!(r.status(), 400, "{extra:?}:\n{}", r.text);
        assert!(r.closed, "{extra:?}: the connection stays open");
        assert!(!r.text.contains(PAGE), "{extra:?}: served:\n{}", r.text);
    }
    // HTTP/1.0 has no chunked framing.
    let r = exchange(
        l.addr,
        format!(
            "POST / HTTP/1.0\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        )
        .as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(r.status(), 400, "{}", r.text);
    assert!(!r.text.contains(PAGE));
}

#[tokio::test]
async fn slowloris_is_cut_off_after_the_head_timeout_while_others_are_served() {
    let header_read = Duration::from_secs(2);
    let l = listen(
        Limits {
            header_read,
            ..Limits::default()
        },
        false,
    )
    .await;
    // Three clients each send their head a byte a second, never finishing it.
    let slow = (0..3).map(|_| {
        let addr = l.addr;
        let host = l.host.clone();
        tokio::spawn(async move {
            let mut s = connect(addr).await;
            let start = Instant::now();
            let head = format!("GET /index.html HTTP/1.1\r\nHost: {host}\r\nX-Slow: ");
            s.write_all(head.as_bytes()).await.unwrap();
            while start.elapsed() < Duration::from_secs(15) {
                if s.write_all(b"a").await.is_err() {
                    break;
                }
                let r = read_until_closed(&mut s, Duration::from_secs(1)).await;
                if r.closed {
                    assert!(!r.text.contains(PAGE), "a slow head was served");
                    break;
                }
            }
            start.elapsed()
        })
    });
    let slow: Vec<_> = slow.collect();
    // Meanwhile everyone else is answered at once.
    for _ in 0..5 {
        assert!(served(&l, Duration::from_secs(2)).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for s in slow {
        let held = s.await.unwrap();
        assert!(
            held >= header_read - Duration::from_millis(200) && held < header_read * 3,
            "a slow head held its connection for {held:?}"
        );
    }
    assert!(served(&l, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn oversized_bodies_are_refused_413_before_they_are_read() {
    let l = listen(Limits::default(), false).await;
    let h = &l.host;
    // Only the heads are sent: a listener that waited for the bodies would time out.
    let heads = [
        format!(
            "POST /upload HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\n\r\n",
            MAX_REQUEST_BODY + 1
        ),
        format!(
            "POST /_skyhost/notify HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\n\r\n",
            NOTIFY_MAX_BODY + 1
        ),
        format!(
            "POST /%5Fskyhost/notify HTTP/1.1\r\nHost: {h}\r\nContent-Length: {}\r\n\r\n",
            NOTIFY_MAX_BODY + 1
        ),
        format!(
            "POST /_skyhost/notify HTTP/1.1\r\nHost: {h}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            NOTIFY_MAX_BODY + 1
        ),
    ];
    for head in &heads {
        let r = exchange(l.addr, head.as_bytes(), WAIT).await;
        assert_eq!(r.status(), 413, "{head:?}:\n{}", r.text);
        assert!(r.closed, "{head:?}: the connection stays open");
        assert!(
            r.elapsed < Duration::from_secs(3),
            "{head:?}: {:?}",
            r.elapsed
        );
    }
    // A chunked body is cut off once it passes the cap: one byte more than the cap is
    // sent, and no end, so the listener reads all that was sent and nothing waits unread.
    let mut s = connect(l.addr).await;
    let mut req = format!(
        "POST /_skyhost/notify HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let chunk = 4096;
    for _ in 0..NOTIFY_MAX_BODY / chunk {
        req.extend_from_slice(format!("{chunk:x}\r\n").as_bytes());
        req.extend_from_slice(&vec![b'x'; chunk]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"1\r\nx\r\n");
    s.write_all(&req).await.unwrap();
    let r = read_until_closed(&mut s, WAIT).await;
    assert_eq!(r.status(), 413, "{}", r.text);
    // A body within the cap reaches the endpoint (which refuses the missing signature).
    let r = exchange(
        l.addr,
        format!("POST /_skyhost/notify HTTP/1.1\r\nHost: {h}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}")
            .as_bytes(),
        WAIT,
    )
    .await;
    assert_eq!(r.status(), 401, "{}", r.text);
}

#[tokio::test]
async fn a_body_not_sent_in_time_is_answered_408() {
    let l = listen(
        Limits {
            body_read: Duration::from_secs(1),
            ..Limits::default()
        },
        false,
    )
    .await;
    let head = format!(
        "POST /_skyhost/notify HTTP/1.1\r\nHost: {}\r\nContent-Length: 100\r\n\r\n0123456789",
        l.host
    );
    let r = exchange(l.addr, head.as_bytes(), WAIT).await;
    assert_eq!(r.status(), 408, "{}", r.text);
    assert!(r.closed);
    assert!(r.elapsed < Duration::from_secs(4), "{:?}", r.elapsed);
}

#[tokio::test]
async fn oversized_heads_are_refused_431() {
    let l = listen(Limits::default(), false).await;
    let h = &l.host;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "a".repeat(40 * 1024));
    for extra in [many, big] {
        let req = format!("GET /index.html HTTP/1.1\r\nHost: {h}\r\n{extra}\r\n");
        let r = exchange(l.addr, req.as_bytes(), WAIT).await;
        assert_eq!(r.status(), 431, "{}", &r.text[..r.text.len().min(200)]);
        assert!(r.closed);
    }
    // A smaller header count holds too.
    let l = listen(
        Limits {
            max_headers: 10,
            ..Limits::default()
        },
        false,
    )
    .await;
    for (count, want) in [(8, 200), (9, 431)] {
        // `Host` and `Connection` make two more.
        let extra: String = (0..count).map(|i| format!("X-H{i}: v\r\n")).collect();
        let req = format!(
            "GET /index.html HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{extra}\r\n",
            l.host
        );
        let r = exchange(l.addr, req.as_bytes(), WAIT).await;
        assert_eq!(r.status(), want, "{count} headers and two: {}", r.text);
    }
    let h = &l.host;
    // An unfinished head is refused once it fills the head buffer, not buffered on while
    // it keeps coming. The 431 may be lost to the reset of a socket closed with bytes
    // unread; the close is what counts.
    let mut s = connect(l.addr).await;
    let mut head = format!("GET / HTTP/1.1\r\nHost: {h}\r\n");
    let line = format!("X-More: {}\r\n", "b".repeat(1000));
    while head.len() < 200 * 1024 {
        head.push_str(&line);
    }
    let _ = s.write_all(head.as_bytes()).await;
    let r = read_until_closed(&mut s, WAIT).await;
    assert!(r.closed, "an unfinished 200 KiB head is still being read");
    assert!(
        r.statuses().iter().all(|s| *s == 431),
        "{}",
        &r.text[..r.text.len().min(200)]
    );
}

/// Holds `max_connections` connections open without a request, then checks that a visitor
/// beyond the cap waits, and is served as soon as one of them closes.
async fn check_connection_cap(threads: bool) {
    let l = listen(
        Limits {
            max_connections: 2,
            ..Limits::default()
        },
        threads,
    )
    .await;
    // Within the cap, a visitor is served.
    assert!(served(&l, Duration::from_secs(2)).await);
    assert_a_cap_of_two_holds(l.addr, &get(&l.host)).await;
}

#[tokio::test]
async fn the_connection_cap_holds() {
    check_connection_cap(false).await;
}

#[tokio::test]
async fn the_connection_cap_holds_across_threads() {
    check_connection_cap(true).await;
}
