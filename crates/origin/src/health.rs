//! `GET /_skyhost/health`: what a Route 53 health check probes. 200 when this region can
//! serve, 503 when it cannot (metadata store or bucket failing) or when an operator put it
//! in maintenance to drain it. Redis down is `degraded` and still 200: requests go on
//! without it. The JSON body lists each check.
//!
//! Every check is of this region's own dependencies — its table replica, its bucket, its
//! Redis — never the primary's: a primary outage must not take the other regions out of
//! Route 53.

use serde::Serialize;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::{Cache, CacheHealth};
use skyhost_meta::store::MetaStore;
use std::time::Duration;

/// Each check gives up after this long (a health check must answer promptly).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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
    fn error(detail: String) -> Self {
        Check {
            status: "error",
            detail: Some(detail),
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
) -> Result<T, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
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
            match tokio::time::timeout(CHECK_TIMEOUT, cache.health()).await {
                Ok(CacheHealth::Ok) => Check::ok(),
                Ok(CacheHealth::Degraded(d)) => Check {
                    status: "degraded",
                    detail: Some(d),
                },
                Err(_) => Check {
                    status: "degraded",
                    detail: Some("redis: no answer".into()),
                },
            }
        }
    );
    let (maintenance, metadata) = match status {
        Ok(s) => (s.maintenance, Check::ok()),
        Err(e) => (false, Check::error(e)),
    };
    let bucket = match probe {
        Ok(_) => Check::ok(),
        Err(e) => Check::error(e),
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
