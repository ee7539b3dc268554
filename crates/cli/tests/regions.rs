//! Every region stands on its own, in local mode: a primary outage takes no replica down
//! and makes writes fail fast; a replica outage delays no other region; every origin
//! instance, notified or not, serves a deploy within a second.

mod common;

use common::local::*;
use std::time::{Duration, Instant};

/// Health checks flip after three in a row; a little slack for the checks' own time.
fn failover_window() -> Duration {
    Duration::from_millis(3 * HEALTH_MS + 400)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_outage_drill() {
    let tmp = tempfile::tempdir().unwrap();
    let site = common::example_site(tmp.path());
    let l = Local::start(tmp.path(), 2).await;
    let d1 = l.deploy(&site).unwrap();
    for i in 0..3 {
        until(Duration::from_secs(5), "the first deployment", || async {
            l.serves(&l.region(i), &d1).await
        })
        .await;
    }
    let manifests = tmp
        .path()
        .join("state/buckets/skyhost-us-west-2/objects/sites/demo/manifests");
    let count = || std::fs::read_dir(&manifests).unwrap().count();
    let before = count();

    l.drill("outage", "us-west-2");
    let out_at = Instant::now();
    // The primary is unreachable, not failing: its front refuses connections.
    until(
        Duration::from_secs(2),
        "the primary to be unreachable",
        || async { l.health(&l.region(0)).await.is_none() },
    )
    .await;

    // The primary's visitors move to the nearest replica within the failover window,
    // while the replicas answer every request with the active deployment, healthy.
    let moved = until(Duration::from_secs(10), "failover", || async {
        matches!(l.get(&l.edge(), Some("us-west-2")).await,
            Some(a) if a.status == 200 && a.region == "eu-central-1" && a.deployment == d1)
    })
    .await;
    let moved = out_at.elapsed().max(moved);
    println!("primary outage: us-west-2 visitors answered by eu-central-1 after {moved:?}");
    assert!(moved <= failover_window(), "failover took {moved:?}");

    // A deploy during the outage fails within seconds, clearly, and writes nothing.
    change(&site, "during the outage");
    let started = Instant::now();
    let err = l.deploy(&site).unwrap_err();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "the deploy took {took:?} to fail"
    );
    assert!(
        err.contains("primary region us-west-2 is unreachable")
            && err.contains("still served by the other regions"),
        "{err}"
    );
    let (ok, _, err) = l.run(&["rollback", "--site", "demo"]);
    assert!(
        !ok && err.contains("primary region us-west-2 is unreachable"),
        "{err}"
    );
    let (ok, _, err) = l.run(&["domains", "add", "--site", "demo", "more.test"]);
    assert!(
        !ok && err.contains("primary region us-west-2 is unreachable"),
        "{err}"
    );

    // Status still reports every region, from a replica of the table.
    let (ok, out, err) = l.run(&["status", "--site", "demo", "--json"]);
    assert!(ok, "{err}");
    assert!(
        err.contains("primary region us-west-2 is unreachable"),
        "{err}"
    );
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st[0]["regions"][0]["health"], "unreachable", "{st}");
    for i in 1..3 {
        assert_eq!(st[0]["regions"][i]["health"], "healthy", "{st}");
        assert_eq!(st[0]["regions"][i]["serving"], d1.as_str(), "{st}");
        assert_eq!(st[0]["regions"][i]["behind"], 0, "{st}");
    }

    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(2) {
        for i in 1..3 {
            let a = l.get(&l.region(i), None).await.expect("a replica answers");
            assert_eq!((a.status, a.deployment.as_str()), (200, d1.as_str()));
            assert_eq!(
                l.health(&l.region(i)).await,
                Some(200),
                "region {i} healthy"
            );
        }
        let a = l.get(&l.edge(), Some("us-west-2")).await.unwrap();
        assert_eq!((a.status, a.region.as_str()), (200, "eu-central-1"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Back: the primary takes its visitors again, nothing was half-written, and the
    // next deploy reaches every region within a second.
    l.drill("restore", "us-west-2");
    until(Duration::from_secs(10), "the primary's visitors back", || async {
        matches!(l.get(&l.edge(), Some("us-west-2")).await, Some(a) if a.region == "us-west-2" && a.status == 200)
    })
    .await;
    assert_eq!(count(), before, "the failed deploy wrote a manifest");
    let (ok, out, err) = l.run(&["sites", "--json"]);
    assert!(ok, "{err}");
    let sites: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sites[0]["active"], d1.as_str(), "{sites}");
    let d2 = l.deploy(&site).unwrap();
    let deployed = Instant::now();
    for i in 0..3 {
        until(
            Duration::from_secs(5),
            "the deploy after restore",
            || async { l.serves(&l.region(i), &d2).await },
        )
        .await;
    }
    let took = deployed.elapsed();
    println!("after restore: every region serves {d2} {took:?} after activation");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The deploy returns at activation (no --wait-replicas): its blobs may still be on
    // their way to the replicas, served meanwhile through the fail-safe. They arrive.
    until(
        Duration::from_secs(10),
        "verify clean after restore",
        || async { l.run(&["verify"]).0 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_outage_across_two_deploys() {
    let tmp = tempfile::tempdir().unwrap();
    let site = common::example_site(tmp.path());
    let l = Local::start(tmp.path(), 2).await;
    let d1 = l.deploy(&site).unwrap();
    for i in 0..3 {
        until(Duration::from_secs(5), "the first deployment", || async {
            l.serves(&l.region(i), &d1).await
        })
        .await;
    }

    l.drill("outage", "ap-southeast-1");
    until(
        Duration::from_secs(2),
        "ap-southeast-1 to be unreachable",
        || async { l.health(&l.region(2)).await.is_none() },
    )
    .await;
    let mut last = d1.clone();
    for text in ["second", "third"] {
        change(&site, text);
        let d = l.deploy(&site).unwrap();
        let deployed = Instant::now();
        for i in 0..2 {
            until(
                Duration::from_secs(5),
                "a deploy in the regions that are up",
                || async { l.serves(&l.region(i), &d).await },
            )
            .await;
        }
        let took = deployed.elapsed();
        println!("replica outage: us-west-2 and eu-central-1 serve {d} {took:?} after activation");
        assert!(took < Duration::from_secs(1), "{took:?}");
        last = d;
    }
    let (ok, out, _) = l.run(&["status", "--site", "demo", "--json"]);
    assert!(ok);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ap = &st[0]["regions"][2];
    assert_eq!(ap["health"], "unreachable", "{st}");

    // Back: it converges to the newest deployment, never serving an older one after it.
    l.drill("restore", "ap-southeast-1");
    let back = Instant::now();
    let mut seen_newest = false;
    while back.elapsed() < Duration::from_secs(8) {
        if let Some(a) = l.get(&l.region(2), None).await {
            if a.deployment == last {
                seen_newest = true;
            } else if seen_newest {
                panic!("ap-southeast-1 served {} after {last}", a.deployment);
            }
        }
        if seen_newest && back.elapsed() > Duration::from_secs(4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen_newest, "ap-southeast-1 never served {last}");
    println!("replica restore: ap-southeast-1 serves {last}");
    // Its origins and its notifications caught up: status shows nobody behind.
    until(
        Duration::from_secs(15),
        "status without a region behind",
        || async {
            let (ok, out, _) = l.run(&["status", "--site", "demo", "--json"]);
            let st: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            ok && st[0]["regions"].as_array().is_some_and(|rs| {
                rs.iter()
                    .all(|r| r["serving"] == last.as_str() && r["behind"] == 0)
            })
        },
    )
    .await;
    let (ok, out, err) = l.run(&["verify"]);
    assert!(ok, "verify: {out} {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_serves_a_deploy_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let site = common::example_site(tmp.path());
    let l = Local::start(tmp.path(), 2).await;
    let d1 = l.deploy(&site).unwrap();
    let mut all = Vec::new();
    for r in REGIONS {
        let instances = l.instances(r);
        assert_eq!(instances.len(), 2, "{r}");
        all.extend(instances.into_iter().map(|b| (r, b)));
    }
    for (_, base) in &all {
        until(Duration::from_secs(5), "the first deployment", || async {
            l.serves(base, &d1).await
        })
        .await;
    }

    // A notification reaches one instance of each region; the other catches up by
    // itself. Every instance serves the new deployment within a second.
    change(&site, "second");
    let d2 = l.deploy(&site).unwrap();
    let deployed = Instant::now();
    for (region, base) in &all {
        until(Duration::from_secs(5), "the second deployment", || async {
            l.serves(base, &d2).await
        })
        .await;
        println!(
            "{region} instance {base} serves {d2} after {:?}",
            deployed.elapsed()
        );
    }
    let took = deployed.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_of_one_instance_goes_out_and_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let site = common::example_site(tmp.path());
    let l = Local::start(tmp.path(), 1).await;
    assert_eq!(l.instances("eu-central-1"), vec![l.region(1)]);
    let d1 = l.deploy(&site).unwrap();
    until(Duration::from_secs(5), "the first deployment", || async {
        l.serves(&l.region(1), &d1).await
    })
    .await;
    l.drill("outage", "eu-central-1");
    until(
        Duration::from_secs(15),
        "eu-central-1 to be unreachable",
        || async { l.health(&l.region(1)).await.is_none() },
    )
    .await;
    change(&site, "second");
    let d2 = l.deploy(&site).unwrap();
    l.drill("restore", "eu-central-1");
    until(
        Duration::from_secs(10),
        "eu-central-1 back with the new deployment",
        || async { l.serves(&l.region(1), &d2).await },
    )
    .await;
}
