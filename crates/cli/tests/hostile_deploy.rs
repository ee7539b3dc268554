//! Hostile deploy folders, through the `skyhost` binary in local mode: symbolic links out
//! of the folder, FIFOs and sockets, dotfiles, file names no URL can carry, and a file
//! edited (same size) while the deploy reads it. Each case says whether the deploy
//! succeeds, what the refusal names, and exactly which paths the deployment publishes;
//! no published blob may differ from the hash it is stored under, and no byte of the
//! canary planted outside the folder may reach the bucket.

use sha2::{Digest, Sha256};
use skyhost_cli::backend::Backend;
use skyhost_meta::{keys, DeploymentId, Manifest, SiteId};
use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_skyhost");
const CANARY: &[u8] = b"CANARY-OUTSIDE-SITE-5e1f";
/// A deploy still running after this long is stuck (a failure, not a timing check).
const HANG: Duration = Duration::from_secs(60);

struct Run {
    ok: bool,
    /// Killed by the guard.
    hung: bool,
    stdout: String,
    stderr: String,
}

/// Runs `skyhost --local STATE deploy DIR …`, killing it if it never ends.
fn deploy(state: &Path, dir: &Path, extra: &[&str], during: impl FnOnce(&AtomicBool)) -> Run {
    let mut child = Command::new(BIN)
        .arg("--local")
        .arg(state)
        .arg("deploy")
        .arg(dir)
        .args([
            "--site",
            "hostile",
            "--domain",
            "hostile.test",
            "--json",
            "--quiet",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the skyhost binary runs");
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut hung = false;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if start.elapsed() > HANG => {
                        let _ = child.kill();
                        hung = true;
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            done.store(true, Ordering::SeqCst);
            (hung, child.wait_with_output())
        })
    };
    during(&done);
    let (hung, out) = watcher.join().expect("the watcher thread ends");
    let out = out.expect("the deploy's output");
    Run {
        ok: out.status.success(),
        hung,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The published paths of the deployment a successful run reported, after checking that
/// every blob the manifest names holds the bytes of its hash.
async fn published(state: &Path, run: &Run) -> Result<BTreeSet<String>, String> {
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).map_err(|e| format!("report is not JSON: {e}"))?;
    let id = report["deployment"]
        .as_str()
        .and_then(|d| DeploymentId::parse(d).ok())
        .ok_or("the report names no deployment")?;
    let backend = Backend::local(state).map_err(|e| format!("{e:#}"))?;
    let site = SiteId::parse("hostile").map_err(|e| e.to_string())?;
    let bucket = &backend.primary.bucket;
    let read = |key: String| async move {
        match bucket.get(&key, None).await {
            Ok(Some(b)) => b
                .collect()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string()),
            Ok(None) => Err(format!("{key} is missing")),
            Err(e) => Err(e.to_string()),
        }
    };
    let manifest: Manifest = serde_json::from_slice(&read(keys::manifest(&site, &id)).await?)
        .map_err(|e| format!("manifest: {e}"))?;
    for (path, entry) in &manifest.files {
        let body = read(keys::blob(&site, &entry.hash, None)).await?;
        let actual = hex::encode(Sha256::digest(&body));
        if actual != entry.hash.as_str() {
            return Err(format!(
                "{path}: the blob stored as {} holds bytes hashing to {actual}",
                entry.hash.as_str()
            ));
        }
        if body.len() as u64 != entry.size {
            return Err(format!(
                "{path}: size {} recorded as {}",
                body.len(),
                entry.size
            ));
        }
        if body.windows(CANARY.len()).any(|w| w == CANARY) {
            return Err(format!(
                "{path}: published the canary from outside the folder"
            ));
        }
    }
    Ok(manifest.files.keys().cloned().collect())
}

/// What the deploy must do.
enum Want {
    /// Succeed, publishing exactly these paths.
    Publishes(&'static [&'static str]),
    /// Fail, saying one of these words (case-insensitive) beside the offending name.
    Refuses {
        names: &'static str,
        says: &'static [&'static str],
    },
}

struct Case {
    name: &'static str,
    /// Builds the folder inside `site`, with `outside` beside it.
    build: fn(site: &Path, outside: &Path),
    extra: &'static [&'static str],
    want: Want,
}

fn write(p: impl AsRef<Path>, body: impl AsRef<[u8]>) {
    let p = p.as_ref();
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("a folder");
    }
    std::fs::write(p, body).expect("a file");
}

fn index(site: &Path) {
    write(site.join("index.html"), "<h1>home</h1>");
}

fn mkfifo(p: &Path) {
    let ok = Command::new("mkfifo")
        .arg(p)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {} failed", p.display());
}

