//! Two instances of a region share the table replica and nothing else (no Redis): the
//! one a notification missed serves the new deployment within a second, by reading one
//! small generation item at most once a second.

mod common;

use async_trait::async_trait;
use common::*;
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::store::item::{Item, Key};
use skyhost_meta::store::{MetaStore, StoreError, Write, WriteError};
use skyhost_origin::Origin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"notify-secret";

/// The replica as one instance sees it, counting its reads of the generation item.
struct Counted {
    inner: Arc<dyn MetaStore>,
    generation_reads: AtomicUsize,
}

#[async_trait]
impl MetaStore for Counted {
    async fn get_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        if *key == skyhost_meta::store::generation::key() {
            self.generation_reads.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.get_item(key).await
    }
    async fn query_items(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.inner.query_items(pk, sk_prefix).await
    }
    async fn scan_kind(&self, kind: &str) -> Result<Vec<Item>, StoreError> {
        self.inner.scan_kind(kind).await
    }
    async fn write(&self, writes: Vec<Write>) -> Result<(), WriteError> {
        self.inner.write(writes).await
    }
}

fn instance(e: &Embedded) -> (Arc<Origin>, Arc<Counted>) {
    let meta = Arc::new(Counted {
        inner: e.meta.clone(),
        generation_reads: AtomicUsize::new(0),
    });
    let mut config = config();
    config.notify_secret = skyhost_meta::secrets::Secret::fixed(vec![SECRET.to_vec()]);
    let origin = Arc::new(Origin::new(
        config,
        meta.clone(),
        e.local.clone(),
        None,
        Arc::new(MemoryCache::new(8 << 20)),
    ));
    (origin, meta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_a_notification_missed_converges_within_a_second() {
    let e = Embedded::new("us-west-2");
    let host = "conv.test";
    let first = deploy(
        e.meta.as_ref(),
        e.local.as_ref(),
        "conv",
        &[host],
        &[file("/index.html", "one", "text/html")],
        rules(None, None, None),
    )
    .await;
    let (a, a_meta) = instance(&e);
    let (b, b_meta) = instance(&e);
    let (a, b) = (start(a).await, start(b).await);
    let c = client();
    for s in [&a, &b] {
        let g = get(&c, &s.base, host, "/").await;
        assert_eq!(g.header("x-skyhost-deployment"), Some(first.id().as_str()));
    }

    // A second deployment is activated; the notification reaches instance a only.
    let second = deploy_inactive(
        e.meta.as_ref(),
        e.local.as_ref(),
        "conv",
        &[host],
        &[file("/index.html", "two", "text/html")],
    )
    .await;
    let now = e.meta.site(&second.site.id).await.unwrap().unwrap();
    let active = e
        .meta
        .activate(&now.id, second.id(), now.revision, 1_767_500_100)
        .await
        .unwrap();
    let activated = Instant::now();
    let (body, sig) = signed_notification(
        SECRET,
        &active.id,
        active.revision,
        Some(&active),
        skyhost_meta::now(),
    );
    let r = c
        .post(a.url("/_skyhost/notify"))
        .header("host", host)
        .header(skyhost_meta::notify::SIGNATURE_HEADER, sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());

    // Both serve the second deployment within a second, b without any notification.
    let mut slowest = Duration::ZERO;
    for s in [&a, &b] {
        loop {
            let g = get(&c, &s.base, host, "/").await;
            if g.header("x-skyhost-deployment") == Some(second.id().as_str()) {
                assert_eq!(g.text(), "two");
                break;
            }
            assert_eq!(g.text(), "one", "never anything but the old or the new");
            assert!(
                activated.elapsed() < Duration::from_secs(3),
                "still the first deployment after {:?}",
                activated.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        slowest = slowest.max(activated.elapsed());
    }
    println!("converged without a notification within {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "took {slowest:?}");

    // The cost: at most one generation read per instance per 900 ms of steady requests.
    let (ra, rb) = (
        a_meta.generation_reads.load(Ordering::SeqCst),
        b_meta.generation_reads.load(Ordering::SeqCst),
    );
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(2) {
        get(&c, &a.base, host, "/").await;
        get(&c, &b.base, host, "/").await;
    }
    for (name, m, before) in [("a", &a_meta, ra), ("b", &b_meta, rb)] {
        let reads = m.generation_reads.load(Ordering::SeqCst) - before;
        assert!(
            (1..=3).contains(&reads),
            "{name}: {reads} generation reads in 2 s"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_an_instance_found_unknown_is_served_within_a_second_of_its_site() {
    let e = Embedded::new("us-west-2");
    let (b, _) = instance(&e);
    let b = start(b).await;
    let c = client();
    let host = "late.test";
    assert_eq!(get(&c, &b.base, host, "/").await.status, 404);

    // The site is created with that host; the notification never reaches b, which
    // remembers the host as unknown for longer than a second.
    let d = deploy(
        e.meta.as_ref(),
        e.local.as_ref(),
        "late",
        &[host],
        &[file("/index.html", "late", "text/html")],
        rules(None, None, None),
    )
    .await;
    let created = Instant::now();
    loop {
        let g = get(&c, &b.base, host, "/").await;
        if g.status == 200 {
            assert_eq!(g.header("x-skyhost-deployment"), Some(d.id().as_str()));
            break;
        }
        assert!(
            created.elapsed() < Duration::from_secs(3),
            "still unknown after {:?}",
            created.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = created.elapsed();
    println!("a new host served {took:?} after its site was created");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    b.stop().await;
}
