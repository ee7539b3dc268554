//! `skyhost gc`: deletes the manifests and blobs that no kept deployment references, in
//! every region's bucket, and the records of the deployments it lets go.
//!
//! Kept: the live deployment, the newest `--keep` ones, every one younger than
//! `--older-than`, and everything younger than `--grace`. A deploy uploads its blobs,
//! then writes its manifest, then activates: an in-flight deploy's blobs are either
//! younger than the grace period or referenced by a manifest younger than it, so gc
//! never takes them. Just before deleting blobs, gc reads the manifests again and keeps
//! the blobs of any that appeared meanwhile. Sites that were deleted keep nothing but
//! what is younger than the grace period.

use crate::backend::Backend;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use skyhost_meta::blob::ObjectInfo;
use skyhost_meta::keys::{self, KeyKind};
use skyhost_meta::{Deployment, DeploymentId, Manifest, SiteId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What to keep.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Deployments younger than this are kept.
    pub older_than: Duration,
    /// The newest this many deployments of each site are kept.
    pub keep: usize,
    /// Objects and deployments younger than this are kept whatever else is true.
    pub grace: Duration,
    /// Report only; delete nothing.
    pub dry_run: bool,
}

/// What one region frees.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Freed {
    /// The region.
    pub region: String,
    /// Manifests deleted (or to delete).
    pub manifests: usize,
    /// Blobs deleted (or to delete).
    pub blobs: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// What gc did, or would do with `--dry-run`.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Nothing was deleted.
    pub dry_run: bool,
    /// Deployments let go, as `site/id`.
    pub deployments: Vec<String>,
    /// Per region.
    pub regions: Vec<Freed>,
    /// Objects in all.
    pub objects: usize,
    /// Bytes in all.
    pub bytes: u64,
}

/// Parses an age: a number and a unit, `s`, `m`, `h`, `d` or `w` (`7d`, `12h`, `90s`).
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?}: add a unit: s, m, h, d or w (as in 7d)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number then a unit, as in 7d or 12h"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h, d or w")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?}: too long"))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The deployments of a site to keep. `records` newest first; `live` is the site's live
/// deployment, `None` for a deleted site, which keeps only the young ones. Pure.
pub fn kept_deployments(
    records: &[Deployment],
    live: Option<Option<&DeploymentId>>,
    now: i64,
    o: &GcOptions,
) -> BTreeSet<DeploymentId> {
    let young = |d: &Deployment| now.saturating_sub(d.created) < secs(o.grace);
    let Some(active) = live else {
        return records
            .iter()
            .filter(|d| young(d))
            .map(|d| d.id.clone())
            .collect();
    };
    let recent = |d: &Deployment| now.saturating_sub(d.created) < secs(o.older_than);
    let mut newest_first: Vec<&Deployment> = records.iter().collect();
    newest_first.sort_by(|a, b| b.id.cmp(&a.id));
    newest_first
        .iter()
        .enumerate()
        .filter(|(i, d)| *i < o.keep || recent(d) || young(d) || active == Some(&d.id))
        .map(|(_, d)| d.id.clone())
        .chain(active.cloned())
        .collect()
}

/// The objects of one site in one bucket that gc deletes: manifests of deployments not
/// kept and blobs no kept manifest references, unless younger than the grace period.
/// Pure.
pub fn doomed<'a>(
    objects: &'a [ObjectInfo],
    kept: &BTreeSet<DeploymentId>,
    referenced: &BTreeSet<String>,
    now: i64,
    grace: Duration,
) -> Vec<&'a ObjectInfo> {
    // An object whose time the store cannot tell (0) counts as young: kept.
    let young = |o: &ObjectInfo| o.modified == 0 || now.saturating_sub(o.modified) < secs(grace);
    objects
        .iter()
        .filter(|o| !young(o))
        .filter(|o| match keys::parse(&o.key) {
            Some(KeyKind::Manifest(_, id)) => !kept.contains(&id),
            Some(KeyKind::Blob(..)) => !referenced.contains(&o.key),
            // Not skyhost's: left alone.
            None => false,
        })
        .collect()
}

