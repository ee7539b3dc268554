//! The proxy against a tiny upstream on 127.0.0.1: reachable only through an explicit
//! allowlist, and refused for loopback, link-local, private and unique-local addresses,
//! for names resolving to them, and for upstream redirects pointing at them. Refused
//! targets are never connected to: the check happens before any connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use skyhost_origin::proxy::{ClientInfo, Proxy, ProxyBody, ProxyConfig, ProxyError};
use skyhost_rules::ProxyPolicy;
use tokio::net::TcpListener;

type TestBody = BoxBody<Bytes, Infallible>;

fn full(text: impl Into<Bytes>) -> TestBody {
    Full::new(text.into()).boxed()
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The upstream: `/echo` answers with the request line, headers and body it received;
/// `/redirect?to=URL` answers 302 to URL; `/big?n=N[&chunked=1]` sends N bytes; `/slow`
/// waits 5 s.
async fn upstream(
    req: Request<Incoming>,
    hits: Arc<AtomicUsize>,
) -> Result<Response<TestBody>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let query = req.uri().query().unwrap_or("").to_string();
    let response = match req.uri().path() {
        "/echo" => {
            let mut text = format!("{} {}\n", req.method(), req.uri());
            for (name, value) in req.headers() {
                text.push_str(&format!("{}: {}\n", name, value.to_str().unwrap_or("?")));
            }
            text.push('\n');
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            text.push_str(&String::from_utf8_lossy(&body));
            Response::builder()
                .header("x-upstream", "1")
                .header("connection", "x-hop")
                .header("x-hop", "secret")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic realm=\"upstream\"")
                .header("x-skyhost-region", "forged")
                .header("set-cookie", "a=1")
                .body(full(text))
        }
        "/redirect" => {
            let to = query_param(&query, "to").unwrap_or("/");
            Response::builder()
                .status(StatusCode::FOUND)
                .header("location", to)
                .body(full("moved"))
        }
        "/big" => {
            let n: usize = query_param(&query, "n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if query_param(&query, "chunked").is_some() {
                let chunks = futures::stream::iter((0..n).step_by(64 * 1024).map(move |start| {
                    let len = (n - start).min(64 * 1024);
                    Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; len])))
                }));
                Response::builder().body(StreamBody::new(chunks).boxed())
            } else {
                Response::builder().body(full(vec![b'x'; n]))
            }
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Response::builder().body(full("late"))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Empty::new().boxed()),
    };
    Ok(response.expect("static response parts are valid"))
}

struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl Upstream {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn start_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let accepted = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| upstream(req, counter.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        hits,
        connections,
    }
}

fn honoring() -> Proxy {
    Proxy::new(ProxyConfig {
        honor_allowlist: true,
        ..ProxyConfig::default()
    })
}

fn allow(hosts: &[&str]) -> ProxyPolicy {
    ProxyPolicy {
        allowlist: hosts.iter().map(|h| h.to_string()).collect(),
        ..ProxyPolicy::default()
    }
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri(path)
        .header("host", "site.example")
        .body(Empty::new())
        .unwrap()
}

/// `GET /` through `proxy` to `url`, a loopback upstream the policy allows.
async fn get_local(proxy: &Proxy, url: &str) -> Result<Response<ProxyBody>, ProxyError> {
    proxy
        .forward(get("/"), url, &allow(&["127.0.0.1"]), &visitor())
        .await
}

fn visitor() -> ClientInfo {
    ClientInfo {
        ip: Some("203.0.113.7".parse().unwrap()),
        proto: Some("https".to_string()),
    }
}

