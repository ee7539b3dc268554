//! Basic auth through `server::serve`: right and wrong passwords, the challenge, lockout
//! after 5 failures per client network, user name and site (429 with Retry-After), its
//! expiry, and its reset by a success — with counters in redis-server (shared by
//! instances) and in memory. Every route to a protected file asks for its credentials, and
//! what an authorized request gets stays out of shared caches.

mod common;

use base64::Engine;
use common::*;
use futures::future::join_all;
use http::{Method, StatusCode};
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::redis::RedisCache;
use skyhost_meta::cache::{Cache, Tiered};
use skyhost_origin::Origin;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const WINDOW: Duration = Duration::from_secs(2);

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Deploys a protected site and a second one with the same rule; returns their hosts.
async fn site(env: &Embedded) -> (String, String) {
    // Unique names: the Redis counters outlive a test run by the window.
    let (one, two) = (unique("auth"), unique("other"));
    let (h1, h2) = (format!("{one}.test"), format!("{two}.test"));
    let files = [
        file("/index.html", "public", "text/html"),
        file("/private/report.txt", "figures", "text/plain"),
    ];
    let config = "[auth]\nrealm = \"Staff\"\n[[auth.rules]]\npath = \"/private/*\"\nusers = [\"ann:right-pw\"]\n";
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        &one,
        &[&h1],
        &files,
        rules(Some("/open/*  /private/:splat  200\n"), None, Some(config)),
    )
    .await;
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        &two,
        &[&h2],
        &files,
        rules(None, None, Some(config)),
    )
    .await;
    (h1, h2)
}

/// An origin instance; with `redis`, its cache has the Redis tier the region's instances
/// share, as on AWS.
fn origin(env: &Embedded, redis: Option<String>) -> Arc<Origin> {
    let mut c = config();
    c.auth_lockout = WINDOW;
    c.redis_url = redis.clone();
    let redis = redis.map(|url| RedisCache::new(&url).unwrap());
    let cache: Arc<dyn Cache> = Arc::new(Tiered::new(MemoryCache::new(c.cache_bytes), redis));
    Arc::new(Origin::new(
        c,
        env.meta.clone(),
        env.local.clone(),
        None,
        cache,
    ))
}

async fn as_client(
    origin: &Origin,
    ip: &str,
    host: &str,
    path: &str,
    auth: Option<&str>,
) -> (StatusCode, http::HeaderMap) {
    let mut b = http::Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", host);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    let ip: IpAddr = ip.parse().unwrap();
    let resp = origin
        .handle(b.body(bytes::Bytes::new()).unwrap(), Some(ip))
        .await;
    (resp.status(), resp.headers().clone())
}

