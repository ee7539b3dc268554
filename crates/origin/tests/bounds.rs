//! Bounded work per request, through `Origin::handle` on embedded backends: the notify
//! endpoint refuses malformed and oversized input before any HMAC, request heads over the
//! limits answer 414/431, a flood of random hosts costs one store read per host and never
//! evicts a known one, and health checks are shared for a second and carry no backend
//! error text.

mod common;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use skyhost_meta::store::item::{Item, Key};
use skyhost_meta::store::{MetaStore, StoreError, Write, WriteError};
use skyhost_origin::limits::{MAX_HEADERS, MAX_HEADER_BYTES, MAX_URI};
use skyhost_origin::Origin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A metadata store that counts its reads, and fails them on demand with an error whose
/// text must never reach a visitor.
struct Counting {
    inner: Arc<dyn MetaStore>,
    reads: AtomicUsize,
    failing: AtomicBool,
}

const BACKEND_TEXT: &str = "dial tcp 10.1.2.3:443: connection refused (table skyhost-sites)";

impl Counting {
    fn new(inner: Arc<dyn MetaStore>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            reads: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
        })
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn read(&self) -> Result<(), StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend(BACKEND_TEXT.into()));
        }
        Ok(())
    }
}

#[async_trait]
impl MetaStore for Counting {
    async fn get_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.read()?;
        self.inner.get_item(key).await
    }
    async fn query_items(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.read()?;
        self.inner.query_items(pk, sk_prefix).await
    }
    async fn scan_kind(&self, kind: &str) -> Result<Vec<Item>, StoreError> {
        self.read()?;
        self.inner.scan_kind(kind).await
    }
    async fn write(&self, writes: Vec<Write>) -> Result<(), WriteError> {
        self.inner.write(writes).await
    }
    // The once-a-second look for missed site changes is not a read a request causes.
    async fn generation(&self) -> Result<skyhost_meta::store::generation::Generation, StoreError> {
        self.inner.generation().await
    }
}

const HOST: &str = "known.test";

/// A one-page site at [`HOST`] and an origin over a counting store.
async fn counted(config: skyhost_origin::OriginConfig) -> (Embedded, Arc<Counting>, Arc<Origin>) {
    let env = Embedded::new("us-west-2");
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        "known",
        &[HOST],
        &[file("/index.html", "known page", "text/html")],
        rules(None, None, None),
    )
    .await;
    let meta = Counting::new(env.meta.clone());
    let cache = Arc::new(skyhost_meta::cache::memory::MemoryCache::new(
        config.cache_bytes,
    ));
    let origin = Arc::new(Origin::new(
        config,
        meta.clone(),
        env.local.clone(),
        None,
        cache,
    ));
    (env, meta, origin)
}

async fn post_notify(origin: &Origin, signature: Option<&str>, body: Vec<u8>) -> Got {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri("/_skyhost/notify")
        .header("host", "us-west-2.origin.test");
    if let Some(s) = signature {
        b = b.header("x-skyhost-signature", s);
    }
    let resp = origin
        .handle(b.body(Bytes::from(body)).unwrap(), None)
        .await;
    let (parts, body) = resp.into_parts();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap(),
    }
}

#[tokio::test]
async fn notify_refuses_the_reproduced_attack_at_once() {
    let mut config = config();
    config.notify_secret =
        skyhost_meta::secrets::Secret::fixed(vec![b"s0".to_vec(), b"s1".to_vec(), b"s2".to_vec()]);
    let (_env, meta, origin) = counted(config).await;
    let now = skyhost_meta::now();
    let mega = vec![b'{'; 1 << 20];

    // 20,000 empty signatures and a 1 MB body: refused for the size of its head (80 KB),
    // and with fewer signatures that fit in the head, for the signature header.
    let started = Instant::now();
    let attack = format!("t={now}{}", ",v1=".repeat(20_000));
    let g = post_notify(&origin, Some(&attack), mega.clone()).await;
    assert_eq!(g.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let attack = format!("t={now}{}", ",v1=".repeat(3_000));
    let g = post_notify(&origin, Some(&attack), mega.clone()).await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED, "{}", g.text());
    // A well-formed signature over a 1 MB body: refused for its size, unhashed.
    let g = post_notify(
        &origin,
        Some(&skyhost_meta::notify::sign(b"s1", now, &mega)),
        mega,
    )
    .await;
    assert_eq!(g.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", g.text());
    // Seconds before, even in release builds; a debug build on a shared machine gets
    // plenty of margin.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // A table of malformed headers: 401, nothing read from the store.
    let tag = "ab".repeat(32);
    let body = br#"{"site":"known","revision":9,"record":null}"#.to_vec();
    let headers = [
        format!("t={now}"),
        format!("v1={tag}"),
        format!("t={now},v1="),
        format!("t={now},v1=abc"),
        format!("t=x,v1={tag}"),
        format!("t={now},t={now},v1={tag}"),
        format!("t={now}{}", format!(",v1={tag}").repeat(5)),
        format!("t={now},v0={},v1={tag}", "0".repeat(600)),
        format!("t=-9223372036854775808,v1={tag}"),
        format!("t=9223372036854775807,v1={tag}"),
        format!("t={},v1={tag}", now - 301),
    ];
    for h in &headers {
        let g = post_notify(&origin, Some(h), body.clone()).await;
        assert_eq!(g.status, StatusCode::UNAUTHORIZED, "{h}: {}", g.text());
        assert!(g.text().contains("error"), "{h}: {}", g.text());
    }
    let g = post_notify(&origin, None, body.clone()).await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    assert_eq!(meta.reads(), 0, "a refused notification read the store");

    // A well-signed notification of a normal size still goes through.
    let sig = skyhost_meta::notify::sign(b"s2", now, &body);
    let g = post_notify(&origin, Some(&sig), body).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
}

/// Host, path, headers, status.
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], StatusCode);

