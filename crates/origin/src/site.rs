//! Serving a site's paths once host, site and manifest are known: basic auth, `_redirects`,
//! file resolution, the SPA fallback and error pages, each file answered by the plan of
//! [`crate::file_response`] and its body read through the data path. Every answer comes
//! back with where its bytes came from ([`Served`]).

use crate::auth::{AuthDecision, Lockout};
use crate::body::{BodyError, OriginBody};
use crate::data::{CacheOutcome, DataPath};
use crate::file_response::{self, FilePlan, FileRequest, Mode, PlannedBody, ServedFile};
use crate::geo::VIEWER_COUNTRY;
use crate::path::{self, Policy, Resolved};
use crate::proxy::{ClientInfo, Proxy};
use crate::responses::{
    apply_headers, data_status, error_text, header_value, method_not_allowed, plain, redirect,
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use skyhost_meta::{keys, Manifest, Site};
use skyhost_rules::{AuthRule, RedirectAction, RequestFacts};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// A site request being served.
pub(crate) struct SiteCtx<'a> {
    pub parts: &'a Parts,
    pub body: &'a Bytes,
    pub host: &'a str,
    pub path: std::borrow::Cow<'a, str>,
    pub client: Option<IpAddr>,
    pub site: &'a Site,
    pub manifest: &'a Manifest,
    /// `Last-Modified` of the deployment's files, made when the manifest was loaded.
    pub last_modified: &'a HeaderValue,
    pub policy: Policy,
    /// The basic-auth rules (by source) this request passed, so each is checked once.
    pub granted: Mutex<Vec<String>>,
}

impl SiteCtx<'_> {
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
    pub fn authorized(&self) -> bool {
        !self.granted().is_empty()
    }
}

/// A site's answer, and what the request log and the kept answers need to know of it.
pub(crate) struct Served {
    /// The answer.
    pub response: Response<OriginBody>,
    /// The worst place a body of the answer was read from; `None` when none was read.
    pub outcome: Option<CacheOutcome>,
    /// Whether it is a whole file served as a 200 (a kept answer may be made of it).
    pub whole_file: bool,
}

impl Served {
    /// An answer made without reading a body.
    fn made(response: Response<OriginBody>) -> Served {
        Served {
            response,
            outcome: None,
            whole_file: false,
        }
    }

    /// This answer, which follows a read that ended in `outcome`.
    fn after(mut self, outcome: CacheOutcome) -> Served {
        self.outcome = Some(self.outcome.map_or(outcome, |o| o.max(outcome)));
        self
    }
}

/// What serving a site's files needs beyond the request: the data path, the basic-auth
/// lockout and the proxy.
pub(crate) struct Sites {
    pub data: Arc<DataPath>,
    pub lockout: Lockout,
    pub proxy: Proxy,
}

