//! The request handler shared by the Lambda main and local mode: routes `/_skyhost/`,
//! resolves the site, applies its rules and serves files through the data path.
//!
//! Order for a site request: host → site → manifest → path decode → basic auth →
//! `_redirects` (shadowed by existing files unless forced) → file resolution (index,
//! pretty URLs, trailing slash) → preconditions → range → content coding → body.

use crate::answers::{self, Answers};
use crate::auth::{AuthDecision, Lockout};
use crate::body::{BodyError, OriginBody};
use crate::cache_control;
use crate::conditional::{self, Conditions, Precondition, Validators};
use crate::config::OriginConfig;
use crate::data::{CacheOutcome, DataError, DataPath};
use crate::encoding;
use crate::forwarded::Gate;
use crate::geo::VIEWER_COUNTRY;
use crate::health;
use crate::metrics::Metrics;
use crate::notify;
use crate::path::{self, Policy, Resolved};
use crate::proxy::{ClientInfo, Proxy};
use crate::range::{self, RangeDecision};
use crate::resolve::{ResolveError, Resolver};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::Cache;
use skyhost_meta::config::ConfigError;
use skyhost_meta::secrets::Secret;
use skyhost_meta::store::MetaStore;
use skyhost_meta::{keys, Encoding, Manifest, Site};
use skyhost_rules::{AuthRule, RedirectAction, RequestFacts};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// `X-Skyhost-Region`.
pub const X_SKYHOST_REGION: HeaderName = HeaderName::from_static("x-skyhost-region");
/// `X-Skyhost-Deployment`.
pub const X_SKYHOST_DEPLOYMENT: HeaderName = HeaderName::from_static("x-skyhost-deployment");
/// The revision of the site record the answer was made from: how far behind a region is
/// (`skyhost status`).
pub const X_SKYHOST_REVISION: HeaderName = HeaderName::from_static("x-skyhost-revision");
/// `X-Skyhost-Cache`.
pub const X_SKYHOST_CACHE: HeaderName = HeaderName::from_static("x-skyhost-cache");

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// Why an origin could not be built from the environment.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// A setting is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `REDIS_URL` is not a Redis URL.
    #[error(transparent)]
    Redis(#[from] skyhost_meta::cache::redis::RedisConfigError),
}

/// A region's origin: built once at init, shared by every request.
pub struct Origin {
    config: OriginConfig,
    meta: Arc<dyn MetaStore>,
    cache: Arc<dyn Cache>,
    data: Arc<DataPath>,
    resolver: Resolver,
    /// Catches up with site changes whose notification this instance missed.
    converge: crate::converge::Converge,
    lockout: Lockout,
    metrics: Metrics,
    /// Local counters and the operator's EMF records ([`crate::counters`]).
    observer: crate::counters::Observer,
    proxy: Proxy,
    /// `X-Skyhost-Region`'s value, built once.
    region_header: HeaderValue,
    /// Each serving thread's most requested answers; `None` when the cache cannot say
    /// when site records change.
    answers: Option<Answers>,
    /// The last health result, reused for about a second.
    health: health::Cached,
    /// Which requests come through the trusted front ([`crate::forwarded`]).
    gate: Gate,
    /// The secrets accepted on `/_skyhost/notify`.
    notify_secret: Secret,
}

/// What the request log line reports about a response.
#[derive(Default)]
struct Log {
    /// Whether the line is written at all (the fields below cost allocations).
    enabled: bool,
    site: Option<String>,
    outcome: Option<CacheOutcome>,
    /// The answer may be kept ([`crate::answers`]); `site` is then set.
    answerable: bool,
}

/// A site request being served.
struct SiteCtx<'a> {
    parts: &'a Parts,
    body: &'a Bytes,
    host: &'a str,
    path: std::borrow::Cow<'a, str>,
    client: Option<IpAddr>,
    site: &'a Site,
    manifest: &'a Manifest,
    /// `Last-Modified` of the deployment's files, made when the manifest was loaded.
    last_modified: &'a HeaderValue,
    policy: Policy,
    /// The worst [`CacheOutcome`] so far, as its index (atomic so the context is `Sync`).
    outcome: AtomicU8,
    /// Set when the answer is a whole file served as a 200; `route` adds that it came
    /// from the cache and that the site allows keeping it.
    answerable: AtomicBool,
    /// The basic-auth rules (by source) this request passed, so each is checked once.
    granted: Mutex<Vec<String>>,
}

const OUTCOMES: [CacheOutcome; 3] = [
    CacheOutcome::Hit,
    CacheOutcome::Miss,
    CacheOutcome::Fallback,
];

