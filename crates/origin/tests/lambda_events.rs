//! The handler driven by API Gateway events: the raw `sam local generate-event` output
//! (events/sam/) and the skyhost fixtures derived from it (events/skyhost/), deserialized
//! as `LambdaRequest`, converted by `lambda_http` and `skyhost_origin::lambda`, answered by
//! `Origin::handle` over the embedded backends.

mod common;

use common::*;
use http::StatusCode;
use lambda_http::request::LambdaRequest;
use skyhost_meta::notify::parse_secrets;
use skyhost_meta::secrets::Secret;
use skyhost_meta::DeploymentId;
use skyhost_origin::{lambda, Origin};
use std::sync::Arc;

/// The fixtures' site, domains, deployment and notification secret (events/derive.py).
const SITE: &str = "docs-site";
const DOMAINS: [&str; 2] = ["docs.example.com", "www.docs.example.com"];
const DEPLOYMENT: &str = "20260103T101112Z-4e5f6a7b";
const SECRET: &str = "skyhost-fixture-secret";

fn event(name: &str) -> serde_json::Value {
    skyhost_testkit::event_fixture(name)
}

fn request(v: serde_json::Value) -> lambda_http::Request {
    let parsed: LambdaRequest = serde_json::from_value(v).expect("an API Gateway event");
    parsed.into()
}

async fn answer(origin: &Origin, v: serde_json::Value) -> Got {
    let resp = lambda::handle(origin, request(v)).await.unwrap();
    let (parts, body) = resp.into_parts();
    Got {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap(),
    }
}

struct Docs {
    env: Embedded,
    deployed: Deployed,
}

async fn docs() -> Docs {
    let env = Embedded::new("us-west-2");
    let deployed = deploy_with(
        env.meta.as_ref(),
        env.local.as_ref(),
        SITE,
        &DOMAINS,
        &[
            compressed("/index.html", "<h1>docs</h1>\n", "text/html; charset=utf-8"),
            file(
                "/docs/index.html",
                "<h1>docs index</h1>",
                "text/html; charset=utf-8",
            ),
            compressed(
                "/docs/getting-started/index.html",
                "<h1>getting started</h1>\n".repeat(10),
                "text/html; charset=utf-8",
            ),
            file(
                "/guides/café menu.html",
                "<h1>menu</h1>",
                "text/html; charset=utf-8",
            ),
        ],
        rules(None, None, None),
        DeployOpts {
            deployment: Some(DeploymentId::parse(DEPLOYMENT).unwrap()),
            ..DeployOpts::default()
        },
    )
    .await;
    Docs { env, deployed }
}

/// The value of the fixtures' origin-verify header (events/derive.py).
const FRONT: &str = "skyhost-fixture-front";

/// An origin; `front`: behind CloudFront, whose origin-verify secret it knows.
fn origin(env: &Embedded, front: bool) -> Arc<Origin> {
    let mut c = config();
    c.origin_verify = front.then(|| Secret::fixed(vec![FRONT.into()]));
    c.notify_secret = skyhost_meta::secrets::Secret::fixed(parse_secrets(SECRET));
    env.origin(c)
}

#[tokio::test]
async fn http_api_page_request() {
    let d = docs().await;
    let o = origin(&d.env, false);
    let g = answer(&o, event("skyhost/http-api-get-page.json")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.header("content-encoding"), Some("br"));
    assert_eq!(
        String::from_utf8(unbrotli(&g.body)).unwrap(),
        "<h1>getting started</h1>\n".repeat(10)
    );
    assert_eq!(g.header("x-skyhost-deployment"), Some(DEPLOYMENT));
    assert_eq!(g.header("x-skyhost-region"), Some("us-west-2"));
    assert_eq!(g.header("x-skyhost-cache"), Some("miss"));
    assert_eq!(g.header("vary"), Some("Accept-Encoding"));
    let hash = &d.deployed.entry("/docs/getting-started/index.html").hash;
    assert_eq!(g.header("etag").unwrap(), format!("\"{hash}-br\""));
}

#[tokio::test]
async fn rest_api_page_request_ignores_the_stage() {
    let d = docs().await;
    let o = origin(&d.env, false);
    // The REST event is for stage "prod": lambda_http puts it in the URI path, the origin
    // takes the raw path.
    let g = answer(&o, event("skyhost/rest-api-get-page.json")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.header("content-encoding"), None);
    assert_eq!(g.text(), "<h1>docs index</h1>");
}

#[tokio::test]
async fn encoded_path_and_host_with_port() {
    let d = docs().await;
    let o = origin(&d.env, false);
    let g = answer(&o, event("skyhost/http-api-get-encoded-path.json")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.text(), "<h1>menu</h1>");
}

