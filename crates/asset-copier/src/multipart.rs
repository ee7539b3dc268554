//! Multipart copy: the object is copied in byte ranges (UploadPartCopy) and appears in the
//! destination only when every part is in and the upload is completed; on any error the
//! upload is aborted, so an interrupted copy never leaves a partial object visible.

use async_trait::async_trait;
use futures::stream::{StreamExt, TryStreamExt};
use skyhost_meta::blob::BlobError;
use std::ops::Range;

/// S3's smallest part (every part but the last).
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// S3's largest number of parts in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object one CopyObject request may copy.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// The byte ranges of an object of `size` bytes copied in parts of about `part_size`:
/// at least [`MIN_PART`], and large enough to stay within [`MAX_PARTS`].
pub fn parts(size: u64, part_size: u64) -> Vec<Range<u64>> {
    let part = part_size.max(MIN_PART).max(size.div_ceil(MAX_PARTS));
    let mut out = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + part).min(size);
        out.push(start..end);
        start = end;
    }
    out
}

/// Whether an object of `size` bytes is copied in parts, given the configured threshold.
pub fn use_multipart(size: u64, threshold: u64) -> bool {
    size > 0 && (size >= threshold || size > MAX_SINGLE_COPY)
}

/// The four calls of a multipart copy into one destination object.
#[async_trait]
pub trait PartCopy: Send + Sync {
    /// Starts an upload; returns its id.
    async fn create(&self) -> Result<String, BlobError>;
    /// Copies source bytes `range` as part `number` (from 1); returns the part's ETag.
    async fn copy_part(
        &self,
        upload_id: &str,
        number: i32,
        range: Range<u64>,
    ) -> Result<String, BlobError>;
    /// Makes the object visible from `parts` (number, ETag), in ascending order.
    async fn complete(&self, upload_id: &str, parts: Vec<(i32, String)>) -> Result<(), BlobError>;
    /// Drops the upload and every part of it.
    async fn abort(&self, upload_id: &str) -> Result<(), BlobError>;
}