fn outcome_index(o: CacheOutcome) -> u8 {
    match o {
        CacheOutcome::Hit => 0,
        CacheOutcome::Miss => 1,
        CacheOutcome::Fallback => 2,
    }
}

impl SiteCtx<'_> {
    fn touch(&self, o: CacheOutcome) {
        self.outcome.fetch_max(outcome_index(o), Ordering::Relaxed);
    }

    fn outcome(&self) -> CacheOutcome {
        OUTCOMES[usize::from(self.outcome.load(Ordering::Relaxed)).min(2)]
    }

    fn exists(&self, file: &str) -> bool {
        self.manifest.files.contains_key(file)
    }

    fn resolve(&self, p: &str, policy: Policy) -> Resolved {
        path::resolve(p, &|f| self.exists(f), policy)
    }

    fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_get_or_head(&self) -> bool {
        self.parts.method == Method::GET || self.parts.method == Method::HEAD
    }

    fn granted(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A panic elsewhere cannot leave the list inconsistent: every change is one push.
        self.granted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this request passed the auth rule written at `source`.
    fn passed(&self, source: &str) -> bool {
        self.granted().iter().any(|s| s == source)
    }

    /// Whether this request passed any auth rule: its answer is for its requester only.
    fn authorized(&self) -> bool {
        !self.granted().is_empty()
    }
}

/// How a file is being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The requested resource: preconditions and ranges apply.
    File,
    /// A page standing in for a 404/410 (or another status).
    Page,
    /// The 5xx page: a failure to read it is answered in plain text.
    ErrorPage,
}

fn plain(status: StatusCode, text: &'static str) -> Response<OriginBody> {
    let mut r = Response::new(OriginBody::from(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, TEXT);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control::NO_STORE),
    );
    r
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<OriginBody> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let len = body.len();
    let mut r = Response::new(OriginBody::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control::NO_STORE),
    );
    r
}

/// The answer to every host that serves nothing: it says nothing about other sites.
fn unknown_host() -> Response<OriginBody> {
    plain(StatusCode::NOT_FOUND, "Not Found\n")
}

fn method_not_allowed(allow: &'static str) -> Response<OriginBody> {
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn redirect(status: StatusCode, location: &str) -> Response<OriginBody> {
    let Ok(loc) = HeaderValue::from_str(location) else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
    };
    let mut r = Response::new(OriginBody::empty());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::LOCATION, loc);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control::REVALIDATE),
    );
    r
}

pub(crate) fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Sets `_headers` values on an answer; they override defaults such as `Cache-Control`,
/// never the headers the server owns.
fn apply_headers(resp: &mut Response<OriginBody>, headers: Vec<(String, String)>) {
    for (name, value) in headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if owned_header(&name) {
            continue;
        }
        let Ok(value) = HeaderValue::from_str(&value) else {
            continue;
        };
        let h = resp.headers_mut();
        if name == header::VARY {
            h.append(name, value);
        } else {
            h.insert(name, value);
        }
    }
}

/// Headers `_headers` may never set, whatever the manifest says.
fn owned_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "content-encoding"
            | "content-range"
            | "keep-alive"
            | "upgrade"
            | "trailer"
            | "te"
    ) || name.as_str().starts_with("x-skyhost-")
}

