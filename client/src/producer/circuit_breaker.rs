//! [`CircuitBreaker`]: stops sending to a broker that keeps failing, then probes it.
//!
//! ```text
//!   Closed --N consecutive failures--> Open --`open_for` elapsed--> HalfOpen (one probe)
//!     ^                                  ^                             |
//!     +------------ probe succeeds ------|----------------------------+
//!                                        +------ probe fails ----------+
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; counts consecutive failures.
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Requests are refused until `until`.
    Open {
        /// When a probe may go.
        until: Instant,
    },
    /// One probe request is allowed; its outcome closes or reopens the breaker.
    HalfOpen {
        /// True while the probe is outstanding.
        probing: bool,
    },
}

/// A circuit breaker for one broker connection. A pure state machine: the caller passes the
/// time, so it is tested on a paused clock.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    state: BreakerState,
    threshold: u32,
    open_for: Duration,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` consecutive failures for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        CircuitBreaker {
            state: BreakerState::Closed { failures: 0 },
            threshold: threshold.max(1),
            open_for,
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// May a request go now? In half-open state the first caller gets the probe and the
    /// breaker refuses others until its outcome is reported.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen { probing: true };
                true
            }
            BreakerState::Open { .. } => false,
            BreakerState::HalfOpen { probing: false } => {
                self.state = BreakerState::HalfOpen { probing: true };
                true
            }
            BreakerState::HalfOpen { probing: true } => false,
        }
    }

    /// When an open breaker lets a probe through (`None` unless open).
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }

    /// A request succeeded: the breaker closes.
    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    /// A request failed at the request level (transport error, timeout, gRPC status).
    pub fn on_failure(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            _ => BreakerState::Open {
                until: now + self.open_for,
            },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_failures_and_half_opens_after_the_pause() {
        let mut b = CircuitBreaker::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 1..3 {
            assert!(b.try_acquire(t0));
            b.on_failure(t0);
            assert_eq!(b.state(), BreakerState::Closed { failures: i });
        }
        assert!(b.try_acquire(t0));
        b.on_failure(t0);
        let until = t0 + Duration::from_secs(1);
        assert_eq!(b.state(), BreakerState::Open { until });
        assert_eq!(b.reopens_at(), Some(until));
        assert!(!b.try_acquire(t0));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!b.try_acquire(Instant::now()));
        tokio::time::advance(Duration::from_millis(1)).await;
        // One probe only.
        assert!(b.try_acquire(Instant::now()));
        assert_eq!(b.state(), BreakerState::HalfOpen { probing: true });
        assert!(!b.try_acquire(Instant::now()));
        // The probe fails: open again for a full pause.
        b.on_failure(Instant::now());
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: Instant::now() + Duration::from_secs(1)
            }
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.try_acquire(Instant::now()));
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
        assert!(b.try_acquire(Instant::now()));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let now = Instant::now();
        let mut b = CircuitBreaker::new(2, Duration::from_secs(1));
        b.on_failure(now);
        b.on_success();
        b.on_failure(now);
        assert_eq!(b.state(), BreakerState::Closed { failures: 1 });
    }
}
