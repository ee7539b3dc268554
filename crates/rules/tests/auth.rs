//! Basic auth: right and wrong passwords, unknown users, and no plain text after sealing.

use base64::Engine;
use skyhost_rules::{parse_site, AuthOutcome, HashParams, SiteFiles, SiteRules};

const PASSWORDS: &[&str] = &["s3cret-alice", "hunter2-bob", "pw-carol-in-toml"];

fn cheap() -> HashParams {
    // Tests only: argon2 at minimum cost so the suite stays fast.
    HashParams::new(8, 1, 1, None).unwrap()
}

fn sealed() -> SiteRules {
    parse_site(SiteFiles {
        headers: Some("/members/*\n  Basic-Auth: alice:s3cret-alice bob:hunter2-bob\n"),
        config: Some("[[auth.rules]]\npath = \"/toml/*\"\nusers = [\"carol:pw-carol-in-toml\"]\n"),
        redirects: None,
    })
    .unwrap()
    .seal_with(cheap())
    .unwrap()
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

fn granted(user: &str) -> AuthOutcome {
    AuthOutcome::Granted {
        user: user.to_string(),
    }
}

fn denied(user: Option<&str>) -> AuthOutcome {
    AuthOutcome::Denied {
        user: user.map(str::to_string),
    }
}

#[test]
fn verification_table() {
    let rules = sealed();
    let members = rules.auth_for("/members/page").unwrap();
    let toml = rules.auth_for("/toml/x").unwrap();
    let cases: Vec<(&skyhost_rules::AuthRule, Option<String>, AuthOutcome)> = vec![
        (
            members,
            Some(basic("alice", "s3cret-alice")),
            granted("alice"),
        ),
        (members, Some(basic("bob", "hunter2-bob")), granted("bob")),
        (
            members,
            Some(basic("alice", "hunter2-bob")),
            denied(Some("alice")),
        ),
        (
            members,
            Some(basic("alice", "s3cret-alicE")),
            denied(Some("alice")),
        ),
        (members, Some(basic("alice", "")), denied(Some("alice"))),
        (
            members,
            Some(basic("mallory", "s3cret-alice")),
            denied(Some("mallory")),
        ),
        (
            members,
            Some(basic("Alice", "s3cret-alice")),
            denied(Some("Alice")),
        ),
        (
            members,
            Some(basic("carol", "pw-carol-in-toml")),
            denied(Some("carol")),
        ),
        (
            toml,
            Some(basic("carol", "pw-carol-in-toml")),
            granted("carol"),
        ),
        (
            toml,
            Some(basic("alice", "s3cret-alice")),
            denied(Some("alice")),
        ),
        (members, None, AuthOutcome::Missing),
        (
            members,
            Some("Bearer abc".to_string()),
            AuthOutcome::Missing,
        ),
        (members, Some("Basic".to_string()), denied(None)),
        (
            members,
            Some("Basic !!!not-base64".to_string()),
            denied(None),
        ),
        (
            members,
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("no-colon")
            )),
            denied(None),
        ),
        (
            members,
            Some(basic("alice", "s3cret-alice").replace("Basic", "bAsIc")),
            granted("alice"),
        ),
    ];
    for (i, (rule, header, expected)) in cases.into_iter().enumerate() {
        assert_eq!(
            rule.verify(header.as_deref()),
            expected,
            "case {i}: {header:?}"
        );
    }
}

#[test]
fn passwords_with_colons() {
    let rules = parse_site(SiteFiles {
        headers: Some("/*\n  Basic-Auth: dave:a:b:c\n"),
        ..SiteFiles::default()
    })
    .unwrap()
    .seal_with(cheap())
    .unwrap();
    let rule = rules.auth_for("/").unwrap();
    assert_eq!(rule.verify(Some(&basic("dave", "a:b:c"))), granted("dave"));
    assert_eq!(rule.verify(Some(&basic("dave", "a"))), denied(Some("dave")));
}

#[test]
fn sealed_rules_hold_no_plain_text() {
    let rules = sealed();
    let json = serde_json::to_string(&rules).unwrap();
    for password in PASSWORDS {
        assert!(!json.contains(password), "{password} found in {json}");
    }
    let debug = format!("{:?}", rules);
    for password in PASSWORDS {
        assert!(
            !debug.contains(password),
            "{password} found in debug output"
        );
    }
    assert!(
        json.contains("$argon2id$"),
        "hashes are argon2id PHC strings"
    );
}

#[test]
fn parsed_site_debug_hides_plain_text() {
    let parsed = parse_site(SiteFiles {
        headers: Some("/*\n  Basic-Auth: alice:s3cret-alice\n"),
        ..SiteFiles::default()
    })
    .unwrap();
    assert!(!format!("{parsed:?}").contains("s3cret-alice"));
}

