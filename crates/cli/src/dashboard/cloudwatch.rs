//! On AWS, the traffic charts come from CloudWatch: the EMF metrics every origin writes
//! (`Hit`, `Miss`, `Fallback`, `ServerErrors` under namespace `Skyhost`, dimension
//! `Region`), summed per minute over the last [`WINDOW_SECS`], read with GetMetricData from
//! each region's own CloudWatch, at most once a minute.

use super::model::{Point, Tracker, WINDOW_SECS};
use super::sources::Traffic;
use async_trait::async_trait;
use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use skyhost_meta::metrics::NAMESPACE;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The period of every point, in seconds.
pub const PERIOD: i32 = 60;
/// The metrics read, by query id.
const QUERIES: [(&str, &str); 4] = [
    ("hit", "Hit"),
    ("miss", "Miss"),
    ("fallback", "Fallback"),
    ("errors", skyhost_origin::counters::SERVER_ERRORS),
];

/// Per query id, per unix second: the minute's sum.
pub type Sums = BTreeMap<String, BTreeMap<i64, f64>>;

/// The points of a region's per-minute sums. Pure.
pub fn points(sums: &Sums) -> Vec<Point> {
    let get = |id: &str, t: i64| sums.get(id).and_then(|s| s.get(&t)).copied().unwrap_or(0.0);
    let mut times: Vec<i64> = sums.values().flat_map(|s| s.keys().copied()).collect();
    times.sort_unstable();
    times.dedup();
    let secs = f64::from(PERIOD);
    times
        .into_iter()
        .map(|t| {
            let (hit, miss, fallback) = (get("hit", t), get("miss", t), get("fallback", t));
            let answers = hit + miss + fallback;
            Point {
                t,
                rps: answers / secs,
                hit_ratio: (answers > 0.0).then(|| hit / answers),
                fallback: fallback / secs,
                errors: get("errors", t) / secs,
            }
        })
        .collect()
}

/// CloudWatch in every region.
pub struct CloudWatchTraffic {
    clients: BTreeMap<String, aws_sdk_cloudwatch::Client>,
    last: Mutex<Option<Instant>>,
}

impl CloudWatchTraffic {
    /// Clients for `regions`.
    pub async fn new(regions: &[String]) -> CloudWatchTraffic {
        let mut clients = BTreeMap::new();
        for r in regions {
            let conf = skyhost_meta::config::aws(r).await;
            clients.insert(r.clone(), aws_sdk_cloudwatch::Client::new(&conf));
        }
        CloudWatchTraffic {
            clients,
            last: Mutex::new(None),
        }
    }

    /// The per-minute sums of `region` over the window ending at `now_secs`.
    pub async fn sums(&self, region: &str, now_secs: i64) -> anyhow::Result<Sums> {
        let client = self
            .clients
            .get(region)
            .ok_or_else(|| anyhow::anyhow!("no CloudWatch client for {region}"))?;
        let dim = Dimension::builder()
            .name(skyhost_origin::counters::DIMENSION)
            .value(region)
            .build();
        let mut req = client
            .get_metric_data()
            .start_time(DateTime::from_secs(now_secs - WINDOW_SECS))
            .end_time(DateTime::from_secs(now_secs));
        for (id, name) in QUERIES {
            let stat = MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(NAMESPACE)
                        .metric_name(name)
                        .dimensions(dim.clone())
                        .build(),
                )
                .period(PERIOD)
                .stat("Sum")
                .build();
            req = req.metric_data_queries(
                MetricDataQuery::builder()
                    .id(id)
                    .metric_stat(stat)
                    .return_data(true)
                    .build(),
            );
        }
        let mut sums = Sums::new();
        let mut token = None;
        loop {
            let out = req
                .clone()
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(&e)))?;
            for r in out.metric_data_results() {
                let series = sums
                    .entry(r.id().unwrap_or_default().to_owned())
                    .or_default();
                for (t, v) in r.timestamps().iter().zip(r.values()) {
                    *series.entry(t.secs()).or_insert(0.0) += v;
                }
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(sums);
            }
        }
    }
}

#[async_trait]
impl Traffic for CloudWatchTraffic {
    async fn read(
        &self,
        regions: &[(String, Option<String>)],
        tracker: &mut Tracker,
        now_ms: i64,
    ) -> Vec<String> {
        // Points are a minute apart: reading more often would only cost API calls.
        {
            let mut last = self.last.lock().await;
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(PERIOD as u64)) {
                return Vec::new();
            }
            *last = Some(Instant::now());
        }
        let mut problems = Vec::new();
        for (region, _) in regions {
            match self.sums(region, now_ms / 1000).await {
                Ok(s) => tracker.replace_series(region, points(&s)),
                Err(e) => {
                    problems.push(format!("{region}: CloudWatch GetMetricData failed ({e:#})"))
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_become_points() {
        let sums: Sums = [
            ("hit", vec![(60, 90.0), (120, 0.0)]),
            ("miss", vec![(60, 24.0)]),
            ("fallback", vec![(60, 6.0)]),
            ("errors", vec![(60, 3.0), (180, 6.0)]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().collect()))
        .collect();
        let p = points(&sums);
        assert_eq!(p.iter().map(|p| p.t).collect::<Vec<_>>(), [60, 120, 180]);
        assert_eq!(p[0].rps, 2.0);
        assert_eq!(p[0].hit_ratio, Some(0.75));
        assert_eq!(p[0].fallback, 0.1);
        assert_eq!(p[0].errors, 0.05);
        assert_eq!(p[1].hit_ratio, None);
        assert_eq!(p[2].errors, 0.1);
    }
}
