//! `skyhost domains add|status|remove` on AWS (moto): the command a site owner runs, with
//! the certificate, the API Gateway custom domains and the Route 53 records behind it.
//! Certificates are issued 2 s after their request (`make test` starts moto so).

use skyhost_meta::blob::BlobStore;
use std::process::Command;
use std::time::Duration;

const REGIONS: [&str; 2] = ["us-west-2", "eu-central-1"];

struct Platform {
    args: Vec<String>,
}

impl Platform {
    async fn new() -> Platform {
        let table = skyhost_testkit::dynamo(REGIONS[0]).await.table().to_owned();
        let mut buckets = Vec::new();
        for r in REGIONS {
            buckets.push(format!("{r}={}", skyhost_testkit::s3(r).await.bucket()));
        }
        let api = skyhost_testkit::unique("skyhost-origin");
        for r in REGIONS {
            skyhost_testkit::origin_api(r, &api).await;
        }
        let args = [
            "--primary-region",
            REGIONS[0],
            "--table",
            &table,
            "--buckets",
            &buckets.join(","),
            "--origin-name",
            "origin.platform.example",
            "--api-name",
            &api,
            "--sites-domain",
            "sites.platform.example",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Platform { args }
    }

    /// `skyhost ARGS` against this platform: stdout, or the failure.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_skyhost"))
            .args(&self.args)
            .args(args)
            .output()
            .expect("run skyhost");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "skyhost {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let out = self.run(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {out:?}: {e}"))
    }
}

fn row<'a>(rows: &'a [serde_json::Value], domain: &str) -> Option<&'a serde_json::Value> {
    rows.iter().find(|r| r["domain"] == domain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_prints_the_records_status_follows_remove_takes_down() {
    let p = Platform::new().await;
    // The owner's zone is elsewhere (no Route 53 zone holds it): they create the records.
    let domain = format!("www.{}.example", skyhost_testkit::unique("owner"));
    let text = p.run(&["domains", "add", "--site", "blog", &domain]);
    assert!(text.contains("pending validation"), "{text}");
    assert!(text.contains("DNS records to create"), "{text}");
    // The domain's own CNAME to the latency-routed origin name, and its apex advice.
    assert!(
        text.lines().any(|l| l.contains(&domain)
            && l.contains("CNAME")
            && l.contains("origin.platform.example")),
        "{text}"
    );
    assert!(text.contains("ALIAS/ANAME"), "{text}");

    let rows = p.json(&["domains", "status", "--site", "blog", "--json"]);
    let r = row(&rows, &domain).expect("listed");
    assert_eq!(r["phase"], "pending validation");
    let records = r["records"].as_array().unwrap();
    assert!(
        records.iter().any(|x| x["kind"] == "CNAME"
            && x["name"].as_str().unwrap().ends_with(&domain)
            && x["name"] != domain.as_str()),
        "a validation record: {records:?}"
    );

    // A name under the sites domain needs no certificate of its own.
    let docs = p.json(&[
        "domains",
        "add",
        "--site",
        "blog",
        "docs.sites.platform.example",
        "--json",
    ]);
    assert_eq!(
        docs[0]["phase"],
        "serving (the platform's wildcard certificate)"
    );
    assert!(docs[0]["records"].as_array().unwrap().is_empty());

    // Issued; running add again (as the domains function would) finishes it.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let again = p.json(&["domains", "add", "--site", "blog", &domain, "--json"]);
    assert_eq!(again[0]["phase"], "serving", "{again:?}");
    for r in REGIONS {
        let c = aws_sdk_apigateway::Client::new(&skyhost_testkit::aws(r).await);
        assert!(
            c.get_domain_name()
                .domain_name(&domain)
                .send()
                .await
                .is_ok(),
            "{r}"
        );
    }

    // remove: the mapping, the custom domains and the certificates go.
    p.run(&["domains", "remove", "--site", "blog", &domain]);
    let rows = p.json(&["domains", "status", "--json"]);
    assert!(row(&rows, &domain).is_none(), "{rows:?}");
    assert!(row(&rows, "docs.sites.platform.example").is_some());
    for r in REGIONS {
        let c = aws_sdk_apigateway::Client::new(&skyhost_testkit::aws(r).await);
        assert!(
            c.get_domain_name()
                .domain_name(&domain)
                .send()
                .await
                .is_err(),
            "{r}"
        );
    }
}
