//! The embedded bucket of local mode: one folder per bucket, objects written to a temp
//! file and renamed into place (readers never see half an object), and an append-only
//! event log that plays S3's ObjectCreated notifications.
//!
//! Crash safety: the event is appended before the rename, so a writer killed at any point
//! never leaves an object visible without its event (the feed waits a moment for an event
//! whose object is not there yet, see [`pending`]). A killed writer's temp file is named
//! after its process and removed by [`FsBlobStore::remove_stale_temp`].

use super::event::{self, Created};
use super::{
    check_key, exact_size, sha256_of, verify_sha256, BlobBody, BlobError, BlobStore, ObjectInfo,
    ObjectMeta,
};
use async_trait::async_trait;
use aws_lambda_events::event::s3::S3EventRecord;
use futures::StreamExt;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// A bucket kept in a folder.
#[derive(Clone, Debug)]
pub struct FsBlobStore {
    root: PathBuf,
    bucket: String,
    region: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LogLine {
    key: String,
    size: u64,
    time: i64,
}

impl FsBlobStore {
    /// The bucket `bucket` of `region`, kept under `dir/{bucket}`.
    pub fn open(dir: &Path, bucket: &str, region: &str) -> Result<Self, BlobError> {
        let root = dir.join(bucket);
        let s = FsBlobStore {
            root,
            bucket: bucket.to_owned(),
            region: region.to_owned(),
        };
        for d in [s.root.join("objects"), s.root.join("tmp")] {
            std::fs::create_dir_all(&d).map_err(|e| s.io(e))?;
        }
        // Whoever opens the bucket next (a deploy run again, `local up`) clears what a
        // killed writer left.
        if let Err(e) = s.remove_stale_temp() {
            tracing::warn!(bucket, error = %e, "removing stale temp files failed");
        }
        Ok(s)
    }

    fn io(&self, e: impl std::fmt::Display) -> BlobError {
        BlobError::Backend {
            bucket: self.bucket.clone(),
            message: e.to_string(),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join("objects").join(key))
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("events.log")
    }

    /// ObjectCreated records after `cursor` (a byte offset into the log; `None`: from the
    /// start), at most `limit`, and the cursor to continue from.
    pub async fn events(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<S3EventRecord>, Option<String>), BlobError> {
        let start: u64 = match cursor {
            Some(c) => c
                .parse()
                .map_err(|_| self.io(format!("bad event cursor {c:?}")))?,
            None => 0,
        };
        let mut f = match tokio::fs::File::open(self.log_path()).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), cursor.map(str::to_owned)))
            }
            Err(e) => return Err(self.io(e)),
        };
        f.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| self.io(e))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).await.map_err(|e| self.io(e))?;
        let mut out = Vec::new();
        let mut offset = start;
        // Only whole lines: a writer may be in the middle of appending the last one.
        for line in buf.split_inclusive(|b| *b == b'\n') {
            if out.len() >= limit || line.last() != Some(&b'\n') {
                break;
            }
            offset += line.len() as u64;
            // A line that does not parse cannot become one by waiting: skip it rather than
            // stall every later event behind it.
            let l: LogLine = match serde_json::from_slice(line) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(bucket = %self.bucket, offset, error = %e, "unreadable event line skipped");
                    continue;
                }
            };
            let seq = format!("{offset:016X}");
            out.push(event::created_record(&Created {
                region: &self.region,
                bucket: &self.bucket,
                key: &l.key,
                size: l.size,
                sequencer: &seq,
                time: l.time,
            })?);
        }
        let next = if offset == start && cursor.is_none() {
            None
        } else {
            Some(offset.to_string())
        };
        Ok((out, next))
    }

    async fn append_event(&self, key: &str, size: u64) -> Result<(), BlobError> {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut line = serde_json::to_vec(&LogLine {
            key: key.to_owned(),
            size,
            time,
        })
        .map_err(|e| self.io(e))?;
        line.push(b'\n');
        // O_APPEND with one write per line: lines from several processes never interleave.
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .await
            .map_err(|e| self.io(e))?;
        f.write_all(&line).await.map_err(|e| self.io(e))?;
        Ok(())
    }
}

