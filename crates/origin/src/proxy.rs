//! Proxy rules (`/api/* https://api.example.com/:splat 200`): forward a visitor's request to
//! an upstream and stream the answer back.
//!
//! SSRF safety: only http and https; an upstream is refused when any of its addresses is
//! forbidden ([`skyhost_rules::ssrf::is_forbidden`]) unless the site's `[proxy] allowlist`
//! names the host and this origin honours allowlists. One HTTP client serves every site:
//! its DNS resolver ([`Screening`]) refuses a name with a forbidden address, so the
//! connection goes to exactly the addresses that were checked (no second lookup, no
//! rebinding between check and connect), and an IP literal is checked before the request.
//! Only an origin that honours allowlists has a second client, for allowlisted hosts.
//! Redirects are never followed: an upstream 3xx goes back to the visitor as-is, after its
//! `Location` is checked the same way. Hop-by-hop headers are stripped both ways and
//! `X-Forwarded-For/-Host/-Proto` added. Bodies stream both ways; a response past the
//! site's size cap is cut off with an error.
//!
//! The visitor's `Cookie` and `Authorization` are the site's, not the upstream's: they
//! reach only the hosts the site names in `[proxy] forward_credentials`. Every forwarded
//! request carries `X-Skyhost-Hops`, one more than it arrived with; a request that arrives
//! with [`MAX_PROXY_HOPS`] is refused with 508, so a proxy rule pointing back at skyhost
//! (directly or through other sites) stops instead of looping.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use reqwest::Url;
use skyhost_rules::ssrf::{host_in_allowlist, is_forbidden};
use skyhost_rules::ProxyPolicy;

/// Default time allowed to resolve the host and open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time allowed for a whole proxied exchange, body included.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(26);

/// The hop header: how many proxy rules a request has passed through.
pub const HOPS_HEADER: HeaderName = HeaderName::from_static("x-skyhost-hops");

/// A request that has already passed through this many proxy rules is not forwarded again
/// (508 Loop Detected). A few legitimate hops fit (site A proxying to site B on skyhost);
/// a loop stops after this many round trips.
pub const MAX_PROXY_HOPS: u32 = 5;

/// Operator settings of the proxy, fixed at init.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Time allowed to resolve the host and to connect.
    pub connect_timeout: Duration,
    /// Time allowed for the whole exchange, response body included.
    pub total_timeout: Duration,
    /// Whether a site's `[proxy] allowlist` may open otherwise forbidden addresses
    /// (loopback, private…). Off by default: on AWS Lambda, loopback reaches the runtime
    /// API and link-local the metadata service, so only local mode or an operator who
    /// trusts every site should turn it on.
    pub honor_allowlist: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            honor_allowlist: false,
        }
    }
}

/// What the proxy needs to know about the visitor.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The visitor's address, appended to `X-Forwarded-For`.
    pub ip: Option<IpAddr>,
    /// The scheme the visitor used, for `X-Forwarded-Proto`; when `None`, the request
    /// URI's scheme, else `http`.
    pub proto: Option<String>,
}

