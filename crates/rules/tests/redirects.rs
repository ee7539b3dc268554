//! Redirect matching, from Netlify's documented `_redirects` semantics.

use skyhost_rules::{parse_site, RedirectAction, RequestFacts, SiteFiles, SiteRules};

fn site(redirects: &str) -> SiteRules {
    parse_site(SiteFiles {
        redirects: Some(redirects),
        ..SiteFiles::default()
    })
    .unwrap_or_else(|e| panic!("rules should parse: {e:?}"))
    .seal()
    .expect("no auth rules, nothing to hash")
}

fn redirect(status: u16, location: &str) -> Option<RedirectAction> {
    Some(RedirectAction::Redirect {
        status,
        location: location.to_string(),
    })
}

fn rewrite(path: &str) -> Option<RedirectAction> {
    Some(RedirectAction::Rewrite {
        path: path.to_string(),
    })
}

fn proxy(url: &str) -> Option<RedirectAction> {
    Some(RedirectAction::Proxy {
        url: url.to_string(),
    })
}

fn status(status: u16, path: &str) -> Option<RedirectAction> {
    Some(RedirectAction::Status {
        status,
        path: path.to_string(),
    })
}

/// One request against one rules file.
struct Case {
    rules: &'static str,
    path: &'static str,
    query: &'static str,
    country: Option<&'static str>,
    language: Option<&'static str>,
    /// Paths at which the site has a file.
    files: &'static [&'static str],
    expect: Option<RedirectAction>,
}

const fn req(rules: &'static str, path: &'static str) -> Case {
    Case {
        rules,
        path,
        query: "",
        country: None,
        language: None,
        files: &[],
        expect: None,
    }
}

impl Case {
    fn query(mut self, q: &'static str) -> Self {
        self.query = q;
        self
    }
    fn country(mut self, c: &'static str) -> Self {
        self.country = Some(c);
        self
    }
    fn language(mut self, l: &'static str) -> Self {
        self.language = Some(l);
        self
    }
    fn files(mut self, f: &'static [&'static str]) -> Self {
        self.files = f;
        self
    }
    fn expect(mut self, e: Option<RedirectAction>) -> Self {
        self.expect = e;
        self
    }
}

fn run(cases: Vec<Case>) {
    for (i, case) in cases.into_iter().enumerate() {
        let rules = site(case.rules);
        let facts = RequestFacts {
            path: case.path,
            query: case.query,
            country: case.country,
            accept_language: case.language,
        };
        let files = case.files;
        let got = rules.match_redirect(&facts, &|p: &str| files.contains(&p));
        assert_eq!(
            got, case.expect,
            "case {i}: rules {:?} path {} query {:?} country {:?} language {:?} files {:?}",
            case.rules, case.path, case.query, case.country, case.language, case.files
        );
    }
}

#[test]
fn statuses() {
    run(vec![
        req("/home / 301", "/home").expect(redirect(301, "/")),
        req("/home /", "/home").expect(redirect(301, "/")),
        req("/my-redirect / 302", "/my-redirect").expect(redirect(302, "/")),
        req("/see /other 303", "/see").expect(redirect(303, "/other")),
        req("/tmp /other 307", "/tmp").expect(redirect(307, "/other")),
        req("/perm /other 308", "/perm").expect(redirect(308, "/other")),
        req("/pass-through /index.html 200", "/pass-through").expect(rewrite("/index.html")),
        req("/ecommerce /store-closed 404", "/ecommerce").expect(status(404, "/store-closed")),
        req("/gone /gone.html 410", "/gone").expect(status(410, "/gone.html")),
        req("/home / 301", "/elsewhere"),
    ]);
}

