//! Handler cost: `Origin::handle` answering a cached 4 KB file with no network — SQLite in
//! memory, a folder bucket in a temp dir, the in-process cache warmed first. `make bench`
//! reads the median from criterion's estimates (budget: 20 µs).
//!
//! `make bench` runs it as the `skyhost-bench` binary under the name `handler-bench` (one
//! fat-LTO link for the harness and its tools); `cargo bench -p skyhost-bench` runs the same
//! code through `benches/handler.rs`. Arguments are criterion's.

use ::http::{Request, StatusCode};
use bytes::Bytes;
use criterion::Criterion;
use skyhost_meta::blob::fs::FsBlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::Cache;
use skyhost_meta::store::sqlite::SqliteStore;
use skyhost_meta::store::MetaStore;
use skyhost_meta::{
    keys, BlobHash, Deployment, DeploymentId, DeploymentState, Domain, FileEntry, Manifest, Site,
    SiteId,
};
use skyhost_origin::{Origin, OriginConfig};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

const HOST: &str = "bench.example.com";
const PATH: &str = "/doc.html";

/// A 4 KB page of text.
fn page() -> Vec<u8> {
    let mut body = b"<!doctype html><title>bench</title><p>".to_vec();
    while body.len() < 4096 {
        body.extend_from_slice(b"skyhost serves this page from its in-process cache. ");
    }
    body.truncate(4096);
    body
}

/// Deploys the page as the active deployment of a site on [`HOST`], the way `skyhost
/// deploy` leaves the stores: blob and manifest in the bucket, records in the table.
async fn deploy(meta: &dyn MetaStore, bucket: &dyn BlobStore) -> DeploymentId {
    // Fixed, valid literals: parsing them cannot fail.
    let site = SiteId::parse("bench").expect("valid site id");
    let domain = Domain::parse(HOST).expect("valid domain");
    let body = page();
    let hash = BlobHash::of(&body);
    bucket
        .put_bytes(
            &keys::blob(&site, &hash, None),
            Bytes::from(body.clone()),
            None,
        )
        .await
        .expect("write the blob");
    let created = 1_767_225_600;
    let id = DeploymentId::new(created);
    let mut files = BTreeMap::new();
    files.insert(
        PATH.to_owned(),
        FileEntry {
            hash,
            size: body.len() as u64,
            content_type: "text/html; charset=utf-8".into(),
            encodings: BTreeMap::new(),
        },
    );
    let manifest = Manifest {
        site: site.clone(),
        deployment: id.clone(),
        created,
        files,
        rules: Default::default(),
    };
    let json = serde_json::to_vec(&manifest).expect("manifest serialises");
    bucket
        .put_bytes(&keys::manifest(&site, &id), Bytes::from(json), None)
        .await
        .expect("write the manifest");
    let now = skyhost_meta::now();
    let mut record = Site::new(site.clone(), now);
    record.domains = vec![domain];
    meta.put_site(None, &record).await.expect("create the site");
    meta.put_deployment(&Deployment {
        site: site.clone(),
        id: id.clone(),
        created,
        file_count: 1,
        bytes: body.len() as u64,
        state: DeploymentState::Ready,
        message: None,
    })
    .await
    .expect("record the deployment");
    meta.activate(&site, &id, record.revision, now)
        .await
        .expect("activate");
    id
}

fn request() -> Request<Bytes> {
    request_with(&[])
}

/// The request with `extra` headers.
fn request_with(extra: &[(&str, &str)]) -> Request<Bytes> {
    let mut b = Request::get(PATH).header("host", HOST);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.header("user-agent", "Mozilla/5.0 (bench)")
        .header("accept", "text/html,application/xhtml+xml")
        .body(Bytes::new())
        .expect("static request parts are valid")
}

/// One request answered, its body collected; returns the body length.
async fn answer(origin: &Origin) -> usize {
    answer_to(origin, request()).await
}

/// `req` answered, its body collected; returns the body length.
async fn answer_to(origin: &Origin, req: Request<Bytes>) -> usize {
    let resp = origin.handle(req, Some([203, 0, 113, 9].into())).await;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.len())
        .unwrap_or(0);
    debug_assert_eq!(status, StatusCode::OK);
    body
}

/// The two benchmarks, `origin/cached_4k` and `origin/cached_4k_full_path`.
pub fn handler(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let meta = Arc::new(SqliteStore::in_memory("us-west-2").expect("in-memory SQLite"));
    let bucket =
        Arc::new(FsBlobStore::open(dir.path(), "bench", "us-west-2").expect("folder bucket"));
    let config = OriginConfig::new("us-west-2", "us-west-2");
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(config.cache_bytes));
    let origin = Origin::new(config, meta.clone(), bucket.clone(), None, cache);
    rt.block_on(async {
        let id = deploy(meta.as_ref(), bucket.as_ref()).await;
        // Warm: site, manifest and blob into the cache; then check it is a cache hit.
        // (the cache is filled by a task spawned once a body has streamed: let it run).
        for _ in 0..3 {
            answer(&origin).await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let resp = origin.handle(request(), None).await;
        assert_eq!(resp.status(), StatusCode::OK, "the page must be served");
        let h = resp.headers();
        assert_eq!(
            h.get("x-skyhost-cache").map(|v| v.as_bytes()),
            Some(&b"hit"[..]),
            "warm cache"
        );
        assert_eq!(
            h.get("x-skyhost-deployment").map(|v| v.as_bytes()),
            Some(id.as_str().as_bytes())
        );
        assert_eq!(answer(&origin).await, 4096);
    });
    let mut g = c.benchmark_group("origin");
    // The same request over and over: from the second on, a kept answer.
    g.bench_function("cached_4k", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(answer(&origin).await) })
    });
    // A revalidation of a page that changed (its tag no longer matches): conditional
    // requests are never answered from kept answers, so this is the whole path.
    let stale = [("if-none-match", "\"an-older-version\"")];
    rt.block_on(async {
        assert_eq!(answer_to(&origin, request_with(&stale)).await, 4096);
    });
    g.bench_function("cached_4k_full_path", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(answer_to(&origin, request_with(&stale)).await) })
    });
    g.finish();
}

/// What `criterion_group!` and `criterion_main!` make of [`handler`], with criterion's own
/// command line.
pub fn main() {
    let mut c = Criterion::default().configure_from_args();
    handler(&mut c);
    Criterion::default().configure_from_args().final_summary();
}
