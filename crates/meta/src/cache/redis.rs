//! The Redis cache tier, shared by every origin instance of a region. Any Redis failure
//! — down, slow, full — is a miss and a log line, never an error to the visitor.

use super::{Attempt, Attempts, Cache, CacheHealth, SiteEntry};
use crate::ids::{Domain, SiteId};
use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Replaces a site entry only when the new revision is higher, atomically in Redis.
const PUT_SITE: &str = r"
local cur = redis.call('HGET', KEYS[1], 'rev')
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'rev', ARGV[1], 'body', ARGV[2])
  return 1
end
return 0
";

/// Takes one attempt from a counter, atomically: refused (`{0, count, ttl}`) when the count
/// is full, else counted (`{1, count, ttl}`), the first attempt starting the window.
const TAKE_ATTEMPT: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local counted = 0
if n < tonumber(ARGV[1]) then
  n = redis.call('INCR', KEYS[1])
  counted = 1
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {counted, n, ttl}
";

/// A `PTTL` answer as what is left (negative: no key, or no expiry).
fn left(ttl_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0))
}

/// `d` as a `PX` argument: whole milliseconds, at least one (Redis refuses zero).
fn px(d: Duration) -> u64 {
    u64::try_from(d.as_millis().max(1)).unwrap_or(u64::MAX)
}

/// Redis-backed cache tier.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    timeout: Duration,
    max_value: usize,
    prefix: String,
    ttl_secs: u64,
    script: redis::Script,
    take_attempt: redis::Script,
}

/// Why the Redis tier could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("invalid REDIS_URL: {0}")]
pub struct RedisConfigError(String);

