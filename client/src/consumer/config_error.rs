//! [`ConsumerConfigError`]: why a consumer configuration was rejected.

/// A consumer setting that is out of range or inconsistent with another. Every variant names
/// the setting, its value and the limit it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerConfigError {
    /// The bootstrap address cannot be parsed.
    #[error("bootstrap = {addr:?} is not a broker address: {reason}")]
    Bootstrap {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A size or count outside its range.
    #[error("{key} = {value} is out of range: must be between {min} and {max}")]
    OutOfRange {
        /// The setting's name.
        key: &'static str,
        /// The value given.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A duration outside its range (in whole milliseconds).
    #[error("{key} = {value_ms} ms is out of range: must be between {min_ms} and {max_ms} ms")]
    DurationOutOfRange {
        /// The setting's name.
        key: &'static str,
        /// The value given, in milliseconds (rounded down).
        value_ms: u64,
        /// Smallest allowed value in milliseconds.
        min_ms: u64,
        /// Largest allowed value in milliseconds.
        max_ms: u64,
    },
    /// A setting above another setting that bounds it (`fetch_min_bytes` above
    /// `fetch_max_bytes`, `retry_backoff` above `retry_backoff_max`).
    #[error("{key} = {value} must not exceed {limit_key} = {limit}")]
    Exceeds {
        /// The setting's name.
        key: &'static str,
        /// Its value (milliseconds for durations).
        value: u64,
        /// The setting that bounds it.
        limit_key: &'static str,
        /// That setting's value (milliseconds for durations).
        limit: u64,
    },
    /// An `auto_offset_reset` name other than `earliest`, `latest` or `none`.
    #[error("auto_offset_reset = {value:?} is not a reset policy: use earliest, latest or none")]
    UnknownResetPolicy {
        /// The name given.
        value: String,
    },
}
