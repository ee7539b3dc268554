//! The fail-safe read path on moto (DynamoDB + S3): a region whose bucket lacks a blob
//! serves it from the primary region's bucket (`X-Skyhost-Cache: fallback`) and copies it
//! into its own bucket in the background, so the next read is local.

mod common;

use common::*;
use http::{Method, StatusCode};
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::Cache;
use skyhost_meta::keys;
use skyhost_meta::store::MetaStore;
use skyhost_origin::{Origin, OriginConfig};
use std::sync::Arc;
use std::time::Duration;

const PRIMARY: &str = "us-west-2";
const REPLICA: &str = "eu-central-1";

fn replica_origin(
    meta: Arc<dyn MetaStore>,
    local: Arc<dyn BlobStore>,
    primary: Arc<dyn BlobStore>,
) -> Arc<Origin> {
    let config = OriginConfig::new(REPLICA, PRIMARY);
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(config.cache_bytes));
    Arc::new(Origin::new(config, meta, local, Some(primary), cache))
}

#[tokio::test]
async fn missing_blob_is_served_from_the_primary_and_backfilled() {
    let meta: Arc<dyn MetaStore> = Arc::new(dynamo(PRIMARY).await);
    let primary: Arc<dyn BlobStore> = Arc::new(s3(PRIMARY).await);
    let local: Arc<dyn BlobStore> = Arc::new(s3(REPLICA).await);
    let site = unique("fb");
    let host = format!("{site}.test");
    let late_body = "arrived late\n".repeat(100);
    let d = deploy(
        meta.as_ref(),
        primary.as_ref(),
        &site,
        &[&host],
        &[
            file("/index.html", "<h1>home</h1>", "text/html"),
            file("/late.txt", &late_body, "text/plain"),
        ],
        rules(None, None, None),
    )
    .await;
    // The asset-copier has copied the manifest and index.html, not yet late.txt.
    let manifest_key = keys::manifest(&d.site.id, d.id());
    local
        .copy_from(primary.as_ref(), &manifest_key)
        .await
        .unwrap();
    local
        .copy_from(primary.as_ref(), &d.key("/index.html", None))
        .await
        .unwrap();
    let late_key = d.key("/late.txt", None);
    assert!(local.head(&late_key).await.unwrap().is_none());

    let origin = replica_origin(meta.clone(), local.clone(), primary.clone());
    let server = start(origin.clone()).await;
    let c = client();
    let home = get(&c, &server.base, &host, "/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.cache(), "miss");
    assert_eq!(home.header("x-skyhost-region"), Some(REPLICA));

    let g = get(&c, &server.base, &host, "/late.txt").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.text(), late_body);
    assert_eq!(g.cache(), "fallback");
    assert_eq!(g.header("x-skyhost-deployment"), Some(d.id().as_str()));

    // The backfill lands in the local bucket.
    let landed = eventually(Duration::from_secs(10), || {
        let local = local.clone();
        let key = late_key.clone();
        async move { local.head(&key).await.unwrap().is_some() }
    })
    .await;
    assert!(landed, "late.txt was not copied into the local bucket");
    let copied = local.get(&late_key, None).await.unwrap().unwrap();
    assert_eq!(copied.collect().await.unwrap(), late_body.as_bytes());

    // A fresh instance (empty cache) now reads it from its own bucket.
    let fresh = replica_origin(meta.clone(), local.clone(), primary.clone());
    let g = call(&fresh, Method::GET, &host, "/late.txt", &[]).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.cache(), "miss");
    assert_eq!(g.text(), late_body);
    server.stop().await;
}

#[tokio::test]
async fn missing_manifest_and_ranges_fall_back_too() {
    let meta: Arc<dyn MetaStore> = Arc::new(dynamo(PRIMARY).await);
    let primary: Arc<dyn BlobStore> = Arc::new(s3(PRIMARY).await);
    let local: Arc<dyn BlobStore> = Arc::new(s3(REPLICA).await);
    let site = unique("fbm");
    let host = format!("{site}.test");
    let body: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let d = deploy(
        meta.as_ref(),
        primary.as_ref(),
        &site,
        &[&host],
        &[file("/video.bin", &body, "application/octet-stream")],
        rules(None, None, None),
    )
    .await;
    let origin = replica_origin(meta.clone(), local.clone(), primary.clone());
    // Nothing replicated yet: the manifest and a range of the blob come from the primary.
    let g = call(
        &origin,
        Method::GET,
        &host,
        "/video.bin",
        &[("range", "bytes=100-199")],
    )
    .await;
    assert_eq!(g.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(g.body.to_vec(), body[100..200].to_vec());
    assert_eq!(g.cache(), "fallback");
    let manifest_key = keys::manifest(&d.site.id, d.id());
    for key in [manifest_key, d.key("/video.bin", None)] {
        let landed = eventually(Duration::from_secs(10), || {
            let local = local.clone();
            let key = key.clone();
            async move { local.head(&key).await.unwrap().is_some() }
        })
        .await;
        assert!(landed, "{key} was not backfilled");
    }
    // Health of the replica: the table and its bucket answer on moto.
    let g = call(&origin, Method::GET, "any.test", "/_skyhost/health", &[]).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
}
