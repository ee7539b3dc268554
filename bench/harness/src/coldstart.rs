//! Cold start: from exec of a Lambda binary to its first poll of the Runtime API, against a
//! hello-world function built with the same release profile.

use crate::runtime::{self, Event};
use crate::stats;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A function to start.
#[derive(Debug, Clone)]
pub struct Function {
    /// Its name in the results.
    pub name: String,
    /// The binary.
    pub bin: PathBuf,
    /// Its own variables (docs/config.md), on top of what Lambda sets for every function.
    pub env: Vec<(String, String)>,
    /// Whether a budget applies to it (informational rows have none).
    pub budgeted: bool,
}

/// One function's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionResult {
    /// The function.
    pub name: String,
    /// Every sample, in milliseconds, in run order.
    pub samples_ms: Vec<f64>,
    /// Median, in milliseconds.
    pub median_ms: Option<f64>,
    /// 90th percentile, in milliseconds.
    pub p90_ms: Option<f64>,
    /// Fastest, in milliseconds.
    pub min_ms: Option<f64>,
    /// Median over the hello-world's median.
    pub ratio: Option<f64>,
    /// Median minor page faults from exec to the first poll.
    #[serde(default)]
    pub minor_faults: Option<f64>,
    /// Whether the 1.3× budget applies.
    pub budgeted: bool,
}

