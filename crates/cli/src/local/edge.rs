//! The local edge router: plays Route 53 latency routing with health checks. It answers
//! each request from the healthy region nearest to the simulated client
//! (`X-Skyhost-Client-Region`), checks every region's `/_skyhost/health`, and moves
//! traffic away after `threshold` failed checks in a row (and back after as many
//! successes). Between checks it plays CloudFront's origin failover: a GET, HEAD or
//! OPTIONS that the chosen region cannot answer, or answers with a 5xx, is sent to the
//! next healthy region.

use super::latency;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use skyhost_origin::forwarded::ORIGIN_VERIFY;
use skyhost_origin::listener::{Limits, Refusal, Slots};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The header naming the simulated client's region.
pub const CLIENT_REGION: &str = "x-skyhost-client-region";
/// Regions a failed GET, HEAD or OPTIONS is tried in, the first included.
const MAX_TRIES: usize = 3;

type Body = BoxBody<Bytes, std::io::Error>;

/// One region behind the router.
pub struct Target {
    /// The region.
    pub region: String,
    /// Its origin's base URL.
    pub base: String,
    healthy: AtomicBool,
    /// Requests sent to this region.
    routed: AtomicU64,
    fails: AtomicU32,
    oks: AtomicU32,
}

/// Router settings.
#[derive(Clone, Debug)]
pub struct EdgeOptions {
    /// The value sent to origins in `X-Skyhost-Origin-Verify`, as CloudFront sends its
    /// secret: origins trust the forwarded headers (`CloudFront-Viewer-Country`,
    /// `X-Forwarded-*`) of requests carrying it. A visitor's own is never passed on.
    pub origin_verify: Option<http::HeaderValue>,
    /// Time between health checks.
    pub interval: Duration,
    /// Consecutive results that flip a region's health.
    pub threshold: u32,
    /// Delay each answer by the simulated round trip.
    pub emulate_latency: bool,
}

/// The router's state.
pub struct Edge {
    targets: Vec<Target>,
    regions: Vec<String>,
    opts: EdgeOptions,
    client: reqwest::Client,
}

impl Edge {
    /// A router over `(region, base url)` pairs; the first is the default client region.
    pub fn new(targets: Vec<(String, String)>, opts: EdgeOptions) -> anyhow::Result<Arc<Self>> {
        let client = skyhost_meta::tls::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(64)
            // Let idle connections go before an origin's head timeout closes them under us.
            .pool_idle_timeout(Limits::default().header_read / 2)
            .build()?;
        Ok(Arc::new(Edge {
            regions: targets.iter().map(|(r, _)| r.clone()).collect(),
            targets: targets
                .into_iter()
                .map(|(region, base)| Target {
                    region,
                    base,
                    healthy: AtomicBool::new(true),
                    routed: AtomicU64::new(0),
                    fails: AtomicU32::new(0),
                    oks: AtomicU32::new(0),
                })
                .collect(),
            opts,
            client,
        }))
    }

    /// Whether region `i` is taking traffic.
    pub fn healthy(&self, i: usize) -> bool {
        self.targets[i].healthy.load(Ordering::Relaxed)
    }

