//! Where the regions are: their places on the map, and where a region's visitors go when
//! it does not take them. Pure.

/// AWS regions and the city each is in (latitude, longitude).
const PLACES: &[(&str, f64, f64)] = &[
    ("us-east-1", 38.9, -77.4),
    ("us-east-2", 40.0, -83.0),
    ("us-west-1", 37.4, -122.0),
    ("us-west-2", 45.8, -119.7),
    ("ca-central-1", 45.5, -73.6),
    ("sa-east-1", -23.5, -46.6),
    ("eu-west-1", 53.3, -6.3),
    ("eu-west-2", 51.5, -0.1),
    ("eu-west-3", 48.9, 2.4),
    ("eu-central-1", 50.1, 8.7),
    ("eu-north-1", 59.3, 18.1),
    ("eu-south-1", 45.5, 9.2),
    ("me-south-1", 26.1, 50.6),
    ("af-south-1", -33.9, 18.4),
    ("ap-south-1", 19.1, 72.9),
    ("ap-east-1", 22.3, 114.2),
    ("ap-southeast-1", 1.35, 103.8),
    ("ap-southeast-2", -33.9, 151.2),
    ("ap-northeast-1", 35.7, 139.7),
    ("ap-northeast-2", 37.6, 127.0),
    ("ap-northeast-3", 34.7, 135.5),
];

/// A region's latitude and longitude, when known.
pub fn place(region: &str) -> Option<(f64, f64)> {
    PLACES
        .iter()
        .find(|(r, _, _)| *r == region)
        .map(|(_, lat, lon)| (*lat, *lon))
}

/// Great-circle distance in km between two places (`None` when either is unknown).
fn km(a: &str, b: &str) -> Option<f64> {
    let ((la1, lo1), (la2, lo2)) = (place(a)?, place(b)?);
    let (p1, p2) = (la1.to_radians(), la2.to_radians());
    let dp = p2 - p1;
    let dl = (lo2 - lo1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    Some(2.0 * 6371.0 * h.sqrt().asin())
}

/// Where the visitors of `region` go when it does not take them: the nearest of the
/// regions `takes` says are taking visitors, by the latency table the local edge router
/// routes with ([`crate::local::latency`]), then by distance. `None` when none is.
pub fn visitors_go<'a>(
    region: &str,
    regions: &'a [String],
    takes: impl Fn(&str) -> bool,
) -> Option<&'a str> {
    regions
        .iter()
        .filter(|r| r.as_str() != region && takes(r))
        .min_by(|a, b| {
            let key = |r: &str| {
                (
                    crate::local::latency::rtt_ms(region, r),
                    km(region, r).unwrap_or(f64::MAX),
                )
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn places_and_distances() {
        assert_eq!(place("eu-central-1"), Some((50.1, 8.7)));
        assert_eq!(place("mars-1"), None);
        let d = km("eu-central-1", "eu-west-1").unwrap();
        assert!((1000.0..1200.0).contains(&d), "{d}");
        assert!(km("mars-1", "eu-west-1").is_none());
    }

    #[test]
    fn visitors_go_to_the_nearest_region_taking_them() {
        let three = names(&["us-west-2", "eu-central-1", "ap-southeast-1"]);
        let cases: [(&str, &[&str], Option<&str>); 6] = [
            ("eu-central-1", &[], Some("us-west-2")),
            ("ap-southeast-1", &[], Some("eu-central-1")),
            ("us-west-2", &[], Some("eu-central-1")),
            ("ap-southeast-1", &["eu-central-1"], Some("us-west-2")),
            ("eu-central-1", &["us-west-2", "ap-southeast-1"], None),
            ("ap-southeast-1", &["us-west-2", "eu-central-1"], None),
        ];
        for (region, down, want) in cases {
            let got = visitors_go(region, &three, |r| r != region && !down.contains(&r));
            assert_eq!(got, want, "{region} with {down:?} down");
        }
        // Pairs the latency table lacks go by distance.
        let us = names(&["us-east-2", "ca-central-1", "sa-east-1"]);
        assert_eq!(
            visitors_go("us-east-2", &us, |_| true),
            Some("ca-central-1")
        );
    }
}
