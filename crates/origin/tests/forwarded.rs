//! Forwarded headers are the front's only when its secret origin header verifies: a
//! caller of the regional name who spoofs `X-Forwarded-Host`, `X-Forwarded-For` or
//! `CloudFront-Viewer-Country` changes neither the site, nor the address basic-auth
//! lockout counts, nor the country rules see; with the header they are honoured.
//! `DirectAccess=refuse` answers 403 to everything but health and notify without it.
//! Both secrets are re-read when a value fails, so rotations take effect at once.

mod common;

use base64::Engine;
use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use skyhost_meta::secrets::{FileSource, Secret};
use skyhost_origin::forwarded::DirectAccess;
use skyhost_origin::{Origin, OriginConfig};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const HOST: &str = "fw.test";
const FRONT: &str = "front-secret";
const VERIFY: &str = "x-skyhost-origin-verify";
/// The peer every request comes from unless said: what API Gateway reports as the source.
const PEER: &str = "130.176.0.1";

async fn site(env: &Embedded) {
    let files = [
        file("/index.html", "home", "text/html"),
        file("/de.html", "deutsch", "text/html"),
        file("/private/report.txt", "figures", "text/plain"),
    ];
    let config = "[auth]\nrealm = \"Staff\"\n[[auth.rules]]\npath = \"/private/*\"\nusers = [\"ann:right-pw\"]\n";
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        "fw",
        &[HOST],
        &files,
        rules(
            Some("/promo  /de.html  302  Country=de\n"),
            None,
            Some(config),
        ),
    )
    .await;
}

fn front_config(secret: Secret, direct: DirectAccess) -> OriginConfig {
    let mut c = config();
    c.origin_verify = Some(secret);
    c.direct_access = direct;
    c
}

async fn ask(
    origin: &Origin,
    method: Method,
    peer: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, http::HeaderMap) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let ip: IpAddr = peer.parse().unwrap();
    let resp = origin.handle(b.body(Bytes::new()).unwrap(), Some(ip)).await;
    let (parts, body) = resp.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    (
        parts.status,
        String::from_utf8_lossy(&body).into_owned(),
        parts.headers,
    )
}

