//! Resident memory of a process, sampled from `/proc/PID/status`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `VmRSS` line of a `/proc/PID/status` text, in bytes.
pub fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut it = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next()? {
        "kB" => Some(n * 1024),
        _ => None,
    }
}

/// The resident memory of `pid` now, in bytes.
pub fn vmrss(pid: u32) -> Option<u64> {
    parse_vmrss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Samples a process's resident memory in the background and keeps the peak.
pub struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `pid` every `every`.
    pub fn start(pid: u32, every: Duration) -> Sampler {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(v) = vmrss(pid) {
                    p.fetch_max(v, Ordering::Relaxed);
                }
                std::thread::sleep(every);
            }
        });
        Sampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The highest sample so far, in bytes.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Stops sampling and returns the peak.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmrss_lines() {
        let cases = [
            (
                "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t   1234 kB\n",
                Some(1234 * 1024),
            ),
            ("VmRSS: 0 kB", Some(0)),
            ("VmRSS: 12 MB", None),
            ("VmRSS: lots kB", None),
            ("Name: x\n", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_vmrss(text), want, "{text:?}");
        }
    }

    #[test]
    fn samples_this_process() {
        let s = Sampler::start(std::process::id(), Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(30));
        let peak = s.finish();
        assert!(peak > 1024 * 1024, "peak {peak}");
    }
}
