//! Deploy previews: every deployment is served at
//! `{deployment id, lowercased}--{site}.{previews domain}`. Pure: the origin parses the
//! host, the CLI prints the URL.

use crate::ids::{DeploymentId, Domain, SiteId};

/// The separator between the deployment and the site in a preview host's first label.
const SEPARATOR: &str = "--";

/// The longest DNS label: a site whose name makes the preview label longer (over 36
/// characters) has no previews.
const MAX_LABEL: usize = 63;

/// The host a deployment's preview is served at; `None` when the site's name is too long
/// for one DNS label to hold both.
pub fn host(deployment: &DeploymentId, site: &SiteId, previews_domain: &str) -> Option<String> {
    let label = format!(
        "{}{SEPARATOR}{site}",
        deployment.as_str().to_ascii_lowercase()
    );
    (label.len() <= MAX_LABEL).then(|| format!("{label}.{previews_domain}"))
}

/// The deployment and site a preview host names, if `host` is one under `previews_domain`.
/// A deployment id never contains `--`, so the first `--` splits the label.
pub fn parse(host: &Domain, previews_domain: &str) -> Option<(DeploymentId, SiteId)> {
    let label = host
        .as_str()
        .strip_suffix(previews_domain)?
        .strip_suffix('.')?;
    if label.contains('.') {
        return None;
    }
    let (deployment, site) = label.split_once(SEPARATOR)?;
    // Ids are written `20261204T140056Z-…`; hosts carry them lowercased.
    let deployment: String = deployment
        .char_indices()
        .map(|(i, c)| {
            if i == 8 || i == 15 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    Some((
        DeploymentId::parse(&deployment).ok()?,
        SiteId::parse(site).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_table() {
        let d = DeploymentId::parse("20261204T140056Z-0156475d").unwrap();
        let s = SiteId::parse("example").unwrap();
        assert_eq!(
            host(&d, &s, "localhost").as_deref(),
            Some("20261204t140056z-0156475d--example.localhost")
        );
        // 25 + 2 + 36 characters fill a label; one more does not fit.
        let longest = SiteId::parse(&"a".repeat(36)).unwrap();
        let h = host(&d, &longest, "localhost").unwrap();
        assert_eq!(
            parse(&Domain::parse(&h).unwrap(), "localhost"),
            Some((d.clone(), longest))
        );
        assert_eq!(
            host(&d, &SiteId::parse(&"a".repeat(37)).unwrap(), "localhost"),
            None
        );
        let some =
            |d: &str, s: &str| Some((DeploymentId::parse(d).unwrap(), SiteId::parse(s).unwrap()));
        let cases = [
            (
                "20261204t140056z-0156475d--example.localhost",
                "localhost",
                some("20261204T140056Z-0156475d", "example"),
            ),
            // Case does not matter (Domain lowercases), sites may hold `-`.
            (
                "20261204T140056Z-0156475D--my-site.sites.example",
                "sites.example",
                some("20261204T140056Z-0156475d", "my-site"),
            ),
            // Not under the previews domain, or not directly under it.
            (
                "20261204t140056z-0156475d--example.other",
                "localhost",
                None,
            ),
            (
                "a.20261204t140056z-0156475d--example.localhost",
                "localhost",
                None,
            ),
            (
                "20261204t140056z-0156475d--examplelocalhost",
                "localhost",
                None,
            ),
            ("localhost", "localhost", None),
            // Not a deployment id, no site, no separator.
            ("2026--example.localhost", "localhost", None),
            ("20261204t140056z-0156475d--.localhost", "localhost", None),
            ("example.localhost", "localhost", None),
            (
                "20261204x140056z-0156475d--example.localhost",
                "localhost",
                None,
            ),
        ];
        for (h, domain, want) in cases {
            let Ok(parsed) = Domain::parse(h) else {
                assert_eq!(want, None, "{h}");
                continue;
            };
            assert_eq!(parse(&parsed, domain), want, "{h}");
        }
        // Round trip.
        let h = Domain::parse(&host(&d, &s, "sites.example").unwrap()).unwrap();
        assert_eq!(parse(&h, "sites.example"), Some((d, s)));
    }
}
