//! Server-side copies between two S3 buckets: the bytes move inside S3 (CopyObject, or
//! UploadPartCopy for large objects), never through the function. The request goes to the
//! destination's regional endpoint, through the destination's client.

use crate::multipart::{self, PartCopy};
use async_trait::async_trait;
use aws_sdk_s3::types::{CompletedPart, MetadataDirective};
use percent_encoding::utf8_percent_encode;
use skyhost_meta::blob::event::KEY_KEEP;
use skyhost_meta::blob::s3::{object_size, S3BlobStore};
use skyhost_meta::blob::{BlobError, BlobStore};
use std::collections::HashMap;
use std::ops::Range;

/// What a HEAD of the source object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceHead {
    /// Size in bytes.
    pub size: u64,
    /// The ETag, so every part comes from the same object.
    pub etag: Option<String>,
    /// User metadata (the `sha256` of the body, when recorded).
    pub metadata: HashMap<String, String>,
    /// The stored Content-Type.
    pub content_type: Option<String>,
}

impl SourceHead {
    /// The recorded SHA-256 of the body.
    pub fn sha256(&self) -> Option<&str> {
        self.metadata.get("sha256").map(String::as_str)
    }
}

/// The `x-amz-copy-source` value of `bucket`/`key` (the key URL-encoded).
pub fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", utf8_percent_encode(key, KEY_KEEP))
}

/// HEAD of `key` in `store`; `None` when missing.
pub async fn head(store: &S3BlobStore, key: &str) -> Result<Option<SourceHead>, BlobError> {
    Ok(store.head_object(key).await?.map(|o| SourceHead {
        size: object_size(&o),
        etag: o.e_tag().map(str::to_owned),
        metadata: o.metadata().cloned().unwrap_or_default(),
        content_type: o.content_type().map(str::to_owned),
    }))
}

/// One CopyObject: metadata and content type travel with the object.
pub async fn copy_object(
    src: &S3BlobStore,
    dst: &S3BlobStore,
    key: &str,
    head: &SourceHead,
) -> Result<(), BlobError> {
    dst.client()
        .await
        .copy_object()
        .bucket(dst.bucket())
        .key(key)
        .copy_source(copy_source(src.bucket(), key))
        .set_copy_source_if_match(head.etag.clone())
        .metadata_directive(MetadataDirective::Copy)
        .send()
        .await
        .map_err(|e| dst.err(e))?;
    Ok(())
}

/// A multipart copy of one object from `src` to `dst`.
pub struct S3PartCopy<'a> {
    /// The source bucket.
    pub src: &'a S3BlobStore,
    /// The destination bucket.
    pub dst: &'a S3BlobStore,
    /// The key (the same in both).
    pub key: &'a str,
    /// The source's HEAD.
    pub head: &'a SourceHead,
}

#[async_trait]
impl PartCopy for S3PartCopy<'_> {
    async fn create(&self) -> Result<String, BlobError> {
        // A multipart upload does not copy the source's metadata: set it here.
        let out = self
            .dst
            .client()
            .await
            .create_multipart_upload()
            .bucket(self.dst.bucket())
            .key(self.key)
            .set_metadata(Some(self.head.metadata.clone()).filter(|m| !m.is_empty()))
            .set_content_type(self.head.content_type.clone())
            .send()
            .await
            .map_err(|e| self.dst.err(e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| BlobError::Backend {
                bucket: self.dst.bucket().to_owned(),
                message: "CreateMultipartUpload returned no upload id".into(),
            })
    }

    async fn copy_part(
        &self,
        upload_id: &str,
        number: i32,
        range: Range<u64>,
    ) -> Result<String, BlobError> {
        let out = self
            .dst
            .client()
            .await
            .upload_part_copy()
            .bucket(self.dst.bucket())
            .key(self.key)
            .upload_id(upload_id)
            .part_number(number)
            .copy_source(copy_source(self.src.bucket(), self.key))
            .set_copy_source_if_match(self.head.etag.clone())
            .copy_source_range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| self.dst.err(e))?;
        out.copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_owned)
            .ok_or_else(|| BlobError::Backend {
                bucket: self.dst.bucket().to_owned(),
                message: format!("UploadPartCopy of part {number} returned no ETag"),
            })
    }

    async fn complete(&self, upload_id: &str, parts: Vec<(i32, String)>) -> Result<(), BlobError> {
        let parts = parts
            .into_iter()
            .map(|(n, etag)| CompletedPart::builder().part_number(n).e_tag(etag).build())
            .collect();
        self.dst
            .complete_multipart(self.key, upload_id, parts)
            .await
    }

    async fn abort(&self, upload_id: &str) -> Result<(), BlobError> {
        self.dst.abort_multipart(self.key, upload_id).await
    }
}

/// How an S3 → S3 copy went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCopy {
    /// One CopyObject.
    Single,
    /// A multipart copy of this many parts.
    Multipart(usize),
}

/// Copies `key` server-side, in parts at or above `threshold` bytes.
pub async fn copy(
    src: &S3BlobStore,
    dst: &S3BlobStore,
    key: &str,
    head: &SourceHead,
    threshold: u64,
    part_size: u64,
    part_concurrency: usize,
) -> Result<ServerCopy, BlobError> {
    if multipart::use_multipart(head.size, threshold) {
        let t = S3PartCopy {
            src,
            dst,
            key,
            head,
        };
        let n = multipart::copy(&t, head.size, part_size, part_concurrency).await?;
        Ok(ServerCopy::Multipart(n))
    } else {
        copy_object(src, dst, key, head).await?;
        Ok(ServerCopy::Single)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_encode_the_key_once() {
        let cases = [
            ("b", "sites/blog/blobs/ab", "b/sites/blog/blobs/ab"),
            (
                "b",
                "sites/blog/manifests/x.json",
                "b/sites/blog/manifests/x.json",
            ),
            ("b", "a b+c/é", "b/a%20b%2Bc/%C3%A9"),
            ("b", "100%", "b/100%25"),
        ];
        for (bucket, key, want) in cases {
            assert_eq!(copy_source(bucket, key), want);
        }
    }
}