/// Why a request could not be proxied. [`ProxyError::status`] gives the answer to send.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// The rule's target is not a URL.
    #[error("proxy target '{0}' is not a valid URL")]
    InvalidTarget(String),
    /// The target's scheme is not http or https.
    #[error("proxy target '{0}': only http and https upstreams are allowed")]
    UnsupportedScheme(String),
    /// The host resolves to an address a proxy must not reach.
    #[error("{}", forbidden_message(host, addr, *allowlisted))]
    Forbidden {
        /// Host as written in the target.
        host: String,
        /// The first forbidden address found.
        addr: IpAddr,
        /// The site allowlists the host, but this origin does not honour allowlists.
        allowlisted: bool,
    },
    /// DNS failed.
    #[error("could not resolve upstream host '{host}': {reason}")]
    Resolve {
        /// Host as written in the target.
        host: String,
        /// Resolver error.
        reason: String,
    },
    /// DNS gave no address.
    #[error("upstream host '{host}' has no address")]
    NoAddress {
        /// Host as written in the target.
        host: String,
    },
    /// The connection could not be opened.
    #[error("could not connect to upstream '{host}': {reason}")]
    Connect {
        /// Host as written in the target.
        host: String,
        /// Connector error.
        reason: String,
    },
    /// Resolving, connecting or the exchange took too long.
    #[error("upstream '{host}' did not answer in time ({what})")]
    Timeout {
        /// Host as written in the target.
        host: String,
        /// Which step timed out.
        what: String,
    },
    /// The upstream broke the exchange.
    #[error("upstream '{host}' failed: {reason}")]
    Upstream {
        /// Host as written in the target.
        host: String,
        /// Error from the exchange.
        reason: String,
    },
    /// The upstream redirected to an address a proxy must not reach.
    #[error("upstream redirected to '{location}', which points at a forbidden address ({addr}); refusing to pass it on")]
    ForbiddenRedirect {
        /// The `Location` the upstream sent.
        location: String,
        /// The forbidden address.
        addr: IpAddr,
    },
    /// The response body is over the site's `max_response_bytes`.
    #[error(
        "upstream response is larger than the limit of {limit} bytes ([proxy] max_response_bytes)"
    )]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The request could not be built (e.g. an HTTP client could not be created).
    #[error("could not forward the request: {0}")]
    Request(String),
    /// The request has already passed through [`MAX_PROXY_HOPS`] proxy rules, or its
    /// `X-Skyhost-Hops` is not a single number: most likely a proxy rule pointing back
    /// at skyhost.
    #[error("proxy loop: the request arrived with X-Skyhost-Hops {hops:?} (the limit is {MAX_PROXY_HOPS}); check for a proxy rule that points back at skyhost")]
    LoopDetected {
        /// The header's value(s) as received.
        hops: String,
    },
}

fn forbidden_message(host: &str, addr: &IpAddr, allowlisted: bool) -> String {
    if allowlisted {
        format!(
            "upstream host '{host}' resolves to {addr}, which is not a public address; the site's [proxy] allowlist names it, but this origin does not honour allowlists"
        )
    } else {
        format!(
            "upstream host '{host}' resolves to {addr}, which is not a public address (loopback, private, link-local or reserved); list the host in [proxy] allowlist of skyhost.toml if it must be reached"
        )
    }
}

impl ProxyError {
    /// The status to answer the visitor with: 504 for timeouts, 508 for a loop, 502
    /// otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::LoopDetected { .. } => StatusCode::LOOP_DETECTED,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    fn from_reqwest(host: &str, error: reqwest::Error, total: Duration) -> ProxyError {
        // The resolver's own refusal or failure, as it said it.
        let mut source = std::error::Error::source(&error);
        while let Some(e) = source {
            if let Some(refused) = e.downcast_ref::<ProxyError>() {
                return refused.clone();
            }
            source = e.source();
        }
        let reason = error_chain(&error);
        if error.is_timeout() {
            ProxyError::Timeout {
                host: host.to_string(),
                what: format!("limit {} ms", total.as_millis()),
            }
        } else if error.is_connect() {
            ProxyError::Connect {
                host: host.to_string(),
                reason,
            }
        } else {
            ProxyError::Upstream {
                host: host.to_string(),
                reason,
            }
        }
    }
}

/// An error and its sources on one line (reqwest's own message alone is vague).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The body of a proxied response: the upstream's body, streamed, cut off with
/// [`ProxyError::TooLarge`] past the site's cap.
pub struct ProxyBody {
    stream: Option<BoxStream<'static, reqwest::Result<Bytes>>>,
    remaining: u64,
    limit: u64,
    hint: SizeHint,
    host: String,
    total_timeout: Duration,
}

