//! S3 event records: built in the shape S3 sends (for the embedded bucket's event feed
//! and for tests), and object keys decoded the way S3 encodes them in events.

use super::BlobError;
use aws_lambda_events::event::s3::S3EventRecord;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters left as they are in an object key written into a URL-like value: S3's own
/// encoding of event keys, also used for `x-amz-copy-source` (which S3 percent-decodes).
pub const KEY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*')
    .remove(b'/')
    .remove(b'~');

/// Encodes a key as S3 does in event notifications (form encoding: space as `+`).
pub fn encode_key(key: &str) -> String {
    key.split(' ')
        .map(|part| utf8_percent_encode(part, KEY_KEEP).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// Decodes an event key: `+` is a space, then percent-decoding, exactly once.
pub fn decode_key(raw: &str) -> Result<String, BlobError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| BlobError::BadKey(raw.to_owned()))
}

/// What one `ObjectCreated:Put` record says.
pub struct Created<'a> {
    /// The bucket's region.
    pub region: &'a str,
    /// The bucket.
    pub bucket: &'a str,
    /// The object key (plain; encoded here).
    pub key: &'a str,
    /// Size in bytes.
    pub size: u64,
    /// Ordering token of events on the same key.
    pub sequencer: &'a str,
    /// Unix seconds.
    pub time: i64,
}

/// An `ObjectCreated:Put` record as S3 sends it.
pub fn created_record(c: &Created<'_>) -> Result<S3EventRecord, BlobError> {
    let when = time::OffsetDateTime::from_unix_timestamp(c.time)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    let v = serde_json::json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": c.region,
        "eventTime": when,
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalID": "skyhost"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": c.sequencer, "x-amz-id-2": c.sequencer},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "skyhost-replication",
            "bucket": {
                "name": c.bucket,
                "ownerIdentity": {"principalID": "skyhost"},
                "arn": format!("arn:aws:s3:::{}", c.bucket)
            },
            "object": {
                "key": encode_key(c.key),
                "size": c.size,
                "eTag": "",
                "sequencer": c.sequencer
            }
        }
    });
    serde_json::from_value(v).map_err(|e| BlobError::Backend {
        bucket: c.bucket.to_owned(),
        message: format!("building S3 event record: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_encode_and_decode_as_s3_does() {
        let cases = [
            ("sites/blog/blobs/ab", "sites/blog/blobs/ab"),
            ("a b/c+d", "a+b/c%2Bd"),
            ("été/x.json", "%C3%A9t%C3%A9/x.json"),
            ("100%", "100%25"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(encode_key(plain), encoded);
            assert_eq!(decode_key(encoded).unwrap(), plain);
        }
        assert!(decode_key("%FF").is_err());
    }
}
