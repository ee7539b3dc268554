//! Where the dashboard's figures come from. Health and what each region serves are read
//! the same way everywhere: each region's `/_skyhost/health` and the `X-Skyhost-Revision`
//! of a site's page there, with the sites from the table. The traffic counters differ:
//! local mode's listeners serve them in Prometheus' text format ([`LocalTraffic`]); on AWS
//! they are the EMF metrics in CloudWatch ([`super::cloudwatch::CloudWatchTraffic`]).

use super::model::{Answered, Health, SiteReading, Totals, Tracker};
use super::prometheus;
use crate::backend::Backend;
use async_trait::async_trait;
use skyhost_origin::counters::METRICS_PATH;

/// A source of per-region traffic series.
#[async_trait]
pub trait Traffic: Send + Sync {
    /// Reads what is new for `regions` (name, endpoint) into `tracker`, at `now_ms`;
    /// returns what could not be read.
    async fn read(
        &self,
        regions: &[(String, Option<String>)],
        tracker: &mut Tracker,
        now_ms: i64,
    ) -> Vec<String>;
}

/// Local mode: each region's `/_skyhost/metrics`, read every poll.
pub struct LocalTraffic {
    /// The client.
    pub http: reqwest::Client,
}

/// The totals in a region's exposition. Pure.
pub fn totals(text: &str, region: &str) -> Result<Totals, prometheus::ParseError> {
    let samples = prometheus::parse(text)?;
    let r = ("region", region);
    let v = |name: &str, extra: Option<(&str, &str)>| {
        let mut with = vec![r];
        with.extend(extra);
        prometheus::value(&samples, name, &with).unwrap_or(0.0)
    };
    Ok(Totals {
        requests: v("skyhost_requests_total", None),
        hit: v("skyhost_cache_total", Some(("outcome", "hit"))),
        miss: v("skyhost_cache_total", Some(("outcome", "miss"))),
        fallback: v("skyhost_cache_total", Some(("outcome", "fallback"))),
        errors: v("skyhost_server_errors_total", None),
    })
}

#[async_trait]
impl Traffic for LocalTraffic {
    async fn read(
        &self,
        regions: &[(String, Option<String>)],
        tracker: &mut Tracker,
        now_ms: i64,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (region, endpoint) in regions {
            let Some(e) = endpoint else { continue };
            let text = match self.http.get(format!("{e}{METRICS_PATH}")).send().await {
                Ok(r) if r.status().is_success() => r.text().await.ok(),
                // An unreachable region is shown as such by its health; its chart has a gap.
                _ => None,
            };
            let Some(text) = text else { continue };
            match totals(&text, region) {
                Ok(t) => tracker.totals(region, now_ms, t),
                Err(e) => problems.push(format!("{region}: counters unreadable ({e})")),
            }
        }
        problems
    }
}

/// A region's health, from its `/_skyhost/health`.
pub async fn health(http: &reqwest::Client, endpoint: Option<&str>) -> Health {
    let Some(e) = endpoint else {
        return Health::Unknown;
    };
    let answer = match http.get(format!("{e}/_skyhost/health")).send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            let body: Option<serde_json::Value> = r.json().await.ok();
            Some((code, body))
        }
        Err(_) => None,
    };
    Health::from_probe(
        answer
            .as_ref()
            .map(|(c, b)| (*c, b.as_ref().and_then(|b| b["status"].as_str()))),
    )
}

/// Every site from the table, with what each region answers for it.
pub async fn sites(backend: &Backend, http: &reqwest::Client) -> anyhow::Result<Vec<SiteReading>> {
    let meta = backend.readable_meta().await?;
    let mut out = Vec::new();
    for site in meta.sites().await? {
        let mut regions = Vec::new();
        for r in backend.regions() {
            let served = crate::status::serving(http, r.endpoint.as_deref(), &site).await;
            let (deployment, revision) =
                served.map_or((None, None), |s| (s.deployment, s.revision));
            regions.push(Answered {
                region: r.name.clone(),
                deployment,
                revision,
            });
        }
        out.push(SiteReading {
            site: site.id.to_string(),
            live: site.active.as_ref().map(|d| d.to_string()),
            revision: site.revision,
            regions,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_of_an_exposition() {
        let s = skyhost_origin::counters::Snapshot {
            requests: 12,
            hit: 8,
            miss: 2,
            fallback: 1,
            server_errors: 1,
            health_failures: 3,
        };
        let text = skyhost_origin::counters::prometheus("us-west-2", &s);
        assert_eq!(
            totals(&text, "us-west-2").unwrap(),
            Totals {
                requests: 12.0,
                hit: 8.0,
                miss: 2.0,
                fallback: 1.0,
                errors: 1.0,
            }
        );
        // Another region's exposition counts nothing for this one.
        assert_eq!(totals(&text, "eu-central-1").unwrap(), Totals::default());
        assert!(totals("x{", "us-west-2").is_err());
    }
}
