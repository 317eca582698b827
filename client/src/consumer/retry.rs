//! [`Retry`]: when a failing partition is tried again, and when its failure is reported.
//!
//! Pure bookkeeping over instants the caller passes in, so the rules are tested without a
//! clock; the fetcher passes `tokio::time::Instant::now()`, which a paused test clock drives.

use std::time::Duration;

use tokio::time::Instant;

/// Backoff and reporting rules, from the consumer's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Pause after the first failure; doubles per failure.
    pub backoff: Duration,
    /// Longest pause.
    pub backoff_max: Duration,
    /// How long failures may last before one is reported.
    pub timeout: Duration,
}

impl RetryPolicy {
    /// The pause after failure number `attempt` (1-based): `backoff`, doubled per attempt,
    /// capped at `backoff_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.backoff
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }
}

/// The failure state of one partition (or of the metadata refresh).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Retry {
    /// Failures since the last success.
    attempts: u32,
    /// Start of the current reporting window: the first failure, or the last report.
    failing_since: Option<Instant>,
    /// No new attempt before this.
    retry_at: Option<Instant>,
}

impl Retry {
    /// True if a new attempt may start at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| now >= at)
    }

    /// When the next attempt may start, while backing off.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Records a failure at `now` and schedules the next attempt after the backoff. Returns
    /// true when failures have lasted `policy.timeout`: the caller reports this one, and the
    /// next report comes after another `policy.timeout` of failures.
    pub fn fail(&mut self, now: Instant, policy: &RetryPolicy) -> bool {
        self.attempts = self.attempts.saturating_add(1);
        self.retry_at = Some(now + policy.backoff(self.attempts));
        let since = *self.failing_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= policy.timeout {
            self.failing_since = Some(now);
            return true;
        }
        false
    }

    /// Records a success: the next failure starts from the first backoff.
    pub fn succeed(&mut self) {
        *self = Retry::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        backoff: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        timeout: Duration::from_secs(3),
    };

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let ms = |a| POLICY.backoff(a).as_millis();
        assert_eq!(
            [
                ms(0),
                ms(1),
                ms(2),
                ms(3),
                ms(4),
                ms(5),
                ms(40),
                ms(u32::MAX)
            ],
            [100, 100, 200, 400, 800, 1000, 1000, 1000]
        );
    }

    #[test]
    fn failures_schedule_retries_and_report_after_the_timeout() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut retry = Retry::default();
        assert!(retry.ready(t0));
        assert!(!retry.fail(t0, &POLICY));
        assert_eq!(retry.retry_at(), Some(at(100)));
        assert!(!retry.ready(at(99)));
        assert!(retry.ready(at(100)));
        assert!(!retry.fail(at(100), &POLICY));
        assert_eq!(retry.retry_at(), Some(at(300)));
        assert!(!retry.fail(at(2999), &POLICY));
        // Three seconds after the first failure: report, and start a new window.
        assert!(retry.fail(at(3000), &POLICY));
        assert!(!retry.fail(at(5999), &POLICY));
        assert!(retry.fail(at(6000), &POLICY));
        assert_eq!(retry.retry_at(), Some(at(7000)));
        retry.succeed();
        assert_eq!(retry, Retry::default());
        assert!(!retry.fail(at(7000), &POLICY));
        assert_eq!(retry.retry_at(), Some(at(7100)));
    }

    #[test]
    fn a_zero_timeout_reports_every_failure() {
        let policy = RetryPolicy {
            timeout: Duration::ZERO,
            ..POLICY
        };
        let t0 = Instant::now();
        let mut retry = Retry::default();
        assert!(retry.fail(t0, &policy));
        assert!(retry.fail(t0 + Duration::from_millis(1), &policy));
    }
}
