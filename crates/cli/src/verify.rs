//! `skyhost verify [--repair]`: anti-entropy. Every blob of every active manifest must be
//! in every region's bucket; with `--repair`, what is missing is copied from the primary.
//! The scheduled sweep and the activation check run the same repair code
//! (`skyhost_asset_copier::repair`).

use crate::backend::Backend;
use anyhow::Result;
use serde::Serialize;

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
    let copier = crate::heal::copier(backend);
    let mut gaps = Vec::new();
    for site in backend.meta.sites().await? {
        // The primary is checked too: a blob missing there cannot be repaired from it.
        for g in copier.check_site(&site, repair).await? {
            for e in &g.errors {
                tracing::warn!(site = %g.site, region = %g.region, error = %e, "not repaired");
            }
            gaps.push(Gap {
                site: g.site,
                region: g.region,
                missing: g.missing,
                repaired: g.repaired,
            });
        }
    }
    Ok(gaps)
}
