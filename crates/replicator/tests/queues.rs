//! Delivery independent per region, on moto's SQS: two real origins on loopback
//! (eu-central-1 up, ap-southeast-1 first an endpoint that refuses connections or one that
//! never answers), the replicator with a queue per region handling stream batches, then
//! consuming ap's queue as the SQS event source mapping would (reported messages stay, the
//! others are deleted).
//!
//! Run with `make test` (or `./tests/harness/with-servers.sh cargo test -p
//! skyhost-replicator --test queues`): a missing moto server fails these tests.

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::{json, Value};
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::Cache;
use skyhost_meta::config::SdkConfigCell;
use skyhost_meta::metrics::Metrics;
use skyhost_meta::notify::{HttpNotifier, Notification};
use skyhost_meta::secrets::Secret;
use skyhost_meta::store::sqlite::SqliteStore;
use skyhost_meta::SiteId;
use skyhost_origin::{Origin, OriginConfig};
use skyhost_replicator::queue::{QueueError, Queued, RegionQueue, SqsQueues};
use skyhost_replicator::{QueueOptions, Queues, Replicator, RetryOptions};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRIMARY: &str = "us-west-2";
const EU: &str = "eu-central-1";
const AP: &str = "ap-southeast-1";
const SECRET: &[u8] = b"queues-notify-secret";

// ------------------------------------------------------------------ origins

/// A real origin verifying with `SECRET` on `listener`; its cache, to read the revision it
/// holds for a site.
fn origin(region: &str, listener: tokio::net::TcpListener) -> Arc<MemoryCache> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = OriginConfig::new(region, PRIMARY);
    config.notify_secret = Secret::fixed(vec![SECRET.to_vec()]);
    let cache = Arc::new(MemoryCache::new(1 << 20));
    let origin = Arc::new(Origin::new(
        config,
        Arc::new(SqliteStore::in_memory(region).unwrap()),
        Arc::new(skyhost_meta::blob::fs::FsBlobStore::open(dir.path(), "b", region).unwrap()),
        None,
        cache.clone(),
    ));
    tokio::spawn(async move {
        let _dir = dir;
        let _ = skyhost_origin::server::serve(listener, origin, std::future::pending()).await;
    });
    cache
}

async fn live_origin(region: &str) -> (String, Arc<MemoryCache>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (base, origin(region, listener))
}

/// A loopback address nothing listens on (connections are refused), kept free for later.
async fn dead_address() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

async fn revision(cache: &MemoryCache, site: &str) -> Option<u64> {
    cache
        .site(&SiteId::parse(site).unwrap())
        .await
        .map(|e| e.revision)
}

// ------------------------------------------------------------------ queues

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&skyhost_testkit::aws(PRIMARY).await)
}

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(skyhost_testkit::unique(name))
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue URL")
        .to_owned()
}

/// Receives what the queue offers now, as the event source mapping polls: an SQS event
/// (JSON, as Lambda sends it).
async fn poll(sqs: &aws_sdk_sqs::Client, url: &str, wait_secs: i32) -> Value {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let records: Vec<Value> = out
        .messages()
        .iter()
        .map(|m| {
            let attrs: HashMap<String, String> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                "body": m.body(), "attributes": attrs, "messageAttributes": {},
                "md5OfBody": m.md5_of_body(), "eventSource": "aws:sqs",
                "eventSourceARN": format!("arn:aws:sqs:{PRIMARY}:123456789012:q"),
                "awsRegion": PRIMARY
            })
        })
        .collect();
    json!({ "Records": records })
}

fn queued_revisions(event: &Value) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let q = Queued::decode(r["body"].as_str().unwrap()).unwrap();
            (q.region, q.notification.revision)
        })
        .collect();
    out.sort();
    out
}

/// What the event source mapping does with the answer: deletes every message not reported.
async fn settle(sqs: &aws_sdk_sqs::Client, url: &str, event: &Value, resp: &SqsBatchResponse) {
    let reported: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    for r in event["Records"].as_array().unwrap() {
        if !reported.contains(&r["messageId"].as_str().unwrap()) {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(r["receiptHandle"].as_str().unwrap())
                .send()
                .await
                .expect("delete");
        }
    }
}

// ------------------------------------------------------------------ stream events

fn site_image(site: &str, rev: u64) -> Value {
    json!({
        "pk": {"S": format!("SITE#{site}")}, "sk": {"S": "SITE"}, "kind": {"S": "site"},
        "site": {"S": site}, "domains": {"L": []}, "revision": {"N": rev.to_string()},
        "suspended": {"BOOL": false}, "updated": {"N": "1767435072"}
    })
}

fn site_change(seq: u64, site: &str, rev: u64) -> Event {
    serde_json::from_value(site_change_json(seq, site, rev)).unwrap()
}

