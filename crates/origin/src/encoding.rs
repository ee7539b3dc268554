//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3) among the precompressed variants a
//! file has. Pure.
//!
//! The highest q-value wins; between equal q-values brotli is preferred to gzip, and a
//! compressed variant to the identity body unless the client ranks `identity` higher.

use skyhost_meta::Encoding;

/// Server preference among codings, best first.
const PREFERENCE: [Encoding; 2] = [Encoding::Br, Encoding::Gzip];

/// One parsed `coding;q=x` item; q in thousandths.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    coding: String,
    q: u16,
}

/// Parses a q-value (`0`, `0.5`, `1.000`); `None` when malformed.
fn qvalue(s: &str) -> Option<u16> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

fn parse(header: &str) -> Vec<Item> {
    header
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let coding = pieces.next()?.trim().to_ascii_lowercase();
            if coding.is_empty() {
                return None;
            }
            let mut q = 1000;
            for p in pieces {
                let (k, v) = p.split_once('=')?;
                if k.trim().eq_ignore_ascii_case("q") {
                    q = qvalue(v)?;
                }
            }
            let coding = match coding.as_str() {
                "x-gzip" => "gzip".to_owned(),
                _ => coding,
            };
            Some(Item { coding, q })
        })
        .collect()
}

/// The variant to serve for an `Accept-Encoding` value, among those available;
/// `None` means the identity body.
pub fn negotiate(accept: Option<&str>, available: &[Encoding]) -> Option<Encoding> {
    let items = parse(accept?);
    let q_of = |name: &str| -> Option<u16> {
        items
            .iter()
            .find(|i| i.coding == name)
            .or_else(|| items.iter().find(|i| i.coding == "*"))
            .map(|i| i.q)
    };
    let mut best: Option<(Encoding, u16)> = None;
    for enc in PREFERENCE {
        if !available.contains(&enc) {
            continue;
        }
        let q = q_of(enc.token()).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((enc, q));
        }
    }
    let (enc, q) = best?;
    // Identity competes only when the client ranks it explicitly.
    match items.iter().find(|i| i.coding == "identity") {
        Some(id) if id.q > q => None,
        _ => Some(enc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::{Br, Gzip};

    #[test]
    fn qvalues() {
        let cases = [
            ("1", Some(1000)),
            ("1.0", Some(1000)),
            ("1.000", Some(1000)),
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.001", Some(1)),
            (" 0.25 ", Some(250)),
            ("1.5", None),
            ("2", None),
            ("0.0001", None),
            ("abc", None),
            ("-1", None),
        ];
        for (s, want) in cases {
            assert_eq!(qvalue(s), want, "{s:?}");
        }
    }

    #[test]
    fn negotiation_table() {
        let both = [Br, Gzip];
        let gz = [Gzip];
        let none: [Encoding; 0] = [];
        let cases: &[(Option<&str>, &[Encoding], Option<Encoding>)] = &[
            (None, &both, None),
            (Some(""), &both, None),
            (Some("br, gzip"), &both, Some(Br)),
            (Some("gzip, deflate, br"), &both, Some(Br)),
            (Some("gzip"), &both, Some(Gzip)),
            (Some("GZIP"), &both, Some(Gzip)),
            (Some("x-gzip"), &both, Some(Gzip)),
            (Some("br"), &gz, None),
            (Some("br, gzip"), &gz, Some(Gzip)),
            (Some("br, gzip"), &none, None),
            (Some("gzip;q=1.0, br;q=0.5"), &both, Some(Gzip)),
            (Some("br;q=0.8, gzip;q=0.8"), &both, Some(Br)),
            (Some("br;q=0, gzip"), &both, Some(Gzip)),
            (Some("br;q=0, gzip;q=0"), &both, None),
            (Some("*"), &both, Some(Br)),
            (Some("*;q=0.5, br;q=0"), &both, Some(Gzip)),
            (Some("*;q=0"), &both, None),
            (Some("identity"), &both, None),
            (Some("gzip;q=0.5, identity"), &both, None),
            (Some("gzip, identity;q=0.5"), &both, Some(Gzip)),
            (Some("gzip, identity;q=0"), &both, Some(Gzip)),
            // A tie with identity goes to the coded variant.
            (Some("gzip;q=0.5, identity;q=0.5"), &both, Some(Gzip)),
            (Some("br, identity"), &both, Some(Br)),
            (Some("deflate, zstd"), &both, None),
            // A malformed q-value drops that item only.
            (Some("br;q=2, gzip"), &both, Some(Gzip)),
            (Some("br; q=0.9 , gzip; q=0.8"), &both, Some(Br)),
            (Some(" , ,br"), &both, Some(Br)),
        ];
        for (h, avail, want) in cases {
            assert_eq!(negotiate(*h, avail), *want, "{h:?} {avail:?}");
        }
    }
}
