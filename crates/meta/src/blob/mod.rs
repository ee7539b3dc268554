//! The blob store port: a bucket of immutable, content-addressed objects.

pub mod event;
#[cfg(feature = "folder-store")]
pub mod fs;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

/// What can go wrong with a bucket.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key is not a valid object key (empty, `..`, absolute…).
    #[error("invalid object key {0:?}")]
    BadKey(String),
    /// The body ended before its announced size, or ran past it.
    #[error("object {key}: body was {got} bytes, expected {want}")]
    SizeMismatch {
        /// The key.
        key: String,
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        want: u64,
    },
    /// The body's SHA-256 is not the one the writer claimed: nothing was stored.
    #[error("object {key}: the body's SHA-256 is {got}, not the claimed {want}; nothing was stored (did the file change while it was read?)")]
    ChecksumMismatch {
        /// The key.
        key: String,
        /// The claimed SHA-256 (hex).
        want: String,
        /// The body's SHA-256 (hex).
        got: String,
    },
    /// The backend failed (network, permissions, disk).
    #[error("bucket {bucket}: {message}")]
    Backend {
        /// The bucket.
        bucket: String,
        /// What failed.
        message: String,
    },
}

/// A stream of body chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes, BlobError>>;

/// An object's body, streamed, with its size known up front.
pub struct BlobBody {
    /// Bytes in the body (of the range, for a ranged get).
    pub size: u64,
    /// The chunks.
    pub stream: ByteStream,
}

impl BlobBody {
    /// A body already in memory.
    pub fn from_bytes(b: Bytes) -> Self {
        BlobBody {
            size: b.len() as u64,
            stream: futures::stream::once(async move { Ok(b) }).boxed(),
        }
    }

    /// Reads the whole body into memory (small objects: manifests, cached files).
    pub async fn collect(mut self) -> Result<Bytes, BlobError> {
        let mut buf = bytes::BytesMut::with_capacity(usize::try_from(self.size).unwrap_or(0));
        while let Some(chunk) = self.stream.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok(buf.freeze())
    }
}

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the body, when the store recorded it.
    pub sha256: Option<String>,
}

/// A listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix seconds of its last write (0 when the store cannot say): how `gc` tells an
    /// in-flight deploy's fresh objects from old ones.
    pub modified: i64,
}

/// The blob store port.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// The bucket's name.
    fn bucket(&self) -> &str;
    /// The S3 adapter behind this store, if it is one: lets a copier between two S3
    /// buckets copy server-side instead of streaming the bytes through itself.
    fn as_s3(&self) -> Option<&s3::S3BlobStore> {
        None
    }
    /// Metadata of an object, `None` when missing.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, BlobError>;
    /// The object's body, or the bytes `start..end` of it, streamed; `None` when missing.
    async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<BlobBody>, BlobError>;
    /// Stores an object atomically: readers see the old state or the whole new object.
    /// With `sha256` (hex), the body is hashed as it passes and the object appears only if
    /// it matches ([`BlobError::ChecksumMismatch`] otherwise); the store then records it.
    async fn put(&self, key: &str, body: BlobBody, sha256: Option<&str>) -> Result<(), BlobError>;
    /// Objects whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobError>;
    /// Deletes an object; deleting a missing one succeeds. Only `gc` deletes: blobs and
    /// manifests are otherwise immutable.
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        Err(BlobError::Backend {
            bucket: self.bucket().to_owned(),
            message: format!("this store cannot delete {key}"),
        })
    }

    /// Whether `key` holds a body whose SHA-256 is `sha256` (hex), as the store recorded or
    /// can check it; `false` when the object is missing or carries no verified hash. Reuse
    /// of a content-addressed blob is decided by this, never by its size.
    async fn holds(&self, key: &str, sha256: &str) -> Result<bool, BlobError> {
        Ok(self
            .head(key)
            .await?
            .and_then(|m| m.sha256)
            .is_some_and(|h| h.eq_ignore_ascii_case(sha256)))
    }

    /// Stores bytes already in memory.
    async fn put_bytes(&self, key: &str, b: Bytes, sha256: Option<&str>) -> Result<(), BlobError> {
        self.put(key, BlobBody::from_bytes(b), sha256).await
    }

    /// Copies `key` from `src` unless this store already has it with the same size (and
    /// hash, when both know it). Streams: never holds the object whole. Returns whether
    /// it copied.
    async fn copy_from(&self, src: &dyn BlobStore, key: &str) -> Result<bool, BlobError> {
        let Some(meta) = src.head(key).await? else {
            return Err(BlobError::Backend {
                bucket: src.bucket().to_owned(),
                message: format!("{key} does not exist"),
            });
        };
        if let Some(have) = self.head(key).await? {
            let same_hash = match (&have.sha256, &meta.sha256) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if have.size == meta.size && same_hash {
                return Ok(false);
            }
        }
        let Some(body) = src.get(key, None).await? else {
            return Err(BlobError::Backend {
                bucket: src.bucket().to_owned(),
                message: format!("{key} vanished during copy"),
            });
        };
        self.put(key, body, meta.sha256.as_deref()).await?;
        Ok(true)
    }
}

/// Refuses keys that could escape a bucket folder or are not object keys.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let bad = key.is_empty()
        || key.len() > 1024
        || key.starts_with('/')
        || key.contains('\\')
        || key.contains('\0')
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        Err(BlobError::BadKey(key.chars().take(200).collect()))
    } else {
        Ok(())
    }
}

/// Wraps a stream so it ends with [`BlobError::ChecksumMismatch`] instead of ending when
/// the bytes that passed do not hash to `want` (hex SHA-256): a writer that stores only
/// bodies that end cleanly never stores a blob under another content's hash.
pub fn verify_sha256(key: String, want: String, s: ByteStream) -> ByteStream {
    use sha2::Digest;
    futures::stream::unfold(
        (s, sha2::Sha256::new(), false),
        move |(mut s, mut h, finished)| {
            let (key, want) = (key.clone(), want.clone());
            async move {
                if finished {
                    return None;
                }
                match s.next().await {
                    Some(Ok(c)) => {
                        h.update(&c);
                        Some((Ok(c), (s, h, false)))
                    }
                    Some(Err(e)) => Some((Err(e), (s, h, true))),
                    None => {
                        let got = hex::encode(h.finalize_reset());
                        if got.eq_ignore_ascii_case(&want) {
                            None
                        } else {
                            let e = BlobError::ChecksumMismatch { key, want, got };
                            Some((Err(e), (s, h, true)))
                        }
                    }
                }
            }
        },
    )
    .boxed()
}

/// SHA-256 (hex) of everything `r` yields.
pub fn sha256_of(mut r: impl std::io::Read) -> std::io::Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Wraps a stream so it fails unless exactly `want` bytes pass through it: a truncated
/// upstream body must never be stored or cached as if whole.
pub fn exact_size(key: String, want: u64, s: ByteStream) -> ByteStream {
    futures::stream::unfold((s, 0u64, false), move |(mut s, got, finished)| {
        let key = key.clone();
        async move {
            if finished {
                return None;
            }
            let mismatch = |got| BlobError::SizeMismatch { key, got, want };
            match s.next().await {
                Some(Ok(c)) => {
                    let got = got + c.len() as u64;
                    if got > want {
                        Some((Err(mismatch(got)), (s, got, true)))
                    } else {
                        Some((Ok(c), (s, got, false)))
                    }
                }
                Some(Err(e)) => Some((Err(e), (s, got, true))),
                None if got != want => Some((Err(mismatch(got)), (s, got, true))),
                None => None,
            }
        }
    })
    .boxed()
}
