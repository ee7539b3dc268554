//! `skyhost local up`.

use super::drill::{Outages, RegionBucket, RegionTable};
use super::edge::{self, Edge, EdgeOptions};
use super::layout::Layout;
use super::{feeds, front};
use anyhow::{Context, Result};
use skyhost_asset_copier::Copier;
use skyhost_meta::blob::fs::FsBlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::Tiered;
use skyhost_meta::metrics::Metrics;
use skyhost_meta::notify::HttpNotifier;
use skyhost_meta::secrets::Secret;
use skyhost_meta::store::sqlite::SqliteStore;
use skyhost_origin::{Origin, OriginConfig};
use skyhost_replicator::Replicator;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How local mode runs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The state folder.
    pub dir: PathBuf,
    /// The edge router's port; origins on the ports right after it.
    pub port: u16,
    /// Regions, primary first.
    pub regions: Vec<String>,
    /// Delay answers by the simulated round trip.
    pub emulate_latency: bool,
    /// Time between health checks.
    pub health_interval: Duration,
    /// Failed checks before a region is taken out.
    pub threshold: u32,
    /// Each origin's in-process cache.
    pub cache_bytes: u64,
    /// Threads serving each origin instance.
    pub origin_threads: usize,
    /// Origin instances per region.
    pub instances: usize,
}

/// The cursor of one region's feed; a folder from before per-region feeds starts from
/// the shared cursor it had, so nothing is delivered twice or skipped.
fn region_cursor(layout: &Layout, feed: &str, region: &str) -> Result<std::path::PathBuf> {
    let own = layout.cursor_path(&format!("{feed}-{region}"));
    let shared = layout.cursor_path(feed);
    if !own.exists() && shared.exists() {
        std::fs::copy(&shared, &own)
            .with_context(|| format!("copying {} to {}", shared.display(), own.display()))?;
    }
    Ok(own)
}

async fn bind(port: u16, what: &str) -> Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} for {what} (is another `skyhost local up` running? pick another --port)"))
}

