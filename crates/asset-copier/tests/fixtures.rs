//! The copier's handlers on the event fixtures of events/ (`sam local generate-event`
//! output and skyhost's variants), with the embedded folder buckets of local mode: other
//! store pairs than S3 → S3 stream through `BlobStore::copy_from`.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use skyhost_asset_copier::{Copier, CopyError, CopyOptions, Method};
use skyhost_meta::blob::fs::FsBlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::metrics::Metrics;
use std::collections::BTreeSet;
use std::sync::Arc;

const PRIMARY_BUCKET: &str = "skyhost-111122223333-us-west-2";

#[derive(Deserialize)]
struct Expected {
    event_key: String,
    key: String,
    kind: String,
    size: u64,
}

fn fixture(rel: &str) -> Value {
    skyhost_testkit::event_fixture(rel)
}

fn expected() -> Vec<Expected> {
    serde_json::from_value(fixture("skyhost/s3-put-skyhost.expected.json")).unwrap()
}

struct Buckets {
    _dir: tempfile::TempDir,
    primary: Arc<FsBlobStore>,
    eu: Arc<FsBlobStore>,
    ap: Arc<FsBlobStore>,
}

fn buckets() -> Buckets {
    let dir = tempfile::tempdir().unwrap();
    let open = |b: &str, r: &str| Arc::new(FsBlobStore::open(dir.path(), b, r).unwrap());
    Buckets {
        primary: open(PRIMARY_BUCKET, "us-west-2"),
        eu: open("skyhost-111122223333-eu-central-1", "eu-central-1"),
        ap: open("skyhost-111122223333-ap-southeast-1", "ap-southeast-1"),
        _dir: dir,
    }
}

fn copier(b: &Buckets, metrics: Metrics) -> Copier {
    Copier::new(
        b.primary.clone(),
        vec![
            ("eu-central-1".into(), b.eu.clone() as Arc<dyn BlobStore>),
            ("ap-southeast-1".into(), b.ap.clone() as Arc<dyn BlobStore>),
        ],
        CopyOptions::default(),
    )
    .with_metrics(metrics)
}

/// Body of an object named in the fixtures: its announced size, except the 200 MiB
/// stand-in, kept small (the copier trusts the bucket, not the event's size).
fn body_of(e: &Expected) -> Bytes {
    let n = if e.size > 1 << 20 {
        4096
    } else {
        e.size as usize
    };
    Bytes::from(e.key.bytes().cycle().take(n).collect::<Vec<u8>>())
}

/// SAM's S3 put event and the key it names.
fn sam_s3_put() -> (Value, String) {
    let s3 = fixture("sam/s3-put.json");
    let key = s3["Records"][0]["s3"]["object"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    (s3, key)
}

async fn put(store: &FsBlobStore, key: &str, body: Bytes) {
    store.put_bytes(key, body, None).await.unwrap();
}

async fn read(store: &FsBlobStore, key: &str) -> Option<Bytes> {
    match store.get(key, None).await.unwrap() {
        Some(b) => Some(b.collect().await.unwrap()),
        None => None,
    }
}

#[tokio::test]
async fn s3_fixture_copies_blobs_and_manifests_and_ignores_the_rest() {
    let b = buckets();
    let exp = expected();
    for e in exp.iter().filter(|e| e.kind != "other") {
        put(&b.primary, &e.key, body_of(e)).await;
    }
    let (metrics, lines) = Metrics::memory();
    let c = copier(&b, metrics);
    let event = serde_json::from_value(fixture("skyhost/s3-put-skyhost.json")).unwrap();
    let report = c.handle_s3(event).await.expect("copied");

    let want: BTreeSet<(String, String)> = exp
        .iter()
        .filter(|e| e.kind != "other")
        .flat_map(|e| ["ap-southeast-1", "eu-central-1"].map(|r| (e.key.clone(), r.to_owned())))
        .collect();
    let got: BTreeSet<(String, String)> = report
        .transfers
        .iter()
        .map(|t| (t.key.clone(), t.region.clone()))
        .collect();
    assert_eq!(got, want);
    assert!(report.transfers.iter().all(|t| t.method == Method::Stream));
    let ignored: Vec<&str> = report.ignored.iter().map(|i| i.key.as_str()).collect();
    let want_ignored: Vec<&str> = exp
        .iter()
        .filter(|e| e.kind == "other")
        .map(|e| e.event_key.as_str())
        .collect();
    assert_eq!(ignored, want_ignored);
    for e in exp.iter().filter(|e| e.kind != "other") {
        for replica in [&b.eu, &b.ap] {
            assert_eq!(read(replica, &e.key).await, Some(body_of(e)), "{}", e.key);
        }
    }
    // Foreign keys were not copied, even where the primary holds them.
    assert!(b
        .eu
        .list("sites/docs-site/uploads/")
        .await
        .unwrap()
        .is_empty());

    // Metrics per replica region: copies and bytes.
    let total: u64 = exp
        .iter()
        .filter(|e| e.kind != "other")
        .map(|e| body_of(e).len() as u64)
        .sum();
    let lines = lines.lock().unwrap().clone();
    for region in ["eu-central-1", "ap-southeast-1"] {
        let l = lines
            .iter()
            .find(|l| l["Region"] == region)
            .unwrap_or_else(|| panic!("no metrics for {region}: {lines:?}"));
        assert_eq!(l["Copies"], json!(5.0));
        assert_eq!(l["CopiedBytes"], json!(total as f64));
        assert_eq!(l["CopyFailures"], json!(0.0));
        assert_eq!(l["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Skyhost");
    }

    // The same objects delivered again through SQS: already there, nothing copied.
    let sqs = serde_json::from_value(fixture("skyhost/sqs-s3-put-skyhost.json")).unwrap();
    let again = c.handle_sqs(sqs).await.expect("idempotent");
    assert_eq!(again.transfers.len(), want.len());
    assert!(again.transfers.iter().all(|t| t.method == Method::Present));
    assert_eq!(again.bytes_copied(), 0);
}

#[tokio::test]
async fn the_entry_point_takes_either_shape_of_the_sam_fixtures() {
    let b = buckets();
    let (s3, key) = sam_s3_put();
    put(&b.primary, &key, Bytes::from_static(b"<h1>docs</h1>\n")).await;
    let c = copier(&b, Metrics::discard());

    let r = c.handle_json(s3).await.expect("direct S3 event");
    assert_eq!(r.copied().count(), 2);
    assert_eq!(
        read(&b.ap, &key).await.as_deref(),
        Some(&b"<h1>docs</h1>\n"[..])
    );
    let r = c
        .handle_json(fixture("sam/sqs-receive-message-s3.json"))
        .await
        .expect("S3 event inside SQS");
    assert_eq!(r.transfers.len(), 2);
    assert_eq!(r.copied().count(), 0);

    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent",
        "Time": "2026-01-03T10:10:42.000Z", "Bucket": PRIMARY_BUCKET});
    let r = c.handle_json(test_event).await.expect("test event");
    assert!(r.transfers.is_empty());
    let e = c
        .handle_json(json!({"detail-type": "Scheduled Event"}))
        .await;
    assert!(matches!(e, Err(CopyError::BadEvent(_))), "{e:?}");
}

