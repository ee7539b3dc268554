//! The replicator's handler with a fake notifier: fixtures of events/, Lambda's partial
//! batch semantics, retries, deadlines, concurrency and metrics.

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event;
use serde_json::{json, Value};
use skyhost_meta::metrics::Metrics;
use skyhost_meta::notify::{Notification, Notifier, NotifyError};
use skyhost_replicator::record::{decide, Decision};
use skyhost_replicator::{plan, Replicator, RetryOptions};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Rule = dyn Fn(&str, &Notification, u32) -> Result<(), NotifyError> + Send + Sync;

/// Records every delivery attempt; `rule(base, notification, attempt)` decides its fate.
struct Fake {
    calls: Mutex<Vec<(String, Notification)>>,
    attempts: Mutex<HashMap<(String, String), u32>>,
    rule: Box<Rule>,
    delay: Duration,
}

impl Fake {
    fn new(
        rule: impl Fn(&str, &Notification, u32) -> Result<(), NotifyError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Fake {
            calls: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
            rule: Box::new(rule),
            delay: Duration::ZERO,
        })
    }

    fn slow(delay: Duration) -> Arc<Self> {
        Arc::new(Fake {
            calls: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
            rule: Box::new(|_, _, _| Ok(())),
            delay,
        })
    }

    fn calls(&self) -> Vec<(String, Notification)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Notifier for Fake {
    async fn notify(&self, base: &str, n: &Notification) -> Result<(), NotifyError> {
        tokio::time::sleep(self.delay).await;
        let attempt = {
            let mut a = self.attempts.lock().unwrap();
            let k = a
                .entry((base.to_owned(), format!("{}@{}", n.site, n.revision)))
                .or_default();
            *k += 1;
            *k
        };
        self.calls
            .lock()
            .unwrap()
            .push((base.to_owned(), n.clone()));
        (self.rule)(base, n, attempt)
    }
}

const EU: &str = "http://eu.test";
const AP: &str = "http://ap.test";

fn regions() -> Vec<(String, String)> {
    vec![
        ("eu-central-1".into(), EU.into()),
        ("ap-southeast-1".into(), AP.into()),
    ]
}

fn fast() -> RetryOptions {
    RetryOptions {
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        attempt_timeout: Duration::from_millis(300),
        reserve: Duration::from_millis(50),
    }
}

fn replicator(n: Arc<Fake>) -> Replicator {
    Replicator::new(regions(), n, fast()).with_metrics(Metrics::discard())
}

fn fixture(rel: &str) -> Event {
    skyhost_testkit::event_fixture(rel)
}

fn site_image(site: &str, rev: u64) -> Value {
    json!({
        "pk": {"S": format!("SITE#{site}")}, "sk": {"S": "SITE"}, "kind": {"S": "site"},
        "site": {"S": site}, "domains": {"L": []}, "revision": {"N": rev.to_string()},
        "suspended": {"BOOL": false}, "updated": {"N": "1767435072"}
    })
}

fn stream_record(seq: u64, name: &str, new: Option<Value>, old: Option<Value>) -> Value {
    let image = new.clone().or(old.clone()).unwrap();
    let mut d = json!({
        "ApproximateCreationDateTime": 1767435072,
        "Keys": {"pk": image["pk"], "sk": image["sk"]},
        "SequenceNumber": seq.to_string(),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    });
    if let Some(n) = new {
        d["NewImage"] = n;
    }
    if let Some(o) = old {
        d["OldImage"] = o;
    }
    json!({"eventID": seq.to_string(), "eventName": name, "eventSource": "aws:dynamodb",
           "awsRegion": "us-west-2", "dynamodb": d})
}

fn site_change(seq: u64, site: &str, rev: u64) -> Value {
    let old = (rev > 1).then(|| site_image(site, rev - 1));
    let name = if rev > 1 { "MODIFY" } else { "INSERT" };
    stream_record(seq, name, Some(site_image(site, rev)), old)
}

fn deployment_insert(seq: u64, site: &str) -> Value {
    let item = json!({
        "pk": {"S": format!("SITE#{site}")}, "sk": {"S": "DEPLOY#20260103T101112Z-4e5f6a7b"},
        "kind": {"S": "deployment"}, "site": {"S": site}
    });
    stream_record(seq, "INSERT", Some(item), None)
}

