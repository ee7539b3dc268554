//! Host → site → active deployment → manifest.
//!
//! The host → site map and parsed manifests live in this process; site records live in
//! the cache (memory, Redis) and are replaced only by higher revisions. Known hosts are
//! shared through Redis too, as hints, so a cold instance of a region whose Redis is warm
//! answers without reading the store. A host resolves only while the site's record lists
//! it, so a removed domain stops resolving as soon as the new record arrives, whatever the
//! map or the hint still says. Each site's record is re-read from the store once per
//! refresh window by one instance of the region (the claim is kept in Redis, and given
//! back when the re-read fails).

use crate::data::{CacheOutcome, DataError, DataPath};
use http::HeaderValue;
use skyhost_meta::cache::{Cache, SiteEntry};
use skyhost_meta::store::{MetaStore, StoreError};
use skyhost_meta::ttl::TtlMap;
use skyhost_meta::{keys, DeploymentId, Domain, Manifest, Site, SiteId, SiteRecord};
use std::sync::Arc;
use std::time::Duration;

/// Why a site's manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Reading the manifest failed.
    #[error("manifest: {0}")]
    Data(#[from] DataError),
    /// The manifest does not parse or names another deployment.
    #[error("manifest {key} is corrupt: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed manifest with the header values that every answer from its deployment shares,
/// made once when the manifest is loaded instead of on every request.
pub struct Loaded {
    /// The manifest.
    pub manifest: Manifest,
    /// `X-Skyhost-Deployment`.
    pub deployment: HeaderValue,
    /// `Last-Modified` of every file: the deployment's creation time.
    pub last_modified: HeaderValue,
    /// Whether its answers depend only on host, path, query and `Accept-Encoding`: no
    /// basic auth, no `[geo]`, and no redirect rule looks at the visitor's country or
    /// language ([`crate::answers`]).
    pub answerable: bool,
}

impl Loaded {
    fn new(manifest: Manifest) -> Self {
        let value = crate::responses::header_value;
        let rules = &manifest.rules;
        let answerable = rules.auth.is_empty()
            && rules.geo.is_none()
            && rules
                .redirects
                .iter()
                .all(|r| r.country.is_empty() && r.language.is_empty());
        Loaded {
            answerable,
            deployment: value(manifest.deployment.as_str()),
            last_modified: value(&crate::conditional::http_date(manifest.created)),
            manifest,
        }
    }

    /// The same deployment served as a preview: never kept ([`crate::answers`]), and with
    /// `[previews]` basic auth, when set, after the site's own rules (a path the site
    /// protects keeps its own credentials).
    pub fn for_preview(&self, auth: Option<&skyhost_rules::AuthRule>) -> Self {
        let mut manifest = self.manifest.clone();
        manifest.rules.auth.extend(auth.cloned());
        Loaded {
            manifest,
            deployment: self.deployment.clone(),
            last_modified: self.last_modified.clone(),
            answerable: false,
        }
    }
}

/// A cache entry of what the store holds under a site's name (`site: None`: removed).
fn entry_of(record: SiteRecord) -> SiteEntry {
    SiteEntry {
        revision: record.revision(),
        site: record.live().map(Arc::new),
    }
}

/// The site, unless it is suspended: a suspended site serves nothing, as if unknown.
fn serving(site: Arc<Site>) -> Option<Arc<Site>> {
    Some(site).filter(|s| !s.settings.suspended)
}

/// Known hosts are kept this long; the site record is checked on every request anyway.
const KNOWN_HOST_TTL: Duration = Duration::from_secs(300);

/// Known hosts held at most: real domains, far more than a region serves.
const KNOWN_HOSTS: usize = 100_000;

/// Unknown hosts remembered at most. Each is held as a 64-bit keyed hash (about 40 bytes
/// with its map entry, 4 MB in all), so that a flood of random `Host` values costs one
/// store read per host per unknown-host TTL, and fills only this map: it never evicts a
/// known host.
const UNKNOWN_HOSTS: usize = 100_000;

/// Resolves hosts to sites and deployments to manifests.
pub struct Resolver {
    meta: Arc<dyn MetaStore>,
    cache: Arc<dyn Cache>,
    data: Arc<DataPath>,
    /// Hosts known to belong to a site.
    hosts: TtlMap<Domain, SiteId>,
    /// Hosts the store said belong to no site, by [`Resolver::unknown_key`].
    unknown: TtlMap<u64, ()>,
    /// The key of `unknown`'s hashes, random per process so that no one can pick hosts
    /// that collide.
    unknown_hasher: std::collections::hash_map::RandomState,
    /// How long an unknown host is remembered.
    unknown_ttl: Duration,
    /// Parsed manifests by deployment id (the entry names its site, which is checked).
    manifests: moka::future::Cache<DeploymentId, Arc<Loaded>>,
    /// Sites whose record was read from the store recently (see `site_refresh`).
    fresh: TtlMap<SiteId, ()>,
    /// How long a site record read from the store counts as fresh.
    refresh: Duration,
}

impl Resolver {
    /// A resolver reading `meta` on misses; unknown hosts are remembered for `unknown_ttl`,
    /// and a cached site record is re-read from the store every `refresh`.
    pub fn new(
        meta: Arc<dyn MetaStore>,
        cache: Arc<dyn Cache>,
        data: Arc<DataPath>,
        unknown_ttl: Duration,
        refresh: Duration,
        manifest_bytes: u64,
    ) -> Self {
        Resolver {
            meta,
            cache,
            data,
            hosts: TtlMap::new(KNOWN_HOSTS),
            unknown: TtlMap::new(UNKNOWN_HOSTS),
            unknown_hasher: std::collections::hash_map::RandomState::new(),
            unknown_ttl,
            manifests: moka::future::Cache::builder()
                .weigher(|_k, m: &Arc<Loaded>| {
                    // Roughly what a parsed entry costs: path, hash, type and map overhead.
                    u32::try_from(m.manifest.files.len() * 200 + 1024).unwrap_or(u32::MAX)
                })
                .max_capacity(manifest_bytes.max(1024 * 1024))
                .build(),
            fresh: TtlMap::new(100_000),
            refresh,
        }
    }

    fn unknown_key(&self, host: &str) -> u64 {
        use std::hash::BuildHasher;
        self.unknown_hasher.hash_one(host)
    }

    /// Remembers what `host` resolves to: a known host for long, an unknown one briefly and
    /// apart from the known ones.
    fn insert_host(&self, host: Domain, site: Option<SiteId>) {
        let unknown = self.unknown_key(host.as_str());
        match site {
            Some(id) => {
                self.unknown.remove(&unknown);
                self.hosts.insert(host, id, KNOWN_HOST_TTL);
            }
            None => {
                self.hosts.remove(host.as_str());
                self.unknown.insert(unknown, (), self.unknown_ttl);
            }
        }
    }

    /// What this process remembers about `host`: `Some(Some(site))` known, `Some(None)`
    /// unknown, `None` nothing.
    fn remembered_host(&self, host: &str) -> Option<Option<SiteId>> {
        if let Some(id) = self.hosts.get(host) {
            return Some(Some(id));
        }
        self.unknown
            .contains(&self.unknown_key(host))
            .then_some(None)
    }

    /// Remembers what the store says `host` resolves to, and shares a known answer with
    /// the region's other instances.
    async fn remember_host(&self, host: &Domain, site: Option<SiteId>) {
        if let Some(id) = &site {
            self.cache.put_host_site(host, id, KNOWN_HOST_TTL).await;
        }
        self.insert_host(host.clone(), site);
    }

    /// The site a `Host` header names (see [`Resolver::site_for_host`]). A header that is
    /// already a known domain in canonical form, as browsers send it, is looked up as it
    /// is; any other is parsed first (port, case, trailing dot), and refused if it is not a
    /// domain.
    pub async fn site_for_host_header(
        &self,
        header: &str,
    ) -> Result<Option<Arc<Site>>, StoreError> {
        match self.remembered_host(header) {
            Some(None) => return Ok(None),
            Some(Some(id)) => {
                if let Some(s) = self.site(&id).await? {
                    if s.domains.iter().any(|d| d.as_str() == header) {
                        return Ok(serving(s));
                    }
                }
            }
            None => {}
        }
        match Domain::from_host_header(header) {
            Ok(domain) => self.site_for_host(&domain).await,
            Err(_) => Ok(None),
        }
    }

    /// The site a host serves: `None` for an unknown host, a removed domain, a suspended
    /// site — the visitor cannot tell these apart.
    pub async fn site_for_host(&self, host: &Domain) -> Result<Option<Arc<Site>>, StoreError> {
        // This process's map first, then what another instance of the region found (a
        // cold instance answered from Redis reads nothing from the store), then the store.
        let (id, hinted) = match self.remembered_host(host.as_str()) {
            Some(v) => (v, true),
            None => match self.cache.host_site(host).await {
                Some(id) => {
                    self.insert_host(host.clone(), Some(id.clone()));
                    (Some(id), true)
                }
                None => {
                    let v = self.meta.site_for_domain(host).await?;
                    self.remember_host(host, v.clone()).await;
                    (v, false)
                }
            },
        };
        let Some(id) = id else {
            return Ok(None);
        };
        let site = self.site(&id).await?;
        if let Some(s) = site.filter(|s| s.domains.contains(host)) {
            return Ok(serving(s));
        }
        // The map and the record disagree: the domain moved or was removed, or this
        // instance missed the notification that added it. Ask the store once, then
        // remember the answer (an unknown answer only briefly).
        let fresh_id = if hinted {
            self.meta.site_for_domain(host).await?
        } else {
            Some(id)
        };
        if let Some(fresh_id) = fresh_id {
            if let Some(s) = self.reload(&fresh_id).await? {
                if s.domains.contains(host) {
                    self.remember_host(host, Some(fresh_id)).await;
                    return Ok(serving(s));
                }
            }
        }
        self.insert_host(host.clone(), None);
        Ok(None)
    }

    /// A site's record as this region knows it (`None`: unknown or removed).
    pub async fn site(&self, id: &SiteId) -> Result<Option<Arc<Site>>, StoreError> {
        if let Some(entry) = self.cache.site(id).await {
            if !self.fresh.contains(id) {
                self.fresh.insert(id.clone(), (), self.refresh);
                let (meta, cache, id) = (self.meta.clone(), self.cache.clone(), id.clone());
                let window = self.refresh;
                tokio::spawn(async move {
                    // One instance of the region re-reads a record per window; the others
                    // learn what it found through the shared tier.
                    if !cache.claim_site_refresh(&id, window).await {
                        return;
                    }
                    match meta.site_record(&id).await {
                        Ok(Some(record)) => {
                            // A tombstone is a record too: the removal wins over the
                            // cached live record it follows.
                            let revision = record.revision();
                            if cache.put_site(&id, entry_of(record)).await {
                                tracing::info!(site = %id, revision, "site record refreshed from the store");
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(site = %id, error = %e, "site refresh failed");
                            cache.release_site_refresh(&id).await;
                        }
                    }
                });
            }
            return Ok(entry.site);
        }
        self.reload(id).await
    }

    /// Reads a site record from the store and caches it (if newer than the cached one).
    async fn reload(&self, id: &SiteId) -> Result<Option<Arc<Site>>, StoreError> {
        // This read is the region's refresh of the record for the window: the claim tells
        // the other instances so, off the request's path.
        let (cache, claimed, window) = (self.cache.clone(), id.clone(), self.refresh);
        let claim = tokio::spawn(async move { cache.claim_site_refresh(&claimed, window).await });
        let record = match self.meta.site_record(id).await {
            Ok(record) => record,
            Err(e) => {
                // A failed read refreshed nothing: give the window back, once the claim
                // has been answered, and only if it was this instance's.
                let (cache, id) = (self.cache.clone(), id.clone());
                tokio::spawn(async move {
                    if matches!(claim.await, Ok(true)) {
                        cache.release_site_refresh(&id).await;
                    }
                });
                return Err(e);
            }
        };
        self.fresh.insert(id.clone(), (), self.refresh);
        let s = match record {
            Some(SiteRecord::Live(s)) => s,
            Some(removed @ SiteRecord::Removed { .. }) => {
                self.cache.put_site(id, entry_of(removed)).await;
                return Ok(self.cache.site(id).await.and_then(|e| e.site));
            }
            None => return Ok(self.cache.site(id).await.and_then(|e| e.site)),
        };
        let s = Arc::new(s);
        self.cache
            .put_site(
                id,
                SiteEntry {
                    revision: s.revision,
                    site: Some(s.clone()),
                },
            )
            .await;
        // A higher revision may already be cached (a notification raced the read).
        Ok(match self.cache.site(id).await {
            Some(e) if e.revision > s.revision => e.site,
            _ => Some(s),
        })
    }

    /// A deployment's manifest, parsed once per process, and where it came from.
    pub async fn manifest(
        &self,
        site: &SiteId,
        deployment: &DeploymentId,
    ) -> Result<(Arc<Loaded>, CacheOutcome), ResolveError> {
        // Looked up by deployment alone, so a hit clones no key. Two sites could in principle
        // draw the same id; the entry's own site settles it.
        if let Some(m) = self.manifests.get(deployment).await {
            if m.manifest.site == *site {
                return Ok((m, CacheOutcome::Hit));
            }
        }
        let key = keys::manifest(site, deployment);
        let (bytes, outcome) = self.data.bytes(&key).await?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| ResolveError::Corrupt {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        if m.site != *site || m.deployment != *deployment {
            return Err(ResolveError::Corrupt {
                key,
                reason: format!("it describes {}/{}", m.site, m.deployment),
            });
        }
        let m = Arc::new(Loaded::new(m));
        self.manifests.insert(deployment.clone(), m.clone()).await;
        Ok((m, outcome))
    }

    /// Brings a site's record up to `revision` ([`crate::converge`]). True when this
    /// instance now holds `revision` or newer; false when the store itself is still behind
    /// (a replica that has not received the record yet). A site this instance does not
    /// hold is read too: a host it found unknown may have just been added to it.
    pub async fn catch_up(&self, id: &SiteId, revision: u64) -> Result<bool, StoreError> {
        let held = self.cache.site(id).await;
        if held.as_ref().is_some_and(|h| h.revision >= revision) {
            return Ok(true);
        }
        let s = match self.meta.site_record(id).await? {
            Some(SiteRecord::Live(s)) => s,
            // Removed: the tombstone's revision replaces what this instance holds.
            Some(SiteRecord::Removed { revision: got, .. }) => {
                self.apply(id, got, None).await;
                return Ok(got >= revision);
            }
            // Never created: nothing newer will come.
            None => return Ok(true),
        };
        let got = s.revision;
        if held.is_some() {
            self.apply(id, got, Some(s)).await;
        } else {
            let domains = s.domains.clone();
            let entry = SiteEntry {
                revision: got,
                site: Some(Arc::new(s)),
            };
            self.cache.put_site(id, entry).await;
            for d in domains {
                self.insert_host(d, Some(id.clone()));
            }
            self.fresh.insert(id.clone(), (), self.refresh);
        }
        Ok(got >= revision)
    }

    /// Applies a site's new record (`None`: removed) at `revision` if it is newer than
    /// what this region holds; returns whether the region now holds it.
    pub async fn apply(&self, id: &SiteId, revision: u64, record: Option<Site>) -> bool {
        let mut current = self.cache.site(id).await;
        let mut seeded = false;
        if current.is_none() {
            // A cold instance knows nothing: seed from the store so a stale notification
            // cannot install an old record.
            // A removal's tombstone is seeded too: a notification from before the removal,
            // replayed to a cold instance, must not bring the site back.
            match self.meta.site_record(id).await {
                Ok(Some(record)) => {
                    let entry = entry_of(record);
                    self.cache.put_site(id, entry.clone()).await;
                    current = Some(entry);
                    seeded = true;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(site = %id, error = %e, "could not read the site before applying a notification")
                }
            }
        }
        let old_domains: Vec<Domain> = current
            .as_ref()
            .and_then(|e| e.site.as_ref())
            .map(|s| s.domains.clone())
            .unwrap_or_default();
        match &current {
            Some(c) if c.revision > revision => return false,
            Some(c) if c.revision == revision => {
                // A replay changes nothing; but when the record was read from the store
                // just now and is this one, the region does hold it.
                if !(seeded && c.site.as_deref() == record.as_ref()) {
                    return false;
                }
            }
            _ => {
                let entry = SiteEntry {
                    revision,
                    site: record.clone().map(Arc::new),
                };
                if !self.cache.put_site(id, entry).await {
                    return false;
                }
            }
        }
        let new_domains: Vec<Domain> = record
            .as_ref()
            .map(|s| s.domains.clone())
            .unwrap_or_default();
        for d in old_domains.iter().filter(|d| !new_domains.contains(d)) {
            self.insert_host(d.clone(), None);
        }
        for d in &new_domains {
            self.insert_host(d.clone(), Some(id.clone()));
        }
        self.fresh.insert(id.clone(), (), self.refresh);
        true
    }
}
