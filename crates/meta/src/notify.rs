//! Region notifications: the replicator tells every region a site changed, carrying the
//! whole new record, signed with HMAC-SHA256 over `timestamp.body`
//! (`X-Skyhost-Signature: t=<unix>,v1=<hex>`), several secrets accepted during rotation.

use crate::ids::SiteId;
use crate::model::Site;
use crate::secrets::Secret;
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-skyhost-signature";
/// Accepted clock difference between signer and verifier, in seconds.
pub const TOLERANCE_SECS: i64 = 300;
/// A site changed: its new record (`None` when it was removed) at `revision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The site.
    pub site: SiteId,
    /// The record's revision (of the removed record, for a removal).
    pub revision: u64,
    /// The new record; `None` when the site was removed.
    pub record: Option<Site>,
    /// Unix milliseconds of the change in the primary table (for latency metrics).
    #[serde(default)]
    pub changed_ms: i64,
}

/// Largest notification body accepted, checked before any HMAC. A notification carries one
/// site record, and a site record is one DynamoDB item, at most 400 KB: a record filled
/// with 253-character domains serialises to 405 KB of notification (measured by the
/// `largest_record_fits` test), so 512 KiB leaves a quarter of margin. Listeners may
/// refuse a larger body before reading it; the origin refuses it before hashing it.
pub const MAX_BODY: usize = 512 * 1024;
/// `v1=` signatures accepted in one header: the signer sends one; a few leave room for
/// signing with several secrets during a rotation.
pub const MAX_SIGNATURES: usize = 4;
/// Longest signature header accepted: `t=` with any `i64` and [`MAX_SIGNATURES`] tags of 64
/// hex digits fit in about 300 bytes.
pub const MAX_HEADER_LEN: usize = 512;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No or malformed header.
    #[error("missing or malformed X-Skyhost-Signature header (t=<unix>,v1=<64 hex digits>, at most {MAX_SIGNATURES} signatures)")]
    Malformed,
    /// Outside the tolerance window (replayed or clock skew).
    #[error("signature timestamp outside the {TOLERANCE_SECS} s window")]
    Stale,
    /// The body is larger than any notification.
    #[error("notification body larger than {MAX_BODY} bytes")]
    TooLarge,
    /// No secret produces this signature.
    #[error("signature does not match")]
    Mismatch,
}

fn mac(secret: &[u8], ts: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header value signing `body` at `ts` with `secret`.
pub fn sign(secret: &[u8], ts: i64, body: &[u8]) -> String {
    let tag = mac(secret, ts, body).finalize().into_bytes();
    format!("t={ts},v1={}", hex::encode(tag))
}

/// A well-formed signature header: its timestamp and its HMAC-SHA256 tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Unix seconds the signer signed at.
    pub timestamp: i64,
    /// The `v1=` tags, 1 to [`MAX_SIGNATURES`].
    tags: Vec<[u8; 32]>,
}

