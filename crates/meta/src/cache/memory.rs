//! The in-process cache tier: moka, bounded by bytes.

use super::{Cache, CacheHealth, SiteEntry};
use crate::ids::SiteId;
use async_trait::async_trait;
use bytes::Bytes;
use moka::ops::compute::Op;

/// In-process cache, bounded by the bytes of its entries.
#[derive(Clone)]
pub struct MemoryCache {
    entries: moka::future::Cache<String, Bytes>,
    sites: moka::future::Cache<SiteId, SiteEntry>,
    max_entry: usize,
}

impl MemoryCache {
    /// A cache holding at most `max_bytes` of entries; an entry larger than an eighth of
    /// that is not kept, so one large file cannot flush everything else.
    pub fn new(max_bytes: u64) -> Self {
        let entries = moka::future::Cache::builder()
            .weigher(|k: &String, v: &Bytes| {
                u32::try_from(k.len() + v.len() + 64).unwrap_or(u32::MAX)
            })
            .max_capacity(max_bytes)
            .build();
        MemoryCache {
            entries,
            sites: moka::future::Cache::builder().max_capacity(100_000).build(),
            max_entry: usize::try_from(max_bytes / 8).unwrap_or(usize::MAX),
        }
    }

    /// The largest entry this cache keeps.
    pub fn max_entry(&self) -> usize {
        self.max_entry
    }

    /// Bytes held now (approximate until moka's pending work runs).
    pub fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Runs moka's pending maintenance (tests measure sizes after it).
    pub async fn sync(&self) {
        self.entries.run_pending_tasks().await;
        self.sites.run_pending_tasks().await;
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.get(key).await
    }

    async fn put(&self, key: &str, value: Bytes) {
        if value.len() <= self.max_entry {
            self.entries.insert(key.to_owned(), value).await;
        }
    }

    async fn site(&self, id: &SiteId) -> Option<SiteEntry> {
        self.sites.get(id).await
    }

    async fn put_site(&self, id: &SiteId, entry: SiteEntry) -> bool {
        let rev = entry.revision;
        let res = self
            .sites
            .entry_by_ref(id)
            .and_compute_with(|cur| {
                let newer = cur.is_none_or(|c| c.value().revision < rev);
                std::future::ready(if newer { Op::Put(entry) } else { Op::Nop })
            })
            .await;
        matches!(
            res,
            moka::ops::compute::CompResult::Inserted(_)
                | moka::ops::compute::CompResult::ReplacedWith(_)
        )
    }

    async fn health(&self) -> CacheHealth {
        CacheHealth::Ok
    }
}
