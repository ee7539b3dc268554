//! `/_skyhost/notify` on moto and redis-server: a newer signed record switches what is
//! served (and preloads it), while replays, lower revisions, forged and stale signatures
//! change nothing; removed domains and sites stop resolving.

mod common;

use common::*;
use http::{Method, StatusCode};
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::redis::RedisCache;
use skyhost_meta::cache::{Cache, Tiered};
use skyhost_meta::store::MetaStore;
use skyhost_meta::{Domain, Site};
use skyhost_origin::{Origin, OriginConfig};
use std::sync::Arc;

const REGION: &str = "us-west-2";

async fn notify(
    c: &reqwest::Client,
    base: &str,
    body: Vec<u8>,
    signature: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut req = c
        .post(format!("{base}/_skyhost/notify"))
        .header("host", "us-west-2.origin.test")
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = signature {
        req = req.header("x-skyhost-signature", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let v = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, v)
}

/// A fresh table and bucket on moto, and a site name with its host.
async fn on_moto(prefix: &str) -> (Arc<dyn MetaStore>, Arc<dyn BlobStore>, String, String) {
    let site = unique(prefix);
    let host = format!("{site}.test");
    (
        Arc::new(dynamo(REGION).await),
        Arc::new(s3(REGION).await),
        site,
        host,
    )
}

/// An origin of the primary region over `meta` and `bucket`.
fn origin_over(
    config: OriginConfig,
    meta: &Arc<dyn MetaStore>,
    bucket: &Arc<dyn BlobStore>,
    cache: Arc<dyn Cache>,
) -> Arc<Origin> {
    Arc::new(Origin::new(
        config,
        meta.clone(),
        bucket.clone(),
        None,
        cache,
    ))
}

#[tokio::test]
async fn notifications_switch_deployments_only_forward() {
    let (meta, bucket, site, host) = on_moto("nt").await;
    let a = deploy(
        meta.as_ref(),
        bucket.as_ref(),
        &site,
        &[&host],
        &[file("/index.html", "version A", "text/html")],
        rules(None, None, None),
    )
    .await;
    let b = deploy_inactive(
        meta.as_ref(),
        bucket.as_ref(),
        &site,
        &[&host],
        &[file("/index.html", "version B", "text/html")],
    )
    .await;

    let mut config = config();
    config.notify_secret =
        skyhost_meta::secrets::Secret::fixed(vec![b"new-secret".to_vec(), b"old-secret".to_vec()]);
    let redis = RedisCache::new(&redis_url())
        .unwrap()
        .with_prefix(&format!("{}:", unique("nt")));
    let cache: Arc<dyn Cache> = Arc::new(Tiered::new(
        MemoryCache::new(config.cache_bytes),
        Some(redis),
    ));
    let origin = origin_over(config, &meta, &bucket, cache);
    let server = start(origin.clone()).await;
    let c = client();
    let page = |h: String| {
        let c = c.clone();
        let base = server.base.clone();
        async move { get(&c, &base, &h, "/").await }
    };
    assert_eq!(page(host.clone()).await.text(), "version A");

    // The CLI activates B in the table; this region still serves its cached record.
    let activated = meta
        .activate(&a.site.id, b.id(), a.site.revision, skyhost_meta::now())
        .await
        .unwrap();
    assert_eq!(page(host.clone()).await.text(), "version A");

    let now = skyhost_meta::now();
    let (body, sig) = signed_notification(
        b"old-secret",
        &activated.id,
        activated.revision,
        Some(&activated),
        now,
    );

    // Forged, tampered, stale and unsigned notifications are refused and change nothing.
    let forged = skyhost_meta::notify::sign(b"guessed", now, &body);
    let stale = skyhost_meta::notify::sign(b"new-secret", now - 301, &body);
    let mut tampered = body.clone();
    let at = tampered.len() - 2;
    tampered[at] = b' ';
    for (what, b, s) in [
        ("forged", body.clone(), Some(forged.as_str())),
        ("stale", body.clone(), Some(stale.as_str())),
        ("tampered", tampered, Some(sig.as_str())),
        ("unsigned", body.clone(), None),
        ("garbage header", body.clone(), Some("t=abc,v1=zz")),
    ] {
        let (status, v) = notify(&c, &server.base, b, s).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(v["error"].is_string(), "{what}: {v}");
        assert_eq!(page(host.clone()).await.text(), "version A", "{what}");
    }

    // Signed with the previous secret (rotation): applied, and B is preloaded.
    let (status, v) = notify(&c, &server.base, body.clone(), Some(&sig)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["applied"], true, "{v}");
    assert_eq!(v["preloaded"], true, "{v}");
    let g = page(host.clone()).await;
    assert_eq!(g.text(), "version B");
    assert_eq!(g.header("x-skyhost-deployment"), Some(b.id().as_str()));
    assert_eq!(g.cache(), "hit");

    // A replay and an older revision change nothing.
    let (status, v) = notify(&c, &server.base, body.clone(), Some(&sig)).await;
    assert_eq!(
        (status, v["applied"].clone()),
        (StatusCode::OK, false.into())
    );
    let mut older = a.site.clone();
    older.active = Some(a.id().clone());
    let (old_body, old_sig) =
        signed_notification(b"new-secret", &older.id, older.revision, Some(&older), now);
    let (status, v) = notify(&c, &server.base, old_body, Some(&old_sig)).await;
    assert_eq!(
        (status, v["applied"].clone()),
        (StatusCode::OK, false.into())
    );
    assert_eq!(page(host.clone()).await.text(), "version B");

    // Malformed but signed: 400.
    let junk = b"{\"site\":1}".to_vec();
    let junk_sig = skyhost_meta::notify::sign(b"new-secret", now, &junk);
    let (status, _) = notify(&c, &server.base, junk, Some(&junk_sig)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The domain moves: the old host stops resolving at once, the new one resolves.
    let new_host = format!("new-{site}.test");
    let mut moved = activated.next(now);
    moved.domains = vec![Domain::parse(&new_host).unwrap()];
    meta.put_site(Some(&activated), &moved).await.unwrap();
    let (body, sig) =
        signed_notification(b"new-secret", &moved.id, moved.revision, Some(&moved), now);
    let (status, v) = notify(&c, &server.base, body, Some(&sig)).await;
    assert_eq!(
        (status, v["applied"].clone()),
        (StatusCode::OK, true.into())
    );
    assert_eq!(page(host.clone()).await.status, StatusCode::NOT_FOUND);
    assert_eq!(page(new_host.clone()).await.text(), "version B");

    // The site is removed: its tombstone's revision is above the live record's, so a
    // region that holds that record (this one) accepts the removal.
    let removed_at = meta.delete_site(&moved, now).await.unwrap();
    assert!(
        removed_at > moved.revision,
        "{removed_at} > {}",
        moved.revision
    );
    let (body, sig) = signed_notification(b"new-secret", &moved.id, removed_at, None::<&Site>, now);
    let (status, v) = notify(&c, &server.base, body, Some(&sig)).await;
    assert_eq!(
        (status, v["applied"].clone()),
        (StatusCode::OK, true.into())
    );
    assert_eq!(page(new_host.clone()).await.status, StatusCode::NOT_FOUND);
    let g = call(&origin, Method::GET, &new_host, "/", &[]).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn cold_instance_refuses_a_stale_notification() {
    // An instance that has never seen the site must not install an old record: it reads
    // the current one first.
    let (meta, bucket, site, host) = on_moto("cold").await;
    let a = deploy(
        meta.as_ref(),
        bucket.as_ref(),
        &site,
        &[&host],
        &[file("/index.html", "A", "text/html")],
        rules(None, None, None),
    )
    .await;
    let b = deploy(
        meta.as_ref(),
        bucket.as_ref(),
        &site,
        &[&host],
        &[file("/index.html", "B", "text/html")],
        rules(None, None, None),
    )
    .await;
    let mut config = config();
    config.notify_secret = skyhost_meta::secrets::Secret::fixed(vec![b"s".to_vec()]);
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(config.cache_bytes));
    let origin = origin_over(config, &meta, &bucket, cache);
    let server = start(origin).await;
    let c = client();
    let now = skyhost_meta::now();
    let (body, sig) = signed_notification(b"s", &a.site.id, a.site.revision, Some(&a.site), now);
    let (status, v) = notify(&c, &server.base, body, Some(&sig)).await;
    assert_eq!(
        (status, v["applied"].clone()),
        (StatusCode::OK, false.into())
    );
    assert_eq!(get(&c, &server.base, &host, "/").await.text(), "B");
    // The current record itself counts as held.
    let (body, sig) = signed_notification(b"s", &b.site.id, b.site.revision, Some(&b.site), now);
    let fresh = Arc::new(Origin::new(
        {
            let mut c = OriginConfig::new(REGION, REGION);
            c.notify_secret = skyhost_meta::secrets::Secret::fixed(vec![b"s".to_vec()]);
            c
        },
        meta.clone(),
        bucket.clone(),
        None,
        Arc::new(MemoryCache::new(1 << 20)),
    ));
    let g = {
        let req = http::Request::builder()
            .method(Method::POST)
            .uri("/_skyhost/notify")
            .header("host", "x.test")
            .header("x-skyhost-signature", sig)
            .body(bytes::Bytes::from(body))
            .unwrap();
        fresh.handle(req, None).await
    };
    let v: serde_json::Value =
        serde_json::from_slice(&g.into_body().collect().await.unwrap()).unwrap();
    assert_eq!(v["applied"], true, "{v}");
    server.stop().await;
}

/// An origin instance of `REGION` with nothing cached, accepting secret `s`.
fn cold_origin(meta: &Arc<dyn MetaStore>, bucket: &Arc<dyn BlobStore>) -> Arc<Origin> {
    let mut config = config();
    config.notify_secret = skyhost_meta::secrets::Secret::fixed(vec![b"s".to_vec()]);
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(config.cache_bytes));
    origin_over(config, meta, bucket, cache)
}

#[tokio::test]
async fn a_replayed_notification_cannot_bring_a_removed_site_back() {
    let (meta, bucket, site, host) = on_moto("replay").await;
    let a = deploy(
        meta.as_ref(),
        bucket.as_ref(),
        &site,
        &[&host],
        &[file("/index.html", "A", "text/html")],
        rules(None, None, None),
    )
    .await;
    let now = skyhost_meta::now();
    // Captured before the removal: validly signed, and still within the 300 s window.
    let (old_body, old_sig) =
        signed_notification(b"s", &a.site.id, a.site.revision, Some(&a.site), now);
    let c = client();

    // A warm instance that serves the site, and a region that never heard of it.
    let warm = start(cold_origin(&meta, &bucket)).await;
    assert_eq!(get(&c, &warm.base, &host, "/").await.text(), "A");

    let removed_at = meta.delete_site(&a.site, now).await.unwrap();
    let (body, sig) = signed_notification(b"s", &a.site.id, removed_at, None::<&Site>, now);
    let (status, v) = notify(&c, &warm.base, body, Some(&sig)).await;
    assert_eq!(
        (status, v["applied"].clone()),
        (StatusCode::OK, true.into())
    );
    assert_eq!(
        get(&c, &warm.base, &host, "/").await.status,
        StatusCode::NOT_FOUND
    );
    // The old notification replayed to the warm instance changes nothing.
    let (_, v) = notify(&c, &warm.base, old_body.clone(), Some(&old_sig)).await;
    assert_eq!(v["applied"], false, "{v}");
    assert_eq!(
        get(&c, &warm.base, &host, "/").await.status,
        StatusCode::NOT_FOUND
    );

    // Replayed to a cold instance, after the removal: refused, the site stays gone.
    let cold = start(cold_origin(&meta, &bucket)).await;
    assert_eq!(
        get(&c, &cold.base, &host, "/").await.status,
        StatusCode::NOT_FOUND
    );
    let (status, v) = notify(&c, &cold.base, old_body.clone(), Some(&old_sig)).await;
    assert_eq!(
        (status, v["applied"].clone()),
        (StatusCode::OK, false.into()),
        "{v}"
    );
    assert_eq!(
        get(&c, &cold.base, &host, "/").await.status,
        StatusCode::NOT_FOUND
    );
    // Replayed first thing to another cold instance, before any visitor: refused too.
    let colder = start(cold_origin(&meta, &bucket)).await;
    let (_, v) = notify(&c, &colder.base, old_body, Some(&old_sig)).await;
    assert_eq!(v["applied"], false, "{v}");
    assert_eq!(
        get(&c, &colder.base, &host, "/").await.status,
        StatusCode::NOT_FOUND
    );

    // Created again under the same name: its revision carries on past the removal, so
    // every instance takes it, notified or not.
    let again = deploy(
        meta.as_ref(),
        bucket.as_ref(),
        &site,
        &[&host],
        &[file("/index.html", "again", "text/html")],
        rules(None, None, None),
    )
    .await;
    assert!(again.site.revision > removed_at);
    let (body, sig) = signed_notification(
        b"s",
        &again.site.id,
        again.site.revision,
        Some(&again.site),
        now,
    );
    let (_, v) = notify(&c, &warm.base, body, Some(&sig)).await;
    assert_eq!(v["applied"], true, "{v}");
    assert_eq!(get(&c, &warm.base, &host, "/").await.text(), "again");
    for s in [warm, cold, colder] {
        s.stop().await;
    }
}

#[tokio::test]
async fn an_instance_that_missed_the_removal_converges_within_a_second() {
    let (meta, bucket, site, host) = on_moto("missed").await;
    let a = deploy(
        meta.as_ref(),
        bucket.as_ref(),
        &site,
        &[&host],
        &[file("/index.html", "A", "text/html")],
        rules(None, None, None),
    )
    .await;
    let c = client();
    let warm = start(cold_origin(&meta, &bucket)).await;
    assert_eq!(get(&c, &warm.base, &host, "/").await.text(), "A");
    meta.delete_site(&a.site, skyhost_meta::now())
        .await
        .unwrap();
    // No notification: the generation item names the removal.
    let started = std::time::Instant::now();
    loop {
        if get(&c, &warm.base, &host, "/").await.status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_millis(1500),
            "still served {:?} after the removal",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    warm.stop().await;
}
