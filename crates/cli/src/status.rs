//! `skyhost status` and `skyhost sites`: what the table says and what each region
//! actually serves, with its health.

use crate::backend::Backend;
use anyhow::Result;
use serde::Serialize;
use skyhost_meta::{RegionStatus, Site, SiteId};
use std::time::Duration;

/// One region's view.
#[derive(Debug, Serialize)]
pub struct RegionView {
    /// The region.
    pub region: String,
    /// `healthy`, `unhealthy (503)`, `unreachable` or `unknown` (no endpoint).
    pub health: String,
    /// The deployment the region serves for the site (from `X-Skyhost-Deployment`).
    pub serving: Option<String>,
    /// Blobs of the live deployment the region's bucket still lacks (`None`: not known,
    /// the bucket could not be read).
    pub missing_blobs: Option<usize>,
    /// The revision of the site record the region serves (from `X-Skyhost-Revision`).
    pub revision: Option<u64>,
    /// How many revisions the region is behind the table (`None`: it did not answer).
    pub behind: Option<u64>,
}

/// What a region answered for a site.
pub(crate) struct Served {
    pub(crate) deployment: Option<String>,
    pub(crate) revision: Option<u64>,
}

/// A site's status.
#[derive(Debug, Serialize)]
pub struct SiteStatus {
    /// The record in the table.
    pub site: Site,
    /// Per region.
    pub regions: Vec<RegionView>,
}

async fn health(client: &reqwest::Client, endpoint: Option<&str>) -> String {
    let Some(e) = endpoint else {
        return "unknown".into();
    };
    match client.get(format!("{e}/_skyhost/health")).send().await {
        Ok(r) if r.status().is_success() => "healthy".into(),
        Ok(r) => format!("unhealthy ({})", r.status().as_u16()),
        Err(_) => "unreachable".into(),
    }
}

pub(crate) async fn serving(
    client: &reqwest::Client,
    endpoint: Option<&str>,
    site: &Site,
) -> Option<Served> {
    let host = site.domains.first()?;
    let r = client
        .head(format!("{}/", endpoint?))
        .header("host", host.as_str())
        .send()
        .await
        .ok()?;
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Some(Served {
        deployment: header("x-skyhost-deployment"),
        revision: header("x-skyhost-revision").and_then(|v| v.parse().ok()),
    })
}

/// The status of one site or of every site.
pub async fn status(backend: &Backend, site: Option<&SiteId>) -> Result<Vec<SiteStatus>> {
    let client = skyhost_meta::tls::http_client()
        .timeout(Duration::from_secs(5))
        .build()?;
    let meta = backend.readable_meta().await?;
    let sites = match site {
        Some(id) => match meta.site(id).await? {
            Some(s) => vec![s],
            None => anyhow::bail!("site {id} does not exist"),
        },
        None => meta.sites().await?,
    };
    let mut out = Vec::new();
    for s in sites {
        let missing = match crate::heal::missing_per_region(backend, &s).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(site = %s.id, error = %e, "could not count the blobs each region lacks");
                Vec::new()
            }
        };
        let mut regions = Vec::new();
        for r in backend.regions() {
            let served = serving(&client, r.endpoint.as_deref(), &s).await;
            let revision = served.as_ref().and_then(|x| x.revision);
            regions.push(RegionView {
                region: r.name.clone(),
                health: health(&client, r.endpoint.as_deref()).await,
                serving: served.and_then(|x| x.deployment),
                revision,
                behind: revision.map(|got| s.revision.saturating_sub(got)),
                missing_blobs: missing.iter().find(|(n, _)| *n == r.name).map(|(_, c)| *c),
            });
        }
        out.push(SiteStatus { site: s, regions });
    }
    Ok(out)
}

/// Renders statuses as a table.
pub fn render(statuses: &[SiteStatus]) -> String {
    let mut out = String::new();
    for s in statuses {
        out.push_str(&format!(
            "site {}  revision {}  active {}  domains {}\n",
            s.site.id,
            s.site.revision,
            s.site.active.as_ref().map(|d| d.as_str()).unwrap_or("-"),
            if s.site.domains.is_empty() {
                "-".to_owned()
            } else {
                s.site
                    .domains
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            }
        ));
        out.push_str(&format!(
            "  {:<16} {:<18} {:<9} {}\n",
            "REGION", "HEALTH", "REVISION", "SERVING"
        ));
        for r in &s.regions {
            let mark = match (r.behind, &r.serving, &s.site.active) {
                (Some(n), _, _) if n > 0 => format!("  ({n} behind)"),
                (_, Some(a), Some(b)) if a != b.as_str() => "  (behind)".to_owned(),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  {:<16} {:<18} {:<9} {}{}{}\n",
                r.region,
                r.health,
                r.revision.map_or("-".to_owned(), |n| n.to_string()),
                r.serving.as_deref().unwrap_or("-"),
                mark,
                missing_note(r.missing_blobs)
            ));
        }
    }
    if statuses.is_empty() {
        out.push_str("no sites yet: deploy one with `skyhost deploy DIR --site NAME`\n");
    }
    out
}