impl FsBlobStore {
    /// Removes the temp files of writers that are gone (killed mid-upload), and any temp
    /// file older than [`TEMP_MAX_AGE`]. Returns how many were removed.
    pub fn remove_stale_temp(&self) -> Result<usize, BlobError> {
        let dir = self.root.join("tmp");
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io(e)),
        };
        let mut removed = 0;
        for entry in rd {
            let entry = entry.map_err(|e| self.io(e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default();
            if stale_temp(&name, age, process_alive) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.io(e)),
                }
            }
        }
        if removed > 0 {
            tracing::info!(bucket = %self.bucket, removed, "temp files of dead writers removed");
        }
        Ok(removed)
    }
}

/// A temp file older than this is removed even if a process of its writer's id runs
/// (process ids are reused).
pub const TEMP_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// A temp file's name: `{writer's pid}-{random}`, so a cleaner can tell whether its
/// writer still runs.
fn temp_name(pid: u32) -> String {
    format!("{pid}-{:016x}", rand::random::<u64>())
}

/// Whether the temp file `name`, last written `age` ago, belongs to no running writer.
/// Names without a writer's pid (older layouts) are judged by age alone.
pub fn stale_temp(name: &str, age: Duration, alive: impl Fn(u32) -> bool) -> bool {
    if age >= TEMP_MAX_AGE {
        return true;
    }
    match name
        .split_once('-')
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
    {
        Some(pid) => !alive(pid),
        None => age >= Duration::from_secs(3600),
    }
}

/// Whether a process of this id runs (signal 0 checks without signalling).
#[cfg(unix)]
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only reports whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Without a way to ask, every writer is taken as running (temp files go by age).
#[cfg(not(unix))]
pub fn process_alive(_pid: u32) -> bool {
    true
}

/// What the event feed does with an event whose object it looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// The object is there: hand the event on.
    Ready,
    /// Not there yet: its writer appended the event and is about to rename; wait.
    Wait,
    /// Still not there after [`PENDING_GRACE`]: its writer died before the rename. A
    /// later write of the key brings its own event, so this one is dropped.
    Drop,
}

/// How long an event may wait for its object.
pub const PENDING_GRACE: Duration = Duration::from_secs(5);

