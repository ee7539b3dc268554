//! The lifecycle commands on the AWS adapters (DynamoDB and S3 on a moto server), where
//! their code differs from local mode: gc lists and deletes by object time in every
//! region's S3 bucket; promote's conditional write on DynamoDB loses to a concurrent
//! change (and is applied on top of it, or gives up); sites delete frees the domains in
//! the table and a site re-created under the name carries on above the tombstone;
//! preview URLs under the sites domain.

mod common;

use skyhost_cli::activate::{update_site, Change};
use skyhost_cli::backend::Backend;
use skyhost_cli::deploy::{deploy, DeployOptions};
use skyhost_cli::gc::{gc_at, GcOptions};
use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::store::dynamodb::DynamoStore;
use skyhost_meta::{keys, DeploymentId, Domain, SiteId};
use skyhost_testkit::fault_proxy::{Fault, FaultProxy};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn opts(dir: &Path, site: &str, domains: &[&str]) -> DeployOptions {
    DeployOptions {
        dir: dir.to_owned(),
        site: SiteId::parse(site).unwrap(),
        domains: domains.iter().map(|d| Domain::parse(d).unwrap()).collect(),
        message: None,
        activate: true,
        // Fills every replica bucket: no asset-copier runs here.
        wait_replicas: true,
        wait_timeout: Duration::from_secs(30),
        quiet: true,
        include_hidden: false,
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

/// Every region's objects: key → size.
async fn listing(b: &Backend) -> Vec<BTreeMap<String, u64>> {
    let mut out = Vec::new();
    for r in b.regions() {
        let objects = r.bucket.list("sites/").await.unwrap();
        out.push(objects.into_iter().map(|o| (o.key, o.size)).collect());
    }
    out
}

#[tokio::test]
async fn gc_on_s3_by_object_time_in_every_region() {
    let b = common::three_regions(Some("sites.example")).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let site = SiteId::parse("shop").unwrap();
    write(&dir, "index.html", "<h1>one</h1>\n");
    write(
        &dir,
        "only-one.txt",
        &"the first deployment's own\n".repeat(40),
    );
    let d1 = deploy(&b, &opts(&dir, "shop", &["shop.example"]))
        .await
        .unwrap();
    assert_eq!(
        d1.preview.as_deref(),
        Some(
            format!(
                "https://{}--shop.sites.example/",
                d1.deployment.as_str().to_ascii_lowercase()
            )
            .as_str()
        ),
        "previews fall back to the sites domain"
    );
    std::fs::remove_file(dir.join("only-one.txt")).unwrap();
    write(&dir, "index.html", "<h1>two</h1>\n");
    let d2 = deploy(&b, &opts(&dir, "shop", &[])).await.unwrap();
    let (m1, m2) = (
        common::manifest(&b, &site, &d1.deployment).await,
        common::manifest(&b, &site, &d2.deployment).await,
    );
    let start = listing(&b).await;
    assert!(start.iter().all(|r| r == &start[0]), "every bucket filled");

    // A deploy in flight, a few seconds later: its manifest (the live files and d1's own
    // file) is in every bucket, not activated, with no record.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let in_flight = DeploymentId::new(skyhost_meta::now());
    let mut m = m2.clone();
    m.deployment = in_flight.clone();
    m.files.insert(
        "/only-one.txt".into(),
        m1.file("/only-one.txt").unwrap().clone(),
    );
    let body = bytes::Bytes::from(serde_json::to_vec(&m).unwrap());
    for r in b.regions() {
        r.bucket
            .put_bytes(&keys::manifest(&site, &in_flight), body.clone(), None)
            .await
            .unwrap();
    }
    let written = skyhost_meta::now();

    // As if 58 s later with a grace period of 60 s: the deployments and their objects
    // are past it (written at least 3 s before), the manifest in flight is not.
    let grace = Duration::from_secs(60);
    let later = written + 58;
    let o = |dry_run| GcOptions {
        older_than: Duration::ZERO,
        keep: 0,
        grace,
        dry_run,
    };

    // Nothing is past the grace period right now.
    let now = gc_at(&b, &o(false), skyhost_meta::now(), |_| {})
        .await
        .unwrap();
    assert_eq!(now.objects, 0, "{now:?}");

    let before = listing(&b).await;
    let mut announced = None;
    let dry = gc_at(&b, &o(true), later, |r| announced = Some(r.objects))
        .await
        .unwrap();
    assert_eq!(announced, Some(dry.objects));
    assert!(dry.objects > 0);
    assert_eq!(listing(&b).await, before, "--dry-run deleted something");

    let mut announced = None;
    let r = gc_at(&b, &o(false), later, |r| {
        announced = Some((r.objects, r.bytes))
    })
    .await
    .unwrap();
    assert_eq!(
        announced,
        Some((r.objects, r.bytes)),
        "printed before deleting"
    );
    assert_eq!((r.objects, r.bytes), (dry.objects, dry.bytes));
    assert_eq!(r.deployments, vec![format!("shop/{}", d1.deployment)]);
    let after = listing(&b).await;
    let in_flight_keys = m.blob_keys();
    let own_d1: Vec<String> = m1
        .blob_keys()
        .into_iter()
        .filter(|k| !m2.blob_keys().contains(k))
        .collect();
    assert!(own_d1.iter().any(|k| !in_flight_keys.contains(k)));
    for (i, region) in common::REGIONS.iter().enumerate() {
        let lost: Vec<&String> = before[i]
            .keys()
            .filter(|k| !after[i].contains_key(*k))
            .collect();
        let f = &r.regions[i];
        assert_eq!(f.region, *region);
        assert_eq!(f.manifests + f.blobs, lost.len(), "{region}: {lost:?}");
        assert_eq!(
            f.bytes,
            lost.iter().map(|k| before[i][*k]).sum::<u64>(),
            "{region}"
        );
        assert!(lost.contains(&&keys::manifest(&site, &d1.deployment)));
        for k in &own_d1 {
            // d1's own blobs go, except those the deploy in flight names.
            assert_eq!(
                after[i].contains_key(k),
                in_flight_keys.contains(k),
                "{region}: {k}"
            );
        }
        for k in m2.blob_keys().iter().chain(&in_flight_keys) {
            assert!(after[i].contains_key(k), "{region}: {k} was taken");
        }
        assert!(after[i].contains_key(&keys::manifest(&site, &in_flight)));
    }
    let gaps = skyhost_cli::verify::verify(&b, false).await.unwrap();
    assert!(gaps.iter().all(|g| g.missing.is_empty()), "{gaps:?}");
    let records = b.meta.deployments(&site).await.unwrap();
    assert_eq!(
        records.iter().map(|d| &d.id).collect::<Vec<_>>(),
        vec![&d2.deployment]
    );
    // Run again: nothing more to free.
    let again = gc_at(&b, &o(false), later, |_| {}).await.unwrap();
    assert_eq!(again.objects, 0, "{again:?}");
}

#[tokio::test]
async fn deleted_site_frees_its_domains_and_its_name_on_dynamodb() {
    let b = common::three_regions(Some("sites.example")).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    write(&dir, "index.html", "<h1>shop</h1>\n");
    let shop = SiteId::parse("shop").unwrap();
    let first = deploy(&b, &opts(&dir, "shop", &["shop.example"]))
        .await
        .unwrap();
    let d = skyhost_cli::delete::delete(&b, &shop).await.unwrap();
    assert_eq!(d.domains, vec![Domain::parse("shop.example").unwrap()]);
    assert_eq!(d.deployments, 1);
    assert!(d.revision > first.site.unwrap().revision);
    assert!(b.meta.site(&shop).await.unwrap().is_none());
    assert!(b.meta.deployments(&shop).await.unwrap().is_empty());
    // Deleting it again says it does not exist.
    let err = skyhost_cli::delete::delete(&b, &shop).await.unwrap_err();
    assert!(format!("{err:#}").contains("does not exist"), "{err:#}");

    // Another site claims the domain.
    let other = deploy(&b, &opts(&dir, "other", &["shop.example"]))
        .await
        .unwrap();
    assert_eq!(
        other.site.unwrap().domains,
        vec![Domain::parse("shop.example").unwrap()]
    );
    // The name again: a revision above the tombstone, a history of its own.
    let again = deploy(&b, &opts(&dir, "shop", &["new.example"]))
        .await
        .unwrap();
    let s = again.site.unwrap();
    assert!(s.revision > d.revision, "{} <= {}", s.revision, d.revision);
    let list = skyhost_cli::deployments::deployments(&b, &shop)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].live);
    assert_eq!(
        list[0].preview.as_deref(),
        Some(
            format!(
                "https://{}--shop.sites.example/",
                again.deployment.as_str().to_ascii_lowercase()
            )
            .as_str()
        )
    );
}

