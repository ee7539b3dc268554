//! Proxy rules (200 to an absolute URL) through the origin: the upstream's answer streams
//! back with the origin's headers; `_headers` apply only when `[proxy] apply_headers` says
//! so; the site's own basic-auth credentials are not forwarded; the visitor's cookies only
//! to upstreams the site names; a refused upstream is the site's 5xx page with 502; a
//! proxy rule pointing back at the origin stops with 508.

mod common;

use base64::Engine;
use bytes::Bytes;
use common::*;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;

/// An upstream answering `{method} {path}?{query}` and the headers it got.
async fn upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let mut text = format!("{} {}\n", req.method(), req.uri());
                    for (k, v) in req.headers() {
                        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                    }
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    text.push_str(&String::from_utf8_lossy(&body));
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("x-upstream", "yes")
                            .header("x-skyhost-cache", "forged")
                            .body(Full::new(Bytes::from(text)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("127.0.0.1:{}", addr.port())
}

async fn deploy_proxy_site(
    env: &Embedded,
    site: &str,
    host: &str,
    upstream: &str,
    apply_headers: bool,
) {
    let redirects = format!(
        "/api/*  http://{upstream}/v1/:splat  200\n/secure/*  http://{upstream}/s/:splat  200\n"
    );
    let headers = "/*\n  X-Frame-Options: DENY\n/secure/*\n  Basic-Auth: ann:pw\n";
    let toml = format!("[proxy]\nallowlist = [\"127.0.0.1\"]\napply_headers = {apply_headers}\n");
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        site,
        &[host],
        &[
            file("/index.html", "home", "text/html"),
            file("/50x.html", "<h1>upstream trouble</h1>", "text/html"),
        ],
        rules(Some(&redirects), Some(headers), Some(&toml)),
    )
    .await;
}

#[tokio::test]
async fn proxied_requests() {
    let up = upstream().await;
    let env = Embedded::new("us-west-2");
    deploy_proxy_site(&env, "px", "px.test", &up, false).await;
    deploy_proxy_site(&env, "pxh", "pxh.test", &up, true).await;
    let mut c = config();
    c.proxy.honor_allowlist = true;
    let origin = env.origin(c);
    let server = start(origin.clone()).await;
    let client = client();

    let g = send(
        &client,
        &server.base,
        Method::POST,
        "px.test",
        "/api/users/7?full=1",
        &[("x-custom", "kept")],
    )
    .await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
    let text = g.text();
    assert!(text.starts_with("POST /v1/users/7?full=1\n"), "{text}");
    assert!(text.contains("x-custom: kept"), "{text}");
    assert!(text.contains("x-forwarded-host: px.test"), "{text}");
    assert!(text.contains("x-forwarded-for: 127.0.0.1"), "{text}");
    assert_eq!(g.header("x-upstream"), Some("yes"));
    assert_eq!(g.header("x-skyhost-region"), Some("us-west-2"));
    // The origin's own cache header, not the upstream's forged one.
    assert!(["hit", "miss"].contains(&g.cache()), "{:?}", g.cache());
    assert!(g.header("x-skyhost-deployment").is_some());
    assert_eq!(g.header("x-frame-options"), None, "_headers must not apply");
    let g = get(&client, &server.base, "pxh.test", "/api/x").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(
        g.header("x-frame-options"),
        Some("DENY"),
        "apply_headers = true"
    );

    // Behind basic auth: the site's credentials are checked, then not passed on.
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ann:pw")
    );
    assert_eq!(
        get(&client, &server.base, "px.test", "/secure/a")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let g = send(
        &client,
        &server.base,
        Method::GET,
        "px.test",
        "/secure/a",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    assert!(
        !g.text().to_ascii_lowercase().contains("authorization"),
        "{}",
        g.text()
    );

    // An origin that does not honour allowlists refuses loopback: the 5xx page with 502.
    let strict = env.origin(config());
    let g = call(&strict, Method::GET, "px.test", "/api/x", &[]).await;
    assert_eq!(g.status, StatusCode::BAD_GATEWAY);
    assert_eq!(g.text(), "<h1>upstream trouble</h1>");
    server.stop().await;
}

#[tokio::test]
async fn cookies_reach_only_named_upstreams_through_the_origin() {
    let up = upstream().await;
    let env = Embedded::new("us-west-2");
    let site = |name: &'static str, host: &'static str, toml: String| {
        let redirects = format!("/api/*  http://{up}/v1/:splat  200\n");
        let env = &env;
        async move {
            deploy(
                env.meta.as_ref(),
                env.local.as_ref(),
                name,
                &[host],
                &[file("/index.html", "home", "text/html")],
                rules(Some(&redirects), None, Some(&toml)),
            )
            .await;
        }
    };
    site(
        "ck",
        "ck.test",
        "[proxy]\nallowlist = [\"127.0.0.1\"]\n".to_string(),
    )
    .await;
    site(
        "cko",
        "cko.test",
        "[proxy]\nallowlist = [\"127.0.0.1\"]\nforward_credentials = [\"127.0.0.1\"]\n".to_string(),
    )
    .await;
    let mut c = config();
    c.proxy.honor_allowlist = true;
    let origin = env.origin(c);
    let visitor = [
        ("cookie", "sid=visitor-cookie"),
        ("authorization", "Bearer visitor-token"),
    ];
    let g = call(&origin, Method::GET, "ck.test", "/api/x", &visitor).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
    assert!(!g.text().contains("visitor-cookie"), "{}", g.text());
    assert!(!g.text().contains("visitor-token"), "{}", g.text());
    let g = call(&origin, Method::GET, "cko.test", "/api/x", &visitor).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
    assert!(
        g.text().contains("cookie: sid=visitor-cookie"),
        "{}",
        g.text()
    );
    assert!(
        g.text().contains("authorization: Bearer visitor-token"),
        "{}",
        g.text()
    );
}

#[tokio::test]
async fn a_proxy_rule_pointing_back_at_the_origin_stops_with_508() {
    let env = Embedded::new("us-west-2");
    let mut c = config();
    c.proxy.honor_allowlist = true;
    let origin = env.origin(c);
    let server = start(origin.clone()).await;
    let port = server.base.rsplit(':').next().unwrap().to_string();
    // The site is `localhost`; its rule proxies to itself through the listener.
    let redirects = format!("/loop/*  http://localhost:{port}/loop/:splat  200\n");
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        "lp",
        &["localhost"],
        &[file("/index.html", "home", "text/html")],
        rules(
            Some(&redirects),
            None,
            Some("[proxy]\nallowlist = [\"localhost\"]\n"),
        ),
    )
    .await;
    let g = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        get(&client(), &server.base, "localhost", "/loop/x"),
    )
    .await
    .expect("the loop stops");
    assert_eq!(g.status, StatusCode::LOOP_DETECTED, "{}", g.text());
    server.stop().await;
}
