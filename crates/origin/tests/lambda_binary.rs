//! The Lambda binary itself, as the service runs it: `skyhost-origin` started with the
//! template's variables against a Runtime API stub, DynamoDB and S3 on moto. It takes one
//! API Gateway REST event and streams the file back: `main.rs`'s wiring, its runtime, the
//! SDK connector the Lambdas use (compiled-in roots, one pool) and the response stream.
//! A new instance of a region whose Redis another instance warmed answers with every AWS
//! endpoint refusing connections.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use skyhost_meta::blob::BlobStore;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the function sent back to the Runtime API.
enum Reply {
    Response(Bytes),
    Error(String, Bytes),
}

/// A Runtime API that hands out `event` once, then holds every later poll.
async fn runtime_api(event: String) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Reply>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let given = Arc::new(Mutex::new(false));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tx, given, event) = (tx.clone(), given.clone(), event.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (tx, given, event) = (tx.clone(), given.clone(), event.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        if path.ends_with("/invocation/next") {
                            let first = !std::mem::replace(&mut *given.lock().unwrap(), true);
                            if !first {
                                std::future::pending::<()>().await;
                            }
                            let deadline = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_millis()
                                + 30_000;
                            let resp = Response::builder()
                                .header("lambda-runtime-aws-request-id", "req-1")
                                .header("lambda-runtime-deadline-ms", deadline.to_string())
                                .header(
                                    "lambda-runtime-invoked-function-arn",
                                    "arn:aws:lambda:us-west-2:123456789012:function:origin",
                                )
                                .body(Full::new(Bytes::from(event)))
                                .unwrap();
                            return Ok::<_, Infallible>(resp);
                        }
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let _ = tx.send(if path.ends_with("/response") {
                            Reply::Response(body)
                        } else {
                            Reply::Error(path, body)
                        });
                        Ok(Response::builder()
                            .status(202)
                            .body(Full::new(Bytes::from_static(b"{}")))
                            .unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// The page request of `events/`, for `path` on `host`.
fn page_event(host: &str, path: &str) -> String {
    let mut event: serde_json::Value =
        skyhost_testkit::event_fixture("skyhost/rest-api-get-page-custom-domain.json");
    event["path"] = path.into();
    event["requestContext"]["path"] = path.into();
    event["pathParameters"]["proxy"] = path.trim_start_matches('/').into();
    event["headers"]["host"] = host.into();
    event["multiValueHeaders"]["host"] = serde_json::json!([host]);
    event.to_string()
}

/// Starts the origin binary with the template's variables for one region (the primary)
/// over `table` and `bucket`, AWS at `endpoint`, and `extra` on top; answers `event` once
/// and returns what it streamed back, and the process (killed when dropped), which may
/// still be finishing work it spawned, such as a cache write.
async fn invoke(
    event: String,
    table: &str,
    bucket: &str,
    endpoint: &str,
    extra: &[(&str, &str)],
) -> (Bytes, tokio::process::Child) {
    let (api, mut replies) = runtime_api(event).await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_skyhost-origin"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "origin")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-west-2")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("SKYHOST_REGION", "us-west-2")
        .env("SKYHOST_PRIMARY_REGION", "us-west-2")
        .env("SKYHOST_TABLE", table)
        .env("SKYHOST_BUCKET", bucket)
        .env("SKYHOST_PRIMARY_BUCKET", bucket)
        // Named, not read: nothing here verifies a notification.
        .env("SKYHOST_NOTIFY_SECRET_ID", "skyhost/notify-secrets")
        .env("SKYHOST_CACHE_BYTES", "1048576")
        .env("SKYHOST_DIRECT_ACCESS", "allow")
        .envs(extra.iter().copied())
        .kill_on_drop(true)
        .spawn()
        .expect("the origin binary starts");
    let reply = tokio::time::timeout(Duration::from_secs(30), replies.recv())
        .await
        .expect("an answer within 30 s")
        .expect("the stub is running");
    match reply {
        Reply::Response(s) => (s, child),
        Reply::Error(path, body) => panic!(
            "the function reported an error to {path}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

/// A streamed API Gateway answer, split: the JSON prelude, then (after eight NUL bytes)
/// the body.
fn split_answer(stream: &[u8]) -> (serde_json::Value, &[u8]) {
    let split = stream
        .windows(8)
        .position(|w| w == [0u8; 8])
        .expect("the prelude's separator");
    let prelude = serde_json::from_slice(&stream[..split]).unwrap();
    (prelude, &stream[split + 8..])
}

#[tokio::test]
async fn the_origin_binary_answers_an_api_gateway_event() {
    let table = dynamo("us-west-2").await;
    let bucket = s3("us-west-2").await;
    let (_, host) = one_page_site(&table, &bucket, "bin", "served by the binary").await;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("moto's endpoint (make test sets it)");
    let (stream, _) = invoke(
        page_event(&host, "/index.html"),
        table.table(),
        bucket.bucket(),
        &endpoint,
        &[],
    )
    .await;
    let (prelude, body) = split_answer(&stream);
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(body, b"served by the binary");
}

#[tokio::test]
async fn a_new_instance_answers_from_the_regions_redis_with_aws_unreachable() {
    use skyhost_meta::cache::Cache;
    let table = dynamo("us-west-2").await;
    let bucket = s3("us-west-2").await;
    let site = unique("binr");
    let host = format!("{site}.test");
    let page = "served from the region's redis";
    let deployed = deploy(
        &table,
        &bucket,
        &site,
        &[&host],
        &[file("/index.html", page, "text/html")],
        rules(None, None, None),
    )
    .await;
    // The binary's Redis keys carry the default prefix; this test's site is its own.
    let redis_url = redis_url();
    let redis = skyhost_meta::cache::redis::RedisCache::new(&redis_url).unwrap();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("moto's endpoint (make test sets it)");
    let event = page_event(&host, "/index.html");

    // The region's first instance reads the table and the bucket, and fills Redis.
    let (first, first_instance) = invoke(
        event.clone(),
        table.table(),
        bucket.bucket(),
        &endpoint,
        &[("REDIS_URL", &redis_url)],
    )
    .await;
    assert_eq!(split_answer(&first).1, page.as_bytes());
    let blob = deployed.key("/index.html", None);
    assert!(
        eventually(Duration::from_secs(5), || {
            let (redis, blob) = (&redis, &blob);
            async move { redis.get(blob).await.is_some() }
        })
        .await,
        "the first instance cached the page in Redis"
    );
    drop(first_instance);

    // A new instance whose AWS endpoints refuse every connection still answers.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (second, _) = invoke(
        event,
        table.table(),
        bucket.bucket(),
        &dead,
        &[("REDIS_URL", &redis_url)],
    )
    .await;
    let (prelude, body) = split_answer(&second);
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(body, page.as_bytes());

    // The control: a site no instance has served is the table's to resolve, which such
    // an instance cannot reach.
    let other = unique("binc");
    let other_host = format!("{other}.test");
    deploy(
        &table,
        &bucket,
        &other,
        &[&other_host],
        &[file("/index.html", "never served", "text/html")],
        rules(None, None, None),
    )
    .await;
    let (third, _) = invoke(
        page_event(&other_host, "/index.html"),
        table.table(),
        bucket.bucket(),
        &dead,
        &[("REDIS_URL", &redis_url)],
    )
    .await;
    let (prelude, body) = split_answer(&third);
    assert_ne!(prelude["statusCode"], 200, "{prelude}");
    assert_ne!(body, b"never served");
}
