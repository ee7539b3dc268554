//! `POST /_skyhost/notify`: the replicator tells this region a site changed, with the
//! whole new record, signed (HMAC-SHA256, 300 s window, several secrets). A newer record
//! replaces the cached one and the host map; then the new deployment's manifest and
//! `index.html` are loaded into the cache so the first visitor gets a hit. Replays and
//! stale notifications change nothing and answer `{"applied": false}`.

use crate::data::DataPath;
use crate::resolve::Resolver;
use http::StatusCode;
use serde_json::{json, Value};
use skyhost_meta::notify::{verify, Notification, SignatureError, SIGNATURE_HEADER};
use skyhost_meta::{keys, Site};
use std::time::Duration;

/// Preloading gives up after this long; the notification is applied either way.
const PRELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Handles a notification; returns the status and JSON body to answer.
pub async fn handle(
    secrets: &[Vec<u8>],
    resolver: &Resolver,
    data: &DataPath,
    headers: &http::HeaderMap,
    body: &[u8],
    now: i64,
) -> (StatusCode, Value) {
    // The header's form, its time and the body's size are all checked before any HMAC.
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if let Err(e) = verify(secrets, signature, body, now) {
        tracing::warn!(error = %e, body_bytes = body.len(), "notification refused");
        let status = match e {
            SignatureError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNAUTHORIZED,
        };
        return (status, json!({ "error": e.to_string() }));
    }
    let n: Notification = match serde_json::from_slice(body) {
        Ok(n) => n,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("notification does not parse: {e}") }),
            )
        }
    };
    if let Some(r) = &n.record {
        if r.id != n.site || r.revision != n.revision {
            return (
                StatusCode::BAD_REQUEST,
                json!({ "error": "the record's id and revision must match the notification's" }),
            );
        }
    }
    let applied = resolver.apply(&n.site, n.revision, n.record.clone()).await;
    let mut preloaded = false;
    if applied {
        if let Some(site) = &n.record {
            preloaded = tokio::time::timeout(PRELOAD_TIMEOUT, preload(resolver, data, site))
                .await
                .unwrap_or(false);
        }
    }
    let lag_ms = if n.changed_ms > 0 {
        Some(now.saturating_mul(1000).saturating_sub(n.changed_ms))
    } else {
        None
    };
    tracing::info!(site = %n.site, revision = n.revision, applied, preloaded, lag_ms, "notification");
    (
        StatusCode::OK,
        json!({ "applied": applied, "site": n.site, "revision": n.revision, "preloaded": preloaded }),
    )
}

/// Loads the active deployment's manifest and `index.html` (every coding) into the cache.
async fn preload(resolver: &Resolver, data: &DataPath, site: &Site) -> bool {
    let Some(deployment) = &site.active else {
        return false;
    };
    let manifest = match resolver.manifest(&site.id, deployment).await {
        Ok((m, _)) => m,
        Err(e) => {
            tracing::warn!(site = %site.id, error = %e, "preload: manifest unavailable");
            return false;
        }
    };
    let Some(index) = manifest.manifest.file("/index.html") else {
        return true;
    };
    let mut ok = true;
    let variants = std::iter::once((None, index.size))
        .chain(index.encodings.iter().map(|(e, s)| (Some(*e), *s)));
    for (encoding, size) in variants {
        let key = keys::blob(&site.id, &index.hash, encoding);
        if let Err(e) = data.preload(&key, size).await {
            tracing::warn!(key, error = %e, "preload failed");
            ok = false;
        }
    }
    ok
}
