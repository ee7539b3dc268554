//! Shared by the CLI's integration tests.
#![allow(dead_code)]

pub mod hostile;

use skyhost_cli::backend::{Backend, RegionHandle};
use skyhost_meta::blob::s3::S3BlobStore;
use skyhost_meta::store::dynamodb::DynamoStore;
use skyhost_meta::store::MetaStore;
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
