//! The cache port and its tiers: in-process (moka, bounded by bytes) and Redis.
//!
//! Blob and manifest entries are immutable (their keys name their content), so they are
//! never invalidated; the only mutable value is a site's record, replaced only by a
//! higher revision.

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

use crate::ids::{Domain, SiteId};
use crate::model::Site;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A cached site record at a revision; `site: None` records that the site was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteEntry {
    /// The revision this entry is at.
    pub revision: u64,
    /// The record, or `None` when the site was removed at this revision. Shared: every
    /// request reads it, and a read clones only the pointer.
    pub site: Option<Arc<Site>>,
}

/// How a cache tier is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheHealth {
    /// Working.
    Ok,
    /// Not answering; requests go on without it.
    Degraded(String),
}

/// One attempt taken from a bounded counter ([`Cache::take_attempt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted: the `count`th attempt of a window that has `left` to run.
    Counted {
        /// The attempt's number in its window, from 1.
        count: u64,
        /// What is left of the window.
        left: Duration,
    },
    /// The window's count was already full: not counted.
    Refused {
        /// What is left of the window.
        left: Duration,
    },
}

/// A counter's state, read without counting ([`Cache::attempts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// Attempts counted in the running window (0: none on record).
    pub count: u64,
    /// What is left of that window (zero when none runs).
    pub left: Duration,
}

impl Attempts {
    /// No window running.
    pub const NONE: Attempts = Attempts {
        count: 0,
        left: Duration::ZERO,
    };
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
    /// The site a host was last found to belong to, by any instance sharing the tier: a
    /// hint, to be checked against that site's record (`None`: the tier does not know).
    async fn host_site(&self, _host: &Domain) -> Option<SiteId> {
        None
    }
    /// Records for `ttl` which site a host was found to belong to.
    async fn put_host_site(&self, _host: &Domain, _site: &SiteId, _ttl: std::time::Duration) {}
    /// Claims the next re-read of a site's record from the store for `window`: `true` when
    /// the caller should re-read it, `false` when another instance sharing the tier claimed
    /// it within the window. A tier that cannot tell says `true`.
    async fn claim_site_refresh(&self, _id: &SiteId, _window: std::time::Duration) -> bool {
        true
    }
    /// Gives back a claim [`Cache::claim_site_refresh`] granted this caller, when its
    /// re-read failed: another instance may then re-read the record before the window
    /// ends instead of the whole region waiting it out.
    async fn release_site_refresh(&self, _id: &SiteId) {}
    /// A number that changes whenever a site record this process reads may have changed,
    /// for callers that keep answers derived from site records; `None` when the tier
    /// cannot tell (such callers then keep nothing).
    fn site_generation(&self) -> Option<u64> {
        None
    }
    /// Takes one attempt from the counter `key`, atomically: refused when `max` attempts
    /// were already counted in its window, else counted, the first attempt starting a
    /// window of `window`. Shared by every instance on a shared tier, so parallel
    /// attempts anywhere get no more than `max` between them. `None`: this tier could not
    /// count (Redis down), or counts nothing.
    async fn take_attempt(&self, _key: &str, _max: u64, _window: Duration) -> Option<Attempt> {
        None
    }
    /// The counter `key`'s state, without counting (`None` as for
    /// [`Cache::take_attempt`]).
    async fn attempts(&self, _key: &str) -> Option<Attempts> {
        None
    }
    /// Forgets the counter `key`.
    async fn reset_attempts(&self, _key: &str) {}
}

/// The in-process tier in front of an optional Redis tier.
///
/// A notification reaches one instance of a region's origin; the others learn the new
/// site record from Redis, so a site record held in memory is re-checked against Redis
/// once it is older than the freshness window (1 s by default).
#[cfg(feature = "redis")]
pub struct Tiered {
    memory: memory::MemoryCache,
    redis: Option<Arc<redis::RedisCache>>,
    checked: crate::ttl::TtlMap<SiteId, ()>,
    fresh: std::time::Duration,
}

#[cfg(feature = "redis")]
impl Tiered {
    /// Tiers: memory, then Redis when configured.
    pub fn new(memory: memory::MemoryCache, redis: Option<redis::RedisCache>) -> Self {
        Self::with_site_freshness(memory, redis, std::time::Duration::from_secs(1))
    }

    /// As [`Tiered::new`], re-checking memory's site records against Redis after `fresh`.
    pub fn with_site_freshness(
        memory: memory::MemoryCache,
        redis: Option<redis::RedisCache>,
        fresh: std::time::Duration,
    ) -> Self {
        Tiered {
            memory,
            redis: redis.map(Arc::new),
            checked: crate::ttl::TtlMap::new(100_000),
            fresh,
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

#[cfg(feature = "redis")]
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
        let local = self.memory.site(id).await;
        let Some(redis) = &self.redis else {
            return local;
        };
        if local.is_some() && self.checked.contains(id) {
            return local;
        }
        // Marked even when Redis fails, so a dead Redis costs one attempt per window.
        self.checked.insert(id.clone(), (), self.fresh);
        match redis.site(id).await {
            Some(shared) => {
                self.memory.put_site(id, shared).await;
                self.memory.site(id).await
            }
            None => local,
        }
    }

    async fn put_site(&self, id: &SiteId, entry: SiteEntry) -> bool {
        let shared = match &self.redis {
            Some(r) => r.put_site(id, entry.clone()).await,
            None => false,
        };
        let local = self.memory.put_site(id, entry).await;
        local || shared
    }

    async fn host_site(&self, host: &Domain) -> Option<SiteId> {
        self.redis.as_ref()?.host_site(host).await
    }

    async fn put_host_site(&self, host: &Domain, site: &SiteId, ttl: std::time::Duration) {
        if let Some(r) = &self.redis {
            r.put_host_site(host, site, ttl).await;
        }
    }

    async fn claim_site_refresh(&self, id: &SiteId, window: std::time::Duration) -> bool {
        match &self.redis {
            Some(r) => r.claim_site_refresh(id, window).await,
            None => true,
        }
    }

    async fn release_site_refresh(&self, id: &SiteId) {
        if let Some(r) = &self.redis {
            r.release_site_refresh(id).await;
        }
    }

    fn site_generation(&self) -> Option<u64> {
        // Every record this tier hands out, Redis's included, passes through memory.
        self.memory.site_generation()
    }

    // Counters in Redis when it answers (shared by the region's instances), else in this
    // process: a Redis failure costs the sharing, never the count.
    async fn take_attempt(&self, key: &str, max: u64, window: Duration) -> Option<Attempt> {
        if let Some(r) = &self.redis {
            if let Some(a) = r.take_attempt(key, max, window).await {
                return Some(a);
            }
        }
        self.memory.take_attempt(key, max, window).await
    }

    async fn attempts(&self, key: &str) -> Option<Attempts> {
        if let Some(r) = &self.redis {
            if let Some(a) = r.attempts(key).await {
                return Some(a);
            }
        }
        self.memory.attempts(key).await
    }

    async fn reset_attempts(&self, key: &str) {
        if let Some(r) = &self.redis {
            r.reset_attempts(key).await;
        }
        self.memory.reset_attempts(key).await;
    }

    async fn health(&self) -> CacheHealth {
        match &self.redis {
            Some(r) => r.health().await,
            None => CacheHealth::Ok,
        }
    }
}
