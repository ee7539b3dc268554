//! nginx serving the generated site, configured as an operator would for static files:
//! one worker per core, sendfile, open-file cache, no access log, long keep-alive.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The configuration of an nginx serving `root` on `127.0.0.1:port`, with its pid file,
/// logs and temporary folders under `prefix`.
pub fn config(prefix: &Path, root: &Path, port: u16) -> String {
    let p = prefix.display();
    format!(
        "worker_processes auto;
daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{
        text/html html;
        text/css css;
        application/javascript js;
        image/jpeg jpg;
    }}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
    }}
}}
",
        root = root.display()
    )
}

/// A running nginx; stopped when dropped.
pub struct Nginx {
    child: Child,
    /// Its folder (config, pid, logs).
    pub prefix: PathBuf,
}

impl Nginx {
    /// Starts nginx for `root` on `port`, its files under `prefix`.
    pub fn start(prefix: &Path, root: &Path, port: u16) -> Result<Nginx> {
        std::fs::create_dir_all(prefix)?;
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config(prefix, root, port))?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx (is it installed? `make bench` installs it)")?;
        let mut n = Nginx {
            child,
            prefix: prefix.to_owned(),
        };
        // Wait for the listener; an early exit means a bad config or a taken port.
        for _ in 0..100 {
            if let Some(status) = n.child.try_wait()? {
                let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
                bail!("nginx exited ({status}): {log}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(n);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        n.stop();
        bail!("nginx did not listen on {port} within 5 s")
    }

    /// The master's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks nginx to stop (SIGQUIT lets workers finish) and waits for it.
    pub fn stop(&mut self) {
        crate::procs::signal(self.child.id(), "QUIT");
        crate::procs::wait_or_kill(&mut self.child, Duration::from_secs(5));
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_points_everything_at_the_prefix() {
        let c = config(Path::new("/w/ng"), Path::new("/w/site"), 18100);
        for want in [
            "listen 127.0.0.1:18100;",
            "root /w/site;",
            "pid /w/ng/nginx.pid;",
            "client_body_temp_path /w/ng/client_body;",
            "access_log off;",
            "sendfile on;",
            "keepalive_requests 1000000;",
            "daemon off;",
        ] {
            assert!(c.contains(want), "missing {want:?} in\n{c}");
        }
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }
}
