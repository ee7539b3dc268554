//! The blob store contract, run against every adapter: the embedded folder bucket and S3
//! on a moto server. The same cases, not copies.

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use skyhost_meta::blob::fs::FsBlobStore;
use skyhost_meta::blob::{BlobBody, BlobError, BlobStore};

const MIB: usize = 1024 * 1024;

/// A body of `size` pseudo-random bytes made chunk by chunk, never whole, and its hash.
fn generated(size: usize, seed: u8) -> (BlobBody, String) {
    let chunk = 256 * 1024;
    let make = move |i: usize| -> Bytes {
        let n = chunk.min(size - i * chunk);
        Bytes::from(
            (0..n)
                .map(|j| ((i * chunk + j) as u8).wrapping_mul(31).wrapping_add(seed))
                .collect::<Vec<u8>>(),
        )
    };
    let mut h = Sha256::new();
    for i in 0..size.div_ceil(chunk) {
        h.update(make(i));
    }
    let stream = futures::stream::iter(0..size.div_ceil(chunk))
        .map(move |i| Ok::<_, BlobError>(make(i)))
        .boxed();
    (
        BlobBody {
            size: size as u64,
            stream,
        },
        hex::encode(h.finalize()),
    )
}

pub async fn missing_keys(store: &dyn BlobStore) {
    assert_eq!(store.head("sites/x/blobs/none").await.unwrap(), None);
    assert!(store
        .get("sites/x/blobs/none", None)
        .await
        .unwrap()
        .is_none());
    assert!(store.list("sites/nothing/").await.unwrap().is_empty());
    for bad in ["", "/abs", "a/../b", "a//b", "a\\b"] {
        assert!(
            matches!(store.head(bad).await, Err(BlobError::BadKey(_))),
            "{bad:?}"
        );
    }
}

pub async fn put_get_range_list(store: &dyn BlobStore) {
    let body = Bytes::from_static(b"hello, skyhost");
    let hash = hex::encode(Sha256::digest(&body));
    store
        .put_bytes("sites/a/blobs/one", body.clone(), Some(&hash))
        .await
        .unwrap();
    store
        .put_bytes("sites/a/manifests/m.json", Bytes::from_static(b"{}"), None)
        .await
        .unwrap();
    store
        .put_bytes("sites/b/blobs/two", Bytes::from_static(b"2"), None)
        .await
        .unwrap();
    assert_eq!(
        store.head("sites/a/blobs/one").await.unwrap().unwrap().size,
        14
    );
    let got = store.get("sites/a/blobs/one", None).await.unwrap().unwrap();
    assert_eq!(got.size, 14);
    assert_eq!(got.collect().await.unwrap(), body);
    let part = store
        .get("sites/a/blobs/one", Some(7..14))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(part.size, 7);
    assert_eq!(&part.collect().await.unwrap()[..], b"skyhost");
    let keys: Vec<String> = store
        .list("sites/a/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec!["sites/a/blobs/one", "sites/a/manifests/m.json"]);
}

pub async fn streams_20_mib_without_holding_it(store: &dyn BlobStore) {
    let size = 20 * MIB;
    let (body, hash) = generated(size, 7);
    store
        .put("sites/big/blobs/b", body, Some(&hash))
        .await
        .unwrap();
    assert_eq!(
        store.head("sites/big/blobs/b").await.unwrap().unwrap().size,
        size as u64
    );
    let got = store.get("sites/big/blobs/b", None).await.unwrap().unwrap();
    assert_eq!(got.size, size as u64);
    let mut stream = got.stream;
    let (mut total, mut largest, mut chunks) = (0usize, 0usize, 0usize);
    let mut h = Sha256::new();
    while let Some(c) = stream.next().await {
        let c = c.unwrap();
        total += c.len();
        largest = largest.max(c.len());
        chunks += 1;
        h.update(&c);
    }
    assert_eq!(total, size);
    assert_eq!(hex::encode(h.finalize()), hash);
    // Streamed: many chunks, none anywhere near the whole object.
    assert!(chunks >= 8, "only {chunks} chunks");
    assert!(largest <= 8 * MIB, "a chunk of {largest} bytes");
}

pub async fn short_body_leaves_nothing(store: &dyn BlobStore) {
    let stream =
        futures::stream::iter(vec![Ok::<_, BlobError>(Bytes::from_static(b"abc"))]).boxed();
    let err = store
        .put("sites/a/blobs/short", BlobBody { size: 10, stream }, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BlobError::SizeMismatch {
                got: 3,
                want: 10,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.head("sites/a/blobs/short").await.unwrap(), None);
}

/// A body that does not hash to the claimed SHA-256 is never stored, and `holds` answers
/// by content: a same-size object under the key with other bytes is not the blob.
pub async fn claimed_hash_is_verified(store: &dyn BlobStore) {
    let good = Bytes::from_static(b"the real content");
    let bad = Bytes::from_static(b"the fake content");
    let hash = hex::encode(Sha256::digest(&good));
    let key = format!("sites/v/blobs/{hash}");
    let err = store
        .put_bytes(&key, bad.clone(), Some(&hash))
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::ChecksumMismatch { .. }), "{err}");
    assert_eq!(store.head(&key).await.unwrap(), None);
    assert!(!store.holds(&key, &hash).await.unwrap(), "missing");
    // Planted without a claim: same size, other bytes.
    store.put_bytes(&key, bad, None).await.unwrap();
    assert!(!store.holds(&key, &hash).await.unwrap(), "planted");
    store.put_bytes(&key, good, Some(&hash)).await.unwrap();
    assert!(store.holds(&key, &hash).await.unwrap(), "verified");
    assert!(!store.holds(&key, &"0".repeat(64)).await.unwrap());
    // A large body streamed in parts: a mismatch is found at its end, nothing appears.
    let (body, _) = generated(9 * MIB + 5, 1);
    let err = store
        .put("sites/v/blobs/big", body, Some(&hash))
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::ChecksumMismatch { .. }), "{err}");
    assert_eq!(store.head("sites/v/blobs/big").await.unwrap(), None);
}

