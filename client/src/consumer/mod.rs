//! The consumer: partitions assigned by the application, records prefetched in the
//! background, positions moved by offset or by timestamp.
//!
//! ```text
//!  application (Consumer)                 fetcher task (Fetcher)
//!  ──────────────────────                 ──────────────────────
//!  assign / seek / seek_to_* ─┐            ┌─ plan: Metadata for unknown leaders,
//!                             ▼  wake      │  ListOffsets for positions to look up,
//!                    Assignment (mutex) ───┘  one Fetch in flight per leader for the
//!                    per partition: epoch,    partitions below the buffer limit
//!                    position, records,    ┌─ file: CRC-check, decode, drop records below
//!  poll ◀─ drain ──  sticky error       ◀──┘  the fetch offset, queue per partition;
//!          (changed)                           drop answers of an older epoch
//! ```
//!
//! - [`Consumer`] (`consumer.rs`): the handle: assign, poll, seek, position, close.
//! - [`ConsumerConfig`] (`config.rs`) with its builder and [`AutoOffsetReset`];
//!   [`ConsumerConfigError`] (`config_error.rs`) names the setting, value and limit.
//! - [`TopicPartition`] and [`ConsumerRecord`]: what is assigned, and what `poll` returns.
//! - `assignment.rs`: the state the handle and the fetcher share: per-partition position,
//!   epoch, buffered records and sticky error.
//! - `fetcher.rs`: the background task; `brokers.rs`: leaders' connections; `fetched.rs`:
//!   fetched bytes to records; `retry.rs`: backoff and when a failure is reported.
//!
//! - [`run_batches`] (`batch_consumer.rs`): the batching consumer over a [`GroupConsumer`]:
//!   batches of N records or T, partitions in parallel, commit after the handler succeeded.
//! - [`GroupConsumer`] (`group_consumer.rs`): a member of a consumer group: the coordinator
//!   assigns its partitions, it resumes from committed offsets and commits what was processed;
//!   `coordinator.rs` finds the group's coordinator and follows it when it moves.

mod assignment;
mod batch_consumer;
mod brokers;
mod config;
mod config_error;
// The file is named after its main type, as every file here is.
#[allow(clippy::module_inception)]
mod consumer;
mod consumer_record;
pub(crate) mod coordinator;
mod fetched;
mod fetcher;
mod group_consumer;
mod retry;
mod topic_partition;

pub use batch_consumer::{BatchConfig, BatchRunError, run_batches};
pub use config::{
    AutoOffsetReset, ConsumerConfig, ConsumerConfigBuilder, DEFAULT_FETCH_MAX_BYTES,
    DEFAULT_FETCH_MAX_WAIT, DEFAULT_FETCH_MIN_BYTES, DEFAULT_MAX_POLL_RECORDS,
    DEFAULT_PARTITION_BUFFER_BYTES, DEFAULT_PARTITION_MAX_BYTES, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RETRY_BACKOFF, DEFAULT_RETRY_BACKOFF_MAX, DEFAULT_RETRY_TIMEOUT, MAX_FETCH_BYTES,
    MAX_FETCH_WAIT, MAX_PARTITION_BUFFER_BYTES, MAX_POLL_RECORDS, MAX_TIMEOUT, MIN_FETCH_BYTES,
};
pub use config_error::ConsumerConfigError;
pub use consumer::Consumer;
pub use consumer_record::ConsumerRecord;
pub use group_consumer::{GroupConsumer, GroupMemberConfig, NoListener, RebalanceListener};
pub use topic_partition::TopicPartition;
