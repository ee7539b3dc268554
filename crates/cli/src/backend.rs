//! Where a command acts: AWS (the primary region's table and every region's bucket) or
//! the embedded backends of local mode. Every command is written once against this.

use crate::local::drill::{Outages, RegionBucket, RegionTable};
use crate::local::layout::Layout;
use anyhow::{bail, Context, Result};
use skyhost_meta::blob::fs::FsBlobStore;
use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::store::dynamodb::DynamoStore;
use skyhost_meta::store::sqlite::SqliteStore;
use skyhost_meta::store::MetaStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How long a writing command waits for the primary region before giving up.
const PRIMARY_PROBE: std::time::Duration = std::time::Duration::from_secs(5);

/// One region as a command sees it.
#[derive(Clone)]
pub struct RegionHandle {
    /// The region's name.
    pub name: String,
    /// Its bucket.
    pub bucket: Arc<dyn BlobStore>,
    /// The base URL of its origin (health and status checks), when known.
    pub endpoint: Option<String>,
    /// Its replica of the sites table, read when the primary's does not answer.
    pub table: Arc<dyn MetaStore>,
}

/// The metadata store and every region's bucket.
#[derive(Clone)]
pub struct Backend {
    /// The sites table (in the primary region).
    pub meta: Arc<dyn MetaStore>,
    /// The primary region.
    pub primary: RegionHandle,
    /// The other regions.
    pub replicas: Vec<RegionHandle>,
    /// Where visitors reach the sites (printed after a deploy).
    pub public_url: Option<String>,
    /// Custom domains with TLS (AWS, when configured).
    pub custom_domains: Option<skyhost_domains::Flow>,
    /// Names directly under it are covered by the platform's wildcard certificate.
    pub sites_domain: Option<String>,
    /// Where deploy previews are served, when known.
    pub previews: Option<Previews>,
}

/// Where deploy previews are served: `{base}{id}--{site}.{domain}{port}/`.
#[derive(Clone, Debug)]
pub struct Previews {
    /// The previews domain.
    pub domain: String,
    /// `https://`, or `http://` in local mode.
    pub base: String,
    /// `:PORT` in local mode, else empty.
    pub port: String,
}

impl Backend {
    /// The URL of a deployment's preview, when the previews domain is known and the
    /// site's name leaves room for the deployment id in one DNS label.
    pub fn preview_url(
        &self,
        site: &skyhost_meta::SiteId,
        deployment: &skyhost_meta::DeploymentId,
    ) -> Option<String> {
        let p = self.previews.as_ref()?;
        let host = skyhost_meta::preview::host(deployment, site, &p.domain)?;
        Some(format!("{}{host}{}/", p.base, p.port))
    }

