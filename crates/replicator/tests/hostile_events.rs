//! Hostile and malformed DynamoDB stream events for the replicator: each case is raw JSON
//! as Lambda would hand it over, and says whether it deserializes at all, which sites are
//! notified (to every region) and which sequence numbers are reported for a retry. No
//! case may panic, notify a record that does not decode, or send more than one
//! notification per site and region.

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event;
use serde_json::{json, Value};
use skyhost_meta::metrics::Metrics;
use skyhost_meta::notify::{Notification, Notifier, NotifyError};
use skyhost_replicator::{Replicator, RetryOptions};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records deliveries; refuses (for good: no retry) any site named `refused`.
#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<(String, Notification)>>,
}

#[async_trait]
impl Notifier for Fake {
    async fn notify(&self, base: &str, n: &Notification) -> Result<(), NotifyError> {
        self.calls
            .lock()
            .map_err(|_| NotifyError::Transport("poisoned".into()))?
            .push((base.to_owned(), n.clone()));
        if n.site.as_str() == "refused" {
            return Err(NotifyError::Rejected {
                status: 400,
                body: "refused".into(),
            });
        }
        Ok(())
    }
}

const REGIONS: [&str; 2] = ["http://eu.test", "http://ap.test"];

fn replicator(fake: Arc<Fake>) -> Replicator {
    Replicator::new(
        REGIONS
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("region-{i}"), (*b).to_owned()))
            .collect(),
        fake,
        RetryOptions {
            first_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(10),
            attempt_timeout: Duration::from_millis(100),
            reserve: Duration::from_millis(10),
        },
    )
    .with_metrics(Metrics::discard())
}

fn site_image(site: &str, rev: &str) -> Value {
    json!({
        "pk": {"S": format!("SITE#{site}")}, "sk": {"S": "SITE"}, "kind": {"S": "site"},
        "site": {"S": site}, "domains": {"L": []}, "revision": {"N": rev},
        "suspended": {"BOOL": false}, "updated": {"N": "1767435072"}
    })
}

fn record(seq: &str, name: &str, new: Option<Value>, old: Option<Value>) -> Value {
    let mut d = json!({
        "ApproximateCreationDateTime": 1767435072,
        "Keys": {"pk": {"S": "SITE#x"}, "sk": {"S": "SITE"}},
        "SequenceNumber": seq,
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    });
    if let Some(n) = new {
        d["NewImage"] = n;
    }
    if let Some(o) = old {
        d["OldImage"] = o;
    }
    json!({"eventID": seq, "eventName": name, "eventSource": "aws:dynamodb",
           "awsRegion": "us-west-2", "dynamodb": d})
}

fn with(image: Value, key: &str, value: Value) -> Value {
    let mut i = image;
    i[key] = value;
    i
}

fn without(image: Value, key: &str) -> Value {
    let mut i = image;
    if let Some(m) = i.as_object_mut() {
        m.remove(key);
    }
    i
}

fn batch(records: Vec<Value>) -> String {
    json!({ "Records": records }).to_string()
}

/// What must happen.
enum Want {
    /// The payload is not a stream event (the invocation fails before the handler).
    Refused,
    /// Handled: these sites notified (each to every region), these sequence numbers
    /// reported.
    Handled {
        notified: &'static [&'static str],
        reported: &'static [&'static str],
    },
}

struct Case {
    name: &'static str,
    payload: Vec<u8>,
    want: Want,
}

fn handled(
    name: &'static str,
    payload: String,
    notified: &'static [&'static str],
    reported: &'static [&'static str],
) -> Case {
    Case {
        name,
        payload: payload.into_bytes(),
        want: Want::Handled { notified, reported },
    }
}

fn refused(name: &'static str, payload: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        payload: payload.into(),
        want: Want::Refused,
    }
}

