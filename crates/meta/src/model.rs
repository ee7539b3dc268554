//! The domain: sites, deployments and manifests.

use crate::ids::{BlobHash, DeploymentId, Domain, SiteId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A site's record: the one mutable piece of metadata. Every change to it raises
/// `revision` by one and is written conditionally on the previous revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// The site's id.
    pub id: SiteId,
    /// Host names the site answers on.
    #[serde(default)]
    pub domains: Vec<Domain>,
    /// The deployment being served, if any.
    #[serde(default)]
    pub active: Option<DeploymentId>,
    /// Raised by one on every change; regions apply only higher revisions.
    pub revision: u64,
    /// Operator settings of the site.
    #[serde(default)]
    pub settings: SiteSettings,
    /// Unix seconds of the last change.
    #[serde(default)]
    pub updated: i64,
}

impl Site {
    /// A new, empty site at revision 1.
    pub fn new(id: SiteId, now: i64) -> Self {
        Site {
            id,
            domains: Vec::new(),
            active: None,
            revision: 1,
            settings: SiteSettings::default(),
            updated: now,
        }
    }

    /// A site created again under the name of a removed one: its revision continues from
    /// the removal's, so no region holding the old record or its removal prefers them.
    pub fn recreated(id: SiteId, now: i64, removed_at: u64) -> Self {
        Site {
            revision: removed_at + 1,
            ..Site::new(id, now)
        }
    }

    /// The next version of this record: same site, revision + 1.
    pub fn next(&self, now: i64) -> Self {
        Site {
            revision: self.revision + 1,
            updated: now,
            ..self.clone()
        }
    }
}

/// What the sites table holds under a site's name: its live record, or the tombstone its
/// removal left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteRecord {
    /// The site exists.
    Live(Site),
    /// The site was removed at `revision`. The tombstone stays, so that no notification or
    /// cached record older than the removal brings the site back, and a site created
    /// again under the name carries on from this revision.
    Removed {
        /// The site.
        id: SiteId,
        /// The removal's revision: one above the last live record's.
        revision: u64,
        /// Unix seconds of the removal.
        updated: i64,
    },
}

impl SiteRecord {
    /// The record's revision, live or removed.
    pub fn revision(&self) -> u64 {
        match self {
            SiteRecord::Live(s) => s.revision,
            SiteRecord::Removed { revision, .. } => *revision,
        }
    }

    /// The live record, if the site exists.
    pub fn live(self) -> Option<Site> {
        match self {
            SiteRecord::Live(s) => Some(s),
            SiteRecord::Removed { .. } => None,
        }
    }
}

/// Operator settings kept on the site record (site owners' settings live in the manifest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SiteSettings {
    /// A suspended site answers 404 on every host, as if unknown.
    pub suspended: bool,
}

/// Where a deployment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentState {
    /// Blobs and manifest are uploaded; it can be activated.
    Ready,
    /// The deploy did not finish; never served.
    Failed,
}

/// A deployment record: an immutable snapshot of a site's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The site it belongs to.
    pub site: SiteId,
    /// Its id.
    pub id: DeploymentId,
    /// Unix seconds of creation.
    pub created: i64,
    /// Number of files.
    pub file_count: u64,
    /// Total bytes of the identity bodies.
    pub bytes: u64,
    /// Its state.
    pub state: DeploymentState,
    /// What the person deploying said about it.
    #[serde(default)]
    pub message: Option<String>,
}

/// A content coding a blob is also stored in (precompressed at deploy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Brotli.
    Br,
    /// Gzip.
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
        }
    }
    /// The blob key suffix of the variant.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Br => ".br",
            Encoding::Gzip => ".gz",
        }
    }
}

/// One file of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// SHA-256 of the identity body.
    pub hash: BlobHash,
    /// Identity size in bytes.
    pub size: u64,
    /// The `Content-Type` to serve.
    pub content_type: String,
    /// Precompressed variants and their sizes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encodings: BTreeMap<Encoding, u64>,
}

/// A deployment's immutable manifest: every path, and the site's parsed rules and settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The site.
    pub site: SiteId,
    /// The deployment.
    pub deployment: DeploymentId,
    /// Unix seconds of creation (the files' Last-Modified).
    pub created: i64,
    /// Site path (always starting with `/`, no trailing slash) → file.
    pub files: BTreeMap<String, FileEntry>,
    /// `_redirects`, `_headers` and `skyhost.toml`, parsed and sealed.
    #[serde(default)]
    pub rules: skyhost_rules::SiteRules,
}

impl Manifest {
    /// The file at an exact site path.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.get(path)
    }

    /// Every blob key the manifest refers to (identity bodies and precompressed variants).
    pub fn blob_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .files
            .values()
            .flat_map(|f| {
                std::iter::once(crate::keys::blob(&self.site, &f.hash, None)).chain(
                    f.encodings
                        .keys()
                        .map(|e| crate::keys::blob(&self.site, &f.hash, Some(*e))),
                )
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// A region's operator state, kept in the metadata store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionStatus {
    /// The region's name.
    pub region: String,
    /// In maintenance: its health check answers 503 so traffic drains to other regions.
    pub maintenance: bool,
}
