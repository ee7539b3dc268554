//! A `skyhost local up` this harness started: its ports, and deploys into it.

use crate::http;
use crate::procs;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `skyhost deploy --json` reports (the fields the benchmarks use).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DeployReport {
    /// The new deployment's id.
    pub deployment: String,
    /// Files in the folder.
    pub files: u64,
    /// Files whose content had to be uploaded.
    pub files_uploaded: u64,
    /// Files whose content was already there.
    pub files_reused: u64,
    /// Objects uploaded (variants included).
    pub uploaded: u64,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
}

/// Reads `skyhost deploy --json` output.
pub fn parse_deploy(stdout: &str) -> Result<DeployReport> {
    serde_json::from_str(stdout.trim()).with_context(|| format!("not a deploy report: {stdout}"))
}

/// The edge router's health-check interval in every local mode the harness starts, ms.
pub const HEALTH_INTERVAL_MS: u64 = 500;
/// Failed checks in a row before the edge router takes a region out.
pub const FAILURE_THRESHOLD: u32 = 3;

/// A running local mode.
pub struct LocalUp {
    child: Child,
    /// Its state folder.
    pub dir: PathBuf,
    /// The edge router's port.
    pub port: u16,
    /// Regions, primary first.
    pub regions: Vec<String>,
    bin: PathBuf,
}

/// How to start local mode.
pub struct UpArgs<'a> {
    /// The `skyhost` binary.
    pub bin: &'a Path,
    /// State folder (made fresh by the caller).
    pub dir: &'a Path,
    /// Edge port; origins on the next ports.
    pub port: u16,
    /// Regions, primary first.
    pub regions: &'a [&'a str],
    /// `--emulate-latency`.
    pub emulate_latency: bool,
    /// `--cache-bytes`.
    pub cache_bytes: u64,
    /// `--instances`: with one, the instance listens on the region's port itself, so the
    /// origin measured has no hop in front of it.
    pub instances: u16,
}

