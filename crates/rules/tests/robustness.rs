//! Deterministic mutation testing on the stable toolchain (the cargo-fuzz targets in
//! `fuzz/` go further with coverage on nightly): realistic rule files are mutated many
//! times; parsing and matching must never panic, errors must name real lines, and what
//! matching produces must be safe to put in a response header.

use skyhost_rules::{parse_site, HashParams, RedirectAction, RequestFacts, SiteFiles};

const REDIRECTS: &str = "# comment
/home / 301
/blog/* /news/:splat 302
/news/:year/:slug /articles/:year/:slug
/store id=:id /products/:id 301!
/search q=:q type=video /videos?q=:q 302
/ /zh 302 Language=zh Country=cn,tw
/api/* https://api.example.com/v1/:splat 200
/docs/* https://docs.example.com/:splat#top 301
/gone /gone.html 410
/* /index.html 200
";

const HEADERS: &str = "/*
  X-Frame-Options: DENY
  Cache-Control: public
/assets/*
  Cache-Control: max-age=31536000, immutable
/:lang/docs/*
  Content-Language: x
/private/*
  Basic-Auth: alice:secret bob:pw
";

const PATHS: &[&str] = &[
    "/",
    "/home/",
    "/blog/a b/ü",
    "/news/2024/x%y",
    "/store",
    "/search",
    "/api/a/b",
    "/docs/q?",
    "/gone",
    "/private/x",
    "/fr/docs/a",
    "",
    "//",
    "/a/../b",
];

const QUERIES: &[&str] = &[
    "",
    "id=7",
    "q=a%20b&type=video",
    "id=%ZZ&x",
    "a=é&b=\u{1}",
    "&&=&",
];

/// Characters that matter to the grammars, plus some that must be rejected.
const ALPHABET: &[char] = &[
    '/', ':', '*', '!', '?', '=', '#', '%', ',', ' ', '\t', '\r', '\n', '-', '_', '.', '0', '1',
    '3', '4', 'a', 'z', 'A', 'Z', '\u{0}', '\u{7f}', 'é', '"', '$', '[', ']', '{', '}', '\\',
];

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(4) {
            0 => chars.insert(at.min(chars.len()), ALPHABET[rng.below(ALPHABET.len())]),
            1 if !chars.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(chars.len());
                chars.drain(at.min(chars.len())..end);
            }
            2 if !chars.is_empty() => {
                let start = rng.below(chars.len());
                let end = (start + 1 + rng.below(16)).min(chars.len());
                let piece: Vec<char> = chars[start..end].to_vec();
                let at = at.min(chars.len());
                chars.splice(at..at, piece);
            }
            _ => {
                if let Some(c) = chars.get_mut(at) {
                    *c = ALPHABET[rng.below(ALPHABET.len())];
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn header_safe(text: &str) -> bool {
    text.bytes().all(|b| (0x21..0x7f).contains(&b))
}

fn header_value_ok(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

#[test]
fn mutated_files_never_panic_and_outputs_stay_safe() {
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let params = HashParams::new(8, 1, 1, None).unwrap();
    let mut accepted = 0;
    for round in 0..3000 {
        // One file mutated per round, so many rounds still parse and reach matching.
        let (redirects, headers) = if round % 2 == 0 {
            (mutate(&mut rng, REDIRECTS), HEADERS.to_string())
        } else {
            (REDIRECTS.to_string(), mutate(&mut rng, HEADERS))
        };
        let files = SiteFiles {
            redirects: Some(&redirects),
            headers: Some(&headers),
            config: None,
        };
        let rules = match parse_site(files) {
            Ok(parsed) => parsed.seal_with(params.clone()).unwrap(),
            Err(errors) => {
                assert!(!errors.is_empty());
                for e in &errors {
                    let lines = match e.file.as_str() {
                        "_redirects" => redirects.split('\n').count(),
                        _ => headers.split('\n').count(),
                    };
                    assert!(e.line >= 1 && e.line <= lines, "round {round}: {e}");
                    assert!(!e.reason.is_empty());
                }
                continue;
            }
        };
        accepted += 1;
        for (i, path) in PATHS.iter().enumerate() {
            let facts = RequestFacts {
                path,
                query: QUERIES[(round + i) % QUERIES.len()],
                country: Some(["CN", "tw", "", "zz"][i % 4]),
                accept_language: Some(["zh-TW", "en;q=0", "", "*"][i % 4]),
            };
            match rules.match_redirect(&facts, &|p| p.len() % 3 == 0) {
                Some(RedirectAction::Redirect { location, .. }) => {
                    assert!(header_safe(&location), "round {round}: {location:?}")
                }
                Some(RedirectAction::Proxy { url }) => {
                    assert!(header_safe(&url), "round {round}: {url:?}")
                }
                _ => {}
            }
            for (name, value) in rules.headers_for(path) {
                assert!(
                    header_safe(&name) && header_value_ok(&value),
                    "{name}: {value:?}"
                );
            }
        }
    }
    // The mutations are small enough that a fair share of files stay valid, so matching
    // is exercised too.
    assert!(accepted > 600, "only {accepted} mutated files parsed");
}

#[test]
fn mutated_config_never_panics() {
    let config = "trailing_slash = \"always\"\nspa_fallback = \"/index.html\"\n\n[[redirects]]\nfrom = \"/a/*\"\nto = \"/b/:splat\"\nstatus = 302\nquery = { id = \":id\" }\nconditions = { Country = [\"us\"] }\n\n[[headers]]\nfor = \"/*\"\n[headers.values]\nX-A = \"b\"\n\n[auth]\nrealm = \"R\"\n[[auth.rules]]\npath = \"/p/*\"\nusers = [\"a:b\"]\n\n[proxy]\nallowlist = [\"127.0.0.1\"]\n";
    let mut rng = Rng(0x0dd_ba11);
    for _ in 0..3000 {
        let text = mutate(&mut rng, config);
        if let Err(errors) = parse_site(SiteFiles {
            config: Some(&text),
            ..SiteFiles::default()
        }) {
            let lines = text.split('\n').count();
            for e in errors {
                assert!(e.line >= 1 && e.line <= lines, "{e}");
            }
        }
    }
}
