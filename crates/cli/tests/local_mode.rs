//! Drives the built `skyhost` binary through local multi-region mode: `local up`, deploy,
//! a visitor in each region answered by that region, an incremental re-deploy served by
//! every region within a second, a rollback, and a failover drill.

mod common;

use common::local::{free_ports, get, skyhost, until, Running, BIN, HEALTH_MS, REGIONS};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn deploy(state: &Path, site_dir: &Path) -> serde_json::Value {
    let (ok, out, err) = skyhost(&[
        "--local",
        state.to_str().unwrap(),
        "deploy",
        site_dir.to_str().unwrap(),
        "--site",
        "demo",
        "--domain",
        "demo.test",
        "--json",
    ]);
    assert!(ok, "deploy failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("deploy output {out:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_multi_region_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let state: PathBuf = tmp.path().join("state");
    let site = common::example_site(tmp.path());
    let port = free_ports();
    let child = Command::new(BIN)
        .args([
            "local",
            "up",
            "--dir",
            state.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--health-interval-ms",
            &HEALTH_MS.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("start local up");
    let _running = Running(child);
    let c = skyhost_meta::tls::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let edge = format!("http://127.0.0.1:{port}/");
    until(Duration::from_secs(20), "the edge router", || async {
        c.get(&edge).send().await.is_ok()
    })
    .await;

    // First deploy: every file is new.
    let first = deploy(&state, &site);
    let d1 = first["deployment"].as_str().unwrap().to_owned();
    assert_eq!(first["files"], 10, "{first}");
    assert_eq!(first["files_uploaded"], 10, "{first}");
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();

    // A visitor in each region is answered by that region.
    for region in REGIONS {
        until(Duration::from_secs(5), "the first deployment everywhere", || async {
            matches!(get(&c, &edge, Some(region)).await, Some(a) if a.status == 200 && a.deployment == d1)
        })
        .await;
        let a = get(&c, &edge, Some(region)).await.unwrap();
        assert_eq!(a.region, region);
        assert_eq!(a.body, index);
    }

    // The edge plays CloudFront: an origin honours X-Forwarded-Host only with the edge's
    // secret header (from a file only its owner reads), never from a direct caller.
    let secret_file = state.join("origin-verify-secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let front = std::fs::read_to_string(&secret_file).unwrap();
    let origin = format!("http://127.0.0.1:{}/", port + 1);
    let forwarded = |verify: Option<&str>| {
        let mut req = c
            .get(&origin)
            .header("host", "127.0.0.1")
            .header("x-forwarded-host", "demo.test");
        if let Some(v) = verify {
            req = req.header("x-skyhost-origin-verify", v.trim());
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(forwarded(None).await, 404, "a spoofed X-Forwarded-Host");
    assert_eq!(forwarded(Some("guess")).await, 404, "a guessed secret");
    assert_eq!(forwarded(Some(&front)).await, 200, "the edge's secret");
    let through_edge = c
        .get(&edge)
        .header("host", "demo.test")
        .header("x-forwarded-host", "elsewhere.test")
        .header("x-skyhost-origin-verify", "guess")
        .send()
        .await
        .unwrap();
    assert_eq!(through_edge.status(), 200, "the edge replaces both");

    // One file changed: one file uploaded, served by every region within a second.
    std::fs::write(
        site.join("about.html"),
        "<!doctype html><h1>About, changed</h1>\n".repeat(20),
    )
    .unwrap();
    let second = deploy(&state, &site);
    let deployed = Instant::now();
    let d2 = second["deployment"].as_str().unwrap().to_owned();
    assert_eq!(second["files_uploaded"], 1, "{second}");
    assert_eq!(second["files_reused"], 9, "{second}");
    let mut slowest = Duration::ZERO;
    for (i, region) in REGIONS.iter().enumerate() {
        let origin = format!("http://127.0.0.1:{}/about", port + 1 + i as u16);
        until(Duration::from_secs(5), "the second deployment", || async {
            matches!(get(&c, &origin, None).await, Some(a) if a.deployment == d2 && a.body.contains("About, changed"))
        })
        .await;
        let took = deployed.elapsed();
        println!("propagation: {region} serves {d2} {took:?} after activation");
        slowest = slowest.max(took);
    }
    println!("propagation: every region within {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "propagation took {slowest:?}"
    );

    // Rollback: every region serves the first deployment again.
    let (ok, out, err) = skyhost(&[
        "--local",
        state.to_str().unwrap(),
        "rollback",
        "--site",
        "demo",
    ]);
    assert!(ok, "rollback: {err}");
    assert!(out.contains(&d1), "{out}");
    for (i, _) in REGIONS.iter().enumerate() {
        let origin = format!("http://127.0.0.1:{}/about", port + 1 + i as u16);
        until(Duration::from_secs(2), "the rollback", || async {
            matches!(get(&c, &origin, None).await, Some(a) if a.deployment == d1 && !a.body.contains("changed"))
        })
        .await;
    }

    // Status shows every region serving the active deployment.
    let (ok, out, err) = skyhost(&[
        "--local",
        state.to_str().unwrap(),
        "status",
        "--site",
        "demo",
        "--json",
    ]);
    assert!(ok, "status: {err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    for r in st[0]["regions"].as_array().unwrap() {
        assert_eq!(r["health"], "healthy", "{r}");
        assert_eq!(r["serving"], d1.as_str(), "{r}");
    }

    // Failover drill: the EU visitor moves to the next closest region (us-west-2)
    // within three health intervals (after the origin's health result, reused for up to
    // RESULT_TTL, has expired), and comes back after heal.
    let three = Duration::from_millis(3 * HEALTH_MS + 250) + skyhost_origin::health::RESULT_TTL;
    let (ok, _, err) = skyhost(&[
        "local",
        "fail",
        "eu-central-1",
        "--dir",
        state.to_str().unwrap(),
    ]);
    assert!(ok, "fail: {err}");
    let moved = until(Duration::from_secs(10), "failover", || async {
        matches!(get(&c, &edge, Some("eu-central-1")).await, Some(a) if a.region == "us-west-2")
    })
    .await;
    println!("failover: eu-central-1 visitor moved to us-west-2 after {moved:?}");
    assert!(moved <= three, "failover took {moved:?}");
    let a = get(&c, &edge, Some("eu-central-1")).await.unwrap();
    assert_eq!((a.status, a.deployment.as_str()), (200, d1.as_str()));
    let (ok, _, err) = skyhost(&[
        "local",
        "heal",
        "eu-central-1",
        "--dir",
        state.to_str().unwrap(),
    ]);
    assert!(ok, "heal: {err}");
    let back = until(Duration::from_secs(10), "heal", || async {
        matches!(get(&c, &edge, Some("eu-central-1")).await, Some(a) if a.region == "eu-central-1")
    })
    .await;
    println!("heal: eu-central-1 visitor back after {back:?}");
    assert!(back <= three, "heal took {back:?}");

    // Anti-entropy agrees that every region holds every blob.
    let (ok, out, err) = skyhost(&["--local", state.to_str().unwrap(), "verify"]);
    assert!(ok, "verify: {out} {err}");
}
