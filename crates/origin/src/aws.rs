//! The origin of a Lambda function, built from the environment: the one place that wires
//! the AWS adapters (DynamoDB, S3, Redis) to [`Origin::new`].

use crate::config::OriginConfig;
use crate::handler::Origin;
use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::cache::{memory::MemoryCache, redis::RedisCache, Cache, Tiered};
use skyhost_meta::config::{ConfigError, SdkConfigCell};
use skyhost_meta::store::dynamodb::DynamoStore;
use skyhost_meta::store::MetaStore;
use std::sync::Arc;

/// Why an origin could not be built from the environment.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// A setting is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `REDIS_URL` is not a Redis URL.
    #[error(transparent)]
    Redis(#[from] skyhost_meta::cache::redis::RedisConfigError),
}

impl Origin {
    /// The origin of a Lambda function: configuration from the environment, the sites
    /// table's replica and the bucket of its own region (a region stands on its own: the
    /// primary's trouble never reaches its reads or its health), the primary bucket as the
    /// fail-safe, each through a client built on first use, and the in-process cache in
    /// front of Redis when `REDIS_URL` is set.
    pub async fn from_env() -> Result<Origin, OriginError> {
        let config = OriginConfig::from_env()?;
        // Shared with the secrets of the configuration: one connector, one credential load.
        let here = SdkConfigCell::shared(&config.region);
        let primary_conf = if config.primary_region == config.region {
            here.clone()
        } else {
            here.for_region(&config.primary_region)
        };
        // Every client is built on first use, and the SDK configuration loaded then: a cold
        // instance whose first requests the region's Redis answers does neither (each SDK
        // crate parses its partition table when its first client is built). The primary
        // bucket is the fail-safe.
        let meta: Arc<dyn MetaStore> =
            Arc::new(DynamoStore::deferred(here.clone(), config.table.clone()));
        let local: Arc<dyn BlobStore> =
            Arc::new(S3BlobStore::deferred(here, config.bucket.clone()));
        let primary: Option<Arc<dyn BlobStore>> = (config.primary_bucket != config.bucket)
            .then(|| S3BlobStore::deferred(primary_conf, config.primary_bucket.clone()))
            .map(|store| Arc::new(store) as Arc<dyn BlobStore>);
        let redis = config
            .redis_url
            .as_deref()
            .map(RedisCache::new)
            .transpose()?;
        let cache: Arc<dyn Cache> =
            Arc::new(Tiered::new(MemoryCache::new(config.cache_bytes), redis));
        Ok(Origin::new(config, meta, local, primary, cache))
    }
}
