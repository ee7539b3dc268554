//! Configuration from the environment (the variables `template.yaml` sets) and the AWS
//! clients built from it once at init. Endpoint overrides for emulators come only from
//! the standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables.

use crate::sdk_http::SharedConnectorClient;
use crate::tls::Roots;
/// The SDK configuration the functions build their clients from.
pub use aws_config::SdkConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// A missing or malformed setting.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// A non-empty environment variable.
pub fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A required environment variable.
pub fn env_req(name: &str) -> Result<String, ConfigError> {
    env_opt(name).ok_or_else(|| ConfigError(format!("{name} must be set")))
}

/// Parses `a=x,b=y` (region → value lists of the template).
pub fn parse_pairs(name: &str, raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| ConfigError(format!("{name}: expected region=value, got {p:?}")))
        })
        .collect()
}

/// True inside a Lambda function.
pub fn in_lambda() -> bool {
    env_opt("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// The shared SDK configuration for `region` (credentials, retries, endpoint overrides).
/// Load it once per process and derive other regions with [`for_region`].
pub async fn aws(region: &str) -> SdkConfig {
    aws_with_roots(region, Roots::for_environment()).await
}

/// [`aws`] with the trust store chosen by the caller.
pub async fn aws_with_roots(region: &str, roots: Roots) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_owned()));
    match SharedConnectorClient::new(roots) {
        Ok(client) => loader = loader.http_client(SharedHttpClient::new(client)),
        // The SDK's own client still works; it is only slower to start.
        Err(e) => tracing::warn!(error = %e, "falling back to the SDK's default HTTP client"),
    }
    if in_lambda() {
        // A function has no ~/.aws files: looking for them is init time spent on nothing.
        // (The set may not be empty; one empty in-memory config file stands in.)
        use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
        loader = loader.profile_files(
            EnvConfigFiles::builder()
                .with_contents(EnvConfigFileKind::Config, "")
                .build(),
        );
        // The execution role's keys are in the environment: reading them directly spares
        // init the STS client (and its TLS connector) the default chain would build.
        if env_opt("AWS_ACCESS_KEY_ID").is_some() {
            loader = loader.credentials_provider(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            );
        }
    }
    loader.load().await
}

/// The same configuration for another region: shares the HTTP client and the
/// credentials cache, so no second connector (and trust store) is built at init.
pub fn for_region(conf: &SdkConfig, region: &str) -> SdkConfig {
    conf.to_builder()
        .region(Region::new(region.to_owned()))
        .build()
}

/// The SDK configuration of a region, loaded on its first use ([`aws`]), or derived then
/// from another region's ([`for_region`]); clones share it. A cold origin whose first
/// requests the region's Redis answers loads none.
#[derive(Clone)]
pub struct SdkConfigCell(std::sync::Arc<ConfigCell>);

struct ConfigCell {
    source: ConfigSource,
    conf: tokio::sync::OnceCell<SdkConfig>,
}

// One per region, behind an Arc: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum ConfigSource {
    Given(SdkConfig),
    Load(String),
    Derive(SdkConfigCell, String),
}

impl std::fmt::Debug for SdkConfigCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.is_loaded() {
            "loaded"
        } else {
            "deferred"
        };
        f.debug_tuple("SdkConfigCell").field(&state).finish()
    }
}

impl SdkConfigCell {
    fn with(source: ConfigSource) -> Self {
        SdkConfigCell(std::sync::Arc::new(ConfigCell {
            source,
            conf: tokio::sync::OnceCell::new(),
        }))
    }

    /// A configuration loaded already.
    pub fn ready(conf: SdkConfig) -> Self {
        Self::with(ConfigSource::Given(conf))
    }

    /// `region`'s configuration, loaded by [`aws`] on first use.
    pub fn load(region: &str) -> Self {
        Self::with(ConfigSource::Load(region.to_owned()))
    }

    /// The process's one configuration of `region`, loaded on first use: every caller
    /// naming the region shares it, so its HTTP connector and credentials are loaded once.
    pub fn shared(region: &str) -> Self {
        static SHARED: std::sync::Mutex<Vec<(String, SdkConfigCell)>> =
            std::sync::Mutex::new(Vec::new());
        // Entries are only ever pushed whole, so a poisoned lock still holds a good list.
        let mut shared = SHARED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, cell)) = shared.iter().find(|(r, _)| r == region) {
            return cell.clone();
        }
        let cell = Self::load(region);
        shared.push((region.to_owned(), cell.clone()));
        cell
    }

    /// This configuration for another region ([`for_region`]), derived on first use.
    pub fn for_region(&self, region: &str) -> Self {
        Self::with(ConfigSource::Derive(self.clone(), region.to_owned()))
    }

    /// The configuration, loaded now if this is its first use.
    pub async fn get(&self) -> &SdkConfig {
        let cell = &self.0.conf;
        match &self.0.source {
            ConfigSource::Given(conf) => conf,
            ConfigSource::Load(region) => cell.get_or_init(|| aws(region)).await,
            ConfigSource::Derive(base, region) => {
                // Boxed: the base's `get` is this function again.
                cell.get_or_init(|| async { for_region(Box::pin(base.get()).await, region) })
                    .await
            }
        }
    }

    /// Whether the configuration is loaded yet.
    pub fn is_loaded(&self) -> bool {
        matches!(self.0.source, ConfigSource::Given(_)) || self.0.conf.initialized()
    }
}

