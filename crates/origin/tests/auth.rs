//! Basic auth through `server::serve`: right and wrong passwords, the challenge, lockout
//! after 5 failures per client address and site (429 with Retry-After), its expiry, and
//! its reset by a success — with counters in redis-server (shared by instances) and in
//! memory.

mod common;

use base64::Engine;
use common::*;
use http::{Method, StatusCode};
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::Cache;
use skyhost_origin::Origin;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const WINDOW: Duration = Duration::from_secs(2);

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Deploys a protected site and a second one with the same rule; returns their hosts.
async fn site(env: &Embedded) -> (String, String) {
    // Unique names: the Redis counters outlive a test run by the window.
    let (one, two) = (unique("auth"), unique("other"));
    let (h1, h2) = (format!("{one}.test"), format!("{two}.test"));
    let files = [
        file("/index.html", "public", "text/html"),
        file("/private/report.txt", "figures", "text/plain"),
    ];
    let config = "[auth]\nrealm = \"Staff\"\n[[auth.rules]]\npath = \"/private/*\"\nusers = [\"ann:right-pw\"]\n";
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        &one,
        &[&h1],
        &files,
        rules(Some("/open/*  /private/:splat  200\n"), None, Some(config)),
    )
    .await;
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        &two,
        &[&h2],
        &files,
        rules(None, None, Some(config)),
    )
    .await;
    (h1, h2)
}

fn origin(env: &Embedded, redis: Option<String>) -> Arc<Origin> {
    let mut c = config();
    c.auth_lockout = WINDOW;
    c.redis_url = redis;
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(c.cache_bytes));
    Arc::new(Origin::new(
        c,
        env.meta.clone(),
        env.local.clone(),
        None,
        cache,
    ))
}

async fn as_client(
    origin: &Origin,
    ip: &str,
    host: &str,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, http::HeaderMap) {
    let mut b = http::Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", host);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let ip: IpAddr = ip.parse().unwrap();
    let resp = origin
        .handle(b.body(bytes::Bytes::new()).unwrap(), Some(ip))
        .await;
    (resp.status(), resp.headers().clone())
}

async fn lockout_scenario(redis: Option<String>) {
    let env = Embedded::new("us-west-2");
    let (host, other) = site(&env).await;
    let host = host.as_str();
    let origin = origin(&env, redis.clone());
    let server = start(origin.clone()).await;
    let c = client();
    let right = basic("ann", "right-pw");
    let wrong = basic("ann", "wrong-pw");
    let fetch = |auth: Option<String>| {
        let c = c.clone();
        let base = server.base.clone();
        async move {
            let mut req = c
                .get(format!("{base}/private/report.txt"))
                .header("host", host);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            let status = r.status();
            let h = r.headers().clone();
            let body = r.text().await.unwrap();
            (status, h, body)
        }
    };

    // No credentials: the challenge, not a failure.
    for _ in 0..6 {
        let (status, h, _) = fetch(None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            h.get("www-authenticate").unwrap(),
            "Basic realm=\"Staff\", charset=\"UTF-8\""
        );
    }
    let (status, _, body) = fetch(Some(right.clone())).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "figures"));
    // Public pages need nothing; rewrites into protected paths do.
    assert_eq!(
        get(&c, &server.base, host, "/").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&c, &server.base, host, "/open/report.txt").await.status,
        StatusCode::UNAUTHORIZED
    );

    // A success resets the count: 4 failures, a success, 4 failures — never locked.
    for _ in 0..4 {
        assert_eq!(fetch(Some(wrong.clone())).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(fetch(Some(right.clone())).await.0, StatusCode::OK);
    for _ in 0..4 {
        assert_eq!(fetch(Some(wrong.clone())).await.0, StatusCode::UNAUTHORIZED);
    }
    // The fifth failure in the window locks this address out of this site.
    let (status, h, _) = fetch(Some(wrong.clone())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = h
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=WINDOW.as_secs()).contains(&retry), "{retry}");
    let (status, _, body) = fetch(Some(right.clone())).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "locked even with the right password"
    );
    assert!(!body.contains("figures"));
    // Other addresses and other sites are not affected.
    let (status, _) = as_client(
        &origin,
        "192.0.2.77",
        host,
        "/private/report.txt",
        Some(&right),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = as_client(
        &origin,
        "127.0.0.1",
        &other,
        "/private/report.txt",
        Some(&right),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    if redis.is_some() {
        // Counters in Redis are shared by every instance of the region.
        let twin = self::origin(&env, redis.clone());
        let (status, h) = as_client(
            &twin,
            "127.0.0.1",
            host,
            "/private/report.txt",
            Some(&right),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(h.get("retry-after").is_some());
    }
    // The lockout ends with the window.
    tokio::time::sleep(WINDOW + Duration::from_millis(300)).await;
    let (status, _, body) = fetch(Some(right.clone())).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "figures"));
    server.stop().await;
}

#[tokio::test]
async fn lockout_with_counters_in_memory() {
    lockout_scenario(None).await;
}

#[tokio::test]
async fn lockout_with_counters_in_redis() {
    lockout_scenario(Some(redis_url())).await;
}