impl RedisCache {
    /// A tier on `url`. Connects lazily, so a Redis that is down at start-up costs
    /// nothing at init and is picked up when it comes back.
    pub fn new(url: &str) -> Result<Self, RedisConfigError> {
        use redis::IntoConnectionInfo;
        let info = url
            .into_connection_info()
            .map_err(|e| RedisConfigError(e.to_string()))?;
        // A new instance's first request waits for the connection's set-up: without
        // `CLIENT SETINFO` (it only labels the connection in `CLIENT LIST`) that is no
        // round trip of its own.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        // Without TCP_NODELAY, a command written while the previous one is unanswered (the
        // connection is shared by concurrent requests) waits for the server's delayed ACK:
        // 40 ms on Linux.
        let info = info
            .set_redis_settings(settings)
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(|e| RedisConfigError(e.to_string()))?;
        let timeout = Duration::from_millis(250);
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, cfg)
            .map_err(|e| RedisConfigError(e.to_string()))?;
        Ok(RedisCache {
            conn,
            timeout,
            max_value: 4 * 1024 * 1024,
            prefix: "skyhost:".into(),
            ttl_secs: 7 * 24 * 3600,
            script: redis::Script::new(PUT_SITE),
            take_attempt: redis::Script::new(TAKE_ATTEMPT),
        })
    }

    /// Keys are written under `prefix` (tests isolate themselves with it).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    async fn run<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(op = what, error = %e, "redis failed; treated as a miss");
                None
            }
            Err(_) => {
                tracing::warn!(op = what, "redis timed out; treated as a miss");
                None
            }
        }
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Option<Bytes> {
        let mut c = self.conn.clone();
        let k = format!("{}b:{key}", self.prefix);
        let v: Option<Vec<u8>> = self
            .run("get", async move {
                redis::cmd("GET").arg(k).query_async(&mut c).await
            })
            .await?;
        v.map(Bytes::from)
    }

    async fn put(&self, key: &str, value: Bytes) {
        if value.len() > self.max_value {
            return;
        }
        let mut c = self.conn.clone();
        let k = format!("{}b:{key}", self.prefix);
        let ttl = self.ttl_secs;
        let _: Option<()> = self
            .run("set", async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(value.as_ref())
                    .arg("EX")
                    .arg(ttl)
                    .query_async(&mut c)
                    .await
            })
            .await;
    }

    async fn site(&self, id: &SiteId) -> Option<SiteEntry> {
        let mut c = self.conn.clone();
        let k = format!("{}s:{id}", self.prefix);
        let body: Option<Vec<u8>> = self
            .run("hget", async move {
                redis::cmd("HGET")
                    .arg(k)
                    .arg("body")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        serde_json::from_slice(&body?).ok()
    }

    async fn put_site(&self, id: &SiteId, entry: SiteEntry) -> bool {
        let Ok(body) = serde_json::to_vec(&entry) else {
            return false;
        };
        let mut c = self.conn.clone();
        let k = format!("{}s:{id}", self.prefix);
        let script = self.script.clone();
        let applied: Option<i64> = self
            .run("put_site", async move {
                script
                    .key(k)
                    .arg(entry.revision)
                    .arg(body)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        applied == Some(1)
    }

    async fn host_site(&self, host: &Domain) -> Option<SiteId> {
        let mut c = self.conn.clone();
        let k = format!("{}h:{host}", self.prefix);
        let id: Option<String> = self
            .run("get host", async move {
                redis::cmd("GET").arg(k).query_async(&mut c).await
            })
            .await?;
        SiteId::parse(&id?).ok()
    }

    async fn put_host_site(&self, host: &Domain, site: &SiteId, ttl: Duration) {
        let mut c = self.conn.clone();
        let k = format!("{}h:{host}", self.prefix);
        let (v, ms) = (site.to_string(), px(ttl));
        let _: Option<()> = self
            .run("set host", async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(v)
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await;
    }

    async fn claim_site_refresh(&self, id: &SiteId, window: Duration) -> bool {
        let mut c = self.conn.clone();
        let k = format!("{}r:{id}", self.prefix);
        let ms = px(window);
        // SET NX answers OK to the first caller in the window and nil to the rest.
        let set: Option<Option<String>> = self
            .run("claim refresh", async move {
                redis::cmd("SET")
                    .arg(k)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await;
        // A Redis that does not answer cannot tell: re-read, as a lone instance would.
        set.is_none_or(|claimed| claimed.is_some())
    }

    async fn release_site_refresh(&self, id: &SiteId) {
        let mut c = self.conn.clone();
        let k = format!("{}r:{id}", self.prefix);
        let _: Option<()> = self
            .run("release refresh", async move {
                redis::cmd("DEL").arg(k).query_async(&mut c).await
            })
            .await;
    }

    async fn take_attempt(&self, key: &str, max: u64, window: Duration) -> Option<Attempt> {
        let mut c = self.conn.clone();
        let k = format!("{}a:{key}", self.prefix);
        let script = self.take_attempt.clone();
        let ms = px(window);
        let (counted, count, ttl): (u8, u64, i64) = self
            .run("take attempt", async move {
                script.key(k).arg(max).arg(ms).invoke_async(&mut c).await
            })
            .await?;
        let left = left(ttl);
        Some(if counted == 1 {
            Attempt::Counted { count, left }
        } else {
            Attempt::Refused { left }
        })
    }

    async fn attempts(&self, key: &str) -> Option<Attempts> {
        let mut c = self.conn.clone();
        let k = format!("{}a:{key}", self.prefix);
        let mut p = redis::pipe();
        p.cmd("GET").arg(&k).cmd("PTTL").arg(&k);
        let (count, ttl): (Option<u64>, i64) = self
            .run("attempts", async move { p.query_async(&mut c).await })
            .await?;
        let left = left(ttl);
        Some(if left.is_zero() {
            Attempts::NONE
        } else {
            Attempts {
                count: count.unwrap_or(0),
                left,
            }
        })
    }

    async fn reset_attempts(&self, key: &str) {
        let mut c = self.conn.clone();
        let k = format!("{}a:{key}", self.prefix);
        let _: Option<()> = self
            .run("reset attempts", async move {
                redis::cmd("DEL").arg(k).query_async(&mut c).await
            })
            .await;
    }

    async fn health(&self) -> CacheHealth {
        let mut c = self.conn.clone();
        match tokio::time::timeout(self.timeout, async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        {
            Ok(Ok(_)) => CacheHealth::Ok,
            Ok(Err(e)) => CacheHealth::Degraded(format!("redis: {e}")),
            Err(_) => CacheHealth::Degraded("redis: timed out".into()),
        }
    }
}
