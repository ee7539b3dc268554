//! The Secrets Manager adapter of the secrets port, on moto: reading, caching, reading
//! again after a rotation, and the rotation steps of docs/deploy.md ("Rotating a
//! secret") with the values a signer and a verifier hold at each step.

use skyhost_meta::config::SdkConfigCell;
use skyhost_meta::secrets::{matches_any, Secret, SecretError, SecretsManagerSource};
use skyhost_testkit::{aws, unique};
use std::time::Duration;

async fn client() -> aws_sdk_secretsmanager::Client {
    skyhost_meta::config::secretsmanager(&aws("us-west-2").await)
}

/// A new secret holding `value`; its name.
async fn create(value: &str) -> String {
    let name = unique("skyhost/test");
    client()
        .await
        .create_secret()
        .name(&name)
        .secret_string(value)
        .send()
        .await
        .expect("create the secret on moto");
    name
}

/// `put-secret-value`: a new version, current from now on; its version id.
async fn put(name: &str, value: &str) -> String {
    client()
        .await
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .expect("put a secret value")
        .version_id()
        .expect("a version id")
        .to_owned()
}

fn strings(values: &[Vec<u8>]) -> Vec<String> {
    values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// A cache over the secret that re-reads after `refresh`, and after failures at most
/// every 200 ms.
fn cached(name: &str, refresh: Duration) -> Secret {
    Secret::with_timing(
        SecretsManagerSource::deferred(SdkConfigCell::load("us-west-2"), name),
        refresh,
        Duration::from_millis(200),
    )
}

#[tokio::test]
async fn reads_the_current_then_the_previous_version() {
    let name = create("one, two").await;
    let s = cached(&name, Duration::from_secs(300));
    assert_eq!(strings(&s.values().await.unwrap()), ["one", "two"]);
    put(&name, "three").await;
    // The previous version stays accepted after a rotation; no value twice.
    let fresh = Secret::secrets_manager(SdkConfigCell::load("us-west-2"), &name);
    assert_eq!(
        strings(&fresh.values().await.unwrap()),
        ["three", "one", "two"]
    );
    put(&name, "four,three").await;
    let fresh = Secret::secrets_manager(SdkConfigCell::load("us-west-2"), &name);
    assert_eq!(strings(&fresh.values().await.unwrap()), ["four", "three"]);
}

#[tokio::test]
async fn a_missing_secret_is_a_clear_error() {
    let name = unique("skyhost/absent");
    let s = Secret::secrets_manager(SdkConfigCell::load("us-west-2"), &name);
    let err = s.values().await.unwrap_err();
    assert!(matches!(err, SecretError::Unavailable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&name), "{text}");
    assert!(text.contains("ResourceNotFound"), "{text}");
    let empty = create(" , ").await;
    let err = Secret::secrets_manager(SdkConfigCell::load("us-west-2"), &empty)
        .values()
        .await
        .unwrap_err();
    assert_eq!(err, SecretError::Empty(empty));
}

#[tokio::test]
async fn values_are_cached_until_the_refresh_interval() {
    let name = create("old").await;
    let s = cached(&name, Duration::from_millis(600));
    let first = s.values().await.unwrap();
    assert_eq!(strings(&first), ["old"]);
    put(&name, "new").await;
    // Within the interval the cache answers, without reading.
    assert_eq!(strings(&s.values().await.unwrap()), ["old"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(strings(&s.values().await.unwrap()), ["new", "old"]);
}

#[tokio::test]
async fn a_failed_verification_reads_the_rotated_values_at_once() {
    let name = create("old").await;
    let s = cached(&name, Duration::from_secs(300));
    let seen = s.values().await.unwrap();
    put(&name, "new").await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    // A signer already on the new value: the verifier's cached values refuse it, and
    // the re-read that failure asks for accepts it.
    assert!(!matches_any(&seen, b"new"));
    let now = s.reread_after_failure(&seen).await.expect("new values");
    assert!(matches_any(&now, b"new") && matches_any(&now, b"old"));
    // Forged values right after: no new values, and no read either (rate limited).
    assert!(s.reread_after_failure(&now).await.is_none());
}

/// docs/deploy.md, "Rotating a secret": the steps an operator runs, and what the
/// signer (replicator, CloudFront) sends and the verifiers (origins) accept after each.
#[tokio::test]
async fn the_documented_rotation_takes_effect() {
    let name = create("v1").await;
    let origin = cached(&name, Duration::from_millis(500));
    let replicator = cached(&name, Duration::from_millis(500));
    let first = |v: &[Vec<u8>]| String::from_utf8_lossy(&v[0]).into_owned();
    assert_eq!(first(&replicator.values().await.unwrap()), "v1");
    assert!(matches_any(&origin.values().await.unwrap(), b"v1"));

    // Step 1: put the new value; its version id pins CloudFront's header in step 2.
    let v2 = put(&name, "v2").await;
    assert!(!v2.is_empty());
    // Until the caches refresh, the old value still signs and verifies.
    assert!(matches_any(&origin.values().await.unwrap(), b"v1"));

    // Step 2: within the refresh interval every function reads the new version; the
    // signer sends the new value, and the old one is still accepted.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(first(&replicator.values().await.unwrap()), "v2");
    let accepted = origin.values().await.unwrap();
    assert!(matches_any(&accepted, b"v2") && matches_any(&accepted, b"v1"));
    // CloudFront's reference names the version: it resolves to the new value alone.
    let pinned = client()
        .await
        .get_secret_value()
        .secret_id(&name)
        .version_id(&v2)
        .send()
        .await
        .unwrap();
    assert_eq!(pinned.secret_string(), Some("v2"));

    // Step 3: retire the old value by taking the AWSPREVIOUS label off it.
    let previous = client()
        .await
        .list_secret_version_ids()
        .secret_id(&name)
        .send()
        .await
        .unwrap()
        .versions()
        .iter()
        .find(|v| v.version_stages().iter().any(|s| s == "AWSPREVIOUS"))
        .and_then(|v| v.version_id().map(str::to_owned))
        .expect("a previous version");
    client()
        .await
        .update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSPREVIOUS")
        .remove_from_version_id(&previous)
        .send()
        .await
        .expect("remove the AWSPREVIOUS label");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let accepted = origin.values().await.unwrap();
    assert!(matches_any(&accepted, b"v2"));
    assert!(!matches_any(&accepted, b"v1"), "{:?}", strings(&accepted));
}
