//! End to end on one moto server, three regions (us-west-2 primary, eu-central-1,
//! ap-southeast-1): a site deployed through the meta adapters into the primary table and
//! bucket; the table's stream read through the DynamoDB Streams API and handed to the
//! replicator as Lambda would; the primary bucket's new objects handed to the copier as
//! S3 sends them (directly and inside SQS messages); two real origins on loopback, one per
//! replica region, then serving the new deployment from their own buckets.
//!
//! Run with `make test` (or `./tests/harness/with-servers.sh cargo test -p
//! skyhost-replicator`): a missing moto server fails these tests, it never skips them.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use skyhost_asset_copier::{Copier, CopyError, CopyOptions, Method, Transfer};
use skyhost_meta::blob::event::{created_record, Created};
use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::blob::{BlobBody, BlobError, BlobStore, ObjectInfo, ObjectMeta};
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::metrics::Metrics;
use skyhost_meta::notify::HttpNotifier;
use skyhost_meta::store::dynamodb::{DynamoStore, DynamoStreamFeed};
use skyhost_meta::store::sqlite::SqliteStore;
use skyhost_meta::store::{ChangeFeed, MetaStore};
use skyhost_meta::{keys, BlobHash, Deployment, DeploymentId, DeploymentState, Domain, Manifest};
use skyhost_meta::{Site, SiteId};
use skyhost_origin::{Origin, OriginConfig};
use skyhost_replicator::{Replicator, RetryOptions};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRIMARY: &str = "us-west-2";
const EU: &str = "eu-central-1";
const AP: &str = "ap-southeast-1";
const SECRET: &[u8] = b"e2e-notify-secret";
const HOST: &str = "blog.e2e.test";
const MIB: usize = 1024 * 1024;

// ------------------------------------------------------------------ moto

async fn bucket(region: &str) -> S3BlobStore {
    skyhost_testkit::s3(region).await
}

async fn table() -> (DynamoStore, DynamoStreamFeed) {
    skyhost_testkit::dynamo_with_feed(PRIMARY).await
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn bytes_of(n: usize, seed: u8) -> Bytes {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add((i / 4099) as u8) ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

async fn read_all(store: &dyn BlobStore, key: &str) -> Bytes {
    store
        .get(key, None)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("{key} missing in {}", store.bucket()))
        .collect()
        .await
        .expect("body")
}

// ------------------------------------------------------------------ deploying

/// Deploys `files` (path, bytes) to the primary as the CLI does: missing blobs, then the
/// manifest, then the deployment record, then activation. Returns the deployment and the
/// keys it wrote to the primary bucket.
async fn deploy(
    table: &DynamoStore,
    primary: &S3BlobStore,
    site: &SiteId,
    files: &[(&str, Bytes)],
) -> (DeploymentId, Vec<String>) {
    let id = record_deployment(table, primary, site, files).await;
    let current = table.site(site).await.unwrap().expect("site exists");
    table
        .activate(site, &id.0, current.revision, skyhost_meta::now())
        .await
        .expect("activate");
    id
}

async fn record_deployment(
    table: &DynamoStore,
    primary: &S3BlobStore,
    site: &SiteId,
    files: &[(&str, Bytes)],
) -> (DeploymentId, Vec<String>) {
    let id = DeploymentId::new(skyhost_meta::now());
    let mut written = Vec::new();
    let mut entries = serde_json::Map::new();
    let mut total = 0u64;
    for (path, body) in files {
        let hash = BlobHash::of(body);
        let key = keys::blob(site, &hash, None);
        if primary.head(&key).await.unwrap().is_none() {
            primary
                .put_bytes(&key, body.clone(), Some(hash.as_str()))
                .await
                .unwrap();
            written.push(key);
        }
        let ct = if path.ends_with(".html") {
            "text/html; charset=utf-8"
        } else if path.ends_with(".css") {
            "text/css"
        } else {
            "application/octet-stream"
        };
        entries.insert(
            (*path).to_owned(),
            json!({"hash": hash, "size": body.len(), "content_type": ct}),
        );
        total += body.len() as u64;
    }
    let manifest: Manifest = serde_json::from_value(json!({
        "site": site, "deployment": id, "created": skyhost_meta::now(), "files": entries
    }))
    .expect("manifest");
    let mkey = keys::manifest(site, &id);
    let mbody = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let mhash = sha256_hex(&mbody);
    primary.put_bytes(&mkey, mbody, Some(&mhash)).await.unwrap();
    written.push(mkey);
    table
        .put_deployment(&Deployment {
            site: site.clone(),
            id: id.clone(),
            created: skyhost_meta::now(),
            file_count: files.len() as u64,
            bytes: total,
            state: DeploymentState::Ready,
            message: None,
        })
        .await
        .unwrap();
    (id, written)
}

// ------------------------------------------------------------------ the two Lambdas' inputs

/// The table's stream after `cursor`, as one Lambda batch.
async fn stream_batch(feed: &DynamoStreamFeed, cursor: &mut Option<String>) -> Event {
    let b = feed
        .read(cursor.as_deref(), 1000)
        .await
        .expect("read stream");
    *cursor = b.cursor;
    assert!(!b.records.is_empty(), "the stream has new records");
    // Through JSON, the way Lambda hands it to the function.
    let wire = serde_json::to_string(&json!({ "Records": b.records })).unwrap();
    serde_json::from_str(&wire).expect("DynamoDB event")
}

fn sequence(r: &EventRecord) -> String {
    r.change.sequence_number.clone().unwrap_or_default()
}

fn records_json(ev: &Event) -> Vec<serde_json::Value> {
    ev.records
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect()
}

/// S3 `ObjectCreated:Put` records of `keys`, serialized as S3 sends them.
async fn s3_event_json(primary: &S3BlobStore, keys: &[String]) -> String {
    let mut records = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let size = primary.head(key).await.unwrap().expect("object").size;
        let seq = format!("{:016X}", i + 1);
        records.push(
            created_record(&Created {
                region: PRIMARY,
                bucket: primary.bucket(),
                key,
                size,
                sequencer: &seq,
                time: skyhost_meta::now(),
            })
            .unwrap(),
        );
    }
    serde_json::to_string(&json!({ "Records": records })).unwrap()
}

