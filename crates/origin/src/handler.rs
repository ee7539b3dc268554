//! The request handler shared by the Lambda main and local mode: bounds and admits the
//! request, answers from the kept answers when it can, routes `/_skyhost/`, resolves the
//! site and hands it to `site`, then writes the request log line and metrics.
//!
//! Order for a site request: host → site → manifest → path decode → basic auth →
//! `_redirects` (shadowed by existing files unless forced) → file resolution (index,
//! pretty URLs, trailing slash) → preconditions → range → content coding → body.

use crate::answers::{self, Answers};
use crate::auth::Lockout;
use crate::body::OriginBody;
use crate::cache_control;
use crate::config::OriginConfig;
use crate::data::{CacheOutcome, DataPath};
use crate::forwarded::Gate;
use crate::health;
use crate::notify;
use crate::path::{self, Policy};
use crate::proxy::Proxy;
use crate::resolve::{ResolveError, Resolver};
use crate::responses::{
    data_status, error_text, header_value, json, method_not_allowed, plain, unknown_host,
};
pub use crate::responses::{
    X_SKYHOST_CACHE, X_SKYHOST_DEPLOYMENT, X_SKYHOST_REGION, X_SKYHOST_REVISION,
};
use crate::site::{SiteCtx, Sites};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::Cache;
use skyhost_meta::secrets::Secret;
use skyhost_meta::store::MetaStore;
use skyhost_meta::Site;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// A region's origin: built once at init, shared by every request.
pub struct Origin {
    config: OriginConfig,
    meta: Arc<dyn MetaStore>,
    cache: Arc<dyn Cache>,
    data: Arc<DataPath>,
    resolver: Resolver,
    /// Deploy previews ([`crate::preview`]).
    previews: crate::preview::Previews,
    /// Catches up with site changes whose notification this instance missed.
    converge: crate::converge::Converge,
    /// Serves a site's paths once the site is known.
    sites: Sites,
    /// Local counters and the operator's EMF records ([`crate::counters`]).
    observer: crate::counters::Observer,
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

/// What routing a request produced: the answer, and what the request log line and the
/// kept answers need to know about it.
struct Routed {
    response: Response<OriginBody>,
    /// The site that answered, once known.
    site: Option<Arc<Site>>,
    /// Where its bytes came from, for a site's answer.
    outcome: Option<CacheOutcome>,
    /// The answer may be kept ([`crate::answers`]): a whole file from the cache of a site
    /// whose answers depend on nothing but the request's key.
    keepable: bool,
}

impl Routed {
    /// An answer that is no site's.
    fn plain(response: Response<OriginBody>) -> Routed {
        Routed {
            response,
            site: None,
            outcome: None,
            keepable: false,
        }
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
        let previews = crate::preview::Previews::new(config.previews_domain.clone(), meta.clone());
        let resolver = Resolver::new(
            meta.clone(),
            cache.clone(),
            data.clone(),
            config.unknown_host_ttl,
            config.site_refresh,
            config.cache_bytes / 4,
        );
        let lockout = Lockout::new(cache.clone(), config.auth_max_failures, config.auth_lockout);
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
            sites: Sites {
                data: data.clone(),
                lockout,
                proxy,
            },
            data,
            previews,
            resolver,
            observer,
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
        // The line's fields cost allocations: made only when it is written.
        let logged = tracing::enabled!(target: "skyhost_origin::request", tracing::Level::INFO);
        if !admitted {
            let refused = plain(StatusCode::FORBIDDEN, "Forbidden\n");
            return self.finish_request(&parts, None, client, refused, None, None, started);
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
        let kept =
            keep.and_then(|(a, host, generation)| a.get(host, &parts, generation, started, logged));
        if let Some(k) = kept {
            let mut r = Response::new(OriginBody::full(k.body));
            *r.status_mut() = k.status;
            *r.headers_mut() = k.headers;
            let outcome = Some(CacheOutcome::Hit);
            return self.finish_request(
                &parts,
                host,
                client,
                r,
                k.site.as_deref(),
                outcome,
                started,
            );
        }
        let routed = self.route(&parts, host, &body, client).await;
        let mut r = routed.response;
        r.headers_mut()
            .insert(X_SKYHOST_REGION, self.region_header.clone());
        let site = routed.site.as_deref().map(|s| s.id.as_str());
        if let (Some((a, host, generation)), Some(site), true) = (keep, site, routed.keepable) {
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
        self.finish_request(&parts, host, client, r, site, routed.outcome, started)
    }

    /// The request log line and metrics of an answer; a `HEAD` answer loses its body.
    #[allow(clippy::too_many_arguments)]
    fn finish_request(
        &self,
        parts: &Parts,
        host: Option<&str>,
        client: Option<IpAddr>,
        mut resp: Response<OriginBody>,
        site: Option<&str>,
        outcome: Option<CacheOutcome>,
        started: Instant,
    ) -> Response<OriginBody> {
        let head = parts.method == Method::HEAD;
        if head {
            *resp.body_mut() = OriginBody::empty();
        }
        let logged = tracing::enabled!(target: "skyhost_origin::request", tracing::Level::INFO);
        // The clock is read only when a line or a record will say the latency.
        let latency_ms = if logged || self.observer.emits() {
            started.elapsed().as_secs_f64() * 1000.0
        } else {
            0.0
        };
        self.observer
            .answer(parts.uri.path(), resp.status(), outcome, latency_ms);
        if !logged {
            return resp;
        }
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
            site = site.unwrap_or(""),
            status = resp.status().as_u16(),
            cache = outcome.map_or("", CacheOutcome::as_str),
            bytes,
            latency_ms,
            client = %client.map(|c| c.to_string()).unwrap_or_default(),
            "request"
        );
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
    ) -> Routed {
        let raw = parts.uri.path();
        let decoded = path::decode(raw);
        // Reserved on every host, whether written plainly or percent-encoded.
        let judged = decoded.as_deref().unwrap_or(raw);
        if judged == "/_skyhost" || judged.starts_with("/_skyhost/") {
            return Routed::plain(self.reserved(parts, body, judged).await);
        }
        let path = match decoded {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(path = raw, error = %e, "bad request path");
                return Routed::plain(plain(StatusCode::BAD_REQUEST, "Bad Request\n"));
            }
        };
        let Some(host) = host else {
            return Routed::plain(unknown_host());
        };
        let preview = match self.previews.lookup(host, &self.resolver).await {
            crate::preview::Lookup::NotPreview => None,
            crate::preview::Lookup::Found(p) => Some(p),
            crate::preview::Lookup::Gone => return Routed::plain(unknown_host()),
            crate::preview::Lookup::Failed => {
                let failed = plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
                return Routed::plain(failed);
            }
        };
        let is_preview = preview.is_some();
        let (site, loaded, manifest_outcome) = match preview {
            Some(p) => (p.site, p.loaded, p.outcome),
            None => {
                let site = match self.resolver.site_for_host_header(host).await {
                    Ok(Some(s)) => s,
                    Ok(None) => return Routed::plain(unknown_host()),
                    Err(e) => {
                        tracing::error!(host, error = %e, "metadata store failed");
                        let failed =
                            plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
                        return Routed::plain(failed);
                    }
                };
                let Some(deployment) = site.active.as_ref() else {
                    return Routed::plain(unknown_host());
                };
                let (loaded, manifest_outcome) = match self
                    .resolver
                    .manifest(&site.id, deployment)
                    .await
                {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!(site = %site.id, deployment = %deployment, error = %e, "manifest unavailable");
                        let status = match &e {
                            ResolveError::Data(d) => data_status(d),
                            ResolveError::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                        };
                        let mut r = plain(status, error_text(status));
                        let h = r.headers_mut();
                        h.insert(X_SKYHOST_DEPLOYMENT, header_value(deployment.as_str()));
                        h.insert(
                            X_SKYHOST_CACHE,
                            HeaderValue::from_static(CacheOutcome::Miss.as_str()),
                        );
                        return Routed {
                            response: r,
                            site: Some(site),
                            outcome: Some(CacheOutcome::Miss),
                            keepable: false,
                        };
                    }
                };
                (site, loaded, manifest_outcome)
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
            granted: Mutex::default(),
        };
        let served = self.sites.serve(&ctx).await;
        let mut resp = served.response;
        if ctx.authorized() || resp.status() == StatusCode::UNAUTHORIZED {
            cache_control::keep_private(resp.headers_mut());
        }
        let outcome = served
            .outcome
            .map_or(manifest_outcome, |o| o.max(manifest_outcome));
        let keepable = loaded.answerable && outcome == CacheOutcome::Hit && served.whole_file;
        let h = resp.headers_mut();
        h.insert(X_SKYHOST_DEPLOYMENT, loaded.deployment.clone());
        h.insert(X_SKYHOST_REVISION, HeaderValue::from(site.revision));
        h.insert(X_SKYHOST_CACHE, HeaderValue::from_static(outcome.as_str()));
        if is_preview {
            h.insert(
                http::header::HeaderName::from_static("x-robots-tag"),
                crate::preview::NOINDEX,
            );
        }
        drop(ctx);
        Routed {
            response: resp,
            site: Some(site),
            outcome: Some(outcome),
            keepable,
        }
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
}