#[test]
fn splats_and_placeholders() {
    run(vec![
        req("/news/* /blog/:splat", "/news/2004/01/10/my-story")
            .expect(redirect(301, "/blog/2004/01/10/my-story")),
        req("/news/* /blog/:splat", "/news").expect(redirect(301, "/blog/")),
        req("/news/* /blog/:splat", "/newsletter"),
        req(
            "/news/:month/:date/:year/:slug /blog/:year/:month/:date/:slug",
            "/news/02/12/2004/my-story",
        )
        .expect(redirect(301, "/blog/2004/02/12/my-story")),
        req(
            "/news/:month/:date/:year/:slug /blog/:year/:month/:date/:slug",
            "/news/02/12/2004",
        ),
        req(
            "/blog/:year/:slug /blog-:year-:slug.html 200",
            "/blog/2024/hello",
        )
        .expect(rewrite("/blog-2024-hello.html")),
        req("/:lang/old/* /:lang/new/:splat 302", "/fr/old/a/b")
            .expect(redirect(302, "/fr/new/a/b")),
        req("/* /index.html 200", "/deep/client/route").expect(rewrite("/index.html")),
        req("/* /index.html 200", "/").expect(rewrite("/index.html")),
        // Decoded values are re-encoded in a Location, and stay decoded for a rewrite.
        req("/docs/* /manual/:splat 301", "/docs/a b/ü")
            .expect(redirect(301, "/manual/a%20b/%C3%BC")),
        req("/docs/* /manual/:splat 200", "/docs/a b/ü").expect(rewrite("/manual/a b/ü")),
        req("/p/:id /q?id=:id 302", "/p/a&b").expect(redirect(302, "/q?id=a%26b")),
        req("/pct /a%20b 200", "/pct").expect(rewrite("/a b")),
    ]);
}

#[test]
fn first_match_wins() {
    let rules = "/a /first 302\n/a /second 302\n/* /catch-all 302";
    run(vec![
        req(rules, "/a").expect(redirect(302, "/first")),
        req(rules, "/b").expect(redirect(302, "/catch-all")),
    ]);
}

#[test]
fn query_parameter_matching() {
    run(vec![
        req("/store id=:id /blog/:id 301", "/store")
            .query("id=my-blog-post")
            .expect(redirect(301, "/blog/my-blog-post")),
        req("/store id=:id /blog/:id 301", "/store"),
        req("/store id=:id /blog/:id 301", "/store").query("other=1"),
        req("/articles id=:id tag=:tag /posts/:tag/:id 301", "/articles")
            .query("id=123&tag=skyhost")
            .expect(redirect(301, "/posts/skyhost/123")),
        req("/articles id=:id tag=:tag /posts/:tag/:id 301", "/articles")
            .query("tag=skyhost&utm=x&id=123")
            .expect(redirect(301, "/posts/skyhost/123")),
        req("/articles id=:id tag=:tag /posts/:tag/:id 301", "/articles").query("id=123"),
        req("/search type=video /videos 302", "/search")
            .query("type=video")
            .expect(redirect(302, "/videos")),
        req("/search type=video /videos 302", "/search").query("type=audio"),
        req("/search debug /debug.html 200", "/search")
            .query("debug")
            .expect(rewrite("/debug.html")),
        req("/search debug /debug.html 200", "/search").query("q=debug"),
        req("/s q=:q /find/:q 302", "/s")
            .query("q=hello%20world")
            .expect(redirect(302, "/find/hello%20world")),
        req("/s q=:q /find/:q 200", "/s")
            .query("q=hello%20world")
            .expect(rewrite("/find/hello world")),
        // A value from the query stays one segment: its slashes are escaped, so it can
        // neither add segments nor climb out of the target's folder.
        req("/s q=:q /find/:q 302", "/s")
            .query("q=a%2F..%2Fadmin")
            .expect(redirect(302, "/find/a%2F..%2Fadmin")),
        req("/s q=:q /find/:q 302", "/s")
            .query("q=a/b")
            .expect(redirect(302, "/find/a%2Fb")),
        // `?`, `#` and `%` in a value are escaped too: it can neither start a query nor a
        // fragment, nor turn into another escape.
        req("/s q=:q /find/:q 302", "/s")
            .query("q=a%3Fadmin%3D1")
            .expect(redirect(302, "/find/a%3Fadmin%3D1")),
        req("/s q=:q /find/:q 302", "/s")
            .query("q=a%23top")
            .expect(redirect(302, "/find/a%23top")),
        req("/s q=:q /find/:q 302", "/s")
            .query("q=100%25")
            .expect(redirect(302, "/find/100%25")),
        req("/s q=:q /find/:q 302", "/s")
            .query("q=%252F")
            .expect(redirect(302, "/find/%252F")),
        req("/s q=:q /find/:q 302", "/s")
            .query("q=%2F%3F%23%25")
            .expect(redirect(302, "/find/%2F%3F%23%25")),
        // Rewritten, the value is the file name, whole: `?` and `#` do not cut the path.
        req("/s q=:q /find/:q 200", "/s")
            .query("q=a%3Fb%23c%25d")
            .expect(rewrite("/find/a?b#c%d")),
        // A bound value never brings the visitor's query along with a `?` of its own.
        req("/s q=:q /find/:q 301", "/s")
            .query("q=x%3Fy&utm=1")
            .expect(redirect(301, "/find/x%3Fy")),
    ]);
}

