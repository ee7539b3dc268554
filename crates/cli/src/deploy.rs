//! `skyhost deploy`: hash the folder, validate its rules, upload only the blobs the
//! primary bucket lacks, write the immutable manifest and deployment record, then
//! activate with a conditional write. Nothing is visible until that last write.

use crate::activate::{update_site, Change};
use crate::backend::Backend;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use skyhost_meta::blob::{BlobBody, BlobError, BlobStore};
use skyhost_meta::{
    keys, BlobHash, Deployment, DeploymentId, DeploymentState, Domain, Encoding, FileEntry,
    Manifest, Site, SiteId,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Files at the root that configure the site and are not served.
pub const RULE_FILES: &[&str] = &["_redirects", "_headers", "skyhost.toml"];
/// Names never deployed (version control and desktop litter).
const SKIPPED: &[&str] = &[".git", ".hg", ".svn", ".DS_Store", "Thumbs.db"];
/// Files smaller than this are not worth precompressing.
const MIN_COMPRESS: u64 = 256;
/// Files larger than this are not precompressed (they are rarely text).
const MAX_COMPRESS: u64 = 32 * 1024 * 1024;
/// Uploads in flight at once.
const CONCURRENCY: usize = 16;

/// What to deploy.
pub struct DeployOptions {
    /// The folder.
    pub dir: PathBuf,
    /// The site.
    pub site: SiteId,
    /// Domains to add to the site.
    pub domains: Vec<Domain>,
    /// A note kept with the deployment.
    pub message: Option<String>,
    /// Activate once uploaded.
    pub activate: bool,
    /// Activate only once every replica bucket holds every blob.
    pub wait_replicas: bool,
    /// How long to wait for replicas.
    pub wait_timeout: Duration,
    /// No progress output.
    pub quiet: bool,
}

/// What a deploy did.
#[derive(Debug, serde::Serialize)]
pub struct DeployReport {
    /// The new deployment.
    pub deployment: DeploymentId,
    /// Files in the deployment.
    pub files: usize,
    /// Distinct files whose content the bucket lacked and that were uploaded.
    pub files_uploaded: usize,
    /// Distinct files whose content the bucket already had.
    pub files_reused: usize,
    /// Blobs uploaded (identity bodies and precompressed variants).
    pub uploaded: usize,
    /// Blobs the bucket already had.
    pub reused: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// The site record after activation, if activated.
    pub site: Option<Site>,
}

struct Scanned {
    path: String,
    abs: PathBuf,
    size: u64,
    hash: BlobHash,
}

/// The folder's files (hashed in parallel) and its rule files' texts.
struct Folder {
    files: Vec<Scanned>,
    rules: BTreeMap<&'static str, String>,
}

fn site_path(rel: &Path) -> Result<String> {
    let mut out = String::new();
    for c in rel.components() {
        let std::path::Component::Normal(name) = c else {
            bail!("{}: unexpected path component", rel.display());
        };
        let name = name
            .to_str()
            .with_context(|| format!("{}: file names must be UTF-8", rel.display()))?;
        if name.contains('\\') || name.chars().any(char::is_control) {
            bail!(
                "{}: file names must not contain backslashes or control characters",
                rel.display()
            );
        }
        out.push('/');
        out.push_str(name);
    }
    Ok(out)
}

fn hash_file(p: &Path) -> std::io::Result<BlobHash> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(BlobHash::from_digest(&h.finalize()))
}