    /// Every region, primary first.
    pub fn regions(&self) -> impl Iterator<Item = &RegionHandle> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    /// The embedded backends of a local-mode folder (created by `skyhost local up`, or
    /// with the default regions when it was never started).
    pub fn local(dir: &Path) -> Result<Self> {
        let layout = Layout::load_or_default(dir)?;
        // Behind the drill state, as the running `local up` sees them: a command acting on
        // a region that is out fails at once.
        let outages = Outages::new(dir);
        let meta = RegionTable {
            inner: SqliteStore::open(&layout.meta_path(), layout.primary())
                .with_context(|| format!("opening {}", layout.meta_path().display()))?,
            gate: outages.region(layout.primary()),
        };
        let handle = |i: usize, region: &str| -> Result<RegionHandle> {
            Ok(RegionHandle {
                name: region.to_owned(),
                bucket: Arc::new(RegionBucket {
                    inner: FsBlobStore::open(
                        &layout.buckets_dir(),
                        &Layout::bucket_name(region),
                        region,
                    )?,
                    gate: outages.region(region),
                }),
                endpoint: Some(format!("http://127.0.0.1:{}", layout.origin_port(i))),
                table: Arc::new(RegionTable {
                    inner: SqliteStore::open(&layout.table_path(region), region).with_context(
                        || format!("opening {}", layout.table_path(region).display()),
                    )?,
                    gate: outages.region(region),
                }),
            })
        };
        let mut regions = layout
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| handle(i, r))
            .collect::<Result<Vec<_>>>()?;
        if regions.is_empty() {
            bail!("{}: no regions configured", dir.display());
        }
        let primary = regions.remove(0);
        Ok(Backend {
            meta: Arc::new(meta),
            primary,
            replicas: regions,
            public_url: Some(format!("http://127.0.0.1:{}", layout.port)),
            custom_domains: None,
            sites_domain: None,
            // `*.localhost` opens in a browser as it is.
            previews: Some(Previews {
                domain: "localhost".into(),
                base: "http://".into(),
                port: format!(":{}", layout.port),
            }),
        })
    }

    /// Fails within seconds, with what to do, when the primary region's table does not
    /// answer: deploy, rollback and domains write only there, and must write nothing
    /// rather than half of a change.
    pub async fn require_primary(&self) -> Result<()> {
        let probe = self.meta.region_status(&self.primary.name);
        let failure = match tokio::time::timeout(PRIMARY_PROBE, probe).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", PRIMARY_PROBE.as_secs()),
        };
        bail!(
            "the primary region {} is unreachable ({failure}); nothing was written. Sites are still served by the other regions; deploy, rollback and domain changes need the primary, the only writer: retry once it is back",
            self.primary.name
        )
    }

    /// A table to read from: the primary's when it answers, else the first replica's that
    /// does (with a line saying so), as every region's origin serves from its own. Only
    /// reading commands use this; writes go to the primary alone ([`Backend::require_primary`]).
    pub async fn readable_meta(&self) -> Result<Arc<dyn MetaStore>> {
        let answers = |t: Arc<dyn MetaStore>, region: String| async move {
            matches!(
                tokio::time::timeout(PRIMARY_PROBE, t.region_status(&region)).await,
                Ok(Ok(_))
            )
        };
        if answers(self.meta.clone(), self.primary.name.clone()).await {
            return Ok(self.meta.clone());
        }
        for r in &self.replicas {
            if answers(r.table.clone(), r.name.clone()).await {
                eprintln!(
                    "note: the primary region {} is unreachable; read from the {} replica of the sites table",
                    self.primary.name, r.name
                );
                return Ok(r.table.clone());
            }
        }
        bail!(
            "no region's sites table answers (the primary is {})",
            self.primary.name
        )
    }

    /// The AWS backends named by [`AwsOptions`].
    pub async fn aws(o: &AwsOptions) -> Result<Self> {
        let o = o.resolved()?;
        let primary_conf = skyhost_meta::config::aws(&o.primary_region).await;
        let meta = DynamoStore::new(skyhost_meta::config::dynamodb(&primary_conf), &o.table);
        let mut regions = Vec::new();
        for (region, bucket) in &o.buckets {
            let conf = skyhost_meta::config::aws(region).await;
            regions.push(RegionHandle {
                name: region.clone(),
                bucket: Arc::new(S3BlobStore::new(skyhost_meta::config::s3(&conf), bucket)),
                endpoint: o
                    .endpoints
                    .iter()
                    .find(|(r, _)| r == region)
                    .map(|(_, e)| e.clone()),
                table: Arc::new(DynamoStore::new(
                    skyhost_meta::config::dynamodb(&conf),
                    &o.table,
                )),
            });
        }
        let i = regions
            .iter()
            .position(|r| r.name == o.primary_region)
            .with_context(|| {
                format!(
                    "no bucket configured for the primary region {}",
                    o.primary_region
                )
            })?;
        let primary = regions.remove(i);
        let meta: Arc<dyn MetaStore> = Arc::new(meta);
        let custom_domains = o.origin_name.clone().map(|origin_name| {
            let names = std::iter::once(&primary)
                .chain(regions.iter())
                .map(|r| r.name.clone())
                .collect();
            custom_domains(&o, &primary_conf, meta.clone(), names, origin_name)
        });
        Ok(Backend {
            meta,
            primary,
            replicas: regions,
            public_url: o.public_url.clone(),
            custom_domains,
            sites_domain: o.sites_domain.clone(),
            // The stacks serve previews under `SitesDomainName` unless told otherwise.
            previews: o.previews_domain.or(o.sites_domain).map(|domain| Previews {
                domain,
                base: "https://".into(),
                port: String::new(),
            }),
        })
    }
}

/// The custom-domain flow of an AWS platform: CloudFront when a distribution is named.
fn custom_domains(
    o: &Resolved,
    conf: &aws_config::SdkConfig,
    meta: Arc<dyn MetaStore>,
    regions: Vec<String>,
    origin_name: String,
) -> skyhost_domains::Flow {
    use skyhost_domains::{aws::AwsCloud, Platform, Setup};
    let platform = match o.distribution_id {
        Some(_) => Platform::CloudFront,
        None => Platform::Regional,
    };
    let cloud = AwsCloud::new(
        conf.clone(),
        o.distribution_id.clone(),
        o.api_name.clone(),
        API_STAGE.to_string(),
    );
    let setup = Setup {
        platform,
        regions,
        origin_name: Some(origin_name),
    };
    skyhost_domains::Flow::new(meta, Arc::new(cloud), setup)
}

