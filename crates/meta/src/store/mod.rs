//! The metadata store port.
//!
//! Adapters implement a handful of item primitives (get, query, scan, an atomic
//! conditional write, a change feed); the domain operations — sites, domains,
//! deployments, activation — are written once on top of them, so every adapter behaves
//! the same way and the contract suite proves it.

pub mod dynamodb;
pub mod generation;
pub mod item;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod stream;

use crate::ids::{DeploymentId, Domain, SiteId};
use crate::model::{Deployment, DeploymentState, RegionStatus, Site, SiteRecord};
use async_trait::async_trait;
use item::{Item, Key};

/// What can go wrong with metadata.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The site record changed since it was read: nothing was written.
    #[error("site {site} was changed by someone else (expected revision {expected}); read it again and retry")]
    Conflict {
        /// The site.
        site: SiteId,
        /// The revision the write expected to replace (0: expected no site).
        expected: u64,
    },
    /// A domain already belongs to another site: nothing was written.
    #[error("domain {domain} already belongs to site {owner}")]
    DomainTaken {
        /// The domain.
        domain: Domain,
        /// The site that has it.
        owner: String,
    },
    /// A deployment with this id already exists: deployments are immutable.
    #[error("deployment {0} already exists")]
    DeploymentExists(DeploymentId),
    /// The named site does not exist.
    #[error("site {0} does not exist")]
    NoSuchSite(SiteId),
    /// The named deployment does not exist or cannot be activated.
    #[error("deployment {deployment} of site {site} {reason}")]
    BadDeployment {
        /// The site.
        site: SiteId,
        /// The deployment.
        deployment: DeploymentId,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// A write that would break the revision rule (revisions only grow, one at a time).
    #[error("invalid site write: {0}")]
    Invalid(String),
    /// An item in the store does not decode.
    #[error("corrupt metadata: {0}")]
    Corrupt(String),
    /// The backend failed (network, throttling, disk).
    #[error("metadata store unavailable: {0}")]
    Backend(String),
}

/// The generation item stayed contended through every retry of a site write.
fn busy() -> StoreError {
    StoreError::Backend(
        "too many site changes at once (the generation item stayed contended); retry".into(),
    )
}

/// A condition on the item a write replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// No condition.
    None,
    /// The item must not exist.
    NotExists,
    /// The item's `revision` must equal this.
    RevisionIs(u64),
    /// The item's `site` attribute must equal this.
    SiteIs(SiteId),
    /// The item must not exist, or its `site` attribute must equal this.
    NotExistsOrSiteIs(SiteId),
    /// The item must be a removed site's tombstone at this revision.
    RemovedAt(u64),
}

/// One write of an atomic batch.
#[derive(Debug, Clone)]
pub struct Write {
    /// The item's key.
    pub key: Key,
    /// `Some` puts the item, `None` deletes it.
    pub item: Option<Item>,
    /// Must hold for the whole batch to apply.
    pub condition: Condition,
}

/// Why an atomic write did not apply.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The condition of the write at this index failed; nothing was written.
    #[error("condition of write {0} failed")]
    ConditionFailed(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A batch of change records and the cursor to continue from.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// Records in the order the changes happened, in the DynamoDB stream record shape.
    pub records: Vec<aws_lambda_events::event::dynamodb::EventRecord>,
    /// Pass to the next read; unchanged when there was nothing new.
    pub cursor: Option<String>,
}

/// The change feed of a metadata store: every write, once, in order.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Up to `limit` records after `cursor` (`None`: from the oldest retained).
    async fn read(&self, cursor: Option<&str>, limit: usize) -> Result<ChangeBatch, StoreError>;
}

