//! The cache port and its tiers: in-process (moka, bounded by bytes) and Redis.
//!
//! Blob and manifest entries are immutable (their keys name their content), so they are
//! never invalidated; the only mutable value is a site's record, replaced only by a
//! higher revision.

pub mod memory;
pub mod redis;

use crate::ids::SiteId;
use crate::model::Site;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A cached site record at a revision; `site: None` records that the site was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteEntry {
    /// The revision this entry is at.
    pub revision: u64,
    /// The record, or `None` when the site was removed at this revision.
    pub site: Option<Site>,
}

/// How a cache tier is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheHealth {
    /// Working.
    Ok,
    /// Not answering; requests go on without it.
    Degraded(String),
}

/// The cache port. No method fails: a cache that cannot answer is a miss.
#[async_trait]
pub trait Cache: Send + Sync {
    /// An immutable entry.
    async fn get(&self, key: &str) -> Option<Bytes>;
    /// Stores an immutable entry.
    async fn put(&self, key: &str, value: Bytes);
    /// A site's cached record.
    async fn site(&self, id: &SiteId) -> Option<SiteEntry>;
    /// Stores a site's record if its revision is higher than the cached one; returns
    /// whether it was stored.
    async fn put_site(&self, id: &SiteId, entry: SiteEntry) -> bool;
    /// Whether the tier works.
    async fn health(&self) -> CacheHealth;
}

/// The in-process tier in front of an optional Redis tier.
pub struct Tiered {
    memory: memory::MemoryCache,
    redis: Option<Arc<redis::RedisCache>>,
}

impl Tiered {
    /// Tiers: memory, then Redis when configured.
    pub fn new(memory: memory::MemoryCache, redis: Option<redis::RedisCache>) -> Self {
        Tiered {
            memory,
            redis: redis.map(Arc::new),
        }
    }

    /// The Redis tier, if any.
    pub fn redis(&self) -> Option<&redis::RedisCache> {
        self.redis.as_deref()
    }

    /// The in-process tier.
    pub fn memory(&self) -> &memory::MemoryCache {
        &self.memory
    }
}

#[async_trait]
impl Cache for Tiered {
    async fn get(&self, key: &str) -> Option<Bytes> {
        if let Some(v) = self.memory.get(key).await {
            return Some(v);
        }
        let v = self.redis.as_ref()?.get(key).await?;
        self.memory.put(key, v.clone()).await;
        Some(v)
    }

    async fn put(&self, key: &str, value: Bytes) {
        if let Some(r) = &self.redis {
            r.put(key, value.clone()).await;
        }
        self.memory.put(key, value).await;
    }

    async fn site(&self, id: &SiteId) -> Option<SiteEntry> {
        if let Some(e) = self.memory.site(id).await {
            return Some(e);
        }
        let e = self.redis.as_ref()?.site(id).await?;
        self.memory.put_site(id, e.clone()).await;
        Some(e)
    }

    async fn put_site(&self, id: &SiteId, entry: SiteEntry) -> bool {
        let shared = match &self.redis {
            Some(r) => r.put_site(id, entry.clone()).await,
            None => false,
        };
        let local = self.memory.put_site(id, entry).await;
        local || shared
    }

    async fn health(&self) -> CacheHealth {
        match &self.redis {
            Some(r) => r.health().await,
            None => CacheHealth::Ok,
        }
    }
}
