//! What the dashboard shows, and the bookkeeping that turns polls into it: each region's
//! health, each site's live deployment and what every region serves, the last deploys with
//! the time each region took to serve them, and the recent counters as series. Pure: the
//! sources ([`super::sources`]) hand in what they read, with the time they read it.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// How long series are kept.
pub const WINDOW_SECS: i64 = 15 * 60;
/// How many deploys are listed.
pub const DEPLOYS_SHOWN: usize = 6;

/// A region's health as the dashboard judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Its health check answers 200.
    Healthy,
    /// Drained by its operator (`skyhost region maintenance`, `skyhost local fail`).
    Maintenance,
    /// Its health check answers 503: its table replica or bucket fails.
    Impaired,
    /// It does not answer at all (an outage).
    Outage,
    /// No endpoint to ask.
    Unknown,
}

impl Health {
    /// The word shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Maintenance => "maintenance",
            Health::Impaired => "impaired",
            Health::Outage => "outage",
            Health::Unknown => "unknown",
        }
    }

    /// Whether the region takes visitors.
    pub fn takes_visitors(self) -> bool {
        matches!(self, Health::Healthy | Health::Unknown)
    }

    /// The health a probe of `/_skyhost/health` tells: its status code and the body's
    /// `status` word, or `None` when it did not answer.
    pub fn from_probe(answer: Option<(u16, Option<&str>)>) -> Health {
        match answer {
            None => Health::Outage,
            Some((200..=299, _)) => Health::Healthy,
            Some((_, Some("maintenance"))) => Health::Maintenance,
            Some(_) => Health::Impaired,
        }
    }
}

/// One region in the view.
#[derive(Debug, Clone, Serialize)]
pub struct RegionState {
    /// The region.
    pub region: String,
    /// Its health.
    pub health: Health,
    /// Where its visitors go while it does not take them.
    pub visitors_go: Option<String>,
    /// Its recent counters.
    pub series: Vec<Point>,
}

/// What one region serves of a site.
#[derive(Debug, Clone, Serialize)]
pub struct Served {
    /// The region.
    pub region: String,
    /// The deployment it answers with.
    pub deployment: Option<String>,
    /// The revision of the site record it answers from.
    pub revision: Option<u64>,
    /// How many revisions it is behind the table (`None`: it did not answer).
    pub behind: Option<u64>,
}

/// A site in the view.
#[derive(Debug, Clone, Serialize)]
pub struct SiteState {
    /// The site.
    pub site: String,
    /// The live deployment, as the table says.
    pub live: Option<String>,
    /// The table's revision.
    pub revision: u64,
    /// Per region.
    pub regions: Vec<Served>,
}

/// A deploy (a change of a site's live deployment) and when each region served it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Deploy {
    /// The site.
    pub site: String,
    /// The deployment made live.
    pub deployment: String,
    /// The revision that made it live.
    pub revision: u64,
    /// Unix milliseconds it was seen live in the table.
    pub at_ms: i64,
    /// Per region: milliseconds from `at_ms` until it served the revision (`None`: not
    /// yet).
    pub reached_ms: BTreeMap<String, Option<i64>>,
    /// Whether the deploy was seen happen; one already live when the dashboard started
    /// has no times.
    pub watched: bool,
}

/// One moment of a region's counters.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Point {
    /// Unix seconds.
    pub t: i64,
    /// Site requests per second.
    pub rps: f64,
    /// Share of answers made without reading a bucket (`None`: no answers).
    pub hit_ratio: Option<f64>,
    /// Fail-safe answers (read from the primary's bucket) per second.
    pub fallback: f64,
    /// 5xx answers per second.
    pub errors: f64,
}

/// Cumulative counters of a region at one moment (local mode's Prometheus counters).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Site requests.
    pub requests: f64,
    /// Hit answers.
    pub hit: f64,
    /// Miss answers.
    pub miss: f64,
    /// Fallback answers.
    pub fallback: f64,
    /// 5xx answers.
    pub errors: f64,
}

/// The point between two readings of cumulative counters `dt_ms` apart; `None` when the
/// counters went back (a restart) or no time passed. Pure.
pub fn rate(before: &Totals, after: &Totals, t: i64, dt_ms: i64) -> Option<Point> {
    if dt_ms <= 0 || after.requests < before.requests {
        return None;
    }
    let secs = dt_ms as f64 / 1000.0;
    let d = |a: f64, b: f64| (a - b).max(0.0);
    let (hit, miss, fallback) = (
        d(after.hit, before.hit),
        d(after.miss, before.miss),
        d(after.fallback, before.fallback),
    );
    let answers = hit + miss + fallback;
    Some(Point {
        t,
        rps: d(after.requests, before.requests) / secs,
        hit_ratio: (answers > 0.0).then(|| hit / answers),
        fallback: fallback / secs,
        errors: d(after.errors, before.errors) / secs,
    })
}