async fn lockout_scenario(redis: Option<String>) {
    let env = Embedded::new("us-west-2");
    let (host, other) = site(&env).await;
    let host = host.as_str();
    let origin = origin(&env, redis.clone());
    let server = start(origin.clone()).await;
    let c = client();
    let right = basic("ann", "right-pw");
    let wrong = basic("ann", "wrong-pw");
    let fetch = |auth: Option<String>| {
        let c = c.clone();
        let base = server.base.clone();
        async move {
            let mut req = c
                .get(format!("{base}/private/report.txt"))
                .header("host", host);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            let status = r.status();
            let h = r.headers().clone();
            let body = r.text().await.unwrap();
            (status, h, body)
        }
    };

    // No credentials: the challenge, not a failure.
    for _ in 0..6 {
        let (status, h, _) = fetch(None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            h.get("www-authenticate").unwrap(),
            "Basic realm=\"Staff\", charset=\"UTF-8\""
        );
    }
    let (status, _, body) = fetch(Some(right.clone())).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "figures"));
    // Public pages need nothing; rewrites into protected paths do.
    assert_eq!(
        get(&c, &server.base, host, "/").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&c, &server.base, host, "/open/report.txt").await.status,
        StatusCode::UNAUTHORIZED
    );

    // A success resets the count: 4 failures, a success, 4 failures — never locked.
    for _ in 0..4 {
        assert_eq!(fetch(Some(wrong.clone())).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(fetch(Some(right.clone())).await.0, StatusCode::OK);
    for _ in 0..4 {
        assert_eq!(fetch(Some(wrong.clone())).await.0, StatusCode::UNAUTHORIZED);
    }
    // The fifth failure in the window locks this address out of this site.
    let (status, h, _) = fetch(Some(wrong.clone())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = h
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=WINDOW.as_secs()).contains(&retry), "{retry}");
    let (status, _, body) = fetch(Some(right.clone())).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "locked even with the right password"
    );
    assert!(!body.contains("figures"));
    // Other addresses and other sites are not affected.
    let (status, _) = as_client(
        &origin,
        "192.0.2.77",
        host,
        "/private/report.txt",
        Some(&right),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = as_client(
        &origin,
        "127.0.0.1",
        &other,
        "/private/report.txt",
        Some(&right),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    if redis.is_some() {
        // Counters in Redis are shared by every instance of the region.
        let twin = self::origin(&env, redis.clone());
        let (status, h) = as_client(
            &twin,
            "127.0.0.1",
            host,
            "/private/report.txt",
            Some(&right),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(h.get("retry-after").is_some());
    }
    // The lockout ends with the window.
    tokio::time::sleep(WINDOW + Duration::from_millis(300)).await;
    let (status, _, body) = fetch(Some(right.clone())).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "figures"));
    server.stop().await;
}

#[tokio::test]
async fn lockout_with_counters_in_memory() {
    lockout_scenario(None).await;
}

#[tokio::test]
async fn lockout_with_counters_in_redis() {
    lockout_scenario(Some(redis_url())).await;
}

