//! The results of one `make bench` run (written as JSON under `bench/results/`) and the
//! budgets they are judged by.

use crate::coldstart::FunctionResult;
use crate::wrk::WrkRun;
use serde::{Deserialize, Serialize};

/// The machine the run was on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cores: usize,
    /// Memory, in MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
    /// `rustc --version`.
    pub rustc: String,
    /// nginx version.
    pub nginx: String,
    /// wrk version.
    pub wrk: String,
}

/// One file's throughput comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileThroughput {
    /// Short label (`html-1k` …).
    pub label: String,
    /// The path requested.
    pub path: String,
    /// Whether the "cached small file" budget applies.
    pub small: bool,
    /// skyhost's runs, in order.
    pub skyhost: Vec<WrkRun>,
    /// nginx's runs, in order.
    pub nginx: Vec<WrkRun>,
    /// Median over runs of skyhost's requests per second.
    pub skyhost_rps: f64,
    /// Median over runs of nginx's.
    pub nginx_rps: f64,
    /// Median over runs of skyhost's p50, ms.
    pub skyhost_p50_ms: f64,
    /// Median over runs of nginx's p50, ms.
    pub nginx_p50_ms: f64,
    /// Median over runs of skyhost's p99, ms.
    pub skyhost_p99_ms: f64,
    /// Median over runs of nginx's p99, ms.
    pub nginx_p99_ms: f64,
    /// skyhost rps / nginx rps.
    pub rps_ratio: f64,
    /// skyhost p99 / nginx p99.
    pub p99_ratio: f64,
}

/// Section 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    /// wrk threads, connections and seconds per run.
    pub threads: u32,
    /// Connections.
    pub connections: u32,
    /// Seconds per run.
    pub seconds: u32,
    /// Runs per server and file.
    pub rounds: usize,
    /// Per file.
    pub files: Vec<FileThroughput>,
}

/// Section 2.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handler {
    /// Criterion's median estimate, µs.
    pub median_us: f64,
    /// Its confidence interval, µs.
    pub median_ci_us: (f64, f64),
    /// Criterion's mean estimate, µs.
    pub mean_us: f64,
}

/// Section 3.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdStart {
    /// Measured runs per function.
    pub runs: usize,
    /// Per function, the baseline first.
    pub functions: Vec<FunctionResult>,
    /// In-process timings of init steps (`init-probe`), medians.
    #[serde(default)]
    pub init_steps: Vec<crate::coldstart::ProbeStep>,
    /// What one page fault costs on this machine, µs.
    #[serde(default)]
    pub fault_cost_us: Option<f64>,
    /// Exec → the whole response to a first invocation ([`crate::first_answer`]), the
    /// baseline first; no budget.
    #[serde(default)]
    pub first_answer: Vec<FunctionResult>,
}

/// Section 4, and section 8 with more than one instance per region.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Propagation {
    /// Regions.
    pub regions: Vec<String>,
    /// Origin instances per region, each polled on its own port when more than one.
    #[serde(default = "one")]
    pub instances_per_region: usize,
    /// Per deploy: from starting the activation to the last region serving it, ms.
    pub samples_ms: Vec<f64>,
    /// Per deploy: how long the activating command itself ran, ms.
    pub activate_ms: Vec<f64>,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

fn one() -> usize {
    1
}

/// Section 9: the primary outage drill under load ([`crate::outage`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outage {
    /// The region taken out.
    pub primary: String,
    /// The others.
    pub replicas: Vec<String>,
    /// Origin instances per region.
    pub instances_per_region: usize,
    /// Concurrent clients per visitor region.
    pub clients_per_region: usize,
    /// The edge router's health-check interval, ms.
    pub health_interval_ms: u64,
    /// Failed checks in a row before it takes a region out.
    pub failure_threshold: u32,
    /// Requests of the whole load.
    pub requests: u64,
    /// How long the load ran, s.
    pub load_s: f64,
    /// How long `skyhost local outage` itself ran, ms.
    pub outage_command_ms: f64,
    /// From the start of `skyhost local outage` to the first 2xx a primary visitor got
    /// from another region, ms.
    pub failover_ms: f64,
    /// The region that gave it.
    pub failover_region: String,
    /// The primary's visitors' requests without a 2xx until then.
    pub primary_failed: u64,
    /// Requests from the outage's start on that the replicas answer for (their visitors',
    /// and any they answered).
    pub replica_requests: u64,
    /// Those without a 2xx.
    pub replica_non_2xx: u64,
    /// From the start of `skyhost local restore` to the primary answering its visitors
    /// again, ms.
    pub back_ms: Option<f64>,
}

