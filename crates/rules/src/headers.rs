//! `_headers`: blocks of a path pattern followed by indented `Name: value` lines. Every block
//! whose pattern matches a request contributes its headers; a header set by several blocks
//! gets their values joined with `", "`. `Basic-Auth: user:pass …` in a block protects that
//! block's paths instead of setting a header.
//!
//! ```text
//! /*
//!   X-Frame-Options: DENY
//! /private/*
//!   Basic-Auth: alice:secret bob:hunter2
//! ```

use serde::{Deserialize, Serialize};

use crate::auth::{parse_credential, Credential, PlainAuthRule, DEFAULT_REALM};
use crate::error::{ErrorSink, RuleError, HEADERS_FILE};
use crate::pattern::{PathPattern, SplitPath};
use crate::{lines, Limits};

/// The pseudo-header that declares basic auth for a block.
pub const BASIC_AUTH: &str = "Basic-Auth";

/// Headers the server sets itself; a rule setting them would corrupt responses.
const OWNED_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "content-encoding",
    "content-range",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
];

/// Headers for the requests whose path matches `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderRule {
    /// Paths the headers apply to.
    pub path: PathPattern,
    /// Header names and values, in the order written.
    pub headers: Vec<(String, String)>,
    /// Where the block was written, e.g. `_headers:3`.
    pub source: String,
}

/// One validated `Name: value` line.
#[derive(Debug)]
pub(crate) enum HeaderLine {
    /// An ordinary response header.
    Header(String, String),
    /// `Basic-Auth` credentials for the block.
    BasicAuth(Vec<Credential>),
}

/// True for an RFC 9110 token character.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Validates one header (shared by `_headers` and `[[headers]]` in `skyhost.toml`).
pub(crate) fn check_header(name: &str, value: &str) -> Result<HeaderLine, String> {
    if name.is_empty() {
        return Err("header name is empty".to_string());
    }
    if !name.bytes().all(is_tchar) {
        return Err(format!("'{name}' is not a valid header name"));
    }
    let lower = name.to_ascii_lowercase();
    if OWNED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-skyhost-") {
        return Err(format!(
            "header '{name}' is set by the server and cannot be configured"
        ));
    }
    if value.contains(['\r', '\n']) {
        return Err(format!(
            "header '{name}' value contains a carriage return or line feed"
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "header '{name}' value contains a control character"
        ));
    }
    if !value.is_ascii() {
        return Err(format!(
            "header '{name}' value contains non-ASCII characters; percent-encode them"
        ));
    }
    let value = value.trim();
    if lower == BASIC_AUTH.to_ascii_lowercase() {
        let credentials = value
            .split_ascii_whitespace()
            .map(parse_credential)
            .collect::<Result<Vec<_>, _>>()?;
        if credentials.is_empty() {
            return Err(format!("'{BASIC_AUTH}' lists no 'user:password' pairs"));
        }
        return Ok(HeaderLine::BasicAuth(credentials));
    }
    if value.is_empty() {
        return Err(format!("header '{name}' has no value"));
    }
    Ok(HeaderLine::Header(name.to_string(), value.to_string()))
}

/// Adds credentials to a rule's users, refusing a user name given twice.
pub(crate) fn add_users(
    users: &mut Vec<Credential>,
    new: Vec<Credential>,
    max_users: usize,
) -> Result<(), String> {
    for credential in new {
        if users.iter().any(|u| u.user() == credential.user()) {
            return Err(format!("user '{}' is listed twice", credential.user()));
        }
        users.push(credential);
    }
    if users.len() > max_users {
        return Err(format!(
            "too many users: {} for one path; the limit is {max_users}",
            users.len()
        ));
    }
    Ok(())
}

/// A block being read.
struct Block {
    path: PathPattern,
    line: usize,
    headers: Vec<(String, String)>,
    users: Vec<Credential>,
    auth_line: usize,
    /// One of its lines had an error (already reported).
    failed: bool,
}

impl Block {
    /// Turns a complete block into rules.
    fn finish(
        self,
        rules: &mut Vec<HeaderRule>,
        auth: &mut Vec<PlainAuthRule>,
        errors: &mut ErrorSink,
    ) {
        if self.failed {
            return;
        }
        if self.headers.is_empty() && self.users.is_empty() {
            errors.at(
                HEADERS_FILE,
                self.line,
                format!(
                    "path '{}' has no headers below it (indent 'Name: value' lines under the path)",
                    self.path.as_str()
                ),
            );
            return;
        }
        if !self.users.is_empty() {
            auth.push(PlainAuthRule {
                path: self.path.clone(),
                realm: DEFAULT_REALM.to_string(),
                source: format!("{HEADERS_FILE}:{}", self.auth_line),
                file: HEADERS_FILE.to_string(),
                line: self.auth_line,
                users: self.users,
            });
        }
        if !self.headers.is_empty() {
            rules.push(HeaderRule {
                path: self.path,
                headers: self.headers,
                source: format!("{HEADERS_FILE}:{}", self.line),
            });
        }
    }
}

