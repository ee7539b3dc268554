//! Deterministic generated sites: the three-file site of the throughput runs and the
//! 10,000-file site of the deploy runs. Text is made of words, so it compresses like real
//! pages; images are noise, so they do not.

use anyhow::{Context, Result};
use std::fs;
use std::path::Path;

/// Sizes of the throughput site's files.
pub const HTML_BYTES: usize = 1024;
/// 17 KiB of CSS.
pub const CSS_BYTES: usize = 17 * 1024;
/// A 1 MiB image.
pub const IMAGE_BYTES: usize = 1024 * 1024;

/// The throughput site's paths, with a short label each.
pub const THROUGHPUT_FILES: [(&str, &str); 3] = [
    ("html-1k", "/index.html"),
    ("css-17k", "/style.css"),
    ("jpg-1m", "/img/photo.jpg"),
];

/// A small, fast pseudo-random generator (SplitMix64): the same seed makes the same site.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the", "region", "deploy", "static", "site", "latency", "cache", "edge", "request", "origin",
    "manifest", "blob", "content", "visitor", "page", "style", "header", "route", "health",
    "replica", "bucket", "table", "record", "stream", "notify", "secret", "and", "of", "to", "in",
    "is", "for", "with", "on", "a", "every", "fast", "nearest", "primary",
];

/// `n` bytes of word text.
pub fn words(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n + 16);
    while s.len() < n {
        s.push_str(WORDS[rng.range(0, WORDS.len())]);
        s.push(if rng.range(0, 12) == 0 { '\n' } else { ' ' });
    }
    s.truncate(n);
    s
}

/// An HTML page of exactly `n` bytes (at least the size of its frame).
pub fn html_page(rng: &mut Rng, title: &str, n: usize) -> String {
    let head = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"stylesheet\" href=\"/style.css\"></head>\n<body><p>"
    );
    let tail = "</p></body></html>\n";
    let body = n.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", words(rng, body))
}

/// A stylesheet of exactly `n` bytes.
pub fn css(rng: &mut Rng, n: usize) -> String {
    let mut s = String::with_capacity(n + 64);
    let mut i = 0;
    while s.len() < n {
        let w = WORDS[rng.range(0, WORDS.len())];
        s.push_str(&format!(
            ".{w}-{i} {{ margin: {}px; color: #{:06x}; }}\n",
            rng.range(0, 64),
            rng.next_u64() & 0xff_ffff
        ));
        i += 1;
    }
    s.truncate(n);
    s
}

