//! Outage drills of local mode: `skyhost local outage REGION` takes a whole region out —
//! its table replica, its bucket, its origins and its notify endpoint become unreachable,
//! which is an outage, not a failing health check — and `skyhost local restore REGION`
//! brings it back. The state is a marker file per region in the local-mode folder, so the
//! running `local up` and every `--local` command see the same drill.
//!
//! The wrappers here put a region's table and bucket behind its marker: while it is out,
//! every call fails at once, as a call into a dead region would after its timeout.

use async_trait::async_trait;
use skyhost_meta::blob::fs::FsBlobStore;
use skyhost_meta::blob::{BlobBody, BlobError, BlobStore, ObjectInfo, ObjectMeta};
use skyhost_meta::store::item::{Item, Key};
use skyhost_meta::store::sqlite::SqliteStore;
use skyhost_meta::store::{ChangeBatch, ChangeFeed, MetaStore, StoreError, Write, WriteError};
use std::path::{Path, PathBuf};

/// `skyhost local outage|restore REGION`: takes `region` of the folder `dir` out, or
/// brings it back.
pub fn drill(dir: &Path, region: &str, out: bool) -> anyhow::Result<()> {
    let layout = super::layout::Layout::load_or_default(dir)?;
    if !layout.regions.iter().any(|r| r == region) {
        anyhow::bail!(
            "region {region} is not one of {}",
            layout.regions.join(", ")
        );
    }
    Outages::new(dir)
        .set(region, out)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("outages").display()))
}

/// `skyhost local hold|release REGION`: holds back `region`'s notifications and table
/// replication (it goes on serving what it has, and falls behind), or lets them go on.
pub fn hold(dir: &Path, region: &str, held: bool) -> anyhow::Result<()> {
    let layout = super::layout::Layout::load_or_default(dir)?;
    if !layout.regions.iter().any(|r| r == region) {
        anyhow::bail!(
            "region {region} is not one of {}",
            layout.regions.join(", ")
        );
    }
    if layout.primary() == region && held {
        anyhow::bail!("{region} is the primary region: it writes the changes it would wait for");
    }
    Outages::holds(dir)
        .set(region, held)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("holds").display()))
}

/// The drill state of a local-mode folder: a marker file per region.
#[derive(Clone, Debug)]
pub struct Outages {
    dir: PathBuf,
}

impl Outages {
    /// The outage drills of the folder `dir`.
    pub fn new(dir: &Path) -> Self {
        Outages {
            dir: dir.join("outages"),
        }
    }

    /// The holds of the folder `dir`: a held region's notifications and table replication
    /// wait, so it lags (`skyhost local hold`).
    pub fn holds(dir: &Path) -> Self {
        Outages {
            dir: dir.join("holds"),
        }
    }

    fn marker(&self, region: &str) -> PathBuf {
        self.dir.join(region)
    }

    /// Whether `region` is out.
    pub fn is_out(&self, region: &str) -> bool {
        self.marker(region).exists()
    }

    /// Takes `region` out (`true`) or brings it back.
    pub fn set(&self, region: &str, out: bool) -> std::io::Result<()> {
        if out {
            std::fs::create_dir_all(&self.dir)?;
            std::fs::write(self.marker(region), b"out\n")
        } else {
            match std::fs::remove_file(self.marker(region)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
    }

    /// A handle on one region's state.
    pub fn region(&self, region: &str) -> RegionGate {
        RegionGate {
            outages: self.clone(),
            region: region.to_owned(),
        }
    }
}

/// One region's drill state.
#[derive(Clone, Debug)]
pub struct RegionGate {
    outages: Outages,
    region: String,
}

impl RegionGate {
    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Whether the region is out.
    pub fn is_out(&self) -> bool {
        self.outages.is_out(&self.region)
    }

    fn why(&self) -> String {
        format!(
            "region {} is unreachable (outage drill: `skyhost local restore {}` brings it back)",
            self.region, self.region
        )
    }

    fn store(&self) -> Result<(), StoreError> {
        if self.is_out() {
            return Err(StoreError::Backend(self.why()));
        }
        Ok(())
    }
}

/// A region's table (the primary's, or a replica) behind its drill state.
#[derive(Clone)]
pub struct RegionTable {
    /// The table.
    pub inner: SqliteStore,
    /// Its region's state.
    pub gate: RegionGate,
}

#[async_trait]
impl MetaStore for RegionTable {
    async fn get_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.gate.store()?;
        self.inner.get_item(key).await
    }
    async fn query_items(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.gate.store()?;
        self.inner.query_items(pk, sk_prefix).await
    }
    async fn scan_kind(&self, kind: &str) -> Result<Vec<Item>, StoreError> {
        self.gate.store()?;
        self.inner.scan_kind(kind).await
    }
    async fn write(&self, writes: Vec<Write>) -> Result<(), WriteError> {
        self.gate.store()?;
        self.inner.write(writes).await
    }
}

#[async_trait]
impl ChangeFeed for RegionTable {
    async fn read(&self, cursor: Option<&str>, limit: usize) -> Result<ChangeBatch, StoreError> {
        self.gate.store()?;
        self.inner.read(cursor, limit).await
    }
}

/// A region's bucket behind its drill state.
#[derive(Clone)]
pub struct RegionBucket {
    /// The bucket.
    pub inner: FsBlobStore,
    /// Its region's state.
    pub gate: RegionGate,
}

impl RegionBucket {
    fn check(&self) -> Result<(), BlobError> {
        if self.gate.is_out() {
            return Err(BlobError::Backend {
                bucket: self.inner.bucket().to_owned(),
                message: self.gate.why(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for RegionBucket {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, BlobError> {
        self.check()?;
        self.inner.head(key).await
    }
    async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<BlobBody>, BlobError> {
        self.check()?;
        self.inner.get(key, range).await
    }
    async fn put(&self, key: &str, body: BlobBody, sha256: Option<&str>) -> Result<(), BlobError> {
        self.check()?;
        self.inner.put(key, body, sha256).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobError> {
        self.check()?;
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.check()?;
        self.inner.delete(key).await
    }
    // The folder store checks a hash itself: the trait's default would go by its head only.
    async fn holds(&self, key: &str, sha256: &str) -> Result<bool, BlobError> {
        self.check()?;
        self.inner.holds(key, sha256).await
    }
    async fn copy_from(&self, src: &dyn BlobStore, key: &str) -> Result<bool, BlobError> {
        self.check()?;
        self.inner.copy_from(src, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_out_region_fails_every_call_and_comes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let outages = Outages::new(tmp.path());
        let table = RegionTable {
            inner: SqliteStore::in_memory("eu-central-1").unwrap(),
            gate: outages.region("eu-central-1"),
        };
        let bucket = RegionBucket {
            inner: FsBlobStore::open(tmp.path(), "b", "eu-central-1").unwrap(),
            gate: outages.region("eu-central-1"),
        };
        assert!(table.region_status("eu-central-1").await.is_ok());
        outages.set("eu-central-1", true).unwrap();
        assert!(!outages.is_out("us-west-2"));
        let e = table.region_status("eu-central-1").await.unwrap_err();
        assert!(
            e.to_string().contains("region eu-central-1 is unreachable"),
            "{e}"
        );
        assert!(table.read(None, 10).await.is_err());
        assert!(bucket.head("sites/x").await.is_err());
        outages.set("eu-central-1", false).unwrap();
        outages.set("eu-central-1", false).unwrap();
        assert!(table.region_status("eu-central-1").await.is_ok());
        assert!(bucket.head("sites/x").await.unwrap().is_none());
    }
}
