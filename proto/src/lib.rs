//! Everything Brook puts on the wire.
//!
//! - [`batch`]: the record-batch binary format (Kafka RecordBatch v2 layout, magic 2): the unit
//!   that producers build, brokers store and replicate verbatim, and consumers read. Builder,
//!   zero-copy reader over [`bytes::Bytes`], header validation with CRC-32.
//! - [`types`]: newtypes for the positions every part agrees on ([`Offset`], [`LeaderEpoch`]).
//!
//! The gRPC API (package `brook.v1`) joins this crate with the broker issue.

pub mod batch;
pub mod types;

pub use batch::{
    BatchBuilder, BatchError, BatchHeader, Batches, Compression, Header, Record, RecordBatch,
    RecordField,
};
pub use types::{LeaderEpoch, Offset};