impl LocalUp {
    /// Starts `skyhost local up` and waits until every origin answers its health check.
    pub async fn start(a: UpArgs<'_>) -> Result<LocalUp> {
        std::fs::create_dir_all(a.dir)?;
        let log = std::fs::File::create(a.dir.with_extension("log"))?;
        let mut cmd = Command::new(a.bin);
        cmd.args(["local", "up", "--dir"])
            .arg(a.dir)
            .args(["--port", &a.port.to_string()])
            .args(["--regions", &a.regions.join(",")])
            .args(["--cache-bytes", &a.cache_bytes.to_string()])
            .args(["--health-interval-ms", &HEALTH_INTERVAL_MS.to_string()])
            .args(["--failure-threshold", &FAILURE_THRESHOLD.to_string()])
            .args(["--instances", &a.instances.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if a.emulate_latency {
            cmd.arg("--emulate-latency");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", a.bin.display()))?;
        let mut up = LocalUp {
            child,
            dir: a.dir.to_owned(),
            port: a.port,
            regions: a.regions.iter().map(|s| s.to_string()).collect(),
            bin: a.bin.to_owned(),
        };
        for i in 0..up.regions.len() {
            if let Err(e) = http::wait_for(
                up.origin(i),
                "localhost",
                "/_skyhost/health",
                None,
                Duration::from_secs(20),
            )
            .await
            {
                let log = std::fs::read_to_string(a.dir.with_extension("log")).unwrap_or_default();
                up.stop();
                bail!("local up did not start: {e:#}\n{log}");
            }
        }
        // Written once every instance listens, before or after the fronts answer.
        let deadline = Instant::now() + Duration::from_secs(20);
        while up.instances().is_err() {
            if Instant::now() > deadline {
                let e = up
                    .instances()
                    .err()
                    .map(|e| format!("{e:#}"))
                    .unwrap_or_default();
                up.stop();
                bail!("local up wrote no instances.json: {e}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(up)
    }

    /// Every origin instance's own address, per region in region order (from
    /// `DIR/instances.json`).
    pub fn instances(&self) -> Result<Vec<(String, Vec<SocketAddr>)>> {
        let path = self.dir.join("instances.json");
        let raw = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        parse_instances(&raw, &self.regions)
    }

    /// The `skyhost` binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The process id of `skyhost local up`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Region `i`'s origin address.
    pub fn origin(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + 1 + i as u16))
    }

    /// The edge router's address.
    pub fn edge(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `skyhost --local DIR deploy SITE_DIR --site SITE --domain DOMAIN --json --quiet
    /// [--no-activate]`, and how long it took.
    pub fn deploy(
        &self,
        site_dir: &Path,
        site: &str,
        domain: &str,
        activate: bool,
    ) -> Result<(DeployReport, Duration)> {
        let dir = self.dir.to_string_lossy();
        let sd = site_dir.to_string_lossy();
        let mut args = vec![
            "--local", &dir, "deploy", &sd, "--site", site, "--domain", domain, "--json", "--quiet",
        ];
        if !activate {
            args.push("--no-activate");
        }
        let (out, took) = procs::skyhost(&self.bin, &args)?;
        Ok((parse_deploy(&out)?, took))
    }

    /// `skyhost --local DIR rollback --site SITE --to ID`: activates a deployment.
    pub fn activate(&self, site: &str, id: &str) -> Result<Duration> {
        let dir = self.dir.to_string_lossy();
        Ok(procs::skyhost(
            &self.bin,
            &["--local", &dir, "rollback", "--site", site, "--to", id],
        )?
        .1)
    }

    /// Waits until region `i` serves `path` of `host` from deployment `id`.
    pub async fn wait_serving(
        &self,
        i: usize,
        host: &str,
        path: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(t) = http::get(self.origin(i), host, path, &[]).await {
                if t.head.status == 200 && t.head.header("x-skyhost-deployment") == Some(id) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "region {} did not serve {id} within {timeout:?}",
                    self.regions[i]
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops local mode (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            procs::signal(self.child.id(), "TERM");
            procs::wait_or_kill(&mut self.child, Duration::from_secs(10));
        }
    }
}

impl Drop for LocalUp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads `instances.json` (`{"REGION": [PORT, …], …}`): each of `regions`' instance
/// addresses, in region order; an error when a region is missing or has none.
pub fn parse_instances(raw: &[u8], regions: &[String]) -> Result<Vec<(String, Vec<SocketAddr>)>> {
    let map: std::collections::HashMap<String, Vec<u16>> =
        serde_json::from_slice(raw).context("instances.json is not a map of port lists")?;
    regions
        .iter()
        .map(|r| match map.get(r) {
            Some(ports) if !ports.is_empty() => Ok((
                r.clone(),
                ports
                    .iter()
                    .map(|&p| SocketAddr::from(([127, 0, 0, 1], p)))
                    .collect(),
            )),
            _ => bail!("instances.json lists no instance of {r}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_reports() {
        let out = r#"{"deployment":"20260101T000000Z-0000abcd","files":3,"files_uploaded":1,"files_reused":2,
            "uploaded":3,"reused":4,"bytes_uploaded":1024,"site":{"id":"bench"}}"#;
        let r = parse_deploy(out).unwrap();
        assert_eq!(r.deployment, "20260101T000000Z-0000abcd");
        assert_eq!(
            (
                r.files,
                r.files_uploaded,
                r.files_reused,
                r.uploaded,
                r.bytes_uploaded
            ),
            (3, 1, 2, 3, 1024)
        );
        assert!(parse_deploy("deployed!").is_err());
        assert!(parse_deploy(r#"{"deployment":"x"}"#).is_err());
    }

    #[test]
    fn instance_lists() {
        let regions = vec!["us-west-2".to_string(), "eu-central-1".to_string()];
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        // Each region's ports, in region order; `None`: refused.
        type Want = Option<Vec<(&'static str, Vec<u16>)>>;
        let cases: &[(&str, Want)] = &[
            (
                r#"{"eu-central-1":[9003,9004],"us-west-2":[9001,9002],"ap":[1]}"#,
                Some(vec![
                    ("us-west-2", vec![9001, 9002]),
                    ("eu-central-1", vec![9003, 9004]),
                ]),
            ),
            (
                r#"{"us-west-2":[8081],"eu-central-1":[8082]}"#,
                Some(vec![
                    ("us-west-2", vec![8081]),
                    ("eu-central-1", vec![8082]),
                ]),
            ),
            (r#"{"us-west-2":[9001]}"#, None),
            (r#"{"us-west-2":[9001],"eu-central-1":[]}"#, None),
            (r#"{"us-west-2":["x"],"eu-central-1":[1]}"#, None),
            ("", None),
        ];
        for (raw, want) in cases {
            let got = parse_instances(raw.as_bytes(), &regions).ok();
            let want = want.as_ref().map(|w| {
                w.iter()
                    .map(|(r, ps)| (r.to_string(), ps.iter().map(|&p| addr(p)).collect()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{raw}");
        }
    }
}
