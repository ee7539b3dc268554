//! `skyhost deploy`, `rollback` and `verify` against the AWS adapters on a moto server:
//! the same code local mode runs, on DynamoDB and S3.

mod common;

use skyhost_cli::deploy::{deploy, DeployOptions};
use skyhost_meta::{Manifest, SiteId};
use std::path::Path;
use std::time::Duration;

fn opts(dir: &Path) -> DeployOptions {
    DeployOptions {
        dir: dir.to_owned(),
        site: SiteId::parse("shop").unwrap(),
        domains: vec![skyhost_meta::Domain::parse("shop.example").unwrap()],
        message: Some("test".into()),
        activate: true,
        wait_replicas: false,
        wait_timeout: Duration::from_secs(1),
        quiet: true,
        include_hidden: false,
    }
}

#[tokio::test]
async fn deploys_incrementally_and_atomically() {
    let b = common::three_regions(None).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::example_site(tmp.path());
    let site = SiteId::parse("shop").unwrap();

    let first = deploy(&b, &opts(&dir)).await.unwrap();
    assert_eq!(
        (first.files, first.files_uploaded, first.files_reused),
        (10, 10, 0)
    );
    let s = first.site.clone().unwrap();
    assert_eq!(s.active.as_ref(), Some(&first.deployment));
    assert_eq!(s.revision, 1);
    let m = common::manifest(&b, &site, &first.deployment).await;
    let index = m.file("/index.html").unwrap();
    assert_eq!(index.content_type, "text/html; charset=utf-8");
    assert!(!index.encodings.is_empty(), "HTML is precompressed");
    assert!(m.file("/_redirects").is_none(), "rule files are not served");
    assert!(!m.rules.redirects.is_empty());
    // Every blob the manifest names is in the primary bucket.
    for k in m.blob_keys() {
        assert!(b.primary.bucket.head(&k).await.unwrap().is_some(), "{k}");
    }

    // Nothing changed: nothing uploaded.
    let again = deploy(&b, &opts(&dir)).await.unwrap();
    assert_eq!((again.files_uploaded, again.uploaded), (0, 0), "{again:?}");
    assert_eq!(again.site.unwrap().revision, 2);

    // A bad rule fails the deploy with file, line and reason; nothing becomes visible.
    std::fs::write(dir.join("_redirects"), "/ok /fine 301\n/bad /x 999\n").unwrap();
    let err = deploy(&b, &opts(&dir)).await.unwrap_err().to_string();
    assert!(err.contains("_redirects:2:"), "{err}");
    assert!(err.contains("nothing was deployed"), "{err}");
    let now = b.meta.site(&site).await.unwrap().unwrap();
    assert_eq!(now.revision, 2);
    assert_eq!(b.meta.deployments(&site).await.unwrap().len(), 2);
}

#[tokio::test]
async fn basic_auth_passwords_never_stored_in_plain_text() {
    let b = common::three_regions(None).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::example_site(tmp.path());
    std::fs::write(
        dir.join("_headers"),
        "/private/*\n  Basic-Auth: alice:correct-horse-battery\n",
    )
    .unwrap();
    let r = deploy(&b, &opts(&dir)).await.unwrap();
    let shop = SiteId::parse("shop").unwrap();
    let text = common::manifest_text(&b, &shop, &r.deployment).await;
    let m: Manifest = serde_json::from_str(&text).unwrap();
    assert!(
        !text.contains("correct-horse-battery"),
        "plain password in the manifest"
    );
    assert!(text.contains("$argon2id$"), "argon2id hash stored");
    let rule = m.rules.auth_for("/private/x").expect("auth rule kept");
    use base64::Engine;
    let ok = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:correct-horse-battery")
    );
    assert!(matches!(
        rule.verify(Some(&ok)),
        skyhost_rules::AuthOutcome::Granted { .. }
    ));
}

#[tokio::test]
async fn verify_repair_then_wait_replicas_and_rollback() {
    let b = common::three_regions(None).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::example_site(tmp.path());
    let site = SiteId::parse("shop").unwrap();
    let first = deploy(&b, &opts(&dir)).await.unwrap();

    // No copier runs here: anti-entropy finds the replicas empty and repairs them.
    let gaps = skyhost_cli::verify::verify(&b, false).await.unwrap();
    assert_eq!(gaps.len(), 2, "both replicas lack the active deployment");
    assert!(gaps
        .iter()
        .all(|g| g.repaired == 0 && !g.missing.is_empty()));
    let fixed = skyhost_cli::verify::verify(&b, true).await.unwrap();
    assert!(fixed.iter().all(|g| g.repaired == g.missing.len()));
    assert!(skyhost_cli::verify::verify(&b, false)
        .await
        .unwrap()
        .is_empty());

    // --wait-replicas copies what the replicas lack itself, then activates.
    std::fs::write(dir.join("about.html"), "<h1>new about</h1>").unwrap();
    let mut o = opts(&dir);
    o.wait_replicas = true;
    let second = deploy(&b, &o).await.unwrap();
    assert_eq!(
        second.site.as_ref().unwrap().active.as_ref(),
        Some(&second.deployment)
    );
    let m = common::manifest(&b, &site, &second.deployment).await;
    for r in &b.replicas {
        for k in skyhost_cli::deploy::needed_keys(&m) {
            assert!(r.bucket.head(&k).await.unwrap().is_some(), "{} {k}", r.name);
        }
    }

    // A replica that cannot be written: the deploy gives up and stays inactive.
    let mut broken = b.clone();
    broken.replicas[0].bucket = std::sync::Arc::new(skyhost_meta::blob::s3::S3BlobStore::new(
        skyhost_meta::config::s3(&skyhost_testkit::aws(common::REGIONS[1]).await),
        skyhost_testkit::unique("no-such-bucket"),
    ));
    std::fs::write(dir.join("about.html"), "<h1>newer about</h1>").unwrap();
    let err = deploy(&broken, &o).await.unwrap_err().to_string();
    assert!(err.contains("NOT active"), "{err}");
    assert_eq!(
        b.meta.site(&site).await.unwrap().unwrap().active.as_ref(),
        Some(&second.deployment)
    );

    // Rollback without --to goes back to the one before.
    let s = skyhost_cli::rollback::rollback(&b, &site, None)
        .await
        .unwrap();
    assert_eq!(s.active.as_ref(), Some(&first.deployment));
    let err = skyhost_cli::rollback::rollback(&b, &site, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no deployment older"), "{err}");
}

// Hostile folders on S3, whose reuse check (S3's checksum or the verified `sha256`
// metadata) differs from the folder bucket's (hashing the object).

#[tokio::test]
async fn s3_reuses_a_blob_by_its_hash_never_by_size() {
    let b = common::three_regions(None).await;
    let tmp = tempfile::tempdir().unwrap();
    common::hostile::reuse_by_hash_not_size(&b, tmp.path()).await;
}

#[tokio::test]
async fn s3_same_size_edit_mid_deploy_stores_what_was_hashed() {
    let b = common::three_regions(None).await;
    let tmp = tempfile::tempdir().unwrap();
    common::hostile::same_size_edit_mid_deploy(&b, tmp.path()).await;
}

#[tokio::test]
async fn s3_dotfiles_and_special_files() {
    let b = common::three_regions(None).await;
    let tmp = tempfile::tempdir().unwrap();
    common::hostile::dotfiles(&b, tmp.path()).await;
    common::hostile::special_files(&b, tmp.path()).await;
    common::hostile::links_out(&b, tmp.path()).await;
}
