//! Site rules: `_redirects`, `_headers` and `skyhost.toml`, parsed and validated at deploy
//! time and matched at request time. Pure: no I/O, so every decision is table-testable.
//!
//! Deploy: [`parse_site`] reads the three files and reports every problem with file, line
//! and reason; [`ParsedSite::seal`] hashes basic-auth passwords (argon2id) and gives the
//! [`SiteRules`] stored in the manifest. Request: [`SiteRules::match_redirect`],
//! [`SiteRules::headers_for`] and [`SiteRules::auth_for`].

pub mod auth;
pub mod config;
pub mod error;
pub mod escape;
pub mod geo;
pub mod headers;
pub mod pattern;
pub mod redirects;
pub mod ssrf;

use serde::{Deserialize, Serialize};

pub use auth::{AuthOutcome, AuthRule, AuthUser, HashParams, Offered, PlainAuthRule};
pub use config::ProxyPolicy;
pub use error::RuleError;
pub use geo::{CountryList, GeoDecision, GeoRule};
pub use headers::HeaderRule;
pub use pattern::PathPattern;
pub use redirects::{RedirectAction, RedirectRule, RequestFacts};

use error::ErrorSink;

/// Everything a deployed site declares about how it is served; stored in the manifest.
/// Holds no plain-text password: basic-auth users carry argon2id hashes only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteRules {
    /// Site settings from `skyhost.toml`.
    #[serde(default)]
    pub settings: Settings,
    /// Redirect rules: `_redirects` first, then `[[redirects]]` from `skyhost.toml`.
    #[serde(default)]
    pub redirects: Vec<RedirectRule>,
    /// Header rules: `_headers` first, then `[[headers]]` from `skyhost.toml`.
    #[serde(default)]
    pub headers: Vec<HeaderRule>,
    /// Basic-auth rules: `_headers` first, then `skyhost.toml`; the first match applies.
    #[serde(default)]
    pub auth: Vec<AuthRule>,
    /// `[proxy]` from `skyhost.toml`.
    #[serde(default)]
    pub proxy: ProxyPolicy,
    /// `[geo]` from `skyhost.toml`: the countries the site is served in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<GeoRule>,
    /// `[previews]` from `skyhost.toml`.
    #[serde(default)]
    pub previews: Previews,
}

/// `[previews]`: whether the site's deploy previews are served, and the basic auth in
/// front of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Previews {
    /// `false`: every preview answers 404.
    pub enabled: bool,
    /// Asked on every path of a preview that the site does not protect itself.
    pub auth: Option<AuthRule>,
}

impl Default for Previews {
    fn default() -> Self {
        Previews {
            enabled: true,
            auth: None,
        }
    }
}

/// `[previews]` as parsed, its password still in plain text.
#[derive(Debug, Clone)]
pub struct PlainPreviews {
    /// Whether previews are served.
    pub enabled: bool,
    /// The basic auth in front of them.
    pub auth: Option<PlainAuthRule>,
}

impl Default for PlainPreviews {
    fn default() -> Self {
        PlainPreviews {
            enabled: true,
            auth: None,
        }
    }
}

/// Per-site serving settings (`skyhost.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Canonical form of directory-like URLs.
    pub trailing_slash: TrailingSlash,
    /// Serve `/about` from `about.html` or `about/index.html`.
    pub pretty_urls: bool,
    /// Page served with 200 for unknown paths (single-page apps), e.g. `/index.html`.
    pub spa_fallback: Option<String>,
    /// Page served with 404; defaults to `/404.html` when the site has one.
    pub not_found_page: Option<String>,
    /// Page served with 5xx errors; defaults to `/50x.html` when the site has one.
    pub error_page: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            trailing_slash: TrailingSlash::Auto,
            pretty_urls: true,
            spa_fallback: None,
            not_found_page: None,
            error_page: None,
        }
    }
}

/// Trailing slash policy: `auto` serves both forms, `always`/`never` redirect (301) to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrailingSlash {
    /// Serve both `/a` and `/a/`.
    #[default]
    Auto,
    /// Redirect `/a` to `/a/`.
    Always,
    /// Redirect `/a/` to `/a`.
    Never,
}

