//! A running `skyhost local up` for the drills: start, deploy, look at each region and at
//! each origin instance, take regions out and bring them back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_skyhost");
pub const REGIONS: [&str; 3] = ["us-west-2", "eu-central-1", "ap-southeast-1"];
/// Health checks every 300 ms, three in a row move traffic.
pub const HEALTH_MS: u64 = 300;

/// A started `skyhost` process, stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

/// `local up` until dropped.
pub struct Local {
    _child: Running,
    pub state: PathBuf,
    pub port: u16,
    pub http: reqwest::Client,
}

/// What one request got.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub region: String,
    pub deployment: String,
    pub body: String,
}

/// Runs `skyhost ARGS`: success, stdout, stderr.
pub fn skyhost(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run skyhost");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A port P with P..=P+3 all free.
pub fn free_ports() -> u16 {
    for i in 0..200u32 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = 20000 + ((t ^ (std::process::id() << 7) ^ (i * 7919)) % 30000) as u16;
        if (0..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
    panic!("no free port range");
}

/// Polls until `ok` holds; returns how long it took, or panics after `limit`.
pub async fn until<F, Fut>(limit: Duration, what: &str, mut ok: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if ok().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET url` for `demo.test` through `http`, as a visitor in `client_region` when given.
pub async fn get(http: &reqwest::Client, url: &str, client_region: Option<&str>) -> Option<Answer> {
    let mut req = http.get(url).header("host", "demo.test");
    if let Some(r) = client_region {
        req = req.header("x-skyhost-client-region", r);
    }
    let r = req.send().await.ok()?;
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (status, region, deployment) = (
        r.status().as_u16(),
        h("x-skyhost-region"),
        h("x-skyhost-deployment"),
    );
    Some(Answer {
        status,
        region,
        deployment,
        body: r.text().await.ok()?,
    })
}

impl Local {
    /// Starts `local up` in `tmp` with `instances` origin instances per region.
    pub async fn start(tmp: &Path, instances: u16) -> Local {
        let state = tmp.join("state");
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
                "--instances",
                &instances.to_string(),
                "--origin-threads",
                "1",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start local up");
        let http = skyhost_meta::tls::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let l = Local {
            _child: Running(child),
            state,
            port,
            http,
        };
        let edge = l.edge();
        until(Duration::from_secs(30), "local up", || async {
            l.http.get(&edge).send().await.is_ok() && l.instances_file().is_some()
        })
        .await;
        l
    }

    fn instances_file(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(self.state.join("instances.json")).ok()?).ok()
    }

    /// The edge router.
    pub fn edge(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Region `i`'s front (what the edge and the replicator reach).
    pub fn region(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}/", self.port + 1 + i as u16)
    }

    /// The base URLs of one region's origin instances, bypassing its front.
    pub fn instances(&self, region: &str) -> Vec<String> {
        self.instances_file().unwrap()[region]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("http://127.0.0.1:{}/", p.as_u64().unwrap()))
            .collect()
    }

    /// `skyhost --local STATE ARGS`.
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["--local", self.state.to_str().unwrap()];
        all.extend_from_slice(args);
        skyhost(&all)
    }

    /// Deploys `site_dir` as site `demo` on `demo.test`: the deployment, or the error.
    pub fn deploy(&self, site_dir: &Path) -> Result<String, String> {
        let (ok, out, err) = self.run(&[
            "deploy",
            site_dir.to_str().unwrap(),
            "--site",
            "demo",
            "--domain",
            "demo.test",
            "--json",
        ]);
        if !ok {
            return Err(err);
        }
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("deploy output {out:?}: {e}"));
        Ok(v["deployment"].as_str().unwrap().to_owned())
    }

    /// `local outage|restore REGION`.
    pub fn drill(&self, action: &str, region: &str) {
        let (ok, _, err) = skyhost(&[
            "local",
            action,
            region,
            "--dir",
            self.state.to_str().unwrap(),
        ]);
        assert!(ok, "local {action} {region}: {err}");
    }

    /// `GET url` for `demo.test`, as a visitor in `client_region` when given.
    pub async fn get(&self, url: &str, client_region: Option<&str>) -> Option<Answer> {
        get(&self.http, url, client_region).await
    }

    /// Whether `base` answers `demo.test` with deployment `d`.
    pub async fn serves(&self, base: &str, d: &str) -> bool {
        matches!(self.get(base, None).await, Some(a) if a.status == 200 && a.deployment == d)
    }

    /// The health status code of `base`, `None` when unreachable.
    pub async fn health(&self, base: &str) -> Option<u16> {
        let r = self
            .http
            .get(format!("{base}_skyhost/health"))
            .send()
            .await
            .ok()?;
        Some(r.status().as_u16())
    }
}

/// Changes the example site's about page, so the next deploy is a new deployment.
pub fn change(site: &Path, text: &str) {
    std::fs::write(
        site.join("about.html"),
        format!("<!doctype html><h1>{text}</h1>\n").repeat(20),
    )
    .unwrap();
}
