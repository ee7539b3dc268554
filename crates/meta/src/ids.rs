//! Validated identifiers: a site id, a domain, a deployment id and a blob hash are never
//! bare strings, so a bad one is refused where it enters the system.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct IdError {
    /// Which kind of identifier.
    pub kind: &'static str,
    /// The value that was refused.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn err(kind: &'static str, value: &str, reason: &'static str) -> IdError {
    IdError {
        kind,
        value: value.chars().take(80).collect(),
        reason,
    }
}

macro_rules! string_id {
    ($name:ident) => {
        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::parse(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $name::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A site's id: 1–63 of `a-z0-9-`, not starting or ending with `-` (safe in keys and URLs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteId(String);
string_id!(SiteId);

impl SiteId {
    /// Validates a site id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s.len() > 63 {
            return Err(err("site id", s, "must be 1 to 63 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err(
                "site id",
                s,
                "only lowercase letters, digits and '-' are allowed",
            ));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(err("site id", s, "must not start or end with '-'"));
        }
        Ok(SiteId(s.to_owned()))
    }
}

/// A host name a site answers on: lower-case, without port, at most 253 characters of
/// LDH labels (an `xn--` label carries internationalised names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);
string_id!(Domain);

// A domain's hash and equality are its canonical string's, so maps keyed by domains can
// be asked with a `&str` that is already canonical.
impl std::borrow::Borrow<str> for Domain {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Domain {
    /// Validates a domain, lower-casing it and dropping one trailing dot.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let d = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        if d.is_empty() || d.len() > 253 {
            return Err(err("domain", s, "must be 1 to 253 characters"));
        }
        for label in d.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(err("domain", s, "each label must be 1 to 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(err(
                    "domain",
                    s,
                    "only letters, digits, '-' and '.' are allowed",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(err("domain", s, "a label must not start or end with '-'"));
            }
        }
        Ok(Domain(d))
    }

    /// The domain of a `Host` header: the port is ignored and case does not matter.
    pub fn from_host_header(host: &str) -> Result<Self, IdError> {
        let host = host.trim();
        let name = if host.starts_with('[') {
            return Err(err("domain", host, "IP literals are not site domains"));
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => host,
            }
        };
        Domain::parse(name)
    }
}

/// A deployment id: `YYYYMMDDTHHMMSSZ-xxxxxxxx`, sortable by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeploymentId(String);
string_id!(DeploymentId);

impl DeploymentId {
    /// Validates a deployment id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        let ok = b.len() == 25
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'T'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && b[15] == b'Z'
            && b[16] == b'-'
            && b[17..]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
        if ok {
            Ok(DeploymentId(s.to_owned()))
        } else {
            Err(err(
                "deployment id",
                s,
                "expected the form 20261121T230500Z-1a2b3c4d",
            ))
        }
    }

    /// A new id for a deployment created at `unix_secs`.
    pub fn new(unix_secs: i64) -> Self {
        Self::new_ms(unix_secs.saturating_mul(1000))
    }

    /// A new id for a deployment created at `unix_ms`. The suffix is the millisecond (3 hex
    /// digits) then 20 random bits, so two deploys within one second still sort in the
    /// order they were made — which is what `rollback` relies on.
    pub fn new_ms(unix_ms: i64) -> Self {
        let secs = unix_ms.div_euclid(1000);
        let ms = unix_ms.rem_euclid(1000) as u32;
        let t = time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        // Formatting a valid OffsetDateTime with a fixed, valid description cannot fail.
        let stamp = t.format(&fmt).unwrap_or_else(|_| "19700101T000000Z".into());
        let random = rand::random::<u32>() & 0xf_ffff;
        DeploymentId(format!("{stamp}-{ms:03x}{random:05x}"))
    }

    /// A new id for a deployment created now.
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self::new_ms(ms)
    }
}

/// The SHA-256 of a file's bytes, as 64 lower-case hex digits: a blob's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobHash(String);
string_id!(BlobHash);

