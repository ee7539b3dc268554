//! Custom domains against moto (ACM, API Gateway, CloudFront, Route 53, DynamoDB): the
//! whole add → status → remove flow of both setups, and runs cut short right after a
//! step whose answer is lost, then run again. Run with `make test`, which starts moto
//! with certificates issued 2 s after their request (`MOTO_ACM_VALIDATION_WAIT`).

use async_trait::async_trait;
use skyhost_domains::aws::AwsCloud;
use skyhost_domains::cloud::{AliasRecord, Certificate, Cloud, CloudError, DnsRecord, Endpoint};
use skyhost_domains::flow::{owner_records, Flow, FlowError, Removal, Setup};
use skyhost_domains::state::{Phase, Platform, Target};
use skyhost_domains::store;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const REGIONS: [&str; 2] = ["us-west-2", "eu-central-1"];

/// How long moto takes to issue a certificate, with margin.
const ISSUE_WAIT: Duration = Duration::from_millis(3200);

/// The cloud, with calls that do their work and then fail as if the answer was lost
/// (a crash right after the step), once each.
struct Faulty {
    inner: AwsCloud,
    after: Mutex<HashSet<&'static str>>,
}

impl Faulty {
    fn new(inner: AwsCloud) -> Self {
        Faulty {
            inner,
            after: Mutex::default(),
        }
    }

    /// `op` fails once, after doing its work.
    fn fail_after(&self, op: &'static str) {
        self.after.lock().unwrap().insert(op);
    }

    fn trip<T>(&self, op: &'static str, result: Result<T, CloudError>) -> Result<T, CloudError> {
        let result = result?;
        if self.after.lock().unwrap().remove(op) {
            return Err(CloudError::new(
                "injected fault",
                format!("{op} done, answer lost"),
            ));
        }
        Ok(result)
    }
}

#[async_trait]
impl Cloud for Faulty {
    async fn find_certificate(
        &self,
        region: &str,
        domain: &str,
    ) -> Result<Option<String>, CloudError> {
        self.inner.find_certificate(region, domain).await
    }
    async fn request_certificate(&self, region: &str, domain: &str) -> Result<String, CloudError> {
        let r = self.inner.request_certificate(region, domain).await;
        self.trip("request_certificate", r)
    }
    async fn certificate(
        &self,
        region: &str,
        arn: &str,
    ) -> Result<Option<Certificate>, CloudError> {
        self.inner.certificate(region, arn).await
    }
    async fn delete_certificate(&self, region: &str, arn: &str) -> Result<(), CloudError> {
        self.inner.delete_certificate(region, arn).await
    }
    async fn endpoint(
        &self,
        target: &Target,
        domain: &str,
    ) -> Result<Option<Endpoint>, CloudError> {
        self.inner.endpoint(target, domain).await
    }
    async fn attach(
        &self,
        target: &Target,
        domain: &str,
        arn: &str,
    ) -> Result<Endpoint, CloudError> {
        let r = self.inner.attach(target, domain, arn).await;
        self.trip("attach", r)
    }
    async fn detach(&self, target: &Target, domain: &str) -> Result<bool, CloudError> {
        let r = self.inner.detach(target, domain).await;
        self.trip("detach", r)
    }
    async fn hosted_zone(&self, domain: &str) -> Result<Option<String>, CloudError> {
        self.inner.hosted_zone(domain).await
    }
    async fn records_present(
        &self,
        zone: &str,
        records: &[AliasRecord],
    ) -> Result<bool, CloudError> {
        self.inner.records_present(zone, records).await
    }
    async fn upsert_records(&self, zone: &str, records: &[AliasRecord]) -> Result<(), CloudError> {
        let r = self.inner.upsert_records(zone, records).await;
        self.trip("upsert_records", r)
    }
    async fn cnames_present(&self, zone: &str, records: &[DnsRecord]) -> Result<bool, CloudError> {
        self.inner.cnames_present(zone, records).await
    }
    async fn upsert_cnames(&self, zone: &str, records: &[DnsRecord]) -> Result<(), CloudError> {
        let r = self.inner.upsert_cnames(zone, records).await;
        self.trip("upsert_cnames", r)
    }
    async fn delete_cnames(&self, zone: &str, records: &[DnsRecord]) -> Result<(), CloudError> {
        self.inner.delete_cnames(zone, records).await
    }
    async fn has_records(&self, zone: &str, name: &str) -> Result<bool, CloudError> {
        self.inner.has_records(zone, name).await
    }
    async fn delete_records(&self, zone: &str, name: &str) -> Result<(), CloudError> {
        self.inner.delete_records(zone, name).await
    }
}

