//! A new origin instance of a region whose Redis is warm answers its first requests
//! without building a DynamoDB or S3 client (on moto and redis-server): another instance
//! shared the host → site hint, the site record, the manifest and the files, and claimed
//! the record's refresh for the window. A hint never outranks the site's record.

mod common;

use common::*;
use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::redis::RedisCache;
use skyhost_meta::cache::{Cache, Tiered};
use skyhost_meta::config::SdkConfigCell;
use skyhost_meta::store::dynamodb::DynamoStore;
use skyhost_meta::store::item::{Item, Key};
use skyhost_meta::store::{MetaStore, StoreError, Write, WriteError};
use skyhost_meta::{Domain, SiteId};
use skyhost_origin::Origin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const REGION: &str = "us-west-2";

/// The table as an instance sees it: reads fail while it is `down` (an outage of the
/// store, not of Redis), and each failed read is counted.
struct Outage {
    table: Arc<DynamoStore>,
    down: AtomicBool,
    failed: AtomicUsize,
}

impl Outage {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Backend("the table is unreachable".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl MetaStore for Outage {
    async fn get_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.check()?;
        self.table.get_item(key).await
    }
    async fn query_items(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.check()?;
        self.table.query_items(pk, sk_prefix).await
    }
    async fn scan_kind(&self, kind: &str) -> Result<Vec<Item>, StoreError> {
        self.check()?;
        self.table.scan_kind(kind).await
    }
    async fn write(&self, writes: Vec<Write>) -> Result<(), WriteError> {
        self.table.write(writes).await
    }
}

/// An instance's stores, with clients built on first use as `Origin::from_env` builds them.
struct Instance {
    origin: Arc<Origin>,
    conf: SdkConfigCell,
    meta: Arc<DynamoStore>,
    local: Arc<S3BlobStore>,
    store: Arc<Outage>,
}

impl Instance {
    async fn new(table: &str, bucket: &str, redis_prefix: &str) -> Instance {
        // Loaded on first use, as `Origin::from_env` loads it.
        let conf = SdkConfigCell::load(REGION);
        let meta = Arc::new(DynamoStore::deferred(conf.clone(), table));
        let store = Arc::new(Outage {
            table: meta.clone(),
            down: AtomicBool::new(false),
            failed: AtomicUsize::new(0),
        });
        let local = Arc::new(S3BlobStore::deferred(conf.clone(), bucket));
        let redis = RedisCache::new(&redis_url())
            .unwrap()
            .with_prefix(redis_prefix);
        let config = config();
        let cache: Arc<dyn Cache> = Arc::new(Tiered::new(
            MemoryCache::new(config.cache_bytes),
            Some(redis),
        ));
        let origin = Arc::new(Origin::new(
            config,
            store.clone() as Arc<dyn MetaStore>,
            local.clone() as Arc<dyn BlobStore>,
            None,
            cache,
        ));
        Instance {
            origin,
            conf,
            meta,
            local,
            store,
        }
    }

    /// An instance whose table reads fail from the start.
    async fn during_outage(table: &str, bucket: &str, redis_prefix: &str) -> Instance {
        let inst = Instance::new(table, bucket, redis_prefix).await;
        inst.store.down.store(true, Ordering::SeqCst);
        inst
    }

    fn failed_reads(&self) -> usize {
        self.store.failed.load(Ordering::SeqCst)
    }

    /// Whether the table's and the bucket's clients are built; neither is unless the
    /// SDK configuration was loaded.
    fn built(&self) -> (bool, bool) {
        let built = (self.meta.client_built(), self.local.client_built());
        assert!(self.conf.is_loaded() || built == (false, false));
        built
    }
}

/// Redis, read directly under `prefix`.
fn shared(prefix: &str) -> RedisCache {
    RedisCache::new(&redis_url()).unwrap().with_prefix(prefix)
}

/// Gives spawned work (a refresh, a cache write) time to run before a check that it did not.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_cold_instance_answers_from_a_warm_redis_without_sdk_clients() {
    let (table, bucket) = (dynamo(REGION).await, s3(REGION).await);
    let site = unique("ci");
    let host = format!("{site}.test");
    let page = "<h1>from the region's cache</h1>";
    deploy(
        &table,
        &bucket,
        &site,
        &[&host],
        &[
            file("/index.html", page, "text/html"),
            file("/app.css", "body{}", "text/css"),
        ],
        rules(None, None, None),
    )
    .await;
    let prefix = format!("{}:", unique("ci"));
    let c = client();

    // The first instance of the region finds everything in the store and the bucket.
    let warm = Instance::new(table.table(), bucket.bucket(), &prefix).await;
    assert_eq!(warm.built(), (false, false), "nothing is built at init");
    let server = start(warm.origin.clone()).await;
    for path in ["/", "/app.css"] {
        let got = get(&c, &server.base, &host, path).await;
        assert_eq!(got.status, 200, "{path}");
    }
    assert_eq!(warm.built(), (true, true), "a cold region needs both");
    let redis = shared(&prefix);
    let domain = Domain::parse(&host).unwrap();
    let id = SiteId::parse(&site).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || {
            let (redis, domain, id) = (&redis, &domain, &id);
            async move { redis.host_site(domain).await.as_ref() == Some(id) }
        })
        .await,
        "the host's site is shared"
    );
    settle().await;
    assert!(
        !redis.claim_site_refresh(&id, Duration::from_secs(60)).await,
        "the warm instance's read of the record claimed the refresh window"
    );
    server.stop().await;

    // A new instance: its first requests come from Redis, and it builds no client.
    let cold = Instance::new(table.table(), bucket.bucket(), &prefix).await;
    let server = start(cold.origin.clone()).await;
    let got = get(&c, &server.base, &host, "/").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), page);
    assert_eq!(got.cache(), "hit");
    let css = get(&c, &server.base, &host, "/app.css").await;
    assert_eq!((css.status.as_u16(), css.text().as_str()), (200, "body{}"));
    settle().await;
    assert_eq!(
        cold.built(),
        (false, false),
        "neither the table's nor the bucket's client was built"
    );
    assert!(!cold.conf.is_loaded(), "nor the SDK configuration loaded");
    server.stop().await;

    // The same instance over a Redis no other instance warmed builds both (the control).
    let lone = Instance::new(
        table.table(),
        bucket.bucket(),
        &format!("{}:", unique("ci")),
    )
    .await;
    let server = start(lone.origin.clone()).await;
    assert_eq!(get(&c, &server.base, &host, "/").await.text(), page);
    assert_eq!(lone.built(), (true, true));
    server.stop().await;
}