fn batch(records: Vec<Value>) -> Event {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn reported(resp: &aws_lambda_events::event::streams::DynamoDbEventResponse) -> Vec<String> {
    resp.batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

#[tokio::test]
async fn site_fixture_records_decode_to_notifications() {
    let ev = fixture("skyhost/dynamodb-stream-sites.json");
    let got: Vec<(u64, Option<Option<String>>)> = ev
        .records
        .iter()
        .map(|r| match decide(r) {
            Decision::Notify(n) => {
                assert_eq!(n.site.as_str(), "docs-site");
                assert_eq!(n.changed_ms, 1_767_435_072_000);
                (
                    n.revision,
                    n.record.map(|s| s.active.map(|a| a.to_string())),
                )
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (7, Some(Some("20260103T101112Z-4e5f6a7b".to_owned()))),
            (1, Some(None)),
            // A removal is announced one revision above the removed record (its
            // tombstone), so every region that holds revision 7 accepts it.
            (8, None),
        ]
    );
    // The batch carries one site: only its last change (the removal) is sent, to each region.
    let fake = Fake::new(|_, _, _| Ok(()));
    let resp = replicator(fake.clone()).handle(ev, soon(2000)).await;
    assert!(resp.batch_item_failures.is_empty());
    let mut calls = fake.calls();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].0, AP);
    assert_eq!(calls[1].0, EU);
    for (_, n) in calls {
        assert_eq!(
            (n.site.as_str(), n.revision, n.record.is_none()),
            ("docs-site", 8, true)
        );
    }
}

#[tokio::test]
async fn mixed_fixture_ignores_other_items() {
    let ev = fixture("skyhost/dynamodb-stream-mixed.json");
    let p = plan(&ev.records);
    let kinds: Vec<&str> = ev
        .records
        .iter()
        .map(|r| match decide(r) {
            Decision::Ignore => "ignore",
            Decision::Notify(_) => "notify",
            Decision::Undecodable(_) => "undecodable",
        })
        .collect();
    assert_eq!(
        kinds,
        ["ignore", "notify", "ignore", "ignore", "notify", "notify"]
    );
    assert_eq!(p.deliveries.len(), 1);
    assert_eq!(p.deliveries[0].0, 5);
    assert!(p.undecodable.is_empty());
}

#[tokio::test]
async fn raw_sam_fixture_has_no_site_records() {
    let fake = Fake::new(|_, _, _| Ok(()));
    let resp = replicator(fake.clone())
        .handle(fixture("sam/dynamodb-update.json"), soon(2000))
        .await;
    assert!(resp.batch_item_failures.is_empty());
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn the_first_failed_record_and_every_later_one_are_reported() {
    // Site b is refused by one region; a, the deployment record, and c are fine.
    let fake = Fake::new(|base, n, _| {
        if base == AP && n.site.as_str() == "b" {
            Err(NotifyError::Rejected {
                status: 503,
                body: "down".into(),
            })
        } else {
            Ok(())
        }
    });
    let ev = batch(vec![
        site_change(101, "a", 1),
        deployment_insert(102, "b"),
        site_change(103, "b", 4),
        site_change(104, "c", 1),
        deployment_insert(105, "c"),
    ]);
    let resp = replicator(fake.clone()).handle(ev, soon(400)).await;
    // Lambda resumes from the lowest reported sequence number: 103 and everything after.
    assert_eq!(reported(&resp), ["103", "104", "105"]);
    let wire = serde_json::to_value(&resp).unwrap();
    assert_eq!(
        wire["batchItemFailures"][0],
        json!({"itemIdentifier": "103"})
    );
    // b was retried against the failing region, and not against the healthy one.
    let b_ap = fake
        .calls()
        .iter()
        .filter(|(base, n)| base == AP && n.site.as_str() == "b")
        .count();
    let b_eu = fake
        .calls()
        .iter()
        .filter(|(base, n)| base == EU && n.site.as_str() == "b")
        .count();
    assert!(b_ap > 1, "retried {b_ap} times");
    assert_eq!(b_eu, 1);
}

#[tokio::test]
async fn reporting_follows_batch_order_not_completion_order() {
    // Every site fails somewhere except the first: the lowest failed index wins, even
    // when a later record's failure is known first.
    let fake = Fake::new(|base, n, _| match (base, n.site.as_str()) {
        (EU, "c") | (AP, "b") => Err(NotifyError::Rejected {
            status: 403,
            body: "bad signature".into(),
        }),
        _ => Ok(()),
    });
    let ev = batch(vec![
        site_change(1, "a", 2),
        site_change(2, "b", 2),
        site_change(3, "c", 2),
    ]);
    let resp = replicator(fake).handle(ev, soon(1000)).await;
    assert_eq!(reported(&resp), ["2", "3"]);
}

#[tokio::test]
async fn a_site_changed_twice_sends_only_its_last_change() {
    let fake = Fake::new(|_, _, _| Ok(()));
    let ev = batch(vec![
        site_change(1, "a", 2),
        site_change(2, "b", 5),
        site_change(3, "a", 3),
    ]);
    let resp = replicator(fake.clone()).handle(ev, soon(1000)).await;
    assert!(resp.batch_item_failures.is_empty());
    let mut got: Vec<(String, String, u64)> = fake
        .calls()
        .into_iter()
        .map(|(b, n)| (b, n.site.to_string(), n.revision))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (AP.into(), "a".into(), 3),
            (AP.into(), "b".into(), 5),
            (EU.into(), "a".into(), 3),
            (EU.into(), "b".into(), 5),
        ]
    );
}

