//! [`ProducerConfig`] and its builder: every producer setting with its documented default.

use std::time::Duration;

use brook_proto::Compression;

use super::ProducerConfigError;

/// How many replicas must have a batch before it counts as delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Do not wait: the broker answers before appending, no offset is known (Kafka `acks=0`).
    None,
    /// The leader appended it (Kafka `acks=1`).
    Leader,
    /// Every in-sync replica appended it (Kafka `acks=all`). The default.
    #[default]
    All,
}

impl Acks {
    /// The Kafka-style name: `0`, `1` or `all`.
    pub fn name(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }

    pub(crate) fn to_proto(self) -> brook_proto::v1::Acks {
        match self {
            Acks::None => brook_proto::v1::Acks::None,
            Acks::Leader => brook_proto::v1::Acks::Leader,
            Acks::All => brook_proto::v1::Acks::All,
        }
    }
}

/// What [`super::Producer::enqueue`] does when the record buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Wait until acknowledgements free enough memory. The default.
    #[default]
    Block,
    /// Wait at most this long, then fail with [`super::ProducerError::BufferFullTimeout`].
    BlockFor(Duration),
    /// Fail at once with [`super::ProducerError::BufferFull`].
    FailFast,
}

/// Where a record without key and without partition goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeylessPartitioning {
    /// Stay on one partition until its batch is sealed, then move to the next (Kafka's sticky
    /// partitioner): fuller batches, fewer requests. The default.
    #[default]
    Sticky,
    /// Each record to the next partition in turn.
    RoundRobin,
}

/// Producer settings. Build with [`ProducerConfig::builder`]; [`ProducerConfig::default`]
/// holds the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Acknowledgement level. Default [`Acks::All`].
    pub acks: Acks,
    /// How long an open batch waits for more records before it is sealed. Default 5 ms.
    /// With [`ProducerConfig::send_when_idle`] this is an upper bound that applies only while
    /// the partition's leader has requests outstanding.
    pub linger: Duration,
    /// A batch whose leader has no produce request in flight is sent at once instead of
    /// waiting out `linger`. A lightly loaded producer then pays a round trip, not the linger,
    /// while a busy one still batches: records gather while earlier requests are answered.
    /// Default `true`; `false` always waits the full linger, as Kafka's Java client does.
    pub send_when_idle: bool,
    /// A batch is sealed once its records take this many bytes (uncompressed). Default 256 KiB.
    pub batch_bytes: usize,
    /// A batch is sealed once it holds this many records. Default 10 000.
    pub batch_records: usize,
    /// Memory for records enqueued but not yet acknowledged (key, value and header bytes plus
    /// a small per-record overhead). Default 32 MiB.
    pub buffer_bytes: usize,
    /// What `enqueue` does when the buffer is full. Default [`Backpressure::Block`].
    pub backpressure: Backpressure,
    /// Most produce requests outstanding to one broker. Default 5. With idempotence a
    /// partition also has at most 5 batches in flight; without it, 1 (so retries keep order).
    pub max_in_flight: usize,
    /// Most times one batch is resent after a retriable failure; the delivery timeout bounds
    /// retries too. Default `u32::MAX` (bounded by the delivery timeout only).
    pub retries: u32,
    /// First pause before a retry; doubles per attempt. Default 100 ms.
    pub retry_backoff: Duration,
    /// Longest pause before a retry. Default 1 s. Each pause is jittered by ±20 %.
    pub retry_backoff_max: Duration,
    /// How long one produce request may take before it counts as failed. Default 30 s.
    pub request_timeout: Duration,
    /// How long a record may take from `enqueue` to its acknowledgement, retries included,
    /// before it fails with [`super::ProducerError::DeliveryTimeout`]. Default 120 s.
    pub delivery_timeout: Duration,
    /// Idempotent delivery: batches are numbered per partition so that retries never write a
    /// record twice nor out of order. Default `true`; needs [`Acks::All`].
    pub idempotence: bool,
    /// Partitioning of records without key. Default [`KeylessPartitioning::Sticky`].
    pub keyless: KeylessPartitioning,
    /// Codec of each batch. Default [`Compression::None`].
    pub compression: Compression,
    /// Consecutive request failures that open a broker's circuit breaker. Default 5.
    pub breaker_failures: u32,
    /// How long an open breaker refuses requests before letting one probe through. Default 1 s.
    pub breaker_open: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            send_when_idle: true,
            batch_bytes: 256 * 1024,
            batch_records: 10_000,
            buffer_bytes: 32 * 1024 * 1024,
            backpressure: Backpressure::Block,
            max_in_flight: 5,
            retries: u32::MAX,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            idempotence: true,
            keyless: KeylessPartitioning::Sticky,
            compression: Compression::None,
            breaker_failures: 5,
            breaker_open: Duration::from_secs(1),
        }
    }
}