/// The stage of the origin API (template.yaml's `OriginApi`).
const API_STAGE: &str = "live";
/// The origin API's name by default: `{stack name}-origin` of the `skyhost` stacks.
const DEFAULT_API_NAME: &str = "skyhost-origin";

/// AWS settings: flags, else environment, else the config file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AwsOptions {
    /// The primary region (holds the sites table).
    #[arg(long, env = "SKYHOST_PRIMARY_REGION", global = true)]
    pub primary_region: Option<String>,
    /// The sites table.
    #[arg(long, env = "SKYHOST_TABLE", global = true)]
    pub table: Option<String>,
    /// Every region's bucket: `us-west-2=bucket,eu-central-1=bucket2`.
    #[arg(long, env = "SKYHOST_BUCKETS", global = true)]
    pub buckets: Option<String>,
    /// Every region's origin base URL: `us-west-2=https://…,…` (status and health).
    #[arg(long, env = "SKYHOST_REGION_ENDPOINTS", global = true)]
    pub endpoints: Option<String>,
    /// The public URL sites are reached at (printed after deploys).
    #[arg(long, env = "SKYHOST_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Custom domains with TLS: the latency-routed origin name (the stacks' `DomainName`).
    #[arg(long, env = "SKYHOST_ORIGIN_NAME", global = true)]
    pub origin_name: Option<String>,
    /// With CloudFront: the platform's distribution (the primary stack's `DistributionId`).
    #[arg(long, env = "SKYHOST_DISTRIBUTION_ID", global = true)]
    pub distribution_id: Option<String>,
    /// The origin REST API's name in every region (default `skyhost-origin`).
    #[arg(long, env = "SKYHOST_API_NAME", global = true)]
    pub api_name: Option<String>,
    /// The stacks' `SitesDomainName`: names directly under it need no certificate of their own.
    #[arg(long, env = "SKYHOST_SITES_DOMAIN", global = true)]
    pub sites_domain: Option<String>,
    /// The domain deploy previews are served under (`SitesDomainName` on AWS): each
    /// deployment at `{id}--{site}.{this}`.
    #[arg(long, env = "SKYHOST_PREVIEWS_DOMAIN", global = true)]
    pub previews_domain: Option<String>,
    /// A TOML file with the same keys (primary_region, table, buckets, endpoints,
    /// public_url, origin_name, distribution_id, api_name, sites_domain,
    /// previews_domain).
    #[arg(long, env = "SKYHOST_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// [`AwsOptions`] with every required value present.
pub struct Resolved {
    primary_region: String,
    table: String,
    buckets: Vec<(String, String)>,
    endpoints: Vec<(String, String)>,
    public_url: Option<String>,
    origin_name: Option<String>,
    distribution_id: Option<String>,
    api_name: String,
    sites_domain: Option<String>,
    previews_domain: Option<String>,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    primary_region: Option<String>,
    table: Option<String>,
    buckets: Option<String>,
    endpoints: Option<String>,
    public_url: Option<String>,
    origin_name: Option<String>,
    distribution_id: Option<String>,
    api_name: Option<String>,
    sites_domain: Option<String>,
    previews_domain: Option<String>,
}

impl AwsOptions {
    fn resolved(&self) -> Result<Resolved> {
        let file: FileConfig = match &self.config {
            Some(p) => toml::from_str(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("parsing {}", p.display()))?,
            None => FileConfig::default(),
        };
        let pick = |a: &Option<String>, b: Option<String>, what: &str| -> Result<String> {
            a.clone().or(b).with_context(|| {
                format!("{what} is not set: pass --{what}, set its SKYHOST_ variable, or name it in --config (or use --local DIR)", what = what.replace('_', "-"))
            })
        };
        let buckets = pick(&self.buckets, file.buckets, "buckets")?;
        Ok(Resolved {
            primary_region: pick(&self.primary_region, file.primary_region, "primary_region")?,
            table: pick(&self.table, file.table, "table")?,
            buckets: skyhost_meta::config::parse_pairs("buckets", &buckets)?,
            endpoints: match self.endpoints.clone().or(file.endpoints) {
                Some(e) => skyhost_meta::config::parse_pairs("endpoints", &e)?,
                None => Vec::new(),
            },
            public_url: self.public_url.clone().or(file.public_url),
            origin_name: self.origin_name.clone().or(file.origin_name),
            distribution_id: self.distribution_id.clone().or(file.distribution_id),
            api_name: self
                .api_name
                .clone()
                .or(file.api_name)
                .unwrap_or_else(|| DEFAULT_API_NAME.to_string()),
            sites_domain: self.sites_domain.clone().or(file.sites_domain),
            previews_domain: self.previews_domain.clone().or(file.previews_domain),
        })
    }
}
