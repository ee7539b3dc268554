//! The Lambda wiring: `Origin::from_env` reads exactly `ENV_VARS` (each required one is
//! named when missing), builds DynamoDB/S3/Redis/Secrets Manager clients against moto
//! and redis-server, and serves through the same handler: a replica region reading its own
//! region's table replica and falling back to the primary bucket, the front's secret and
//! the notify secret read from the region's Secrets Manager at run time. One test in this
//! file, since it sets process environment variables.

mod common;

use common::*;
use http::{Method, StatusCode};
use skyhost_meta::blob::BlobStore;
use skyhost_meta::store::MetaStore;
use skyhost_origin::forwarded::DirectAccess;
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
    let (site, host) = one_page_site(&replica, &primary, "env", "from the primary").await;
    // The secrets live in the origin's own region.
    let secrets = skyhost_meta::config::secretsmanager(&skyhost_testkit::aws("eu-central-1").await);
    let notify_id = unique("skyhost/notify");
    let front_id = unique("skyhost/origin-verify");
    for (id, value) in [(&notify_id, "newest, older"), (&front_id, "front-value")] {
        secrets
            .create_secret()
            .name(id)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }

    let vars: Vec<(&str, String)> = vec![
        ("SKYHOST_REGION", "eu-central-1".into()),
        ("SKYHOST_PRIMARY_REGION", "us-west-2".into()),
        ("SKYHOST_TABLE", table.table().to_owned()),
        ("SKYHOST_BUCKET", local.bucket().to_owned()),
        ("SKYHOST_PRIMARY_BUCKET", primary.bucket().to_owned()),
        ("SKYHOST_NOTIFY_SECRET_ID", notify_id.clone()),
        ("SKYHOST_ORIGIN_VERIFY_SECRET_ID", front_id.clone()),
        ("SKYHOST_DIRECT_ACCESS", "refuse".into()),
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
    // Every variable but REDIS_URL and the front's secret is required, and a missing
    // one is named (refusing direct access needs the front's secret).
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
    std::env::set_var("SKYHOST_DIRECT_ACCESS", "deny");
    assert!(OriginConfig::from_env().is_err());
    set_all();
    std::env::set_var("SKYHOST_DIRECT_ACCESS", "allow");
    std::env::remove_var("SKYHOST_ORIGIN_VERIFY_SECRET_ID");
    let open = OriginConfig::from_env().unwrap();
    assert!(open.origin_verify.is_none());
    assert_eq!(open.direct_access, DirectAccess::Allow);
    set_all();

    let config = OriginConfig::from_env().unwrap();
    // Named, not given: nothing is read before it is needed.
    let notify = &config.notify_secret;
    assert_eq!(notify.name(), notify_id);
    assert_eq!(config.origin_verify.as_ref().unwrap().name(), front_id);
    assert_eq!(config.direct_access, DirectAccess::Refuse);
    assert_eq!(config.cache_bytes, 1_048_576);
    assert!(config.emit_metrics);

    let origin = Arc::new(Origin::from_env().await.unwrap());
    let server = start(origin).await;
    let c = client();
    // Direct access is refused; through the front (its secret read from Secrets
    // Manager) the site host travels in X-Forwarded-Host.
    let g = get(&c, &server.base, &host, "/").await;
    assert_eq!(g.status, StatusCode::FORBIDDEN);
    let front = [
        ("x-forwarded-host", host.as_str()),
        ("x-skyhost-origin-verify", "front-value"),
    ];
    let g = send(&c, &server.base, Method::GET, "origin.test", "/", &front).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.text(), "from the primary");
    assert_eq!(g.header("x-skyhost-region"), Some("eu-central-1"));
    assert_eq!(g.cache(), "fallback");
    // Notifications verify against every value of the notify secret.
    let site = skyhost_meta::SiteId::parse(&site).unwrap();
    for secret in ["older", "newest"] {
        let record = replica.site(&site).await.unwrap().unwrap();
        let (body, sig) = signed_notification(
            secret.as_bytes(),
            &site,
            record.revision,
            Some(&record),
            skyhost_meta::now(),
        );
        let resp = c
            .post(format!("{}/_skyhost/notify", server.base))
            .header("host", "eu-central-1.origin.test")
            .header("x-skyhost-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{secret}");
    }
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
