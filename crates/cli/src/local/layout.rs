//! The on-disk layout of a local-mode folder: which regions, which ports, where the
//! metadata and the buckets are. Written by `local up`, read by every `--local` command.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The default regions, primary first.
pub const DEFAULT_REGIONS: &[&str] = &["us-west-2", "eu-central-1", "ap-southeast-1"];

/// A local-mode folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Layout {
    /// The folder (not stored).
    #[serde(skip)]
    pub dir: PathBuf,
    /// Regions, primary first.
    pub regions: Vec<String>,
    /// The edge router's port; region `i`'s origin listens on `port + 1 + i`.
    pub port: u16,
}

impl Layout {
    /// A layout for `dir`.
    pub fn new(dir: &Path, regions: Vec<String>, port: u16) -> Result<Self> {
        if regions.is_empty() {
            bail!("at least one region is needed");
        }
        for r in &regions {
            if r.is_empty()
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                bail!("invalid region name {r:?}");
            }
        }
        if usize::from(port) + regions.len() >= 65535 {
            bail!(
                "port {port} leaves no room for {} origin ports after it",
                regions.len()
            );
        }
        Ok(Layout {
            dir: dir.to_owned(),
            regions,
            port,
        })
    }

    fn file(dir: &Path) -> PathBuf {
        dir.join("local.json")
    }

    /// Reads the layout `local up` wrote, or the defaults when there is none.
    pub fn load_or_default(dir: &Path) -> Result<Self> {
        match std::fs::read(Self::file(dir)) {
            Ok(b) => {
                let mut l: Layout = serde_json::from_slice(&b)
                    .with_context(|| format!("parsing {}", Self::file(dir).display()))?;
                l.dir = dir.to_owned();
                Ok(l)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                Layout::new(
                    dir,
                    DEFAULT_REGIONS.iter().map(|s| s.to_string()).collect(),
                    8080,
                )
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", Self::file(dir).display())),
        }
    }

    /// Writes the layout.
    pub fn save(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join("local.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, Self::file(&self.dir))?;
        Ok(())
    }

    /// The primary region.
    pub fn primary(&self) -> &str {
        &self.regions[0]
    }

    /// The SQLite file of the metadata store.
    pub fn meta_path(&self) -> PathBuf {
        self.dir.join("meta.db")
    }

    /// The SQLite file of a region's table replica (the primary's is [`Layout::meta_path`]).
    pub fn table_path(&self, region: &str) -> PathBuf {
        if region == self.primary() {
            self.meta_path()
        } else {
            self.dir.join(format!("meta-{region}.db"))
        }
    }

    /// Where `local up` writes the ports of each region's origin instances (for tests and
    /// for looking at one instance).
    pub fn instances_path(&self) -> PathBuf {
        self.dir.join("instances.json")
    }

    /// The folder holding one folder per bucket.
    pub fn buckets_dir(&self) -> PathBuf {
        self.dir.join("buckets")
    }

    /// A region's bucket name.
    pub fn bucket_name(region: &str) -> String {
        format!("skyhost-{region}")
    }

    /// The port of region `i`'s origin front (its instances sit behind it).
    pub fn origin_port(&self, i: usize) -> u16 {
        self.port + 1 + u16::try_from(i).unwrap_or(0)
    }

    /// Where feed cursors are kept, so a restart neither loses nor repeats work.
    pub fn cursor_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("cursor-{name}"))
    }

    /// The notification secret of this folder, made on first use.
    pub fn secret(&self) -> Result<Vec<u8>> {
        let p = self.dir.join("notify-secret");
        match std::fs::read(&p) {
            Ok(s) if !s.is_empty() => Ok(s),
            _ => {
                let s = hex::encode(rand::random::<[u8; 32]>()).into_bytes();
                std::fs::create_dir_all(&self.dir)?;
                std::fs::write(&p, &s)?;
                Ok(s)
            }
        }
    }
}
