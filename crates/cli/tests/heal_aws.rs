//! Self-healing replication on moto (DynamoDB with its stream, S3): a blob missing in a
//! replica bucket is repaired by the activation check (the asset copier fed the sites
//! table's stream, as its Lambda trigger does) and by the scheduled sweep.

mod common;

use skyhost_asset_copier::sweep::Scope;
use skyhost_asset_copier::Handled;
use skyhost_cli::backend::{AwsOptions, Backend};
use skyhost_cli::deploy::{deploy, DeployOptions};
use skyhost_meta::blob::BlobStore;
use skyhost_meta::store::dynamodb::DynamoStreamFeed;
use skyhost_meta::store::ChangeFeed;
use skyhost_meta::{keys, DeploymentId, Manifest, SiteId};
use std::path::Path;
use std::time::Duration;

const REGIONS: [&str; 3] = ["us-west-2", "eu-central-1", "ap-southeast-1"];

async fn backend() -> (Backend, DynamoStreamFeed) {
    let (store, feed) = skyhost_testkit::dynamo_with_feed(REGIONS[0]).await;
    let mut buckets = Vec::new();
    for r in REGIONS {
        buckets.push(format!("{r}={}", skyhost_testkit::s3(r).await.bucket()));
    }
    let b = Backend::aws(&AwsOptions {
        primary_region: Some(REGIONS[0].into()),
        table: Some(store.table().to_owned()),
        buckets: Some(buckets.join(",")),
        ..Default::default()
    })
    .await
    .unwrap();
    (b, feed)
}

fn opts(dir: &Path) -> DeployOptions {
    DeployOptions {
        dir: dir.to_owned(),
        site: SiteId::parse("shop").unwrap(),
        domains: vec![],
        message: None,
        activate: true,
        wait_replicas: false,
        wait_timeout: Duration::from_secs(1),
        quiet: true,
        include_hidden: false,
    }
}

