//! Which objects an invocation names: S3 event records, delivered directly or inside SQS
//! message bodies, decoded into the keys to copy — a pure decision.

use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
use aws_lambda_events::event::sqs::SqsEvent;
use serde::Serialize;
use skyhost_meta::blob::event::decode_key;
use skyhost_meta::keys;

/// An event record that names nothing to copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ignored {
    /// The key as the event carried it (still encoded).
    pub key: String,
    /// Why it is not copied.
    pub reason: String,
}

/// The objects named by a list of records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objects {
    /// Decoded keys to copy, each once, in the order first named.
    pub keys: Vec<String>,
    /// Records skipped, and why.
    pub ignored: Vec<Ignored>,
}

/// The keys to copy among `records` of ObjectCreated events of `bucket`: keys decoded as
/// S3 encodes them (`+` for space, then percent-encoding), and only blob and manifest keys
/// of the key scheme; anything else is listed as ignored.
pub fn objects(records: &[S3EventRecord], bucket: &str) -> Objects {
    let mut out = Objects::default();
    for r in records {
        let raw = r.s3.object.key.clone().unwrap_or_default();
        let ignore = |reason: String| Ignored {
            key: raw.clone(),
            reason,
        };
        let name = r.event_name.as_deref().unwrap_or_default();
        if !name.starts_with("ObjectCreated:") {
            out.ignored
                .push(ignore(format!("event {name:?} is not ObjectCreated")));
            continue;
        }
        match r.s3.bucket.name.as_deref() {
            Some(b) if b == bucket => {}
            other => {
                out.ignored.push(ignore(format!(
                    "event of bucket {:?}, not of the primary bucket {bucket:?}",
                    other.unwrap_or_default()
                )));
                continue;
            }
        }
        let key = match decode_key(&raw) {
            Ok(k) => k,
            Err(e) => {
                out.ignored
                    .push(ignore(format!("key does not decode: {e}")));
                continue;
            }
        };
        if keys::parse(&key).is_none() {
            out.ignored.push(ignore(format!(
                "{key:?} is neither a blob nor a manifest key"
            )));
            continue;
        }
        if !out.keys.contains(&key) {
            out.keys.push(key);
        }
    }
    out
}

/// An SQS message body that is not an S3 event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    /// The message id.
    pub id: String,
    /// What is wrong with its body.
    pub reason: String,
}

/// The S3 records inside the bodies of an SQS batch. S3's `s3:TestEvent` message (sent
/// when a notification is configured) names no object and yields no records.
pub fn sqs_records(event: &SqsEvent) -> (Vec<S3EventRecord>, Vec<BadMessage>) {
    let mut records = Vec::new();
    let mut bad = Vec::new();
    for m in &event.records {
        let id = m.message_id.clone().unwrap_or_default();
        let Some(body) = m.body.as_deref() else {
            bad.push(BadMessage {
                id,
                reason: "message without a body".into(),
            });
            continue;
        };
        match parse_body(body) {
            Ok(Some(e)) => records.extend(e.records),
            Ok(None) => {}
            Err(reason) => bad.push(BadMessage { id, reason }),
        }
    }
    (records, bad)
}

fn parse_body(body: &str) -> Result<Option<S3Event>, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
    if is_test_event(&v) {
        return Ok(None);
    }
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| format!("body is not an S3 event: {e}"))
}

fn is_test_event(v: &serde_json::Value) -> bool {
    v.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent")
}

/// What a Lambda invocation payload is.
#[derive(Debug)]
pub enum Invocation {
    /// S3 event records, delivered directly.
    S3(S3Event),
    /// SQS messages whose bodies are S3 events.
    Sqs(SqsEvent),
    /// S3's test message: nothing to do.
    Test,
}

/// The `eventSource` of a payload's first record, if it has records.
pub fn records_source(v: &serde_json::Value) -> Option<&str> {
    v.get("Records")?
        .as_array()?
        .first()?
        .get("eventSource")?
        .as_str()
}

