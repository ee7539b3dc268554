//! Section 5: a deploy of a generated 10,000-file site into local mode, then a re-deploy
//! with one file changed.

use crate::local::LocalUp;
use crate::results::Deploy;
use crate::site;
use anyhow::{bail, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// The site the deploy runs use.
pub const SITE: &str = "big";
/// Its domain.
pub const DOMAIN: &str = "big.example.com";

/// Files under `dir`, recursively (0 when it does not exist).
pub fn count_files(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// Waits until every replica bucket holds as many objects of `site` as the primary, so the
/// re-deploy is timed on a machine the asset-copier has stopped using; returns how long
/// that took.
async fn wait_replicated(up: &LocalUp, site: &str, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    let objects = |region: &str| {
        count_files(
            &up.dir
                .join("buckets")
                .join(format!("skyhost-{region}"))
                .join("objects")
                .join("sites")
                .join(site),
        )
    };
    loop {
        let primary = objects(&up.regions[0]);
        if up.regions[1..].iter().all(|r| objects(r) >= primary) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            bail!(
                "replicas did not catch up with the primary's {primary} objects within {timeout:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs section 5 with a site of `files` files.
pub async fn run(
    up: &LocalUp,
    work: &Path,
    files: usize,
    log: &mut dyn FnMut(&str),
) -> Result<Deploy> {
    let dir = work.join("site-large");
    let size = site::large_site(&dir, files, 42)?;
    log(&format!(
        "  generated {} files, {:.1} MB",
        size.files,
        size.bytes as f64 / 1e6
    ));
    let (full, full_t) = up.deploy(&dir, SITE, DOMAIN, true)?;
    log(&format!(
        "  full deploy: {:.2} s, {} files uploaded, {} objects, {:.1} MB",
        full_t.as_secs_f64(),
        full.files_uploaded,
        full.uploaded,
        full.bytes_uploaded as f64 / 1e6
    ));
    let caught_up = wait_replicated(up, SITE, Duration::from_secs(300)).await?;
    log(&format!(
        "  replicas caught up {:.1} s after the deploy returned",
        caught_up.as_secs_f64()
    ));
    site::change_one(&dir, 1)?;
    let (re, re_t) = up.deploy(&dir, SITE, DOMAIN, true)?;
    log(&format!(
        "  re-deploy, one file changed: {:.2} s, files_uploaded {}, files_reused {}",
        re_t.as_secs_f64(),
        re.files_uploaded,
        re.files_reused
    ));
    Ok(Deploy {
        files: size.files as u64,
        bytes: size.bytes,
        full_s: full_t.as_secs_f64(),
        full_uploaded: full.uploaded,
        full_bytes_uploaded: full.bytes_uploaded,
        hash_mb_s: size.bytes as f64 / 1e6 / re_t.as_secs_f64(),
        redeploy_s: re_t.as_secs_f64(),
        redeploy_files_uploaded: re.files_uploaded,
        redeploy_files_reused: re.files_reused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nested_files() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(count_files(&d.path().join("missing")), 0);
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/1"), "x").unwrap();
        std::fs::write(d.path().join("a/b/2"), "x").unwrap();
        std::fs::write(d.path().join("3"), "x").unwrap();
        assert_eq!(count_files(d.path()), 3);
    }
}
