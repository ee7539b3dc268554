//! The metadata store contract, run against every adapter: the embedded SQLite store and
//! DynamoDB (with its stream) on a moto server. The same cases, not copies.

use skyhost_meta::store::item::site_from_item;
use skyhost_meta::store::{ChangeFeed, MetaStore, StoreError};
use skyhost_meta::*;

fn site(id: &str) -> SiteId {
    SiteId::parse(id).unwrap()
}

fn deployment(site: &SiteId, t: i64) -> Deployment {
    Deployment {
        site: site.clone(),
        id: DeploymentId::new(t),
        created: t,
        file_count: 3,
        bytes: 1234,
        state: DeploymentState::Ready,
        message: Some("first".into()),
    }
}

async fn create(store: &dyn MetaStore, id: &SiteId, domains: &[&str]) -> Site {
    let mut s = Site::new(id.clone(), 1);
    s.domains = domains.iter().map(|d| Domain::parse(d).unwrap()).collect();
    store.put_site(None, &s).await.unwrap();
    s.domains.sort();
    s
}

pub async fn conditional_activation_conflict(store: &dyn MetaStore, _feed: &dyn ChangeFeed) {
    let id = site("blog");
    let s = create(store, &id, &["blog.example"]).await;
    let d1 = deployment(&id, 1_800_000_000);
    let d2 = deployment(&id, 1_800_000_100);
    store.put_deployment(&d1).await.unwrap();
    store.put_deployment(&d2).await.unwrap();

    let after = store.activate(&id, &d1.id, s.revision, 10).await.unwrap();
    assert_eq!(after.revision, 2);
    assert_eq!(after.active.as_ref(), Some(&d1.id));

    // A second writer that read revision 1 loses, with a conflict, and changes nothing.
    let err = store.activate(&id, &d2.id, 1, 11).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { expected: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("changed by someone else"), "{err}");
    let now = store.site(&id).await.unwrap().unwrap();
    assert_eq!(now.revision, 2);
    assert_eq!(now.active.as_ref(), Some(&d1.id));

    // The same race on the raw conditional write.
    let mut stale = s.next(12);
    stale.active = Some(d2.id.clone());
    let err = store.put_site(Some(&s), &stale).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");

    // Deployments are immutable: writing one again is refused.
    let err = store.put_deployment(&d1).await.unwrap_err();
    assert!(matches!(err, StoreError::DeploymentExists(_)), "{err}");
    let listed = store.deployments(&id).await.unwrap();
    assert_eq!(listed, vec![d2.clone(), d1.clone()], "newest first");
}

pub async fn revision_never_decreases(store: &dyn MetaStore, _feed: &dyn ChangeFeed) {
    let id = site("docs");
    let s1 = create(store, &id, &[]).await;
    // Creating again is a conflict, not an overwrite.
    assert!(matches!(
        store.put_site(None, &s1).await,
        Err(StoreError::Conflict { .. })
    ));
    let s2 = s1.next(2);
    store.put_site(Some(&s1), &s2).await.unwrap();
    // Skipping, repeating or going back is refused before anything is written.
    for bad in [1, 2, 4] {
        let mut b = s2.clone();
        b.revision = bad;
        let err = store.put_site(Some(&s2), &b).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Invalid(_)),
            "revision {bad}: {err}"
        );
    }
    // Writing over an older read is a conflict.
    let err = store.put_site(Some(&s1), &s1.next(3)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let s3 = s2.next(4);
    store.put_site(Some(&s2), &s3).await.unwrap();
    assert_eq!(store.site(&id).await.unwrap().unwrap().revision, 3);
}

pub async fn missing_keys(store: &dyn MetaStore, _feed: &dyn ChangeFeed) {
    let id = site("nowhere");
    assert_eq!(store.site(&id).await.unwrap(), None);
    assert_eq!(
        store
            .site_for_domain(&Domain::parse("nowhere.example").unwrap())
            .await
            .unwrap(),
        None
    );
    let d = DeploymentId::new(1_800_000_000);
    assert_eq!(store.deployment(&id, &d).await.unwrap(), None);
    assert!(store.deployments(&id).await.unwrap().is_empty());
    let err = store.activate(&id, &d, 1, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::BadDeployment { .. }), "{err}");
    assert!(
        !store
            .region_status("eu-central-1")
            .await
            .unwrap()
            .maintenance
    );
}

