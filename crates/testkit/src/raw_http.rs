//! HTTP/1.1 at the socket level, for tests of what a listener does with bytes no HTTP
//! client would send: smuggling attempts, heads sent a byte at a time, bodies that never
//! end, connections held open.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What came back on a connection.
#[derive(Debug)]
pub struct Reply {
    /// Every byte read, lossily as text.
    pub text: String,
    /// Whether the listener closed (or reset) the connection before the wait ran out.
    pub closed: bool,
    /// How long the reading took.
    pub elapsed: Duration,
}

impl Reply {
    /// The status codes of the responses read, in order.
    pub fn statuses(&self) -> Vec<u16> {
        statuses(&self.text)
    }

    /// The one status read; panics (failing the test) unless exactly one response came.
    pub fn status(&self) -> u16 {
        match self.statuses()[..] {
            [s] => s,
            ref other => panic!("expected one response, got {other:?}:\n{}", self.text),
        }
    }
}

/// The status codes of the HTTP/1.1 status lines in `text`, in order. Any `HTTP/1.1 `
/// followed by three digits and a space counts, even inside a body: a second response
/// glued to the end of a first one's body must not go unseen.
pub fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, m)| {
            let code = text.get(i + m.len()..i + m.len() + 4)?;
            code.ends_with(' ').then(|| code[..3].parse().ok())?
        })
        .collect()
}

/// Connects to `addr`.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr)
        .await
        .expect("connect to the listener");
    let _ = s.set_nodelay(true);
    s
}

/// Reads from `stream` until the listener closes it, or `wait` runs out.
pub async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Reply {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        let left = wait.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    };
    Reply {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        closed,
        elapsed: start.elapsed(),
    }
}

/// Writes `request` on a new connection, then reads until the listener closes it or
/// `wait` runs out. A listener that stops reading early may make the write fail; what it
/// answered is read all the same.
pub async fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> Reply {
    let mut s = connect(addr).await;
    let _ = s.write_all(request).await;
    read_until_closed(&mut s, wait).await
}

/// Reads one response's head from `stream`, up to `wait`: the text read so far.
pub async fn read_head(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = wait.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Checks a listener at `addr` capped at two connections: with two held open, a third
/// sending `request` is left unanswered, and is answered 200 once one of the two closes.
pub async fn assert_a_cap_of_two_holds(addr: SocketAddr, request: &[u8]) {
    let mut holders = vec![connect(addr).await, connect(addr).await];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut late = connect(addr).await;
    late.write_all(request).await.unwrap();
    assert_eq!(
        read_head(&mut late, Duration::from_secs(1)).await,
        None,
        "a third connection was served beyond a cap of two"
    );
    drop(holders.pop());
    let head = read_head(&mut late, Duration::from_secs(3)).await;
    assert!(
        matches!(&head, Some(h) if h.starts_with("HTTP/1.1 200")),
        "the waiting visitor was not served once a slot freed: {head:?}"
    );
    drop(holders);
}

#[cfg(test)]
mod tests {
    #[test]
    fn statuses() {
        let cases: &[(&str, &[u16])] = &[
            ("", &[]),
            ("HTTP/1.1 400 Bad Request\r\n\r\n", &[400]),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\n\r\n",
                &[200, 404],
            ),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n\nHTTP/1.1 404 Not Found\r\n\r\n",
                &[200, 404],
            ),
            ("body says HTTP/1.1 500 Oops\r\n", &[500]),
            ("HTTP/1.1 20", &[]),
            ("HTTP/1.1 abc def", &[]),
        ];
        for (text, want) in cases {
            assert_eq!(super::statuses(text), *want, "{text:?}");
        }
    }
}
