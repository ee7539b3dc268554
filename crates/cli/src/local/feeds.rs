//! The pollers of local mode, playing Lambda's event source mappings and the global
//! table's replication: the primary table's change feed fills each region's table replica
//! (as DynamoDB global tables do) and drives the replicator (as the DynamoDB stream does),
//! the primary bucket's event log drives the asset copier (as S3 notifications do). Each
//! region has its own poller of each kind with its own cursor, so a region that is down
//! or slow holds back no other: its work is retried on its own until it is back. Cursors
//! are kept on disk, so a restart neither loses nor repeats work; on a failure the batch is
//! retried from the first failed record, as Lambda does with ReportBatchItemFailures.

use super::drill::{RegionGate, RegionTable};
use aws_lambda_events::event::dynamodb::EventRecord;
use skyhost_asset_copier::Copier;
use skyhost_meta::blob::fs::FsBlobStore;
use skyhost_meta::store::item::Key;
use skyhost_meta::store::{ChangeFeed, Condition, MetaStore, Write};
use skyhost_replicator::Replicator;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often an idle feed is polled.
pub const POLL: Duration = Duration::from_millis(50);
/// Pause after a failed batch before it is retried.
const RETRY: Duration = Duration::from_millis(500);

/// A saved cursor (`None`: none saved yet).
pub fn load_cursor(p: &PathBuf) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Saves a cursor atomically.
pub fn save_cursor(p: &PathBuf, c: Option<&str>) {
    if let Some(c) = c {
        let tmp = p.with_extension("tmp");
        if std::fs::write(&tmp, c)
            .and_then(|_| std::fs::rename(&tmp, p))
            .is_err()
        {
            tracing::warn!(path = %p.display(), "could not save a feed cursor");
        }
    }
}

pub(crate) async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.changed() => true,
    }
}

/// The write that replays a change of the primary table on a replica: the new image, or
/// the removal. `None` for a record without keys. Pure.
pub fn replica_write(r: &EventRecord) -> Option<Write> {
    let key = skyhost_meta::store::item::key_of(&r.change.keys)?;
    let item = (r.event_name != "REMOVE").then(|| r.change.new_image.clone());
    Some(Write {
        key: Key {
            pk: key.pk,
            sk: key.sk,
        },
        item,
        // Only the primary writes: the replica takes every change in the feed's order.
        condition: Condition::None,
    })
}

/// Replays the primary table's changes on a region's replica until `stop` fires, as a
/// global table does; while either is unreachable it waits and retries from where it was.
pub async fn replicate_table(
    primary: RegionTable,
    replica: RegionTable,
    hold: RegionGate,
    cursor_path: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursor = load_cursor(&cursor_path);
    loop {
        match held(&hold, &mut stop).await {
            None => return,
            Some(true) => continue,
            Some(false) => {}
        }
        let batch = match primary.read(cursor.as_deref(), 100).await {
            Ok(b) if b.records.is_empty() => {
                if pause(&mut stop, POLL).await {
                    return;
                }
                continue;
            }
            Ok(b) => b,
            Err(_) => {
                if pause(&mut stop, RETRY).await {
                    return;
                }
                continue;
            }
        };
        let writes: Vec<Write> = batch.records.iter().filter_map(replica_write).collect();
        // One transaction per batch: the replica never shows half a batch.
        match replica.write(writes).await {
            Ok(()) => {
                cursor = batch.cursor;
                save_cursor(&cursor_path, cursor.as_deref());
            }
            Err(e) => {
                tracing::debug!(region = %replica.gate.region(), error = %e, "table replication waits");
                if pause(&mut stop, RETRY).await {
                    return;
                }
            }
        }
    }
}

