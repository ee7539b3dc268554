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

/// `config::parse` on its own (the fuzz target's entry): a file at each limit parses, a
/// file over one reports that limit only.
#[test]
fn config_parse_at_and_over_the_limits() {
    use skyhost_rules::{config, Limits};
    let two = Limits {
        max_rules: 2,
        ..Limits::default()
    };
    // Exactly max_rules of each table is accepted.
    let text =
        "[[redirects]]\nfrom = \"/a\"\nto = \"/b\"\n[[redirects]]\nfrom = \"/c\"\nto = \"/d\"\n\
        [[headers]]\nfor = \"/x/*\"\n[headers.values]\nBasic-Auth = \"hu:pw\"\n\
        [[headers]]\nfor = \"/y/*\"\n[headers.values]\nX-A = \"1\"\n\
        [auth]\n[[auth.rules]]\npath = \"/p/*\"\nusers = [\"ann:pw\", \"bo:pw\"]\n\
        [[auth.rules]]\npath = \"/q/*\"\nusers = [\"cy:pw\"]\n";
    let c = config::parse(text, &two).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.redirects.len(), 2);
    assert_eq!(c.headers.len(), 1, "the Basic-Auth table sets no header");
    let users: Vec<Vec<&str>> = c.auth.iter().map(|a| a.users().collect()).collect();
    assert_eq!(users, vec![vec!["hu"], vec!["ann", "bo"], vec!["cy"]]);
    let shown = format!("{:?}", c.auth[1]);
    assert!(
        shown.contains("\"/p/*\"") && shown.contains("ann") && !shown.contains("pw\""),
        "{shown}"
    );

    // A file of exactly max_file_bytes parses.
    let text = "pretty_urls = false\n";
    let exact = Limits {
        max_file_bytes: text.len(),
        ..Limits::default()
    };
    let c = config::parse(text, &exact).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!c.settings.pretty_urls);

    // A line over the limit is the only error, though the value is bad as well.
    let short = Limits {
        max_line_bytes: 20,
        ..Limits::default()
    };
    let errors = config::parse("spa_fallback = \"a-page-without-a-slash.html\"\n", &short)
        .expect_err("over the line limit");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 1, "{errors:?}");

    // Bad TOML is an error.
    assert!(config::parse("x = [\n", &Limits::default()).is_err());
}

/// `[previews]`: users put basic auth in front of every preview path; none, no auth.
/// `max_response_bytes` accepts its upper bound.
#[test]
fn config_previews_and_response_bound() {
    use skyhost_rules::{config, Limits};
    let limits = Limits::default();
    let c = config::parse("[previews]\nusers = [\"pv:pw\"]\n", &limits)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(c.previews.enabled);
    let auth = c.previews.auth.expect("users given: auth in front");
    assert_eq!(auth.users().collect::<Vec<_>>(), vec!["pv"]);
    let c =
        config::parse("[previews]\nenabled = false\n", &limits).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!c.previews.enabled);
    assert!(c.previews.auth.is_none(), "no users, no auth");

    let c = config::parse("[proxy]\nmax_response_bytes = 1073741824\n", &limits)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(c.proxy.max_response_bytes, 1_073_741_824);
}