#[tokio::test]
async fn a_missing_source_fails_the_invocation_after_copying_the_rest() {
    let b = buckets();
    let exp = expected();
    let big = exp
        .iter()
        .find(|e| e.size > 1 << 20)
        .expect("the fixture names a large blob");
    for e in exp.iter().filter(|e| e.kind != "other" && e.key != big.key) {
        put(&b.primary, &e.key, body_of(e)).await;
    }
    let c = copier(&b, Metrics::discard());
    let event: aws_lambda_events::event::s3::S3Event =
        serde_json::from_value(fixture("skyhost/s3-put-skyhost.json")).unwrap();
    let err = c.handle_s3(event.clone()).await.unwrap_err();
    let CopyError::Failed { failures, report } = &err else {
        panic!("{err}")
    };
    let failed: BTreeSet<(&str, Option<&str>)> = failures
        .iter()
        .map(|f| (f.key.as_str(), f.region.as_deref()))
        .collect();
    assert_eq!(
        failed,
        BTreeSet::from([
            (big.key.as_str(), Some("ap-southeast-1")),
            (big.key.as_str(), Some("eu-central-1")),
        ])
    );
    assert!(err.to_string().contains(&big.key), "{err}");
    assert_eq!(report.copied().count(), 8, "the other objects were copied");

    // Lambda's retry, once the object is there: only it is copied.
    put(&b.primary, &big.key, body_of(big)).await;
    let r = c.handle_s3(event).await.expect("retry");
    let copied: Vec<&str> = r.copied().map(|t| t.key.as_str()).collect();
    assert_eq!(copied, [big.key.as_str(), big.key.as_str()]);
}

#[tokio::test]
async fn an_sqs_body_that_is_not_an_s3_event_fails_the_invocation() {
    let b = buckets();
    let (s3, key) = sam_s3_put();
    put(&b.primary, &key, Bytes::from_static(b"x")).await;
    let sqs = serde_json::from_value(json!({"Records": [
        {"messageId": "good", "body": s3.to_string(), "eventSource": "aws:sqs"},
        {"messageId": "garbled", "body": "{\"Records\": [{\"s3\": 1}]}", "eventSource": "aws:sqs"}
    ]}))
    .unwrap();
    let err = copier(&b, Metrics::discard())
        .handle_sqs(sqs)
        .await
        .unwrap_err();
    let CopyError::Failed { failures, report } = &err else {
        panic!("{err}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].key, "garbled");
    assert_eq!(failures[0].region, None);
    assert_eq!(report.copied().count(), 2, "the good message was copied");
}