#[test]
fn query_string_is_passed_on() {
    run(vec![
        req("/old /new 301", "/old")
            .query("a=1&b=2")
            .expect(redirect(301, "/new?a=1&b=2")),
        req("/old /new 302", "/old").expect(redirect(302, "/new")),
        // The target's own query string wins.
        req("/old /new?x=1 301", "/old")
            .query("a=1")
            .expect(redirect(301, "/new?x=1")),
        // A rule that matched query parameters passes on only what its target names.
        req("/store id=:id /products/:id 301", "/store")
            .query("id=7&utm=x")
            .expect(redirect(301, "/products/7")),
        req("/old /new#top 301", "/old")
            .query("q=1")
            .expect(redirect(301, "/new?q=1#top")),
        req("/api/* https://api.example.com/:splat 200", "/api/users/1")
            .query("x=1")
            .expect(proxy("https://api.example.com/users/1?x=1")),
        // A rewrite serves a file: the query string does not change which.
        req("/old /new.html 200", "/old")
            .query("a=1")
            .expect(rewrite("/new.html")),
    ]);
}

#[test]
fn shadowing_and_forcing() {
    run(vec![
        req("/app/* /index.html 200", "/app/main.js")
            .files(&["/app/main.js"])
            .expect(None),
        req("/app/* /index.html 200", "/app/route")
            .files(&["/app/main.js"])
            .expect(rewrite("/index.html")),
        req("/app/* /index.html 200!", "/app/main.js")
            .files(&["/app/main.js"])
            .expect(rewrite("/index.html")),
        req("/old.html /new.html 301", "/old.html")
            .files(&["/old.html"])
            .expect(None),
        req("/old.html /new.html 301!", "/old.html")
            .files(&["/old.html"])
            .expect(redirect(301, "/new.html")),
        req("/x /gone.html 404", "/x").files(&["/x"]).expect(None),
        req("/x /gone.html 404!", "/x")
            .files(&["/x"])
            .expect(status(404, "/gone.html")),
        // A shadowed rule is skipped; a later forced rule still applies.
        req("/a /b 302\n/a /c 302!", "/a")
            .files(&["/a"])
            .expect(redirect(302, "/c")),
        req("/a /b 302\n/a /c 302", "/a")
            .files(&["/a"])
            .expect(None),
    ]);
}