impl Outage {
    /// The failover window the drill is judged by: the checks that take a region out,
    /// plus 400 ms for the checks' own time and the first request after them.
    pub fn window_ms(&self) -> f64 {
        (self.failure_threshold as u64 * self.health_interval_ms + 400) as f64
    }
}

/// Section 5.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deploy {
    /// Files in the site.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Full deploy wall time, s.
    pub full_s: f64,
    /// Objects the full deploy uploaded (variants included).
    pub full_uploaded: u64,
    /// Bytes it uploaded.
    pub full_bytes_uploaded: u64,
    /// Site bytes hashed per second: the re-deploy hashes every file again and uploads one,
    /// so bytes / re-deploy time is a lower bound on the hashing rate, MB/s.
    pub hash_mb_s: f64,
    /// Re-deploy with one file changed, wall time, s.
    pub redeploy_s: f64,
    /// `files_uploaded` of that re-deploy.
    pub redeploy_files_uploaded: u64,
    /// `files_reused` of it.
    pub redeploy_files_reused: u64,
}

/// Section 6.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// The simulated visitor's region.
    pub visitor: String,
    /// The region that answered in the multi-region run.
    pub nearest_region: String,
    /// TTFB samples through the multi-region edge, ms.
    pub nearest_ms: Vec<f64>,
    /// TTFB samples through the us-west-2-only edge, ms.
    pub far_ms: Vec<f64>,
    /// Median of `nearest_ms`.
    pub nearest_p50_ms: f64,
    /// Median of `far_ms`.
    pub far_p50_ms: f64,
    /// 1 − nearest / far, as a percentage.
    pub reduction_pct: f64,
}

/// Section 7.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    /// `--cache-bytes` of the measured local up.
    pub cache_bytes: u64,
    /// VmRSS before load, bytes.
    pub idle_bytes: u64,
    /// Peak VmRSS during the throughput runs, bytes.
    pub peak_bytes: u64,
    /// The budget: cache cap + 64 MiB.
    pub limit_bytes: u64,
}

/// Everything one run measured; a section is `None` when it failed (see `errors`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Results {
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    /// Wall time of the whole `make bench`, s (builds included), when the caller knows it.
    pub total_s: Option<f64>,
    /// Wall time of the measurements, s.
    pub measure_s: f64,
    /// The machine.
    pub machine: Machine,
    /// 1.
    pub throughput: Option<Throughput>,
    /// 2.
    pub handler: Option<Handler>,
    /// 2, the same file through the whole path (a conditional request that kept answers
    /// never serve).
    #[serde(default)]
    pub handler_full_path: Option<Handler>,
    /// 3.
    pub cold_start: Option<ColdStart>,
    /// 4.
    pub propagation: Option<Propagation>,
    /// 5.
    pub deploy: Option<Deploy>,
    /// 6.
    pub latency: Option<Latency>,
    /// 7.
    pub memory: Option<Memory>,
    /// 8, propagation to every instance, two per region.
    #[serde(default)]
    pub propagation_instances: Option<Propagation>,
    /// 9, the primary outage drill under load.
    #[serde(default)]
    pub outage: Option<Outage>,
    /// Why sections are missing.
    pub errors: Vec<String>,
}

/// A budget and how the run fared.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// What is judged.
    pub what: String,
    /// The figure, formatted.
    pub figure: String,
    /// The budget, formatted.
    pub budget: String,
    /// Met, missed, or not measured (`None`).
    pub met: Option<bool>,
}

fn v(what: impl Into<String>, figure: String, budget: &str, met: Option<bool>) -> Verdict {
    Verdict {
        what: what.into(),
        figure,
        budget: budget.into(),
        met,
    }
}

