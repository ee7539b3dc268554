//! The activation check: when a deployment goes live (the sites table's stream says a
//! site's active deployment changed), every region must hold every key it added over the
//! deployment live before it; what a region lacks is copied from the primary. This closes
//! the gap a lost S3 notification, a dead-lettered copy or a writer killed mid-upload
//! leaves, with no visitor request and no `skyhost verify` needed.

use crate::repair::{added_keys, load_manifest, RegionGap, RepairError};
use crate::Copier;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use serde::Serialize;
use skyhost_meta::metrics::{Metric, Unit};
use skyhost_meta::store::item::{self, Item};
use skyhost_meta::{keys, DeploymentId, SiteId};
use std::collections::BTreeMap;

/// A deployment that went live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activation {
    /// The site.
    pub site: SiteId,
    /// The deployment now live.
    pub deployment: DeploymentId,
    /// The one live before it, if any.
    pub previous: Option<DeploymentId>,
}

fn site_of(image: &Item) -> Option<skyhost_meta::Site> {
    if item::attr_str(image, "kind") != Some("site") {
        return None;
    }
    item::site_from_item(image.clone()).ok()
}

/// The activations among stream records: site records whose active deployment is set and
/// differs from the one before. Other records (domains, deployments, a site's domains
/// changing) are not activations.
pub fn activations(records: &[EventRecord]) -> Vec<Activation> {
    let mut out = Vec::new();
    for r in records {
        let Some(new) = site_of(&r.change.new_image) else {
            continue;
        };
        let Some(deployment) = new.active else {
            continue;
        };
        let previous = site_of(&r.change.old_image).and_then(|s| s.active);
        if previous.as_ref() != Some(&deployment) {
            out.push(Activation {
                site: new.id,
                deployment,
                previous,
            });
        }
    }
    out
}

/// What the checks of one batch found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ActivationReport {
    /// The activations checked.
    pub checked: Vec<Activation>,
    /// Regions that lacked keys, and what was copied.
    pub gaps: Vec<RegionGap>,
}

impl ActivationReport {
    /// Keys still missing somewhere.
    pub fn unrepaired(&self) -> usize {
        self.gaps.iter().map(RegionGap::unrepaired).sum()
    }
}

/// Why a batch of activations was not fully checked; the stream retries it.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// A check could not run.
    #[error("activation check of {site} {deployment}: {error}")]
    Check {
        /// The site.
        site: SiteId,
        /// The deployment.
        deployment: DeploymentId,
        /// What failed.
        error: RepairError,
    },
    /// Some keys could not be copied.
    #[error("{} keys still missing after the activation check, first: {}", .report.unrepaired(), .report.gaps.iter().flat_map(|g| g.errors.first()).next().map(String::as_str).unwrap_or("-"))]
    Unrepaired {
        /// What was done.
        report: ActivationReport,
    },
}

impl Copier {
    /// Checks one activation: the keys it added, in every region, repaired with `repair`.
    pub async fn check_activation(
        &self,
        a: &Activation,
        repair: bool,
    ) -> Result<Vec<RegionGap>, RepairError> {
        let current = load_manifest(self.source(), &a.site, &a.deployment)
            .await?
            .ok_or_else(|| {
                RepairError::Manifest(format!(
                    "the primary bucket lacks {}",
                    keys::manifest(&a.site, &a.deployment)
                ))
            })?;
        // Without the previous manifest (collected, or never written) every key is checked.
        let previous = match &a.previous {
            Some(p) => load_manifest(self.source(), &a.site, p).await?,
            None => None,
        };
        let wanted = added_keys(&current, previous.as_ref());
        self.check_keys(&a.site, &wanted, repair).await
    }

