//! [`Cloud`] on the AWS SDK: ACM in each certificate's region, API Gateway (REST) custom
//! domains in each region, one CloudFront distribution per domain copied from the
//! platform's, and Route 53 alias records.

use crate::cloud::{AliasRecord, Certificate, Cloud, CloudError, DnsRecord, Endpoint};
use crate::flow::CLOUDFRONT_ZONE;
use crate::state::{AttachState, CertState, Target};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_acm::types::{CertificateStatus, ValidationMethod};
use aws_sdk_apigateway::types::{
    DomainNameStatus, EndpointConfiguration, EndpointType, SecurityPolicy,
};
use aws_sdk_cloudfront::types::{
    Aliases, DistributionConfig, MinimumProtocolVersion, SslSupportMethod, ViewerCertificate,
};
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet,
    ResourceRecordSetRegion, RrType,
};

/// The AWS adapter.
pub struct AwsCloud {
    base: SdkConfig,
    /// With CloudFront: the platform's distribution, whose configuration each domain's
    /// distribution copies (origin, origin-verify header, cache policy, function).
    distribution: Option<String>,
    /// The origin REST API's name, the same in every region (`{stack}-origin`).
    api_name: String,
    /// Its stage.
    stage: String,
}

fn err(service: &str, e: impl std::fmt::Debug) -> CloudError {
    // The SDK's Display of a service error is only its kind; Debug carries the message.
    CloudError::new(service, format!("{e:?}"))
}

fn build_err(service: &str, e: impl std::fmt::Display) -> CloudError {
    CloudError::new(service, format!("building the request: {e}"))
}