#[tokio::test]
async fn forwarded_host_needs_a_trusted_front() {
    let d = docs().await;
    let untrusted = origin(&d.env, false);
    let g = answer(
        &untrusted,
        event("skyhost/http-api-get-forwarded-host.json"),
    )
    .await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.header("x-skyhost-deployment"), None);
    let trusted = origin(&d.env, true);
    let g = answer(&trusted, event("skyhost/http-api-get-forwarded-host.json")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.header("x-skyhost-deployment"), Some(DEPLOYMENT));
    // The same request without CloudFront's origin-verify header: a direct caller.
    let mut direct = event("skyhost/http-api-get-forwarded-host.json");
    let headers = direct["headers"].as_object_mut().unwrap();
    assert_eq!(headers.remove("x-skyhost-origin-verify").unwrap(), FRONT);
    let g = answer(&trusted, direct).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn client_address_comes_from_the_request_context() {
    let v = event("skyhost/http-api-get-forwarded-host.json");
    let (req, ip) = lambda::into_request(request(v));
    assert_eq!(ip, Some("130.176.0.1".parse().unwrap()));
    assert_eq!(req.uri().path(), "/docs/getting-started/");
    let v = event("skyhost/rest-api-get-page.json");
    let (req, ip) = lambda::into_request(request(v));
    assert_eq!(ip, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(req.uri().path(), "/docs/index.html");
    assert_eq!(req.uri().query(), Some("lang=en"));
    let v = event("skyhost/http-api-get-encoded-path.json");
    let (req, _) = lambda::into_request(request(v));
    assert_eq!(req.uri().path(), "/guides/caf%C3%A9%20menu.html");
}

#[tokio::test]
async fn raw_paths_reach_the_origin_undecoded() {
    let d = docs().await;
    let o = origin(&d.env, false);
    // lambda_http would resolve dot-segments while building its URI; the origin sees the
    // raw path and refuses it.
    for raw in ["/docs/../index.html", "/%2e%2e/index.html", "/a\\b"] {
        let mut v = event("skyhost/http-api-get-page.json");
        v["rawPath"] = raw.into();
        v["requestContext"]["http"]["path"] = raw.into();
        let g = answer(&o, v).await;
        assert_eq!(g.status, StatusCode::BAD_REQUEST, "{raw}");
    }
}

#[tokio::test]
async fn health_event() {
    let d = docs().await;
    let o = origin(&d.env, false);
    let g = answer(&o, event("skyhost/http-api-health.json")).await;
    assert_eq!(g.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(v["status"], "ok");
}

#[tokio::test]
async fn notify_event_stale_then_fresh() {
    let d = docs().await;
    let o = origin(&d.env, false);
    // The fixture was signed at 2026-01-03T10:11:13Z: outside the 300 s window now.
    let fixture = event("skyhost/http-api-notify.json");
    let g = answer(&o, fixture.clone()).await;
    assert_eq!(g.status, StatusCode::UNAUTHORIZED);
    let v: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("window"), "{v}");
    // The same body signed now with the fixture's secret is applied (revision 7 is newer
    // than the store's), and preloads the deployment.
    let body = fixture["body"].as_str().unwrap().to_owned();
    let now = skyhost_meta::now();
    let mut fresh = fixture.clone();
    fresh["headers"]["x-skyhost-signature"] =
        skyhost_meta::notify::sign(SECRET.as_bytes(), now, body.as_bytes()).into();
    let g = answer(&o, fresh.clone()).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
    let v: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(v["applied"], true);
    assert_eq!(v["preloaded"], true);
    // A replay changes nothing.
    let g = answer(&o, fresh).await;
    let v: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(v["applied"], false);
    // The preloaded index.html is a hit on the first visit.
    let mut page = event("skyhost/http-api-get-page.json");
    page["rawPath"] = "/".into();
    page["requestContext"]["http"]["path"] = "/".into();
    page["headers"]
        .as_object_mut()
        .unwrap()
        .remove("accept-encoding");
    let g = answer(&o, page).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.header("x-skyhost-cache"), Some("hit"));
    assert_eq!(g.text(), "<h1>docs</h1>\n");
}

#[tokio::test]
async fn raw_sam_events_with_a_site_host() {
    let d = docs().await;
    let o = origin(&d.env, false);
    // The generated HTTP API event: path /docs/, a base64 body, cookies, no Host.
    let mut v = event("sam/apigateway-http-api-proxy.json");
    v["headers"]["host"] = DOMAINS[0].into();
    let g = answer(&o, v).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.text(), "<h1>docs index</h1>");
    // The generated REST event: GET /docs/index.html on stage prod.
    let mut v = event("sam/apigateway-aws-proxy.json");
    v["headers"]["Host"] = DOMAINS[1].into();
    v["multiValueHeaders"]["Host"] = serde_json::json!([DOMAINS[1]]);
    let g = answer(&o, v).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.header("content-encoding"), None);
    assert_eq!(g.text(), "<h1>docs index</h1>");
    // Its own Host (an execute-api name) is no site.
    let g = answer(&o, event("sam/apigateway-aws-proxy.json")).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
}

/// Every known-length answer of the Lambda says its length: `GET` and `HEAD`, from the
/// bucket and from the cache, compressed or not, and the plain 404.
#[tokio::test]
async fn lambda_answers_say_their_length() {
    let d = docs().await;
    let o = origin(&d.env, false);
    for method in ["GET", "HEAD"] {
        for coding in ["br", "identity"] {
            for round in ["first", "cached"] {
                for path in ["/docs/getting-started/", "/no/such/page"] {
                    let mut v = event("skyhost/http-api-get-page.json");
                    v["requestContext"]["http"]["method"] = method.into();
                    v["rawPath"] = path.into();
                    v["requestContext"]["http"]["path"] = path.into();
                    v["headers"]["accept-encoding"] = coding.into();
                    let what = format!("{method} {path} {coding} {round}");
                    let g = answer(&o, v).await;
                    let said: usize = g
                        .header("content-length")
                        .unwrap_or_else(|| panic!("{what}: no Content-Length"))
                        .parse()
                        .unwrap();
                    assert!(said > 0, "{what}");
                    if method == "GET" {
                        assert_eq!(said, g.body.len(), "{what}");
                    } else {
                        assert!(g.body.is_empty(), "{what}");
                    }
                }
            }
        }
    }
}
