//! `skyhost deploy` failing partway, on moto behind a fault-injecting proxy: an upload
//! that fails after others went through, the manifest write, the deployment record, and
//! the activation losing its conditional write to a concurrent change. Each time the live
//! deployment and the site's revision are what they were (or what the concurrent change
//! made them), no half-made deployment is recorded, and a retry succeeds.

mod common;

use skyhost_cli::activate::{update_site, Change};
use skyhost_cli::backend::Backend;
use skyhost_cli::deploy::{deploy, DeployOptions};
use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::store::dynamodb::DynamoStore;
use skyhost_meta::{keys, Domain, Site, SiteId};
use skyhost_testkit::fault_proxy::{Fault, FaultProxy, Seen};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const REGION: &str = "us-west-2";

/// The same table and bucket reached directly and through the proxy.
struct Setup {
    proxy: FaultProxy,
    /// Through the proxy: what the deploy uses.
    faulty: Backend,
    /// Straight to moto: what the test checks with, and the concurrent writer.
    direct: Backend,
    site: SiteId,
}

async fn setup() -> Setup {
    let table = skyhost_testkit::dynamo(REGION).await;
    let bucket = skyhost_testkit::s3(REGION).await;
    let proxy = FaultProxy::start(&skyhost_testkit::moto_endpoint()).await;
    let direct_conf = skyhost_testkit::aws(REGION).await;
    let faulty = common::one_region(
        REGION,
        DynamoStore::new(proxy.dynamodb(&direct_conf), table.table()),
        S3BlobStore::new(proxy.s3(&direct_conf), bucket.bucket()),
    );
    let direct = common::one_region(
        REGION,
        DynamoStore::new(skyhost_meta::config::dynamodb(&direct_conf), table.table()),
        S3BlobStore::new(skyhost_meta::config::s3(&direct_conf), bucket.bucket()),
    );
    Setup {
        proxy,
        faulty,
        direct,
        site: SiteId::parse("shop").expect("a valid site name"),
    }
}

fn opts(dir: &Path) -> DeployOptions {
    DeployOptions {
        dir: dir.to_owned(),
        site: SiteId::parse("shop").unwrap(),
        domains: vec![Domain::parse("shop.example").unwrap()],
        message: None,
        activate: true,
        wait_replicas: false,
        wait_timeout: Duration::from_secs(1),
        quiet: true,
        include_hidden: false,
    }
}

/// Adds `n` files of new content, so the next deploy has that many blobs to upload.
fn change_files(dir: &Path, tag: &str, n: usize) {
    for i in 0..n {
        std::fs::write(
            dir.join(format!("new-{tag}-{i}.txt")),
            format!("{tag} {i} {}", "x".repeat(i)),
        )
        .unwrap();
    }
}

impl Setup {
    async fn site(&self) -> Site {
        self.direct.meta.site(&self.site).await.unwrap().unwrap()
    }

    async fn deployment_count(&self) -> usize {
        self.direct
            .meta
            .deployments(&self.site)
            .await
            .unwrap()
            .len()
    }

    async fn manifest_count(&self) -> usize {
        let prefix = keys::manifests_prefix(&self.site);
        self.direct
            .primary
            .bucket
            .list(&prefix)
            .await
            .unwrap()
            .len()
    }

    /// A first deploy, with no fault: the live deployment the failures must leave alone.
    async fn first_deploy(&self, dir: &Path) -> Site {
        let r = deploy(&self.faulty, &opts(dir)).await.unwrap();
        let s = r.site.unwrap();
        assert_eq!(s.active.as_ref(), Some(&r.deployment));
        s
    }

