//! `skyhost deploy`: hash the folder, validate its rules, upload only the blobs the
//! primary bucket lacks, write the immutable manifest and deployment record, then
//! activate with a conditional write. Nothing is visible until that last write.
//!
//! What is published: regular files and folders, never symbolic links, pipes, sockets or
//! devices (refused before anything is written); no dotfiles or dot-folders other than the
//! root's `.well-known/` unless `--include-hidden`. Each file is read once: the bytes that
//! are hashed are the bytes uploaded and precompressed (a file past [`IN_MEMORY`] is
//! streamed twice, and the bucket refuses the upload unless it hashes the same). A blob
//! already in the bucket is reused only when the bucket vouches for its content hash.

use crate::activate::{update_site, Change};
use crate::backend::Backend;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use skyhost_meta::blob::{BlobBody, BlobError, BlobStore};
use skyhost_meta::{
    keys, BlobHash, Deployment, DeploymentId, DeploymentState, Domain, Encoding, FileEntry,
    Manifest, Site, SiteId,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Files at the root that configure the site and are not served.
pub const RULE_FILES: &[&str] = &["_redirects", "_headers", "skyhost.toml"];
/// Names never deployed (version control and desktop litter).
const SKIPPED: &[&str] = &[".git", ".hg", ".svn", ".DS_Store", "Thumbs.db"];
/// Files smaller than this are not worth precompressing.
const MIN_COMPRESS: u64 = 256;
/// Files larger than this are not precompressed (they are rarely text).
const MAX_COMPRESS: u64 = 32 * 1024 * 1024;
/// Files up to this size are held whole between hashing and uploading (read once).
pub const IN_MEMORY: u64 = MAX_COMPRESS;
/// The one dot-folder published without `--include-hidden` (RFC 8615), at the root.
const WELL_KNOWN: &str = ".well-known";
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
    /// Publish dotfiles and dot-folders too (`.env`, `.npmrc`, `.aws/`…).
    pub include_hidden: bool,
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
    /// Dotfiles and dot-folders left out (paths relative to the folder; a folder's
    /// content is not listed).
    pub hidden_skipped: Vec<String>,
    /// Where the deployment's preview is served, active or not.
    pub preview: Option<String>,
}

/// A file the scan found, not yet read.
struct Listed {
    path: String,
    abs: PathBuf,
    size: u64,
}

/// The folder's files and its rule files' texts.
struct Folder {
    files: Vec<Listed>,
    rules: BTreeMap<&'static str, String>,
    hidden: Vec<String>,
}

/// Whether a folder entry is left out as hidden: its name starts with `.`, other than the
/// `.well-known` folder at the root (`depth` 1).
fn is_hidden(name: &std::ffi::OsStr, depth: usize, is_dir: bool) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.') && !(depth == 1 && is_dir && name == WELL_KNOWN)
}

/// What a folder entry that is neither a file, a folder nor a link is, for the error.
fn special_kind(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_char_device() {
            return "a character device";
        }
    }
    let _ = t;
    "not a regular file"
}

/// Opens a file that must be a regular one: never through a symbolic link put in its
/// place, never blocking on a pipe put in its place.
fn open_regular(p: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let f = o.open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no longer a regular file (it changed during the deploy)",
        ));
    }
    Ok(f)
}

/// A file's content as read once: whole in memory up to [`IN_MEMORY`], else its path.
enum Content {
    Memory(bytes::Bytes),
    Large(PathBuf),
}

/// A file read and hashed.
struct Loaded {
    hash: BlobHash,
    size: u64,
    content: Content,
}

/// Reads a file once, hashing the bytes as they come and keeping them when the file is
/// small enough, so the blob stored under the hash is exactly what was hashed.
fn load(p: &Path) -> std::io::Result<Loaded> {
    let mut f = open_regular(p)?;
    let announced = f.metadata()?.len();
    let mut held = Vec::with_capacity(usize::try_from(announced.min(IN_MEMORY)).unwrap_or(0));
    let mut keep = true;
    let mut size = 0u64;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
        if keep && size <= IN_MEMORY {
            held.extend_from_slice(&buf[..n]);
        } else if keep {
            keep = false;
            held = Vec::new();
        }
    }
    Ok(Loaded {
        hash: BlobHash::from_digest(&h.finalize()),
        size,
        content: if keep {
            Content::Memory(held.into())
        } else {
            Content::Large(p.to_owned())
        },
    })
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

