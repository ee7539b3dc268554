//! `skyhost verify [--repair]`: anti-entropy. Every blob of every active manifest must be
//! in every region's bucket; with `--repair`, what is missing is copied from the primary.

use crate::backend::Backend;
use crate::deploy::{missing_in, needed_keys};
use anyhow::{Context, Result};
use serde::Serialize;
use skyhost_meta::{keys, Manifest};

/// What verify found for one site and region.
#[derive(Debug, Serialize)]
pub struct Gap {
    /// The site.
    pub site: String,
    /// The region.
    pub region: String,
    /// Keys missing there.
    pub missing: Vec<String>,
    /// Keys copied by `--repair`.
    pub repaired: usize,
}

/// Checks (and with `repair`, fixes) every region.
pub async fn verify(backend: &Backend, repair: bool) -> Result<Vec<Gap>> {
    let mut gaps = Vec::new();
    for site in backend.meta.sites().await? {
        let Some(active) = &site.active else { continue };
        let mkey = keys::manifest(&site.id, active);
        let body = backend
            .primary
            .bucket
            .get(&mkey, None)
            .await?
            .with_context(|| format!("the primary bucket lacks {mkey}: the active deployment of {} cannot be verified", site.id))?
            .collect()
            .await?;
        let manifest: Manifest =
            serde_json::from_slice(&body).with_context(|| format!("{mkey} does not parse"))?;
        let needed = needed_keys(&manifest);
        // The primary is checked too: a blob missing there cannot be repaired from it.
        for r in backend.regions() {
            let missing = missing_in(r.bucket.as_ref(), &site.id, &needed).await?;
            if missing.is_empty() {
                continue;
            }
            let mut repaired = 0;
            if repair && r.name != backend.primary.name {
                for k in &missing {
                    r.bucket
                        .copy_from(backend.primary.bucket.as_ref(), k)
                        .await?;
                    repaired += 1;
                }
            }
            gaps.push(Gap {
                site: site.id.to_string(),
                region: r.name.clone(),
                missing,
                repaired,
            });
        }
    }
    Ok(gaps)
}
