//! Deploy previews: every deployment, live or not, is served at
//! `{deployment id lowercased}--{site}.{previews domain}` ([`skyhost_meta::preview`]),
//! from every region, with its own files and rules and `X-Robots-Tag: noindex`. The live
//! deployment's `[previews]` (or, with none live, the previewed one's) can turn previews
//! off or put basic auth in front of them. A removed or suspended site has no previews,
//! and a deployment is previewed only while its record exists in the region's table: a
//! site deleted and created again under its name does not bring back the old one's.

use crate::data::{CacheOutcome, DataError};
use crate::resolve::{Loaded, ResolveError, Resolver};
use http::HeaderValue;
use skyhost_meta::store::MetaStore;
use skyhost_meta::{DeploymentId, Domain, Site, SiteId};
use std::sync::Arc;
use std::time::Duration;

/// `X-Robots-Tag` on every preview answer: search engines index the live site only.
pub const NOINDEX: HeaderValue = HeaderValue::from_static("noindex");

/// A deployment this young may still be on its way to this region's bucket: its
/// manifest lookup is retried for a moment instead of answering 404.
const FRESH: i64 = 120;
/// How far ahead of this clock a deployment id's time may be and still count as fresh
/// (clock skew between the deploying machine and the region). An id dated later was made
/// up: it must not buy a retrying lookup.
const SKEW: i64 = 5;
/// How long a fresh preview's manifest is waited for, and how often it is looked for.
const WAIT: Duration = Duration::from_millis(500);
const STEP: Duration = Duration::from_millis(50);
/// How long a deployment found not to exist is taken as absent (a fresh one is looked
/// for over [`WAIT`] first).
const ABSENT_TTL: Duration = Duration::from_secs(10);
/// How long a fresh deployment found not to exist after [`WAIT`] is taken as absent: long
/// enough that repeating one made-up fresh id costs one wait a second, short enough that
/// a real deployment whose record arrives late is served a moment later.
const FRESH_ABSENT_TTL: Duration = Duration::from_secs(1);

/// What a host means for previews.
pub enum Lookup {
    /// Not a preview host: a site's own domain, perhaps.
    NotPreview,
    /// A preview host that serves nothing: unknown, removed or suspended site, unknown
    /// deployment, or previews turned off.
    Gone,
    /// The store or the bucket failed (logged).
    Failed,
    /// The preview to serve.
    Found(Preview),
}

/// A preview to serve.
pub struct Preview {
    /// Its site's record.
    pub site: Arc<Site>,
    /// The deployment with the preview's auth, ready to serve.
    pub loaded: Arc<Loaded>,
    /// Where its manifest came from.
    pub outcome: CacheOutcome,
}

/// (site, previewed deployment, site revision): a preview's auth follows the live
/// deployment, and whether it exists follows the site's record.
type ReadyKey = (SiteId, DeploymentId, u64);

/// The previews of a region's origin.
pub struct Previews {
    /// `None`: previews are not served.
    domain: Option<String>,
    /// The region's table: deployment records.
    meta: Arc<dyn MetaStore>,
    /// Previews made ready to serve.
    ready: moka::future::Cache<ReadyKey, Arc<Loaded>>,
    /// Deployments found not to exist, for a moment: guessed preview hosts of a real
    /// site cost no table read each.
    absent: moka::future::Cache<ReadyKey, ()>,
    /// Fresh deployments waited for in vain, for a second.
    absent_fresh: moka::future::Cache<ReadyKey, ()>,
}

impl Previews {
    /// Previews served under `domain` (`None`: none), deployments recorded in `meta`.
    pub fn new(domain: Option<String>, meta: Arc<dyn MetaStore>) -> Self {
        Previews {
            domain: domain.map(|d| d.trim_end_matches('.').to_ascii_lowercase()),
            meta,
            ready: moka::future::Cache::builder()
                .max_capacity(256)
                .time_to_idle(Duration::from_secs(300))
                .build(),
            absent: moka::future::Cache::builder()
                .max_capacity(4096)
                .time_to_live(ABSENT_TTL)
                .build(),
            absent_fresh: moka::future::Cache::builder()
                .max_capacity(4096)
                .time_to_live(FRESH_ABSENT_TTL)
                .build(),
        }
    }

    /// What `host` (a `Host` header) means.
    pub async fn lookup(&self, host: &str, resolver: &Resolver) -> Lookup {
        let Some(domain) = self.domain.as_deref() else {
            return Lookup::NotPreview;
        };
        // Cheap refusal first: most hosts are sites' own domains.
        if !host.contains("--") {
            return Lookup::NotPreview;
        }
        let Some((deployment, site)) = Domain::from_host_header(host)
            .ok()
            .and_then(|h| skyhost_meta::preview::parse(&h, domain))
        else {
            return Lookup::NotPreview;
        };
        match self.find(&site, &deployment, resolver).await {
            Ok(Some(p)) => Lookup::Found(p),
            Ok(None) => Lookup::Gone,
            Err(e) => {
                tracing::error!(host, error = %e, "preview unavailable");
                Lookup::Failed
            }
        }
    }

