//! `skyhost.toml`: site settings at the top level, plus `[[redirects]]`, `[[headers]]`,
//! `[auth]` and `[proxy]`. Unknown keys are errors.
//!
//! ```toml
//! trailing_slash = "always"          # auto | always | never
//! pretty_urls = true
//! spa_fallback = "/index.html"
//! not_found_page = "/404.html"
//! error_page = "/50x.html"
//!
//! [[redirects]]
//! from = "/store"
//! query = { id = ":id" }
//! to = "/products/:id"
//! status = 301
//! force = false
//! conditions = { Country = ["us", "ca"], Language = ["en"] }
//!
//! [[headers]]
//! for = "/*"
//! [headers.values]
//! X-Frame-Options = "DENY"
//!
//! [auth]
//! realm = "Staff"                    # default realm for the rules below
//! [[auth.rules]]
//! path = "/private/*"
//! users = ["alice:secret"]
//! realm = "Private"                  # optional
//!
//! [proxy]
//! allowlist = ["api.internal.example"]   # hosts a proxy rule may reach even when they
//!                                        # resolve to private addresses
//! apply_headers = false
//! max_response_bytes = 10485760
//! forward_credentials = ["api.example.com"]  # upstreams that receive the visitor's
//!                                            # Cookie and Authorization headers
//!
//! [previews]                         # deploy previews ({id}--{site}.{previews domain})
//! enabled = true                     # false: previews answer 404
//! users = ["reviewer:secret"]        # optional basic auth in front of every preview
//! realm = "Previews"                 # optional
//!
//! [geo]                              # crate::geo
//! allow = ["DE", "FR"]               # or deny = [...]
//! page = "/unavailable.html"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::auth::{validate_realm, PlainAuthRule, DEFAULT_REALM};
use crate::error::{ErrorSink, RuleError, CONFIG_FILE};
use crate::geo::{GeoRule, GeoToml};
use crate::headers::{add_users, check_header, HeaderLine, HeaderRule};
use crate::pattern::PathPattern;
use crate::redirects::{
    build_rule, parse_countries, parse_languages, RedirectRule, RuleSpec, DEFAULT_STATUS,
};
use crate::ssrf::{normalize_allowlist_entry, normalize_host_entry};
use crate::{lines, Limits, Settings, TrailingSlash};

/// Default cap on a proxied response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 10 * 1024 * 1024;

/// Largest cap a site may configure.
pub const MAX_RESPONSE_BYTES_LIMIT: u64 = 1024 * 1024 * 1024;

/// How proxy rules (200 to an absolute URL) of a site behave; from `[proxy]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProxyPolicy {
    /// Hosts (names or IP addresses, normalized) a proxy may reach even though they
    /// resolve to addresses that are otherwise refused (loopback, private, …).
    pub allowlist: Vec<String>,
    /// Whether `_headers` rules also apply to proxied responses.
    pub apply_headers: bool,
    /// Proxied response bodies past this many bytes are cut off with an error.
    pub max_response_bytes: u64,
    /// Upstream hosts (normalized) that receive the visitor's `Cookie` and
    /// `Authorization` headers; every other upstream gets neither.
    pub forward_credentials: Vec<String>,
}

impl Default for ProxyPolicy {
    fn default() -> Self {
        ProxyPolicy {
            allowlist: Vec::new(),
            apply_headers: false,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            forward_credentials: Vec::new(),
        }
    }
}