pub async fn domains_move_with_the_site(store: &dyn MetaStore, _feed: &dyn ChangeFeed) {
    let a = site("alpha");
    let b = site("beta");
    let sa = create(store, &a, &["Shop.Example", "www.shop.example"]).await;
    let shop = Domain::parse("shop.example").unwrap();
    assert_eq!(store.site_for_domain(&shop).await.unwrap(), Some(a.clone()));

    // Another site cannot take a domain that belongs to one, and nothing of it is written.
    let mut sb = Site::new(b.clone(), 1);
    sb.domains = vec![Domain::parse("beta.example").unwrap(), shop.clone()];
    let err = store.put_site(None, &sb).await.unwrap_err();
    match &err {
        StoreError::DomainTaken { domain, owner } => {
            assert_eq!(domain, &shop);
            assert_eq!(owner, "alpha");
        }
        e => panic!("expected DomainTaken, got {e}"),
    }
    assert_eq!(store.site(&b).await.unwrap(), None);
    assert_eq!(
        store
            .site_for_domain(&Domain::parse("beta.example").unwrap())
            .await
            .unwrap(),
        None
    );

    // Released by its owner, it can be taken.
    let mut sa2 = sa.next(2);
    sa2.domains.retain(|d| d != &shop);
    store.put_site(Some(&sa), &sa2).await.unwrap();
    assert_eq!(store.site_for_domain(&shop).await.unwrap(), None);
    store.put_site(None, &sb).await.unwrap();
    assert_eq!(store.site_for_domain(&shop).await.unwrap(), Some(b.clone()));
    let ids: Vec<String> = store
        .sites()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(ids, vec!["alpha", "beta"]);

    // Region status round trip.
    let st = RegionStatus {
        region: "eu-central-1".into(),
        maintenance: true,
    };
    store.set_region_status(&st).await.unwrap();
    assert_eq!(store.region_status("eu-central-1").await.unwrap(), st);
}

pub async fn change_feed_once_in_order(store: &dyn MetaStore, feed: &dyn ChangeFeed) {
    let id = site("feed");
    let mut cur = create(store, &id, &["feed.example"]).await;
    for i in 0..4 {
        let d = deployment(&id, 1_800_000_000 + i);
        store.put_deployment(&d).await.unwrap();
        cur = store
            .activate(&id, &d.id, cur.revision, 100 + i)
            .await
            .unwrap();
    }
    // Everything so far: each change exactly once, in order.
    let mut cursor: Option<String> = None;
    let mut records = Vec::new();
    loop {
        let batch = feed.read(cursor.as_deref(), 3).await.unwrap();
        if batch.records.is_empty() {
            break;
        }
        assert!(batch.records.len() <= 3);
        records.extend(batch.records);
        cursor = batch.cursor;
    }
    let site_revs: Vec<u64> = records
        .iter()
        .filter(|r| {
            skyhost_meta::store::item::attr_str(&r.change.new_image, "kind") == Some("site")
        })
        .map(|r| site_from_item(r.change.new_image.clone()).unwrap().revision)
        .collect();
    assert_eq!(site_revs, vec![1, 2, 3, 4, 5]);
    let names: Vec<&str> = records
        .iter()
        .filter(|r| {
            skyhost_meta::store::item::attr_str(&r.change.new_image, "kind") == Some("site")
        })
        .map(|r| r.event_name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["INSERT", "MODIFY", "MODIFY", "MODIFY", "MODIFY"]
    );
    // 1 site insert + 1 domain + 4 deployments + 4 activations, and the generation item
    // bumped with each of the 5 site changes.
    assert_eq!(records.len(), 15);
    let seqs: Vec<String> = records
        .iter()
        .map(|r| r.change.sequence_number.clone().unwrap())
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted, "sequence numbers strictly increase");

    // Nothing new: nothing delivered again.
    let again = feed.read(cursor.as_deref(), 100).await.unwrap();
    assert!(again.records.is_empty(), "{:?}", again.records.len());

    // A new change is delivered once, with the old image too.
    let mut next = cur.next(200);
    next.domains.clear();
    store.put_site(Some(&cur), &next).await.unwrap();
    let batch = feed.read(cursor.as_deref(), 100).await.unwrap();
    let kinds: Vec<(String, Option<String>)> = batch
        .records
        .iter()
        .map(|r| {
            (
                r.event_name.clone(),
                skyhost_meta::store::item::attr_str(&r.change.keys, "pk").map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("MODIFY".to_owned(), Some("SITE#feed".to_owned())),
            ("REMOVE".to_owned(), Some("DOMAIN#feed.example".to_owned())),
            ("MODIFY".to_owned(), Some("GENERATION".to_owned())),
        ]
    );
    let old = site_from_item(batch.records[0].change.old_image.clone()).unwrap();
    assert_eq!(old.revision, 5);
    let after = feed.read(batch.cursor.as_deref(), 100).await.unwrap();
    assert!(after.records.is_empty());
}

