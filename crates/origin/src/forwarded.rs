//! Forwarded headers and the front allowed to set them.
//!
//! CloudFront sends a secret origin header, [`ORIGIN_VERIFY`] (in local mode, the edge
//! router does). Only a request carrying one of that secret's accepted values may set
//! the site host (`X-Forwarded-Host`), the visitor's address (`X-Forwarded-For`) and
//! country (`CloudFront-Viewer-*`); from anyone else, who may call the regional API
//! name directly, they are removed before anything reads them. With
//! [`DirectAccess::Refuse`] such requests are answered 403, except on
//! [`DIRECT_PATHS`]. The secret header itself never goes further than this module.

use http::header::{HeaderMap, HeaderName};
use skyhost_meta::config::ConfigError;
use skyhost_meta::secrets::{matches_any, Secret};

/// The secret header a trusted front sends.
pub const ORIGIN_VERIFY: HeaderName = HeaderName::from_static("x-skyhost-origin-verify");

/// Headers only a verified front may set.
const FORWARDED: [&str; 2] = ["x-forwarded-host", "x-forwarded-for"];
/// CloudFront's own headers (`CloudFront-Viewer-Country` and its kin) start so.
const CLOUDFRONT_PREFIX: &str = "cloudfront-";

/// Paths answered without a verified front whatever [`DirectAccess`] says: Route 53's
/// health checks and the replicator's notifications call each region's own name
/// directly and cannot send the secret header. Health tells nothing of any site, and a
/// notification is verified by its own signature.
pub const DIRECT_PATHS: [&str; 2] = ["/_skyhost/health", "/_skyhost/notify"];

/// Whether requests that do not come through the verified front are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirectAccess {
    /// Served, with their forwarded headers ignored.
    #[default]
    Allow,
    /// Answered 403, except on [`DIRECT_PATHS`].
    Refuse,
}

impl DirectAccess {
    /// Parses `allow` or `refuse` (the template's `DirectAccess`), naming `name` if not.
    pub fn parse(name: &str, value: &str) -> Result<DirectAccess, ConfigError> {
        match value.trim() {
            "allow" => Ok(DirectAccess::Allow),
            "refuse" => Ok(DirectAccess::Refuse),
            other => Err(ConfigError(format!(
                "{name} must be \"allow\" or \"refuse\", not {other:?}"
            ))),
        }
    }
}

/// What a request's [`ORIGIN_VERIFY`] header shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// No front is configured: nothing can verify.
    Unconfigured,
    /// The header is missing.
    Absent,
    /// The header is there but carries no accepted value (or the secret is unreadable).
    Mismatch,
    /// The header carries an accepted value.
    Verified,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Serve it, honouring forwarded headers or not.
    Serve {
        /// Whether its forwarded headers are the front's.
        trust_forwarded: bool,
    },
    /// Answer 403.
    Forbidden,
}

/// The decision for a request to `path` (as sent, not decoded: an encoded spelling of a
/// direct path is not one).
pub fn admit(front: Front, direct: DirectAccess, path: &str) -> Admission {
    match (front, direct) {
        (Front::Verified, _) => Admission::Serve {
            trust_forwarded: true,
        },
        (_, DirectAccess::Allow) => Admission::Serve {
            trust_forwarded: false,
        },
        (_, DirectAccess::Refuse) if DIRECT_PATHS.contains(&path) => Admission::Serve {
            trust_forwarded: false,
        },
        (_, DirectAccess::Refuse) => Admission::Forbidden,
    }
}

/// Removes the secret header, and the forwarded headers unless they are trusted.
pub fn sanitize(headers: &mut HeaderMap, trust_forwarded: bool) {
    headers.remove(ORIGIN_VERIFY);
    if trust_forwarded {
        return;
    }
    for name in FORWARDED {
        headers.remove(name);
    }
    let cloudfront: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with(CLOUDFRONT_PREFIX))
        .cloned()
        .collect();
    for name in cloudfront {
        headers.remove(name);
    }
}

/// The front check of an origin: the secret (if a front is configured) and the setting.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    secret: Option<Secret>,
    direct: DirectAccess,
}

impl Gate {
    /// A gate verifying against `secret` (`None`: no front, nothing is trusted).
    pub fn new(secret: Option<Secret>, direct: DirectAccess) -> Gate {
        Gate { secret, direct }
    }

    /// Checks the header against the secret's accepted values. A mismatch re-reads the
    /// secret (rate limited), so a front already sending a rotated value is believed.
    pub async fn check(&self, headers: &HeaderMap) -> Front {
        let Some(secret) = &self.secret else {
            return Front::Unconfigured;
        };
        let mut presented = headers.get_all(ORIGIN_VERIFY).iter();
        let (Some(value), None) = (presented.next(), presented.next()) else {
            // None, or several: a front sends exactly one.
            return if headers.contains_key(ORIGIN_VERIFY) {
                Front::Mismatch
            } else {
                Front::Absent
            };
        };
        let values = match secret.values().await {
            Ok(v) => v,
            // Logged where the read failed, once per attempt, not once per request.
            Err(_) => return Front::Mismatch,
        };
        if matches_any(&values, value.as_bytes()) {
            return Front::Verified;
        }
        match secret.reread_after_failure(&values).await {
            Some(now) if matches_any(&now, value.as_bytes()) => Front::Verified,
            _ => {
                tracing::debug!("origin-verify header does not match");
                Front::Mismatch
            }
        }
    }

