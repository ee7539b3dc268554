//! Section 2: the criterion benchmark's estimates (`bench/harness/benches/handler.rs`).

use crate::results::Handler;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
    confidence_interval: Interval,
}

#[derive(Deserialize)]
struct Estimates {
    mean: Estimate,
    median: Estimate,
}

/// Reads criterion's `estimates.json` (nanoseconds) into microseconds.
pub fn parse(json: &str) -> Result<Handler> {
    let e: Estimates = serde_json::from_str(json).context("not a criterion estimates.json")?;
    Ok(Handler {
        median_us: e.median.point_estimate / 1000.0,
        median_ci_us: (
            e.median.confidence_interval.lower_bound / 1000.0,
            e.median.confidence_interval.upper_bound / 1000.0,
        ),
        mean_us: e.mean.point_estimate / 1000.0,
    })
}

/// Reads the estimates file at `path`.
pub fn read(path: &Path) -> Result<Handler> {
    parse(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates() {
        let json = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":7100.0,"upper_bound":7300.0},"point_estimate":7200.0,"standard_error":50.0},
            "median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":6900.0,"upper_bound":7050.0},"point_estimate":7000.0,"standard_error":40.0},
            "median_abs_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0},"point_estimate":1.5,"standard_error":0.1},
            "slope":null,"std_dev":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0},"point_estimate":1.5,"standard_error":0.1}}"#;
        let h = parse(json).unwrap();
        assert_eq!(h.median_us, 7.0);
        assert_eq!(h.median_ci_us, (6.9, 7.05));
        assert_eq!(h.mean_us, 7.2);
        assert!(parse("{}").is_err());
    }
}
