//! The port over the AWS services a custom domain touches: ACM, API Gateway, CloudFront
//! and Route 53. [`crate::aws::AwsCloud`] implements it on the SDK; tests wrap it to
//! inject faults. Every call is idempotent or says what it found.

use crate::state::{AttachState, CertState, Target};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A call to the cloud failed.
#[derive(Debug, thiserror::Error)]
#[error("{service}: {message}")]
pub struct CloudError {
    /// The service and call, e.g. `acm RequestCertificate`.
    pub service: String,
    /// What went wrong.
    pub message: String,
}

impl CloudError {
    /// An error of `service` saying `message`.
    pub fn new(service: impl Into<String>, message: impl std::fmt::Display) -> Self {
        CloudError {
            service: service.into(),
            message: message.to_string(),
        }
    }
}

/// A DNS record the owner (or skyhost, in a Route 53 zone) creates.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DnsRecord {
    /// The record's name.
    pub name: String,
    /// `CNAME`, or `ALIAS` where the zone's provider offers it.
    pub kind: String,
    /// Its value.
    pub value: String,
}

/// A certificate as ACM shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Its state.
    pub state: CertState,
    /// The validation CNAMEs ACM asks for (may be empty just after the request).
    pub validation: Vec<DnsRecord>,
}

/// A domain attached somewhere, and where DNS should point to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its state.
    pub state: AttachState,
    /// The DNS name to alias (a CloudFront or API Gateway regional name).
    pub dns_name: String,
    /// The Route 53 hosted zone of that name (for alias records).
    pub zone_id: String,
}

/// An alias record skyhost writes in a zone Route 53 hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRecord {
    /// The record's name (the domain).
    pub name: String,
    /// Latency routing: the region of this record (also its set identifier); `None` for
    /// a simple record.
    pub region: Option<String>,
    /// The aliased name.
    pub dns_name: String,
    /// The aliased name's hosted zone.
    pub zone_id: String,
}

/// The cloud, as custom domains need it.
#[async_trait]
pub trait Cloud: Send + Sync {
    /// An existing certificate for exactly `domain` in `region` that is pending or
    /// issued: finds a request whose answer was lost.
    async fn find_certificate(
        &self,
        region: &str,
        domain: &str,
    ) -> Result<Option<String>, CloudError>;
    /// Requests a DNS-validated certificate; returns its ARN.
    async fn request_certificate(&self, region: &str, domain: &str) -> Result<String, CloudError>;
    /// A certificate, `None` when it does not exist.
    async fn certificate(&self, region: &str, arn: &str)
        -> Result<Option<Certificate>, CloudError>;
    /// Deletes a certificate; one that does not exist is no error.
    async fn delete_certificate(&self, region: &str, arn: &str) -> Result<(), CloudError>;
    /// The domain's attachment to `target`, `None` when there is none.
    async fn endpoint(&self, target: &Target, domain: &str)
        -> Result<Option<Endpoint>, CloudError>;
    /// Attaches the domain to `target` with the certificate `arn` (or re-enables an
    /// attachment on its way out).
    async fn attach(
        &self,
        target: &Target,
        domain: &str,
        arn: &str,
    ) -> Result<Endpoint, CloudError>;
    /// One step of detaching: disables what must be disabled first, deletes what may be
    /// deleted. Returns whether the attachment is gone.
    async fn detach(&self, target: &Target, domain: &str) -> Result<bool, CloudError>;
    /// The Route 53 hosted zone (public) that holds `domain`, if any.
    async fn hosted_zone(&self, domain: &str) -> Result<Option<String>, CloudError>;
    /// Whether every record is in the zone as given.
    async fn records_present(
        &self,
        zone: &str,
        records: &[AliasRecord],
    ) -> Result<bool, CloudError>;
    /// Creates or updates the records.
    async fn upsert_records(&self, zone: &str, records: &[AliasRecord]) -> Result<(), CloudError>;
    /// Whether `name` has alias records skyhost writes (to CloudFront or API Gateway).
    async fn has_records(&self, zone: &str, name: &str) -> Result<bool, CloudError>;
    /// Deletes the alias records of `name` that skyhost writes; none is no error.
    async fn delete_records(&self, zone: &str, name: &str) -> Result<(), CloudError>;
}
