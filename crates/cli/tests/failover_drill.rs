//! The failover drill in local mode: visitors of every region request the site without
//! pause while the nearest region of some of them goes to maintenance and back, then out
//! altogether (unreachable) and back. Traffic moves each time, and not one visitor sees
//! an answer other than 2xx: between two health checks the edge, as CloudFront's origin
//! failover does, sends a request the chosen region fails to the next healthy one.

mod common;

use common::local::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the steady visitors saw.
#[derive(Default)]
struct Tally {
    ok: usize,
    /// Every answer other than 2xx (or no answer): visitor region, what it got.
    failures: Vec<(String, String)>,
    /// Which region answered the visitors of `us-west-2`, in order, each change once.
    west_served_by: Vec<String>,
}

/// Requests from visitors of every region, back to back, until `stop`.
async fn visitors(l: Arc<Local>, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let edge = l.edge();
    while !stop.load(Ordering::Relaxed) {
        for client in REGIONS {
            let got = l.get(&edge, Some(client)).await;
            let mut t = tally.lock().unwrap();
            match got {
                Some(a) if (200..300).contains(&a.status) => {
                    t.ok += 1;
                    if client == "us-west-2" && t.west_served_by.last() != Some(&a.region) {
                        t.west_served_by.push(a.region);
                    }
                }
                Some(a) => t
                    .failures
                    .push((client.to_owned(), format!("{} {}", a.status, a.body.trim()))),
                None => t.failures.push((client.to_owned(), "no answer".into())),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_visitor_sees_an_error_while_a_region_goes_out_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let site = common::example_site(tmp.path());
    let l = Arc::new(Local::start(tmp.path(), 1).await);
    let d = l.deploy(&site).unwrap();
    for i in 0..REGIONS.len() {
        until(Duration::from_secs(10), "every region serving", || async {
            l.serves(&l.region(i), &d).await
        })
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let load = tokio::spawn(visitors(l.clone(), stop.clone(), tally.clone()));
    let served_west_by = |region: &'static str| {
        let tally = tally.clone();
        move || {
            let tally = tally.clone();
            async move {
                tally
                    .lock()
                    .unwrap()
                    .west_served_by
                    .last()
                    .map(String::as_str)
                    == Some(region)
            }
        }
    };
    until(
        Duration::from_secs(5),
        "steady traffic",
        served_west_by("us-west-2"),
    )
    .await;

    for (out, back) in [("fail", "heal"), ("outage", "restore")] {
        l.drill(out, "us-west-2");
        until(
            Duration::from_secs(10),
            "traffic to move away",
            served_west_by("eu-central-1"),
        )
        .await;
        // Keep the region out for a few health checks' time under load.
        tokio::time::sleep(Duration::from_millis(3 * HEALTH_MS)).await;
        l.drill(back, "us-west-2");
        until(
            Duration::from_secs(10),
            "traffic to come back",
            served_west_by("us-west-2"),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(3 * HEALTH_MS)).await;
    }

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let t = tally.lock().unwrap();
    println!(
        "failover drill: {} answers, {} failures, us-west-2 visitors served by {:?}",
        t.ok,
        t.failures.len(),
        t.west_served_by
    );
    assert!(
        t.failures.is_empty(),
        "visitors saw errors: {:?}",
        t.failures
    );
    assert_eq!(
        t.west_served_by,
        [
            "us-west-2",
            "eu-central-1",
            "us-west-2",
            "eu-central-1",
            "us-west-2"
        ],
        "traffic moved away and back twice"
    );
    assert!(
        t.ok > 100,
        "only {} requests were made during the drill",
        t.ok
    );
}
