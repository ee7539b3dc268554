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

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No or malformed header.
    #[error("missing or malformed X-Skyhost-Signature header")]
    Malformed,
    /// Outside the tolerance window (replayed or clock skew).
    #[error("signature timestamp outside the {TOLERANCE_SECS} s window")]
    Stale,
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

/// Checks a header against every accepted secret, in constant time per secret.
pub fn verify(
    secrets: &[Vec<u8>],
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Malformed)?;
    let mut ts = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => ts = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let ts = ts.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    for secret in secrets {
        for sig in &sigs {
            if mac(secret, ts, body).verify_slice(sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
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
}