/// A stream batch of one site change, as Lambda sends it.
fn site_change_json(seq: u64, site: &str, rev: u64) -> Value {
    let image = site_image(site, rev);
    json!({"Records": [{
        "eventID": seq.to_string(), "eventName": "MODIFY", "eventSource": "aws:dynamodb",
        "awsRegion": PRIMARY,
        "dynamodb": {
            "ApproximateCreationDateTime": 1767435072,
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "SequenceNumber": seq.to_string(), "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES", "NewImage": image
        }
    }]})
}

fn fast() -> RetryOptions {
    RetryOptions {
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        attempt_timeout: Duration::from_millis(500),
        reserve: Duration::from_millis(50),
    }
}

fn queue_options() -> QueueOptions {
    QueueOptions {
        direct_budget: Duration::from_millis(300),
        skip_direct_for: Duration::from_secs(60),
        consumer_budget: Duration::from_millis(500),
        first_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(4),
    }
}

fn http() -> reqwest::Client {
    skyhost_meta::tls::http_client()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn replicator(regions: Vec<(String, String)>, queues: Queues) -> Replicator {
    Replicator::new(
        regions,
        Arc::new(HttpNotifier::new(http(), SECRET.to_vec())),
        fast(),
    )
    .with_metrics(Metrics::discard())
    .with_queues(queues)
}

fn later(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn a_dead_region_is_queued_apart_and_converges_to_the_newest_revision_once_back() {
    let sqs = sqs().await;
    let eu_queue = create_queue(&sqs, "skyhost-eu").await;
    let ap_queue = create_queue(&sqs, "skyhost-ap").await;
    let (eu_base, eu) = live_origin(EU).await;
    let ap_addr = dead_address().await;
    let regions = vec![
        (EU.to_owned(), eu_base),
        (AP.to_owned(), format!("http://{ap_addr}")),
    ];
    let urls = HashMap::from([
        (EU.to_owned(), eu_queue.clone()),
        (AP.to_owned(), ap_queue.clone()),
    ]);
    let conf = SdkConfigCell::ready(skyhost_testkit::aws(PRIMARY).await);
    let queues = Queues::new(Arc::new(SqsQueues::new(conf)), urls, queue_options());
    let r = replicator(regions, queues);

    // Two site changes while ap refuses connections: neither batch fails, eu has each as
    // soon as its batch returns, and the second batch does not even try ap directly.
    let started = Instant::now();
    let resp = r.handle(site_change(1, "blog", 1), later(20)).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    assert_eq!(revision(&eu, "blog").await, Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let resp = r.handle(site_change(2, "blog", 2), later(20)).await;
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    assert_eq!(revision(&eu, "blog").await, Some(2));
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "a region known dead still delayed the batch: {:?}",
        started.elapsed()
    );

    // Both notifications wait on ap's queue, none on eu's.
    let event = poll(&sqs, &ap_queue, 1).await;
    assert_eq!(
        queued_revisions(&event),
        vec![(AP.to_owned(), 1), (AP.to_owned(), 2)]
    );
    assert_eq!(queued_revisions(&poll(&sqs, &eu_queue, 0).await), vec![]);

    // The consumer while ap is still down: only the newest is tried and reported; the
    // older one is dropped; the reported one is hidden for the backoff.
    let answer = r.handle_event(event.clone(), later(10)).await.unwrap();
    let resp: SqsBatchResponse = serde_json::from_value(answer).unwrap();
    assert_eq!(resp.batch_item_failures.len(), 1, "{resp:?}");
    let newest = event["Records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            Queued::decode(m["body"].as_str().unwrap())
                .unwrap()
                .notification
                .revision
                == 2
        })
        .unwrap();
    assert_eq!(
        resp.batch_item_failures[0].item_identifier,
        newest["messageId"].as_str().unwrap()
    );
    settle(&sqs, &ap_queue, &event, &resp).await;
    assert_eq!(queued_revisions(&poll(&sqs, &ap_queue, 0).await), vec![]);

    // ap answers again: the retry after the backoff delivers the newest revision.
    let ap = origin(AP, tokio::net::TcpListener::bind(ap_addr).await.unwrap());
    let event = poll(&sqs, &ap_queue, 5).await;
    assert_eq!(queued_revisions(&event), vec![(AP.to_owned(), 2)]);
    assert_eq!(
        event["Records"][0]["attributes"]["ApproximateReceiveCount"],
        "2"
    );
    let answer = r.handle_event(event.clone(), later(10)).await.unwrap();
    let resp: SqsBatchResponse = serde_json::from_value(answer).unwrap();
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    settle(&sqs, &ap_queue, &event, &resp).await;
    assert_eq!(revision(&ap, "blog").await, Some(2));

    // An older notification still queued somewhere never wins over the newer one.
    let stale = Queued {
        region: AP.to_owned(),
        notification: Notification {
            site: SiteId::parse("blog").unwrap(),
            revision: 1,
            record: Some(serde_json::from_value(json!({"id": "blog", "revision": 1})).unwrap()),
            changed_ms: 0,
        },
    };
    sqs.send_message()
        .queue_url(&ap_queue)
        .message_body(stale.encode())
        .send()
        .await
        .unwrap();
    let event = poll(&sqs, &ap_queue, 1).await;
    let resp: SqsBatchResponse =
        serde_json::from_value(r.handle_event(event, later(10)).await.unwrap()).unwrap();
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    assert_eq!(revision(&ap, "blog").await, Some(2));
    assert_eq!(revision(&eu, "blog").await, Some(2));
}

#[tokio::test]
async fn a_batch_of_one_site_delivers_only_its_newest_queued_revision() {
    let sqs = sqs().await;
    let eu_queue = create_queue(&sqs, "skyhost-eu").await;
    let (eu_base, eu) = live_origin(EU).await;
    let conf = SdkConfigCell::ready(skyhost_testkit::aws(PRIMARY).await);
    let port = SqsQueues::new(conf);
    for rev in [5, 3, 4] {
        let q = Queued {
            region: EU.to_owned(),
            notification: Notification {
                site: SiteId::parse("docs").unwrap(),
                revision: rev,
                record: Some(
                    serde_json::from_value(json!({"id": "docs", "revision": rev})).unwrap(),
                ),
                changed_ms: 0,
            },
        };
        port.send(&eu_queue, q.encode()).await.unwrap();
    }
    let queues = Queues::new(
        Arc::new(port),
        HashMap::from([(EU.to_owned(), eu_queue.clone())]),
        queue_options(),
    );
    let r = replicator(vec![(EU.to_owned(), eu_base)], queues);
    let event = poll(&sqs, &eu_queue, 1).await;
    assert_eq!(queued_revisions(&event).len(), 3);
    let resp: SqsBatchResponse =
        serde_json::from_value(r.handle_event(event.clone(), later(10)).await.unwrap()).unwrap();
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    settle(&sqs, &eu_queue, &event, &resp).await;
    assert_eq!(revision(&eu, "docs").await, Some(5));
    assert_eq!(queued_revisions(&poll(&sqs, &eu_queue, 0).await), vec![]);
}

/// A queue that cannot be written.
struct Unreachable;

#[async_trait]
impl RegionQueue for Unreachable {
    async fn send(&self, url: &str, _: String) -> Result<(), QueueError> {
        Err(QueueError(format!(
            "SendMessage to {url}: connection refused"
        )))
    }
    async fn retry_after(&self, _: &str, _: &str, _: Duration) -> Result<(), QueueError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_notification_neither_delivered_nor_queued_fails_its_record() {
    let (eu_base, eu) = live_origin(EU).await;
    let ap_addr = dead_address().await;
    let regions = vec![
        (EU.to_owned(), eu_base),
        (AP.to_owned(), format!("http://{ap_addr}")),
    ];
    let urls = HashMap::from([
        (EU.to_owned(), "http://sqs.test/eu".to_owned()),
        (AP.to_owned(), "http://sqs.test/ap".to_owned()),
    ]);
    let r = replicator(
        regions,
        Queues::new(Arc::new(Unreachable), urls, queue_options()),
    );
    // Through the function's one entry point, as Lambda calls it with a stream batch.
    let answer = r
        .handle_event(site_change_json(7, "blog", 1), later(20))
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "7"}]})
    );
    assert_eq!(revision(&eu, "blog").await, Some(1));
}