async fn body_text(
    response: Response<skyhost_origin::proxy::ProxyBody>,
) -> Result<String, ProxyError> {
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn allowlisted_loopback_upstream_is_reached_with_clean_headers() {
    let up = start_upstream().await;
    let proxy = honoring();
    let req = Request::builder()
        .method("GET")
        .uri("/api/echo?x=1")
        .header("host", "site.example")
        .header("connection", "x-custom-hop")
        .header("x-custom-hop", "drop me")
        .header("keep-alive", "timeout=1")
        .header("proxy-authorization", "Basic abc")
        .header("te", "trailers")
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-forwarded-host", "spoofed.example")
        .header("x-kept", "yes")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = proxy
        .forward(
            req,
            &up.url("/echo?x=1"),
            &allow(&["127.0.0.1"]),
            &visitor(),
        )
        .await
        .expect("allowlisted upstream is reached");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["x-upstream"], "1");
    assert_eq!(headers["set-cookie"], "a=1");
    for dropped in [
        "connection",
        "x-hop",
        "keep-alive",
        "proxy-authenticate",
        "x-skyhost-region",
    ] {
        assert!(
            !headers.contains_key(dropped),
            "{dropped} must not reach the visitor"
        );
    }
    let text = body_text(response).await.unwrap();
    assert!(text.starts_with("GET /echo?x=1\n"), "{text}");
    assert!(text.contains("x-kept: yes\n"), "{text}");
    assert!(
        text.contains("x-forwarded-for: 198.51.100.1, 203.0.113.7\n"),
        "{text}"
    );
    assert!(text.contains("x-forwarded-host: site.example\n"), "{text}");
    assert!(text.contains("x-forwarded-proto: https\n"), "{text}");
    assert!(text.contains(&format!("host: {}\n", up.addr)), "{text}");
    for dropped in [
        "x-custom-hop",
        "keep-alive",
        "proxy-authorization",
        "te:",
        "spoofed.example",
    ] {
        assert!(
            !text.contains(dropped),
            "{dropped} must not reach the upstream: {text}"
        );
    }
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn request_body_streams_to_the_upstream() {
    let up = start_upstream().await;
    let chunks = futures::stream::iter(
        ["first,", "second,", "third"]
            .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from_static(c.as_bytes())))),
    );
    let req = Request::builder()
        .method("POST")
        .uri("/echo")
        .header("content-type", "text/plain")
        .body(StreamBody::new(chunks))
        .unwrap();
    let response = honoring()
        .forward(req, &up.url("/echo"), &allow(&["127.0.0.1"]), &visitor())
        .await
        .unwrap();
    let text = body_text(response).await.unwrap();
    assert!(text.starts_with("POST /echo\n"), "{text}");
    assert!(text.ends_with("\nfirst,second,third"), "{text}");
}