async fn get_as(
    origin: &Origin,
    peer: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let (status, body, _) = ask(origin, Method::GET, peer, host, path, headers).await;
    (status, body)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn the_site_host_is_forwarded_only_by_the_verified_front() {
    let env = Embedded::new("us-west-2");
    site(&env).await;
    let origin = env.origin(front_config(
        Secret::fixed(vec![FRONT.into()]),
        DirectAccess::Allow,
    ));
    let spoofed = [("x-forwarded-host", HOST)];
    // The regional name itself serves no site; X-Forwarded-Host does not make it one.
    let (status, _) = get_as(&origin, PEER, "origin.test", "/", &spoofed).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let wrong = [("x-forwarded-host", HOST), (VERIFY, "guess")];
    let (status, _) = get_as(&origin, PEER, "origin.test", "/", &wrong).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let front = [("x-forwarded-host", HOST), (VERIFY, FRONT)];
    let (status, body) = get_as(&origin, PEER, "origin.test", "/", &front).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "home"));
    // Without X-Forwarded-Host the Host header still counts.
    let (status, _) = get_as(&origin, PEER, HOST, "/", &[(VERIFY, FRONT)]).await;
    assert_eq!(status, StatusCode::OK);
    // An origin without a front configured ignores the header whatever it says.
    let plain = env.origin(config());
    let (status, _) = get_as(&plain, PEER, "origin.test", "/", &front).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn country_rules_see_the_country_only_from_the_verified_front() {
    let env = Embedded::new("us-west-2");
    site(&env).await;
    let origin = env.origin(front_config(
        Secret::fixed(vec![FRONT.into()]),
        DirectAccess::Allow,
    ));
    let (status, _, h) = ask(
        &origin,
        Method::GET,
        PEER,
        HOST,
        "/promo",
        &[("cloudfront-viewer-country", "DE"), (VERIFY, FRONT)],
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(h.get("location").unwrap(), "/de.html");
    for spoofed in [
        vec![("cloudfront-viewer-country", "DE")],
        vec![("cloudfront-viewer-country", "DE"), (VERIFY, "guess")],
    ] {
        let (status, _) = get_as(&origin, PEER, HOST, "/promo", &spoofed).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{spoofed:?}");
    }
}

#[tokio::test]
async fn lockout_counts_the_peer_unless_the_front_verified() {
    let env = Embedded::new("us-west-2");
    site(&env).await;
    let mut c = front_config(Secret::fixed(vec![FRONT.into()]), DirectAccess::Allow);
    c.auth_lockout = Duration::from_secs(60);
    let origin = env.origin(c);
    let wrong = basic("ann", "wrong-pw");
    let right = basic("ann", "right-pw");
    let path = "/private/report.txt";

    // A direct caller rotating a fake X-Forwarded-For gets no extra tries: its own
    // address is counted, and locked.
    let attacker = "203.0.113.66";
    let mut last = StatusCode::OK;
    for i in 0..6 {
        let xff = format!("198.51.100.{i}, 192.0.2.{i}");
        let headers = [("authorization", wrong.as_str()), ("x-forwarded-for", &xff)];
        last = get_as(&origin, attacker, HOST, path, &headers).await.0;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = get_as(
        &origin,
        attacker,
        HOST,
        path,
        &[("authorization", right.as_str())],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the attacker is locked"
    );
    // Nor can it lock out a chosen victim by naming the victim's address.
    let victim = "198.51.100.200";
    let aimed = format!("{victim}, {attacker}");
    for _ in 0..6 {
        let headers = [
            ("authorization", wrong.as_str()),
            ("x-forwarded-for", &aimed),
        ];
        get_as(&origin, "203.0.113.67", HOST, path, &headers).await;
    }
    let (status, body) = get_as(
        &origin,
        victim,
        HOST,
        path,
        &[("authorization", right.as_str())],
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "figures"));

    // Behind the verified front, the viewer the front names is counted: one viewer is
    // locked, another behind the same edge is not.
    let locked = "192.0.2.77, 130.176.0.9";
    for _ in 0..6 {
        let headers = [
            ("authorization", wrong.as_str()),
            ("x-forwarded-for", locked),
            (VERIFY, FRONT),
        ];
        last = get_as(&origin, PEER, HOST, path, &headers).await.0;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let other = [
        ("authorization", right.as_str()),
        ("x-forwarded-for", "192.0.2.78, 130.176.0.9"),
        (VERIFY, FRONT),
    ];
    let (status, body) = get_as(&origin, PEER, HOST, path, &other).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "figures"));
}

#[tokio::test]
async fn refused_direct_access_answers_403_but_health_and_notify() {
    let env = Embedded::new("us-west-2");
    site(&env).await;
    let mut c = front_config(Secret::fixed(vec![FRONT.into()]), DirectAccess::Refuse);
    c.notify_secret = skyhost_meta::secrets::Secret::fixed(vec![b"notify".to_vec()]);
    let origin = env.origin(c);
    for headers in [vec![], vec![(VERIFY, "guess")], vec![(VERIFY, "")]] {
        for path in [
            "/",
            "/private/report.txt",
            "/_skyhost/",
            "/_skyhost/healthz",
        ] {
            let (status, body) = get_as(&origin, PEER, HOST, path, &headers).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::FORBIDDEN, "Forbidden\n"),
                "{path} {headers:?}"
            );
        }
    }
    let (status, body) = get_as(&origin, PEER, HOST, "/", &[(VERIFY, FRONT)]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "home"));
    // Route 53 probes the regional name without the header.
    let (status, _) = get_as(
        &origin,
        PEER,
        "us-west-2.origin.test",
        "/_skyhost/health",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The replicator too: a notification is judged by its signature, not refused.
    let (status, _, _) = ask(
        &origin,
        Method::POST,
        PEER,
        "us-west-2.origin.test",
        "/_skyhost/notify",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_secret_header_goes_no_further_than_the_origin() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that answers with the request head it got.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                head.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    });
    let env = Embedded::new("us-west-2");
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        "px",
        &[HOST],
        &[file("/index.html", "home", "text/html")],
        rules(
            Some(&format!("/api/*  http://{addr}/:splat  200\n")),
            None,
            Some("[proxy]\nallowlist = [\"127.0.0.1\"]\n"),
        ),
    )
    .await;
    let mut c = front_config(Secret::fixed(vec![FRONT.into()]), DirectAccess::Allow);
    c.proxy.honor_allowlist = true;
    let origin = env.origin(c);
    let (status, body) = get_as(&origin, PEER, HOST, "/api/x", &[(VERIFY, FRONT)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.starts_with("get /x"), "{body}");
    assert!(!body.contains(VERIFY), "{body}");
    assert!(!body.contains(FRONT), "{body}");
}

