//! A site's lifecycle in local mode: deploy previews served by every region (noindex,
//! `[previews]` off or behind basic auth, the deployment's own `[geo]`), `promote`,
//! `deployments --json`, `sites delete` (every region answers 404 within a second, also
//! through a region outage; domains free to claim; a re-created site is served), and `gc`
//! (prints what it frees first, `--dry-run`, `--keep`, `--older-than`, an in-flight
//! deploy's blobs kept, every region's bucket collected, `verify` clean afterwards).

mod common;

use common::local::{until, Local, REGIONS};
use skyhost_meta::blob::BlobStore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `[previews]` users of the auth case.
const REVIEWER: (&str, &str) = ("reviewer", "preview-pass-42");

/// What one request got.
#[derive(Debug)]
struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A request for `path` on `host`, sent to `base`.
struct Req<'a> {
    base: &'a str,
    host: &'a str,
    path: &'a str,
    auth: Option<(&'a str, &'a str)>,
    /// Through the edge: the visitor's region and country.
    client_region: Option<&'a str>,
    country: Option<&'a str>,
}

impl<'a> Req<'a> {
    fn new(base: &'a str, host: &'a str, path: &'a str) -> Self {
        Req {
            base,
            host,
            path,
            auth: None,
            client_region: None,
            country: None,
        }
    }

    async fn send(&self, http: &reqwest::Client) -> Option<Got> {
        let mut r = http
            .get(format!(
                "{}{}",
                self.base,
                self.path.trim_start_matches('/')
            ))
            .header("host", self.host);
        if let Some((u, p)) = self.auth {
            r = r.basic_auth(u, Some(p));
        }
        if let Some(c) = self.client_region {
            r = r.header("x-skyhost-client-region", c);
        }
        if let Some(c) = self.country {
            r = r.header("cloudfront-viewer-country", c);
        }
        let r = r.send().await.ok()?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        Some(Got {
            status,
            headers,
            body: r.text().await.ok()?,
        })
    }
}

