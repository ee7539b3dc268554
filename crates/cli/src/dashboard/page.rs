//! The dashboard page: the whole view rendered on the server, so it reads without script,
//! and a few lines of script that fetch the live part again every [`REFRESH_MS`]. Pure.

use super::model::{Point, View};
use super::{charts, map};
use std::fmt::Write;

/// How often the page fetches the live part again.
pub const REFRESH_MS: u64 = 2000;

/// `s` safe inside HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:16px;color:#212529;background:#fff}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 6px}\
.meta{color:#868e96;font-size:12px}#map{width:100%;max-width:1000px;border:1px solid #dee2e6}\
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 10px;border-bottom:1px solid #e9ecef;text-align:left}\
.healthy{color:#2e9d57}.maintenance{color:#b07d00}.impaired{color:#d9480f}.outage{color:#c92a2a}.unknown{color:#868e96}\
.behind{color:#c92a2a;font-weight:600}.current{color:#2e9d57}\
.charts{display:flex;flex-wrap:wrap;gap:8px}.chart{margin:0}.chart figcaption{font-size:12px}\
.problems{color:#d9480f;font-size:12px}";

/// The whole page.
pub fn page(view: &View) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>skyhost dashboard</title>\
<style>{STYLE}</style></head><body><h1>skyhost</h1><div id=\"live\">{}</div>\
<script>setInterval(async()=>{{try{{const r=await fetch('/fragment',{{cache:'no-store'}});\
if(r.ok)document.getElementById('live').innerHTML=await r.text();}}catch(e){{}}}},{REFRESH_MS});</script>\
</body></html>",
        fragment(view)
    )
}

fn ms(v: i64) -> String {
    if v < 1000 {
        format!("{v} ms")
    } else {
        format!("{:.1} s", v as f64 / 1000.0)
    }
}

/// The live part: everything under the title.
pub fn fragment(view: &View) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<p class=\"meta\">{} · primary {} · updated <time data-at=\"{}\">{}</time></p>",
        escape(&view.source),
        escape(&view.primary),
        view.at,
        httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(view.at.max(0) as u64)
        )
    );
    if !view.problems.is_empty() {
        s.push_str("<ul class=\"problems\">");
        for p in &view.problems {
            let _ = write!(s, "<li>{}</li>", escape(p));
        }
        s.push_str("</ul>");
    }
    s.push_str(&map::svg(&view.regions, &view.primary));

    s.push_str("<h2>Regions</h2><table id=\"regions\"><tr><th>region</th><th>health</th><th>visitors</th></tr>");
    for r in &view.regions {
        let visitors = match (&r.visitors_go, r.health.takes_visitors()) {
            (_, true) => "served here".to_owned(),
            (Some(to), false) => format!("go to {to}"),
            (None, false) => "no region takes them".to_owned(),
        };
        let _ =
            write!(
            s,
            "<tr data-region=\"{0}\"><td>{0}{1}</td><td class=\"{2}\">{2}</td><td>{3}</td></tr>",
            escape(&r.region),
            if r.region == view.primary { " (primary)" } else { "" },
            r.health.as_str(),
            escape(&visitors)
        );
    }
    s.push_str("</table>");

    s.push_str("<h2>Sites</h2>");
    if view.sites.is_empty() {
        s.push_str("<p>no sites yet</p>");
    }
    for site in &view.sites {
        let _ = write!(
            s,
            "<table class=\"site\" data-site=\"{0}\"><caption>{0}: live {1} (revision {2})</caption>\
<tr><th>region</th><th>revision</th><th>serving</th><th></th></tr>",
            escape(&site.site),
            escape(site.live.as_deref().unwrap_or("nothing")),
            site.revision
        );
        for r in &site.regions {
            let (class, note) = match r.behind {
                Some(0) => ("current", "current".to_owned()),
                Some(n) => ("behind", format!("{n} behind")),
                None => ("unknown", "no answer".to_owned()),
            };
            let _ = write!(
                s,
                "<tr data-region=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>",
                escape(&r.region),
                escape(&r.region),
                r.revision.map_or("–".to_owned(), |v| v.to_string()),
                escape(r.deployment.as_deref().unwrap_or("–")),
                escape(&note)
            );
        }
        s.push_str("</table>");
    }

    s.push_str("<h2>Last deploys</h2><table id=\"deploys\"><tr><th>site</th><th>deployment</th>");
    for r in &view.regions {
        let _ = write!(s, "<th>{}</th>", escape(&r.region));
    }
    s.push_str("</tr>");
    for d in &view.deploys {
        let _ = write!(
            s,
            "<tr data-deployment=\"{1}\"><td>{0}</td><td>{1}</td>",
            escape(&d.site),
            escape(&d.deployment)
        );
        for r in &view.regions {
            let cell = match d.reached_ms.get(&r.region) {
                _ if !d.watched => "before the dashboard".to_owned(),
                Some(Some(v)) => ms(*v),
                _ => "not yet".to_owned(),
            };
            let _ = write!(s, "<td>{}</td>", escape(&cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");

    s.push_str("<h2>Traffic</h2><div id=\"traffic\">");
    for r in &view.regions {
        let _ = write!(
            s,
            "<div class=\"traffic\" data-region=\"{0}\"><b>{0}</b><div class=\"charts\">",
            escape(&r.region)
        );
        let pick = |f: fn(&Point) -> Option<f64>| -> Vec<(i64, Option<f64>)> {
            r.series.iter().map(|p| (p.t, f(p))).collect()
        };
        s.push_str(&charts::line("requests/s", &pick(|p| Some(p.rps)), |v| {
            format!("{v:.1}")
        }));
        s.push_str(&charts::line("cache hits", &pick(|p| p.hit_ratio), |v| {
            format!("{:.0} %", v * 100.0)
        }));
        s.push_str(&charts::line(
            "fallback/s",
            &pick(|p| Some(p.fallback)),
            |v| format!("{v:.2}"),
        ));
        s.push_str(&charts::line("5xx/s", &pick(|p| Some(p.errors)), |v| {
            format!("{v:.2}")
        }));
        s.push_str("</div></div>");
    }
    s.push_str("</div>");
    s
}

#[cfg(test)]
mod tests {
    use super::super::model::*;
    use super::*;
    use std::collections::BTreeMap;

    fn view() -> View {
        let region = |name: &str, health, to: Option<&str>| RegionState {
            region: name.into(),
            health,
            visitors_go: to.map(str::to_owned),
            series: vec![Point {
                t: 1,
                rps: 3.0,
                hit_ratio: Some(0.5),
                fallback: 0.0,
                errors: 0.0,
            }],
        };
        View {
            source: "local mode <x>".into(),
            at: 1_700_000_000,
            primary: "us-west-2".into(),
            regions: vec![
                region("us-west-2", Health::Healthy, None),
                region("eu-central-1", Health::Outage, Some("us-west-2")),
            ],
            sites: vec![site_state(&SiteReading {
                site: "demo".into(),
                live: Some("D2".into()),
                revision: 4,
                regions: vec![
                    Answered {
                        region: "us-west-2".into(),
                        deployment: Some("D2".into()),
                        revision: Some(4),
                    },
                    Answered {
                        region: "eu-central-1".into(),
                        deployment: Some("D1".into()),
                        revision: Some(3),
                    },
                ],
            })],
            deploys: vec![Deploy {
                site: "demo".into(),
                deployment: "D2".into(),
                revision: 4,
                at_ms: 0,
                reached_ms: BTreeMap::from([
                    ("us-west-2".to_owned(), Some(420)),
                    ("eu-central-1".to_owned(), None),
                ]),
                watched: true,
            }],
            problems: vec![],
        }
    }

    #[test]
    fn the_page_shows_health_lag_deploy_times_and_charts() {
        let p = page(&view());
        for want in [
            "local mode &lt;x&gt;",
            "<td class=\"outage\">outage</td><td>go to us-west-2</td>",
            "demo: live D2 (revision 4)",
            "<td class=\"behind\">1 behind</td>",
            "<td class=\"current\">current</td>",
            "<td>420 ms</td><td>not yet</td>",
            "requests/s <b>3.0</b>",
            "cache hits <b>50 %</b>",
            "fetch('/fragment'",
        ] {
            assert!(p.contains(want), "{want} not in the page");
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