impl Signature {
    /// Parses `t=<unix>,v1=<hex>[,v1=<hex>…]`. Cheap and bounded: a header longer than
    /// [`MAX_HEADER_LEN`] is refused unread, and so is one with a second `t`, an empty or
    /// bare part, a tag that is not 64 hex digits, or more than [`MAX_SIGNATURES`] tags.
    /// Parts of other schemes (`v0=…`) are ignored.
    pub fn parse(header: &str) -> Result<Signature, SignatureError> {
        if header.len() > MAX_HEADER_LEN {
            return Err(SignatureError::Malformed);
        }
        let mut timestamp = None;
        let mut tags = Vec::new();
        for part in header.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or(SignatureError::Malformed)?;
            match k {
                "t" if timestamp.is_none() => {
                    timestamp = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?)
                }
                "t" => return Err(SignatureError::Malformed),
                "v1" if tags.len() < MAX_SIGNATURES => {
                    let mut tag = [0u8; 32];
                    hex::decode_to_slice(v, &mut tag).map_err(|_| SignatureError::Malformed)?;
                    tags.push(tag);
                }
                "v1" => return Err(SignatureError::Malformed),
                _ => {}
            }
        }
        match timestamp {
            Some(timestamp) if !tags.is_empty() => Ok(Signature { timestamp, tags }),
            _ => Err(SignatureError::Malformed),
        }
    }

    /// Whether the timestamp is within [`TOLERANCE_SECS`] of `now` (overflow-safe: any
    /// `i64` may come in).
    pub fn check_time(&self, now: i64) -> Result<(), SignatureError> {
        match now.checked_sub(self.timestamp) {
            Some(d) if d.unsigned_abs() <= TOLERANCE_SECS.unsigned_abs() => Ok(()),
            _ => Err(SignatureError::Stale),
        }
    }

    /// Whether a secret signed `body`: one HMAC per secret (never per secret × tag),
    /// each tag compared in constant time. A body over [`MAX_BODY`] is refused unhashed.
    pub fn check_body(&self, secrets: &[Vec<u8>], body: &[u8]) -> Result<(), SignatureError> {
        if body.len() > MAX_BODY {
            return Err(SignatureError::TooLarge);
        }
        for secret in secrets {
            let expected = mac(secret, self.timestamp, body).finalize().into_bytes();
            let mut matched = subtle::Choice::from(0u8);
            for tag in &self.tags {
                matched |= expected.as_slice().ct_eq(tag.as_slice());
            }
            if bool::from(matched) {
                return Ok(());
            }
        }
        Err(SignatureError::Mismatch)
    }
}

/// Checks a header against every accepted secret: its form first, then its time, then the
/// body's size, and only then one HMAC per secret.
pub fn verify(
    secrets: &[Vec<u8>],
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let sig = Signature::parse(header.ok_or(SignatureError::Malformed)?)?;
    sig.check_time(now)?;
    sig.check_body(secrets, body)
}

/// Secrets written comma-separated, newest first (the first one signs); the same as
/// [`crate::secrets::parse_values`].
pub fn parse_secrets(raw: &str) -> Vec<Vec<u8>> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

/// Why a region did not take a notification.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The region answered with an error status.
    #[error("region answered {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Start of the answer.
        body: String,
    },
    /// The region could not be reached.
    #[error("region unreachable: {0}")]
    Transport(String),
}

impl NotifyError {
    /// Whether trying again may help (not for a refused signature or a bad request).
    pub fn retryable(&self) -> bool {
        match self {
            NotifyError::Rejected { status, .. } => *status >= 500 || *status == 429,
            NotifyError::Transport(_) => true,
        }
    }
}

/// The notifier port: delivers a notification to one region.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers `n` to the region whose origin answers at `base_url`.
    async fn notify(&self, base_url: &str, n: &Notification) -> Result<(), NotifyError>;
}

/// Delivers notifications over HTTPS as signed `POST {base}/_skyhost/notify`.
#[derive(Clone)]
pub struct HttpNotifier {
    client: reqwest::Client,
    secret: Secret,
}

impl HttpNotifier {
    /// A notifier signing with `secret`, through a client built once at init.
    pub fn new(client: reqwest::Client, secret: Vec<u8>) -> Self {
        Self::with_secret(client, Secret::fixed(vec![secret]))
    }

    /// A notifier signing with the newest value of `secret`, read at run time; a region
    /// refusing the signature makes it read the secret again (rate limited) and, if the
    /// secret rotated, sign once more.
    pub fn with_secret(client: reqwest::Client, secret: Secret) -> Self {
        HttpNotifier { client, secret }
    }

    async fn post(&self, url: &str, secret: &[u8], body: &[u8]) -> Result<(), NotifyError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let resp = self
            .client
            .post(url)
            .header(SIGNATURE_HEADER, sign(secret, now, body))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| NotifyError::Transport(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(NotifyError::Rejected {
            status,
            body: text.chars().take(200).collect(),
        })
    }
}

