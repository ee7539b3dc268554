//! Section 4: local mode with three regions; per deploy, from starting the activation to
//! every region's origin serving the new deployment (each origin polled directly).

use crate::local::LocalUp;
use crate::results::Propagation;
use crate::site;
use crate::stats;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// The site the propagation deploys use.
pub const SITE: &str = "prop";
/// Its domain.
pub const DOMAIN: &str = "prop.example.com";

/// Polls region `i` until it serves `id`; returns when it first did.
async fn first_serving(up: &LocalUp, i: usize, id: &str, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(t) = crate::http::get(up.origin(i), DOMAIN, "/index.html", &[]).await {
            if t.head.header("x-skyhost-deployment") == Some(id) {
                return Ok(Instant::now());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("{} did not serve {id} within {timeout:?}", up.regions[i]);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs `deploys` deploys against `up`; each is uploaded with `--no-activate`, then timed
/// from the start of `skyhost rollback --to ID` (the activation) to the last region.
pub async fn run(
    up: &LocalUp,
    work: &Path,
    deploys: usize,
    log: &mut dyn FnMut(&str),
) -> Result<Propagation> {
    let dir = work.join("site-propagation");
    site::propagation_site(&dir, 0)?;
    let (first, _) = up.deploy(&dir, SITE, DOMAIN, true)?;
    for i in 0..up.regions.len() {
        up.wait_serving(
            i,
            DOMAIN,
            "/index.html",
            &first.deployment,
            Duration::from_secs(20),
        )
        .await?;
    }
    let mut samples = Vec::new();
    let mut activate_ms = Vec::new();
    for n in 1..=deploys as u64 {
        site::propagation_site(&dir, n)?;
        let (d, _) = up.deploy(&dir, SITE, DOMAIN, false)?;
        // Let the asset-copier finish, as it has by the end of a real deploy's uploads.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let (id, dir, bin) = (d.deployment.clone(), up.dir.clone(), up.bin().to_owned());
        let activation = tokio::task::spawn_blocking(move || {
            let dir = dir.to_string_lossy().into_owned();
            crate::procs::skyhost(
                &bin,
                &["--local", &dir, "rollback", "--site", SITE, "--to", &id],
            )
            .map(|(_, t)| t)
        });
        // Regions are polled in turn: the time that counts is the last region's, and a
        // region already serving when its turn comes is seen at once, so the maximum is the
        // same as with concurrent polling, at a third of the load.
        let mut last = started;
        for i in 0..up.regions.len() {
            last = last.max(first_serving(up, i, &d.deployment, Duration::from_secs(10)).await?);
        }
        let took = activation.await.context("activation task")??;
        let ms = last.duration_since(started).as_secs_f64() * 1000.0;
        log(&format!("  deploy {n:>2}: every region serves it after {ms:>6.1} ms (activate command {:.1} ms)", took.as_secs_f64() * 1000.0));
        samples.push(ms);
        activate_ms.push(took.as_secs_f64() * 1000.0);
    }
    Ok(Propagation {
        regions: up.regions.clone(),
        p50_ms: stats::median(&samples).unwrap_or(f64::NAN),
        p99_ms: stats::percentile(&samples, 99.0).unwrap_or(f64::NAN),
        samples_ms: samples,
        activate_ms,
    })
}