/// One refresh of `skyhost status --watch`: on a terminal the screen is cleared and the
/// view drawn from its top-left corner, so it stays in place; elsewhere (a pipe, a log)
/// each view follows the last under a line with its time. Pure.
pub fn watch_frame(view: &str, at: &str, terminal: bool) -> String {
    if terminal {
        format!("\x1b[H\x1b[2J{at}  (Ctrl-C stops)\n\n{view}")
    } else {
        format!("--- {at}\n{view}")
    }
}

/// `skyhost status --watch`: the view again every `every`, until Ctrl-C. A failed read is
/// shown in place of the view and retried.
pub async fn watch(backend: &Backend, site: Option<&SiteId>, every: Duration) -> Result<()> {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stdout().is_terminal();
    loop {
        let view = match status(backend, site).await {
            Ok(st) => render(&st),
            Err(e) => format!("error: {e:#} (retrying)\n"),
        };
        let at = httpdate::fmt_http_date(std::time::SystemTime::now());
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(watch_frame(&view, &at, terminal).as_bytes());
        let _ = out.flush();
        drop(out);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// What the table says of a region's missing blobs: nothing once it holds them all.
fn missing_note(missing: Option<usize>) -> String {
    match missing {
        Some(n) if n > 0 => format!("  ({n} blobs missing)"),
        _ => String::new(),
    }
}

/// Sets or clears a region's maintenance flag: its health check answers 503, so Route 53
/// (or the local edge router) moves its visitors to the next closest healthy region.
pub async fn set_maintenance(backend: &Backend, region: &str, on: bool) -> Result<()> {
    if !backend.regions().any(|r| r.name == region) {
        let names: Vec<&str> = backend.regions().map(|r| r.name.as_str()).collect();
        anyhow::bail!("region {region} is not one of {}", names.join(", "));
    }
    backend
        .meta
        .set_region_status(&RegionStatus {
            region: region.to_owned(),
            maintenance: on,
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhost_meta::DeploymentId;

    #[test]
    fn render_shows_each_region_revision_and_how_far_behind() {
        let mut site = Site::new(SiteId::parse("demo").unwrap(), 1).next(2).next(3);
        site.active = Some(DeploymentId::new(1_800_000_000));
        let active = site.active.as_ref().map(|d| d.to_string());
        let view = |region: &str, health: &str, revision: Option<u64>| RegionView {
            region: region.into(),
            health: health.into(),
            serving: revision.and(active.clone()),
            revision,
            behind: revision.map(|r| 3 - r),
            missing_blobs: None,
        };
        let out = render(&[SiteStatus {
            site,
            regions: vec![
                view("us-west-2", "healthy", Some(3)),
                view("eu-central-1", "healthy", Some(1)),
                view("ap-southeast-1", "unreachable", None),
            ],
        }]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains("REVISION"), "{out}");
        assert!(
            lines[2].contains(" 3 ") && !lines[2].contains("behind"),
            "{out}"
        );
        assert!(
            lines[3].contains(" 1 ") && lines[3].ends_with("(2 behind)"),
            "{out}"
        );
        assert!(
            lines[4].contains("unreachable") && lines[4].contains(" - "),
            "{out}"
        );
    }

    #[test]
    fn watch_frames_redraw_in_place_only_on_a_terminal() {
        let cases = [
            (true, "\x1b[H\x1b[2JT  (Ctrl-C stops)\n\nview\n"),
            (false, "--- T\nview\n"),
        ];
        for (terminal, want) in cases {
            assert_eq!(watch_frame("view\n", "T", terminal), want);
        }
    }

    #[test]
    fn missing_blobs_show_only_while_some_are_missing() {
        let cases = [
            (None, ""),
            (Some(0), ""),
            (Some(1), "  (1 blobs missing)"),
            (Some(7), "  (7 blobs missing)"),
        ];
        for (n, want) in cases {
            assert_eq!(missing_note(n), want, "{n:?}");
        }
    }
}