/// The metadata store port. Adapters implement the four item primitives; the domain
/// operations are provided.
#[async_trait]
pub trait MetaStore: Send + Sync {
    /// One item by key.
    async fn get_item(&self, key: &Key) -> Result<Option<Item>, StoreError>;
    /// Items of a partition whose sort key starts with `sk_prefix`, ascending.
    async fn query_items(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError>;
    /// Every item of a kind (`site`, `domain`, …). For operator listings, not hot paths.
    async fn scan_kind(&self, kind: &str) -> Result<Vec<Item>, StoreError>;
    /// Applies all writes or none.
    async fn write(&self, writes: Vec<Write>) -> Result<(), WriteError>;

    /// A live site record (`None`: never created, or removed).
    async fn site(&self, id: &SiteId) -> Result<Option<Site>, StoreError> {
        Ok(self.site_record(id).await?.and_then(SiteRecord::live))
    }

    /// What the table holds under a site's name: its record or its removal's tombstone.
    async fn site_record(&self, id: &SiteId) -> Result<Option<SiteRecord>, StoreError> {
        self.get_item(&item::site_key(id))
            .await?
            .map(item::site_record_from_item)
            .transpose()
    }

    /// The site a domain belongs to.
    async fn site_for_domain(&self, d: &Domain) -> Result<Option<SiteId>, StoreError> {
        self.get_item(&item::domain_key(d))
            .await?
            .map(item::domain_site)
            .transpose()
    }

    /// Every live site, sorted by id.
    async fn sites(&self) -> Result<Vec<Site>, StoreError> {
        let mut v = self
            .scan_kind("site")
            .await?
            .into_iter()
            .map(item::site_record_from_item)
            .filter_map(|r| r.map(SiteRecord::live).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    /// Writes `new` in place of `old` (`None`: creates the site), moving the domain
    /// mappings with it, all in one atomic conditional write on `revision`. A site
    /// created over a removed one's tombstone ([`Site::recreated`]) replaces the
    /// tombstone at `new.revision - 1`.
    async fn put_site(&self, old: Option<&Site>, new: &Site) -> Result<(), StoreError> {
        let expected = match old {
            Some(o) => o.revision,
            None => new.revision.saturating_sub(1),
        };
        if let Some(o) = old {
            if o.id != new.id {
                return Err(StoreError::Invalid("site id cannot change".into()));
            }
        }
        if new.revision != expected + 1 {
            return Err(StoreError::Invalid(format!(
                "revision must go from {expected} to {}, not {}",
                expected + 1,
                new.revision
            )));
        }
        let mut domains = new.domains.clone();
        domains.sort();
        domains.dedup();
        let mut new = new.clone();
        new.domains = domains;
        let before: &[Domain] = old.map(|o| o.domains.as_slice()).unwrap_or(&[]);
        let mut writes = vec![Write {
            key: item::site_key(&new.id),
            item: Some(item::site_item(&new)),
            condition: match old {
                Some(o) => Condition::RevisionIs(o.revision),
                None if expected == 0 => Condition::NotExists,
                None => Condition::RemovedAt(expected),
            },
        }];
        let added: Vec<&Domain> = new.domains.iter().filter(|d| !before.contains(d)).collect();
        for d in &added {
            writes.push(Write {
                key: item::domain_key(d),
                item: Some(item::domain_item(d, &new.id)),
                condition: Condition::NotExistsOrSiteIs(new.id.clone()),
            });
        }
        for d in before.iter().filter(|d| !new.domains.contains(d)) {
            writes.push(Write {
                key: item::domain_key(d),
                item: None,
                condition: Condition::SiteIs(new.id.clone()),
            });
        }
        let gen_index = writes.len();
        match self.write_bumping(writes, &new.id, new.revision).await {
            Ok(()) => Ok(()),
            Err(WriteError::ConditionFailed(0)) => Err(StoreError::Conflict {
                site: new.id.clone(),
                expected,
            }),
            Err(WriteError::ConditionFailed(i)) if i == gen_index => Err(busy()),
            Err(WriteError::ConditionFailed(i)) if i <= added.len() => {
                let domain = added[i - 1].clone();
                let owner = self
                    .site_for_domain(&domain)
                    .await?
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "another site".into());
                Err(StoreError::DomainTaken { domain, owner })
            }
            // A removed domain that is no longer ours: someone else's write raced us.
            Err(WriteError::ConditionFailed(_)) => Err(StoreError::Conflict {
                site: new.id.clone(),
                expected,
            }),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    /// Removes a site: its record becomes a tombstone one revision above it, and its
    /// domains go (free to claim), in one atomic conditional write on its revision.
    /// Returns the removal's revision. Its deployment records stay until deleted
    /// ([`MetaStore::delete_deployment`]); blobs and manifests until `gc`.
    async fn delete_site(&self, site: &Site, now: i64) -> Result<u64, StoreError> {
        let removed_at = site.revision + 1;
        let mut writes = vec![Write {
            key: item::site_key(&site.id),
            item: Some(item::tombstone_item(&site.id, removed_at, now)),
            condition: Condition::RevisionIs(site.revision),
        }];
        for d in &site.domains {
            writes.push(Write {
                key: item::domain_key(d),
                item: None,
                condition: Condition::SiteIs(site.id.clone()),
            });
        }
        let gen_index = writes.len();
        match self.write_bumping(writes, &site.id, removed_at).await {
            Ok(()) => Ok(removed_at),
            Err(WriteError::ConditionFailed(i)) if i == gen_index => Err(busy()),
            Err(WriteError::ConditionFailed(_)) => Err(StoreError::Conflict {
                site: site.id.clone(),
                expected: site.revision,
            }),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    /// Deletes a deployment record (of a removed site, or one `gc` let go).
    async fn delete_deployment(&self, site: &SiteId, id: &DeploymentId) -> Result<(), StoreError> {
        let w = Write {
            key: item::deployment_key(site, id),
            item: None,
            condition: Condition::None,
        };
        self.write(vec![w]).await.map_err(|e| match e {
            WriteError::Store(e) => e,
            WriteError::ConditionFailed(_) => {
                StoreError::Backend("unconditional delete refused".into())
            }
        })
    }

    /// The sites' generation item ([`generation`]): what changed lately.
    async fn generation(&self) -> Result<generation::Generation, StoreError> {
        generation::from_item(self.get_item(&generation::key()).await?)
    }

    /// Applies `writes` (a change of `site` to `revision`) together with the bump of the
    /// generation item, in one atomic write. A concurrent change of another site that
    /// bumped the generation first is retried a few times; the generation's condition is
    /// the last write of the batch.
    async fn write_bumping(
        &self,
        writes: Vec<Write>,
        site: &SiteId,
        revision: u64,
    ) -> Result<(), WriteError> {
        let gen_index = writes.len();
        let mut attempt: u32 = 0;
        loop {
            let current = self.get_item(&generation::key()).await?;
            let condition = match &current {
                Some(_) => Condition::RevisionIs(generation::from_item(current.clone())?.number),
                None => Condition::NotExists,
            };
            let next = generation::from_item(current)?.bumped(site, revision);
            let mut batch = writes.clone();
            batch.push(Write {
                key: generation::key(),
                item: Some(generation::to_item(&next)),
                condition,
            });
            match self.write(batch).await {
                Err(WriteError::ConditionFailed(i)) if i == gen_index && attempt < 8 => {
                    attempt += 1;
                    // Another site's change took this generation: read it again.
                    let pause = 5 * u64::from(attempt) + rand::random::<u64>() % 10;
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                other => return other,
            }
        }
    }

    /// Records a deployment; deployment records are immutable.
    async fn put_deployment(&self, d: &Deployment) -> Result<(), StoreError> {
        let w = Write {
            key: item::deployment_key(&d.site, &d.id),
            item: Some(item::deployment_item(d)),
            condition: Condition::NotExists,
        };
        match self.write(vec![w]).await {
            Ok(()) => Ok(()),
            Err(WriteError::ConditionFailed(_)) => Err(StoreError::DeploymentExists(d.id.clone())),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    /// A deployment record.
    async fn deployment(
        &self,
        site: &SiteId,
        id: &DeploymentId,
    ) -> Result<Option<Deployment>, StoreError> {
        self.get_item(&item::deployment_key(site, id))
            .await?
            .map(item::deployment_from_item)
            .transpose()
    }

    /// A site's deployments, newest first.
    async fn deployments(&self, site: &SiteId) -> Result<Vec<Deployment>, StoreError> {
        let mut v = self
            .query_items(&item::site_key(site).pk, "DEPLOY#")
            .await?
            .into_iter()
            .map(item::deployment_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        v.sort_by(|a, b| b.id.cmp(&a.id));
        Ok(v)
    }

    /// Makes `deployment` the one served, if the site is still at `expected_revision`.
    /// Fails with [`StoreError::Conflict`] when someone changed the site meanwhile.
    async fn activate(
        &self,
        site: &SiteId,
        deployment: &DeploymentId,
        expected_revision: u64,
        now: i64,
    ) -> Result<Site, StoreError> {
        let d =
            self.deployment(site, deployment)
                .await?
                .ok_or_else(|| StoreError::BadDeployment {
                    site: site.clone(),
                    deployment: deployment.clone(),
                    reason: "does not exist",
                })?;
        if d.state == DeploymentState::Failed {
            return Err(StoreError::BadDeployment {
                site: site.clone(),
                deployment: deployment.clone(),
                reason: "failed and cannot be activated",
            });
        }
        let current = self
            .site(site)
            .await?
            .ok_or_else(|| StoreError::NoSuchSite(site.clone()))?;
        if current.revision != expected_revision {
            return Err(StoreError::Conflict {
                site: site.clone(),
                expected: expected_revision,
            });
        }
        let mut next = current.next(now);
        next.active = Some(deployment.clone());
        self.put_site(Some(&current), &next).await?;
        Ok(next)
    }

    /// A region's operator status (not in maintenance when never set).
    async fn region_status(&self, region: &str) -> Result<RegionStatus, StoreError> {
        match self.get_item(&item::region_key(region)).await? {
            Some(i) => item::region_from_item(i),
            None => Ok(RegionStatus {
                region: region.to_owned(),
                maintenance: false,
            }),
        }
    }

    /// Sets a region's operator status.
    async fn set_region_status(&self, s: &RegionStatus) -> Result<(), StoreError> {
        let w = Write {
            key: item::region_key(&s.region),
            item: Some(item::region_item(s)),
            condition: Condition::None,
        };
        self.write(vec![w]).await.map_err(|e| match e {
            WriteError::Store(e) => e,
            WriteError::ConditionFailed(_) => {
                StoreError::Backend("unconditional write refused".into())
            }
        })
    }
}
