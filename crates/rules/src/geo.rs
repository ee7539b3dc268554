//! `[geo]` of `skyhost.toml`: the countries a site is served in, as CloudFront's geo
//! restriction does it, and the decision for one visitor.
//!
//! ```toml
//! [geo]
//! allow = ["DE", "FR"]        # or deny = ["..."]: one of the two, ISO 3166-1 alpha-2
//! page = "/unavailable.html"  # optional: served with 403 to a refused visitor
//! ```
//!
//! A visitor whose country is unknown (no `CloudFront-Viewer-Country`, or a value that is
//! no country) is served by a `deny` list and refused by an `allow` list: an allow list
//! is a promise that only those countries get the site.

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Which countries a site's `[geo]` names, and what it does with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", content = "countries", rename_all = "lowercase")]
pub enum CountryList {
    /// Only these countries are served (upper-case alpha-2 codes).
    Allow(Vec<String>),
    /// Every country but these is served (upper-case alpha-2 codes).
    Deny(Vec<String>),
}

/// A site's geo restriction, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeoRule {
    /// The countries and the mode.
    pub countries: CountryList,
    /// Page served with 403 to a refused visitor; a plain message without it.
    #[serde(default)]
    pub page: Option<String>,
}

/// What a site's geo rule says of one visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoDecision {
    /// Serve the request.
    Serve,
    /// Answer 403.
    Refuse,
}

impl GeoRule {
    /// The decision for a visitor from `country` (a `CloudFront-Viewer-Country` value as
    /// received; `None` or a value that is no alpha-2 code means unknown).
    pub fn decide(&self, country: Option<&str>) -> GeoDecision {
        let known = country
            .map(str::trim)
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()));
        let listed =
            |list: &[String]| known.is_some_and(|c| list.iter().any(|l| l.eq_ignore_ascii_case(c)));
        let serve = match &self.countries {
            CountryList::Allow(list) => listed(list),
            CountryList::Deny(list) => !listed(list),
        };
        if serve {
            GeoDecision::Serve
        } else {
            GeoDecision::Refuse
        }
    }
}

/// `[geo]` as written in `skyhost.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GeoToml {
    allow: Option<Vec<Spanned<String>>>,
    deny: Option<Vec<Spanned<String>>>,
    page: Option<Spanned<String>>,
}

/// An ISO 3166-1 alpha-2 code, upper case, or why `value` is not one.
pub fn country_code(value: &str) -> Result<String, String> {
    if value.len() == 2 {
        if let Ok(country) = celes::Country::from_alpha2(value) {
            return Ok(country.alpha2.to_ascii_uppercase());
        }
    }
    Err(format!(
        "'{value}' is not an ISO 3166-1 alpha-2 country code (e.g. \"DE\", \"FR\", \"US\")"
    ))
}

/// Validates `[geo]`; each problem is reported with the line it is on (`at` turns a span
/// into a line, `table_line` is the line of the `[geo]` header).
pub(crate) fn validate(
    geo: GeoToml,
    table_line: usize,
    at: &dyn Fn(std::ops::Range<usize>) -> usize,
    check_page: &dyn Fn(&str, &str) -> Result<(), String>,
) -> Result<GeoRule, Vec<(usize, String)>> {
    let mut errors = Vec::new();
    let mut codes = |list: Vec<Spanned<String>>, key: &str| -> Vec<String> {
        if list.is_empty() {
            errors.push((table_line, format!("[geo] {key} lists no country")));
        }
        let mut out: Vec<String> = Vec::new();
        for entry in list {
            let line = at(entry.span());
            match country_code(entry.get_ref()) {
                Ok(code) if !out.contains(&code) => out.push(code),
                Ok(_) => {}
                Err(reason) => errors.push((line, reason)),
            }
        }
        out
    };
    let countries = match (geo.allow, geo.deny) {
        (Some(allow), None) => Some(CountryList::Allow(codes(allow, "allow"))),
        (None, Some(deny)) => Some(CountryList::Deny(codes(deny, "deny"))),
        (Some(_), Some(_)) => {
            errors.push((
                table_line,
                "[geo] takes either allow or deny, not both".to_string(),
            ));
            None
        }
        (None, None) => {
            errors.push((
                table_line,
                "[geo] needs allow = [...] or deny = [...] (ISO 3166-1 codes)".to_string(),
            ));
            None
        }
    };
    let page = geo.page.and_then(|page| {
        let line = at(page.span());
        let page = page.into_inner();
        match check_page("[geo] page", &page) {
            Ok(()) => Some(page),
            Err(reason) => {
                errors.push((line, reason));
                None
            }
        }
    });
    match countries {
        Some(countries) if errors.is_empty() => Ok(GeoRule { countries, page }),
        _ => Err(errors),
    }
}
