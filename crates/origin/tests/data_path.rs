//! The data path's streaming: the first byte reaches the visitor before the bucket has sent
//! the last, the cache gets a body only once it is complete, a body that fails midway is
//! never cached, and a body over the cache's largest entry is never buffered into it.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http_body::Body;
use skyhost_meta::blob::{BlobBody, BlobError, BlobStore, ObjectInfo, ObjectMeta};
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::Cache;
use skyhost_origin::data::{CacheOutcome, DataError, DataPath};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

type Feed = mpsc::Receiver<Result<Bytes, BlobError>>;

/// A bucket whose object bodies are fed chunk by chunk by the test.
#[derive(Default)]
struct Gated {
    feeds: Mutex<HashMap<String, (u64, Feed)>>,
}

impl Gated {
    fn object(&self, key: &str, size: u64) -> mpsc::Sender<Result<Bytes, BlobError>> {
        let (tx, rx) = mpsc::channel(8);
        self.feeds
            .lock()
            .unwrap()
            .insert(key.to_owned(), (size, rx));
        tx
    }
}

#[async_trait]
impl BlobStore for Gated {
    fn bucket(&self) -> &str {
        "gated"
    }
    async fn head(&self, _key: &str) -> Result<Option<ObjectMeta>, BlobError> {
        Ok(None)
    }
    async fn get(
        &self,
        key: &str,
        _range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<BlobBody>, BlobError> {
        let Some((size, rx)) = self.feeds.lock().unwrap().remove(key) else {
            return Ok(None);
        };
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed();
        Ok(Some(BlobBody { size, stream }))
    }
    async fn put(&self, _key: &str, _body: BlobBody, _sha: Option<&str>) -> Result<(), BlobError> {
        Ok(())
    }
    async fn list(&self, _prefix: &str) -> Result<Vec<ObjectInfo>, BlobError> {
        Ok(Vec::new())
    }
}

async fn next_chunk(body: &mut skyhost_origin::OriginBody) -> Option<Bytes> {
    let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
    frame.ok()?.into_data().ok()
}

#[tokio::test]
async fn streams_first_byte_before_last_and_caches_only_complete_bodies() {
    let bucket = Arc::new(Gated::default());
    let cache = Arc::new(MemoryCache::new(8 * 1024));
    let data = DataPath::new(bucket.clone(), None, cache.clone(), 1024);

    let feed = bucket.object("sites/s/blobs/a", 6);
    let fetched = data.body("sites/s/blobs/a", 6, None).await.unwrap();
    assert_eq!(fetched.outcome, CacheOutcome::Miss);
    let mut body = fetched.body;
    feed.send(Ok(Bytes::from("abc"))).await.unwrap();
    // The first chunk is out while the bucket has not sent the rest.
    assert_eq!(next_chunk(&mut body).await.unwrap(), "abc");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        cache.get("sites/s/blobs/a").await.is_none(),
        "cached before complete"
    );
    feed.send(Ok(Bytes::from("def"))).await.unwrap();
    drop(feed);
    assert_eq!(next_chunk(&mut body).await.unwrap(), "def");
    assert!(next_chunk(&mut body).await.is_none());
    let mut cached = None;
    for _ in 0..40 {
        cached = cache.get("sites/s/blobs/a").await;
        if cached.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(cached.as_deref(), Some(&b"abcdef"[..]));
    // Served from the cache now, without the bucket.
    let again = data.body("sites/s/blobs/a", 6, Some(1..4)).await.unwrap();
    assert_eq!(again.outcome, CacheOutcome::Hit);
    assert_eq!(again.body.collect().await.unwrap(), "bcd");
}

#[tokio::test]
async fn failed_or_oversized_bodies_are_not_cached() {
    let bucket = Arc::new(Gated::default());
    let cache = Arc::new(MemoryCache::new(8 * 1024));
    let data = DataPath::new(bucket.clone(), None, cache.clone(), 4);

    // Fails midway: the visitor sees the error; nothing is cached.
    let feed = bucket.object("k/fail", 4);
    let body = data.body("k/fail", 4, None).await.unwrap().body;
    feed.send(Ok(Bytes::from("ab"))).await.unwrap();
    feed.send(Err(BlobError::Backend {
        bucket: "gated".into(),
        message: "connection reset".into(),
    }))
    .await
    .unwrap();
    drop(feed);
    assert!(body.collect().await.is_err());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(cache.get("k/fail").await.is_none());

    // Over the largest cached body: streamed through, never cached.
    let feed = bucket.object("k/big", 8);
    let body = data.body("k/big", 8, None).await.unwrap().body;
    feed.send(Ok(Bytes::from("12345678"))).await.unwrap();
    drop(feed);
    assert_eq!(body.collect().await.unwrap(), "12345678");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(cache.get("k/big").await.is_none());

    // A bucket body shorter than the manifest says is refused before it is sent.
    bucket.object("k/short", 3);
    assert!(matches!(
        data.body("k/short", 4, None).await,
        Err(DataError::Blob(BlobError::SizeMismatch { .. }))
    ));
    // Missing everywhere.
    assert!(matches!(
        data.body("k/none", 4, None).await,
        Err(DataError::Missing(_))
    ));
}
