//! `skyhost-bench`: runs every measurement of `make bench` and writes BENCHMARKS.md, its
//! chart and the raw JSON; `report` re-renders them from a JSON file; `gen-site` writes
//! a generated site for manual runs.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use skyhost_bench::local::{LocalUp, UpArgs};
use skyhost_bench::results::Results;
use skyhost_bench::{
    chart, coldstart, deploy, first_answer, handler, latency, local, machine, outage, procs,
    propagation, report, site, throughput, wrk,
};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(name = "skyhost-bench", about = "skyhost's benchmarks (make bench)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmarks and write the results.
    Run(Box<RunArgs>),
    /// Re-render BENCHMARKS.md and the chart from a results file.
    Report {
        /// The results JSON.
        results: PathBuf,
        #[command(flatten)]
        out: Outputs,
    },
    /// Write a generated site.
    GenSite {
        /// Where.
        dir: PathBuf,
        /// `throughput` (three files) or a number of files.
        #[arg(long, default_value = "throughput")]
        kind: String,
    },
}

#[derive(clap::Args)]
struct Outputs {
    /// BENCHMARKS.md to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
    /// The chart PNG to write (linked from the page by its path relative to the page).
    #[arg(long, default_value = "bench/results/chart.png")]
    chart: PathBuf,
    /// Notes appended to the page (the analysis of where time goes).
    #[arg(long, default_value = "bench/analysis.md")]
    notes: PathBuf,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The release `skyhost` binary.
    #[arg(long)]
    skyhost: PathBuf,
    /// The folder holding the release Lambda binaries, hello-lambda and init-probe.
    #[arg(long)]
    bin_dir: PathBuf,
    /// Criterion's estimates.json of the handler benchmark.
    #[arg(long)]
    criterion: Option<PathBuf>,
    /// Criterion's estimates.json of the handler benchmark's whole-path variant.
    #[arg(long)]
    criterion_full_path: Option<PathBuf>,
    /// Where the results JSON goes.
    #[arg(long, default_value = "bench/results")]
    results_dir: PathBuf,
    #[command(flatten)]
    out: Outputs,
    /// Scratch folder (made fresh, removed at the end).
    #[arg(long, default_value = "/tmp/skyhost-bench")]
    work: PathBuf,
    /// Unix time `make bench` started, to report its total wall time.
    #[arg(long)]
    started_at: Option<u64>,
    /// Only these sections (comma-separated: throughput, coldstart, latency, propagation, deploy,
    /// propagation-instances, outage).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// wrk seconds per run (five runs of 6 s take what three of 10 s took, and alternate
    /// the servers more often).
    #[arg(long, default_value_t = 6)]
    wrk_seconds: u32,
    /// wrk runs per server and file (five: one run's ratio can be several percent from the
    /// next's on a 2-core machine, and the verdict is the medians').
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Measured starts per function.
    #[arg(long, default_value_t = 20)]
    cold_runs: usize,
    /// Propagation deploys.
    #[arg(long, default_value_t = 20)]
    deploys: usize,
    /// Concurrent clients per visitor region in the outage drill.
    #[arg(long, default_value_t = 2)]
    outage_clients: usize,
    /// Files of the deploy site.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// TTFB requests per instance.
    #[arg(long, default_value_t = 40)]
    latency_samples: usize,
    /// The origin's `--cache-bytes` in the throughput and memory runs.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    cache_bytes: u64,
}

fn say(line: &str) {
    println!("{line}");
}

fn rel(from_page: &Path, target: &Path) -> String {
    let base = from_page.parent().unwrap_or(Path::new(""));
    target
        .strip_prefix(base)
        .unwrap_or(target)
        .to_string_lossy()
        .into_owned()
}

fn write_outputs(r: &Results, json_path: &Path, out: &Outputs) -> Result<()> {
    let mut chart_ok = true;
    if let Err(e) = chart::draw(r, &out.chart) {
        eprintln!("chart not drawn: {e:#}");
        chart_ok = false;
    }
    let notes = std::fs::read_to_string(&out.notes).unwrap_or_default();
    let page = report::render(
        r,
        &rel(&out.markdown, json_path),
        chart_ok.then(|| rel(&out.markdown, &out.chart)).as_deref(),
        &notes,
    );
    std::fs::write(&out.markdown, page)
        .with_context(|| format!("writing {}", out.markdown.display()))?;
    Ok(())
}

/// One line per measured function of a start section, after `label`.
fn say_starts(label: &str, fs: &[skyhost_bench::coldstart::FunctionResult]) {
    for f in fs {
        let faults = f
            .minor_faults
            .map(|n| format!("  page faults {n:.0}"))
            .unwrap_or_default();
        say(&format!(
            "  {label}{:<32} median {:>7.2} ms  p90 {:>7.2} ms  ratio {:.2}×{faults}",
            f.name,
            f.median_ms.unwrap_or(f64::NAN),
            f.p90_ms.unwrap_or(f64::NAN),
            f.ratio.unwrap_or(f64::NAN),
        ));
    }
}