/// Copies an object of `size` bytes through `t`, `concurrency` parts at a time. Returns
/// the number of parts.
pub async fn copy(
    t: &dyn PartCopy,
    size: u64,
    part_size: u64,
    concurrency: usize,
) -> Result<usize, BlobError> {
    let ranges = parts(size, part_size);
    let count = ranges.len();
    let upload_id = t.create().await?;
    let copied: Result<Vec<(i32, String)>, BlobError> =
        futures::stream::iter(ranges.into_iter().enumerate())
            .map(|(i, r)| {
                let upload_id = upload_id.as_str();
                async move {
                    let number = i32::try_from(i + 1).map_err(|_| BlobError::Backend {
                        bucket: String::new(),
                        message: "too many parts".into(),
                    })?;
                    let etag = t.copy_part(upload_id, number, r).await?;
                    Ok((number, etag))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await;
    let result = match copied {
        Ok(mut done) => {
            done.sort_by_key(|(n, _)| *n);
            t.complete(&upload_id, done).await
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(count),
        Err(e) => {
            // The parts copied so far are dropped with the upload; the object never
            // appears, and the retry starts over.
            if let Err(abort) = t.abort(&upload_id).await {
                tracing::warn!(error = %abort, upload_id, "aborting a failed multipart copy failed; the bucket's lifecycle rule removes it");
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn ranges_cover_the_object_in_allowed_parts() {
        // (size, requested part size, expected part count, expected first part length)
        let cases = [
            (1, 8 * MIB, 1, 1),
            (5 * MIB, 8 * MIB, 1, 5 * MIB),
            (12 * MIB, MIB, 3, 5 * MIB),
            (16 * MIB, 8 * MIB, 2, 8 * MIB),
            (17 * MIB, 8 * MIB, 3, 8 * MIB),
            (0, 8 * MIB, 0, 0),
            // 100 GiB with 5 MiB parts would be 20480 parts: the part grows to fit 10000.
            (
                100 * 1024 * MIB,
                5 * MIB,
                10_000,
                (100 * 1024 * MIB).div_ceil(10_000),
            ),
        ];
        for (size, part, count, first) in cases {
            let p = parts(size, part);
            assert_eq!(p.len() as u64, count, "size {size}");
            assert_eq!(p.first().map(|r| r.end - r.start).unwrap_or(0), first);
            // Contiguous, in order, covering exactly 0..size.
            let mut at = 0;
            for r in &p {
                assert_eq!(r.start, at);
                assert!(r.end > r.start);
                at = r.end;
            }
            assert_eq!(at, size);
        }
    }

    #[test]
    fn multipart_only_at_or_above_the_threshold() {
        let cases = [
            (0, 1, false),
            (1, 1, true),
            (99, 100, false),
            (100, 100, true),
            (MAX_SINGLE_COPY + 1, u64::MAX, true),
            (MAX_SINGLE_COPY, u64::MAX, false),
        ];
        for (size, threshold, want) in cases {
            assert_eq!(use_multipart(size, threshold), want, "{size} {threshold}");
        }
    }

    /// Records the calls; fails part `fail_part` when set.
    #[derive(Default)]
    struct Fake {
        fail_part: Option<i32>,
        calls: Mutex<Vec<String>>,
    }

    fn err(m: &str) -> BlobError {
        BlobError::Backend {
            bucket: "dst".into(),
            message: m.into(),
        }
    }

    #[async_trait]
    impl PartCopy for Fake {
        async fn create(&self) -> Result<String, BlobError> {
            self.calls.lock().unwrap().push("create".into());
            Ok("u1".into())
        }
        async fn copy_part(&self, id: &str, n: i32, r: Range<u64>) -> Result<String, BlobError> {
            assert_eq!(id, "u1");
            self.calls
                .lock()
                .unwrap()
                .push(format!("part {n} {}-{}", r.start, r.end));
            if self.fail_part == Some(n) {
                return Err(err("connection reset"));
            }
            Ok(format!("etag{n}"))
        }
        async fn complete(&self, id: &str, parts: Vec<(i32, String)>) -> Result<(), BlobError> {
            assert_eq!(id, "u1");
            let list: Vec<String> = parts.iter().map(|(n, e)| format!("{n}:{e}")).collect();
            self.calls
                .lock()
                .unwrap()
                .push(format!("complete {}", list.join(",")));
            Ok(())
        }
        async fn abort(&self, id: &str) -> Result<(), BlobError> {
            assert_eq!(id, "u1");
            self.calls.lock().unwrap().push("abort".into());
            Ok(())
        }
    }

    #[tokio::test]
    async fn completes_with_every_part_in_order() {
        let f = Fake::default();
        let n = copy(&f, 12 * MIB, MIN_PART, 3).await.unwrap();
        assert_eq!(n, 3);
        let calls = f.calls.lock().unwrap().clone();
        assert_eq!(calls.first().map(String::as_str), Some("create"));
        assert_eq!(
            calls.last().map(String::as_str),
            Some("complete 1:etag1,2:etag2,3:etag3")
        );
        assert!(!calls.iter().any(|c| c == "abort"));
    }

    #[tokio::test]
    async fn a_failed_part_aborts_and_never_completes() {
        let f = Fake {
            fail_part: Some(2),
            ..Fake::default()
        };
        let e = copy(&f, 12 * MIB, MIN_PART, 1).await.unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
        let calls = f.calls.lock().unwrap().clone();
        assert_eq!(calls.last().map(String::as_str), Some("abort"));
        assert!(
            !calls.iter().any(|c| c.starts_with("complete")),
            "{calls:?}"
        );
        // With one part at a time, nothing after the failed part was attempted.
        assert!(!calls.iter().any(|c| c.starts_with("part 3")), "{calls:?}");
    }
}