/// The next batch of `feed` after `cursor` that holds records, as a stream event; read
/// failures and quiet spells are waited out. `None` once `stop` fires (or the batch cannot
/// be shaped as a stream event, which is a bug: the loop stops rather than skip records).
pub(crate) async fn next_event(
    feed: &dyn ChangeFeed,
    cursor: Option<&str>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(
    skyhost_meta::store::ChangeBatch,
    aws_lambda_events::event::dynamodb::Event,
)> {
    let mut failing = false;
    loop {
        let batch = match feed.read(cursor, 100).await {
            Ok(b) => b,
            Err(e) => {
                // Once per spell of failures (an outage drill lasts minutes), not per poll.
                if !failing {
                    tracing::error!(error = %e, "reading the change feed failed; retrying");
                    failing = true;
                }
                if pause(stop, RETRY).await {
                    return None;
                }
                continue;
            }
        };
        if batch.records.is_empty() {
            if pause(stop, POLL).await {
                return None;
            }
            continue;
        }
        match serde_json::from_value(serde_json::json!({ "Records": batch.records })) {
            Ok(event) => return Some((batch, event)),
            Err(e) => {
                tracing::error!(error = %e, "building a stream event failed");
                return None;
            }
        }
    }
}

/// While `hold`'s region is held (`skyhost local hold`), waits a poll and says so; `None`
/// once `stop` fires.
async fn held(hold: &RegionGate, stop: &mut watch::Receiver<bool>) -> Option<bool> {
    if !hold.is_out() {
        return Some(false);
    }
    if pause(stop, POLL).await {
        return None;
    }
    Some(true)
}

/// Feeds the change feed to the replicator (of one region) until `stop` fires; nothing is
/// delivered while `hold`'s region is held.
pub async fn replicate(
    store: RegionTable,
    replicator: Arc<Replicator>,
    hold: RegionGate,
    cursor_path: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursor = load_cursor(&cursor_path);
    loop {
        match held(&hold, &mut stop).await {
            None => return,
            Some(true) => continue,
            Some(false) => {}
        }
        let Some((batch, event)) = next_event(&store, cursor.as_deref(), &mut stop).await else {
            return;
        };
        let first_seq: Vec<Option<String>> = batch
            .records
            .iter()
            .map(|r| r.change.sequence_number.clone())
            .collect();
        let resp = replicator
            .handle(event, Instant::now() + Duration::from_secs(10))
            .await;
        let failed: Vec<u64> = resp
            .batch_item_failures
            .iter()
            .filter_map(|f| f.item_identifier.as_deref()?.parse().ok())
            .collect();
        match failed.iter().min() {
            None => {
                cursor = batch.cursor;
                save_cursor(&cursor_path, cursor.as_deref());
            }
            Some(&first) => {
                // Retry from the first failed record: everything before it is done.
                let before = first.saturating_sub(1);
                if first_seq
                    .iter()
                    .flatten()
                    .any(|s| s.parse::<u64>().ok() == Some(first))
                {
                    cursor = Some(before.to_string());
                    save_cursor(&cursor_path, cursor.as_deref());
                }
                if pause(&mut stop, RETRY).await {
                    return;
                }
            }
        }
    }
}

/// Feeds the primary bucket's events to the asset copier until `stop` fires.
pub async fn copy_assets(
    bucket: FsBlobStore,
    gate: RegionGate,
    copier: Arc<Copier>,
    cursor_path: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursor = load_cursor(&cursor_path);
    let mut waiting = None;
    loop {
        if gate.is_out() {
            // The primary bucket's notifications wait with it.
            if pause(&mut stop, RETRY).await {
                return;
            }
            continue;
        }
        let (records, next) = match bucket.events(cursor.as_deref(), 100).await {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "reading the bucket events failed");
                if pause(&mut stop, RETRY).await {
                    return;
                }
                continue;
            }
        };
        // An event may come before its object (the writer renames right after): only
        // the records whose object is there go on; see `super::heal::ready_records`.
        let ready = super::heal::ready_records(&bucket, records, &mut waiting).await;
        let next = if ready.blocked { ready.cursor } else { next };
        if ready.records.is_empty() {
            if next.is_some() && next != cursor {
                cursor = next;
                save_cursor(&cursor_path, cursor.as_deref());
            }
            if pause(&mut stop, POLL).await {
                return;
            }
            continue;
        }
        let records = ready.records;
        let event: aws_lambda_events::event::s3::S3Event =
            match serde_json::from_value(serde_json::json!({ "Records": records })) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "building an S3 event failed");
                    return;
                }
            };
        match copier.handle_s3(event).await {
            Ok(_) => {
                cursor = next;
                save_cursor(&cursor_path, cursor.as_deref());
            }
            Err(e) => {
                // The whole event is retried, as Lambda retries a failed invocation;
                // copies are idempotent.
                tracing::warn!(error = %e, "asset copy failed; retrying");
                if pause(&mut stop, RETRY).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhost_meta::store::item;
    use skyhost_meta::store::stream::{record, Change};
    use skyhost_meta::{Site, SiteId};

    fn rec(event: &str, new: Option<&item::Item>, old: Option<&item::Item>) -> EventRecord {
        let key = item::site_key(&SiteId::parse("blog").unwrap());
        record(&Change {
            sequence: "1",
            event_name: event,
            key: &key,
            new_image: new,
            old_image: old,
            created: 0.0,
            region: "us-west-2",
            stream_arn: "arn",
        })
        .unwrap()
    }

    #[test]
    fn replica_write_table() {
        let s1 = item::site_item(&Site::new(SiteId::parse("blog").unwrap(), 1));
        let s2 = item::site_item(&Site::new(SiteId::parse("blog").unwrap(), 1).next(2));
        let key = item::site_key(&SiteId::parse("blog").unwrap());
        let cases = [
            (rec("INSERT", Some(&s1), None), Some(s1.clone())),
            (rec("MODIFY", Some(&s2), Some(&s1)), Some(s2.clone())),
            (rec("REMOVE", None, Some(&s2)), None),
        ];
        for (r, want) in cases {
            let w = replica_write(&r).expect("a write");
            assert_eq!(w.key, key, "{}", r.event_name);
            assert_eq!(w.item, want, "{}", r.event_name);
            assert_eq!(w.condition, Condition::None);
        }
        let mut keyless = rec("INSERT", Some(&s1), None);
        keyless.change.keys = item::Item::default();
        assert!(replica_write(&keyless).is_none());
    }
}