/// Parses a `_headers` file into header rules and basic-auth rules (still plain text).
pub fn parse(
    text: &str,
    limits: &Limits,
) -> Result<(Vec<HeaderRule>, Vec<PlainAuthRule>), Vec<RuleError>> {
    let mut errors = ErrorSink::default();
    let parsed = parse_into(text, limits, &mut errors);
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors.finish())
    }
}

/// Parses a `_headers` file, adding problems to `errors`.
pub(crate) fn parse_into(
    text: &str,
    limits: &Limits,
    errors: &mut ErrorSink,
) -> (Vec<HeaderRule>, Vec<PlainAuthRule>) {
    let mut rules = Vec::new();
    let mut auth = Vec::new();
    let mut block: Option<Block> = None;
    let mut blocks = 0usize;
    // Set while skipping the lines of a block whose path line was invalid, so each of
    // them does not add an error of its own.
    let mut skipping = false;

    for (number, line) in lines(HEADERS_FILE, text, limits, errors) {
        let line = match line {
            Ok(line) => line,
            Err(reason) => {
                errors.at(HEADERS_FILE, number, reason);
                if let Some(current) = block.as_mut() {
                    current.failed = true;
                }
                continue;
            }
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.starts_with('/')
            || trimmed.starts_with("http://")
            || trimmed.starts_with("https://")
        {
            if let Some(done) = block.take() {
                done.finish(&mut rules, &mut auth, errors);
            }
            skipping = true;
            let mut fields = trimmed.split_ascii_whitespace();
            let (Some(pattern), None) = (fields.next(), fields.next()) else {
                errors.at(
                    HEADERS_FILE,
                    number,
                    "a path line holds a single path pattern",
                );
                continue;
            };
            blocks += 1;
            if blocks == limits.max_rules + 1 {
                errors.at(
                    HEADERS_FILE,
                    number,
                    format!("too many rules: the limit is {}", limits.max_rules),
                );
            }
            match PathPattern::parse(pattern) {
                Ok(path) => {
                    skipping = false;
                    block = Some(Block {
                        path,
                        line: number,
                        headers: Vec::new(),
                        users: Vec::new(),
                        auth_line: number,
                        failed: false,
                    });
                }
                Err(reason) => errors.at(HEADERS_FILE, number, reason),
            }
            continue;
        }
        if skipping {
            continue;
        }
        let Some(current) = block.as_mut() else {
            errors.at(
                HEADERS_FILE,
                number,
                "header line before any path: start a block with a path line such as '/*'",
            );
            skipping = true;
            continue;
        };
        let Some((name, value)) = trimmed.split_once(':') else {
            errors.at(
                HEADERS_FILE,
                number,
                format!("expected 'Name: value' or a path starting with '/', found '{trimmed}'"),
            );
            current.failed = true;
            continue;
        };
        // `line` still holds any stray carriage return, so check the untrimmed value.
        let raw_value = line.split_once(':').map(|(_, v)| v).unwrap_or(value);
        let result = check_header(name.trim(), raw_value).and_then(|checked| match checked {
            HeaderLine::Header(n, v) => {
                current.headers.push((n, v));
                Ok(())
            }
            HeaderLine::BasicAuth(users) => {
                if current.users.is_empty() {
                    current.auth_line = number;
                }
                add_users(&mut current.users, users, limits.max_users_per_rule)
            }
        });
        if let Err(reason) = result {
            errors.at(HEADERS_FILE, number, reason);
            current.failed = true;
        }
    }
    if let Some(done) = block.take() {
        done.finish(&mut rules, &mut auth, errors);
    }
    (rules, auth)
}

/// The headers for a decoded request path: every matching rule in order, values of a
/// header set more than once joined with `", "` (names compared case-insensitively).
pub fn headers_for(rules: &[HeaderRule], path: &str) -> Vec<(String, String)> {
    headers_for_any(rules, &[path])
}

/// The headers for an answer reached through several paths (the request path and the file
/// served): every rule that matches any of them, in order and each once, merged as
/// [`headers_for`] merges them.
pub fn headers_for_any(rules: &[HeaderRule], paths: &[&str]) -> Vec<(String, String)> {
    if rules.is_empty() {
        return Vec::new();
    }
    let splits: Vec<SplitPath<'_>> = paths.iter().map(|p| SplitPath::new(p)).collect();
    let mut out: Vec<(String, String)> = Vec::new();
    for rule in rules {
        if !splits.iter().any(|s| rule.path.matches_split(s).is_some()) {
            continue;
        }
        for (name, value) in &rule.headers {
            match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some((_, existing)) => {
                    existing.push_str(", ");
                    existing.push_str(value);
                }
                None => out.push((name.clone(), value.clone())),
            }
        }
    }
    out
}
