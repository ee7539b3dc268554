//! Shared by the CLI's integration tests.
#![allow(dead_code)]

pub mod hostile;

use skyhost_cli::backend::{AwsOptions, Backend, RegionHandle};
use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::blob::BlobStore;
use skyhost_meta::store::dynamodb::DynamoStore;
use skyhost_meta::store::MetaStore;
use skyhost_meta::{keys, DeploymentId, Manifest, SiteId};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A backend of one region, `region`, on `meta` and `bucket`: what the fault tests reach
/// through their proxy and directly.
pub fn one_region(region: &str, meta: DynamoStore, bucket: S3BlobStore) -> Backend {
    let meta: Arc<dyn MetaStore> = Arc::new(meta);
    Backend {
        meta: meta.clone(),
        primary: RegionHandle {
            name: region.into(),
            bucket: Arc::new(bucket),
            endpoint: None,
            table: meta,
        },
        replicas: Vec::new(),
        public_url: None,
        custom_domains: None,
        sites_domain: None,
        previews: None,
    }
}

/// The regions of the three-region tests on moto; the first is the primary.
pub const REGIONS: [&str; 3] = ["us-west-2", "eu-central-1", "ap-southeast-1"];

/// A backend of the three [`REGIONS`] on moto: a fresh table, a fresh bucket per region,
/// previews under `sites_domain` when given.
pub async fn three_regions(sites_domain: Option<&str>) -> Backend {
    let table = skyhost_testkit::dynamo(REGIONS[0]).await.table().to_owned();
    let mut buckets = Vec::new();
    for r in REGIONS {
        buckets.push(format!("{r}={}", skyhost_testkit::s3(r).await.bucket()));
    }
    Backend::aws(&AwsOptions {
        primary_region: Some(REGIONS[0].into()),
        table: Some(table),
        buckets: Some(buckets.join(",")),
        sites_domain: sites_domain.map(str::to_owned),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The text of a deployment's manifest in the primary bucket.
pub async fn manifest_text(b: &Backend, site: &SiteId, d: &DeploymentId) -> String {
    let body = b
        .primary
        .bucket
        .get(&keys::manifest(site, d), None)
        .await
        .unwrap()
        .unwrap()
        .collect()
        .await
        .unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

/// A deployment's manifest in the primary bucket.
pub async fn manifest(b: &Backend, site: &SiteId, d: &DeploymentId) -> Manifest {
    serde_json::from_str(&manifest_text(b, site, d).await).unwrap()
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A copy of `examples/site` under `tmp`, free to change.
pub fn example_site(tmp: &Path) -> PathBuf {
    let dir = tmp.join("site");
    copy_dir(&skyhost_testkit::repo_path("examples/site"), &dir);
    dir
}

pub mod local;
