//! Serving a site end to end through `server::serve` on 127.0.0.1 (reqwest as the client),
//! with the embedded backends: resolution, paths, HTTP semantics, errors, rules, health.
//! Paths an HTTP client would normalise are sent to `Origin::handle` directly.

mod common;

use common::*;
use http::{Method, StatusCode};
use skyhost_meta::secrets::Secret;
use skyhost_meta::store::MetaStore;
use skyhost_meta::{Encoding, RegionStatus, SiteId};
use skyhost_origin::Origin;
use std::sync::Arc;
use std::time::Duration;

const HOST: &str = "web.test";
/// The origin-verify secret of the front `web()`'s origin sits behind.
const FRONT: &str = "front-secret";

fn js() -> Vec<u8> {
    "console.log('skyhost');\n".repeat(200).into_bytes()
}

fn data() -> Vec<u8> {
    (0u8..32).collect()
}

fn web_files() -> Vec<TestFile> {
    vec![
        compressed(
            "/index.html",
            "<h1>home</h1>\n".repeat(20),
            "text/html; charset=utf-8",
        ),
        file("/about.html", "<h1>about</h1>", "text/html; charset=utf-8"),
        file(
            "/docs/index.html",
            "<h1>docs</h1>",
            "text/html; charset=utf-8",
        ),
        compressed("/assets/app.3f9a1c2b.js", js(), "text/javascript"),
        file("/style.css", "body{color:red}", "text/css"),
        file("/forced.txt", "forced", "text/plain"),
        file(
            "/404.html",
            "<h1>custom 404</h1>",
            "text/html; charset=utf-8",
        ),
        file(
            "/50x.html",
            "<h1>custom 5xx</h1>",
            "text/html; charset=utf-8",
        ),
        file("/data.bin", data(), "application/octet-stream"),
        file("/empty.txt", "", "text/plain"),
        file("/_skyhost/secret.txt", "never served", "text/plain"),
        file(
            "/guides/café menu.html",
            "<h1>menu</h1>",
            "text/html; charset=utf-8",
        ),
    ]
}

