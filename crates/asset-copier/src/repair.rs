//! Anti-entropy: which keys a deployment needs in every region, which keys each region
//! lacks, and copying those from the primary bucket. `skyhost verify`, the activation
//! check and the scheduled sweep all run this one code.

use crate::{Copier, Method};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use skyhost_meta::blob::{BlobError, BlobStore};
use skyhost_meta::store::StoreError;
use skyhost_meta::{keys, DeploymentId, Manifest, Site, SiteId};
use std::collections::HashSet;

/// Above this many keys, a region is asked for its whole listing of the site rather than
/// for each key (a listing page holds 1,000 keys; a lookup holds one).
pub const LIST_ABOVE: usize = 200;

/// Every key a manifest needs in a bucket: its blobs and the manifest itself.
pub fn manifest_keys(m: &Manifest) -> Vec<String> {
    let mut k = m.blob_keys();
    k.push(keys::manifest(&m.site, &m.deployment));
    k
}

/// The keys `current` needs that `previous` (the deployment live before it) did not: all
/// an activation has to check, since the previous one's were checked when it went live.
pub fn added_keys(current: &Manifest, previous: Option<&Manifest>) -> Vec<String> {
    let all = manifest_keys(current);
    let Some(prev) = previous else { return all };
    let before: HashSet<String> = manifest_keys(prev).into_iter().collect();
    all.into_iter().filter(|k| !before.contains(k)).collect()
}

/// Whether to find `n` keys by listing the site's keys rather than one lookup each.
pub fn by_listing(n: usize) -> bool {
    n > LIST_ABOVE
}

/// What can stop a check (a copy that fails is reported in its [`RegionGap`] instead).
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// A bucket could not be read.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The sites table could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A manifest is missing or does not parse.
    #[error("{0}")]
    Manifest(String),
}

/// One region's gap for one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionGap {
    /// The site.
    pub site: String,
    /// The region.
    pub region: String,
    /// Keys the region lacked.
    pub missing: Vec<String>,
    /// Keys copied into it.
    pub repaired: usize,
    /// Copies that failed (a key missing in the primary itself cannot be repaired).
    pub errors: Vec<String>,
}

impl RegionGap {
    /// Keys still missing after the repair.
    pub fn unrepaired(&self) -> usize {
        self.missing.len().saturating_sub(self.repaired)
    }
}

/// The manifest of `deployment`, `None` when the bucket lacks it.
pub async fn load_manifest(
    bucket: &dyn BlobStore,
    site: &SiteId,
    deployment: &DeploymentId,
) -> Result<Option<Manifest>, RepairError> {
    let key = keys::manifest(site, deployment);
    let Some(body) = bucket.get(&key, None).await? else {
        return Ok(None);
    };
    let body = body.collect().await?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| RepairError::Manifest(format!("{key} does not parse: {e}")))
}

/// The keys of `wanted` (all of site `site`) that `bucket` lacks.
pub async fn lacking(
    bucket: &dyn BlobStore,
    site: &SiteId,
    wanted: &[String],
) -> Result<Vec<String>, BlobError> {
    if by_listing(wanted.len()) {
        let have: HashSet<String> = bucket
            .list(&keys::site_prefix(site))
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        return Ok(wanted
            .iter()
            .filter(|k| !have.contains(*k))
            .cloned()
            .collect());
    }
    let found: Vec<Result<Option<String>, BlobError>> = stream::iter(wanted.iter().cloned())
        .map(|k| async move { Ok(bucket.head(&k).await?.is_none().then_some(k)) })
        .buffered(16)
        .collect()
        .await;
    found.into_iter().filter_map(Result::transpose).collect()
}