#[test]
fn file_exists_is_asked_once_and_only_when_needed() {
    use std::cell::Cell;
    let rules = site("/a /b 302\n/a /c 302\n/forced /d 302!");
    let calls = Cell::new(0);
    let exists = |_: &str| {
        calls.set(calls.get() + 1);
        true
    };
    let facts = |path| RequestFacts {
        path,
        ..RequestFacts::default()
    };
    assert_eq!(rules.match_redirect(&facts("/a"), &exists), None);
    assert_eq!(calls.get(), 1);
    assert_eq!(
        rules.match_redirect(&facts("/forced"), &exists),
        redirect(302, "/d")
    );
    assert_eq!(calls.get(), 1, "forced rules never look at files");
    assert_eq!(rules.match_redirect(&facts("/none"), &exists), None);
    assert_eq!(calls.get(), 1, "no matching rule, no lookup");
}

#[test]
fn country_conditions() {
    let rules = "/ /anz 302 Country=au,nz";
    run(vec![
        req(rules, "/").country("AU").expect(redirect(302, "/anz")),
        req(rules, "/").country("nz").expect(redirect(302, "/anz")),
        req(rules, "/").country("US"),
        req(rules, "/"),
        req("/ /ca 302 country=CA", "/")
            .country("ca")
            .expect(redirect(302, "/ca")),
    ]);
}

#[test]
fn language_conditions() {
    let zh = "/ /zh 302 Language=zh";
    run(vec![
        req(zh, "/").language("zh").expect(redirect(302, "/zh")),
        req(zh, "/")
            .language("ZH-cn,en;q=0.5")
            .expect(redirect(302, "/zh")),
        req(zh, "/")
            .language("en-US,en;q=0.9,zh;q=0.2")
            .expect(redirect(302, "/zh")),
        req(zh, "/").language("en-US,en"),
        req(zh, "/").language("zh;q=0"),
        req(zh, "/").language("zhx"),
        req(zh, "/"),
        req("/ /tw 302 Language=zh-tw", "/")
            .language("zh-TW")
            .expect(redirect(302, "/tw")),
        req("/ /tw 302 Language=zh-tw", "/").language("zh-CN"),
        req("/ /en 302 Language=en,fr", "/")
            .language("fr-CA")
            .expect(redirect(302, "/en")),
        // Both conditions must hold.
        req("/ /x 302 Country=ca Language=fr", "/")
            .country("CA")
            .language("fr")
            .expect(redirect(302, "/x")),
        req("/ /x 302 Country=ca Language=fr", "/")
            .country("CA")
            .language("en"),
        req("/ /x 302 Country=ca Language=fr", "/")
            .country("US")
            .language("fr"),
    ]);
}

#[test]
fn trailing_slash_does_not_change_matching() {
    run(vec![
        req("/about /about-us 301", "/about/").expect(redirect(301, "/about-us")),
        req("/about/ /about-us 301", "/about").expect(redirect(301, "/about-us")),
        req("/about/ /about-us 301", "/about/").expect(redirect(301, "/about-us")),
        req("/blog/:slug /posts/:slug 301", "/blog/hello/").expect(redirect(301, "/posts/hello")),
        req("/ /home 302", "/").expect(redirect(302, "/home")),
    ]);
}

#[test]
fn absolute_targets() {
    run(vec![
        req("/chat https://chat.example.com/room 301", "/chat")
            .expect(redirect(301, "https://chat.example.com/room")),
        req("/docs/* https://docs.example.com/:splat 302", "/docs/a/b")
            .expect(redirect(302, "https://docs.example.com/a/b")),
        req("/api/* https://api.example.com/v1/:splat 200", "/api/items")
            .expect(proxy("https://api.example.com/v1/items")),
        req("/api/* https://api.example.com:8443/:splat 200!", "/api/x")
            .files(&["/api/x"])
            .expect(proxy("https://api.example.com:8443/x")),
        req("/api/* https://api.example.com/:splat 200", "/api/x").files(&["/api/x"]),
    ]);
}

