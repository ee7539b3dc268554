//! Basic auth of protected paths, with a lockout: after `max_failures` wrong attempts from
//! one client address on one site within the window, that address gets 429 with
//! `Retry-After` until the window ends. Counters live in Redis when configured (shared by
//! every instance of the region), else in this process; Redis failing falls back to the
//! process, never to an error.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use skyhost_meta::ttl::TtlMap;
use skyhost_meta::{DeploymentId, SiteId};
use skyhost_rules::{AuthOutcome, AuthRule};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Redis calls give up after this long.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// A verified `Authorization` value is trusted this long without running argon2 again, so
/// a protected page's assets do not each cost a password hash.
const GRANT_TTL: Duration = Duration::from_secs(300);

/// What to do with a request to a protected path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// Serve it.
    Granted,
    /// 401 with the challenge.
    Challenge,
    /// 429: locked out for this many more seconds.
    Locked(u64),
}

/// Whether a client is locked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// It may try.
    Open,
    /// Locked for this many more seconds.
    Locked(u64),
}

struct Counter {
    first: Instant,
    failures: AtomicU32,
}

/// Failure counters per (site, client address), and recently verified credentials.
pub struct Lockout {
    redis: Option<ConnectionManager>,
    memory: TtlMap<String, Arc<Counter>>,
    max_failures: u32,
    window: Duration,
    /// Salted digests of (deployment, rule, Authorization value) that verified.
    granted: TtlMap<[u8; 32], ()>,
    salt: [u8; 32],
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// 32 bytes from the OS. A one-off secret needs no seeded generator: `rand`'s thread RNG
/// would probe the CPU's features (a dozen `cpuid` exits in a VM) at init.
fn salt() -> [u8; 32] {
    use rand::TryRngCore;
    let mut s = [0u8; 32];
    match rand::rngs::OsRng.try_fill_bytes(&mut s) {
        Ok(()) => s,
        Err(_) => rand::random(),
    }
}

impl Lockout {
    /// Counters in Redis at `redis_url` when given (connected lazily), else in memory.
    pub fn new(redis_url: Option<&str>, max_failures: u32, window: Duration) -> Self {
        let redis = redis_url.and_then(|url| {
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            match redis::Client::open(url)
                .and_then(|c| ConnectionManager::new_lazy_with_config(c, cfg))
            {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "REDIS_URL unusable for lockout counters; keeping them in memory");
                    None
                }
            }
        });
        Lockout {
            redis,
            memory: TtlMap::new(100_000),
            max_failures: max_failures.max(1),
            window,
            granted: TtlMap::new(10_000),
            salt: salt(),
        }
    }

    /// The grant cache key: salted so memory never holds a plain digest of a password, and
    /// bound to the deployment so a changed password takes effect at once.
    fn grant_key(&self, deployment: &DeploymentId, rule: &AuthRule, header: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        for part in [deployment.as_str(), rule.source(), header] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    fn key(site: &SiteId, client: &str) -> String {
        format!("skyhost:auth-fail:{site}:{client}")
    }

    async fn redis<T: redis::FromRedisValue>(&self, what: &str, cmd: redis::Pipeline) -> Option<T> {
        let mut conn = self.redis.clone()?;
        match tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(op = what, error = %e, "redis failed; lockout counted in memory");
                None
            }
            Err(_) => {
                tracing::warn!(op = what, "redis timed out; lockout counted in memory");
                None
            }
        }
    }

    fn memory_gate(&self, key: &str) -> Gate {
        match self.memory.get(key) {
            Some(c) if c.failures.load(Ordering::SeqCst) >= self.max_failures => {
                match self.window.checked_sub(c.first.elapsed()) {
                    Some(left) if !left.is_zero() => Gate::Locked(ceil_secs(left).max(1)),
                    _ => Gate::Open,
                }
            }
            _ => Gate::Open,
        }
    }

    fn gate(&self, count: u64, ttl_ms: i64) -> Gate {
        if count >= u64::from(self.max_failures) && ttl_ms > 0 {
            Gate::Locked(ceil_secs(Duration::from_millis(ttl_ms as u64)).max(1))
        } else {
            Gate::Open
        }
    }

    /// Whether `client` is locked out of `site`.
    pub async fn check(&self, site: &SiteId, client: &str) -> Gate {
        self.status(site, client).await.0
    }

    /// The gate, and whether any failure is on record (so a success knows to reset).
    async fn status(&self, site: &SiteId, client: &str) -> (Gate, bool) {
        let key = Self::key(site, client);
        let mut p = redis::pipe();
        p.cmd("GET").arg(&key).cmd("PTTL").arg(&key);
        let (redis_gate, redis_failures) =
            match self.redis::<(Option<u64>, i64)>("lockout check", p).await {
                Some((count, ttl)) => (self.gate(count.unwrap_or(0), ttl), count.unwrap_or(0) > 0),
                None => (Gate::Open, false),
            };
        let failures = redis_failures || self.memory.contains(&key);
        match redis_gate {
            Gate::Open => (self.memory_gate(&key), failures),
            locked => (locked, failures),
        }
    }

    /// Records a failure; returns the gate after it.
    pub async fn fail(&self, site: &SiteId, client: &str) -> Gate {
        let key = Self::key(site, client);
        let ms = u64::try_from(self.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        // SET NX PX starts the window with the first failure; INCR keeps the expiry.
        let mut p = redis::pipe();
        p.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .ignore()
            .cmd("INCR")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key);
        if let Some((count, ttl)) = self.redis::<(u64, i64)>("lockout count", p).await {
            return self.gate(count, ttl);
        }
        let counter = self
            .memory
            .get_or_insert_with(key.clone(), self.window, || {
                Arc::new(Counter {
                    first: Instant::now(),
                    failures: AtomicU32::new(0),
                })
            });
        counter.failures.fetch_add(1, Ordering::SeqCst);
        self.memory_gate(&key)
    }

    /// Forgets the failures of `client` on `site` (after a successful login).
    pub async fn reset(&self, site: &SiteId, client: &str) {
        let key = Self::key(site, client);
        let mut p = redis::pipe();
        p.cmd("DEL").arg(&key).ignore();
        let _: Option<()> = self.redis("lockout reset", p).await;
        self.memory.remove(&key);
    }

    /// Checks a request against a rule of `deployment`: lockout first, then the
    /// credentials (argon2 runs off the async threads; a recent success is remembered).
    pub async fn authorize(
        &self,
        rule: &AuthRule,
        authorization: Option<&str>,
        site: &SiteId,
        deployment: &DeploymentId,
        client: &str,
    ) -> AuthDecision {
        let (gate, failures) = self.status(site, client).await;
        if let Gate::Locked(secs) = gate {
            return AuthDecision::Locked(secs);
        }
        let key = authorization.map(|a| self.grant_key(deployment, rule, a));
        if key.is_some_and(|k| self.granted.contains(&k)) {
            if failures {
                self.reset(site, client).await;
            }
            return AuthDecision::Granted;
        }
        let owned_rule = rule.clone();
        let header = authorization.map(str::to_owned);
        let outcome = tokio::task::spawn_blocking(move || owned_rule.verify(header.as_deref()))
            .await
            .unwrap_or(AuthOutcome::Denied { user: None });
        match outcome {
            AuthOutcome::Granted { .. } => {
                if let Some(k) = key {
                    self.granted.insert(k, (), GRANT_TTL);
                }
                self.reset(site, client).await;
                AuthDecision::Granted
            }
            AuthOutcome::Missing => AuthDecision::Challenge,
            AuthOutcome::Denied { user } => {
                let gate = self.fail(site, client).await;
                tracing::info!(site = %site, client, user = user.as_deref().unwrap_or(""), "basic auth failed");
                match gate {
                    Gate::Locked(secs) => AuthDecision::Locked(secs),
                    Gate::Open => AuthDecision::Challenge,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_lockout_counts_and_expires() {
        let l = Lockout::new(None, 3, Duration::from_millis(400));
        let site = SiteId::parse("s").unwrap();
        assert_eq!(l.check(&site, "1.2.3.4").await, Gate::Open);
        assert_eq!(l.fail(&site, "1.2.3.4").await, Gate::Open);
        assert_eq!(l.fail(&site, "1.2.3.4").await, Gate::Open);
        assert_eq!(l.fail(&site, "1.2.3.4").await, Gate::Locked(1));
        assert_eq!(l.check(&site, "1.2.3.4").await, Gate::Locked(1));
        // Another address and another site are not affected.
        assert_eq!(l.check(&site, "5.6.7.8").await, Gate::Open);
        assert_eq!(
            l.check(&SiteId::parse("t").unwrap(), "1.2.3.4").await,
            Gate::Open
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(l.check(&site, "1.2.3.4").await, Gate::Open);
        assert_eq!(l.fail(&site, "1.2.3.4").await, Gate::Open);
        l.reset(&site, "1.2.3.4").await;
        assert_eq!(l.fail(&site, "1.2.3.4").await, Gate::Open);
        assert_eq!(l.fail(&site, "1.2.3.4").await, Gate::Open);
    }

    fn rule(users: &str) -> AuthRule {
        let sealed = skyhost_rules::parse_site(skyhost_rules::SiteFiles {
            headers: Some(&format!("/p/*\n  Basic-Auth: {users}\n")),
            ..Default::default()
        })
        .unwrap()
        .seal_with(skyhost_rules::HashParams::new(8, 1, 1, None).unwrap())
        .unwrap();
        sealed.auth[0].clone()
    }

    #[tokio::test]
    async fn remembered_grants_are_bound_to_the_deployment() {
        let l = Lockout::new(None, 5, Duration::from_secs(60));
        let site = SiteId::parse("s").unwrap();
        let (d1, d2) = (
            DeploymentId::parse("20260101T000000Z-00000001").unwrap(),
            DeploymentId::parse("20260102T000000Z-00000002").unwrap(),
        );
        let old = rule("ann:old-pw");
        let new = rule("ann:new-pw");
        assert_eq!(old.source(), new.source());
        let header = "Basic YW5uOm9sZC1wdw=="; // ann:old-pw
        for _ in 0..2 {
            assert_eq!(
                l.authorize(&old, Some(header), &site, &d1, "ip").await,
                AuthDecision::Granted
            );
        }
        // The password changed in the next deployment: the old one no longer opens.
        assert_eq!(
            l.authorize(&new, Some(header), &site, &d2, "ip").await,
            AuthDecision::Challenge
        );
        assert_eq!(
            l.authorize(&new, None, &site, &d2, "ip").await,
            AuthDecision::Challenge
        );
    }

    #[test]
    fn rounding_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }
}
