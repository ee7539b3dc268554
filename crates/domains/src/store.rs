//! Custom-domain records in the sites table, one item per domain:
//! `pk` = `TLS#{domain}`, `sk` = `TLS`, `kind` = `tls`. They are written by the primary
//! only (as every item of the table); the replicator's stream filter passes site records
//! only, so these never cause a notification.

use crate::cloud::DnsRecord;
use crate::state::{Phase, Platform};
use serde::{Deserialize, Serialize};
use skyhost_meta::store::item::{Item, Key};
use skyhost_meta::store::{Condition, MetaStore, StoreError, Write};
use std::collections::BTreeMap;

/// The `kind` of a custom-domain item.
pub const KIND: &str = "tls";

/// What skyhost knows of a custom domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    /// The domain (lower case).
    pub domain: String,
    /// The site it serves.
    pub site: String,
    /// How the platform serves it.
    pub platform: Platform,
    /// Where it stands.
    pub phase: Phase,
    /// The certificate ARN requested in each region.
    #[serde(default)]
    pub certificates: BTreeMap<String, String>,
    /// The validation records ACM asks the owner for.
    #[serde(default)]
    pub validation: Vec<DnsRecord>,
    /// Where the owner points the domain (CNAME, or ALIAS at the apex).
    #[serde(default)]
    pub target: Option<String>,
    /// The Route 53 zone that holds the domain, when skyhost writes its records.
    #[serde(default)]
    pub zone: Option<String>,
    /// Why it is failing.
    #[serde(default)]
    pub reason: Option<String>,
    /// When it last changed (Unix seconds).
    pub updated: i64,
}

#[derive(Serialize, Deserialize)]
struct RecordItem {
    pk: String,
    sk: String,
    kind: String,
    /// The record as JSON: one attribute, so a new field needs no item change.
    record: String,
}

/// The key of a domain's record.
pub fn key(domain: &str) -> Key {
    Key {
        pk: format!("TLS#{domain}"),
        sk: "TLS".to_string(),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("custom domain item: {e}"))
}

fn to_item(r: &DomainRecord) -> Result<Item, StoreError> {
    let k = key(&r.domain);
    let record = serde_json::to_string(r).map_err(corrupt)?;
    serde_dynamo::to_item(RecordItem {
        pk: k.pk,
        sk: k.sk,
        kind: KIND.to_string(),
        record,
    })
    .map_err(corrupt)
}

fn from_item(item: Item) -> Result<DomainRecord, StoreError> {
    let i: RecordItem = serde_dynamo::from_item(item).map_err(corrupt)?;
    serde_json::from_str(&i.record).map_err(corrupt)
}

/// A domain's record.
pub async fn get(meta: &dyn MetaStore, domain: &str) -> Result<Option<DomainRecord>, StoreError> {
    meta.get_item(&key(domain))
        .await?
        .map(from_item)
        .transpose()
}

/// Writes a domain's record (the primary is the only writer, and every step re-reads
/// the cloud, so the last write wins without harm).
pub async fn put(meta: &dyn MetaStore, record: &DomainRecord) -> Result<(), StoreError> {
    let write = Write {
        key: key(&record.domain),
        item: Some(to_item(record)?),
        condition: Condition::None,
    };
    meta.write(vec![write]).await.map_err(|e| match e {
        skyhost_meta::store::WriteError::Store(s) => s,
        other => StoreError::Backend(other.to_string()),
    })
}

/// Deletes a domain's record.
pub async fn delete(meta: &dyn MetaStore, domain: &str) -> Result<(), StoreError> {
    let write = Write {
        key: key(domain),
        item: None,
        condition: Condition::None,
    };
    meta.write(vec![write]).await.map_err(|e| match e {
        skyhost_meta::store::WriteError::Store(s) => s,
        other => StoreError::Backend(other.to_string()),
    })
}

/// Every custom-domain record, sorted by domain.
pub async fn list(meta: &dyn MetaStore) -> Result<Vec<DomainRecord>, StoreError> {
    let mut out = meta
        .scan_kind(KIND)
        .await?
        .into_iter()
        .map(from_item)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.domain.cmp(&b.domain));
    Ok(out)
}