/// What one poll read of a site: the table's record and what each region answered.
#[derive(Debug, Clone)]
pub struct SiteReading {
    /// The site.
    pub site: String,
    /// The live deployment in the table.
    pub live: Option<String>,
    /// The table's revision.
    pub revision: u64,
    /// Per region, what it answered with.
    pub regions: Vec<Answered>,
}

/// What a region answered for a site (both `None` when it did not answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// The region.
    pub region: String,
    /// `X-Skyhost-Deployment`.
    pub deployment: Option<String>,
    /// `X-Skyhost-Revision`.
    pub revision: Option<u64>,
}

/// The dashboard's memory across polls.
#[derive(Debug, Default)]
pub struct Tracker {
    deploys: VecDeque<Deploy>,
    /// The live deployment last seen per site.
    live: BTreeMap<String, (Option<String>, u64)>,
    series: BTreeMap<String, VecDeque<Point>>,
    /// The last cumulative reading per region, with its time in ms.
    last: BTreeMap<String, (i64, Totals)>,
    polls: u64,
}

impl Tracker {
    /// Nothing seen yet.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Takes in the sites read at `now_ms`: a new live deployment starts a deploy, and a
    /// region answering with its revision (or a later one) marks when it got there.
    pub fn sites(&mut self, now_ms: i64, readings: &[SiteReading]) {
        let first = self.polls == 0;
        self.polls += 1;
        for s in readings {
            let seen = self.live.get(&s.site).cloned();
            let changed = seen.as_ref().map(|(d, _)| d) != Some(&s.live);
            if let (true, Some(live)) = (changed, &s.live) {
                self.deploys.push_front(Deploy {
                    site: s.site.clone(),
                    deployment: live.clone(),
                    revision: s.revision,
                    at_ms: now_ms,
                    reached_ms: s.regions.iter().map(|a| (a.region.clone(), None)).collect(),
                    watched: !first,
                });
                self.deploys.truncate(DEPLOYS_SHOWN * 4);
            }
            self.live
                .insert(s.site.clone(), (s.live.clone(), s.revision));
            for d in self.deploys.iter_mut().filter(|d| d.site == s.site) {
                for a in &s.regions {
                    let got = a.revision;
                    let slot = d.reached_ms.entry(a.region.clone()).or_insert(None);
                    if slot.is_none() && got.is_some_and(|r| r >= d.revision) && d.watched {
                        *slot = Some(now_ms - d.at_ms);
                    }
                }
            }
        }
    }

    /// Takes in a region's cumulative counters read at `now_ms`.
    pub fn totals(&mut self, region: &str, now_ms: i64, totals: Totals) {
        if let Some((at, before)) = self.last.get(region) {
            if let Some(p) = rate(before, &totals, now_ms / 1000, now_ms - at) {
                self.point(region, p);
            }
        }
        self.last.insert(region.to_owned(), (now_ms, totals));
    }

    /// Replaces a region's series (CloudWatch hands whole windows).
    pub fn replace_series(&mut self, region: &str, points: Vec<Point>) {
        self.series.insert(region.to_owned(), points.into());
    }

    fn point(&mut self, region: &str, p: Point) {
        let s = self.series.entry(region.to_owned()).or_default();
        s.push_back(p);
        while s.front().is_some_and(|f| f.t < p.t - WINDOW_SECS) {
            s.pop_front();
        }
    }

    /// A region's series, oldest first.
    pub fn series(&self, region: &str) -> Vec<Point> {
        self.series
            .get(region)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The last deploys, newest first; only those seen happen, unless none was.
    pub fn deploys(&self) -> Vec<Deploy> {
        let watched: Vec<Deploy> = self
            .deploys
            .iter()
            .filter(|d| d.watched)
            .take(DEPLOYS_SHOWN)
            .cloned()
            .collect();
        if watched.is_empty() {
            return self.deploys.iter().take(DEPLOYS_SHOWN).cloned().collect();
        }
        watched
    }
}

/// The whole view, as the page and `/state.json` show it.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// Where the figures come from (`local mode (DIR)`, `AWS`).
    pub source: String,
    /// Unix seconds of the poll.
    pub at: i64,
    /// The primary region.
    pub primary: String,
    /// Every region, primary first.
    pub regions: Vec<RegionState>,
    /// Every site.
    pub sites: Vec<SiteState>,
    /// The last deploys, newest first.
    pub deploys: Vec<Deploy>,
    /// What could not be read this time (shown, never fatal).
    pub problems: Vec<String>,
}

