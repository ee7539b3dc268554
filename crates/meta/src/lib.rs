//! skyhost's shared metadata crate: the domain types (site, domain, deployment,
//! manifest), the storage key scheme, the ports (metadata store, blob store, cache,
//! notifier) and their adapters — DynamoDB, S3 and Redis in AWS, SQLite and folders in
//! local mode.

pub mod blob;
pub mod cache;
pub mod config;
pub mod ids;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod preview;
pub mod sdk_http;
pub mod secrets;
pub mod store;
pub mod tls;
pub mod ttl;

pub use ids::{BlobHash, DeploymentId, Domain, IdError, SiteId};
pub use model::{
    Deployment, DeploymentState, Encoding, FileEntry, Manifest, RegionStatus, Site, SiteRecord,
};

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
