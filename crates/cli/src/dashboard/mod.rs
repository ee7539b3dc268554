//! `skyhost dashboard`: one page that shows, and keeps showing, how the regions are: a
//! world map of their health and where the visitors of a region out of service go, what
//! each region serves of each site and how far behind it is, the last deploys and the time
//! each region took to serve them, and per region the requests, cache hits, fail-safe
//! answers and 5xx of the last minutes.
//!
//! One code path for local mode and AWS: a poll every [`DashboardOptions::interval`] reads
//! each region's health and served revisions ([`sources`]) and the traffic ([`Traffic`]:
//! local mode's Prometheus counters, or CloudWatch), the [`model::Tracker`] keeps what
//! polls tell over time, and the page ([`page`]) is rendered from the resulting
//! [`model::View`]; the browser fetches the live part again every few seconds.

pub mod charts;
pub mod cloudwatch;
pub mod geo;
pub mod map;
pub mod model;
pub mod page;
pub mod prometheus;
pub mod sources;

use crate::backend::Backend;
use anyhow::{Context, Result};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use model::{RegionState, Tracker, View};
use sources::Traffic;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, RwLock};

/// How the dashboard runs.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    /// Where the page is served.
    pub listen: SocketAddr,
    /// Time between polls.
    pub interval: Duration,
}

/// The dashboard's state: the last view, and what polls remember.
pub struct Dashboard {
    backend: Backend,
    traffic: Box<dyn Traffic>,
    source: String,
    http: reqwest::Client,
    tracker: Mutex<Tracker>,
    view: RwLock<View>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Dashboard {
    /// A dashboard of `backend` whose traffic comes from `traffic`; `source` says where
    /// the figures come from.
    pub fn new(backend: Backend, traffic: Box<dyn Traffic>, source: String) -> Result<Dashboard> {
        let http = skyhost_meta::tls::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(2))
            .build()?;
        let view = View {
            source: source.clone(),
            at: now_ms() / 1000,
            primary: backend.primary.name.clone(),
            regions: Vec::new(),
            sites: Vec::new(),
            deploys: Vec::new(),
            problems: vec!["the first poll has not finished yet".into()],
        };
        Ok(Dashboard {
            backend,
            traffic,
            source,
            http,
            tracker: Mutex::new(Tracker::new()),
            view: RwLock::new(view),
        })
    }

    /// The dashboard of a local-mode folder, its traffic from the listeners' counters.
    pub fn local(dir: &std::path::Path) -> Result<Dashboard> {
        let backend = Backend::local(dir)?;
        let http = skyhost_meta::tls::http_client()
            .timeout(Duration::from_secs(2))
            .build()?;
        Dashboard::new(
            backend,
            Box::new(sources::LocalTraffic { http }),
            format!("local mode ({})", dir.display()),
        )
    }

    /// The dashboard of the AWS deployment of `backend`, its traffic from CloudWatch.
    pub async fn aws(backend: Backend) -> Result<Dashboard> {
        let names: Vec<String> = backend.regions().map(|r| r.name.clone()).collect();
        let traffic = cloudwatch::CloudWatchTraffic::new(&names).await;
        Dashboard::new(backend, Box::new(traffic), "AWS (CloudWatch)".into())
    }

    /// Reads everything once and makes the new view.
    pub async fn poll(&self) -> View {
        let at = now_ms();
        let mut problems = Vec::new();
        let endpoints: Vec<(String, Option<String>)> = self
            .backend
            .regions()
            .map(|r| (r.name.clone(), r.endpoint.clone()))
            .collect();
        let healths = futures::future::join_all(
            endpoints
                .iter()
                .map(|(_, e)| sources::health(&self.http, e.as_deref())),
        )
        .await;
        let readings = match sources::sites(&self.backend, &self.http).await {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("sites: {e:#}"));
                Vec::new()
            }
        };
        let mut tracker = self.tracker.lock().await;
        tracker.sites(at, &readings);
        problems.extend(self.traffic.read(&endpoints, &mut tracker, at).await);
        let names: Vec<String> = endpoints.iter().map(|(r, _)| r.clone()).collect();
        let health_of = |r: &str| {
            names
                .iter()
                .position(|n| n == r)
                .map_or(model::Health::Unknown, |i| healths[i])
        };
        let regions = names
            .iter()
            .map(|r| {
                let health = health_of(r);
                RegionState {
                    region: r.clone(),
                    health,
                    visitors_go: (!health.takes_visitors())
                        .then(|| geo::visitors_go(r, &names, |o| health_of(o).takes_visitors()))
                        .flatten()
                        .map(str::to_owned),
                    series: tracker.series(r),
                }
            })
            .collect();
        View {
            source: self.source.clone(),
            at: at / 1000,
            primary: self.backend.primary.name.clone(),
            regions,
            sites: readings.iter().map(model::site_state).collect(),
            deploys: tracker.deploys(),
            problems,
        }
    }

    /// Polls every `interval`, forever.
    pub async fn poll_loop(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let v = self.poll().await;
            *self.view.write().await = v;
        }
    }

    /// Answers one request of the page.
    pub async fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "GET only\n".into(),
            );
        }
        let view = self.view.read().await;
        match path {
            "/" => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::page(&view),
            ),
            "/fragment" => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                page::fragment(&view),
            ),
            "/state.json" => match serde_json::to_string_pretty(&*view) {
                Ok(j) => respond(StatusCode::OK, "application/json", j),
                Err(e) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    format!("{e}\n"),
                ),
            },
            _ => respond(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "Not Found\n".into(),
            ),
        }
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Serves `dashboard` on `opts.listen` until Ctrl-C, polling in the background.
pub async fn run(dashboard: Dashboard, opts: DashboardOptions) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (pick another with --listen)",
                opts.listen
            )
        })?;
    let dashboard = Arc::new(dashboard);
    // The first view before the first visitor.
    let first = dashboard.poll().await;
    *dashboard.view.write().await = first;
    tokio::spawn(dashboard.clone().poll_loop(opts.interval));
    println!("skyhost dashboard: http://{}/", listener.local_addr()?);
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let d = dashboard.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let d = d.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        d.answer(req.method(), req.uri().path()).await,
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