pub async fn generation_lists_every_site_change(store: &dyn MetaStore, _feed: &dyn ChangeFeed) {
    use skyhost_meta::store::generation::{CatchUp, Changed};
    assert_eq!(store.generation().await.unwrap().number, 0);
    let a = site("gen-a");
    let b = site("gen-b");
    let sa = create(store, &a, &["a.example"]).await;
    let seen = store.generation().await.unwrap().number;
    assert_eq!(seen, 1);
    let _sb = create(store, &b, &[]).await;
    let d = deployment(&a, 1_800_000_000);
    store.put_deployment(&d).await.unwrap();
    store.activate(&a, &d.id, sa.revision, 5).await.unwrap();
    // A failed write bumps nothing.
    assert!(store.activate(&a, &d.id, sa.revision, 6).await.is_err());
    let g = store.generation().await.unwrap();
    assert_eq!(
        g.number, 3,
        "deployments and failed writes are not site changes"
    );
    assert_eq!(
        g.since(seen),
        CatchUp::Sites(vec![
            Changed {
                site: b.clone(),
                revision: 1
            },
            Changed {
                site: a.clone(),
                revision: 2
            },
        ])
    );

    // Writers of different sites at once all succeed: the generation's condition is
    // retried, never reported as the site's conflict.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = Site::new(site(&format!("gen-many-{i}")), 1);
        tasks.push(async move { store.put_site(None, &s).await });
    }
    for r in futures::future::join_all(tasks).await {
        r.unwrap();
    }
    assert_eq!(store.generation().await.unwrap().number, 9);
}

