//! The scheduled anti-entropy sweep: the repair of `skyhost verify --repair`, run by a
//! schedule for the sites changed since the last sweep (hourly) and for every site (daily).
//! It logs and counts what it repaired; `SweepRepairStreak` counts the sweeps in a row
//! that had to repair something, and an alarm fires at two: something keeps losing copies.

use crate::repair::{RegionGap, RepairError};
use crate::Copier;
use serde::{Deserialize, Serialize};
use skyhost_meta::metrics::{Metric, Unit};
use skyhost_meta::Site;
use std::collections::BTreeMap;

/// Where the sweep keeps its state, in the primary bucket (outside `sites/`, so no copy
/// is triggered and no site can name it).
pub const STATE_KEY: &str = "_skyhost/sweep.json";

/// Which sites a sweep checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The sites whose record changed since the last sweep started.
    Changed,
    /// Every site.
    Full,
}

/// What the sweep remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepState {
    /// Unix seconds at which the last sweep started.
    #[serde(default)]
    pub last_started: Option<i64>,
    /// Sweeps in a row, up to the last, that repaired something.
    #[serde(default)]
    pub streak: u32,
}

/// The scope a scheduled payload asks for: `{"sweep": "changed"}` or `{"sweep": "full"}`
/// (the schedules' input). `None`: not a sweep.
pub fn scope_of(payload: &serde_json::Value) -> Option<Result<Scope, String>> {
    let v = payload.get("sweep")?;
    Some(
        serde_json::from_value(v.clone())
            .map_err(|_| format!("sweep must be \"changed\" or \"full\", got {v}")),
    )
}

/// Slack for the clock of whoever wrote a site record (the CLI's machine) running behind
/// the sweep's: a site changed shortly before the last sweep started is checked again.
pub const CLOCK_SLACK_SECS: i64 = 600;

/// Whether a sweep of `scope` checks `site`, the last sweep having started at
/// `last_started`. A site without a live deployment has nothing to check.
pub fn due(site: &Site, scope: Scope, last_started: Option<i64>) -> bool {
    site.active.is_some()
        && match (scope, last_started) {
            (Scope::Full, _) | (Scope::Changed, None) => true,
            (Scope::Changed, Some(t)) => site.updated >= t.saturating_sub(CLOCK_SLACK_SECS),
        }
}

/// The streak after a sweep that repaired `repaired` keys.
pub fn next_streak(previous: u32, repaired: usize) -> u32 {
    if repaired > 0 {
        previous.saturating_add(1)
    } else {
        0
    }
}

/// What a sweep found and did.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// The scope.
    pub scope: Scope,
    /// Sites checked.
    pub sites: usize,
    /// Regions that lacked keys, per site.
    pub gaps: Vec<RegionGap>,
    /// Keys copied.
    pub repaired: usize,
    /// Keys still missing (in the primary itself, or copies that failed).
    pub unrepaired: usize,
    /// Sites that could not be checked, and why.
    pub errors: Vec<String>,
    /// Sweeps in a row that repaired something, this one included.
    pub streak: u32,
}

impl Copier {
    /// Runs a sweep of `scope` at `now` (unix seconds) over the sites of the copier's
    /// table, repairing what a region lacks, and records its state for the next one.
    pub async fn sweep(&self, scope: Scope, now: i64) -> Result<SweepReport, RepairError> {
        let meta = self.meta.as_ref().ok_or_else(|| {
            RepairError::Manifest("the sweep needs the sites table: set SKYHOST_TABLE".into())
        })?;
        let state = self.sweep_state().await?;
        let sites = meta.sites().await?;
        let mut report = SweepReport {
            scope,
            sites: 0,
            gaps: Vec::new(),
            repaired: 0,
            unrepaired: 0,
            errors: Vec::new(),
            streak: 0,
        };
        for site in sites.iter().filter(|s| due(s, scope, state.last_started)) {
            report.sites += 1;
            match self.check_site(site, true).await {
                Ok(gaps) => report.gaps.extend(gaps),
                // One site's broken manifest must not stop the others' repair.
                Err(e) => report.errors.push(format!("site {}: {e}", site.id)),
            }
        }
        report.repaired = report.gaps.iter().map(|g| g.repaired).sum();
        report.unrepaired = report.gaps.iter().map(RegionGap::unrepaired).sum();
        report.streak = next_streak(state.streak, report.repaired);
        let next = SweepState {
            last_started: Some(now),
            streak: report.streak,
        };
        let body = serde_json::to_vec(&next).map_err(|e| RepairError::Manifest(e.to_string()))?;
        self.source()
            .put_bytes(STATE_KEY, body.into(), None)
            .await?;
        self.emit_sweep_metrics(&report);
        for g in &report.gaps {
            tracing::warn!(site = %g.site, region = %g.region, missing = g.missing.len(), repaired = g.repaired, errors = ?g.errors, "sweep found a gap");
        }
        tracing::info!(
            ?scope,
            sites = report.sites,
            repaired = report.repaired,
            unrepaired = report.unrepaired,
            streak = report.streak,
            "sweep done"
        );
        Ok(report)
    }

