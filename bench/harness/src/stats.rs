//! Order statistics of samples: nearest-rank percentiles, so every figure reported is a
//! value that was actually measured.

/// The `p`-th percentile (0 < p ≤ 100) of `samples` by the nearest-rank method; `None`
/// when there are no samples or `p` is out of range. NaNs are ignored.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// The median: the 50th percentile by nearest rank (the lower middle value of an even count).
pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 50.0)
}

/// `a / b`, or `None` when `b` is zero or either is missing.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        let twenty: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        let cases: &[(&[f64], f64, Option<f64>)] = &[
            (&ten, 50.0, Some(5.0)),
            (&ten, 90.0, Some(9.0)),
            (&ten, 99.0, Some(10.0)),
            (&ten, 100.0, Some(10.0)),
            (&ten, 1.0, Some(1.0)),
            (&twenty, 50.0, Some(10.0)),
            (&twenty, 99.0, Some(20.0)),
            (&twenty, 95.0, Some(19.0)),
            (&[3.0], 50.0, Some(3.0)),
            (&[], 50.0, None),
            (&ten, 0.0, None),
            (&ten, 101.0, None),
            (&[f64::NAN, 2.0, 1.0], 100.0, Some(2.0)),
        ];
        for (samples, p, want) in cases {
            assert_eq!(percentile(samples, *p), *want, "p{p} of {samples:?}");
        }
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }
}
