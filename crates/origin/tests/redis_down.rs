//! Redis stopped mid-test never fails a request: this test starts its own redis-server,
//! warms the shared tier through the origin, kills the server, and keeps requesting —
//! from the warm instance and from a cold one — while health reports `degraded` with 200.

mod common;

use common::*;
use http::{Method, StatusCode};
use skyhost_meta::cache::memory::MemoryCache;
use skyhost_meta::cache::redis::RedisCache;
use skyhost_meta::cache::{Cache, Tiered};
use skyhost_origin::Origin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A redis-server child process on a free loopback port, killed on drop.
struct OwnRedis {
    child: Child,
    url: String,
}

impl OwnRedis {
    async fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(redis_server_binary())
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let up = eventually(Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "redis-server did not start on port {port}");
        OwnRedis {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn origin(env: &Embedded, redis_url: &str, prefix: &str) -> Arc<Origin> {
    let mut c = config();
    c.redis_url = Some(redis_url.to_owned());
    let redis = RedisCache::new(redis_url).unwrap().with_prefix(prefix);
    let cache: Arc<dyn Cache> = Arc::new(Tiered::new(MemoryCache::new(c.cache_bytes), Some(redis)));
    Arc::new(Origin::new(
        c,
        env.meta.clone(),
        env.local.clone(),
        None,
        cache,
    ))
}

#[tokio::test]
async fn requests_succeed_while_redis_dies() {
    let mut redis = OwnRedis::start().await;
    let env = Embedded::new("us-west-2");
    let host = "redis.test";
    let files = [
        file("/index.html", "<h1>home</h1>", "text/html"),
        compressed("/app.js", "let x = 1;\n".repeat(100), "text/javascript"),
        file("/private/report.txt", "figures", "text/plain"),
    ];
    deploy(
        env.meta.as_ref(),
        env.local.as_ref(),
        "redis-site",
        &[host],
        &files,
        rules(None, Some("/private/*\n  Basic-Auth: ann:pw\n"), None),
    )
    .await;
    let prefix = format!("{}:", unique("t"));
    let warm = origin(&env, &redis.url, &prefix);
    let server = start(warm.clone()).await;
    let c = client();
    let paths = ["/", "/app.js", "/index.html"];
    for p in paths {
        assert_eq!(
            get(&c, &server.base, host, p).await.status,
            StatusCode::OK,
            "{p}"
        );
    }
    // Once teed, a cold instance finds the bodies in Redis: hits without the bucket.
    let cold = origin(&env, &redis.url, &prefix);
    let found = eventually(Duration::from_secs(3), || {
        let cold = cold.clone();
        async move { call(&cold, Method::GET, host, "/app.js", &[]).await.cache() == "hit" }
    })
    .await;
    assert!(found, "the shared tier never served a hit");
    let health = get(&c, &server.base, host, "/_skyhost/health").await;
    let v: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(v["checks"]["redis"]["status"], "ok");

    redis.kill();

    let auth = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ann:pw")
    );
    let another_cold = origin(&env, &redis.url, &prefix);
    for round in 0..3 {
        for p in paths {
            let g = get(&c, &server.base, host, p).await;
            assert_eq!(g.status, StatusCode::OK, "warm {p} round {round}");
            let g = call(&another_cold, Method::GET, host, p, &[]).await;
            assert_eq!(g.status, StatusCode::OK, "cold {p} round {round}");
        }
        let g = send(
            &c,
            &server.base,
            Method::GET,
            host,
            "/private/report.txt",
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(g.status, StatusCode::OK, "auth with redis down");
        assert_eq!(g.text(), "figures");
    }
    let g = call(
        &another_cold,
        Method::GET,
        host,
        "/app.js",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(gunzip(&g.body), "let x = 1;\n".repeat(100).into_bytes());

    // The last result is reused for RESULT_TTL.
    tokio::time::sleep(skyhost_origin::health::RESULT_TTL).await;
    let health = get(&c, &server.base, host, "/_skyhost/health").await;
    assert_eq!(health.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["checks"]["redis"]["status"], "degraded");
    server.stop().await;
}