/// `n` bytes of noise behind a JPEG signature.
pub fn image(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    v.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    while v.len() < n {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(n);
    v
}

fn write(root: &Path, rel: &str, body: &[u8]) -> Result<()> {
    let p = root.join(rel.trim_start_matches('/'));
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(&p, body).with_context(|| format!("writing {}", p.display()))
}

/// Writes the throughput site: `/index.html` (1 KiB), `/style.css` (17 KiB) and
/// `/img/photo.jpg` (1 MiB).
pub fn throughput_site(root: &Path) -> Result<()> {
    let mut rng = Rng::new(1);
    write(
        root,
        "/index.html",
        html_page(&mut rng, "skyhost bench", HTML_BYTES).as_bytes(),
    )?;
    write(root, "/style.css", css(&mut rng, CSS_BYTES).as_bytes())?;
    write(root, "/img/photo.jpg", &image(&mut rng, IMAGE_BYTES))
}

/// What [`large_site`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteSize {
    /// Files written.
    pub files: usize,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// The path of the page [`change_one`] edits.
pub const CHANGED_PAGE: &str = "/index.html";

/// Writes a site of `files` files (at least one): 60 % pages of 1–6 KiB, 20 % styles and
/// scripts of 2–20 KiB, 20 % images of 5–50 KiB, 100 to a folder.
pub fn large_site(root: &Path, files: usize, seed: u64) -> Result<SiteSize> {
    let mut rng = Rng::new(seed);
    let mut bytes = 0u64;
    let page = html_page(&mut rng, "home", 2048);
    bytes += page.len() as u64;
    write(root, CHANGED_PAGE, page.as_bytes())?;
    for i in 1..files {
        let dir = format!("/s{:03}", i / 100);
        let (ext, lo, hi) = match i % 10 {
            0..=5 => ("html", 1024, 6 * 1024),
            6 => ("css", 2048, 20 * 1024),
            7 => ("js", 2048, 20 * 1024),
            _ => ("jpg", 5 * 1024, 50 * 1024),
        };
        let n = rng.range(lo, hi);
        let body: Vec<u8> = match ext {
            "html" => html_page(&mut rng, &format!("page {i}"), n).into_bytes(),
            "css" => css(&mut rng, n).into_bytes(),
            "js" => format!("// {}\n", words(&mut rng, n)).into_bytes(),
            _ => image(&mut rng, n),
        };
        bytes += body.len() as u64;
        write(root, &format!("{dir}/f{i:05}.{ext}"), &body)?;
    }
    Ok(SiteSize {
        files: files.max(1),
        bytes,
    })
}

/// Edits [`CHANGED_PAGE`] so its content (and hash) differ, marked with `n`.
pub fn change_one(root: &Path, n: u64) -> Result<()> {
    let p = root.join(CHANGED_PAGE.trim_start_matches('/'));
    let mut body = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    body.push_str(&format!("<!-- change {n} -->\n"));
    fs::write(&p, body).with_context(|| format!("writing {}", p.display()))
}

/// Writes the small site of propagation deploy `n`: a page that names its deploy.
pub fn propagation_site(root: &Path, n: u64) -> Result<()> {
    let mut rng = Rng::new(100 + n);
    write(
        root,
        "/index.html",
        html_page(&mut rng, &format!("deploy {n}"), HTML_BYTES).as_bytes(),
    )?;
    write(root, "/style.css", css(&mut rng, 2048).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sizes() {
        let mut rng = Rng::new(7);
        for n in [200, 1024, 4096, 17 * 1024] {
            assert_eq!(html_page(&mut rng, "t", n).len(), n);
            assert_eq!(css(&mut rng, n).len(), n);
            assert_eq!(image(&mut rng, n).len(), n);
            assert_eq!(words(&mut rng, n).len(), n);
        }
    }

    #[test]
    fn deterministic() {
        assert_eq!(Rng::new(3).next_u64(), Rng::new(3).next_u64());
        assert_ne!(Rng::new(3).next_u64(), Rng::new(4).next_u64());
        let mut r = Rng::new(9);
        for _ in 0..1000 {
            let v = r.range(5, 9);
            assert!((5..9).contains(&v));
        }
        assert_eq!(r.range(4, 4), 4);
    }

    #[test]
    fn throughput_site_files() {
        let d = tempfile::tempdir().unwrap();
        throughput_site(d.path()).unwrap();
        let sizes: Vec<u64> = THROUGHPUT_FILES
            .iter()
            .map(|(_, p)| fs::metadata(d.path().join(&p[1..])).unwrap().len())
            .collect();
        assert_eq!(sizes, vec![1024, 17 * 1024, 1024 * 1024]);
    }

    #[test]
    fn large_site_counts_and_change() {
        let d = tempfile::tempdir().unwrap();
        let s = large_site(d.path(), 250, 1).unwrap();
        let on_disk: Vec<_> = walk(d.path());
        assert_eq!(s.files, 250);
        assert_eq!(on_disk.len(), 250);
        assert_eq!(on_disk.iter().map(|(_, n)| n).sum::<u64>(), s.bytes);
        let before = fs::read(d.path().join("index.html")).unwrap();
        change_one(d.path(), 1).unwrap();
        let after = fs::read(d.path().join("index.html")).unwrap();
        assert_ne!(before, after);
        assert_eq!(walk(d.path()).len(), 250);
    }

    fn walk(p: &Path) -> Vec<(std::path::PathBuf, u64)> {
        let mut out = Vec::new();
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push((e.path(), e.metadata().unwrap().len()));
            }
        }
        out
    }
}