impl Copier {
    /// Checks that every region (the primary first) holds `wanted` keys of `site`; with
    /// `repair`, copies from the primary what a replica lacks. Returns the regions that
    /// lacked something. A key the primary lacks is reported, never copied.
    pub async fn check_keys(
        &self,
        site: &SiteId,
        wanted: &[String],
        repair: bool,
    ) -> Result<Vec<RegionGap>, RepairError> {
        let mut gaps = Vec::new();
        if wanted.is_empty() {
            return Ok(gaps);
        }
        let not_in_primary = lacking(self.source(), site, wanted).await?;
        if !not_in_primary.is_empty() {
            gaps.push(RegionGap {
                site: site.to_string(),
                region: self.source_region().to_owned(),
                errors: vec![format!(
                    "{} keys are missing in the primary bucket itself; deploy the site again",
                    not_in_primary.len()
                )],
                missing: not_in_primary.clone(),
                repaired: 0,
            });
        }
        let absent: HashSet<&String> = not_in_primary.iter().collect();
        for (region, bucket) in self.replicas() {
            let missing = lacking(bucket, site, wanted).await?;
            if missing.is_empty() {
                continue;
            }
            let mut gap = RegionGap {
                site: site.to_string(),
                region: region.to_owned(),
                missing,
                repaired: 0,
                errors: Vec::new(),
            };
            if repair {
                let todo: Vec<String> = gap
                    .missing
                    .iter()
                    .filter(|k| !absent.contains(k))
                    .cloned()
                    .collect();
                let results: Vec<(String, Result<Method, BlobError>)> = stream::iter(todo)
                    .map(|k| async move {
                        let r = self.repair_key(&k, bucket).await;
                        (k, r)
                    })
                    .buffer_unordered(self.concurrency())
                    .collect()
                    .await;
                for (k, r) in results {
                    match r {
                        Ok(_) => gap.repaired += 1,
                        Err(e) => gap.errors.push(format!("{k}: {e}")),
                    }
                }
                if gap.repaired > 0 {
                    tracing::warn!(site = %site, region, repaired = gap.repaired, "copied keys a region lacked");
                }
            }
            gaps.push(gap);
        }
        Ok(gaps)
    }

    /// Checks (and with `repair`, fixes) every key of the site's active deployment.
    pub async fn check_site(
        &self,
        site: &Site,
        repair: bool,
    ) -> Result<Vec<RegionGap>, RepairError> {
        let Some(active) = &site.active else {
            return Ok(Vec::new());
        };
        let manifest = load_manifest(self.source(), &site.id, active)
            .await?
            .ok_or_else(|| {
                RepairError::Manifest(format!(
                    "the primary bucket lacks {}: the active deployment of {} cannot be checked",
                    keys::manifest(&site.id, active),
                    site.id
                ))
            })?;
        self.check_keys(&site.id, &manifest_keys(&manifest), repair)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhost_meta::{BlobHash, Encoding, FileEntry};
    use std::collections::BTreeMap;

    fn hash(c: char) -> BlobHash {
        BlobHash::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn manifest(dep: &str, files: &[(&str, char, bool)]) -> Manifest {
        let mut m = Manifest {
            site: SiteId::parse("blog").unwrap(),
            deployment: DeploymentId::parse(dep).unwrap(),
            created: 0,
            files: BTreeMap::new(),
            rules: Default::default(),
        };
        for (path, h, br) in files {
            let mut encodings = BTreeMap::new();
            if *br {
                encodings.insert(Encoding::Br, 10);
            }
            m.files.insert(
                (*path).to_owned(),
                FileEntry {
                    hash: hash(*h),
                    size: 100,
                    content_type: "text/html".into(),
                    encodings,
                },
            );
        }
        m
    }

    #[test]
    fn an_activation_checks_only_what_is_new() {
        const D1: &str = "20260103T101112Z-4e5f6a7b";
        const D2: &str = "20260104T101112Z-4e5f6a7c";
        let blob = |c: char| format!("sites/blog/blobs/{}", c.to_string().repeat(64));
        let m1 = manifest(D1, &[("/a", 'a', true), ("/b", 'b', false)]);
        let m2 = manifest(
            D2,
            &[("/a", 'a', true), ("/b", 'c', false), ("/d", 'd', true)],
        );
        let m2_key = format!("sites/blog/manifests/{D2}.json");
        // (current, previous, keys to check)
        let cases: Vec<(&Manifest, Option<&Manifest>, Vec<String>)> = vec![
            (
                &m2,
                None,
                vec![
                    blob('a'),
                    format!("{}.br", blob('a')),
                    blob('c'),
                    blob('d'),
                    format!("{}.br", blob('d')),
                    m2_key.clone(),
                ],
            ),
            (
                &m2,
                Some(&m1),
                vec![blob('c'), blob('d'), format!("{}.br", blob('d')), m2_key],
            ),
            // A rollback to the older deployment checks what the newer one lacked.
            (
                &m1,
                Some(&m2),
                vec![blob('b'), format!("sites/blog/manifests/{D1}.json")],
            ),
            (&m1, Some(&m1), vec![]),
        ];
        for (i, (cur, prev, want)) in cases.into_iter().enumerate() {
            assert_eq!(added_keys(cur, prev), want, "case {i}");
        }
    }

    #[test]
    fn many_keys_are_found_by_listing() {
        let cases = [
            (0, false),
            (1, false),
            (LIST_ABOVE, false),
            (LIST_ABOVE + 1, true),
        ];
        for (n, want) in cases {
            assert_eq!(by_listing(n), want, "{n}");
        }
    }
}
