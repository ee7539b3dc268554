//! `_redirects` (and `[[redirects]]` in `skyhost.toml`) with Netlify's documented
//! semantics. One rule per line:
//!
//! ```text
//! from [query params…] to [status[!]] [Country=…] [Language=…]
//! /home              /                 301
//! /blog/*            /news/:splat      302
//! /news/:year/:slug  /articles/:year/:slug
//! /store id=:id      /products/:id     301
//! /                  /fr/              302  Language=fr
//! /api/*             https://api.example.com/:splat  200
//! /*                 /index.html       200
//! ```
//!
//! Matching: rules in order, first match wins. A rule that is not forced (`!`) is skipped
//! when a file exists at the request path (shadowing). A trailing slash never changes
//! whether a rule matches. The status defaults to 301; 200 rewrites (or proxies when the
//! target is an absolute URL); 404 and 410 serve the target path with that status.
//!
//! Query strings: the request's query string is passed on to the target, as Netlify does,
//! unless the target has a query string of its own or the rule matched query parameters
//! (then the target names what it needs, e.g. `/store id=:id /products?id=:id`).

use crate::escape;
use percent_encoding::{percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorSink, RuleError, REDIRECTS_FILE};
use crate::pattern::{is_placeholder_name, Captures, PathPattern, SplitPath, SPLAT};
use crate::{lines, Limits};

/// Statuses a rule may use.
pub const ALLOWED_STATUSES: &[u16] = &[200, 301, 302, 303, 307, 308, 404, 410];

/// Status used when a rule names none.
pub const DEFAULT_STATUS: u16 = 301;

/// What the request must carry in its query string for a rule to match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryValue {
    /// The parameter must be present, with any value.
    Any,
    /// The parameter must be present; its value is bound to this placeholder name.
    Bind(String),
    /// The parameter must have exactly this (decoded) value.
    Exact(String),
}

/// One required query parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryParam {
    /// Parameter name (decoded).
    pub key: String,
    /// What its value must be.
    pub value: QueryValue,
}

/// A validated redirect rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedirectRule {
    /// Request paths the rule applies to.
    pub from: PathPattern,
    /// Required query parameters.
    #[serde(default)]
    pub query: Vec<QueryParam>,
    /// Target path or absolute URL, with `:placeholders`.
    pub to: String,
    /// HTTP status: one of [`ALLOWED_STATUSES`].
    pub status: u16,
    /// `!`: applies even when a file exists at the request path.
    #[serde(default)]
    pub force: bool,
    /// ISO 3166 country codes (upper case); empty means any country.
    #[serde(default)]
    pub country: Vec<String>,
    /// Language tags (lower case); empty means any language.
    #[serde(default)]
    pub language: Vec<String>,
    /// Where the rule was written, e.g. `_redirects:7`.
    pub source: String,
}

/// The facts about a request that redirect matching looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// Percent-decoded path, starting with `/`.
    pub path: &'a str,
    /// Raw query string without the `?` (empty when none).
    pub query: &'a str,
    /// Viewer country (ISO 3166 alpha-2), from `CloudFront-Viewer-Country`.
    pub country: Option<&'a str>,
    /// The `Accept-Language` header.
    pub accept_language: Option<&'a str>,
}

/// What the origin does for a request that matched a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedirectAction {
    /// Answer `status` (301, 302, 303, 307 or 308) with this `Location` (URL-encoded).
    Redirect {
        /// Redirect status.
        status: u16,
        /// `Location` header value.
        location: String,
    },
    /// Serve this site path (decoded, without query) with 200, keeping the URL.
    Rewrite {
        /// Site path to serve.
        path: String,
    },
    /// Forward the request to this absolute URL (200 to an absolute URL).
    Proxy {
        /// Upstream URL, with the query string.
        url: String,
    },
    /// Serve this site path (decoded) as the body with `status` (404 or 410).
    Status {
        /// 404 or 410.
        status: u16,
        /// Site path whose content is the body.
        path: String,
    },
}

/// A rule as written, before validation: shared by `_redirects` and `skyhost.toml`.
#[derive(Debug, Default)]
pub(crate) struct RuleSpec {
    pub from: String,
    /// `(key, None)` for a bare key, `(key, Some(value))` for `key=value`.
    pub query: Vec<(String, Option<String>)>,
    pub to: String,
    pub status: u16,
    pub force: bool,
    pub country: Vec<String>,
    pub language: Vec<String>,
}

/// True when a target is an absolute http(s) URL.
fn is_absolute(target: &str) -> bool {
    target.starts_with("http://") || target.starts_with("https://")
}