/// Lists the folder: its files (not read yet), its rule files' texts and the hidden
/// entries left out. Refuses links, pipes, sockets and devices.
fn scan(dir: &Path, include_hidden: bool) -> Result<Folder> {
    let meta = std::fs::metadata(dir).with_context(|| format!("{}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let mut files = Vec::new();
    let mut rules = BTreeMap::new();
    let mut hidden = Vec::new();
    let walker = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            if SKIPPED.iter().any(|s| e.file_name() == *s) {
                return false;
            }
            let hide = !include_hidden
                && e.depth() > 0
                && is_hidden(e.file_name(), e.depth(), e.file_type().is_dir());
            if hide {
                let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
                let slash = if e.file_type().is_dir() { "/" } else { "" };
                hidden.push(format!("{}{slash}", rel.display()));
            }
            !hide
        });
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
        if !entry.file_type().is_file() {
            bail!(
                "{}: is {}; only regular files and folders are deployed (nothing was uploaded)",
                rel.display(),
                special_kind(entry.file_type())
            );
        }
        if entry.depth() == 1 {
            if let Some(name) = RULE_FILES.iter().find(|n| entry.file_name() == **n) {
                let mut text = String::new();
                open_regular(entry.path())
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .with_context(|| format!("{name}: must be UTF-8 text"))?;
                rules.insert(*name, text);
                continue;
            }
        }
        let size = entry.metadata()?.len();
        files.push(Listed {
            path: site_path(&rel)?,
            abs: entry.path().to_owned(),
            size,
        });
    }
    Ok(Folder {
        files,
        rules,
        hidden,
    })
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

/// A precompressed variant of a blob.
#[derive(Debug)]
pub struct Variant {
    /// Its content coding.
    pub encoding: Encoding,
    /// The compressed bytes.
    pub data: Vec<u8>,
}

/// Brotli and gzip variants of `body`, each kept only when smaller than the original.
pub fn precompress(body: &[u8]) -> Vec<Variant> {
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
        out.push(Variant {
            encoding: Encoding::Br,
            data: br,
        });
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    if std::io::Write::write_all(&mut gz, body).is_ok() {
        if let Ok(gz) = gz.finish() {
            if gz.len() < body.len() {
                out.push(Variant {
                    encoding: Encoding::Gzip,
                    data: gz,
                });
            }
        }
    }
    out
}

async fn file_body(p: &Path, size: u64) -> Result<BlobBody, BlobError> {
    let backend = |e: std::io::Error| BlobError::Backend {
        bucket: "local folder".into(),
        message: format!("{}: {e}", p.display()),
    };
    let f = tokio::fs::File::open(p).await.map_err(backend)?;
    let path = p.display().to_string();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024)
        .map_err(move |e| BlobError::Backend {
            bucket: "local folder".into(),
            message: format!("{path}: {e}"),
        })
        .boxed();
    Ok(BlobBody { size, stream })
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

/// What one file's job did.
struct FileDone {
    path: String,
    hash: BlobHash,
    size: u64,
    /// Set by the one job that handled the file's blob (the first with its content).
    blob: Option<BlobDone>,
}

/// What the job that handled a blob did.
struct BlobDone {
    encodings: BTreeMap<Encoding, u64>,
    /// Objects uploaded.
    uploaded: usize,
    /// Objects the bucket already had.
    reused: usize,
    /// Bytes uploaded.
    bytes: u64,
    /// The identity blob was uploaded (the bucket did not vouch for it).
    new_file: bool,
}

