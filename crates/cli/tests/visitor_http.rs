//! A deployed site as a visitor's client sees it, through local mode's edge router: every
//! known-length body says its length (`GET` and `HEAD`, fresh and cached, identity and
//! compressed), the 404 page ignores validators it does not have, and redbot, an
//! independent HTTP linter, finds nothing wrong (0 BAD, 0 WARN) with the page, the
//! stylesheet, the hashed script, the image and the 404 page.

mod common;

use common::local::{until, Local};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The site's domain: the loopback address itself, since redbot resolves names through
/// DNS alone (not `/etc/hosts`), so neither `localhost` nor `*.localhost` reach it.
const DOMAIN: &str = "127.0.0.1";

/// Every file of the fixture, and the missing path whose answer is its 404 page.
const PATHS: [&str; 5] = [
    "/",
    "/css/site.css",
    "/js/app.3f9a1c2b.js",
    "/img/logo.png",
    "/no/such/page",
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/visitor-site")
}

/// Starts local mode with the fixture deployed on [`DOMAIN`]; the edge's base URL.
async fn deployed(tmp: &Path) -> (Local, String) {
    let l = Local::start(tmp, 1).await;
    let (ok, out, err) = l.run(&[
        "deploy",
        fixture().to_str().unwrap(),
        "--site",
        "visitor",
        "--domain",
        DOMAIN,
        "--json",
    ]);
    assert!(ok, "deploy: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("deploy --json output");
    let deployment = v["deployment"]
        .as_str()
        .expect("a deployment id")
        .to_owned();
    let base = format!("http://{DOMAIN}:{}", l.port);
    until(Duration::from_secs(10), "the deployment served", || async {
        let r = l.http.get(format!("{base}/")).send().await;
        r.is_ok_and(|r| {
            r.headers()
                .get("x-skyhost-deployment")
                .is_some_and(|v| v.as_bytes() == deployment.as_bytes())
        })
    })
    .await;
    (l, base)
}

/// `Content-Length` of an answer, which must not be chunked.
fn length(r: &reqwest::Response, what: &str) -> u64 {
    assert!(
        r.headers().get("transfer-encoding").is_none(),
        "{what}: sent chunked: {:?}",
        r.headers()
    );
    r.headers()
        .get("content-length")
        .unwrap_or_else(|| panic!("{what}: no Content-Length: {:?}", r.headers()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_length_bodies_say_their_length_on_get_and_head() {
    let tmp = tempfile::tempdir().unwrap();
    let (l, base) = deployed(tmp.path()).await;
    for path in PATHS {
        for coding in [None, Some("br"), Some("gzip")] {
            // The second GET of a path comes from the cache: it too keeps its length.
            for round in ["first", "cached"] {
                let what = format!("GET {path} ({coding:?}, {round})");
                let mut req = l.http.get(format!("{base}{path}"));
                if let Some(c) = coding {
                    req = req.header("accept-encoding", c);
                }
                let r = req.send().await.unwrap();
                let status = r.status();
                let cache = r.headers().get("x-skyhost-cache").cloned();
                let said = length(&r, &what);
                let body = r.bytes().await.unwrap();
                assert_eq!(said, body.len() as u64, "{what}");
                assert!(!body.is_empty(), "{what}");
                if round == "cached" {
                    assert_eq!(cache.unwrap(), "hit", "{what}");
                }

                let mut head = l.http.head(format!("{base}{path}"));
                if let Some(c) = coding {
                    head = head.header("accept-encoding", c);
                }
                let h = head.send().await.unwrap();
                assert_eq!(h.status(), status, "HEAD {what}");
                assert_eq!(length(&h, &format!("HEAD {what}")), said, "HEAD {what}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_404_page_has_no_validators_and_ignores_conditions() {
    let tmp = tempfile::tempdir().unwrap();
    let (l, base) = deployed(tmp.path()).await;
    let page = std::fs::read(fixture().join("404.html")).unwrap();
    let file = l.http.get(format!("{base}/")).send().await.unwrap();
    let etag = file.headers()["etag"].clone();
    let last_modified = file.headers()["last-modified"].clone();
    let conditions = [
        ("if-none-match", etag.clone()),
        ("if-none-match", "*".parse().unwrap()),
        ("if-modified-since", last_modified.clone()),
        (
            "if-modified-since",
            "Fri, 01 Jan 2100 00:00:00 GMT".parse().unwrap(),
        ),
        ("if-match", "\"other\"".parse().unwrap()),
        ("range", "bytes=0-9".parse().unwrap()),
    ];
    for (name, value) in conditions {
        let r = l
            .http
            .get(format!("{base}/no/such/page"))
            .header(name, value.clone())
            .send()
            .await
            .unwrap();
        let what = format!("{name}: {value:?}");
        assert_eq!(r.status(), 404, "{what}");
        assert!(r.headers().get("etag").is_none(), "{what}");
        assert!(r.headers().get("last-modified").is_none(), "{what}");
        assert_eq!(r.bytes().await.unwrap(), page, "{what}");
    }
    // The file itself still answers its validators.
    let r = l
        .http
        .get(format!("{base}/"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
}

/// redbot's notes on `url` at level BAD or WARN, as `LEVEL NOTE_ID: summary`.
fn redbot_complaints(url: &str) -> Vec<String> {
    let out = std::process::Command::new(skyhost_testkit::redbot_binary())
        .args(["-o", "har", url])
        .output()
        .expect("run redbot");
    assert!(
        out.status.success(),
        "redbot {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let har: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "redbot {url}: output is not HAR ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let entries = har["log"]["entries"].as_array().expect("HAR entries");
    assert!(!entries.is_empty(), "redbot {url}: no entry");
    let mut notes = 0;
    let mut complaints = Vec::new();
    for e in entries {
        let status = e["response"]["status"].as_i64().unwrap_or(0);
        assert!(status > 0, "redbot {url}: no response: {e}");
        for n in e["_red_messages"].as_array().expect("redbot notes") {
            notes += 1;
            let level = n["level"].as_str().unwrap_or("");
            if level == "BAD" || level == "WARN" {
                complaints.push(format!("{level} {}: {}", n["note_id"], n["summary"]));
            }
        }
    }
    assert!(notes > 0, "redbot {url}: no notes at all");
    complaints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redbot_finds_nothing_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let (_l, base) = deployed(tmp.path()).await;
    let mut all = Vec::new();
    for path in PATHS {
        let url = format!("{base}{path}");
        let u = url.clone();
        let complaints = tokio::task::spawn_blocking(move || redbot_complaints(&u))
            .await
            .unwrap();
        all.extend(complaints.into_iter().map(|c| format!("{url}: {c}")));
    }
    assert!(all.is_empty(), "redbot:\n{}", all.join("\n"));
}
