//! The S3 adapter of the blob store: streaming gets, multipart uploads above 8 MiB.

use super::{
    check_key, exact_size, verify_sha256, BlobBody, BlobError, BlobStore, ObjectInfo, ObjectMeta,
};
use crate::config::{ClientCell, SdkConfigCell};
use async_trait::async_trait;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

/// Bodies above this size are uploaded in parts of this size.
pub const MULTIPART_PART: usize = 8 * 1024 * 1024;

/// The size S3 reports for an object (0 when it reports none).
pub fn object_size(o: &HeadObjectOutput) -> u64 {
    o.content_length()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// The `x-amz-checksum-sha256` value (base64) of a hex SHA-256; `None` when it is not one.
fn checksum_header(hex_sha256: &str) -> Option<String> {
    let digest = hex::decode(hex_sha256).ok().filter(|d| d.len() == 32)?;
    Some(aws_smithy_types::base64::encode(digest))
}

/// A bucket in S3.
#[derive(Clone, Debug)]
pub struct S3BlobStore {
    client: ClientCell<Client>,
    bucket: String,
}

impl S3BlobStore {
    /// The bucket `bucket`, through a client built once at init.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3BlobStore {
            client: ClientCell::ready(client),
            bucket: bucket.into(),
        }
    }

    /// The bucket `bucket`, through a client built from `conf` when it is first used
    /// ([`ClientCell`]): the origin's buckets, which a cold instance answered from the
    /// region's Redis may never read.
    pub fn deferred(conf: SdkConfigCell, bucket: impl Into<String>) -> Self {
        S3BlobStore {
            client: ClientCell::deferred(conf, crate::config::s3),
            bucket: bucket.into(),
        }
    }

    /// The client (for S3-only operations such as server-side copies).
    pub async fn client(&self) -> &Client {
        self.client.get().await
    }

    /// Whether the client has been built (a deferred one is built on first use).
    pub fn client_built(&self) -> bool {
        self.client.is_built()
    }

    /// An S3 call's failure on this bucket, as a blob store error.
    pub fn err<E, R>(&self, e: aws_sdk_s3::error::SdkError<E, R>) -> BlobError
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        BlobError::Backend {
            bucket: self.bucket.clone(),
            message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
        }
    }

    /// HEAD of `key` as S3 answers it (metadata, content type, ETag); `None` when missing.
    pub async fn head_object(&self, key: &str) -> Result<Option<HeadObjectOutput>, BlobError> {
        check_key(key)?;
        match self
            .client()
            .await
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Creates the bucket when it does not exist (emulators and first runs).
    pub async fn ensure_bucket(&self, region: &str) -> Result<(), BlobError> {
        if self
            .client()
            .await
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        let mut req = self.client().await.create_bucket().bucket(&self.bucket);
        if region != "us-east-1" {
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(region.into())
                    .build(),
            );
        }
        req.send().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        key: &str,
        mut stream: super::ByteStream,
        sha256: Option<&str>,
    ) -> Result<(), BlobError> {
        let created = self
            .client()
            .await
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(sha256.map(|h| [("sha256".to_owned(), h.to_owned())].into()))
            .send()
            .await
            .map_err(|e| self.err(e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let result: Result<Vec<CompletedPart>, BlobError> = async {
            let mut parts = Vec::new();
            let mut buf = BytesMut::with_capacity(MULTIPART_PART);
            let mut ended = false;
            while !ended {
                match stream.next().await {
                    Some(c) => buf.extend_from_slice(&c?),
                    None => ended = true,
                }
                while buf.len() >= MULTIPART_PART || (ended && !buf.is_empty()) {
                    let n = buf.len().min(MULTIPART_PART);
                    let part: Bytes = buf.split_to(n).freeze();
                    let number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
                    let out = self
                        .client()
                        .await
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(&upload_id)
                        .part_number(number)
                        .body(S3Body::from(part))
                        .send()
                        .await
                        .map_err(|e| self.err(e))?;
                    parts.push(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(out.e_tag)
                            .build(),
                    );
                }
            }
            Ok(parts)
        }
        .await;
        match result {
            Ok(parts) => self.complete_multipart(key, &upload_id, parts).await,
            Err(e) => {
                // Nothing half-written stays behind: the object never appears.
                let _ = self.abort_multipart(key, &upload_id).await;
                Err(e)
            }
        }
    }

    /// Completes multipart upload `upload_id` of `key` from its `parts`: the object
    /// appears whole, at once.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), BlobError> {
        self.client()
            .await
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Aborts multipart upload `upload_id` of `key`, dropping the parts uploaded so far.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), BlobError> {
        self.client()
            .await
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    fn as_s3(&self) -> Option<&S3BlobStore> {
        Some(self)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, BlobError> {
        Ok(self.head_object(key).await?.map(|o| ObjectMeta {
            size: object_size(&o),
            sha256: o.metadata().and_then(|m| m.get("sha256")).cloned(),
        }))
    }

    async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<BlobBody>, BlobError> {
        check_key(key)?;
        if let Some(r) = &range {
            if r.start >= r.end {
                return Ok(Some(BlobBody::from_bytes(Bytes::new())));
            }
        }
        let mut req = self
            .client()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(key);
        if let Some(r) = &range {
            req = req.range(format!("bytes={}-{}", r.start, r.end - 1));
        }
        let out = match req.send().await {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let size = out
            .content_length()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let bucket = self.bucket.clone();
        let stream = futures::stream::unfold(out.body, move |mut body| {
            let bucket = bucket.clone();
            async move {
                match body.next().await {
                    Some(Ok(b)) => Some((Ok(b), body)),
                    Some(Err(e)) => Some((
                        Err(BlobError::Backend {
                            bucket,
                            message: e.to_string(),
                        }),
                        body,
                    )),
                    None => None,
                }
            }
        })
        .boxed();
        Ok(Some(BlobBody {
            size,
            stream: exact_size(key.to_owned(), size, stream),
        }))
    }

    async fn put(&self, key: &str, body: BlobBody, sha256: Option<&str>) -> Result<(), BlobError> {
        check_key(key)?;
        let mut stream = exact_size(key.to_owned(), body.size, body.stream);
        if let Some(want) = sha256 {
            // The `sha256` metadata is written only for a body that hashed to it: a
            // mismatch fails the single put before sending and aborts a multipart upload
            // before it completes.
            stream = verify_sha256(key.to_owned(), want.to_owned(), stream);
        }
        if body.size > MULTIPART_PART as u64 {
            return self.put_multipart(key, stream, sha256).await;
        }
        let bytes = BlobBody {
            size: body.size,
            stream,
        }
        .collect()
        .await?;
        self.client()
            .await
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(sha256.map(|h| [("sha256".to_owned(), h.to_owned())].into()))
            // S3 checks the body against it on arrival and keeps it (HEAD, checksum mode).
            .set_checksum_sha256(sha256.and_then(checksum_header))
            .body(S3Body::from(bytes))
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// S3's own full-object SHA-256 when it kept one, else the `sha256` metadata, which
    /// [`BlobStore::put`] writes only for a body that hashed to it.
    async fn holds(&self, key: &str, sha256: &str) -> Result<bool, BlobError> {
        check_key(key)?;
        let head = match self
            .client()
            .await
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => return Ok(false),
            Err(e) => return Err(self.err(e)),
        };
        // A multipart object's checksum is of its parts' checksums ("…-N"), not of the body.
        let native = head
            .checksum_sha256()
            .filter(|c| !c.contains('-'))
            .and_then(|c| aws_smithy_types::base64::decode(c).ok());
        Ok(match native {
            Some(digest) => hex::encode(digest).eq_ignore_ascii_case(sha256),
            None => head
                .metadata()
                .and_then(|m| m.get("sha256"))
                .is_some_and(|h| h.eq_ignore_ascii_case(sha256)),
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobError> {
        let mut pages = self
            .client()
            .await
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err(e))?;
            for o in page.contents() {
                if let Some(k) = o.key() {
                    out.push(ObjectInfo {
                        key: k.to_owned(),
                        size: o.size().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                        modified: o.last_modified().map_or(0, |t| t.secs()),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        super::check_key(key)?;
        self.client()
            .await
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