const REDIRECTS: &str = "\
/old            /about            301
/blog/*         /news/:splat      302
/app/*          /index.html       200
/about          /elsewhere        301
/forced.txt     /about            302!
/gone           /404.html         410
/de             /about            302  Country=de
/fr             /about            302  Language=fr
";

const HEADERS: &str = "\
/*
  X-Frame-Options: DENY
/style.css
  Cache-Control: public, max-age=60
";

struct Web {
    env: Embedded,
    deployed: Deployed,
    origin: Arc<Origin>,
    server: Running,
    client: reqwest::Client,
}

async fn web() -> Web {
    let env = Embedded::new("us-west-2");
    let deployed = deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        "web",
        &[HOST, "www.web.test"],
        &web_files(),
        rules(Some(REDIRECTS), Some(HEADERS), None),
    )
    .await;
    let mut c = config();
    c.origin_verify = Some(Secret::fixed(vec![FRONT.into()]));
    let origin = env.origin(c);
    let server = start(origin.clone()).await;
    Web {
        env,
        deployed,
        origin,
        server,
        client: client(),
    }
}

impl Web {
    async fn get(&self, path: &str) -> Got {
        get(&self.client, &self.server.base, HOST, path).await
    }

    async fn with(&self, path: &str, headers: &[(&str, &str)]) -> Got {
        send(
            &self.client,
            &self.server.base,
            Method::GET,
            HOST,
            path,
            headers,
        )
        .await
    }
}

/// One runtime per thread: many connections at once all get whole answers, and shutdown
/// stops every thread.
#[tokio::test]
async fn serving_from_one_runtime_per_thread() {
    let env = Embedded::new("us-west-2");
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        "web",
        &[HOST],
        &web_files(),
        rules(None, None, None),
    )
    .await;
    let server = start_threads(env.origin(config()), 2).await;
    let mut answers = Vec::new();
    for _ in 0..16 {
        // A fresh client per task: each opens its own connection.
        let (c, base) = (client(), server.base.clone());
        answers.push(tokio::spawn(async move {
            let mut bodies = Vec::new();
            for _ in 0..10 {
                bodies.push(get(&c, &base, HOST, "/style.css").await);
            }
            bodies
        }));
    }
    for a in answers {
        for got in a.await.unwrap() {
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(&got.body[..], b"body{color:red}");
        }
    }
    tokio::time::timeout(Duration::from_secs(15), server.stop())
        .await
        .expect("every thread drains and stops");
}

#[tokio::test]
async fn files_directories_and_pretty_urls() {
    let w = web().await;
    let home = "<h1>home</h1>\n".repeat(20);
    // (path, status, body); Host with a port and in upper case resolves the same site.
    let cases: &[(&str, StatusCode, &str)] = &[
        ("/", StatusCode::OK, &home),
        ("/index.html", StatusCode::OK, &home),
        ("/about", StatusCode::OK, "<h1>about</h1>"),
        ("/about/", StatusCode::OK, "<h1>about</h1>"),
        ("/about.html", StatusCode::OK, "<h1>about</h1>"),
        ("/docs", StatusCode::OK, "<h1>docs</h1>"),
        ("/docs/", StatusCode::OK, "<h1>docs</h1>"),
        ("/style.css", StatusCode::OK, "body{color:red}"),
        (
            "/guides/caf%C3%A9%20menu.html",
            StatusCode::OK,
            "<h1>menu</h1>",
        ),
        ("/guides/caf%C3%A9%20menu", StatusCode::OK, "<h1>menu</h1>"),
        ("/docs//", StatusCode::OK, "<h1>docs</h1>"),
        ("/empty.txt", StatusCode::OK, ""),
        ("/style.css/", StatusCode::MOVED_PERMANENTLY, ""),
        ("/missing", StatusCode::NOT_FOUND, "<h1>custom 404</h1>"),
        (
            "/%252e%252e/secret",
            StatusCode::NOT_FOUND,
            "<h1>custom 404</h1>",
        ),
    ];
    for (path, status, body) in cases {
        let g = w.get(path).await;
        assert_eq!(g.status, *status, "{path}");
        assert_eq!(g.text(), *body, "{path}");
        assert_eq!(g.header("x-skyhost-region"), Some("us-west-2"), "{path}");
        assert_eq!(
            g.header("x-skyhost-deployment"),
            Some(w.deployed.id().as_str()),
            "{path}"
        );
        assert!(
            ["hit", "miss"].contains(&g.cache()),
            "{path}: {:?}",
            g.cache()
        );
    }
    for host in ["WEB.TEST:8080", "www.web.test", "web.test."] {
        let g = get(&w.client, &w.server.base, host, "/about").await;
        assert_eq!(g.status, StatusCode::OK, "{host}");
        assert_eq!(g.text(), "<h1>about</h1>", "{host}");
    }
    let g = w.get("/style.css/?v=1").await;
    assert_eq!(g.header("location"), Some("/style.css?v=1"));
    w.server.stop().await;
}

#[tokio::test]
async fn bad_paths_are_400_and_reserved_paths_never_serve_files() {
    let w = web().await;
    for path in [
        "/..",
        "/../etc/passwd",
        "/a/../index.html",
        "/%2e%2e/index.html",
        "/a%2f..%2findex.html",
        "/..%5cindex.html",
        "/a\\b",
        "/a%00b",
        "/%ff",
        "/%zz",
        "/./index.html",
    ] {
        let g = call(&w.origin, Method::GET, HOST, path, &[]).await;
        assert_eq!(g.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(g.text(), "Bad Request\n", "{path}");
    }
    for path in [
        "/_skyhost/secret.txt",
        "/%5Fskyhost/secret.txt",
        "/_skyhost",
    ] {
        let g = call(&w.origin, Method::GET, HOST, path, &[]).await;
        assert_eq!(g.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!g.text().contains("never"), "{path}");
    }
    // The reserved prefix is judged after decoding, on every host.
    let g = call(
        &w.origin,
        Method::GET,
        "nobody.test",
        "/%5Fskyhost/health",
        &[],
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.header("content-type"), Some("application/json"));
    w.server.stop().await;
}

#[tokio::test]
async fn unknown_hosts_reveal_nothing() {
    let w = web().await;
    let meta = w.env.meta.as_ref();
    // A suspended site and a site without a deployment look exactly like no site at all.
    let d = deploy(
        meta,
        w.env.local.as_ref(),
        "suspended",
        &["suspended.test"],
        &[file("/index.html", "secret", "text/html")],
        rules(None, None, None),
    )
    .await;
    let mut next = d.site.next(skyhost_meta::now());
    next.settings.suspended = true;
    meta.put_site(Some(&d.site), &next).await.unwrap();
    let mut empty = skyhost_meta::Site::new(SiteId::parse("empty").unwrap(), 0);
    empty.domains = vec![skyhost_meta::Domain::parse("empty.test").unwrap()];
    meta.put_site(None, &empty).await.unwrap();

    let fresh = w.env.origin(config());
    let mut answers = Vec::new();
    for host in [
        "nobody.test",
        "suspended.test",
        "empty.test",
        "[::1]:80",
        "bad host",
    ] {
        let g = call(&fresh, Method::GET, host, "/index.html", &[]).await;
        let mut headers: Vec<(String, String)> = g
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        answers.push((host, g.status, headers, g.body.clone()));
    }
    for (host, status, headers, body) in &answers {
        assert_eq!(*status, StatusCode::NOT_FOUND, "{host}");
        assert_eq!(headers, &answers[0].2, "{host}");
        assert_eq!(body, &answers[0].3, "{host}");
        assert!(
            !headers.iter().any(|(k, _)| k == "x-skyhost-deployment"),
            "{host}"
        );
    }
    w.server.stop().await;
}

#[tokio::test]
async fn forwarded_host_only_from_a_trusted_front() {
    let w = web().await;
    let headers = [
        ("x-forwarded-host", HOST),
        ("x-forwarded-for", "198.51.100.23, 130.176.0.1"),
    ];
    let untrusted = call(&w.origin, Method::GET, "origin.test", "/about", &headers).await;
    assert_eq!(untrusted.status, StatusCode::NOT_FOUND);
    let trusted = &w.origin;
    let verified = [headers[0], headers[1], ("x-skyhost-origin-verify", FRONT)];
    let g = call(trusted, Method::GET, "origin.test", "/about", &verified).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.text(), "<h1>about</h1>");
    // Without X-Forwarded-Host the Host header still counts.
    let g = call(trusted, Method::GET, HOST, "/about", &[]).await;
    assert_eq!(g.status, StatusCode::OK);
    w.server.stop().await;
}

#[tokio::test]
async fn validators_and_preconditions() {
    let w = web().await;
    let g = w.get("/style.css").await;
    let etag = format!("\"{}\"", w.deployed.entry("/style.css").hash);
    assert_eq!(g.header("etag"), Some(etag.as_str()));
    assert_eq!(
        g.header("last-modified"),
        Some("Sat, 03 Jan 2026 10:11:12 GMT")
    );
    assert_eq!(g.header("content-type"), Some("text/css"));
    assert_eq!(g.header("accept-ranges"), Some("bytes"));
    let weak = format!("W/{etag}");
    let cases: Vec<(Vec<(&str, &str)>, StatusCode)> = vec![
        (
            vec![("if-none-match", etag.as_str())],
            StatusCode::NOT_MODIFIED,
        ),
        (
            vec![("if-none-match", weak.as_str())],
            StatusCode::NOT_MODIFIED,
        ),
        (vec![("if-none-match", "\"other\"")], StatusCode::OK),
        (vec![("if-none-match", "*")], StatusCode::NOT_MODIFIED),
        (
            vec![("if-modified-since", "Sat, 03 Jan 2026 10:11:12 GMT")],
            StatusCode::NOT_MODIFIED,
        ),
        (
            vec![("if-modified-since", "Sat, 03 Jan 2026 10:11:11 GMT")],
            StatusCode::OK,
        ),
        (vec![("if-match", etag.as_str())], StatusCode::OK),
        (
            vec![("if-match", "\"other\"")],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            vec![("if-match", weak.as_str())],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            vec![("if-unmodified-since", "Sat, 03 Jan 2026 10:11:11 GMT")],
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            vec![("if-unmodified-since", "Sat, 03 Jan 2026 10:11:12 GMT")],
            StatusCode::OK,
        ),
    ];
    for (headers, status) in cases {
        let g = w.with("/style.css", &headers).await;
        assert_eq!(g.status, status, "{headers:?}");
        if status == StatusCode::NOT_MODIFIED {
            assert!(g.body.is_empty());
            assert_eq!(g.header("etag"), Some(etag.as_str()));
            assert_eq!(g.header("cache-control"), Some("public, max-age=60"));
            assert!(g.header("x-skyhost-deployment").is_some());
        }
    }
    w.server.stop().await;
}

#[tokio::test]
async fn byte_ranges() {
    let w = web().await;
    let body = data();
    let etag = format!("\"{}\"", w.deployed.entry("/data.bin").hash);
    type Case<'a> = (
        Vec<(&'a str, &'a str)>,
        StatusCode,
        Option<&'a str>,
        Vec<u8>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![("range", "bytes=0-4")],
            StatusCode::PARTIAL_CONTENT,
            Some("bytes 0-4/32"),
            body[0..5].to_vec(),
        ),
        (
            vec![("range", "bytes=30-")],
            StatusCode::PARTIAL_CONTENT,
            Some("bytes 30-31/32"),
            body[30..].to_vec(),
        ),
        (
            vec![("range", "bytes=-3")],
            StatusCode::PARTIAL_CONTENT,
            Some("bytes 29-31/32"),
            body[29..].to_vec(),
        ),
        (
            vec![("range", "bytes=10-1000")],
            StatusCode::PARTIAL_CONTENT,
            Some("bytes 10-31/32"),
            body[10..].to_vec(),
        ),
        (
            vec![("range", "bytes=32-")],
            StatusCode::RANGE_NOT_SATISFIABLE,
            Some("bytes */32"),
            vec![],
        ),
        (
            vec![("range", "bytes=x-y")],
            StatusCode::RANGE_NOT_SATISFIABLE,
            Some("bytes */32"),
            vec![],
        ),
        (
            vec![("range", "bytes=0-1,4-5")],
            StatusCode::OK,
            None,
            body.clone(),
        ),
        (
            vec![("range", "bytes=0-4"), ("if-range", etag.as_str())],
            StatusCode::PARTIAL_CONTENT,
            Some("bytes 0-4/32"),
            body[0..5].to_vec(),
        ),
        (
            vec![("range", "bytes=0-4"), ("if-range", "\"stale\"")],
            StatusCode::OK,
            None,
            body.clone(),
        ),
        (
            vec![
                ("range", "bytes=0-4"),
                ("if-range", "Sat, 03 Jan 2026 10:11:12 GMT"),
            ],
            StatusCode::PARTIAL_CONTENT,
            Some("bytes 0-4/32"),
            body[0..5].to_vec(),
        ),
        (
            vec![
                ("range", "bytes=0-4"),
                ("if-range", "Sat, 03 Jan 2026 10:11:13 GMT"),
            ],
            StatusCode::OK,
            None,
            body.clone(),
        ),
        // A satisfied precondition answers 304 before any range.
        (
            vec![("range", "bytes=0-4"), ("if-none-match", etag.as_str())],
            StatusCode::NOT_MODIFIED,
            None,
            vec![],
        ),
    ];
    for (headers, status, content_range, want) in cases {
        let g = w.with("/data.bin", &headers).await;
        assert_eq!(g.status, status, "{headers:?}");
        assert_eq!(g.header("content-range"), content_range, "{headers:?}");
        assert_eq!(g.body.to_vec(), want, "{headers:?}");
        if status != StatusCode::NOT_MODIFIED {
            assert_eq!(
                g.header("content-length"),
                Some(want.len().to_string().as_str()),
                "{headers:?}"
            );
        }
    }
    // Ranges apply to the identity body even when the client takes br.
    let g = w
        .with(
            "/index.html",
            &[("range", "bytes=0-3"), ("accept-encoding", "br")],
        )
        .await;
    assert_eq!(g.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(g.header("content-encoding"), None);
    assert_eq!(g.text(), "<h1>");
    // A cached body is sliced the same way.
    assert!(
        eventually(Duration::from_secs(2), || async {
            w.get("/data.bin").await.cache() == "hit"
        })
        .await
    );
    let g = w.with("/data.bin", &[("range", "bytes=2-5")]).await;
    assert_eq!(g.cache(), "hit");
    assert_eq!(g.body.to_vec(), body[2..6].to_vec());
    w.server.stop().await;
}