#[test]
fn verification_survives_the_manifest_round_trip() {
    let json = serde_json::to_string(&sealed()).unwrap();
    let back: SiteRules = serde_json::from_str(&json).unwrap();
    let rule = back.auth_for("/members/").unwrap();
    assert_eq!(
        rule.verify(Some(&basic("bob", "hunter2-bob"))),
        granted("bob")
    );
    assert_eq!(
        rule.verify(Some(&basic("bob", "nope"))),
        denied(Some("bob"))
    );
}

#[test]
fn unknown_users_are_checked_against_a_hash_of_the_same_cost() {
    let json = serde_json::to_value(sealed()).unwrap();
    let rule = &json["auth"][0];
    let params = |phc: &str| phc.split('$').nth(3).unwrap().to_string();
    let dummy = rule["dummy_hash"].as_str().unwrap();
    assert!(dummy.starts_with("$argon2id$"));
    for user in rule["users"].as_array().unwrap() {
        assert_eq!(params(user["hash"].as_str().unwrap()), params(dummy));
    }
}

#[test]
fn each_password_gets_its_own_salt() {
    let rules = parse_site(SiteFiles {
        headers: Some("/*\n  Basic-Auth: a:same b:same\n"),
        ..SiteFiles::default()
    })
    .unwrap()
    .seal_with(cheap())
    .unwrap();
    let json = serde_json::to_value(&rules).unwrap();
    let users = json["auth"][0]["users"].as_array().unwrap();
    assert_ne!(users[0]["hash"], users[1]["hash"]);
}

#[test]
fn prehashed_passwords_are_kept_as_given() {
    // Take a real hash from one sealed site and give it, instead of plain text, to another.
    let json = serde_json::to_value(sealed()).unwrap();
    let alice_hash = json["auth"][0]["users"][0]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let headers = format!("/*\n  Basic-Auth: alice:{alice_hash}\n");
    let rules = parse_site(SiteFiles {
        headers: Some(&headers),
        ..SiteFiles::default()
    })
    .unwrap()
    .seal_with(cheap())
    .unwrap();
    let rule = rules.auth_for("/x").unwrap();
    assert_eq!(
        rule.verify(Some(&basic("alice", "s3cret-alice"))),
        granted("alice")
    );
    let stored = serde_json::to_value(&rules).unwrap();
    assert_eq!(stored["auth"][0]["users"][0]["hash"], alice_hash.as_str());
}

#[test]
fn production_sealing_uses_argon2id_defaults() {
    let rules = parse_site(SiteFiles {
        headers: Some("/*\n  Basic-Auth: alice:s3cret-alice\n"),
        ..SiteFiles::default()
    })
    .unwrap()
    .seal()
    .unwrap();
    let json = serde_json::to_value(&rules).unwrap();
    let hash = json["auth"][0]["users"][0]["hash"].as_str().unwrap();
    let defaults = HashParams::default();
    let expected = format!(
        "$argon2id$v=19$m={},t={},p={}$",
        defaults.m_cost(),
        defaults.t_cost(),
        defaults.p_cost()
    );
    assert!(
        hash.starts_with(&expected),
        "{hash} should start with {expected}"
    );
    assert_eq!(
        rules
            .auth_for("/")
            .unwrap()
            .verify(Some(&basic("alice", "s3cret-alice"))),
        granted("alice")
    );
}

