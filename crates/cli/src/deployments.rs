//! `skyhost deployments --site NAME`: every deployment of a site, newest first, with its
//! preview URL and whether it is the live one.

use crate::backend::Backend;
use anyhow::{Context, Result};
use serde::Serialize;
use skyhost_meta::{DeploymentId, DeploymentState, SiteId};

/// One deployment as listed.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// Its id.
    pub id: DeploymentId,
    /// Unix seconds of creation.
    pub created: i64,
    /// Creation time, RFC 3339 (UTC).
    pub date: String,
    /// The note given at deploy.
    pub message: Option<String>,
    /// Files in it.
    pub files: u64,
    /// Bytes of its files.
    pub bytes: u64,
    /// `ready` or `failed`.
    pub state: DeploymentState,
    /// Whether the site serves it now.
    pub live: bool,
    /// Where its preview is served.
    pub preview: Option<String>,
}

/// The site's deployments, newest first, read from the first sites table that answers.
pub async fn deployments(backend: &Backend, site: &SiteId) -> Result<Vec<Listed>> {
    let meta = backend.readable_meta().await?;
    let record = meta
        .site(site)
        .await?
        .with_context(|| format!("site {site} does not exist (see `skyhost sites`)"))?;
    Ok(meta
        .deployments(site)
        .await?
        .into_iter()
        .map(|d| Listed {
            live: record.active.as_ref() == Some(&d.id),
            preview: backend.preview_url(site, &d.id),
            date: rfc3339(d.created),
            created: d.created,
            message: d.message,
            files: d.file_count,
            bytes: d.bytes,
            state: d.state,
            id: d.id,
        })
        .collect())
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The listing as text: one line per deployment, the live one marked.
pub fn render(site: &SiteId, list: &[Listed]) -> String {
    if list.is_empty() {
        return format!("site {site} has no deployments yet\n");
    }
    let mut out = String::new();
    for d in list {
        out.push_str(&format!(
            "{} {:<25} {:<20} {:>6} files {:>12} bytes {:<6}  {}\n",
            if d.live { "*" } else { " " },
            d.id,
            d.date,
            d.files,
            d.bytes,
            if d.state == DeploymentState::Ready {
                ""
            } else {
                "failed"
            },
            d.preview.as_deref().unwrap_or("-"),
        ));
        if let Some(m) = d.message.as_deref().filter(|m| !m.is_empty()) {
            out.push_str(&format!("    {m}\n"));
        }
    }
    out.push_str("(* live)\n");
    out
}