fn scan(dir: &Path) -> Result<Folder> {
    let meta = std::fs::metadata(dir).with_context(|| format!("{}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let mut found = Vec::new();
    let mut rules = BTreeMap::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !SKIPPED.iter().any(|s| e.file_name() == *s));
    for entry in walker {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if entry.depth() == 0 {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap_or(entry.path())
            .to_owned();
        if entry.path_is_symlink() {
            bail!(
                "{}: symbolic links are not deployed (they could point outside the site); copy the file instead",
                rel.display()
            );
        }
        if entry.file_type().is_dir() {
            continue;
        }
        if entry.depth() == 1 {
            if let Some(name) = RULE_FILES.iter().find(|n| entry.file_name() == **n) {
                let text = std::fs::read_to_string(entry.path())
                    .with_context(|| format!("{name}: must be UTF-8 text"))?;
                rules.insert(*name, text);
                continue;
            }
        }
        let size = entry.metadata()?.len();
        found.push((site_path(&rel)?, entry.path().to_owned(), size));
    }
    let files = found
        .into_par_iter()
        .map(|(path, abs, size)| {
            let hash = hash_file(&abs).with_context(|| format!("reading {}", abs.display()))?;
            Ok(Scanned {
                path,
                abs,
                size,
                hash,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Folder { files, rules })
}

/// The `Content-Type` of a site path.
pub fn content_type(path: &str) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let s = mime.essence_str();
    let texty = mime.type_() == "text"
        || matches!(
            s,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "image/svg+xml"
                | "application/manifest+json"
        );
    if texty {
        format!("{s}; charset=utf-8")
    } else {
        s.to_owned()
    }
}

fn compressible(content_type: &str, size: u64) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    (MIN_COMPRESS..=MAX_COMPRESS).contains(&size)
        && (essence.starts_with("text/")
            || matches!(
                essence,
                "application/javascript"
                    | "application/json"
                    | "application/xml"
                    | "application/manifest+json"
                    | "application/wasm"
                    | "image/svg+xml"
                    | "image/x-icon"
                    | "image/vnd.microsoft.icon"
                    | "font/ttf"
                    | "font/otf"
                    | "application/vnd.ms-fontobject"
            ))
}

/// Brotli and gzip variants of `body`, each kept only when smaller than the original.
pub fn precompress(body: &[u8]) -> Vec<(Encoding, Vec<u8>)> {
    let mut out = Vec::new();
    let mut br = Vec::new();
    // Quality 6: within 1 % of quality 9's output on real JavaScript and CSS, at a seventh
    // of its CPU. The brotli crate's quality 9 allocates a 32 MiB match table for every
    // file and faults in thousands of its pages; on a site of small files that was most of
    // a deploy's time (BENCHMARKS.md, "Deploy").
    let params = brotli::enc::BrotliEncoderParams {
        quality: 6,
        lgwin: 22,
        ..Default::default()
    };
    if brotli::BrotliCompress(&mut &body[..], &mut br, &params).is_ok() && br.len() < body.len() {
        out.push((Encoding::Br, br));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    if std::io::Write::write_all(&mut gz, body).is_ok() {
        if let Ok(gz) = gz.finish() {
            if gz.len() < body.len() {
                out.push((Encoding::Gzip, gz));
            }
        }
    }
    out
}

async fn file_body(p: &Path, size: u64) -> Result<BlobBody, BlobError> {
    let f = tokio::fs::File::open(p)
        .await
        .map_err(|e| BlobError::Backend {
            bucket: "local folder".into(),
            message: format!("{}: {e}", p.display()),
        })?;
    let path = p.display().to_string();
    let stream = tokio_util_stream(f, path);
    Ok(BlobBody { size, stream })
}

fn tokio_util_stream(f: tokio::fs::File, path: String) -> skyhost_meta::blob::ByteStream {
    futures::stream::unfold((f, path), |(mut f, path)| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), (f, path)))
            }
            Err(e) => Some((
                Err(BlobError::Backend {
                    bucket: "local folder".into(),
                    message: format!("{path}: {e}"),
                }),
                (f, path),
            )),
        }
    })
    .boxed()
}

/// The previous active manifest of the site, to reuse precompressed variants.
async fn previous_manifest(backend: &Backend, site: &SiteId) -> Option<Manifest> {
    let s = backend.meta.site(site).await.ok()??;
    let key = keys::manifest(site, s.active.as_ref()?);
    let body = backend.primary.bucket.get(&key, None).await.ok()??;
    serde_json::from_slice(&body.collect().await.ok()?).ok()
}

/// Validates the rule files: every problem with file, line and reason.
pub fn check_rules(texts: &BTreeMap<&'static str, String>) -> Result<skyhost_rules::ParsedSite> {
    skyhost_rules::parse_site(skyhost_rules::SiteFiles {
        redirects: texts.get("_redirects").map(String::as_str),
        headers: texts.get("_headers").map(String::as_str),
        config: texts.get("skyhost.toml").map(String::as_str),
    })
    .map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "the site's rules have {} problem(s); nothing was deployed:\n  {}",
            lines.len(),
            lines.join("\n  ")
        )
    })
}