/// Every budget of the issue, judged.
pub fn verdicts(r: &Results) -> Vec<Verdict> {
    let mut out = Vec::new();
    match &r.throughput {
        Some(t) => {
            for f in t.files.iter().filter(|f| f.small) {
                out.push(v(
                    format!("throughput {}: rps vs nginx", f.label),
                    format!("{:.2}×", f.rps_ratio),
                    "≥ 1.00×",
                    Some(f.rps_ratio >= 1.0),
                ));
                out.push(v(
                    format!("throughput {}: p99 vs nginx", f.label),
                    format!(
                        "{:.2}× ({:.2} vs {:.2} ms)",
                        f.p99_ratio, f.skyhost_p99_ms, f.nginx_p99_ms
                    ),
                    "≤ 1.00×",
                    Some(f.skyhost_p99_ms <= f.nginx_p99_ms),
                ));
            }
        }
        None => out.push(v(
            "throughput vs nginx",
            "not measured".into(),
            "≥ 1.00×, p99 ≤ nginx",
            None,
        )),
    }
    out.push(match &r.handler {
        Some(h) => v(
            "handler, cached 4 KB file (median)",
            format!("{:.2} µs", h.median_us),
            "≤ 20 µs",
            Some(h.median_us <= 20.0),
        ),
        None => v(
            "handler, cached 4 KB file (median)",
            "not measured".into(),
            "≤ 20 µs",
            None,
        ),
    });
    match &r.cold_start {
        Some(c) => {
            for f in c.functions.iter().filter(|f| f.budgeted) {
                out.push(match f.ratio {
                    Some(x) => v(
                        format!("cold start {}", f.name),
                        format!("{x:.2}× ({:.1} ms)", f.median_ms.unwrap_or(f64::NAN)),
                        "≤ 1.30×",
                        Some(x <= 1.3),
                    ),
                    None => v(
                        format!("cold start {}", f.name),
                        "not measured".into(),
                        "≤ 1.30×",
                        None,
                    ),
                });
            }
        }
        None => out.push(v("cold start", "not measured".into(), "≤ 1.30×", None)),
    }
    out.push(match &r.propagation {
        Some(p) => v(
            "propagation p99",
            format!("{:.0} ms (p50 {:.0} ms)", p.p99_ms, p.p50_ms),
            "≤ 1000 ms",
            Some(p.p99_ms <= 1000.0),
        ),
        None => v("propagation p99", "not measured".into(), "≤ 1000 ms", None),
    });
    match &r.deploy {
        Some(d) => {
            out.push(v(
                "re-deploy, one file changed: files uploaded",
                d.redeploy_files_uploaded.to_string(),
                "= 1",
                Some(d.redeploy_files_uploaded == 1),
            ));
            out.push(v(
                "re-deploy, one file changed: time",
                format!("{:.2} s", d.redeploy_s),
                "≤ 2 s",
                Some(d.redeploy_s <= 2.0),
            ));
        }
        None => out.push(v("re-deploy", "not measured".into(), "1 file, ≤ 2 s", None)),
    }
    out.push(match &r.latency {
        Some(l) => v(
            "latency routing: TTFB reduction",
            format!(
                "{:.1} % ({:.1} vs {:.1} ms)",
                l.reduction_pct, l.nearest_p50_ms, l.far_p50_ms
            ),
            "≥ 60 %",
            Some(l.reduction_pct >= 60.0),
        ),
        None => v(
            "latency routing: TTFB reduction",
            "not measured".into(),
            "≥ 60 %",
            None,
        ),
    });
    out.push(match &r.memory {
        Some(m) => v(
            "origin memory under load",
            format!("{:.1} MiB", m.peak_bytes as f64 / MIB),
            &format!("≤ {:.0} MiB", m.limit_bytes as f64 / MIB),
            Some(m.peak_bytes <= m.limit_bytes),
        ),
        None => v(
            "origin memory under load",
            "not measured".into(),
            "≤ cache + 64 MiB",
            None,
        ),
    });
    out.push(match &r.propagation_instances {
        Some(p) => v(
            "propagation to every instance p99",
            format!(
                "{:.0} ms (p50 {:.0} ms, {} per region)",
                p.p99_ms, p.p50_ms, p.instances_per_region
            ),
            "≤ 1000 ms",
            Some(p.p99_ms <= 1000.0),
        ),
        None => v(
            "propagation to every instance p99",
            "not measured".into(),
            "≤ 1000 ms",
            None,
        ),
    });
    match &r.outage {
        Some(o) => {
            out.push(v(
                "primary outage: failover to a replica",
                format!("{:.0} ms ({})", o.failover_ms, o.failover_region),
                &format!("≤ {:.0} ms (failover window)", o.window_ms()),
                Some(o.failover_ms <= o.window_ms()),
            ));
            out.push(v(
                "primary outage: replicas' non-2xx",
                format!("{} of {}", o.replica_non_2xx, o.replica_requests),
                "= 0",
                Some(o.replica_non_2xx == 0),
            ));
        }
        None => out.push(v(
            "primary outage drill",
            "not measured".into(),
            "failover window, 0 non-2xx",
            None,
        )),
    }
    if let Some(t) = r.total_s {
        out.push(v(
            "`make bench` wall time",
            format!("{:.1} min", t / 60.0),
            "≤ 20 min",
            Some(t <= 1200.0),
        ));
    }
    out
}