pub async fn copy_between_stores(store: &dyn BlobStore) {
    let dir = tempfile::tempdir().unwrap();
    let other = FsBlobStore::open(dir.path(), "other", "eu-central-1").unwrap();
    let (body, hash) = generated(3 * MIB + 17, 3);
    other
        .put("sites/c/blobs/x", body, Some(&hash))
        .await
        .unwrap();
    assert!(store.copy_from(&other, "sites/c/blobs/x").await.unwrap());
    // Already there with the same size: not copied again.
    assert!(!store.copy_from(&other, "sites/c/blobs/x").await.unwrap());
    let back = store
        .get("sites/c/blobs/x", None)
        .await
        .unwrap()
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(hex::encode(Sha256::digest(&back)), hash);
    // And the other way.
    store
        .put_bytes("sites/c/blobs/y", Bytes::from_static(b"yy"), None)
        .await
        .unwrap();
    assert!(other.copy_from(store, "sites/c/blobs/y").await.unwrap());
    assert_eq!(
        other.head("sites/c/blobs/y").await.unwrap().unwrap().size,
        2
    );
    assert!(store
        .copy_from(&other, "sites/c/blobs/missing")
        .await
        .is_err());
}

macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;
            #[tokio::test]
            async fn missing_keys() {
                let (s, _g) = $make.await;
                super::missing_keys(&s).await;
            }
            #[tokio::test]
            async fn put_get_range_list() {
                let (s, _g) = $make.await;
                super::put_get_range_list(&s).await;
            }
            #[tokio::test]
            async fn streams_20_mib_without_holding_it() {
                let (s, _g) = $make.await;
                super::streams_20_mib_without_holding_it(&s).await;
            }
            #[tokio::test]
            async fn short_body_leaves_nothing() {
                let (s, _g) = $make.await;
                super::short_body_leaves_nothing(&s).await;
            }
            #[tokio::test]
            async fn claimed_hash_is_verified() {
                let (s, _g) = $make.await;
                super::claimed_hash_is_verified(&s).await;
            }
            #[tokio::test]
            async fn copy_between_stores() {
                let (s, _g) = $make.await;
                super::copy_between_stores(&s).await;
            }
        }
    };
}

async fn folder() -> (FsBlobStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        FsBlobStore::open(dir.path(), "primary", "us-west-2").unwrap(),
        dir,
    )
}

async fn s3() -> (skyhost_meta::blob::s3::S3BlobStore, ()) {
    (skyhost_testkit::s3("us-west-2").await, ())
}

async fn s3_deferred() -> (skyhost_meta::blob::s3::S3BlobStore, ()) {
    (skyhost_testkit::s3_deferred("us-west-2").await, ())
}

contract!(embedded_folder, folder());
contract!(s3_on_moto, s3());
contract!(s3_deferred_on_moto, s3_deferred());

#[tokio::test]
async fn folder_event_feed_plays_s3_notifications() {
    let (store, _dir) = folder().await;
    let (none, cursor) = store.events(None, 10).await.unwrap();
    assert!(none.is_empty());
    store
        .put_bytes("sites/a/blobs/one two", Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    store
        .put_bytes("sites/a/blobs/b+c", Bytes::from_static(b"22"), None)
        .await
        .unwrap();
    store
        .put_bytes("sites/a/blobs/d", Bytes::from_static(b"333"), None)
        .await
        .unwrap();
    let (first, c1) = store.events(cursor.as_deref(), 2).await.unwrap();
    let keys: Vec<String> = first
        .iter()
        .map(|r| r.s3.object.key.clone().unwrap())
        .collect();
    assert_eq!(keys, vec!["sites/a/blobs/one+two", "sites/a/blobs/b%2Bc"]);
    assert_eq!(first[1].s3.object.size, Some(2));
    assert_eq!(first[0].s3.bucket.name.as_deref(), Some("primary"));
    assert_eq!(first[0].event_name.as_deref(), Some("ObjectCreated:Put"));
    let (rest, c2) = store.events(c1.as_deref(), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(
        skyhost_meta::blob::event::decode_key(rest[0].s3.object.key.as_deref().unwrap()).unwrap(),
        "sites/a/blobs/d"
    );
    let (again, _) = store.events(c2.as_deref(), 10).await.unwrap();
    assert!(again.is_empty(), "each event once");
}
