//! [`ProducerConfigError`]: a producer setting out of range, with the value and the limit.

use std::time::Duration;

/// A [`super::ProducerConfig`] that [`super::ProducerConfig::validate`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerConfigError {
    /// A count or size setting is outside its allowed range.
    #[error("{name} = {value} is out of range: it must be from {min} to {max}")]
    OutOfRange {
        /// The setting's name (`batch_bytes`, `max_in_flight`, ...).
        name: &'static str,
        /// The value given.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A duration setting is outside its allowed range.
    #[error("{name} = {} ms is out of range: it must be from {} ms to {} ms", .value.as_millis(), .min.as_millis(), .max.as_millis())]
    DurationOutOfRange {
        /// The setting's name (`linger`, `request_timeout`, ...).
        name: &'static str,
        /// The value given.
        value: Duration,
        /// Shortest allowed value.
        min: Duration,
        /// Longest allowed value.
        max: Duration,
    },
    /// One setting must not exceed another (`batch_bytes` ≤ `buffer_bytes`, ...).
    #[error("{name} = {value} must not exceed {limit_name} = {limit}")]
    Exceeds {
        /// The setting that is too large.
        name: &'static str,
        /// Its value (bytes, or milliseconds for durations).
        value: u64,
        /// The setting it must not exceed.
        limit_name: &'static str,
        /// That setting's value.
        limit: u64,
    },
    /// Idempotence needs `acks = all`: a batch acknowledged by the leader alone may be lost
    /// on failover, and the sequence state with it.
    #[error("idempotence requires acks = all, got acks = {acks}")]
    IdempotenceNeedsAcksAll {
        /// The acks setting given.
        acks: &'static str,
    },
}
