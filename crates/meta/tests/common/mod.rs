//! Test support: the real servers `make test` starts. A missing server fails the test;
//! it is never skipped.
#![allow(dead_code)]

use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::store::dynamodb::{DynamoStore, DynamoStreamFeed};

/// The moto server's endpoint, exported by `make test`.
pub fn moto_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: run the suite with `make test`, which starts a moto server")
    })
}

/// The redis-server URL, exported by `make test`.
pub fn redis_url() -> String {
    std::env::var("SKYHOST_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("SKYHOST_TEST_REDIS_URL is not set: run the suite with `make test`, which starts redis-server")
    })
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A fresh DynamoDB table on moto, with its stream feed.
pub async fn dynamo(region: &str) -> (DynamoStore, DynamoStreamFeed) {
    let _ = moto_endpoint();
    // The connector the Lambdas use (compiled-in roots), as they use it.
    let conf =
        skyhost_meta::config::aws_with_roots(region, skyhost_meta::tls::Roots::Compiled).await;
    let store = DynamoStore::new(skyhost_meta::config::dynamodb(&conf), unique("sites"));
    store.ensure_table().await.expect("create table on moto");
    let arn = store.stream_arn().await.expect("stream arn");
    let feed = DynamoStreamFeed::new(skyhost_meta::config::dynamodb_streams(&conf), arn, region);
    (store, feed)
}

/// A fresh S3 bucket on moto.
pub async fn s3(region: &str) -> S3BlobStore {
    let _ = moto_endpoint();
    // The connector the Lambdas use (compiled-in roots), as they use it.
    let conf =
        skyhost_meta::config::aws_with_roots(region, skyhost_meta::tls::Roots::Compiled).await;
    let store = S3BlobStore::new(skyhost_meta::config::s3(&conf), unique("skyhost-blobs"));
    store
        .ensure_bucket(region)
        .await
        .expect("create bucket on moto");
    store
}