    /// Checks every region once and applies the threshold.
    pub async fn check_once(&self) {
        let checks = self.targets.iter().map(|t| async move {
            let ok = matches!(
                self.client
                    .get(format!("{}/_skyhost/health", t.base))
                    .timeout(self.opts.interval.max(Duration::from_millis(500)))
                    .send()
                    .await,
                Ok(r) if r.status().is_success()
            );
            let th = self.opts.threshold.max(1);
            if ok {
                t.fails.store(0, Ordering::Relaxed);
                if t.oks.fetch_add(1, Ordering::Relaxed) + 1 >= th && !t.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(region = %t.region, "region healthy again; taking traffic");
                }
            } else {
                t.oks.store(0, Ordering::Relaxed);
                if t.fails.fetch_add(1, Ordering::Relaxed) + 1 >= th && t.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(region = %t.region, "region failed {th} health checks; traffic moves away");
                }
            }
        });
        futures::future::join_all(checks).await;
    }

    /// Checks health every interval until `stop` fires.
    pub async fn health_loop(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.opts.interval);
        loop {
            tokio::select! {
                _ = tick.tick() => self.check_once().await,
                _ = stop.changed() => return,
            }
        }
    }

    /// The region a client in `client` is sent to: the nearest healthy one.
    pub fn route(&self, client: &str) -> Option<usize> {
        self.candidates(client).first().copied()
    }

    fn plain(status: u16, msg: &str) -> http::Response<Body> {
        let mut r = http::Response::new(
            Full::new(Bytes::from(msg.to_owned()))
                .map_err(|never| match never {})
                .boxed(),
        );
        *r.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        r
    }

    /// The router's view in Prometheus' text format: each region's health as the
    /// router judges it (what Route 53 would) and the requests it sent there.
    pub fn exposition(&self) -> String {
        let mut out = String::from(
            "# HELP skyhost_edge_region_healthy Whether the edge router sends visitors to the region.\n\
             # TYPE skyhost_edge_region_healthy gauge\n",
        );
        for t in &self.targets {
            out.push_str(&format!(
                "skyhost_edge_region_healthy{{region=\"{}\"}} {}\n",
                t.region,
                u8::from(t.healthy.load(Ordering::Relaxed))
            ));
        }
        out.push_str(
            "# HELP skyhost_edge_requests_total Requests the edge router sent to the region.\n\
             # TYPE skyhost_edge_requests_total counter\n",
        );
        for t in &self.targets {
            out.push_str(&format!(
                "skyhost_edge_requests_total{{region=\"{}\"}} {}\n",
                t.region,
                t.routed.load(Ordering::Relaxed)
            ));
        }
        out
    }

    /// Answers one request, its body already read whole, through the chosen region. The
    /// body goes on with a length of its own: no framing header of the visitor's is sent.
    /// `/_skyhost/metrics` is the router's own ([`Edge::exposition`]).
    pub async fn forward(&self, req: http::Request<Bytes>) -> http::Response<Body> {
        if req.uri().path() == skyhost_origin::counters::METRICS_PATH
            && req.method() == http::Method::GET
        {
            let mut r = Self::plain(200, &self.exposition());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return r;
        }
        let client_region = req
            .headers()
            .get(CLIENT_REGION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| self.regions[0].clone());
        let order = self.candidates(&client_region);
        if order.is_empty() {
            return Self::plain(503, "no healthy region\n");
        }
        // As a CloudFront origin group: a GET, HEAD or OPTIONS that the chosen region
        // fails (no connection, or a 5xx) goes to the next healthy region, so a region
        // that goes out between two health checks costs its visitors no error.
        let failover = matches!(
            *req.method(),
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
        );
        let tries = if failover {
            order.len().min(MAX_TRIES)
        } else {
            1
        };
        let (parts, body) = req.into_parts();
        for (n, &i) in order.iter().take(tries).enumerate() {
            let last = n + 1 == tries;
            let t = &self.targets[i];
            match self.send(&parts, body.clone(), &client_region, t).await {
                Ok(resp) if last || !resp.status().is_server_error() => {
                    return Self::relay(resp, &client_region, &t.region);
                }
                Ok(resp) => {
                    tracing::debug!(region = %t.region, status = %resp.status(), "region failed a request; trying the next");
                }
                Err(e) if last => {
                    return Self::plain(502, &format!("region {} did not answer: {e}\n", t.region));
                }
                Err(e) => {
                    tracing::debug!(region = %t.region, error = %e, "region did not answer; trying the next");
                }
            }
        }
        Self::plain(502, "no region answered\n")
    }

    /// The healthy regions for a visitor in `client_region`, nearest first.
    fn candidates(&self, client_region: &str) -> Vec<usize> {
        latency::nearest_first(client_region, &self.regions)
            .into_iter()
            .filter(|&i| self.healthy(i))
            .collect()
    }

    /// Sends the request to region `t`.
    async fn send(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        client_region: &str,
        t: &Target,
    ) -> reqwest::Result<reqwest::Response> {
        t.routed.fetch_add(1, Ordering::Relaxed);
        if self.opts.emulate_latency {
            let ms = latency::rtt_ms(client_region, &t.region);
            tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
        }
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut out = self
            .client
            .request(parts.method.clone(), format!("{}{path}", t.base))
            .body(body);
        for (name, value) in &parts.headers {
            if !is_hop_by_hop(name.as_str()) && !set_by_the_front(name.as_str()) {
                out = out.header(name, value);
            }
        }
        if let Some(v) = &self.opts.origin_verify {
            out = out.header(ORIGIN_VERIFY, v.clone());
            // As CloudFront's function does: the site host travels in X-Forwarded-Host.
            if let Some(host) = parts.headers.get(http::header::HOST) {
                out = out.header("x-forwarded-host", host.clone());
            }
        }
        out.send().await
    }

    /// A region's answer, streamed on to the visitor. A body of known length keeps it, as
    /// CloudFront keeps the origin's `Content-Length`: its length travels in the body's
    /// size, so a `HEAD` still says it and a small page is not sent chunked.
    fn relay(resp: reqwest::Response, client_region: &str, region: &str) -> http::Response<Body> {
        let resp: http::Response<reqwest::Body> = resp.into();
        let (parts, body) = resp.into_parts();
        let mut b = http::Response::builder().status(parts.status);
        for (name, value) in &parts.headers {
            if name == http::header::CONTENT_LENGTH || !is_hop_by_hop(name.as_str()) {
                b = b.header(name, value);
            }
        }
        b = b.header("x-skyhost-edge", format!("{client_region}->{region}"));
        b.body(body.map_err(std::io::Error::other).boxed())
            .unwrap_or_else(|_| Self::plain(502, "bad upstream response\n"))
    }
}

