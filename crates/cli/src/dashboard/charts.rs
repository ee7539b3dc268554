//! Small SVG line charts of a region's recent counters. Pure.

use super::page::escape;
use std::fmt::Write;

const W: f64 = 220.0;
const H: f64 = 48.0;

/// A chart of `(unix seconds, value)` points titled `title`, the last value written as
/// `last` formats it. Gaps (`None`) break the line.
pub fn line(title: &str, points: &[(i64, Option<f64>)], last: impl Fn(f64) -> String) -> String {
    let mut s = String::new();
    let shown = points
        .iter()
        .rev()
        .find_map(|(_, v)| *v)
        .map_or_else(|| "–".to_owned(), &last);
    let _ = write!(
        s,
        r##"<figure class="chart"><figcaption>{} <b>{}</b></figcaption><svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg"><rect width="{W}" height="{H}" fill="#f8f9fa" stroke="#dee2e6"/>"##,
        escape(title),
        escape(&shown)
    );
    let (Some(t0), Some(t1)) = (points.first().map(|p| p.0), points.last().map(|p| p.0)) else {
        s.push_str(r##"<text x="8" y="28" font-size="11" fill="#868e96">no data yet</text></svg></figure>"##);
        return s;
    };
    let max = points
        .iter()
        .filter_map(|p| p.1)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let span = (t1 - t0).max(1) as f64;
    let mut runs: Vec<Vec<String>> = vec![Vec::new()];
    for (t, v) in points {
        match v {
            Some(v) => {
                let x = (*t - t0) as f64 / span * (W - 4.0) + 2.0;
                let y = H - 3.0 - v / max * (H - 8.0);
                if let Some(run) = runs.last_mut() {
                    run.push(format!("{x:.1},{y:.1}"));
                }
            }
            None => runs.push(Vec::new()),
        }
    }
    for run in runs.iter().filter(|r| !r.is_empty()) {
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#1c7ed6" stroke-width="1.5"/>"##,
            run.join(" ")
        );
    }
    s.push_str("</svg></figure>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_scale_to_the_largest_value_and_break_at_gaps() {
        let c = line(
            "requests/s",
            &[
                (0, Some(0.0)),
                (10, Some(5.0)),
                (20, None),
                (30, Some(10.0)),
            ],
            |v| format!("{v:.1}"),
        );
        assert!(c.contains("requests/s <b>10.0</b>"), "{c}");
        assert_eq!(c.matches("<polyline").count(), 2, "{c}");
        // The largest value touches the top margin, zero the bottom one.
        assert!(c.contains(&format!("{:.1},{:.1}", W - 2.0, 5.0)), "{c}");
        assert!(c.contains(&format!("2.0,{:.1}", H - 3.0)), "{c}");
    }

    #[test]
    fn an_empty_series_says_so() {
        let c = line("5xx/s", &[], |v| v.to_string());
        assert!(c.contains("no data yet") && c.contains("<b>–</b>"), "{c}");
    }
}
