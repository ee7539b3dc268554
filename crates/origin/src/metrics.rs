//! CloudWatch embedded metric format (EMF): one JSON line per site response on stdout,
//! namespace `Skyhost`, dimension `Region`, metrics `Hit`, `Miss`, `Fallback` (counts) and
//! `Latency` (milliseconds). Lambda ships stdout to CloudWatch Logs, which extracts them.

use crate::data::CacheOutcome;
use serde_json::json;
use std::io::Write;

/// The metric namespace.
pub const NAMESPACE: &str = "Skyhost";

/// The EMF line for one response.
pub fn emf_line(region: &str, outcome: CacheOutcome, latency_ms: f64, timestamp_ms: i64) -> String {
    let count = |o: CacheOutcome| u8::from(o == outcome);
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Region"]],
                "Metrics": [
                    {"Name": "Hit", "Unit": "Count"},
                    {"Name": "Miss", "Unit": "Count"},
                    {"Name": "Fallback", "Unit": "Count"},
                    {"Name": "Latency", "Unit": "Milliseconds"}
                ]
            }]
        },
        "Region": region,
        "Hit": count(CacheOutcome::Hit),
        "Miss": count(CacheOutcome::Miss),
        "Fallback": count(CacheOutcome::Fallback),
        "Latency": (latency_ms * 1000.0).round() / 1000.0,
    })
    .to_string()
}

/// Writes EMF lines when enabled.
#[derive(Debug, Clone)]
pub struct Metrics {
    region: String,
    enabled: bool,
}

impl Metrics {
    /// Metrics for `region`; nothing is written unless `enabled`.
    pub fn new(region: &str, enabled: bool) -> Self {
        Metrics {
            region: region.to_owned(),
            enabled,
        }
    }

    /// Whether lines are written.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records one answered request.
    pub fn record(&self, outcome: CacheOutcome, latency_ms: f64) {
        if !self.enabled {
            return;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let line = emf_line(&self.region, outcome, latency_ms, now_ms);
        // One write per line so concurrent lines never interleave; a closed stdout is ignored.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines() {
        let cases = [
            (CacheOutcome::Hit, [1, 0, 0]),
            (CacheOutcome::Miss, [0, 1, 0]),
            (CacheOutcome::Fallback, [0, 0, 1]),
        ];
        for (outcome, [hit, miss, fallback]) in cases {
            let line = emf_line("eu-central-1", outcome, 12.34567, 1_767_435_080_000);
            assert!(!line.contains('\n'));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["_aws"]["Timestamp"], 1_767_435_080_000i64);
            let m = &v["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(m["Namespace"], "Skyhost");
            assert_eq!(m["Dimensions"], json!([["Region"]]));
            let names: Vec<&str> = m["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["Name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["Hit", "Miss", "Fallback", "Latency"]);
            assert_eq!(m["Metrics"][3]["Unit"], "Milliseconds");
            assert_eq!(v["Region"], "eu-central-1");
            assert_eq!(v["Hit"], hit);
            assert_eq!(v["Miss"], miss);
            assert_eq!(v["Fallback"], fallback);
            assert_eq!(v["Latency"], 12.346);
        }
    }
}