async fn manifest(b: &Backend, d: &DeploymentId) -> Manifest {
    let site = SiteId::parse("shop").unwrap();
    let body = b
        .primary
        .bucket
        .get(&keys::manifest(&site, d), None)
        .await
        .unwrap()
        .unwrap()
        .collect()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// The stream records after `cursor`, as the Lambda receives them.
async fn stream_batch(feed: &DynamoStreamFeed, cursor: &mut Option<String>) -> serde_json::Value {
    let batch = feed.read(cursor.as_deref(), 100).await.unwrap();
    *cursor = batch.cursor;
    serde_json::json!({ "Records": batch.records })
}

#[tokio::test]
async fn the_activation_check_copies_what_a_replica_lacks() {
    let (b, feed) = backend().await;
    let copier = skyhost_cli::heal::copier(&b);
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::example_site(tmp.path());
    let mut cursor = None;

    // No S3 notification reaches a copier here: the replicas lack the whole deployment,
    // until the stream's activation record is handled.
    let first = deploy(&b, &opts(&dir)).await.unwrap();
    let m1 = manifest(&b, &first.deployment).await;
    let all = skyhost_asset_copier::repair::manifest_keys(&m1);
    assert_eq!(
        skyhost_cli::verify::verify(&b, false).await.unwrap().len(),
        2
    );
    // Status counts, per region, the blobs the live deployment still lacks there.
    let shop = SiteId::parse("shop").unwrap();
    let missing = |st: &[skyhost_cli::status::SiteStatus]| -> Vec<Option<usize>> {
        st[0].regions.iter().map(|r| r.missing_blobs).collect()
    };
    let st = skyhost_cli::status::status(&b, Some(&shop)).await.unwrap();
    assert_eq!(
        missing(&st),
        vec![Some(0), Some(all.len()), Some(all.len())]
    );
    assert!(skyhost_cli::status::render(&st).contains(&format!("({} blobs missing)", all.len())));
    let Handled::Activations(r) = copier
        .handle_any(stream_batch(&feed, &mut cursor).await)
        .await
        .unwrap()
    else {
        panic!("a stream batch is handled as activations");
    };
    assert_eq!(r.checked.len(), 1);
    assert_eq!(r.checked[0].deployment, first.deployment);
    assert_eq!(r.gaps.len(), 2, "{r:?}");
    for g in &r.gaps {
        assert_eq!(
            (g.missing.len(), g.repaired),
            (all.len(), all.len()),
            "{g:?}"
        );
    }
    assert!(skyhost_cli::verify::verify(&b, false)
        .await
        .unwrap()
        .is_empty());

    let st = skyhost_cli::status::status(&b, Some(&shop)).await.unwrap();
    assert_eq!(missing(&st), vec![Some(0); 3]);
    assert!(!skyhost_cli::status::render(&st).contains("missing"));

    // The next activation checks only the keys it adds: one changed file.
    std::fs::write(dir.join("about.html"), "<h1>about, again</h1>").unwrap();
    let second = deploy(&b, &opts(&dir)).await.unwrap();
    let m2 = manifest(&b, &second.deployment).await;
    let added = skyhost_asset_copier::repair::added_keys(&m2, Some(&m1));
    assert!(added.len() < all.len() / 2, "{added:?}");
    let Handled::Activations(r) = copier
        .handle_any(stream_batch(&feed, &mut cursor).await)
        .await
        .unwrap()
    else {
        panic!("a stream batch is handled as activations");
    };
    assert_eq!(r.checked[0].previous.as_ref(), Some(&first.deployment));
    for g in &r.gaps {
        assert_eq!(g.missing, added, "{g:?}");
        assert_eq!(g.repaired, added.len());
    }
    assert!(skyhost_cli::verify::verify(&b, false)
        .await
        .unwrap()
        .is_empty());

    // Handled again (a retry), nothing is missing any more.
    let again = copier.check_activation(&r.checked[0], true).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
}

#[tokio::test]
async fn the_sweep_repairs_and_counts_sweeps_in_a_row_that_repaired() {
    let (b, _feed) = backend().await;
    let copier = skyhost_cli::heal::copier(&b);
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::example_site(tmp.path());
    let now = skyhost_meta::now();

    // First sweep: no state yet, so every live site is checked, and the gaps repaired.
    deploy(&b, &opts(&dir)).await.unwrap();
    // (It starts a clock slack after the deploy, as if an hour had passed.)
    let first = now + skyhost_asset_copier::sweep::CLOCK_SLACK_SECS + 10;
    let r = copier.sweep(Scope::Changed, first).await.unwrap();
    assert_eq!(r.sites, 1);
    assert!(r.repaired > 0 && r.unrepaired == 0, "{r:?}");
    assert_eq!(r.streak, 1);
    assert!(skyhost_cli::verify::verify(&b, false)
        .await
        .unwrap()
        .is_empty());

    // A sweep of the sites changed since then checks none; the streak ends.
    let r = copier.sweep(Scope::Changed, first + 3600).await.unwrap();
    assert_eq!((r.sites, r.repaired, r.streak), (0, 0, 0), "{r:?}");

    // Two sweeps in a row that repair: the streak the alarm watches reaches 2.
    for (i, text) in ["<h1>one</h1>", "<h1>two</h1>"].into_iter().enumerate() {
        std::fs::write(dir.join("about.html"), text).unwrap();
        deploy(&b, &opts(&dir)).await.unwrap();
        let r = copier
            .sweep(Scope::Full, now + 20 + i as i64)
            .await
            .unwrap();
        assert_eq!(r.sites, 1);
        assert!(r.repaired > 0, "{r:?}");
        assert_eq!(r.streak, i as u32 + 1);
    }
    // The schedules' payload, as the Lambda receives it: a clean sweep ends the streak.
    let Handled::Sweep(r) = copier
        .handle_any(serde_json::json!({"sweep": "full"}))
        .await
        .unwrap()
    else {
        panic!("{{\"sweep\": …}} is a sweep");
    };
    assert_eq!((r.sites, r.repaired, r.streak), (1, 0, 0), "{r:?}");

    // A bad scope is refused.
    assert!(copier
        .handle_any(serde_json::json!({"sweep": "sometimes"}))
        .await
        .is_err());
}
