//! Test support: a deploy helper (blobs, precompressed variants and manifest into a bucket;
//! deployment and site record into a store), embedded and emulated backends, an origin
//! served on 127.0.0.1, and (from `skyhost-testkit`) the real servers `make test` starts.
#![allow(dead_code, unused_imports)] // each test binary uses part of it

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use skyhost_meta::blob::fs::FsBlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::Cache;
use skyhost_meta::store::sqlite::SqliteStore;
use skyhost_meta::store::MetaStore;
use skyhost_meta::{
    keys, BlobHash, Deployment, DeploymentId, DeploymentState, Domain, Encoding, FileEntry,
    Manifest, Site, SiteId,
};
use skyhost_origin::{Origin, OriginConfig};
use skyhost_rules::{HashParams, SiteFiles, SiteRules};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

pub use skyhost_testkit::{dynamo, moto_endpoint, redis_server_binary, redis_url, s3, unique};

/// One file of a test deployment.
#[derive(Clone)]
pub struct TestFile {
    pub path: String,
    pub body: Vec<u8>,
    pub content_type: String,
    /// Also store br and gzip variants.
    pub compress: bool,
}

/// A file stored as is.
pub fn file(path: &str, body: impl AsRef<[u8]>, content_type: &str) -> TestFile {
    TestFile {
        path: path.to_owned(),
        body: body.as_ref().to_vec(),
        content_type: content_type.to_owned(),
        compress: false,
    }
}

/// A file stored with br and gzip variants.
pub fn compressed(path: &str, body: impl AsRef<[u8]>, content_type: &str) -> TestFile {
    TestFile {
        compress: true,
        ..file(path, body, content_type)
    }
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).unwrap();
    out
}

pub fn brotli(b: &[u8]) -> Vec<u8> {
    let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, 9, 22);
    w.write_all(b).unwrap();
    w.into_inner()
}

pub fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut brotli::Decompressor::new(b, 4096), &mut out).unwrap();
    out
}

/// Site rules from `_redirects`, `_headers` and `skyhost.toml` texts, sealed with cheap
/// argon2 parameters (tests only).
pub fn rules(redirects: Option<&str>, headers: Option<&str>, config: Option<&str>) -> SiteRules {
    skyhost_rules::parse_site(SiteFiles {
        redirects,
        headers,
        config,
    })
    .unwrap_or_else(|e| panic!("test rules do not parse: {e:?}"))
    .seal_with(HashParams::new(8, 1, 1, None).unwrap())
    .unwrap()
}

/// What a deploy produced.
#[derive(Clone)]
pub struct Deployed {
    /// The site record after the deploy (activated or not).
    pub site: Site,
    pub manifest: Manifest,
}

impl Deployed {
    pub fn id(&self) -> &DeploymentId {
        &self.manifest.deployment
    }

    pub fn entry(&self, path: &str) -> &FileEntry {
        self.manifest.file(path).unwrap()
    }

    pub fn key(&self, path: &str, encoding: Option<Encoding>) -> String {
        keys::blob(&self.site.id, &self.entry(path).hash, encoding)
    }
}

/// How to deploy.
pub struct DeployOpts<'a> {
    pub deployment: Option<DeploymentId>,
    pub created: i64,
    pub activate: bool,
    /// Also write the blobs and manifest here (a replica bucket).
    pub replicas: Vec<&'a dyn BlobStore>,
}

impl Default for DeployOpts<'_> {
    fn default() -> Self {
        DeployOpts {
            deployment: None,
            created: 1_767_435_072,
            activate: true,
            replicas: Vec::new(),
        }
    }
}

/// Deploys `files` as site `site` on `domains`: blobs (with variants) and the manifest into
/// `bucket`, the deployment record and the site record into `meta`, then activates it.
pub async fn deploy(
    meta: &dyn MetaStore,
    bucket: &dyn BlobStore,
    site: &str,
    domains: &[&str],
    files: &[TestFile],
    rules: SiteRules,
) -> Deployed {
    deploy_with(
        meta,
        bucket,
        site,
        domains,
        files,
        rules,
        DeployOpts::default(),
    )
    .await
}