/// Everything `skyhost.toml` declares, validated (auth still in plain text).
#[derive(Debug, Default)]
pub struct Config {
    /// Site settings.
    pub settings: Settings,
    /// `[[redirects]]`, in order.
    pub redirects: Vec<RedirectRule>,
    /// `[[headers]]`, in order.
    pub headers: Vec<HeaderRule>,
    /// Basic auth from `[[headers]]` `Basic-Auth` values and `[[auth.rules]]`.
    pub auth: Vec<PlainAuthRule>,
    /// `[proxy]`.
    pub proxy: ProxyPolicy,
    /// `[geo]`.
    pub geo: Option<GeoRule>,
    /// `[previews]`.
    pub previews: crate::PlainPreviews,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    trailing_slash: Option<TrailingSlash>,
    pretty_urls: Option<bool>,
    spa_fallback: Option<Spanned<String>>,
    not_found_page: Option<Spanned<String>>,
    error_page: Option<Spanned<String>>,
    #[serde(default)]
    redirects: Vec<Spanned<RedirectToml>>,
    #[serde(default)]
    headers: Vec<Spanned<HeadersToml>>,
    auth: Option<AuthToml>,
    proxy: Option<ProxyToml>,
    geo: Option<Spanned<GeoToml>>,
    previews: Option<Spanned<PreviewsToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewsToml {
    enabled: Option<bool>,
    #[serde(default)]
    users: Vec<String>,
    realm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RedirectToml {
    from: String,
    to: String,
    status: Option<u16>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    query: BTreeMap<String, String>,
    conditions: Option<ConditionsToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionsToml {
    #[serde(rename = "Country", alias = "country")]
    country: Option<Vec<String>>,
    #[serde(rename = "Language", alias = "language")]
    language: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadersToml {
    #[serde(rename = "for")]
    path: String,
    values: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthToml {
    realm: Option<Spanned<String>>,
    #[serde(default)]
    rules: Vec<Spanned<AuthRuleToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthRuleToml {
    path: String,
    users: Vec<String>,
    realm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxyToml {
    #[serde(default)]
    allowlist: Vec<Spanned<String>>,
    apply_headers: Option<bool>,
    max_response_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    forward_credentials: Vec<Spanned<String>>,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Checks a site page setting: a path starting with `/`.
fn check_page(key: &str, value: &str) -> Result<(), String> {
    if !value.starts_with('/') || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "{key} must be a path starting with '/' without spaces, e.g. '/404.html'"
        ));
    }
    Ok(())
}

/// Parses `skyhost.toml`.
pub fn parse(text: &str, limits: &Limits) -> Result<Config, Vec<RuleError>> {
    let mut errors = ErrorSink::default();
    parse_into(text, limits, &mut errors).ok_or_else(|| errors.finish())
}

/// Parses `skyhost.toml`, adding problems to `errors`; `None` when it has any.
pub(crate) fn parse_into(text: &str, limits: &Limits, errors: &mut ErrorSink) -> Option<Config> {
    // Size and line-length limits first; a file over them is not parsed further.
    let mut over_limit = false;
    for (number, line) in lines(CONFIG_FILE, text, limits, errors) {
        if let Err(reason) = line {
            errors.at(CONFIG_FILE, number, reason);
            over_limit = true;
        }
    }
    if over_limit || text.len() > limits.max_file_bytes {
        return None;
    }
    let before = errors.len();
    let file: ConfigFile = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            errors.at(CONFIG_FILE, line, e.message().trim().to_string());
            return None;
        }
    };
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);

    let mut config = Config::default();
    if let Some(ts) = file.trailing_slash {
        config.settings.trailing_slash = ts;
    }
    if let Some(p) = file.pretty_urls {
        config.settings.pretty_urls = p;
    }
    let mut page = |key: &str, value: Option<Spanned<String>>| -> Option<String> {
        let value = value?;
        let line = at(value.span());
        let value = value.into_inner();
        match check_page(key, &value) {
            Ok(()) => Some(value),
            Err(reason) => {
                errors.at(CONFIG_FILE, line, reason);
                None
            }
        }
    };
    config.settings.spa_fallback = page("spa_fallback", file.spa_fallback);
    config.settings.not_found_page = page("not_found_page", file.not_found_page);
    config.settings.error_page = page("error_page", file.error_page);

    if file.redirects.len() > limits.max_rules {
        let line = at(file.redirects[limits.max_rules].span());
        errors.at(
            CONFIG_FILE,
            line,
            format!("too many rules: the limit is {}", limits.max_rules),
        );
    }
    for entry in file.redirects {
        let line = at(entry.span());
        let r = entry.into_inner();
        let mut spec = RuleSpec {
            from: r.from,
            query: r.query.into_iter().map(|(k, v)| (k, Some(v))).collect(),
            to: r.to,
            status: r.status.unwrap_or(DEFAULT_STATUS),
            force: r.force,
            ..RuleSpec::default()
        };
        if let Some(c) = r.conditions {
            let parsed = c
                .country
                .map(|list| parse_countries(list.iter().map(String::as_str)))
                .transpose()
                .and_then(|country| {
                    let language = c
                        .language
                        .map(|list| parse_languages(list.iter().map(String::as_str)))
                        .transpose()?;
                    Ok((country, language))
                });
            match parsed {
                Ok((country, language)) => {
                    spec.country = country.unwrap_or_default();
                    spec.language = language.unwrap_or_default();
                }
                Err(reason) => {
                    errors.at(CONFIG_FILE, line, reason);
                    continue;
                }
            }
        }
        match build_rule(spec, format!("{CONFIG_FILE}:{line}")) {
            Ok(rule) => config.redirects.push(rule),
            Err(reason) => errors.at(CONFIG_FILE, line, reason),
        }
    }

    if file.headers.len() > limits.max_rules {
        let line = at(file.headers[limits.max_rules].span());
        errors.at(
            CONFIG_FILE,
            line,
            format!("too many rules: the limit is {}", limits.max_rules),
        );
    }
    for entry in file.headers {
        let line = at(entry.span());
        let h = entry.into_inner();
        let path = match PathPattern::parse(&h.path) {
            Ok(p) => p,
            Err(reason) => {
                errors.at(CONFIG_FILE, line, reason);
                continue;
            }
        };
        let mut headers = Vec::new();
        let mut users = Vec::new();
        let mut failed = false;
        for (name, value) in h.values {
            let value_line = at(value.span());
            let result = check_header(&name, value.get_ref()).and_then(|checked| match checked {
                HeaderLine::Header(n, v) => {
                    headers.push((n, v));
                    Ok(())
                }
                HeaderLine::BasicAuth(new) => add_users(&mut users, new, limits.max_users_per_rule),
            });
            if let Err(reason) = result {
                errors.at(CONFIG_FILE, value_line, reason);
                failed = true;
            }
        }
        if failed {
            continue;
        }
        if headers.is_empty() && users.is_empty() {
            errors.at(
                CONFIG_FILE,
                line,
                format!("[[headers]] for '{}' sets no values", h.path),
            );
            continue;
        }
        let source = format!("{CONFIG_FILE}:{line}");
        if !users.is_empty() {
            config.auth.push(PlainAuthRule {
                path: path.clone(),
                realm: DEFAULT_REALM.to_string(),
                source: source.clone(),
                file: CONFIG_FILE.to_string(),
                line,
                users,
            });
        }
        if !headers.is_empty() {
            config.headers.push(HeaderRule {
                path,
                headers,
                source,
            });
        }
    }

    if let Some(auth) = file.auth {
        // An invalid default realm is reported once, here, not again for each rule.
        let default_realm = match auth.realm {
            Some(realm) => {
                let line = at(realm.span());
                let realm = realm.into_inner();
                if let Err(reason) = validate_realm(&realm) {
                    errors.at(CONFIG_FILE, line, reason);
                }
                realm
            }
            None => DEFAULT_REALM.to_string(),
        };
        if auth.rules.len() > limits.max_rules {
            let line = at(auth.rules[limits.max_rules].span());
            errors.at(
                CONFIG_FILE,
                line,
                format!("too many rules: the limit is {}", limits.max_rules),
            );
        }
        for entry in auth.rules {
            let line = at(entry.span());
            let rule = entry.into_inner();
            let path = match PathPattern::parse(&rule.path) {
                Ok(p) => p,
                Err(reason) => {
                    errors.at(CONFIG_FILE, line, reason);
                    continue;
                }
            };
            if let Some(Err(reason)) = rule.realm.as_deref().map(validate_realm) {
                errors.at(CONFIG_FILE, line, reason);
                continue;
            }
            let realm = rule.realm.unwrap_or_else(|| default_realm.clone());
            if rule.users.is_empty() {
                errors.at(
                    CONFIG_FILE,
                    line,
                    format!("auth rule for '{}' lists no users", rule.path),
                );
                continue;
            }
            let mut users = Vec::new();
            let mut failed = false;
            for text in &rule.users {
                match crate::auth::parse_credential(text)
                    .and_then(|c| add_users(&mut users, vec![c], limits.max_users_per_rule))
                {
                    Ok(()) => {}
                    Err(reason) => {
                        errors.at(CONFIG_FILE, line, reason);
                        failed = true;
                    }
                }
            }
            if failed {
                continue;
            }
            config.auth.push(PlainAuthRule {
                path,
                realm,
                source: format!("{CONFIG_FILE}:{line}"),
                file: CONFIG_FILE.to_string(),
                line,
                users,
            });
        }
    }

    if let Some(entry) = file.previews {
        let line = at(entry.span());
        let p = entry.into_inner();
        config.previews.enabled = p.enabled.unwrap_or(true);
        let realm = p.realm.unwrap_or_else(|| "Previews".to_string());
        let mut users = Vec::new();
        let mut failed = false;
        if let Err(reason) = validate_realm(&realm) {
            errors.at(CONFIG_FILE, line, reason);
            failed = true;
        }
        for text in &p.users {
            if let Err(reason) = crate::auth::parse_credential(text)
                .and_then(|c| add_users(&mut users, vec![c], limits.max_users_per_rule))
            {
                errors.at(CONFIG_FILE, line, reason);
                failed = true;
            }
        }
        if !failed && !users.is_empty() {
            config.previews.auth = Some(PlainAuthRule {
                // Every path of a preview; a path the site protects itself keeps its rule.
                path: PathPattern::parse("/*").expect("/* is a valid path pattern"),
                realm,
                source: format!("{CONFIG_FILE}:{line} [previews]"),
                file: CONFIG_FILE.to_string(),
                line,
                users,
            });
        }
    }

    if let Some(proxy) = file.proxy {
        for entry in &proxy.allowlist {
            let line = at(entry.span());
            match normalize_allowlist_entry(entry.get_ref()) {
                Ok(host) => {
                    if !config.proxy.allowlist.contains(&host) {
                        config.proxy.allowlist.push(host);
                    }
                }
                Err(reason) => errors.at(CONFIG_FILE, line, reason),
            }
        }
        for entry in &proxy.forward_credentials {
            let line = at(entry.span());
            match normalize_host_entry("forward_credentials", entry.get_ref()) {
                Ok(host) => {
                    if !config.proxy.forward_credentials.contains(&host) {
                        config.proxy.forward_credentials.push(host);
                    }
                }
                Err(reason) => errors.at(CONFIG_FILE, line, reason),
            }
        }
        if let Some(apply) = proxy.apply_headers {
            config.proxy.apply_headers = apply;
        }
        if let Some(max) = proxy.max_response_bytes {
            let line = at(max.span());
            let max = max.into_inner();
            if max == 0 || max > MAX_RESPONSE_BYTES_LIMIT {
                errors.at(
                    CONFIG_FILE,
                    line,
                    format!("max_response_bytes must be between 1 and {MAX_RESPONSE_BYTES_LIMIT}"),
                );
            } else {
                config.proxy.max_response_bytes = max;
            }
        }
    }

    if let Some(geo) = file.geo {
        let line = at(geo.span());
        match crate::geo::validate(geo.into_inner(), line, &at, &check_page) {
            Ok(rule) => config.geo = Some(rule),
            Err(problems) => {
                for (line, reason) in problems {
                    errors.at(CONFIG_FILE, line, reason);
                }
            }
        }
    }

    (errors.len() == before).then_some(config)
}
