//! Child processes: signals, bounded waits, and `skyhost` invocations.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sends signal `sig` (a name such as `TERM`) to process `pid`, a child this harness started.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits up to `grace` for `child` to exit, then kills it.
pub fn wait_or_kill(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `skyhost` with `args`; fails with its stderr when it fails.
pub fn skyhost(bin: &Path, args: &[&str]) -> Result<(String, Duration)> {
    let started = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let took = started.elapsed();
    if !out.status.success() {
        bail!(
            "skyhost {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), took))
}

/// The first free run of `n` consecutive TCP ports on 127.0.0.1 at or after `from`.
pub fn free_ports(from: u16, n: u16) -> Result<u16> {
    let mut base = from;
    while base.checked_add(n).is_some() {
        let taken =
            (base..base + n).find(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).is_err());
        match taken {
            Some(p) => base = p + 1,
            None => return Ok(base),
        }
    }
    bail!("no {n} free consecutive ports after {from}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_skip_taken_ones() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        if port < 2 {
            return;
        }
        let base = free_ports(port - 1, 3).unwrap();
        assert!(base > port || base + 3 <= port, "{base} overlaps {port}");
    }

    #[test]
    fn wait_or_kill_kills() {
        let mut c = Command::new("sleep").arg("30").spawn().unwrap();
        let t = Instant::now();
        wait_or_kill(&mut c, Duration::from_millis(100));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(c.try_wait().unwrap().is_some());
    }
}
