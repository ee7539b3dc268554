//! What an operator watches of a region: per answer, the site requests, their cache
//! outcomes (`hit`, `miss`, `fallback`) and the 5xx answers; per health check, whether it
//! failed.
//!
//! Two outlets, from the same observations:
//! - **local counters**, served in Prometheus' text format at [`METRICS_PATH`] by the
//!   local listeners only ([`crate::server`]): the Lambda adapter never answers it, so on
//!   AWS the path is a plain 404. Local mode hands every instance of a region the same
//!   [`Counters`], so any instance tells the region's totals.
//! - **EMF records** (CloudWatch, through the one writer of [`skyhost_meta::metrics`]): per
//!   site answer `Hit`, `Miss`, `Fallback` (counts) and `Latency` (milliseconds),
//!   `ServerErrors` on a 5xx answer and `HealthCheckFailed` (0 or 1) per health check, all
//!   under the `Region` dimension. The alarms of `template.yaml` read these, so a region's
//!   failing check alarms in its own region (Route 53's own metric lives in us-east-1 only).

use crate::body::OriginBody;
use crate::data::CacheOutcome;
use http::{header, HeaderValue, Response, StatusCode};
use skyhost_meta::metrics::{Metric, Metrics, Unit};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The path the local listeners answer with the counters.
pub const METRICS_PATH: &str = "/_skyhost/metrics";
/// The EMF metric of a 5xx answer to a site request.
pub const SERVER_ERRORS: &str = "ServerErrors";
/// The EMF metric of a health check: 1 when it failed (503), else 0.
pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
/// The EMF metrics of a site answer: where its bytes came from, one of them 1.
pub const HIT: &str = "Hit";
/// See [`HIT`].
pub const MISS: &str = "Miss";
/// See [`HIT`].
pub const FALLBACK: &str = "Fallback";
/// The EMF metric of a site answer's time in the origin, milliseconds.
pub const LATENCY: &str = "Latency";
/// The dimension of every record.
pub const DIMENSION: &str = "Region";

/// Slots the counters are spread over, so serving threads rarely write the same cache line.
const SHARDS: usize = 16;

/// One slot of counts, on a cache line of its own.
#[derive(Default)]
#[repr(align(64))]
struct Shard {
    requests: AtomicU64,
    hit: AtomicU64,
    miss: AtomicU64,
    fallback: AtomicU64,
    server_errors: AtomicU64,
    health_failures: AtomicU64,
}

/// The running counts of a region (cheap to share; every write is one relaxed add).
pub struct Counters {
    region: String,
    shards: Box<[Shard]>,
}

/// The counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Site requests answered (every path outside `/_skyhost/`).
    pub requests: u64,
    /// Answers made without reading a bucket.
    pub hit: u64,
    /// Answers read from the region's own bucket.
    pub miss: u64,
    /// Answers read from the primary region's bucket (the region lacked the blob).
    pub fallback: u64,
    /// Site requests answered with a 5xx.
    pub server_errors: u64,
    /// Health checks that answered 503.
    pub health_failures: u64,
}

