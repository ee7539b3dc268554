//! The hostile suite's machinery: requests written byte for byte (so a client library
//! cannot normalise them away), sent over a raw TCP connection to `server::serve` or
//! handed to `Origin::handle` as the Lambda main does, and the checks every case gets.

use bytes::Bytes;
use futures::FutureExt;
use skyhost_origin::Origin;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes no answer may ever carry: files planted outside the site's manifest (beside the
/// bucket's folders, in the site's own prefix, in another site of the same store).
pub const CANARIES: &[&[u8]] = &[b"CANARY-OUTSIDE-SITE-5e1f", b"CANARY-NEIGHBOUR-SITE-9b2c"];

/// Marks the content of protected files: only an authorized request may see it.
pub const PROTECTED: &[u8] = b"PROTECTED-CONTENT-";

/// A request, written exactly as given.
#[derive(Clone)]
pub struct Req {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// `GET target` with no headers yet.
pub fn get(target: impl AsRef<[u8]>) -> Req {
    Req {
        method: b"GET".to_vec(),
        target: target.as_ref().to_vec(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl Req {
    pub fn method(mut self, m: &str) -> Req {
        self.method = m.as_bytes().to_vec();
        self
    }

    pub fn host(self, h: impl AsRef<[u8]>) -> Req {
        self.header("Host", h)
    }

    pub fn header(mut self, k: impl AsRef<[u8]>, v: impl AsRef<[u8]>) -> Req {
        self.headers
            .push((k.as_ref().to_vec(), v.as_ref().to_vec()));
        self
    }

    pub fn body(mut self, b: impl AsRef<[u8]>) -> Req {
        self.body = b.as_ref().to_vec();
        self
    }

    /// The HTTP/1.1 bytes: request line, headers, `Content-Length` when there is a body,
    /// `Connection: close`, body.
    fn wire(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.target.len() + self.body.len());
        out.extend_from_slice(&self.method);
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for (k, v) in &self.headers {
            out.extend_from_slice(k);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// An answer as received.
#[derive(Debug, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// How a case reaches the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Raw bytes over TCP to local mode's listener (`server::serve`).
    Http,
    /// `Origin::handle` directly, as the Lambda main calls it.
    Direct,
}

type CheckFn = Box<dyn Fn(&Answer) -> Result<(), String> + Send + Sync>;

/// One hostile request and what must come back.
pub struct Case {
    pub name: String,
    pub req: Req,
    pub expect: u16,
    pub via: Via,
    /// Sends valid credentials: protected content may be served.
    pub authorized: bool,
    pub checks: Vec<CheckFn>,
}

/// A case sent over HTTP.
pub fn case(name: impl Into<String>, req: Req, expect: u16) -> Case {
    Case {
        name: name.into(),
        req,
        expect,
        via: Via::Http,
        authorized: false,
        checks: Vec::new(),
    }
}

impl Case {
    pub fn direct(mut self) -> Case {
        self.via = Via::Direct;
        self
    }

    pub fn authorized(mut self) -> Case {
        self.authorized = true;
        self
    }

    pub fn check(
        mut self,
        f: impl Fn(&Answer) -> Result<(), String> + Send + Sync + 'static,
    ) -> Case {
        self.checks.push(Box::new(f));
        self
    }

    /// The body is exactly `want`.
    pub fn body_is(self, want: impl AsRef<[u8]>) -> Case {
        let want = want.as_ref().to_vec();
        self.check(move |a| {
            if a.body == want {
                Ok(())
            } else {
                Err(format!(
                    "body is {:?}, not {:?}",
                    preview(&a.body),
                    preview(&want)
                ))
            }
        })
    }

    /// Header `name` is exactly `want`.
    pub fn header_is(self, name: &'static str, want: &'static str) -> Case {
        self.check(move |a| match a.header(name) {
            Some(v) if v == want.as_bytes() => Ok(()),
            other => Err(format!(
                "{name} is {:?}, not {want:?}",
                other.map(String::from_utf8_lossy)
            )),
        })
    }

    /// Header `name` is absent.
    pub fn no_header(self, name: &'static str) -> Case {
        self.check(move |a| match a.header(name) {
            None => Ok(()),
            Some(v) => Err(format!(
                "unexpected {name}: {:?}",
                String::from_utf8_lossy(v)
            )),
        })
    }

    /// `Cache-Control` keeps the answer out of shared caches (`private` or `no-store`).
    pub fn not_shared(self) -> Case {
        self.check(|a| {
            let cc = a.header_str("cache-control").unwrap_or_default();
            if cc.contains("private") || cc.contains("no-store") {
                Ok(())
            } else {
                Err(format!(
                    "Cache-Control {cc:?} lets shared caches keep a protected answer"
                ))
            }
        })
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn preview(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned();
    if b.len() > 120 {
        format!("{s}… ({} bytes)", b.len())
    } else {
        s
    }
}

/// A request that finds no answer in this long is a hang (a failure, not a timing check).
const HANG: Duration = Duration::from_secs(120);

/// Sends `req` over a new TCP connection to `addr` and reads the answer to the end.
pub async fn over_tcp(addr: &str, req: &Req) -> Result<Answer, String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        // The server may answer (413, 431) and close before it reads everything: what it
        // answered is still there to read.
        let _ = s.write_all(&req.wire()).await;
        let _ = s.flush().await;
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // A reset after the answer was written (the unread request body).
                Err(_) if !raw.is_empty() => break,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        parse(&raw)
    };
    tokio::time::timeout(HANG, exchange)
        .await
        .map_err(|_| "no answer (hang)".to_owned())?
}

fn parse(raw: &[u8]) -> Result<Answer, String> {
    if raw.is_empty() {
        return Err("the connection closed without an answer (a panic?)".into());
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {:?}", preview(raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, Vec<u8>)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().as_bytes().to_vec()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && contains(&v.to_ascii_lowercase(), b"chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Hands `req` to `Origin::handle` as the Lambda main does; a panic is reported as such.
pub async fn direct(origin: &Origin, req: &Req) -> Result<Answer, String> {
    let mut b = http::Request::builder()
        .method(http::Method::from_bytes(&req.method).map_err(|e| format!("method: {e}"))?)
        .uri(
            http::Uri::try_from(req.target.as_slice())
                .map_err(|e| format!("the target is no URI: {e}"))?,
        );
    for (k, v) in &req.headers {
        b = b.header(
            http::HeaderName::from_bytes(k).map_err(|e| format!("header name: {e}"))?,
            http::HeaderValue::from_bytes(v).map_err(|e| format!("header value: {e}"))?,
        );
    }
    let request = b
        .body(Bytes::from(req.body.clone()))
        .map_err(|e| format!("request: {e}"))?;
    let handled = AssertUnwindSafe(async {
        let resp = origin
            .handle(
                request,
                Some("192.0.2.10".parse().expect("a literal address")),
            )
            .await;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| format!("body: {e}"))?;
        Ok::<_, String>(Answer {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
        })
    })
    .catch_unwind();
    match tokio::time::timeout(HANG, handled).await {
        Err(_) => Err("no answer (hang)".into()),
        Ok(Err(panic)) => Err(format!("handle panicked: {}", panic_text(&panic))),
        Ok(Ok(r)) => r,
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Checks one answer against its case: the exact status, no canary, no protected content
/// unless authorized, and the case's own checks.
pub fn judge(c: &Case, a: &Answer) -> Result<(), String> {
    let mut problems = Vec::new();
    if a.status != c.expect {
        problems.push(format!(
            "status {} (expected {}), body {:?}",
            a.status,
            c.expect,
            preview(&a.body)
        ));
    }
    for canary in CANARIES {
        if contains(&a.body, canary) {
            problems.push(format!(
                "served bytes from outside the site: {}",
                String::from_utf8_lossy(canary)
            ));
        }
    }
    if !c.authorized && contains(&a.body, PROTECTED) {
        problems.push("served protected content without credentials".into());
    }
    for check in &c.checks {
        if let Err(e) = check(a) {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The resident set of this process, in bytes (Linux), for memory bounds.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
