//! Everything Brook puts on the wire.
//!
//! - [`batch`]: the record-batch binary format (Kafka RecordBatch v2 layout, magic 2): the unit
//!   that producers build, brokers store and replicate verbatim, and consumers read. Builder,
//!   zero-copy reader over [`bytes::Bytes`], header validation with CRC-32, and per-batch
//!   compression (gzip, snappy, lz4, zstd) of the records section.
//! - [`types`]: newtypes for the positions every part agrees on ([`Offset`], [`LeaderEpoch`]).
//!
//! - [`v1`]: the gRPC API (package `brook.v1`, from `brook/v1/broker.proto`): prost messages
//!   and tonic clients and servers for the `Broker` and `Admin` services.

pub mod batch;
pub mod types;

/// The gRPC API, generated from `brook/v1/broker.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("brook.v1");
}

pub use batch::{
    BatchBuilder, BatchError, BatchHeader, Batches, Compression, Header, ParseCompressionError,
    Record, RecordBatch, RecordField,
};
pub use types::{LeaderEpoch, Offset};