/// An SDK client ready at init, or the configuration to build it from on first use.
///
/// The origin defers its clients: building one parses its SDK crate's partition table,
/// the largest part of its start, and an instance whose first requests the region's Redis
/// answers never needs either client.
pub struct ClientCell<C>(std::sync::Arc<Cell<C>>);

enum Cell<C> {
    Ready(C),
    Deferred {
        conf: SdkConfigCell,
        build: fn(&SdkConfig) -> C,
        client: tokio::sync::OnceCell<C>,
    },
}

impl<C> Clone for ClientCell<C> {
    fn clone(&self) -> Self {
        ClientCell(self.0.clone())
    }
}

impl<C> std::fmt::Debug for ClientCell<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.is_built() { "built" } else { "deferred" };
        f.debug_tuple("ClientCell").field(&state).finish()
    }
}

impl<C> ClientCell<C> {
    /// A client built already.
    pub fn ready(client: C) -> Self {
        ClientCell(std::sync::Arc::new(Cell::Ready(client)))
    }

    /// A client `build` makes from `conf` when it is first asked for.
    pub fn deferred(conf: SdkConfigCell, build: fn(&SdkConfig) -> C) -> Self {
        ClientCell(std::sync::Arc::new(Cell::Deferred {
            conf,
            build,
            client: tokio::sync::OnceCell::new(),
        }))
    }

    /// The client, built now (and its configuration loaded) if this is its first use.
    pub async fn get(&self) -> &C {
        match self.0.as_ref() {
            Cell::Ready(c) => c,
            Cell::Deferred {
                conf,
                build,
                client,
            } => {
                client
                    .get_or_init(|| async { build(conf.get().await) })
                    .await
            }
        }
    }

    /// Whether the client exists yet.
    pub fn is_built(&self) -> bool {
        match self.0.as_ref() {
            Cell::Ready(_) => true,
            Cell::Deferred { client, .. } => client.initialized(),
        }
    }
}

/// An S3 client; path-style addressing when an endpoint override (an emulator) is set,
/// since emulators do not serve virtual-hosted bucket names.
pub fn s3(conf: &SdkConfig) -> aws_sdk_s3::Client {
    let overridden = env_opt("AWS_ENDPOINT_URL_S3").is_some() || conf.endpoint_url().is_some();
    let c = aws_sdk_s3::config::Builder::from(conf)
        .force_path_style(overridden)
        .build();
    aws_sdk_s3::Client::from_conf(c)
}

/// A Secrets Manager client.
pub fn secretsmanager(conf: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(conf)
}

/// A DynamoDB client.
pub fn dynamodb(conf: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(conf)
}

/// A DynamoDB Streams client.
pub fn dynamodb_streams(conf: &SdkConfig) -> aws_sdk_dynamodbstreams::Client {
    aws_sdk_dynamodbstreams::Client::new(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn other_regions_share_the_loaded_configuration() {
        let base = aws("us-west-2").await;
        let eu = for_region(&base, "eu-central-1");
        assert_eq!(eu.region().map(|r| r.as_ref()), Some("eu-central-1"));
        assert_eq!(base.region().map(|r| r.as_ref()), Some("us-west-2"));
        assert_eq!(eu.endpoint_url(), base.endpoint_url());
    }

    #[tokio::test]
    async fn a_deferred_client_is_built_once_on_first_use() {
        static BUILT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn build(conf: &SdkConfig) -> String {
            BUILT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            conf.region().map(|r| r.to_string()).unwrap_or_default()
        }
        let here = SdkConfigCell::load("eu-central-1");
        let primary = here.for_region("us-west-2");
        let cell = ClientCell::deferred(primary.clone(), build);
        let copy = cell.clone();
        assert!(!cell.is_built());
        assert!(
            !here.is_loaded() && !primary.is_loaded(),
            "nothing is loaded before use"
        );
        assert_eq!(BUILT.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(copy.get().await, "us-west-2");
        assert!(cell.is_built(), "clones share the client");
        assert!(here.is_loaded(), "a derived configuration loads its base");
        assert_eq!(cell.get().await, "us-west-2");
        assert_eq!(BUILT.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(ClientCell::ready(1u8).is_built());
        let given = SdkConfigCell::ready(aws("ap-southeast-1").await);
        assert!(given.is_loaded());
        assert_eq!(
            given.get().await.region().map(|r| r.as_ref()),
            Some("ap-southeast-1")
        );
    }

    #[tokio::test]
    async fn a_region_has_one_shared_configuration() {
        let a = SdkConfigCell::shared("sa-east-1");
        let b = SdkConfigCell::shared("sa-east-1");
        assert!(
            !a.is_loaded() && !b.is_loaded(),
            "nothing is loaded before use"
        );
        a.get().await;
        assert!(b.is_loaded(), "loading one loads the other");
        assert!(!SdkConfigCell::shared("af-south-1").is_loaded());
    }

    #[test]
    fn pairs() {
        let p = parse_pairs("X", "us-west-2=a, eu-central-1=b,").unwrap();
        assert_eq!(
            p,
            vec![
                ("us-west-2".to_owned(), "a".to_owned()),
                ("eu-central-1".to_owned(), "b".to_owned())
            ]
        );
        assert!(parse_pairs("X", "us-west-2").is_err());
        assert!(parse_pairs("X", "=a").is_err());
    }
}