/// The site of the route table: protected files reached through every route the origin has
/// (pretty URLs, directory index, rule targets, rewrites, the 404 and error pages).
async fn protected_site(env: &Embedded) -> String {
    let name = unique("routes");
    let host = format!("{name}.test");
    let files = [
        file("/index.html", "public home", "text/html"),
        file("/secret.html", "SECRET page", "text/html"),
        file("/admin/index.html", "SECRET admin", "text/html"),
        file(
            "/assets/app.3f9a1c2b.js",
            "SECRET script",
            "text/javascript",
        ),
        file("/errors/404.html", "SECRET not-found page", "text/html"),
        file("/errors/gone.html", "SECRET gone page", "text/html"),
        file("/errors/50x.html", "SECRET error page", "text/html"),
        file("/broken.txt", "its blob is removed below", "text/plain"),
        file("/vault.html", "SECRET vault", "text/html"),
        file("/team/index.html", "SECRET team", "text/html"),
    ];
    // `/vault` and `/team/` are written as visitors see them, not as the files are named:
    // they protect `/vault.html` and `/team/index.html` by every route all the same.
    let headers = "\
/secret.html
  Basic-Auth: ann:right-pw
  X-Served-File: secret
/admin/index.html
  Basic-Auth: ann:right-pw
/vault
  Basic-Auth: ann:right-pw
/team/
  Basic-Auth: ann:right-pw
/assets/*
  Basic-Auth: ann:right-pw
/errors/*
  Basic-Auth: ann:right-pw
/*
  Cache-Control: public, max-age=600
";
    let redirects = "\
/old-secret  /secret  200
/removed  /errors/gone.html  410
/hidden  /secret.html  404
";
    let config = "not_found_page = \"/errors/404.html\"\nerror_page = \"/errors/50x.html\"\n";
    let deployed = deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        &name,
        &[&host],
        &files,
        rules(Some(redirects), Some(headers), Some(config)),
    )
    .await;
    // A file that cannot be read: its answer is the (protected) error page.
    env.remove(&deployed.key("/broken.txt", None));
    host
}

/// A single-page app whose shell is protected: every unknown path falls back to it.
async fn spa_site(env: &Embedded) -> String {
    let name = unique("spa");
    let host = format!("{name}.test");
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        &name,
        &[&host],
        &[file("/app/shell.html", "SECRET shell", "text/html")],
        rules(
            None,
            Some("/app/*\n  Basic-Auth: ann:right-pw\n"),
            Some("spa_fallback = \"/app/shell.html\"\n"),
        ),
    )
    .await;
    host
}

/// One route to a protected file, and what it answers with the right credentials.
struct Route {
    what: &'static str,
    spa: bool,
    method: Method,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// Status and body with credentials (a HEAD answer has no body).
    status: StatusCode,
    body: &'static str,
}

fn routes() -> Vec<Route> {
    let route = |what, path, status, body| Route {
        what,
        spa: false,
        method: Method::GET,
        path,
        headers: &[],
        status,
        body,
    };
    vec![
        route(
            "the file itself",
            "/secret.html",
            StatusCode::OK,
            "SECRET page",
        ),
        route("pretty URL", "/secret", StatusCode::OK, "SECRET page"),
        route(
            "pretty URL with a slash",
            "/secret/",
            StatusCode::OK,
            "SECRET page",
        ),
        route("directory index", "/admin/", StatusCode::OK, "SECRET admin"),
        route(
            "directory index without a slash",
            "/admin",
            StatusCode::OK,
            "SECRET admin",
        ),
        route(
            "directory index by its file name",
            "/admin/index.html",
            StatusCode::OK,
            "SECRET admin",
        ),
        route(
            "pretty URL a rule names",
            "/vault",
            StatusCode::OK,
            "SECRET vault",
        ),
        route(
            "pretty URL a rule names, with a slash",
            "/vault/",
            StatusCode::OK,
            "SECRET vault",
        ),
        route(
            "file of a pretty URL a rule names",
            "/vault.html",
            StatusCode::OK,
            "SECRET vault",
        ),
        route(
            "folder a rule names",
            "/team/",
            StatusCode::OK,
            "SECRET team",
        ),
        route(
            "folder a rule names, without a slash",
            "/team",
            StatusCode::OK,
            "SECRET team",
        ),
        route(
            "index file of a folder a rule names",
            "/team/index.html",
            StatusCode::OK,
            "SECRET team",
        ),
        route(
            "fingerprinted asset",
            "/assets/app.3f9a1c2b.js",
            StatusCode::OK,
            "SECRET script",
        ),
        route(
            "404 page",
            "/nowhere",
            StatusCode::NOT_FOUND,
            "SECRET not-found page",
        ),
        route(
            "410 rule target",
            "/removed",
            StatusCode::GONE,
            "SECRET gone page",
        ),
        route(
            "404 rule target",
            "/hidden",
            StatusCode::NOT_FOUND,
            "SECRET page",
        ),
        route(
            "rewrite to a pretty URL",
            "/old-secret",
            StatusCode::OK,
            "SECRET page",
        ),
        route(
            "error page",
            "/broken.txt",
            StatusCode::INTERNAL_SERVER_ERROR,
            "SECRET error page",
        ),
        Route {
            method: Method::HEAD,
            body: "",
            ..route("HEAD of a pretty URL", "/secret", StatusCode::OK, "")
        },
        Route {
            headers: &[("range", "bytes=0-5")],
            ..route(
                "range of a pretty URL",
                "/secret",
                StatusCode::PARTIAL_CONTENT,
                "SECRET",
            )
        },
        Route {
            spa: true,
            ..route(
                "SPA fallback",
                "/some/client/route",
                StatusCode::OK,
                "SECRET shell",
            )
        },
    ]
}

fn cache_control(got: &Got) -> String {
    got.headers
        .get_all("cache-control")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `private` or `no-store`, never anything a shared cache may keep.
fn is_private(cc: &str) -> bool {
    let directives: Vec<String> = cc
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    (directives.iter().any(|d| d == "private" || d == "no-store"))
        && !directives
            .iter()
            .any(|d| d == "public" || d.starts_with("s-maxage"))
}

#[tokio::test]
async fn every_route_to_a_protected_file_asks_for_its_credentials() {
    let env = Embedded::new("us-west-2");
    let (host, spa) = (protected_site(&env).await, spa_site(&env).await);
    let origin = origin(&env, None);
    let right = basic("ann", "right-pw");
    let mut failures = Vec::new();
    for r in routes() {
        let host = if r.spa { spa.as_str() } else { host.as_str() };
        let got = call(&origin, r.method.clone(), host, r.path, r.headers).await;
        let cc = cache_control(&got);
        if got.status != StatusCode::UNAUTHORIZED
            || got.text().contains("SECRET")
            || got.header("www-authenticate")
                != Some("Basic realm=\"Restricted\", charset=\"UTF-8\"")
            || !is_private(&cc)
        {
            failures.push(format!(
                "{} ({} {}) without credentials: {} {cc:?} {:?}",
                r.what,
                r.method,
                r.path,
                got.status,
                got.text()
            ));
        }

        let mut with: Vec<(&str, &str)> = r.headers.to_vec();
        with.push(("authorization", &right));
        let got = call(&origin, r.method.clone(), host, r.path, &with).await;
        let cc = cache_control(&got);
        if got.status != r.status || got.text() != r.body || !is_private(&cc) {
            failures.push(format!(
                "{} ({} {}) with credentials: {} {cc:?} {:?}",
                r.what,
                r.method,
                r.path,
                got.status,
                got.text()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn headers_of_the_file_served_apply_whatever_path_reached_it() {
    let env = Embedded::new("us-west-2");
    let host = protected_site(&env).await;
    let origin = origin(&env, None);
    let right = basic("ann", "right-pw");
    for path in ["/secret", "/secret/", "/old-secret", "/hidden"] {
        let got = call(
            &origin,
            Method::GET,
            &host,
            path,
            &[("authorization", &right)],
        )
        .await;
        assert_eq!(got.header("x-served-file"), Some("secret"), "{path}");
    }
    // A public page keeps the site's own caching.
    let got = call(&origin, Method::GET, &host, "/", &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(cache_control(&got), "public, max-age=600");
}

/// Wrong passwords from `ip` as `user`, until and including the one that locks.
async fn lock_out(origin: &Origin, ip: &str, host: &str, user: &str) {
    let wrong = basic(user, "wrong-pw");
    for i in 1..=5 {
        let (status, _) = as_client(origin, ip, host, "/private/report.txt", Some(&wrong)).await;
        let want = if i < 5 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, want, "failure {i} from {ip} as {user}");
    }
}

async fn burst_scenario(redis: Option<String>) {
    let env = Embedded::new("us-west-2");
    let (host, _) = site(&env).await;
    let origin = origin(&env, redis);
    // Warm up (the Redis connection, its script) with a failure counted elsewhere.
    let (status, _) = as_client(
        &origin,
        "198.51.100.99",
        &host,
        "/private/report.txt",
        Some(&basic("warm", "up")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (wrong, right) = (basic("ann", "wrong-pw"), basic("ann", "right-pw"));
    // Twenty guesses at once, the right password eleventh: only five are ever checked.
    let burst = (0..20).map(|i| {
        let auth = if i == 10 { &right } else { &wrong };
        as_client(
            &origin,
            "192.0.2.5",
            &host,
            "/private/report.txt",
            Some(auth),
        )
    });
    let statuses: Vec<StatusCode> = join_all(burst).await.into_iter().map(|r| r.0).collect();
    assert_eq!(
        statuses[10],
        StatusCode::TOO_MANY_REQUESTS,
        "the right password got a try past the limit: {statuses:?}"
    );
    let challenged = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(challenged, 4, "{statuses:?}");
}

#[tokio::test]
async fn a_parallel_burst_gets_no_extra_tries_in_memory() {
    burst_scenario(None).await;
}

#[tokio::test]
async fn a_parallel_burst_gets_no_extra_tries_in_redis() {
    burst_scenario(Some(redis_url())).await;
}

async fn networks_and_names_scenario(redis: Option<String>) {
    let env = Embedded::new("us-west-2");
    let (host, _) = site(&env).await;
    let origin = origin(&env, redis);
    let right = basic("ann", "right-pw");
    let ok = |r: (StatusCode, http::HeaderMap)| r.0;

    // IPv6 addresses count by their /64: rotating through one's own prefix gains nothing.
    let wrong = basic("ann", "wrong-pw");
    for i in 1..=5 {
        let ip = format!("2001:db8:aa:bb::{i}");
        let (status, _) = as_client(&origin, &ip, &host, "/private/report.txt", Some(&wrong)).await;
        let want = if i < 5 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, want, "failure {i} from {ip}");
    }
    let fetch =
        |ip: &'static str| as_client(&origin, ip, &host, "/private/report.txt", Some(&right));
    assert_eq!(
        ok(fetch("2001:db8:aa:bb:ffff::99").await),
        StatusCode::TOO_MANY_REQUESTS
    );
    // The next /64, and an IPv4 client, are other networks.
    assert_eq!(ok(fetch("2001:db8:aa:bc::1").await), StatusCode::OK);
    assert_eq!(ok(fetch("192.0.2.44").await), StatusCode::OK);

    // An attacker guessing at one address locks out only that address for that name: the
    // rightful user elsewhere still gets in.
    lock_out(&origin, "203.0.113.7", &host, "ann").await;
    assert_eq!(
        ok(fetch("203.0.113.7").await),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(ok(fetch("198.51.100.20").await), StatusCode::OK);

    // Guessing other names locks out nobody else, at the same address either.
    lock_out(&origin, "203.0.113.8", &host, "mallory").await;
    assert_eq!(ok(fetch("203.0.113.8").await), StatusCode::OK);
}

#[tokio::test]
async fn lockout_counts_per_network_and_name_in_memory() {
    networks_and_names_scenario(None).await;
}

#[tokio::test]
async fn lockout_counts_per_network_and_name_in_redis() {
    networks_and_names_scenario(Some(redis_url())).await;
}

/// Everything this test binary logs (a global subscriber: a scoped one misses events
/// while other tests' threads log).
fn captured_logs() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOGS: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> =
        std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static std::sync::Mutex<Vec<u8>> = Box::leak(Box::default());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Capture(logs))
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("set once, here");
        logs
    })
}

struct Capture(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn failed_logins_are_logged_without_the_name_tried() {
    let logs = captured_logs();
    let env = Embedded::new("us-west-2");
    let (host, _) = site(&env).await;
    let origin = origin(&env, None);
    // A password typed into the name field.
    let typed = "Pa55word-typed-as-a-name";
    let (status, _) = as_client(
        &origin,
        "192.0.2.9",
        &host,
        "/private/report.txt",
        Some(&basic(typed, "x")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let site = host.trim_end_matches(".test");
    assert!(
        text.lines()
            .any(|l| l.contains("basic auth failed") && l.contains(site)),
        "{text}"
    );
    assert!(!text.contains(typed), "{text}");
}

#[tokio::test]
async fn a_site_with_basic_auth_keeps_no_answers() {
    let env = Embedded::new("us-west-2");
    let host = protected_site(&env).await;
    let origin = env.origin(config());
    let right = basic("ann", "right-pw");
    for _ in 0..6 {
        let public = call(&origin, Method::GET, &host, "/", &[]).await;
        assert_eq!(public.status, StatusCode::OK);
        let secret = call(&origin, Method::GET, &host, "/secret", &[]).await;
        assert_eq!(secret.status, StatusCode::UNAUTHORIZED);
        let with = call(
            &origin,
            Method::GET,
            &host,
            "/secret",
            &[("authorization", &right)],
        )
        .await;
        assert_eq!(with.status, StatusCode::OK);
    }
    // The test runtime is single-threaded: every answer was made on this thread.
    assert_eq!(
        origin.kept_answers_served_here(),
        0,
        "answers of a site with basic auth are never kept"
    );
}
