//! The pollers of local mode, playing Lambda's event source mappings: the metadata
//! change feed drives the replicator (as the DynamoDB stream does), the primary bucket's
//! event log drives the asset copier (as S3 notifications do). Cursors are kept on disk,
//! so a restart neither loses nor repeats work; on a failure the batch is retried from
//! the first failed record, as Lambda does with ReportBatchItemFailures.

use skyhost_asset_copier::Copier;
use skyhost_meta::blob::fs::FsBlobStore;
use skyhost_meta::store::sqlite::SqliteStore;
use skyhost_meta::store::ChangeFeed;
use skyhost_replicator::Replicator;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often an idle feed is polled.
pub const POLL: Duration = Duration::from_millis(50);
/// Pause after a failed batch before it is retried.
const RETRY: Duration = Duration::from_millis(500);

pub(crate) fn load_cursor(p: &PathBuf) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

pub(crate) fn save_cursor(p: &PathBuf, c: Option<&str>) {
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

/// Feeds the change feed to the replicator until `stop` fires.
pub async fn replicate(
    store: SqliteStore,
    replicator: Arc<Replicator>,
    cursor_path: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursor = load_cursor(&cursor_path);
    loop {
        let batch = match store.read(cursor.as_deref(), 100).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "reading the change feed failed");
                if pause(&mut stop, RETRY).await {
                    return;
                }
                continue;
            }
        };
        if batch.records.is_empty() {
            if pause(&mut stop, POLL).await {
                return;
            }
            continue;
        }
        let first_seq: Vec<Option<String>> = batch
            .records
            .iter()
            .map(|r| r.change.sequence_number.clone())
            .collect();
        let event: aws_lambda_events::event::dynamodb::Event =
            match serde_json::from_value(serde_json::json!({ "Records": batch.records })) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "building a stream event failed");
                    return;
                }
            };
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
    copier: Arc<Copier>,
    cursor_path: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursor = load_cursor(&cursor_path);
    let mut waiting = None;
    loop {
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