const SYMLINK_WORDS: &[&str] = &["symbolic link", "symlink"];
const SPECIAL_WORDS: &[&str] = &[
    "regular file",
    "fifo",
    "named pipe",
    "socket",
    "special file",
    "device",
];

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "symlink-to-outside-file",
            build: |s, o| {
                index(s);
                symlink(o.join("canary.txt"), s.join("leak.txt")).expect("a symlink");
            },
            extra: &[],
            want: Want::Refuses {
                names: "leak.txt",
                says: SYMLINK_WORDS,
            },
        },
        Case {
            name: "symlink-to-etc-passwd",
            build: |s, _| {
                index(s);
                symlink("/etc/passwd", s.join("passwd")).expect("a symlink");
            },
            extra: &[],
            want: Want::Refuses {
                names: "passwd",
                says: SYMLINK_WORDS,
            },
        },
        Case {
            name: "symlink-to-outside-folder",
            build: |s, o| {
                index(s);
                symlink(o, s.join("docs")).expect("a symlink");
            },
            extra: &[],
            want: Want::Refuses {
                names: "docs",
                says: SYMLINK_WORDS,
            },
        },
        Case {
            name: "symlink-relative-escape",
            build: |s, _| {
                index(s);
                std::fs::create_dir_all(s.join("a")).expect("a folder");
                symlink("../../outside/canary.txt", s.join("a/b.txt")).expect("a symlink");
            },
            extra: &[],
            want: Want::Refuses {
                names: "b.txt",
                says: SYMLINK_WORDS,
            },
        },
        Case {
            name: "symlink-rule-file",
            build: |s, o| {
                index(s);
                symlink(o.join("canary.txt"), s.join("_redirects")).expect("a symlink");
            },
            extra: &[],
            want: Want::Refuses {
                names: "_redirects",
                says: SYMLINK_WORDS,
            },
        },
        Case {
            name: "symlink-loop",
            build: |s, _| {
                index(s);
                symlink("loop", s.join("loop")).expect("a symlink");
            },
            extra: &[],
            want: Want::Refuses {
                names: "loop",
                says: SYMLINK_WORDS,
            },
        },
        Case {
            name: "fifo",
            build: |s, _| {
                index(s);
                mkfifo(&s.join("pipe.html"));
            },
            extra: &[],
            want: Want::Refuses {
                names: "pipe.html",
                says: SPECIAL_WORDS,
            },
        },
        Case {
            name: "fifo-nested",
            build: |s, _| {
                index(s);
                std::fs::create_dir_all(s.join("assets")).expect("a folder");
                mkfifo(&s.join("assets/app.js"));
            },
            extra: &[],
            want: Want::Refuses {
                names: "app.js",
                says: SPECIAL_WORDS,
            },
        },
        Case {
            name: "fifo-as-rule-file",
            build: |s, _| {
                index(s);
                mkfifo(&s.join("_headers"));
            },
            extra: &[],
            want: Want::Refuses {
                names: "_headers",
                says: SPECIAL_WORDS,
            },
        },
        Case {
            name: "socket",
            build: |s, _| {
                index(s);
                let l = std::os::unix::net::UnixListener::bind(s.join("control.sock"))
                    .expect("a socket");
                // The socket file stays when the listener is dropped.
                drop(l);
            },
            extra: &[],
            want: Want::Refuses {
                names: "control.sock",
                says: SPECIAL_WORDS,
            },
        },
        Case {
            name: "dotfiles",
            build: |s, _| {
                index(s);
                write(s.join(".env"), "SECRET_KEY=1");
                write(s.join(".npmrc"), "//registry/:_authToken=x");
                write(s.join(".aws/credentials"), "[default]");
                write(s.join("sub/.secret"), "x");
                write(s.join(".hidden/page.html"), "x");
                write(s.join(".git/config"), "[core]");
                write(
                    s.join(".well-known/security.txt"),
                    "Contact: mailto:a@b.test",
                );
                write(s.join("about.html"), "about");
            },
            extra: &[],
            want: Want::Publishes(&["/.well-known/security.txt", "/about.html", "/index.html"]),
        },
        Case {
            name: "dotfiles-included",
            build: |s, _| {
                index(s);
                write(s.join(".env"), "SECRET_KEY=1");
                write(
                    s.join(".well-known/security.txt"),
                    "Contact: mailto:a@b.test",
                );
            },
            extra: &["--include-hidden"],
            want: Want::Publishes(&["/.env", "/.well-known/security.txt", "/index.html"]),
        },
        Case {
            name: "backslash-name",
            build: |s, _| {
                index(s);
                write(s.join("a\\b.html"), "x");
            },
            extra: &[],
            want: Want::Refuses {
                names: "a\\b.html",
                says: &["backslash"],
            },
        },
        Case {
            name: "newline-name",
            build: |s, _| {
                index(s);
                write(s.join("a\nb.html"), "x");
            },
            extra: &[],
            want: Want::Refuses {
                names: "b.html",
                says: &["control"],
            },
        },
        Case {
            name: "not-utf8-name",
            build: |s, _| {
                index(s);
                use std::os::unix::ffi::OsStrExt;
                write(s.join(std::ffi::OsStr::from_bytes(b"\xff\xfe.html")), "x");
            },
            extra: &[],
            want: Want::Refuses {
                names: ".html",
                says: &["utf-8"],
            },
        },
        Case {
            name: "bad-rules",
            build: |s, _| {
                index(s);
                write(s.join("_headers"), "/a\n  X-Ok: 1\n  broken header\n");
            },
            extra: &[],
            want: Want::Refuses {
                names: "_headers:3",
                says: &["_headers"],
            },
        },
        Case {
            name: "plain-site",
            build: |s, _| {
                index(s);
                write(s.join("docs/a b.html"), "x");
                write(s.join("é.html"), "x");
            },
            extra: &[],
            want: Want::Publishes(&["/docs/a b.html", "/index.html", "/é.html"]),
        },
    ]
}

