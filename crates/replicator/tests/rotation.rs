//! Rotating the notify secret on moto's Secrets Manager, as docs/deploy.md says, while the
//! replicator's notifier and an origin each hold the secret in their own cache: at no
//! step is a notification refused for good. A side that meets a value it does not know
//! (the origin a newer signature, the notifier a 401 for a retired value) reads the
//! secret again and succeeds.
//!
//! Run with `make test`: a missing moto server fails this test, it never skips it.

use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::config::SdkConfigCell;
use skyhost_meta::notify::{HttpNotifier, Notification, Notifier};
use skyhost_meta::secrets::{Secret, SecretsManagerSource};
use skyhost_meta::store::sqlite::SqliteStore;
use skyhost_meta::SiteId;
use skyhost_origin::{Origin, OriginConfig};
use std::sync::Arc;
use std::time::Duration;

const REGION: &str = "us-west-2";

async fn secrets() -> aws_sdk_secretsmanager::Client {
    skyhost_meta::config::secretsmanager(&skyhost_testkit::aws(REGION).await)
}

/// A cache of the secret that only a failure (or an hour) makes read again.
fn cached(name: &str) -> Secret {
    Secret::with_timing(
        SecretsManagerSource::deferred(SdkConfigCell::load(REGION), name),
        Duration::from_secs(3600),
        Duration::ZERO,
    )
}

/// An origin verifying notifications against `secret`, on a loopback port; its base URL.
async fn origin(secret: Secret) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = OriginConfig::new(REGION, REGION);
    config.notify_secret = secret;
    let origin = Arc::new(Origin::new(
        config,
        Arc::new(SqliteStore::in_memory(REGION).unwrap()),
        Arc::new(skyhost_meta::blob::fs::FsBlobStore::open(dir.path(), "b", REGION).unwrap()),
        None,
        Arc::new(MemoryCache::new(1 << 20)),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _dir = dir;
        let _ = skyhost_origin::server::serve(listener, origin, std::future::pending()).await;
    });
    base
}

#[tokio::test]
async fn the_documented_rotation_never_loses_a_notification() {
    let name = skyhost_testkit::unique("skyhost/notify");
    let sm = secrets().await;
    sm.create_secret()
        .name(&name)
        .secret_string("v1")
        .send()
        .await
        .unwrap();
    let base = origin(cached(&name)).await;
    let http = skyhost_meta::tls::http_client()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let n = Notification {
        site: SiteId::parse("rotating").unwrap(),
        revision: 1,
        record: None,
        changed_ms: 0,
    };
    let stale_signer = HttpNotifier::with_secret(http.clone(), cached(&name));
    stale_signer.notify(&base, &n).await.expect("v1 everywhere");

    // Step 1: put the new value. Signers still on the old one are accepted.
    sm.put_secret_value()
        .secret_id(&name)
        .secret_string("v2")
        .send()
        .await
        .unwrap();
    stale_signer.notify(&base, &n).await.expect("the old value");
    // A signer that read the new value: the origin has not, reads again, and accepts.
    let fresh_signer = HttpNotifier::with_secret(http.clone(), cached(&name));
    fresh_signer.notify(&base, &n).await.expect("the new value");

    // Step 3: retire the old value (the AWSPREVIOUS label off its version). A new origin
    // instance refuses it, and the signer still on it reads again and signs anew.
    let versions = sm
        .list_secret_version_ids()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    let previous = versions
        .versions()
        .iter()
        .find(|v| v.version_stages().iter().any(|s| s == "AWSPREVIOUS"))
        .and_then(|v| v.version_id())
        .expect("a previous version")
        .to_owned();
    sm.update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSPREVIOUS")
        .remove_from_version_id(previous)
        .send()
        .await
        .unwrap();
    let new_instance = origin(cached(&name)).await;
    let refused = HttpNotifier::new(http.clone(), b"v1".to_vec())
        .notify(&new_instance, &n)
        .await
        .unwrap_err();
    assert!(!refused.retryable(), "{refused}");
    stale_signer
        .notify(&new_instance, &n)
        .await
        .expect("re-signed with the new value");
}