#[tokio::test]
async fn loopback_without_allowlist_is_refused_before_connecting() {
    let up = start_upstream().await;
    let proxy = honoring();
    for policy in [
        ProxyPolicy::default(),
        allow(&["127.0.0.2", "api.example.com"]),
    ] {
        let err = proxy
            .forward(get("/"), &up.url("/echo"), &policy, &visitor())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ProxyError::Forbidden {
                    allowlisted: false,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }
    assert_eq!(up.hits(), 0, "a refused upstream is never contacted");
}

#[tokio::test]
async fn allowlist_is_ignored_unless_the_operator_honours_it() {
    let up = start_upstream().await;
    let proxy = Proxy::new(ProxyConfig::default());
    let err = get_local(&proxy, &up.url("/echo")).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProxyError::Forbidden {
                allowlisted: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("does not honour allowlists"),
        "{err}"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn forbidden_targets_are_refused() {
    let proxy = honoring();
    // (target, the refused address; None for a name, checked to be loopback instead)
    let cases: &[(&str, Option<&str>)] = &[
        (
            "http://169.254.169.254/latest/meta-data/",
            Some("169.254.169.254"),
        ),
        ("http://127.0.0.1:9/", Some("127.0.0.1")),
        ("http://[::1]:9/", Some("::1")),
        ("http://10.0.0.1/", Some("10.0.0.1")),
        ("http://192.168.1.1/", Some("192.168.1.1")),
        ("http://[fd00:ec2::254]/", Some("fd00:ec2::254")),
        ("http://[::ffff:127.0.0.1]:9/", Some("::ffff:127.0.0.1")),
        ("http://0x7f.1:9/", Some("127.0.0.1")),
        ("http://localhost:9/", None),
    ];
    for (target, addr) in cases {
        let err = proxy
            .forward(get("/"), target, &ProxyPolicy::default(), &visitor())
            .await
            .unwrap_err();
        match (&err, addr) {
            (ProxyError::Forbidden { addr: got, .. }, Some(addr)) => {
                assert_eq!(got.to_string(), *addr, "{target}")
            }
            // `localhost` resolves to loopback, whichever family comes first.
            (ProxyError::Forbidden { addr: got, .. }, None) => {
                assert!(got.is_loopback(), "{target}: {got}")
            }
            (other, _) => panic!("{target}: expected Forbidden, got {other}"),
        }
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY, "{target}");
    }
}

#[tokio::test]
async fn allowlisted_name_is_reached_at_its_checked_address() {
    let up = start_upstream().await;
    let target = format!("http://localhost:{}/echo", up.addr.port());
    let response = honoring()
        .forward(get("/"), &target, &allow(&["localhost"]), &visitor())
        .await
        .expect("allowlisted name is reached");
    assert_eq!(response.status(), StatusCode::OK);
    let text = body_text(response).await.unwrap();
    assert!(
        text.contains(&format!("host: localhost:{}\n", up.addr.port())),
        "{text}"
    );
}

#[tokio::test]
async fn only_http_and_https() {
    let proxy = honoring();
    for target in [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://127.0.0.1/",
    ] {
        let err = proxy
            .forward(get("/"), target, &ProxyPolicy::default(), &visitor())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProxyError::UnsupportedScheme(_)),
            "{target}: {err}"
        );
    }
    let err = proxy
        .forward(get("/"), "not a url", &ProxyPolicy::default(), &visitor())
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::InvalidTarget(_)), "{err}");
}

#[tokio::test]
async fn upstream_redirects_are_passed_back_but_never_to_forbidden_addresses() {
    let up = start_upstream().await;
    let proxy = honoring();
    let policy = allow(&["127.0.0.1"]);
    let refused = [
        "http://10.0.0.1/internal",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://localhost/admin",
        "//192.168.0.1/x",
    ];
    for location in refused {
        let target = up.url(&format!("/redirect?to={location}"));
        let err = proxy
            .forward(get("/"), &target, &policy, &visitor())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ProxyError::ForbiddenRedirect { .. }),
            "{location}: {err}"
        );
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    }
    let passed = ["/elsewhere", "http://93.184.216.34/page", "relative/path"];
    for location in passed {
        let target = up.url(&format!("/redirect?to={location}"));
        let response = proxy
            .forward(get("/"), &target, &policy, &visitor())
            .await
            .unwrap_or_else(|e| panic!("{location}: {e}"));
        assert_eq!(response.status(), StatusCode::FOUND, "{location}");
        assert_eq!(
            response.headers()["location"],
            location,
            "never followed, passed as-is"
        );
    }
    assert_eq!(
        up.hits(),
        refused.len() + passed.len(),
        "redirects are not followed"
    );
}

#[tokio::test]
async fn response_size_cap() {
    let up = start_upstream().await;
    let proxy = honoring();
    let policy = ProxyPolicy {
        max_response_bytes: 1024 * 1024,
        ..allow(&["127.0.0.1"])
    };
    // Under the cap, streamed in chunks: all of it arrives.
    let response = proxy
        .forward(
            get("/"),
            &up.url("/big?n=1000000&chunked=1"),
            &policy,
            &visitor(),
        )
        .await
        .unwrap();
    assert_eq!(body_text(response).await.unwrap().len(), 1_000_000);
    // Exactly at the cap is fine.
    let response = proxy
        .forward(get("/"), &up.url("/big?n=1048576"), &policy, &visitor())
        .await
        .unwrap();
    assert_eq!(body_text(response).await.unwrap().len(), 1024 * 1024);
    // Announced as too large: refused before streaming.
    let err = proxy
        .forward(get("/"), &up.url("/big?n=2000000"), &policy, &visitor())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProxyError::TooLarge { limit: 1048576 }),
        "{err}"
    );
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
    // Not announced: the stream is cut off past the cap.
    let response = proxy
        .forward(
            get("/"),
            &up.url("/big?n=2000000&chunked=1"),
            &policy,
            &visitor(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let mut received = 0usize;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => received += f.into_data().map(|d| d.len()).unwrap_or(0),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(failure, Some(ProxyError::TooLarge { limit: 1048576 })),
        "{failure:?}"
    );
    assert!(received <= 1024 * 1024, "{received} bytes passed the cap");
    assert!(body.frame().await.is_none(), "nothing after the error");
}

