//! The on-disk layout of a local-mode folder: which regions, which ports, where the
//! metadata and the buckets are. Written by `local up`, read by every `--local` command.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
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

    /// The file of the secret the edge router sends origins in `X-Skyhost-Origin-Verify`,
    /// made on first use like the notification secret (see [`secret_file`]):
    /// comma-separated values, newest first, the first one sent. Origins read it again when
    /// a value fails, so editing it rotates.
    pub fn origin_verify_secret(&self) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let p = self.dir.join("origin-verify-secret");
        secret_file(&p)?;
        Ok(p)
    }

    /// The notification secret of this folder, made on first use (see [`secret_file`]).
    pub fn secret(&self) -> Result<Vec<u8>> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        secret_file(&self.dir.join("notify-secret"))
    }
}

/// The secret kept in the file at `path`, readable by its owner only, made on first use.
/// A new one is written to a temporary file created 0600 and then linked into place, so it
/// is never readable by others, not even for a moment, and never seen half written; when
/// two processes make one at once, the first to link wins and both use it. An existing file
/// readable by others is tightened to 0600.
pub fn secret_file(path: &Path) -> Result<Vec<u8>> {
    let empty = match std::fs::read(path) {
        Ok(s) if !s.is_empty() => {
            owner_only(path)?;
            return Ok(s);
        }
        // Left by a crash of a version that wrote in place: replaced.
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let secret = hex::encode(rand::random::<[u8; 32]>()).into_bytes();
    let mut tmp = owner_only_tempfile(dir)
        .with_context(|| format!("creating a secret file in {}", dir.display()))?;
    tmp.write_all(&secret)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    let placed = if empty {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    match placed {
        Ok(_) => Ok(secret),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another process made it between our read and our link: theirs is the secret.
            drop(e);
            let s = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            owner_only(path)?;
            Ok(s)
        }
        Err(e) => Err(e.error).with_context(|| format!("writing {}", path.display())),
    }
}

/// A temporary file in `dir` that only its owner can read or write, from its creation on.
fn owner_only_tempfile(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut b = tempfile::Builder::new();
    b.prefix(".secret-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o600));
    }
    b.tempfile_in(dir)
}

/// Tightens the file at `path` to 0600 when group or others may access it.
fn owner_only(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading the permissions of {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "secret file readable by others; tightening it to 0600"
            );
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} readable by its owner only", path.display()))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The permission bits in octal, as `ls` and `chmod` spell them.
    fn mode(p: &Path) -> String {
        format!(
            "{:o}",
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        )
    }

    fn layout(dir: &Path) -> Layout {
        Layout::new(dir, vec!["us-west-2".into()], 8080).unwrap()
    }

    /// The folder holds `notify-secret` and nothing else (no temporary file left behind).
    fn only_the_secret(dir: &Path) {
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["notify-secret"]);
    }

    #[test]
    fn a_new_secret_is_created_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(&dir.path().join("state"));
        let s = l.secret().unwrap();
        assert_eq!(s.len(), 64);
        assert!(s.iter().all(u8::is_ascii_hexdigit));
        let p = l.dir.join("notify-secret");
        assert_eq!(mode(&p), "600");
        assert_eq!(std::fs::read(&p).unwrap(), s);
        assert_eq!(l.secret().unwrap(), s, "a second read makes no new secret");
        only_the_secret(&l.dir);
    }

    #[test]
    fn existing_secrets_are_kept_and_tightened() {
        // (mode before, content before, kept)
        let cases: &[(u32, &[u8], bool)] = &[
            (0o644, b"old-secret", true),
            (0o666, b"old-secret", true),
            (0o640, b"old-secret", true),
            (0o600, b"old-secret", true),
            (0o400, b"old-secret", true),
            (0o644, b"", false),
        ];
        for (before, content, kept) in cases {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("notify-secret");
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*before)).unwrap();
            let s = layout(dir.path()).secret().unwrap();
            assert_eq!(s == *content, *kept, "{before:o} {content:?}");
            assert!(!s.is_empty());
            let want = if *before & 0o077 == 0 { *before } else { 0o600 };
            assert_eq!(mode(&p), format!("{want:o}"), "{before:o} {content:?}");
            only_the_secret(dir.path());
        }
    }

    #[test]
    fn processes_making_the_secret_at_once_agree_on_one() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let secrets: Vec<Vec<u8>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| layout(dir.path()).secret().unwrap()))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(secrets.windows(2).all(|w| w[0] == w[1]), "{secrets:?}");
            assert_eq!(mode(&dir.path().join("notify-secret")), "600");
            only_the_secret(dir.path());
        }
    }
}