/// Headers the edge sets itself, as CloudFront does, never a visitor's. The edge listens
/// on loopback only, so every visitor is 127.0.0.1: without X-Forwarded-For the origin
/// counts its peer, which is that address too.
fn set_by_the_front(name: &str) -> bool {
    name == ORIGIN_VERIFY.as_str() || name == "x-forwarded-host" || name == "x-forwarded-for"
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// Serves the router on `listener` until `stop` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    edge: Arc<Edge>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_limited(listener, edge, stop, Limits::default()).await
}

/// [`serve`] within `limits`, the limits of every local listener: head and body timeouts,
/// head and body sizes, and a connection cap beyond which connections wait.
pub async fn serve_limited(
    listener: tokio::net::TcpListener,
    edge: Arc<Edge>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    limits: Limits,
) -> std::io::Result<()> {
    let slots = Slots::new(limits.max_connections);
    let limits = Arc::new(limits);
    loop {
        let (stream, _, slot) = tokio::select! {
            a = slots.accept(&listener) => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than stop routing.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return Ok(()),
        };
        let (edge, limits) = (edge.clone(), limits.clone());
        tokio::spawn(async move {
            let conn_limits = limits.clone();
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (edge, limits) = (edge.clone(), limits.clone());
                async move {
                    let (parts, body) = req.into_parts();
                    let resp = match limits.read_body(body, parts.uri.path()).await {
                        Ok(body) => edge.forward(http::Request::from_parts(parts, body)).await,
                        Err(r) => refused(r),
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = conn_limits
                .http1()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(slot);
        });
    }
}

/// The answer to a body that was not read; the connection closes after it.
fn refused(r: Refusal) -> http::Response<Body> {
    let mut resp = Edge::plain(r.status().as_u16(), &format!("{r}\n"));
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}