#[test]
fn comments_blank_lines_and_crlf() {
    let rules = "# comment\n\n   \n/a /b 302\r\n  # indented comment\n/c /d 302\r\n";
    run(vec![
        req(rules, "/a").expect(redirect(302, "/b")),
        req(rules, "/c").expect(redirect(302, "/d")),
    ]);
}

#[test]
fn redirects_file_comes_before_config() {
    let parsed = parse_site(SiteFiles {
        redirects: Some("/a /from-file 302"),
        config: Some("[[redirects]]\nfrom = \"/a\"\nto = \"/from-config\"\nstatus = 302\n\n[[redirects]]\nfrom = \"/b\"\nto = \"/b2\"\n"),
        headers: None,
    })
    .unwrap()
    .seal()
    .unwrap();
    let facts = |path| RequestFacts {
        path,
        ..RequestFacts::default()
    };
    assert_eq!(
        parsed.match_redirect(&facts("/a"), &|_| false),
        redirect(302, "/from-file")
    );
    assert_eq!(
        parsed.match_redirect(&facts("/b"), &|_| false),
        redirect(301, "/b2")
    );
}

#[test]
fn config_redirects_support_query_force_and_conditions() {
    let config = r#"
[[redirects]]
from = "/store"
to = "/products/:id"
query = { id = ":id" }
status = 302

[[redirects]]
from = "/app/*"
to = "/index.html"
status = 200
force = true

[[redirects]]
from = "/"
to = "/fr"
status = 302
conditions = { Country = ["fr", "BE"], Language = ["fr"] }
"#;
    let rules = parse_site(SiteFiles {
        config: Some(config),
        ..SiteFiles::default()
    })
    .unwrap()
    .seal()
    .unwrap();
    let store = RequestFacts {
        path: "/store",
        query: "id=9",
        ..RequestFacts::default()
    };
    assert_eq!(
        rules.match_redirect(&store, &|_| false),
        redirect(302, "/products/9")
    );
    let app = RequestFacts {
        path: "/app/main.js",
        ..RequestFacts::default()
    };
    assert_eq!(
        rules.match_redirect(&app, &|_| true),
        rewrite("/index.html")
    );
    let home = RequestFacts {
        path: "/",
        country: Some("be"),
        accept_language: Some("fr-BE"),
        ..RequestFacts::default()
    };
    assert_eq!(
        rules.match_redirect(&home, &|_| false),
        redirect(302, "/fr")
    );
    let home_us = RequestFacts {
        country: Some("us"),
        ..home
    };
    assert_eq!(rules.match_redirect(&home_us, &|_| false), None);
}

#[test]
fn rules_survive_a_manifest_round_trip() {
    let rules = site("/store id=:id /p/:id 302 Country=us\n/* /index.html 200");
    let json = serde_json::to_string(&rules).unwrap();
    let back: SiteRules = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rules);
    let facts = RequestFacts {
        path: "/store",
        query: "id=1",
        country: Some("US"),
        accept_language: None,
    };
    assert_eq!(
        back.match_redirect(&facts, &|_| false),
        redirect(302, "/p/1")
    );
}

#[test]
fn the_redirects_parser_alone() {
    use skyhost_rules::{redirects, Limits};
    let rules = redirects::parse(
        "# moved\n/old /new 302\n\n/a/* /b/:splat\n",
        &Limits::default(),
    )
    .expect("two valid rules");
    let summary: Vec<(&str, &str, u16, &str)> = rules
        .iter()
        .map(|r| (r.from.as_str(), r.to.as_str(), r.status, r.source.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("/old", "/new", 302, "_redirects:2"),
            ("/a/*", "/b/:splat", 301, "_redirects:4"),
        ]
    );
    let errors = redirects::parse("/ok /fine\n/bad\n", &Limits::default())
        .expect_err("the second line has no target");
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        ["_redirects:2: missing target: a rule is 'from to [status]', e.g. '/old /new 301'"]
    );
}
