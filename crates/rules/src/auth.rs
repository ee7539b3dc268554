//! Basic auth per path pattern: `Basic-Auth: user:pass …` in `_headers` and `[auth]` in
//! `skyhost.toml`. Parsing keeps plain-text passwords only inside [`PlainAuthRule`];
//! sealing hashes them with argon2id, so the stored [`AuthRule`] never holds one.
//! Verification is constant time in the password (argon2) and the user name (`subtle`), and
//! an unknown user costs the same argon2 verification as a known one.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Version};
use base64::Engine;
use serde::{Deserialize, Serialize};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::error::RuleError;
use crate::pattern::PathPattern;

/// Argon2 cost parameters; [`crate::ParsedSite::seal`] uses the argon2 defaults (argon2id).
pub use argon2::Params as HashParams;

/// Realm shown by browsers when none is configured.
pub const DEFAULT_REALM: &str = "Restricted";

/// Longest realm accepted; it is echoed in every challenge.
const MAX_REALM_LEN: usize = 200;

/// Most memory a pre-hashed password may make each verification use, in KiB (64 MiB).
pub const MAX_HASH_MEMORY_KIB: u32 = 64 * 1024;
/// Most passes a pre-hashed password may ask for.
pub const MAX_HASH_TIME: u32 = 10;
/// Most lanes a pre-hashed password may ask for.
pub const MAX_HASH_LANES: u32 = 4;

/// A password as written in a rule file: plain text, or an argon2id PHC string written by
/// an operator who did not want plain text in their repository.
#[derive(Clone)]
enum Secret {
    Plain(String),
    Hashed(String),
}

/// One `user:password` pair from a rule file.
#[derive(Clone)]
pub struct Credential {
    user: String,
    secret: Secret,
}

impl Credential {
    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password, even in debug output.
        f.debug_struct("Credential")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Parses `user:password` (split at the first `:`). A password starting with `$argon2` is
/// taken as an argon2id PHC hash and checked as such.
pub(crate) fn parse_credential(text: &str) -> Result<Credential, String> {
    let Some((user, password)) = text.split_once(':') else {
        return Err(format!(
            "credential '{}' must be written 'user:password'",
            redact(text)
        ));
    };
    if user.is_empty() {
        return Err("credential has an empty user name".to_string());
    }
    if user.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "user name '{user}' contains whitespace or a control character"
        ));
    }
    if password.is_empty() {
        return Err(format!("user '{user}' has an empty password"));
    }
    if password.chars().any(char::is_control) {
        return Err(format!(
            "user '{user}': password contains a control character"
        ));
    }
    let secret = if password.starts_with("$argon2") {
        let params = PasswordHash::new(password).ok().and_then(|h| {
            let valid =
                h.algorithm == Algorithm::Argon2id.ident() && h.salt.is_some() && h.hash.is_some();
            valid.then(|| HashParams::try_from(&h).ok()).flatten()
        });
        let Some(params) = params else {
            return Err(format!(
                "user '{user}': the password looks like a hash but is not a valid argon2id PHC string"
            ));
        };
        // Every request with a wrong password costs one verification at this cost.
        if !cost_within_bounds(&params) {
            return Err(format!(
                "user '{user}': the argon2id hash costs m={}, t={}, p={}; the limits are m={MAX_HASH_MEMORY_KIB} (KiB, 64 MiB), t={MAX_HASH_TIME}, p={MAX_HASH_LANES}: hash the password again with a lower cost",
                params.m_cost(),
                params.t_cost(),
                params.p_cost()
            ));
        }
        Secret::Hashed(password.to_string())
    } else {
        Secret::Plain(password.to_string())
    };
    Ok(Credential {
        user: user.to_string(),
        secret,
    })
}

/// Whether argon2 parameters are within the bounds a verification may cost.
pub fn cost_within_bounds(params: &HashParams) -> bool {
    params.m_cost() <= MAX_HASH_MEMORY_KIB
        && params.t_cost() <= MAX_HASH_TIME
        && params.p_cost() <= MAX_HASH_LANES
}

/// Shows only the user part of a malformed credential, in case the rest is a password.
fn redact(text: &str) -> String {
    let shown: String = text.chars().take(3).collect();
    format!("{shown}…")
}

/// Checks a realm: printable ASCII without `"` or `\`, so it can be quoted in a challenge.
pub(crate) fn validate_realm(realm: &str) -> Result<(), String> {
    if realm.is_empty() {
        return Err("realm is empty".to_string());
    }
    if realm.len() > MAX_REALM_LEN {
        return Err(format!(
            "realm is {} bytes long; the limit is {MAX_REALM_LEN}",
            realm.len()
        ));
    }
    if !realm
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(format!(
            "realm '{realm}' must be printable ASCII without '\"' or '\\'"
        ));
    }
    Ok(())
}