#[tokio::test]
async fn slow_upstream_times_out_with_504() {
    let up = start_upstream().await;
    let proxy = Proxy::new(ProxyConfig {
        total_timeout: Duration::from_millis(300),
        honor_allowlist: true,
        ..ProxyConfig::default()
    });
    let err = get_local(&proxy, &up.url("/slow")).await.unwrap_err();
    assert!(matches!(err, ProxyError::Timeout { .. }), "{err}");
    assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn closed_port_is_a_502_connect_error() {
    // Bind and drop a listener to get a port with nothing behind it.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let err = get_local(&honoring(), &format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProxyError::Connect { .. }), "{err}");
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn clients_are_reused_across_requests() {
    let up = start_upstream().await;
    let proxy = honoring();
    for _ in 0..3 {
        let response = get_local(&proxy, &up.url("/echo")).await.unwrap();
        body_text(response).await.unwrap();
    }
    assert_eq!(up.hits(), 3);
    assert_eq!(up.connections(), 1, "one client, one kept-alive connection");
}

#[tokio::test]
async fn names_are_screened_by_the_clients_resolver() {
    let up = start_upstream().await;
    let target = format!("http://localhost:{}/echo", up.addr.port());
    // A name the site allowlists, on an origin that does not honour allowlists: the
    // resolver refuses its loopback address, and the message says why.
    let err = Proxy::new(ProxyConfig::default())
        .forward(get("/"), &target, &allow(&["localhost"]), &visitor())
        .await
        .unwrap_err();
    match &err {
        ProxyError::Forbidden {
            host,
            addr,
            allowlisted: true,
        } => {
            assert_eq!(host, "localhost");
            assert!(addr.is_loopback(), "{addr}");
        }
        other => panic!("expected Forbidden, got {other}"),
    }
    assert!(
        err.to_string().contains("does not honour allowlists"),
        "{err}"
    );
    // One client serves every site: a name another site allowlists (and this origin
    // honours) stays refused for a site that does not name it.
    let proxy = honoring();
    let response = proxy
        .forward(get("/"), &target, &allow(&["localhost"]), &visitor())
        .await
        .unwrap();
    body_text(response).await.unwrap();
    let err = proxy
        .forward(get("/"), &target, &ProxyPolicy::default(), &visitor())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProxyError::Forbidden {
                allowlisted: false,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(up.hits(), 1, "refused requests never reach the upstream");
    // A name that does not resolve (RFC 6761 reserves `.invalid`): the resolver's own
    // error, a 502.
    let err = proxy
        .forward(
            get("/"),
            "http://no-such-host.invalid/",
            &ProxyPolicy::default(),
            &visitor(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProxyError::Resolve { .. } | ProxyError::NoAddress { .. }
        ),
        "{err}"
    );
    assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn the_screening_resolver_refuses_forbidden_names() {
    use skyhost_origin::proxy::Screening;
    let screening = Screening::new(Duration::from_secs(5));
    match screening.addresses("localhost").await {
        Err(ProxyError::Forbidden { addr, .. }) => assert!(addr.is_loopback(), "{addr}"),
        other => panic!("localhost: {other:?}"),
    }
    // A literal forbidden address as a name is refused the same way.
    for name in ["127.0.0.1", "169.254.169.254", "::1", "10.1.2.3"] {
        match screening.addresses(name).await {
            Err(ProxyError::Forbidden { addr, .. }) => assert_eq!(addr.to_string(), name),
            other => panic!("{name}: {other:?}"),
        }
    }
    // A public address passes, unchanged (no lookup leaves the machine for a literal).
    let addrs = screening.addresses("93.184.216.34").await.unwrap();
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].ip().to_string(), "93.184.216.34");
}

/// `GET /echo` through `proxy` to the loopback upstream with the visitor's `headers`.
async fn echo_with(
    up: &Upstream,
    policy: &ProxyPolicy,
    headers: &[(&str, &str)],
) -> Result<String, ProxyError> {
    let mut req = Request::builder()
        .uri("/echo")
        .header("host", "site.example");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = honoring()
        .forward(
            req.body(Empty::<Bytes>::new()).unwrap(),
            &up.url("/echo"),
            policy,
            &visitor(),
        )
        .await?;
    body_text(response).await
}

#[tokio::test]
async fn cookie_and_authorization_reach_only_upstreams_the_site_names() {
    let up = start_upstream().await;
    let credentials = [
        ("cookie", "session=visitor-secret"),
        ("authorization", "Bearer visitor-token"),
        ("x-kept", "yes"),
    ];
    // Not named in forward_credentials: neither header leaves the origin.
    let text = echo_with(&up, &allow(&["127.0.0.1"]), &credentials)
        .await
        .unwrap();
    assert!(text.contains("x-kept: yes\n"), "{text}");
    assert!(!text.contains("visitor-secret"), "cookie forwarded: {text}");
    assert!(
        !text.contains("visitor-token"),
        "authorization forwarded: {text}"
    );
    // Another host named: still not this one.
    let other = ProxyPolicy {
        forward_credentials: vec!["api.example.com".into()],
        ..allow(&["127.0.0.1"])
    };
    let text = echo_with(&up, &other, &credentials).await.unwrap();
    assert!(!text.contains("visitor-secret"), "{text}");
    assert!(!text.contains("visitor-token"), "{text}");
    // Named: both pass, unchanged.
    let opted_in = ProxyPolicy {
        forward_credentials: vec!["127.0.0.1".into()],
        ..allow(&["127.0.0.1"])
    };
    let text = echo_with(&up, &opted_in, &credentials).await.unwrap();
    assert!(text.contains("cookie: session=visitor-secret\n"), "{text}");
    assert!(
        text.contains("authorization: Bearer visitor-token\n"),
        "{text}"
    );
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn hop_header_counts_up_and_stops_at_the_maximum() {
    use skyhost_origin::proxy::MAX_PROXY_HOPS;
    let up = start_upstream().await;
    let policy = allow(&["127.0.0.1"]);
    // A visitor's first hop is counted from nothing.
    let text = echo_with(&up, &policy, &[]).await.unwrap();
    assert!(text.contains("x-skyhost-hops: 1\n"), "{text}");
    // One below the maximum: forwarded, carrying the maximum.
    let below = (MAX_PROXY_HOPS - 1).to_string();
    let text = echo_with(&up, &policy, &[("x-skyhost-hops", &below)])
        .await
        .unwrap();
    assert!(
        text.contains(&format!("x-skyhost-hops: {MAX_PROXY_HOPS}\n")),
        "{text}"
    );
    assert_eq!(up.hits(), 2);
    // At the maximum, or unreadable: 508 before any connection.
    let at_max = MAX_PROXY_HOPS.to_string();
    for hops in [at_max.as_str(), "999999", "x"] {
        let err = echo_with(&up, &policy, &[("x-skyhost-hops", hops)])
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::LoopDetected { .. }), "{err}");
        assert_eq!(err.status(), StatusCode::LOOP_DETECTED, "{hops}");
    }
    assert_eq!(up.hits(), 2, "a refused hop never reaches the upstream");
}