/// The rule files found at the root of a deployed folder (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct SiteFiles<'a> {
    /// Contents of `_redirects`.
    pub redirects: Option<&'a str>,
    /// Contents of `_headers`.
    pub headers: Option<&'a str>,
    /// Contents of `skyhost.toml`.
    pub config: Option<&'a str>,
}

/// Limits checked at parse; going over one is an error, never a truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest rule file, in bytes.
    pub max_file_bytes: usize,
    /// Longest line, in bytes.
    pub max_line_bytes: usize,
    /// Most rules per file (redirect lines, header blocks, `[[…]]` entries of one kind).
    pub max_rules: usize,
    /// Most users in one basic-auth rule (each costs an argon2 hash at deploy).
    pub max_users_per_rule: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 1024 * 1024,
            max_line_bytes: 4096,
            max_rules: 10_000,
            max_users_per_rule: 100,
        }
    }
}

/// A site's rules as parsed: valid, but basic-auth passwords may still be plain text, so it
/// is not serializable. [`ParsedSite::seal`] turns it into storable [`SiteRules`].
#[derive(Debug, Clone, Default)]
pub struct ParsedSite {
    /// Settings from `skyhost.toml`.
    pub settings: Settings,
    /// Redirect rules, in matching order.
    pub redirects: Vec<RedirectRule>,
    /// Header rules, in order.
    pub headers: Vec<HeaderRule>,
    /// Basic-auth rules with plain-text passwords.
    pub auth: Vec<PlainAuthRule>,
    /// `[proxy]` policy.
    pub proxy: ProxyPolicy,
    /// `[geo]` restriction.
    pub geo: Option<GeoRule>,
    /// `[previews]`.
    pub previews: PlainPreviews,
}

/// Parses and validates a site's rule files with the default [`Limits`].
pub fn parse_site(files: SiteFiles<'_>) -> Result<ParsedSite, Vec<RuleError>> {
    parse_site_with(files, &Limits::default())
}

/// Parses and validates a site's rule files; returns every error found, in file order.
pub fn parse_site_with(
    files: SiteFiles<'_>,
    limits: &Limits,
) -> Result<ParsedSite, Vec<RuleError>> {
    let mut errors = ErrorSink::default();
    let mut site = ParsedSite::default();
    if let Some(text) = files.redirects {
        site.redirects = redirects::parse_into(text, limits, &mut errors);
    }
    if let Some(text) = files.headers {
        (site.headers, site.auth) = headers::parse_into(text, limits, &mut errors);
    }
    if let Some(text) = files.config {
        if let Some(config) = config::parse_into(text, limits, &mut errors) {
            site.settings = config.settings;
            site.redirects.extend(config.redirects);
            site.headers.extend(config.headers);
            site.auth.extend(config.auth);
            site.proxy = config.proxy;
            site.geo = config.geo;
            site.previews = config.previews;
        }
    }
    if errors.is_empty() {
        Ok(site)
    } else {
        Err(errors.finish())
    }
}

impl ParsedSite {
    /// Hashes every basic-auth password with argon2id (default parameters) and returns the
    /// rules to store.
    pub fn seal(self) -> Result<SiteRules, RuleError> {
        self.seal_with(HashParams::default())
    }

    /// Like [`ParsedSite::seal`] with explicit argon2 parameters (tests use cheap ones).
    pub fn seal_with(self, params: HashParams) -> Result<SiteRules, RuleError> {
        let hasher = auth::hasher(params);
        let auth = self
            .auth
            .into_iter()
            .map(|rule| auth::seal_rule(rule, &hasher))
            .collect::<Result<Vec<_>, _>>()?;
        let previews = Previews {
            enabled: self.previews.enabled,
            auth: self
                .previews
                .auth
                .map(|rule| auth::seal_rule(rule, &hasher))
                .transpose()?,
        };
        Ok(SiteRules {
            previews,
            settings: self.settings,
            redirects: self.redirects,
            headers: self.headers,
            auth,
            proxy: self.proxy,
            geo: self.geo,
        })
    }
}