/// Recognises a payload by its records' `eventSource` (`aws:s3` or `aws:sqs`).
pub fn invocation(v: serde_json::Value) -> Result<Invocation, String> {
    if is_test_event(&v) {
        return Ok(Invocation::Test);
    }
    let Some(records) = v.get("Records").and_then(|r| r.as_array()) else {
        return Err("no Records array".into());
    };
    let source = records
        .first()
        .and_then(|r| r.get("eventSource"))
        .and_then(|s| s.as_str())
        .unwrap_or("aws:s3");
    match source {
        "aws:sqs" => serde_json::from_value(v)
            .map(Invocation::Sqs)
            .map_err(|e| format!("SQS event: {e}")),
        "aws:s3" => serde_json::from_value(v)
            .map(Invocation::S3)
            .map_err(|e| format!("S3 event: {e}")),
        other => Err(format!("records of {other:?}, not aws:s3 or aws:sqs")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhost_meta::blob::event::{created_record, Created};

    const HASH: &str = "2563965beb3c04c46be627f05446abd1c71d79d4e2169932f78288547c32c5bb";

    fn rec(bucket: &str, key: &str, name: &str) -> S3EventRecord {
        let mut r = created_record(&Created {
            region: "us-west-2",
            bucket,
            key,
            size: 1,
            sequencer: "01",
            time: 1_767_435_072,
        })
        .unwrap();
        r.event_name = Some(name.to_owned());
        r
    }

    #[test]
    fn keys_to_copy() {
        let blob = format!("sites/blog/blobs/{HASH}");
        let br = format!("{blob}.br");
        let manifest = "sites/blog/manifests/20260103T101112Z-4e5f6a7b.json".to_owned();
        // (record, copied key or None when ignored)
        let cases: Vec<(S3EventRecord, Option<&str>)> = vec![
            (rec("p", &blob, "ObjectCreated:Put"), Some(&blob)),
            (
                rec("p", &br, "ObjectCreated:CompleteMultipartUpload"),
                Some(&br),
            ),
            (rec("p", &manifest, "ObjectCreated:Copy"), Some(&manifest)),
            (rec("p", &blob, "ObjectRemoved:Delete"), None),
            (rec("other", &blob, "ObjectCreated:Put"), None),
            (
                rec("p", "sites/blog/uploads/a b.pdf", "ObjectCreated:Put"),
                None,
            ),
            (rec("p", &format!("{blob}+1"), "ObjectCreated:Put"), None),
            (
                rec("p", "sites/Blog Site/blobs/x", "ObjectCreated:Put"),
                None,
            ),
        ];
        for (i, (r, want)) in cases.into_iter().enumerate() {
            let got = objects(&[r], "p");
            match want {
                Some(k) => assert_eq!(got.keys, vec![k.to_owned()], "case {i}"),
                None => {
                    assert!(got.keys.is_empty(), "case {i}: {got:?}");
                    assert_eq!(got.ignored.len(), 1, "case {i}");
                }
            }
        }
        // A key named twice is copied once; an undecodable key is ignored.
        let mut bad = rec("p", &blob, "ObjectCreated:Put");
        bad.s3.object.key = Some("sites/%FF".into());
        let got = objects(
            &[
                rec("p", &blob, "ObjectCreated:Put"),
                bad,
                rec("p", &blob, "ObjectCreated:Put"),
            ],
            "p",
        );
        assert_eq!(got.keys, vec![blob]);
        assert_eq!(got.ignored.len(), 1);
        assert!(
            got.ignored[0].reason.contains("decode"),
            "{:?}",
            got.ignored
        );
    }

    #[test]
    fn payload_shapes() {
        let s3 = serde_json::json!({"Records": [serde_json::to_value(rec("p", "k", "ObjectCreated:Put")).unwrap()]});
        let sqs = serde_json::json!({"Records": [{
            "messageId": "m1", "body": s3.to_string(), "eventSource": "aws:sqs",
            "attributes": {}, "messageAttributes": {}
        }]});
        let test =
            serde_json::json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "p"});
        assert!(matches!(invocation(s3.clone()), Ok(Invocation::S3(e)) if e.records.len() == 1));
        let Ok(Invocation::Sqs(q)) = invocation(sqs) else {
            panic!("SQS payload not recognised")
        };
        let (records, bad) = sqs_records(&q);
        assert_eq!(records.len(), 1);
        assert!(bad.is_empty());
        assert!(matches!(invocation(test.clone()), Ok(Invocation::Test)));
        assert!(invocation(serde_json::json!({"hello": 1})).is_err());
        assert!(
            invocation(serde_json::json!({"Records": [{"eventSource": "aws:kinesis"}]})).is_err()
        );

        // Bodies: an S3 event, S3's test message, and two that are not S3 events.
        let q: SqsEvent = serde_json::from_value(serde_json::json!({"Records": [
            {"messageId": "a", "body": s3.to_string()},
            {"messageId": "b", "body": test.to_string()},
            {"messageId": "c", "body": "not json"},
            {"messageId": "d", "body": "{\"Records\": 3}"}
        ]}))
        .unwrap();
        let (records, bad) = sqs_records(&q);
        assert_eq!(records.len(), 1);
        let ids: Vec<&str> = bad.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["c", "d"]);
    }
}
