//! The origin's configuration: read from the environment `template.yaml` sets (Lambda), or
//! built directly (local mode, tests).

use crate::forwarded::DirectAccess;
use skyhost_meta::config::{env_opt, env_req, ConfigError, SdkConfigCell};
use skyhost_meta::secrets::Secret;
use std::time::Duration;

/// Every environment variable [`OriginConfig::from_env`] reads.
pub const ENV_VARS: &[&str] = &[
    "SKYHOST_REGION",
    "SKYHOST_PRIMARY_REGION",
    "SKYHOST_TABLE",
    "SKYHOST_BUCKET",
    "SKYHOST_PRIMARY_BUCKET",
    "SKYHOST_NOTIFY_SECRET_ID",
    "SKYHOST_ORIGIN_VERIFY_SECRET_ID",
    "SKYHOST_DIRECT_ACCESS",
    "SKYHOST_CACHE_BYTES",
    "REDIS_URL",
];

/// How an origin serves.
#[derive(Clone)]
pub struct OriginConfig {
    /// The region answering (`X-Skyhost-Region`, the metrics' `Region` dimension).
    pub region: String,
    /// The primary region (the only writer of the sites table; the primary bucket).
    pub primary_region: String,
    /// Sites table name: a global table with a replica in every region, of which the
    /// origin reads its own region's; used by [`crate::Origin::from_env`].
    pub table: String,
    /// This region's bucket; used by [`crate::Origin::from_env`].
    pub bucket: String,
    /// The primary region's bucket; equal to `bucket` in the primary region.
    pub primary_bucket: String,
    /// The secret a trusted front (CloudFront, local mode's edge router) sends in
    /// `X-Skyhost-Origin-Verify`. Only requests carrying it may set the site host
    /// (`X-Forwarded-Host`), the client address (`X-Forwarded-For`) and the country
    /// (`CloudFront-Viewer-Country`); `None`: no front, those headers are ignored.
    pub origin_verify: Option<Secret>,
    /// Whether requests without the verified front are served ([`DirectAccess`]).
    pub direct_access: DirectAccess,
    /// The HMAC secrets accepted on `/_skyhost/notify`: read at run time (Secrets
    /// Manager on AWS), or fixed values (local mode, tests; none by default).
    pub notify_secret: Secret,
    /// Bound of the in-process cache, in bytes; bodies up to an eighth of it are cached.
    pub cache_bytes: u64,
    /// The shared Redis tier, when configured (also holds basic-auth lockout counters).
    pub redis_url: Option<String>,
    /// Failed basic-auth attempts per site, client network (IPv6 by /64) and user name
    /// before lockout.
    pub auth_max_failures: u32,
    /// Window in which failures count, and how long a lockout lasts.
    pub auth_lockout: Duration,
    /// How long an unknown host is remembered as unknown.
    pub unknown_host_ttl: Duration,
    /// How often a warm instance re-reads a site record it holds, in case it missed a
    /// notification (the notification goes to one instance of the region).
    pub site_refresh: Duration,
    /// Write CloudWatch embedded-metric lines to stdout.
    pub emit_metrics: bool,
    /// Proxy rules' timeouts and whether site allowlists are honoured.
    pub proxy: crate::proxy::ProxyConfig,
    /// The domain deploy previews are served under (`SitesDomainName` on AWS,
    /// `localhost` in local mode); `None`: no previews.
    pub previews_domain: Option<String>,
}

impl std::fmt::Debug for OriginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the notification secrets.
        f.debug_struct("OriginConfig")
            .field("region", &self.region)
            .field("primary_region", &self.primary_region)
            .field("table", &self.table)
            .field("bucket", &self.bucket)
            .field("primary_bucket", &self.primary_bucket)
            .field("origin_verify", &self.origin_verify)
            .field("direct_access", &self.direct_access)
            .field("notify_secret", &self.notify_secret)
            .field("cache_bytes", &self.cache_bytes)
            .field("redis", &self.redis_url.is_some())
            .finish_non_exhaustive()
    }
}

impl OriginConfig {
    /// A configuration for `region` with defaults: no secrets, 64 MiB cache, no Redis,
    /// 5 failures per 10 minutes, metrics off.
    pub fn new(region: impl Into<String>, primary_region: impl Into<String>) -> Self {
        OriginConfig {
            region: region.into(),
            primary_region: primary_region.into(),
            table: String::new(),
            bucket: String::new(),
            primary_bucket: String::new(),
            origin_verify: None,
            direct_access: DirectAccess::Allow,
            notify_secret: Secret::fixed(Vec::new()),
            cache_bytes: 64 * 1024 * 1024,
            redis_url: None,
            auth_max_failures: 5,
            auth_lockout: Duration::from_secs(600),
            unknown_host_ttl: Duration::from_secs(10),
            site_refresh: Duration::from_secs(60),
            previews_domain: None,
            emit_metrics: false,
            proxy: crate::proxy::ProxyConfig::default(),
        }
    }

    /// Reads the variables of [`ENV_VARS`]; every one but `REDIS_URL` and
    /// `SKYHOST_ORIGIN_VERIFY_SECRET_ID` is required. Secrets are named, not given: they
    /// are read from this region's Secrets Manager when first needed.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut c = OriginConfig::new(
            env_req("SKYHOST_REGION")?,
            env_req("SKYHOST_PRIMARY_REGION")?,
        );
        c.table = env_req("SKYHOST_TABLE")?;
        c.bucket = env_req("SKYHOST_BUCKET")?;
        c.primary_bucket = env_req("SKYHOST_PRIMARY_BUCKET")?;
        let here = SdkConfigCell::shared(&c.region);
        c.notify_secret =
            Secret::secrets_manager(here.clone(), env_req("SKYHOST_NOTIFY_SECRET_ID")?);
        c.origin_verify =
            env_opt("SKYHOST_ORIGIN_VERIFY_SECRET_ID").map(|id| Secret::secrets_manager(here, id));
        c.direct_access =
            DirectAccess::parse("SKYHOST_DIRECT_ACCESS", &env_req("SKYHOST_DIRECT_ACCESS")?)?;
        if c.direct_access == DirectAccess::Refuse && c.origin_verify.is_none() {
            return Err(ConfigError(
                "SKYHOST_DIRECT_ACCESS=refuse needs SKYHOST_ORIGIN_VERIFY_SECRET_ID (the front's \
                 secret); without a front every site request would be refused"
                    .into(),
            ));
        }
        let bytes = env_req("SKYHOST_CACHE_BYTES")?;
        c.cache_bytes = bytes.trim().parse().map_err(|_| {
            ConfigError(format!(
                "SKYHOST_CACHE_BYTES must be a number of bytes, not {bytes:?}"
            ))
        })?;
        c.redis_url = env_opt("REDIS_URL");
        c.previews_domain = env_opt("SKYHOST_PREVIEWS_DOMAIN");
        c.emit_metrics = true;
        Ok(c)
    }

    /// The largest body the cache keeps (the in-process tier keeps up to an eighth).
    pub fn max_cached_body(&self) -> u64 {
        self.cache_bytes / 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let mut c = OriginConfig::new("us-west-2", "us-west-2");
        c.notify_secret = Secret::fixed(vec![b"hunter2".to_vec(), b"hunter3".to_vec()]);
        c.origin_verify = Some(Secret::fixed(vec![b"hunter4".to_vec()]));
        for secret in ["hunter2", "hunter3", "hunter4"] {
            assert!(!format!("{c:?}").contains(secret));
        }
    }
}
