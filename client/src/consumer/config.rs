//! [`ConsumerConfig`]: how a consumer fetches, buffers and retries, built and validated by
//! [`ConsumerConfigBuilder`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::ClientError;
use crate::connection::{DEFAULT_BOOTSTRAP, endpoint_uri};

use super::ConsumerConfigError;
use super::retry::RetryPolicy;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// Default [`ConsumerConfig::fetch_max_wait`]: 500 ms, as Kafka's `fetch.max.wait.ms`.
pub const DEFAULT_FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// Default [`ConsumerConfig::fetch_min_bytes`]: 1, answer as soon as anything is there.
pub const DEFAULT_FETCH_MIN_BYTES: u32 = 1;
/// Default [`ConsumerConfig::fetch_max_bytes`]: 50 MiB, as Kafka's `fetch.max.bytes`.
pub const DEFAULT_FETCH_MAX_BYTES: u32 = 50 * MIB as u32;
/// Default [`ConsumerConfig::partition_max_bytes`]: 1 MiB, as Kafka's
/// `max.partition.fetch.bytes`.
pub const DEFAULT_PARTITION_MAX_BYTES: u32 = MIB as u32;
/// Default [`ConsumerConfig::max_poll_records`]: 500, as Kafka's `max.poll.records`.
pub const DEFAULT_MAX_POLL_RECORDS: usize = 500;
/// Default [`ConsumerConfig::partition_buffer_bytes`]: 4 MiB per partition.
pub const DEFAULT_PARTITION_BUFFER_BYTES: usize = 4 * MIB as usize;
/// Default [`ConsumerConfig::fetches_per_broker`]: 2, so the broker prepares one answer
/// while the client takes in the other.
pub const DEFAULT_FETCHES_PER_BROKER: usize = 2;
/// Largest [`ConsumerConfig::fetches_per_broker`].
pub const MAX_FETCHES_PER_BROKER: usize = 16;
/// Default [`ConsumerConfig::request_timeout`]: 30 s, as Kafka's `request.timeout.ms`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ConsumerConfig::retry_backoff`]: 100 ms, as Kafka's `retry.backoff.ms`.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Default [`ConsumerConfig::retry_backoff_max`]: 1 s, as Kafka's `retry.backoff.max.ms`.
pub const DEFAULT_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Default [`ConsumerConfig::retry_timeout`]: 30 s.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest [`ConsumerConfig::fetch_max_bytes`] and [`ConsumerConfig::partition_max_bytes`]:
/// 60 MiB. A response may exceed the limit by one batch and must stay below the client's
/// 64 MiB gRPC message limit.
pub const MAX_FETCH_BYTES: u32 = 60 * MIB as u32;
/// Smallest [`ConsumerConfig::fetch_max_bytes`] and [`ConsumerConfig::partition_max_bytes`]:
/// 1 KiB (the broker's own lower bound).
pub const MIN_FETCH_BYTES: u32 = KIB as u32;
/// Longest [`ConsumerConfig::fetch_max_wait`]: 5 minutes (the broker caps it further with its
/// `max_fetch_wait_ms`).
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(300);
/// Largest [`ConsumerConfig::max_poll_records`].
pub const MAX_POLL_RECORDS: usize = 1_000_000;
/// Largest [`ConsumerConfig::partition_buffer_bytes`]: 1 GiB.
pub const MAX_PARTITION_BUFFER_BYTES: usize = 1024 * MIB as usize;
/// Longest [`ConsumerConfig::request_timeout`], [`ConsumerConfig::retry_backoff_max`] and
/// [`ConsumerConfig::retry_timeout`]: 1 hour.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where a partition starts when it has no position, or when its position is outside the
/// log (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AutoOffsetReset {
    /// The log start: read everything still retained.
    Earliest,
    /// The high watermark: read only records produced from now on (Kafka's default).
    #[default]
    Latest,
    /// No reset: `poll` fails for the partition until the application seeks it.
    None,
}

impl AutoOffsetReset {
    /// The policy's name as Kafka spells it: `earliest`, `latest`, `none`.
    pub fn name(self) -> &'static str {
        match self {
            AutoOffsetReset::Earliest => "earliest",
            AutoOffsetReset::Latest => "latest",
            AutoOffsetReset::None => "none",
        }
    }
}