/// The feed's decision for an event whose object exists or not, missing for `waited`.
pub fn pending(exists: bool, waited: Duration) -> Pending {
    if exists {
        Pending::Ready
    } else if waited < PENDING_GRACE {
        Pending::Wait
    } else {
        Pending::Drop
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, BlobError> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) if m.is_file() => Ok(Some(ObjectMeta {
                size: m.len(),
                sha256: None,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }

    async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<BlobBody>, BlobError> {
        let path = self.path(key)?;
        let mut f = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let len = f.metadata().await.map_err(|e| self.io(e))?.len();
        let (start, end) = match range {
            Some(r) => (r.start.min(len), r.end.min(len)),
            None => (0, len),
        };
        f.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| self.io(e))?;
        let size = end.saturating_sub(start);
        let bucket = self.bucket.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(size), 64 * 1024)
            .map(move |r| {
                r.map_err(|e| BlobError::Backend {
                    bucket: bucket.clone(),
                    message: e.to_string(),
                })
            })
            .boxed();
        Ok(Some(BlobBody { size, stream }))
    }

    async fn put(&self, key: &str, body: BlobBody, sha256: Option<&str>) -> Result<(), BlobError> {
        let dest = self.path(key)?;
        let tmp = self.root.join("tmp").join(temp_name(std::process::id()));
        let mut stream = exact_size(key.to_owned(), body.size, body.stream);
        if let Some(want) = sha256 {
            // Checked before the rename: a mismatching body never appears under the key.
            stream = verify_sha256(key.to_owned(), want.to_owned(), stream);
        }
        let result: Result<(), BlobError> = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| self.io(e))?;
            while let Some(chunk) = stream.next().await {
                f.write_all(&chunk?).await.map_err(|e| self.io(e))?;
            }
            f.sync_all().await.map_err(|e| self.io(e))?;
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| self.io(e))?;
            }
            // The event first: killed between the two, the feed sees an event whose object
            // never comes (and drops it after a while), never an object without its event.
            self.append_event(key, body.size).await?;
            tokio::fs::rename(&tmp, &dest).await.map_err(|e| self.io(e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// The folder keeps no hash beside an object: it hashes the object's bytes, so a
    /// same-size object with other content is never taken for the blob.
    async fn holds(&self, key: &str, sha256: &str) -> Result<bool, BlobError> {
        let path = self.path(key)?;
        let got = tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
            Ok(f) => sha256_of(f).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| self.io(e))?
        .map_err(|e| self.io(e))?;
        Ok(got.is_some_and(|h| h.eq_ignore_ascii_case(sha256)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobError> {
        let base = self.root.join("objects");
        let prefix = prefix.to_owned();
        let bucket = self.bucket.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![base.clone()];
            while let Some(dir) = stack.pop() {
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in rd {
                    let entry = entry?;
                    let ty = entry.file_type()?;
                    let p = entry.path();
                    if ty.is_dir() {
                        stack.push(p);
                    } else if let Ok(rel) = p.strip_prefix(&base) {
                        let key = rel.to_string_lossy().replace('\\', "/");
                        if key.starts_with(&prefix) {
                            let m = entry.metadata()?;
                            let modified = m
                                .modified()
                                .ok()
                                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                                .and_then(|d| i64::try_from(d.as_secs()).ok())
                                .unwrap_or(0);
                            out.push(ObjectInfo {
                                key,
                                size: m.len(),
                                modified,
                            });
                        }
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
        .map_err(|e| BlobError::Backend {
            bucket: bucket.clone(),
            message: e.to_string(),
        })?
        .map_err(|e| BlobError::Backend {
            bucket,
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temp_files() {
        let alive = |pid: u32| pid == 42;
        let min = Duration::from_secs(60);
        // (name, age, stale?)
        let cases = [
            ("42-00ff", min, false),
            ("43-00ff", min, true),
            ("42-00ff", TEMP_MAX_AGE, true),
            ("00000000000000ff", min, false),
            ("00000000000000ff", Duration::from_secs(3600), true),
            ("x-1", min, false),
        ];
        for (name, age, want) in cases {
            assert_eq!(stale_temp(name, age, alive), want, "{name} {age:?}");
        }
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn pending_events() {
        let s = Duration::from_secs;
        let cases = [
            (true, s(0), Pending::Ready),
            (true, s(60), Pending::Ready),
            (false, s(0), Pending::Wait),
            (false, s(4), Pending::Wait),
            (false, PENDING_GRACE, Pending::Drop),
        ];
        for (exists, waited, want) in cases {
            assert_eq!(pending(exists, waited), want, "{exists} {waited:?}");
        }
    }

    #[tokio::test]
    async fn the_event_is_logged_before_the_object_appears() {
        let d = tempfile::tempdir().unwrap();
        let b = FsBlobStore::open(d.path(), "b", "us-west-2").unwrap();
        b.put_bytes("sites/a/blobs/x", bytes::Bytes::from_static(b"hi"), None)
            .await
            .unwrap();
        let (ev, _) = b.events(None, 10).await.unwrap();
        assert_eq!(ev.len(), 1);
        assert!(b.head("sites/a/blobs/x").await.unwrap().is_some());
        // A writer killed between the append and the rename: the event, no object, and
        // its temp file, which the cleaner removes once the writer is gone.
        b.append_event("sites/a/blobs/y", 2).await.unwrap();
        let dead = d.path().join("b/tmp/99999999-00ff");
        std::fs::write(&dead, b"yo").unwrap();
        let live = d.path().join("b/tmp").join(temp_name(std::process::id()));
        std::fs::write(&live, b"yo").unwrap();
        let (ev, _) = b.events(None, 10).await.unwrap();
        assert_eq!(ev.len(), 2);
        assert!(b.head("sites/a/blobs/y").await.unwrap().is_none());
        // A torn line is skipped, later events still come through.
        std::fs::OpenOptions::new()
            .append(true)
            .open(b.log_path())
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"key\n"))
            .unwrap();
        b.append_event("sites/a/blobs/z", 2).await.unwrap();
        let (ev, _) = b.events(None, 10).await.unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(b.remove_stale_temp().unwrap(), 1);
        assert!(!dead.exists() && live.exists());
    }
}
