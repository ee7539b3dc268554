//! Self-healing in local mode, with the asset copier's code as on AWS: the activation
//! check fed by the metadata change feed (as the sites table's stream feeds the Lambda),
//! a full sweep at start and then periodically, the removal of dead writers' temp files,
//! and the bucket feed's patience with an event whose object is not there yet.

use super::feeds::{load_cursor, next_event, pause, save_cursor};
use aws_lambda_events::event::s3::S3EventRecord;
use skyhost_asset_copier::sweep::Scope;
use skyhost_asset_copier::Copier;
use skyhost_meta::blob::event::decode_key;
use skyhost_meta::blob::fs::{pending, FsBlobStore, Pending};
use skyhost_meta::blob::BlobStore;
use skyhost_meta::store::sqlite::SqliteStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Pause after a failed activation check before it is retried.
const RETRY: Duration = Duration::from_millis(500);
/// Attempts of one batch of activations before it is left to the sweep.
const ATTEMPTS: u32 = 20;
/// How often dead writers' temp files are looked for.
const CLEAN_EVERY: Duration = Duration::from_secs(60);
/// How often every site is swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Checks every activation of the change feed until `stop` fires: the keys a deployment
/// adds over the one live before it, in every region, copied where missing.
pub async fn check_activations(
    store: SqliteStore,
    copier: Arc<Copier>,
    cursor_path: PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursor = load_cursor(&cursor_path);
    let mut attempts = 0u32;
    loop {
        let Some((batch, event)) = next_event(&store, cursor.as_deref(), &mut stop).await else {
            return;
        };
        match copier.handle_activations(event).await {
            Ok(_) => attempts = 0,
            Err(e) => {
                attempts += 1;
                if attempts < ATTEMPTS {
                    tracing::warn!(error = %e, attempts, "activation check failed; retrying");
                    if pause(&mut stop, RETRY).await {
                        return;
                    }
                    continue;
                }
                tracing::error!(error = %e, "activation check given up; the periodic sweep and `skyhost verify` will find the gap");
                attempts = 0;
            }
        }
        cursor = batch.cursor;
        save_cursor(&cursor_path, cursor.as_deref());
    }
}

/// Removes dead writers' temp files from every bucket, and sweeps every site (at start,
/// then every [`SWEEP_EVERY`]), until `stop` fires.
pub async fn upkeep(
    buckets: Vec<FsBlobStore>,
    copier: Arc<Copier>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_sweep: Option<Instant> = None;
    loop {
        for b in &buckets {
            if let Err(e) = b.remove_stale_temp() {
                tracing::warn!(bucket = b.bucket(), error = %e, "removing stale temp files failed");
            }
        }
        if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0);
            match copier.sweep(Scope::Full, now).await {
                Ok(r) if r.repaired > 0 || r.unrepaired > 0 => {
                    tracing::warn!(
                        repaired = r.repaired,
                        unrepaired = r.unrepaired,
                        "sweep repaired regions"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
            last_sweep = Some(Instant::now());
        }
        if pause(&mut stop, CLEAN_EVERY).await {
            return;
        }
    }
}

/// The records of a bucket feed batch that can be handed to the copier now.
pub struct Ready {
    /// Records whose object is there.
    pub records: Vec<S3EventRecord>,
    /// The cursor after the last record taken or dropped; `None`: none was.
    pub cursor: Option<String>,
    /// Whether a record waits for its object: the batch stops before it.
    pub blocked: bool,
}

/// The cursor after a record of the embedded bucket's feed (its sequencer is the byte
/// offset of the line's end, in hex).
fn cursor_after(r: &S3EventRecord) -> Option<String> {
    let seq = r.s3.object.sequencer.as_deref()?;
    u64::from_str_radix(seq, 16).ok().map(|o| o.to_string())
}

/// Takes the records of a batch in order while their objects are there. An event whose
/// object is missing is waited for (`waiting` remembers since when), then dropped after
/// the grace period: its writer died between the event and the rename.
pub async fn ready_records(
    bucket: &FsBlobStore,
    records: Vec<S3EventRecord>,
    waiting: &mut Option<(String, Instant)>,
) -> Ready {
    let mut out = Ready {
        records: Vec::new(),
        cursor: None,
        blocked: false,
    };
    for r in records {
        let raw = r.s3.object.key.clone().unwrap_or_default();
        // Keys that do not decode or cannot be read go on: the copier reports them.
        let exists = match decode_key(&raw) {
            Ok(k) => bucket.head(&k).await.map(|m| m.is_some()).unwrap_or(true),
            Err(_) => true,
        };
        let seq = r.s3.object.sequencer.clone().unwrap_or_default();
        let waited = match waiting {
            Some((s, since)) if *s == seq => since.elapsed(),
            _ if exists => Duration::ZERO,
            _ => {
                *waiting = Some((seq.clone(), Instant::now()));
                Duration::ZERO
            }
        };
        match pending(exists, waited) {
            Pending::Ready => {
                out.cursor = cursor_after(&r);
                out.records.push(r);
            }
            Pending::Drop => {
                tracing::warn!(key = %raw, "event dropped: its object never appeared (its writer died before finishing)");
                out.cursor = cursor_after(&r);
            }
            Pending::Wait => {
                out.blocked = true;
                return out;
            }
        }
    }
    *waiting = None;
    out
}