impl fmt::Display for AutoOffsetReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AutoOffsetReset {
    type Err = ConsumerConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "earliest" => Ok(AutoOffsetReset::Earliest),
            "latest" => Ok(AutoOffsetReset::Latest),
            "none" => Ok(AutoOffsetReset::None),
            other => Err(ConsumerConfigError::UnknownResetPolicy {
                value: other.to_owned(),
            }),
        }
    }
}

/// A validated consumer configuration. Build one with [`ConsumerConfig::builder`]; the
/// [`Default`] is the builder's defaults, each documented on its setter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    bootstrap: String,
    fetch_max_wait: Duration,
    fetch_min_bytes: u32,
    fetch_max_bytes: u32,
    partition_max_bytes: u32,
    max_poll_records: usize,
    partition_buffer_bytes: usize,
    fetches_per_broker: usize,
    auto_offset_reset: AutoOffsetReset,
    request_timeout: Duration,
    retry_backoff: Duration,
    retry_backoff_max: Duration,
    retry_timeout: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            bootstrap: DEFAULT_BOOTSTRAP.to_owned(),
            fetch_max_wait: DEFAULT_FETCH_MAX_WAIT,
            fetch_min_bytes: DEFAULT_FETCH_MIN_BYTES,
            fetch_max_bytes: DEFAULT_FETCH_MAX_BYTES,
            partition_max_bytes: DEFAULT_PARTITION_MAX_BYTES,
            max_poll_records: DEFAULT_MAX_POLL_RECORDS,
            partition_buffer_bytes: DEFAULT_PARTITION_BUFFER_BYTES,
            fetches_per_broker: DEFAULT_FETCHES_PER_BROKER,
            auto_offset_reset: AutoOffsetReset::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            retry_backoff_max: DEFAULT_RETRY_BACKOFF_MAX,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
        }
    }
}

impl ConsumerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ConsumerConfigBuilder {
        ConsumerConfigBuilder {
            config: ConsumerConfig::default(),
        }
    }

    /// The broker first contacted; see [`ConsumerConfigBuilder::bootstrap`].
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// See [`ConsumerConfigBuilder::fetch_max_wait`].
    pub fn fetch_max_wait(&self) -> Duration {
        self.fetch_max_wait
    }

    /// See [`ConsumerConfigBuilder::fetch_min_bytes`].
    pub fn fetch_min_bytes(&self) -> u32 {
        self.fetch_min_bytes
    }

    /// See [`ConsumerConfigBuilder::fetch_max_bytes`].
    pub fn fetch_max_bytes(&self) -> u32 {
        self.fetch_max_bytes
    }

    /// See [`ConsumerConfigBuilder::partition_max_bytes`].
    pub fn partition_max_bytes(&self) -> u32 {
        self.partition_max_bytes
    }

    /// See [`ConsumerConfigBuilder::max_poll_records`].
    pub fn max_poll_records(&self) -> usize {
        self.max_poll_records
    }

    /// See [`ConsumerConfigBuilder::partition_buffer_bytes`].
    pub fn partition_buffer_bytes(&self) -> usize {
        self.partition_buffer_bytes
    }

    /// See [`ConsumerConfigBuilder::fetches_per_broker`].
    pub fn fetches_per_broker(&self) -> usize {
        self.fetches_per_broker
    }

    /// See [`ConsumerConfigBuilder::auto_offset_reset`].
    pub fn auto_offset_reset(&self) -> AutoOffsetReset {
        self.auto_offset_reset
    }

    /// See [`ConsumerConfigBuilder::request_timeout`].
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// See [`ConsumerConfigBuilder::retry_backoff`].
    pub fn retry_backoff(&self) -> Duration {
        self.retry_backoff
    }

    /// See [`ConsumerConfigBuilder::retry_backoff_max`].
    pub fn retry_backoff_max(&self) -> Duration {
        self.retry_backoff_max
    }

    /// See [`ConsumerConfigBuilder::retry_timeout`].
    pub fn retry_timeout(&self) -> Duration {
        self.retry_timeout
    }

    /// The backoff and surfacing rules for the fetcher's retries.
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            backoff: self.retry_backoff,
            backoff_max: self.retry_backoff_max,
            timeout: self.retry_timeout,
        }
    }
}

