//! Section 9: a primary outage drill under load. Visitors in every region fetch a page
//! through the edge router without pause; `skyhost local outage PRIMARY` takes the primary
//! region out (table replica, bucket, origins, notify endpoint unreachable); the clock runs
//! from the start of that command to the first 2xx answer a primary visitor gets from
//! another region. Every answer to the replicas' visitors, and every answer a replica
//! served, must be a 2xx throughout. Then `skyhost local restore` brings the primary back.

use crate::local::LocalUp;
use crate::results::Outage;
use crate::site;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The site the drill serves.
pub const SITE: &str = "drill";
/// Its domain.
pub const DOMAIN: &str = "drill.example.com";

/// One request of the load.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// When the answer (or the failure) came, ms since the load started.
    pub at_ms: f64,
    /// The visitor's region (`X-Skyhost-Client-Region`), as an index into the regions.
    pub visitor: usize,
    /// The status; `None` when no answer came (refused, reset, timed out).
    pub status: Option<u16>,
    /// `X-Skyhost-Region` of the answer, when it had one.
    pub region: Option<String>,
}

impl Answer {
    fn ok(&self) -> bool {
        matches!(self.status, Some(s) if (200..300).contains(&s))
    }
}

/// What the drill's answers show, by [`summarize`].
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// From the outage's start to the first 2xx a primary visitor got from another
    /// region, ms; `None` when none came.
    pub failover_ms: Option<f64>,
    /// The region that gave it.
    pub failover_region: Option<String>,
    /// Primary visitors' requests that got no 2xx between the outage's start and that
    /// first answer from a replica.
    pub primary_failed: u64,
    /// Requests answered from the outage's start on that the replicas are responsible for:
    /// every request of a replica's visitor, and any request a replica answered.
    pub replica_requests: u64,
    /// Those that got no 2xx (the budget is 0).
    pub replica_non_2xx: u64,
    /// From the restore's start to the first 2xx a primary visitor got from the primary
    /// again, ms; `None` when none came (or there was no restore).
    pub back_ms: Option<f64>,
}

/// Reads the drill's answers: the outage started at `out_ms`, the restore at `restore_ms`
/// (both ms since the load started); region 0 is the primary.
pub fn summarize(
    answers: &[Answer],
    regions: &[String],
    out_ms: f64,
    restore_ms: Option<f64>,
) -> Figures {
    let primary = regions.first().map(String::as_str).unwrap_or_default();
    let mut during: Vec<&Answer> = answers.iter().filter(|a| a.at_ms >= out_ms).collect();
    during.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    let moved = during
        .iter()
        .find(|a| a.visitor == 0 && a.ok() && a.region.as_deref().is_some_and(|r| r != primary));
    let moved_at = moved.map(|a| a.at_ms);
    let primary_failed = during
        .iter()
        .filter(|a| a.visitor == 0 && !a.ok() && moved_at.is_none_or(|m| a.at_ms <= m))
        .count() as u64;
    let replica_owned =
        |a: &&&Answer| a.visitor != 0 || a.region.as_deref().is_some_and(|r| r != primary);
    let replica_requests = during.iter().filter(replica_owned).count() as u64;
    let replica_non_2xx = during
        .iter()
        .filter(replica_owned)
        .filter(|a| !a.ok())
        .count() as u64;
    let back_ms = restore_ms.and_then(|r| {
        during
            .iter()
            .find(|a| {
                a.at_ms >= r && a.visitor == 0 && a.ok() && a.region.as_deref() == Some(primary)
            })
            .map(|a| a.at_ms - r)
    });
    Figures {
        failover_ms: moved_at.map(|m| m - out_ms),
        failover_region: moved.and_then(|a| a.region.clone()),
        primary_failed,
        replica_requests,
        replica_non_2xx,
        back_ms,
    }
}

/// How the drill runs.
pub struct Options {
    /// Concurrent clients per visitor region.
    pub clients_per_region: usize,
    /// Load before the outage.
    pub warmup: Duration,
    /// Load kept on after the primary's visitors moved, with the primary out.
    pub hold: Duration,
    /// The edge router's health-check interval and threshold, for the report.
    pub health_interval_ms: u64,
    /// Failed checks in a row before a region is taken out.
    pub failure_threshold: u32,
}

type Log = Arc<Mutex<Vec<Answer>>>;

