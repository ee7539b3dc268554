//! BENCHMARKS.md from one run's results.

use crate::results::{verdicts, Results, MIB};
use std::fmt::Write;

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2} ms"))
        .unwrap_or_else(|| "–".into())
}

fn met(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

/// Renders the whole page. `results_file` and `chart_file` are paths relative to the
/// page; `notes` is appended verbatim (the analysis of missed budgets).
pub fn render(r: &Results, results_file: &str, chart_file: Option<&str>, notes: &str) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `make bench` from one run on {}. Every figure on this page comes from that run; \
         the raw results are in [`{results_file}`]({results_file}). Measurements took {:.1} min{}.\n",
        r.date,
        r.measure_s / 60.0,
        r.total_s
            .map(|t| format!(" of the {:.1} min the whole `make bench` took (release builds included)", t / 60.0))
            .unwrap_or_default()
    );
    let _ = writeln!(s, "| machine | |\n|---|---|");
    let _ = writeln!(s, "| CPU | {} ({} logical cores) |", m.cpu, m.cores);
    let _ = writeln!(s, "| memory | {} MiB |", m.memory_mib);
    let _ = writeln!(s, "| kernel | {} |", m.kernel);
    let _ = writeln!(s, "| toolchain | {} |", m.rustc);
    let _ = writeln!(s, "| nginx / wrk | {} / {} |", m.nginx, m.wrk);
    let _ = writeln!(s, "| date | {} |\n", r.date);

    let _ = writeln!(
        s,
        "## Budgets\n\n| what | figure | budget | verdict |\n|---|---|---|---|"
    );
    for v in verdicts(r) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            v.what,
            v.figure,
            v.budget,
            met(v.met)
        );
    }
    if let Some(c) = chart_file {
        let _ = writeln!(s, "\n![make bench results]({c})");
    }

    let _ = writeln!(s, "\n## 1. Throughput and latency against nginx\n");
    match &r.throughput {
        Some(t) => {
            let _ = writeln!(
                s,
                "One region's origin (`skyhost local up --regions us-west-2`, release build, HTTP/1.1 listener) and nginx \
                 (`worker_processes auto`, sendfile, open-file cache, no access log) serve the same generated files on the \
                 same machine; wrk runs with {} threads and {} connections for {} s per run, {} runs per server and file, \
                 alternating which server goes first, after an unmeasured warm-up of each; the files are in skyhost's cache \
                 before the first run. Figures are medians over the runs; `Host:` is the deployed domain.\n",
                t.threads, t.connections, t.seconds, t.rounds
            );
            let _ = writeln!(
                s,
                "| file | skyhost req/s | nginx req/s | ratio | skyhost p50 | nginx p50 | skyhost p99 | nginx p99 | p99 ratio |\n|---|---|---|---|---|---|---|---|---|"
            );
            for f in &t.files {
                let _ = writeln!(
                    s,
                    "| {} `{}` | {:.0} | {:.0} | {:.2}× | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.2}× |",
                    f.label, f.path, f.skyhost_rps, f.nginx_rps, f.rps_ratio, f.skyhost_p50_ms, f.nginx_p50_ms, f.skyhost_p99_ms, f.nginx_p99_ms, f.p99_ratio
                );
            }
            let _ = writeln!(
                s,
                "\nRun by run, to show how far one run is from the next on this machine (round *n* pairs \
                 skyhost's and nginx's *n*-th runs):\n\n\
                 | file | round | skyhost req/s | nginx req/s | ratio | skyhost p99 | nginx p99 | p99 ratio |\n|---|---|---|---|---|---|---|---|"
            );
            for f in &t.files {
                for (i, (sky, ng)) in f.skyhost.iter().zip(&f.nginx).enumerate() {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {:.0} | {:.0} | {:.2}× | {:.3} ms | {:.3} ms | {:.2}× |",
                        f.label,
                        i + 1,
                        sky.rps,
                        ng.rps,
                        sky.rps / ng.rps,
                        sky.p99_ms,
                        ng.p99_ms,
                        sky.p99_ms / ng.p99_ms
                    );
                }
            }
            let errs: u64 = t
                .files
                .iter()
                .flat_map(|f| f.skyhost.iter().chain(&f.nginx))
                .map(|w| w.non_2xx + w.socket_errors)
                .sum();
            let _ = writeln!(
                s,
                "\nNon-2xx responses and socket errors over all runs: {errs}."
            );
        }
        None => s.push_str("Not measured (see Errors).\n"),
    }

    let _ = writeln!(s, "\n## 2. Handler cost\n");
    match &r.handler {
        Some(h) => {
            let _ = writeln!(
                s,
                "Criterion (`bench/harness/src/handler_bench.rs`): `Origin::handle` answering `GET /doc.html` (4 KB, in \
                 the in-process cache) with no network — SQLite in memory, folder bucket in a temp dir, `MemoryCache`, \
                 cache warmed first; the body is collected. Median **{:.2} µs** (95 % CI {:.2}–{:.2} µs), mean {:.2} µs.",
                h.median_us, h.median_ci_us.0, h.median_ci_us.1, h.mean_us
            );
            let _ = writeln!(
                s,
                "\nThe benchmark repeats one request, so from the second on it is answered from the serving thread's \
                 kept answers (`crates/origin/src/answers.rs`)."
            );
            if let Some(f) = &r.handler_full_path {
                let _ = writeln!(
                    s,
                    " The whole path, measured with the same file requested with an `If-None-Match` that no longer \
                     matches (conditional requests never use kept answers): median **{:.2} µs** (95 % CI {:.2}–{:.2} µs), \
                     mean {:.2} µs.",
                    f.median_us, f.median_ci_us.0, f.median_ci_us.1, f.mean_us
                );
            }
        }
        None => s.push_str("Not measured (see Errors).\n"),
    }

    let _ = writeln!(s, "\n## 3. Cold start\n");
    match &r.cold_start {
        Some(c) => {
            let _ = writeln!(
                s,
                "From `exec` of each release binary to its first `GET /2018-06-01/runtime/invocation/next` on a local \
                 Runtime API stub (which then holds the request), {} measured starts each, round-robin, after one \
                 unmeasured round (the page cache is warm, as on a Lambda worker that has the image). The variables are \
                 those `template.yaml` sets plus what Lambda sets, and no endpoint override. In the unmeasured round, every \
                 AWS endpoint and `REDIS_URL` point at a listener, which must see no connection before the first poll. The \
                 baseline is `bench/hello-lambda`, built with the same profile. Page faults are each start's minor \
                 faults from `exec` to its first poll (`/proc/PID/stat`), medians.\n",
                c.runs
            );
            let _ = writeln!(
                s,
                "| function | median | p90 | fastest | ratio to hello-lambda | page faults |\n|---|---|---|---|---|---|"
            );
            for f in &c.functions {
                let _ = writeln!(
                    s,
                    "| {}{} | {} | {} | {} | {} | {} |",
                    f.name,
                    if f.budgeted || f.name == "hello-lambda" {
                        ""
                    } else {
                        " (no budget)"
                    },
                    ms(f.median_ms),
                    ms(f.p90_ms),
                    ms(f.min_ms),
                    f.ratio
                        .map(|x| format!("{x:.2}×"))
                        .unwrap_or_else(|| "–".into()),
                    f.minor_faults
                        .map(|n| format!("{n:.0}"))
                        .unwrap_or_else(|| "–".into())
                );
            }
            if !c.first_answer.is_empty() {
                let _ = writeln!(
                    s,
                    "\n**To the first answer.** From `exec` to the whole response to a first invocation: a stub \
                     hands each start the page request `events/skyhost/rest-api-get-page.json`, {} measured starts \
                     each, round-robin, after one unmeasured round. The origin is a new instance of a region whose \
                     Redis (a redis-server of this run) another instance has warmed: the host's site, its record, the \
                     manifest and the page, and the record's refresh claimed. It loads its SDK configuration and builds \
                     its DynamoDB and S3 clients on first use, so this answer does neither. hello-lambda echoes the event. No budget.\n\n\
                     | function | median | p90 | fastest | ratio to hello-lambda |\n|---|---|---|---|---|",
                    c.runs
                );
                for f in &c.first_answer {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} |",
                        f.name,
                        ms(f.median_ms),
                        ms(f.p90_ms),
                        ms(f.min_ms),
                        f.ratio
                            .map(|x| format!("{x:.2}×"))
                            .unwrap_or_else(|| "–".into())
                    );
                }
            }
            if let Some(us) = c.fault_cost_us {
                let _ = writeln!(
                    s,
                    "\nOne page fault (the first write to a fresh anonymous page) costs **{us:.2} µs** on this \
                     machine, measured in this run."
                );
            }
            if !c.init_steps.is_empty() {
                let _ = writeln!(
                    s,
                    "\nWhere init time goes, timed in-process by `init-probe` (`bench/harness/src/init_probe.rs`, \
                     release build, same profile; each scenario in a fresh process with the Lambda environment, \
                     medians of 10): `naive` is the first version's init (the default credential chain, one \
                     SDK config load per region, then DynamoDB and two S3 clients), `origin` what \
                     `Origin::from_env` does now in a replica region (the SDK configuration and the stores of \
                     the table and both buckets, nothing loaded or built before first use; the `first use` \
                     steps are what the first request that misses Redis then pays, once: the configuration's \
                     load with the environment's credentials and skyhost's shared connector, and the two \
                     clients it needs), \
                     `from-env` the origin's whole init (JSON logging, then `Origin::from_env` with \
                     the template's variables), `copier` what `Copier::from_env` builds (the SDK \
                     configuration, the primary bucket's client at init, then a replica region's client \
                     apiece, which the function builds on first use while its first read of the source \
                     is in flight), `connector` that connector with the compiled-in roots the \
                     Lambdas use, then with the system store the CLI uses, `caches` the in-process cache tiers \
                     and an expiring map, `native-roots` the system trust store alone, `reqwest` the \
                     replicator's client, `endpoint-rules` each SDK crate's default endpoint resolver (the \
                     first of a crate parses that crate's copy of the partition table; the second is the \
                     control), `aws-lc-rand` aws-lc's first random bytes.\n\n| scenario | step | median |\n|---|---|---|"
                );
                for p in &c.init_steps {
                    let v = if p.step == "certificates" {
                        // A count, not a duration.
                        format!("{:.0}", p.median_ms)
                    } else {
                        format!("{:.3} ms", p.median_ms)
                    };
                    let _ = writeln!(s, "| {} | {} | {v} |", p.scenario, p.step);
                }
            }
        }
        None => s.push_str("Not measured (see Errors).\n"),
    }

    let _ = writeln!(s, "\n## 4. Propagation\n");
    match &r.propagation {
        Some(p) => {
            let _ = writeln!(
                s,
                "Local mode with {} regions ({}). Each of {} deploys is uploaded with `--no-activate`; the clock starts \
                 when `skyhost rollback --to ID` (the activation) is started — so the figure includes that command's own \
                 start-up — and stops when every region's origin, polled directly with the `Host` header, answers with \
                 `X-Skyhost-Deployment: ID`. p50 **{:.0} ms**, p99 **{:.0} ms** (max of {} samples; the activation \
                 command itself took {:.0} ms at the median).",
                p.regions.len(),
                p.regions.join(", "),
                p.samples_ms.len(),
                p.p50_ms,
                p.p99_ms,
                p.samples_ms.len(),
                crate::stats::median(&p.activate_ms).unwrap_or(f64::NAN)
            );
        }
        None => s.push_str("Not measured (see Errors).\n"),
    }

    let _ = writeln!(s, "\n## 5. Deploy\n");
    match &r.deploy {
        Some(d) => {
            let _ = writeln!(
                s,
                "A generated site of {} files ({:.1} MB: pages, styles, scripts and images) deployed into a running \
                 three-region local mode with `skyhost --local DIR deploy … --json --quiet`.\n\n\
                 | step | wall time | uploaded |\n|---|---|---|\n\
                 | full deploy | {:.2} s | {} objects (precompressed variants included), {:.1} MB |\n\
                 | re-deploy, one file changed | **{:.2} s** | files_uploaded = **{}**, files_reused = {} |\n\n\
                 Hashing throughput: at least **{:.0} MB/s** — the re-deploy hashes all {:.1} MB again and uploads one \
                 file, so site bytes ÷ re-deploy time is a lower bound on the hashing rate.",
                d.files,
                d.bytes as f64 / 1e6,
                d.full_s,
                d.full_uploaded,
                d.full_bytes_uploaded as f64 / 1e6,
                d.redeploy_s,
                d.redeploy_files_uploaded,
                d.redeploy_files_reused,
                d.hash_mb_s,
                d.bytes as f64 / 1e6
            );
        }
        None => s.push_str("Not measured (see Errors).\n"),
    }

    let _ = writeln!(s, "\n## 6. Latency routing\n");
    match &r.latency {
        Some(l) => {
            let _ = writeln!(
                s,
                "`skyhost local up --emulate-latency`: time to first byte of `GET /index.html` through the edge router \
                 for a visitor in {} (`X-Skyhost-Client-Region`), {} requests each on fresh connections. Three regions: \
                 answered by {}, median **{:.1} ms**. A second instance with `--regions us-west-2` only: median \
                 **{:.1} ms**. Reduction **{:.1} %**.",
                l.visitor,
                l.nearest_ms.len(),
                l.nearest_region,
                l.nearest_p50_ms,
                l.far_p50_ms,
                l.reduction_pct
            );
        }
        None => s.push_str("Not measured (see Errors).\n"),
    }

    let _ = writeln!(s, "\n## 7. Memory\n");
    match &r.memory {
        Some(mm) => {
            let _ = writeln!(
                s,
                "VmRSS of the single-region `skyhost local up` process of section 1 (`--cache-bytes {}`), sampled every \
                 50 ms through all its wrk runs: idle {:.1} MiB, peak **{:.1} MiB**; budget cache cap + 64 MiB = {:.0} MiB.",
                mm.cache_bytes,
                mm.idle_bytes as f64 / MIB,
                mm.peak_bytes as f64 / MIB,
                mm.limit_bytes as f64 / MIB
            );
        }
        None => s.push_str("Not measured (see Errors).\n"),
    }

    let _ = writeln!(s, "\n## 8. Propagation to every instance\n");
    match &r.propagation_instances {
        Some(p) => {
            let _ = writeln!(
                s,
                "As section 4, with {} origin instances per region (`skyhost local up --instances {}`): they share no \
                 memory and a notification reaches one instance of a region, so the others must catch up by themselves. \
                 Every instance of every region ({} in all, ports from `DIR/instances.json`) gets a request every 50 ms \
                 throughout, as a busy region's do (an instance looks for missed changes when a request comes, at most \
                 every {every} ms), and each activation waits a different offset within one second, so the deploys sample \
                 that whole cycle. After each activation all instances are polled at once, directly, until each answers \
                 with `X-Skyhost-Deployment: ID`; the clock stops at the last one. Over {} deploys: p50 **{:.0} ms**, p99 **{:.0} ms** (the activation command itself took {:.0} ms at the median).",
                p.instances_per_region,
                p.instances_per_region,
                p.instances_per_region * p.regions.len(),
                p.samples_ms.len(),
                p.p50_ms,
                p.p99_ms,
                crate::stats::median(&p.activate_ms).unwrap_or(f64::NAN),
                every = skyhost_origin::converge::CHECK_EVERY.as_millis()
            );
        }
        None => s.push_str("Not measured (see Errors).\n"),
    }

    let _ = writeln!(s, "\n## 9. Primary outage under load\n");
    match &r.outage {
        Some(o) => {
            let _ = writeln!(
                s,
                "Local mode with the primary {} and the replicas {} ({} instances per region; the edge router checks each region every {} ms \
                 and takes it out after {} failed checks). {} clients per visitor region send `GET /index.html` through \
                 the edge router one after another on fresh connections (`X-Skyhost-Client-Region`), {} requests in \
                 {:.1} s. Under that load `skyhost local outage {}` takes the primary out ({:.0} ms for the command): its \
                 table replica, bucket, origins and notify endpoint become unreachable. {}'s visitors were first \
                 answered by a replica ({}) **{:.0} ms** after the command started (budget: the failover window, {:.0} \
                 ms); {} of their requests got no 2xx before that. From the outage's start to the end of the load, the \
                 replicas answered for {} requests (their own visitors' and any they served) with **{} non-2xx** \
                 (budget 0). After `skyhost local restore {}`, the primary answered its visitors again after {}.",
                o.primary,
                o.replicas.join(", "),
                o.instances_per_region,
                o.health_interval_ms,
                o.failure_threshold,
                o.clients_per_region,
                o.requests,
                o.load_s,
                o.primary,
                o.outage_command_ms,
                o.primary,
                o.failover_region,
                o.failover_ms,
                o.window_ms(),
                o.primary_failed,
                o.replica_requests,
                o.replica_non_2xx,
                o.primary,
                o.back_ms
                    .map(|b| format!("{b:.0} ms"))
                    .unwrap_or_else(|| "an unmeasured time".into())
            );
        }
        None => s.push_str("Not measured (see Errors).\n"),
    }

    if !r.errors.is_empty() {
        let _ = writeln!(s, "\n## Errors\n");
        for e in &r.errors {
            let _ = writeln!(s, "- {}", e.replace('\n', " "));
        }
    }
    if !notes.trim().is_empty() {
        let _ = writeln!(s, "\n{}", notes.trim_end());
    }
    s
}