/// Runs local mode until Ctrl-C (or SIGTERM).
pub async fn up(o: UpOptions) -> Result<()> {
    let layout = Layout::new(&o.dir, o.regions.clone(), o.port)?;
    layout.save()?;
    let secret = layout.secret()?;
    let origin_verify = layout.origin_verify_secret()?;
    let outages = Outages::new(&o.dir);
    let holds = Outages::holds(&o.dir);
    // Each region's table: the primary's, written by the CLI, and a replica per other
    // region fed from the primary's change feed, as a DynamoDB global table would be.
    let tables = layout
        .regions
        .iter()
        .map(|r| {
            Ok(RegionTable {
                inner: SqliteStore::open(&layout.table_path(r), r)
                    .with_context(|| format!("opening {}", layout.table_path(r).display()))?,
                gate: outages.region(r),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let buckets = layout
        .regions
        .iter()
        .map(|r| {
            Ok(RegionBucket {
                inner: FsBlobStore::open(&layout.buckets_dir(), &Layout::bucket_name(r), r)?,
                gate: outages.region(r),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let edge_listener = bind(o.port, "the edge router").await?;
    let mut front_listeners = Vec::new();
    for (i, r) in layout.regions.iter().enumerate() {
        front_listeners.push(bind(layout.origin_port(i), &format!("the {r} origin")).await?);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let primary_bucket: Arc<dyn BlobStore> = Arc::new(buckets[0].clone());
    let mut bases = Vec::new();
    let mut instance_ports = serde_json::Map::new();
    for (i, (region, front)) in layout.regions.iter().zip(front_listeners).enumerate() {
        let mut ports = Vec::new();
        let mut direct = None;
        // The region's counters, shared by its instances: `/_skyhost/metrics` on the
        // region's port tells the region's totals whichever instance answers.
        let counters = skyhost_origin::counters::Counters::new(region);
        for _ in 0..o.instances.max(1) {
            // An instance shares nothing in memory with the region's others: its own
            // origin, caches and listener, as a Lambda instance.
            let mut config = OriginConfig::new(region, layout.primary());
            config.notify_secret = Secret::fixed(vec![secret.clone()]);
            // The edge router plays CloudFront: its header alone makes forwarded headers count.
            config.origin_verify = Some(Secret::file(&origin_verify));
            config.cache_bytes = o.cache_bytes;
            // `{id}--{site}.localhost` opens in a browser as it is.
            config.previews_domain = Some("localhost".into());
            // One machine, one operator: a site's proxy allowlist may reach local services.
            config.proxy.honor_allowlist = true;
            let origin = Arc::new(
                Origin::new(
                    config,
                    Arc::new(tables[i].clone()),
                    Arc::new(buckets[i].clone()),
                    (i > 0).then(|| primary_bucket.clone()),
                    Arc::new(Tiered::new(MemoryCache::new(o.cache_bytes), None)),
                )
                .with_counters(counters.clone()),
            );
            if o.instances <= 1 {
                // A single instance listens on the region's port itself.
                ports.push(layout.origin_port(i));
                direct = Some(origin);
                break;
            }
            let listener = bind(0, &format!("an instance of the {region} origin")).await?;
            ports.push(listener.local_addr()?.port());
            let mut stop = stop_rx.clone();
            let threads = o.origin_threads;
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) =
                    skyhost_origin::server::serve_threads(listener, origin, shutdown, threads).await
                {
                    tracing::error!(error = %e, "origin server stopped");
                }
            }));
        }
        instance_ports.insert(region.clone(), serde_json::json!(ports));
        tasks.push(match direct {
            Some(origin) => tokio::spawn(front::serve_direct(
                front,
                layout.origin_port(i),
                origin,
                o.origin_threads,
                outages.region(region),
                stop_rx.clone(),
            )),
            None => tokio::spawn(front::serve(
                front,
                layout.origin_port(i),
                ports,
                outages.region(region),
                stop_rx.clone(),
            )),
        });
        bases.push((
            region.clone(),
            format!("http://127.0.0.1:{}", layout.origin_port(i)),
        ));
    }
    std::fs::write(
        layout.instances_path(),
        serde_json::to_vec_pretty(&instance_ports)?,
    )?;

    let http = skyhost_meta::tls::http_client()
        .timeout(Duration::from_secs(5))
        .build()?;
    let notifier = Arc::new(HttpNotifier::new(http, secret.clone()));
    for (i, (region, base)) in bases.iter().enumerate() {
        // Every region is delivered on its own, from its own cursor: a dead or slow
        // region delays no other, and its notifications are retried until it is back.
        let replicator = Arc::new(
            Replicator::new(
                vec![(region.clone(), base.clone())],
                notifier.clone(),
                Default::default(),
            )
            // Metrics are for CloudWatch; local mode keeps stdout for people.
            .with_metrics(Metrics::discard()),
        );
        tasks.push(tokio::spawn(feeds::replicate(
            tables[0].clone(),
            replicator,
            holds.region(region),
            region_cursor(&layout, "changes", region)?,
            stop_rx.clone(),
        )));
        if i == 0 {
            continue;
        }
        tasks.push(tokio::spawn(feeds::replicate_table(
            tables[0].clone(),
            tables[i].clone(),
            holds.region(region),
            layout.cursor_path(&format!("table-{region}")),
            stop_rx.clone(),
        )));
        let copier = Arc::new(
            Copier::new(
                primary_bucket.clone(),
                vec![(
                    region.clone(),
                    Arc::new(buckets[i].clone()) as Arc<dyn BlobStore>,
                )],
                Default::default(),
            )
            .with_metrics(Metrics::discard()),
        );
        tasks.push(tokio::spawn(feeds::copy_assets(
            buckets[0].inner.clone(),
            outages.region(layout.primary()),
            copier,
            region_cursor(&layout, "blobs", region)?,
            stop_rx.clone(),
        )));
    }
    // Self-healing: the activation check on the change feed, the sweep and temp cleanup,
    // through one copier that knows every replica.
    let replicas: Vec<(String, Arc<dyn BlobStore>)> = layout
        .regions
        .iter()
        .zip(buckets.iter())
        .skip(1)
        .map(|(r, b)| (r.clone(), Arc::new(b.clone()) as Arc<dyn BlobStore>))
        .collect();
    let healer = Arc::new(
        Copier::new(primary_bucket.clone(), replicas, Default::default())
            .with_metrics(Metrics::discard())
            .with_source_region(layout.primary())
            .with_meta(Arc::new(tables[0].clone())),
    );
    tasks.push(tokio::spawn(super::heal::check_activations(
        tables[0].inner.clone(),
        healer.clone(),
        layout.cursor_path("activations"),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(super::heal::upkeep(
        buckets.iter().map(|b| b.inner.clone()).collect(),
        healer,
        stop_rx.clone(),
    )));

    let edge = Edge::new(
        bases.clone(),
        EdgeOptions {
            origin_verify: Some(edge_verify_value(&origin_verify)?),
            interval: o.health_interval,
            threshold: o.threshold,
            emulate_latency: o.emulate_latency,
        },
    )?;
    tasks.push(tokio::spawn(edge.clone().health_loop(stop_rx.clone())));
    let stop = stop_rx.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = edge::serve(edge_listener, edge, stop).await {
            tracing::error!(error = %e, "edge router stopped");
        }
    }));

    println!("skyhost local is up ({})", o.dir.display());
    // One column for the names, wide enough for the longest region (ap-southeast-1 and up).
    let width = bases
        .iter()
        .map(|(r, _)| r.len())
        .max()
        .unwrap_or(0)
        .max(11)
        + 2;
    println!(
        "  {:<width$}http://127.0.0.1:{}  (header {}: <region> picks the simulated visitor's location)",
        "edge router",
        o.port,
        edge::CLIENT_REGION
    );
    for (i, (r, b)) in bases.iter().enumerate() {
        println!(
            "  {:<width$}{}{}",
            r,
            b,
            if i == 0 { "  (primary)" } else { "" }
        );
    }
    println!(
        "Ctrl-C stops everything; the state in {} survives a restart.",
        o.dir.display()
    );

    wait_for_signal().await;
    println!("stopping…");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    Ok(())
}

/// The newest value of the origin-verify secret file, as the header the edge sends.
fn edge_verify_value(path: &std::path::Path) -> Result<http::HeaderValue> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let newest = skyhost_meta::secrets::parse_values(&raw)
        .into_iter()
        .next()
        .with_context(|| format!("{} holds no value", path.display()))?;
    http::HeaderValue::from_bytes(&newest)
        .with_context(|| format!("{} holds a value that cannot be a header", path.display()))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
