//! The embedded metadata store of local mode: SQLite in WAL mode, safe for several
//! processes at once (every conditional write is one `BEGIN IMMEDIATE` transaction), with
//! a `changes` table that plays the DynamoDB stream.

use super::item::{self, Item, Key};
use super::stream::{self, Change};
use super::{ChangeBatch, ChangeFeed, Condition, MetaStore, StoreError, Write, WriteError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// SQLite-backed metadata store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    region: String,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`; `region` names the table's region
    /// in change records.
    pub fn open(path: &Path, region: &str) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn, region)
    }

    /// A private in-memory store (tests).
    pub fn in_memory(region: &str) -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(backend)?, region)
    }

    fn init(conn: Connection, region: &str) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(backend)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS items (
                 pk TEXT NOT NULL, sk TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
                 PRIMARY KEY (pk, sk));
             CREATE INDEX IF NOT EXISTS items_kind ON items(kind);
             CREATE TABLE IF NOT EXISTS changes (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 event_name TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL,
                 new_image TEXT, old_image TEXT, created REAL NOT NULL);",
        )
        .map_err(backend)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            region: region.to_owned(),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock means another call panicked mid-statement; SQLite rolled the
            // transaction back, so the connection itself is still usable.
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c)
        })
        .await
        .map_err(backend)
    }
}

fn decode(body: &str) -> Result<Item, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("item: {e}")))
}

fn encode(item: &Item) -> Result<String, StoreError> {
    serde_json::to_string(item).map_err(|e| StoreError::Corrupt(format!("item: {e}")))
}

/// Whether `cond` holds for the item currently stored (shared with tests of the rule).
pub(crate) fn holds(cond: &Condition, current: Option<&Item>) -> bool {
    match cond {
        Condition::None => true,
        Condition::NotExists => current.is_none(),
        Condition::RevisionIs(n) => revision_of(current) == Some(*n),
        Condition::RemovedAt(n) => {
            revision_of(current) == Some(*n)
                && matches!(
                    current.and_then(|i| i.get("removed")),
                    Some(serde_dynamo::AttributeValue::Bool(true))
                )
        }
        Condition::SiteIs(s) => current.and_then(|i| item::attr_str(i, "site")) == Some(s.as_str()),
        Condition::NotExistsOrSiteIs(s) => {
            current.is_none() || current.and_then(|i| item::attr_str(i, "site")) == Some(s.as_str())
        }
    }
}

fn revision_of(item: Option<&Item>) -> Option<u64> {
    match item?.get("revision") {
        Some(serde_dynamo::AttributeValue::N(v)) => v.parse::<u64>().ok(),
        _ => None,
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn apply(c: &mut Connection, writes: Vec<Write>) -> Result<(), WriteError> {
    let tx = c
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    for (i, w) in writes.iter().enumerate() {
        let current: Option<String> = tx
            .query_row(
                "SELECT body FROM items WHERE pk = ?1 AND sk = ?2",
                params![w.key.pk, w.key.sk],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)?;
        let current = current.as_deref().map(decode).transpose()?;
        if !holds(&w.condition, current.as_ref()) {
            // Dropping the transaction rolls every earlier write of the batch back.
            return Err(WriteError::ConditionFailed(i));
        }
        let event = match (&current, &w.item) {
            (None, None) => continue,
            (None, Some(_)) => "INSERT",
            (Some(_), Some(_)) => "MODIFY",
            (Some(_), None) => "REMOVE",
        };
        match &w.item {
            Some(it) => {
                let kind = item::attr_str(it, "kind").unwrap_or("").to_owned();
                tx.execute(
                    "INSERT INTO items (pk, sk, kind, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (pk, sk) DO UPDATE SET kind = excluded.kind, body = excluded.body",
                    params![w.key.pk, w.key.sk, kind, encode(it)?],
                )
                .map_err(backend)?;
            }
            None => {
                tx.execute(
                    "DELETE FROM items WHERE pk = ?1 AND sk = ?2",
                    params![w.key.pk, w.key.sk],
                )
                .map_err(backend)?;
            }
        }
        tx.execute(
            "INSERT INTO changes (event_name, pk, sk, new_image, old_image, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                event,
                w.key.pk,
                w.key.sk,
                w.item.as_ref().map(encode).transpose()?,
                current.as_ref().map(encode).transpose()?,
                now_secs()
            ],
        )
        .map_err(backend)?;
    }
    tx.commit().map_err(backend)?;
    Ok(())
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn get_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let key = key.clone();
        let body: Option<String> = self
            .with(move |c| {
                c.query_row(
                    "SELECT body FROM items WHERE pk = ?1 AND sk = ?2",
                    params![key.pk, key.sk],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?
            .map_err(backend)?;
        body.as_deref().map(decode).transpose()
    }

    async fn query_items(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let (pk, prefix) = (pk.to_owned(), sk_prefix.to_owned());
        let bodies = self
            .with(move |c| -> rusqlite::Result<Vec<String>> {
                let mut st = c.prepare(
                    "SELECT body FROM items WHERE pk = ?1 AND substr(sk, 1, length(?2)) = ?2 ORDER BY sk",
                )?;
                let rows = st.query_map(params![pk, prefix], |r| r.get(0))?;
                rows.collect()
            })
            .await?
            .map_err(backend)?;
        bodies.iter().map(|b| decode(b)).collect()
    }

    async fn scan_kind(&self, kind: &str) -> Result<Vec<Item>, StoreError> {
        let kind = kind.to_owned();
        let bodies = self
            .with(move |c| -> rusqlite::Result<Vec<String>> {
                let mut st = c.prepare("SELECT body FROM items WHERE kind = ?1 ORDER BY pk, sk")?;
                let rows = st.query_map(params![kind], |r| r.get(0))?;
                rows.collect()
            })
            .await?
            .map_err(backend)?;
        bodies.iter().map(|b| decode(b)).collect()
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), WriteError> {
        self.with(move |c| apply(c, writes)).await?
    }
}

type ChangeRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    f64,
);

#[async_trait]
impl ChangeFeed for SqliteStore {
    async fn read(&self, cursor: Option<&str>, limit: usize) -> Result<ChangeBatch, StoreError> {
        let after: i64 = match cursor {
            None => 0,
            Some(c) => c
                .parse()
                .map_err(|_| StoreError::Invalid(format!("bad change-feed cursor {c:?}")))?,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .with(move |c| -> rusqlite::Result<Vec<ChangeRow>> {
                let mut st = c.prepare(
                    "SELECT seq, event_name, pk, sk, new_image, old_image, created
                     FROM changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = st.query_map(params![after, limit], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?;
                rows.collect()
            })
            .await?
            .map_err(backend)?;
        let arn = format!(
            "arn:aws:dynamodb:{}:000000000000:table/skyhost-sites/stream/local",
            self.region
        );
        let mut records = Vec::with_capacity(rows.len());
        let mut last = cursor.map(str::to_owned);
        for (seq, event_name, pk, sk, new, old, created) in rows {
            let new = new.as_deref().map(decode).transpose()?;
            let old = old.as_deref().map(decode).transpose()?;
            let sequence = format!("{seq:021}");
            records.push(stream::record(&Change {
                sequence: &sequence,
                event_name: &event_name,
                key: &Key { pk, sk },
                new_image: new.as_ref(),
                old_image: old.as_ref(),
                created,
                region: &self.region,
                stream_arn: &arn,
            })?);
            last = Some(seq.to_string());
        }
        Ok(ChangeBatch {
            records,
            cursor: last,
        })
    }
}
