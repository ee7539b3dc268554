//! Section 6: with `--emulate-latency`, time to first byte for a visitor in eu-central-1
//! through the edge router of a three-region local mode (nearest region answers) and of a
//! us-west-2-only one.

use crate::local::{LocalUp, UpArgs};
use crate::results::Latency;
use crate::{http, procs, site, stats};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// The simulated visitor's region.
pub const VISITOR: &str = "eu-central-1";
const DOMAIN: &str = "latency.example.com";
const HEADER: &str = "X-Skyhost-Client-Region";

async fn ttfb(up: &LocalUp) -> Result<(f64, String)> {
    let t = http::get(up.edge(), DOMAIN, "/index.html", &[(HEADER, VISITOR)]).await?;
    if t.head.status != 200 {
        bail!("edge answered {}", t.head.status);
    }
    let region = t.head.header("x-skyhost-region").unwrap_or("?").to_owned();
    Ok((t.ttfb.as_secs_f64() * 1000.0, region))
}

async fn ready(up: &LocalUp, want_region: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match ttfb(up).await {
            Ok((_, r)) if r == want_region => return Ok(()),
            Ok((_, r)) => last = format!("answered by {r}"),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "edge on {} not routing {VISITOR} to {want_region}: {last}",
        up.port
    )
}

/// Runs section 6 with `samples` requests to each instance.
pub async fn run(
    bin: &Path,
    work: &Path,
    samples: usize,
    log: &mut dyn FnMut(&str),
) -> Result<Latency> {
    let site_dir = work.join("site-latency");
    site::throughput_site(&site_dir)?;
    let p1 = procs::free_ports(18300, 4)?;
    let near = LocalUp::start(UpArgs {
        bin,
        dir: &work.join("local-latency-all"),
        port: p1,
        regions: &["us-west-2", "eu-central-1", "ap-southeast-1"],
        emulate_latency: true,
        cache_bytes: 64 << 20,
        instances: 1,
    })
    .await?;
    let p2 = procs::free_ports(p1 + 4, 2)?;
    let far = LocalUp::start(UpArgs {
        bin,
        dir: &work.join("local-latency-west"),
        port: p2,
        regions: &["us-west-2"],
        emulate_latency: true,
        cache_bytes: 64 << 20,
        instances: 1,
    })
    .await?;
    for up in [&near, &far] {
        let (d, _) = up.deploy(&site_dir, "latency", DOMAIN, true)?;
        for i in 0..up.regions.len() {
            up.wait_serving(
                i,
                DOMAIN,
                "/index.html",
                &d.deployment,
                Duration::from_secs(20),
            )
            .await?;
        }
    }
    ready(&near, VISITOR).await?;
    ready(&far, "us-west-2").await?;
    // Warm every cache on the way (each file served in full once per region).
    for up in [&near, &far] {
        for _ in 0..3 {
            http::get_all(up.edge(), DOMAIN, "/index.html", &[(HEADER, VISITOR)]).await?;
        }
    }
    let (mut n, mut f) = (Vec::new(), Vec::new());
    let mut regions = Vec::new();
    for _ in 0..samples {
        let (ms, r) = ttfb(&near).await?;
        n.push(ms);
        regions.push(r);
        f.push(ttfb(&far).await?.0);
    }
    let nearest_region = regions.first().cloned().unwrap_or_default();
    if regions.iter().any(|r| *r != nearest_region) {
        bail!("the multi-region edge answered from several regions: {regions:?}");
    }
    let np = stats::median(&n).unwrap_or(f64::NAN);
    let fp = stats::median(&f).unwrap_or(f64::NAN);
    log(&format!("  TTFB for an {VISITOR} visitor: {np:.1} ms via {nearest_region}, {fp:.1} ms via us-west-2 only"));
    Ok(Latency {
        visitor: VISITOR.into(),
        nearest_region,
        nearest_p50_ms: np,
        far_p50_ms: fp,
        reduction_pct: (1.0 - np / fp) * 100.0,
        nearest_ms: n,
        far_ms: f,
    })
}
