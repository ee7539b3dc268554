//! `[geo]` in local mode, where the edge router plays CloudFront: the simulated visitor's
//! `CloudFront-Viewer-Country` decides, through the edge only. Allow, deny, an unknown
//! country, the site's page, a refused deploy, and a direct request that may not claim a
//! country.

mod common;

use common::local::{until, Local, REGIONS};
use std::path::Path;
use std::time::Duration;

/// A small site whose `skyhost.toml` is `config`.
fn write_site(dir: &Path, config: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><h1>home</h1>\n").unwrap();
    std::fs::write(
        dir.join("unavailable.html"),
        "<!doctype html><h1>not in your country</h1>\n",
    )
    .unwrap();
    std::fs::write(dir.join("skyhost.toml"), config).unwrap();
}

/// Deploys `site` and waits until the edge answers with the new deployment (an origin
/// converges on a new site record within about a second).
async fn deploy(l: &Local, site: &Path) {
    let d = l.deploy(site).expect("deploys");
    until(Duration::from_secs(10), "the new deployment", || async {
        let r = l
            .http
            .get(l.edge())
            .header("host", "demo.test")
            .header("x-skyhost-client-region", REGIONS[0])
            .send()
            .await;
        r.is_ok_and(|r| {
            r.headers()
                .get("x-skyhost-deployment")
                .is_some_and(|v| v.as_bytes() == d.as_bytes())
        })
    })
    .await;
}

/// `GET /` for `demo.test` at `base`, from `country` when given: status and body. The
/// visitor is near the primary, which serves a deployment as soon as the deploy returns.
async fn visit(l: &Local, base: &str, country: Option<&str>) -> (u16, String) {
    let mut req = l
        .http
        .get(base)
        .header("host", "demo.test")
        .header("x-skyhost-client-region", REGIONS[0]);
    if let Some(c) = country {
        req = req.header("cloudfront-viewer-country", c);
    }
    let r = req.send().await.expect("the edge answers");
    let status = r.status().as_u16();
    (status, r.text().await.expect("a body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geo_allow_deny_unknown_and_page() {
    let tmp = tempfile::tempdir().unwrap();
    let l = Local::start(tmp.path(), 1).await;
    let edge = l.edge();
    let site = tmp.path().join("site");

    // An invalid country fails the deploy with file:line, and nothing is served.
    write_site(
        &site,
        "pretty_urls = true\n[geo]\nallow = [\"DE\", \"ZZ\"]\n",
    );
    let err = l.deploy(&site).expect_err("ZZ is no country");
    assert!(
        err.contains("skyhost.toml:3: 'ZZ' is not an ISO 3166-1"),
        "{err}"
    );

    // deny: the listed country gets 403 with the page; others and the unknown are served.
    write_site(
        &site,
        "[geo]\ndeny = [\"RU\"]\npage = \"/unavailable.html\"\n",
    );
    deploy(&l, &site).await;
    let (status, body) = visit(&l, &edge, Some("RU")).await;
    assert_eq!(status, 403);
    assert!(body.contains("not in your country"), "{body}");
    for country in [Some("DE"), Some("us"), None] {
        let (status, body) = visit(&l, &edge, country).await;
        assert_eq!(status, 200, "{country:?}: {body}");
        assert!(body.contains("home"), "{body}");
    }

    // allow, no page: listed countries are served; others and the unknown get 403 in
    // plain text.
    write_site(&site, "[geo]\nallow = [\"DE\", \"FR\"]\n");
    deploy(&l, &site).await;
    for country in ["DE", "fr"] {
        let (status, body) = visit(&l, &edge, Some(country)).await;
        assert_eq!(status, 200, "{country}: {body}");
    }
    for country in [Some("US"), None] {
        let (status, body) = visit(&l, &edge, country).await;
        assert_eq!(status, 403, "{country:?}: {body}");
        assert_eq!(body, "This site is not available in your country.\n");
    }

    // Straight to a region's origin, past the edge: the country header is the visitor's
    // own claim, ignored, so the visitor is unknown and an allow list refuses it.
    let (status, _) = visit(&l, &l.region(0), Some("DE")).await;
    assert_eq!(status, 403, "a direct request may not claim a country");

    // The rule goes with the deployment: without [geo] everyone is served again.
    write_site(&site, "pretty_urls = true\n");
    deploy(&l, &site).await;
    let (status, _) = visit(&l, &edge, Some("US")).await;
    assert_eq!(status, 200);
}