/// One region, reached through a fault-injecting proxy and directly.
struct Faulty {
    proxy: FaultProxy,
    through: Backend,
    direct: Backend,
}

async fn faulty() -> Faulty {
    let table = skyhost_testkit::dynamo(common::REGIONS[0]).await;
    let bucket = skyhost_testkit::s3(common::REGIONS[0]).await;
    let proxy = FaultProxy::start(&skyhost_testkit::moto_endpoint()).await;
    let conf = skyhost_testkit::aws(common::REGIONS[0]).await;
    Faulty {
        through: common::one_region(
            common::REGIONS[0],
            DynamoStore::new(proxy.dynamodb(&conf), table.table()),
            S3BlobStore::new(proxy.s3(&conf), bucket.bucket()),
        ),
        direct: common::one_region(
            common::REGIONS[0],
            DynamoStore::new(skyhost_meta::config::dynamodb(&conf), table.table()),
            S3BlobStore::new(skyhost_meta::config::s3(&conf), bucket.bucket()),
        ),
        proxy,
    }
}

/// Before the promote's site write (the first `times` of them), a rival adds a domain
/// straight to moto.
fn rival(f: &Faulty, times: usize) {
    let meta = f.direct.meta.clone();
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(times));
    let rival = Arc::new(move || {
        let meta = meta.clone();
        let go = left
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        Box::pin(async move {
            if go {
                let domain = [Domain::parse("rival.example").unwrap()];
                let site = SiteId::parse("shop").unwrap();
                let change = Change {
                    add_domains: &domain,
                    ..Default::default()
                };
                update_site(meta.as_ref(), &site, change)
                    .await
                    .expect("the rival's change, straight to moto");
            }
        }) as futures::future::BoxFuture<'static, ()>
    });
    f.proxy.fail_from("promote", 1, Fault::Before(rival), |s| {
        s.target.ends_with(".TransactWriteItems") && s.body_has("SITE#shop")
    });
}