/// Deploys a folder.
pub async fn deploy(backend: &Backend, o: &DeployOptions) -> Result<DeployReport> {
    let dir = o.dir.clone();
    let folder = tokio::task::spawn_blocking(move || scan(&dir)).await??;
    let rules = check_rules(&folder.rules)?;
    // Hashing the passwords is the slow part of sealing: off the async threads.
    let rules = tokio::task::spawn_blocking(move || rules.seal())
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let site = &o.site;
    let bucket = backend.primary.bucket.clone();
    let existing: HashMap<String, u64> = bucket
        .list(&keys::blobs_prefix(site))
        .await?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let previous: HashMap<BlobHash, BTreeMap<Encoding, u64>> = previous_manifest(backend, site)
        .await
        .map(|m| {
            m.files
                .into_values()
                .map(|f| (f.hash, f.encodings))
                .collect()
        })
        .unwrap_or_default();

    // One job per distinct blob: upload it if missing, precompress it if worthwhile.
    let mut unique: BTreeMap<BlobHash, (&Scanned, String)> = BTreeMap::new();
    for f in &folder.files {
        unique
            .entry(f.hash.clone())
            .or_insert_with(|| (f, content_type(&f.path)));
    }
    let total_bytes: u64 = unique.values().map(|(f, _)| f.size).sum();
    let progress = Arc::new(Progress::new(
        "upload",
        unique.len() as u64,
        total_bytes,
        o.quiet,
    ));
    let existing = Arc::new(existing);
    let jobs = unique.into_iter().map(|(hash, (f, ctype))| {
        let bucket = bucket.clone();
        let existing = existing.clone();
        let progress = progress.clone();
        let reuse = previous.get(&hash).cloned();
        let (abs, size) = (f.abs.clone(), f.size);
        let site = site.clone();
        async move {
            let mut stats = (0usize, 0usize, 0u64);
            let mut put = |key: String, have: bool| -> Option<String> {
                if have {
                    stats.1 += 1;
                    None
                } else {
                    Some(key)
                }
            };
            let key = keys::blob(&site, &hash, None);
            let has = existing.get(&key) == Some(&size);
            let new_file = !has;
            if let Some(key) = put(key, has) {
                bucket
                    .put(&key, file_body(&abs, size).await?, Some(hash.as_str()))
                    .await?;
                stats.0 += 1;
                stats.2 += size;
            }
            let mut encodings = BTreeMap::new();
            if compressible(&ctype, size) {
                let variants_present = |enc: &BTreeMap<Encoding, u64>| {
                    enc.iter()
                        .all(|(e, n)| existing.get(&keys::blob(&site, &hash, Some(*e))) == Some(n))
                };
                match reuse {
                    Some(enc) if variants_present(&enc) => {
                        stats.1 += enc.len();
                        encodings = enc;
                    }
                    _ => {
                        let body = tokio::fs::read(&abs).await?;
                        let variants =
                            tokio::task::spawn_blocking(move || precompress(&body)).await?;
                        for (enc, data) in variants {
                            let vkey = keys::blob(&site, &hash, Some(enc));
                            let n = data.len() as u64;
                            if existing.get(&vkey) != Some(&n) {
                                bucket.put_bytes(&vkey, data.into(), None).await?;
                                stats.0 += 1;
                                stats.2 += n;
                            } else {
                                stats.1 += 1;
                            }
                            encodings.insert(enc, n);
                        }
                    }
                }
            }
            progress.inc("upload", size);
            Ok::<_, anyhow::Error>((hash, ctype, encodings, stats, new_file))
        }
    });
    let done: Vec<_> = futures::stream::iter(jobs)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    progress.finish();

    let mut uploaded = 0;
    let mut reused = 0;
    let mut bytes_uploaded = 0;
    let mut files_uploaded = 0;
    let mut by_hash = HashMap::new();
    for (hash, ctype, encodings, (u, r, b), new_file) in done {
        files_uploaded += usize::from(new_file);
        uploaded += u;
        reused += r;
        bytes_uploaded += b;
        by_hash.insert(hash, (ctype, encodings));
    }

    let by_hash_len = by_hash.len();
    let deployment = DeploymentId::now();
    let now = skyhost_meta::now();
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for f in &folder.files {
        let (ctype, encodings) = by_hash
            .get(&f.hash)
            .cloned()
            .unwrap_or_else(|| (content_type(&f.path), BTreeMap::new()));
        total += f.size;
        files.insert(
            f.path.clone(),
            FileEntry {
                hash: f.hash.clone(),
                size: f.size,
                content_type: ctype,
                encodings,
            },
        );
    }
    let manifest = Manifest {
        site: site.clone(),
        deployment: deployment.clone(),
        created: now,
        files,
        rules,
    };
    let body = serde_json::to_vec(&manifest)?;
    bucket
        .put_bytes(&keys::manifest(site, &deployment), body.into(), None)
        .await?;
    backend
        .meta
        .put_deployment(&Deployment {
            site: site.clone(),
            id: deployment.clone(),
            created: now,
            file_count: folder.files.len() as u64,
            bytes: total,
            state: DeploymentState::Ready,
            message: o.message.clone(),
        })
        .await?;

    let mut site_after = None;
    if o.activate {
        if o.wait_replicas {
            wait_for_replicas(backend, &manifest, o.wait_timeout).await?;
        }
        site_after = Some(
            update_site(
                backend.meta.as_ref(),
                site,
                Change {
                    activate: Some(&deployment),
                    add_domains: &o.domains,
                    remove_domains: &[],
                },
            )
            .await?,
        );
    } else if !o.domains.is_empty() {
        site_after = Some(
            update_site(
                backend.meta.as_ref(),
                site,
                Change {
                    activate: None,
                    add_domains: &o.domains,
                    remove_domains: &[],
                },
            )
            .await?,
        );
    }
    Ok(DeployReport {
        deployment,
        files: folder.files.len(),
        files_uploaded,
        files_reused: by_hash_len - files_uploaded,
        uploaded,
        reused,
        bytes_uploaded,
        site: site_after,
    })
}

