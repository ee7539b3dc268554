//! The in-process cache tier: moka for immutable entries, bounded by bytes; site records
//! in a plain map.

use super::{Attempt, Attempts, Cache, CacheHealth, SiteEntry};
use crate::ids::SiteId;
use crate::ttl::TtlMap;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Site records held at most (a miss reads the store again).
const MAX_SITES: usize = 100_000;
/// Attempt counters held at most ([`Cache::take_attempt`]).
const MAX_COUNTERS: usize = 100_000;

/// One attempt counter's window.
struct Window {
    started: Instant,
    length: Duration,
    count: AtomicU64,
}

impl Window {
    fn left(&self) -> Duration {
        self.length.saturating_sub(self.started.elapsed())
    }
}

/// In-process cache, bounded by the bytes of its entries.
#[derive(Clone)]
pub struct MemoryCache {
    entries: moka::future::Cache<String, Bytes>,
    /// Site records, read on every request: a map behind a read-write lock costs a
    /// fraction of a concurrent cache's lookup, and records are small and few.
    sites: Arc<RwLock<HashMap<SiteId, SiteEntry>>>,
    /// Raised on every change to `sites` ([`Cache::site_generation`]).
    generation: Arc<AtomicU64>,
    /// Attempt counters, each expiring with its window.
    attempts: Arc<TtlMap<String, Arc<Window>>>,
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
            sites: Arc::new(RwLock::new(HashMap::new())),
            generation: Arc::new(AtomicU64::new(0)),
            attempts: Arc::new(TtlMap::new(MAX_COUNTERS)),
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
        // A panic elsewhere cannot leave the map inconsistent: every change is one call.
        let sites = self.sites.read().unwrap_or_else(PoisonError::into_inner);
        sites.get(id).cloned()
    }

    async fn put_site(&self, id: &SiteId, entry: SiteEntry) -> bool {
        let mut sites = self.sites.write().unwrap_or_else(PoisonError::into_inner);
        if sites.get(id).is_some_and(|c| c.revision >= entry.revision) {
            return false;
        }
        if sites.len() >= MAX_SITES && !sites.contains_key(id) {
            // Full: forget every record; each is read from the store again on its next use.
            sites.clear();
        }
        sites.insert(id.clone(), entry);
        // Raised under the write lock, so a reader that sees the old number read the
        // old records.
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    fn site_generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::Acquire))
    }

    async fn take_attempt(&self, key: &str, max: u64, window: Duration) -> Option<Attempt> {
        let w = self
            .attempts
            .get_or_insert_with(key.to_owned(), window, || {
                Arc::new(Window {
                    started: Instant::now(),
                    length: window,
                    count: AtomicU64::new(0),
                })
            });
        let left = w.left();
        // One compare-and-swap loop: parallel attempts cannot all pass a check made
        // before any was counted.
        Some(
            match w
                .count
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < max).then_some(n + 1)
                }) {
                Ok(before) => Attempt::Counted {
                    count: before + 1,
                    left,
                },
                Err(_) => Attempt::Refused { left },
            },
        )
    }

    async fn attempts(&self, key: &str) -> Option<Attempts> {
        let Some(w) = self.attempts.get(key) else {
            return Some(Attempts::NONE);
        };
        let left = w.left();
        Some(if left.is_zero() {
            Attempts::NONE
        } else {
            Attempts {
                count: w.count.load(Ordering::SeqCst),
                left,
            }
        })
    }

    async fn reset_attempts(&self, key: &str) {
        self.attempts.remove(key);
    }

    async fn health(&self) -> CacheHealth {
        CacheHealth::Ok
    }
}