/// Most batches in flight per partition with idempotence: the broker remembers the last 5
/// batches per producer and partition, so a resent batch is always recognised.
pub const MAX_IN_FLIGHT_PER_PARTITION: usize = 5;

/// Largest batch: well under the gRPC message limit.
pub const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

fn range(name: &'static str, value: u64, min: u64, max: u64) -> Result<(), ProducerConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ProducerConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        })
    }
}

fn duration(
    name: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), ProducerConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ProducerConfigError::DurationOutOfRange {
            name,
            value,
            min,
            max,
        })
    }
}

impl ProducerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ProducerConfigBuilder {
        ProducerConfigBuilder {
            config: ProducerConfig::default(),
        }
    }

    /// Checks every setting against its range and the settings against each other.
    pub fn validate(&self) -> Result<(), ProducerConfigError> {
        let hour = Duration::from_secs(3600);
        duration(
            "linger",
            self.linger,
            Duration::ZERO,
            Duration::from_secs(60),
        )?;
        range(
            "batch_bytes",
            self.batch_bytes as u64,
            1,
            MAX_BATCH_BYTES as u64,
        )?;
        range("batch_records", self.batch_records as u64, 1, 1_000_000)?;
        range("buffer_bytes", self.buffer_bytes as u64, 1024, 1 << 40)?;
        range("max_in_flight", self.max_in_flight as u64, 1, 100)?;
        duration(
            "retry_backoff",
            self.retry_backoff,
            Duration::from_millis(1),
            Duration::from_secs(60),
        )?;
        duration(
            "retry_backoff_max",
            self.retry_backoff_max,
            self.retry_backoff,
            Duration::from_secs(300),
        )?;
        duration(
            "request_timeout",
            self.request_timeout,
            Duration::from_millis(1),
            hour,
        )?;
        duration(
            "delivery_timeout",
            self.delivery_timeout,
            Duration::from_millis(1),
            24 * hour,
        )?;
        range(
            "breaker_failures",
            u64::from(self.breaker_failures),
            1,
            1000,
        )?;
        duration(
            "breaker_open",
            self.breaker_open,
            Duration::from_millis(1),
            hour,
        )?;
        if let Backpressure::BlockFor(wait) = self.backpressure {
            duration("backpressure wait", wait, Duration::ZERO, hour)?;
        }
        if self.batch_bytes > self.buffer_bytes {
            return Err(ProducerConfigError::Exceeds {
                name: "batch_bytes",
                value: self.batch_bytes as u64,
                limit_name: "buffer_bytes",
                limit: self.buffer_bytes as u64,
            });
        }
        if self.idempotence && self.acks != Acks::All {
            return Err(ProducerConfigError::IdempotenceNeedsAcksAll {
                acks: self.acks.name(),
            });
        }
        Ok(())
    }

    /// Most batches of one partition in flight at once.
    pub fn max_in_flight_per_partition(&self) -> usize {
        if self.idempotence {
            self.max_in_flight.min(MAX_IN_FLIGHT_PER_PARTITION)
        } else if self.retries > 0 {
            // Without sequence numbers a retried batch would land after its successor.
            1
        } else {
            self.max_in_flight
        }
    }
}