    /// After a failed deploy: the site is `before`, no deployment or manifest was added
    /// beyond `records` and `manifests`; then a deploy without faults goes live.
    async fn untouched_then_retry(
        &self,
        dir: &Path,
        before: &Site,
        records: usize,
        manifests: usize,
    ) {
        let now = self.site().await;
        assert_eq!(now.active, before.active, "the live deployment changed");
        assert_eq!(now.revision, before.revision, "the revision changed");
        assert_eq!(now.domains, before.domains);
        assert_eq!(
            self.deployment_count().await,
            records,
            "a deployment was recorded"
        );
        assert_eq!(
            self.manifest_count().await,
            manifests,
            "a manifest was written"
        );

        self.proxy.clear();
        let r = deploy(&self.faulty, &opts(dir)).await.unwrap();
        let after = self.site().await;
        assert_eq!(after.active.as_ref(), Some(&r.deployment));
        assert_eq!(after.revision, before.revision + 1);
        let m = common::manifest(&self.direct, &self.site, &r.deployment).await;
        for k in m.blob_keys() {
            assert!(
                self.direct.primary.bucket.head(&k).await.unwrap().is_some(),
                "{k} missing after the retry"
            );
        }
    }
}

fn blob_put(s: &Seen<'_>) -> bool {
    s.method == "PUT" && s.path.contains("/blobs/")
}

#[tokio::test]
async fn an_upload_failing_partway_leaves_the_live_site_and_a_retry_succeeds() {
    let t = setup().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::example_site(tmp.path());
    let before = t.first_deploy(&dir).await;
    let (records, manifests) = (t.deployment_count().await, t.manifest_count().await);

    change_files(&dir, "a", 12);
    // Two uploads go through, every later one fails (the SDK's retries too).
    t.proxy
        .fail_from("uploads", 3, Fault::Status(500), blob_put);
    let err = deploy(&t.faulty, &opts(&dir)).await.unwrap_err();
    let (seen, faulted) = t.proxy.counts("uploads");
    assert!(
        seen >= 3 && faulted >= 1 && seen - faulted == 2,
        "{seen} {faulted}"
    );
    assert!(
        format!("{err:#}").contains("500")
            || format!("{err:#}").to_lowercase().contains("internal"),
        "{err:#}"
    );

    t.untouched_then_retry(&dir, &before, records, manifests)
        .await;
}

#[tokio::test]
async fn a_dropped_connection_during_uploads_is_a_failure_too() {
    let t = setup().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::example_site(tmp.path());
    let before = t.first_deploy(&dir).await;
    let (records, manifests) = (t.deployment_count().await, t.manifest_count().await);

    change_files(&dir, "b", 6);
    t.proxy.fail_from("uploads", 4, Fault::Drop, blob_put);
    deploy(&t.faulty, &opts(&dir)).await.unwrap_err();
    assert!(t.proxy.counts("uploads").1 >= 1);

    t.untouched_then_retry(&dir, &before, records, manifests)
        .await;
}

#[tokio::test]
async fn a_failed_manifest_write_leaves_the_live_site_and_a_retry_succeeds() {
    let t = setup().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::example_site(tmp.path());
    let before = t.first_deploy(&dir).await;
    let (records, manifests) = (t.deployment_count().await, t.manifest_count().await);

    change_files(&dir, "c", 3);
    t.proxy.fail_from("manifest", 1, Fault::Status(503), |s| {
        s.method == "PUT" && s.path.contains("/manifests/")
    });
    deploy(&t.faulty, &opts(&dir)).await.unwrap_err();
    assert!(
        t.proxy.counts("manifest").1 >= 1,
        "the manifest write was never tried"
    );

    t.untouched_then_retry(&dir, &before, records, manifests)
        .await;
}

#[tokio::test]
async fn a_failed_deployment_record_leaves_the_live_site_and_a_retry_succeeds() {
    let t = setup().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::example_site(tmp.path());
    let before = t.first_deploy(&dir).await;
    let records = t.deployment_count().await;

    change_files(&dir, "d", 3);
    t.proxy.fail_from("record", 1, Fault::Status(500), |s| {
        s.target.ends_with(".PutItem") && s.body_has("DEPLOY#")
    });
    deploy(&t.faulty, &opts(&dir)).await.unwrap_err();
    assert!(
        t.proxy.counts("record").1 >= 1,
        "the deployment record was never written"
    );
    // The manifest is written first, and stays: immutable, unreferenced until a
    // deployment record names it, and collected as garbage later.
    let manifests = t.manifest_count().await;

    t.untouched_then_retry(&dir, &before, records, manifests)
        .await;
}