/// Copies `keys`: the first half as a direct S3 event, the rest in an SQS message.
async fn copy_new_objects(
    copier: &Copier,
    primary: &S3BlobStore,
    keys: &[String],
) -> Vec<Transfer> {
    let (direct, queued) = keys.split_at(keys.len() / 2);
    let mut copied = Vec::new();
    if !direct.is_empty() {
        let ev: S3Event = serde_json::from_str(&s3_event_json(primary, direct).await).unwrap();
        let r = copier.handle_s3(ev).await.expect("copy (S3 event)");
        copied.extend(r.copied().cloned());
    }
    if !queued.is_empty() {
        let body = s3_event_json(primary, queued).await;
        let sqs: SqsEvent = serde_json::from_value(json!({"Records": [{
            "messageId": "5f0a7c1e-0000-4000-8000-000000000001",
            "receiptHandle": "handle",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-west-2:111122223333:skyhost-asset-copier",
            "awsRegion": PRIMARY
        }]}))
        .unwrap();
        // Through the functions' entry point, which recognises either shape.
        let r = copier
            .handle_json(serde_json::to_value(&sqs).unwrap())
            .await
            .expect("copy (SQS message)");
        copied.extend(r.copied().cloned());
    }
    copied
}

// ------------------------------------------------------------------ a region's origin