thread_local! {
    /// The calling thread's shard, handed out in turn on its first count.
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn shard_index() -> usize {
    SHARD.with(|s| {
        s.get().unwrap_or_else(|| {
            let i = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(Some(i));
            i
        })
    })
}

impl Counters {
    /// Zeroed counters of `region`.
    pub fn new(region: &str) -> Arc<Counters> {
        Arc::new(Counters {
            region: region.to_owned(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        })
    }

    /// The region counted.
    pub fn region(&self) -> &str {
        &self.region
    }

    fn shard(&self) -> &Shard {
        &self.shards[shard_index() % self.shards.len()]
    }

    /// Counts one answer to a site request.
    pub fn answer(&self, status: StatusCode, outcome: Option<CacheOutcome>) {
        let s = self.shard();
        s.requests.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Some(CacheOutcome::Hit) => s.hit.fetch_add(1, Ordering::Relaxed),
            Some(CacheOutcome::Miss) => s.miss.fetch_add(1, Ordering::Relaxed),
            Some(CacheOutcome::Fallback) => s.fallback.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
        if status.is_server_error() {
            s.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one failed health check.
    pub fn health_failed(&self) {
        self.shard().health_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> Snapshot {
        let mut t = Snapshot::default();
        for s in self.shards.iter() {
            t.requests += s.requests.load(Ordering::Relaxed);
            t.hit += s.hit.load(Ordering::Relaxed);
            t.miss += s.miss.load(Ordering::Relaxed);
            t.fallback += s.fallback.load(Ordering::Relaxed);
            t.server_errors += s.server_errors.load(Ordering::Relaxed);
            t.health_failures += s.health_failures.load(Ordering::Relaxed);
        }
        t
    }
}

/// A label value escaped as the text format wants it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The counts of `region` in Prometheus' text exposition format. Pure.
pub fn prometheus(region: &str, s: &Snapshot) -> String {
    let r = label(region);
    let mut out = String::new();
    let mut family = |name: &str, help: &str, lines: &[(&str, u64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        for (extra, v) in lines {
            out.push_str(&format!("{name}{{region=\"{r}\"{extra}}} {v}\n"));
        }
    };
    family(
        "skyhost_requests_total",
        "Site requests answered.",
        &[("", s.requests)],
    );
    family(
        "skyhost_cache_total",
        "Site answers by cache outcome (fallback: read from the primary region's bucket).",
        &[
            (",outcome=\"hit\"", s.hit),
            (",outcome=\"miss\"", s.miss),
            (",outcome=\"fallback\"", s.fallback),
        ],
    );
    family(
        "skyhost_server_errors_total",
        "Site requests answered with a 5xx.",
        &[("", s.server_errors)],
    );
    family(
        "skyhost_health_check_failures_total",
        "Health checks that answered 503.",
        &[("", s.health_failures)],
    );
    out
}

/// What an origin does with what it observes: the local counters when it has them, EMF
/// records when metrics are on.
#[derive(Clone)]
pub struct Observer {
    region: String,
    counters: Option<Arc<Counters>>,
    emf: Metrics,
    emit: bool,
}

impl Observer {
    /// Observations of `region`; EMF records only when `emit`.
    pub fn new(region: &str, emit: bool) -> Observer {
        Observer {
            region: region.to_owned(),
            counters: None,
            emf: if emit {
                Metrics::stdout()
            } else {
                Metrics::discard()
            },
            emit,
        }
    }

    /// The same, writing EMF records to `emf` (tests keep them in memory).
    pub fn with_emf(mut self, emf: Metrics) -> Observer {
        self.emf = emf;
        self.emit = true;
        self
    }

    /// The same, counting into `counters` too.
    pub fn with_counters(mut self, counters: Arc<Counters>) -> Observer {
        self.counters = Some(counters);
        self
    }

    /// Whether EMF records are written (the caller then measures the latency).
    pub fn emits(&self) -> bool {
        self.emit
    }

    /// The local counters, if any.
    pub fn counters(&self) -> Option<&Arc<Counters>> {
        self.counters.as_ref()
    }

    /// One answer to a request for `path`, made in `latency_ms`: only site requests count
    /// (health probes and notifications are the platform's own traffic).
    pub fn answer(
        &self,
        path: &str,
        status: StatusCode,
        outcome: Option<CacheOutcome>,
        latency_ms: f64,
    ) {
        if path.starts_with("/_skyhost/") {
            return;
        }
        if let Some(c) = &self.counters {
            c.answer(status, outcome);
        }
        if let (true, Some(outcome)) = (self.emit, outcome) {
            let count = |o: CacheOutcome| if o == outcome { 1.0 } else { 0.0 };
            self.emf.emit(
                &[(DIMENSION, &self.region)],
                &[
                    Metric {
                        name: HIT,
                        unit: Unit::Count,
                        value: count(CacheOutcome::Hit),
                    },
                    Metric {
                        name: MISS,
                        unit: Unit::Count,
                        value: count(CacheOutcome::Miss),
                    },
                    Metric {
                        name: FALLBACK,
                        unit: Unit::Count,
                        value: count(CacheOutcome::Fallback),
                    },
                    Metric {
                        name: LATENCY,
                        unit: Unit::Milliseconds,
                        // Microseconds are the most a reader of the dashboard looks at.
                        value: (latency_ms * 1000.0).round() / 1000.0,
                    },
                ],
            );
        }
        if self.emit && status.is_server_error() {
            self.emf.emit(
                &[(DIMENSION, &self.region)],
                &[Metric {
                    name: SERVER_ERRORS,
                    unit: Unit::Count,
                    value: 1.0,
                }],
            );
        }
    }

    /// One health check's result (once per check, not per probe: results are reused).
    pub fn health(&self, status: StatusCode) {
        let failed = status != StatusCode::OK;
        if failed {
            if let Some(c) = &self.counters {
                c.health_failed();
            }
        }
        if self.emit {
            self.emf.emit(
                &[(DIMENSION, &self.region)],
                &[Metric {
                    name: HEALTH_CHECK_FAILED,
                    unit: Unit::Count,
                    value: if failed { 1.0 } else { 0.0 },
                }],
            );
        }
    }
}

/// The answer to `GET /_skyhost/metrics` on a local listener: the counters, or a 404 when
/// the origin keeps none.
pub fn exposition(observer: &Observer) -> Response<OriginBody> {
    let (status, body, content_type) = match observer.counters() {
        Some(c) => (
            StatusCode::OK,
            prometheus(c.region(), &c.snapshot()),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        None => (
            StatusCode::NOT_FOUND,
            "Not Found\n".to_owned(),
            "text/plain; charset=utf-8",
        ),
    };
    let len = body.len();
    let mut r = Response::new(OriginBody::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_count_by_outcome_and_status_and_skip_reserved_paths() {
        let counters = Counters::new("eu-central-1");
        let o = Observer::new("eu-central-1", false).with_counters(counters.clone());
        let cases: [(&str, u16, Option<CacheOutcome>); 7] = [
            ("/", 200, Some(CacheOutcome::Hit)),
            ("/a.css", 200, Some(CacheOutcome::Hit)),
            ("/b.js", 200, Some(CacheOutcome::Miss)),
            ("/c.png", 200, Some(CacheOutcome::Fallback)),
            ("/gone", 503, Some(CacheOutcome::Miss)),
            ("/nohost", 404, None),
            ("/_skyhost/health", 503, None),
        ];
        for (path, status, outcome) in cases {
            o.answer(path, StatusCode::from_u16(status).unwrap(), outcome, 1.0);
        }
        assert_eq!(
            counters.snapshot(),
            Snapshot {
                requests: 6,
                hit: 2,
                miss: 2,
                fallback: 1,
                server_errors: 1,
                health_failures: 0,
            }
        );
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let counters = Counters::new("r");
        std::thread::scope(|s| {
            for _ in 0..4 {
                let c = &counters;
                s.spawn(move || {
                    for _ in 0..1000 {
                        c.answer(StatusCode::OK, Some(CacheOutcome::Hit));
                    }
                });
            }
        });
        let snap = counters.snapshot();
        assert_eq!((snap.requests, snap.hit), (4000, 4000));
    }

    #[test]
    fn the_text_format_names_region_and_outcome() {
        let s = Snapshot {
            requests: 10,
            hit: 7,
            miss: 2,
            fallback: 1,
            server_errors: 3,
            health_failures: 4,
        };
        let text = prometheus("us-west-2", &s);
        for line in [
            "# TYPE skyhost_requests_total counter",
            "skyhost_requests_total{region=\"us-west-2\"} 10",
            "skyhost_cache_total{region=\"us-west-2\",outcome=\"hit\"} 7",
            "skyhost_cache_total{region=\"us-west-2\",outcome=\"miss\"} 2",
            "skyhost_cache_total{region=\"us-west-2\",outcome=\"fallback\"} 1",
            "skyhost_server_errors_total{region=\"us-west-2\"} 3",
            "skyhost_health_check_failures_total{region=\"us-west-2\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(prometheus("a\"b", &s).contains("region=\"a\\\"b\""));
    }

    #[test]
    fn emf_records_of_site_answers() {
        let cases = [
            (CacheOutcome::Hit, [1.0, 0.0, 0.0]),
            (CacheOutcome::Miss, [0.0, 1.0, 0.0]),
            (CacheOutcome::Fallback, [0.0, 0.0, 1.0]),
        ];
        for (outcome, [hit, miss, fallback]) in cases {
            let (emf, mem) = Metrics::memory();
            let o = Observer::new("eu-central-1", false).with_emf(emf);
            o.answer("/index.html", StatusCode::OK, Some(outcome), 12.34567);
            let got = mem.lock().unwrap();
            assert_eq!(got.len(), 1, "{outcome:?}");
            let r = &got[0];
            let m = &r["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(m["Namespace"], "Skyhost");
            assert_eq!(m["Dimensions"], json!([["Region"]]));
            let units: Vec<(&str, &str)> = m["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| (x["Name"].as_str().unwrap(), x["Unit"].as_str().unwrap()))
                .collect();
            assert_eq!(
                units,
                [
                    ("Hit", "Count"),
                    ("Miss", "Count"),
                    ("Fallback", "Count"),
                    ("Latency", "Milliseconds")
                ]
            );
            assert_eq!(r["Region"], "eu-central-1");
            assert_eq!(
                [&r["Hit"], &r["Miss"], &r["Fallback"]],
                [&json!(hit), &json!(miss), &json!(fallback)],
                "{outcome:?}"
            );
            assert_eq!(r["Latency"], json!(12.346));
        }
        // Nothing without metrics on, nothing for a request that reached no site, and
        // nothing for the platform's own paths.
        let (emf, mem) = Metrics::memory();
        let mut off = Observer::new("r", false).with_emf(emf);
        off.emit = false;
        off.answer("/", StatusCode::OK, Some(CacheOutcome::Hit), 1.0);
        assert!(mem.lock().unwrap().is_empty());
        let (emf, mem) = Metrics::memory();
        let on = Observer::new("r", false).with_emf(emf);
        on.answer("/", StatusCode::OK, None, 1.0);
        on.answer(
            "/_skyhost/health",
            StatusCode::OK,
            Some(CacheOutcome::Hit),
            1.0,
        );
        assert!(mem.lock().unwrap().is_empty());
    }

    #[test]
    fn emf_records_of_server_errors_and_health_checks() {
        let (emf, mem) = Metrics::memory();
        let o = Observer::new("ap-southeast-1", false).with_emf(emf);
        o.answer("/", StatusCode::OK, Some(CacheOutcome::Hit), 1.0);
        o.answer("/x", StatusCode::BAD_GATEWAY, None, 1.0);
        o.answer(
            "/_skyhost/notify",
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            1.0,
        );
        o.health(StatusCode::OK);
        o.health(StatusCode::SERVICE_UNAVAILABLE);
        let got = mem.lock().unwrap();
        let names: Vec<(&str, f64)> = got
            .iter()
            .map(|r| {
                let m = r["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]
                    .as_str()
                    .unwrap();
                (m, r[m].as_f64().unwrap())
            })
            .collect();
        assert_eq!(
            names,
            [
                ("Hit", 1.0),
                (SERVER_ERRORS, 1.0),
                (HEALTH_CHECK_FAILED, 0.0),
                (HEALTH_CHECK_FAILED, 1.0)
            ]
        );
        for r in got.iter() {
            assert_eq!(r["Region"], json!("ap-southeast-1"));
            assert_eq!(
                r["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                json!([["Region"]])
            );
        }
    }

    #[test]
    fn the_exposition_is_a_404_without_counters() {
        let none = Observer::new("r", false);
        assert_eq!(exposition(&none).status(), StatusCode::NOT_FOUND);
        let some = Observer::new("r", false).with_counters(Counters::new("r"));
        let r = exposition(&some);
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
    }
}