/// The ids of the manifests among `objects` that are kept: those of kept deployments
/// and those younger than the grace period (a deploy in flight).
fn kept_manifests(
    objects: &[ObjectInfo],
    kept: &BTreeSet<DeploymentId>,
    now: i64,
    grace: Duration,
) -> BTreeSet<DeploymentId> {
    objects
        .iter()
        .filter_map(|o| match keys::parse(&o.key) {
            Some(KeyKind::Manifest(_, id))
                if kept.contains(&id)
                    || o.modified == 0
                    || now.saturating_sub(o.modified) < secs(grace) =>
            {
                Some(id)
            }
            _ => None,
        })
        .collect()
}

/// Every object of every site, per region: `objects[region][site]`.
type Listing = Vec<BTreeMap<SiteId, Vec<ObjectInfo>>>;

async fn list_all(backend: &Backend) -> Result<Listing> {
    let mut out = Vec::new();
    for r in backend.regions() {
        let mut by_site: BTreeMap<SiteId, Vec<ObjectInfo>> = BTreeMap::new();
        let objects = r
            .bucket
            .list("sites/")
            .await
            .with_context(|| format!("listing the bucket of region {}", r.name))?;
        for o in objects {
            let site = match keys::parse(&o.key) {
                Some(KeyKind::Blob(s, ..)) | Some(KeyKind::Manifest(s, _)) => s,
                None => continue,
            };
            by_site.entry(site).or_default().push(o);
        }
        out.push(by_site);
    }
    Ok(out)
}

/// A manifest from the first bucket that has it (the primary first).
async fn read_manifest(
    backend: &Backend,
    site: &SiteId,
    id: &DeploymentId,
) -> Result<Option<Manifest>> {
    let key = keys::manifest(site, id);
    for r in backend.regions() {
        let Some(body) = r
            .bucket
            .get(&key, None)
            .await
            .with_context(|| format!("reading {key} in region {}", r.name))?
        else {
            continue;
        };
        let bytes = body.collect().await?;
        let m: Manifest =
            serde_json::from_slice(&bytes).with_context(|| format!("{key} does not parse"))?;
        return Ok(Some(m));
    }
    Ok(None)
}

/// The blob keys the manifests `ids` of `site` reference.
async fn referenced(
    backend: &Backend,
    site: &SiteId,
    ids: impl IntoIterator<Item = &DeploymentId>,
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for id in ids {
        if let Some(m) = read_manifest(backend, site, id).await? {
            out.extend(m.blob_keys());
        }
    }
    Ok(out)
}

/// One site's share of the work.
struct SitePlan {
    site: SiteId,
    records: Vec<DeploymentId>,
    /// Per region index: the objects to delete.
    objects: Vec<Vec<ObjectInfo>>,
    /// The manifests seen kept, so a second look finds the ones that appeared since.
    manifests_seen: BTreeSet<DeploymentId>,
}

/// Plans, prints what it will free (through `announce`), then deletes unless a dry run.
pub async fn gc(
    backend: &Backend,
    o: &GcOptions,
    announce: impl FnOnce(&Report),
) -> Result<Report> {
    gc_at(backend, o, skyhost_meta::now(), announce).await
}

/// [`gc`] as if the time were `now` (Unix seconds): ages of objects and deployments are
/// measured from it.
pub async fn gc_at(
    backend: &Backend,
    o: &GcOptions,
    now: i64,
    announce: impl FnOnce(&Report),
) -> Result<Report> {
    let meta = backend.meta.as_ref();
    let listing = list_all(backend).await?;
    let mut sites: BTreeSet<SiteId> = meta.sites().await?.into_iter().map(|s| s.id).collect();
    for by_site in &listing {
        sites.extend(by_site.keys().cloned());
    }
    let regions: Vec<String> = backend.regions().map(|r| r.name.clone()).collect();
    let mut plans = Vec::new();
    for site in sites {
        let live = meta.site(&site).await?;
        let records = meta.deployments(&site).await?;
        let kept = kept_deployments(&records, live.as_ref().map(|s| s.active.as_ref()), now, o);
        let empty = Vec::new();
        let per_region: Vec<&Vec<ObjectInfo>> = listing
            .iter()
            .map(|by_site| by_site.get(&site).unwrap_or(&empty))
            .collect();
        let mut manifests: BTreeSet<DeploymentId> = kept.clone();
        for objects in &per_region {
            manifests.extend(kept_manifests(objects, &kept, now, o.grace));
        }
        let refs = referenced(backend, &site, &manifests).await?;
        let objects = per_region
            .iter()
            .map(|objects| {
                doomed(objects, &manifests, &refs, now, o.grace)
                    .into_iter()
                    .cloned()
                    .collect()
            })
            .collect();
        plans.push(SitePlan {
            records: records
                .iter()
                .filter(|d| !manifests.contains(&d.id))
                .map(|d| d.id.clone())
                .collect(),
            site,
            objects,
            manifests_seen: manifests,
        });
    }
    let mut report = Report {
        dry_run: o.dry_run,
        regions: regions
            .iter()
            .map(|r| Freed {
                region: r.clone(),
                ..Freed::default()
            })
            .collect(),
        ..Report::default()
    };
    for p in &plans {
        report
            .deployments
            .extend(p.records.iter().map(|d| format!("{}/{d}", p.site)));
        for (i, objects) in p.objects.iter().enumerate() {
            for obj in objects {
                let f = &mut report.regions[i];
                match keys::parse(&obj.key) {
                    Some(KeyKind::Manifest(..)) => f.manifests += 1,
                    _ => f.blobs += 1,
                }
                f.bytes += obj.size;
                report.objects += 1;
                report.bytes += obj.size;
            }
        }
    }
    announce(&report);
    if o.dry_run {
        return Ok(report);
    }
    for p in &plans {
        delete_site_share(backend, p).await?;
    }
    Ok(report)
}

