//! Hostile deploy folders, run against each backend (local mode's folder buckets, and S3
//! on moto where the reuse check differs): dotfiles, `.well-known`, `--include-hidden`,
//! pipes, sockets, links out of the folder, a file edited to same-size content while the
//! deploy runs, and a same-size blob with other content already under a file's hash.

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use skyhost_cli::backend::Backend;
use skyhost_cli::deploy::{deploy, DeployOptions, DeployReport};
use skyhost_meta::blob::{BlobBody, BlobError, BlobStore, ObjectInfo, ObjectMeta};
use skyhost_meta::{keys, BlobHash, Manifest, SiteId};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Options for deploying `dir` to `site`, activated, quiet.
pub fn opts(dir: &Path, site: &str) -> DeployOptions {
    DeployOptions {
        dir: dir.to_owned(),
        site: SiteId::parse(site).unwrap(),
        domains: vec![],
        message: None,
        activate: true,
        wait_replicas: false,
        wait_timeout: Duration::from_secs(1),
        quiet: true,
        include_hidden: false,
    }
}

/// The manifest a deploy wrote.
pub async fn manifest(b: &Backend, r: &DeployReport, site: &str) -> Manifest {
    let key = keys::manifest(&SiteId::parse(site).unwrap(), &r.deployment);
    let body = b.primary.bucket.get(&key, None).await.unwrap().unwrap();
    serde_json::from_slice(&body.collect().await.unwrap()).unwrap()
}

/// The bytes of an object.
pub async fn object(b: &Backend, key: &str) -> Bytes {
    let body = b.primary.bucket.get(key, None).await.unwrap().unwrap();
    body.collect().await.unwrap()
}

fn hash_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every blob the manifest names holds the bytes its key names.
pub async fn assert_blobs_match_their_hashes(b: &Backend, m: &Manifest) {
    for (path, f) in &m.files {
        let body = object(b, &keys::blob(&m.site, &f.hash, None)).await;
        assert_eq!(
            hash_of(&body),
            f.hash.as_str(),
            "{path}: the blob's content is not its hash"
        );
        assert_eq!(body.len() as u64, f.size, "{path}");
    }
}

/// Nothing of `site` was written: no object, no site record, no deployment.
pub async fn assert_nothing_written(b: &Backend, site: &str) {
    let id = SiteId::parse(site).unwrap();
    let objects = b
        .primary
        .bucket
        .list(&format!("sites/{site}/"))
        .await
        .unwrap();
    assert!(objects.is_empty(), "objects were written: {objects:?}");
    assert!(b.meta.site(&id).await.unwrap().is_none());
    assert!(b.meta.deployments(&id).await.unwrap().is_empty());
}

fn paths(m: &Manifest) -> Vec<&str> {
    m.files.keys().map(String::as_str).collect()
}

/// Dotfiles and dot-folders stay home, `.well-known/` and the rule files do not, and
/// `--include-hidden` publishes everything.
pub async fn dotfiles(b: &Backend, tmp: &Path) {
    let dir = tmp.join("dotfiles");
    for (p, text) in [
        ("index.html", "home"),
        (".env", "AWS_SECRET_ACCESS_KEY=x"),
        (".npmrc", "//registry.npmjs.org/:_authToken=x"),
        (".aws/credentials", "[default]"),
        (
            ".well-known/security.txt",
            "Contact: mailto:sec@example.com",
        ),
        ("sub/.htpasswd", "admin:x"),
        ("sub/page.html", "page"),
        ("_redirects", "/old /index.html 301\n"),
    ] {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }
    let r = deploy(b, &opts(&dir, "dots")).await.unwrap();
    let m = manifest(b, &r, "dots").await;
    assert_eq!(
        paths(&m),
        vec!["/.well-known/security.txt", "/index.html", "/sub/page.html"]
    );
    assert!(!m.rules.redirects.is_empty(), "_redirects still applies");
    assert_eq!(
        r.hidden_skipped,
        vec![".aws/", ".env", ".npmrc", "sub/.htpasswd"]
    );
    let mut o = opts(&dir, "dots");
    o.include_hidden = true;
    let r = deploy(b, &o).await.unwrap();
    let m = manifest(b, &r, "dots").await;
    assert_eq!(
        paths(&m),
        vec![
            "/.aws/credentials",
            "/.env",
            "/.npmrc",
            "/.well-known/security.txt",
            "/index.html",
            "/sub/.htpasswd",
            "/sub/page.html",
        ]
    );
    assert!(r.hidden_skipped.is_empty());
}

/// Runs a deploy on a thread of its own and waits at most 20 s: a deploy that blocks on
/// a pipe fails the test instead of hanging it (a runtime waits for its blocked readers).
fn deploy_bounded(b: &Backend, o: DeployOptions) -> Result<DeployReport, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let b = b.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(deploy(&b, &o)).map_err(|e| format!("{e:#}"));
        let _ = tx.send(r);
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the deploy must not block")
}

/// Runs a deploy that must fail and gives its error.
fn refused(b: &Backend, o: DeployOptions) -> String {
    match deploy_bounded(b, o) {
        Ok(r) => panic!("the deploy must be refused, it made {}", r.deployment),
        Err(e) => e,
    }
}

