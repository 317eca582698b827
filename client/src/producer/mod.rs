//! The batching producer.
//!
//! ```text
//!  Producer::enqueue ──reserve memory (backpressure)──> RecordBuffer: partitioner ─>
//!           Accumulator (seal by bytes / records; the sender seals by linger)
//!   sender task: sealed batches ─> per-partition queue (sequence numbers) ─> Produce to the leader
//!              (max in flight per broker and per partition, circuit breaker per broker,
//!               request timeout) ─> ack: settle the batch's futures, free memory
//!                                 ─> retriable: backoff with jitter, metadata refresh on
//!                                    NOT_LEADER / unknown topic, resend in order
//! ```
//!
//! - [`config`]: [`ProducerConfig`] and its builder, with the documented defaults.
//! - [`config_error`]: [`ProducerConfigError`] from `validate`.
//! - [`error`]: [`ProducerError`], why a record was refused or not delivered.
//! - [`record`]: [`ProducerRecord`] and [`RecordMetadata`].
//! - [`producer`]: [`Producer`], the handle, and [`DeliveryFuture`].
//! - [`backoff`]: [`Backoff`], exponential pauses with jitter.
//! - [`circuit_breaker`]: [`CircuitBreaker`], one per broker connection.
//! - `buffer`, `accumulator`: the open batches, which handles append to under one lock.
//! - `delivery`: one settlement per batch, read by its records' [`DeliveryFuture`]s.
//! - `metadata`, `sender`: the sender task's parts (crate-private).

mod accumulator;
pub mod backoff;
mod buffer;
pub mod circuit_breaker;
pub mod config;
pub mod config_error;
mod delivery;
pub mod error;
pub(crate) mod metadata;
#[allow(clippy::module_inception)]
pub mod producer;
pub mod record;
mod sender;

pub use backoff::Backoff;
pub use circuit_breaker::{BreakerState, CircuitBreaker};
pub use config::{Acks, Backpressure, KeylessPartitioning, ProducerConfig, ProducerConfigBuilder};
pub use config_error::ProducerConfigError;
pub use error::ProducerError;
pub use producer::{DeliveryFuture, Producer};
pub use record::{ProducerRecord, RecordMetadata};