    /// Handles a batch of the sites table's stream (the Lambda's second trigger, and local
    /// mode's change feed): every activation in it checked and repaired. Fails, so the
    /// batch is retried, while a key could not be copied.
    pub async fn handle_activations(
        &self,
        event: Event,
    ) -> Result<ActivationReport, ActivationError> {
        let mut report = ActivationReport::default();
        for a in activations(&event.records) {
            let gaps =
                self.check_activation(&a, true)
                    .await
                    .map_err(|error| ActivationError::Check {
                        site: a.site.clone(),
                        deployment: a.deployment.clone(),
                        error,
                    })?;
            tracing::info!(site = %a.site, deployment = %a.deployment, regions_lacking = gaps.len(), "activation checked");
            report.gaps.extend(gaps);
            report.checked.push(a);
        }
        self.emit_activation_metrics(&report);
        if report.unrepaired() > 0 {
            return Err(ActivationError::Unrepaired { report });
        }
        Ok(report)
    }

    fn emit_activation_metrics(&self, report: &ActivationReport) {
        if report.checked.is_empty() {
            return;
        }
        // (missing, repaired) per region; every replica reports, zero included, so the
        // region's lag reads as zero once it is in.
        let mut per: BTreeMap<&str, (usize, usize)> =
            self.replicas().map(|(r, _)| (r, (0, 0))).collect();
        for g in &report.gaps {
            let e = per.entry(g.region.as_str()).or_default();
            e.0 += g.missing.len();
            e.1 += g.repaired;
        }
        for (region, (missing, repaired)) in per {
            self.metrics().emit(
                &[("Region", region)],
                &[
                    Metric {
                        name: "ActivationMissing",
                        unit: Unit::Count,
                        value: missing as f64,
                    },
                    Metric {
                        name: "ActivationRepaired",
                        unit: Unit::Count,
                        value: repaired as f64,
                    },
                ],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const D1: &str = "20260103T101112Z-4e5f6a7b";
    const D2: &str = "20260104T101112Z-4e5f6a7c";

    fn site(rev: u64, active: Option<&str>, domains: &[&str]) -> serde_json::Value {
        let mut v = json!({
            "pk": {"S": "SITE#blog"}, "sk": {"S": "SITE"}, "kind": {"S": "site"},
            "site": {"S": "blog"},
            "domains": {"L": domains.iter().map(|d| json!({"S": d})).collect::<Vec<_>>()},
            "revision": {"N": rev.to_string()}, "suspended": {"BOOL": false},
            "updated": {"N": "1767435072"}
        });
        if let Some(a) = active {
            v["active"] = json!({"S": a});
        }
        v
    }

    fn record(new: Option<serde_json::Value>, old: Option<serde_json::Value>) -> EventRecord {
        let name = match (&new, &old) {
            (Some(_), None) => "INSERT",
            (Some(_), Some(_)) => "MODIFY",
            _ => "REMOVE",
        };
        skyhost_testkit::site_stream_record(name, new, old)
    }

    #[test]
    fn which_records_are_activations() {
        let dep = |s: &str| DeploymentId::parse(s).unwrap();
        let blog = SiteId::parse("blog").unwrap();
        let act = |d: &str, p: Option<&str>| Activation {
            site: blog.clone(),
            deployment: dep(d),
            previous: p.map(dep),
        };
        let domain = json!({"pk": {"S": "DOMAIN#a.example"}, "sk": {"S": "DOMAIN"}, "kind": {"S": "domain"}, "site": {"S": "blog"}});
        // (record, activation it means)
        let cases = [
            (
                record(Some(site(1, Some(D1), &[])), None),
                Some(act(D1, None)),
            ),
            (
                record(Some(site(2, Some(D2), &[])), Some(site(1, Some(D1), &[]))),
                Some(act(D2, Some(D1))),
            ),
            // Rollback.
            (
                record(Some(site(3, Some(D1), &[])), Some(site(2, Some(D2), &[]))),
                Some(act(D1, Some(D2))),
            ),
            // A domain added: the same deployment stays live.
            (
                record(
                    Some(site(4, Some(D1), &["a.example"])),
                    Some(site(3, Some(D1), &[])),
                ),
                None,
            ),
            (record(Some(site(1, None, &["a.example"])), None), None),
            (record(None, Some(site(4, Some(D1), &[]))), None),
            (record(Some(domain), None), None),
        ];
        for (i, (r, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                activations(&[r]),
                want.into_iter().collect::<Vec<_>>(),
                "case {i}"
            );
        }
    }
}