/// A public hosted zone; its id.
async fn zone(name: &str) -> String {
    let c = aws_sdk_route53::Client::new(&skyhost_testkit::aws("us-east-1").await);
    let out = c
        .create_hosted_zone()
        .name(name)
        .caller_reference(skyhost_testkit::unique("zone"))
        .send()
        .await
        .expect("create zone");
    out.hosted_zone()
        .expect("zone")
        .id()
        .trim_start_matches("/hostedzone/")
        .to_string()
}

/// The alias records of `name` in `zone`: (type, set identifier, target).
async fn records(zone: &str, name: &str) -> Vec<(String, Option<String>, String)> {
    let c = aws_sdk_route53::Client::new(&skyhost_testkit::aws("us-east-1").await);
    let out = c
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .expect("list records");
    let mut v: Vec<_> = out
        .resource_record_sets()
        .iter()
        .filter(|s| s.name().trim_end_matches('.') == name)
        .filter_map(|s| {
            let a = s.alias_target()?;
            Some((
                s.r#type().as_str().to_string(),
                s.set_identifier().map(str::to_string),
                a.dns_name().trim_end_matches('.').to_string(),
            ))
        })
        .collect();
    v.sort();
    v
}

/// The value of the CNAME `name` in `zone`.
async fn cname(zone: &str, name: &str) -> Option<String> {
    let c = aws_sdk_route53::Client::new(&skyhost_testkit::aws("us-east-1").await);
    let out = c
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .send()
        .await
        .expect("list records");
    out.resource_record_sets()
        .iter()
        .find(|s| s.name().trim_end_matches('.') == name && s.r#type().as_str() == "CNAME")
        .and_then(|s| s.resource_records().first())
        .map(|v| v.value().trim_end_matches('.').to_string())
}

/// Certificates for exactly `domain` in `region` that are pending or issued.
async fn certificates(region: &str, domain: &str) -> usize {
    let c = aws_sdk_acm::Client::new(&skyhost_testkit::aws(region).await);
    let out = c
        .list_certificates()
        .send()
        .await
        .expect("list certificates");
    out.certificate_summary_list()
        .iter()
        .filter(|s| s.domain_name() == Some(domain))
        .filter(|s| {
            matches!(
                s.status(),
                Some(aws_sdk_acm::types::CertificateStatus::PendingValidation)
                    | Some(aws_sdk_acm::types::CertificateStatus::Issued)
            )
        })
        .count()
}

/// The distributions that answer for `domain`: (id, certificate ARN).
async fn distributions(domain: &str) -> Vec<(String, Option<String>)> {
    let c = aws_sdk_cloudfront::Client::new(&skyhost_testkit::aws("us-east-1").await);
    let out = c
        .list_distributions()
        .send()
        .await
        .expect("list distributions");
    let mut found = Vec::new();
    for d in out
        .distribution_list()
        .map(|l| l.items())
        .unwrap_or_default()
    {
        if d.aliases()
            .is_some_and(|a| a.items().iter().any(|i| i == domain))
        {
            let cert = d
                .viewer_certificate()
                .and_then(|v| v.acm_certificate_arn())
                .map(str::to_string);
            found.push((d.id().to_string(), cert));
        }
    }
    found
}

/// The platform's distribution, as the template makes it; its id.
async fn platform_distribution() -> String {
    use aws_sdk_cloudfront::types::*;
    let c = aws_sdk_cloudfront::Client::new(&skyhost_testkit::aws("us-east-1").await);
    let origin = Origin::builder()
        .id("skyhost-origin")
        .domain_name("origin.platform.example")
        .custom_origin_config(
            CustomOriginConfig::builder()
                .http_port(80)
                .https_port(443)
                .origin_protocol_policy(OriginProtocolPolicy::HttpsOnly)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let config = DistributionConfig::builder()
        .caller_reference(skyhost_testkit::unique("platform"))
        .comment("skyhost platform")
        .enabled(true)
        .origins(
            Origins::builder()
                .quantity(1)
                .items(origin)
                .build()
                .unwrap(),
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("skyhost-origin")
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                .cache_policy_id("658327ea-f89d-4fab-a63d-7e88639e58f6")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let out = c
        .create_distribution()
        .distribution_config(config)
        .send()
        .await
        .expect("create platform distribution");
    out.distribution().expect("distribution").id().to_string()
}

async fn table() -> Arc<dyn skyhost_meta::store::MetaStore> {
    Arc::new(skyhost_testkit::dynamo(REGIONS[0]).await)
}

fn regions() -> Vec<String> {
    REGIONS.iter().map(|r| r.to_string()).collect()
}

/// Advances `domain` until it serves (a few rounds: a distribution deploys in steps).
async fn until_serving(flow: &Flow, domain: &str) -> store::DomainRecord {
    let mut last = None;
    for _ in 0..6 {
        let record = flow.get(domain).await.unwrap().expect("recorded");
        let record = flow.advance(record).await.expect("advance");
        if record.phase == Phase::Serving {
            return record;
        }
        last = Some(record);
    }
    panic!("not serving after six runs: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regional_add_status_remove() {
    let zone_name = format!("{}.example", skyhost_testkit::unique("owner"));
    let domain = format!("www.{zone_name}");
    let zone_id = zone(&zone_name).await;
    let api_name = skyhost_testkit::unique("skyhost-origin");
    let mut apis = Vec::new();
    for r in REGIONS {
        apis.push(skyhost_testkit::origin_api(r, &api_name).await);
    }
    let meta = table().await;
    let cloud = AwsCloud::new(
        skyhost_testkit::aws(REGIONS[0]).await,
        None,
        api_name,
        "live".into(),
    );
    let flow = Flow::new(
        meta.clone(),
        Arc::new(cloud),
        Setup {
            platform: Platform::Regional,
            regions: regions(),
            origin_name: Some("origin.platform.example".into()),
        },
    );

    // add: a certificate in every region, pending. Route 53 holds the zone: skyhost
    // writes ACM's validation CNAME there itself, and the owner has nothing to create.
    let added = flow.add(&domain, "blog").await.expect("add");
    assert_eq!(added.phase, Phase::PendingValidation, "{added:?}");
    assert_eq!(added.zone.as_deref(), Some(zone_id.as_str()));
    assert_eq!(added.certificates.len(), 2, "{added:?}");
    for r in REGIONS {
        assert_eq!(certificates(r, &domain).await, 1, "{r}");
    }
    let [validation] = added.validation.as_slice() else {
        panic!(
            "one validation record for every region: {:?}",
            added.validation
        );
    };
    assert!(validation.name.ends_with(&domain), "{validation:?}");
    assert_eq!(
        cname(&zone_id, &validation.name).await.as_deref(),
        Some(validation.value.as_str())
    );
    assert_eq!(owner_records(&added), vec![]);

    // Another site cannot take the domain.
    assert!(matches!(
        flow.add(&domain, "shop").await,
        Err(FlowError::Taken { .. })
    ));

    // Once issued, the next run attaches everywhere and writes the latency records.
    tokio::time::sleep(ISSUE_WAIT).await;
    let serving = until_serving(&flow, &domain).await;
    assert_eq!(serving.target.as_deref(), Some("origin.platform.example"));
    let written = records(&zone_id, &domain).await;
    assert_eq!(written.len(), 2, "{written:?}");
    for (r, api) in REGIONS.iter().zip(&apis) {
        assert!(
            written.iter().any(|(t, set, to)| t == "A"
                && set.as_deref() == Some(r)
                && to.contains(".execute-api.")),
            "{r}: {written:?}"
        );
        let c = aws_sdk_apigateway::Client::new(&skyhost_testkit::aws(r).await);
        let mappings = c
            .get_base_path_mappings()
            .domain_name(&domain)
            .send()
            .await
            .expect("mappings");
        assert!(
            mappings
                .items()
                .iter()
                .any(|m| m.rest_api_id() == Some(api.as_str())),
            "{r}"
        );
    }
    // status lists it as serving; re-running changes nothing and requests nothing.
    let listed = flow.list().await.unwrap();
    assert!(listed
        .iter()
        .any(|d| d.domain == domain && d.phase == Phase::Serving));
    let again = until_serving(&flow, &domain).await;
    assert_eq!(again.certificates, serving.certificates);
    for r in REGIONS {
        assert_eq!(certificates(r, &domain).await, 1, "{r}");
    }

    // remove takes everything down.
    assert_eq!(flow.remove(&domain).await.expect("remove"), Removal::Done);
    assert!(records(&zone_id, &domain).await.is_empty());
    assert_eq!(cname(&zone_id, &validation.name).await, None);
    for r in REGIONS {
        assert_eq!(certificates(r, &domain).await, 0, "{r}");
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
    assert_eq!(flow.get(&domain).await.unwrap(), None);
    assert!(matches!(
        flow.remove(&domain).await,
        Err(FlowError::Unknown(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudfront_runs_cut_short_are_finished_by_the_next() {
    let zone_name = format!("{}.example", skyhost_testkit::unique("owner"));
    let domain = format!("www.{zone_name}");
    let zone_id = zone(&zone_name).await;
    let platform = platform_distribution().await;
    let meta = table().await;
    let cloud = Arc::new(Faulty::new(AwsCloud::new(
        skyhost_testkit::aws(REGIONS[0]).await,
        Some(platform),
        "unused".into(),
        "live".into(),
    )));
    let flow = Flow::new(
        meta.clone(),
        cloud.clone(),
        Setup {
            platform: Platform::CloudFront,
            regions: regions(),
            origin_name: None,
        },
    );

    // The certificate is requested, and the answer lost: the record exists without it.
    cloud.fail_after("request_certificate");
    assert!(flow.add(&domain, "blog").await.is_err());
    let cut = flow
        .get(&domain)
        .await
        .unwrap()
        .expect("recorded before any step");
    assert!(cut.certificates.is_empty(), "{cut:?}");
    // Run again: the request is found, not repeated. One certificate, in us-east-1 only.
    let added = flow.add(&domain, "blog").await.expect("add again");
    assert_eq!(added.phase, Phase::PendingValidation);
    assert_eq!(
        added.certificates.keys().collect::<Vec<_>>(),
        vec!["us-east-1"]
    );
    assert_eq!(certificates("us-east-1", &domain).await, 1);
    assert_eq!(certificates(REGIONS[0], &domain).await, 0);
    // The distribution does not exist yet: nothing to point the domain at.
    assert_eq!(added.target, None);

    // Issued; the distribution is created and the answer lost; the next run goes on.
    tokio::time::sleep(ISSUE_WAIT).await;
    cloud.fail_after("attach");
    let record = flow.get(&domain).await.unwrap().unwrap();
    assert!(flow.advance(record).await.is_err());
    assert_eq!(distributions(&domain).await.len(), 1);
    cloud.fail_after("upsert_records");
    let record = flow.get(&domain).await.unwrap().unwrap();
    assert!(flow.advance(record).await.is_err());
    let serving = until_serving(&flow, &domain).await;
    let dists = distributions(&domain).await;
    assert_eq!(dists.len(), 1, "one distribution, whatever the retries");
    assert_eq!(
        dists[0].1.as_deref(),
        serving.certificates.get("us-east-1").map(String::as_str)
    );
    let target = serving.target.clone().expect("the distribution's name");
    assert!(target.ends_with(".cloudfront.net"), "{target}");
    let written = records(&zone_id, &domain).await;
    assert_eq!(
        written,
        vec![
            ("A".to_string(), None, target.clone()),
            ("AAAA".to_string(), None, target.clone()),
        ]
    );

    // remove, cut short after disabling the distribution: the next call finishes.
    cloud.fail_after("detach");
    assert!(flow.remove(&domain).await.is_err());
    assert_eq!(
        flow.get(&domain).await.unwrap().map(|r| r.phase),
        Some(Phase::Removing)
    );
    let mut outcome = Removal::Pending;
    for _ in 0..5 {
        outcome = flow.remove(&domain).await.expect("remove");
        if outcome == Removal::Done {
            break;
        }
    }
    assert_eq!(outcome, Removal::Done);
    assert!(distributions(&domain).await.is_empty());
    assert_eq!(certificates("us-east-1", &domain).await, 0);
    assert!(records(&zone_id, &domain).await.is_empty());
    assert_eq!(store::get(meta.as_ref(), &domain).await.unwrap(), None);
}
