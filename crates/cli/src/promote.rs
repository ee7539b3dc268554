//! `skyhost promote --site NAME ID`: make a deployment (a preview) the live one, with the
//! same conditional write on the site's revision as a rollback.

use crate::activate::{update_site, Change};
use crate::backend::Backend;
use anyhow::{bail, Context, Result};
use skyhost_meta::{DeploymentId, Site, SiteId};

/// Activates `deployment`; the site must exist and not already serve it.
pub async fn promote(backend: &Backend, site: &SiteId, deployment: &DeploymentId) -> Result<Site> {
    let current = backend
        .meta
        .site(site)
        .await?
        .with_context(|| format!("site {site} does not exist (see `skyhost sites`)"))?;
    if current.active.as_ref() == Some(deployment) {
        bail!("deployment {deployment} is already live");
    }
    update_site(
        backend.meta.as_ref(),
        site,
        Change {
            activate: Some(deployment),
            ..Default::default()
        },
    )
    .await
}