fn cases() -> Vec<Case> {
    let good = || site_image("good", "3");
    let insert = |seq: &str, image: Value| record(seq, "INSERT", Some(image), None);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let many_same: Vec<Value> = (0..1000)
        .map(|i| {
            insert(
                &format!("{}", 1000 + i),
                site_image("same", &format!("{}", i + 1)),
            )
        })
        .collect();
    let many_bad: Vec<Value> = (0..1000)
        .map(|i| insert(&format!("{}", 5000 + i), site_image("bad", "not-a-number")))
        .collect();
    let domains: Vec<Value> = (0..5000)
        .map(|i| json!({"S": format!("d{i}.example")}))
        .collect();
    vec![
        refused("not-json", b"{not json".to_vec()),
        refused("not-utf8", b"{\"Records\": [\"\xff\xfe\"]}".to_vec()),
        refused("null", "null"),
        refused("array", "[]"),
        refused("records-not-array", r#"{"Records": "x"}"#),
        refused("records-null-entry", r#"{"Records": [null]}"#),
        refused("deeply-nested", deep.into_bytes()),
        refused("nested-in-image", {
            let marker = batch(vec![insert("1", with(good(), "x", json!("NESTED")))]);
            let nested = format!(
                "{}{{\"S\":\"x\"}}{}",
                "{\"M\":{\"a\":".repeat(200),
                "}}".repeat(200)
            );
            marker.replace("\"NESTED\"", &nested)
        }),
        refused(
            "attribute-unknown-type",
            batch(vec![insert(
                "1",
                with(good(), "updated", json!({"ZZ": "1"})),
            )]),
        ),
        handled("empty-batch", batch(vec![]), &[], &[]),
        handled("valid", batch(vec![insert("1", good())]), &["good"], &[]),
        handled(
            "no-images",
            batch(vec![record("1", "MODIFY", None, None)]),
            &[],
            &[],
        ),
        handled(
            "empty-images",
            batch(vec![record(
                "1",
                "MODIFY",
                Some(json!({})),
                Some(json!({})),
            )]),
            &[],
            &[],
        ),
        handled(
            "other-kind",
            batch(vec![insert(
                "1",
                with(good(), "kind", json!({"S": "deployment"})),
            )]),
            &[],
            &[],
        ),
        handled(
            "kind-wrong-type",
            batch(vec![insert("1", with(good(), "kind", json!({"N": "1"})))]),
            &[],
            &[],
        ),
        handled(
            "revision-not-number",
            batch(vec![insert("1", site_image("a", "abc"))]),
            &[],
            &[],
        ),
        handled(
            "revision-negative",
            batch(vec![insert("1", site_image("a", "-1"))]),
            &[],
            &[],
        ),
        handled(
            "revision-fraction",
            batch(vec![insert("1", site_image("a", "1.5"))]),
            &[],
            &[],
        ),
        handled(
            "revision-overflow",
            batch(vec![insert(
                "1",
                site_image("a", "99999999999999999999999"),
            )]),
            &[],
            &[],
        ),
        handled(
            "revision-exponent",
            batch(vec![insert("1", site_image("a", "1e400"))]),
            &[],
            &[],
        ),
        handled(
            "revision-as-string",
            batch(vec![insert(
                "1",
                with(good(), "revision", json!({"S": "3"})),
            )]),
            &[],
            &[],
        ),
        handled(
            "revision-missing",
            batch(vec![insert("1", without(good(), "revision"))]),
            &[],
            &[],
        ),
        handled(
            "site-traversal",
            batch(vec![insert("1", site_image("../../etc", "1"))]),
            &[],
            &[],
        ),
        handled(
            "site-upper",
            batch(vec![insert("1", site_image("GOOD", "1"))]),
            &[],
            &[],
        ),
        handled(
            "site-empty",
            batch(vec![insert("1", site_image("", "1"))]),
            &[],
            &[],
        ),
        handled(
            "site-huge",
            batch(vec![insert("1", site_image(&"a".repeat(10_000), "1"))]),
            &[],
            &[],
        ),
        handled(
            "site-missing",
            batch(vec![insert("1", without(good(), "site"))]),
            &[],
            &[],
        ),
        handled(
            "domain-invalid",
            batch(vec![insert(
                "1",
                with(good(), "domains", json!({"L": [{"S": "evil domain/.."}]})),
            )]),
            &[],
            &[],
        ),
        handled(
            "domains-not-list",
            batch(vec![insert(
                "1",
                with(good(), "domains", json!({"S": "x"})),
            )]),
            &[],
            &[],
        ),
        handled(
            "active-invalid",
            batch(vec![insert(
                "1",
                with(good(), "active", json!({"S": "../x"})),
            )]),
            &[],
            &[],
        ),
        handled(
            "remove-without-old",
            batch(vec![record("1", "REMOVE", Some(good()), None)]),
            &[],
            &[],
        ),
        handled(
            "modify-new-not-site",
            batch(vec![record(
                "1",
                "MODIFY",
                Some(json!({"kind": {"S": "x"}})),
                Some(good()),
            )]),
            &[],
            &[],
        ),
        handled(
            "remove",
            batch(vec![record("1", "REMOVE", None, Some(good()))]),
            &["good"],
            &[],
        ),
        handled(
            "many-domains",
            batch(vec![insert(
                "1",
                with(good(), "domains", json!({"L": domains})),
            )]),
            &["good"],
            &[],
        ),
        handled(
            "extra-attributes",
            batch(vec![insert(
                "1",
                with(good(), "evil", json!({"S": "<script>"})),
            )]),
            &["good"],
            &[],
        ),
        handled(
            "far-future-time",
            batch(vec![{
                let mut r = insert("1", good());
                r["dynamodb"]["ApproximateCreationDateTime"] = json!(9_999_999_999i64);
                r
            }]),
            &["good"],
            &[],
        ),
        handled(
            "bad-among-good",
            batch(vec![
                insert("1", site_image("a", "1")),
                insert("2", site_image("b", "nope")),
                insert("3", site_image("c", "1")),
            ]),
            &["a", "c"],
            &[],
        ),
        handled(
            "thousand-changes-one-site",
            batch(many_same),
            &["same"],
            &[],
        ),
        handled("thousand-undecodable", batch(many_bad), &[], &[]),
        handled(
            "refused-reported-from-there",
            batch(vec![
                insert("1", site_image("a", "1")),
                insert("2", site_image("refused", "1")),
                insert("3", site_image("c", "1")),
            ]),
            &["a", "refused", "c"],
            &["2", "3"],
        ),
        handled(
            "refused-without-sequence",
            batch(vec![{
                let mut r = insert("1", site_image("refused", "1"));
                if let Some(d) = r["dynamodb"].as_object_mut() {
                    d.remove("SequenceNumber");
                }
                r
            }]),
            &["refused"],
            &[""],
        ),
    ]
}

#[tokio::test]
async fn hostile_stream_events() {
    let all = cases();
    let total = all.len();
    let mut failed = Vec::new();
    for c in all {
        let parsed = serde_json::from_slice::<Event>(&c.payload);
        match (&c.want, parsed) {
            (Want::Refused, Err(_)) => {}
            (Want::Refused, Ok(_)) => {
                failed.push(format!("  {}: deserialized, expected refused", c.name))
            }
            (Want::Handled { .. }, Err(e)) => {
                failed.push(format!("  {}: does not deserialize: {e}", c.name))
            }
            (Want::Handled { notified, reported }, Ok(event)) => {
                let fake = Arc::new(Fake::default());
                let r = replicator(fake.clone());
                let run = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                    r.handle(event, Instant::now() + Duration::from_secs(5)),
                ))
                .await;
                let Ok(resp) = run else {
                    failed.push(format!("  {}: the handler panicked", c.name));
                    continue;
                };
                let calls = fake.calls.lock().map(|c| c.clone()).unwrap_or_default();
                let sites: BTreeSet<String> =
                    calls.iter().map(|(_, n)| n.site.to_string()).collect();
                let want_sites: BTreeSet<String> =
                    notified.iter().map(|s| (*s).to_owned()).collect();
                if sites != want_sites {
                    failed.push(format!(
                        "  {}: notified {sites:?}, expected {want_sites:?}",
                        c.name
                    ));
                }
                if calls.len() > notified.len() * REGIONS.len() && !notified.contains(&"refused") {
                    failed.push(format!(
                        "  {}: {} deliveries for {} sites",
                        c.name,
                        calls.len(),
                        notified.len()
                    ));
                }
                let got: Vec<String> = resp
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.clone().unwrap_or_default())
                    .collect();
                let want: Vec<String> = reported.iter().map(|s| (*s).to_owned()).collect();
                if got != want {
                    failed.push(format!("  {}: reported {got:?}, expected {want:?}", c.name));
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} stream-event cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