#[tokio::test]
async fn oversized_request_heads_answer_414_and_431() {
    let (_env, _meta, origin) = counted(config()).await;
    assert_eq!(
        call(&origin, Method::GET, HOST, "/", &[]).await.status,
        StatusCode::OK
    );
    let long_path = format!("/{}", "a".repeat(MAX_URI));
    let long_query = format!("/?q={}", "a".repeat(MAX_URI));
    let names: Vec<String> = (0..=MAX_HEADERS).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let big_value = "v".repeat(MAX_HEADER_BYTES);
    let big = [("x-big", big_value.as_str())];
    let cases: [Case; 7] = [
        (HOST, long_path.as_str(), &[], StatusCode::URI_TOO_LONG),
        (HOST, long_query.as_str(), &[], StatusCode::URI_TOO_LONG),
        (
            "nowhere.test",
            long_path.as_str(),
            &[],
            StatusCode::URI_TOO_LONG,
        ),
        (
            HOST,
            "/_skyhost/health",
            &many,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (
            HOST,
            "/",
            &many,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
        (HOST, "/", &big, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        (HOST, "/", &many[..MAX_HEADERS - 1], StatusCode::OK),
    ];
    for (host, path, headers, want) in cases {
        let g = call(&origin, Method::GET, host, path, headers).await;
        assert_eq!(
            g.status,
            want,
            "{host} path of {} bytes, {} headers",
            path.len(),
            headers.len()
        );
        if want != StatusCode::OK {
            assert_eq!(g.header("cache-control"), Some("no-store"));
            assert_eq!(g.header("content-type"), Some("text/plain; charset=utf-8"));
            assert!(g.header("x-skyhost-deployment").is_none());
        }
    }
}

#[tokio::test]
async fn a_host_flood_costs_one_read_per_host_and_keeps_known_hosts() {
    // Nothing expires during the flood, however slow the machine: what is dropped is
    // dropped for room.
    let mut config = config();
    config.unknown_host_ttl = Duration::from_secs(600);
    let (_env, meta, origin) = counted(config).await;
    assert_eq!(
        call(&origin, Method::GET, HOST, "/", &[]).await.text(),
        "known page"
    );
    let before = meta.reads();
    assert_eq!(
        call(&origin, Method::GET, HOST, "/", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(meta.reads(), before, "a known host was read again");

    // More random hosts than the host map holds.
    let flood = 100_500;
    let host = |i: usize| format!("r{i:x}.flood.test");
    for i in 0..flood {
        let g = call(&origin, Method::GET, &host(i), "/", &[]).await;
        assert_eq!(g.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(meta.reads() - before, flood, "one read per unknown host");

    // The known host still resolves without a read, and the unknown hosts since the
    // unknown map last made room (at 100,000) are remembered: asking again reads nothing.
    let before = meta.reads();
    assert_eq!(
        call(&origin, Method::GET, HOST, "/", &[]).await.text(),
        "known page"
    );
    for i in flood - 400..flood {
        let g = call(&origin, Method::GET, &host(i), "/", &[]).await;
        assert_eq!(g.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(meta.reads(), before, "the flood evicted what it should not");
}

#[tokio::test]
async fn health_is_checked_once_a_second_and_hides_backend_errors() {
    let (_env, meta, origin) = counted(config()).await;
    meta.failing.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let health = |origin: Arc<Origin>| async move {
        call(&origin, Method::GET, HOST, "/_skyhost/health", &[]).await
    };
    // A burst of concurrent requests, then more one after another, within the second.
    let burst: Vec<_> = (0..20)
        .map(|_| tokio::spawn(health(origin.clone())))
        .collect();
    let mut answers = Vec::new();
    for h in burst {
        answers.push(h.await.unwrap());
    }
    for _ in 0..20 {
        answers.push(health(origin.clone()).await);
    }
    let elapsed = started.elapsed();
    if elapsed < skyhost_origin::health::RESULT_TTL {
        assert_eq!(meta.reads(), 1, "checks made within {elapsed:?}");
    } else {
        // A very slow machine: still far fewer checks than requests.
        assert!(meta.reads() <= 3, "{} checks", meta.reads());
    }
    for g in &answers {
        assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE);
        let text = g.text();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["checks"]["metadata"]["status"], "error", "{text}");
        assert!(!text.contains("10.1.2.3"), "backend error text: {text}");
        assert!(
            !text.contains("connection refused"),
            "backend error text: {text}"
        );
    }

    // After the second, a new check sees the store back.
    meta.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(skyhost_origin::health::RESULT_TTL).await;
    let before = meta.reads();
    let g = health(origin.clone()).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
    assert_eq!(meta.reads(), before + 1);
}
