//! `GET /_skyhost/health`: what a Route 53 health check probes. 200 when this region can
//! serve, 503 when it cannot (metadata store or bucket failing) or when an operator put it
//! in maintenance to drain it. Redis down is `degraded` and still 200: requests go on
//! without it. The JSON body lists each check, without the backends' error text (that goes
//! to the logs). A result is reused for [`RESULT_TTL`] ([`Cached`]), so however often the
//! endpoint is called, the backends see about one check a second.
//!
//! Every check is of this region's own dependencies — its table replica, its bucket, its
//! Redis — never the primary's: a primary outage must not take the other regions out of
//! Route 53.

use serde::Serialize;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::{Cache, CacheHealth};
use skyhost_meta::store::MetaStore;
use std::time::{Duration, Instant};

/// Each check gives up after this long (a health check must answer promptly).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a health result is reused.
pub const RESULT_TTL: Duration = Duration::from_secs(1);

/// What the body says of a backend that failed; the error itself is logged.
const FAILED: &str = "unavailable (the region's logs say why)";

/// A key that is never written: a HEAD of it proves the bucket answers.
const PROBE_KEY: &str = "sites/_skyhost-health-probe";

/// The state of one dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `ok`, `degraded`, `error` or `disabled`.
    pub status: &'static str,
    /// What failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    fn ok() -> Self {
        Check {
            status: "ok",
            detail: None,
        }
    }
    fn error(detail: &str) -> Self {
        Check {
            status: "error",
            detail: Some(detail.to_owned()),
        }
    }
}

/// Why a check failed.
enum Failure {
    /// The backend answered with an error: its text goes to the logs only.
    Error(String),
    /// No answer within [`CHECK_TIMEOUT`].
    Timeout,
}

impl Failure {
    /// Logs the failure of `check` and says what the body may tell of it.
    fn logged(self, check: &'static str) -> String {
        match self {
            Failure::Error(e) => {
                tracing::warn!(check, error = %e, "health check failed");
                FAILED.to_owned()
            }
            Failure::Timeout => {
                let text = format!("no answer within {} s", CHECK_TIMEOUT.as_secs());
                tracing::warn!(check, error = %text, "health check failed");
                text
            }
        }
    }
}

/// The health report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ok`, `degraded`, `impaired` or `maintenance`.
    pub status: &'static str,
    /// The region answering.
    pub region: String,
    /// The operator's maintenance flag.
    pub maintenance: bool,
    /// Every check.
    pub checks: Checks,
}

/// The individual checks.
#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    /// This region's table replica (read of this region's status).
    pub metadata: Check,
    /// This region's bucket.
    pub bucket: Check,
    /// The Redis tier.
    pub redis: Check,
}

/// The overall status and HTTP status of a set of checks. Pure.
pub fn verdict(maintenance: bool, checks: &Checks) -> (&'static str, http::StatusCode) {
    if maintenance {
        ("maintenance", http::StatusCode::SERVICE_UNAVAILABLE)
    } else if checks.metadata.status == "error" || checks.bucket.status == "error" {
        ("impaired", http::StatusCode::SERVICE_UNAVAILABLE)
    } else if checks.redis.status == "degraded" {
        ("degraded", http::StatusCode::OK)
    } else {
        ("ok", http::StatusCode::OK)
    }
}

async fn timed<T, E: std::fmt::Display>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::Error(e.to_string())),
        Err(_) => Err(Failure::Timeout),
    }
}

/// The last health result, shared by every request of the next [`RESULT_TTL`]: a burst of
/// health requests costs the backends one check, and requests that come while a check
/// runs wait for its result instead of starting their own.
#[derive(Default)]
pub struct Cached {
    last: tokio::sync::Mutex<Option<(Instant, http::StatusCode, Report)>>,
}

impl Cached {
    /// Nothing checked yet.
    pub fn new() -> Self {
        Cached::default()
    }

    /// The result of a check made less than [`RESULT_TTL`] ago, else `check`'s.
    pub async fn get_or_check<F>(&self, check: impl FnOnce() -> F) -> (http::StatusCode, Report)
    where
        F: std::future::Future<Output = (http::StatusCode, Report)>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, status, report)) = last.as_ref() {
            if at.elapsed() < RESULT_TTL {
                return (*status, report.clone());
            }
        }
        let (status, report) = check().await;
        *last = Some((Instant::now(), status, report.clone()));
        (status, report)
    }
}

/// Runs the checks concurrently.
pub async fn report(
    region: &str,
    meta: &dyn MetaStore,
    bucket: &dyn BlobStore,
    cache: &dyn Cache,
    redis_configured: bool,
) -> (http::StatusCode, Report) {
    let (status, probe, redis) = tokio::join!(
        timed(meta.region_status(region)),
        timed(bucket.head(PROBE_KEY)),
        async {
            if !redis_configured {
                return Check {
                    status: "disabled",
                    detail: None,
                };
            }
            let failure = match tokio::time::timeout(CHECK_TIMEOUT, cache.health()).await {
                Ok(CacheHealth::Ok) => return Check::ok(),
                Ok(CacheHealth::Degraded(d)) => Failure::Error(d),
                Err(_) => Failure::Timeout,
            };
            Check {
                status: "degraded",
                detail: Some(failure.logged("redis")),
            }
        }
    );
    let (maintenance, metadata) = match status {
        Ok(s) => (s.maintenance, Check::ok()),
        Err(e) => (false, Check::error(&e.logged("metadata"))),
    };
    let bucket = match probe {
        Ok(_) => Check::ok(),
        Err(e) => Check::error(&e.logged("bucket")),
    };
    let checks = Checks {
        metadata,
        bucket,
        redis,
    };
    let (word, code) = verdict(maintenance, &checks);
    (
        code,
        Report {
            status: word,
            region: region.to_owned(),
            maintenance,
            checks,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn c(status: &'static str) -> Check {
        Check {
            status,
            detail: None,
        }
    }

    #[test]
    fn verdict_table() {
        let cases = [
            (false, "ok", "ok", "ok", ("ok", StatusCode::OK)),
            (false, "ok", "ok", "disabled", ("ok", StatusCode::OK)),
            (false, "ok", "ok", "degraded", ("degraded", StatusCode::OK)),
            (
                false,
                "error",
                "ok",
                "ok",
                ("impaired", StatusCode::SERVICE_UNAVAILABLE),
            ),
            (
                false,
                "ok",
                "error",
                "degraded",
                ("impaired", StatusCode::SERVICE_UNAVAILABLE),
            ),
            (
                true,
                "ok",
                "ok",
                "ok",
                ("maintenance", StatusCode::SERVICE_UNAVAILABLE),
            ),
            (
                true,
                "ok",
                "error",
                "ok",
                ("maintenance", StatusCode::SERVICE_UNAVAILABLE),
            ),
        ];
        for (maintenance, m, b, r, want) in cases {
            let checks = Checks {
                metadata: c(m),
                bucket: c(b),
                redis: c(r),
            };
            assert_eq!(
                verdict(maintenance, &checks),
                want,
                "{maintenance} {m} {b} {r}"
            );
        }
    }
}
