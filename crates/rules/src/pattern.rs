//! Path patterns shared by redirects, headers and basic auth: literal segments, `:name`
//! placeholders (one segment each) and a final `*` splat (the rest of the path, bound to
//! `:splat`). A trailing slash never changes whether a pattern matches.

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

/// The placeholder name a splat binds to.
pub const SPLAT: &str = "splat";

/// A parsed path pattern such as `/news/:year/*`; serialized as its source text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
    splat: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matched exactly (case-sensitive, as files are); stored percent-decoded because
    /// request paths arrive decoded.
    Literal(String),
    /// Matches one non-empty segment and binds it.
    Param(String),
}

/// Values bound by a match: placeholders by name, and the splat under [`SPLAT`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    values: Vec<(String, String)>,
}

impl Captures {
    /// The value bound to `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Binds `name` to `value` (query placeholders add to path captures this way).
    pub fn insert(&mut self, name: &str, value: &str) {
        self.values.push((name.to_string(), value.to_string()));
    }
}

/// True for a valid placeholder name: a letter or `_`, then letters, digits or `_`.
pub(crate) fn is_placeholder_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Strips trailing slashes, keeping a lone `/`.
pub(crate) fn trim_trailing_slash(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/"
    } else {
        trimmed
    }
}

impl PathPattern {
    /// Parses a pattern; the error says what is wrong with it.
    pub fn parse(source: &str) -> Result<PathPattern, String> {
        if source.starts_with("http://") || source.starts_with("https://") {
            return Err(format!(
                "'{source}': host-specific rules are not supported; use a path starting with '/'"
            ));
        }
        if !source.starts_with('/') {
            return Err(format!("'{source}' is not a path: it must start with '/'"));
        }
        if source.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "path '{source}' contains whitespace or a control character; write it percent-encoded (e.g. %20)"
            ));
        }
        if source.contains('?') {
            return Err(format!(
                "path '{source}' contains '?': match query parameters as separate fields (e.g. '/store id=:id')"
            ));
        }
        if source.contains('#') {
            return Err(format!(
                "path '{source}' contains '#': fragments never reach the server"
            ));
        }
        let body = &trim_trailing_slash(source)[1..];
        let parts: Vec<&str> = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        let mut segments = Vec::with_capacity(parts.len());
        let mut splat = false;
        for (i, part) in parts.iter().enumerate() {
            if *part == "*" {
                if i + 1 != parts.len() {
                    return Err(format!(
                        "path '{source}': '*' is only allowed as the last segment (e.g. '/blog/*')"
                    ));
                }
                splat = true;
            } else if part.contains('*') {
                return Err(format!(
                    "path '{source}': '*' must be a whole segment at the end (e.g. '/blog/*')"
                ));
            } else if let Some(name) = part.strip_prefix(':') {
                if !is_placeholder_name(name) {
                    return Err(format!(
                        "path '{source}': invalid placeholder ':{name}' (letters, digits and '_', starting with a letter)"
                    ));
                }
                if name == SPLAT {
                    return Err(format!(
                        "path '{source}': ':splat' is bound by '*' and cannot be a placeholder name"
                    ));
                }
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(n) if n == name))
                {
                    return Err(format!(
                        "path '{source}': placeholder ':{name}' appears twice"
                    ));
                }
                segments.push(Segment::Param(name.to_string()));
            } else {
                let decoded = percent_decode_str(part).decode_utf8().map_err(|_| {
                    format!("path '{source}': percent-encoding does not decode to UTF-8")
                })?;
                segments.push(Segment::Literal(decoded.into_owned()));
            }
        }
        Ok(PathPattern {
            source: source.to_string(),
            segments,
            splat,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern ends with `*`.
    pub fn has_splat(&self) -> bool {
        self.splat
    }

    /// Names of the `:placeholders` in the pattern, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Matches a decoded request path; returns the bound values.
    pub fn matches(&self, path: &str) -> Option<Captures> {
        self.matches_split(&SplitPath::new(path))
    }

    /// Matches a path split once per request (see [`SplitPath`]), so scanning many rules
    /// does not split the path again for each.
    pub(crate) fn matches_split(&self, path: &SplitPath<'_>) -> Option<Captures> {
        let parts = &path.parts;
        if parts.len() < self.segments.len() || (!self.splat && parts.len() != self.segments.len())
        {
            return None;
        }
        let mut captures = Captures::default();
        for (segment, part) in self.segments.iter().zip(parts.iter()) {
            match segment {
                Segment::Literal(lit) if lit == part => {}
                Segment::Param(name) if !part.is_empty() => captures.insert(name, part),
                _ => return None,
            }
        }
        if self.splat {
            captures.insert(SPLAT, path.rest_from(self.segments.len()));
        }
        Some(captures)
    }
}

/// A request path with its trailing slashes removed, split into segments.
#[derive(Debug)]
pub(crate) struct SplitPath<'a> {
    /// The path without its leading `/` and trailing slashes.
    body: &'a str,
    parts: Vec<&'a str>,
}

