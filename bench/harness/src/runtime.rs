//! A stand-in for the Lambda Runtime API: it notes when a function first asks for an
//! invocation (`GET /2018-06-01/runtime/invocation/next`) and then holds that request open,
//! so the function stays idle until it is killed. An init error is reported with its body.
//! [`start_invoking`] instead hands the first poll one invocation and notes when its
//! response has arrived whole.

use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The path a function polls for its next invocation.
pub const NEXT: &str = "/2018-06-01/runtime/invocation/next";

/// What the stub saw.
#[derive(Debug, Clone)]
pub enum Event {
    /// The first poll for an invocation, and when its request line arrived.
    Next(Instant),
    /// The function reported an init error (`POST …/init/error`), with its body.
    InitError(String),
    /// Any other request line.
    Other(String),
    /// An invocation's response arrived whole ([`start_invoking`]), and its body
    /// (de-chunked when streamed).
    Response(Instant, Vec<u8>),
}

/// Classifies a request line.
pub fn classify(request_line: &str) -> Classified {
    let mut it = request_line.split_whitespace();
    match (it.next(), it.next()) {
        (Some("GET"), Some(NEXT)) => Classified::Next,
        (Some("POST"), Some(p)) if p.ends_with("/runtime/init/error") => Classified::InitError,
        _ => Classified::Other,
    }
}

/// A request line's meaning to the stub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// A poll for the next invocation.
    Next,
    /// An init error report.
    InitError,
    /// Anything else.
    Other,
}

/// The running stub.
pub struct Stub {
    /// Where it listens (`AWS_LAMBDA_RUNTIME_API` is this, without the scheme).
    pub addr: SocketAddr,
    /// Events in arrival order.
    pub events: mpsc::UnboundedReceiver<Event>,
}

/// Starts the stub on an ephemeral port.
pub async fn start() -> std::io::Result<Stub> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(1024);
                let mut chunk = [0u8; 4096];
                let mut noted = false;
                loop {
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let at = Instant::now();
                    buf.extend_from_slice(&chunk[..n]);
                    if noted {
                        continue;
                    }
                    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                        continue;
                    };
                    let line = String::from_utf8_lossy(&buf[..eol]).into_owned();
                    match classify(&line) {
                        Classified::Next => {
                            noted = true;
                            let _ = tx.send(Event::Next(at));
                            // Hold the request: the function now waits for an invocation.
                        }
                        Classified::InitError => {
                            noted = true;
                            // The body arrives with or right after the head.
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            if let Ok(n) = tokio::time::timeout(
                                std::time::Duration::from_millis(50),
                                s.read(&mut chunk),
                            )
                            .await
                            {
                                buf.extend_from_slice(&chunk[..n.unwrap_or(0)]);
                            }
                            let _ = tx
                                .send(Event::InitError(String::from_utf8_lossy(&buf).into_owned()));
                            let _ = s
                                .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}")
                                .await;
                        }
                        Classified::Other => {
                            noted = true;
                            let _ = tx.send(Event::Other(line));
                            let _ = s
                                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                                .await;
                        }
                    }
                }
            });
        }
    });
    Ok(Stub { addr, events: rx })
}

/// The request id of the invocation [`start_invoking`] hands out.
pub const REQUEST_ID: &str = "bench-invocation-1";

