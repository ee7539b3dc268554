//! The PNG chart of a run: throughput and p99 against nginx, cold starts, propagation per
//! deploy, and time to first byte with and without latency routing.

use crate::results::Results;
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// The font the labels use (Debian's `fonts-dejavu-core`, which `make bench` installs).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn e<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow!("drawing the chart: {err:?}")
}

/// One bar: a label, a value and a colour.
struct Bar {
    label: String,
    value: f64,
    color: RGBColor,
}

const SKY: RGBColor = RGBColor(31, 119, 180);
const OTHER: RGBColor = RGBColor(255, 127, 14);
const GREY: RGBColor = RGBColor(127, 127, 127);
const BUDGET: RGBColor = RGBColor(214, 39, 40);

fn bars(area: &Area, title: &str, y_desc: &str, bars: &[Bar], budget: Option<f64>) -> Result<()> {
    if bars.is_empty() {
        return blank(area, title);
    }
    let top = bars
        .iter()
        .map(|b| b.value)
        .chain(budget)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        * 1.15;
    let n = bars.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (0..n.saturating_sub(1).max(1)).into_segmented(),
            0.0..top.max(1e-9),
        )
        .map_err(e)?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_desc)
        .x_labels(n)
        .x_label_style(("sans-serif", 12))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(e)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), b.value),
                ],
                b.color.filled(),
            );
            r.set_margin(0, 0, 8, 8);
            r
        }))
        .map_err(e)?;
    if let Some(y) = budget {
        chart
            .draw_series(LineSeries::new(
                [(SegmentValue::Exact(0), y), (SegmentValue::Last, y)],
                BUDGET.stroke_width(2),
            ))
            .map_err(e)?
            .label("budget")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BUDGET.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

fn blank(area: &Area, title: &str) -> Result<()> {
    area.titled(&format!("{title}: not measured"), ("sans-serif", 18))
        .map_err(e)?;
    Ok(())
}

fn propagation(area: &Area, r: &Results) -> Result<()> {
    let Some(p) = &r.propagation else {
        return blank(area, "Propagation");
    };
    let n = p.samples_ms.len().max(1);
    let top = p.samples_ms.iter().copied().fold(1000.0_f64, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Propagation: activation → every region serving",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.5..(n as f64 + 0.5), 0.0..top)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("deploy")
        .y_desc("ms")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new(
            p.samples_ms
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64 + 1.0, *v)),
            SKY.stroke_width(2),
        ))
        .map_err(e)?;
    chart
        .draw_series(
            p.samples_ms
                .iter()
                .enumerate()
                .map(|(i, v)| Circle::new((i as f64 + 1.0, *v), 3, SKY.filled())),
        )
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new(
            [(0.5, 1000.0), (n as f64 + 0.5, 1000.0)],
            BUDGET.stroke_width(2),
        ))
        .map_err(e)?;
    Ok(())
}

/// Draws the chart of `r` into `path` (PNG, 1400×900).
pub fn draw(r: &Results, path: &Path) -> Result<()> {
    let font = std::fs::read(FONT).with_context(|| format!("reading the chart font {FONT}"))?;
    // The font lives as long as the process: plotters keeps a reference to it.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow!("{FONT} is not a usable font"))?;
    let root = BitMapBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let root = root
        .titled(
            &format!("skyhost make bench — {} — {}", r.date, r.machine.cpu),
            ("sans-serif", 20),
        )
        .map_err(e)?;
    let areas = root.split_evenly((2, 2));

    let mut tp = Vec::new();
    if let Some(t) = &r.throughput {
        for f in &t.files {
            tp.push(Bar {
                label: format!("{} req/s", f.label),
                value: f.rps_ratio,
                color: SKY,
            });
            tp.push(Bar {
                label: format!("{} p99", f.label),
                value: f.p99_ratio,
                color: OTHER,
            });
        }
    }
    bars(
        &areas[0],
        "skyhost ÷ nginx (req/s: higher is better; p99: lower)",
        "ratio",
        &tp,
        Some(1.0),
    )?;

    let mut cs = Vec::new();
    if let Some(c) = &r.cold_start {
        for f in &c.functions {
            let label = f
                .name
                .replace("skyhost-", "")
                .replace(" (REDIS_URL set)", "+redis");
            let color = if f.name == "hello-lambda" {
                GREY
            } else if f.budgeted {
                SKY
            } else {
                OTHER
            };
            cs.push(Bar {
                label,
                value: f.median_ms.unwrap_or(0.0),
                color,
            });
        }
    }
    let budget = r
        .cold_start
        .as_ref()
        .and_then(|c| c.functions.first())
        .and_then(|f| f.median_ms)
        .map(|m| m * 1.3);
    bars(
        &areas[1],
        "Cold start: exec → first poll (median)",
        "ms",
        &cs,
        budget,
    )?;

    propagation(&areas[2], r)?;

    let mut lt = Vec::new();
    if let Some(l) = &r.latency {
        lt.push(Bar {
            label: format!("nearest ({})", l.nearest_region),
            value: l.nearest_p50_ms,
            color: SKY,
        });
        lt.push(Bar {
            label: "us-west-2 only".into(),
            value: l.far_p50_ms,
            color: GREY,
        });
    }
    let budget = r.latency.as_ref().map(|l| l.far_p50_ms * 0.4);
    bars(
        &areas[3],
        "TTFB for an eu-central-1 visitor (median)",
        "ms",
        &lt,
        budget,
    )?;
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::sample;

    #[test]
    fn draws_a_png_of_a_full_and_an_empty_run() {
        if !Path::new(FONT).exists() {
            panic!("{FONT} is missing: install fonts-dejavu-core (make bench does)");
        }
        let d = tempfile::tempdir().unwrap();
        for (name, r) in [("full.png", sample()), ("empty.png", Results::default())] {
            let p = d.path().join(name);
            draw(&r, &p).unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
            assert!(bytes.len() > 10_000, "{name}: {} bytes", bytes.len());
        }
    }
}
