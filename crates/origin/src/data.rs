//! The data path of blobs and manifests: in-process cache → Redis → this region's bucket
//! → the primary region's bucket.
//!
//! A bucket body is streamed to the visitor and, when small enough, copied into the cache
//! as it passes: the first byte goes out before the last is read, and the cache gets the
//! body only once it is complete. A blob the local bucket lacks is served from the primary
//! bucket (`fallback`) and copied into the local bucket in the background.

use crate::body::{BodyError, OriginBody};
use bytes::{Bytes, BytesMut};
use futures::stream::{Stream, StreamExt};
use skyhost_meta::blob::{BlobBody, BlobError, BlobStore, ByteStream};
use skyhost_meta::cache::Cache;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Where the data of a response came from (`X-Skyhost-Cache`), ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CacheOutcome {
    /// Nothing was read from a bucket.
    Hit,
    /// Read from this region's bucket.
    Miss,
    /// Read from the primary region's bucket.
    Fallback,
}

impl CacheOutcome {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Fallback => "fallback",
        }
    }
}

/// Why data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Neither bucket has the object: the deployment is incomplete.
    #[error("{0} is in neither the local nor the primary bucket")]
    Missing(String),
    /// A bucket failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// A body ready to send and where it came from.
pub struct Fetched {
    /// The body, streaming when it came from a bucket.
    pub body: OriginBody,
    /// Where it came from.
    pub outcome: CacheOutcome,
}

/// The tiers, shared by every request.
pub struct DataPath {
    local: Arc<dyn BlobStore>,
    primary: Option<Arc<dyn BlobStore>>,
    cache: Arc<dyn Cache>,
    max_cached: u64,
    /// Keys whose backfill started recently, so a burst of requests copies once.
    backfills: skyhost_meta::ttl::TtlMap<String, ()>,
}

impl DataPath {
    /// The data path over `local` (and `primary`, outside the primary region); bodies up to
    /// `max_cached` bytes are put into `cache`.
    pub fn new(
        local: Arc<dyn BlobStore>,
        primary: Option<Arc<dyn BlobStore>>,
        cache: Arc<dyn Cache>,
        max_cached: u64,
    ) -> Self {
        DataPath {
            local,
            primary,
            cache,
            max_cached,
            backfills: skyhost_meta::ttl::TtlMap::new(10_000),
        }
    }

    /// This region's bucket.
    pub fn local(&self) -> &Arc<dyn BlobStore> {
        &self.local
    }

    /// The body of object `key` of `size` bytes, or of bytes `range` of it.
    pub async fn body(
        &self,
        key: &str,
        size: u64,
        range: Option<Range<u64>>,
    ) -> Result<Fetched, DataError> {
        if let Some(b) = self.cache.get(key).await {
            if b.len() as u64 == size {
                let b = match &range {
                    // The range was checked against `size`, which is the cached length.
                    Some(r) => b.slice(r.start as usize..r.end as usize),
                    None => b,
                };
                return Ok(Fetched {
                    body: OriginBody::full(b),
                    outcome: CacheOutcome::Hit,
                });
            }
            tracing::warn!(
                key,
                cached = b.len(),
                size,
                "cached body has the wrong size; ignored"
            );
        }
        let want = range.as_ref().map_or(size, |r| r.end - r.start);
        let cacheable = range.is_none() && size <= self.max_cached;
        let mut missing_locally = false;
        let local_error = match self.local.get(key, range.clone()).await {
            Ok(Some(blob)) if blob.size == want => {
                return Ok(Fetched {
                    body: self.stream(key, blob, cacheable),
                    outcome: CacheOutcome::Miss,
                })
            }
            Ok(Some(blob)) => Some(BlobError::SizeMismatch {
                key: key.to_owned(),
                got: blob.size,
                want,
            }),
            Ok(None) => {
                missing_locally = true;
                None
            }
            Err(e) => Some(e),
        };
        let primary = self.fail_safe(key, local_error)?;
        match primary.get(key, range).await? {
            Some(blob) if blob.size == want => {
                if missing_locally {
                    self.backfill(key);
                }
                Ok(Fetched {
                    body: self.stream(key, blob, cacheable),
                    outcome: CacheOutcome::Fallback,
                })
            }
            Some(blob) => Err(DataError::Blob(BlobError::SizeMismatch {
                key: key.to_owned(),
                got: blob.size,
                want,
            })),
            None => Err(DataError::Missing(key.to_owned())),
        }
    }

