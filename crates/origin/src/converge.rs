//! Convergence without a notification: a notification reaches one instance of a region,
//! and an instance that was frozen or busy may miss it. Before answering, an instance
//! whose last look is older than [`CHECK_EVERY`] reads the generation item of its region's
//! replica ([`skyhost_meta::store::generation`]) and re-reads only the sites whose revision
//! moved past what it holds. One small read per instance per second, whatever the number
//! of sites, with or without Redis.

use crate::resolve::Resolver;
use skyhost_meta::store::generation::{CatchUp, Changed};
use skyhost_meta::store::MetaStore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an instance reads the generation item at most: just under a second, so that
/// an instance that missed a notification serves the change within a second of it.
pub const CHECK_EVERY: Duration = Duration::from_millis(900);

/// A look gives up after this long; the request is answered with what the instance holds.
const CHECK_TIMEOUT: Duration = Duration::from_millis(300);

/// One instance's convergence state.
pub struct Converge {
    meta: Arc<dyn MetaStore>,
    every: Duration,
    started: Instant,
    /// Milliseconds after `started` when the next look is due.
    due_ms: AtomicU64,
    /// The generation this instance has caught up with (`None`: not looked yet).
    seen: tokio::sync::Mutex<Option<u64>>,
}

impl Converge {
    /// Looks at `meta`'s generation item at most every `every`.
    pub fn new(meta: Arc<dyn MetaStore>, every: Duration) -> Self {
        Converge {
            meta,
            every,
            started: Instant::now(),
            // The first look is one interval after start: a cold instance reads the store
            // (or a warm Redis) for what it serves anyway, and builds no client before
            // it must.
            due_ms: AtomicU64::new(u64::try_from(every.as_millis()).unwrap_or(1000)),
            seen: tokio::sync::Mutex::new(None),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX)
    }

    /// Catches up if the last look is older than the interval: cheap (one atomic load)
    /// when it is not. Requests that arrive during a look wait for it, so none of them
    /// answers from a record the look is replacing.
    pub async fn check(&self, now: Instant, resolver: &Resolver) {
        if self.ms(now) < self.due_ms.load(Ordering::Acquire) {
            return;
        }
        let mut seen = self.seen.lock().await;
        if self.ms(Instant::now()) < self.due_ms.load(Ordering::Acquire) {
            return; // Another request looked while this one waited.
        }
        match tokio::time::timeout(CHECK_TIMEOUT, self.catch_up(*seen, resolver)).await {
            Ok(Ok(now_seen)) => *seen = now_seen,
            Ok(Err(e)) => tracing::warn!(error = %e, "reading the generation item failed"),
            Err(_) => tracing::warn!("reading the generation item timed out"),
        }
        // Due again one interval after this look, whatever it found.
        let next = self.ms(Instant::now()) + u64::try_from(self.every.as_millis()).unwrap_or(1000);
        self.due_ms.store(next, Ordering::Release);
    }

    /// Re-reads what moved since `seen`; returns the generation now caught up with.
    async fn catch_up(
        &self,
        seen: Option<u64>,
        resolver: &Resolver,
    ) -> Result<Option<u64>, skyhost_meta::store::StoreError> {
        let g = self.meta.generation().await?;
        let todo = match seen {
            // A cold instance holds only what it read just now or what the region's Redis
            // holds: the listed changes cover a missed notification.
            None => g.listed(),
            Some(seen) => match g.since(seen) {
                CatchUp::Current => return Ok(Some(seen)),
                CatchUp::Sites(v) => v,
                CatchUp::Everything => self
                    .meta
                    .sites()
                    .await?
                    .into_iter()
                    .map(|s| Changed {
                        site: s.id,
                        revision: s.revision,
                    })
                    .collect(),
            },
        };
        let mut behind = false;
        for c in todo {
            if !resolver.catch_up(&c.site, c.revision).await? {
                behind = true;
            }
        }
        // A replica may hold the generation before the record it names (a global table
        // replicates items one by one): look again next time from where this look began.
        Ok(if behind { seen } else { Some(g.number) })
    }
}