/// The per-site view of `reading`. Pure.
pub fn site_state(reading: &SiteReading) -> SiteState {
    SiteState {
        site: reading.site.clone(),
        live: reading.live.clone(),
        revision: reading.revision,
        regions: reading
            .regions
            .iter()
            .map(|a| Served {
                region: a.region.clone(),
                deployment: a.deployment.clone(),
                revision: a.revision,
                behind: a.revision.map(|r| reading.revision.saturating_sub(r)),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_from_probes() {
        let cases = [
            (None, Health::Outage),
            (Some((200, Some("ok"))), Health::Healthy),
            (Some((200, Some("degraded"))), Health::Healthy),
            (Some((503, Some("maintenance"))), Health::Maintenance),
            (Some((503, Some("impaired"))), Health::Impaired),
            (Some((502, None)), Health::Impaired),
        ];
        for (probe, want) in cases {
            assert_eq!(Health::from_probe(probe), want, "{probe:?}");
        }
        assert!(Health::Healthy.takes_visitors());
        assert!(!Health::Maintenance.takes_visitors());
        assert!(!Health::Outage.takes_visitors());
    }

    #[test]
    fn rates_between_readings() {
        let t = |requests, hit, miss, fallback, errors| Totals {
            requests,
            hit,
            miss,
            fallback,
            errors,
        };
        let a = t(100.0, 50.0, 40.0, 0.0, 0.0);
        let b = t(300.0, 200.0, 60.0, 20.0, 4.0);
        let p = rate(&a, &b, 7, 2000).unwrap();
        assert_eq!(p.t, 7);
        assert_eq!(p.rps, 100.0);
        assert_eq!(p.hit_ratio, Some(150.0 / 190.0));
        assert_eq!(p.fallback, 10.0);
        assert_eq!(p.errors, 2.0);
        // No answers: no ratio. Counters that went back (a restart) or no time: no point.
        assert_eq!(rate(&a, &a, 8, 1000).unwrap().hit_ratio, None);
        assert!(rate(&b, &a, 9, 1000).is_none());
        assert!(rate(&a, &b, 9, 0).is_none());
    }

    fn reading(live: &str, revision: u64, regions: &[(&str, Option<u64>)]) -> SiteReading {
        SiteReading {
            site: "demo".into(),
            live: Some(live.into()),
            revision,
            regions: regions
                .iter()
                .map(|(r, rev)| Answered {
                    region: r.to_string(),
                    deployment: rev.map(|_| live.to_owned()),
                    revision: *rev,
                })
                .collect(),
        }
    }

    #[test]
    fn deploys_are_timed_per_region_from_when_they_went_live() {
        let mut t = Tracker::new();
        t.sites(
            1_000,
            &[reading("d1", 3, &[("a", Some(3)), ("b", Some(3))])],
        );
        // Live before the dashboard started: listed without times.
        assert_eq!(t.deploys().len(), 1);
        assert!(!t.deploys()[0].watched);
        t.sites(
            2_000,
            &[reading("d2", 4, &[("a", Some(4)), ("b", Some(3))])],
        );
        t.sites(2_500, &[reading("d2", 4, &[("a", Some(4)), ("b", None)])]);
        t.sites(
            3_200,
            &[reading("d2", 4, &[("a", Some(4)), ("b", Some(5))])],
        );
        let d = t.deploys();
        assert_eq!(d.len(), 1, "only watched deploys once there are some");
        assert_eq!(d[0].deployment, "d2");
        assert_eq!(d[0].reached_ms["a"], Some(0));
        assert_eq!(d[0].reached_ms["b"], Some(1_200));
        // A revision that changes no deployment (a domain added) is no deploy.
        t.sites(
            4_000,
            &[reading("d2", 6, &[("a", Some(6)), ("b", Some(6))])],
        );
        assert_eq!(t.deploys().len(), 1);
    }

    #[test]
    fn series_keep_the_window() {
        let mut t = Tracker::new();
        let tot = |n: f64| Totals {
            requests: n,
            hit: n,
            ..Totals::default()
        };
        t.totals("a", 0, tot(0.0));
        t.totals("a", 1_000, tot(10.0));
        t.totals("a", 2_000, tot(30.0));
        let s = t.series("a");
        assert_eq!(s.iter().map(|p| p.rps).collect::<Vec<_>>(), [10.0, 20.0]);
        t.totals("a", (WINDOW_SECS + 3) * 1000, tot(40.0));
        assert_eq!(t.series("a").len(), 1);
        assert!(t.series("b").is_empty());
    }

    #[test]
    fn site_states_say_how_far_behind() {
        let s = site_state(&reading(
            "d",
            5,
            &[("a", Some(5)), ("b", Some(3)), ("c", None)],
        ));
        let behind: Vec<Option<u64>> = s.regions.iter().map(|r| r.behind).collect();
        assert_eq!(behind, [Some(0), Some(2), None]);
    }
}
