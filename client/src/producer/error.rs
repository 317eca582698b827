//! [`ProducerError`]: why a record was not accepted or not delivered.

use std::sync::Arc;
use std::time::Duration;

use crate::ClientError;

use super::ProducerConfigError;

/// Why `enqueue` refused a record, or why an accepted record was not delivered.
///
/// Cloneable: one failed batch fails every record in it with the same error (the cause is
/// shared behind an `Arc`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProducerError {
    /// The config did not validate.
    #[error("invalid producer config")]
    Config(#[source] ProducerConfigError),
    /// [`super::Backpressure::FailFast`]: the buffer has no room for the record now.
    #[error(
        "record buffer full: the record needs {requested} bytes, {available} of {limit} are free"
    )]
    BufferFull {
        /// Bytes the record needs.
        requested: usize,
        /// Bytes free in the buffer.
        available: usize,
        /// The buffer's size (`buffer_bytes`).
        limit: usize,
    },
    /// [`super::Backpressure::BlockFor`]: the buffer stayed full for the whole wait.
    #[error("record buffer still full after waiting {} ms", .waited.as_millis())]
    BufferFullTimeout {
        /// How long `enqueue` waited.
        waited: Duration,
    },
    /// The record alone is larger than a batch or the whole buffer may be.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes ({setting})")]
    RecordTooLarge {
        /// The record's size.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
        /// The setting that sets the limit (`batch_bytes` or `buffer_bytes`).
        setting: &'static str,
    },
    /// The record names a partition the topic does not have.
    #[error("topic {topic} has {partitions} partitions, the record names partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// The topic's partition count.
        partitions: u32,
    },
    /// The topic does not exist (the metadata does not list it).
    #[error("topic {topic} does not exist")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// The record was not acknowledged within the delivery timeout.
    #[error("record not delivered within the delivery timeout of {} ms ({attempts} attempts){}", .timeout.as_millis(), LastError(.last_error))]
    DeliveryTimeout {
        /// The delivery timeout.
        timeout: Duration,
        /// Produce requests that carried the record's batch.
        attempts: u32,
        /// The last failure, if any attempt failed.
        last_error: Option<Arc<ClientError>>,
    },
    /// The broker or the transport failed the batch for good (a non-retriable error, or the
    /// retries were used up).
    #[error("delivery to topic {topic} partition {partition} failed after {attempts} attempts")]
    Delivery {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Produce requests that carried the batch.
        attempts: u32,
        /// The last failure.
        #[source]
        source: Arc<ClientError>,
    },
    /// With idempotence: an earlier batch of the partition failed for good while this
    /// record's batch had been sent without an answer, so it may or may not be written.
    /// Resending it under a new producer id could write it twice, so it is given up.
    #[error(
        "delivery to topic {topic} partition {partition} abandoned: an earlier batch failed and \
         this one may or may not have been written"
    )]
    Abandoned {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// With idempotence: an earlier record of the partition failed for good before this one
    /// was sent, and a partition gets no records after a failed one (no gaps), so this one
    /// was not written. Records enqueued after the failure was reported are written as usual.
    #[error(
        "not delivered to topic {topic} partition {partition}: an earlier record of the \
         partition failed, and a partition gets no records after a failed one"
    )]
    EarlierFailed {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The topic's metadata could not be loaded (the broker is unreachable or failed the
    /// request).
    #[error("cannot load the metadata of topic {topic}")]
    Metadata {
        /// The topic.
        topic: String,
        /// Why the Metadata request failed.
        #[source]
        source: Arc<ClientError>,
    },
    /// The producer could not start: the bootstrap broker is unreachable, or it refused a
    /// producer id.
    #[error("the producer could not start")]
    Setup(#[source] Arc<ClientError>),
    /// The producer was closed before the record was accepted or delivered.
    #[error("the producer is closed")]
    Closed,
}

impl ProducerError {
    /// True for the errors of a full buffer, which a caller may retry after a pause.
    pub fn is_buffer_full(&self) -> bool {
        matches!(
            self,
            ProducerError::BufferFull { .. } | ProducerError::BufferFullTimeout { .. }
        )
    }
}

impl From<ProducerConfigError> for ProducerError {
    fn from(err: ProducerConfigError) -> Self {
        ProducerError::Config(err)
    }
}

struct LastError<'a>(&'a Option<Arc<ClientError>>);

impl std::fmt::Display for LastError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(err) => write!(f, "; last error: {err}"),
            None => Ok(()),
        }
    }
}
