//! Reading Prometheus' text exposition format, as local mode's origins and edge router
//! write it ([`skyhost_origin::counters`]): one sample per line, `# ` lines skipped. Pure.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// Every sample of `text`.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason| ParseError {
            line: i + 1,
            reason,
        };
        let (series, value) = line.rsplit_once(' ').ok_or(err("no value"))?;
        let value: f64 = value
            .parse()
            .map_err(|_| err("the value is not a number"))?;
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').ok_or(err("unclosed labels"))?;
                (name, labels_of(body).ok_or(err("malformed labels"))?)
            }
        };
        if name.is_empty() {
            return Err(err("no metric name"));
        }
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// `a="x",b="y \"q\""` as a map; `None` when malformed.
fn labels_of(body: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (at, c) = chars.next()?;
            match c {
                '"' => break at,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    Some(labels)
}

/// The value of the sample `name` whose labels include every pair of `with`.
pub fn value(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_labels() {
        let text = "# HELP x y\n# TYPE x counter\nx 3\n\
                    skyhost_cache_total{region=\"us-west-2\",outcome=\"hit\"} 7\n\
                    q{a=\"sl\\\\ash \\\"quoted\\\" \\n\"} 1.5\n";
        let got = parse(text).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(value(&got, "x", &[]), Some(3.0));
        assert_eq!(
            value(&got, "skyhost_cache_total", &[("outcome", "hit")]),
            Some(7.0)
        );
        assert_eq!(
            value(&got, "skyhost_cache_total", &[("outcome", "miss")]),
            None
        );
        assert_eq!(got[2].labels["a"], "sl\\ash \"quoted\" \n");
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let cases = [
            ("x", 1, "no value"),
            ("ok 1\nx{a=\"b\" 2", 2, "unclosed labels"),
            ("x{a=b} 2", 1, "malformed labels"),
            ("x two", 1, "the value is not a number"),
            ("{a=\"b\"} 1", 1, "no metric name"),
        ];
        for (text, line, reason) in cases {
            assert_eq!(parse(text), Err(ParseError { line, reason }), "{text}");
        }
    }

    #[test]
    fn the_origin_exposition_reads_back() {
        let s = skyhost_origin::counters::Snapshot {
            requests: 9,
            hit: 5,
            miss: 3,
            fallback: 1,
            server_errors: 2,
            health_failures: 0,
        };
        let got = parse(&skyhost_origin::counters::prometheus("eu-central-1", &s)).unwrap();
        let r = ("region", "eu-central-1");
        assert_eq!(value(&got, "skyhost_requests_total", &[r]), Some(9.0));
        assert_eq!(
            value(&got, "skyhost_cache_total", &[r, ("outcome", "fallback")]),
            Some(1.0)
        );
        assert_eq!(value(&got, "skyhost_server_errors_total", &[r]), Some(2.0));
    }
}