/// Builds a [`ConsumerConfig`]; [`ConsumerConfigBuilder::build`] validates it.
///
/// ```
/// use std::time::Duration;
/// use brook_client::consumer::{AutoOffsetReset, ConsumerConfig};
///
/// let config = ConsumerConfig::builder()
///     .bootstrap("127.0.0.1:7400")
///     .auto_offset_reset(AutoOffsetReset::Earliest)
///     .fetch_max_wait(Duration::from_millis(100))
///     .build()
///     .unwrap();
/// assert_eq!(config.max_poll_records(), 500);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConsumerConfigBuilder {
    config: ConsumerConfig,
}

impl ConsumerConfigBuilder {
    /// The broker first contacted (`host:port`, `host`, or `http://host:port`); the others
    /// are learned from its metadata. Default `127.0.0.1:7400`.
    pub fn bootstrap(mut self, addr: impl Into<String>) -> Self {
        self.config.bootstrap = addr.into();
        self
    }

    /// Longest time the broker holds a fetch while fewer than `fetch_min_bytes` are
    /// available. Default 500 ms; 0 to 5 minutes.
    pub fn fetch_max_wait(mut self, wait: Duration) -> Self {
        self.config.fetch_max_wait = wait;
        self
    }

    /// The broker answers a fetch as soon as this many bytes are available across its
    /// partitions. Default 1; 0 to `fetch_max_bytes`.
    pub fn fetch_min_bytes(mut self, bytes: u32) -> Self {
        self.config.fetch_min_bytes = bytes;
        self
    }

    /// Most bytes in one fetch response (the first batch is returned even if larger).
    /// Default 50 MiB; 1 KiB to 60 MiB.
    pub fn fetch_max_bytes(mut self, bytes: u32) -> Self {
        self.config.fetch_max_bytes = bytes;
        self
    }

    /// Most bytes one fetch returns for one partition (the first batch is returned even if
    /// larger). Default 1 MiB; 1 KiB to 60 MiB.
    pub fn partition_max_bytes(mut self, bytes: u32) -> Self {
        self.config.partition_max_bytes = bytes;
        self
    }

    /// Most records one `poll` returns. Default 500; 1 to 1 000 000.
    pub fn max_poll_records(mut self, records: usize) -> Self {
        self.config.max_poll_records = records;
        self
    }

    /// Prefetch limit per partition: the fetcher stops fetching a partition once the records
    /// it buffered and `poll` has not yet returned hold this many bytes (keys, values and
    /// headers), and resumes when `poll` drains it below. One fetch response can overshoot
    /// the limit, so a partition buffers at most this plus `partition_max_bytes` (or one
    /// batch). Default 4 MiB; 1 byte to 1 GiB.
    pub fn partition_buffer_bytes(mut self, bytes: usize) -> Self {
        self.config.partition_buffer_bytes = bytes;
        self
    }

    /// Most fetch requests in flight to one broker at a time. The partitions ready to fetch
    /// are split among the free ones, each partition in at most one fetch, so the broker
    /// reads and encodes one answer while the client receives and decodes another. With no
    /// request free, a partition that becomes ready (assigned, sought, or drained below
    /// `partition_buffer_bytes`) replaces the oldest request, the one most likely waiting
    /// out `fetch_max_wait`. 1 gives Kafka's one fetch per broker. Default 2; 1 to 16.
    pub fn fetches_per_broker(mut self, requests: usize) -> Self {
        self.config.fetches_per_broker = requests;
        self
    }

    /// Where a partition without a position starts, and where a position outside the log
    /// moves. Default [`AutoOffsetReset::Latest`].
    pub fn auto_offset_reset(mut self, reset: AutoOffsetReset) -> Self {
        self.config.auto_offset_reset = reset;
        self
    }