/// The one-line-per-budget summary printed at the end of a run.
pub fn summary(r: &Results) -> String {
    let mut s = String::new();
    for v in verdicts(r) {
        let _ = writeln!(
            s,
            "{:<46} {:<34} budget {:<16} {}",
            v.what,
            v.figure,
            v.budget,
            met(v.met).replace("**", "")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::sample;

    #[test]
    fn page_has_every_section_and_figure() {
        let r = sample();
        let page = render(
            &r,
            "bench/results/x.json",
            Some("bench/results/chart.png"),
            "## Where the time goes\n\nnotes",
        );
        for want in [
            "# Benchmarks",
            "| CPU | Test CPU (2 logical cores) |",
            "## 1. Throughput",
            "| html-1k `/html-1k` | 50000 | 40000 | 1.25× |",
            "| html-1k | 1 | 50000 | 40000 | 1.25× | 2.000 ms | 3.000 ms | 0.67× |",
            "## 2. Handler cost",
            "Median **7.50 µs**",
            "The whole path, measured with the same file",
            "median **9.50 µs**",
            "| skyhost-replicator | 13.60 ms |",
            "| native-roots | load native roots | 2.500 ms |",
            "**To the first answer.**",
            "| skyhost-origin (warm Redis) | 6.00 ms |",
            "3.40×",
            "p99 **120 ms**",
            "files_uploaded = **1**",
            "Reduction **97.9 %**",
            "peak **150.0 MiB**",
            "## 8. Propagation to every instance",
            "(4 in all, ports from `DIR/instances.json`)",
            "p99 **1100 ms**",
            "| propagation to every instance p99 | 1100 ms (p50 300 ms, 2 per region) | ≤ 1000 ms | **missed** |",
            "## 9. Primary outage under load",
            "answered by a replica (eu-central-1) **1700 ms** after the command started (budget: the failover window, 1900 ms)",
            "with **0 non-2xx** (budget 0)",
            "| primary outage: replicas' non-2xx | 0 of 3000 | = 0 | met |",
            "| origin memory under load | 150.0 MiB | ≤ 128 MiB | **missed** |",
            "![make bench results](bench/results/chart.png)",
            "## Where the time goes",
        ] {
            assert!(page.contains(want), "missing {want:?} in\n{page}");
        }
        assert!(!page.contains("## Errors"));
    }

    #[test]
    fn failed_sections_say_so() {
        let r = Results {
            errors: vec!["throughput: wrk failed\nbadly".into()],
            ..Default::default()
        };
        let page = render(&r, "r.json", None, "");
        assert!(page.contains("## Errors\n\n- throughput: wrk failed badly"));
        assert!(
            page.matches("Not measured (see Errors).").count() == 9,
            "{page}"
        );
        assert!(summary(&r).contains("not measured"));
    }
}
