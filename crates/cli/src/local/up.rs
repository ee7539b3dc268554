//! `skyhost local up`.

use super::edge::{self, Edge, EdgeOptions};
use super::feeds;
use super::layout::Layout;
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
    /// Threads serving each origin.
    pub origin_threads: usize,
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
    let store = SqliteStore::open(&layout.meta_path(), layout.primary())?;
    let buckets = layout
        .regions
        .iter()
        .map(|r| FsBlobStore::open(&layout.buckets_dir(), &Layout::bucket_name(r), r))
        .collect::<Result<Vec<_>, _>>()?;
    let edge_listener = bind(o.port, "the edge router").await?;
    let mut origin_listeners = Vec::new();
    for (i, r) in layout.regions.iter().enumerate() {
        origin_listeners.push(bind(layout.origin_port(i), &format!("the {r} origin")).await?);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let primary_bucket: Arc<dyn BlobStore> = Arc::new(buckets[0].clone());
    let mut bases = Vec::new();
    for (i, (region, listener)) in layout.regions.iter().zip(origin_listeners).enumerate() {
        let mut config = OriginConfig::new(region, layout.primary());
        config.notify_secrets = vec![secret.clone()];
        // The edge router plays CloudFront: its header alone makes forwarded headers count.
        config.origin_verify = Some(Secret::file(&origin_verify));
        config.cache_bytes = o.cache_bytes;
        // One machine, one operator: a site's proxy allowlist may reach local services.
        config.proxy.honor_allowlist = true;
        let origin = Arc::new(Origin::new(
            config,
            Arc::new(store.clone()),
            Arc::new(buckets[i].clone()),
            (i > 0).then(|| primary_bucket.clone()),
            Arc::new(Tiered::new(MemoryCache::new(o.cache_bytes), None)),
        ));
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
        bases.push((
            region.clone(),
            format!("http://127.0.0.1:{}", layout.origin_port(i)),
        ));
    }

    let http = skyhost_meta::tls::http_client()
        .timeout(Duration::from_secs(5))
        .build()?;
    // Metrics are for CloudWatch; local mode keeps stdout for people.
    let replicator = Arc::new(
        Replicator::new(
            bases.clone(),
            Arc::new(HttpNotifier::new(http, secret.clone())),
            Default::default(),
        )
        .with_metrics(Metrics::discard()),
    );
    tasks.push(tokio::spawn(feeds::replicate(
        store.clone(),
        replicator,
        layout.cursor_path("changes"),
        stop_rx.clone(),
    )));
    let replicas: Vec<(String, Arc<dyn BlobStore>)> = layout
        .regions
        .iter()
        .zip(buckets.iter())
        .skip(1)
        .map(|(r, b)| (r.clone(), Arc::new(b.clone()) as Arc<dyn BlobStore>))
        .collect();
    let copier = Arc::new(
        Copier::new(primary_bucket.clone(), replicas, Default::default())
            .with_metrics(Metrics::discard())
            .with_source_region(layout.primary())
            .with_meta(Arc::new(store.clone())),
    );
    tasks.push(tokio::spawn(feeds::copy_assets(
        buckets[0].clone(),
        copier.clone(),
        layout.cursor_path("blobs"),
        stop_rx.clone(),
    )));
    // Self-healing: the activation check on the change feed, the sweep and temp cleanup.
    tasks.push(tokio::spawn(super::heal::check_activations(
        store.clone(),
        copier.clone(),
        layout.cursor_path("activations"),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(super::heal::upkeep(
        buckets.clone(),
        copier,
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