/// Splits a validated country list, e.g. `us,CA`.
pub(crate) fn parse_countries<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for value in values {
        if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!(
                "'{value}' is not an ISO 3166 country code (two letters, e.g. 'us')"
            ));
        }
        out.push(value.to_ascii_uppercase());
    }
    if out.is_empty() {
        return Err("Country= lists no country".to_string());
    }
    Ok(out)
}

/// Splits a validated language list, e.g. `en,zh-tw`.
pub(crate) fn parse_languages<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for value in values {
        let mut parts = value.split('-');
        let primary_ok = parts.next().is_some_and(|p| {
            (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic())
        });
        let rest_ok = parts
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !primary_ok || !rest_ok {
            return Err(format!(
                "'{value}' is not a language tag (e.g. 'en' or 'zh-tw')"
            ));
        }
        out.push(value.to_ascii_lowercase());
    }
    if out.is_empty() {
        return Err("Language= lists no language".to_string());
    }
    Ok(out)
}

/// The `:names` a target uses, with their byte ranges.
fn target_placeholders(target: &str) -> Vec<(usize, usize)> {
    let bytes = target.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b':' {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if end > start && is_placeholder_name(&target[start..end]) {
                out.push((start, end));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Validates a rule as written.
pub(crate) fn build_rule(spec: RuleSpec, source: String) -> Result<RedirectRule, String> {
    let from = PathPattern::parse(&spec.from)?;
    if !ALLOWED_STATUSES.contains(&spec.status) {
        return Err(bad_status(&spec.status.to_string()));
    }

    let mut bound: Vec<String> = from.placeholders().map(str::to_string).collect();
    if from.has_splat() {
        bound.push(SPLAT.to_string());
    }
    let mut query = Vec::new();
    for (key, value) in spec.query {
        if key.is_empty() {
            return Err("query parameter has an empty name".to_string());
        }
        if query.iter().any(|q: &QueryParam| q.key == key) {
            return Err(format!("query parameter '{key}' is given twice"));
        }
        let value = match value {
            None => QueryValue::Any,
            Some(v) => match v.strip_prefix(':') {
                Some(name) if is_placeholder_name(name) => {
                    if bound.iter().any(|b| b == name) {
                        return Err(format!("placeholder ':{name}' is bound twice"));
                    }
                    bound.push(name.to_string());
                    QueryValue::Bind(name.to_string())
                }
                Some(name) => {
                    return Err(format!(
                        "query parameter '{key}': invalid placeholder ':{name}'"
                    ))
                }
                None => QueryValue::Exact(v),
            },
        };
        query.push(QueryParam { key, value });
    }

    let to = spec.to;
    if to.is_empty() {
        return Err("missing target".to_string());
    }
    if to.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "target '{to}' contains whitespace or a control character; percent-encode it"
        ));
    }
    let absolute = is_absolute(&to);
    if !absolute && !to.starts_with('/') {
        return Err(format!(
            "target '{to}' must be a path starting with '/' or an http(s) URL"
        ));
    }
    if absolute {
        let after_scheme = &to[to.find("://").map_or(0, |i| i + 3)..];
        let host_end = after_scheme
            .find(['/', '?', '#'])
            .unwrap_or(after_scheme.len());
        let host = &after_scheme[..host_end];
        if host.is_empty() {
            return Err(format!("target '{to}' has no host"));
        }
        if !target_placeholders(host).is_empty() {
            return Err(format!(
                "target '{to}': placeholders are not allowed in the host"
            ));
        }
        if matches!(spec.status, 404 | 410) {
            return Err(format!(
                "a {} rule serves a page of this site: its target must be a path, not '{to}'",
                spec.status
            ));
        }
    }
    for (start, end) in target_placeholders(&to) {
        let name = &to[start..end];
        if !bound.iter().any(|b| b == name) {
            return Err(if name == SPLAT {
                format!(
                    "target uses ':splat' but the source '{}' has no '*'",
                    from.as_str()
                )
            } else {
                format!("target uses ':{name}' which the source does not define")
            });
        }
    }
    Ok(RedirectRule {
        from,
        query,
        to,
        status: spec.status,
        force: spec.force,
        country: spec.country,
        language: spec.language,
        source,
    })
}

fn bad_status(token: &str) -> String {
    format!(
        "invalid status '{token}': expected 200, 301, 302, 303, 307, 308, 404 or 410, optionally followed by '!'"
    )
}

