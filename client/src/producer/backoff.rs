//! [`Backoff`]: exponential pauses between retries, capped and jittered.

use std::time::Duration;

/// Exponential backoff: `initial`, doubled per attempt, capped at `max`, then scaled by a
/// jitter factor from 0.8 to 1.2 (never above `max`) so that producers that failed together do
/// not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The pause before the first retry.
    pub initial: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Backoff {
    /// The pause before retry number `attempt` (1-based), with `jitter` drawn from `[0, 1)`.
    pub fn delay_with(&self, attempt: u32, jitter: f64) -> Duration {
        let base = self
            .initial
            .saturating_mul(1 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
            .min(self.max)
    }

    /// The pause before retry number `attempt` (1-based), with random jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_within_the_jitter_band() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let mid = |a| b.delay_with(a, 0.5).as_millis();
        assert_eq!(
            [mid(1), mid(2), mid(3), mid(4), mid(5), mid(50)],
            [100, 200, 400, 800, 1000, 1000]
        );
        assert_eq!(b.delay_with(1, 0.0), Duration::from_millis(80));
        assert_eq!(b.delay_with(1, 1.0), Duration::from_millis(120));
        assert_eq!(b.delay_with(9, 1.0), Duration::from_secs(1));
        for attempt in 1..10 {
            let d = b.delay(attempt);
            assert!(d >= b.delay_with(attempt, 0.0) && d <= b.delay_with(attempt, 1.0));
        }
    }
}
