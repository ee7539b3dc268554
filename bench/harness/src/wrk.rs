//! Running wrk and reading its `--latency` report.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::process::Command;

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrkRun {
    /// Requests per second over the run.
    pub rps: f64,
    /// Median latency, in milliseconds.
    pub p50_ms: f64,
    /// 99th-percentile latency, in milliseconds.
    pub p99_ms: f64,
    /// Requests completed.
    pub requests: u64,
    /// Responses with a status outside 2xx/3xx.
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors, summed.
    pub socket_errors: u64,
}

/// A wrk duration such as `537.00us`, `1.68ms`, `2.00s` or `1.00m`, in milliseconds.
pub fn parse_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(v * scale)
}

/// Reads the report wrk prints with `--latency`.
pub fn parse(report: &str) -> Result<WrkRun> {
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in report.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = parse_duration_ms(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = parse_duration_ms(v);
        } else if t.contains(" requests in ") {
            requests = t
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok());
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().context("Non-2xx count")?;
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in v.split(',') {
                if let Some(n) = part.split_whitespace().nth(1) {
                    socket_errors += n.parse::<u64>().context("socket error count")?;
                }
            }
        }
    }
    match (rps, p50, p99, requests) {
        (Some(rps), Some(p50_ms), Some(p99_ms), Some(requests)) => Ok(WrkRun {
            rps,
            p50_ms,
            p99_ms,
            requests,
            non_2xx,
            socket_errors,
        }),
        _ => bail!("not a wrk --latency report:\n{report}"),
    }
}

/// How wrk is run.
#[derive(Debug, Clone)]
pub struct WrkOptions {
    /// Threads (`-t`).
    pub threads: u32,
    /// Connections (`-c`).
    pub connections: u32,
    /// Seconds (`-d`).
    pub seconds: u32,
}

/// Runs wrk against `url` with `Host: host` and returns its figures.
pub fn run(o: &WrkOptions, url: &str, host: &str) -> Result<WrkRun> {
    let out = Command::new("wrk")
        .arg(format!("-t{}", o.threads))
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{}s", o.seconds))
        .arg("--latency")
        .arg("-H")
        .arg(format!("Host: {host}"))
        .arg(url)
        .output()
        .context("running wrk (is it installed? `make bench` installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://127.0.0.1:8081/index.html
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   605.21us  320.60us  10.82ms   89.47%
    Req/Sec    53.59k     3.43k   60.92k    70.50%
  Latency Distribution
     50%  537.00us
     75%  681.00us
     90%    0.91ms
     99%    1.68ms
  1066713 requests in 10.01s, 1.27GB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 12
Requests/sec: 106587.14
Transfer/sec:    130.35MB
";

    #[test]
    fn durations() {
        let cases = [
            ("537.00us", Some(0.537)),
            ("1.68ms", Some(1.68)),
            (" 2.00s", Some(2000.0)),
            ("1.50m", Some(90_000.0)),
            ("1h", Some(3_600_000.0)),
            ("12", None),
            ("3.0ns", None),
            ("ms", None),
        ];
        for (s, want) in cases {
            let got = parse_duration_ms(s);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{s}: {g} != {w}"),
                (g, w) => assert_eq!(g, w, "{s}"),
            }
        }
    }

    #[test]
    fn full_report() {
        let r = parse(REPORT).unwrap();
        assert_eq!(r.rps, 106587.14);
        assert!((r.p50_ms - 0.537).abs() < 1e-9);
        assert!((r.p99_ms - 1.68).abs() < 1e-9);
        assert_eq!(r.requests, 1066713);
        assert_eq!(r.non_2xx, 12);
        assert_eq!(r.socket_errors, 5);
    }

    #[test]
    fn clean_report_has_no_errors() {
        let clean: String = REPORT
            .lines()
            .filter(|l| !l.contains("Socket errors") && !l.contains("Non-2xx"))
            .map(|l| format!("{l}\n"))
            .collect();
        let r = parse(&clean).unwrap();
        assert_eq!((r.non_2xx, r.socket_errors), (0, 0));
    }

    #[test]
    fn report_without_percentiles_is_refused() {
        let no_latency: String = REPORT
            .lines()
            .filter(|l| !l.contains("99%"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse(&no_latency).is_err());
        assert!(parse("").is_err());
    }
}
