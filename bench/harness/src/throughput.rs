//! Sections 1 and 7: one region's origin (a single-region `skyhost local up`) against nginx
//! serving the same files, wrk runs alternating between them, and the origin process's
//! resident memory sampled throughout.

use crate::local::{LocalUp, UpArgs};
use crate::memory::{self, Sampler};
use crate::nginx::Nginx;
use crate::results::{FileThroughput, Memory, Throughput};
use crate::site::{self, THROUGHPUT_FILES};
use crate::stats;
use crate::wrk::{self, WrkOptions, WrkRun};
use crate::{http, procs};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;

/// The deployed domain the runs send as `Host:`.
pub const DOMAIN: &str = "bench.example.com";

/// How the throughput runs go.
#[derive(Debug, Clone)]
pub struct Options {
    /// wrk settings.
    pub wrk: WrkOptions,
    /// Measured runs per server and file.
    pub rounds: usize,
    /// Seconds of unmeasured warm-up per server and file.
    pub warmup_s: u32,
    /// `--cache-bytes` of the origin.
    pub cache_bytes: u64,
}

fn medians(runs: &[WrkRun]) -> (f64, f64, f64) {
    let rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
    let p50: Vec<f64> = runs.iter().map(|r| r.p50_ms).collect();
    let p99: Vec<f64> = runs.iter().map(|r| r.p99_ms).collect();
    (
        stats::median(&rps).unwrap_or(f64::NAN),
        stats::median(&p50).unwrap_or(f64::NAN),
        stats::median(&p99).unwrap_or(f64::NAN),
    )
}

/// Summarises one file's runs.
pub fn summarise(
    label: &str,
    path: &str,
    small: bool,
    sky: Vec<WrkRun>,
    ng: Vec<WrkRun>,
) -> FileThroughput {
    let (s_rps, s_p50, s_p99) = medians(&sky);
    let (n_rps, n_p50, n_p99) = medians(&ng);
    FileThroughput {
        label: label.into(),
        path: path.into(),
        small,
        skyhost: sky,
        nginx: ng,
        skyhost_rps: s_rps,
        nginx_rps: n_rps,
        skyhost_p50_ms: s_p50,
        nginx_p50_ms: n_p50,
        skyhost_p99_ms: s_p99,
        nginx_p99_ms: n_p99,
        rps_ratio: s_rps / n_rps,
        p99_ratio: s_p99 / n_p99,
    }
}

/// Runs sections 1 and 7. `log` gets one line per wrk run.
pub async fn run(
    bin: &Path,
    work: &Path,
    o: &Options,
    log: &mut dyn FnMut(&str),
) -> Result<(Throughput, Memory)> {
    let site_dir = work.join("site-throughput");
    site::throughput_site(&site_dir)?;
    let port = procs::free_ports(18080, 2)?;
    let ng_port = procs::free_ports(port + 2, 1)?;
    let up = LocalUp::start(UpArgs {
        bin,
        dir: &work.join("local-throughput"),
        port,
        regions: &["us-west-2"],
        emulate_latency: false,
        cache_bytes: o.cache_bytes,
        instances: 1,
    })
    .await?;
    let (report, _) = up.deploy(&site_dir, "bench", DOMAIN, true)?;
    up.wait_serving(
        0,
        DOMAIN,
        "/index.html",
        &report.deployment,
        Duration::from_secs(10),
    )
    .await?;
    // Warm the cache; the third answer of each file must come from it.
    for (_, path) in THROUGHPUT_FILES {
        let mut last = None;
        for _ in 0..3 {
            last = Some(http::get_all(up.origin(0), DOMAIN, path, &[]).await?.0);
            // The cache is filled just after the body has gone out.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cache = last
            .as_ref()
            .and_then(|t| t.head.header("x-skyhost-cache").map(str::to_owned));
        if cache.as_deref() != Some("hit") {
            bail!("{path} is not served from the cache after warming (X-Skyhost-Cache: {cache:?})");
        }
    }
    let nginx = Nginx::start(&work.join("nginx"), &site_dir, ng_port)?;
    let idle = memory::vmrss(up.pid()).context("reading the origin's VmRSS")?;
    let sampler = Sampler::start(up.pid(), Duration::from_millis(50));

    let sky_url = |p: &str| format!("http://127.0.0.1:{}{p}", up.origin(0).port());
    let ng_url = |p: &str| format!("http://127.0.0.1:{ng_port}{p}");
    let warm = WrkOptions {
        seconds: o.warmup_s.max(1),
        ..o.wrk.clone()
    };
    let mut files = Vec::new();
    for (label, path) in THROUGHPUT_FILES {
        wrk::run(&warm, &sky_url(path), DOMAIN)?;
        wrk::run(&warm, &ng_url(path), DOMAIN)?;
        let (mut sky, mut ng) = (Vec::new(), Vec::new());
        for round in 0..o.rounds {
            // Alternate which goes first, so neither always runs on a warmer machine.
            for who in if round % 2 == 0 {
                ["skyhost", "nginx"]
            } else {
                ["nginx", "skyhost"]
            } {
                let r = if who == "skyhost" {
                    wrk::run(&o.wrk, &sky_url(path), DOMAIN)?
                } else {
                    wrk::run(&o.wrk, &ng_url(path), DOMAIN)?
                };
                log(&format!(
                    "  {label:<8} {who:<8} {:>10.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  non-2xx {} errors {}",
                    r.rps, r.p50_ms, r.p99_ms, r.non_2xx, r.socket_errors
                ));
                if who == "skyhost" {
                    sky.push(r)
                } else {
                    ng.push(r)
                }
            }
        }
        let small = label != "jpg-1m";
        files.push(summarise(label, path, small, sky, ng));
    }
    let peak = sampler.finish();
    drop(nginx);
    drop(up);
    Ok((
        Throughput {
            threads: o.wrk.threads,
            connections: o.wrk.connections,
            seconds: o.wrk.seconds,
            rounds: o.rounds,
            files,
        },
        Memory {
            cache_bytes: o.cache_bytes,
            idle_bytes: idle,
            peak_bytes: peak,
            limit_bytes: o.cache_bytes + 64 * 1024 * 1024,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::run as wrk_run;

    #[test]
    fn summaries_take_medians_and_ratios() {
        let sky = vec![
            wrk_run(100.0, 1.0, 5.0),
            wrk_run(300.0, 3.0, 1.0),
            wrk_run(200.0, 2.0, 3.0),
        ];
        let ng = vec![wrk_run(100.0, 1.0, 2.0), wrk_run(100.0, 1.0, 2.0)];
        let f = summarise("x", "/x", true, sky, ng);
        assert_eq!(
            (f.skyhost_rps, f.skyhost_p50_ms, f.skyhost_p99_ms),
            (200.0, 2.0, 3.0)
        );
        assert_eq!((f.nginx_rps, f.nginx_p99_ms), (100.0, 2.0));
        assert_eq!(f.rps_ratio, 2.0);
        assert_eq!(f.p99_ratio, 1.5);
        assert_eq!(f.skyhost.len(), 3);
    }
}