/// Parses `301`, `200!` and the like.
fn parse_status(token: &str) -> Result<(u16, bool), String> {
    let (digits, force) = match token.strip_suffix('!') {
        Some(d) => (d, true),
        None => (token, false),
    };
    match digits.parse::<u16>() {
        Ok(status) if digits.len() == 3 && ALLOWED_STATUSES.contains(&status) => {
            Ok((status, force))
        }
        _ => Err(bad_status(token)),
    }
}

/// Parses one non-comment line of `_redirects`.
fn parse_line(line: &str, source: String) -> Result<RedirectRule, String> {
    let mut fields = line.split_ascii_whitespace();
    let Some(from) = fields.next() else {
        return Err("empty rule".to_string());
    };
    let mut spec = RuleSpec {
        from: from.to_string(),
        status: DEFAULT_STATUS,
        ..RuleSpec::default()
    };
    // Query parameters until the target (a path or an absolute URL).
    loop {
        let Some(field) = fields.next() else {
            return Err(
                "missing target: a rule is 'from to [status]', e.g. '/old /new 301'".to_string(),
            );
        };
        if field.starts_with('/') || is_absolute(field) {
            spec.to = field.to_string();
            break;
        }
        if field.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "missing target: expected a path starting with '/' or an http(s) URL before '{field}'"
            ));
        }
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let key = percent_decode_str(key).decode_utf8_lossy().into_owned();
        let value = value.map(|v| {
            if v.starts_with(':') {
                v.to_string()
            } else {
                percent_decode_str(v).decode_utf8_lossy().into_owned()
            }
        });
        spec.query.push((key, value));
    }
    // Then an optional status and conditions.
    let mut seen_status = false;
    for field in fields {
        if field.starts_with(|c: char| c.is_ascii_digit()) {
            if seen_status {
                return Err(format!("too many fields: a second status '{field}'"));
            }
            let (status, force) = parse_status(field)?;
            spec.status = status;
            spec.force = force;
            seen_status = true;
        } else if let Some((key, values)) = field.split_once('=') {
            let list = values.split(',').filter(|v| !v.is_empty());
            if key.eq_ignore_ascii_case("country") {
                if !spec.country.is_empty() {
                    return Err("Country= is given twice".to_string());
                }
                spec.country = parse_countries(list)?;
            } else if key.eq_ignore_ascii_case("language") {
                if !spec.language.is_empty() {
                    return Err("Language= is given twice".to_string());
                }
                spec.language = parse_languages(list)?;
            } else {
                return Err(format!(
                    "unsupported condition '{key}=': skyhost supports Country= and Language="
                ));
            }
        } else {
            return Err(format!(
                "too many fields: unexpected '{field}' after the target (expected a status such as 301 or a Country=/Language= condition)"
            ));
        }
    }
    build_rule(spec, source)
}

/// Parses a `_redirects` file.
pub fn parse(text: &str, limits: &Limits) -> Result<Vec<RedirectRule>, Vec<RuleError>> {
    let mut errors = ErrorSink::default();
    let rules = parse_into(text, limits, &mut errors);
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors.finish())
    }
}

/// Parses a `_redirects` file, adding problems to `errors`.
pub(crate) fn parse_into(text: &str, limits: &Limits, errors: &mut ErrorSink) -> Vec<RedirectRule> {
    let mut rules = Vec::new();
    let mut count = 0usize;
    for (number, line) in lines(REDIRECTS_FILE, text, limits, errors) {
        let line = match line {
            Ok(line) => line,
            Err(reason) => {
                errors.at(REDIRECTS_FILE, number, reason);
                continue;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        count += 1;
        if count == limits.max_rules + 1 {
            errors.at(
                REDIRECTS_FILE,
                number,
                format!("too many rules: the limit is {}", limits.max_rules),
            );
        }
        if line.contains(|c: char| c.is_control() && c != '\t') {
            errors.at(REDIRECTS_FILE, number, "line contains a control character");
            continue;
        }
        match parse_line(trimmed, format!("{REDIRECTS_FILE}:{number}")) {
            Ok(rule) => rules.push(rule),
            Err(reason) => errors.at(REDIRECTS_FILE, number, reason),
        }
    }
    rules
}

/// Decoded `(key, value)` pairs of a raw query string.
fn query_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode_str(k).decode_utf8_lossy().into_owned(),
                percent_decode_str(v).decode_utf8_lossy().into_owned(),
            )
        })
        .collect()
}