/// A pipe, a socket and links out of the folder are refused, naming the path, before
/// anything is written.
pub async fn special_files(b: &Backend, tmp: &Path) {
    let dir = tmp.join("special");
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("index.html"), "home").unwrap();
    let fifo = dir.join("a/pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let err = refused(b, opts(&dir, "special"));
    assert!(err.contains("a/pipe"), "{err}");
    assert!(err.contains("named pipe"), "{err}");
    assert_nothing_written(b, "special").await;
    std::fs::remove_file(&fifo).unwrap();

    let sock = dir.join("a/sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let err = refused(b, opts(&dir, "special"));
    assert!(err.contains("a/sock"), "{err}");
    assert!(err.contains("socket"), "{err}");
    assert_nothing_written(b, "special").await;
    std::fs::remove_file(&sock).unwrap();

    // Hidden ones are left out rather than refused: they are never opened.
    let hidden_fifo = dir.join(".pipe");
    std::process::Command::new("mkfifo")
        .arg(&hidden_fifo)
        .status()
        .unwrap();
    let r = deploy_bounded(b, opts(&dir, "special")).unwrap();
    assert_eq!(r.hidden_skipped, vec![".pipe"]);
    std::fs::remove_file(&hidden_fifo).unwrap();
}

/// Links to a file or a folder outside the site are refused before anything is written.
pub async fn links_out(b: &Backend, tmp: &Path) {
    let outside = tmp.join("outside-secret.txt");
    std::fs::write(&outside, "secret").unwrap();
    for (name, target) in [
        ("leak.txt", outside.clone()),
        ("up", tmp.to_owned()),
        ("passwd", "/etc/passwd".into()),
    ] {
        let dir = tmp.join(format!("links-{name}"));
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("index.html"), "home").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("docs").join(name)).unwrap();
        let err = refused(b, opts(&dir, "links"));
        assert!(err.contains(&format!("docs/{name}")), "{err}");
        assert!(err.contains("symbolic links are not deployed"), "{err}");
        assert_nothing_written(b, "links").await;
    }
}

/// A bucket that runs `edit` once, the first time the deploy lists it: after the folder
/// was scanned, before the blobs are uploaded, where a file changed mid-deploy bites.
pub struct EditOnList {
    pub inner: Arc<dyn BlobStore>,
    pub edit: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

#[async_trait]
impl BlobStore for EditOnList {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, BlobError> {
        self.inner.head(key).await
    }
    async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<BlobBody>, BlobError> {
        self.inner.get(key, range).await
    }
    async fn put(&self, key: &str, body: BlobBody, sha256: Option<&str>) -> Result<(), BlobError> {
        self.inner.put(key, body, sha256).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BlobError> {
        let edit = self.edit.lock().unwrap().take();
        if let Some(edit) = edit {
            edit();
        }
        self.inner.list(prefix).await
    }
    async fn holds(&self, key: &str, sha256: &str) -> Result<bool, BlobError> {
        self.inner.holds(key, sha256).await
    }
}

/// A file rewritten to other content of the same size during the deploy: the blob stored
/// under a hash is the content of that hash, and the manifest names what was read.
pub async fn same_size_edit_mid_deploy(b: &Backend, tmp: &Path) {
    let dir = tmp.join("edited");
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("page.html");
    let before = "<p>version one of the page</p>\n".repeat(20);
    let after = "<p>version TWO of the page</p>\n".repeat(20);
    assert_eq!(before.len(), after.len());
    std::fs::write(&page, &before).unwrap();
    std::fs::write(dir.join("index.html"), "home").unwrap();
    let mut edited = b.clone();
    let target = page.clone();
    let text = after.clone();
    edited.primary.bucket = Arc::new(EditOnList {
        inner: b.primary.bucket.clone(),
        edit: Mutex::new(Some(Box::new(move || {
            std::fs::write(&target, text).unwrap();
        }))),
    });
    let r = deploy(&edited, &opts(&dir, "edited")).await.unwrap();
    let m = manifest(b, &r, "edited").await;
    assert_blobs_match_their_hashes(b, &m).await;
    let f = m.file("/page.html").unwrap();
    assert_eq!(f.hash.as_str(), hash_of(after.as_bytes()), "what was read");
    // The precompressed variants are of the same bytes.
    for enc in f.encodings.keys() {
        let key = keys::blob(&m.site, &f.hash, Some(*enc));
        let packed = object(b, &key).await;
        let plain = match enc {
            skyhost_meta::Encoding::Gzip => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&packed[..]),
                    &mut out,
                )
                .unwrap();
                out
            }
            skyhost_meta::Encoding::Br => {
                let mut out = Vec::new();
                brotli::BrotliDecompress(&mut &packed[..], &mut out).unwrap();
                out
            }
        };
        assert_eq!(plain, after.as_bytes(), "{enc:?} variant");
    }
}

/// A same-size object with other content already under a file's hash is not reused: the
/// deploy uploads the real content over it.
pub async fn reuse_by_hash_not_size(b: &Backend, tmp: &Path) {
    let dir = tmp.join("planted");
    std::fs::create_dir_all(&dir).unwrap();
    let real = b"the real logo bytes, not compressible enough?";
    let fake = b"the FAKE logo bytes, not compressible enough?";
    assert_eq!(real.len(), fake.len());
    std::fs::write(dir.join("logo.png"), real).unwrap();
    let site = SiteId::parse("planted").unwrap();
    let hash = BlobHash::parse(&hash_of(real)).unwrap();
    let key = keys::blob(&site, &hash, None);
    b.primary
        .bucket
        .put_bytes(&key, Bytes::from_static(fake), None)
        .await
        .unwrap();
    let r = deploy(b, &opts(&dir, "planted")).await.unwrap();
    assert_eq!((r.files_uploaded, r.files_reused), (1, 0), "{r:?}");
    assert_eq!(&object(b, &key).await[..], real);
    let m = manifest(b, &r, "planted").await;
    assert_blobs_match_their_hashes(b, &m).await;
    // Now the bucket vouches for it: the next deploy reuses it.
    let again = deploy(b, &opts(&dir, "planted")).await.unwrap();
    assert_eq!(
        (again.files_uploaded, again.files_reused),
        (0, 1),
        "{again:?}"
    );
}
