//! Add, advance, list and remove custom domains: each call observes the cloud afresh,
//! asks [`crate::state`] what to do, does it and records the outcome, so a run cut short
//! anywhere (a crash, a timeout, a throttled call) is finished by the next one — the
//! scheduled domains function's, or the operator's re-run.

use crate::cloud::{AliasRecord, Cloud, CloudError, DnsRecord, Endpoint};
use crate::state::{
    self, AttachState, CertState, Observed, Phase, Platform, RemovalStep, Step, Target,
};
use crate::store::{self, DomainRecord};
use skyhost_meta::store::{MetaStore, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The platform as custom domains see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// CloudFront or regional.
    pub platform: Platform,
    /// Every region, primary first.
    pub regions: Vec<String>,
    /// The latency-routed origin name (the template's `DomainName`): the CNAME target of
    /// a domain in the regional setup.
    pub origin_name: Option<String>,
}

/// Why a domain operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The sites table failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A cloud call failed; re-running picks up where it stopped.
    #[error("{0} (nothing is lost: run it again, or let the domains function finish)")]
    Cloud(#[from] CloudError),
    /// The domain is another site's.
    #[error("domain {domain} already belongs to site {site}")]
    Taken {
        /// The domain.
        domain: String,
        /// Its site.
        site: String,
    },
    /// No such custom domain.
    #[error("no custom domain {0}: `skyhost domains status` lists them")]
    Unknown(String),
}

/// What a removal got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Everything is gone, the record too.
    Done,
    /// Still going (a distribution being disabled): the domains function finishes it.
    Pending,
}

/// Custom domains on one platform.
#[derive(Clone)]
pub struct Flow {
    meta: Arc<dyn MetaStore>,
    cloud: Arc<dyn Cloud>,
    setup: Setup,
}

/// The fixed hosted zone of every CloudFront distribution (alias records).
pub const CLOUDFRONT_ZONE: &str = "Z2FDTNDATAQYW2";

/// What [`Flow::observe`] found, beyond the pure [`Observed`].
struct Seen {
    observed: Observed,
    validation: Vec<DnsRecord>,
    endpoints: BTreeMap<Target, Endpoint>,
}

impl Flow {
    /// Custom domains written to `meta`, provisioned through `cloud`.
    pub fn new(meta: Arc<dyn MetaStore>, cloud: Arc<dyn Cloud>, setup: Setup) -> Self {
        Flow { meta, cloud, setup }
    }