/// The first-answer starts (`first_answer`), on a redis-server of their own.
async fn first_answers(a: &RunArgs) -> Result<Vec<skyhost_bench::coldstart::FunctionResult>> {
    let redis = first_answer::OwnRedis::start()?;
    // Claimed for longer than the measurement takes, as by a busy region's instances.
    first_answer::seed(&redis.url, std::time::Duration::from_secs(600)).await?;
    let fns = first_answer::functions(&a.bin_dir, &a.bin_dir.join("hello-lambda"), &redis.url);
    first_answer::measure(&fns, a.cold_runs, &a.work.join("first-answer-logs")).await
}

async fn run(a: RunArgs) -> Result<()> {
    let started = Instant::now();
    let wants = |s: &str| a.only.is_empty() || a.only.iter().any(|o| o == s);
    let now = time::OffsetDateTime::now_utc();
    let mut r = Results {
        date: now.format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))?,
        machine: machine::describe(),
        ..Default::default()
    };
    if a.work.exists() {
        std::fs::remove_dir_all(&a.work)
            .with_context(|| format!("clearing {}", a.work.display()))?;
    }
    std::fs::create_dir_all(&a.work)?;
    // nginx's workers run as another user and must reach the generated site.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&a.work, std::fs::Permissions::from_mode(0o755))?;
    }
    for (what, p) in [("skyhost", &a.skyhost), ("bin dir", &a.bin_dir)] {
        if !p.exists() {
            bail!(
                "{what} {} does not exist: build the release binaries first (make bench does)",
                p.display()
            );
        }
    }
    let mut log = |l: &str| say(l);

    say("== 2. handler cost (criterion)");
    match &a.criterion {
        Some(p) => match handler::read(p) {
            Ok(h) => {
                say(&format!("  median {:.2} µs", h.median_us));
                r.handler = Some(h);
            }
            Err(e) => r.errors.push(format!("handler: {e:#}")),
        },
        None => r
            .errors
            .push("handler: no criterion estimates given (--criterion)".into()),
    }
    if let Some(p) = &a.criterion_full_path {
        match handler::read(p) {
            Ok(h) => {
                say(&format!("  whole path: median {:.2} µs", h.median_us));
                r.handler_full_path = Some(h);
            }
            Err(e) => r.errors.push(format!("handler, whole path: {e:#}")),
        }
    }

    if wants("coldstart") {
        say("== 3. cold start");
        let fns = coldstart::functions(
            &a.bin_dir,
            &a.bin_dir.join("hello-lambda"),
            &coldstart::closed_endpoint()?,
        );
        match coldstart::measure(&fns, a.cold_runs, &a.work.join("coldstart-logs")).await {
            Ok(fs) => {
                say_starts("", &fs);
                let init_steps = match coldstart::probe(&a.bin_dir.join("init-probe"), 10) {
                    Ok(p) => {
                        for s in &p {
                            say(&format!(
                                "  init-probe {:<14} {:<36} {:>8.3} ms",
                                s.scenario, s.step, s.median_ms
                            ));
                        }
                        p
                    }
                    Err(e) => {
                        r.errors.push(format!("init-probe: {e:#}"));
                        Vec::new()
                    }
                };
                let first_answer = match first_answers(&a).await {
                    Ok(fa) => {
                        say_starts("first answer ", &fa);
                        fa
                    }
                    Err(e) => {
                        r.errors.push(format!("first answer: {e:#}"));
                        Vec::new()
                    }
                };
                r.cold_start = Some(skyhost_bench::results::ColdStart {
                    runs: a.cold_runs,
                    functions: fs,
                    init_steps,
                    fault_cost_us: coldstart::page_fault_cost_us(),
                    first_answer,
                });
            }
            Err(e) => r.errors.push(format!("cold start: {e:#}")),
        }
    }

    if wants("throughput") {
        say("== 1. throughput and latency vs nginx; 7. memory");
        let o = throughput::Options {
            wrk: wrk::WrkOptions {
                threads: 2,
                connections: 64,
                seconds: a.wrk_seconds,
            },
            rounds: a.rounds,
            warmup_s: 2,
            cache_bytes: a.cache_bytes,
        };
        match throughput::run(&a.skyhost, &a.work, &o, &mut log).await {
            Ok((t, m)) => {
                for f in &t.files {
                    say(&format!(
                        "  {:<8} req/s ratio {:.2}×  p99 {:.3} vs {:.3} ms ({:.2}×)",
                        f.label, f.rps_ratio, f.skyhost_p99_ms, f.nginx_p99_ms, f.p99_ratio
                    ));
                }
                say(&format!(
                    "  VmRSS idle {:.1} MiB, peak {:.1} MiB",
                    m.idle_bytes as f64 / 1048576.0,
                    m.peak_bytes as f64 / 1048576.0
                ));
                r.throughput = Some(t);
                r.memory = Some(m);
            }
            Err(e) => r.errors.push(format!("throughput and memory: {e:#}")),
        }
    }

    if wants("latency") {
        say("== 6. latency routing");
        match latency::run(&a.skyhost, &a.work, a.latency_samples, &mut log).await {
            Ok(l) => r.latency = Some(l),
            Err(e) => r.errors.push(format!("latency routing: {e:#}")),
        }
    }

    if wants("propagation") || wants("deploy") {
        let port = procs::free_ports(18200, 4)?;
        match LocalUp::start(UpArgs {
            bin: &a.skyhost,
            dir: &a.work.join("local-multi"),
            port,
            regions: &["us-west-2", "eu-central-1", "ap-southeast-1"],
            emulate_latency: false,
            cache_bytes: 64 << 20,
            instances: 1,
        })
        .await
        {
            Ok(up) => {
                if wants("propagation") {
                    say("== 4. propagation");
                    match propagation::run(
                        &up,
                        &propagation::region_targets(&up),
                        1,
                        &a.work,
                        a.deploys,
                        &mut log,
                    )
                    .await
                    {
                        Ok(p) => r.propagation = Some(p),
                        Err(e) => r.errors.push(format!("propagation: {e:#}")),
                    }
                }
                if wants("deploy") {
                    say("== 5. deploy");
                    match deploy::run(&up, &a.work, a.files, &mut log).await {
                        Ok(d) => r.deploy = Some(d),
                        Err(e) => r.errors.push(format!("deploy: {e:#}")),
                    }
                }
            }
            Err(e) => r.errors.push(format!("propagation and deploy: {e:#}")),
        }
    }

    if wants("propagation-instances") || wants("outage") {
        let port = procs::free_ports(18400, 4)?;
        match LocalUp::start(UpArgs {
            bin: &a.skyhost,
            dir: &a.work.join("local-instances"),
            port,
            regions: &["us-west-2", "eu-central-1", "ap-southeast-1"],
            emulate_latency: false,
            cache_bytes: 64 << 20,
            instances: 2,
        })
        .await
        {
            Ok(up) => {
                if wants("propagation-instances") {
                    say("== 8. propagation to every instance");
                    let measured = match propagation::instance_targets(&up) {
                        Ok(t) => propagation::run(&up, &t, 2, &a.work, a.deploys, &mut log).await,
                        Err(e) => Err(e),
                    };
                    match measured {
                        Ok(p) => r.propagation_instances = Some(p),
                        Err(e) => r
                            .errors
                            .push(format!("propagation to every instance: {e:#}")),
                    }
                }
                // Last on this local mode: it takes the primary out and brings it back.
                if wants("outage") {
                    say("== 9. primary outage under load");
                    let o = outage::Options {
                        clients_per_region: a.outage_clients,
                        warmup: std::time::Duration::from_secs(2),
                        hold: std::time::Duration::from_secs(3),
                        health_interval_ms: local::HEALTH_INTERVAL_MS,
                        failure_threshold: local::FAILURE_THRESHOLD,
                    };
                    match outage::run(&up, &a.work, &o, &mut log).await {
                        Ok(d) => r.outage = Some(d),
                        Err(e) => r.errors.push(format!("primary outage drill: {e:#}")),
                    }
                }
            }
            Err(e) => r.errors.push(format!(
                "propagation to every instance and outage drill: {e:#}"
            )),
        }
    }

    r.measure_s = started.elapsed().as_secs_f64();
    r.total_s = a.started_at.map(|t| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        now - t as f64
    });
    std::fs::create_dir_all(&a.results_dir)?;
    let stamp = now.format(time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))?;
    let json_path = a.results_dir.join(format!("{stamp}.json"));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&r)?)?;
    write_outputs(&r, &json_path, &a.out)?;
    let _ = std::fs::remove_dir_all(&a.work);

    say("\n== summary (every ratio and budget of this run)");
    print!("{}", report::summary(&r));
    for e in &r.errors {
        say(&format!("error: {e}"));
    }
    say(&format!(
        "results: {}  page: {}  chart: {}",
        json_path.display(),
        a.out.markdown.display(),
        a.out.chart.display()
    ));
    Ok(())
}