fn data_status(e: &DataError) -> StatusCode {
    match e {
        DataError::Missing(_) => StatusCode::INTERNAL_SERVER_ERROR,
        DataError::Blob(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn error_text(status: StatusCode) -> &'static str {
    match status {
        StatusCode::INTERNAL_SERVER_ERROR => "Internal Server Error\n",
        StatusCode::BAD_GATEWAY => "Bad Gateway\n",
        StatusCode::GATEWAY_TIMEOUT => "Gateway Timeout\n",
        _ => "Service Unavailable\n",
    }
}

impl Origin {
    /// An origin over the given adapters. `primary` is the primary region's bucket, `None`
    /// in the primary region itself.
    pub fn new(
        config: OriginConfig,
        meta: Arc<dyn MetaStore>,
        local: Arc<dyn BlobStore>,
        primary: Option<Arc<dyn BlobStore>>,
        cache: Arc<dyn Cache>,
    ) -> Origin {
        let data = Arc::new(DataPath::new(
            local,
            primary,
            cache.clone(),
            config.max_cached_body(),
        ));
        let resolver = Resolver::new(
            meta.clone(),
            cache.clone(),
            data.clone(),
            config.unknown_host_ttl,
            config.site_refresh,
            config.cache_bytes / 4,
        );
        let lockout = Lockout::new(
            config.redis_url.as_deref(),
            config.auth_max_failures,
            config.auth_lockout,
        );
        let metrics = Metrics::new(&config.region, config.emit_metrics);
        let observer = crate::counters::Observer::new(&config.region, config.emit_metrics);
        let proxy = Proxy::new(config.proxy.clone());
        let region_header = header_value(&config.region);
        let answers = cache.site_generation().is_some().then(|| {
            let per_thread = (config.cache_bytes / 32).clamp(1 << 20, 16 << 20);
            Answers::new(usize::try_from(per_thread).unwrap_or(1 << 20), 64 * 1024)
        });
        let gate = Gate::new(config.origin_verify.clone(), config.direct_access);
        let notify_secret = config.notify_secret.clone();
        Origin {
            health: health::Cached::new(),
            gate,
            notify_secret,
            answers,
            region_header,
            converge: crate::converge::Converge::new(meta.clone(), crate::converge::CHECK_EVERY),
            config,
            meta,
            cache,
            data,
            resolver,
            lockout,
            metrics,
            observer,
            proxy,
        }
    }

    /// The same origin, counting what it answers into `counters` (local mode: the counters
    /// of its region, served at [`crate::counters::METRICS_PATH`]).
    pub fn with_counters(mut self, counters: Arc<crate::counters::Counters>) -> Origin {
        self.observer = self.observer.with_counters(counters);
        self
    }

    /// What this origin observes ([`crate::counters`]).
    pub fn observer(&self) -> &crate::counters::Observer {
        &self.observer
    }

    /// The origin of a Lambda function: configuration from the environment, the sites
    /// table's replica and the bucket of its own region (a region stands on its own: the
    /// primary's trouble never reaches its reads or its health), the primary bucket as the
    /// fail-safe, each through a client built on first use, and the in-process cache in
    /// front of Redis when `REDIS_URL` is set.
    pub async fn from_env() -> Result<Origin, OriginError> {
        use skyhost_meta::blob::s3::S3BlobStore;
        use skyhost_meta::cache::{memory::MemoryCache, redis::RedisCache, Tiered};
        use skyhost_meta::config::SdkConfigCell;
        use skyhost_meta::store::dynamodb::DynamoStore;

        let config = OriginConfig::from_env()?;
        // Shared with the secrets of the configuration: one connector, one credential load.
        let here = SdkConfigCell::shared(&config.region);
        let primary_conf = if config.primary_region == config.region {
            here.clone()
        } else {
            here.for_region(&config.primary_region)
        };
        // Every client is built on first use, and the SDK configuration loaded then: a cold
        // instance whose first requests the region's Redis answers does neither (each SDK
        // crate parses its partition table when its first client is built). The primary
        // bucket is the fail-safe.
        let meta: Arc<dyn MetaStore> =
            Arc::new(DynamoStore::deferred(here.clone(), config.table.clone()));
        let local: Arc<dyn BlobStore> =
            Arc::new(S3BlobStore::deferred(here, config.bucket.clone()));
        let primary: Option<Arc<dyn BlobStore>> = (config.primary_bucket != config.bucket)
            .then(|| S3BlobStore::deferred(primary_conf, config.primary_bucket.clone()))
            .map(|store| Arc::new(store) as Arc<dyn BlobStore>);
        let redis = config
            .redis_url
            .as_deref()
            .map(RedisCache::new)
            .transpose()?;
        let cache: Arc<dyn Cache> =
            Arc::new(Tiered::new(MemoryCache::new(config.cache_bytes), redis));
        Ok(Origin::new(config, meta, local, primary, cache))
    }

    /// How many kept answers ([`crate::answers`]) the calling thread has served.
    pub fn kept_answers_served_here(&self) -> u64 {
        self.answers.as_ref().map_or(0, Answers::served_here)
    }

    /// The configuration in use.
    pub fn config(&self) -> &OriginConfig {
        &self.config
    }

    /// Answers one request. `client_ip` is the peer address (API Gateway's source IP, or
    /// the TCP peer in local mode).
    pub async fn handle(
        &self,
        req: Request<Bytes>,
        client_ip: Option<IpAddr>,
    ) -> Response<OriginBody> {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        // Bounded before anything reads the head (414, 431).
        if let Some(refused) = crate::limits::refuse(&parts) {
            return refused;
        }
        // Before anything reads a header: forwarded ones only from the verified front.
        let admitted = self.gate.admit(&mut parts.headers, parts.uri.path()).await;
        // Site requests look for missed site changes; the reserved endpoints stay off the
        // table (a health probe checks the region, notify carries its own record).
        if !parts.uri.path().starts_with("/_skyhost/") {
            self.converge.check(started, &self.resolver).await;
        }
        let client = self.client_address(&parts.headers, client_ip);
        let mut log = Log {
            enabled: tracing::enabled!(target: "skyhost_origin::request", tracing::Level::INFO),
            ..Log::default()
        };
        if !admitted {
            let refused = plain(StatusCode::FORBIDDEN, "Forbidden\n");
            return self.finish_request(&parts, None, client, refused, &log, started);
        }
        // Read once: kept answers, routing and the log line all name the same host.
        let host = self.host(&parts);
        // A kept answer is looked up under the site records' generation read before
        // anything else: an answer made while a record changed is never served.
        let keep = match (&self.answers, host) {
            (Some(a), Some(host)) if answers::request_qualifies(&parts) => self
                .cache
                .site_generation()
                .map(|generation| (a, host, generation)),
            _ => None,
        };
        let kept = keep.and_then(|(a, host, generation)| {
            a.get(host, &parts, generation, started, log.enabled)
        });
        let resp = match kept {
            Some(k) => {
                log.site = k.site;
                log.outcome = Some(CacheOutcome::Hit);
                let mut r = Response::new(OriginBody::full(k.body));
                *r.status_mut() = k.status;
                *r.headers_mut() = k.headers;
                r
            }
            None => {
                let mut r = self.route(&parts, host, &body, client, &mut log).await;
                r.headers_mut()
                    .insert(X_SKYHOST_REGION, self.region_header.clone());
                let site = log.site.as_deref().filter(|_| log.answerable);
                if let (Some((a, host, generation)), Some(site)) = (keep, site) {
                    if let Some(b) = r.body().as_full() {
                        a.put(
                            host,
                            &parts,
                            generation,
                            started,
                            site,
                            r.status(),
                            r.headers(),
                            b,
                        );
                    }
                }
                r
            }
        };
        self.finish_request(&parts, host, client, resp, &log, started)
    }

    /// The request log line and metrics of an answer; a `HEAD` answer loses its body.
    fn finish_request(
        &self,
        parts: &Parts,
        host: Option<&str>,
        client: Option<IpAddr>,
        mut resp: Response<OriginBody>,
        log: &Log,
        started: Instant,
    ) -> Response<OriginBody> {
        let head = parts.method == Method::HEAD;
        if head {
            *resp.body_mut() = OriginBody::empty();
        }
        self.observer
            .answer(parts.uri.path(), resp.status(), log.outcome);
        if !log.enabled && !self.metrics.enabled() {
            return resp;
        }
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let bytes = if head {
            0
        } else {
            resp.headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        tracing::info!(
            target: "skyhost_origin::request",
            method = %parts.method,
            host = host.unwrap_or(""),
            path = parts.uri.path(),
            site = log.site.as_deref().unwrap_or(""),
            status = resp.status().as_u16(),
            cache = log.outcome.map_or("", CacheOutcome::as_str),
            bytes,
            latency_ms,
            client = %client.map(|c| c.to_string()).unwrap_or_default(),
            "request"
        );
        if let Some(o) = log.outcome {
            self.metrics.record(o, latency_ms);
        }
        resp
    }

    /// The site host: `X-Forwarded-Host` (left only when the front verified), else `Host`.
    fn host<'a>(&self, parts: &'a Parts) -> Option<&'a str> {
        let forwarded = parts
            .headers
            .get(X_FORWARDED_HOST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        forwarded.or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        })
    }

    /// The visitor's address: behind the verified front (which alone leaves
    /// `X-Forwarded-For`), the entry the front appended (the last one is the front
    /// itself); else the peer.
    fn client_address(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        let chain: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if chain.len() >= 2 {
            if let Ok(ip) = chain[chain.len() - 2].parse() {
                return Some(ip);
            }
        }
        peer
    }

    async fn route(
        &self,
        parts: &Parts,
        host: Option<&str>,
        body: &Bytes,
        client: Option<IpAddr>,
        log: &mut Log,
    ) -> Response<OriginBody> {
        let raw = parts.uri.path();
        let decoded = path::decode(raw);
        // Reserved on every host, whether written plainly or percent-encoded.
        let judged = decoded.as_deref().unwrap_or(raw);
        if judged == "/_skyhost" || judged.starts_with("/_skyhost/") {
            return self.reserved(parts, body, judged).await;
        }
        let path = match decoded {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(path = raw, error = %e, "bad request path");
                return plain(StatusCode::BAD_REQUEST, "Bad Request\n");
            }
        };
        let Some(host) = host else {
            return unknown_host();
        };
        let site = match self.resolver.site_for_host_header(host).await {
            Ok(Some(s)) => s,
            Ok(None) => return unknown_host(),
            Err(e) => {
                tracing::error!(host, error = %e, "metadata store failed");
                return plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
            }
        };
        let Some(deployment) = site.active.as_ref() else {
            return unknown_host();
        };
        if log.enabled {
            log.site = Some(site.id.to_string());
        }
        let (loaded, outcome) = match self.resolver.manifest(&site.id, deployment).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(site = %site.id, deployment = %deployment, error = %e, "manifest unavailable");
                let status = match &e {
                    ResolveError::Data(d) => data_status(d),
                    ResolveError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let mut r = plain(status, error_text(status));
                log.outcome = Some(CacheOutcome::Miss);
                let h = r.headers_mut();
                h.insert(X_SKYHOST_DEPLOYMENT, header_value(deployment.as_str()));
                h.insert(
                    X_SKYHOST_CACHE,
                    HeaderValue::from_static(CacheOutcome::Miss.as_str()),
                );
                return r;
            }
        };
        let manifest = &loaded.manifest;
        let settings = &manifest.rules.settings;
        let ctx = SiteCtx {
            parts,
            body,
            host,
            path,
            client,
            site: &site,
            manifest,
            last_modified: &loaded.last_modified,
            policy: Policy {
                trailing_slash: settings.trailing_slash,
                pretty_urls: settings.pretty_urls,
            },
            outcome: AtomicU8::new(outcome_index(outcome)),
            answerable: AtomicBool::new(false),
            granted: Mutex::default(),
        };
        let mut resp = self.serve_site(&ctx).await;
        if ctx.authorized() || resp.status() == StatusCode::UNAUTHORIZED {
            cache_control::keep_private(resp.headers_mut());
        }
        let outcome = ctx.outcome();
        log.outcome = Some(outcome);
        if loaded.answerable
            && outcome == CacheOutcome::Hit
            && ctx.answerable.load(Ordering::Relaxed)
        {
            log.answerable = true;
            if log.site.is_none() {
                log.site = Some(site.id.to_string());
            }
        }
        let h = resp.headers_mut();
        h.insert(X_SKYHOST_DEPLOYMENT, loaded.deployment.clone());
        h.insert(X_SKYHOST_REVISION, HeaderValue::from(site.revision));
        h.insert(X_SKYHOST_CACHE, HeaderValue::from_static(outcome.as_str()));
        resp
    }

    async fn reserved(&self, parts: &Parts, body: &Bytes, path: &str) -> Response<OriginBody> {
        let get_or_head = parts.method == Method::GET || parts.method == Method::HEAD;
        match path {
            "/_skyhost/health" if get_or_head => {
                let (status, report) = self
                    .health
                    .get_or_check(|| async {
                        let checked = health::report(
                            &self.config.region,
                            self.meta.as_ref(),
                            self.data.local().as_ref(),
                            self.cache.as_ref(),
                            self.config.redis_url.is_some(),
                        )
                        .await;
                        // Once per check, not per probe: the alarm counts checks.
                        self.observer.health(checked.0);
                        checked
                    })
                    .await;
                if status != StatusCode::OK {
                    tracing::warn!(status = report.status, "health check failing");
                }
                json(status, &report)
            }
            "/_skyhost/health" => method_not_allowed("GET, HEAD"),
            "/_skyhost/notify" if parts.method == Method::POST => self.notify(parts, body).await,
            "/_skyhost/notify" => method_not_allowed("POST"),
            _ => plain(StatusCode::NOT_FOUND, "Not Found\n"),
        }
    }

    /// `POST /_skyhost/notify` with the notify secret's values; a refused signature
    /// re-reads the secret (rate limited) and is checked once more, so a replicator
    /// already signing with a rotated secret is believed.
    async fn notify(&self, parts: &Parts, body: &Bytes) -> Response<OriginBody> {
        let secrets = match self.notify_secret.values().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "notify secret unavailable");
                let err = serde_json::json!({ "error": "the notify secret is unavailable" });
                return json(StatusCode::SERVICE_UNAVAILABLE, &err);
            }
        };
        let check = |secrets: skyhost_meta::secrets::Values| async move {
            let now = skyhost_meta::now();
            notify::handle(
                &secrets,
                &self.resolver,
                &self.data,
                &parts.headers,
                body,
                now,
            )
            .await
        };
        let (mut status, mut value) = check(secrets.clone()).await;
        if status == StatusCode::UNAUTHORIZED {
            if let Some(newer) = self.notify_secret.reread_after_failure(&secrets).await {
                (status, value) = check(newer).await;
            }
        }
        json(status, &value)
    }

    async fn serve_site(&self, ctx: &SiteCtx<'_>) -> Response<OriginBody> {
        let rules = &ctx.manifest.rules;
        if let Some(refusal) = crate::geo::refusal(rules, &ctx.parts.headers) {
            return self.geo_refused(ctx, refusal).await;
        }
        let mut granted: Option<&str> = None;
        if let Some(rule) = rules.auth_for(&ctx.path) {
            if let Some(denied) = self.authorize(ctx, rule).await {
                return denied;
            }
            granted = Some(rule.source());
        }
        let facts = RequestFacts {
            path: &ctx.path,
            query: ctx.parts.uri.query().unwrap_or(""),
            country: ctx.header(VIEWER_COUNTRY),
            accept_language: ctx.header(header::ACCEPT_LANGUAGE),
        };
        let lenient = ctx.policy.lenient();
        let exists = |p: &str| ctx.resolve(p, lenient) != Resolved::NotFound;
        match rules.match_redirect(&facts, &exists) {
            None => self.serve_path(ctx, &ctx.path, true).await,
            Some(RedirectAction::Redirect { status, location }) => redirect(
                StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
                &location,
            ),
            Some(RedirectAction::Rewrite { path: target }) => {
                // A rewrite must not expose a path another rule protects.
                if let Some(rule) = rules.auth_for(&target) {
                    if granted != Some(rule.source()) {
                        if let Some(denied) = self.authorize(ctx, rule).await {
                            return denied;
                        }
                    }
                }
                self.serve_path(ctx, &target, false).await
            }
            Some(RedirectAction::Status {
                status,
                path: target,
            }) => {
                let code = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
                match ctx.resolve(&target, lenient) {
                    Resolved::File(f) => self.serve_file(ctx, &f, code, Mode::Page).await,
                    _ => self.not_found(ctx, code, false).await,
                }
            }
            Some(RedirectAction::Proxy { url }) => self.proxy(ctx, &url, granted.is_some()).await,
        }
    }

    /// 403 to a visitor the site's `[geo]` refuses: its page, else a plain message.
    async fn geo_refused(
        &self,
        ctx: &SiteCtx<'_>,
        refusal: crate::geo::Refusal<'_>,
    ) -> Response<OriginBody> {
        if let Some(Resolved::File(f)) = refusal.page.map(|p| ctx.resolve(p, ctx.policy.lenient()))
        {
            return self
                .serve_file(ctx, &f, StatusCode::FORBIDDEN, Mode::Page)
                .await;
        }
        plain(StatusCode::FORBIDDEN, crate::geo::REFUSED_TEXT)
    }

    async fn authorize(&self, ctx: &SiteCtx<'_>, rule: &AuthRule) -> Option<Response<OriginBody>> {
        let decision = self
            .lockout
            .authorize(
                rule,
                ctx.header(header::AUTHORIZATION),
                &ctx.site.id,
                &ctx.manifest.deployment,
                ctx.client,
            )
            .await;
        match decision {
            AuthDecision::Granted => {
                ctx.granted().push(rule.source().to_owned());
                None
            }
            AuthDecision::Challenge => {
                let mut r = plain(StatusCode::UNAUTHORIZED, "Authentication required\n");
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, header_value(&rule.challenge()));
                Some(r)
            }
            AuthDecision::Locked(secs) => {
                let mut r = plain(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed attempts; try again later\n",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                Some(r)
            }
        }
    }

    /// The auth rule of the file actually served, unless this request passed it already:
    /// a pretty URL, directory index, fallback, rule target or error page reaches a
    /// protected file only with its credentials.
    async fn authorize_served(
        &self,
        ctx: &SiteCtx<'_>,
        file: &str,
    ) -> Option<Response<OriginBody>> {
        let rule = ctx.manifest.rules.auth_for(file)?;
        if ctx.passed(rule.source()) {
            return None;
        }
        self.authorize(ctx, rule).await
    }

    /// Serves a site path: the file it resolves to, a canonical redirect, or a 404.
    async fn serve_path(
        &self,
        ctx: &SiteCtx<'_>,
        p: &str,
        canonical: bool,
    ) -> Response<OriginBody> {
        if !ctx.is_get_or_head() {
            return method_not_allowed("GET, HEAD");
        }
        let policy = if canonical {
            ctx.policy
        } else {
            ctx.policy.lenient()
        };
        match ctx.resolve(p, policy) {
            Resolved::File(f) => self.serve_file(ctx, &f, StatusCode::OK, Mode::File).await,
            Resolved::Redirect(to) => {
                let mut location = path::encode(&to);
                if let Some(q) = ctx.parts.uri.query().filter(|q| !q.is_empty()) {
                    location.push('?');
                    location.push_str(q);
                }
                redirect(StatusCode::MOVED_PERMANENTLY, &location)
            }
            Resolved::NotFound => self.not_found(ctx, StatusCode::NOT_FOUND, true).await,
        }
    }

    /// Nothing to serve: the SPA fallback (200), else the 404 page, else plain text.
    async fn not_found(
        &self,
        ctx: &SiteCtx<'_>,
        status: StatusCode,
        spa: bool,
    ) -> Response<OriginBody> {
        let settings = &ctx.manifest.rules.settings;
        let lenient = ctx.policy.lenient();
        if spa && ctx.is_get_or_head() {
            if let Some(fallback) = &settings.spa_fallback {
                if let Resolved::File(f) = ctx.resolve(fallback, lenient) {
                    return self.serve_file(ctx, &f, StatusCode::OK, Mode::File).await;
                }
            }
        }
        let page = settings.not_found_page.as_deref().unwrap_or("/404.html");
        if let Resolved::File(f) = ctx.resolve(page, lenient) {
            return self.serve_file(ctx, &f, status, Mode::Page).await;
        }
        let text = if status == StatusCode::GONE {
            "Gone\n"
        } else {
            "Not Found\n"
        };
        let mut r = plain(status, text);
        self.rule_headers(ctx, &mut r);
        r
    }

    /// A server error: the site's 5xx page with `status`, else plain text.
    async fn server_error(&self, ctx: &SiteCtx<'_>, status: StatusCode) -> Response<OriginBody> {
        let page = ctx
            .manifest
            .rules
            .settings
            .error_page
            .as_deref()
            .unwrap_or("/50x.html");
        if let Resolved::File(f) = ctx.resolve(page, ctx.policy.lenient()) {
            return self.serve_file(ctx, &f, status, Mode::ErrorPage).await;
        }
        let mut r = plain(status, error_text(status));
        self.rule_headers(ctx, &mut r);
        r
    }

    /// `_headers` rules for the request path; they override defaults such as
    /// `Cache-Control`, never the headers the server owns.
    fn rule_headers(&self, ctx: &SiteCtx<'_>, resp: &mut Response<OriginBody>) {
        apply_headers(resp, ctx.manifest.rules.headers_for(&ctx.path));
    }

    /// `_headers` rules for an answer serving `file`: those of the request path and those
    /// of the file, whatever path reached it.
    fn served_headers(&self, ctx: &SiteCtx<'_>, file: &str, resp: &mut Response<OriginBody>) {
        if file == ctx.path {
            return self.rule_headers(ctx, resp);
        }
        apply_headers(resp, ctx.manifest.rules.headers_for_served(&ctx.path, file));
    }

    fn finish(
        &self,
        ctx: &SiteCtx<'_>,
        file: &str,
        status: StatusCode,
        headers: HeaderMap,
        body: OriginBody,
    ) -> Response<OriginBody> {
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        self.served_headers(ctx, file, &mut r);
        r
    }

    /// Serves a manifest file with `status`.
    async fn serve_file(
        &self,
        ctx: &SiteCtx<'_>,
        file: &str,
        status: StatusCode,
        mode: Mode,
    ) -> Response<OriginBody> {
        if let Some(denied) = self.authorize_served(ctx, file).await {
            return denied;
        }
        let Some(entry) = ctx.manifest.file(file) else {
            return plain(StatusCode::NOT_FOUND, "Not Found\n");
        };
        let hash = entry.hash.as_str();
        let last_modified = ctx.manifest.created;
        let preconditions = mode == Mode::File && status == StatusCode::OK;
        let decision = if preconditions && ctx.is_get_or_head() {
            let if_range_ok = match ctx.parts.headers.get(header::IF_RANGE) {
                None => true,
                Some(v) => v.to_str().is_ok_and(|v| {
                    range::if_range_matches(v, &conditional::etag(hash, None), last_modified)
                }),
            };
            range::decide(ctx.header(header::RANGE), if_range_ok, entry.size)
        } else {
            RangeDecision::Full
        };
        let available: Vec<Encoding> = entry.encodings.keys().copied().collect();
        // Ranges apply to the identity body.
        let coding = match decision {
            RangeDecision::Full => {
                encoding::negotiate(ctx.header(header::ACCEPT_ENCODING), &available)
            }
            _ => None,
        };
        let etag = conditional::etag(hash, coding.map(Encoding::token));

        // Room for every header a file answer carries, so the map never regrows.
        let mut h = HeaderMap::with_capacity(16);
        h.insert(header::ETAG, header_value(&etag));
        h.insert(header::LAST_MODIFIED, ctx.last_modified.clone());
        let cc = match mode {
            Mode::File => cache_control::for_file(file, &entry.content_type),
            Mode::Page => cache_control::REVALIDATE,
            Mode::ErrorPage => cache_control::NO_STORE,
        };
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
        if !available.is_empty() {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        if preconditions {
            let conditions = Conditions::from_headers(&ctx.parts.headers);
            // The tags of the other codings matter only to an If-None-Match / If-Match.
            let equivalent: Vec<String> = if conditions.has_tag_lists() {
                std::iter::once(conditional::etag(hash, None))
                    .chain(
                        available
                            .iter()
                            .map(|e| conditional::etag(hash, Some(e.token()))),
                    )
                    .collect()
            } else {
                Vec::new()
            };
            let validators = Validators {
                etag: &etag,
                equivalent: &equivalent,
                last_modified,
            };
            match conditional::evaluate(&ctx.parts.method, &conditions, &validators) {
                Precondition::Proceed => {}
                Precondition::NotModified => {
                    return self.finish(ctx, file, StatusCode::NOT_MODIFIED, h, OriginBody::empty())
                }
                Precondition::Failed => {
                    let mut r = plain(StatusCode::PRECONDITION_FAILED, "Precondition Failed\n");
                    self.served_headers(ctx, file, &mut r);
                    return r;
                }
            }
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        }
        if let RangeDecision::Unsatisfiable = decision {
            h.insert(
                header::CONTENT_RANGE,
                header_value(&range::unsatisfied(entry.size)),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
            return self.finish(
                ctx,
                file,
                StatusCode::RANGE_NOT_SATISFIABLE,
                h,
                OriginBody::empty(),
            );
        }
        h.insert(header::CONTENT_TYPE, header_value(&entry.content_type));
        let (code, key, size, range, len) = match decision {
            RangeDecision::Partial(r) => {
                h.insert(
                    header::CONTENT_RANGE,
                    header_value(&range::content_range(&r, entry.size)),
                );
                let len = r.end - r.start;
                (
                    StatusCode::PARTIAL_CONTENT,
                    keys::blob(&ctx.site.id, &entry.hash, None),
                    entry.size,
                    Some(r),
                    len,
                )
            }
            _ => {
                let size = match coding {
                    Some(c) => {
                        h.insert(
                            header::CONTENT_ENCODING,
                            HeaderValue::from_static(c.token()),
                        );
                        entry.encodings.get(&c).copied().unwrap_or(entry.size)
                    }
                    None => entry.size,
                };
                (
                    status,
                    keys::blob(&ctx.site.id, &entry.hash, coding),
                    size,
                    None,
                    size,
                )
            }
        };
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if ctx.parts.method == Method::HEAD {
            return self.finish(ctx, file, code, h, OriginBody::empty());
        }
        match self.data.body(&key, size, range).await {
            Ok(fetched) => {
                ctx.touch(fetched.outcome);
                // Whether it came from the cache is judged for the whole request (route).
                if mode == Mode::File && code == StatusCode::OK {
                    ctx.answerable.store(true, Ordering::Relaxed);
                }
                self.finish(ctx, file, code, h, fetched.body)
            }
            Err(e) => {
                tracing::error!(site = %ctx.site.id, key, error = %e, "file unavailable");
                ctx.touch(CacheOutcome::Miss);
                let failed = data_status(&e);
                if mode == Mode::ErrorPage {
                    let mut r = plain(status, error_text(status));
                    self.rule_headers(ctx, &mut r);
                    r
                } else {
                    Box::pin(self.server_error(ctx, failed)).await
                }
            }
        }
    }

    /// Forwards the request to a proxy rule's upstream.
    async fn proxy(
        &self,
        ctx: &SiteCtx<'_>,
        url: &str,
        consumed_auth: bool,
    ) -> Response<OriginBody> {
        let mut req = Request::new(http_body_util::Full::new(ctx.body.clone()));
        *req.method_mut() = ctx.parts.method.clone();
        *req.uri_mut() = ctx.parts.uri.clone();
        *req.headers_mut() = ctx.parts.headers.clone();
        let h = req.headers_mut();
        if consumed_auth {
            // The site's own credentials are not the upstream's business.
            h.remove(header::AUTHORIZATION);
        }
        // The upstream learns the host the visitor asked for (X-Forwarded-Host).
        h.insert(header::HOST, header_value(ctx.host));
        let info = ClientInfo {
            ip: ctx.client,
            proto: ctx.header(X_FORWARDED_PROTO).map(str::to_owned),
        };
        let policy = &ctx.manifest.rules.proxy;
        match self.proxy.forward(req, url, policy, &info).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let size = body.size_hint().exact();
                let stream = body
                    .into_data_stream()
                    .map_err(|e| BodyError(e.to_string()))
                    .boxed();
                let mut r = Response::from_parts(parts, OriginBody::stream(stream, size));
                if policy.apply_headers {
                    self.rule_headers(ctx, &mut r);
                }
                r
            }
            Err(e) => {
                tracing::warn!(site = %ctx.site.id, upstream = url, error = %e, "proxy failed");
                Box::pin(self.server_error(ctx, e.status())).await
            }
        }
    }
}
