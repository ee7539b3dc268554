//! Hostile and malformed S3 (and SQS-wrapped S3) events for the asset-copier, through
//! `Copier::handle_json` as the Lambda main calls it, over local mode's folder buckets.
//! Each case says whether the invocation fails and exactly which keys reach the replica
//! buckets; after every case no file exists outside the replicas' own key scheme, and no
//! canary planted beside the buckets was copied or read into a replica.

use bytes::Bytes;
use serde_json::{json, Value};
use skyhost_asset_copier::{Copier, CopyError, CopyOptions};
use skyhost_meta::blob::fs::FsBlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::metrics::Metrics;
use skyhost_meta::BlobHash;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

const PRIMARY: &str = "skyhost-111122223333-us-west-2";
const REPLICAS: [(&str, &str); 2] = [
    ("eu-central-1", "skyhost-111122223333-eu-central-1"),
    ("ap-southeast-1", "skyhost-111122223333-ap-southeast-1"),
];
const CANARY: &[u8] = b"CANARY-OUTSIDE-SITE-5e1f";
const MANIFEST: &str = "sites/shop/manifests/20260103T101112Z-4e5f6a7b.json";

fn hash() -> String {
    BlobHash::of(b"blob body").as_str().to_owned()
}

fn blob_key() -> String {
    format!("sites/shop/blobs/{}", hash())
}

struct Buckets {
    dir: tempfile::TempDir,
    primary: Arc<FsBlobStore>,
    replicas: Vec<(String, Arc<FsBlobStore>)>,
}

async fn buckets() -> Buckets {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let open = |b: &str, r: &str| Arc::new(FsBlobStore::open(dir.path(), b, r).expect("a bucket"));
    let primary = open(PRIMARY, "us-west-2");
    let replicas = REPLICAS
        .iter()
        .map(|(r, b)| ((*r).to_owned(), open(b, r)))
        .collect();
    for (key, body) in [
        (blob_key(), Bytes::from_static(b"blob body")),
        (format!("{}.br", blob_key()), Bytes::from_static(b"br body")),
        (MANIFEST.to_owned(), Bytes::from_static(b"{}")),
        (
            "sites/shop/uploads/x".to_owned(),
            Bytes::from_static(CANARY),
        ),
    ] {
        primary.put_bytes(&key, body, None).await.expect("a put");
    }
    for rel in [
        "canary.txt",
        &format!("{PRIMARY}/canary.txt"),
        &format!("{PRIMARY}/objects/canary.txt"),
    ] {
        std::fs::write(dir.path().join(rel), CANARY).expect("a canary");
    }
    Buckets {
        dir,
        primary,
        replicas,
    }
}

fn copier(b: &Buckets) -> Copier {
    Copier::new(
        b.primary.clone(),
        b.replicas
            .iter()
            .map(|(r, s)| (r.clone(), s.clone() as Arc<dyn BlobStore>))
            .collect(),
        CopyOptions::default(),
    )
    .with_metrics(Metrics::discard())
}

/// Every file under `dir`, relative, as text.
fn files(dir: &Path) -> BTreeSet<String> {
    walk(dir)
        .into_iter()
        .filter_map(|p| {
            p.strip_prefix(dir)
                .ok()
                .map(|r| r.to_string_lossy().into_owned())
        })
        .collect()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// SAM's S3 put record with `bucket`, `key` and `name` in place of its own.
fn s3_record(bucket: &str, key: &str, name: &str) -> Value {
    let event: Value = skyhost_testkit::event_fixture("sam/s3-put.json");
    let mut r = event["Records"][0].clone();
    r["eventName"] = json!(name);
    r["s3"]["bucket"]["name"] = json!(bucket);
    r["s3"]["bucket"]["arn"] = json!(format!("arn:aws:s3:::{bucket}"));
    r["s3"]["object"]["key"] = json!(key);
    r
}

fn created(key: &str) -> Value {
    s3_record(PRIMARY, key, "ObjectCreated:Put")
}

fn s3_event(records: Vec<Value>) -> Vec<u8> {
    json!({ "Records": records }).to_string().into_bytes()
}

fn sqs_event(bodies: Vec<String>) -> Vec<u8> {
    let records: Vec<Value> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            json!({"messageId": format!("m{i}"), "eventSource": "aws:sqs", "body": body,
                   "awsRegion": "us-west-2"})
        })
        .collect();
    json!({ "Records": records }).to_string().into_bytes()
}

/// How the invocation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ends {
    Ok,
    /// Not an event at all (`CopyError::BadEvent`).
    BadEvent,
    /// Some copy or message failed (`CopyError::Failed`): Lambda retries.
    Failed,
}