fn folders() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let site = tmp.path().join("site");
    let outside = tmp.path().join("outside");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&site).expect("a folder");
    std::fs::create_dir_all(&outside).expect("a folder");
    write(outside.join("canary.txt"), CANARY);
    (tmp, site, outside, state)
}

#[tokio::test]
async fn hostile_deploy_folders() {
    let all = cases();
    let total = all.len();
    // Every deploy runs at once: one that hangs costs its guard once, not once per case.
    let runs: Vec<_> = all
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                let (tmp, site, outside, state) = folders();
                (c.build)(&site, &outside);
                let run = deploy(&state, &site, c.extra, |_| {});
                (c, tmp, state, run)
            })
        })
        .collect();
    let mut failed = Vec::new();
    for handle in runs {
        let Ok((c, _tmp, state, run)) = handle.join() else {
            failed.push("  a case's thread panicked".to_owned());
            continue;
        };
        match c.want {
            Want::Publishes(paths) => {
                if !run.ok {
                    failed.push(format!("  {}: failed: {}", c.name, run.stderr.trim()));
                    continue;
                }
                let want: BTreeSet<String> = paths.iter().map(|p| (*p).to_owned()).collect();
                match published(&state, &run).await {
                    Ok(got) if got == want => {}
                    Ok(got) => failed.push(format!(
                        "  {}: published {got:?}, expected {want:?}",
                        c.name
                    )),
                    Err(e) => failed.push(format!("  {}: {e}", c.name)),
                }
            }
            Want::Refuses { names, says } => {
                let err = run.stderr.to_lowercase();
                if run.hung {
                    failed.push(format!("  {}: the deploy hung and was killed", c.name));
                } else if run.ok {
                    failed.push(format!("  {}: deployed, expected a refusal", c.name));
                } else if !run.stderr.contains(names) || !says.iter().any(|w| err.contains(w)) {
                    failed.push(format!(
                        "  {}: refused without naming {names:?} and saying one of {says:?}: {}",
                        c.name,
                        run.stderr.trim()
                    ));
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} deploy-folder cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A file rewritten in place (same size, other bytes) for the whole deploy: whatever the
/// deploy read, the blob it stored holds exactly the bytes of the hash it is stored
/// under, and the manifest's size is that blob's.
#[tokio::test]
async fn same_size_edits_during_a_deploy() {
    const SIZE: usize = 8 * 1024 * 1024;
    let (_tmp, site, _outside, state) = folders();
    index(&site);
    let big = site.join("big.bin");
    write(&big, vec![b'a'; SIZE]);
    for i in 0..8 {
        write(
            site.join(format!("part{i}.bin")),
            vec![b'0' + i as u8; SIZE / 8],
        );
    }
    let editor = |done: &AtomicBool| {
        use std::io::{Seek, SeekFrom, Write};
        let mut flip = false;
        let (a, b) = (vec![b'a'; SIZE], vec![b'b'; SIZE]);
        // Rewrites until the deploy ends; every write keeps the size.
        while !done.load(Ordering::SeqCst) {
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&big) {
                let _ = f.seek(SeekFrom::Start(0));
                let _ = f.write_all(if flip { &a } else { &b });
            }
            flip = !flip;
        }
    };
    let run = deploy(&state, &site, &[], editor);
    assert!(run.ok, "the deploy failed: {}", run.stderr.trim());
    let got = published(&state, &run)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(got.contains("/big.bin"), "{got:?}");
}