impl BlobHash {
    /// Validates a hash.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() == 64
            && s.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            Ok(BlobHash(s.to_owned()))
        } else {
            Err(err("blob hash", s, "expected 64 lower-case hex digits"))
        }
    }

    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        BlobHash(hex::encode(sha2::Sha256::digest(bytes)))
    }

    /// The hash a finished hasher holds.
    pub fn from_digest(d: &[u8]) -> Self {
        BlobHash(hex::encode(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_ids() {
        let cases: &[(&str, bool)] = &[
            ("blog", true),
            ("my-site-2", true),
            ("a", true),
            ("", false),
            ("-a", false),
            ("a-", false),
            ("A", false),
            ("a_b", false),
            ("a/b", false),
            ("..", false),
        ];
        for (s, ok) in cases {
            assert_eq!(SiteId::parse(s).is_ok(), *ok, "{s:?}");
        }
        assert!(SiteId::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn domains_from_host_headers() {
        let cases: &[(&str, Option<&str>)] = &[
            ("example.com", Some("example.com")),
            ("Example.COM:8080", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("www.example.com:443", Some("www.example.com")),
            ("xn--bcher-kva.example", Some("xn--bcher-kva.example")),
            ("[::1]:8080", None),
            ("exa mple.com", None),
            ("example..com", None),
            ("-bad.com", None),
            ("", None),
            ("a/b.com", None),
        ];
        for (h, want) in cases {
            let got = Domain::from_host_header(h).ok();
            assert_eq!(got.as_ref().map(Domain::as_str), *want, "{h:?}");
        }
    }

    #[test]
    fn domain_refusals_say_why() {
        let label = "a".repeat(63);
        // Four labels of 63 and three dots: 255 characters, two over the limit.
        let long = [label.as_str(); 4].join(".");
        let wide = "a".repeat(64);
        let cases: &[(&str, Result<&str, &str>)] = &[
            (&long[2..], Ok(&long[2..])),
            (&long[1..], Err("must be 1 to 253 characters")),
            ("", Err("must be 1 to 253 characters")),
            (".", Err("must be 1 to 253 characters")),
            (&wide, Err("each label must be 1 to 63 characters")),
            ("a..b", Err("each label must be 1 to 63 characters")),
            (
                "a_b.com",
                Err("only letters, digits, '-' and '.' are allowed"),
            ),
            ("a-.com", Err("a label must not start or end with '-'")),
            ("A.Example.COM.", Ok("a.example.com")),
        ];
        for (s, want) in cases {
            let got = Domain::parse(s);
            let got = got.as_ref().map(Domain::as_str).map_err(|e| e.reason);
            assert_eq!(got, *want, "{s:?}");
        }
    }

    #[test]
    fn maps_keyed_by_domains_are_asked_with_str() {
        let mut sites = std::collections::HashMap::new();
        sites.insert(Domain::parse("Example.com").unwrap(), 1);
        assert_eq!(sites.get("example.com"), Some(&1));
        assert_eq!(sites.get("other.com"), None);
        let set: std::collections::BTreeSet<Domain> =
            [Domain::parse("b.com").unwrap()].into_iter().collect();
        assert!(set.contains("b.com"));
    }

    #[test]
    fn host_header_ports() {
        let cases: &[(&str, Option<&str>)] = &[
            ("example.com:8080", Some("example.com")),
            ("example.com:", Some("example.com")),
            (" example.com ", Some("example.com")),
            // Only digits make a port: anything else stays part of the name, and fails.
            ("example.com:http", None),
            ("example.com:80a", None),
            ("[::1]", None),
        ];
        for (h, want) in cases {
            let got = Domain::from_host_header(h).ok();
            assert_eq!(got.as_ref().map(Domain::as_str), *want, "{h:?}");
        }
    }

    #[test]
    fn deployment_id_forms() {
        let cases: &[(&str, bool)] = &[
            ("20261121T230500Z-1a2b3c4d", true),
            ("20261121T230500Z-00000000", true),
            ("20261121T230500Z-abcdef09", true),
            // One character off at each position of the form.
            ("2026112xT230500Z-1a2b3c4d", false),
            ("20261121X230500Z-1a2b3c4d", false),
            ("20261121T23050xZ-1a2b3c4d", false),
            ("20261121T230500X-1a2b3c4d", false),
            ("20261121T230500Z_1a2b3c4d", false),
            ("20261121T230500Z-1a2b3c4g", false),
            ("20261121T230500Z-1A2B3C4D", false),
            ("x0261121T230500Z-1a2b3c4d", false),
            // Length.
            ("20261121T230500Z-1a2b3c4", false),
            ("20261121T230500Z-1a2b3c4d0", false),
            ("", false),
        ];
        for (s, ok) in cases {
            let got = DeploymentId::parse(s);
            assert_eq!(got.is_ok(), *ok, "{s:?}");
            if let Ok(id) = got {
                assert_eq!(id.as_str(), *s);
            }
        }
    }

    #[test]
    fn new_ids_carry_the_millisecond_and_parse() {
        for _ in 0..64 {
            let id = DeploymentId::new_ms(1_800_000_000_123);
            assert!(id.as_str().starts_with("20270115T080000Z-07b"), "{id}");
            assert_eq!(DeploymentId::parse(id.as_str()).as_ref(), Ok(&id));
        }
        // Before 1970 the millisecond still counts up within its second.
        let id = DeploymentId::new_ms(-1);
        assert!(id.as_str().starts_with("19691231T235959Z-3e7"), "{id}");
    }

    #[test]
    fn deployment_ids_sort_by_time_and_round_trip() {
        let a = DeploymentId::new(1_700_000_000);
        let b = DeploymentId::new(1_800_000_000);
        assert!(a < b);
        assert!(a.as_str().starts_with("20231114T221320Z-"), "{a}");
        assert_eq!(DeploymentId::parse(a.as_str()).as_ref(), Ok(&a));
        assert!(DeploymentId::parse("20231114T221320Z-XYZ").is_err());
        assert!(DeploymentId::parse("../../etc/passwd").is_err());
        // Within one second, ids still sort by the millisecond they were made.
        let mut ids: Vec<DeploymentId> = (0..50)
            .map(|i| DeploymentId::new_ms(1_800_000_000_000 + i * 19))
            .collect();
        let made = ids.clone();
        ids.sort();
        assert_eq!(ids, made);
    }

    #[test]
    fn blob_hashes() {
        let h = BlobHash::of(b"abc");
        assert_eq!(
            h.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(BlobHash::parse(&"A".repeat(64)).is_err());
        assert!(BlobHash::parse("abc").is_err());
    }
}
