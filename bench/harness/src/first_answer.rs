//! Cold start to the first answer: from exec of a function to the response it has posted
//! whole for its first invocation, the page request `events/skyhost/rest-api-get-page.json`.
//! The origin is a new instance of a region whose Redis another instance has warmed (the
//! host's site, its record, the manifest, the file, the record's refresh claimed), so it
//! answers without building a DynamoDB or S3 client; hello-lambda echoes the same event.

use crate::coldstart::{lambda_env, Function, FunctionResult};
use crate::runtime::{self, Event};
use crate::stats;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use skyhost_meta::cache::redis::RedisCache;
use skyhost_meta::cache::{Cache, SiteEntry};
use skyhost_meta::{keys, BlobHash, DeploymentId, Domain, FileEntry, Manifest, Site, SiteId};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The invocation every function gets: a REST API page request for `docs.example.com`.
pub const EVENT: &[u8] = include_bytes!("../../../events/skyhost/rest-api-get-page.json");

/// The page the origin serves for [`EVENT`]'s path.
pub const PAGE: &str = "<!doctype html><title>skyhost</title><h1>first answer</h1>";

/// A function and what its answer must contain.
#[derive(Debug, Clone)]
pub struct Answering {
    /// The function.
    pub function: Function,
    /// Text every answer holds (a wrong answer fails the run).
    pub expect: Vec<String>,
}

/// A redis-server of this run, on a free loopback port, killed on drop.
pub struct OwnRedis {
    child: Child,
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
}

impl OwnRedis {
    /// Starts `redis-server` (from `PATH`) without persistence and waits until it accepts.
    pub fn start() -> Result<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (make bench installs it)")?;
        let redis = OwnRedis {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not listen on {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fills Redis as an instance of the region that served the page leaves it: under the
/// prefix the origin uses, the host's site, the site record, the manifest and the file;
/// and the record's refresh claimed for `window`, as by an instance that read it.
pub async fn seed(url: &str, window: Duration) -> Result<()> {
    let redis = RedisCache::new(url)?;
    let site = SiteId::parse("docs")?;
    let host = Domain::parse("docs.example.com")?;
    let created = 1_767_435_072;
    let deployment = DeploymentId::new(created);
    let body = Bytes::from_static(PAGE.as_bytes());
    let hash = BlobHash::of(&body);
    let manifest = Manifest {
        site: site.clone(),
        deployment: deployment.clone(),
        created,
        files: [(
            "/docs/index.html".to_owned(),
            FileEntry {
                hash: hash.clone(),
                size: body.len() as u64,
                content_type: "text/html; charset=utf-8".into(),
                encodings: Default::default(),
            },
        )]
        .into(),
        rules: Default::default(),
    };
    let mut record = Site::new(site.clone(), created);
    record.domains = vec![host.clone()];
    record.active = Some(deployment.clone());
    redis.put(&keys::blob(&site, &hash, None), body).await;
    redis
        .put(
            &keys::manifest(&site, &deployment),
            Bytes::from(serde_json::to_vec(&manifest)?),
        )
        .await;
    let stored = redis
        .put_site(
            &site,
            SiteEntry {
                revision: record.revision,
                site: Some(Arc::new(record)),
            },
        )
        .await;
    redis
        .put_host_site(&host, &site, Duration::from_secs(600))
        .await;
    redis.claim_site_refresh(&site, window).await;
    if !stored || redis.host_site(&host).await.as_ref() != Some(&site) {
        bail!("could not seed redis at {url}");
    }
    Ok(())
}

/// Starts each function `runs` times, round-robin, each on a fresh stub that hands it
/// [`EVENT`], and times exec → its whole response. One unmeasured round comes first (it
/// warms the page cache). `logs` receives their output.
pub async fn measure(fns: &[Answering], runs: usize, logs: &Path) -> Result<Vec<FunctionResult>> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); fns.len()];
    std::fs::create_dir_all(logs)?;
    for round in 0..=runs {
        for (i, a) in fns.iter().enumerate() {
            let f = &a.function;
            let mut stub = runtime::start_invoking(EVENT.to_vec()).await?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join(format!("{}.log", f.name.replace([' ', '(', ')'], "_"))))?;
            let started = Instant::now();
            let mut child = Command::new(&f.bin)
                .env_clear()
                .envs(lambda_env(&stub.addr.to_string(), &f.name))
                .envs(f.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", f.bin.display()))?;
            let answered = loop {
                match tokio::time::timeout(Duration::from_secs(10), stub.events.recv()).await {
                    Ok(Some(Event::Next(_))) => continue,
                    Ok(Some(Event::Response(at, body))) => break Ok((at, body)),
                    Ok(Some(Event::InitError(body))) => {
                        break Err(format!("failed its init: {body}"))
                    }
                    Ok(Some(Event::Other(line))) => break Err(format!("sent {line:?}")),
                    Ok(None) => break Err("lost the runtime stub".into()),
                    Err(_) => break Err("did not answer within 10 s".into()),
                }
            };
            let _ = child.kill();
            let _ = child.wait();
            let (at, body) =
                answered.map_err(|e| anyhow::anyhow!("{} {e} (see {})", f.name, logs.display()))?;
            let text = String::from_utf8_lossy(&body);
            if let Some(missing) = a.expect.iter().find(|e| !text.contains(e.as_str())) {
                bail!("{}'s answer lacks {missing:?}: {text}", f.name);
            }
            if round > 0 {
                samples[i].push(at.duration_since(started).as_secs_f64() * 1000.0);
            }
        }
    }
    let base = samples.first().and_then(|s| stats::median(s));
    Ok(fns
        .iter()
        .zip(samples)
        .map(|(a, s)| {
            let median = stats::median(&s);
            FunctionResult {
                name: a.function.name.clone(),
                median_ms: median,
                p90_ms: stats::percentile(&s, 90.0),
                min_ms: s.iter().copied().reduce(f64::min),
                ratio: stats::ratio(median, base),
                budgeted: false,
                samples_ms: s,
                minor_faults: None,
            }
        })
        .collect())
}

/// hello-lambda, and the origin with the template's variables and `REDIS_URL` at `redis`.
pub fn functions(bin_dir: &Path, hello: &Path, redis: &str) -> Vec<Answering> {
    let mut env = crate::coldstart::origin_env();
    env.push(("REDIS_URL".into(), redis.to_owned()));
    vec![
        Answering {
            function: Function {
                name: "hello-lambda".into(),
                bin: hello.to_owned(),
                env: Vec::new(),
                budgeted: false,
            },
            expect: vec!["\"hello\"".into(), "docs.example.com".into()],
        },
        Answering {
            function: Function {
                name: "skyhost-origin (warm Redis)".into(),
                bin: bin_dir.join("skyhost-origin"),
                env,
                budgeted: false,
            },
            expect: vec!["\"statusCode\":200".into(), PAGE.into()],
        },
    ]
}