/// Deletes one site's share: records first (so nothing activates what goes), then
/// manifests, then blobs, keeping the blobs of any manifest written since the plan.
async fn delete_site_share(backend: &Backend, p: &SitePlan) -> Result<()> {
    for id in &p.records {
        backend.meta.delete_deployment(&p.site, id).await?;
    }
    let regions: Vec<_> = backend.regions().collect();
    for (i, objects) in p.objects.iter().enumerate() {
        for obj in objects {
            if matches!(keys::parse(&obj.key), Some(KeyKind::Manifest(..))) {
                regions[i].bucket.delete(&obj.key).await?;
            }
        }
    }
    // A deploy that began during this run: its new manifest may reuse a doomed blob.
    let prefix = keys::manifests_prefix(&p.site);
    let mut appeared = BTreeSet::new();
    for r in &regions {
        for o in r.bucket.list(&prefix).await? {
            if let Some(KeyKind::Manifest(_, id)) = keys::parse(&o.key) {
                if !p.manifests_seen.contains(&id) && !p.records.contains(&id) {
                    appeared.insert(id);
                }
            }
        }
    }
    let spared = referenced(backend, &p.site, &appeared).await?;
    for (i, objects) in p.objects.iter().enumerate() {
        for obj in objects {
            if matches!(keys::parse(&obj.key), Some(KeyKind::Blob(..)))
                && !spared.contains(&obj.key)
            {
                regions[i].bucket.delete(&obj.key).await?;
            }
        }
    }
    Ok(())
}

/// The report as text.
pub fn render(r: &Report) -> String {
    let mut out = format!(
        "gc {} {} objects ({} bytes) and {} deployment record{}\n",
        if r.dry_run { "would free" } else { "frees" },
        r.objects,
        r.bytes,
        r.deployments.len(),
        if r.deployments.len() == 1 { "" } else { "s" }
    );
    for f in &r.regions {
        out.push_str(&format!(
            "  {:<16} {} manifests, {} blobs, {} bytes\n",
            f.region, f.manifests, f.blobs, f.bytes
        ));
    }
    for d in r.deployments.iter().take(20) {
        out.push_str(&format!("  deployment {d}\n"));
    }
    if r.deployments.len() > 20 {
        out.push_str(&format!("  … and {} more\n", r.deployments.len() - 20));
    }
    out
}