#[async_trait]
impl Notifier for HttpNotifier {
    async fn notify(&self, base_url: &str, n: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(n).map_err(|e| NotifyError::Transport(e.to_string()))?;
        let url = format!("{}/_skyhost/notify", base_url.trim_end_matches('/'));
        // An unreadable secret is the signer's trouble, not the region's: retryable.
        let values = self
            .secret
            .values()
            .await
            .map_err(|e| NotifyError::Transport(e.to_string()))?;
        let Some(newest) = values.first() else {
            return Err(NotifyError::Transport(format!(
                "secret {} holds no value",
                self.secret.name()
            )));
        };
        let first = self.post(&url, newest, &body).await;
        let Err(NotifyError::Rejected { status: 401, .. }) = &first else {
            return first;
        };
        // The region may already hold a rotated secret this signer has not read yet.
        let now = self.secret.reread_after_failure(&values).await;
        match now.as_ref().and_then(|v| v.first()) {
            Some(newer) => self.post(&url, newer, &body).await,
            None => first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let body = br#"{"site":"blog"}"#;
        let now = 1_800_000_000;
        let good = sign(b"s1", now, body);
        let secrets = vec![b"s0".to_vec(), b"s1".to_vec()];
        type Case<'a> = (Option<String>, &'a [u8], i64, Result<(), SignatureError>);
        let cases: Vec<Case> = vec![
            (Some(good.clone()), body, now, Ok(())),
            (Some(good.clone()), body, now + 300, Ok(())),
            (
                Some(good.clone()),
                body,
                now + 301,
                Err(SignatureError::Stale),
            ),
            (
                Some(good.clone()),
                body,
                now - 301,
                Err(SignatureError::Stale),
            ),
            (
                Some(good.clone()),
                b"{}",
                now,
                Err(SignatureError::Mismatch),
            ),
            (
                Some(sign(b"other", now, body)),
                body,
                now,
                Err(SignatureError::Mismatch),
            ),
            (
                Some(format!("t={now}")),
                body,
                now,
                Err(SignatureError::Malformed),
            ),
            (
                Some("v1=00".into()),
                body,
                now,
                Err(SignatureError::Malformed),
            ),
            (
                Some(format!("t={now},v1=zz")),
                body,
                now,
                Err(SignatureError::Malformed),
            ),
            (None, body, now, Err(SignatureError::Malformed)),
        ];
        for (i, (h, b, at, want)) in cases.into_iter().enumerate() {
            assert_eq!(verify(&secrets, h.as_deref(), b, at), want, "case {i}");
        }
        // Rotation: the old secret still verifies until it is removed.
        assert_eq!(
            verify(&secrets, Some(&sign(b"s0", now, body)), body, now),
            Ok(())
        );
        assert_eq!(parse_secrets(" a, ,b "), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn malformed_headers_are_refused_before_any_hmac() {
        let body = br#"{"site":"blog"}"#;
        let now = 1_800_000_000;
        let tag = hex::encode([7u8; 32]);
        let many = |n: usize| {
            let mut h = format!("t={now}");
            for _ in 0..n {
                h.push_str(",v1=");
                h.push_str(&tag);
            }
            h
        };
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            (format!("t={now}"), "no signature"),
            (format!("v1={tag}"), "no timestamp"),
            (format!("t={now},v1="), "empty signature"),
            (format!("t={now},v1=00"), "short signature"),
            (format!("t={now},v1={tag}00"), "long signature"),
            (format!("t={now},v1={}", "zz".repeat(32)), "not hex"),
            (format!("t=,v1={tag}"), "empty timestamp"),
            (format!("t=soon,v1={tag}"), "timestamp not a number"),
            (
                format!("t=99999999999999999999,v1={tag}"),
                "timestamp beyond i64",
            ),
            (format!("t={now},t={now},v1={tag}"), "two timestamps"),
            (format!("t={now},v1={tag},"), "trailing comma"),
            (format!("t={now},,v1={tag}"), "empty part"),
            (format!("t={now},v1"), "bare key"),
            (many(MAX_SIGNATURES + 1), "too many signatures"),
            (
                format!("t={now},v0={},v1={tag}", "a".repeat(MAX_HEADER_LEN)),
                "over-long header",
            ),
            (
                format!("t={now}{}", ",v1=".repeat(20_000)),
                "20,000 empty signatures",
            ),
        ];
        for (header, what) in &cases {
            assert_eq!(
                Signature::parse(header),
                Err(SignatureError::Malformed),
                "{what}"
            );
            // No secret at all: were a hash computed, the answer would be Mismatch.
            assert_eq!(
                verify(&[], Some(header), body, now),
                Err(SignatureError::Malformed),
                "{what}"
            );
        }
        // The most a well-formed header may carry, and parts of other schemes, still parse.
        assert!(many(MAX_SIGNATURES).len() <= MAX_HEADER_LEN);
        assert_eq!(
            Signature::parse(&many(MAX_SIGNATURES)).map(|s| s.tags.len()),
            Ok(4)
        );
        assert!(Signature::parse(&format!(" t={now} , v0=x , v1={tag} ")).is_ok());
    }

    #[test]
    fn the_reproduced_attack_is_refused_unhashed() {
        // 20,000 empty signatures and a 1 MB body, with a fresh timestamp.
        let now = 1_800_000_000;
        let header = format!("t={now}{}", ",v1=".repeat(20_000));
        let body = vec![b'x'; 1 << 20];
        let secrets = vec![b"s0".to_vec(), b"s1".to_vec()];
        let started = std::time::Instant::now();
        assert_eq!(
            verify(&secrets, Some(&header), &body, now),
            Err(SignatureError::Malformed)
        );
        // Well-formed but over-long bodies are refused before hashing too.
        let good = sign(b"s1", now, &body);
        assert_eq!(
            verify(&secrets, Some(&good), &body, now),
            Err(SignatureError::TooLarge)
        );
        // Hundreds of milliseconds of margin for a debug build on a busy machine; the
        // attack took seconds in a release build.
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn timestamp_arithmetic_cannot_overflow() {
        let body = b"{}";
        let secrets = vec![b"s".to_vec()];
        let (min, max, now) = (i64::MIN, i64::MAX, 1_800_000_000);
        let stale = Err(SignatureError::Stale);
        let cases: [(i64, i64, Result<(), SignatureError>); 10] = [
            (min, now, stale.clone()),
            (max, now, stale.clone()),
            (min, max, stale.clone()),
            (max, min, stale.clone()),
            (min, 0, stale.clone()),
            (max, -1, stale.clone()),
            (min + 1, 1, stale.clone()),
            (min, min, Ok(())),
            (max, max - TOLERANCE_SECS, Ok(())),
            (min + TOLERANCE_SECS, min, Ok(())),
        ];
        for (ts, at, want) in cases {
            let header = sign(b"s", ts, body);
            assert_eq!(
                verify(&secrets, Some(&header), body, at),
                want,
                "t={ts} now={at}"
            );
        }
        let header = format!("t=-9223372036854775808,v1={}", hex::encode([0u8; 32]));
        assert_eq!(verify(&secrets, Some(&header), body, now), stale);
    }

    #[test]
    fn largest_record_fits() {
        // A site record is one DynamoDB item (400 KB at most): fill it with domains of the
        // longest form (253 characters), ignoring DynamoDB's per-element overhead, so this
        // is more than any stored record can hold.
        let label = "a".repeat(63);
        let domains: Vec<crate::ids::Domain> = (0..400_000 / 253)
            .map(|i| {
                let first = format!("{i:0>61}xx");
                crate::ids::Domain::parse(&format!("{first}.{label}.{label}.{}", &label[..61]))
                    .unwrap()
            })
            .collect();
        assert_eq!(domains[0].as_str().len(), 253);
        let mut site = Site::new(crate::ids::SiteId::parse("blog").unwrap(), 1_800_000_000);
        site.domains = domains;
        site.active = Some(crate::ids::DeploymentId::new(1_800_000_000));
        let n = Notification {
            site: site.id.clone(),
            revision: u64::MAX,
            record: Some(site),
            changed_ms: i64::MAX,
        };
        let len = serde_json::to_vec(&n).unwrap().len();
        assert!(len > 400_000, "the record is as large as an item: {len}");
        assert!(
            len < MAX_BODY * 4 / 5,
            "{len} bytes leave too little margin"
        );
    }
}