/// A real argon2id hash of `password` at the given cost (cheap in memory, so tests stay fast
/// even where the pass count is over the bound).
fn phc(password: &str, m: u32, t: u32, p: u32) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = HashParams::new(m, t, p, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
    hasher
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// A syntactically valid argon2id PHC string with the given cost (no password hashed).
fn phc_claiming(m: u32, t: u32, p: u32) -> String {
    format!("$argon2id$v=19$m={m},t={t},p={p}$c2FsdHNhbHQ$SGVsbG9Xb3JsZEhlbGxvV29ybGQ")
}

#[test]
fn prehashed_costs_over_the_bounds_are_refused_at_deploy_with_file_and_line() {
    let over = |m, t, p| {
        format!(
            "user 'ann': the argon2id hash costs m={m}, t={t}, p={p}; the limits are m=65536 (KiB, 64 MiB), t=10, p=4: hash the password again with a lower cost"
        )
    };
    // (m KiB, t, p, refusal)
    let cases: &[(u32, u32, u32, Option<String>)] = &[
        (19456, 2, 1, None),
        (65536, 10, 4, None),
        (65537, 1, 1, Some(over(65537, 1, 1))),
        (4 * 1024 * 1024, 1, 1, Some(over(4 * 1024 * 1024, 1, 1))),
        (8, 11, 1, Some(over(8, 11, 1))),
        (8, 1000, 1, Some(over(8, 1000, 1))),
        (64, 1, 5, Some(over(64, 1, 5))),
    ];
    for (m, t, p, refusal) in cases {
        let hash = phc_claiming(*m, *t, *p);
        let headers = format!("/a/*\n  X-Frame-Options: DENY\n  Basic-Auth: ann:{hash}\n");
        let config = format!(
            "[[auth.rules]]\npath = \"/b/*\"\nusers = [\"bob:pw\"]\n\n[[auth.rules]]\npath = \"/c/*\"\nusers = [\"ann:{hash}\"]\n"
        );
        let result = parse_site(SiteFiles {
            headers: Some(&headers),
            config: Some(&config),
            redirects: None,
        });
        match refusal {
            None => assert!(result.is_ok(), "m={m} t={t} p={p}: {result:?}"),
            Some(reason) => {
                let shown: Vec<String> = result
                    .unwrap_err()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                assert_eq!(
                    shown,
                    [
                        format!("_headers:3: {reason}"),
                        format!("skyhost.toml:5: {reason}")
                    ],
                    "m={m} t={t} p={p}"
                );
            }
        }
    }
}

#[test]
fn a_stored_hash_over_the_bounds_never_verifies() {
    // A manifest written before the bounds were checked at deploy: its over-cost hash is
    // refused at request time instead of costing each wrong guess that much.
    let within = phc("pw", 8, 10, 1);
    let over = phc("pw", 8, 11, 1);
    let mut json = serde_json::to_value(sealed()).unwrap();
    json["auth"][0]["users"][0]["hash"] = within.clone().into();
    json["auth"][0]["users"][1]["hash"] = over.into();
    let rules: SiteRules = serde_json::from_value(json).unwrap();
    let rule = rules.auth_for("/members/").unwrap();
    assert_eq!(rule.verify(Some(&basic("alice", "pw"))), granted("alice"));
    assert_eq!(rule.verify(Some(&basic("bob", "pw"))), denied(Some("bob")));
}

#[test]
fn offered_credentials_table() {
    use skyhost_rules::Offered;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let creds = |user: &str, password: &str| Offered::Credentials {
        user: user.to_string(),
        password: password.to_string(),
    };
    let cases: Vec<(Option<String>, Offered)> = vec![
        (None, Offered::Nothing),
        (Some(String::new()), Offered::Nothing),
        (Some("Bearer abc".into()), Offered::Nothing),
        (Some("Digest username=\"a\"".into()), Offered::Nothing),
        (Some("Basic".into()), Offered::Malformed),
        (Some("basic ".into()), Offered::Malformed),
        (Some("Basic !!!".into()), Offered::Malformed),
        (
            Some(format!("Basic {}", b64("no-colon"))),
            Offered::Malformed,
        ),
        (
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode([0xff, b':', b'x'])
            )),
            Offered::Malformed,
        ),
        (Some(basic("ann", "pw")), creds("ann", "pw")),
        (Some(basic("ann", "a:b")), creds("ann", "a:b")),
        (Some(basic("", "pw")), creds("", "pw")),
        (
            Some(format!("  bAsIc   {}  ", b64("ann:pw"))),
            creds("ann", "pw"),
        ),
    ];
    for (header, want) in cases {
        assert_eq!(Offered::parse(header.as_deref()), want, "{header:?}");
    }
    assert_eq!(creds("ann", "pw").user(), Some("ann"));
    assert_eq!(Offered::Malformed.user(), None);
    let shown = format!("{:?}", creds("ann", "hunter2"));
    assert!(
        shown.contains("ann") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn the_names_a_file_is_reached_by() {
    let cases: [(&str, &[&str]); 7] = [
        ("/vault.html", &["/vault.html", "/vault", "/vault/"]),
        ("/a/b.html", &["/a/b.html", "/a/b", "/a/b/"]),
        ("/team/index.html", &["/team/index.html", "/team/", "/team"]),
        ("/index.html", &["/index.html", "/"]),
        ("/app.js", &["/app.js"]),
        ("/.html", &["/.html"]),
        ("/notes.htm", &["/notes.htm"]),
    ];
    for (file, want) in cases {
        assert_eq!(skyhost_rules::names_of_file(file), want, "{file}");
    }
}

#[test]
fn a_rule_protects_its_file_by_every_name() {
    let rules = parse_site(SiteFiles {
        headers: Some(
            "/vault\n  Basic-Auth: alice:s3cret-alice\n/team/\n  Basic-Auth: bob:hunter2-bob\n/docs/*\n  Basic-Auth: bob:hunter2-bob\n",
        ),
        config: None,
        redirects: None,
    })
    .unwrap()
    .seal_with(cheap())
    .unwrap();
    // (file served, protected by the rule of)
    let cases = [
        ("/vault.html", Some("/vault")),
        ("/team/index.html", Some("/team/")),
        ("/docs/index.html", Some("/docs/*")),
        // `/docs/` is a name of `/docs.html` (a pretty URL with its slash), which
        // `/docs/*` protects, as `/team/` protects `/team.html`: the file is protected
        // however it is asked for.
        ("/docs.html", Some("/docs/*")),
        ("/vaults.html", None),
        ("/team.html", Some("/team/")),
        ("/index.html", None),
    ];
    for (file, want) in cases {
        let got = rules.auth_for_file(file).map(|r| r.path().as_str());
        assert_eq!(got, want, "{file}");
    }
}