/// What every Lambda function gets from the service (values like a real one's), with the
/// stub as its Runtime API. Nothing else: no endpoint override, which Lambda does not set
/// and which would add its own parsing to the SDK's init. [`measure`] checks separately
/// that no function opens a connection at init.
pub fn lambda_env(runtime_api: &str, name: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]0123456789abcdef",
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
        ("AWS_REGION", "us-west-2"),
        ("AWS_DEFAULT_REGION", "us-west-2"),
        ("AWS_ACCESS_KEY_ID", "AKIDBENCHBENCHBENCH0"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "benchbenchbenchbenchbenchbenchbenchbench",
        ),
        ("AWS_SESSION_TOKEN", "bench-session-token"),
        ("TZ", ":UTC"),
        ("LANG", "en_US.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The origin's variables as `template.yaml` sets them in a replica region.
pub fn origin_env() -> Vec<(String, String)> {
    pairs(&[
        ("SKYHOST_REGION", "eu-central-1"),
        ("SKYHOST_PRIMARY_REGION", "us-west-2"),
        ("SKYHOST_TABLE", "skyhost-sites"),
        ("SKYHOST_BUCKET", "skyhost-123456789012-eu-central-1"),
        ("SKYHOST_PRIMARY_BUCKET", "skyhost-123456789012-us-west-2"),
        // Secrets are named; an origin reads them only when it needs them.
        ("SKYHOST_NOTIFY_SECRET_ID", "skyhost/notify-secrets"),
        ("SKYHOST_DIRECT_ACCESS", "allow"),
        ("SKYHOST_CACHE_BYTES", "67108864"),
    ])
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The functions measured: the baseline, the three Lambdas with the variables
/// `template.yaml` sets, and (no budget) the origin with `REDIS_URL` set.
pub fn functions(bin_dir: &Path, hello: &Path, closed_endpoint: &str) -> Vec<Function> {
    let origin_env = origin_env();
    let mut with_redis = origin_env.clone();
    let redis = closed_endpoint.replacen("http://", "redis://", 1);
    with_redis.push(("REDIS_URL".into(), redis));
    vec![
        Function {
            name: "hello-lambda".into(),
            bin: hello.to_owned(),
            env: Vec::new(),
            budgeted: false,
        },
        Function {
            name: "skyhost-origin".into(),
            bin: bin_dir.join("skyhost-origin"),
            env: origin_env,
            budgeted: true,
        },
        Function {
            name: "skyhost-replicator".into(),
            bin: bin_dir.join("skyhost-replicator"),
            env: pairs(&[
                ("SKYHOST_REGION", "us-west-2"),
                (
                    "SKYHOST_REGION_ENDPOINTS",
                    "us-west-2=https://us-west-2.example.com,eu-central-1=https://eu-central-1.example.com,ap-southeast-1=https://ap-southeast-1.example.com",
                ),
                ("SKYHOST_NOTIFY_SECRET_ID", "skyhost/notify-secrets"),
            ]),
            budgeted: true,
        },
        Function {
            name: "skyhost-asset-copier".into(),
            bin: bin_dir.join("skyhost-asset-copier"),
            env: pairs(&[
                ("SKYHOST_REGION", "us-west-2"),
                ("SKYHOST_PRIMARY_BUCKET", "skyhost-123456789012-us-west-2"),
                (
                    "SKYHOST_REPLICA_BUCKETS",
                    "eu-central-1=skyhost-123456789012-eu-central-1,ap-southeast-1=skyhost-123456789012-ap-southeast-1",
                ),
                ("SKYHOST_MULTIPART_THRESHOLD", "104857600"),
            ]),
            budgeted: true,
        },
        Function {
            name: "skyhost-origin (REDIS_URL set)".into(),
            bin: bin_dir.join("skyhost-origin"),
            env: with_redis,
            budgeted: false,
        },
    ]
}

/// Starts each function `runs` times, round-robin, and times exec → first poll. `logs`
/// receives their output. One unmeasured round comes first: it warms the page cache and
/// proves that no function opens a connection before its first poll (every AWS endpoint
/// and `REDIS_URL` point at a listener then, which must see nothing).
pub async fn measure(fns: &[Function], runs: usize, logs: &Path) -> Result<Vec<FunctionResult>> {
    let mut stub = runtime::start().await?;
    let api = stub.addr.to_string();
    let watch = std::net::TcpListener::bind("127.0.0.1:0")?;
    watch.set_nonblocking(true)?;
    let watched = watch.local_addr()?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); fns.len()];
    let mut faults: Vec<Vec<f64>> = vec![Vec::new(); fns.len()];
    std::fs::create_dir_all(logs)?;
    for round in 0..=runs {
        for (i, f) in fns.iter().enumerate() {
            while stub.events.try_recv().is_ok() {}
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join(format!("{}.log", f.name.replace([' ', '(', ')'], "_"))))?;
            let mut cmd = Command::new(&f.bin);
            cmd.env_clear()
                .envs(lambda_env(&api, &f.name))
                .envs(f.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            if round == 0 {
                cmd.env("AWS_ENDPOINT_URL", format!("http://{watched}"));
                if f.env.iter().any(|(k, _)| k == "REDIS_URL") {
                    cmd.env("REDIS_URL", format!("redis://{watched}"));
                }
            }
            let started = Instant::now();
            let mut child = cmd
                .spawn()
                .with_context(|| format!("starting {}", f.bin.display()))?;
            let ev = tokio::time::timeout(Duration::from_secs(10), stub.events.recv()).await;
            // The function now waits on the stub for its first event: what it has faulted
            // in so far is its init's.
            let faulted = minor_faults(child.id());
            let _ = child.kill();
            let _ = child.wait();
            if let Ok((_, from)) = watch.accept() {
                bail!(
                    "{} opened a connection (from {from}) before its first poll",
                    f.name
                );
            }
            match ev {
                Ok(Some(Event::Next(at))) => {
                    if round > 0 {
                        samples[i].push(at.duration_since(started).as_secs_f64() * 1000.0);
                        faults[i].extend(faulted.map(|n| n as f64));
                    }
                }
                Ok(Some(Event::InitError(body))) => bail!("{} failed its init: {body}", f.name),
                Ok(Some(Event::Other(line))) => bail!("{} sent {line:?} before polling", f.name),
                Ok(Some(Event::Response(..))) => bail!("{} answered before polling", f.name),
                Ok(None) => bail!("the runtime stub stopped"),
                Err(_) => bail!(
                    "{} did not poll within 10 s (see {})",
                    f.name,
                    logs.display()
                ),
            }
        }
    }
    let base = samples.first().and_then(|s| stats::median(s));
    Ok(fns
        .iter()
        .zip(samples)
        .zip(faults)
        .map(|((f, s), faulted)| {
            let median = stats::median(&s);
            FunctionResult {
                name: f.name.clone(),
                median_ms: median,
                p90_ms: stats::percentile(&s, 90.0),
                min_ms: s.iter().copied().reduce(f64::min),
                ratio: stats::ratio(median, base),
                budgeted: f.budgeted,
                samples_ms: s,
                minor_faults: stats::median(&faulted),
            }
        })
        .collect())
}