struct Case {
    name: &'static str,
    payload: Vec<u8>,
    ends: Ends,
    /// Keys found in each replica afterwards.
    copied: Vec<String>,
}

fn case(name: &'static str, payload: Vec<u8>, ends: Ends, copied: &[String]) -> Case {
    Case {
        name,
        payload,
        ends,
        copied: copied.to_vec(),
    }
}

fn cases() -> Vec<Case> {
    let blob = blob_key();
    let br = format!("{blob}.br");
    let h = hash();
    let none: &[String] = &[];
    let one = std::slice::from_ref(&blob);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let ignored =
        |name: &'static str, key: &str| case(name, s3_event(vec![created(key)]), Ends::Ok, none);
    vec![
        case("blob", s3_event(vec![created(&blob)]), Ends::Ok, one),
        case(
            "manifest",
            s3_event(vec![created(MANIFEST)]),
            Ends::Ok,
            &[MANIFEST.to_owned()],
        ),
        case(
            "variant",
            s3_event(vec![created(&br)]),
            Ends::Ok,
            std::slice::from_ref(&br),
        ),
        case(
            "encoded-slashes",
            s3_event(vec![created(&blob.replace('/', "%2F"))]),
            Ends::Ok,
            one,
        ),
        case(
            "same-key-1000-times",
            s3_event((0..1000).map(|_| created(&blob)).collect()),
            Ends::Ok,
            one,
        ),
        case(
            "absent-in-primary",
            s3_event(vec![created(&format!(
                "sites/shop/blobs/{}",
                BlobHash::of(b"nothing").as_str()
            ))]),
            Ends::Failed,
            none,
        ),
        case(
            "huge-announced-size",
            s3_event(vec![{
                let mut r = created(&blob);
                r["s3"]["object"]["size"] = json!(i64::MAX);
                r
            }]),
            Ends::Ok,
            one,
        ),
        ignored("traversal", "sites/shop/blobs/../../../canary.txt"),
        ignored(
            "traversal-encoded",
            "sites/shop/blobs/%2e%2e%2f%2e%2e%2f%2e%2e%2fcanary.txt",
        ),
        ignored("traversal-site", &format!("sites/../shop/blobs/{h}")),
        ignored(
            "traversal-to-other-bucket",
            &format!("../{}/objects/canary.txt", REPLICAS[0].1),
        ),
        ignored("absolute", "/etc/passwd"),
        ignored("absolute-encoded", "%2Fetc%2Fpasswd"),
        ignored("foreign-prefix", "sites/shop/uploads/x"),
        ignored("bucket-root-canary", "canary.txt"),
        ignored(
            "hash-upper",
            &format!("sites/shop/blobs/{}", h.to_uppercase()),
        ),
        ignored("hash-short", &format!("sites/shop/blobs/{}", &h[..10])),
        ignored("hash-suffix", &format!("sites/shop/blobs/{h}.exe")),
        ignored("manifest-bad-id", "sites/shop/manifests/../../x.json"),
        ignored("site-invalid", &format!("sites/Shop!/blobs/{h}")),
        ignored("nul", &format!("sites/shop/blobs/{h}%00")),
        ignored("bad-escape", "sites/shop/blobs/%zz"),
        ignored("not-utf8", "sites/shop/blobs/%ff%fe"),
        ignored("plus-as-space", &format!("sites/shop/blobs/{h}+")),
        ignored("empty-key", ""),
        ignored(
            "very-long-key",
            &format!("sites/shop/blobs/{}", "a".repeat(10_000)),
        ),
        case(
            "other-bucket",
            s3_event(vec![s3_record("someone-elses", &blob, "ObjectCreated:Put")]),
            Ends::Ok,
            none,
        ),
        case(
            "removed-event",
            s3_event(vec![s3_record(PRIMARY, &blob, "ObjectRemoved:Delete")]),
            Ends::Ok,
            none,
        ),
        case(
            "no-event-name",
            s3_event(vec![{
                let mut r = created(&blob);
                if let Some(o) = r.as_object_mut() {
                    o.remove("eventName");
                }
                r
            }]),
            Ends::Ok,
            none,
        ),
        case(
            "no-key",
            s3_event(vec![{
                let mut r = created(&blob);
                if let Some(o) = r["s3"]["object"].as_object_mut() {
                    o.remove("key");
                }
                r
            }]),
            Ends::Ok,
            none,
        ),
        case(
            "traversal-beside-valid",
            s3_event(vec![
                created("sites/shop/blobs/../../canary.txt"),
                created(&blob),
            ]),
            Ends::Ok,
            one,
        ),
        case("empty-records", s3_event(vec![]), Ends::Ok, none),
        case(
            "test-event",
            br#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#.to_vec(),
            Ends::Ok,
            none,
        ),
        case("not-an-object", b"[]".to_vec(), Ends::BadEvent, none),
        case("no-records", b"{}".to_vec(), Ends::BadEvent, none),
        case(
            "records-not-array",
            br#"{"Records": 5}"#.to_vec(),
            Ends::BadEvent,
            none,
        ),
        case(
            "other-source",
            br#"{"Records": [{"eventSource": "aws:evil"}]}"#.to_vec(),
            Ends::BadEvent,
            none,
        ),
        case(
            "record-wrong-shape",
            br#"{"Records": [{"eventSource": "aws:s3", "s3": 5}]}"#.to_vec(),
            Ends::BadEvent,
            none,
        ),
        case("deeply-nested", deep.into_bytes(), Ends::BadEvent, none),
        case(
            "sqs-valid",
            sqs_event(vec![
                String::from_utf8(s3_event(vec![created(&blob)])).unwrap_or_default()
            ]),
            Ends::Ok,
            one,
        ),
        case(
            "sqs-test-event",
            sqs_event(vec![r#"{"Event":"s3:TestEvent"}"#.into()]),
            Ends::Ok,
            none,
        ),
        case(
            "sqs-body-not-json",
            sqs_event(vec!["{nope".into()]),
            Ends::Failed,
            none,
        ),
        case(
            "sqs-body-not-s3",
            sqs_event(vec![r#"{"Records": "x"}"#.into()]),
            Ends::Failed,
            none,
        ),
        case(
            "sqs-traversal",
            sqs_event(vec![String::from_utf8(s3_event(vec![created(
                "sites/shop/blobs/../../../canary.txt",
            )]))
            .unwrap_or_default()]),
            Ends::Ok,
            none,
        ),
        case(
            "sqs-bad-beside-valid",
            sqs_event(vec![
                "{nope".into(),
                String::from_utf8(s3_event(vec![created(&blob)])).unwrap_or_default(),
            ]),
            Ends::Failed,
            one,
        ),
        case(
            "sqs-no-body",
            br#"{"Records": [{"messageId": "m", "eventSource": "aws:sqs"}]}"#.to_vec(),
            Ends::Failed,
            none,
        ),
    ]
}

#[tokio::test]
async fn hostile_s3_events() {
    let all = cases();
    let total = all.len();
    let mut failed = Vec::new();
    for c in all {
        let b = buckets().await;
        let before = files(b.dir.path());
        let payload = serde_json::from_slice::<Value>(&c.payload);
        let ends = match payload {
            // Lambda's runtime refuses what is not JSON before the handler.
            Err(_) => Ends::BadEvent,
            Ok(v) => {
                let run = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                    copier(&b).handle_json(v),
                ))
                .await;
                match run {
                    Err(_) => {
                        failed.push(format!("  {}: the handler panicked", c.name));
                        continue;
                    }
                    Ok(Ok(_)) => Ends::Ok,
                    Ok(Err(CopyError::BadEvent(_))) => Ends::BadEvent,
                    Ok(Err(CopyError::Failed { .. })) => Ends::Failed,
                }
            }
        };
        if ends != c.ends {
            failed.push(format!(
                "  {}: ended {ends:?}, expected {:?}",
                c.name, c.ends
            ));
        }
        let want: BTreeSet<String> = c.copied.iter().cloned().collect();
        for (region, store) in &b.replicas {
            let got: BTreeSet<String> = store
                .list("")
                .await
                .map(|l| l.into_iter().map(|o| o.key).collect())
                .unwrap_or_default();
            if got != want {
                failed.push(format!(
                    "  {}: {region} holds {got:?}, expected {want:?}",
                    c.name
                ));
            }
        }
        // Nothing appeared outside the replicas' objects (temporary files are gone too).
        let replica_roots: Vec<String> = REPLICAS.iter().map(|(_, b)| format!("{b}/")).collect();
        for f in files(b.dir.path()).difference(&before) {
            let in_replica = replica_roots
                .iter()
                .any(|r| f.starts_with(&format!("{r}objects/sites/")))
                || f.ends_with("events.log");
            if !in_replica {
                failed.push(format!(
                    "  {}: wrote {f} outside a replica's key scheme",
                    c.name
                ));
            }
            if std::fs::read(b.dir.path().join(f)).is_ok_and(|body| body == CANARY) {
                failed.push(format!("  {}: copied a canary to {f}", c.name));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} S3-event cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
