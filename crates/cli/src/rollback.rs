//! `skyhost rollback`: make an earlier deployment active again — instant, since every
//! deployment's manifest and blobs are immutable and still in every bucket.

use crate::activate::{update_site, Change};
use crate::backend::Backend;
use anyhow::{bail, Context, Result};
use skyhost_meta::{DeploymentId, DeploymentState, Site, SiteId};

/// Activates `to`, or the newest ready deployment older than the active one.
pub async fn rollback(backend: &Backend, site: &SiteId, to: Option<&DeploymentId>) -> Result<Site> {
    let current = backend
        .meta
        .site(site)
        .await?
        .with_context(|| format!("site {site} does not exist"))?;
    let target = match to {
        Some(t) => t.clone(),
        None => {
            let active = current.active.clone().with_context(|| {
                format!("site {site} has no active deployment; name one with --to")
            })?;
            let deployments = backend.meta.deployments(site).await?;
            match deployments
                .into_iter()
                .find(|d| d.id < active && d.state == DeploymentState::Ready)
            {
                Some(d) => d.id,
                None => bail!("site {site} has no deployment older than {active} to roll back to"),
            }
        }
    };
    if current.active.as_ref() == Some(&target) {
        bail!("deployment {target} is already active");
    }
    update_site(
        backend.meta.as_ref(),
        site,
        Change {
            activate: Some(&target),
            ..Default::default()
        },
    )
    .await
}
