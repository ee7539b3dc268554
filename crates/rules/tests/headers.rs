//! `_headers` matching and merging, from Netlify's documented semantics.

use skyhost_rules::{parse_site, SiteFiles, SiteRules};

fn site(headers: &str, config: Option<&str>) -> SiteRules {
    parse_site(SiteFiles {
        headers: Some(headers),
        config,
        redirects: None,
    })
    .unwrap_or_else(|e| panic!("headers should parse: {e:?}"))
    .seal_with(skyhost_rules::HashParams::new(8, 1, 1, None).unwrap())
    .unwrap()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn matching_and_merging_table() {
    let file = "\
# Security headers everywhere
/*
  X-Frame-Options: DENY
  Cache-Control: public

/assets/*
  Cache-Control: max-age=31536000
  cache-control: immutable

/templates/index.html
  X-Robots-Tag: noindex

/:lang/docs/*
  Content-Language: docs

/about/
  X-About: yes
";
    let rules = site(file, None);
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "/",
            &[("X-Frame-Options", "DENY"), ("Cache-Control", "public")],
        ),
        (
            "/assets/app.js",
            &[
                ("X-Frame-Options", "DENY"),
                ("Cache-Control", "public, max-age=31536000, immutable"),
            ],
        ),
        (
            "/templates/index.html",
            &[
                ("X-Frame-Options", "DENY"),
                ("Cache-Control", "public"),
                ("X-Robots-Tag", "noindex"),
            ],
        ),
        (
            "/fr/docs/intro",
            &[
                ("X-Frame-Options", "DENY"),
                ("Cache-Control", "public"),
                ("Content-Language", "docs"),
            ],
        ),
        (
            "/about",
            &[
                ("X-Frame-Options", "DENY"),
                ("Cache-Control", "public"),
                ("X-About", "yes"),
            ],
        ),
        (
            "/templates/other.html",
            &[("X-Frame-Options", "DENY"), ("Cache-Control", "public")],
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(rules.headers_for(path), pairs(expected), "{path}");
    }
}

#[test]
fn no_matching_block_means_no_headers() {
    let rules = site("/only/here\n  X-A: 1\n", None);
    assert!(rules.headers_for("/elsewhere").is_empty());
    assert_eq!(rules.headers_for("/only/here/"), pairs(&[("X-A", "1")]));
}

#[test]
fn config_headers_follow_the_file_and_merge() {
    let config = "[[headers]]\nfor = \"/*\"\n[headers.values]\nX-Frame-Options = \"SAMEORIGIN\"\nPermissions-Policy = \"camera=()\"\n";
    let rules = site("/*\n  X-Frame-Options: DENY\n", Some(config));
    assert_eq!(
        rules.headers_for("/x"),
        pairs(&[
            ("X-Frame-Options", "DENY, SAMEORIGIN"),
            ("Permissions-Policy", "camera=()"),
        ])
    );
}

#[test]
fn values_are_trimmed_and_keep_inner_colons_and_tabs() {
    let rules = site(
        "/*\n\tLink:   <https://example.com/a>; rel=preload\t \n  X-T: a\tb\n",
        None,
    );
    assert_eq!(
        rules.headers_for("/"),
        pairs(&[
            ("Link", "<https://example.com/a>; rel=preload"),
            ("X-T", "a\tb")
        ])
    );
}

#[test]
fn basic_auth_lines_are_not_headers() {
    let rules = site("/private/*\n  Basic-Auth: alice:secret\n  X-A: 1\n", None);
    assert_eq!(rules.headers_for("/private/x"), pairs(&[("X-A", "1")]));
    assert!(rules.auth_for("/private/x").is_some());
    assert!(rules.auth_for("/public").is_none());
}

#[test]
fn served_file_headers_join_the_request_paths() {
    let rules = site(
        "/secret.html\n  X-Robots-Tag: noindex\n  Vary: Cookie\n\n/secret\n  X-Frame-Options: DENY\n\n/*\n  X-Content-Type-Options: nosniff\n\n/admin/*\n  X-Robots-Tag: none\n",
        None,
    );
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        // Pretty URL: the request path's rules and the file's, each rule once.
        (
            "/secret",
            "/secret.html",
            &[
                ("X-Robots-Tag", "noindex"),
                ("Vary", "Cookie"),
                ("X-Frame-Options", "DENY"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        ),
        // The file by its own name: the same headers as by its pretty URL, since a rule
        // on `/secret` is a rule on the page `/secret.html` is.
        (
            "/secret.html",
            "/secret.html",
            &[
                ("X-Robots-Tag", "noindex"),
                ("Vary", "Cookie"),
                ("X-Frame-Options", "DENY"),
                ("X-Content-Type-Options", "nosniff"),
            ],
        ),
        // An SPA fallback or 404 page served for an unrelated path.
        (
            "/missing",
            "/admin/index.html",
            &[
                ("X-Content-Type-Options", "nosniff"),
                ("X-Robots-Tag", "none"),
            ],
        ),
    ];
    for (path, file, want) in cases {
        assert_eq!(
            rules.headers_for_served(path, file),
            pairs(want),
            "{path} → {file}"
        );
    }
}

/// `headers::parse` on its own (the fuzz target's entry): header rules and basic auth
/// apart, or the errors.
#[test]
fn headers_parse_alone() {
    use skyhost_rules::{headers, Limits};
    let (rules, auth) = headers::parse(
        "/*\n  X-Frame-Options: DENY\n/admin/*\n  Basic-Auth: root:pw\n",
        &Limits::default(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(rules.len(), 1);
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0].users().collect::<Vec<_>>(), vec!["root"]);
    let errors = headers::parse("/*\n  Content-Length: 5\n", &Limits::default())
        .expect_err("a server header");
    assert_eq!(errors.len(), 1, "{errors:?}");
}