/// A basic-auth rule as parsed, still holding plain-text passwords; seal it before storing.
#[derive(Clone)]
pub struct PlainAuthRule {
    /// Paths the rule protects.
    pub path: PathPattern,
    /// Realm for the challenge.
    pub realm: String,
    /// Where the rule was written, e.g. `_headers:12`.
    pub source: String,
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) users: Vec<Credential>,
}

impl PlainAuthRule {
    /// The user names, in order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|c| c.user.as_str())
    }
}

impl fmt::Debug for PlainAuthRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainAuthRule")
            .field("path", &self.path.as_str())
            .field("realm", &self.realm)
            .field("source", &self.source)
            .field("users", &self.users)
            .finish()
    }
}

/// A user of a sealed rule: name and argon2id PHC hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthUser {
    /// User name, compared in constant time.
    pub name: String,
    /// Argon2id PHC string.
    pub hash: String,
}

/// A sealed basic-auth rule, safe to store: it holds only argon2id hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRule {
    path: PathPattern,
    realm: String,
    users: Vec<AuthUser>,
    /// Hash of a random password with the same parameters, verified against when the user
    /// is unknown so the response time does not reveal which users exist.
    dummy_hash: String,
    source: String,
}

/// Result of checking an `Authorization` header against a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Right user and password.
    Granted {
        /// The authenticated user.
        user: String,
    },
    /// No basic credentials were sent: answer 401 with the challenge.
    Missing,
    /// Credentials were sent and are wrong (unknown user, wrong password or malformed).
    Denied {
        /// User name as sent by the client, if it could be decoded. An attempted name may
        /// be a mistyped password: it is never logged.
        user: Option<String>,
    },
}

impl AuthRule {
    /// Paths the rule protects.
    pub fn path(&self) -> &PathPattern {
        &self.path
    }

    /// Realm for the `WWW-Authenticate` challenge.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Where the rule was written, e.g. `skyhost.toml:14`; a stable key for lockout counters.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// User names allowed by the rule.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| u.name.as_str())
    }

    /// The `WWW-Authenticate` header value to send with a 401.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\", charset=\"UTF-8\"", self.realm)
    }

    /// Checks an `Authorization` header value.
    pub fn verify(&self, authorization: Option<&str>) -> AuthOutcome {
        let (user, password) = match Offered::parse(authorization) {
            Offered::Nothing => return AuthOutcome::Missing,
            Offered::Malformed => return AuthOutcome::Denied { user: None },
            Offered::Credentials { user, password } => (user, password),
        };
        let (user, password) = (user.as_str(), password.as_str());

        // Look at every user without stopping early, and pick the hash without a branch.
        let mut found = subtle::Choice::from(0);
        let mut index: u32 = 0;
        for (i, candidate) in self.users.iter().enumerate() {
            let equal = candidate.name.as_bytes().ct_eq(user.as_bytes());
            // Rules hold at most a few hundred users (Limits), so the index fits in u32.
            index.conditional_assign(&(i as u32), equal);
            found |= equal;
        }
        let known = bool::from(found);
        let hash = match self.users.get(index as usize) {
            Some(u) if known => u.hash.as_str(),
            _ => self.dummy_hash.as_str(),
        };
        let password_ok = verify_hash(hash, password);
        if known && password_ok {
            AuthOutcome::Granted {
                user: user.to_string(),
            }
        } else {
            AuthOutcome::Denied {
                user: Some(user.to_string()),
            }
        }
    }
}

/// What an `Authorization` header offers, read before any password is checked: the
/// origin counts failures per user name before it spends an argon2 verification.
#[derive(Clone, PartialEq, Eq)]
pub enum Offered {
    /// No basic credentials (no header, or another scheme): answer with the challenge.
    Nothing,
    /// Basic credentials that do not decode to `user:password`.
    Malformed,
    /// A user name and a password, as sent.
    Credentials {
        /// The user name sent.
        user: String,
        /// The password sent.
        password: String,
    },
}

impl fmt::Debug for Offered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offered::Nothing => f.write_str("Nothing"),
            Offered::Malformed => f.write_str("Malformed"),
            // Never print the password, even in debug output.
            Offered::Credentials { user, .. } => f
                .debug_struct("Credentials")
                .field("user", user)
                .finish_non_exhaustive(),
        }
    }
}