/// One replica region's real origin, served over HTTP on loopback. Its metadata store is
/// empty, so it knows a site only from the notifications it takes.
struct RegionOrigin {
    region: &'static str,
    bucket: S3BlobStore,
    origin: Arc<Origin>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RegionOrigin {
    async fn start(region: &'static str, bucket: S3BlobStore, primary: &S3BlobStore) -> Self {
        let mut config = OriginConfig::new(region, PRIMARY);
        config.bucket = bucket.bucket().to_owned();
        config.primary_bucket = primary.bucket().to_owned();
        config.notify_secret = skyhost_meta::secrets::Secret::fixed(vec![SECRET.to_vec()]);
        let origin = Arc::new(Origin::new(
            config,
            Arc::new(SqliteStore::in_memory(region).unwrap()),
            Arc::new(bucket.clone()),
            Some(Arc::new(primary.clone())),
            Arc::new(MemoryCache::new(64 * MIB as u64)),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut r = RegionOrigin {
            region,
            bucket,
            origin,
            addr,
            stop: None,
            task: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let origin = self.origin.clone();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(async move {
            let _ = skyhost_origin::server::serve(listener, origin, async {
                let _ = rx.await;
            })
            .await;
        }));
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The region goes down: its listener closes, connections are refused.
    async fn down(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    /// The region comes back on the same address, with the state it had.
    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    async fn get(
        &self,
        http: &reqwest::Client,
        path: &str,
    ) -> (u16, reqwest::header::HeaderMap, Bytes) {
        let resp = http
            .get(format!("{}{path}", self.base_url()))
            .header("host", HOST)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: GET {path}: {e}", self.region));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.bytes().await.unwrap())
    }

    /// Asserts the region serves `deployment` with `index` as its home page, files from its
    /// own bucket, and holds every object of the primary's `site`.
    async fn assert_serves(
        &self,
        http: &reqwest::Client,
        primary: &S3BlobStore,
        site: &SiteId,
        deployment: &DeploymentId,
        index: &[u8],
        big: &[u8],
    ) {
        let header = |h: &reqwest::header::HeaderMap, n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (status, h, body) = self.get(http, "/").await;
        assert_eq!(
            status, 200,
            "{}: GET / answered {status}: {body:?}",
            self.region
        );
        assert_eq!(
            header(&h, "x-skyhost-deployment"),
            deployment.as_str(),
            "{}",
            self.region
        );
        assert_eq!(header(&h, "x-skyhost-region"), self.region);
        assert_eq!(&body[..], index, "{}", self.region);
        // A file not preloaded comes from this region's bucket, not the primary's.
        let (status, h, body) = self.get(http, "/video.bin").await;
        assert_eq!(status, 200, "{}", self.region);
        assert_eq!(header(&h, "x-skyhost-deployment"), deployment.as_str());
        let cache = header(&h, "x-skyhost-cache");
        assert!(
            cache == "miss" || cache == "hit",
            "{}: X-Skyhost-Cache {cache:?}",
            self.region
        );
        assert_eq!(sha256_hex(&body), sha256_hex(big), "{}", self.region);
        // Every object of the site, byte for byte (each copy has its own write time).
        let keys_sizes = |l: &[ObjectInfo]| -> Vec<(String, u64)> {
            l.iter().map(|o| (o.key.clone(), o.size)).collect()
        };
        let want: Vec<ObjectInfo> = primary.list(&format!("sites/{site}/")).await.unwrap();
        let have: Vec<ObjectInfo> = self.bucket.list(&format!("sites/{site}/")).await.unwrap();
        assert_eq!(
            keys_sizes(&have),
            keys_sizes(&want),
            "{} holds every object",
            self.region
        );
        for o in &want {
            let a = read_all(&self.bucket, &o.key).await;
            let b = read_all(primary, &o.key).await;
            assert_eq!(sha256_hex(&a), sha256_hex(&b), "{}: {}", self.region, o.key);
            if let Some(keys::KeyKind::Blob(_, h, None)) = keys::parse(&o.key) {
                assert_eq!(sha256_hex(&a), h.as_str());
                let meta = self.bucket.head(&o.key).await.unwrap().unwrap();
                assert_eq!(
                    meta.sha256.as_deref(),
                    Some(h.as_str()),
                    "sha256 metadata travels"
                );
            }
        }
    }
}

fn replicator_for(regions: &[&RegionOrigin], opts: RetryOptions) -> Replicator {
    let http = skyhost_meta::tls::http_client()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    Replicator::new(
        regions
            .iter()
            .map(|r| (r.region.to_owned(), r.base_url()))
            .collect(),
        Arc::new(HttpNotifier::new(http, SECRET.to_vec())),
        opts,
    )
    .with_metrics(Metrics::discard())
}

fn reported(resp: &aws_lambda_events::event::streams::DynamoDbEventResponse) -> Vec<String> {
    resp.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

fn in_10s() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

// ------------------------------------------------------------------ the scenario

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deploy_reaches_every_region_and_survives_replays_reordering_and_outages() {
    let (table, feed) = table().await;
    let primary = bucket(PRIMARY).await;
    let mut eu = RegionOrigin::start(EU, bucket(EU).await, &primary).await;
    let mut ap = RegionOrigin::start(AP, bucket(AP).await, &primary).await;
    let copier = Copier::new(
        Arc::new(primary.clone()),
        vec![
            (
                EU.to_owned(),
                Arc::new(eu.bucket.clone()) as Arc<dyn BlobStore>,
            ),
            (
                AP.to_owned(),
                Arc::new(ap.bucket.clone()) as Arc<dyn BlobStore>,
            ),
        ],
        // The 12 MiB file goes through a multipart copy, the small ones through CopyObject.
        CopyOptions {
            multipart_threshold: 8 * MIB as u64,
            part_size: 5 * MIB as u64,
            ..CopyOptions::default()
        },
    )
    .with_metrics(Metrics::discard());
    let replicator = replicator_for(&[&eu, &ap], RetryOptions::default());
    let http = skyhost_meta::tls::http_client().build().expect("client");

    // The site, then its first deployment.
    let site = SiteId::parse("blog").unwrap();
    let mut record = Site::new(site.clone(), skyhost_meta::now());
    record.domains = vec![Domain::parse(HOST).unwrap()];
    table.put_site(None, &record).await.unwrap();
    let big = bytes_of(12 * MIB + 12_345, 7);
    let v1 = Bytes::from_static(b"<h1>version 1</h1>\n");
    let files1 = [
        ("/index.html", v1.clone()),
        ("/style.css", Bytes::from_static(b"body { color: teal }\n")),
        ("/video.bin", big.clone()),
    ];
    let (d1, written1) = deploy(&table, &primary, &site, &files1).await;

    // Objects first (S3 notifies as soon as they are written), then the stream batch.
    let copied = copy_new_objects(&copier, &primary, &written1).await;
    assert_eq!(
        copied.len(),
        written1.len() * 2,
        "every new object to both replicas"
    );
    // Server-side: the 12 MiB file in parts, the others with one CopyObject each.
    let video = keys::blob(&site, &BlobHash::of(&big), None);
    for t in &copied {
        let want = if t.key == video {
            Method::Multipart
        } else {
            Method::ServerCopy
        };
        assert_eq!(t.method, want, "{}", t.key);
    }
    let mut cursor = None;
    let batch1 = stream_batch(&feed, &mut cursor).await;
    let resp = replicator.handle(batch1.clone(), in_10s()).await;
    assert!(reported(&resp).is_empty(), "{resp:?}");
    eu.assert_serves(&http, &primary, &site, &d1, &v1, &big)
        .await;
    ap.assert_serves(&http, &primary, &site, &d1, &v1, &big)
        .await;

    // The same batch and the same events again change nothing.
    let resp = replicator.handle(batch1.clone(), in_10s()).await;
    assert!(reported(&resp).is_empty());
    let ev: S3Event = serde_json::from_str(&s3_event_json(&primary, &written1).await).unwrap();
    let again = copier.handle_s3(ev).await.unwrap();
    assert_eq!(again.transfers.len(), written1.len() * 2);
    assert!(again.transfers.iter().all(|t| t.method == Method::Present));
    eu.assert_serves(&http, &primary, &site, &d1, &v1, &big)
        .await;
    ap.assert_serves(&http, &primary, &site, &d1, &v1, &big)
        .await;

    // A second deployment; then the older batch arrives after the newer one.
    let v2 = Bytes::from_static(b"<h1>version 2</h1>\n");
    let files2 = [
        ("/index.html", v2.clone()),
        ("/style.css", Bytes::from_static(b"body { color: teal }\n")),
        ("/video.bin", big.clone()),
    ];
    let (d2, written2) = deploy(&table, &primary, &site, &files2).await;
    // Only the new page and the manifest are new: the other blobs are shared.
    assert_eq!(written2.len(), 2);
    copy_new_objects(&copier, &primary, &written2).await;
    let batch2 = stream_batch(&feed, &mut cursor).await;
    assert!(reported(&replicator.handle(batch2, in_10s()).await).is_empty());
    eu.assert_serves(&http, &primary, &site, &d2, &v2, &big)
        .await;
    ap.assert_serves(&http, &primary, &site, &d2, &v2, &big)
        .await;
    let resp = replicator.handle(batch1.clone(), in_10s()).await;
    assert!(
        reported(&resp).is_empty(),
        "a stale notification is taken, and ignored"
    );
    eu.assert_serves(&http, &primary, &site, &d2, &v2, &big)
        .await;
    ap.assert_serves(&http, &primary, &site, &d2, &v2, &big)
        .await;

    // ap-southeast-1 goes down during a deploy whose batch also holds a deployment record
    // written before the activation and one written after it.
    ap.down().await;
    let v3 = Bytes::from_static(b"<h1>version 3</h1>\n");
    let files3 = [
        ("/index.html", v3.clone()),
        ("/style.css", Bytes::from_static(b"body { color: teal }\n")),
        ("/video.bin", big.clone()),
    ];
    let (d3, written3) = deploy(&table, &primary, &site, &files3).await;
    let v4 = Bytes::from_static(b"<h1>version 4, not activated</h1>\n");
    let (_d4, written4) = record_deployment(&table, &primary, &site, &[("/index.html", v4)]).await;
    copy_new_objects(&copier, &primary, &[written3, written4].concat()).await;
    let batch3 = stream_batch(&feed, &mut cursor).await;
    let kinds: Vec<String> = batch3
        .records
        .iter()
        .map(|r| {
            let img = if r.event_name == "REMOVE" {
                &r.change.old_image
            } else {
                &r.change.new_image
            };
            skyhost_meta::store::item::attr_str(img, "kind")
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    // The generation item is bumped in the site change's transaction.
    assert_eq!(kinds, ["deployment", "site", "generation", "deployment"]);
    let quick = RetryOptions {
        attempt_timeout: Duration::from_millis(500),
        reserve: Duration::from_millis(100),
        ..RetryOptions::default()
    };
    let started = Instant::now();
    let resp = replicator_for(&[&eu, &ap], quick)
        .handle(batch3.clone(), Instant::now() + Duration::from_secs(2))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bounded by the deadline"
    );
    // The site record failed, so it and every later record are reported; the deployment
    // record before it is not.
    let want: Vec<String> = batch3.records[1..].iter().map(sequence).collect();
    assert_eq!(reported(&resp), want);
    eu.assert_serves(&http, &primary, &site, &d3, &v3, &big)
        .await;

    // Back up; Lambda retries from the lowest reported sequence number.
    ap.up().await;
    let retry: Event = serde_json::from_value(json!({
        "Records": records_json(&batch3)
            .into_iter()
            .filter(|r| want.contains(&r["dynamodb"]["SequenceNumber"].as_str().unwrap_or("").to_owned()))
            .collect::<Vec<_>>()
    }))
    .unwrap();
    assert_eq!(retry.records.len(), 3);
    let resp = replicator.handle(retry, in_10s()).await;
    assert!(reported(&resp).is_empty(), "{resp:?}");
    ap.assert_serves(&http, &primary, &site, &d3, &v3, &big)
        .await;
    eu.assert_serves(&http, &primary, &site, &d3, &v3, &big)
        .await;

    eu.down().await;
    ap.down().await;
}

// ------------------------------------------------------------------ interrupted copies

/// A source bucket whose bodies break after `cut_after` bytes while `broken` is set.
struct CutSource {
    inner: S3BlobStore,
    cut_after: u64,
    broken: AtomicBool,
}

#[async_trait::async_trait]
impl BlobStore for CutSource {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, BlobError> {
        self.inner.head(key).await
    }
    async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<BlobBody>, BlobError> {
        use futures::StreamExt;
        let Some(body) = self.inner.get(key, range).await? else {
            return Ok(None);
        };
        if !self.broken.load(Ordering::SeqCst) {
            return Ok(Some(body));
        }
        let cut = self.cut_after;
        let bucket = self.bucket().to_owned();
        // Passes `cut` bytes through, then fails once and ends.
        let stream =
            futures::stream::unfold((body.stream, 0u64, false), move |(mut s, seen, done)| {
                let bucket = bucket.clone();
                async move {
                    if done {
                        return None;
                    }
                    if seen >= cut {
                        let e = BlobError::Backend {
                            bucket,
                            message: "connection reset by peer".into(),
                        };
                        return Some((Err(e), (s, seen, true)));
                    }
                    match s.next().await? {
                        Ok(mut chunk) => {
                            let room = usize::try_from(cut - seen).unwrap_or(usize::MAX);
                            chunk.truncate(room);
                            let n = chunk.len() as u64;
                            Some((Ok(chunk), (s, seen + n, false)))
                        }
                        Err(e) => Some((Err(e), (s, seen, true))),
                    }
                }
            })
            .boxed();
        Ok(Some(BlobBody {
            size: body.size,
            stream,
        }))
    }
    async fn put(&self, key: &str, body: BlobBody, sha256: Option<&str>) -> Result<(), BlobError> {
        self.inner.put(key, body, sha256).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobError> {
        self.inner.list(prefix).await
    }
}

async fn pending_uploads(store: &S3BlobStore, key: &str) -> usize {
    let out = store
        .client()
        .await
        .list_multipart_uploads()
        .bucket(store.bucket())
        .send()
        .await
        .unwrap();
    out.uploads()
        .iter()
        .filter(|u| u.key() == Some(key))
        .count()
}

async fn put_blob(primary: &S3BlobStore, site: &str, body: &Bytes) -> String {
    let hash = BlobHash::of(body);
    let key = keys::blob(&SiteId::parse(site).unwrap(), &hash, None);
    primary
        .put_bytes(&key, body.clone(), Some(hash.as_str()))
        .await
        .unwrap();
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_streamed_copy_leaves_nothing_and_the_retry_finishes() {
    let primary = bucket(PRIMARY).await;
    let replica = bucket(EU).await;
    // Above the S3 adapter's 8 MiB part size, so the destination write is multipart too.
    let body = bytes_of(10 * MIB + 3, 1);
    let key = put_blob(&primary, "cut", &body).await;
    let source = Arc::new(CutSource {
        inner: primary.clone(),
        cut_after: 9 * MIB as u64,
        broken: AtomicBool::new(true),
    });
    let copier = Copier::new(
        source.clone(),
        vec![(
            EU.to_owned(),
            Arc::new(replica.clone()) as Arc<dyn BlobStore>,
        )],
        CopyOptions::default(),
    )
    .with_metrics(Metrics::discard());
    let event = s3_event(&primary, &key).await;

    let err = copier.handle_s3(event.clone()).await.unwrap_err();
    let CopyError::Failed { failures, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(failures.len(), 1);
    assert!(failures[0].error.contains("connection reset"), "{err}");
    left_nothing(&replica, &key).await;

    source.broken.store(false, Ordering::SeqCst);
    let report = copier.handle_s3(event).await.expect("the retry copies");
    assert_eq!(report.transfers[0].method, Method::Stream);
    let got = read_all(&replica, &key).await;
    assert_eq!(sha256_hex(&got), sha256_hex(&body));
}

/// The S3 notification of `key`'s creation in `primary`.
async fn s3_event(primary: &S3BlobStore, key: &str) -> S3Event {
    serde_json::from_str(&s3_event_json(primary, &[key.to_owned()]).await).unwrap()
}

/// After a failed copy: no object in the replica, and no multipart upload left open.
async fn left_nothing(replica: &S3BlobStore, key: &str) {
    assert!(
        replica.head(key).await.unwrap().is_none(),
        "no partial object"
    );
    assert_eq!(
        pending_uploads(replica, key).await,
        0,
        "the upload was aborted"
    );
}

/// Fails UploadPartCopy of part `part` while armed (a connection lost mid-copy).
#[derive(Debug)]
struct FailPart {
    part: u32,
    armed: Arc<AtomicBool>,
}

impl aws_sdk_s3::config::Intercept for FailPart {
    fn name(&self) -> &'static str {
        "e2e-fail-part"
    }

    fn read_before_transmit(
        &self,
        ctx: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let req = ctx.request();
        let part_copy = req.headers().get("x-amz-copy-source").is_some()
            && req.uri().contains(&format!("partNumber={}", self.part));
        if part_copy && self.armed.load(Ordering::SeqCst) {
            return Err("connection lost during UploadPartCopy".into());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_multipart_copy_is_aborted_and_the_retry_finishes() {
    let primary = bucket(PRIMARY).await;
    let plain = bucket(AP).await;
    let armed = Arc::new(AtomicBool::new(true));
    let conf = skyhost_meta::config::aws(AP).await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .interceptor(FailPart {
                part: 2,
                armed: armed.clone(),
            })
            .build(),
    );
    let replica = S3BlobStore::new(client, plain.bucket());
    let body = bytes_of(11 * MIB + 17, 2);
    let key = put_blob(&primary, "parts", &body).await;
    // A tiny threshold: even this object is copied in 5 MiB parts (three of them).
    let copier = Copier::new(
        Arc::new(primary.clone()),
        vec![(
            AP.to_owned(),
            Arc::new(replica.clone()) as Arc<dyn BlobStore>,
        )],
        CopyOptions {
            multipart_threshold: 1,
            part_size: 1,
            part_concurrency: 1,
            ..CopyOptions::default()
        },
    )
    .with_metrics(Metrics::discard());
    let event = s3_event(&primary, &key).await;

    let err = copier.handle_s3(event.clone()).await.unwrap_err();
    assert!(err.to_string().contains("connection lost"), "{err}");
    left_nothing(&replica, &key).await;

    armed.store(false, Ordering::SeqCst);
    let report = copier
        .handle_s3(event.clone())
        .await
        .expect("the retry copies");
    assert_eq!(report.transfers[0].method, Method::Multipart);
    let got = read_all(&replica, &key).await;
    assert_eq!(got.len(), body.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&body));
    let meta = replica.head(&key).await.unwrap().unwrap();
    assert_eq!(meta.sha256.as_deref(), Some(sha256_hex(&body).as_str()));
    // And once there, it is not copied again.
    let again = copier.handle_s3(event).await.unwrap();
    assert_eq!(again.transfers[0].method, Method::Present);
}

/// The Lambda's copier (`Copier::s3`, what `Copier::from_env` builds): the replicas'
/// clients do not exist after init, the first invocation builds them beside its read of
/// the source, and its copies go through them server-side.
#[tokio::test(flavor = "current_thread")]
async fn the_lambda_copier_builds_replica_clients_on_first_use() {
    let primary = bucket(PRIMARY).await;
    let (eu, ap) = (bucket(EU).await, bucket(AP).await);
    let copier = Copier::s3(
        skyhost_testkit::aws(PRIMARY).await,
        primary.bucket().to_owned(),
        vec![
            (EU.to_owned(), eu.bucket().to_owned()),
            (AP.to_owned(), ap.bucket().to_owned()),
        ],
        CopyOptions::default(),
    )
    .with_metrics(Metrics::discard());
    let built = |c: &Copier| -> Vec<bool> {
        c.replicas()
            .map(|(_, s)| s.as_s3().expect("an S3 replica").client_built())
            .collect()
    };
    assert_eq!(built(&copier), [false, false], "nothing built at init");

    let body = bytes_of(40_000, 3);
    let key = put_blob(&primary, "first-use", &body).await;
    let report = copier
        .handle_s3(s3_event(&primary, &key).await)
        .await
        .unwrap();
    assert_eq!(built(&copier), [true, true]);
    let mut regions: Vec<(&str, Method)> = report
        .transfers
        .iter()
        .map(|t| (t.region.as_str(), t.method))
        .collect();
    regions.sort_by_key(|(r, _)| *r);
    assert_eq!(
        regions,
        [(AP, Method::ServerCopy), (EU, Method::ServerCopy)]
    );
    for replica in [&eu, &ap] {
        assert_eq!(read_all(replica, &key).await, body);
    }
    // Each replica's client signs for its own region.
    for (region, store) in copier.replicas() {
        let client = store.as_s3().expect("an S3 replica").client().await;
        assert_eq!(client.config().region().map(|r| r.as_ref()), Some(region));
    }
}