impl std::fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyBody")
            .field("remaining", &self.remaining)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = ProxyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ProxyError>>> {
        let this = &mut *self;
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(None);
        };
        match stream.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let len = chunk.len() as u64;
                if len > this.remaining {
                    this.stream = None;
                    return Poll::Ready(Some(Err(ProxyError::TooLarge { limit: this.limit })));
                }
                this.remaining -= len;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => {
                this.stream = None;
                Poll::Ready(Some(Err(ProxyError::from_reqwest(
                    &this.host,
                    e,
                    this.total_timeout,
                ))))
            }
            Poll::Ready(None) => {
                this.stream = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Copies end-to-end headers: drops hop-by-hop ones, those `Connection` names, and `Proxy-*`.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || n.starts_with("proxy-") || named.iter().any(|c| c == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// The `X-Skyhost-Hops` to send upstream: one more than the request arrived with (none
/// counts as 0). Refused when the request already made [`MAX_PROXY_HOPS`] hops, and when
/// the header is repeated or not a number: a loop must not escape the count by mangling it.
pub fn next_hops(headers: &HeaderMap) -> Result<u32, ProxyError> {
    let values: Vec<&HeaderValue> = headers.get_all(&HOPS_HEADER).iter().collect();
    let refuse = || ProxyError::LoopDetected {
        hops: values
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(40)
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    let hops = match values.as_slice() {
        [] => 0,
        [one] => one
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .ok_or_else(refuse)?,
        _ => return Err(refuse()),
    };
    if hops >= MAX_PROXY_HOPS {
        return Err(refuse());
    }
    Ok(hops + 1)
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The first forbidden address of `addrs`, if any.
fn first_forbidden(addrs: &[SocketAddr]) -> Option<IpAddr> {
    addrs
        .iter()
        .map(SocketAddr::ip)
        .find(|ip| is_forbidden(*ip))
}

/// Resolves `name` with the system resolver, within `timeout`.
async fn lookup(name: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, ProxyError> {
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout(timeout, tokio::net::lookup_host((name, port))).await {
            Err(_) => {
                return Err(ProxyError::Timeout {
                    host: name.to_string(),
                    what: "resolving the host".to_string(),
                })
            }
            Ok(Err(e)) => {
                return Err(ProxyError::Resolve {
                    host: name.to_string(),
                    reason: e.to_string(),
                })
            }
            Ok(Ok(addrs)) => addrs.collect(),
        };
    if addrs.is_empty() {
        return Err(ProxyError::NoAddress {
            host: name.to_string(),
        });
    }
    Ok(addrs)
}

/// The proxy client's DNS resolver: the system's, refusing a name when any of its
/// addresses is forbidden ([`ProxyError::Forbidden`], carried to the caller inside
/// reqwest's error). The client connects only to the addresses this returns.
#[derive(Debug)]
pub struct Screening {
    timeout: Duration,
}

impl Screening {
    /// A resolver giving up after `timeout`.
    pub fn new(timeout: Duration) -> Screening {
        Screening { timeout }
    }

    /// The addresses of `name`, or why a proxy may not reach it.
    pub async fn addresses(&self, name: &str) -> Result<Vec<SocketAddr>, ProxyError> {
        // Port 0: the client puts in the URL's port.
        let addrs = lookup(name, 0, self.timeout).await?;
        match first_forbidden(&addrs) {
            Some(addr) => Err(ProxyError::Forbidden {
                host: name.to_string(),
                addr,
                allowlisted: false,
            }),
            None => Ok(addrs),
        }
    }
}

impl reqwest::dns::Resolve for Screening {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let screening = Screening {
            timeout: self.timeout,
        };
        Box::pin(async move {
            let addrs = screening.addresses(name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The proxy: build once at init and share. Its HTTP clients are built on first use (a
/// site without proxy rules never pays for them) and keep connections alive per host.
pub struct Proxy {
    config: ProxyConfig,
    /// Every upstream's client: DNS through [`Screening`].
    screened: OnceLock<Result<reqwest::Client, String>>,
    /// Allowlisted hosts' client, with the system resolver: only when the origin
    /// honours allowlists.
    exempt: OnceLock<Result<reqwest::Client, String>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A URL's host: an IP literal or a name to resolve.
enum HostKind<'a> {
    Ip(IpAddr),
    Domain(&'a str),
}

/// Classifies a URL's host; the URL parser has already normalized IPv4 forms such as
/// `0x7f.1` to dotted decimal.
fn host_kind(url: &Url) -> Option<HostKind<'_>> {
    let host = url.host_str()?;
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse().ok().map(HostKind::Ip);
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Some(HostKind::Ip(IpAddr::V4(v4)));
    }
    Some(HostKind::Domain(host))
}

/// The upstream after the SSRF checks that can be made before connecting.
struct Checked {
    /// Host as written in the target (for messages).
    host: String,
    /// The site allowlists the host and this origin honours that: no address is refused.
    exempt: bool,
}

impl Proxy {
    /// A proxy with the given settings.
    pub fn new(config: ProxyConfig) -> Proxy {
        Proxy {
            config,
            screened: OnceLock::new(),
            exempt: OnceLock::new(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Forwards `req` to `target` (an absolute URL from a matched proxy rule) and returns
    /// the upstream's response with its body streaming. The caller removes any header it
    /// consumed itself first (e.g. `Authorization` used for the site's basic auth), since
    /// every end-to-end header is passed on.
    pub async fn forward<B>(
        &self,
        req: Request<B>,
        target: &str,
        policy: &ProxyPolicy,
        client: &ClientInfo,
    ) -> Result<Response<ProxyBody>, ProxyError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Before any lookup or connection: a loop costs one refused request per hop.
        let hops = next_hops(req.headers())?;
        let url = Url::parse(target).map_err(|_| ProxyError::InvalidTarget(target.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ProxyError::UnsupportedScheme(target.to_string()));
        }
        let checked = self.check_url(&url, policy)?;
        let http = self.client(checked.exempt)?;

        let (parts, body) = req.into_parts();
        let mut headers = end_to_end(&parts.headers);
        headers.remove(header::HOST);
        if !host_in_allowlist(&checked.host, &policy.forward_credentials) {
            // The visitor's session and credentials belong to the site, not to a
            // third-party upstream the site did not name.
            headers.remove(header::COOKIE);
            headers.remove(header::AUTHORIZATION);
        }
        headers.insert(HOPS_HEADER, HeaderValue::from(hops));
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        headers.remove(&X_FORWARDED_HOST);
        if let Some(host) = original_host {
            headers.insert(X_FORWARDED_HOST, host);
        }
        let proto = client
            .proto
            .clone()
            .or_else(|| parts.uri.scheme_str().map(str::to_string))
            .unwrap_or_else(|| "http".to_string());
        headers.remove(&X_FORWARDED_PROTO);
        if let Ok(value) = HeaderValue::from_str(&proto) {
            headers.insert(X_FORWARDED_PROTO, value);
        }
        if let Some(ip) = client.ip {
            let chain = parts
                .headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .chain(std::iter::once(ip.to_string().as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            headers.remove(&X_FORWARDED_FOR);
            if let Ok(value) = HeaderValue::from_str(&chain) {
                headers.insert(X_FORWARDED_FOR, value);
            }
        }

        let mut request = http.request(parts.method, url.clone());
        if body.is_end_stream() {
            // No body: send none rather than an empty chunked one.
            headers.remove(header::CONTENT_LENGTH);
        } else {
            request = request.body(reqwest::Body::wrap_stream(body.into_data_stream()));
        }
        let host = checked.host.clone();
        let response = request.headers(headers).send().await.map_err(|e| {
            match ProxyError::from_reqwest(&host, e, self.config.total_timeout) {
                // The resolver cannot know the site's allowlist: the message can.
                ProxyError::Forbidden { host, addr, .. } => ProxyError::Forbidden {
                    allowlisted: host_in_allowlist(&host, &policy.allowlist),
                    host,
                    addr,
                },
                other => other,
            }
        })?;

        let status = response.status();
        let mut out_headers = end_to_end(response.headers());
        // The origin owns its X-Skyhost-* headers; an upstream may not forge them.
        let owned: Vec<HeaderName> = out_headers
            .keys()
            .filter(|n| n.as_str().starts_with("x-skyhost-"))
            .cloned()
            .collect();
        for name in owned {
            out_headers.remove(name);
        }
        if let Some(location) = out_headers.get(header::LOCATION) {
            let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
            self.check_location(&url, &location, policy).await?;
        }
        let length = out_headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let limit = policy.max_response_bytes;
        if length.is_some_and(|l| l > limit) {
            return Err(ProxyError::TooLarge { limit });
        }
        let mut hint = SizeHint::new();
        if let Some(l) = length {
            hint.set_exact(l);
        }
        let body = ProxyBody {
            stream: Some(response.bytes_stream().boxed()),
            remaining: limit,
            limit,
            hint,
            host,
            total_timeout: self.config.total_timeout,
        };
        let mut builder = Response::builder().status(status);
        if let Some(h) = builder.headers_mut() {
            *h = out_headers;
        }
        builder
            .body(body)
            .map_err(|e| ProxyError::Request(e.to_string()))
    }

    /// Applies the SSRF policy to what the URL says: an IP literal is checked here; a
    /// name is checked by the screened client's resolver when it connects.
    fn check_url(&self, url: &Url, policy: &ProxyPolicy) -> Result<Checked, ProxyError> {
        let host_text = url.host_str().unwrap_or_default().to_string();
        let allowlisted = host_in_allowlist(&host_text, &policy.allowlist);
        let exempt = allowlisted && self.config.honor_allowlist;
        match host_kind(url) {
            Some(HostKind::Ip(ip)) if !exempt && is_forbidden(ip) => Err(ProxyError::Forbidden {
                host: host_text,
                addr: ip,
                allowlisted,
            }),
            Some(_) => Ok(Checked {
                host: host_text,
                exempt,
            }),
            None => Err(ProxyError::InvalidTarget(url.to_string())),
        }
    }

    /// Refuses a `Location` that points at a forbidden address. Relative locations stay on
    /// the checked upstream; a host that does not resolve is passed on, since the proxy
    /// never follows it and the visitor cannot reach it either.
    async fn check_location(
        &self,
        base: &Url,
        location: &str,
        policy: &ProxyPolicy,
    ) -> Result<(), ProxyError> {
        let Ok(next) = base.join(location) else {
            return Ok(());
        };
        if !matches!(next.scheme(), "http" | "https") {
            return Ok(());
        }
        if next.host() == base.host() {
            return Ok(());
        }
        let host_text = next.host_str().unwrap_or_default();
        if self.config.honor_allowlist && host_in_allowlist(host_text, &policy.allowlist) {
            return Ok(());
        }
        let port = next.port_or_known_default().unwrap_or(80);
        let ips: Vec<IpAddr> = match host_kind(&next) {
            Some(HostKind::Ip(ip)) => vec![ip],
            Some(HostKind::Domain(name)) => {
                match lookup(name, port, self.config.connect_timeout).await {
                    Ok(addrs) => addrs.into_iter().map(|a| a.ip()).collect(),
                    Err(_) => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        match ips.into_iter().find(|ip| is_forbidden(*ip)) {
            Some(addr) => Err(ProxyError::ForbiddenRedirect {
                location: location.to_string(),
                addr,
            }),
            None => Ok(()),
        }
    }

    /// The client for an upstream: the screened one, or for an exempt host the one
    /// that refuses no address. Built on first use.
    fn client(&self, exempt: bool) -> Result<reqwest::Client, ProxyError> {
        let (cell, screening) = if exempt {
            (&self.exempt, None)
        } else {
            (
                &self.screened,
                Some(Arc::new(Screening::new(self.config.connect_timeout))),
            )
        };
        cell.get_or_init(|| {
            let mut builder = skyhost_meta::tls::http_client()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(self.config.connect_timeout)
                .timeout(self.config.total_timeout)
                // Environment proxies would connect somewhere other than the checked address.
                .no_proxy()
                .referer(false)
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(8);
            if let Some(screening) = screening {
                builder = builder.dns_resolver(screening);
            }
            builder.build().map_err(|e| error_chain(&e))
        })
        .clone()
        .map_err(ProxyError::Request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_to_end_headers_table() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "X-Custom-Hop, close"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "X-T"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("cookie", "a=1"),
            ("accept", "text/html"),
            ("x-kept", "yes"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let out = end_to_end(&h);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort();
        assert_eq!(names, vec!["accept", "cookie", "x-kept"]);
    }

    #[test]
    fn hop_count_table() {
        let max = MAX_PROXY_HOPS.to_string();
        let below = (MAX_PROXY_HOPS - 1).to_string();
        let cases: &[(&[&str], Option<u32>)] = &[
            (&[], Some(1)),
            (&["0"], Some(1)),
            (&[" 2 "], Some(3)),
            (&[below.as_str()], Some(MAX_PROXY_HOPS)),
            (&[max.as_str()], None),
            (&["4294967295"], None),
            (&["4294967296"], None),
            (&["-1"], None),
            (&["two"], None),
            (&[""], None),
            (&["1, 2"], None),
            (&["1", "1"], None),
        ];
        for (values, want) in cases {
            let mut h = HeaderMap::new();
            for v in *values {
                h.append(HOPS_HEADER, HeaderValue::from_str(v).unwrap());
            }
            let got = next_hops(&h);
            assert_eq!(got.as_ref().ok().copied(), *want, "{values:?}");
            if let Err(e) = got {
                assert_eq!(e.status(), StatusCode::LOOP_DETECTED, "{values:?}");
            }
        }
    }

    #[test]
    fn error_statuses() {
        let timeout = ProxyError::Timeout {
            host: "h".into(),
            what: "x".into(),
        };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        let forbidden = ProxyError::Forbidden {
            host: "h".into(),
            addr: "10.0.0.1".parse().unwrap(),
            allowlisted: false,
        };
        assert_eq!(forbidden.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            ProxyError::TooLarge { limit: 1 }.status(),
            StatusCode::BAD_GATEWAY
        );
    }
}