impl Offered {
    /// Reads an `Authorization` header value (`Basic base64(user:password)`).
    pub fn parse(authorization: Option<&str>) -> Offered {
        let Some(header) = authorization else {
            return Offered::Nothing;
        };
        let header = header.trim();
        let Some((scheme, encoded)) = header.split_once(' ') else {
            return if header.eq_ignore_ascii_case("basic") {
                Offered::Malformed
            } else {
                Offered::Nothing
            };
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return Offered::Nothing;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        match decoded.as_deref().and_then(|d| d.split_once(':')) {
            Some((user, password)) => Offered::Credentials {
                user: user.to_string(),
                password: password.to_string(),
            },
            None => Offered::Malformed,
        }
    }

    /// The user name sent, if the credentials decoded.
    pub fn user(&self) -> Option<&str> {
        match self {
            Offered::Credentials { user, .. } => Some(user),
            _ => None,
        }
    }
}

/// Verifies a password against a PHC string; a corrupt hash, or one costing more than the
/// bounds (a manifest written before they were checked at deploy), never verifies.
fn verify_hash(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if !HashParams::try_from(&parsed).is_ok_and(|p| cost_within_bounds(&p)) {
        return false;
    }
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Hashes a password with argon2id and a fresh random salt.
fn hash_password(hasher: &Argon2<'_>, password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| format!("could not encode a salt: {e}"))?;
    hasher
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("could not hash a password: {e}"))
}

/// The argon2id hasher used for sealing.
pub(crate) fn hasher(params: HashParams) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes every plain-text password of a rule.
pub(crate) fn seal_rule(rule: PlainAuthRule, hasher: &Argon2<'_>) -> Result<AuthRule, RuleError> {
    let fail = |reason: String| RuleError::new(&rule.file, rule.line, reason);
    let mut users = Vec::with_capacity(rule.users.len());
    for credential in &rule.users {
        let hash = match &credential.secret {
            Secret::Hashed(h) => h.clone(),
            Secret::Plain(p) => hash_password(hasher, p).map_err(fail)?,
        };
        users.push(AuthUser {
            name: credential.user.clone(),
            hash,
        });
    }
    let dummy: String = rand::random::<[u8; 24]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dummy_hash = hash_password(hasher, &dummy).map_err(fail)?;
    Ok(AuthRule {
        path: rule.path,
        realm: rule.realm,
        users,
        dummy_hash,
        source: rule.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_parsing_table() {
        let ok: &[(&str, &str)] = &[
            ("alice:secret", "alice"),
            ("bob:pa:ss:word", "bob"),
            (
                "carol:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$SGVsbG9Xb3JsZEhlbGxvV29ybGQ",
                "carol",
            ),
        ];
        for (text, user) in ok {
            assert_eq!(parse_credential(text).unwrap().user(), *user, "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("alice", "credential 'ali…' must be written 'user:password'"),
            (":secret", "credential has an empty user name"),
            ("alice:", "user 'alice' has an empty password"),
            // A space is whitespace but no control; U+0001 a control but no whitespace.
            (
                "al ice:secret",
                "user name 'al ice' contains whitespace or a control character",
            ),
            (
                "al\u{1}ice:secret",
                "user name 'al\u{1}ice' contains whitespace or a control character",
            ),
            (
                "dave:$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$SGVsbG9Xb3JsZEhlbGxvV29ybGQ",
                "user 'dave': the password looks like a hash but is not a valid argon2id PHC string",
            ),
            (
                "erin:$argon2id$garbage",
                "user 'erin': the password looks like a hash but is not a valid argon2id PHC string",
            ),
        ];
        for (text, message) in bad {
            assert_eq!(parse_credential(text).unwrap_err(), *message, "{text}");
        }
    }

    #[test]
    fn debug_output_never_shows_passwords() {
        let c = parse_credential("alice:hunter2").unwrap();
        assert_eq!(format!("{c:?}"), r#"Credential { user: "alice", .. }"#);
    }

    #[test]
    fn sealing_hashes_at_the_given_cost() {
        let params = HashParams::new(8, 1, 1, None).expect("valid argon2 parameters");
        let phc = hash_password(&hasher(params), "pw").expect("hashing works");
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert!(verify_hash(&phc, "pw"));
    }

    #[test]
    fn realm_validation() {
        assert!(validate_realm("Staff only").is_ok());
        assert!(validate_realm("").is_err());
        assert!(validate_realm("say \"hi\"").is_err());
        assert!(validate_realm("back\\slash").is_err());
        assert!(validate_realm("tab\there").is_err());
        assert!(validate_realm(&"x".repeat(200)).is_ok());
        assert!(validate_realm(&"x".repeat(201)).is_err());
    }
}