/// Stores a blob's precompressed variants, or reuses the previous deployment's when the
/// identity blob was reused and every variant is still there.
#[allow(clippy::too_many_arguments)]
async fn variants(
    bucket: &dyn BlobStore,
    site: &SiteId,
    hash: &BlobHash,
    body: &bytes::Bytes,
    identity_reused: bool,
    previous: Option<BTreeMap<Encoding, u64>>,
    existing: &HashMap<String, u64>,
    done: &mut BlobDone,
) -> Result<()> {
    if let Some(enc) = previous {
        let present = enc
            .iter()
            .all(|(e, n)| existing.get(&keys::blob(site, hash, Some(*e))) == Some(n));
        if identity_reused && present {
            done.reused += enc.len();
            done.encodings = enc;
            return Ok(());
        }
    }
    let body = body.clone();
    let made = tokio::task::spawn_blocking(move || precompress(&body)).await?;
    for Variant {
        encoding: enc,
        data,
    } in made
    {
        let vkey = keys::blob(site, hash, Some(enc));
        let n = data.len() as u64;
        let sha = hex::encode(Sha256::digest(&data));
        let have = existing.get(&vkey) == Some(&n) && bucket.holds(&vkey, &sha).await?;
        if have {
            done.reused += 1;
        } else {
            bucket.put_bytes(&vkey, data.into(), Some(&sha)).await?;
            done.uploaded += 1;
            done.bytes += n;
        }
        done.encodings.insert(enc, n);
    }
    Ok(())
}

/// Deploys a folder.
pub async fn deploy(backend: &Backend, o: &DeployOptions) -> Result<DeployReport> {
    let dir = o.dir.clone();
    let include_hidden = o.include_hidden;
    let folder = tokio::task::spawn_blocking(move || scan(&dir, include_hidden)).await??;
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
    let previous = Arc::new(previous);

    // One job per file: read it once, hash it, and, for the first file with that content,
    // upload the blob unless the bucket vouches for it, and precompress it if worthwhile.
    let total_bytes: u64 = folder.files.iter().map(|f| f.size).sum();
    let progress = Arc::new(Progress::new(
        "upload",
        folder.files.len() as u64,
        total_bytes,
        o.quiet,
    ));
    let existing = Arc::new(existing);
    let claimed: Arc<Mutex<HashSet<BlobHash>>> = Arc::default();
    let jobs = folder.files.iter().map(|f| {
        let bucket = bucket.clone();
        let existing = existing.clone();
        let previous = previous.clone();
        let progress = progress.clone();
        let claimed = claimed.clone();
        let (path, abs) = (f.path.clone(), f.abs.clone());
        let site = site.clone();
        async move {
            let at = abs.clone();
            let loaded = tokio::task::spawn_blocking(move || load(&at))
                .await?
                .with_context(|| format!("reading {}", abs.display()))?;
            let Loaded {
                hash,
                size,
                content,
            } = loaded;
            let first = claimed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(hash.clone());
            if !first {
                progress.inc("upload", size);
                return Ok::<_, anyhow::Error>(FileDone {
                    path,
                    hash,
                    size,
                    blob: None,
                });
            }
            let mut done = BlobDone {
                encodings: BTreeMap::new(),
                uploaded: 0,
                reused: 0,
                bytes: 0,
                new_file: false,
            };
            let key = keys::blob(&site, &hash, None);
            let reused =
                existing.get(&key) == Some(&size) && bucket.holds(&key, hash.as_str()).await?;
            if reused {
                done.reused += 1;
            } else {
                let body = match &content {
                    Content::Memory(b) => BlobBody::from_bytes(b.clone()),
                    Content::Large(p) => file_body(p, size).await?,
                };
                bucket.put(&key, body, Some(hash.as_str())).await?;
                done.uploaded += 1;
                done.bytes += size;
                done.new_file = true;
            }
            if let Content::Memory(body) = &content {
                if compressible(&content_type(&path), size) {
                    let prev = previous.get(&hash).cloned();
                    variants(
                        bucket.as_ref(),
                        &site,
                        &hash,
                        body,
                        reused,
                        prev,
                        &existing,
                        &mut done,
                    )
                    .await?;
                }
            }
            progress.inc("upload", size);
            Ok(FileDone {
                path,
                hash,
                size,
                blob: Some(done),
            })
        }
    });
    let done: Vec<FileDone> = futures::stream::iter(jobs)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    progress.finish();

    let mut uploaded = 0;
    let mut reused = 0;
    let mut bytes_uploaded = 0;
    let mut files_uploaded = 0;
    let mut by_hash = HashMap::new();
    for d in &done {
        if let Some(b) = &d.blob {
            files_uploaded += usize::from(b.new_file);
            uploaded += b.uploaded;
            reused += b.reused;
            bytes_uploaded += b.bytes;
            by_hash.insert(d.hash.clone(), b.encodings.clone());
        }
    }

    let by_hash_len = by_hash.len();
    let deployment = DeploymentId::now();
    let now = skyhost_meta::now();
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for d in done {
        let encodings = by_hash.get(&d.hash).cloned().unwrap_or_default();
        total += d.size;
        files.insert(
            d.path.clone(),
            FileEntry {
                content_type: content_type(&d.path),
                hash: d.hash,
                size: d.size,
                encodings,
            },
        );
    }
    let file_count = files.len();
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
            file_count: file_count as u64,
            bytes: total,
            state: DeploymentState::Ready,
            message: o.message.clone(),
        })
        .await?;

    if o.activate && o.wait_replicas {
        wait_for_replicas(backend, &manifest, o.wait_timeout).await?;
    }
    // One conditional write activates and adds the domains; without either the site
    // record is left as it is.
    let change = Change {
        activate: o.activate.then_some(&deployment),
        add_domains: &o.domains,
        remove_domains: &[],
    };
    let site_after = if change.activate.is_some() || !o.domains.is_empty() {
        Some(update_site(backend.meta.as_ref(), site, change).await?)
    } else {
        None
    };
    Ok(DeployReport {
        preview: backend.preview_url(&o.site, &deployment),
        deployment,
        files: file_count,
        files_uploaded,
        files_reused: by_hash_len - files_uploaded,
        uploaded,
        reused,
        bytes_uploaded,
        site: site_after,
        hidden_skipped: folder.hidden,
    })
}