#[tokio::test]
async fn a_failed_later_change_reports_from_that_change() {
    // a@2 (index 0) is superseded by a@3 (index 2); a@3 fails, so the report starts at
    // index 2: record 0 may be checkpointed, its state is in the retried record 2.
    let fake = Fake::new(|base, _, _| {
        if base == EU {
            Err(NotifyError::Transport("connection refused".into()))
        } else {
            Ok(())
        }
    });
    let ev = batch(vec![
        site_change(1, "a", 2),
        deployment_insert(2, "a"),
        site_change(3, "a", 3),
        deployment_insert(4, "a"),
    ]);
    let resp = replicator(fake).handle(ev, soon(300)).await;
    assert_eq!(reported(&resp), ["3", "4"]);
}

#[tokio::test]
async fn retryable_failures_are_retried_until_they_succeed() {
    // The first two attempts per region fail; the third succeeds.
    let fake = Fake::new(|_, _, attempt| {
        if attempt < 3 {
            Err(NotifyError::Rejected {
                status: 502,
                body: "bad gateway".into(),
            })
        } else {
            Ok(())
        }
    });
    let resp = replicator(fake.clone())
        .handle(batch(vec![site_change(1, "a", 2)]), soon(3000))
        .await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(fake.calls().len(), 6);
}

#[tokio::test]
async fn refused_notifications_are_not_retried() {
    let fake = Fake::new(|base, _, _| {
        if base == EU {
            Err(NotifyError::Rejected {
                status: 401,
                body: "signature does not match".into(),
            })
        } else {
            Ok(())
        }
    });
    let started = Instant::now();
    let resp = replicator(fake.clone())
        .handle(batch(vec![site_change(9, "a", 2)]), soon(5000))
        .await;
    assert_eq!(reported(&resp), ["9"]);
    let eu_calls = fake.calls().iter().filter(|(b, _)| b == EU).count();
    assert_eq!(eu_calls, 1);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn retries_end_before_the_deadline() {
    // A region that never answers: attempts time out, and the handler answers before the
    // invocation's deadline, keeping the reserve.
    let fake = Fake::slow(Duration::from_secs(60));
    let opts = RetryOptions {
        reserve: Duration::from_millis(200),
        attempt_timeout: Duration::from_millis(250),
        ..fast()
    };
    let r = Replicator::new(regions(), fake, opts).with_metrics(Metrics::discard());
    let deadline = soon(1000);
    let resp = r
        .handle(batch(vec![site_change(5, "a", 2)]), deadline)
        .await;
    let now = Instant::now();
    assert_eq!(reported(&resp), ["5"]);
    assert!(
        now <= deadline - Duration::from_millis(150),
        "answered too late"
    );
    assert!(
        now + Duration::from_millis(500) >= deadline,
        "gave up too early"
    );
}

#[tokio::test]
async fn regions_and_sites_are_notified_concurrently() {
    let fake = Fake::slow(Duration::from_millis(300));
    let ev = batch(vec![
        site_change(1, "a", 2),
        site_change(2, "b", 2),
        site_change(3, "c", 2),
    ]);
    let started = Instant::now();
    let resp = replicator(fake.clone()).handle(ev, soon(5000)).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(fake.calls().len(), 6);
    // Six deliveries of 300 ms each, all at once.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn undecodable_site_records_are_skipped_not_retried() {
    let broken = json!({
        "pk": {"S": "SITE#x"}, "sk": {"S": "SITE"}, "kind": {"S": "site"},
        "site": {"S": "Not Valid"}, "revision": {"N": "2"}
    });
    let fake = Fake::new(|_, _, _| Ok(()));
    let ev = batch(vec![
        stream_record(1, "MODIFY", Some(broken), None),
        site_change(2, "a", 2),
    ]);
    let (metrics, lines) = Metrics::memory();
    let r = Replicator::new(regions(), fake.clone(), fast()).with_metrics(metrics);
    let resp = r.handle(ev, soon(1000)).await;
    assert!(resp.batch_item_failures.is_empty());
    assert_eq!(fake.calls().len(), 2);
    let lines = lines.lock().unwrap();
    assert!(lines.iter().any(|l| l["UndecodableRecords"] == json!(1.0)));
}

#[tokio::test]
async fn latency_and_failures_are_emitted_per_region() {
    let fake = Fake::new(|base, _, _| {
        if base == AP {
            Err(NotifyError::Rejected {
                status: 400,
                body: "no".into(),
            })
        } else {
            Ok(())
        }
    });
    let (metrics, lines) = Metrics::memory();
    let r = Replicator::new(regions(), fake, fast()).with_metrics(metrics);
    let _ = r
        .handle(batch(vec![site_change(1, "a", 2)]), soon(1000))
        .await;
    let lines = lines.lock().unwrap();
    let eu = lines
        .iter()
        .find(|l| l["Region"] == "eu-central-1")
        .expect("a record for eu-central-1");
    assert_eq!(eu["Notifications"], json!(1.0));
    // The fixture change happened at 1767435072 s: the latency is the time since then.
    let latency = eu["NotificationLatency"].as_f64().unwrap();
    assert!(latency > 1_000.0, "{latency}");
    assert_eq!(eu["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Skyhost");
    let ap = lines
        .iter()
        .find(|l| l["Region"] == "ap-southeast-1")
        .expect("a record for ap-southeast-1");
    assert_eq!(ap["NotificationFailures"], json!(1.0));
}
