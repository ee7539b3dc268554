//! The operator's counters: a local listener answers `GET /_skyhost/metrics` with what its
//! region answered (requests, cache outcomes, 5xx, failed health checks) in Prometheus'
//! text format; the same origin behind the Lambda adapter answers that path 404.

mod common;

use common::*;
use http::StatusCode;
use lambda_http::request::LambdaRequest;
use skyhost_meta::store::MetaStore;
use skyhost_origin::counters::{Counters, METRICS_PATH};
use skyhost_origin::{lambda, Origin};
use std::sync::Arc;

/// The value of the sample `name{labels}` in a text exposition.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn counted(env: &Embedded, counters: Arc<Counters>) -> Arc<Origin> {
    let cache = Arc::new(skyhost_meta::cache::memory::MemoryCache::new(1 << 20));
    Arc::new(
        Origin::new(config(), env.meta.clone(), env.local.clone(), None, cache)
            .with_counters(counters),
    )
}

#[tokio::test]
async fn a_local_listener_serves_the_region_counters() {
    let env = Embedded::new("us-west-2");
    let (_, host) = one_page_site(env.meta.as_ref(), env.local.as_ref(), "count", "hi").await;
    // Two instances of one region share the counters, as in local mode.
    let counters = Counters::new("us-west-2");
    let a = start(counted(&env, counters.clone()).await).await;
    let b = start(counted(&env, counters.clone()).await).await;
    let c = client();
    assert_eq!(get(&c, &a.base, &host, "/index.html").await.cache(), "miss");
    assert_eq!(get(&c, &a.base, &host, "/index.html").await.cache(), "hit");
    assert_eq!(get(&c, &b.base, &host, "/index.html").await.cache(), "miss");
    assert_eq!(
        get(&c, &b.base, &host, "/nothing").await.status,
        StatusCode::NOT_FOUND
    );
    let (_, other) = one_page_site(env.meta.as_ref(), env.local.as_ref(), "other", "x").await;
    assert_eq!(
        get(&c, &a.base, &other, "/index.html").await.cache(),
        "miss"
    );
    // Health probes are not site requests.
    let health = get(&c, &a.base, &host, "/_skyhost/health").await;
    assert_eq!(health.status, StatusCode::OK);

    let m = get(&c, &b.base, "anything", METRICS_PATH).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let text = m.text();
    let r = "{region=\"us-west-2\"";
    assert_eq!(
        sample(&text, &format!("skyhost_requests_total{r}}}")),
        Some(5),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("skyhost_cache_total{r},outcome=\"hit\"}}")),
        // The second page and the 404, which read no bucket.
        Some(2),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("skyhost_cache_total{r},outcome=\"miss\"}}")),
        Some(3),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("skyhost_server_errors_total{r}}}")),
        Some(0),
        "{text}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn server_errors_and_failed_health_checks_are_counted() {
    let env = Embedded::new("us-west-2");
    let counters = Counters::new("us-west-2");
    let deployed = deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        "broken",
        &["broken.test"],
        &[file("/index.html", "page", "text/html")],
        rules(None, None, None),
    )
    .await;
    env.remove(&deployed.key("/index.html", None));
    let s = start(counted(&env, counters.clone()).await).await;
    let c = client();
    let g = get(&c, &s.base, "broken.test", "/index.html").await;
    assert!(g.status.is_server_error(), "{}", g.status);
    // Maintenance: the health check answers 503 and is counted once.
    env.meta
        .set_region_status(&skyhost_meta::RegionStatus {
            region: "us-west-2".into(),
            maintenance: true,
        })
        .await
        .unwrap();
    for _ in 0..3 {
        let h = get(&c, &s.base, "broken.test", "/_skyhost/health").await;
        assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let snap = counters.snapshot();
    assert_eq!((snap.requests, snap.server_errors), (1, 1));
    assert_eq!(snap.health_failures, 1, "results reused within a second");
    s.stop().await;
}

#[tokio::test]
async fn the_lambda_adapter_never_answers_the_counters() {
    let env = Embedded::new("us-west-2");
    let counters = Counters::new("us-west-2");
    let origin = counted(&env, counters).await;
    let mut v: serde_json::Value = skyhost_testkit::event_fixture("skyhost/rest-api-health.json");
    v["path"] = METRICS_PATH.into();
    v["requestContext"]["path"] = METRICS_PATH.into();
    v["pathParameters"]["proxy"] = METRICS_PATH.trim_start_matches('/').into();
    let parsed: LambdaRequest = serde_json::from_value(v).expect("an API Gateway event");
    let resp = lambda::handle(&origin, parsed.into()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