    /// The whole object `key` in memory (manifests, preloads); cached when small enough.
    pub async fn bytes(&self, key: &str) -> Result<(Bytes, CacheOutcome), DataError> {
        if let Some(b) = self.cache.get(key).await {
            return Ok((b, CacheOutcome::Hit));
        }
        let mut missing_locally = false;
        let mut local_error = None;
        match self.local.get(key, None).await {
            Ok(Some(blob)) => match blob.collect().await {
                Ok(b) => {
                    self.put(key, b.clone()).await;
                    return Ok((b, CacheOutcome::Miss));
                }
                Err(e) => local_error = Some(e),
            },
            Ok(None) => missing_locally = true,
            Err(e) => local_error = Some(e),
        }
        let primary = self.fail_safe(key, local_error)?;
        let Some(blob) = primary.get(key, None).await? else {
            return Err(DataError::Missing(key.to_owned()));
        };
        let b = blob.collect().await?;
        self.put(key, b.clone()).await;
        if missing_locally {
            self.backfill(key);
        }
        Ok((b, CacheOutcome::Fallback))
    }

    /// The primary bucket, once the local one has failed (`local_error`) or lacks `key`:
    /// without a primary, what the local bucket said is the answer.
    fn fail_safe(
        &self,
        key: &str,
        local_error: Option<BlobError>,
    ) -> Result<&Arc<dyn BlobStore>, DataError> {
        if let Some(e) = &local_error {
            tracing::warn!(key, error = %e, "local bucket failed; trying the primary bucket");
        }
        self.primary.as_ref().ok_or_else(|| {
            local_error
                .map(DataError::Blob)
                .unwrap_or_else(|| DataError::Missing(key.to_owned()))
        })
    }

    /// Puts object `key` of `size` bytes into the cache unless it is there or too large.
    pub async fn preload(&self, key: &str, size: u64) -> Result<(), DataError> {
        if size > self.max_cached {
            return Ok(());
        }
        self.bytes(key).await.map(|_| ())
    }

    async fn put(&self, key: &str, b: Bytes) {
        if b.len() as u64 <= self.max_cached {
            self.cache.put(key, b).await;
        }
    }

    fn stream(&self, key: &str, blob: BlobBody, cacheable: bool) -> OriginBody {
        let size = blob.size;
        let stream: crate::body::BodyStream = if cacheable {
            Tee {
                inner: blob.stream,
                buf: Some(BytesMut::with_capacity(usize::try_from(size).unwrap_or(0))),
                want: size,
                key: key.to_owned(),
                cache: self.cache.clone(),
            }
            .boxed()
        } else {
            blob.stream
                .map(|r| r.map_err(|e| BodyError(e.to_string())))
                .boxed()
        };
        OriginBody::stream(stream, Some(size))
    }

    /// Copies `key` from the primary bucket into the local one, in the background.
    fn backfill(&self, key: &str) {
        let Some(primary) = self.primary.clone() else {
            return;
        };
        if self.backfills.contains(key) {
            return;
        }
        self.backfills
            .insert(key.to_owned(), (), Duration::from_secs(60));
        let local = self.local.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            match local.copy_from(primary.as_ref(), &key).await {
                Ok(copied) => tracing::info!(key, copied, "backfilled from the primary bucket"),
                Err(e) => {
                    tracing::warn!(key, error = %e, "backfill from the primary bucket failed")
                }
            }
        });
    }
}

/// Passes a bucket stream through and keeps a copy; a complete copy goes into the cache.
struct Tee {
    inner: ByteStream,
    buf: Option<BytesMut>,
    want: u64,
    key: String,
    cache: Arc<dyn Cache>,
}

impl Tee {
    /// Caches the copy if it is exactly the announced body; only once.
    fn finish(&mut self) {
        if let Some(buf) = self.buf.take() {
            if buf.len() as u64 == self.want {
                let cache = self.cache.clone();
                let key = std::mem::take(&mut self.key);
                tokio::spawn(async move { cache.put(&key, buf.freeze()).await });
            }
        }
    }
}

impl Stream for Tee {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(buf) = &mut this.buf {
                    buf.extend_from_slice(&chunk);
                    // Complete at the announced size: an HTTP server that knows the
                    // length stops polling there and never asks for the end of stream.
                    if buf.len() as u64 >= this.want {
                        this.finish();
                    }
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.buf = None;
                Poll::Ready(Some(Err(BodyError(e.to_string()))))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
        }
    }
}
