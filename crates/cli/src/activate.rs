//! Changing a site's record: activation (deploy, rollback) and its domains, always as a
//! conditional write on `revision`, re-read and retried when someone else wrote first.

use anyhow::{bail, Result};
use skyhost_meta::store::{MetaStore, StoreError};
use skyhost_meta::{DeploymentId, Domain, Site, SiteId, SiteRecord};

/// What to change on the site record.
#[derive(Default)]
pub struct Change<'a> {
    /// The deployment to serve.
    pub activate: Option<&'a DeploymentId>,
    /// Domains to add.
    pub add_domains: &'a [Domain],
    /// Domains to remove.
    pub remove_domains: &'a [Domain],
}

/// Applies `change` to the site (created when missing), returning the new record.
pub async fn update_site(meta: &dyn MetaStore, site: &SiteId, change: Change<'_>) -> Result<Site> {
    if let Some(d) = change.activate {
        match meta.deployment(site, d).await? {
            Some(dep) if dep.state == skyhost_meta::DeploymentState::Ready => {}
            Some(_) => bail!("deployment {d} of site {site} failed and cannot be activated"),
            None => bail!(
                "deployment {d} of site {site} does not exist (see `skyhost status --site {site}`)"
            ),
        }
    }
    let mut last = None;
    for _ in 0..5 {
        let now = skyhost_meta::now();
        // A site created again after a removal carries on from the removal's revision.
        let (current, mut next) = match meta.site_record(site).await? {
            Some(SiteRecord::Live(c)) => {
                let next = c.next(now);
                (Some(c), next)
            }
            Some(SiteRecord::Removed { revision, .. }) => {
                (None, Site::recreated(site.clone(), now, revision))
            }
            None => (None, Site::new(site.clone(), now)),
        };
        if let Some(d) = change.activate {
            next.active = Some(d.clone());
        }
        for d in change.add_domains {
            if !next.domains.contains(d) {
                next.domains.push(d.clone());
            }
        }
        next.domains.retain(|d| !change.remove_domains.contains(d));
        next.domains.sort();
        match meta.put_site(current.as_ref(), &next).await {
            Ok(()) => return Ok(next),
            Err(e @ StoreError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .map(Into::into)
        .unwrap_or_else(|| anyhow::anyhow!("site {site} kept changing; try again")))
}