/// Bytes in a MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn run(rps: f64, p50: f64, p99: f64) -> WrkRun {
        WrkRun {
            rps,
            p50_ms: p50,
            p99_ms: p99,
            requests: (rps * 10.0) as u64,
            non_2xx: 0,
            socket_errors: 0,
        }
    }

    /// A complete result set with made-up figures, for the report tests.
    pub fn sample() -> Results {
        let file =
            |label: &str, small: bool, s: f64, n: f64, sp99: f64, np99: f64| FileThroughput {
                label: label.into(),
                path: format!("/{label}"),
                small,
                skyhost: vec![run(s, 0.5, sp99)],
                nginx: vec![run(n, 0.4, np99)],
                skyhost_rps: s,
                nginx_rps: n,
                skyhost_p50_ms: 0.5,
                nginx_p50_ms: 0.4,
                skyhost_p99_ms: sp99,
                nginx_p99_ms: np99,
                rps_ratio: s / n,
                p99_ratio: sp99 / np99,
            };
        let f = |name: &str, ms: f64, budgeted: bool| FunctionResult {
            name: name.into(),
            samples_ms: vec![ms; 3],
            median_ms: Some(ms),
            p90_ms: Some(ms),
            min_ms: Some(ms),
            ratio: Some(ms / 4.0),
            budgeted,
            minor_faults: Some(ms * 100.0),
        };
        Results {
            date: "2026-01-01T00:00:00Z".into(),
            total_s: Some(900.0),
            measure_s: 400.0,
            machine: Machine {
                cpu: "Test CPU".into(),
                cores: 2,
                memory_mib: 4096,
                ..Default::default()
            },
            throughput: Some(Throughput {
                threads: 2,
                connections: 64,
                seconds: 10,
                rounds: 1,
                files: vec![
                    file("html-1k", true, 50_000.0, 40_000.0, 2.0, 3.0),
                    file("css-17k", true, 30_000.0, 40_000.0, 4.0, 3.0),
                    file("jpg-1m", false, 900.0, 1000.0, 90.0, 80.0),
                ],
            }),
            handler: Some(Handler {
                median_us: 7.5,
                median_ci_us: (7.4, 7.6),
                mean_us: 7.7,
            }),
            handler_full_path: Some(Handler {
                median_us: 9.5,
                median_ci_us: (9.4, 9.6),
                mean_us: 9.7,
            }),
            cold_start: Some(ColdStart {
                runs: 3,
                functions: vec![
                    f("hello-lambda", 4.0, false),
                    f("skyhost-origin", 4.8, true),
                    f("skyhost-replicator", 13.6, true),
                ],
                init_steps: vec![crate::coldstart::ProbeStep {
                    scenario: "native-roots".into(),
                    step: "load native roots".into(),
                    median_ms: 2.5,
                }],
                fault_cost_us: Some(1.5),
                first_answer: vec![
                    f("hello-lambda", 5.0, false),
                    f("skyhost-origin (warm Redis)", 6.0, false),
                ],
            }),
            propagation: Some(Propagation {
                regions: vec!["us-west-2".into(), "eu-central-1".into()],
                instances_per_region: 1,
                samples_ms: vec![100.0, 120.0],
                activate_ms: vec![10.0, 11.0],
                p50_ms: 100.0,
                p99_ms: 120.0,
            }),
            propagation_instances: Some(Propagation {
                regions: vec!["us-west-2".into(), "eu-central-1".into()],
                instances_per_region: 2,
                samples_ms: vec![300.0, 1100.0],
                activate_ms: vec![10.0, 11.0],
                p50_ms: 300.0,
                p99_ms: 1100.0,
            }),
            outage: Some(Outage {
                primary: "us-west-2".into(),
                replicas: vec!["eu-central-1".into(), "ap-southeast-1".into()],
                instances_per_region: 2,
                clients_per_region: 2,
                health_interval_ms: 500,
                failure_threshold: 3,
                requests: 5000,
                load_s: 12.0,
                outage_command_ms: 20.0,
                failover_ms: 1700.0,
                failover_region: "eu-central-1".into(),
                primary_failed: 40,
                replica_requests: 3000,
                replica_non_2xx: 0,
                back_ms: Some(1200.0),
            }),
            deploy: Some(Deploy {
                files: 10_000,
                bytes: 100_000_000,
                full_s: 30.0,
                full_uploaded: 20_000,
                full_bytes_uploaded: 120_000_000,
                hash_mb_s: 150.0,
                redeploy_s: 0.9,
                redeploy_files_uploaded: 1,
                redeploy_files_reused: 9_999,
            }),
            latency: Some(Latency {
                visitor: "eu-central-1".into(),
                nearest_region: "eu-central-1".into(),
                nearest_ms: vec![3.0],
                far_ms: vec![141.0],
                nearest_p50_ms: 3.0,
                far_p50_ms: 141.0,
                reduction_pct: 97.9,
            }),
            memory: Some(Memory {
                cache_bytes: 64 << 20,
                idle_bytes: 20 << 20,
                peak_bytes: 150 << 20,
                limit_bytes: 128 << 20,
            }),
            errors: vec![],
        }
    }

    #[test]
    fn budgets_are_judged() {
        let got: Vec<(String, Option<bool>)> = verdicts(&sample())
            .into_iter()
            .map(|v| (v.what, v.met))
            .collect();
        let want: Vec<(&str, Option<bool>)> = vec![
            ("throughput html-1k: rps vs nginx", Some(true)),
            ("throughput html-1k: p99 vs nginx", Some(true)),
            ("throughput css-17k: rps vs nginx", Some(false)),
            ("throughput css-17k: p99 vs nginx", Some(false)),
            ("handler, cached 4 KB file (median)", Some(true)),
            ("cold start skyhost-origin", Some(true)),
            ("cold start skyhost-replicator", Some(false)),
            ("propagation p99", Some(true)),
            ("re-deploy, one file changed: files uploaded", Some(true)),
            ("re-deploy, one file changed: time", Some(true)),
            ("latency routing: TTFB reduction", Some(true)),
            ("origin memory under load", Some(false)),
            ("propagation to every instance p99", Some(false)),
            ("primary outage: failover to a replica", Some(true)),
            ("primary outage: replicas' non-2xx", Some(true)),
            ("`make bench` wall time", Some(true)),
        ];
        let want: Vec<(String, Option<bool>)> =
            want.into_iter().map(|(a, b)| (a.to_string(), b)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn outage_drills_are_judged() {
        let base = sample().outage.unwrap();
        let judged = |o: &Outage| {
            let r = Results {
                outage: Some(o.clone()),
                ..Default::default()
            };
            verdicts(&r)
                .into_iter()
                .filter(|v| v.what.starts_with("primary outage"))
                .map(|v| v.met)
                .collect::<Vec<_>>()
        };
        let cases: Vec<(&str, Outage, Vec<Option<bool>>)> = vec![
            ("within", base.clone(), vec![Some(true), Some(true)]),
            (
                "at the window",
                Outage {
                    failover_ms: 1900.0,
                    ..base.clone()
                },
                vec![Some(true), Some(true)],
            ),
            (
                "late",
                Outage {
                    failover_ms: 1901.0,
                    ..base.clone()
                },
                vec![Some(false), Some(true)],
            ),
            (
                "a replica failed once",
                Outage {
                    replica_non_2xx: 1,
                    ..base.clone()
                },
                vec![Some(true), Some(false)],
            ),
            (
                "slower checks, wider window",
                Outage {
                    failover_ms: 3000.0,
                    health_interval_ms: 1000,
                    ..base.clone()
                },
                vec![Some(true), Some(true)],
            ),
        ];
        for (what, o, want) in cases {
            assert_eq!(judged(&o), want, "{what}");
        }
    }

    #[test]
    fn results_of_earlier_runs_still_read() {
        let mut old = serde_json::to_value(sample()).unwrap();
        let o = old.as_object_mut().unwrap();
        o.remove("outage");
        o.remove("propagation_instances");
        o["propagation"]
            .as_object_mut()
            .unwrap()
            .remove("instances_per_region");
        let r: Results = serde_json::from_value(old).unwrap();
        assert!(r.outage.is_none() && r.propagation_instances.is_none());
        assert_eq!(r.propagation.unwrap().instances_per_region, 1);
    }

    #[test]
    fn missing_sections_are_not_measured() {
        let r = Results::default();
        let vs = verdicts(&r);
        assert!(!vs.is_empty());
        assert!(vs.iter().all(|v| v.met.is_none()), "{vs:?}");
    }
}
