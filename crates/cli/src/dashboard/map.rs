//! The world map: an SVG drawn here, coarse continents in an equirectangular projection,
//! each region a dot at its place coloured by health, and from a region that does not take
//! visitors a dashed arrow to where they go instead. Pure.

use super::model::{Health, RegionState};
use super::page::escape;
use std::fmt::Write;

/// The map's size in SVG units.
pub const WIDTH: f64 = 1000.0;
/// Latitudes shown: from 84° N to 60° S.
const NORTH: f64 = 84.0;
const SOUTH: f64 = -60.0;
/// Height that keeps degrees square.
pub const HEIGHT: f64 = WIDTH * (NORTH - SOUTH) / 360.0;

/// Coarse continent outlines, (longitude, latitude).
const LAND: &[&[(i16, i16)]] = &[
    // North America
    &[
        (-168, 66),
        (-140, 70),
        (-95, 72),
        (-80, 68),
        (-62, 60),
        (-55, 50),
        (-66, 44),
        (-76, 35),
        (-81, 25),
        (-90, 29),
        (-97, 26),
        (-97, 20),
        (-88, 15),
        (-83, 9),
        (-79, 8),
        (-92, 14),
        (-105, 20),
        (-112, 30),
        (-118, 34),
        (-124, 40),
        (-124, 48),
        (-132, 55),
        (-150, 60),
        (-165, 60),
    ],
    // Greenland
    &[
        (-55, 60),
        (-42, 60),
        (-20, 70),
        (-18, 80),
        (-40, 83),
        (-65, 80),
        (-58, 70),
    ],
    // South America
    &[
        (-79, 8),
        (-60, 10),
        (-50, 0),
        (-35, -6),
        (-40, -22),
        (-48, -28),
        (-58, -38),
        (-65, -55),
        (-72, -50),
        (-72, -30),
        (-70, -18),
        (-81, -5),
        (-78, 2),
    ],
    // Europe
    &[
        (-10, 36),
        (-9, 43),
        (-2, 44),
        (-5, 48),
        (2, 51),
        (8, 54),
        (10, 58),
        (5, 62),
        (15, 69),
        (28, 71),
        (40, 67),
        (32, 60),
        (30, 46),
        (26, 40),
        (20, 40),
        (16, 38),
        (12, 44),
        (8, 44),
        (3, 43),
        (-5, 36),
    ],
    // Britain and Ireland
    &[(-10, 52), (-6, 55), (-5, 58), (-2, 58), (1, 52), (-5, 50)],
    // Africa
    &[
        (-17, 21),
        (-16, 12),
        (-8, 4),
        (5, 4),
        (10, 3),
        (9, -1),
        (13, -10),
        (12, -17),
        (18, -34),
        (26, -34),
        (33, -26),
        (40, -15),
        (40, -4),
        (51, 12),
        (43, 12),
        (32, 31),
        (20, 32),
        (10, 37),
        (-6, 36),
        (-10, 30),
    ],
    // Asia
    &[
        (28, 41),
        (36, 36),
        (35, 31),
        (43, 13),
        (52, 16),
        (57, 24),
        (50, 30),
        (62, 25),
        (67, 24),
        (73, 20),
        (77, 8),
        (80, 15),
        (88, 22),
        (92, 22),
        (98, 16),
        (100, 8),
        (103, 1),
        (105, 10),
        (109, 12),
        (108, 21),
        (117, 23),
        (122, 30),
        (121, 40),
        (127, 35),
        (129, 42),
        (135, 43),
        (142, 47),
        (140, 55),
        (160, 60),
        (170, 65),
        (180, 68),
        (180, 72),
        (140, 73),
        (110, 77),
        (80, 73),
        (60, 70),
        (40, 67),
        (32, 60),
        (30, 46),
    ],
    // Japan
    &[
        (130, 31),
        (135, 33),
        (140, 35),
        (142, 40),
        (141, 45),
        (145, 44),
        (140, 41),
        (136, 37),
        (132, 35),
    ],
    // Sumatra, Borneo
    &[(95, 5), (106, -6), (104, -6), (98, 0)],
    &[(109, 2), (117, 7), (119, 1), (116, -4), (110, -3)],
    // Australia
    &[
        (114, -22),
        (122, -18),
        (130, -12),
        (137, -12),
        (142, -10),
        (146, -19),
        (153, -26),
        (151, -34),
        (146, -39),
        (138, -35),
        (131, -32),
        (115, -34),
    ],
];

/// Map coordinates of a latitude and longitude.
pub fn project(lat: f64, lon: f64) -> (f64, f64) {
    let x = (lon + 180.0) / 360.0 * WIDTH;
    let y = (NORTH - lat.clamp(SOUTH, NORTH)) / (NORTH - SOUTH) * HEIGHT;
    (x, y)
}

/// The fill of a region's dot.
pub fn colour(h: Health) -> &'static str {
    match h {
        Health::Healthy => "#2e9d57",
        Health::Maintenance => "#e0a100",
        Health::Impaired => "#d9480f",
        Health::Outage => "#c92a2a",
        Health::Unknown => "#868e96",
    }
}