/// A name as Route 53 writes it: lower case, no final dot.
fn dns(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A stable idempotency token per domain (ACM: `\w{1,32}`), so that a request retried
/// within the hour returns the first one's certificate.
fn token(domain: &str) -> String {
    // FNV-1a: fixed across builds and runs, unlike the standard library's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in domain.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("skyhost{h:016x}")
}

impl AwsCloud {
    /// The adapter for a platform: `distribution` with CloudFront; the origin API is
    /// found by `api_name` in each region.
    pub fn new(
        base: SdkConfig,
        distribution: Option<String>,
        api_name: String,
        stage: String,
    ) -> Self {
        AwsCloud {
            base,
            distribution,
            api_name,
            stage,
        }
    }

    fn conf(&self, region: &str) -> SdkConfig {
        skyhost_meta::config::for_region(&self.base, region)
    }

    fn acm(&self, region: &str) -> aws_sdk_acm::Client {
        aws_sdk_acm::Client::new(&self.conf(region))
    }

    fn apigw(&self, region: &str) -> aws_sdk_apigateway::Client {
        aws_sdk_apigateway::Client::new(&self.conf(region))
    }

    // CloudFront and Route 53 are global; their endpoints live in us-east-1.
    fn cloudfront(&self) -> aws_sdk_cloudfront::Client {
        aws_sdk_cloudfront::Client::new(&self.conf("us-east-1"))
    }

    fn route53(&self) -> aws_sdk_route53::Client {
        aws_sdk_route53::Client::new(&self.conf("us-east-1"))
    }

    /// The id of the origin API in `region`.
    async fn api_id(&self, region: &str) -> Result<String, CloudError> {
        let client = self.apigw(region);
        let mut position = None;
        loop {
            let page = client
                .get_rest_apis()
                .limit(500)
                .set_position(position)
                .send()
                .await
                .map_err(|e| err("apigateway GetRestApis", e))?;
            if let Some(api) = page
                .items()
                .iter()
                .find(|a| a.name() == Some(self.api_name.as_str()))
            {
                if let Some(id) = api.id() {
                    return Ok(id.to_string());
                }
            }
            match page.position() {
                Some(p) if !page.items().is_empty() => position = Some(p.to_string()),
                _ => break,
            }
        }
        Err(CloudError::new(
            "apigateway GetRestApis",
            format!(
                "no REST API named {} in {region}: is skyhost deployed there?",
                self.api_name
            ),
        ))
    }

    /// The domain's distribution: id, whether enabled, status and DNS name.
    async fn find_distribution(
        &self,
        domain: &str,
    ) -> Result<Option<(String, bool, String, String)>, CloudError> {
        let client = self.cloudfront();
        let mut marker = None;
        loop {
            let out = client
                .list_distributions()
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| err("cloudfront ListDistributions", e))?;
            let Some(list) = out.distribution_list() else {
                return Ok(None);
            };
            for d in list.items() {
                let aliased = d
                    .aliases()
                    .map(|a| a.items().iter().any(|i| dns(i) == domain))
                    .unwrap_or(false);
                if aliased {
                    return Ok(Some((
                        d.id().to_string(),
                        d.enabled(),
                        d.status().to_string(),
                        d.domain_name().to_string(),
                    )));
                }
            }
            match list.next_marker() {
                Some(m) if list.is_truncated() => marker = Some(m.to_string()),
                _ => return Ok(None),
            }
        }
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> Result<(), CloudError> {
        let client = self.cloudfront();
        let got = client
            .get_distribution_config()
            .id(id)
            .send()
            .await
            .map_err(|e| err("cloudfront GetDistributionConfig", e))?;
        let Some(mut config) = got.distribution_config().cloned() else {
            return Err(CloudError::new(
                "cloudfront GetDistributionConfig",
                "no configuration returned",
            ));
        };
        config.enabled = enabled;
        client
            .update_distribution()
            .id(id)
            .set_if_match(got.e_tag().map(str::to_string))
            .distribution_config(config)
            .send()
            .await
            .map_err(|e| err("cloudfront UpdateDistribution", e))?;
        Ok(())
    }

    /// The platform distribution's configuration, made the domain's own.
    async fn domain_config(
        &self,
        domain: &str,
        arn: &str,
    ) -> Result<DistributionConfig, CloudError> {
        let Some(platform) = &self.distribution else {
            return Err(CloudError::new(
                "cloudfront",
                "no platform distribution configured (SKYHOST_DISTRIBUTION_ID)",
            ));
        };
        let got = self
            .cloudfront()
            .get_distribution_config()
            .id(platform)
            .send()
            .await
            .map_err(|e| err("cloudfront GetDistributionConfig", e))?;
        let Some(mut config) = got.distribution_config().cloned() else {
            return Err(CloudError::new(
                "cloudfront GetDistributionConfig",
                "no configuration returned",
            ));
        };
        // Unique per creation: a reference is never reused, even after a remove.
        config.caller_reference = format!("skyhost-{domain}-{}", skyhost_meta::now());
        config.comment = format!("skyhost custom domain {domain}")
            .chars()
            .take(128)
            .collect();
        config.enabled = true;
        config.aliases = Some(
            Aliases::builder()
                .quantity(1)
                .items(domain)
                .build()
                .map_err(|e| build_err("cloudfront", e))?,
        );
        config.viewer_certificate = Some(
            ViewerCertificate::builder()
                .acm_certificate_arn(arn)
                .ssl_support_method(SslSupportMethod::SniOnly)
                .minimum_protocol_version(MinimumProtocolVersion::TlSv122021)
                .build(),
        );
        Ok(config)
    }

    /// The alias record sets of `name` in `zone` (A and AAAA).
    async fn alias_sets(
        &self,
        zone: &str,
        name: &str,
    ) -> Result<Vec<ResourceRecordSet>, CloudError> {
        Ok(self
            .sets(zone, name)
            .await?
            .into_iter()
            .filter(|s| matches!(s.r#type(), RrType::A | RrType::Aaaa))
            .filter(|s| s.alias_target().is_some())
            .collect())
    }

    /// The CNAME of `name` in `zone`, if any.
    async fn cname(&self, zone: &str, name: &str) -> Result<Option<ResourceRecordSet>, CloudError> {
        Ok(self
            .sets(zone, name)
            .await?
            .into_iter()
            .find(|s| *s.r#type() == RrType::Cname))
    }

    /// Every record set of `name` in `zone`.
    async fn sets(&self, zone: &str, name: &str) -> Result<Vec<ResourceRecordSet>, CloudError> {
        let out = self
            .route53()
            .list_resource_record_sets()
            .hosted_zone_id(zone)
            .start_record_name(name)
            .max_items(100)
            .send()
            .await
            .map_err(|e| err("route53 ListResourceRecordSets", e))?;
        Ok(out
            .resource_record_sets()
            .iter()
            .filter(|s| dns(s.name()) == dns(name))
            .cloned()
            .collect())
    }

    async fn change(&self, zone: &str, changes: Vec<Change>) -> Result<(), CloudError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.route53()
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(
                ChangeBatch::builder()
                    .set_changes(Some(changes))
                    .comment("skyhost custom domain")
                    .build()
                    .map_err(|e| build_err("route53", e))?,
            )
            .send()
            .await
            .map_err(|e| err("route53 ChangeResourceRecordSets", e))?;
        Ok(())
    }
}

fn alias_set(r: &AliasRecord, kind: RrType) -> Result<ResourceRecordSet, CloudError> {
    let target = AliasTarget::builder()
        .dns_name(&r.dns_name)
        .hosted_zone_id(&r.zone_id)
        .evaluate_target_health(false)
        .build()
        .map_err(|e| build_err("route53", e))?;
    let mut set = ResourceRecordSet::builder()
        .name(&r.name)
        .r#type(kind)
        .alias_target(target);
    if let Some(region) = &r.region {
        set = set
            .set_identifier(region)
            .region(ResourceRecordSetRegion::from(region.as_str()));
    }
    set.build().map_err(|e| build_err("route53", e))
}

/// The record types of an alias record: CloudFront answers on IPv6 too, the regional
/// APIs on IPv4.
fn kinds(r: &AliasRecord) -> &'static [RrType] {
    if r.region.is_none() {
        &[RrType::A, RrType::Aaaa]
    } else {
        &[RrType::A]
    }
}

#[async_trait]
impl Cloud for AwsCloud {
    async fn find_certificate(
        &self,
        region: &str,
        domain: &str,
    ) -> Result<Option<String>, CloudError> {
        let client = self.acm(region);
        let mut next = None;
        loop {
            let out = client
                .list_certificates()
                .certificate_statuses(CertificateStatus::PendingValidation)
                .certificate_statuses(CertificateStatus::Issued)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| err("acm ListCertificates", e))?;
            let found = out
                .certificate_summary_list()
                .iter()
                .find(|c| c.domain_name().map(dns).as_deref() == Some(domain))
                .and_then(|c| c.certificate_arn());
            if let Some(arn) = found {
                return Ok(Some(arn.to_string()));
            }
            match out.next_token() {
                Some(t) => next = Some(t.to_string()),
                None => return Ok(None),
            }
        }
    }

    async fn request_certificate(&self, region: &str, domain: &str) -> Result<String, CloudError> {
        let out = self
            .acm(region)
            .request_certificate()
            .domain_name(domain)
            .validation_method(ValidationMethod::Dns)
            .idempotency_token(token(domain))
            .send()
            .await
            .map_err(|e| err("acm RequestCertificate", e))?;
        out.certificate_arn()
            .map(str::to_string)
            .ok_or_else(|| CloudError::new("acm RequestCertificate", "no certificate ARN returned"))
    }

    async fn certificate(
        &self,
        region: &str,
        arn: &str,
    ) -> Result<Option<Certificate>, CloudError> {
        let out = match self
            .acm(region)
            .describe_certificate()
            .certificate_arn(arn)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(err("acm DescribeCertificate", e)),
        };
        let Some(detail) = out.certificate() else {
            return Ok(None);
        };
        let state = match detail.status() {
            Some(CertificateStatus::Issued) => CertState::Issued,
            Some(CertificateStatus::PendingValidation) | None => CertState::Pending,
            Some(other) => {
                let why = detail
                    .failure_reason()
                    .map(|r| format!("{} ({})", other.as_str(), r.as_str()))
                    .unwrap_or_else(|| other.as_str().to_string());
                CertState::Failed(why)
            }
        };
        let validation = detail
            .domain_validation_options()
            .iter()
            .filter_map(|v| v.resource_record())
            .map(|r| DnsRecord {
                name: dns(r.name()),
                kind: r.r#type().as_str().to_string(),
                value: dns(r.value()),
            })
            .collect();
        Ok(Some(Certificate { state, validation }))
    }

    async fn delete_certificate(&self, region: &str, arn: &str) -> Result<(), CloudError> {
        match self
            .acm(region)
            .delete_certificate()
            .certificate_arn(arn)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(err("acm DeleteCertificate", e)),
        }
    }

    async fn endpoint(
        &self,
        target: &Target,
        domain: &str,
    ) -> Result<Option<Endpoint>, CloudError> {
        match target {
            Target::Distribution => {
                let Some((_, enabled, status, dns_name)) = self.find_distribution(domain).await?
                else {
                    return Ok(None);
                };
                let state = match (enabled, status.as_str()) {
                    (false, _) => AttachState::Disabled,
                    (true, "Deployed") => AttachState::Ready,
                    (true, _) => AttachState::InProgress,
                };
                Ok(Some(Endpoint {
                    state,
                    dns_name,
                    zone_id: CLOUDFRONT_ZONE.to_string(),
                }))
            }
            Target::Region(region) => {
                let client = self.apigw(region);
                let got = match client.get_domain_name().domain_name(domain).send().await {
                    Ok(o) => o,
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_not_found_exception()) =>
                    {
                        return Ok(None)
                    }
                    Err(e) => return Err(err("apigateway GetDomainName", e)),
                };
                let api = self.api_id(region).await?;
                let mappings = client
                    .get_base_path_mappings()
                    .domain_name(domain)
                    .send()
                    .await
                    .map_err(|e| err("apigateway GetBasePathMappings", e))?;
                let mapped = mappings
                    .items()
                    .iter()
                    .any(|m| m.rest_api_id() == Some(api.as_str()));
                let state = match (mapped, got.domain_name_status()) {
                    (false, _) => AttachState::Missing,
                    (true, Some(DomainNameStatus::Available) | None) => AttachState::Ready,
                    (true, Some(_)) => AttachState::InProgress,
                };
                Ok(Some(Endpoint {
                    state,
                    dns_name: got.regional_domain_name().unwrap_or_default().to_string(),
                    zone_id: got
                        .regional_hosted_zone_id()
                        .unwrap_or_default()
                        .to_string(),
                }))
            }
        }
    }

    async fn attach(
        &self,
        target: &Target,
        domain: &str,
        arn: &str,
    ) -> Result<Endpoint, CloudError> {
        match target {
            Target::Distribution => match self.find_distribution(domain).await? {
                Some((id, false, _, _)) => self.set_enabled(&id, true).await?,
                Some(_) => {}
                None => {
                    let config = self.domain_config(domain, arn).await?;
                    self.cloudfront()
                        .create_distribution()
                        .distribution_config(config)
                        .send()
                        .await
                        .map_err(|e| err("cloudfront CreateDistribution", e))?;
                }
            },
            Target::Region(region) => {
                let client = self.apigw(region);
                let exists = match client.get_domain_name().domain_name(domain).send().await {
                    Ok(_) => true,
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_not_found_exception()) =>
                    {
                        false
                    }
                    Err(e) => return Err(err("apigateway GetDomainName", e)),
                };
                if !exists {
                    let created = client
                        .create_domain_name()
                        .domain_name(domain)
                        .regional_certificate_arn(arn)
                        .endpoint_configuration(
                            EndpointConfiguration::builder()
                                .types(EndpointType::Regional)
                                .build(),
                        )
                        .security_policy(SecurityPolicy::Tls12)
                        .send()
                        .await;
                    match created {
                        Ok(_) => {}
                        // Created meanwhile by another run.
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|s| s.is_conflict_exception()) => {}
                        Err(e) => return Err(err("apigateway CreateDomainName", e)),
                    }
                }
                let api = self.api_id(region).await?;
                let mapped = client
                    .create_base_path_mapping()
                    .domain_name(domain)
                    .rest_api_id(&api)
                    .stage(&self.stage)
                    .send()
                    .await;
                match mapped {
                    Ok(_) => {}
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_conflict_exception()) => {}
                    Err(e) => return Err(err("apigateway CreateBasePathMapping", e)),
                }
            }
        }
        self.endpoint(target, domain).await?.ok_or_else(|| {
            CloudError::new(
                "attach",
                format!("{domain} is not attached to {target} after attaching"),
            )
        })
    }

    async fn detach(&self, target: &Target, domain: &str) -> Result<bool, CloudError> {
        match target {
            Target::Distribution => {
                let Some((id, enabled, status, _)) = self.find_distribution(domain).await? else {
                    return Ok(true);
                };
                if enabled {
                    self.set_enabled(&id, false).await?;
                    return Ok(false);
                }
                // CloudFront deletes a distribution only once it is disabled and deployed.
                if status != "Deployed" {
                    return Ok(false);
                }
                let client = self.cloudfront();
                let got = client
                    .get_distribution()
                    .id(&id)
                    .send()
                    .await
                    .map_err(|e| err("cloudfront GetDistribution", e))?;
                match client
                    .delete_distribution()
                    .id(&id)
                    .set_if_match(got.e_tag().map(str::to_string))
                    .send()
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_no_such_distribution()) =>
                    {
                        Ok(true)
                    }
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_distribution_not_disabled()) =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(err("cloudfront DeleteDistribution", e)),
                }
            }
            Target::Region(region) => {
                // Deleting the custom domain deletes its base path mappings with it.
                match self
                    .apigw(region)
                    .delete_domain_name()
                    .domain_name(domain)
                    .send()
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_not_found_exception()) =>
                    {
                        Ok(true)
                    }
                    Err(e) => Err(err("apigateway DeleteDomainName", e)),
                }
            }
        }
    }

    async fn hosted_zone(&self, domain: &str) -> Result<Option<String>, CloudError> {
        let client = self.route53();
        let mut best: Option<(usize, String)> = None;
        let mut marker = None;
        loop {
            let out = client
                .list_hosted_zones()
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| err("route53 ListHostedZones", e))?;
            for z in out.hosted_zones() {
                if z.config().is_some_and(|c| c.private_zone()) {
                    continue;
                }
                let name = dns(z.name());
                let holds = domain == name || domain.ends_with(&format!(".{name}"));
                if holds && best.as_ref().is_none_or(|(len, _)| name.len() > *len) {
                    let id = z.id().trim_start_matches("/hostedzone/").to_string();
                    best = Some((name.len(), id));
                }
            }
            match out.next_marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(best.map(|(_, id)| id))
    }

    async fn records_present(
        &self,
        zone: &str,
        records: &[AliasRecord],
    ) -> Result<bool, CloudError> {
        let Some(first) = records.first() else {
            return Ok(true);
        };
        let sets = self.alias_sets(zone, &first.name).await?;
        Ok(records.iter().all(|r| {
            kinds(r).iter().all(|kind| {
                sets.iter().any(|s| {
                    s.r#type() == kind
                        && s.set_identifier() == r.region.as_deref()
                        && s.alias_target()
                            .is_some_and(|a| dns(a.dns_name()) == dns(&r.dns_name))
                })
            })
        }))
    }

    async fn upsert_records(&self, zone: &str, records: &[AliasRecord]) -> Result<(), CloudError> {
        let mut changes = Vec::new();
        for r in records {
            for kind in kinds(r) {
                changes.push(change(ChangeAction::Upsert, alias_set(r, kind.clone())?)?);
            }
        }
        self.change(zone, changes).await
    }

    async fn cnames_present(&self, zone: &str, records: &[DnsRecord]) -> Result<bool, CloudError> {
        for r in records {
            let value = self
                .cname(zone, &r.name)
                .await?
                .and_then(|set| set.resource_records().first().map(|v| dns(v.value())));
            if value.as_deref() != Some(dns(&r.value).as_str()) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn upsert_cnames(&self, zone: &str, records: &[DnsRecord]) -> Result<(), CloudError> {
        let mut changes = Vec::new();
        for r in records.iter().filter(|r| r.kind == "CNAME") {
            let set = ResourceRecordSet::builder()
                .name(&r.name)
                .r#type(RrType::Cname)
                .ttl(300)
                .resource_records(
                    ResourceRecord::builder()
                        .value(&r.value)
                        .build()
                        .map_err(|e| build_err("route53", e))?,
                )
                .build()
                .map_err(|e| build_err("route53", e))?;
            changes.push(change(ChangeAction::Upsert, set)?);
        }
        self.change(zone, changes).await
    }

    async fn delete_cnames(&self, zone: &str, records: &[DnsRecord]) -> Result<(), CloudError> {
        let mut changes = Vec::new();
        for r in records {
            // Only the value skyhost wrote: an owner's own record of the name stays.
            if let Some(set) = self.cname(zone, &r.name).await? {
                let ours = set
                    .resource_records()
                    .iter()
                    .any(|v| dns(v.value()) == dns(&r.value));
                if ours {
                    changes.push(change(ChangeAction::Delete, set)?);
                }
            }
        }
        self.change(zone, changes).await
    }

    async fn has_records(&self, zone: &str, name: &str) -> Result<bool, CloudError> {
        Ok(self.alias_sets(zone, name).await?.iter().any(ours))
    }

    async fn delete_records(&self, zone: &str, name: &str) -> Result<(), CloudError> {
        let mut changes = Vec::new();
        for set in self.alias_sets(zone, name).await?.into_iter().filter(ours) {
            changes.push(change(ChangeAction::Delete, set)?);
        }
        self.change(zone, changes).await
    }
}

/// One change of a record set.
fn change(action: ChangeAction, set: ResourceRecordSet) -> Result<Change, CloudError> {
    Change::builder()
        .action(action)
        .resource_record_set(set)
        .build()
        .map_err(|e| build_err("route53", e))
}

/// Whether an alias record is one skyhost writes: to CloudFront or to API Gateway.
fn ours(set: &ResourceRecordSet) -> bool {
    set.alias_target().is_some_and(|a| {
        let n = dns(a.dns_name());
        n.ends_with(".cloudfront.net") || n.contains(".execute-api.")
    })
}
