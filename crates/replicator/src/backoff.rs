//! Retry timing: exponential backoff with jitter, bounded by the invocation's deadline.

use std::time::{Duration, Instant};

/// How the replicator retries a region that did not take a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOptions {
    /// Delay ceiling after the first failure; doubles after each further one.
    pub first_delay: Duration,
    /// Largest delay ceiling.
    pub max_delay: Duration,
    /// Longest one delivery attempt may take.
    pub attempt_timeout: Duration,
    /// Time kept back before the invocation's deadline to answer Lambda.
    pub reserve: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
            reserve: Duration::from_millis(500),
        }
    }
}

impl RetryOptions {
    /// The delay before retry number `failures` (1 after the first failure), given a
    /// `jitter` in `[0, 1)`: "equal jitter", half the exponential ceiling plus a random
    /// part of the other half, so concurrent retries spread out but always back off.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let ceiling = self
            .first_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = ceiling / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The last instant an attempt may still run until, for an invocation ending at
    /// `deadline`.
    pub fn budget_end(&self, deadline: Instant) -> Instant {
        deadline.checked_sub(self.reserve).unwrap_or(deadline)
    }
}

/// The next step after a failed attempt at `now`: `Some(delay)` to sleep then retry, or
/// `None` when the retry could not start before `budget_end`.
pub fn next_retry(
    opts: &RetryOptions,
    failures: u32,
    jitter: f64,
    now: Instant,
    budget_end: Instant,
) -> Option<Duration> {
    let d = opts.delay(failures, jitter);
    (now + d < budget_end).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_with_equal_jitter_and_a_cap() {
        let o = RetryOptions {
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryOptions::default()
        };
        // (failures, jitter, expected ms)
        let cases = [
            (1, 0.0, 50),
            (1, 0.5, 75),
            (1, 0.999_999, 99),
            (2, 0.0, 100),
            (3, 0.0, 200),
            (4, 1.0, 800),
            (5, 0.0, 500),
            (5, 1.0, 1000),
            (40, 0.5, 750),
            (0, 0.0, 50),
            (2, -3.0, 100),
            (2, 7.0, 200),
        ];
        for (f, j, want) in cases {
            assert_eq!(o.delay(f, j).as_millis(), want, "failures {f} jitter {j}");
        }
    }

    #[test]
    fn retries_stop_at_the_budget() {
        let o = RetryOptions::default();
        let now = Instant::now();
        let deadline = now + Duration::from_secs(2);
        let end = o.budget_end(deadline);
        assert_eq!(deadline - end, o.reserve);
        // (failures, now offset ms, retries?)
        let cases = [
            (1, 0, true),
            (1, 1440, true),
            (1, 1460, false),
            (6, 400, true),
            (6, 600, false),
        ];
        for (f, at, want) in cases {
            let t = now + Duration::from_millis(at);
            assert_eq!(
                next_retry(&o, f, 0.0, t, end).is_some(),
                want,
                "failures {f} at {at}"
            );
        }
        // A deadline already behind the reserve leaves no budget at all.
        let soon = now + Duration::from_millis(100);
        assert!(o.budget_end(soon) <= soon);
    }
}
