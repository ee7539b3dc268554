//! A minimal HTTP/1.1 client over a raw socket: it times the first byte of the answer and
//! reads only the head, which is all the propagation and latency runs look at.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response's status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a response head (everything before the blank line).
pub fn parse_head(raw: &[u8]) -> Result<Head> {
    let text = std::str::from_utf8(raw).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("bad status line {status_line:?}");
    };
    if !version.starts_with("HTTP/1.") {
        bail!("bad status line {status_line:?}");
    }
    let status: u16 = code
        .parse()
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((n, v)) = line.split_once(':') else {
            bail!("bad header line {line:?}");
        };
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    Ok(Head { status, headers })
}

/// A head and when its first byte came.
#[derive(Debug, Clone)]
pub struct Timed {
    /// The response head.
    pub head: Head,
    /// From before connecting to the first byte of the response.
    pub ttfb: Duration,
}

/// `GET path` on `addr` with `Host: host` and `extra` headers, on a fresh connection; reads
/// the head only.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<Timed> {
    request(addr, host, path, extra, false)
        .await
        .map(|(t, _)| t)
}

/// [`get`], reading the whole body too (a server may act only on bodies sent in full, as
/// skyhost's cache does); returns the body's length.
pub async fn get_all(
    addr: SocketAddr,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<(Timed, usize)> {
    request(addr, host, path, extra, true).await
}

async fn request(
    addr: SocketAddr,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: bool,
) -> Result<(Timed, usize)> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    let mut ttfb = None;
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("{addr} closed the connection before the end of the head");
        }
        ttfb.get_or_insert_with(|| started.elapsed());
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_head(&buf[..end])?;
            let mut len = buf.len() - end - 4;
            if body {
                // `Connection: close`: the body ends when the server closes.
                loop {
                    let n = s.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                }
            }
            let timed = Timed {
                head,
                ttfb: ttfb.unwrap_or_default(),
            };
            return Ok((timed, len));
        }
        if buf.len() > 64 * 1024 {
            bail!("{addr} sent a head over 64 KiB");
        }
    }
}

/// Waits until `addr` answers `GET path` with status `want` (or any status when `None`).
pub async fn wait_for(
    addr: SocketAddr,
    host: &str,
    path: &str,
    want: Option<u16>,
    timeout: Duration,
) -> Result<Head> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match get(addr, host, path, &[]).await {
            Ok(t) if want.is_none_or(|w| w == t.head.status) => return Ok(t.head),
            Ok(t) => last = format!("status {}", t.head.status),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{addr} {path} (Host {host}) not ready after {timeout:?}: {last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h =
            parse_head(b"HTTP/1.1 200 OK\r\nX-Skyhost-Deployment: d1\r\nContent-Length:  12 \r\n")
                .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.header("x-skyhost-deployment"), Some("d1"));
        assert_eq!(h.header("content-length"), Some("12"));
        assert_eq!(h.header("x-missing"), None);
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"HTTP/1.0 404 Not Found", Some(404)),
            (b"HTTP/1.1 503", Some(503)),
            (b"HTTP/2 200 OK", None),
            (b"garbage", None),
            (b"HTTP/1.1 abc OK", None),
            (b"HTTP/1.1 200 OK\r\nno colon here", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                parse_head(raw).ok().map(|h| h.status),
                *want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[tokio::test]
    async fn get_reads_the_head_and_times_it() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = vec![0u8; 1024];
            let n = s.read(&mut req).await.unwrap();
            let req = String::from_utf8_lossy(&req[..n]).to_string();
            assert!(
                req.starts_with("GET /x HTTP/1.1\r\nHost: a.test\r\n"),
                "{req}"
            );
            assert!(
                req.contains("X-Skyhost-Client-Region: eu-central-1\r\n"),
                "{req}"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nX-A: b\r\n\r\nbody")
                .await
                .unwrap();
        });
        let t = get(
            addr,
            "a.test",
            "/x",
            &[("X-Skyhost-Client-Region", "eu-central-1")],
        )
        .await
        .unwrap();
        assert_eq!(t.head.status, 200);
        assert_eq!(t.head.header("x-a"), Some("b"));
        assert!(t.ttfb >= Duration::from_millis(30), "{:?}", t.ttfb);
    }
}