impl Sites {
    /// Serves the request: auth, `_redirects`, then the path.
    pub async fn serve(&self, ctx: &SiteCtx<'_>) -> Served {
        let rules = &ctx.manifest.rules;
        if let Some(refusal) = crate::geo::refusal(rules, &ctx.parts.headers) {
            return self.geo_refused(ctx, refusal).await;
        }
        let mut granted: Option<&str> = None;
        if let Some(rule) = rules.auth_for(&ctx.path) {
            if let Some(denied) = self.authorize(ctx, rule).await {
                return Served::made(denied);
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
            Some(RedirectAction::Redirect { status, location }) => Served::made(redirect(
                StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
                &location,
            )),
            Some(RedirectAction::Rewrite { path: target }) => {
                // A rewrite must not expose a path another rule protects.
                if let Some(rule) = rules.auth_for(&target) {
                    if granted != Some(rule.source()) {
                        if let Some(denied) = self.authorize(ctx, rule).await {
                            return Served::made(denied);
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
    async fn geo_refused(&self, ctx: &SiteCtx<'_>, refusal: crate::geo::Refusal<'_>) -> Served {
        if let Some(Resolved::File(f)) = refusal.page.map(|p| ctx.resolve(p, ctx.policy.lenient()))
        {
            return self
                .serve_file(ctx, &f, StatusCode::FORBIDDEN, Mode::Page)
                .await;
        }
        Served::made(plain(StatusCode::FORBIDDEN, crate::geo::REFUSED_TEXT))
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
    async fn serve_path(&self, ctx: &SiteCtx<'_>, p: &str, canonical: bool) -> Served {
        if !ctx.is_get_or_head() {
            return Served::made(method_not_allowed("GET, HEAD"));
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
                Served::made(redirect(StatusCode::MOVED_PERMANENTLY, &location))
            }
            Resolved::NotFound => self.not_found(ctx, StatusCode::NOT_FOUND, true).await,
        }
    }

    /// Nothing to serve: the SPA fallback (200), else the 404 page, else plain text.
    async fn not_found(&self, ctx: &SiteCtx<'_>, status: StatusCode, spa: bool) -> Served {
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
        rule_headers(ctx, &mut r);
        Served::made(r)
    }

    /// A server error: the site's 5xx page with `status`, else plain text.
    async fn server_error(&self, ctx: &SiteCtx<'_>, status: StatusCode) -> Served {
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
        rule_headers(ctx, &mut r);
        Served::made(r)
    }

    /// Serves a manifest file with `status`: the plan, then the body it names.
    async fn serve_file(
        &self,
        ctx: &SiteCtx<'_>,
        file: &str,
        status: StatusCode,
        mode: Mode,
    ) -> Served {
        if let Some(denied) = self.authorize_served(ctx, file).await {
            return Served::made(denied);
        }
        let Some(entry) = ctx.manifest.file(file) else {
            return Served::made(plain(StatusCode::NOT_FOUND, "Not Found\n"));
        };
        let req = FileRequest {
            method: &ctx.parts.method,
            headers: &ctx.parts.headers,
        };
        let served = ServedFile {
            path: file,
            entry,
            created: ctx.manifest.created,
            last_modified: ctx.last_modified,
        };
        let FilePlan {
            status: code,
            headers,
            body,
        } = file_response::plan(req, served, status, mode);
        let read = match body {
            PlannedBody::Empty => {
                return Served::made(respond(ctx, file, code, headers, OriginBody::empty()))
            }
            PlannedBody::Text(text) => {
                return Served::made(respond(ctx, file, code, headers, OriginBody::from(text)))
            }
            PlannedBody::Blob(read) => read,
        };
        let key = keys::blob(&ctx.site.id, &entry.hash, read.coding);
        match self.data.body(&key, read.size, read.range).await {
            Ok(fetched) => Served {
                response: respond(ctx, file, code, headers, fetched.body),
                outcome: Some(fetched.outcome),
                // Whether it came from the cache is judged for the whole request.
                whole_file: mode == Mode::File && code == StatusCode::OK,
            },
            Err(e) => {
                tracing::error!(site = %ctx.site.id, key, error = %e, "file unavailable");
                let failed = data_status(&e);
                let answer = if mode == Mode::ErrorPage {
                    let mut r = plain(status, error_text(status));
                    rule_headers(ctx, &mut r);
                    Served::made(r)
                } else {
                    Box::pin(self.server_error(ctx, failed)).await
                };
                answer.after(CacheOutcome::Miss)
            }
        }
    }

    /// Forwards the request to a proxy rule's upstream.
    async fn proxy(&self, ctx: &SiteCtx<'_>, url: &str, consumed_auth: bool) -> Served {
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
                    rule_headers(ctx, &mut r);
                }
                Served::made(r)
            }
            Err(e) => {
                tracing::warn!(site = %ctx.site.id, upstream = url, error = %e, "proxy failed");
                Box::pin(self.server_error(ctx, e.status())).await
            }
        }
    }
}

/// A file answer as planned, with the `_headers` rules of the file laid on it.
fn respond(
    ctx: &SiteCtx<'_>,
    file: &str,
    status: StatusCode,
    headers: http::HeaderMap,
    body: OriginBody,
) -> Response<OriginBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    served_headers(ctx, file, &mut r);
    r
}

/// `_headers` rules for the request path; they override defaults such as
/// `Cache-Control`, never the headers the server owns.
fn rule_headers(ctx: &SiteCtx<'_>, resp: &mut Response<OriginBody>) {
    apply_headers(resp, ctx.manifest.rules.headers_for(&ctx.path));
}

/// `_headers` rules for an answer serving `file`: those of the request path and those
/// of the file, whatever path reached it.
fn served_headers(ctx: &SiteCtx<'_>, file: &str, resp: &mut Response<OriginBody>) {
    if file == ctx.path {
        return rule_headers(ctx, resp);
    }
    apply_headers(resp, ctx.manifest.rules.headers_for_served(&ctx.path, file));
}