#[tokio::test]
async fn a_rotated_front_secret_is_believed_at_once() {
    let env = Embedded::new("us-west-2");
    site(&env).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("origin-verify");
    std::fs::write(&path, "old").unwrap();
    // Re-read on failures at once, and otherwise every 2 s.
    let secret = Secret::with_timing(
        FileSource::new(&path),
        Duration::from_secs(2),
        Duration::ZERO,
    );
    let origin: Arc<Origin> = env.origin(front_config(secret, DirectAccess::Refuse));
    assert_eq!(
        get_as(&origin, PEER, HOST, "/", &[(VERIFY, "old")]).await.0,
        StatusCode::OK
    );
    // Step 1 of the rotation: the origins accept the new value beside the old.
    std::fs::write(&path, "new,old").unwrap();
    // Step 2: the front sends the new value; the first such request makes the origin
    // read the secret again, and it is served.
    assert_eq!(
        get_as(&origin, PEER, HOST, "/", &[(VERIFY, "new")]).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get_as(&origin, PEER, HOST, "/", &[(VERIFY, "old")]).await.0,
        StatusCode::OK
    );
    // Step 3: the old value is retired; the origins drop it at their next refresh.
    std::fs::write(&path, "new").unwrap();
    assert_eq!(
        get_as(&origin, PEER, HOST, "/", &[(VERIFY, "old")]).await.0,
        StatusCode::OK,
        "still accepted until the refresh"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        get_as(&origin, PEER, HOST, "/", &[(VERIFY, "old")]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get_as(&origin, PEER, HOST, "/", &[(VERIFY, "new")]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_notification_signed_with_a_rotated_secret_is_applied() {
    let env = Embedded::new("us-west-2");
    site(&env).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify-secret");
    std::fs::write(&path, "old").unwrap();
    let mut c = config();
    c.notify_secret = Secret::with_timing(
        FileSource::new(&path),
        Duration::from_secs(3600),
        Duration::ZERO,
    );
    let origin = env.origin(c);
    let site_id = skyhost_meta::SiteId::parse("fw").unwrap();
    let notify = |secret: &'static [u8]| {
        let origin = origin.clone();
        let site_id = site_id.clone();
        async move {
            let (body, sig) = signed_notification(secret, &site_id, 1, None, skyhost_meta::now());
            let req = Request::builder()
                .method(Method::POST)
                .uri("/_skyhost/notify")
                .header("host", "us-west-2.origin.test")
                .header("x-skyhost-signature", sig)
                .body(Bytes::from(body))
                .unwrap();
            origin.handle(req, None).await.status()
        }
    };
    // Whether the (stale) notification is applied does not matter here, only that its
    // signature is accepted.
    assert_eq!(notify(b"old").await, StatusCode::OK);
    assert_eq!(notify(b"new").await, StatusCode::UNAUTHORIZED);
    std::fs::write(&path, "new,old").unwrap();
    assert_eq!(notify(b"new").await, StatusCode::OK);
    assert_eq!(notify(b"old").await, StatusCode::OK);
}
