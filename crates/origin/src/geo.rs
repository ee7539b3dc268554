//! A site's `[geo]` restriction at request time: the visitor's country is
//! `CloudFront-Viewer-Country`, which reaches this point only from the verified front
//! ([`crate::forwarded`] removes it from everyone else, who then counts as unknown).

use http::HeaderMap;
use skyhost_rules::{GeoDecision, SiteRules};

/// The header CloudFront (or local mode's edge) sets to the visitor's country.
pub const VIEWER_COUNTRY: &str = "cloudfront-viewer-country";

/// The message of a refused visitor when the site names no page.
pub const REFUSED_TEXT: &str = "This site is not available in your country.\n";

/// Why a request is refused: the site's page to answer it with, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal<'a> {
    /// `[geo] page`.
    pub page: Option<&'a str>,
}

/// `Some` when the site's geo rule refuses the visitor whose (sanitized) headers these are.
pub fn refusal<'a>(rules: &'a SiteRules, headers: &HeaderMap) -> Option<Refusal<'a>> {
    let geo = rules.geo.as_ref()?;
    let country = headers.get(VIEWER_COUNTRY).and_then(|v| v.to_str().ok());
    match geo.decide(country) {
        GeoDecision::Serve => None,
        GeoDecision::Refuse => Some(Refusal {
            page: geo.page.as_deref(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhost_rules::{CountryList, GeoRule};

    #[test]
    fn refusal_reads_the_viewer_country_header() {
        let rules = SiteRules {
            geo: Some(GeoRule {
                countries: CountryList::Allow(vec!["DE".to_string()]),
                page: Some("/geo.html".to_string()),
            }),
            ..SiteRules::default()
        };
        let with = |country: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(c) = country {
                h.insert(VIEWER_COUNTRY, c.parse().expect("a valid header value"));
            }
            refusal(&rules, &h)
        };
        assert_eq!(with(Some("DE")), None);
        let refused = Some(Refusal {
            page: Some("/geo.html"),
        });
        assert_eq!(with(Some("US")), refused);
        assert_eq!(with(None), refused);
        assert_eq!(refusal(&SiteRules::default(), &HeaderMap::new()), None);
    }
}