/// Each of the deploy's site writes first lets a concurrent change of the site win.
fn rival_on_every_site_write(t: &Setup) {
    let meta = t.direct.meta.clone();
    let site = t.site.clone();
    let rival = Arc::new(move || {
        let meta = meta.clone();
        let site = site.clone();
        Box::pin(async move {
            let domain = [Domain::parse("rival.example").unwrap()];
            let change = Change {
                activate: None,
                add_domains: &domain,
                remove_domains: &[],
            };
            update_site(meta.as_ref(), &site, change)
                .await
                .expect("the concurrent change, straight to moto");
        }) as futures::future::BoxFuture<'static, ()>
    });
    t.proxy
        .fail_from("activation", 1, Fault::Before(rival), |s| {
            s.target.ends_with(".TransactWriteItems") && s.body_has("SITE#shop")
        });
}

#[tokio::test]
async fn an_activation_losing_to_a_concurrent_change_leaves_it_and_a_retry_succeeds() {
    let t = setup().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::example_site(tmp.path());
    let first = t.first_deploy(&dir).await;

    // Once: the activation reads the site again and applies on top of the rival's change,
    // keeping the rival's domain.
    change_files(&dir, "e", 2);
    rival_once(&t);
    let once = deploy(&t.faulty, &opts(&dir)).await.unwrap();
    let s = t.site().await;
    assert_eq!(s.active.as_ref(), Some(&once.deployment));
    assert_eq!(
        s.revision,
        first.revision + 2,
        "the rival's write, then the deploy's"
    );
    assert!(
        s.domains.iter().any(|d| d.as_str() == "rival.example"),
        "the rival's change was lost: {s:?}"
    );

    // Every time: the deploy gives up, saying why, and the rival's record stands.
    t.proxy.clear();
    change_files(&dir, "f", 2);
    let records = t.deployment_count().await;
    rival_on_every_site_write(&t);
    let err = format!("{:#}", deploy(&t.faulty, &opts(&dir)).await.unwrap_err());
    assert!(err.contains("changed by someone else"), "{err}");
    let (seen, _) = t.proxy.counts("activation");
    assert!(seen >= 2, "the activation was tried {seen} time(s)");
    let rivals = t.site().await;
    assert_eq!(rivals.active, s.active, "the losing deploy went live");
    assert_eq!(
        rivals.revision,
        s.revision + seen as u64,
        "one revision per rival write"
    );
    // The losing deployment is recorded (Ready, not live): it can still be promoted.
    assert_eq!(t.deployment_count().await, records + 1);

    let manifests = t.manifest_count().await;
    t.untouched_then_retry(&dir, &rivals, records + 1, manifests)
        .await;
}

/// The rival wins the deploy's first site write only.
fn rival_once(t: &Setup) {
    let meta = t.direct.meta.clone();
    let site = t.site.clone();
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rival = Arc::new(move || {
        let meta = meta.clone();
        let site = site.clone();
        let first = !fired.swap(true, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if first {
                let domain = [Domain::parse("rival.example").unwrap()];
                let change = Change {
                    activate: None,
                    add_domains: &domain,
                    remove_domains: &[],
                };
                update_site(meta.as_ref(), &site, change).await.unwrap();
            }
        }) as futures::future::BoxFuture<'static, ()>
    });
    t.proxy
        .fail_from("activation", 1, Fault::Before(rival), |s| {
            s.target.ends_with(".TransactWriteItems") && s.body_has("SITE#shop")
        });
}
