//! Self-healing in local mode: deploys killed with SIGKILL at several points of their
//! upload, then a deploy that completes; within 60 s every region holds every blob of the
//! live deployment — with no visitor request and no `verify --repair` — `verify` is clean
//! and no temp file is left in any bucket.

mod common;

use common::local::{free_ports, skyhost, Running, BIN, REGIONS};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES: usize = 400;

fn bucket_dir(state: &Path, region: &str) -> PathBuf {
    state.join("buckets").join(format!("skyhost-{region}"))
}

/// Objects of the site in a region's bucket folder.
fn count_objects(state: &Path, region: &str) -> usize {
    let dir = bucket_dir(state, region).join("objects/sites/demo/blobs");
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Writes the site: `FILES` pages whose text depends on `round`, big enough to be
/// precompressed (three objects each).
fn write_site(dir: &Path, round: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..FILES {
        let body = format!("<!doctype html><p>page {i}, round {round}</p>\n").repeat(40 + i % 7);
        std::fs::write(dir.join(format!("page-{i}.html")), body).unwrap();
    }
}

fn deploy_cmd(state: &Path, site: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "--local",
        state.to_str().unwrap(),
        "deploy",
        site.to_str().unwrap(),
        "--site",
        "demo",
        "--domain",
        "demo.test",
        "--quiet",
        "--json",
    ]);
    c
}

/// Every key the live deployment needs, read from the primary bucket's folder.
fn live_keys(state: &Path, deployment: &str) -> Vec<String> {
    let mkey = format!("sites/demo/manifests/{deployment}.json");
    let body = std::fs::read(bucket_dir(state, REGIONS[0]).join("objects").join(&mkey)).unwrap();
    let m: skyhost_meta::Manifest = serde_json::from_slice(&body).unwrap();
    let mut keys = m.blob_keys();
    keys.push(mkey);
    keys
}

fn lacking(state: &Path, region: &str, keys: &[String]) -> usize {
    let root = bucket_dir(state, region).join("objects");
    keys.iter().filter(|k| !root.join(k).is_file()).count()
}

#[test]
fn killed_deploys_heal_without_anyone_asking() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let site = tmp.path().join("site");
    let port = free_ports();
    let child = Command::new(BIN)
        .args([
            "local",
            "up",
            "--dir",
            state.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("start local up");
    let _running = Running(child);
    let health = format!("127.0.0.1:{}", port + 1);
    let start = Instant::now();
    while std::net::TcpStream::connect(&health).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "local up did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    write_site(&site, 0);
    let out = deploy_cmd(&state, &site).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Kill deploys at several points of their upload: after a few objects, after about
    // half of them, and near the end.
    let mut killed = 0;
    for (round, after) in [(1, 5), (2, FILES), (3, 2 * FILES + FILES / 2)] {
        write_site(&site, round);
        let base = count_objects(&state, REGIONS[0]);
        let mut child = deploy_cmd(&state, &site)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loop {
            if count_objects(&state, REGIONS[0]) >= base + after {
                // SIGKILL: no cleanup of any kind.
                let _ = child.kill();
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let status = child.wait().unwrap();
        if !status.success() {
            killed += 1;
        }
        println!(
            "round {round}: {} objects new when the deploy ended ({status})",
            count_objects(&state, REGIONS[0]) - base
        );
    }
    assert!(
        killed >= 2,
        "the deploys finished before they could be killed"
    );

    // The deploy run again (of the last round's files) completes and goes live.
    let out = deploy_cmd(&state, &site).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deployment = report["deployment"].as_str().unwrap().to_owned();
    let keys = live_keys(&state, &deployment);
    let done = Instant::now();

    // Within 60 s every region holds every blob: no visitor, no verify.
    loop {
        let left: Vec<usize> = REGIONS.iter().map(|r| lacking(&state, r, &keys)).collect();
        if left.iter().all(|n| *n == 0) {
            println!(
                "every region holds all {} keys {:?} after the deploy",
                keys.len(),
                done.elapsed()
            );
            break;
        }
        assert!(
            done.elapsed() < Duration::from_secs(60),
            "after 60 s regions still lack {left:?} of {} keys",
            keys.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let (ok, out, err) = skyhost(&["--local", state.to_str().unwrap(), "verify"]);
    assert!(ok, "verify: {out} {err}");
    let (ok, out, err) = skyhost(&["--local", state.to_str().unwrap(), "status", "--json"]);
    assert!(ok, "status: {err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    for r in st[0]["regions"].as_array().unwrap() {
        assert_eq!(r["missing_blobs"], 0, "{r}");
    }
    for r in REGIONS {
        let tmp: Vec<_> = std::fs::read_dir(bucket_dir(&state, r).join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(tmp.is_empty(), "{r} keeps temp files {tmp:?}");
    }
}