#[tokio::test]
async fn content_codings_and_cache_control() {
    let w = web().await;
    let path = "/assets/app.3f9a1c2b.js";
    let hash = w.deployed.entry(path).hash.to_string();
    let cases: &[(Option<&str>, Option<&str>)] = &[
        (None, None),
        (Some("br, gzip"), Some("br")),
        (Some("gzip"), Some("gzip")),
        (Some("gzip;q=1, br;q=0.5"), Some("gzip")),
        (Some("identity"), None),
        (Some("br;q=0, gzip;q=0"), None),
    ];
    for (accept, coding) in cases {
        let headers: Vec<(&str, &str)> =
            accept.map(|a| ("accept-encoding", a)).into_iter().collect();
        let g = w.with(path, &headers).await;
        assert_eq!(g.status, StatusCode::OK, "{accept:?}");
        assert_eq!(g.header("content-encoding"), *coding, "{accept:?}");
        assert_eq!(g.header("vary"), Some("Accept-Encoding"), "{accept:?}");
        assert_eq!(
            g.header("cache-control"),
            Some("max-age=31536000, immutable")
        );
        assert_eq!(g.header("content-type"), Some("text/javascript"));
        let etag = match coding {
            Some(c) => format!("\"{hash}-{c}\""),
            None => format!("\"{hash}\""),
        };
        assert_eq!(g.header("etag"), Some(etag.as_str()), "{accept:?}");
        let plain = match *coding {
            Some("br") => unbrotli(&g.body),
            Some("gzip") => gunzip(&g.body),
            _ => g.body.to_vec(),
        };
        assert_eq!(plain, js(), "{accept:?}");
        assert_eq!(
            g.header("content-length"),
            Some(g.body.len().to_string().as_str())
        );
        assert!(g.body.len() < js().len() || coding.is_none());
    }
    // A validator of another coding of the same content still means "not modified".
    let br_tag = format!("\"{hash}-br\"");
    let g = w.with(path, &[("if-none-match", &br_tag)]).await;
    assert_eq!(g.status, StatusCode::NOT_MODIFIED);
    // Defaults and the _headers override.
    let html = w.get("/").await;
    assert_eq!(
        html.header("cache-control"),
        Some("max-age=0, must-revalidate")
    );
    assert_eq!(html.header("x-frame-options"), Some("DENY"));
    let css = w.get("/style.css").await;
    assert_eq!(css.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(css.header("vary"), None);
    w.server.stop().await;
}

#[tokio::test]
async fn head_everywhere() {
    let w = web().await;
    let cases: &[(&str, &str, StatusCode)] = &[
        (HOST, "/", StatusCode::OK),
        (HOST, "/data.bin", StatusCode::OK),
        (HOST, "/missing", StatusCode::NOT_FOUND),
        (HOST, "/old", StatusCode::MOVED_PERMANENTLY),
        ("nobody.test", "/", StatusCode::NOT_FOUND),
        (HOST, "/_skyhost/health", StatusCode::OK),
    ];
    for (host, path, status) in cases {
        let got_get = get(&w.client, &w.server.base, host, path).await;
        let head = send(&w.client, &w.server.base, Method::HEAD, host, path, &[]).await;
        assert_eq!(head.status, *status, "{path}");
        assert!(head.body.is_empty(), "{path}");
        if *path != "/_skyhost/health" {
            assert_eq!(
                head.header("content-length"),
                got_get.header("content-length"),
                "{path}"
            );
            assert_eq!(head.header("etag"), got_get.header("etag"), "{path}");
        }
    }
    let head = send(
        &w.client,
        &w.server.base,
        Method::HEAD,
        HOST,
        "/data.bin",
        &[("range", "bytes=0-4")],
    )
    .await;
    assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(head.header("content-length"), Some("5"));
    let post = send(
        &w.client,
        &w.server.base,
        Method::POST,
        HOST,
        "/index.html",
        &[],
    )
    .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    let notify = get(&w.client, &w.server.base, HOST, "/_skyhost/notify").await;
    assert_eq!(notify.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(notify.header("allow"), Some("POST"));
    w.server.stop().await;
}

#[tokio::test]
async fn redirect_rules_rewrites_and_conditions() {
    let w = web().await;
    // (path, headers, status, location, body)
    let home = "<h1>home</h1>\n".repeat(20);
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        StatusCode,
        Option<&'a str>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "/old",
            vec![],
            StatusCode::MOVED_PERMANENTLY,
            Some("/about"),
            "",
        ),
        (
            "/old?x=1",
            vec![],
            StatusCode::MOVED_PERMANENTLY,
            Some("/about?x=1"),
            "",
        ),
        (
            "/blog/2026/hello",
            vec![],
            StatusCode::FOUND,
            Some("/news/2026/hello"),
            "",
        ),
        ("/app/settings/profile", vec![], StatusCode::OK, None, &home),
        // /about exists (about.html): the unforced rule is shadowed.
        ("/about", vec![], StatusCode::OK, None, "<h1>about</h1>"),
        // Forced rules apply even over an existing file.
        ("/forced.txt", vec![], StatusCode::FOUND, Some("/about"), ""),
        (
            "/gone",
            vec![],
            StatusCode::GONE,
            None,
            "<h1>custom 404</h1>",
        ),
        (
            "/de",
            vec![
                ("cloudfront-viewer-country", "DE"),
                ("x-skyhost-origin-verify", FRONT),
            ],
            StatusCode::FOUND,
            Some("/about"),
            "",
        ),
        // The country from anyone but the front is ignored.
        (
            "/de",
            vec![("cloudfront-viewer-country", "DE")],
            StatusCode::NOT_FOUND,
            None,
            "<h1>custom 404</h1>",
        ),
        (
            "/de",
            vec![
                ("cloudfront-viewer-country", "FR"),
                ("x-skyhost-origin-verify", FRONT),
            ],
            StatusCode::NOT_FOUND,
            None,
            "<h1>custom 404</h1>",
        ),
        (
            "/de",
            vec![],
            StatusCode::NOT_FOUND,
            None,
            "<h1>custom 404</h1>",
        ),
        (
            "/fr",
            vec![("accept-language", "fr-FR,fr;q=0.9")],
            StatusCode::FOUND,
            Some("/about"),
            "",
        ),
        (
            "/fr",
            vec![("accept-language", "de-DE")],
            StatusCode::NOT_FOUND,
            None,
            "<h1>custom 404</h1>",
        ),
    ];
    for (path, headers, status, location, body) in cases {
        let g = w.with(path, &headers).await;
        assert_eq!(g.status, status, "{path} {headers:?}");
        assert_eq!(g.header("location"), location, "{path}");
        assert_eq!(g.text(), body, "{path}");
        assert!(g.header("x-skyhost-cache").is_some(), "{path}");
    }
    // _headers apply to rewrites, 404 and 410 pages, and files; the 404 page keeps 404.
    for path in ["/app/x", "/missing", "/gone", "/about"] {
        assert_eq!(
            w.get(path).await.header("x-frame-options"),
            Some("DENY"),
            "{path}"
        );
    }
    let nf = w.get("/missing").await;
    assert_eq!(
        nf.header("cache-control"),
        Some("max-age=0, must-revalidate")
    );
    w.server.stop().await;
}

