//! The embedded bucket of local mode: one folder per bucket, objects written to a temp
//! file and renamed into place (readers never see half an object), and an append-only
//! event log that plays S3's ObjectCreated notifications.

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
            let l: LogLine = serde_json::from_slice(line).map_err(|e| self.io(e))?;
            offset += line.len() as u64;
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

#[async_trait]
impl BlobStore for FsBlobStore {
    fn bucket(&self) -> &str {
        &self.bucket
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
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{:016x}", rand::random::<u64>()));
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
            tokio::fs::rename(&tmp, &dest).await.map_err(|e| self.io(e))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result?;
        self.append_event(key, body.size).await
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
                            out.push(ObjectInfo {
                                key,
                                size: entry.metadata()?.len(),
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