    /// The platform.
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// Starts serving `domain` for `site` over HTTPS (or continues, if it was started
    /// before): records it, requests the certificates, and takes every step possible now.
    pub async fn add(&self, domain: &str, site: &str) -> Result<DomainRecord, FlowError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let record = match store::get(self.meta.as_ref(), &domain).await? {
            Some(r) if r.site != site => {
                return Err(FlowError::Taken {
                    domain,
                    site: r.site,
                })
            }
            Some(mut r) => {
                // Adding again after a remove began takes the domain back up.
                if r.phase == Phase::Removing {
                    r.phase = Phase::PendingValidation;
                }
                r
            }
            None => {
                let zone = self.cloud.hosted_zone(&domain).await?;
                let record = DomainRecord {
                    domain: domain.clone(),
                    site: site.to_string(),
                    platform: self.setup.platform,
                    phase: Phase::PendingValidation,
                    certificates: BTreeMap::new(),
                    validation: Vec::new(),
                    target: self.first_target(),
                    zone,
                    reason: None,
                    updated: skyhost_meta::now(),
                };
                store::put(self.meta.as_ref(), &record).await?;
                record
            }
        };
        self.advance(record).await
    }

    /// Every custom domain, as last recorded.
    pub async fn list(&self) -> Result<Vec<DomainRecord>, FlowError> {
        Ok(store::list(self.meta.as_ref()).await?)
    }

    /// One custom domain, as last recorded.
    pub async fn get(&self, domain: &str) -> Result<Option<DomainRecord>, FlowError> {
        Ok(store::get(self.meta.as_ref(), &domain.to_ascii_lowercase()).await?)
    }

    /// Takes every step possible now for one domain and records where it stands.
    pub async fn advance(&self, mut record: DomainRecord) -> Result<DomainRecord, FlowError> {
        if record.phase == Phase::Removing {
            self.take_down(&mut record).await?;
            return Ok(record);
        }
        let mut seen = self.observe(&mut record).await?;
        let mut plan = state::plan(&seen.observed);
        // A few rounds: a certificate issued at once lets attaching follow in the same run.
        for _ in 0..3 {
            if plan.steps.is_empty() {
                break;
            }
            for step in &plan.steps {
                self.run(&mut record, &seen, step).await?;
            }
            seen = self.observe(&mut record).await?;
            plan = state::plan(&seen.observed);
        }
        record.phase = plan.phase;
        record.reason = plan.reason;
        record.validation = seen.validation;
        if let Some(target) = self.owner_target(&seen.endpoints) {
            record.target = Some(target);
        }
        record.updated = skyhost_meta::now();
        store::put(self.meta.as_ref(), &record).await?;
        Ok(record)
    }

    /// Advances every recorded domain (the scheduled domains function): one failing
    /// domain does not stop the others. Returns each domain with its phase or error.
    pub async fn advance_all(&self) -> Result<Vec<(String, Result<Phase, String>)>, FlowError> {
        let mut out = Vec::new();
        for record in self.list().await? {
            let domain = record.domain.clone();
            let outcome = match self.advance(record).await {
                Ok(r) => Ok(r.phase),
                Err(e) => {
                    tracing::warn!(domain, error = %e, "custom domain step failed");
                    Err(e.to_string())
                }
            };
            out.push((domain, outcome));
        }
        Ok(out)
    }

    /// Takes a domain down: its records, attachments and certificates, then its record.
    /// What must wait (a distribution being disabled) is finished by the domains function.
    pub async fn remove(&self, domain: &str) -> Result<Removal, FlowError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let Some(mut record) = store::get(self.meta.as_ref(), &domain).await? else {
            return Err(FlowError::Unknown(domain));
        };
        if record.phase != Phase::Removing {
            record.phase = Phase::Removing;
            record.updated = skyhost_meta::now();
            store::put(self.meta.as_ref(), &record).await?;
        }
        self.take_down(&mut record).await
    }

    async fn take_down(&self, record: &mut DomainRecord) -> Result<Removal, FlowError> {
        for _ in 0..4 {
            let seen = self.observe(record).await?;
            let steps = state::plan_removal(&seen.observed);
            if steps.is_empty() {
                store::delete(self.meta.as_ref(), &record.domain).await?;
                return Ok(Removal::Done);
            }
            let mut waiting = false;
            for step in steps {
                match step {
                    RemovalStep::DeleteRecords => {
                        if let Some(zone) = &record.zone {
                            self.cloud.delete_records(zone, &record.domain).await?;
                        }
                    }
                    RemovalStep::Detach(target) => {
                        waiting |= !self.cloud.detach(&target, &record.domain).await?;
                    }
                    RemovalStep::DeleteCertificate(region) => {
                        if let Some(arn) = record.certificates.get(&region) {
                            self.cloud.delete_certificate(&region, arn).await?;
                        }
                        record.certificates.remove(&region);
                    }
                }
            }
            if waiting {
                break;
            }
        }
        record.updated = skyhost_meta::now();
        store::put(self.meta.as_ref(), record).await?;
        Ok(Removal::Pending)
    }

    /// What the cloud shows for a domain; certificate ARNs found again are recorded in
    /// `record`.
    async fn observe(&self, record: &mut DomainRecord) -> Result<Seen, FlowError> {
        let domain = record.domain.clone();
        let mut certificates = Vec::new();
        let mut validation = Vec::new();
        for region in self.setup.platform.certificate_regions(&self.setup.regions) {
            let arn = match record.certificates.get(&region) {
                Some(arn) => Some(arn.clone()),
                // A request whose answer was lost (a crash right after it) is found again.
                None => self.cloud.find_certificate(&region, &domain).await?,
            };
            let cert = match &arn {
                Some(arn) => self.cloud.certificate(&region, arn).await?,
                None => None,
            };
            match (arn, cert) {
                (Some(arn), Some(cert)) => {
                    record.certificates.insert(region.clone(), arn);
                    validation.extend(cert.validation);
                    certificates.push((region, cert.state));
                }
                _ => {
                    record.certificates.remove(&region);
                    certificates.push((region, CertState::Missing));
                }
            }
        }
        validation.sort();
        validation.dedup();
        let mut attachments = Vec::new();
        let mut endpoints = BTreeMap::new();
        for target in self.setup.platform.targets(&self.setup.regions) {
            match self.cloud.endpoint(&target, &domain).await? {
                Some(e) => {
                    attachments.push((target.clone(), e.state));
                    endpoints.insert(target, e);
                }
                None => attachments.push((target, AttachState::Missing)),
            }
        }
        let records = match &record.zone {
            Some(zone) if record.phase == Phase::Removing => {
                self.cloud.has_records(zone, &domain).await?
            }
            Some(zone) => match self.alias_records(&domain, &endpoints) {
                Some(wanted) => self.cloud.records_present(zone, &wanted).await?,
                None => false,
            },
            None => false,
        };
        Ok(Seen {
            observed: Observed {
                certificates,
                attachments,
                zone: record.zone.is_some(),
                records,
            },
            validation,
            endpoints,
        })
    }

    async fn run(
        &self,
        record: &mut DomainRecord,
        seen: &Seen,
        step: &Step,
    ) -> Result<(), FlowError> {
        let domain = record.domain.clone();
        match step {
            Step::RequestCertificate(region) => {
                let arn = self.cloud.request_certificate(region, &domain).await?;
                record.certificates.insert(region.clone(), arn);
                // Recorded at once: the next run needs no search to find it.
                record.updated = skyhost_meta::now();
                store::put(self.meta.as_ref(), record).await?;
            }
            Step::Attach(target) => {
                let region = self.setup.platform.certificate_region(target);
                let Some(arn) = record.certificates.get(region) else {
                    return Err(CloudError::new(
                        "skyhost",
                        format!("no certificate recorded in {region}"),
                    )
                    .into());
                };
                self.cloud.attach(target, &domain, arn).await?;
            }
            Step::WriteRecords => {
                if let (Some(zone), Some(records)) =
                    (&record.zone, self.alias_records(&domain, &seen.endpoints))
                {
                    self.cloud.upsert_records(zone, &records).await?;
                }
            }
        }
        Ok(())
    }

    /// The alias records of a domain in its Route 53 zone, once every attachment exists.
    fn alias_records(
        &self,
        domain: &str,
        endpoints: &BTreeMap<Target, Endpoint>,
    ) -> Option<Vec<AliasRecord>> {
        let targets = self.setup.platform.targets(&self.setup.regions);
        let mut out = Vec::new();
        for target in &targets {
            let e = endpoints
                .get(target)
                .filter(|e| e.state != AttachState::Missing)?;
            out.push(AliasRecord {
                name: domain.to_string(),
                region: match target {
                    Target::Distribution => None,
                    Target::Region(r) => Some(r.clone()),
                },
                dns_name: e.dns_name.clone(),
                zone_id: e.zone_id.clone(),
            });
        }
        Some(out)
    }

    /// Where the owner points the domain, as far as known before anything is attached.
    fn first_target(&self) -> Option<String> {
        match self.setup.platform {
            Platform::CloudFront => None,
            Platform::Regional => self.setup.origin_name.clone(),
        }
    }

    /// Where the owner points the domain: the domain's distribution, or the latency-routed
    /// origin name (API Gateway answers a regional custom domain on any of its names).
    fn owner_target(&self, endpoints: &BTreeMap<Target, Endpoint>) -> Option<String> {
        match self.setup.platform {
            Platform::CloudFront => endpoints
                .get(&Target::Distribution)
                .map(|e| e.dns_name.clone()),
            Platform::Regional => self.setup.origin_name.clone(),
        }
    }
}

/// The DNS records the owner creates for a domain: the validation CNAMEs, and the domain
/// itself (a CNAME, or an ALIAS/ANAME at the apex) unless Route 53 holds its zone and
/// skyhost writes it.
pub fn owner_records(record: &DomainRecord) -> Vec<DnsRecord> {
    let mut out = record.validation.clone();
    if record.zone.is_none() {
        if let Some(target) = &record.target {
            out.push(DnsRecord {
                name: record.domain.clone(),
                kind: "CNAME".to_string(),
                value: target.clone(),
            });
        }
    }
    out
}
