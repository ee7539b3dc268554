//! The state machine of a custom domain, pure: from what the cloud shows now
//! ([`Observed`]) to the domain's [`Phase`] and the steps that move it on ([`plan`]), or
//! take it down ([`plan_removal`]). Every step is idempotent, so running the plan of a
//! fresh observation again after an interruption is always safe.

use serde::{Deserialize, Serialize};

/// Where custom domains are served from, as the platform is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// The CloudFront distribution's setup: a certificate in us-east-1 and a distribution
    /// of the domain's own, copied from the platform's.
    CloudFront,
    /// No CloudFront: a certificate and an API Gateway custom domain in every region.
    Regional,
}

/// The region CloudFront takes certificates from.
pub const CLOUDFRONT_CERT_REGION: &str = "us-east-1";

impl Platform {
    /// The regions a domain needs a certificate in, given every region of the platform.
    pub fn certificate_regions(self, regions: &[String]) -> Vec<String> {
        match self {
            Platform::CloudFront => vec![CLOUDFRONT_CERT_REGION.to_string()],
            Platform::Regional => regions.to_vec(),
        }
    }

    /// What a domain is attached to: the distribution, or each region's API.
    pub fn targets(self, regions: &[String]) -> Vec<Target> {
        match self {
            Platform::CloudFront => vec![Target::Distribution],
            Platform::Regional => regions.iter().cloned().map(Target::Region).collect(),
        }
    }

    /// The region of the certificate that `target` uses.
    pub fn certificate_region(self, target: &Target) -> &str {
        match target {
            Target::Distribution => CLOUDFRONT_CERT_REGION,
            Target::Region(r) => r,
        }
    }
}

/// Something a domain is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    /// The domain's CloudFront distribution.
    Distribution,
    /// The API Gateway custom domain of a region.
    Region(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Distribution => f.write_str("cloudfront"),
            Target::Region(r) => f.write_str(r),
        }
    }
}

/// Where a domain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Waiting for the owner's validation records: a certificate is requested, not issued.
    PendingValidation,
    /// Every certificate is issued; the domain is not attached everywhere yet.
    Issued,
    /// Attached everywhere; waiting for the attachments to deploy or for DNS records.
    Attached,
    /// Served over HTTPS everywhere.
    Serving,
    /// Something failed that a re-run does not fix (e.g. validation timed out).
    Failing,
    /// Being taken down.
    Removing,
}

impl Phase {
    /// The words `skyhost domains status` prints.
    pub fn label(self) -> &'static str {
        match self {
            Phase::PendingValidation => "pending validation",
            Phase::Issued => "issued",
            Phase::Attached => "attached",
            Phase::Serving => "serving",
            Phase::Failing => "failing",
            Phase::Removing => "removing",
        }
    }
}

/// A certificate as ACM shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertState {
    /// Never requested (or deleted).
    Missing,
    /// Requested, waiting for DNS validation.
    Pending,
    /// Issued.
    Issued,
    /// Failed, timed out, revoked or expired: the reason.
    Failed(String),
}

/// An attachment as the cloud shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachState {
    /// Not there.
    Missing,
    /// Created, still deploying (a distribution being deployed, a domain pending).
    InProgress,
    /// Serving.
    Ready,
    /// Switched off (a distribution disabled on its way out).
    Disabled,
}

/// What the cloud shows for one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Each needed certificate, by region.
    pub certificates: Vec<(String, CertState)>,
    /// Each attachment.
    pub attachments: Vec<(Target, AttachState)>,
    /// Whether Route 53 hosts the domain's zone (skyhost then writes its records).
    pub zone: bool,
    /// Whether every record skyhost writes is in place (`false` without a zone).
    pub records: bool,
}

/// One step towards serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Request a certificate in this region (DNS validation).
    RequestCertificate(String),
    /// Attach the domain to a target with its certificate.
    Attach(Target),
    /// Write the domain's alias (latency) records in its Route 53 zone.
    WriteRecords,
}

/// The phase and the steps to take now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Where the domain stands.
    pub phase: Phase,
    /// What to do now (nothing: wait, or done).
    pub steps: Vec<Step>,
    /// Why it is failing.
    pub reason: Option<String>,
}

/// The phase of a domain and the steps that move it on.
pub fn plan(o: &Observed) -> Plan {
    let failed: Vec<String> = o
        .certificates
        .iter()
        .filter_map(|(region, c)| match c {
            CertState::Failed(why) => Some(format!("certificate in {region}: {why}")),
            _ => None,
        })
        .collect();
    if !failed.is_empty() {
        return Plan {
            phase: Phase::Failing,
            steps: Vec::new(),
            reason: Some(failed.join("; ")),
        };
    }
    let requests: Vec<Step> = o
        .certificates
        .iter()
        .filter(|(_, c)| *c == CertState::Missing)
        .map(|(region, _)| Step::RequestCertificate(region.clone()))
        .collect();
    let all_issued = o.certificates.iter().all(|(_, c)| *c == CertState::Issued);
    if !all_issued {
        return Plan {
            phase: Phase::PendingValidation,
            steps: requests,
            reason: None,
        };
    }
    // A disabled attachment is one on its way out: attaching again re-enables it.
    let attach: Vec<Step> = o
        .attachments
        .iter()
        .filter(|(_, a)| matches!(a, AttachState::Missing | AttachState::Disabled))
        .map(|(t, _)| Step::Attach(t.clone()))
        .collect();
    if !attach.is_empty() {
        return Plan {
            phase: Phase::Issued,
            steps: attach,
            reason: None,
        };
    }
    let steps = if o.zone && !o.records {
        vec![Step::WriteRecords]
    } else {
        Vec::new()
    };
    let ready = o.attachments.iter().all(|(_, a)| *a == AttachState::Ready);
    let phase = if ready && steps.is_empty() {
        Phase::Serving
    } else {
        Phase::Attached
    };
    Plan {
        phase,
        steps,
        reason: None,
    }
}

/// One step of taking a domain down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemovalStep {
    /// Delete the records skyhost wrote in the domain's zone.
    DeleteRecords,
    /// Detach from a target (a distribution is disabled first, deleted once disabled).
    Detach(Target),
    /// Delete the certificate of a region (ACM refuses while something uses it).
    DeleteCertificate(String),
}

/// The steps that take a domain down, in order; empty when nothing is left.
pub fn plan_removal(o: &Observed) -> Vec<RemovalStep> {
    let mut steps = Vec::new();
    if o.zone && o.records {
        steps.push(RemovalStep::DeleteRecords);
    }
    let attached: Vec<RemovalStep> = o
        .attachments
        .iter()
        .filter(|(_, a)| *a != AttachState::Missing)
        .map(|(t, _)| RemovalStep::Detach(t.clone()))
        .collect();
    let detached = attached.is_empty();
    steps.extend(attached);
    // Certificates go last: ACM refuses to delete one still in use.
    if detached {
        steps.extend(
            o.certificates
                .iter()
                .filter(|(_, c)| *c != CertState::Missing)
                .map(|(region, _)| RemovalStep::DeleteCertificate(region.clone())),
        );
    }
    steps
}
