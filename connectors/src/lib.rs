//! Kafka source and sink connectors for Brook, and the `brook-connect` binary that runs them.
//!
//! A *pipeline* mirrors topics one way: `kafka-to-brook` (a source connector) or
//! `brook-to-kafka` (a sink connector). Each side is a client: rdkafka (librdkafka) for Kafka,
//! brook-client for Brook. Offsets are committed on the source side (in the pipeline's
//! consumer group) only after the destination acknowledged every record before them, so
//! delivery is at least once and a restart resumes from the committed position.
//!
//! - [`config`]: [`ConnectConfig`], the TOML tree of `brook-connect`, and its validation.
//! - [`error`]: [`ConfigError`] and [`ConnectError`].
//! - [`record`]: [`MirrorRecord`] and the destination partition of a record.
//! - [`offsets`]: [`OffsetTracker`], what may be committed when acknowledgements come out of
//!   order.
//! - [`pipeline`]: the [`Reader`](pipeline::Reader) and [`Writer`](pipeline::Writer) sides and
//!   the loop between them, with backpressure.
//! - [`kafka_side`] and [`brook_side`]: the readers and writers of each cluster.
//! - [`supervisor`]: runs the pipelines, restarts failed runs, keeps the health state.
//! - [`metrics`] and [`http`]: `/metrics` and `/health`.
//!
//! Exactly-once into Kafka (Kafka transactions) is not offered: the source positions of a
//! `brook-to-kafka` pipeline live in Brook, which a Kafka transaction cannot commit
//! atomically with the records. See docs/connect.md.

pub mod brook_side;
pub mod config;
pub mod error;
pub mod http;
pub mod kafka_side;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod record;
pub mod supervisor;

pub use config::{ConnectConfig, Direction, Partitioning, PipelineConfig};
pub use error::{ConfigError, ConnectError};
pub use offsets::OffsetTracker;
pub use record::MirrorRecord;