/// `skyhost deploy DIR --site SITE [--domain D]... EXTRA --json`: its JSON report.
fn deploy(
    l: &Local,
    dir: &Path,
    site: &str,
    domains: &[&str],
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec!["deploy", dir.to_str().unwrap(), "--site", site, "--json"];
    for d in domains {
        args.extend(["--domain", d]);
    }
    args.extend_from_slice(extra);
    let (ok, out, err) = l.run(&args);
    assert!(ok, "deploy {site}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("deploy output {out:?}: {e}"))
}

/// The id of a deploy report.
fn id(report: &serde_json::Value) -> String {
    report["deployment"]
        .as_str()
        .expect("a deployment id")
        .to_owned()
}

/// The host of a preview URL (`http://{host}:{port}/`).
fn preview_host(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    rest.split([':', '/']).next().unwrap().to_owned()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

/// A small site whose `about.html` says `about`, with `skyhost.toml` = `config`.
fn site(dir: &Path, about: &str, config: &str) {
    write(dir, "index.html", "<!doctype html><h1>home</h1>\n");
    write(
        dir,
        "about.html",
        &format!("<!doctype html><h1>{about}</h1>\n"),
    );
    write(dir, "skyhost.toml", config);
}

/// Waits until every region's front answers `host` `path` as `ok` says.
async fn every_region<F>(l: &Local, host: &str, path: &str, limit: Duration, what: &str, ok: F)
where
    F: Fn(&Got) -> bool,
{
    for (i, region) in REGIONS.iter().enumerate() {
        let base = l.region(i);
        until(limit, &format!("{what} in {region}"), || async {
            Req::new(&base, host, path)
                .send(&l.http)
                .await
                .is_some_and(|g| ok(&g))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_promote_and_deployments() {
    let tmp = tempfile::tempdir().unwrap();
    let l = Local::start(tmp.path(), 1).await;
    let dir = tmp.path().join("site");

    site(&dir, "live one", "pretty_urls = true\n");
    let d1 = id(&deploy(
        &l,
        &dir,
        "demo",
        &["demo.test"],
        &["--message", "first"],
    ));
    every_region(
        &l,
        "demo.test",
        "/about",
        Duration::from_secs(10),
        "d1",
        |g| g.status == 200 && g.body.contains("live one"),
    )
    .await;

    // --no-activate: the live site is untouched; the printed preview URL serves the new
    // files from every region, marked noindex.
    site(&dir, "preview two", "pretty_urls = true\n");
    let r2 = deploy(
        &l,
        &dir,
        "demo",
        &[],
        &["--no-activate", "--message", "second"],
    );
    let d2 = id(&r2);
    assert!(r2["site"].is_null(), "--no-activate changed the site: {r2}");
    let url2 = r2["preview"]
        .as_str()
        .expect("deploy prints the preview URL");
    let host2 = preview_host(url2);
    assert_eq!(
        host2,
        format!("{}--demo.localhost", d2.to_ascii_lowercase())
    );
    assert_eq!(url2, format!("http://{host2}:{}/", l.port));
    for (i, region) in REGIONS.iter().enumerate() {
        let base = l.region(i);
        until(Duration::from_secs(10), "the preview", || async {
            Req::new(&base, &host2, "/about")
                .send(&l.http)
                .await
                .is_some_and(|g| g.status == 200)
        })
        .await;
        let g = Req::new(&base, &host2, "/about")
            .send(&l.http)
            .await
            .unwrap();
        assert!(g.body.contains("preview two"), "{region}: {g:?}");
        assert_eq!(g.header("x-skyhost-region"), *region);
        assert_eq!(g.header("x-skyhost-deployment"), d2);
        assert_eq!(g.header("x-robots-tag"), "noindex");
        let live = Req::new(&base, "demo.test", "/about")
            .send(&l.http)
            .await
            .unwrap();
        assert_eq!(live.header("x-skyhost-deployment"), d1, "{region}");
        assert!(live.body.contains("live one"));
        assert_eq!(live.header("x-robots-tag"), "", "the live site is indexed");
    }
    // The URL exactly as printed, through the edge (`*.localhost` is this machine).
    let browser = skyhost_meta::tls::http_client()
        .resolve(&host2, std::net::SocketAddr::from(([127, 0, 0, 1], l.port)))
        .build()
        .unwrap();
    let r = browser.get(format!("{url2}about")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-robots-tag"], "noindex");
    assert!(r.text().await.unwrap().contains("preview two"));
    // An unknown deployment, or another site's name, is no preview.
    let bogus = host2.replacen("--demo", "--nosuch", 1);
    let g = Req::new(&l.region(0), &bogus, "/")
        .send(&l.http)
        .await
        .unwrap();
    assert_eq!(g.status, 404);
    let d1_host = format!("{}--demo.localhost", d1.to_ascii_lowercase());
    let g = Req::new(&l.region(2), &d1_host, "/about")
        .send(&l.http)
        .await
        .unwrap();
    assert_eq!((g.status, g.header("x-robots-tag")), (200, "noindex"));
    assert!(
        g.body.contains("live one"),
        "the live deployment has a preview too"
    );

    // deployments --json: newest first, each with what was asked of it.
    let (ok, out, err) = l.run(&["deployments", "--site", "demo", "--json"]);
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{out}");
    let (new, old) = (&list[0], &list[1]);
    assert_eq!(new["id"], d2.as_str());
    assert_eq!(new["message"], "second");
    assert_eq!(new["live"], false);
    assert_eq!(new["preview"], url2);
    // skyhost.toml is read at deploy, not published.
    assert_eq!(new["files"], 2);
    let bytes: u64 = ["index.html", "about.html"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .sum();
    assert_eq!(new["bytes"], bytes, "{new}");
    assert!(new["date"].as_str().unwrap().starts_with("20"), "{new}");
    assert!(new["date"].as_str().unwrap().ends_with('Z'), "{new}");
    assert_eq!(old["id"], d1.as_str());
    assert_eq!(old["message"], "first");
    assert_eq!(old["live"], true);
    let (ok, text, _) = l.run(&["deployments", "--site", "demo"]);
    assert!(ok);
    assert!(
        text.lines()
            .any(|line| line.starts_with('*') && line.contains(&d1)),
        "{text}"
    );

    // promote: the preview goes live in every region; promoting it again is refused.
    let (ok, out, err) = l.run(&["promote", "--site", "demo", &d2]);
    assert!(ok, "{err}");
    assert!(out.contains(&d2), "{out}");
    let promoted = Instant::now();
    every_region(
        &l,
        "demo.test",
        "/about",
        Duration::from_secs(5),
        "promote",
        |g| g.header("x-skyhost-deployment") == d2 && g.body.contains("preview two"),
    )
    .await;
    let took = promoted.elapsed();
    assert!(took < Duration::from_secs(1), "promote took {took:?}");
    let (ok, _, err) = l.run(&["promote", "--site", "demo", &d2]);
    assert!(!ok && err.contains("already live"), "{err}");
    let (ok, _, err) = l.run(&["promote", "--site", "demo", "20200101T000000Z-00000000"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (_, out, _) = l.run(&["deployments", "--site", "demo", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["live"], true, "{out}");
    assert_eq!(list[1]["live"], false, "{out}");

    // [previews] enabled = false on the live deployment: every preview answers 404, the
    // live site is served.
    site(&dir, "three", "[previews]\nenabled = false\n");
    let d3 = id(&deploy(&l, &dir, "demo", &[], &[]));
    let host3 = format!("{}--demo.localhost", d3.to_ascii_lowercase());
    every_region(
        &l,
        "demo.test",
        "/about.html",
        Duration::from_secs(5),
        "d3",
        |g| g.header("x-skyhost-deployment") == d3,
    )
    .await;
    for host in [&host2, &host3] {
        every_region(
            &l,
            host,
            "/about.html",
            Duration::from_secs(5),
            "previews off",
            |g| g.status == 404,
        )
        .await;
    }

    // [previews] users: 401 asking for credentials, then 200 with them; the live site
    // asks for nothing.
    let users = format!(
        "[previews]\nusers = [\"{}:{}\"]\nrealm = \"Review\"\n",
        REVIEWER.0, REVIEWER.1
    );
    site(&dir, "four", &users);
    let d4 = id(&deploy(&l, &dir, "demo", &[], &[]));
    every_region(
        &l,
        "demo.test",
        "/about.html",
        Duration::from_secs(5),
        "d4",
        |g| g.header("x-skyhost-deployment") == d4 && g.status == 200,
    )
    .await;
    every_region(
        &l,
        &host2,
        "/about.html",
        Duration::from_secs(5),
        "auth",
        |g| g.status == 401 && g.header("www-authenticate").contains("Review"),
    )
    .await;
    for (i, region) in REGIONS.iter().enumerate() {
        let base = l.region(i);
        let mut req = Req::new(&base, &host2, "/about.html");
        req.auth = Some(REVIEWER);
        let g = req.send(&l.http).await.unwrap();
        assert_eq!(g.status, 200, "{region}: {g:?}");
        assert!(g.body.contains("preview two"));
        assert_eq!(g.header("x-robots-tag"), "noindex");
        req.auth = Some((REVIEWER.0, "wrong"));
        assert_eq!(req.send(&l.http).await.unwrap().status, 401);
    }

    // A preview carries its own [geo]: through the edge, a visitor from a country the
    // deployment does not allow is refused, one it allows is served.
    site(&dir, "geo five", "[geo]\nallow = [\"DE\"]\n");
    let d5 = id(&deploy(&l, &dir, "demo", &[], &["--no-activate"]));
    let host5 = format!("{}--demo.localhost", d5.to_ascii_lowercase());
    let edge = l.edge();
    for (country, want) in [("US", 403), ("DE", 200)] {
        let mut req = Req::new(&edge, &host5, "/about.html");
        req.auth = Some(REVIEWER);
        req.client_region = Some(REGIONS[0]);
        req.country = Some(country);
        until(Duration::from_secs(5), "the geo preview", || async {
            req.send(&l.http).await.is_some_and(|g| g.status == want)
        })
        .await;
    }
    let mut req = Req::new(&edge, "demo.test", "/about.html");
    req.client_region = Some(REGIONS[0]);
    req.country = Some("US");
    let g = req.send(&l.http).await.unwrap();
    assert_eq!(
        (g.status, g.header("x-skyhost-deployment")),
        (200, d4.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_site_stops_everywhere_and_its_name_and_domains_are_free() {
    let tmp = tempfile::tempdir().unwrap();
    let l = Local::start(tmp.path(), 2).await;
    let dir = tmp.path().join("site");
    site(&dir, "old demo", "");
    let d1 = id(&deploy(
        &l,
        &dir,
        "demo",
        &["demo.test", "www.demo.test"],
        &[],
    ));
    site(&dir, "old preview", "");
    let d2 = id(&deploy(&l, &dir, "demo", &[], &["--no-activate"]));
    let preview = format!("{}--demo.localhost", d2.to_ascii_lowercase());
    // Every instance of every region holds the site's record and its preview.
    for r in REGIONS {
        for base in l.instances(r) {
            for (host, want) in [("demo.test", &d1), ("www.demo.test", &d1), (&preview, &d2)] {
                until(Duration::from_secs(10), "the site everywhere", || async {
                    Req::new(&base, host, "/about.html")
                        .send(&l.http)
                        .await
                        .is_some_and(|g| {
                            g.status == 200 && g.header("x-skyhost-deployment") == want
                        })
                })
                .await;
            }
        }
    }

    // Without a terminal and without --yes, nothing is deleted.
    let (ok, _, err) = l.run(&["sites", "delete", "demo"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let g = Req::new(&l.region(0), "demo.test", "/")
        .send(&l.http)
        .await
        .unwrap();
    assert_eq!(g.status, 200);

    // The drill: one region is out while the site is deleted.
    let out_region = REGIONS[2];
    l.drill("outage", out_region);
    let (ok, out, err) = l.run(&["sites", "delete", "demo", "--yes", "--json"]);
    let deleted = Instant::now();
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["domains"],
        serde_json::json!(["demo.test", "www.demo.test"])
    );
    assert_eq!(report["deployments"], 2);
    let tombstone = report["revision"].as_u64().unwrap();
    // Within a second every region that is up answers 404 for its domains and previews,
    // on every instance (a notification reaches one; the others look every second).
    let hosts = ["demo.test", "www.demo.test", preview.as_str()];
    let mut slowest = Duration::ZERO;
    for (i, r) in REGIONS.iter().enumerate().take(2) {
        let mut bases = vec![l.region(i)];
        bases.extend(l.instances(r));
        for base in &bases {
            for host in hosts {
                until(Duration::from_secs(5), "404 after delete", || async {
                    Req::new(base, host, "/about.html")
                        .send(&l.http)
                        .await
                        .is_some_and(|g| g.status == 404)
                })
                .await;
            }
        }
        slowest = slowest.max(deleted.elapsed());
    }
    println!("delete: every region up answers 404 within {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "delete took {slowest:?}");
    // The region that was out converges once it is back.
    l.drill("restore", out_region);
    for base in std::iter::once(l.region(2)).chain(l.instances(out_region)) {
        for host in hosts {
            until(Duration::from_secs(10), "404 after restore", || async {
                Req::new(&base, host, "/")
                    .send(&l.http)
                    .await
                    .is_some_and(|g| g.status == 404)
            })
            .await;
        }
    }
    let (_, out, _) = l.run(&["sites", "--json"]);
    assert!(
        !out.contains("\"demo\""),
        "deleted site still listed: {out}"
    );

    // Its domains are free: another site claims one and every region serves it.
    let other = tmp.path().join("other");
    site(&other, "other site", "");
    let o1 = id(&deploy(&l, &other, "other", &["demo.test"], &[]));
    every_region(
        &l,
        "demo.test",
        "/about.html",
        Duration::from_secs(5),
        "the claim",
        |g| g.header("x-skyhost-deployment") == o1 && g.body.contains("other site"),
    )
    .await;

    // A site created again under the name is served everywhere, never losing to an
    // instance's cached record or tombstone of the old one.
    site(&dir, "new demo", "");
    let n1 = id(&deploy(&l, &dir, "demo", &["www.demo.test"], &[]));
    for r in REGIONS {
        for base in l.instances(r) {
            until(Duration::from_secs(5), "the re-created site", || async {
                Req::new(&base, "www.demo.test", "/about.html")
                    .send(&l.http)
                    .await
                    .is_some_and(|g| {
                        g.header("x-skyhost-deployment") == n1 && g.body.contains("new demo")
                    })
            })
            .await;
            let g = Req::new(&base, "www.demo.test", "/")
                .send(&l.http)
                .await
                .unwrap();
            let revision: u64 = g.header("x-skyhost-revision").parse().unwrap();
            assert!(revision > tombstone, "{revision} <= {tombstone}");
            // The old site's preview does not come back with the name (its manifest is
            // still in the bucket until gc).
            let g = Req::new(&base, &preview, "/about.html")
                .send(&l.http)
                .await
                .unwrap();
            assert_eq!(g.status, 404, "{r}: the old site's preview: {g:?}");
        }
    }
    let (_, out, _) = l.run(&["deployments", "--site", "demo", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "a history of its own: {out}"
    );
}

/// Every object of the sites in a region's bucket folder: key → size.
fn objects(state: &Path, region: &str) -> BTreeMap<String, u64> {
    let root = state
        .join("buckets")
        .join(format!("skyhost-{region}"))
        .join("objects");
    let mut all = walk(&root, &root);
    // The copier's own bookkeeping (`_skyhost/`) is not gc's.
    all.retain(|k, _| k.starts_with("sites/"));
    all
}

fn walk(root: &Path, dir: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        let p: PathBuf = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(root, &p));
        } else {
            let key = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.insert(key, e.metadata().unwrap().len());
        }
    }
    out
}

/// Every region's objects.
fn all_objects(state: &Path) -> Vec<BTreeMap<String, u64>> {
    REGIONS.iter().map(|r| objects(state, r)).collect()
}

/// A deployment's manifest, read from the primary's bucket folder.
fn manifest(state: &Path, site: &str, d: &str) -> skyhost_meta::Manifest {
    let key = format!("sites/{site}/manifests/{d}.json");
    let path = state
        .join("buckets")
        .join(format!("skyhost-{}", REGIONS[0]))
        .join("objects")
        .join(key);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The blob keys of a deployment's manifest.
fn blob_keys(state: &Path, site: &str, d: &str) -> Vec<String> {
    manifest(state, site, d).blob_keys()
}

/// `skyhost gc ARGS --grace 1m --json`: the report.
fn gc(l: &Local, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["gc", "--grace", "1m", "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = l.run(&all);
    assert!(ok, "gc {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("gc output {out:?}: {e}"))
}

/// `verify` is clean: every blob of every live deployment in every region.
fn verify_clean(l: &Local) {
    let (ok, out, err) = l.run(&["verify", "--json"]);
    assert!(ok, "verify: {out} {err}");
    let gaps: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(gaps, serde_json::json!([]), "verify found gaps");
}

/// What disappeared between two listings, per region: (objects, bytes).
fn gone(before: &[BTreeMap<String, u64>], after: &[BTreeMap<String, u64>]) -> Vec<(usize, u64)> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let lost: Vec<_> = b.iter().filter(|(k, _)| !a.contains_key(*k)).collect();
            (lost.len(), lost.iter().map(|(_, s)| **s).sum())
        })
        .collect()
}

fn freed(report: &serde_json::Value) -> Vec<(usize, u64)> {
    report["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let n = f["manifests"].as_u64().unwrap() + f["blobs"].as_u64().unwrap();
            (n as usize, f["bytes"].as_u64().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_frees_what_no_kept_deployment_needs_in_every_region() {
    let tmp = tempfile::tempdir().unwrap();
    let l = Local::start(tmp.path(), 1).await;
    let state = l.state.clone();
    let dir = tmp.path().join("site");

    // Three deployments, each with a file of its own, the last one live; and a site that
    // is deleted.
    site(&dir, "one", "");
    write(
        &dir,
        "only-one.txt",
        &"first deployment's own file\n".repeat(30),
    );
    let d1 = id(&deploy(&l, &dir, "demo", &["demo.test"], &[]));
    std::fs::remove_file(dir.join("only-one.txt")).unwrap();
    site(&dir, "two", "");
    write(
        &dir,
        "only-two.txt",
        &"second deployment's own file\n".repeat(30),
    );
    let d2 = id(&deploy(&l, &dir, "demo", &[], &[]));
    std::fs::remove_file(dir.join("only-two.txt")).unwrap();
    site(&dir, "three", "");
    let d3 = id(&deploy(&l, &dir, "demo", &[], &[]));
    let gone_dir = tmp.path().join("gone");
    site(&gone_dir, "gone", "");
    deploy(&l, &gone_dir, "gone", &["gone.test"], &[]);
    let (ok, _, err) = l.run(&["sites", "delete", "gone", "--yes"]);
    assert!(ok, "{err}");
    let (d1_keys, d2_keys, d3_keys) = (
        blob_keys(&state, "demo", &d1),
        blob_keys(&state, "demo", &d2),
        blob_keys(&state, "demo", &d3),
    );
    let own = |keys: &[String], others: &[&[String]]| -> Vec<String> {
        keys.iter()
            .filter(|k| others.iter().all(|o| !o.contains(k)))
            .cloned()
            .collect()
    };
    let only_d1 = own(&d1_keys, &[&d2_keys, &d3_keys]);
    let only_d2 = own(&d2_keys, &[&d1_keys, &d3_keys]);
    assert!(!only_d1.is_empty() && !only_d2.is_empty());
    // Every region's bucket holds everything before gc runs.
    until(Duration::from_secs(20), "every bucket filled", || async {
        let all = all_objects(&state);
        all.iter().all(|o| o == &all[0])
    })
    .await;
    verify_clean(&l);

    // Nothing is older than the grace period yet: gc frees nothing.
    let r = gc(&l, &["--keep", "0", "--older-than", "0s"]);
    assert_eq!(r["objects"], 0, "{r}");

    // Past the grace period.
    tokio::time::sleep(Duration::from_secs(62)).await;
    // A deploy in flight: its manifest is written (the live files plus one file of d1's
    // own and one of d2's), it is not activated, and it has no record yet. gc must keep
    // every blob it names.
    let in_flight = skyhost_meta::DeploymentId::new(skyhost_meta::now());
    let manifest_key = format!("sites/demo/manifests/{in_flight}.json");
    let mut m = manifest(&state, "demo", &d3);
    m.deployment = in_flight.clone();
    for (file, from) in [("/only-one.txt", &d1), ("/only-two.txt", &d2)] {
        let entry = manifest(&state, "demo", from).file(file).unwrap().clone();
        m.files.insert(file.into(), entry);
    }
    let in_flight_keys = m.blob_keys();
    let primary = skyhost_meta::blob::fs::FsBlobStore::open(
        &state.join("buckets"),
        &format!("skyhost-{}", REGIONS[0]),
        REGIONS[0],
    )
    .unwrap();
    primary
        .put_bytes(&manifest_key, serde_json::to_vec(&m).unwrap().into(), None)
        .await
        .unwrap();
    until(
        Duration::from_secs(10),
        "the in-flight manifest everywhere",
        || async {
            all_objects(&state)
                .iter()
                .all(|o| o.contains_key(&manifest_key))
        },
    )
    .await;

    // --dry-run: says what it would free, deletes nothing.
    let before = all_objects(&state);
    let dry = gc(&l, &["--dry-run", "--keep", "1", "--older-than", "0s"]);
    assert_eq!(dry["dry_run"], true);
    assert!(dry["objects"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(all_objects(&state), before, "--dry-run deleted something");
    let (_, out, _) = l.run(&["deployments", "--site", "demo", "--json"]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // --older-than 7d: every deployment is younger; only the deleted site's files go.
    let r = gc(&l, &["--older-than", "7d", "--keep", "0"]);
    let after = all_objects(&state);
    assert_eq!(freed(&r), gone(&before, &after), "{r}");
    for (i, objects) in after.iter().enumerate() {
        assert!(
            !objects.keys().any(|k| k.starts_with("sites/gone/")),
            "{}: the deleted site's files remain",
            REGIONS[i]
        );
        assert!(before[i].keys().any(|k| k.starts_with("sites/gone/")));
        assert_eq!(
            objects.len(),
            before[i]
                .keys()
                .filter(|k| !k.starts_with("sites/gone/"))
                .count()
        );
    }
    assert_eq!(r["deployments"], serde_json::json!([]), "{r}");

    // --keep 2: the newest two (d3, d2) stay; d1 goes, except its blobs the deploy in
    // flight uses. Printed first, in text: what it frees (count and bytes).
    let before = after;
    let (ok, text, err) = l.run(&["gc", "--grace", "1m", "--keep", "2", "--older-than", "0s"]);
    assert!(ok, "{err}");
    let after = all_objects(&state);
    let lines: Vec<&str> = text.lines().collect();
    let (n, bytes) = gone(&before, &after)
        .iter()
        .fold((0, 0), |(n, b), (n1, b1)| (n + n1, b + b1));
    assert_eq!(
        lines[0],
        format!("gc frees {n} objects ({bytes} bytes) and 1 deployment record"),
        "{text}"
    );
    assert_eq!(lines.last(), Some(&"done"), "{text}");
    assert!(n > 0);
    for (i, objects) in after.iter().enumerate() {
        let r = REGIONS[i];
        assert!(
            !objects.contains_key(&format!("sites/demo/manifests/{d1}.json")),
            "{r}"
        );
        for k in &only_d1 {
            assert_eq!(
                objects.contains_key(k),
                in_flight_keys.contains(k),
                "{r}: {k}"
            );
        }
        for k in d2_keys.iter().chain(&d3_keys).chain(&in_flight_keys) {
            assert!(objects.contains_key(k), "{r}: {k} was taken");
        }
        assert!(
            objects.contains_key(&manifest_key),
            "{r}: the in-flight manifest"
        );
    }
    assert!(
        only_d1.iter().any(|k| !in_flight_keys.contains(k)),
        "d1 has blobs nothing else uses"
    );

    // --keep 0 --older-than 0s: only the live deployment (and the deploy in flight)
    // remain; the blob of d2 the deploy in flight uses stays.
    let before = after;
    let r = gc(&l, &["--keep", "0", "--older-than", "0s"]);
    let after = all_objects(&state);
    assert_eq!(freed(&r), gone(&before, &after), "{r}");
    assert_eq!(r["deployments"], serde_json::json!([format!("demo/{d2}")]));
    for (i, objects) in after.iter().enumerate() {
        let r = REGIONS[i];
        assert!(
            !objects.contains_key(&format!("sites/demo/manifests/{d2}.json")),
            "{r}"
        );
        for k in &only_d2 {
            assert_eq!(
                objects.contains_key(k),
                in_flight_keys.contains(k),
                "{r}: {k}"
            );
        }
        for k in d3_keys.iter().chain(&in_flight_keys) {
            assert!(objects.contains_key(k), "{r}: {k} was taken");
        }
    }
    let (_, out, _) = l.run(&["deployments", "--site", "demo", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![d3.as_str()]);
    verify_clean(&l);
    every_region(
        &l,
        "demo.test",
        "/about.html",
        Duration::from_secs(2),
        "the live site",
        |g| g.status == 200 && g.header("x-skyhost-deployment") == d3 && g.body.contains("three"),
    )
    .await;
    // Nothing more to free.
    let r = gc(&l, &["--keep", "0", "--older-than", "0s"]);
    assert_eq!(r["objects"], 0, "{r}");
}
