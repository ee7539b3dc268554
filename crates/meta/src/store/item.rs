//! The item codec shared by every metadata adapter: the same DynamoDB item layout is used
//! by the DynamoDB table and by the embedded store, so a change-feed record reads the
//! same whichever store produced it.
//!
//! | item | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | site | `SITE#{id}` | `SITE` | `kind`=`site`, `site`, `domains` (list), `active`, `revision` (N), `suspended` (BOOL), `updated` (N), `removed` (BOOL, only on a tombstone) |
//! | domain | `DOMAIN#{host}` | `DOMAIN` | `kind`=`domain`, `domain`, `site` |
//! | deployment | `SITE#{id}` | `DEPLOY#{deployment}` | `kind`=`deployment`, `site`, `id`, `created`, `file_count`, `bytes`, `state`, `message` |
//! | region | `REGION#{name}` | `REGION` | `kind`=`region`, `region`, `maintenance` (BOOL) |

use super::StoreError;
use crate::ids::{Domain, SiteId};
use crate::model::{Deployment, RegionStatus, Site, SiteRecord, SiteSettings};
use serde::{Deserialize, Serialize};
pub use serde_dynamo::Item;

/// Partition and sort key of an item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

/// The key of a site record.
pub fn site_key(id: &SiteId) -> Key {
    Key {
        pk: format!("SITE#{id}"),
        sk: "SITE".into(),
    }
}

/// The key of a domain mapping.
pub fn domain_key(d: &Domain) -> Key {
    Key {
        pk: format!("DOMAIN#{d}"),
        sk: "DOMAIN".into(),
    }
}

/// The key of a deployment record.
pub fn deployment_key(site: &SiteId, id: &crate::ids::DeploymentId) -> Key {
    Key {
        pk: format!("SITE#{site}"),
        sk: format!("DEPLOY#{id}"),
    }
}

/// The key of a region's status.
pub fn region_key(region: &str) -> Key {
    Key {
        pk: format!("REGION#{region}"),
        sk: "REGION".into(),
    }
}

#[derive(Serialize, Deserialize)]
struct SiteItem {
    pk: String,
    sk: String,
    kind: String,
    site: SiteId,
    #[serde(default)]
    domains: Vec<Domain>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active: Option<crate::ids::DeploymentId>,
    revision: u64,
    #[serde(default)]
    suspended: bool,
    #[serde(default)]
    updated: i64,
    /// A tombstone: the site was removed at `revision`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
}

#[derive(Serialize, Deserialize)]
struct DomainItem {
    pk: String,
    sk: String,
    kind: String,
    domain: Domain,
    site: SiteId,
}

#[derive(Serialize, Deserialize)]
struct DeploymentItem {
    pk: String,
    sk: String,
    kind: String,
    #[serde(flatten)]
    deployment: Deployment,
}

#[derive(Serialize, Deserialize)]
struct RegionItem {
    pk: String,
    sk: String,
    kind: String,
    region: String,
    maintenance: bool,
}

fn to_item<T: Serialize>(v: &T) -> Item {
    // Our item structs hold only strings, numbers, booleans and lists: serde_dynamo
    // cannot fail on them.
    serde_dynamo::to_item(v).unwrap_or_default()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A site record as an item.
pub fn site_item(s: &Site) -> Item {
    let k = site_key(&s.id);
    to_item(&SiteItem {
        pk: k.pk,
        sk: k.sk,
        kind: "site".into(),
        site: s.id.clone(),
        domains: s.domains.clone(),
        active: s.active.clone(),
        revision: s.revision,
        suspended: s.settings.suspended,
        updated: s.updated,
        removed: false,
    })
}

/// The tombstone a site's removal leaves at `revision`: no domains, nothing active.
pub fn tombstone_item(id: &SiteId, revision: u64, now: i64) -> Item {
    let k = site_key(id);
    to_item(&SiteItem {
        pk: k.pk,
        sk: k.sk,
        kind: "site".into(),
        site: id.clone(),
        domains: Vec::new(),
        active: None,
        revision,
        suspended: false,
        updated: now,
        removed: true,
    })
}

/// A live site record from an item (a table read or a stream image); a tombstone is
/// [`StoreError::NoSuchSite`].
pub fn site_from_item(item: Item) -> Result<Site, StoreError> {
    match site_record_from_item(item)? {
        SiteRecord::Live(s) => Ok(s),
        SiteRecord::Removed { id, .. } => Err(StoreError::NoSuchSite(id)),
    }
}

/// What a site item holds: a live record or a removal's tombstone.
pub fn site_record_from_item(item: Item) -> Result<SiteRecord, StoreError> {
    let i: SiteItem = serde_dynamo::from_item(item).map_err(|e| corrupt("site item", e))?;
    if i.removed {
        return Ok(SiteRecord::Removed {
            id: i.site,
            revision: i.revision,
            updated: i.updated,
        });
    }
    Ok(SiteRecord::Live(Site {
        id: i.site,
        domains: i.domains,
        active: i.active,
        revision: i.revision,
        settings: SiteSettings {
            suspended: i.suspended,
        },
        updated: i.updated,
    }))
}

/// A domain mapping as an item.
pub fn domain_item(d: &Domain, site: &SiteId) -> Item {
    let k = domain_key(d);
    to_item(&DomainItem {
        pk: k.pk,
        sk: k.sk,
        kind: "domain".into(),
        domain: d.clone(),
        site: site.clone(),
    })
}

/// The site a domain item points to.
pub fn domain_site(item: Item) -> Result<SiteId, StoreError> {
    let i: DomainItem = serde_dynamo::from_item(item).map_err(|e| corrupt("domain item", e))?;
    Ok(i.site)
}

/// A deployment record as an item.
pub fn deployment_item(d: &Deployment) -> Item {
    let k = deployment_key(&d.site, &d.id);
    to_item(&DeploymentItem {
        pk: k.pk,
        sk: k.sk,
        kind: "deployment".into(),
        deployment: d.clone(),
    })
}

/// A deployment record from an item.
pub fn deployment_from_item(item: Item) -> Result<Deployment, StoreError> {
    let i: DeploymentItem =
        serde_dynamo::from_item(item).map_err(|e| corrupt("deployment item", e))?;
    Ok(i.deployment)
}

/// A region status as an item.
pub fn region_item(r: &RegionStatus) -> Item {
    let k = region_key(&r.region);
    to_item(&RegionItem {
        pk: k.pk,
        sk: k.sk,
        kind: "region".into(),
        region: r.region.clone(),
        maintenance: r.maintenance,
    })
}

/// A region status from an item.
pub fn region_from_item(item: Item) -> Result<RegionStatus, StoreError> {
    let i: RegionItem = serde_dynamo::from_item(item).map_err(|e| corrupt("region item", e))?;
    Ok(RegionStatus {
        region: i.region,
        maintenance: i.maintenance,
    })
}

/// The string value of attribute `name`, if present.
pub fn attr_str<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(serde_dynamo::AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// The key of an item.
pub fn key_of(item: &Item) -> Option<Key> {
    Some(Key {
        pk: attr_str(item, "pk")?.to_owned(),
        sk: attr_str(item, "sk")?.to_owned(),
    })
}

/// The key attributes of an item as an item (for stream records' `Keys`).
pub fn key_item(k: &Key) -> Item {
    let mut m = std::collections::HashMap::new();
    m.insert(
        "pk".to_owned(),
        serde_dynamo::AttributeValue::S(k.pk.clone()),
    );
    m.insert(
        "sk".to_owned(),
        serde_dynamo::AttributeValue::S(k.sk.clone()),
    );
    Item::from(m)
}