/// The map of `regions` (primary named by `primary`) as an SVG element.
pub fn svg(regions: &[RegionState], primary: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg id="map" viewBox="0 0 {WIDTH} {HEIGHT:.0}" role="img" aria-label="regions on a world map" xmlns="http://www.w3.org/2000/svg"><rect width="{WIDTH}" height="{HEIGHT:.0}" fill="#e7f1fa"/><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#495057"/></marker></defs>"##
    );
    for shape in LAND {
        let points: Vec<String> = shape
            .iter()
            .map(|&(lon, lat)| {
                let (x, y) = project(f64::from(lat), f64::from(lon));
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            s,
            r##"<polygon points="{}" fill="#cfd8cf" stroke="#aab5aa" stroke-width="1"/>"##,
            points.join(" ")
        );
    }
    let at = |r: &str| super::geo::place(r).map(|(lat, lon)| project(lat, lon));
    for r in regions {
        let (Some(to), Some((x1, y1))) = (&r.visitors_go, at(&r.region)) else {
            continue;
        };
        let Some((x2, y2)) = at(to) else { continue };
        // A curve above the straight line, so arrows both ways stay apart.
        let (mx, my) = (
            (x1 + x2) / 2.0,
            (y1 + y2) / 2.0 - (x2 - x1).abs() / 6.0 - 20.0,
        );
        let _ = write!(
            s,
            r##"<path class="diverted" data-from="{}" data-to="{}" d="M{x1:.1},{y1:.1} Q{mx:.1},{my:.1} {x2:.1},{y2:.1}" fill="none" stroke="#495057" stroke-width="2" stroke-dasharray="6 4" marker-end="url(#arrow)"/>"##,
            escape(&r.region),
            escape(to)
        );
    }
    for (i, r) in regions.iter().enumerate() {
        // A region the table does not place sits in a row under the map, not at 0°, 0°.
        let (x, y) = at(&r.region).unwrap_or((30.0 + 120.0 * i as f64, HEIGHT - 14.0));
        let ring = if r.region == primary {
            r##" stroke="#212529" stroke-width="3""##
        } else {
            r##" stroke="#ffffff" stroke-width="2""##
        };
        let label = match &r.visitors_go {
            Some(to) if !r.health.takes_visitors() => {
                format!("{} ({}: visitors to {})", r.region, r.health.as_str(), to)
            }
            _ => format!("{} ({})", r.region, r.health.as_str()),
        };
        let _ = write!(
            s,
            r##"<g class="region {health}" data-region="{name}" data-health="{health}"><circle cx="{x:.1}" cy="{y:.1}" r="9" fill="{fill}"{ring}/><text x="{tx:.1}" y="{ty:.1}" font-size="14" font-family="sans-serif" fill="#212529">{text}</text></g>"##,
            health = r.health.as_str(),
            name = escape(&r.region),
            fill = colour(r.health),
            tx = x + 13.0,
            ty = y + 5.0,
            text = escape(&label),
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_corners() {
        let cases = [
            ((84.0, -180.0), (0.0, 0.0)),
            ((-60.0, 180.0), (WIDTH, HEIGHT)),
            ((12.0, 0.0), (WIDTH / 2.0, HEIGHT / 2.0)),
            ((-89.0, 0.0), (WIDTH / 2.0, HEIGHT)),
        ];
        for ((lat, lon), (x, y)) in cases {
            let (gx, gy) = project(lat, lon);
            assert!(
                (gx - x).abs() < 1e-9 && (gy - y).abs() < 1e-9,
                "{lat},{lon}: {gx},{gy}"
            );
        }
    }

    fn region(name: &str, health: Health, to: Option<&str>) -> RegionState {
        RegionState {
            region: name.into(),
            health,
            visitors_go: to.map(str::to_owned),
            series: Vec::new(),
        }
    }

    #[test]
    fn regions_sit_at_their_places_with_their_health_and_diversions() {
        let map = svg(
            &[
                region("us-west-2", Health::Healthy, None),
                region("eu-central-1", Health::Outage, Some("us-west-2")),
                region("mars-1", Health::Unknown, None),
            ],
            "us-west-2",
        );
        let (x, y) = project(50.1, 8.7);
        assert!(
            map.contains(&format!(r#"cx="{x:.1}" cy="{y:.1}""#)),
            "{map}"
        );
        assert!(map.contains(r#"data-region="eu-central-1" data-health="outage""#));
        assert!(map.contains("eu-central-1 (outage: visitors to us-west-2)"));
        assert!(map.contains(r#"class="diverted" data-from="eu-central-1" data-to="us-west-2""#));
        assert_eq!(map.matches("class=\"diverted\"").count(), 1);
        assert!(map.contains(r#"data-region="mars-1""#));
        assert_eq!(map.matches("<polygon").count(), LAND.len());
    }
}