#[tokio::test]
async fn a_stale_promote_loses_its_conditional_write() {
    let f = faulty().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let site = SiteId::parse("shop").unwrap();
    write(&dir, "index.html", "<h1>one</h1>\n");
    let mut o = opts(&dir, "shop", &["shop.example"]);
    o.wait_replicas = false;
    let d1 = deploy(&f.direct, &o).await.unwrap().deployment;
    write(&dir, "index.html", "<h1>two</h1>\n");
    o.activate = false;
    let d2 = deploy(&f.direct, &o).await.unwrap().deployment;
    let before = f.direct.meta.site(&site).await.unwrap().unwrap();
    assert_eq!(before.active.as_ref(), Some(&d1));

    // The rival writes between the promote's read and its write: the promote's write
    // loses, it reads again and applies on top, keeping the rival's change.
    rival(&f, 1);
    let s = skyhost_cli::promote::promote(&f.through, &site, &d2)
        .await
        .unwrap();
    let (seen, _) = f.proxy.counts("promote");
    assert_eq!(seen, 2, "one lost write, one that applied");
    assert_eq!(s.active.as_ref(), Some(&d2));
    assert_eq!(
        s.revision,
        before.revision + 2,
        "the rival's, then the promote's"
    );
    let now = f.direct.meta.site(&site).await.unwrap().unwrap();
    assert_eq!(now, s);
    assert!(now.domains.iter().any(|d| d.as_str() == "rival.example"));

    // A rival before every write: the promote gives up, saying why, and changes nothing.
    f.proxy.clear();
    rival(&f, usize::MAX);
    let err = skyhost_cli::promote::promote(&f.through, &site, &d1)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("changed by someone else"),
        "{err:#}"
    );
    let after = f.direct.meta.site(&site).await.unwrap().unwrap();
    assert_eq!(
        after.active.as_ref(),
        Some(&d2),
        "the stale promote went live"
    );
    let (seen, _) = f.proxy.counts("promote");
    assert_eq!(
        after.revision,
        now.revision + seen as u64,
        "one per rival write"
    );
}
