//! A fault-injecting HTTP proxy in front of moto: every request passes through unchanged
//! until a rule matches it, and from the rule's Nth matching request on it is failed (an
//! error status, or the connection closed without an answer) or held while the test does
//! something first (a concurrent write that the held one then loses to).
//!
//! A fault lasts from the Nth match on, not only for the Nth request, because the SDK
//! retries server errors: a single failure would be retried away.

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::{TcpListener, TcpStream};

/// A request as the rules see it.
pub struct Seen<'a> {
    /// `GET`, `PUT`, `POST`…
    pub method: &'a str,
    /// The path and query (`/bucket/sites/shop/blobs/…?uploads`).
    pub path: &'a str,
    /// DynamoDB's operation (`X-Amz-Target`, `DynamoDB_20120810.TransactWriteItems`).
    pub target: &'a str,
    /// The request body.
    pub body: &'a [u8],
}

impl Seen<'_> {
    /// Whether the body contains `needle`.
    pub fn body_has(&self, needle: &str) -> bool {
        self.body
            .windows(needle.len().max(1))
            .any(|w| w == needle.as_bytes())
    }
}

/// What a matching request gets.
#[derive(Clone)]
pub enum Fault {
    /// This status, with an error body the SDK decodes as a server error.
    Status(u16),
    /// The connection closed without an answer.
    Drop,
    /// Forwarded after this runs (to its end), so that what it does happens first.
    Before(Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>),
}

type Matcher = Box<dyn Fn(&Seen<'_>) -> bool + Send + Sync>;

struct Rule {
    name: String,
    matches: Matcher,
    from: usize,
    fault: Fault,
    seen: usize,
    faulted: usize,
}

#[derive(Default)]
struct Rules(Mutex<Vec<Rule>>);

impl Rules {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fault for this request, counting it against every rule it matches.
    fn fault_for(&self, seen: &Seen<'_>) -> Option<Fault> {
        let mut out = None;
        for r in self.lock().iter_mut() {
            if (r.matches)(seen) {
                r.seen += 1;
                if r.seen >= r.from && out.is_none() {
                    r.faulted += 1;
                    out = Some(r.fault.clone());
                }
            }
        }
        out
    }
}

/// The proxy: listening on a local port, forwarding to `upstream`.
pub struct FaultProxy {
    url: String,
    rules: Arc<Rules>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`http://127.0.0.1:5000`), with no rule yet.
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .trim_end_matches('/')
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the fault proxy forwards plain http, not {upstream}"))
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy to a free local port");
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .expect("a bound listener has an address")
        );
        let rules = Arc::new(Rules::default());
        let task = tokio::spawn(serve(listener, upstream, rules.clone()));
        FaultProxy { url, rules, task }
    }

    /// Where clients connect (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// From the `nth` (1-based) request `matches` accepts on, answer with `fault`.
    pub fn fail_from(
        &self,
        name: &str,
        nth: usize,
        fault: Fault,
        matches: impl Fn(&Seen<'_>) -> bool + Send + Sync + 'static,
    ) {
        assert!(nth >= 1, "requests are counted from 1");
        self.rules.lock().push(Rule {
            name: name.to_owned(),
            matches: Box::new(matches),
            from: nth,
            fault,
            seen: 0,
            faulted: 0,
        });
    }

    /// An S3 client for `conf` that goes through the proxy. Built here because the SDK
    /// prefers `AWS_ENDPOINT_URL` (moto, as `make test` sets it) to the configuration's
    /// own endpoint.
    pub fn s3(&self, conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(conf)
                .endpoint_url(&self.url)
                .force_path_style(true)
                .build(),
        )
    }

    /// A DynamoDB client for `conf` that goes through the proxy.
    pub fn dynamodb(&self, conf: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(conf)
                .endpoint_url(&self.url)
                .build(),
        )
    }

    /// Every rule removed: everything passes through again.
    pub fn clear(&self) {
        self.rules.lock().clear();
    }

    /// How many requests rule `name` matched, and how many of them it faulted.
    pub fn counts(&self, name: &str) -> (usize, usize) {
        self.rules
            .lock()
            .iter()
            .find(|r| r.name == name)
            .map_or((0, 0), |r| (r.seen, r.faulted))
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, upstream: String, rules: Arc<Rules>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        let upstream = upstream.clone();
        let rules = rules.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let upstream = upstream.clone();
                let rules = rules.clone();
                async move { handle(req, &upstream, &rules).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
                .await;
        });
    }
}

/// A request failed by a [`Fault::Drop`]: hyper closes the connection without answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

type Answer = Result<Response<Full<Bytes>>, Dropped>;

async fn handle(req: Request<Incoming>, upstream: &str, rules: &Rules) -> Answer {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let seen = Seen {
        method: parts.method.as_str(),
        path,
        target,
        body: &body,
    };
    match rules.fault_for(&seen) {
        Some(Fault::Status(code)) => return Ok(error_answer(code, !target.is_empty())),
        Some(Fault::Drop) => return Err(Dropped),
        Some(Fault::Before(first)) => first().await,
        None => {}
    }
    match forward(parts, body, upstream).await {
        Ok(r) => Ok(r),
        Err(e) => Ok(error_answer_with(
            502,
            &format!("fault proxy: moto did not answer: {e}"),
        )),
    }
}

fn error_answer_with(code: u16, message: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(message.to_owned())));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    r
}

fn error_answer(code: u16, json: bool) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (content_type, body) = if json {
        (
            "application/x-amz-json-1.0",
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected by the fault proxy"}"#,
        )
    } else {
        (
            "application/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>injected by the fault proxy</Message></Error>",
        )
    };
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

async fn forward(
    parts: http::request::Parts,
    body: Bytes,
    upstream: &str,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let answer = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = answer.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}
