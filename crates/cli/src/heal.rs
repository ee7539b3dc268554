//! The CLI's side of self-healing replication: the asset copier's repair code run from a
//! command — `deploy --wait-replicas` (check and copy what the replicas lack, then
//! activate), `verify` and `status` (what each region still lacks).

use crate::backend::Backend;
use anyhow::{bail, Result};
use skyhost_asset_copier::repair::{self, RegionGap};
use skyhost_asset_copier::Copier;
use skyhost_meta::metrics::Metrics;
use skyhost_meta::{Manifest, Site};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The copier over the backend's buckets (server-side copies between S3 buckets), able
/// to sweep its sites.
pub fn copier(backend: &Backend) -> Copier {
    let replicas = backend
        .replicas
        .iter()
        .map(|r| (r.name.clone(), r.bucket.clone()))
        .collect();
    Copier::new(backend.primary.bucket.clone(), replicas, Default::default())
        .with_metrics(Metrics::discard())
        .with_source_region(&backend.primary.name)
        .with_meta(Arc::clone(&backend.meta))
}

/// Before `m` goes live: copies into every replica what it lacks of `m`, and waits until
/// every replica holds all of it (the copier may be copying the same keys; copies are
/// idempotent). Every key is checked, not only those new over the live deployment: one
/// listing per region, and the promise holds even if an earlier check was lost. Fails
/// after `timeout`, leaving `m` inactive.
pub async fn wait_replicas(backend: &Backend, m: &Manifest, timeout: Duration) -> Result<()> {
    let copier = copier(backend);
    let wanted = repair::manifest_keys(m);
    let start = Instant::now();
    loop {
        let last = match copier.check_keys(&m.site, &wanted, true).await {
            Ok(gaps) if gaps.iter().all(|g| g.unrepaired() == 0) => return Ok(()),
            Ok(gaps) => gaps
                .iter()
                .find(|g| g.unrepaired() > 0)
                .map(|g| {
                    format!(
                        "region {} still lacks {} of {} objects ({})",
                        g.region,
                        g.unrepaired(),
                        wanted.len(),
                        g.errors.first().map(String::as_str).unwrap_or("no error")
                    )
                })
                .unwrap_or_default(),
            Err(e) => format!("checking the replicas failed: {e}"),
        };
        if start.elapsed() > timeout {
            bail!(
                "{last} after {timeout:?}; deployment {} is uploaded but NOT active (activate it later with `skyhost rollback --site {} --to {}`)",
                m.deployment,
                m.site,
                m.deployment
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Per region (the primary first), how many keys of the site's live deployment it lacks.
pub async fn missing_per_region(backend: &Backend, site: &Site) -> Result<Vec<(String, usize)>> {
    let gaps: Vec<RegionGap> = copier(backend).check_site(site, false).await?;
    Ok(backend
        .regions()
        .map(|r| {
            let n = gaps
                .iter()
                .filter(|g| g.region == r.name)
                .map(|g| g.missing.len())
                .sum();
            (r.name.clone(), n)
        })
        .collect())
}
