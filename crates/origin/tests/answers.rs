//! Kept answers (`skyhost_origin::answers`) never change what a visitor gets: repeated
//! requests get the full path's answer, conditional, range and `HEAD` requests keep their
//! semantics, rules on country and language still apply, and a new deployment is served
//! on the very next request.

mod common;

use common::*;
use http::{Method, StatusCode};
use skyhost_meta::secrets::Secret;
use skyhost_meta::store::MetaStore;

const HOST: &str = "kept.test";

const REDIRECTS: &str = "\
/promo          /de.html          302  Country=de
/promo          /fr.html          302  Language=fr
/promo          /index.html       200
";

const HEADERS: &str = "\
/style.css
  X-Kept: yes
";

/// Rules that look only at the path: answers may be kept.
const PLAIN_REDIRECTS: &str = "\
/old            /style.css        301
";

fn files(version: &str) -> Vec<TestFile> {
    vec![
        file("/index.html", format!("index {version}"), "text/html"),
        compressed(
            "/style.css",
            "body { color: black } ".repeat(40),
            "text/css",
        ),
    ]
}

/// The headers that must be equal between two answers of the same file.
fn stable(g: &Got) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = g
        .headers
        .iter()
        .filter(|(k, _)| k.as_str() != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    v.sort();
    v
}

/// Site "kept" on [`HOST`] with `rules`, deployed and served by an origin with `config`.
async fn serving(rules: skyhost_rules::SiteRules, config: skyhost_origin::OriginConfig) -> Kept {
    let env = Embedded::new("us-west-2");
    let deployed = deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        "kept",
        &[HOST],
        &files("A"),
        rules,
    )
    .await;
    let origin = env.origin(config);
    let server = start(origin.clone()).await;
    Kept {
        env,
        deployed,
        origin,
        server,
        c: client(),
    }
}

struct Kept {
    env: Embedded,
    deployed: Deployed,
    origin: std::sync::Arc<skyhost_origin::Origin>,
    server: Running,
    c: reqwest::Client,
}

#[tokio::test]
async fn repeated_requests_get_the_full_paths_answer() {
    // The stores live as long as `_env`.
    let Kept {
        env: _env,
        origin,
        server,
        c,
        ..
    } = serving(rules(Some(PLAIN_REDIRECTS), Some(HEADERS), None), config()).await;
    let gzip = [("accept-encoding", "gzip")];
    let first = send(&c, &server.base, Method::GET, HOST, "/style.css", &gzip).await;
    // The second answer is the first from the cache; later ones may be kept answers.
    let hit = send(&c, &server.base, Method::GET, HOST, "/style.css", &gzip).await;
    assert_eq!(hit.cache(), "hit");
    assert_eq!(hit.header("x-kept"), Some("yes"));
    assert_eq!(hit.header("content-encoding"), Some("gzip"));
    for i in 0..6 {
        let g = send(&c, &server.base, Method::GET, HOST, "/style.css", &gzip).await;
        assert_eq!(g.status, StatusCode::OK, "{i}");
        assert_eq!(g.body, first.body, "{i}");
        assert_eq!(stable(&g), stable(&hit), "{i}");
    }
    // The test runtime is single-threaded: the server answered on this thread.
    assert!(
        origin.kept_answers_served_here() >= 4,
        "kept answers were not served"
    );
    // Another coding of the same path is its own answer.
    let plain = get(&c, &server.base, HOST, "/style.css").await;
    let moved = get(&c, &server.base, HOST, "/old").await;
    assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.text(), "body { color: black } ".repeat(40));

    // Conditional, range and HEAD requests after the answer was kept.
    let etag = hit.header("etag").unwrap().to_owned();
    let g = send(
        &c,
        &server.base,
        Method::GET,
        HOST,
        "/style.css",
        &[("accept-encoding", "gzip"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(g.status, StatusCode::NOT_MODIFIED);
    assert!(g.body.is_empty());
    let g = send(
        &c,
        &server.base,
        Method::GET,
        HOST,
        "/style.css",
        &[("range", "bytes=0-3")],
    )
    .await;
    assert_eq!(g.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(g.text(), "body");
    let g = send(&c, &server.base, Method::HEAD, HOST, "/style.css", &gzip).await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(g.body.is_empty());
    assert_eq!(g.header("content-length"), hit.header("content-length"));
    server.stop().await;
}

#[tokio::test]
async fn country_and_language_rules_still_apply() {
    // The stores live as long as `_env`.
    let Kept {
        env: _env,
        origin,
        server,
        c,
        ..
    } = serving(rules(Some(REDIRECTS), None, None), {
        let mut c = config();
        c.origin_verify = Some(Secret::fixed(vec![b"front".to_vec()]));
        c
    })
    .await;
    for _ in 0..6 {
        let g = get(&c, &server.base, HOST, "/promo").await;
        assert_eq!((g.status, g.text()), (StatusCode::OK, "index A".to_owned()));
    }
    // The country as the verified front (CloudFront) tells it.
    let front = ("x-skyhost-origin-verify", "front");
    let visitors = [
        (vec![("cloudfront-viewer-country", "DE"), front], "/de.html"),
        (vec![("accept-language", "fr-FR,fr;q=0.9")], "/fr.html"),
    ];
    for (header, location) in visitors {
        let g = send(&c, &server.base, Method::GET, HOST, "/promo", &header).await;
        assert_eq!(g.status, StatusCode::FOUND, "{header:?}");
        assert_eq!(g.header("location"), Some(location), "{header:?}");
    }
    assert_eq!(
        origin.kept_answers_served_here(),
        0,
        "a site with such rules keeps nothing"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_new_deployment_is_served_on_the_next_request() {
    let mut config = config();
    config.notify_secret = skyhost_meta::secrets::Secret::fixed(vec![b"secret".to_vec()]);
    let Kept {
        env,
        deployed: a,
        origin,
        server,
        c,
    } = serving(rules(None, None, None), config).await;
    let b = deploy_inactive(
        env.meta.as_ref(),
        env.local.as_ref(),
        "kept",
        &[HOST],
        &files("B"),
    )
    .await;
    for _ in 0..6 {
        assert_eq!(get(&c, &server.base, HOST, "/").await.text(), "index A");
    }
    assert!(
        origin.kept_answers_served_here() >= 2,
        "kept answers were not served"
    );
    let activated: skyhost_meta::Site = env
        .meta
        .activate(&a.site.id, b.id(), a.site.revision, skyhost_meta::now())
        .await
        .unwrap();
    let (body, sig) = signed_notification(
        b"secret",
        &activated.id,
        activated.revision,
        Some(&activated),
        skyhost_meta::now(),
    );
    let resp = c
        .post(format!("{}/_skyhost/notify", server.base))
        .header("host", "us-west-2.origin.test")
        .header("x-skyhost-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let g = get(&c, &server.base, HOST, "/").await;
    assert_eq!(g.text(), "index B");
    assert_eq!(g.header("x-skyhost-deployment"), Some(b.id().as_str()));
    server.stop().await;
}