/// Starts the load: `clients_per_region` clients per region, each sending one request at a
/// time on a fresh connection, until `stop`.
fn start_load(
    up: &LocalUp,
    o: &Options,
    t0: Instant,
    stop: &Arc<AtomicBool>,
    log: &Log,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (visitor, region) in up.regions.iter().enumerate() {
        for _ in 0..o.clients_per_region {
            let (edge, region, stop, log) = (up.edge(), region.clone(), stop.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let got = tokio::time::timeout(
                        Duration::from_secs(5),
                        crate::http::get(
                            edge,
                            DOMAIN,
                            "/index.html",
                            &[("x-skyhost-client-region", &region)],
                        ),
                    )
                    .await;
                    let (status, answered_by) = match got {
                        Ok(Ok(t)) => (
                            Some(t.head.status),
                            t.head.header("x-skyhost-region").map(str::to_owned),
                        ),
                        _ => (None, None),
                    };
                    let a = Answer {
                        at_ms: t0.elapsed().as_secs_f64() * 1000.0,
                        visitor,
                        status,
                        region: answered_by,
                    };
                    // A poisoned log only means another client panicked; keep recording.
                    log.lock().unwrap_or_else(|e| e.into_inner()).push(a);
                    // A short pause keeps the load steady rather than saturating the cores
                    // the edge's health checks also run on.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
    }
    tasks
}

/// Waits until an answer after `from_ms` satisfies `ok`; `false` after `timeout`.
async fn until_answer(
    log: &Log,
    from_ms: f64,
    timeout: Duration,
    ok: impl Fn(&Answer) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|a| a.at_ms >= from_ms && ok(a))
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `skyhost local ACTION REGION --dir DIR`, off the runtime's threads; how long it took.
async fn drill(up: &LocalUp, action: &str, region: &str) -> Result<Duration> {
    let (bin, dir, action, region) = (
        up.bin().to_owned(),
        up.dir.to_string_lossy().into_owned(),
        action.to_owned(),
        region.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        crate::procs::skyhost(&bin, &["local", &action, &region, "--dir", &dir]).map(|(_, t)| t)
    })
    .await
    .context("drill task")?
}

/// Runs the drill against `up` (three regions, primary first).
pub async fn run(
    up: &LocalUp,
    work: &Path,
    o: &Options,
    log_line: &mut dyn FnMut(&str),
) -> Result<Outage> {
    if up.regions.len() < 2 {
        bail!("the outage drill needs a replica region");
    }
    let primary = up.regions[0].clone();
    let dir = work.join("site-outage");
    site::propagation_site(&dir, 0)?;
    let (d, _) = up.deploy(&dir, SITE, DOMAIN, true)?;
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

    let t0 = Instant::now();
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1000.0;
    let stop = Arc::new(AtomicBool::new(false));
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let tasks = start_load(up, o, t0, &stop, &log);
    // Before the outage, the primary's visitors are the primary's.
    let steady = until_answer(&log, 0.0, Duration::from_secs(10), |a| {
        a.visitor == 0 && a.ok() && a.region.as_deref() == Some(primary.as_str())
    })
    .await;
    tokio::time::sleep(o.warmup).await;

    let out_at = Instant::now();
    let outcome = async {
        if !steady {
            bail!("{primary}'s visitors were not answered by {primary} before the outage");
        }
        let cmd = drill(up, "outage", &primary).await?;
        let moved = until_answer(&log, ms(out_at), Duration::from_secs(30), |a| {
            a.visitor == 0 && a.ok() && a.region.as_deref().is_some_and(|r| r != primary)
        })
        .await;
        if !moved {
            bail!("{primary}'s visitors were not answered by a replica within 30 s of the outage");
        }
        tokio::time::sleep(o.hold).await;
        Ok(cmd)
    }
    .await;
    // The primary comes back whatever happened, so the run can go on.
    let restore_at = Instant::now();
    let restored = drill(up, "restore", &primary).await;
    let back = until_answer(&log, ms(restore_at), Duration::from_secs(30), |a| {
        a.visitor == 0 && a.ok() && a.region.as_deref() == Some(primary.as_str())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let cmd = outcome?;
    restored.context("restoring the primary")?;
    if !back {
        bail!("{primary}'s visitors were not answered by {primary} within 30 s of the restore");
    }

    let answers = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
    let f = summarize(&answers, &up.regions, ms(out_at), Some(ms(restore_at)));
    let (Some(failover_ms), Some(failover_region)) = (f.failover_ms, f.failover_region.clone())
    else {
        bail!("no answer from a replica to {primary}'s visitors in the recorded load");
    };
    let load_s = answers.last().map(|a| a.at_ms / 1000.0).unwrap_or(f64::NAN);
    log_line(&format!(
        "  {} requests in {load_s:.1} s; outage command {:.0} ms; {primary}'s visitors answered by {failover_region} after {failover_ms:.0} ms ({} failed before); replicas: {} non-2xx of {}; back on {primary} {:.0} ms after the restore",
        answers.len(),
        cmd.as_secs_f64() * 1000.0,
        f.primary_failed,
        f.replica_non_2xx,
        f.replica_requests,
        f.back_ms.unwrap_or(f64::NAN),
    ));
    Ok(Outage {
        primary,
        replicas: up.regions[1..].to_vec(),
        instances_per_region: up.instances()?.first().map(|(_, a)| a.len()).unwrap_or(0),
        clients_per_region: o.clients_per_region,
        health_interval_ms: o.health_interval_ms,
        failure_threshold: o.failure_threshold,
        requests: answers.len() as u64,
        load_s,
        outage_command_ms: cmd.as_secs_f64() * 1000.0,
        failover_ms,
        failover_region,
        primary_failed: f.primary_failed,
        replica_requests: f.replica_requests,
        replica_non_2xx: f.replica_non_2xx,
        back_ms: f.back_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(at_ms: f64, visitor: usize, status: Option<u16>, region: Option<&str>) -> Answer {
        Answer {
            at_ms,
            visitor,
            status,
            region: region.map(str::to_owned),
        }
    }

    #[test]
    fn drills_are_read() {
        let regions: Vec<String> = ["us-west-2", "eu-central-1", "ap-southeast-1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (w, e, ap) = (
            Some("us-west-2"),
            Some("eu-central-1"),
            Some("ap-southeast-1"),
        );
        let clean = vec![
            a(10.0, 0, Some(200), w),
            a(20.0, 1, Some(200), e),
            a(30.0, 2, Some(200), ap),
            // The outage starts at 100.
            a(150.0, 0, None, None),
            a(160.0, 1, Some(200), e),
            a(170.0, 0, Some(502), None),
            a(900.0, 0, Some(200), e),
            a(950.0, 0, Some(503), None),
            a(960.0, 2, Some(200), ap),
            // The restore starts at 2000.
            a(2100.0, 0, Some(200), e),
            a(2300.0, 0, Some(200), w),
        ];
        let mut replica_failed = clean.clone();
        replica_failed.push(a(500.0, 1, None, None));
        replica_failed.push(a(600.0, 2, Some(500), ap));
        // A replica's error to a primary visitor counts against the replicas.
        replica_failed.push(a(1000.0, 0, Some(500), e));
        // Before the outage nothing counts.
        let mut before = clean.clone();
        before.push(a(50.0, 1, None, None));
        let never = vec![a(150.0, 0, None, None), a(160.0, 1, Some(200), e)];
        let cases: Vec<(&str, &[Answer], Option<f64>, Figures)> = vec![
            (
                "clean",
                &clean,
                Some(2000.0),
                Figures {
                    failover_ms: Some(800.0),
                    failover_region: Some("eu-central-1".into()),
                    primary_failed: 2,
                    replica_requests: 4,
                    replica_non_2xx: 0,
                    back_ms: Some(300.0),
                },
            ),
            (
                "replica failures",
                &replica_failed,
                Some(2000.0),
                Figures {
                    failover_ms: Some(800.0),
                    failover_region: Some("eu-central-1".into()),
                    primary_failed: 2,
                    replica_requests: 7,
                    replica_non_2xx: 3,
                    back_ms: Some(300.0),
                },
            ),
            (
                "failures before the outage",
                &before,
                None,
                Figures {
                    failover_ms: Some(800.0),
                    failover_region: Some("eu-central-1".into()),
                    primary_failed: 2,
                    replica_requests: 4,
                    replica_non_2xx: 0,
                    back_ms: None,
                },
            ),
            (
                "never moved",
                &never,
                Some(2000.0),
                Figures {
                    failover_ms: None,
                    failover_region: None,
                    primary_failed: 1,
                    replica_requests: 1,
                    replica_non_2xx: 0,
                    back_ms: None,
                },
            ),
        ];
        for (what, answers, restore, want) in cases {
            assert_eq!(summarize(answers, &regions, 100.0, restore), want, "{what}");
        }
    }
}
