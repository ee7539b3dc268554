//! The cache contract, run against every tier: in-process (moka), Redis on a real
//! redis-server, and the two tiered together.

use bytes::Bytes;
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::redis::RedisCache;
use skyhost_meta::cache::{Attempt, Attempts, Cache, CacheHealth, SiteEntry, Tiered};
use skyhost_meta::{Domain, Site, SiteId};

fn entry(id: &SiteId, rev: u64) -> SiteEntry {
    let mut s = Site::new(id.clone(), 0);
    s.revision = rev;
    SiteEntry {
        revision: rev,
        site: Some(std::sync::Arc::new(s)),
    }
}

pub async fn missing_and_immutable_entries(c: &dyn Cache) {
    let k = skyhost_testkit::unique("sites/a/blobs");
    assert_eq!(c.get(&k).await, None);
    c.put(&k, Bytes::from_static(b"body")).await;
    assert_eq!(c.get(&k).await, Some(Bytes::from_static(b"body")));
    assert_eq!(
        c.site(&SiteId::parse(&skyhost_testkit::unique("none")).unwrap())
            .await,
        None
    );
    assert_eq!(c.health().await, CacheHealth::Ok);
}

pub async fn site_revision_never_decreases(c: &dyn Cache) {
    let id = SiteId::parse(&skyhost_testkit::unique("site")).unwrap();
    assert!(c.put_site(&id, entry(&id, 3)).await);
    assert!(!c.put_site(&id, entry(&id, 2)).await, "older refused");
    assert!(!c.put_site(&id, entry(&id, 3)).await, "same refused");
    assert_eq!(c.site(&id).await.map(|e| e.revision), Some(3));
    assert!(c.put_site(&id, entry(&id, 4)).await);
    // A removal is a revision like any other.
    assert!(
        c.put_site(
            &id,
            SiteEntry {
                revision: 5,
                site: None
            }
        )
        .await
    );
    assert_eq!(
        c.site(&id).await,
        Some(SiteEntry {
            revision: 5,
            site: None
        })
    );
    assert!(!c.put_site(&id, entry(&id, 4)).await);
}

pub async fn attempt_counters_are_bounded_atomic_and_expire(c: &dyn Cache) {
    let ms = std::time::Duration::from_millis;
    let key = skyhost_testkit::unique("auth-fail");
    let other = skyhost_testkit::unique("auth-fail");
    assert_eq!(c.attempts(&key).await, Some(Attempts::NONE));
    // Twelve attempts at once against a limit of five: exactly five are counted.
    let burst = (0..12).map(|_| c.take_attempt(&key, 5, ms(600)));
    let got = futures::future::join_all(burst).await;
    let mut counted: Vec<u64> = got
        .iter()
        .filter_map(|a| match a {
            Some(Attempt::Counted { count, left }) => {
                assert!(*left <= ms(600) && !left.is_zero(), "{left:?}");
                Some(*count)
            }
            Some(Attempt::Refused { .. }) => None,
            None => panic!("the tier did not count"),
        })
        .collect();
    counted.sort_unstable();
    assert_eq!(counted, [1, 2, 3, 4, 5], "{got:?}");
    let state = c.attempts(&key).await.unwrap();
    assert_eq!(state.count, 5);
    assert!(!state.left.is_zero() && state.left <= ms(600), "{state:?}");
    // Another key has its own counter.
    assert_eq!(c.attempts(&other).await, Some(Attempts::NONE));
    assert!(matches!(
        c.take_attempt(&other, 5, ms(600)).await,
        Some(Attempt::Counted { count: 1, .. })
    ));
    // A reset forgets the counter at once.
    c.reset_attempts(&other).await;
    assert_eq!(c.attempts(&other).await, Some(Attempts::NONE));
    // The window ends: counting starts again.
    tokio::time::sleep(ms(700)).await;
    assert_eq!(c.attempts(&key).await, Some(Attempts::NONE));
    assert!(matches!(
        c.take_attempt(&key, 5, ms(600)).await,
        Some(Attempt::Counted { count: 1, .. })
    ));
}

macro_rules! contract {
    ($tier:ident, $make:expr) => {
        mod $tier {
            use super::*;
            #[tokio::test]
            async fn missing_and_immutable_entries() {
                super::missing_and_immutable_entries(&$make).await;
            }
            #[tokio::test]
            async fn site_revision_never_decreases() {
                super::site_revision_never_decreases(&$make).await;
            }
            #[tokio::test]
            async fn attempt_counters_are_bounded_atomic_and_expire() {
                super::attempt_counters_are_bounded_atomic_and_expire(&$make).await;
            }
        }
    };
}

fn redis() -> RedisCache {
    RedisCache::new(&skyhost_testkit::redis_url())
        .unwrap()
        .with_prefix(&skyhost_testkit::unique("t"))
}

contract!(in_process, MemoryCache::new(1 << 20));
contract!(redis_server, redis());
contract!(
    tiered,
    Tiered::new(MemoryCache::new(1 << 20), Some(redis()))
);

#[tokio::test]
async fn memory_is_bounded_by_bytes() {
    let c = MemoryCache::new(256 * 1024);
    for i in 0..100 {
        c.put(&format!("k{i}"), Bytes::from(vec![0u8; 16 * 1024]))
            .await;
    }
    c.sync().await;
    assert!(c.weighted_size() <= 256 * 1024, "{}", c.weighted_size());
    // One entry over an eighth of the cap is not kept at all.
    c.put("huge", Bytes::from(vec![0u8; 40 * 1024])).await;
    assert_eq!(c.get("huge").await, None);
}

