//! `skyhost domains add|status|remove`: the domain → site mapping in the sites table, and
//! on AWS each domain's certificate and route ([`skyhost_domains`]): `add` prints the DNS
//! records the owner creates, and the domains function finishes on its own.

use crate::backend::Backend;
use anyhow::Result;
use serde::Serialize;
use skyhost_domains::cloud::DnsRecord;
use skyhost_domains::flow::{owner_records, Removal};
use skyhost_domains::DomainRecord;
use skyhost_meta::{Domain, SiteId};

/// One domain as `status` (and `add`) report it.
#[derive(Debug, Clone, Serialize)]
pub struct DomainStatus {
    /// The domain.
    pub domain: String,
    /// Its site.
    pub site: String,
    /// pending validation, issued, attached, serving, failing, removing; or how the domain
    /// is served without a certificate of its own.
    pub phase: String,
    /// DNS records the owner creates.
    pub records: Vec<DnsRecord>,
    /// Why it is failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether Route 53 holds the domain's zone and skyhost writes its records.
    pub route53: bool,
}

fn of_record(r: &DomainRecord) -> DomainStatus {
    DomainStatus {
        domain: r.domain.clone(),
        site: r.site.clone(),
        phase: r.phase.label().to_string(),
        records: owner_records(r),
        reason: r.reason.clone(),
        route53: r.zone.is_some(),
    }
}

/// Whether the platform's wildcard certificate covers `domain` (one label under the
/// sites domain), so it needs nothing of its own.
pub fn covered(sites_domain: Option<&str>, domain: &str) -> bool {
    let Some(base) = sites_domain.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) else {
        return false;
    };
    domain
        .to_ascii_lowercase()
        .strip_suffix(&format!(".{base}"))
        .is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

/// How a domain without a custom-domain record is served.
fn plain_phase(b: &Backend, domain: &str, local: bool) -> &'static str {
    if local {
        "mapped (local mode: plain HTTP, no certificate)"
    } else if covered(b.sites_domain.as_deref(), domain) {
        "serving (the platform's wildcard certificate)"
    } else if b.custom_domains.is_none() {
        "no certificate (custom domains are not configured: set origin_name)"
    } else {
        "no certificate (run `skyhost domains add` again)"
    }
}

/// Starts TLS for each domain that needs its own certificate; the mapping is written
/// by the caller first.
pub async fn add(
    b: &Backend,
    site: &SiteId,
    domains: &[Domain],
    local: bool,
) -> Result<Vec<DomainStatus>> {
    let mut out = Vec::new();
    for d in domains {
        let needs_tls = !local && !covered(b.sites_domain.as_deref(), d.as_str());
        match (&b.custom_domains, needs_tls) {
            (Some(flow), true) => out.push(of_record(&flow.add(d.as_str(), site.as_str()).await?)),
            _ => out.push(DomainStatus {
                domain: d.to_string(),
                site: site.to_string(),
                phase: plain_phase(b, d.as_str(), local).to_string(),
                records: Vec::new(),
                reason: None,
                route53: false,
            }),
        }
    }
    Ok(out)
}

/// Takes each domain's certificate and route down (those it has); what must wait is
/// finished by the domains function. Returns the domains still being removed.
pub async fn remove(b: &Backend, domains: &[Domain]) -> Result<Vec<String>> {
    let Some(flow) = &b.custom_domains else {
        return Ok(Vec::new());
    };
    let mut pending = Vec::new();
    for d in domains {
        if flow.get(d.as_str()).await?.is_none() {
            continue;
        }
        if flow.remove(d.as_str()).await? == Removal::Pending {
            pending.push(d.to_string());
        }
    }
    Ok(pending)
}

/// Every domain of every site (or of one), with its state.
pub async fn status(b: &Backend, site: Option<&SiteId>, local: bool) -> Result<Vec<DomainStatus>> {
    let records = match &b.custom_domains {
        Some(flow) => flow.list().await?,
        None => Vec::new(),
    };
    let meta = b.readable_meta().await?;
    let mut out = Vec::new();
    for s in meta.sites().await? {
        if site.is_some_and(|want| *want != s.id) {
            continue;
        }
        for d in &s.domains {
            match records.iter().find(|r| r.domain == d.as_str()) {
                Some(r) => out.push(of_record(r)),
                None => out.push(DomainStatus {
                    domain: d.to_string(),
                    site: s.id.to_string(),
                    phase: plain_phase(b, d.as_str(), local).to_string(),
                    records: Vec::new(),
                    reason: None,
                    route53: false,
                }),
            }
        }
    }
    // Domains on their way out, no longer mapped to a site.
    for r in &records {
        let listed = out.iter().any(|o| o.domain == r.domain);
        if !listed && site.is_none_or(|want| want.as_str() == r.site) {
            out.push(of_record(r));
        }
    }
    out.sort_by(|a, b| (&a.site, &a.domain).cmp(&(&b.site, &b.domain)));
    Ok(out)
}

/// The text of `status` and `add`: each domain's state and the records to create.
pub fn render(rows: &[DomainStatus]) -> String {
    let mut s = String::new();
    if rows.is_empty() {
        s.push_str("no domains\n");
    }
    for r in rows {
        s.push_str(&format!("{:<32} {:<16} {}\n", r.domain, r.site, r.phase));
        if let Some(reason) = &r.reason {
            s.push_str(&format!("  why: {reason}\n"));
        }
        if !r.records.is_empty() {
            s.push_str("  DNS records to create at the domain's DNS provider:\n");
            for rec in &r.records {
                s.push_str(&format!(
                    "    {:<48} {:<6} {}\n",
                    rec.name, rec.kind, rec.value
                ));
                if rec.name == r.domain {
                    s.push_str("    (at the zone apex: an ALIAS/ANAME record, or CNAME flattening, to the same name)\n");
                }
            }
        }
        if r.route53 {
            s.push_str(
                "  Route 53 holds the zone: skyhost writes the domain's alias records itself.\n",
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_coverage_table() {
        let cases = [
            (Some("sites.example"), "docs.sites.example", true),
            (Some("sites.example."), "DOCS.Sites.Example", true),
            (Some("sites.example"), "a.b.sites.example", false),
            (Some("sites.example"), "sites.example", false),
            (Some("sites.example"), "www.example.com", false),
            (Some("sites.example"), "evilsites.example", false),
            (None, "docs.sites.example", false),
        ];
        for (base, domain, want) in cases {
            assert_eq!(covered(base, domain), want, "{base:?} {domain}");
        }
    }
}