    async fn find(
        &self,
        site_id: &SiteId,
        deployment: &DeploymentId,
        resolver: &Resolver,
    ) -> Result<Option<Preview>, String> {
        let site = match resolver.site(site_id).await {
            Ok(Some(s)) if !s.settings.suspended => s,
            Ok(_) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let key = (site_id.clone(), deployment.clone(), site.revision);
        if let Some(ready) = self.ready.get(&key).await {
            return Ok(ready.manifest.rules.previews.enabled.then(|| Preview {
                site,
                loaded: ready,
                outcome: CacheOutcome::Hit,
            }));
        }
        if self.absent.contains_key(&key) || self.absent_fresh.contains_key(&key) {
            return Ok(None);
        }
        if !recorded(self.meta.as_ref(), site_id, deployment).await? {
            // A fresh one may yet arrive: it is looked for again a second later.
            if is_fresh(deployment) {
                self.absent_fresh.insert(key, ()).await;
            } else {
                self.absent.insert(key, ()).await;
            }
            return Ok(None);
        }
        let Some((previewed, outcome)) = manifest(resolver, site_id, deployment)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        // The live deployment's `[previews]` governs every preview of the site.
        let governing = match site.active.as_ref().filter(|a| *a != deployment) {
            Some(live) => match manifest(resolver, site_id, live)
                .await
                .map_err(|e| e.to_string())?
            {
                Some((m, _)) => m,
                None => previewed.clone(),
            },
            None => previewed.clone(),
        };
        let settings = &governing.manifest.rules.previews;
        let mut ready = previewed.for_preview(settings.auth.as_ref());
        ready.manifest.rules.previews.enabled = settings.enabled;
        let ready = Arc::new(ready);
        self.ready.insert(key, ready.clone()).await;
        Ok(settings.enabled.then(|| Preview {
            site,
            loaded: ready,
            outcome,
        }))
    }
}

/// Whether the site has a record of `deployment`. A deployment made in the last moments
/// is looked for again for up to [`WAIT`]: its record may be on its way to this region.
async fn recorded(
    meta: &dyn MetaStore,
    site: &SiteId,
    deployment: &DeploymentId,
) -> Result<bool, String> {
    let fresh = is_fresh(deployment);
    let started = tokio::time::Instant::now();
    loop {
        match meta.deployment(site, deployment).await {
            Ok(Some(_)) => return Ok(true),
            Ok(None) if fresh && started.elapsed() < WAIT => tokio::time::sleep(STEP).await,
            Ok(None) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn is_fresh(deployment: &DeploymentId) -> bool {
    created(deployment).is_some_and(|t| fresh_at(t, skyhost_meta::now()))
}

/// Whether a deployment made at `created` is fresh at `now` (both Unix seconds).
fn fresh_at(created: i64, now: i64) -> bool {
    (-SKEW..FRESH).contains(&now.saturating_sub(created))
}

/// A deployment's manifest; `None` when it does not exist. A deployment made in the last
/// moments is looked for again for up to [`WAIT`]: it may be on its way to this region.
async fn manifest(
    resolver: &Resolver,
    site: &SiteId,
    deployment: &DeploymentId,
) -> Result<Option<(Arc<Loaded>, CacheOutcome)>, ResolveError> {
    let fresh = is_fresh(deployment);
    let started = tokio::time::Instant::now();
    loop {
        match resolver.manifest(site, deployment).await {
            Ok(m) => return Ok(Some(m)),
            Err(ResolveError::Data(DataError::Missing(_))) => {
                if !fresh || started.elapsed() >= WAIT {
                    return Ok(None);
                }
                tokio::time::sleep(STEP).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The creation time a deployment id carries (`20261204T140056Z-…`).
fn created(id: &DeploymentId) -> Option<i64> {
    let s = id.as_str();
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s.get(..16)?, &fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_time() {
        let cases = [
            ("20261204T140056Z-0156475d", Some(1_796_392_856)),
            ("19700101T000000Z-00000000", Some(0)),
        ];
        for (id, want) in cases {
            assert_eq!(created(&DeploymentId::parse(id).unwrap()), want, "{id}");
        }
        let now = skyhost_meta::now();
        assert_eq!(created(&DeploymentId::new(now)), Some(now));
    }

    #[test]
    fn freshness() {
        let now = 1_796_392_856;
        let cases = [
            (now, true),
            (now - 1, true),
            (now - 119, true),
            (now - 120, false),
            (now - 86_400, false),
            // A little ahead: the deploying machine's clock runs fast.
            (now + 5, true),
            (now + 6, false),
            // Far ahead: a made-up id, which must not make every lookup wait.
            (now + 86_400 * 365, false),
            (i64::MAX, false),
        ];
        for (created, want) in cases {
            assert_eq!(fresh_at(created, now), want, "{created}");
        }
        assert!(!is_fresh(&DeploymentId::new(skyhost_meta::now() + 3600)));
        assert!(is_fresh(&DeploymentId::new(skyhost_meta::now())));
    }
}
