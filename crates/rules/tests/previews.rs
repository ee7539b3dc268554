//! `[previews]` in `skyhost.toml`: on or off, the basic auth in front of every preview,
//! and the refusals at deploy, as `file:line: reason`.

use skyhost_rules::{parse_site, AuthOutcome, HashParams, Previews, SiteFiles, SiteRules};

fn rules(text: &str) -> Result<SiteRules, Vec<String>> {
    parse_site(SiteFiles {
        config: Some(text),
        ..SiteFiles::default()
    })
    .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    .map(|site| {
        site.seal_with(HashParams::new(8, 1, 1, None).expect("small valid argon2 parameters"))
            .expect("seals")
    })
}

/// What a `[previews]` table turns into: (enabled, realm, users, source).
type Summary = (bool, Option<(String, Vec<String>, String)>);

fn summary(p: &Previews) -> Summary {
    (
        p.enabled,
        p.auth.as_ref().map(|a| {
            (
                a.realm().to_owned(),
                a.users().map(str::to_owned).collect(),
                a.source().to_owned(),
            )
        }),
    )
}

#[test]
fn previews_table() {
    let s = |v: &[&str]| v.iter().map(|u| u.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, Summary)> = vec![
        // No table: on, open.
        ("pretty_urls = true\n", (true, None)),
        ("[previews]\n", (true, None)),
        ("[previews]\nenabled = false\n", (false, None)),
        (
            "[previews]\nusers = [\"rev:a-long-pass\", \"qa:another\"]\n",
            (
                true,
                Some((
                    "Previews".into(),
                    s(&["rev", "qa"]),
                    "skyhost.toml:1 [previews]".into(),
                )),
            ),
        ),
        (
            "pretty_urls = true\n\n[previews]\nenabled = true\nusers = [\"rev:pw\"]\nrealm = \"Review\"\n",
            (
                true,
                Some((
                    "Review".into(),
                    s(&["rev"]),
                    "skyhost.toml:3 [previews]".into(),
                )),
            ),
        ),
        // Off, with users: still off.
        (
            "[previews]\nenabled = false\nusers = [\"rev:pw\"]\n",
            (
                false,
                Some((
                    "Previews".into(),
                    s(&["rev"]),
                    "skyhost.toml:1 [previews]".into(),
                )),
            ),
        ),
    ];
    for (text, want) in cases {
        let got = rules(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        assert_eq!(summary(&got.previews), want, "{text:?}");
    }
}

#[test]
fn previews_auth_guards_every_path_and_checks_the_password() {
    let r = rules("[previews]\nusers = [\"rev:a-long-pass\"]\n").unwrap();
    let auth = r.previews.auth.as_ref().expect("auth");
    for path in ["/", "/index.html", "/deep/er/page", "/_redirects"] {
        assert!(auth.path().matches(path).is_some(), "{path}");
    }
    use base64::Engine;
    let basic = |c: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(c)
        )
    };
    assert_eq!(auth.verify(None), AuthOutcome::Missing);
    assert_eq!(
        auth.verify(Some(&basic("rev:a-long-pass"))),
        AuthOutcome::Granted { user: "rev".into() }
    );
    assert!(!matches!(
        auth.verify(Some(&basic("rev:wrong"))),
        AuthOutcome::Granted { .. }
    ));
    // Stored hashed: the manifest never holds the password.
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("a-long-pass"), "{json}");
    let back: SiteRules = serde_json::from_str(&json).unwrap();
    assert_eq!(back.previews, r.previews);
}

#[test]
fn a_manifest_without_previews_reads_as_on() {
    // Manifests written before `[previews]` existed.
    let old: SiteRules = serde_json::from_str("{}").unwrap();
    assert_eq!(old.previews, Previews::default());
    assert!(old.previews.enabled && old.previews.auth.is_none());
}

#[test]
fn refused_at_deploy_with_file_and_line() {
    let cases: Vec<(&str, &str)> = vec![
        (
            "[previews]\nusers = [\"no-password\"]\n",
            "skyhost.toml:1: credential",
        ),
        (
            "pretty_urls = true\n[previews]\nusers = [\"rev:\"]\n",
            "skyhost.toml:2: user 'rev' has an empty password",
        ),
        (
            "[previews]\nusers = [\"rev:pw\"]\nrealm = \"\"\n",
            "skyhost.toml:1: realm is empty",
        ),
        ("[previews]\nenabled = \"no\"\n", "skyhost.toml:2"),
        ("[previews]\nusername = \"rev\"\n", "skyhost.toml:2"),
    ];
    for (text, want) in cases {
        let errors = rules(text).expect_err(text);
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "{text:?}: {errors:?} lacks {want:?}"
        );
    }
}
