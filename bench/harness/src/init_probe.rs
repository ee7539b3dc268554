//! Times each step of a Lambda's init, in-process, in one scenario per run (a fresh
//! process each, so lazily built statics are charged to the step that builds them).
//! Prints one `step<TAB>milliseconds` line per step. Used by `make bench` (cold start).
//!
//! Scenarios: `naive` (the default credential chain loaded once per region, then DynamoDB
//! and two S3 clients: the first version's init), `origin` (what `Origin::from_env` does now
//! in a replica region: the SDK configuration and the stores of the table and both buckets,
//! nothing loaded or built before first use; then, timed apart, what the first request that
//! misses Redis pays once: the configuration's load and the two clients it needs),
//! `from-env` (logging and `Origin::from_env`, with the template's variables set by the
//! caller), `connector` (skyhost's shared SDK connector with
//! compiled-in, then system roots), `caches` (the in-process cache tiers), `native-roots`
//! (the system trust store alone), `reqwest` (the replicator's client), `endpoint-rules`
//! (the SDK crates' default endpoint resolvers), `aws-lc-rand` (first random bytes), `copier`
//! (the asset-copier's configuration and primary client, then its replicas' clients at
//! first use).
//!
//! It is the `skyhost-bench` binary run under the name `init-probe`: one fat-LTO link for
//! the harness and its two tools instead of three of the same SDK, tokio and hyper code.

use aws_config::{BehaviorVersion, Region};
use std::time::Instant;

fn step<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    println!("{name}\t{:.3}", t.elapsed().as_secs_f64() * 1000.0);
    v
}

async fn astep<T>(name: &str, f: impl std::future::Future<Output = T>) -> T {
    let t = Instant::now();
    let v = f.await;
    println!("{name}\t{:.3}", t.elapsed().as_secs_f64() * 1000.0);
    v
}