#[tokio::test]
async fn redis_down_is_a_miss_never_an_error() {
    // A port nothing listens on: every call answers quickly as a miss.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let c = RedisCache::new(&format!("redis://127.0.0.1:{port}/")).unwrap();
    let id = SiteId::parse("down").unwrap();
    let t = std::time::Instant::now();
    assert_eq!(c.get("x").await, None);
    c.put("x", Bytes::from_static(b"x")).await;
    assert!(!c.put_site(&id, entry(&id, 1)).await);
    assert_eq!(c.site(&id).await, None);
    assert!(matches!(c.health().await, CacheHealth::Degraded(_)));
    let host = Domain::parse("down.test").unwrap();
    c.put_host_site(&host, &id, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(c.host_site(&host).await, None);
    assert!(
        c.claim_site_refresh(&id, std::time::Duration::from_secs(60))
            .await,
        "a Redis that cannot tell leaves the re-read to the caller"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        c.take_attempt("k", 5, std::time::Duration::from_secs(60))
            .await,
        None,
        "a Redis that cannot count says so"
    );
    assert_eq!(c.attempts("k").await, None);
    // Tiered on top of a dead Redis still serves and counts in memory.
    let t = Tiered::new(MemoryCache::new(1 << 20), Some(c));
    t.put("y", Bytes::from_static(b"y")).await;
    assert_eq!(t.get("y").await, Some(Bytes::from_static(b"y")));
    assert!(t.put_site(&id, entry(&id, 1)).await);
    attempt_counters_are_bounded_atomic_and_expire(&t).await;
}

#[tokio::test]
async fn tiered_backfills_memory_from_redis() {
    let shared = redis();
    let key = skyhost_testkit::unique("sites/a/blobs");
    shared.put(&key, Bytes::from_static(b"from redis")).await;
    let t = Tiered::new(MemoryCache::new(1 << 20), Some(shared));
    assert_eq!(t.get(&key).await, Some(Bytes::from_static(b"from redis")));
    assert_eq!(
        t.memory().get(&key).await,
        Some(Bytes::from_static(b"from redis"))
    );
}

/// One origin instance's tiers over the region's Redis (keys under `prefix`), re-checking
/// site records against Redis after `fresh`.
fn instance(prefix: &str, fresh: std::time::Duration) -> Tiered {
    let redis = RedisCache::new(&skyhost_testkit::redis_url())
        .unwrap()
        .with_prefix(prefix);
    Tiered::with_site_freshness(MemoryCache::new(1 << 20), Some(redis), fresh)
}

#[tokio::test]
async fn instances_sharing_redis_see_each_others_site_updates() {
    // Two origin instances of one region: a notification reaches only the first.
    let prefix = skyhost_testkit::unique("shared");
    let make = || instance(&prefix, std::time::Duration::from_millis(100));
    let (a, b) = (make(), make());
    let id = SiteId::parse("shared").unwrap();
    assert!(a.put_site(&id, entry(&id, 1)).await);
    assert_eq!(b.site(&id).await.map(|e| e.revision), Some(1));
    assert!(a.put_site(&id, entry(&id, 2)).await);
    // Within the window the second instance may answer from memory; after it, never stale.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(b.site(&id).await.map(|e| e.revision), Some(2));
    // An older record in Redis never lowers what memory holds.
    assert!(!b.put_site(&id, entry(&id, 1)).await);
    assert_eq!(b.site(&id).await.map(|e| e.revision), Some(2));
}

#[tokio::test]
async fn instances_sharing_redis_share_host_hints_and_refresh_claims() {
    let prefix = skyhost_testkit::unique("hints");
    let make = || instance(&prefix, std::time::Duration::from_secs(1));
    let (a, b) = (make(), make());
    let host = Domain::parse(&format!("{}.test", skyhost_testkit::unique("h"))).unwrap();
    let (one, two) = (SiteId::parse("one").unwrap(), SiteId::parse("two").unwrap());
    let ms = std::time::Duration::from_millis;
    assert_eq!(b.host_site(&host).await, None);
    a.put_host_site(&host, &one, ms(60_000)).await;
    assert_eq!(b.host_site(&host).await, Some(one.clone()));
    a.put_host_site(&host, &two, ms(200)).await;
    assert_eq!(
        b.host_site(&host).await,
        Some(two.clone()),
        "the latest answer wins"
    );
    tokio::time::sleep(ms(300)).await;
    assert_eq!(b.host_site(&host).await, None, "a hint expires");

    // One claim per window across the instances, and a new one once it has passed.
    assert!(a.claim_site_refresh(&one, ms(200)).await);
    assert!(!b.claim_site_refresh(&one, ms(200)).await);
    assert!(!a.claim_site_refresh(&one, ms(200)).await);
    assert!(
        b.claim_site_refresh(&two, ms(200)).await,
        "claims are per site"
    );
    tokio::time::sleep(ms(300)).await;
    assert!(b.claim_site_refresh(&one, ms(200)).await);

    // A claim given back (its re-read failed) is open to the next instance at once.
    assert!(a.claim_site_refresh(&two, ms(60_000)).await);
    assert!(!b.claim_site_refresh(&two, ms(60_000)).await);
    a.release_site_refresh(&two).await;
    assert!(b.claim_site_refresh(&two, ms(60_000)).await);
    assert!(
        !a.claim_site_refresh(&two, ms(60_000)).await,
        "and is then b's"
    );

    // Memory alone shares nothing, so every claim is the caller's.
    let alone = MemoryCache::new(1 << 20);
    alone.put_host_site(&host, &one, ms(60_000)).await;
    assert_eq!(alone.host_site(&host).await, None);
    assert!(alone.claim_site_refresh(&one, ms(200)).await);
    assert!(alone.claim_site_refresh(&one, ms(200)).await);
}