    /// Decides on a request and removes what it may not say: `false` when it is to be
    /// answered 403.
    pub async fn admit(&self, headers: &mut HeaderMap, path: &str) -> bool {
        let front = self.check(headers).await;
        match admit(front, self.direct, path) {
            Admission::Serve { trust_forwarded } => {
                sanitize(headers, trust_forwarded);
                true
            }
            Admission::Forbidden => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn admission() {
        use Admission::*;
        use DirectAccess::*;
        use Front::*;
        let trusted = Serve {
            trust_forwarded: true,
        };
        let untrusted = Serve {
            trust_forwarded: false,
        };
        // (front, setting, path, decision)
        let cases = [
            (Verified, Allow, "/", trusted),
            (Verified, Refuse, "/", trusted),
            (Verified, Refuse, "/_skyhost/health", trusted),
            (Unconfigured, Allow, "/", untrusted),
            (Absent, Allow, "/about", untrusted),
            (Mismatch, Allow, "/about", untrusted),
            (Absent, Refuse, "/", Forbidden),
            (Mismatch, Refuse, "/about", Forbidden),
            (Unconfigured, Refuse, "/", Forbidden),
            (Absent, Refuse, "/_skyhost/health", untrusted),
            (Mismatch, Refuse, "/_skyhost/health", untrusted),
            (Absent, Refuse, "/_skyhost/notify", untrusted),
            // Only the direct paths themselves, as sent.
            (Absent, Refuse, "/_skyhost/health/", Forbidden),
            (Absent, Refuse, "/_skyhost/%68ealth", Forbidden),
            (Absent, Refuse, "/_skyhost/", Forbidden),
            (Absent, Refuse, "/_skyhost/healthz", Forbidden),
        ];
        for (front, direct, path, want) in cases {
            assert_eq!(
                admit(front, direct, path),
                want,
                "{front:?} {direct:?} {path}"
            );
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn sanitizing() {
        let all = [
            ("host", "origin.example"),
            ("x-forwarded-host", "victim.example"),
            ("x-forwarded-for", "198.51.100.7, 130.176.0.1"),
            ("x-forwarded-for", "203.0.113.9"),
            ("cloudfront-viewer-country", "DE"),
            ("CloudFront-Viewer-Address", "198.51.100.7:443"),
            ("x-forwarded-proto", "https"),
            ("x-skyhost-origin-verify", "secret"),
            ("accept-language", "de"),
        ];
        // (trusted, headers left)
        let cases: [(bool, &[&str]); 2] = [
            (false, &["host", "x-forwarded-proto", "accept-language"]),
            (
                true,
                &[
                    "host",
                    "x-forwarded-host",
                    "x-forwarded-for",
                    "cloudfront-viewer-country",
                    "cloudfront-viewer-address",
                    "x-forwarded-proto",
                    "accept-language",
                ],
            ),
        ];
        for (trusted, left) in cases {
            let mut h = headers(&all);
            sanitize(&mut h, trusted);
            let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
            names.sort();
            let mut want = left.to_vec();
            want.sort();
            assert_eq!(names, want, "trusted: {trusted}");
        }
    }

    #[test]
    fn direct_access_settings() {
        assert_eq!(
            DirectAccess::parse("X", "allow").unwrap(),
            DirectAccess::Allow
        );
        assert_eq!(
            DirectAccess::parse("X", " refuse ").unwrap(),
            DirectAccess::Refuse
        );
        let err = DirectAccess::parse("SKYHOST_DIRECT_ACCESS", "deny").unwrap_err();
        assert!(err.to_string().contains("SKYHOST_DIRECT_ACCESS"), "{err}");
    }

    #[tokio::test]
    async fn the_header_is_checked_against_every_accepted_value() {
        let gate = Gate::new(
            Some(Secret::fixed(vec![b"new".to_vec(), b"old".to_vec()])),
            DirectAccess::Allow,
        );
        // (headers, what they show)
        let cases: Vec<(Vec<(&str, &str)>, Front)> = vec![
            (vec![], Front::Absent),
            (vec![("x-skyhost-origin-verify", "new")], Front::Verified),
            (vec![("x-skyhost-origin-verify", "old")], Front::Verified),
            (vec![("x-skyhost-origin-verify", "ne")], Front::Mismatch),
            (vec![("x-skyhost-origin-verify", "")], Front::Mismatch),
            (
                vec![("x-skyhost-origin-verify", "new,old")],
                Front::Mismatch,
            ),
            (
                vec![
                    ("x-skyhost-origin-verify", "new"),
                    ("x-skyhost-origin-verify", "new"),
                ],
                Front::Mismatch,
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(gate.check(&headers(&pairs)).await, want, "{pairs:?}");
        }
        let none = Gate::new(None, DirectAccess::Allow);
        let h = headers(&[("x-skyhost-origin-verify", "new")]);
        assert_eq!(none.check(&h).await, Front::Unconfigured);
    }
}