#[tokio::test]
async fn a_hint_is_checked_against_the_sites_record() {
    let (table, bucket) = (dynamo(REGION).await, s3(REGION).await);
    let (old, new) = (unique("hint-old"), unique("hint-new"));
    let host = format!("{}.test", unique("moved"));
    let gone = format!("{}.test", unique("gone"));
    deploy(
        &table,
        &bucket,
        &old,
        &[&format!("{old}.test")],
        &[file("/index.html", "old site", "text/html")],
        rules(None, None, None),
    )
    .await;
    deploy(
        &table,
        &bucket,
        &new,
        &[&host],
        &[file("/index.html", "new site", "text/html")],
        rules(None, None, None),
    )
    .await;
    let prefix = format!("{}:", unique("hint"));
    let redis = shared(&prefix);
    let old_id = SiteId::parse(&old).unwrap();
    // Stale hints: the moved host and a host no site has both name the old site, whose
    // record lists neither.
    for h in [&host, &gone] {
        redis
            .put_host_site(&Domain::parse(h).unwrap(), &old_id, Duration::from_secs(60))
            .await;
    }

    let inst = Instance::new(table.table(), bucket.bucket(), &prefix).await;
    let server = start(inst.origin.clone()).await;
    let c = client();
    let got = get(&c, &server.base, &host, "/").await;
    assert_eq!(
        (got.status.as_u16(), got.text().as_str()),
        (200, "new site")
    );
    assert_eq!(
        redis.host_site(&Domain::parse(&host).unwrap()).await,
        Some(SiteId::parse(&new).unwrap()),
        "the store's answer replaces the stale hint"
    );
    let got = get(&c, &server.base, &gone, "/").await;
    assert_eq!(got.status, 404, "{}", got.text());
    assert!(!got.text().contains("old site"));
    server.stop().await;
}

#[tokio::test]
async fn a_failed_re_read_gives_the_refresh_window_back() {
    let (table, bucket) = (dynamo(REGION).await, s3(REGION).await);
    let (site, host) = one_page_site(&table, &bucket, "outage", "cached page").await;
    let prefix = format!("{}:", unique("outage"));
    let redis = shared(&prefix);
    let id = SiteId::parse(&site).unwrap();
    let window = Duration::from_secs(60);
    let c = client();

    // A warm instance seeds the region's Redis; its claim is then given back by hand, so
    // the next instance's refresh is the one that claims.
    let warm = Instance::new(table.table(), bucket.bucket(), &prefix).await;
    let server = start(warm.origin.clone()).await;
    assert_eq!(get(&c, &server.base, &host, "/").await.status, 200);
    server.stop().await;
    settle().await;
    redis.release_site_refresh(&id).await;

    // A new instance during a table outage answers from Redis; its refresh claims the
    // window, fails, and gives it back.
    let cut = Instance::during_outage(table.table(), bucket.bucket(), &prefix).await;
    let server = start(cut.origin.clone()).await;
    let got = get(&c, &server.base, &host, "/").await;
    assert_eq!(
        (got.status.as_u16(), got.text().as_str()),
        (200, "cached page")
    );
    settle().await;
    assert_eq!(cut.failed_reads(), 1, "the refresh tried the table");
    assert!(
        redis.claim_site_refresh(&id, window).await,
        "a failed re-read leaves the window open to the region's other instances"
    );
    server.stop().await;
    redis.release_site_refresh(&id).await;

    // The control: the same refresh with the table up keeps its claim.
    let up = Instance::new(table.table(), bucket.bucket(), &prefix).await;
    let server = start(up.origin.clone()).await;
    assert_eq!(get(&c, &server.base, &host, "/").await.status, 200);
    settle().await;
    assert!(
        !redis.claim_site_refresh(&id, window).await,
        "a successful re-read keeps the window"
    );
    server.stop().await;

    // A record Redis does not hold is read on the request's path: that read fails the
    // request, and gives the claim it took back too.
    let bare = format!("{}:", unique("outage"));
    let bare_redis = shared(&bare);
    bare_redis
        .put_host_site(&Domain::parse(&host).unwrap(), &id, window)
        .await;
    let cut = Instance::during_outage(table.table(), bucket.bucket(), &bare).await;
    let server = start(cut.origin.clone()).await;
    let got = get(&c, &server.base, &host, "/").await;
    assert!(got.status.is_server_error(), "{}", got.status);
    settle().await;
    assert_eq!(cut.failed_reads(), 1, "the request tried the table");
    assert!(
        bare_redis.claim_site_refresh(&id, window).await,
        "the failed read gave its claim back"
    );
    server.stop().await;
}