/// Starts a stub that answers the first poll with `event` (request id [`REQUEST_ID`]),
/// notes the function's response to it once its body (de-chunked by hyper when streamed)
/// has arrived whole, and holds every later poll.
pub async fn start_invoking(event: Vec<u8>) -> std::io::Result<Stub> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::header::HeaderValue;
    use hyper::StatusCode;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let handed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let event = Bytes::from(event);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let (tx, handed, event) = (tx.clone(), handed.clone(), event.clone());
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (tx, handed, event) = (tx.clone(), handed.clone(), event.clone());
                async move {
                    let at = Instant::now();
                    let line = format!("{} {} HTTP/1.1", req.method(), req.uri().path());
                    let reply = |status: StatusCode, body: &'static [u8]| {
                        let mut r = hyper::Response::new(Full::new(Bytes::from_static(body)));
                        *r.status_mut() = status;
                        r
                    };
                    let resp = match classify(&line) {
                        Classified::Next
                            if !handed.swap(true, std::sync::atomic::Ordering::SeqCst) =>
                        {
                            let _ = tx.send(Event::Next(at));
                            let deadline = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_millis() + 30_000)
                                .unwrap_or(0);
                            let mut r = hyper::Response::new(Full::new(event));
                            let h = r.headers_mut();
                            let fixed = HeaderValue::from_static;
                            h.insert("content-type", fixed("application/json"));
                            h.insert("lambda-runtime-aws-request-id", fixed(REQUEST_ID));
                            h.insert(
                                "lambda-runtime-deadline-ms",
                                HeaderValue::from(u64::try_from(deadline).unwrap_or(u64::MAX)),
                            );
                            h.insert(
                                "lambda-runtime-invoked-function-arn",
                                fixed("arn:aws:lambda:us-west-2:123456789012:function:bench"),
                            );
                            h.insert(
                                "lambda-runtime-trace-id",
                                fixed("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"),
                            );
                            r
                        }
                        // Held: the function waits for its next invocation until killed.
                        Classified::Next => std::future::pending().await,
                        Classified::InitError => {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let body = body.unwrap_or_default();
                            let _ = tx.send(Event::InitError(
                                String::from_utf8_lossy(&body).into_owned(),
                            ));
                            reply(StatusCode::ACCEPTED, b"{}")
                        }
                        Classified::Other
                            if line.starts_with(&format!(
                                "POST /2018-06-01/runtime/invocation/{REQUEST_ID}/response "
                            )) =>
                        {
                            match req.into_body().collect().await {
                                Ok(body) => {
                                    let _ = tx.send(Event::Response(
                                        Instant::now(),
                                        body.to_bytes().to_vec(),
                                    ));
                                    reply(StatusCode::ACCEPTED, b"{\"status\":\"OK\"}")
                                }
                                Err(e) => {
                                    let _ = tx.send(Event::Other(format!("{line}: {e}")));
                                    reply(StatusCode::BAD_REQUEST, b"")
                                }
                            }
                        }
                        Classified::Other => {
                            let _ = tx.send(Event::Other(line));
                            reply(StatusCode::NOT_FOUND, b"")
                        }
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                // Title case, as the Runtime API writes its headers.
                let _ = hyper::server::conn::http1::Builder::new()
                    .title_case_headers(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Ok(Stub { addr, events: rx })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpStream;

    #[test]
    fn request_lines() {
        let cases = [
            (
                "GET /2018-06-01/runtime/invocation/next HTTP/1.1",
                Classified::Next,
            ),
            (
                "POST /2018-06-01/runtime/init/error HTTP/1.1",
                Classified::InitError,
            ),
            (
                "POST /2018-06-01/runtime/invocation/abc/response HTTP/1.1",
                Classified::Other,
            ),
            (
                "GET /2018-06-01/runtime/invocation/nextt HTTP/1.1",
                Classified::Other,
            ),
            ("", Classified::Other),
        ];
        for (line, want) in cases {
            assert_eq!(classify(line), want, "{line}");
        }
    }

    #[tokio::test]
    async fn notes_the_poll_and_holds_it() {
        let mut stub = start().await.unwrap();
        let before = Instant::now();
        let mut s = TcpStream::connect(stub.addr).await.unwrap();
        s.write_all(format!("GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(5), stub.events.recv())
            .await
            .unwrap()
        {
            Some(Event::Next(at)) => assert!(at >= before),
            other => panic!("{other:?}"),
        }
        // Held: nothing comes back.
        let mut b = [0u8; 16];
        assert!(
            tokio::time::timeout(Duration::from_millis(100), s.read(&mut b))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn reports_init_errors() {
        let mut stub = start().await.unwrap();
        let mut s = TcpStream::connect(stub.addr).await.unwrap();
        s.write_all(b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nContent-Length: 13\r\n\r\n{\"e\":\"boom\"}\n").await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), stub.events.recv())
            .await
            .unwrap()
        {
            Some(Event::InitError(body)) => assert!(body.contains("boom"), "{body}"),
            other => panic!("{other:?}"),
        }
        let mut b = [0u8; 64];
        let n = s.read(&mut b).await.unwrap();
        assert!(String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 202"));
    }

    #[tokio::test]
    async fn hands_out_one_invocation_and_notes_its_streamed_response() {
        let mut stub = start_invoking(b"{\"path\":\"/\"}".to_vec()).await.unwrap();
        let mut s = TcpStream::connect(stub.addr).await.unwrap();
        s.write_all(format!("GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1024];
        while !got.ends_with(b"{\"path\":\"/\"}") {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
        }
        let head = String::from_utf8_lossy(&got).into_owned();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains(&format!("Lambda-Runtime-Aws-Request-Id: {REQUEST_ID}")));
        // A streamed response, as `run_with_streaming_response` sends it, on the same
        // connection: chunked, with a trailer.
        let post = format!(
            "POST /2018-06-01/runtime/invocation/{REQUEST_ID}/response HTTP/1.1\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\
             Lambda-Runtime-Function-Error-Type: none\r\n\r\n"
        );
        s.write_all(post.as_bytes()).await.unwrap();
        let mut saw = Vec::new();
        while saw.len() < 2 {
            match tokio::time::timeout(Duration::from_secs(5), stub.events.recv())
                .await
                .unwrap()
            {
                Some(e) => saw.push(e),
                None => panic!("stub stopped"),
            }
        }
        assert!(matches!(saw[0], Event::Next(_)), "{saw:?}");
        match &saw[1] {
            Event::Response(_, body) => assert_eq!(body, b"hello world"),
            other => panic!("{other:?}"),
        }
        let n = s.read(&mut b).await.unwrap();
        assert!(String::from_utf8_lossy(&b[..n]).starts_with("HTTP/1.1 202"));
        // The next poll is held, on a new connection as on this one.
        let mut again = TcpStream::connect(stub.addr).await.unwrap();
        again
            .write_all(format!("GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(100), again.read(&mut b))
                .await
                .is_err()
        );
    }
}