/// A new site named after `tag`, served at `<site>.test`, whose active deployment is one
/// page at `/index.html`; returns the site and the host.
pub async fn one_page_site(
    meta: &dyn MetaStore,
    bucket: &dyn BlobStore,
    tag: &str,
    page: &str,
) -> (String, String) {
    let site = unique(tag);
    let host = format!("{site}.test");
    deploy(
        meta,
        bucket,
        &site,
        &[&host],
        &[file("/index.html", page, "text/html")],
        rules(None, None, None),
    )
    .await;
    (site, host)
}

/// A later deployment of `files` to site `site`, uploaded and recorded but not active: a
/// rollback or an activation notification makes it live.
pub async fn deploy_inactive(
    meta: &dyn MetaStore,
    bucket: &dyn BlobStore,
    site: &str,
    domains: &[&str],
    files: &[TestFile],
) -> Deployed {
    deploy_with(
        meta,
        bucket,
        site,
        domains,
        files,
        rules(None, None, None),
        DeployOpts {
            activate: false,
            created: 1_767_500_000,
            ..DeployOpts::default()
        },
    )
    .await
}

/// [`deploy`] with options.
#[allow(clippy::too_many_arguments)]
pub async fn deploy_with(
    meta: &dyn MetaStore,
    bucket: &dyn BlobStore,
    site: &str,
    domains: &[&str],
    files: &[TestFile],
    rules: SiteRules,
    opts: DeployOpts<'_>,
) -> Deployed {
    let site_id = SiteId::parse(site).unwrap();
    let id = opts
        .deployment
        .clone()
        .unwrap_or_else(|| DeploymentId::new(opts.created));
    let mut buckets: Vec<&dyn BlobStore> = vec![bucket];
    buckets.extend(opts.replicas.iter().copied());
    let mut entries = BTreeMap::new();
    let mut total = 0;
    for f in files {
        let hash = BlobHash::of(&f.body);
        let mut encodings = BTreeMap::new();
        let mut objects = vec![(keys::blob(&site_id, &hash, None), f.body.clone())];
        if f.compress {
            for (enc, body) in [
                (Encoding::Br, brotli(&f.body)),
                (Encoding::Gzip, gzip(&f.body)),
            ] {
                encodings.insert(enc, body.len() as u64);
                objects.push((keys::blob(&site_id, &hash, Some(enc)), body));
            }
        }
        for b in &buckets {
            for (key, body) in &objects {
                b.put_bytes(key, Bytes::from(body.clone()), None)
                    .await
                    .unwrap();
            }
        }
        total += f.body.len() as u64;
        entries.insert(
            f.path.clone(),
            FileEntry {
                hash,
                size: f.body.len() as u64,
                content_type: f.content_type.clone(),
                encodings,
            },
        );
    }
    let manifest = Manifest {
        site: site_id.clone(),
        deployment: id.clone(),
        created: opts.created,
        files: entries,
        rules,
    };
    let json = serde_json::to_vec(&manifest).unwrap();
    for b in &buckets {
        b.put_bytes(
            &keys::manifest(&site_id, &id),
            Bytes::from(json.clone()),
            None,
        )
        .await
        .unwrap();
    }
    let now = skyhost_meta::now();
    let wanted: Vec<Domain> = domains.iter().map(|d| Domain::parse(d).unwrap()).collect();
    let mut current = match meta.site_record(&site_id).await.unwrap() {
        Some(skyhost_meta::SiteRecord::Live(s)) => s,
        removed => {
            // Created again after a removal: carries on from the tombstone's revision.
            let mut s = match removed {
                Some(r) => Site::recreated(site_id.clone(), now, r.revision()),
                None => Site::new(site_id.clone(), now),
            };
            s.domains = wanted.clone();
            meta.put_site(None, &s).await.unwrap();
            s
        }
    };
    let mut have = current.domains.clone();
    have.sort();
    let mut want_sorted = wanted.clone();
    want_sorted.sort();
    if have != want_sorted {
        let mut next = current.next(now);
        next.domains = wanted;
        meta.put_site(Some(&current), &next).await.unwrap();
        current = meta.site(&site_id).await.unwrap().unwrap();
    }
    meta.put_deployment(&Deployment {
        site: site_id.clone(),
        id: id.clone(),
        created: opts.created,
        file_count: files.len() as u64,
        bytes: total,
        state: DeploymentState::Ready,
        message: None,
    })
    .await
    .unwrap();
    let site = if opts.activate {
        meta.activate(&site_id, &id, current.revision, now)
            .await
            .unwrap()
    } else {
        current
    };
    Deployed { site, manifest }
}