/// Every key a manifest needs in a bucket: its blobs and the manifest itself.
pub fn needed_keys(m: &Manifest) -> Vec<String> {
    let mut k = m.blob_keys();
    k.push(keys::manifest(&m.site, &m.deployment));
    k
}

/// The keys of `needed` that `bucket` lacks.
pub async fn missing_in(
    bucket: &dyn BlobStore,
    site: &SiteId,
    needed: &[String],
) -> Result<Vec<String>> {
    let have: HashSet<String> = bucket
        .list(&format!("sites/{site}/"))
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    Ok(needed
        .iter()
        .filter(|k| !have.contains(*k))
        .cloned()
        .collect())
}

async fn wait_for_replicas(backend: &Backend, m: &Manifest, timeout: Duration) -> Result<()> {
    crate::heal::wait_replicas(backend, m, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let cases = [
            ("/index.html", "text/html; charset=utf-8"),
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/data.json", "application/json; charset=utf-8"),
            ("/logo.svg", "image/svg+xml; charset=utf-8"),
            ("/photo.jpg", "image/jpeg"),
            ("/font.woff2", "font/woff2"),
            ("/noext", "application/octet-stream"),
        ];
        for (p, want) in cases {
            assert_eq!(content_type(p), want, "{p}");
        }
    }

    #[test]
    fn precompressed_variants_only_when_smaller() {
        let text = "<p>hello skyhost</p>\n".repeat(200);
        let v = precompress(text.as_bytes());
        assert_eq!(
            v.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
            vec![Encoding::Br, Encoding::Gzip]
        );
        for (_, d) in &v {
            assert!(d.len() < text.len());
        }
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert!(precompress(&random)
            .iter()
            .all(|(_, d)| d.len() < random.len()));
        assert!(!compressible("image/jpeg", 10_000));
        assert!(!compressible("text/html; charset=utf-8", 10));
        assert!(compressible("text/html; charset=utf-8", 1000));
    }

    #[test]
    fn scan_refuses_symlinks_and_keeps_rules_apart() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("index.html"), "hi").unwrap();
        std::fs::write(d.path().join("_redirects"), "/a /b").unwrap();
        std::fs::create_dir(d.path().join(".git")).unwrap();
        std::fs::write(d.path().join(".git/HEAD"), "x").unwrap();
        std::fs::create_dir(d.path().join(".well-known")).unwrap();
        std::fs::write(d.path().join(".well-known/security.txt"), "x").unwrap();
        let f = scan(d.path()).unwrap();
        let paths: Vec<&str> = f.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["/.well-known/security.txt", "/index.html"]);
        assert_eq!(f.rules.get("_redirects").map(String::as_str), Some("/a /b"));
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("leak")).unwrap();
        let err = scan(d.path()).err().unwrap().to_string();
        assert!(err.contains("symbolic links are not deployed"), "{err}");
    }
}
