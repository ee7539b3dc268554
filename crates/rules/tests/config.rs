//! `skyhost.toml`: settings, `[proxy]`, and how the tables combine with the files.

use skyhost_rules::{parse_site, ProxyPolicy, Settings, SiteFiles, SiteRules, TrailingSlash};

fn parse_config(text: &str) -> SiteRules {
    parse_site(SiteFiles {
        config: Some(text),
        ..SiteFiles::default()
    })
    .unwrap_or_else(|e| panic!("config should parse: {e:?}"))
    .seal_with(skyhost_rules::HashParams::new(8, 1, 1, None).unwrap())
    .unwrap()
}

#[test]
fn settings_table() {
    let defaults = Settings::default();
    let cases: Vec<(&str, Settings)> = vec![
        ("", defaults.clone()),
        (
            "trailing_slash = \"always\"",
            Settings {
                trailing_slash: TrailingSlash::Always,
                ..defaults.clone()
            },
        ),
        (
            "trailing_slash = \"never\"\npretty_urls = false",
            Settings {
                trailing_slash: TrailingSlash::Never,
                pretty_urls: false,
                ..defaults.clone()
            },
        ),
        (
            "trailing_slash = \"auto\"\nspa_fallback = \"/index.html\"\nnot_found_page = \"/missing.html\"\nerror_page = \"/oops.html\"",
            Settings {
                trailing_slash: TrailingSlash::Auto,
                pretty_urls: true,
                spa_fallback: Some("/index.html".to_string()),
                not_found_page: Some("/missing.html".to_string()),
                error_page: Some("/oops.html".to_string()),
            },
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_config(text).settings, expected, "{text}");
    }
}

#[test]
fn no_files_at_all_gives_defaults() {
    let rules = parse_site(SiteFiles::default()).unwrap().seal().unwrap();
    assert_eq!(rules, SiteRules::default());
    assert!(rules.settings.pretty_urls);
    assert_eq!(rules.proxy, ProxyPolicy::default());
}

#[test]
fn proxy_table() {
    let rules = parse_config(
        "[proxy]\nallowlist = [\"127.0.0.1\", \"API.Internal.\", \"[::1]\", \"127.0.0.1\"]\napply_headers = true\nmax_response_bytes = 2048\nforward_credentials = [\"API.example.com.\", \"api.example.com\", \"10.0.0.7\"]\n",
    );
    assert_eq!(
        rules.proxy,
        ProxyPolicy {
            allowlist: vec!["127.0.0.1".into(), "api.internal".into(), "::1".into()],
            apply_headers: true,
            max_response_bytes: 2048,
            forward_credentials: vec!["api.example.com".into(), "10.0.0.7".into()],
        }
    );
    let defaults = parse_config("[proxy]\n");
    assert_eq!(defaults.proxy, ProxyPolicy::default());
    assert_eq!(defaults.proxy.max_response_bytes, 10 * 1024 * 1024);
    assert!(!defaults.proxy.apply_headers);
    assert!(defaults.proxy.forward_credentials.is_empty());
}

#[test]
fn auth_rules_from_config() {
    let rules = parse_config(
        "[auth]\nrealm = \"Staff\"\n\n[[auth.rules]]\npath = \"/private/*\"\nusers = [\"alice:secret\"]\n\n[[auth.rules]]\npath = \"/board/*\"\nusers = [\"bob:pw\", \"carol:pw2\"]\nrealm = \"Board\"\n",
    );
    let private = rules.auth_for("/private/report.pdf").expect("protected");
    assert_eq!(private.realm(), "Staff");
    assert_eq!(private.users().collect::<Vec<_>>(), vec!["alice"]);
    assert_eq!(private.source(), "skyhost.toml:4");
    let board = rules.auth_for("/board").expect("protected");
    assert_eq!(board.realm(), "Board");
    assert_eq!(board.users().collect::<Vec<_>>(), vec!["bob", "carol"]);
    assert_eq!(
        board.challenge(),
        "Basic realm=\"Board\", charset=\"UTF-8\""
    );
    assert!(rules.auth_for("/public").is_none());
}

#[test]
fn headers_file_auth_comes_before_config_auth() {
    let rules = parse_site(SiteFiles {
        headers: Some("/*\n  Basic-Auth: site:wide\n"),
        config: Some("[[auth.rules]]\npath = \"/admin/*\"\nusers = [\"admin:pw\"]\n"),
        redirects: None,
    })
    .unwrap()
    .seal_with(skyhost_rules::HashParams::new(8, 1, 1, None).unwrap())
    .unwrap();
    let rule = rules.auth_for("/admin/x").unwrap();
    assert_eq!(rule.source(), "_headers:2");
    assert_eq!(rule.realm(), "Restricted");
}