/// `init-probe SCENARIO`: the `skyhost-bench` binary run under that name (bench/run.sh).
pub fn main() -> std::process::ExitCode {
    // What `#[tokio::main]` builds: the runtime is made before any step is timed.
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(probe()),
        Err(e) => {
            eprintln!("init-probe: starting the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn probe() -> std::process::ExitCode {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "naive" => {
            // The first version's init: the default credential chain, one load per region.
            let load = |r: &'static str| {
                aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(r))
                    .load()
            };
            let here = astep(
                "sdk config load, default chain (eu-central-1)",
                load("eu-central-1"),
            )
            .await;
            let primary = astep(
                "sdk config load, default chain (us-west-2)",
                load("us-west-2"),
            )
            .await;
            let d = step("dynamodb client", || {
                skyhost_meta::config::dynamodb(&primary)
            });
            let s = step("s3 client (here)", || skyhost_meta::config::s3(&here));
            let p = step("s3 client (primary)", || skyhost_meta::config::s3(&primary));
            drop((d, s, p));
        }
        "origin" => {
            // What `Origin::from_env` does now in a replica region: nothing is loaded or
            // built before first use.
            let here = step("sdk config (eu-central-1, deferred)", || {
                skyhost_meta::config::SdkConfigCell::load("eu-central-1")
            });
            let primary = step("derive us-west-2 config (deferred)", || {
                here.for_region("us-west-2")
            });
            let d = step("dynamodb store (client deferred)", || {
                skyhost_meta::store::dynamodb::DynamoStore::deferred(primary.clone(), "sites")
            });
            let s = step("s3 store (here, client deferred)", || {
                skyhost_meta::blob::s3::S3BlobStore::deferred(here.clone(), "here")
            });
            let p = step("s3 store (primary, client deferred)", || {
                skyhost_meta::blob::s3::S3BlobStore::deferred(primary.clone(), "primary")
            });
            // What the first request that misses Redis then pays, once.
            let _ = astep("first use: sdk config load (eu-central-1)", here.get()).await;
            let _ = astep("first use: dynamodb client (us-west-2)", d.client()).await;
            let _ = astep("first use: s3 client (here)", s.client()).await;
            drop((d, p));
        }
        "copier" => {
            // What `Copier::s3` does in the primary region: the SDK configuration and the
            // primary bucket's client at init, the replica regions' stores deferred; then,
            // timed apart as the origin's are, what the first invocation builds beside its
            // first read of the source.
            let conf = astep(
                "sdk config load (us-west-2)",
                skyhost_meta::config::aws("us-west-2"),
            )
            .await;
            let source = step("s3 client (primary, first of the crate)", || {
                skyhost_meta::config::s3(&conf)
            });
            let conf = skyhost_meta::config::SdkConfigCell::ready(conf);
            let regions = ["eu-central-1", "ap-southeast-1"];
            let replicas: Vec<_> = regions
                .iter()
                .map(|r| {
                    step(&format!("s3 store (replica {r}, client deferred)"), || {
                        skyhost_meta::blob::s3::S3BlobStore::deferred(conf.for_region(r), *r)
                    })
                })
                .collect();
            for (r, store) in regions.iter().zip(&replicas) {
                let _ = astep(
                    &format!("first use: s3 client (replica {r})"),
                    store.client(),
                )
                .await;
            }
            drop((source, replicas));
        }
        "connector" => {
            use skyhost_meta::sdk_http::SharedConnectorClient;
            use skyhost_meta::tls::Roots;
            let c = step("sdk connector, compiled roots", || {
                SharedConnectorClient::new(Roots::Compiled)
            });
            let n = step("sdk connector, system roots", || {
                SharedConnectorClient::new(Roots::Native)
            });
            drop((c, n));
        }
        "native-roots" => {
            let r = step("load native roots", rustls_native_certs::load_native_certs);
            println!("certificates\t{}", r.certs.len());
        }
        "reqwest" => {
            let c = step("reqwest client", || {
                skyhost_meta::tls::http_client().build()
            });
            drop(c);
        }
        "from-env" => {
            // The origin's whole init, with the template's variables set by the caller.
            let t = Instant::now();
            skyhost_meta::logging::init_lambda();
            println!("logging\t{:.3}", t.elapsed().as_secs_f64() * 1000.0);
            let o = astep("Origin::from_env", skyhost_origin::Origin::from_env()).await;
            drop(o);
        }
        "caches" => {
            // The in-process cache tiers the origin builds at init.
            let m = step("memory cache (64 MiB)", || {
                skyhost_meta::cache::memory::MemoryCache::new(64 * 1024 * 1024)
            });
            let t = step("tiered cache, no Redis", || {
                skyhost_meta::cache::Tiered::new(
                    skyhost_meta::cache::memory::MemoryCache::new(1024 * 1024),
                    None,
                )
            });
            let h = step("expiring map", || {
                skyhost_meta::ttl::TtlMap::<String, ()>::new(100_000)
            });
            drop((m, t, h));
        }
        "endpoint-rules" => {
            // Every SDK client builds its crate's default endpoint resolver, and the first
            // one in each crate parses the crate's own copy of the partition table (and
            // compiles its region patterns). The second resolver of a crate is the control.
            use aws_sdk_dynamodb::config::endpoint::DefaultResolver as DynamoResolver;
            use aws_sdk_s3::config::endpoint::DefaultResolver as S3Resolver;
            let d = step("dynamodb endpoint resolver, first", DynamoResolver::new);
            let s = step("s3 endpoint resolver, first", S3Resolver::new);
            let again = step("s3 endpoint resolver, second", S3Resolver::new);
            drop((d, s, again));
        }
        "aws-lc-rand" => {
            step("aws-lc first random bytes", || {
                let mut b = [0u8; 32];
                aws_lc_rs::rand::fill(&mut b).map(|_| b[0])
            })
            .ok();
            step("aws-lc second random bytes", || {
                let mut b = [0u8; 32];
                aws_lc_rs::rand::fill(&mut b).map(|_| b[0])
            })
            .ok();
        }
        other => {
            eprintln!(
                "unknown scenario {other:?}: naive, origin, from-env, connector, caches, native-roots, reqwest, endpoint-rules, aws-lc-rand"
            );
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