impl SiteRules {
    /// The first redirect rule that applies to the request, if any. `file_exists` tells
    /// whether the site serves a file at a (decoded) path; it is called at most once.
    pub fn match_redirect(
        &self,
        req: &RequestFacts<'_>,
        file_exists: &dyn Fn(&str) -> bool,
    ) -> Option<RedirectAction> {
        redirects::match_rules(&self.redirects, req, file_exists)
    }

    /// Response headers for a decoded request path, merged from every matching rule.
    pub fn headers_for(&self, path: &str) -> Vec<(String, String)> {
        headers::headers_for(&self.headers, path)
    }

    /// Response headers for an answer that serves the file `file` to the request path
    /// `path`: every rule that matches either, each once, merged as [`Self::headers_for`]
    /// merges them.
    pub fn headers_for_served(&self, path: &str, file: &str) -> Vec<(String, String)> {
        let mut paths = vec![path];
        let names = names_of_file(file);
        paths.extend(names.iter().map(String::as_str));
        headers::headers_for_any(&self.headers, &paths)
    }

    /// The basic-auth rule protecting a decoded request path: the first that matches.
    pub fn auth_for(&self, path: &str) -> Option<&AuthRule> {
        self.auth
            .iter()
            .find(|rule| rule.path().matches(path).is_some())
    }

    /// The basic-auth rule protecting the file `file` whatever path reaches it: the first
    /// that matches any of its names ([`names_of_file`]), so that a rule written as
    /// visitors see a page (`/vault`, `/team/`) protects its file (`/vault.html`,
    /// `/team/index.html`) too.
    pub fn auth_for_file(&self, file: &str) -> Option<&AuthRule> {
        let names = names_of_file(file);
        self.auth
            .iter()
            .find(|rule| names.iter().any(|n| rule.path().matches(n).is_some()))
    }
}

/// Every path a visitor may reach the file `file` by: the file itself; for `/a.html`,
/// its pretty URL `/a` and `/a/`; for a folder's `/d/index.html`, `/d/` and `/d` (the
/// root's index is `/`).
pub fn names_of_file(file: &str) -> Vec<String> {
    let mut out = vec![file.to_owned()];
    if let Some(folder) = file.strip_suffix("/index.html") {
        out.push(format!("{folder}/"));
        if !folder.is_empty() {
            out.push(folder.to_owned());
        }
    } else if let Some(page) = file.strip_suffix(".html").filter(|p| !p.ends_with('/')) {
        out.push(page.to_owned());
        out.push(format!("{page}/"));
    }
    out
}

/// A numbered line of a rule file: its text, or why it was refused (over the length limit).
pub(crate) type Line<'a> = (usize, Result<&'a str, String>);

/// Splits a rule file into numbered lines, checking the file size and line length limits.
/// A file over the size limit yields no lines and one error at the line where the limit is
/// crossed; an over-long line is yielded as an error for the parser to report in order.
pub(crate) fn lines<'a>(
    file: &str,
    text: &'a str,
    limits: &Limits,
    errors: &mut ErrorSink,
) -> Vec<Line<'a>> {
    if text.len() > limits.max_file_bytes {
        let line = text.as_bytes()[..limits.max_file_bytes]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        errors.at(
            file,
            line,
            format!(
                "file is {} bytes; the limit is {} bytes",
                text.len(),
                limits.max_file_bytes
            ),
        );
        return Vec::new();
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut pieces = text.split('\n').peekable();
    let mut number = 0;
    while let Some(piece) = pieces.next() {
        number += 1;
        // The empty piece after a final newline is not a line.
        if piece.is_empty() && pieces.peek().is_none() {
            break;
        }
        let line = piece.strip_suffix('\r').unwrap_or(piece);
        if line.len() > limits.max_line_bytes {
            out.push((
                number,
                Err(format!(
                    "line is {} bytes long; the limit is {} bytes",
                    line.len(),
                    limits.max_line_bytes
                )),
            ));
        } else {
            out.push((number, Ok(line)));
        }
    }
    out
}