    /// Longest wait for a metadata or list-offsets answer, and for a fetch answer beyond its
    /// `fetch_max_wait`. Default 30 s; 1 ms to 1 hour.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// First pause before retrying a failed request; doubles per attempt up to
    /// `retry_backoff_max`. Default 100 ms; 1 ms to `retry_backoff_max`.
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.config.retry_backoff = backoff;
        self
    }

    /// Longest pause between retries. Default 1 s; 1 ms to 1 hour.
    pub fn retry_backoff_max(mut self, backoff: Duration) -> Self {
        self.config.retry_backoff_max = backoff;
        self
    }

    /// How long a partition may keep failing with retriable errors (broker unreachable,
    /// leader moving, unknown topic) before `poll` reports the error; the fetcher keeps
    /// retrying afterwards, and reports again after another such period. Default 30 s;
    /// 0 (report the first failure) to 1 hour.
    pub fn retry_timeout(mut self, timeout: Duration) -> Self {
        self.config.retry_timeout = timeout;
        self
    }

    /// Checks every setting against its range and the settings that bound each other.
    pub fn validate(&self) -> Result<(), ConsumerConfigError> {
        let c = &self.config;
        if let Err(err) = endpoint_uri(&c.bootstrap) {
            let reason = match err {
                ClientError::InvalidAddress { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(ConsumerConfigError::Bootstrap {
                addr: c.bootstrap.clone(),
                reason,
            });
        }
        duration_in(
            "fetch_max_wait",
            c.fetch_max_wait,
            Duration::ZERO,
            MAX_FETCH_WAIT,
        )?;
        in_range(
            "fetch_max_bytes",
            c.fetch_max_bytes.into(),
            MIN_FETCH_BYTES.into(),
            MAX_FETCH_BYTES.into(),
        )?;
        in_range(
            "partition_max_bytes",
            c.partition_max_bytes.into(),
            MIN_FETCH_BYTES.into(),
            MAX_FETCH_BYTES.into(),
        )?;
        at_most(
            "fetch_min_bytes",
            c.fetch_min_bytes.into(),
            "fetch_max_bytes",
            c.fetch_max_bytes.into(),
        )?;
        in_range(
            "max_poll_records",
            c.max_poll_records as u64,
            1,
            MAX_POLL_RECORDS as u64,
        )?;
        in_range(
            "partition_buffer_bytes",
            c.partition_buffer_bytes as u64,
            1,
            MAX_PARTITION_BUFFER_BYTES as u64,
        )?;
        in_range(
            "fetches_per_broker",
            c.fetches_per_broker as u64,
            1,
            MAX_FETCHES_PER_BROKER as u64,
        )?;
        let one_ms = Duration::from_millis(1);
        duration_in("request_timeout", c.request_timeout, one_ms, MAX_TIMEOUT)?;
        duration_in(
            "retry_backoff_max",
            c.retry_backoff_max,
            one_ms,
            MAX_TIMEOUT,
        )?;
        duration_in("retry_backoff", c.retry_backoff, one_ms, MAX_TIMEOUT)?;
        at_most(
            "retry_backoff",
            millis(c.retry_backoff),
            "retry_backoff_max",
            millis(c.retry_backoff_max),
        )?;
        duration_in(
            "retry_timeout",
            c.retry_timeout,
            Duration::ZERO,
            MAX_TIMEOUT,
        )?;
        Ok(())
    }

    /// Validates the settings and returns the configuration.
    pub fn build(self) -> Result<ConsumerConfig, ConsumerConfigError> {
        self.validate()?;
        Ok(self.config)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn in_range(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConsumerConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConsumerConfigError::OutOfRange {
        key,
        value,
        min,
        max,
    })
}

fn duration_in(
    key: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ConsumerConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConsumerConfigError::DurationOutOfRange {
        key,
        value_ms: millis(value),
        min_ms: millis(min),
        max_ms: millis(max),
    })
}

fn at_most(
    key: &'static str,
    value: u64,
    limit_key: &'static str,
    limit: u64,
) -> Result<(), ConsumerConfigError> {
    if value <= limit {
        return Ok(());
    }
    Err(ConsumerConfigError::Exceeds {
        key,
        value,
        limit_key,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_kafkas_and_valid() {
        let config = ConsumerConfig::builder().build().unwrap();
        assert_eq!(config, ConsumerConfig::default());
        assert_eq!(config.bootstrap(), "127.0.0.1:7400");
        assert_eq!(config.fetch_max_wait(), Duration::from_millis(500));
        assert_eq!(config.fetch_min_bytes(), 1);
        assert_eq!(config.fetch_max_bytes(), 52_428_800);
        assert_eq!(config.partition_max_bytes(), 1_048_576);
        assert_eq!(config.max_poll_records(), 500);
        assert_eq!(config.partition_buffer_bytes(), 4 << 20);
        assert_eq!(config.fetches_per_broker(), 2);
        assert_eq!(config.auto_offset_reset(), AutoOffsetReset::Latest);
        assert_eq!(config.request_timeout(), Duration::from_secs(30));
        assert_eq!(config.retry_backoff(), Duration::from_millis(100));
        assert_eq!(config.retry_backoff_max(), Duration::from_secs(1));
        assert_eq!(config.retry_timeout(), Duration::from_secs(30));
    }

    #[test]
    fn setters_set_and_build_keeps_them() {
        let config = ConsumerConfig::builder()
            .bootstrap("http://b:9000")
            .fetch_max_wait(Duration::ZERO)
            .fetch_min_bytes(0)
            .fetch_max_bytes(1024)
            .partition_max_bytes(2048)
            .max_poll_records(1)
            .partition_buffer_bytes(1)
            .fetches_per_broker(16)
            .auto_offset_reset(AutoOffsetReset::None)
            .request_timeout(Duration::from_millis(1))
            .retry_backoff(Duration::from_millis(5))
            .retry_backoff_max(Duration::from_millis(5))
            .retry_timeout(Duration::ZERO)
            .build()
            .unwrap();
        assert_eq!(config.bootstrap(), "http://b:9000");
        assert_eq!(config.fetch_max_wait(), Duration::ZERO);
        assert_eq!(config.fetch_min_bytes(), 0);
        assert_eq!(config.fetch_max_bytes(), 1024);
        assert_eq!(config.partition_max_bytes(), 2048);
        assert_eq!(config.max_poll_records(), 1);
        assert_eq!(config.partition_buffer_bytes(), 1);
        assert_eq!(config.fetches_per_broker(), 16);
        assert_eq!(config.auto_offset_reset(), AutoOffsetReset::None);
        assert_eq!(config.request_timeout(), Duration::from_millis(1));
        assert_eq!(config.retry_backoff(), Duration::from_millis(5));
        assert_eq!(config.retry_backoff_max(), Duration::from_millis(5));
        assert_eq!(config.retry_timeout(), Duration::ZERO);
        let policy = config.retry_policy();
        assert_eq!(
            (policy.backoff, policy.backoff_max, policy.timeout),
            (
                Duration::from_millis(5),
                Duration::from_millis(5),
                Duration::ZERO
            )
        );
    }

    fn rejected(builder: ConsumerConfigBuilder) -> (ConsumerConfigError, String) {
        let err = builder.build().unwrap_err();
        let text = err.to_string();
        (err, text)
    }

    #[test]
    fn sizes_and_counts_out_of_range_name_value_and_limits() {
        let b = ConsumerConfig::builder;
        let cases = [
            (
                b().fetch_max_bytes(1023),
                "fetch_max_bytes = 1023 is out of range: must be between 1024 and 62914560",
            ),
            (
                b().fetch_max_bytes(MAX_FETCH_BYTES + 1),
                "fetch_max_bytes = 62914561 is out of range: must be between 1024 and 62914560",
            ),
            (
                b().partition_max_bytes(0),
                "partition_max_bytes = 0 is out of range: must be between 1024 and 62914560",
            ),
            (
                b().max_poll_records(0),
                "max_poll_records = 0 is out of range: must be between 1 and 1000000",
            ),
            (
                b().partition_buffer_bytes(0),
                "partition_buffer_bytes = 0 is out of range: must be between 1 and 1073741824",
            ),
            (
                b().fetches_per_broker(0),
                "fetches_per_broker = 0 is out of range: must be between 1 and 16",
            ),
            (
                b().fetches_per_broker(17),
                "fetches_per_broker = 17 is out of range: must be between 1 and 16",
            ),
        ];
        for (builder, want) in cases {
            let (err, text) = rejected(builder);
            assert!(
                matches!(err, ConsumerConfigError::OutOfRange { .. }),
                "{err:?}"
            );
            assert_eq!(text, want);
        }
        assert_eq!(
            rejected(b().partition_max_bytes(1023)).0,
            ConsumerConfigError::OutOfRange {
                key: "partition_max_bytes",
                value: 1023,
                min: 1024,
                max: u64::from(MAX_FETCH_BYTES),
            }
        );
        // The limits themselves are valid.
        assert!(
            b().fetch_max_bytes(1024)
                .partition_max_bytes(1024)
                .validate()
                .is_ok()
        );
        assert!(b().fetch_max_bytes(MAX_FETCH_BYTES).validate().is_ok());
    }

    #[test]
    fn durations_out_of_range_name_value_and_limits() {
        let b = ConsumerConfig::builder;
        let (err, text) = rejected(b().fetch_max_wait(Duration::from_secs(301)));
        assert_eq!(
            err,
            ConsumerConfigError::DurationOutOfRange {
                key: "fetch_max_wait",
                value_ms: 301_000,
                min_ms: 0,
                max_ms: 300_000,
            }
        );
        assert_eq!(
            text,
            "fetch_max_wait = 301000 ms is out of range: must be between 0 and 300000 ms"
        );
        let (_, text) = rejected(b().request_timeout(Duration::ZERO));
        assert_eq!(
            text,
            "request_timeout = 0 ms is out of range: must be between 1 and 3600000 ms"
        );
        let (_, text) = rejected(b().retry_timeout(Duration::from_secs(3601)));
        assert_eq!(
            text,
            "retry_timeout = 3601000 ms is out of range: must be between 0 and 3600000 ms"
        );
        let (_, text) = rejected(b().retry_backoff(Duration::from_micros(500)));
        assert_eq!(
            text,
            "retry_backoff = 0 ms is out of range: must be between 1 and 3600000 ms"
        );
    }

    #[test]
    fn settings_bounded_by_others() {
        let b = ConsumerConfig::builder;
        let (err, text) = rejected(b().fetch_max_bytes(2048).fetch_min_bytes(2049));
        assert_eq!(
            err,
            ConsumerConfigError::Exceeds {
                key: "fetch_min_bytes",
                value: 2049,
                limit_key: "fetch_max_bytes",
                limit: 2048,
            }
        );
        assert_eq!(
            text,
            "fetch_min_bytes = 2049 must not exceed fetch_max_bytes = 2048"
        );
        let (_, text) = rejected(b().retry_backoff(Duration::from_secs(2)));
        assert_eq!(
            text,
            "retry_backoff = 2000 must not exceed retry_backoff_max = 1000"
        );
    }

    #[test]
    fn bootstrap_must_be_an_address() {
        let (err, text) = rejected(ConsumerConfig::builder().bootstrap("https://b:1"));
        assert_eq!(
            err,
            ConsumerConfigError::Bootstrap {
                addr: "https://b:1".into(),
                reason: "unsupported scheme \"https\": use host:port or http://host:port \
                         (TLS is set by the TLS options)"
                    .into(),
            }
        );
        assert_eq!(
            text,
            "bootstrap = \"https://b:1\" is not a broker address: unsupported scheme \"https\": \
             use host:port or http://host:port (TLS is set by the TLS options)"
        );
        assert!(ConsumerConfig::builder().bootstrap("").validate().is_err());
    }

    #[test]
    fn reset_policy_parses_kafka_names() {
        for policy in [
            AutoOffsetReset::Earliest,
            AutoOffsetReset::Latest,
            AutoOffsetReset::None,
        ] {
            assert_eq!(policy.to_string().parse::<AutoOffsetReset>(), Ok(policy));
        }
        let err = "smallest".parse::<AutoOffsetReset>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "auto_offset_reset = \"smallest\" is not a reset policy: use earliest, latest or none"
        );
    }
}