impl<'a> SplitPath<'a> {
    pub(crate) fn new(path: &'a str) -> SplitPath<'a> {
        let trimmed = trim_trailing_slash(path);
        // A path without a leading '/' is matched as if it had one.
        let body = trimmed.strip_prefix('/').unwrap_or(trimmed);
        let parts = if body.is_empty() {
            Vec::new()
        } else {
            body.split('/').collect()
        };
        SplitPath { body, parts }
    }

    /// The path from segment `index` on, joined by `/` as in the request.
    fn rest_from(&self, index: usize) -> &'a str {
        if index >= self.parts.len() {
            return "";
        }
        // Each earlier segment is followed by exactly one '/'.
        let offset: usize = self.parts[..index].iter().map(|p| p.len() + 1).sum();
        &self.body[offset..]
    }
}

impl TryFrom<String> for PathPattern {
    type Error = String;
    fn try_from(source: String) -> Result<Self, Self::Error> {
        PathPattern::parse(&source)
    }
}

impl From<PathPattern> for String {
    fn from(pattern: PathPattern) -> String {
        pattern.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_table() {
        // (pattern, path, expected captures as "name=value" joined by ';', or None)
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/", "/", Some("")),
            ("/", "", Some("")),
            ("/", "/a", None),
            ("/a", "/a", Some("")),
            ("/a", "/a/", Some("")),
            ("/a/", "/a", Some("")),
            ("/a", "/A", None),
            ("/a", "/ab", None),
            ("/a", "/a/b", None),
            ("/a/b", "/a", None),
            ("/*", "/", Some("splat=")),
            ("/*", "/x/y/z", Some("splat=x/y/z")),
            ("/blog/*", "/blog", Some("splat=")),
            // An empty segment binds no placeholder.
            ("/a/:x/b", "/a//b", None),
            ("/blog/*", "/blog/", Some("splat=")),
            ("/blog/*", "/blog/2024/post", Some("splat=2024/post")),
            ("/blog/*", "/blogs/x", None),
            (
                "/news/:year/:slug",
                "/news/2024/hello",
                Some("year=2024;slug=hello"),
            ),
            ("/news/:year/:slug", "/news/2024", None),
            ("/news/:year/:slug", "/news/2024/hello/more", None),
            (
                "/news/:year/*",
                "/news/2024/a/b",
                Some("year=2024;splat=a/b"),
            ),
            ("/:lang/about", "/fr/about/", Some("lang=fr")),
            ("/:lang", "/", None),
            ("/hello%20world", "/hello world", Some("")),
            ("/a//b", "/a//b", Some("")),
        ];
        for (pattern, path, expected) in cases {
            let p = PathPattern::parse(pattern).unwrap();
            let got = p.matches(path).map(|c| {
                c.values
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join(";")
            });
            assert_eq!(got.as_deref(), *expected, "pattern {pattern} path {path}");
        }
    }

    #[test]
    fn placeholder_names() {
        let cases = [
            ("id", true),
            ("_id", true),
            ("a1_b", true),
            ("", false),
            ("1a", false),
            ("-a", false),
            ("a-b", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_placeholder_name(name), want, "{name:?}");
        }
    }

    #[test]
    fn invalid_patterns() {
        let cases: &[(&str, &str)] = &[
            ("blog", "'blog' is not a path: it must start with '/'"),
            ("/a/*/b", "path '/a/*/b': '*' is only allowed as the last segment (e.g. '/blog/*')"),
            ("/a*", "path '/a*': '*' must be a whole segment at the end (e.g. '/blog/*')"),
            ("/:1x", "path '/:1x': invalid placeholder ':1x' (letters, digits and '_', starting with a letter)"),
            ("/:splat", "path '/:splat': ':splat' is bound by '*' and cannot be a placeholder name"),
            ("/:a/:a", "path '/:a/:a': placeholder ':a' appears twice"),
            ("/a?b=1", "path '/a?b=1' contains '?': match query parameters as separate fields (e.g. '/store id=:id')"),
            ("/a#x", "path '/a#x' contains '#': fragments never reach the server"),
            // A space is whitespace but no control; U+0001 a control but no whitespace.
            ("/a b", "path '/a b' contains whitespace or a control character; write it percent-encoded (e.g. %20)"),
            ("/a\u{1}b", "path '/a\u{1}b' contains whitespace or a control character; write it percent-encoded (e.g. %20)"),
            ("/%ff", "path '/%ff': percent-encoding does not decode to UTF-8"),
            ("https://example.com/*", "'https://example.com/*': host-specific rules are not supported; use a path starting with '/'"),
        ];
        for (pattern, message) in cases {
            assert_eq!(PathPattern::parse(pattern).unwrap_err(), *message);
        }
    }

    #[test]
    fn serde_round_trip_is_the_source_text() {
        let p = PathPattern::parse("/news/:year/*").unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"/news/:year/*\"");
        let back: PathPattern = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert!(serde_json::from_str::<PathPattern>("\"nope\"").is_err());
    }
}
