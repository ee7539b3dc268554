//! Section 4: local mode with three regions; per deploy, from starting the activation to
//! every region's origin serving the new deployment (each origin polled directly).
//! Section 8 is the same with two instances per region, each instance polled on its own
//! port: a notification reaches one instance of a region, the other must catch up alone.

use crate::local::LocalUp;
use crate::results::Propagation;
use crate::site;
use crate::stats;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The site the propagation deploys use.
pub const SITE: &str = "prop";
/// Its domain.
pub const DOMAIN: &str = "prop.example.com";

/// What is polled: a label for messages and an address.
pub type Target = (String, SocketAddr);

/// Each region's origin (its port; with one instance, the instance itself).
pub fn region_targets(up: &LocalUp) -> Vec<Target> {
    (0..up.regions.len())
        .map(|i| (up.regions[i].clone(), up.origin(i)))
        .collect()
}

/// Every origin instance of every region, on its own port (from `instances.json`).
pub fn instance_targets(up: &LocalUp) -> Result<Vec<Target>> {
    Ok(up
        .instances()?
        .into_iter()
        .flat_map(|(r, addrs)| {
            addrs
                .into_iter()
                .enumerate()
                .map(move |(k, a)| (format!("{r} instance {}", k + 1), a))
        })
        .collect())
}

/// Polls `target` until it serves `id`; returns when it first did.
async fn first_serving(target: &Target, id: &str, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(t) = crate::http::get(target.1, DOMAIN, "/index.html", &[]).await {
            if t.head.header("x-skyhost-deployment") == Some(id) {
                return Ok(Instant::now());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("{} did not serve {id} within {timeout:?}", target.0);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs `deploys` deploys against `up`; each is uploaded with `--no-activate`, then timed
/// from the start of `skyhost rollback --to ID` (the activation) to the last of `targets`
/// serving it. `instances_per_region` is recorded with the figures.
pub async fn run(
    up: &LocalUp,
    targets: &[Target],
    instances_per_region: usize,
    work: &Path,
    deploys: usize,
    log: &mut dyn FnMut(&str),
) -> Result<Propagation> {
    let dir = work.join(format!("site-propagation-{instances_per_region}"));
    site::propagation_site(&dir, 0)?;
    let (first, _) = up.deploy(&dir, SITE, DOMAIN, true)?;
    for t in targets {
        first_serving(t, &first.deployment, Duration::from_secs(20)).await?;
    }
    // With several instances, each gets steady traffic throughout, as a busy region's do:
    // an instance looks for missed changes when a request comes, so an idle one would look
    // at the first poll after a pause, a phase busy instances never have.
    let stop = Arc::new(AtomicBool::new(false));
    let mut busy = Vec::new();
    if instances_per_region > 1 {
        for t in targets {
            let (t, stop) = (t.clone(), stop.clone());
            busy.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = crate::http::get(t.1, DOMAIN, "/index.html", &[]).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
        }
    }
    let measured = measure(up, targets, instances_per_region, &dir, deploys, log).await;
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        let _ = b.await;
    }
    let (samples, activate_ms) = measured?;
    Ok(Propagation {
        regions: up.regions.clone(),
        instances_per_region,
        p50_ms: stats::median(&samples).unwrap_or(f64::NAN),
        p99_ms: stats::percentile(&samples, 99.0).unwrap_or(f64::NAN),
        samples_ms: samples,
        activate_ms,
    })
}

/// The timed deploys of [`run`]: per deploy, the figure and the activation command's time.
async fn measure(
    up: &LocalUp,
    targets: &[Target],
    instances_per_region: usize,
    dir: &Path,
    deploys: usize,
    log: &mut dyn FnMut(&str),
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut samples = Vec::new();
    let mut activate_ms = Vec::new();
    for n in 1..=deploys as u64 {
        site::propagation_site(dir, n)?;
        let (d, _) = up.deploy(dir, SITE, DOMAIN, false)?;
        // Let the asset-copier finish, as it has by the end of a real deploy's uploads.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if instances_per_region > 1 {
            // A busy instance the notification missed looks for changes every CHECK_EVERY;
            // deploys that came at a steady pace would hit one phase of that cycle each
            // time. A spread offset samples the whole cycle.
            tokio::time::sleep(phase_offset(n)).await;
        }
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
        let last = if instances_per_region > 1 {
            // Every instance polled at once: an instance looks for missed changes when a
            // request comes, so one left idle while another is polled would look at once on
            // its turn and seem faster than a busy one.
            let mut polls = tokio::task::JoinSet::new();
            for t in targets {
                let (t, id) = (t.clone(), d.deployment.clone());
                polls.spawn(async move { first_serving(&t, &id, Duration::from_secs(10)).await });
            }
            let mut last = started;
            while let Some(done) = polls.join_next().await {
                last = last.max(done.context("poll task")??);
            }
            last
        } else {
            // Regions are polled in turn: each is notified, the time that counts is the last
            // one's, and a region already serving when its turn comes is seen at once, so
            // the maximum is the same as with concurrent polling, at a third of the load.
            let mut last = started;
            for t in targets {
                last = last.max(first_serving(t, &d.deployment, Duration::from_secs(10)).await?);
            }
            last
        };
        let took = activation.await.context("activation task")??;
        let ms = last.duration_since(started).as_secs_f64() * 1000.0;
        log(&format!(
            "  deploy {n:>2}: every {} serves it after {ms:>6.1} ms (activate command {:.1} ms)",
            if instances_per_region > 1 {
                "instance"
            } else {
                "region"
            },
            took.as_secs_f64() * 1000.0
        ));
        samples.push(ms);
        activate_ms.push(took.as_secs_f64() * 1000.0);
    }
    Ok((samples, activate_ms))
}

/// The wait before deploy `n`'s activation in the instances run: the fractional parts of
/// n × the golden ratio spread any run of deploys evenly over one second, which covers
/// the instances' look interval (`skyhost_origin::converge::CHECK_EVERY`).
pub fn phase_offset(n: u64) -> Duration {
    let frac = (n as f64 * 0.618_033_988_749_895).fract();
    Duration::from_millis((frac * 1000.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_cover_the_look_interval() {
        let cases: &[(u64, u64)] = &[(0, 0), (1, 618), (2, 236), (3, 854), (4, 472), (5, 90)];
        for (n, ms) in cases {
            assert_eq!(phase_offset(*n), Duration::from_millis(*ms), "deploy {n}");
        }
        // Twenty deploys leave no gap of more than a tenth of a second in the cycle.
        let mut offs: Vec<u64> = (1..=20)
            .map(|n| phase_offset(n).as_millis() as u64)
            .collect();
        offs.push(0);
        offs.push(1000);
        offs.sort();
        let widest = offs.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(widest <= 100, "{offs:?}");
        assert!(skyhost_origin::converge::CHECK_EVERY <= Duration::from_secs(1));
    }
}