fn main() -> std::process::ExitCode {
    // The binary is three tools, by the name it is run under (bench/run.sh copies it to
    // those names): one fat-LTO link instead of three of the same SDK, tokio and hyper code.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    match Path::new(&argv0).file_name().and_then(|n| n.to_str()) {
        Some("init-probe") => return skyhost_bench::init_probe::main(),
        Some("handler-bench") => {
            skyhost_bench::handler_bench::main();
            return std::process::ExitCode::SUCCESS;
        }
        _ => {}
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(a) => tokio::runtime::Runtime::new()
            .context("starting the runtime")
            .and_then(|rt| rt.block_on(run(*a))),
        Cmd::Report { results, out } => std::fs::read(&results)
            .with_context(|| format!("reading {}", results.display()))
            .and_then(|b| Ok(serde_json::from_slice::<Results>(&b)?))
            .and_then(|r| write_outputs(&r, &results, &out)),
        Cmd::GenSite { dir, kind } => match kind.as_str() {
            "throughput" => site::throughput_site(&dir),
            n => n
                .parse::<usize>()
                .context("--kind is `throughput` or a number of files")
                .and_then(|n| {
                    site::large_site(&dir, n, 42)
                        .map(|s| println!("{} files, {} bytes", s.files, s.bytes))
                }),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
