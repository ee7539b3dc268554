//! `skyhost sites delete NAME`: the site's record becomes a tombstone one revision above
//! it and its domains go, in one conditional write; the replicator tells every region,
//! which answers 404 for its domains and previews at once (an instance that missed the
//! notification within a second). The tombstone stays: no older notification or cached
//! record can bring the site back, and a site created again under the name carries on
//! from its revision. Its deployment records go too; its blobs and manifests are left to
//! `skyhost gc`.

use crate::backend::Backend;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use skyhost_meta::store::StoreError;
use skyhost_meta::{Domain, SiteId};

/// What a deletion did.
#[derive(Debug, Serialize)]
pub struct Deleted {
    /// The site.
    pub site: SiteId,
    /// The tombstone's revision.
    pub revision: u64,
    /// Domains freed.
    pub domains: Vec<Domain>,
    /// Deployment records removed.
    pub deployments: usize,
}

/// Deletes `site`, retrying when a concurrent change moved its revision.
pub async fn delete(backend: &Backend, site: &SiteId) -> Result<Deleted> {
    let meta = backend.meta.as_ref();
    let mut attempts = 0;
    let (record, revision) = loop {
        let record = meta
            .site(site)
            .await?
            .with_context(|| format!("site {site} does not exist (see `skyhost sites`)"))?;
        match meta.delete_site(&record, skyhost_meta::now()).await {
            Ok(revision) => break (record, revision),
            Err(StoreError::Conflict { .. }) if attempts < 4 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    };
    // The site no longer exists: its deployments cannot be activated or previewed, and a
    // site created again under the name starts a history of its own.
    let mut removed = 0;
    for d in meta.deployments(site).await? {
        meta.delete_deployment(site, &d.id).await.with_context(|| {
            format!(
                "removing deployment record {} (run the delete again to finish)",
                d.id
            )
        })?;
        removed += 1;
    }
    Ok(Deleted {
        site: site.clone(),
        revision,
        domains: record.domains,
        deployments: removed,
    })
}

/// Asks for the site's name on the terminal unless `yes`; refuses without a terminal.
pub fn confirm(site: &SiteId, yes: bool) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("deleting site {site} needs confirmation: pass --yes");
    }
    print!("Delete site {site} from every region? Its domains stop answering at once. Type its name to confirm: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != site.as_str() {
        bail!("not confirmed; nothing was deleted");
    }
    Ok(())
}