/// A loopback endpoint that accepts connections and never answers.
async fn silent_address() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

#[tokio::test]
async fn a_silent_region_is_queued_after_the_direct_budget() {
    let sqs = sqs().await;
    let eu_queue = create_queue(&sqs, "skyhost-eu").await;
    let ap_queue = create_queue(&sqs, "skyhost-ap").await;
    let (eu_base, eu) = live_origin(EU).await;
    let regions = vec![
        (EU.to_owned(), eu_base),
        (AP.to_owned(), format!("http://{}", silent_address().await)),
    ];
    let urls = HashMap::from([
        (EU.to_owned(), eu_queue.clone()),
        (AP.to_owned(), ap_queue.clone()),
    ]);
    let conf = SdkConfigCell::ready(skyhost_testkit::aws(PRIMARY).await);
    let queues = Queues::new(Arc::new(SqsQueues::new(conf)), urls, queue_options());
    let r = replicator(regions, queues);
    let started = Instant::now();
    let resp = r.handle(site_change(1, "slow", 1), later(20)).await;
    // The direct budget (300 ms here), not the attempt timeout or the deadline.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(resp.batch_item_failures.is_empty(), "{resp:?}");
    assert_eq!(revision(&eu, "slow").await, Some(1));
    assert_eq!(
        queued_revisions(&poll(&sqs, &ap_queue, 1).await),
        vec![(AP.to_owned(), 1)]
    );
}
