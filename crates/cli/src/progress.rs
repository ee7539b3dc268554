//! Deploy progress: an indicatif bar on a terminal, plain lines otherwise (CI logs).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

/// Files and bytes done out of a total.
pub struct Progress {
    bar: Option<ProgressBar>,
    total_files: u64,
    total_bytes: u64,
    files: AtomicU64,
    bytes: AtomicU64,
    next_line: AtomicU64,
    quiet: bool,
}

impl Progress {
    /// Progress over `files` and `bytes`; `quiet` prints nothing.
    pub fn new(label: &str, files: u64, bytes: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(bytes.max(1));
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(format!("{label} 0/{files} files"));
            b
        });
        if bar.is_none() && !quiet {
            eprintln!("{label}: {files} files, {bytes} bytes");
        }
        Progress {
            bar,
            total_files: files,
            total_bytes: bytes,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            next_line: AtomicU64::new(1),
            quiet,
        }
    }

    /// One more file of `bytes` done.
    pub fn inc(&self, label: &str, bytes: u64) {
        let f = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        let b = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(bar) = &self.bar {
            bar.set_position(b);
            bar.set_message(format!("{label} {f}/{} files", self.total_files));
        } else if !self.quiet {
            // A line per tenth of the work, so logs stay short.
            let step = self.next_line.load(Ordering::Relaxed);
            if f * 10 >= step * self.total_files.max(1) {
                self.next_line.store(step + 1, Ordering::Relaxed);
                eprintln!(
                    "{label}: {f}/{} files, {b}/{} bytes",
                    self.total_files, self.total_bytes
                );
            }
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