/// Embedded backends of one region: SQLite store, folder buckets.
pub struct Embedded {
    pub meta: Arc<SqliteStore>,
    pub local: Arc<FsBlobStore>,
    pub dir: tempfile::TempDir,
}

impl Embedded {
    pub fn new(region: &str) -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        Embedded {
            meta: Arc::new(SqliteStore::in_memory(region).unwrap()),
            local: Arc::new(FsBlobStore::open(dir.path(), "local", region).unwrap()),
            dir,
        }
    }

    /// Removes an object from the local bucket (the port has no delete).
    pub fn remove(&self, key: &str) {
        std::fs::remove_file(self.dir.path().join("local").join("objects").join(key)).unwrap();
    }

    /// An origin over these backends with a fresh in-process cache.
    pub fn origin(&self, config: OriginConfig) -> Arc<Origin> {
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(config.cache_bytes));
        Arc::new(Origin::new(
            config,
            self.meta.clone(),
            self.local.clone(),
            None,
            cache,
        ))
    }
}

/// A configuration for tests: region us-west-2 (also the primary), no metrics.
pub fn config() -> OriginConfig {
    OriginConfig::new("us-west-2", "us-west-2")
}

/// An origin served on 127.0.0.1 until stopped.
pub struct Running {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// What a test server stops on.
type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Binds a free loopback port and runs `serve` on it until [`Running::stop`].
async fn spawn_server<F>(serve: impl FnOnce(tokio::net::TcpListener, Shutdown) -> F) -> Running
where
    F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        Box::pin(async move {
            let _ = rx.await;
        }),
    ));
    Running {
        base,
        stop: Some(tx),
        task,
    }
}

/// Starts `server::serve` for `origin` on a free loopback port.
pub async fn start(origin: Arc<Origin>) -> Running {
    spawn_server(|l, stop| skyhost_origin::server::serve(l, origin, stop)).await
}

/// Starts `server::serve_threads` for `origin` with `threads` runtimes on a free port.
pub async fn start_threads(origin: Arc<Origin>, threads: usize) -> Running {
    spawn_server(|l, stop| skyhost_origin::server::serve_threads(l, origin, stop, threads)).await
}

/// A client that never follows redirects nor decompresses.
pub fn client() -> reqwest::Client {
    skyhost_meta::tls::http_client()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// A response read whole.
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn cache(&self) -> &str {
        self.header("x-skyhost-cache").unwrap_or("")
    }
}

/// Sends a request over HTTP with `Host: host`.
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut req = client
        .request(method, format!("{base}{path}"))
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    Got {
        status,
        headers,
        body,
    }
}

/// `GET` over HTTP.
pub async fn get(client: &reqwest::Client, base: &str, host: &str, path: &str) -> Got {
    send(client, base, Method::GET, host, path, &[]).await
}

/// Calls `Origin::handle` directly (paths HTTP clients would normalise).
pub async fn call(
    origin: &Origin,
    method: Method,
    host: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> Got {
    let mut b = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = origin
        .handle(
            b.body(Bytes::new()).unwrap(),
            Some("192.0.2.10".parse().unwrap()),
        )
        .await;
    let (parts, body) = resp.into_parts();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap(),
    }
}

/// Polls `f` until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A signed notification body and signature header for `record` at `revision`.
pub fn signed_notification(
    secret: &[u8],
    site: &SiteId,
    revision: u64,
    record: Option<&Site>,
    at: i64,
) -> (Vec<u8>, String) {
    let n = skyhost_meta::notify::Notification {
        site: site.clone(),
        revision,
        record: record.cloned(),
        changed_ms: at * 1000,
    };
    let body = serde_json::to_vec(&n).unwrap();
    let sig = skyhost_meta::notify::sign(secret, at, &body);
    (body, sig)
}