pub async fn removal_leaves_a_tombstone(store: &dyn MetaStore, feed: &dyn ChangeFeed) {
    use skyhost_meta::store::item::site_record_from_item;
    let id = site("gone");
    let s1 = create(store, &id, &["gone.example"]).await;
    let d = deployment(&id, 1_800_000_000);
    store.put_deployment(&d).await.unwrap();
    let live = store.activate(&id, &d.id, s1.revision, 5).await.unwrap();
    let start = feed.read(None, 1000).await.unwrap().cursor;

    // A stale writer cannot remove it; the current revision can.
    assert!(matches!(
        store.delete_site(&s1, 6).await,
        Err(StoreError::Conflict { .. })
    ));
    let removed_at = store.delete_site(&live, 6).await.unwrap();
    assert_eq!(removed_at, live.revision + 1);
    assert_eq!(store.site(&id).await.unwrap(), None);
    assert_eq!(
        store.site_record(&id).await.unwrap(),
        Some(SiteRecord::Removed {
            id: id.clone(),
            revision: removed_at,
            updated: 6
        })
    );
    assert!(store.sites().await.unwrap().iter().all(|s| s.id != id));
    let domain = Domain::parse("gone.example").unwrap();
    assert_eq!(store.site_for_domain(&domain).await.unwrap(), None);
    // The removal is a site change the generation lists, at the tombstone's revision.
    let g = store.generation().await.unwrap();
    assert_eq!(
        g.recent.last().map(|c| (c.site.clone(), c.revision)),
        Some((id.clone(), removed_at))
    );
    // The change feed carries the tombstone as the site item's new image.
    let batch = feed.read(start.as_deref(), 1000).await.unwrap();
    let tombstones: Vec<u64> = batch
        .records
        .iter()
        .filter(|r| r.event_name != "REMOVE")
        .filter_map(|r| site_record_from_item(r.change.new_image.clone()).ok())
        .filter(|r| matches!(r, SiteRecord::Removed { .. }))
        .map(|r| r.revision())
        .collect();
    assert_eq!(tombstones, vec![removed_at]);

    // Its domains are free: another site claims one.
    let other = create(store, &site("claims"), &["gone.example"]).await;
    assert_eq!(
        store.site_for_domain(&domain).await.unwrap(),
        Some(other.id.clone())
    );

    // Created again, it carries on above the removal; revision 1 is refused.
    assert!(store
        .put_site(None, &Site::new(id.clone(), 7))
        .await
        .is_err());
    let again = Site::recreated(id.clone(), 7, removed_at);
    store.put_site(None, &again).await.unwrap();
    assert_eq!(
        store.site(&id).await.unwrap().unwrap().revision,
        removed_at + 1
    );
    // Creating over a live record at that revision is refused: only a tombstone is replaced.
    let mut over_live = Site::recreated(id.clone(), 8, again.revision);
    over_live.domains = vec![Domain::parse("x.example").unwrap()];
    assert!(matches!(
        store.put_site(None, &over_live).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.site(&id).await.unwrap(), Some(again));
}

macro_rules! contract {
    ($adapter:ident, $make:expr) => {
        mod $adapter {
            use super::*;
            #[tokio::test]
            async fn conditional_activation_conflict() {
                let (s, f) = $make.await;
                super::conditional_activation_conflict(&s, &f).await;
            }
            #[tokio::test]
            async fn revision_never_decreases() {
                let (s, f) = $make.await;
                super::revision_never_decreases(&s, &f).await;
            }
            #[tokio::test]
            async fn missing_keys() {
                let (s, f) = $make.await;
                super::missing_keys(&s, &f).await;
            }
            #[tokio::test]
            async fn domains_move_with_the_site() {
                let (s, f) = $make.await;
                super::domains_move_with_the_site(&s, &f).await;
            }
            #[tokio::test]
            async fn generation_lists_every_site_change() {
                let (s, f) = $make.await;
                super::generation_lists_every_site_change(&s, &f).await;
            }
            #[tokio::test]
            async fn removal_leaves_a_tombstone() {
                let (s, f) = $make.await;
                super::removal_leaves_a_tombstone(&s, &f).await;
            }
            #[tokio::test]
            async fn change_feed_once_in_order() {
                let (s, f) = $make.await;
                super::change_feed_once_in_order(&s, &f).await;
            }
        }
    };
}

async fn sqlite() -> (store::sqlite::SqliteStore, store::sqlite::SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let s = store::sqlite::SqliteStore::open(&path, "us-west-2").unwrap();
    // A second connection to the same file plays a second process: it must see every
    // write and every change of the first.
    let other = store::sqlite::SqliteStore::open(&path, "us-west-2").unwrap();
    std::mem::forget(dir);
    (s, other)
}

/// DynamoDB and its stream, on moto.
async fn dynamodb() -> (
    store::dynamodb::DynamoStore,
    store::dynamodb::DynamoStreamFeed,
) {
    skyhost_testkit::dynamo_with_feed("us-west-2").await
}

contract!(embedded_sqlite, sqlite());
contract!(dynamodb_on_moto, dynamodb());

#[tokio::test]
async fn sqlite_conditional_writes_hold_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let a = store::sqlite::SqliteStore::open(&path, "us-west-2").unwrap();
    let id = site("race");
    let s = create(&a, &id, &[]).await;
    for i in 0..10 {
        store::MetaStore::put_deployment(&a, &deployment(&id, 1_800_000_000 + i))
            .await
            .unwrap();
    }
    // Ten writers, each its own connection, all read revision 1: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let path = path.clone();
        let id = id.clone();
        let ds = store::MetaStore::deployments(&a, &id).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let c = store::sqlite::SqliteStore::open(&path, "us-west-2").unwrap();
            c.activate(&id, &ds[i].id, s.revision, 5).await.is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(a.site(&id).await.unwrap().unwrap().revision, 2);
}