#[tokio::test]
async fn site_settings_trailing_slash_spa_and_error_pages() {
    let env = Embedded::new("us-west-2");
    let files = || {
        vec![
            file("/index.html", "<h1>app</h1>", "text/html"),
            file("/docs/index.html", "<h1>docs</h1>", "text/html"),
            file("/about.html", "<h1>about</h1>", "text/html"),
            file("/logo.png", "png", "image/png"),
            file("/errors/nf.html", "<h1>nothing here</h1>", "text/html"),
            file("/errors/oops.html", "<h1>oops</h1>", "text/html"),
        ]
    };
    let m = env.meta.as_ref();
    let b = env.local.as_ref();
    deploy(
        m,
        b,
        "always",
        &["always.test"],
        &files(),
        rules(None, None, Some("trailing_slash = \"always\"\n")),
    )
    .await;
    deploy(
        m,
        b,
        "never",
        &["never.test"],
        &files(),
        rules(None, None, Some("trailing_slash = \"never\"\n")),
    )
    .await;
    deploy(
        m,
        b,
        "spa",
        &["spa.test"],
        &files(),
        rules(None, None, Some("spa_fallback = \"/index.html\"\n")),
    )
    .await;
    let pages = deploy(
        m,
        b,
        "pages",
        &["pages.test"],
        &files(),
        rules(
            None,
            Some("/*\n  X-Site: pages\n"),
            Some("not_found_page = \"/errors/nf.html\"\nerror_page = \"/errors/oops.html\"\npretty_urls = false\n"),
        ),
    )
    .await;
    let plain = deploy(
        m,
        b,
        "plain",
        &["plain.test"],
        &[file("/index.html", "x", "text/html")],
        rules(None, None, None),
    )
    .await;
    let origin = env.origin(config());
    let server = start(origin.clone()).await;
    let c = client();
    // (host, path, status, location, body)
    let cases: &[(&str, &str, StatusCode, Option<&str>, &str)] = &[
        (
            "always.test",
            "/docs",
            StatusCode::MOVED_PERMANENTLY,
            Some("/docs/"),
            "",
        ),
        (
            "always.test",
            "/docs?q=1",
            StatusCode::MOVED_PERMANENTLY,
            Some("/docs/?q=1"),
            "",
        ),
        (
            "always.test",
            "/docs/",
            StatusCode::OK,
            None,
            "<h1>docs</h1>",
        ),
        (
            "always.test",
            "/about",
            StatusCode::MOVED_PERMANENTLY,
            Some("/about/"),
            "",
        ),
        ("always.test", "/logo.png", StatusCode::OK, None, "png"),
        (
            "never.test",
            "/docs/",
            StatusCode::MOVED_PERMANENTLY,
            Some("/docs"),
            "",
        ),
        ("never.test", "/docs", StatusCode::OK, None, "<h1>docs</h1>"),
        ("never.test", "/", StatusCode::OK, None, "<h1>app</h1>"),
        (
            "spa.test",
            "/dashboard/42",
            StatusCode::OK,
            None,
            "<h1>app</h1>",
        ),
        ("spa.test", "/logo.png", StatusCode::OK, None, "png"),
        (
            "pages.test",
            "/nope",
            StatusCode::NOT_FOUND,
            None,
            "<h1>nothing here</h1>",
        ),
        (
            "pages.test",
            "/about",
            StatusCode::NOT_FOUND,
            None,
            "<h1>nothing here</h1>",
        ),
        (
            "plain.test",
            "/nope",
            StatusCode::NOT_FOUND,
            None,
            "Not Found\n",
        ),
    ];
    for (host, path, status, location, body) in cases {
        let g = get(&c, &server.base, host, path).await;
        assert_eq!(g.status, *status, "{host}{path}");
        assert_eq!(g.header("location"), *location, "{host}{path}");
        assert_eq!(g.text(), *body, "{host}{path}");
    }
    assert_eq!(
        get(&c, &server.base, "pages.test", "/nope")
            .await
            .header("x-site"),
        Some("pages")
    );
    // A blob missing from every bucket: the site's 5xx page, with 500 and no-store.
    env.remove(&pages.key("/index.html", None));
    let g = get(&c, &server.base, "pages.test", "/").await;
    assert_eq!(g.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(g.text(), "<h1>oops</h1>");
    assert_eq!(g.header("cache-control"), Some("no-store"));
    assert_eq!(g.header("x-site"), Some("pages"));
    env.remove(&plain.key("/index.html", None));
    let g = get(&c, &server.base, "plain.test", "/").await;
    assert_eq!(g.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(g.text(), "Internal Server Error\n");
    server.stop().await;
}

#[tokio::test]
async fn cache_outcomes_hit_after_miss() {
    let w = web().await;
    let first = w.get("/about.html").await;
    assert_eq!(first.cache(), "miss");
    // The teed copy lands in the cache once the body is complete.
    assert!(
        eventually(Duration::from_secs(2), || async {
            w.get("/about.html").await.cache() == "hit"
        })
        .await
    );
    // Files above the cache's largest entry always stream from the bucket.
    let mut small = config();
    small.cache_bytes = 8 * 64; // largest cached body: 64 bytes
    let origin = w.env.origin(small);
    for _ in 0..3 {
        let g = call(&origin, Method::GET, HOST, "/assets/app.3f9a1c2b.js", &[]).await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.body.to_vec(), js());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = call(&origin, Method::GET, HOST, "/assets/app.3f9a1c2b.js", &[]).await;
    assert_eq!(g.cache(), "miss");
    w.server.stop().await;
}

#[tokio::test]
async fn health_reports_checks_and_maintenance() {
    let w = web().await;
    let g = get(
        &w.client,
        &w.server.base,
        "us-west-2.origin.test",
        "/_skyhost/health",
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.header("cache-control"), Some("no-store"));
    let v: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["region"], "us-west-2");
    assert_eq!(v["maintenance"], false);
    assert_eq!(v["checks"]["metadata"]["status"], "ok");
    assert_eq!(v["checks"]["bucket"]["status"], "ok");
    assert_eq!(v["checks"]["redis"]["status"], "disabled");
    w.env
        .meta
        .set_region_status(&RegionStatus {
            region: "us-west-2".into(),
            maintenance: true,
        })
        .await
        .unwrap();
    // The last result is reused for RESULT_TTL.
    tokio::time::sleep(skyhost_origin::health::RESULT_TTL).await;
    let g = get(&w.client, &w.server.base, HOST, "/_skyhost/health").await;
    assert_eq!(g.status, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(v["status"], "maintenance");
    assert_eq!(v["maintenance"], true);
    // Draining a region does not stop it from serving.
    assert_eq!(w.get("/about").await.status, StatusCode::OK);
    w.server.stop().await;
}

#[tokio::test]
async fn precompressed_variants_are_served_from_their_own_blobs() {
    let w = web().await;
    // Replace the br variant with a marker: the origin must send the stored bytes as they
    // are, never recompress.
    let key = w.deployed.key("/index.html", Some(Encoding::Br));
    let len = w.deployed.entry("/index.html").encodings[&Encoding::Br] as usize;
    let marker = vec![b'b'; len];
    skyhost_meta::blob::BlobStore::put_bytes(
        w.env.local.as_ref(),
        &key,
        marker.clone().into(),
        None,
    )
    .await
    .unwrap();
    let g = w.with("/", &[("accept-encoding", "br")]).await;
    assert_eq!(g.header("content-encoding"), Some("br"));
    assert_eq!(g.body.to_vec(), marker);
    w.server.stop().await;
}

/// Two sites whose deployments drew the same id each serve their own files: parsed
/// manifests are kept by deployment id, and an entry of another site is never used.
#[tokio::test]
async fn sites_sharing_a_deployment_id_keep_their_own_files() {
    let env = Embedded::new("us-west-2");
    let id = skyhost_meta::DeploymentId::parse("20260101T000000Z-0a1b2c3d").unwrap();
    for (site, host) in [("alpha", "alpha.test"), ("beta", "beta.test")] {
        deploy_with(
            env.meta.as_ref(),
            env.local.as_ref(),
            site,
            &[host],
            &[file(
                "/index.html",
                format!("<h1>{site}</h1>"),
                "text/html; charset=utf-8",
            )],
            rules(None, None, None),
            DeployOpts {
                deployment: Some(id.clone()),
                ..DeployOpts::default()
            },
        )
        .await;
    }
    let server = start(env.origin(config())).await;
    let client = client();
    // Interleaved, twice: after the first, every lookup finds the other site's manifest
    // under the shared id and must not use it.
    for _ in 0..2 {
        for site in ["alpha", "beta"] {
            let got = get(&client, &server.base, &format!("{site}.test"), "/").await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.text(), format!("<h1>{site}</h1>"));
        }
    }
    server.stop().await;
}
