//! Command-line parsing and dispatch. The invocations are a contract other tools rely on.

use crate::backend::{AwsOptions, Backend};
use crate::deploy::{deploy, DeployOptions};
use crate::local::layout::DEFAULT_REGIONS;
use crate::local::up::{up, UpOptions};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use skyhost_meta::{DeploymentId, Domain, SiteId};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// skyhost: multi-region static website hosting.
#[derive(Parser, Debug)]
#[command(name = "skyhost", version, about)]
pub struct Cli {
    /// Act on the local-mode folder DIR instead of AWS.
    #[arg(long, global = true, value_name = "DIR")]
    pub local: Option<PathBuf>,
    #[command(flatten)]
    pub aws: AwsOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Deploy a folder as a new deployment of a site, and activate it.
    Deploy {
        /// The folder to deploy.
        dir: PathBuf,
        /// The site (created on its first deploy).
        #[arg(long)]
        site: SiteId,
        /// A domain the site answers on (repeatable).
        #[arg(long = "domain")]
        domains: Vec<Domain>,
        /// A note kept with the deployment.
        #[arg(long)]
        message: Option<String>,
        /// Upload and record it, but leave the active deployment as it is.
        #[arg(long)]
        no_activate: bool,
        /// Copy what the replica buckets lack, and activate only once they hold every blob.
        #[arg(long)]
        wait_replicas: bool,
        /// How long --wait-replicas waits, in seconds.
        #[arg(long, default_value_t = 120)]
        wait_timeout: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
        /// Publish dotfiles and dot-folders too (`.env`, `.npmrc`, `.aws/`…); without it
        /// only the root's `.well-known/` is.
        #[arg(long)]
        include_hidden: bool,
    },
    /// Activate an earlier deployment (the previous one unless --to names one).
    Rollback {
        /// The site.
        #[arg(long)]
        site: SiteId,
        /// The deployment to activate.
        #[arg(long)]
        to: Option<DeploymentId>,
    },
    /// Make a deployment (a preview) live, with the same conditional write as rollback.
    Promote {
        /// The site.
        #[arg(long)]
        site: SiteId,
        /// The deployment to make live.
        deployment: DeploymentId,
    },
    /// List a site's deployments, newest first: id, date, message, files, bytes, whether
    /// it is live, and its preview URL.
    Deployments {
        /// The site.
        #[arg(long)]
        site: SiteId,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete the manifests and blobs no kept deployment references, in every region.
    Gc {
        /// Keep every deployment younger than this (`7d`, `12h`, `30m`).
        #[arg(long, default_value = "7d", value_parser = crate::gc::parse_age)]
        older_than: Duration,
        /// Keep the newest N deployments of each site.
        #[arg(long, default_value_t = 5)]
        keep: usize,
        /// Keep everything younger than this: a deploy in flight is never touched.
        #[arg(long, default_value = "1h", value_parser = crate::gc::parse_age)]
        grace: Duration,
        /// Print what would be freed; delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Per region: the active deployment, revision and health.
    Status {
        /// Only this site.
        #[arg(long)]
        site: Option<SiteId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Refresh the view in place every --interval seconds, until Ctrl-C.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
        /// Seconds between refreshes with --watch.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
    },
    /// Serve a live dashboard: a map of the regions' health, what each serves of each
    /// site, the last deploys, and each region's traffic.
    Dashboard {
        /// Where to serve the page.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// Milliseconds between polls of the regions.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
        interval_ms: u64,
    },
    /// List the sites (or delete one).
    Sites {
        #[command(subcommand)]
        action: Option<SitesAction>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A site's domains: add (with a certificate on AWS), status, remove.
    Domains {
        #[command(subcommand)]
        action: DomainAction,
    },
    /// Check that every blob of every active deployment is in every region.
    Verify {
        /// Copy what is missing from the primary region.
        #[arg(long)]
        repair: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Operator actions on a region.
    Region {
        #[command(subcommand)]
        action: RegionAction,
    },
    /// Local multi-region mode.
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
}

/// `sites` actions.
#[derive(Subcommand, Debug)]
pub enum SitesAction {
    /// Delete a site: every region answers 404 for its domains and previews within a
    /// second, and its domains are free to claim. Its files go with the next `gc`.
    Delete {
        /// The site.
        site: SiteId,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `domains` actions.
#[derive(Subcommand, Debug)]
pub enum DomainAction {
    /// Add domains to a site; on AWS, request their certificates and print the DNS
    /// records to create (the rest finishes on its own).
    Add {
        /// The site.
        #[arg(long)]
        site: SiteId,
        /// The domains.
        #[arg(required = true)]
        domains: Vec<Domain>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Each domain's state: pending validation, issued, attached, serving, failing.
    Status {
        /// Only this site's domains.
        #[arg(long)]
        site: Option<SiteId>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove domains from a site.
    Remove {
        /// The site.
        #[arg(long)]
        site: SiteId,
        /// The domains.
        #[arg(required = true)]
        domains: Vec<Domain>,
    },
}

/// `region` actions.
#[derive(Subcommand, Debug)]
pub enum RegionAction {
    /// Drain (`on`) or restore (`off`) a region: its health check answers 503 while on.
    Maintenance {
        /// The region.
        region: String,
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

/// `local` actions.
#[derive(Subcommand, Debug)]
pub enum LocalAction {
    /// Run every region, the replication pipeline and the edge router on this machine.
    Up {
        /// The state folder.
        #[arg(long, default_value = ".skyhost")]
        dir: PathBuf,
        /// The edge router's port; origins listen on the ports right after it.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Regions, primary first.
        #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_REGIONS.iter().map(|s| s.to_string()))]
        regions: Vec<String>,
        /// Delay each answer by the simulated round trip between visitor and region.
        #[arg(long)]
        emulate_latency: bool,
        /// Milliseconds between health checks.
        #[arg(long, default_value_t = 2000)]
        health_interval_ms: u64,
        /// Failed checks in a row before a region is taken out.
        #[arg(long, default_value_t = 3)]
        failure_threshold: u32,
        /// Each origin's in-process cache, in bytes.
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        cache_bytes: u64,
        /// Threads serving each origin instance (default: one per core).
        #[arg(long)]
        origin_threads: Option<usize>,
        /// Origin instances per region; they share no memory, and a notification
        /// reaches one of them.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        instances: u16,
    },
    /// Take a whole region out (outage drill): its table replica, bucket, origins and
    /// notify endpoint become unreachable.
    Outage {
        /// The region.
        region: String,
        /// The state folder.
        #[arg(long, default_value = ".skyhost")]
        dir: PathBuf,
    },
    /// Bring a region back after `local outage`.
    Restore {
        /// The region.
        region: String,
        /// The state folder.
        #[arg(long, default_value = ".skyhost")]
        dir: PathBuf,
    },
    /// Hold back a region's notifications and table replication: it goes on serving what
    /// it has and falls behind (a lagging region, for the dashboard and drills).
    Hold {
        /// The region (not the primary).
        region: String,
        /// The state folder.
        #[arg(long, default_value = ".skyhost")]
        dir: PathBuf,
    },
    /// Let a held region catch up.
    Release {
        /// The region.
        region: String,
        /// The state folder.
        #[arg(long, default_value = ".skyhost")]
        dir: PathBuf,
    },
    /// Put a region in maintenance (failover drill).
    Fail {
        /// The region.
        region: String,
        /// The state folder.
        #[arg(long, default_value = ".skyhost")]
        dir: PathBuf,
    },
    /// Take a region out of maintenance.
    Heal {
        /// The region.
        region: String,
        /// The state folder.
        #[arg(long, default_value = ".skyhost")]
        dir: PathBuf,
    },
}

/// Parses, runs, and turns errors into a message and exit code 1.
pub fn main(cli: Cli) -> ExitCode {
    let log_json = std::env::var("SKYHOST_LOG_JSON").is_ok_and(|v| v == "1");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log_json {
        sub.json().init();
    } else {
        sub.init();
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn backend(cli: &Cli) -> Result<Backend> {
    match &cli.local {
        Some(dir) => Backend::local(dir),
        None => Backend::aws(&cli.aws).await,
    }
}

/// The backend of a command that writes: it fails fast, before anything is written, when
/// the primary region (the only writer) does not answer.
async fn writer_backend(cli: &Cli) -> Result<Backend> {
    let b = backend(cli).await?;
    b.require_primary().await?;
    Ok(b)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Deploy {
            dir,
            site,
            domains,
            message,
            no_activate,
            wait_replicas,
            wait_timeout,
            json,
            quiet,
            include_hidden,
        } => {
            let b = writer_backend(&cli).await?;
            let report = deploy(
                &b,
                &DeployOptions {
                    dir: dir.clone(),
                    site: site.clone(),
                    domains: domains.clone(),
                    message: message.clone(),
                    activate: !no_activate,
                    wait_replicas: *wait_replicas,
                    wait_timeout: Duration::from_secs(*wait_timeout),
                    quiet: *quiet || *json,
                    include_hidden: *include_hidden,
                },
            )
            .await
            .with_context(|| format!("deploying {} to site {site}", dir.display()))?;
            if *json {
                print_json(&report)?;
            } else {
                println!("deployment {} of site {site}", report.deployment);
                println!(
                    "  {} files: {} uploaded, {} reused ({} blobs, {} bytes uploaded incl. precompressed variants)",
                    report.files,
                    report.files_uploaded,
                    report.files_reused,
                    report.uploaded,
                    report.bytes_uploaded
                );
                if !report.hidden_skipped.is_empty() {
                    println!("  {}", hidden_note(&report.hidden_skipped));
                }
                match &report.site {
                    Some(s) if s.active.as_ref() == Some(&report.deployment) => {
                        println!("  active (revision {})", s.revision)
                    }
                    _ => println!(
                        "  not live; make it live with `skyhost promote --site {site} {}`",
                        report.deployment
                    ),
                }
                if let Some(p) = &report.preview {
                    println!("  preview {p}");
                }
                if let Some(url) = &b.public_url {
                    let domains = report
                        .site
                        .as_ref()
                        .map(|s| s.domains.clone())
                        .unwrap_or_default();
                    println!("  {}", visit_hint(url, &domains));
                }
            }
        }
        Command::Rollback { site, to } => {
            let b = writer_backend(&cli).await?;
            let s = crate::rollback::rollback(&b, site, to.as_ref()).await?;
            println!(
                "site {site} now serves {} (revision {})",
                s.active.as_ref().map(|d| d.as_str()).unwrap_or("-"),
                s.revision
            );
        }
        Command::Status {
            site,
            json,
            watch,
            interval,
        } => {
            let b = backend(&cli).await?;
            if *watch {
                crate::status::watch(&b, site.as_ref(), Duration::from_secs(*interval)).await?;
                return Ok(ExitCode::SUCCESS);
            }
            let st = crate::status::status(&b, site.as_ref()).await?;
            if *json {
                print_json(&st)?;
            } else {
                print!("{}", crate::status::render(&st));
            }
        }
        Command::Dashboard {
            listen,
            interval_ms,
        } => {
            let interval = Duration::from_millis(*interval_ms);
            let dashboard = match &cli.local {
                Some(dir) => crate::dashboard::Dashboard::local(dir, interval)?,
                None => crate::dashboard::Dashboard::aws(backend(&cli).await?, interval).await?,
            };
            crate::dashboard::run(
                dashboard,
                crate::dashboard::DashboardOptions {
                    listen: *listen,
                    interval,
                },
            )
            .await?;
        }
        Command::Promote { site, deployment } => {
            let b = writer_backend(&cli).await?;
            let s = crate::promote::promote(&b, site, deployment).await?;
            println!(
                "site {site} now serves {deployment} (revision {})",
                s.revision
            );
        }
        Command::Deployments { site, json } => {
            let b = backend(&cli).await?;
            let list = crate::deployments::deployments(&b, site).await?;
            if *json {
                print_json(&list)?;
            } else {
                print!("{}", crate::deployments::render(site, &list));
            }
        }
        Command::Gc {
            older_than,
            keep,
            grace,
            dry_run,
            json,
        } => {
            let o = crate::gc::GcOptions {
                older_than: *older_than,
                keep: *keep,
                grace: *grace,
                dry_run: *dry_run,
            };
            crate::gc::check(&o)?;
            let b = writer_backend(&cli).await?;
            // What it frees is printed before anything is deleted.
            let report = crate::gc::gc(&b, &o, |r| {
                if !*json {
                    print!("{}", crate::gc::render(r));
                }
            })
            .await?;
            if *json {
                print_json(&report)?;
            } else if *dry_run {
                println!("dry run: nothing was deleted");
            } else {
                println!("done");
            }
        }
        Command::Sites {
            action: Some(SitesAction::Delete { site, yes, json }),
            ..
        } => {
            crate::delete::confirm(site, *yes)?;
            let b = writer_backend(&cli).await?;
            let d = crate::delete::delete(&b, site).await?;
            if *json {
                print_json(&d)?;
            } else {
                println!(
                    "site {site} deleted (revision {}); every region stops serving it within a second",
                    d.revision
                );
                if !d.domains.is_empty() {
                    println!(
                        "  domains free to claim: {}",
                        d.domains
                            .iter()
                            .map(|d| d.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                println!(
                    "  {} deployment records removed; `skyhost gc` deletes its files",
                    d.deployments
                );
            }
        }
        Command::Sites { action: None, json } => {
            let b = backend(&cli).await?;
            let sites = b.meta.sites().await?;
            if *json {
                print_json(&sites)?;
            } else {
                for s in &sites {
                    println!(
                        "{:<24} revision {:<5} active {:<26} {}",
                        s.id,
                        s.revision,
                        s.active.as_ref().map(|d| d.as_str()).unwrap_or("-"),
                        s.domains
                            .iter()
                            .map(|d| d.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                }
                if sites.is_empty() {
                    println!("no sites yet");
                }
            }
        }
        Command::Domains {
            action: DomainAction::Status { site, json },
        } => {
            let b = backend(&cli).await?;
            let rows = crate::domains::status(&b, site.as_ref(), cli.local.is_some()).await?;
            if *json {
                print_json(&rows)?;
            } else {
                print!("{}", crate::domains::render(&rows));
            }
        }
        Command::Domains { action } => {
            let b = writer_backend(&cli).await?;
            let (site, add, remove, json): (&SiteId, &[Domain], &[Domain], bool) = match action {
                DomainAction::Add {
                    site,
                    domains,
                    json,
                } => (site, domains, &[], *json),
                DomainAction::Remove { site, domains } => (site, &[], domains, false),
                DomainAction::Status { .. } => unreachable!("answered above"),
            };
            if matches!(action, DomainAction::Remove { .. }) && b.meta.site(site).await?.is_none() {
                anyhow::bail!("site {site} does not exist");
            }
            let s = crate::activate::update_site(
                b.meta.as_ref(),
                site,
                crate::activate::Change {
                    activate: None,
                    add_domains: add,
                    remove_domains: remove,
                },
            )
            .await?;
            let mapped = format!(
                "site {site} domains: {} (revision {})",
                s.domains
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                s.revision
            );
            if !add.is_empty() {
                // The mapping first: the certificate and route then lead to the site.
                let rows = crate::domains::add(&b, site, add, cli.local.is_some()).await?;
                if json {
                    print_json(&rows)?;
                } else {
                    println!("{mapped}");
                    print!("{}", crate::domains::render(&rows));
                    if rows.iter().any(|r| !r.records.is_empty()) {
                        println!("skyhost finishes on its own once the certificates are issued; `skyhost domains status` follows it.");
                    }
                }
            } else {
                println!("{mapped}");
                let pending = crate::domains::remove(&b, remove).await?;
                if !pending.is_empty() {
                    println!(
                        "still being taken down (the domains function finishes): {}",
                        pending.join(", ")
                    );
                }
            }
        }
        Command::Verify { repair, json } => {
            let b = backend(&cli).await?;
            let gaps = crate::verify::verify(&b, *repair).await?;
            if *json {
                print_json(&gaps)?;
            } else if gaps.is_empty() {
                println!("every region holds every blob of every active deployment");
            } else {
                for g in &gaps {
                    println!(
                        "site {} region {}: {} missing{}",
                        g.site,
                        g.region,
                        g.missing.len(),
                        if *repair {
                            format!(", {} repaired", g.repaired)
                        } else {
                            String::new()
                        }
                    );
                    for k in g.missing.iter().take(10) {
                        println!("    {k}");
                    }
                }
            }
            let unrepaired = gaps.iter().any(|g| g.repaired < g.missing.len());
            if unrepaired {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Region {
            action: RegionAction::Maintenance { region, state },
        } => {
            let on = state == "on";
            crate::status::set_maintenance(&backend(&cli).await?, region, on).await?;
            println!(
                "region {region} maintenance {state}{}",
                if on {
                    ": its health check answers 503 and visitors move to the next closest healthy region"
                } else {
                    ""
                }
            );
        }
        Command::Local { action } => match action {
            LocalAction::Up {
                dir,
                port,
                regions,
                emulate_latency,
                health_interval_ms,
                failure_threshold,
                cache_bytes,
                origin_threads,
                instances,
            } => {
                up(UpOptions {
                    dir: dir.clone(),
                    port: *port,
                    regions: regions.clone(),
                    emulate_latency: *emulate_latency,
                    health_interval: Duration::from_millis((*health_interval_ms).max(10)),
                    threshold: *failure_threshold,
                    cache_bytes: *cache_bytes,
                    origin_threads: origin_threads.unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(1, |n| n.get())
                    }),
                    instances: usize::from(*instances),
                })
                .await?;
            }
            LocalAction::Fail { region, dir } => {
                crate::status::set_maintenance(&Backend::local(dir)?, region, true)
                    .await
                    .context("setting the maintenance flag")?;
                println!("region {region} is in maintenance: its health check answers 503 and visitors move to the next closest region");
            }
            LocalAction::Outage { region, dir } => {
                crate::local::drill::drill(dir, region, true)?;
                println!("region {region} is out: its table replica, bucket, origins and notify endpoint are unreachable; `skyhost local restore {region}` brings it back");
            }
            LocalAction::Hold { region, dir } => {
                crate::local::drill::hold(dir, region, true)?;
                println!("region {region} is held: it serves what it has and falls behind; `skyhost local release {region}` lets it catch up");
            }
            LocalAction::Release { region, dir } => {
                crate::local::drill::hold(dir, region, false)?;
                println!("region {region} is released: it catches up with every change it missed");
            }
            LocalAction::Restore { region, dir } => {
                crate::local::drill::drill(dir, region, false)?;
                println!("region {region} is back: it catches up with every change it missed");
            }
            LocalAction::Heal { region, dir } => {
                crate::status::set_maintenance(&Backend::local(dir)?, region, false)
                    .await
                    .context("clearing the maintenance flag")?;
                println!("region {region} is out of maintenance");
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// Where to see a site: `*.localhost` names resolve to this machine, so local mode can give
/// a URL a browser opens as it is; other domains need their `Host` header.
/// The line that says which hidden entries a deploy left out.
fn hidden_note(hidden: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut names = hidden[..hidden.len().min(SHOWN)].join(", ");
    if hidden.len() > SHOWN {
        names.push_str(", …");
    }
    format!(
        "{} hidden entr{} not published ({names}); --include-hidden publishes them",
        hidden.len(),
        if hidden.len() == 1 { "y" } else { "ies" }
    )
}

fn visit_hint(url: &str, domains: &[Domain]) -> String {
    let local = domains
        .iter()
        .find(|d| d.as_str() == "localhost" || d.as_str().ends_with(".localhost"));
    match (local, url.strip_prefix("http://127.0.0.1")) {
        (Some(d), Some(port)) => format!("url http://{d}{port}/"),
        _ => match domains.first() {
            Some(d) => format!("url {url}/  (Host: {d})"),
            None => format!("url {url}/  (add a domain with --domain to reach it)"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visit_hints() {
        let d = |s: &str| Domain::parse(s).unwrap();
        let cases = [
            (
                "http://127.0.0.1:8080",
                vec![d("example.localhost"), d("localhost")],
                "url http://example.localhost:8080/",
            ),
            (
                "http://127.0.0.1:8080",
                vec![d("shop.example")],
                "url http://127.0.0.1:8080/  (Host: shop.example)",
            ),
            (
                "https://sites.example",
                vec![d("a.localhost")],
                "url https://sites.example/  (Host: a.localhost)",
            ),
            (
                "http://127.0.0.1:9000",
                vec![],
                "url http://127.0.0.1:9000/  (add a domain with --domain to reach it)",
            ),
        ];
        for (url, domains, want) in cases {
            assert_eq!(visit_hint(url, &domains), want);
        }
    }
}