    async fn sweep_state(&self) -> Result<SweepState, RepairError> {
        let Some(body) = self.source().get(STATE_KEY, None).await? else {
            return Ok(SweepState::default());
        };
        let body = body.collect().await?;
        // A state that does not parse is started over: the next sweep checks every site.
        Ok(serde_json::from_slice(&body).unwrap_or_default())
    }

    fn emit_sweep_metrics(&self, r: &SweepReport) {
        let scope = match r.scope {
            Scope::Changed => "changed",
            Scope::Full => "full",
        };
        self.metrics().emit(
            &[("Sweep", "anti-entropy")],
            &[
                Metric {
                    name: "SweepSites",
                    unit: Unit::Count,
                    value: r.sites as f64,
                },
                Metric {
                    name: "SweepRepaired",
                    unit: Unit::Count,
                    value: r.repaired as f64,
                },
                Metric {
                    name: "SweepUnrepaired",
                    unit: Unit::Count,
                    value: (r.unrepaired + r.errors.len()) as f64,
                },
                Metric {
                    name: "SweepRepairStreak",
                    unit: Unit::Count,
                    value: f64::from(r.streak),
                },
            ],
        );
        let mut per: BTreeMap<&str, usize> = BTreeMap::new();
        for g in &r.gaps {
            *per.entry(g.region.as_str()).or_default() += g.repaired;
        }
        for (region, repaired) in per {
            self.metrics().emit(
                &[("Region", region), ("Scope", scope)],
                &[Metric {
                    name: "SweepRepaired",
                    unit: Unit::Count,
                    value: repaired as f64,
                }],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skyhost_meta::{DeploymentId, SiteId};

    fn site(updated: i64, live: bool) -> Site {
        let mut s = Site::new(SiteId::parse("blog").unwrap(), updated);
        if live {
            s.active = Some(DeploymentId::parse("20260103T101112Z-4e5f6a7b").unwrap());
        }
        s
    }

    #[test]
    fn which_sites_a_sweep_checks() {
        // (site updated, live?, scope, last sweep started, checked?)
        let t = 10_000;
        let slack = CLOCK_SLACK_SECS;
        let cases = [
            (t + 1, true, Scope::Changed, Some(t), true),
            (t, true, Scope::Changed, Some(t), true),
            (t - slack, true, Scope::Changed, Some(t), true),
            (t - slack - 1, true, Scope::Changed, Some(t), false),
            (t - slack - 1, true, Scope::Changed, None, true),
            (t - slack - 1, true, Scope::Full, Some(t), true),
            (t, false, Scope::Full, None, false),
        ];
        for (i, (updated, live, scope, last, want)) in cases.into_iter().enumerate() {
            assert_eq!(due(&site(updated, live), scope, last), want, "case {i}");
        }
    }

    #[test]
    fn the_streak_counts_sweeps_in_a_row_that_repaired() {
        let cases = [
            (0, 0, 0),
            (0, 3, 1),
            (1, 1, 2),
            (2, 0, 0),
            (u32::MAX, 1, u32::MAX),
        ];
        for (prev, repaired, want) in cases {
            assert_eq!(next_streak(prev, repaired), want, "{prev} {repaired}");
        }
    }

    #[test]
    fn scheduled_payloads() {
        let cases = [
            (json!({"sweep": "changed"}), Some(Ok(Scope::Changed))),
            (json!({"sweep": "full"}), Some(Ok(Scope::Full))),
            (json!({"Records": []}), None),
            (json!({"detail-type": "Scheduled Event"}), None),
        ];
        for (payload, want) in cases {
            assert_eq!(scope_of(&payload), want, "{payload}");
        }
        assert!(matches!(scope_of(&json!({"sweep": "half"})), Some(Err(_))));
    }
}