/// True when `Accept-Language` names a language the rule lists: a rule tag `en` matches
/// `en`, `en-US`…; a rule tag `zh-tw` matches `zh-TW` and its extensions. `q=0` is a refusal.
fn language_matches(rule_languages: &[String], accept_language: &str) -> bool {
    accept_language.split(',').any(|item| {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused
            && !tag.is_empty()
            && rule_languages.iter().any(|want| {
                tag == *want
                    || (tag.len() > want.len()
                        && tag.starts_with(want.as_str())
                        && tag.as_bytes()[want.len()] == b'-')
            })
    })
}

impl RedirectRule {
    fn conditions_match(&self, req: &RequestFacts<'_>) -> bool {
        if !self.country.is_empty() {
            let Some(country) = req.country else {
                return false;
            };
            let country = country.trim();
            if !self.country.iter().any(|c| c.eq_ignore_ascii_case(country)) {
                return false;
            }
        }
        if !self.language.is_empty() {
            let Some(accept) = req.accept_language else {
                return false;
            };
            if !language_matches(&self.language, accept) {
                return false;
            }
        }
        true
    }

    fn query_matches(&self, pairs: &[(String, String)], captures: &mut Captures) -> bool {
        for param in &self.query {
            let Some((_, value)) = pairs.iter().find(|(k, _)| *k == param.key) else {
                return false;
            };
            match &param.value {
                QueryValue::Any => {}
                QueryValue::Bind(name) => captures.insert(name, value),
                QueryValue::Exact(want) => {
                    if want != value {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// The target with placeholders substituted, URL-encoded.
    fn substitute(&self, captures: &Captures) -> String {
        let mut out = String::with_capacity(self.to.len() + 16);
        let mut last = 0;
        for (start, end) in target_placeholders(&self.to) {
            let name = &self.to[start..end];
            // Validated at parse: every placeholder is bound by the source.
            let Some(value) = captures.get(name) else {
                continue;
            };
            encode_literal(&mut out, &self.to[last..start - 1]);
            let set = if name == SPLAT {
                escape::VALUE
            } else {
                escape::VALUE_SEGMENT
            };
            out.extend(utf8_percent_encode(value, set));
            last = end;
        }
        encode_literal(&mut out, &self.to[last..]);
        out
    }

    fn action(&self, captures: &Captures, raw_query: &str) -> RedirectAction {
        let url = self.substitute(captures);
        let (base, fragment) = match url.split_once('#') {
            Some((b, f)) => (b, Some(f)),
            None => (url.as_str(), None),
        };
        let pass_query = self.query.is_empty() && !base.contains('?') && !raw_query.is_empty();
        let mut with_query = base.to_string();
        if pass_query {
            with_query.push('?');
            encode_literal(&mut with_query, raw_query);
        }
        let path_only = || {
            let path = base.split('?').next().unwrap_or(base);
            percent_decode_str(path).decode_utf8_lossy().into_owned()
        };
        match self.status {
            200 if is_absolute(&self.to) => RedirectAction::Proxy { url: with_query },
            200 => RedirectAction::Rewrite { path: path_only() },
            404 | 410 => RedirectAction::Status {
                status: self.status,
                path: path_only(),
            },
            status => {
                let mut location = with_query;
                if let Some(f) = fragment {
                    location.push('#');
                    location.push_str(f);
                }
                RedirectAction::Redirect { status, location }
            }
        }
    }
}

/// Appends literal URL text, encoding what may not appear in a header value or URL
/// (spaces, controls and non-ASCII), and keeping existing `%XX` escapes.
fn encode_literal(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_ascii() && !c.is_ascii_control() && c != ' ' {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
}

/// Finds the first rule that applies to a request (see the module docs).
pub fn match_rules(
    rules: &[RedirectRule],
    req: &RequestFacts<'_>,
    file_exists: &dyn Fn(&str) -> bool,
) -> Option<RedirectAction> {
    if rules.is_empty() {
        return None;
    }
    let split = SplitPath::new(req.path);
    let mut pairs: Option<Vec<(String, String)>> = None;
    let mut exists: Option<bool> = None;
    for rule in rules {
        let Some(mut captures) = rule.from.matches_split(&split) else {
            continue;
        };
        if !rule.query.is_empty() {
            let pairs = pairs.get_or_insert_with(|| query_pairs(req.query));
            if !rule.query_matches(pairs, &mut captures) {
                continue;
            }
        }
        if !rule.conditions_match(req) {
            continue;
        }
        if !rule.force && *exists.get_or_insert_with(|| file_exists(req.path)) {
            // Shadowed by a file; a later forced rule may still apply.
            continue;
        }
        return Some(rule.action(&captures, req.query));
    }
    None
}
