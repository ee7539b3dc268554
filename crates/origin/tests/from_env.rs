//! The Lambda wiring: `Origin::from_env` reads exactly `ENV_VARS` (each required one is
//! named when missing), builds DynamoDB/S3/Redis clients against moto and redis-server,
//! and serves through the same handler: a replica region reading its own region's table
//! replica and falling back to the primary bucket.
//! One test in this file, since it sets process environment variables.

mod common;

use common::*;
use http::StatusCode;
use skyhost_meta::blob::BlobStore;
use skyhost_origin::{Origin, OriginConfig, ENV_VARS};
use std::sync::Arc;

#[tokio::test]
async fn origin_from_the_environment() {
    let table = dynamo("us-west-2").await;
    // The sites table's replica in the origin's own region holds the records; the
    // primary's stays empty, so a 200 below proves the origin reads its own region's.
    let replica = skyhost_meta::store::dynamodb::DynamoStore::new(
        skyhost_meta::config::dynamodb(&skyhost_testkit::aws("eu-central-1").await),
        table.table(),
    );
    replica.ensure_table().await.unwrap();
    let primary = s3("us-west-2").await;
    let local = s3("eu-central-1").await;
    let (_, host) = one_page_site(&replica, &primary, "env", "from the primary").await;

    let vars: Vec<(&str, String)> = vec![
        ("SKYHOST_REGION", "eu-central-1".into()),
        ("SKYHOST_PRIMARY_REGION", "us-west-2".into()),
        ("SKYHOST_TABLE", table.table().to_owned()),
        ("SKYHOST_BUCKET", local.bucket().to_owned()),
        ("SKYHOST_PRIMARY_BUCKET", primary.bucket().to_owned()),
        ("SKYHOST_NOTIFY_SECRETS", "newest, older".into()),
        ("SKYHOST_TRUST_FORWARDED_HOST", "false".into()),
        ("SKYHOST_CACHE_BYTES", "1048576".into()),
        ("REDIS_URL", redis_url()),
    ];
    let mut names: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
    let mut listed = ENV_VARS.to_vec();
    names.sort();
    listed.sort();
    assert_eq!(names, listed);
    let set_all = || {
        for (k, v) in &vars {
            std::env::set_var(k, v);
        }
    };
    // Every variable but REDIS_URL is required, and a missing one is named.
    for (name, _) in &vars {
        set_all();
        std::env::remove_var(name);
        let result = OriginConfig::from_env();
        if *name == "REDIS_URL" {
            assert!(result.unwrap().redis_url.is_none());
        } else {
            let err = result
                .err()
                .unwrap_or_else(|| panic!("{name} missing was accepted"));
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }
    set_all();
    std::env::set_var("SKYHOST_CACHE_BYTES", "lots");
    assert!(OriginConfig::from_env().is_err());
    set_all();
    std::env::set_var("SKYHOST_TRUST_FORWARDED_HOST", "yes");
    assert!(OriginConfig::from_env().is_err());
    set_all();

    let config = OriginConfig::from_env().unwrap();
    assert_eq!(
        config.notify_secrets,
        vec![b"newest".to_vec(), b"older".to_vec()]
    );
    assert_eq!(config.cache_bytes, 1_048_576);
    assert!(!config.trust_forwarded_host);
    assert!(config.emit_metrics);

    let origin = Arc::new(Origin::from_env().await.unwrap());
    let server = start(origin).await;
    let c = client();
    let g = get(&c, &server.base, &host, "/").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.text(), "from the primary");
    assert_eq!(g.header("x-skyhost-region"), Some("eu-central-1"));
    assert_eq!(g.cache(), "fallback");
    let health = get(
        &c,
        &server.base,
        "eu-central-1.origin.test",
        "/_skyhost/health",
    )
    .await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());
    let v: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(v["checks"]["redis"]["status"], "ok");
    assert_eq!(v["region"], "eu-central-1");
    server.stop().await;
}