/// Minor page faults of process `pid` so far (`/proc/PID/stat`, field 10).
pub fn minor_faults(pid: u32) -> Option<u64> {
    parse_minflt(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 10 of a `/proc/PID/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_minflt(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(7)?.parse().ok()
}

/// What one page fault costs on this machine, in µs: the median of three passes that each
/// write the first byte of 4,096 fresh anonymous pages. A start's faults times this is
/// roughly what they cost it (a fault on a file-backed page costs somewhat more).
pub fn page_fault_cost_us() -> Option<f64> {
    const PAGES: usize = 4096;
    let mut passes = Vec::new();
    for _ in 0..3 {
        // Zeroed memory this large comes straight from mmap: no page is touched yet.
        let mut v = vec![0u8; PAGES * 4096];
        let t = Instant::now();
        for page in v.chunks_mut(4096) {
            page[0] = 1;
        }
        let elapsed = t.elapsed();
        std::hint::black_box(&v);
        passes.push(elapsed.as_secs_f64() * 1e6 / PAGES as f64);
    }
    stats::median(&passes)
}

/// One step of an init, timed in-process by `init-probe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeStep {
    /// The scenario (`naive`, `origin`, …).
    pub scenario: String,
    /// The step.
    pub step: String,
    /// Median over runs, ms.
    pub median_ms: f64,
}

/// The scenarios `init-probe` knows, in report order.
pub const PROBE_SCENARIOS: &[&str] = &[
    "naive",
    "origin",
    "from-env",
    "copier",
    "connector",
    "caches",
    "native-roots",
    "reqwest",
    "endpoint-rules",
    "aws-lc-rand",
];

/// Parses `init-probe` output: `step<TAB>ms` lines (other lines are ignored).
pub fn parse_probe(out: &str) -> Vec<(String, f64)> {
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('\t')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Runs `init-probe` `runs` times per scenario, each in a fresh process with the Lambda
/// environment, and returns each step's median.
pub fn probe(bin: &Path, runs: usize) -> Result<Vec<ProbeStep>> {
    let mut out = Vec::new();
    for scenario in PROBE_SCENARIOS {
        let mut steps: Vec<(String, Vec<f64>)> = Vec::new();
        for _ in 0..runs.max(1) {
            let o = Command::new(bin)
                .arg(scenario)
                .env_clear()
                .envs(lambda_env("127.0.0.1:9", "probe"))
                .envs(if *scenario == "from-env" {
                    origin_env()
                } else {
                    Vec::new()
                })
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .with_context(|| format!("running {}", bin.display()))?;
            if !o.status.success() {
                bail!("init-probe {scenario} failed ({})", o.status);
            }
            for (k, v) in parse_probe(&String::from_utf8_lossy(&o.stdout)) {
                match steps.iter_mut().find(|(n, _)| *n == k) {
                    Some((_, vs)) => vs.push(v),
                    None => steps.push((k, vec![v])),
                }
            }
        }
        for (step, vs) in steps {
            out.push(ProbeStep {
                scenario: scenario.to_string(),
                step,
                median_ms: stats::median(&vs).unwrap_or(f64::NAN),
            });
        }
    }
    Ok(out)
}

/// `http://127.0.0.1:PORT` for a port that was just free and has no listener.
pub fn closed_endpoint() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    drop(l);
    Ok(format!("http://127.0.0.1:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_output() {
        let got = parse_probe(
            "sdk config load (eu-central-1)\t53.021\nnoise\ncertificates\t145\nbad\tx\n",
        );
        assert_eq!(
            got,
            vec![
                ("sdk config load (eu-central-1)".to_string(), 53.021),
                ("certificates".to_string(), 145.0)
            ]
        );
    }

    #[test]
    fn every_function_gets_what_lambda_sets() {
        let fns = functions(
            Path::new("/r"),
            Path::new("/r/hello-lambda"),
            "http://127.0.0.1:9",
        );
        let names: Vec<&str> = fns.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "hello-lambda",
                "skyhost-origin",
                "skyhost-replicator",
                "skyhost-asset-copier",
                "skyhost-origin (REDIS_URL set)"
            ]
        );
        assert_eq!(fns.iter().filter(|f| f.budgeted).count(), 3);
        let redis = &fns[4].env;
        assert!(redis.contains(&("REDIS_URL".into(), "redis://127.0.0.1:9".into())));
        let env = lambda_env("127.0.0.1:1", "f");
        for k in [
            "AWS_LAMBDA_RUNTIME_API",
            "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
        ] {
            assert!(env.iter().any(|(n, _)| n == k), "{k}");
        }
        // Lambda sets no endpoint override, and neither do the measured starts.
        assert!(!env.iter().any(|(n, _)| n.starts_with("AWS_ENDPOINT_URL")));
    }

    /// A function in miniature: a shell that polls the stub with bash's /dev/tcp, after
    /// running `before`.
    fn shell_function(dir: &Path, before: &str) -> Function {
        let script = dir.join("fn.sh");
        std::fs::write(
            &script,
            format!("#!/bin/bash\n{before}\nexec 3<>/dev/tcp/${{AWS_LAMBDA_RUNTIME_API%:*}}/${{AWS_LAMBDA_RUNTIME_API#*:}}\nprintf 'GET /2018-06-01/runtime/invocation/next HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' >&3\nsleep 30\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Function {
            name: "sh".into(),
            bin: script,
            env: Vec::new(),
            budgeted: false,
        }
    }

    #[test]
    fn minor_faults_come_from_proc() {
        let line = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194304 377 0 2 0 5 3";
        assert_eq!(parse_minflt(line), Some(377));
        assert_eq!(parse_minflt("4242 (x) S 1"), None);
        assert!(minor_faults(std::process::id()).is_some_and(|n| n > 0));
        let cost = page_fault_cost_us().unwrap();
        assert!(cost > 0.0 && cost < 1000.0, "{cost}");
    }

    #[tokio::test]
    async fn a_connection_at_init_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let f = shell_function(
            dir.path(),
            "u=${AWS_ENDPOINT_URL#http://}\n[ -n \"$u\" ] && exec 4<>/dev/tcp/${u%:*}/${u#*:}",
        );
        let err = measure(&[f], 1, &dir.path().join("logs"))
            .await
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("sh opened a connection"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn measures_a_process_that_polls() {
        let dir = tempfile::tempdir().unwrap();
        let f = shell_function(dir.path(), "");
        let r = measure(&[f.clone(), f], 2, &dir.path().join("logs"))
            .await
            .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].samples_ms.len(), 2);
        assert!(
            r[0].samples_ms.iter().all(|&ms| ms > 0.0 && ms < 5000.0),
            "{:?}",
            r[0].samples_ms
        );
        assert_eq!(r[0].ratio, Some(1.0));
        assert!(r[0].minor_faults.is_some_and(|n| n > 0.0), "{r:?}");
    }
}