/// Refuses settings that would let gc take an in-flight deploy's files.
pub fn check(o: &GcOptions) -> Result<()> {
    if o.grace < Duration::from_secs(60) {
        bail!(
            "--grace must be at least 1m: a deploy in flight needs that long to write its manifest"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhost_meta::{BlobHash, DeploymentState};

    fn opts(older_than_d: u64, keep: usize) -> GcOptions {
        GcOptions {
            older_than: Duration::from_secs(older_than_d * 86_400),
            keep,
            grace: Duration::from_secs(3600),
            dry_run: false,
        }
    }

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn dep(age: i64) -> Deployment {
        Deployment {
            site: SiteId::parse("s").unwrap(),
            id: DeploymentId::new(NOW - age),
            created: NOW - age,
            file_count: 1,
            bytes: 1,
            state: DeploymentState::Ready,
            message: None,
        }
    }

    #[test]
    fn ages() {
        let cases = [
            ("7d", Ok(7 * 86_400)),
            ("12h", Ok(12 * 3600)),
            ("90s", Ok(90)),
            ("30m", Ok(1800)),
            ("2w", Ok(14 * 86_400)),
            ("0s", Ok(0)),
        ];
        for (s, want) in cases {
            assert_eq!(
                parse_age(s).map(|d| d.as_secs()),
                want.map_err(|_: ()| String::new()),
                "{s}"
            );
        }
        for bad in ["7", "d", "7x", "-1d", "", "99999999999999999999w", "1.5d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }

    /// (the live deployment as `kept_deployments` takes it, options, what is kept)
    type KeptCase<'a> = (
        Option<Option<&'a DeploymentId>>,
        GcOptions,
        BTreeSet<DeploymentId>,
    );

    #[test]
    fn kept_table() {
        // Newest first: 0 = 30 min old (within the grace period) ... 5 = 40 days old.
        let records = vec![
            dep(DAY / 48),
            dep(2 * DAY),
            dep(8 * DAY),
            dep(10 * DAY),
            dep(20 * DAY),
            dep(40 * DAY),
        ];
        let id = |i: usize| records[i].id.clone();
        let set = |v: &[usize]| v.iter().map(|&i| id(i)).collect::<BTreeSet<_>>();
        let (live0, live3, live5) = (id(0), id(3), id(5));
        let cases: Vec<KeptCase> = vec![
            // Defaults: the newest five.
            (Some(Some(&live0)), opts(7, 5), set(&[0, 1, 2, 3, 4])),
            // keep 1: the newest, the one younger than 7 days, and the live one.
            (Some(Some(&live5)), opts(7, 1), set(&[0, 1, 5])),
            // keep 0 and older-than 0: only the live one and the grace period.
            (Some(Some(&live3)), opts(0, 0), set(&[0, 3])),
            // No live deployment.
            (Some(None), opts(9, 0), set(&[0, 1, 2])),
            // A deleted site keeps what is within the grace period alone.
            (None, opts(7, 5), set(&[0])),
        ];
        for (i, (live, o, want)) in cases.into_iter().enumerate() {
            assert_eq!(kept_deployments(&records, live, NOW, &o), want, "case {i}");
        }
    }

    #[test]
    fn doomed_table() {
        let site = SiteId::parse("s").unwrap();
        let old = dep(30 * DAY);
        let kept_dep = dep(DAY);
        let young_id = DeploymentId::new(NOW);
        let h = |b: &[u8]| BlobHash::of(b);
        let obj = |key: String, age: i64| ObjectInfo {
            key,
            size: 10,
            modified: NOW - age,
        };
        let objects = vec![
            obj(keys::manifest(&site, &old.id), 30 * DAY), // 0: not kept: goes
            obj(keys::manifest(&site, &kept_dep.id), DAY), // 1: kept
            obj(keys::blob(&site, &h(b"a"), None), 30 * DAY), // 2: referenced
            obj(keys::blob(&site, &h(b"b"), None), 30 * DAY), // 3: unreferenced: goes
            obj(keys::blob(&site, &h(b"c"), None), 60),    // 4: unreferenced but young
            obj(keys::manifest(&site, &young_id), 60),     // 5: young manifest
            obj("sites/s/other/x".into(), 30 * DAY),       // 6: not ours
            ObjectInfo {
                modified: 0,
                ..obj(keys::blob(&site, &h(b"d"), None), 0)
            }, // 7: age unknown
        ];
        let kept: BTreeSet<_> = [kept_dep.id.clone()].into();
        let refs: BTreeSet<_> = [keys::blob(&site, &h(b"a"), None)].into();
        let got: Vec<&str> = doomed(&objects, &kept, &refs, NOW, Duration::from_secs(3600))
            .into_iter()
            .map(|o| o.key.as_str())
            .collect();
        assert_eq!(got, vec![objects[0].key.as_str(), objects[3].key.as_str()]);
        // The young manifest is kept as a deploy in flight, with the kept one.
        let manifests = kept_manifests(&objects, &kept, NOW, Duration::from_secs(3600));
        assert_eq!(manifests, [kept_dep.id.clone(), young_id].into());
    }
}