/// Every key a manifest needs in a bucket: its blobs and the manifest itself.
pub fn needed_keys(m: &Manifest) -> Vec<String> {
    let mut k = m.blob_keys();
    k.push(keys::manifest(&m.site, &m.deployment));
    k
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
            v.iter().map(|v| v.encoding).collect::<Vec<_>>(),
            vec![Encoding::Br, Encoding::Gzip]
        );
        for v in &v {
            assert!(v.data.len() < text.len());
        }
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert!(precompress(&random)
            .iter()
            .all(|v| v.data.len() < random.len()));
        assert!(!compressible("image/jpeg", 10_000));
        assert!(!compressible("text/html; charset=utf-8", 10));
        assert!(compressible("text/html; charset=utf-8", 1000));
    }

    #[test]
    fn hidden_entries_table() {
        use std::ffi::OsStr;
        // (name, depth, is a folder, left out)
        let cases = [
            (".env", 1, false, true),
            (".npmrc", 1, false, true),
            (".aws", 1, true, true),
            (".well-known", 1, true, false),
            (".well-known", 1, false, true),
            (".well-known", 2, true, true),
            (".htaccess", 3, false, true),
            ("..", 1, true, true),
            ("index.html", 1, false, false),
            ("a.b", 2, false, false),
            ("_redirects", 1, false, false),
            ("skyhost.toml", 1, false, false),
        ];
        for (name, depth, dir, want) in cases {
            assert_eq!(
                is_hidden(OsStr::new(name), depth, dir),
                want,
                "{name} {depth}"
            );
        }
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
        std::fs::write(d.path().join(".env"), "SECRET=1").unwrap();
        let f = scan(d.path(), false).unwrap();
        let paths: Vec<&str> = f.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["/.well-known/security.txt", "/index.html"]);
        assert_eq!(f.hidden, vec![".env"], ".git is litter, not counted");
        assert_eq!(f.rules.get("_redirects").map(String::as_str), Some("/a /b"));
        let all = scan(d.path(), true).unwrap();
        let paths: Vec<&str> = all.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["/.env", "/.well-known/security.txt", "/index.html"]
        );
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("leak")).unwrap();
        let err = scan(d.path(), false).err().unwrap().to_string();
        assert!(err.contains("symbolic links are not deployed"), "{err}");
    }

    #[test]
    fn load_reads_once_and_holds_small_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.txt");
        std::fs::write(&p, "hello").unwrap();
        let l = load(&p).unwrap();
        assert_eq!(l.size, 5);
        assert_eq!(
            l.hash.as_str(),
            hex::encode(Sha256::digest(b"hello")).as_str()
        );
        assert!(matches!(l.content, Content::Memory(ref b) if &b[..] == b"hello"));
        // A link put in a file's place is not followed.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(load(&link).is_err());
    }
}
