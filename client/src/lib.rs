//! Brook's client library and the `brook` command-line tool.
//!
//! - [`connection`]: [`Connection`], one gRPC channel to one broker with the `Broker` and
//!   `Admin` clients over it.
//! - [`error`]: [`ClientError`], every failure with its cause, retriable ones told apart.
//! - [`consumer`]: [`Consumer`], a consumer of assigned partitions that prefetches in the
//!   background, checks CRCs, decodes batches and seeks by offset or timestamp.
//! - [`partitioner`]: Kafka's murmur2 key partitioner, so a key maps to the same partition
//!   number in Brook and in Kafka.
//! - [`producer`]: [`Producer`], the batching, retrying, idempotent producer, and its
//!   [`ProducerConfig`].
//! - [`cli`]: the `brook` tool's commands as library functions (a [`Connection`], an input
//!   reader and output writers in, a result out), so tests run them in-process; the binary in
//!   `src/bin/brook.rs` only parses arguments, connects and maps errors to exit codes.
//!
//! Record batches are built and read
//! with `brook_proto::BatchBuilder` and `brook_proto::Batches`.

pub mod cli;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod partitioner;
mod produce_rpc;
pub mod producer;
pub mod security;

pub use connection::Connection;
pub use consumer::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerConfigError, ConsumerRecord, TopicPartition,
};
pub use error::ClientError;
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{Producer, ProducerConfig, ProducerError, ProducerRecord, RecordMetadata};
pub use security::Security;
