//! Test support shared by skyhost's crates: the real servers `make test` starts, and fresh
//! tables and buckets on moto. A missing server fails the test; it is never skipped.

pub mod fault_proxy;
pub mod raw_http;

use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::store::dynamodb::{DynamoStore, DynamoStreamFeed};

/// A file or folder of the repository (`events/…`, `examples/…`), found from the package
/// under test. It reads `CARGO_MANIFEST_DIR` when the test runs, as Cargo sets it then:
/// the value compiled in names the folder the test was built in, and a target directory
/// shared between clones (`.ci/run` keeps one outside the clone) can hand a test binary
/// built in one clone to another, whose folder the compiled-in path no longer is.
pub fn repo_path(rel: &str) -> std::path::PathBuf {
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let root = here
        .ancestors()
        .find(|p| p.join("Cargo.lock").is_file())
        .unwrap_or(&here);
    root.join(rel)
}

/// The event fixture `events/REL` (`sam/…` or `skyhost/…`), parsed; a missing or
/// malformed fixture fails the test, naming the file.
pub fn event_fixture<T: serde::de::DeserializeOwned>(rel: &str) -> T {
    let path = repo_path("events").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The moto server's endpoint, exported by `make test`.
pub fn moto_endpoint() -> String {
    required("AWS_ENDPOINT_URL", "starts a moto server")
}

/// The shared redis-server's URL, exported by `make test`.
pub fn redis_url() -> String {
    required("SKYHOST_TEST_REDIS_URL", "starts redis-server")
}

/// The redis-server binary (for tests that start and stop their own), exported by
/// `make test`.
pub fn redis_server_binary() -> String {
    required("SKYHOST_TEST_REDIS_SERVER", "installs redis-server")
}

/// The redbot command (an HTTP linter), exported by `make test`.
pub fn redbot_binary() -> String {
    required("SKYHOST_TEST_REDBOT", "installs redbot")
}

fn required(name: &str, what: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with `make test`, which {what}")
    })
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// The SDK configuration for `region` on moto, through the connector the Lambdas use
/// (compiled-in roots), as they use it.
pub async fn aws(region: &str) -> aws_config::SdkConfig {
    let _ = moto_endpoint();
    skyhost_meta::config::aws_with_roots(region, skyhost_meta::tls::Roots::Compiled).await
}

/// A fresh DynamoDB table on moto.
pub async fn dynamo(region: &str) -> DynamoStore {
    table(&aws(region).await).await
}

/// A fresh DynamoDB table on moto, with its stream feed.
pub async fn dynamo_with_feed(region: &str) -> (DynamoStore, DynamoStreamFeed) {
    let conf = aws(region).await;
    let store = table(&conf).await;
    let arn = store.stream_arn().await.expect("stream arn");
    let feed = DynamoStreamFeed::new(skyhost_meta::config::dynamodb_streams(&conf), arn, region);
    (store, feed)
}

async fn table(conf: &aws_config::SdkConfig) -> DynamoStore {
    let store = DynamoStore::new(skyhost_meta::config::dynamodb(conf), unique("sites"));
    store.ensure_table().await.expect("create table on moto");
    store
}

/// A fresh S3 bucket on moto, through a client built only when first used
/// ([`S3BlobStore::deferred`]).
pub async fn s3_deferred(region: &str) -> S3BlobStore {
    let bucket = s3(region).await.bucket().to_owned();
    S3BlobStore::deferred(
        skyhost_meta::config::SdkConfigCell::ready(aws(region).await),
        bucket,
    )
}

/// A fresh S3 bucket on moto.
pub async fn s3(region: &str) -> S3BlobStore {
    let conf = aws(region).await;
    let store = S3BlobStore::new(skyhost_meta::config::s3(&conf), unique("skyhost-blobs"));
    store
        .ensure_bucket(region)
        .await
        .expect("create bucket on moto");
    store
}

/// A DynamoDB stream record of the site item of `blog` (`eventName` `name`, with the new
/// and old images given), shaped as the stream delivers it: tests of the stream triggers
/// deserialize it into `aws_lambda_events`' record type.
pub fn site_stream_record<T: serde::de::DeserializeOwned>(
    name: &str,
    new: Option<serde_json::Value>,
    old: Option<serde_json::Value>,
) -> T {
    let mut d = serde_json::json!({
        "ApproximateCreationDateTime": 1767435072,
        "Keys": {"pk": {"S": "SITE#blog"}, "sk": {"S": "SITE"}},
        "SequenceNumber": "100",
        "SizeBytes": 1,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    });
    if let Some(n) = new {
        d["NewImage"] = n;
    }
    if let Some(o) = old {
        d["OldImage"] = o;
    }
    // The literal above is a valid stream record: failing here is a bug in the test.
    serde_json::from_value(serde_json::json!({
        "eventID": "1", "eventName": name, "eventSource": "aws:dynamodb",
        "awsRegion": "us-west-2", "dynamodb": d
    }))
    .expect("a stream record of the site item")
}

/// A REST API named `name` with its root answering `ANY` (a mock integration) and a
/// `live` stage, as the template makes, in `region` on moto: what a custom domain maps to.
/// Its id.
pub async fn origin_api(region: &str, name: &str) -> String {
    let c = aws_sdk_apigateway::Client::new(&aws(region).await);
    let id = c
        .create_rest_api()
        .name(name)
        .send()
        .await
        .expect("create api")
        .id()
        .expect("api id")
        .to_string();
    let root = c
        .get_resources()
        .rest_api_id(&id)
        .send()
        .await
        .expect("resources")
        .items()
        .iter()
        .find(|r| r.path() == Some("/"))
        .and_then(|r| r.id())
        .expect("root resource")
        .to_string();
    c.put_method()
        .rest_api_id(&id)
        .resource_id(&root)
        .http_method("ANY")
        .authorization_type("NONE")
        .send()
        .await
        .expect("method");
    c.put_integration()
        .rest_api_id(&id)
        .resource_id(&root)
        .http_method("ANY")
        .r#type(aws_sdk_apigateway::types::IntegrationType::Mock)
        .send()
        .await
        .expect("integration");
    c.create_deployment()
        .rest_api_id(&id)
        .stage_name("live")
        .send()
        .await
        .expect("deployment");
    id
}
