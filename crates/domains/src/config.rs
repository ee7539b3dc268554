//! The domains function's environment (docs/config.md).

use crate::aws::AwsCloud;
use crate::flow::{Flow, Setup};
use crate::state::Platform;
use skyhost_meta::config::{env_opt, env_req, ConfigError};
use skyhost_meta::store::dynamodb::DynamoStore;
use std::sync::Arc;

/// Every variable the domains function reads.
pub const ENV_VARS: [&str; 7] = [
    "SKYHOST_PRIMARY_REGION",
    "SKYHOST_TABLE",
    "SKYHOST_REGIONS",
    "SKYHOST_API_NAME",
    "SKYHOST_API_STAGE",
    "SKYHOST_ORIGIN_NAME",
    "SKYHOST_DISTRIBUTION_ID",
];

/// The regions of `SKYHOST_REGIONS` (comma-separated, primary first, empty entries
/// skipped), or why they are unusable.
pub fn parse_regions(raw: &str) -> Result<Vec<String>, ConfigError> {
    let mut regions: Vec<String> = Vec::new();
    for r in raw.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let valid = r.split('-').count() >= 3
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(ConfigError(format!(
                "SKYHOST_REGIONS: {r:?} is not a region name (e.g. us-west-2)"
            )));
        }
        if !regions.iter().any(|x| x == r) {
            regions.push(r.to_string());
        }
    }
    if regions.is_empty() {
        return Err(ConfigError("SKYHOST_REGIONS names no region".into()));
    }
    Ok(regions)
}

/// The flow the domains function runs, from its environment.
pub async fn from_env() -> Result<Flow, ConfigError> {
    let primary = env_req("SKYHOST_PRIMARY_REGION")?;
    let table = env_req("SKYHOST_TABLE")?;
    let regions = parse_regions(&env_req("SKYHOST_REGIONS")?)?;
    if regions.first() != Some(&primary) {
        return Err(ConfigError(format!(
            "SKYHOST_REGIONS must start with the primary region {primary}"
        )));
    }
    let distribution = env_opt("SKYHOST_DISTRIBUTION_ID");
    let conf = skyhost_meta::config::aws(&primary).await;
    let meta = DynamoStore::new(skyhost_meta::config::dynamodb(&conf), &table);
    let setup = Setup {
        platform: if distribution.is_some() {
            Platform::CloudFront
        } else {
            Platform::Regional
        },
        regions,
        origin_name: Some(env_req("SKYHOST_ORIGIN_NAME")?),
    };
    let cloud = AwsCloud::new(
        conf,
        distribution,
        env_req("SKYHOST_API_NAME")?,
        env_req("SKYHOST_API_STAGE")?,
    );
    Ok(Flow::new(Arc::new(meta), Arc::new(cloud), setup))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_table() {
        let cases: Vec<(&str, Result<Vec<&str>, &str>)> = vec![
            ("us-west-2", Ok(vec!["us-west-2"])),
            ("us-west-2,", Ok(vec!["us-west-2"])),
            (
                "us-west-2, eu-central-1,us-west-2",
                Ok(vec!["us-west-2", "eu-central-1"]),
            ),
            ("", Err("names no region")),
            ("us-west-2,EU", Err("\"EU\" is not a region name")),
        ];
        for (raw, want) in cases {
            match (parse_regions(raw), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{raw}"),
                (Err(e), Err(want)) => assert!(e.0.contains(want), "{raw}: {e}"),
                (got, want) => panic!("{raw}: got {got:?}, want {want:?}"),
            }
        }
    }
}
