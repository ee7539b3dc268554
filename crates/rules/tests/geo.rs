//! `[geo]`: the decision for a visitor, and the validation of `skyhost.toml` at deploy.

use skyhost_rules::{parse_site, CountryList, GeoDecision, GeoRule, SiteFiles};

fn rule(countries: CountryList) -> GeoRule {
    GeoRule {
        countries,
        page: None,
    }
}

fn codes(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| c.to_string()).collect()
}

#[test]
fn decision_table() {
    use GeoDecision::{Refuse, Serve};
    let allow = rule(CountryList::Allow(codes(&["DE", "FR"])));
    let deny = rule(CountryList::Deny(codes(&["RU", "KP"])));
    // A hand-built list may hold entries that are no alpha-2 code: they match nothing.
    let odd = rule(CountryList::Allow(codes(&["D1", "DEU"])));
    let cases: Vec<(&GeoRule, Option<&str>, GeoDecision)> = vec![
        (&allow, Some("DE"), Serve),
        (&allow, Some("FR"), Serve),
        (&allow, Some("fr"), Serve),
        (&allow, Some(" DE "), Serve),
        (&allow, Some("US"), Refuse),
        // Unknown country: an allow list refuses it.
        (&allow, None, Refuse),
        (&allow, Some(""), Refuse),
        (&allow, Some("DEU"), Refuse),
        (&allow, Some("D1"), Refuse),
        (&deny, Some("RU"), Refuse),
        (&deny, Some("kp"), Refuse),
        (&deny, Some("DE"), Serve),
        // Unknown country: a deny list serves it.
        (&deny, None, Serve),
        (&deny, Some("XX1"), Serve),
        (&deny, Some(""), Serve),
        (&odd, Some("D1"), Refuse),
        (&odd, Some("DEU"), Refuse),
    ];
    for (rule, country, want) in cases {
        assert_eq!(
            rule.decide(country),
            want,
            "{:?} for {country:?}",
            rule.countries
        );
    }
}

fn geo_of(text: &str) -> Result<Option<GeoRule>, Vec<String>> {
    parse_site(SiteFiles {
        config: Some(text),
        ..SiteFiles::default()
    })
    .map(|site| site.geo)
    .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

#[test]
fn config_table() {
    let ok: Vec<(&str, Option<GeoRule>)> = vec![
        ("pretty_urls = true", None),
        (
            "[geo]\nallow = [\"de\", \"FR\", \"DE\"]",
            Some(rule(CountryList::Allow(codes(&["DE", "FR"])))),
        ),
        (
            "[geo]\ndeny = [\"RU\"]\npage = \"/unavailable.html\"",
            Some(GeoRule {
                countries: CountryList::Deny(codes(&["RU"])),
                page: Some("/unavailable.html".to_string()),
            }),
        ),
    ];
    for (text, want) in ok {
        assert_eq!(geo_of(text), Ok(want), "{text}");
    }
}

#[test]
fn config_errors_name_the_line() {
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "pretty_urls = true\n[geo]\nallow = [\n  \"DE\",\n  \"ZZ\",\n]",
            vec!["skyhost.toml:5: 'ZZ' is not an ISO 3166-1 alpha-2 country code"],
        ),
        (
            "[geo]\ndeny = [\"DEU\", \"Germany\"]",
            vec![
                "skyhost.toml:2: 'DEU' is not an ISO 3166-1",
                "skyhost.toml:2: 'Germany' is not an ISO 3166-1",
            ],
        ),
        (
            "\n[geo]\nallow = [\"DE\"]\ndeny = [\"FR\"]",
            vec!["skyhost.toml:2: [geo] takes either allow or deny, not both"],
        ),
        (
            "[geo]\npage = \"/x.html\"",
            vec!["skyhost.toml:1: [geo] needs allow = [...] or deny = [...]"],
        ),
        (
            "[geo]\nallow = []",
            vec!["skyhost.toml:1: [geo] allow lists no country"],
        ),
        (
            "[geo]\ndeny = [\"RU\"]\npage = \"unavailable.html\"",
            vec!["skyhost.toml:3: [geo] page must be a path starting with '/'"],
        ),
        (
            "[geo]\ndeny = [\"RU\"]\ncountries = [\"FR\"]",
            vec!["skyhost.toml:3: unknown field `countries`"],
        ),
    ];
    for (text, want) in cases {
        let got = geo_of(text).expect_err(text);
        assert_eq!(got.len(), want.len(), "{text}: {got:?}");
        for (got, want) in got.iter().zip(want) {
            assert!(got.starts_with(want), "{text}: got {got:?}, want {want:?}");
        }
    }
}

#[test]
fn stored_rules_round_trip_through_json() {
    let site = parse_site(SiteFiles {
        config: Some("[geo]\nallow = [\"CH\"]\npage = \"/geo.html\""),
        ..SiteFiles::default()
    })
    .expect("valid config")
    .seal()
    .expect("no auth to hash");
    let json = serde_json::to_string(&site).expect("serializable");
    let back: skyhost_rules::SiteRules = serde_json::from_str(&json).expect("readable");
    assert_eq!(back.geo, site.geo);
    assert_eq!(
        back.geo.map(|g| g.countries),
        Some(CountryList::Allow(codes(&["CH"])))
    );
    // A manifest written before `[geo]` existed reads as unrestricted.
    let old: skyhost_rules::SiteRules = serde_json::from_str("{}").expect("readable");
    assert_eq!(old.geo, None);
}