/// Builds a [`ProducerConfig`]; [`ProducerConfigBuilder::build`] validates it.
#[derive(Debug, Clone)]
pub struct ProducerConfigBuilder {
    config: ProducerConfig,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl ProducerConfigBuilder {
    setters! {
        /// Sets [`ProducerConfig::acks`].
        acks: Acks;
        /// Sets [`ProducerConfig::linger`].
        linger: Duration;
        /// Sets [`ProducerConfig::send_when_idle`].
        send_when_idle: bool;
        /// Sets [`ProducerConfig::batch_bytes`].
        batch_bytes: usize;
        /// Sets [`ProducerConfig::batch_records`].
        batch_records: usize;
        /// Sets [`ProducerConfig::buffer_bytes`].
        buffer_bytes: usize;
        /// Sets [`ProducerConfig::backpressure`].
        backpressure: Backpressure;
        /// Sets [`ProducerConfig::max_in_flight`].
        max_in_flight: usize;
        /// Sets [`ProducerConfig::retries`].
        retries: u32;
        /// Sets [`ProducerConfig::retry_backoff`].
        retry_backoff: Duration;
        /// Sets [`ProducerConfig::retry_backoff_max`].
        retry_backoff_max: Duration;
        /// Sets [`ProducerConfig::request_timeout`].
        request_timeout: Duration;
        /// Sets [`ProducerConfig::delivery_timeout`].
        delivery_timeout: Duration;
        /// Sets [`ProducerConfig::idempotence`].
        idempotence: bool;
        /// Sets [`ProducerConfig::keyless`].
        keyless: KeylessPartitioning;
        /// Sets [`ProducerConfig::compression`].
        compression: Compression;
        /// Sets [`ProducerConfig::breaker_failures`].
        breaker_failures: u32;
        /// Sets [`ProducerConfig::breaker_open`].
        breaker_open: Duration;
    }

    /// The validated config.
    pub fn build(self) -> Result<ProducerConfig, ProducerConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let c = ProducerConfig::default();
        assert_eq!(c.acks, Acks::All);
        assert_eq!(c.linger, Duration::from_millis(5));
        assert!(c.send_when_idle);
        assert_eq!(c.batch_bytes, 262_144);
        assert_eq!(c.batch_records, 10_000);
        assert_eq!(c.buffer_bytes, 33_554_432);
        assert_eq!(c.backpressure, Backpressure::Block);
        assert_eq!(c.max_in_flight, 5);
        assert_eq!(c.retry_backoff, Duration::from_millis(100));
        assert_eq!(c.retry_backoff_max, Duration::from_secs(1));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.delivery_timeout, Duration::from_secs(120));
        assert!(c.idempotence);
        assert_eq!(c.keyless, KeylessPartitioning::Sticky);
        assert_eq!(
            (c.breaker_failures, c.breaker_open),
            (5, Duration::from_secs(1))
        );
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.max_in_flight_per_partition(), 5);
    }

    #[test]
    fn validate_names_the_value_and_the_limit() {
        let err = ProducerConfig::builder()
            .batch_records(0)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            ProducerConfigError::OutOfRange {
                name: "batch_records",
                value: 0,
                min: 1,
                max: 1_000_000
            }
        );
        assert_eq!(
            err.to_string(),
            "batch_records = 0 is out of range: it must be from 1 to 1000000"
        );
        let err = ProducerConfig::builder()
            .buffer_bytes(4096)
            .batch_bytes(8192)
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "batch_bytes = 8192 must not exceed buffer_bytes = 4096"
        );
        let err = ProducerConfig::builder()
            .acks(Acks::Leader)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            ProducerConfigError::IdempotenceNeedsAcksAll { acks: "1" }
        );
        let err = ProducerConfig::builder()
            .linger(Duration::from_secs(61))
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "linger = 61000 ms is out of range: it must be from 0 ms to 60000 ms"
        );
    }

    #[test]
    fn without_idempotence_retries_cap_in_flight_per_partition_at_one() {
        let c = ProducerConfig::builder()
            .idempotence(false)
            .acks(Acks::Leader)
            .max_in_flight(10)
            .build()
            .unwrap();
        assert_eq!(c.max_in_flight_per_partition(), 1);
        let c = ProducerConfig { retries: 0, ..c };
        assert_eq!(c.max_in_flight_per_partition(), 10);
    }
}
