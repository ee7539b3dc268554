//! A stand-in for the Lambda Runtime API: it notes when a function first asks for an
//! invocation (`GET /2018-06-01/runtime/invocation/next`) and then holds that request open,
//! so the function stays idle until it is killed. An init error is reported with its body.

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
}
