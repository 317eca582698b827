//! The record batch: Brook's unit of produce, storage, replication and fetch.
//!
//! Layout (big-endian, Kafka RecordBatch v2, magic 2):
//!
//! ```text
//! offset  size  field
//!      0     8  baseOffset            stamped by the leader
//!      8     4  batchLength           bytes after this field
//!     12     4  partitionLeaderEpoch  stamped by the leader
//!     16     1  magic (= 2)
//!     17     4  crc                   CRC-32 (IEEE) over bytes 21..end
//!     21     2  attributes            bits 0-2: compression codec
//!     23     4  lastOffsetDelta
//!     27     8  baseTimestamp
//!     35     8  maxTimestamp
//!     43     8  producerId
//!     51     2  producerEpoch
//!     53     4  baseSequence
//!     57     4  recordsCount
//!     61     …  records
//! ```
//!
//! The CRC starts at `attributes`, so a leader stamps `baseOffset` and `partitionLeaderEpoch`
//! without recomputing it, and the stored batch is byte for byte the batch the client built.
//!
//! Each record: `length` varint, `attributes` i8, `timestampDelta` varlong, `offsetDelta`
//! varint, `keyLength` varint (-1 = null), key, `valueLength` varint (-1 = null), value,
//! `headersCount` varint, then per header `keyLength` varint, key, `valueLength` varint, value.
//! Varints are zig-zag encoded as in protobuf's `sint32`/`sint64`.
//!
//! Compression ([`Compression`], attribute bits 0-2) covers the records section only, as one
//! blob: a compressed batch is the same 61-byte header followed by the compressed records, and
//! the header's counts, timestamps and CRC stay as they are (the CRC covers the compressed
//! bytes, so a broker checks a batch without decompressing it). [`BatchBuilder::compression`]
//! picks the codec; [`RecordBatch::records`] decompresses into one new buffer, up to
//! [`DEFAULT_MAX_DECOMPRESSED_BYTES`] (or the limit given to
//! [`RecordBatch::records_with_limit`]), and the records are slices of it. Each codec's
//! format is Kafka's:
//!
//! ```text
//! codec   bits  records section
//! none       0  the records as they are
//! gzip       1  one gzip member (level 6); concatenated members are read too
//! snappy     2  snappy-java ("xerial") framing: "\x82SNAPPY\0", i32 1, i32 1, then per
//!               32 KiB of input an i32 length and a raw snappy block; a single raw snappy
//!               block is read too
//! lz4        3  an LZ4 frame, 64 KiB independent blocks
//! zstd       4  one zstd frame (level 3) with its content size; several frames are read too
//! ```
//!
//! Layout by file: `header.rs` the fixed header, `compression.rs` the codec names,
//! `codec.rs` the compressed formats, `builder.rs` and `reader.rs` the records.

mod builder;
mod codec;
mod compression;
mod error;
mod header;
mod reader;

pub use builder::BatchBuilder;
pub use compression::{Compression, ParseCompressionError};
pub use error::{BatchError, RecordField};
pub use header::{BatchHeader, stamp};
pub use reader::{Batches, Header, Record, RecordBatch, Records};

/// Byte offsets of the header fields.
pub mod layout {
    /// `baseOffset` (i64).
    pub const BASE_OFFSET: usize = 0;
    /// `batchLength` (i32): the number of bytes that follow this field.
    pub const LENGTH: usize = 8;
    /// `partitionLeaderEpoch` (i32).
    pub const LEADER_EPOCH: usize = 12;
    /// `magic` (i8).
    pub const MAGIC: usize = 16;
    /// `crc` (u32).
    pub const CRC: usize = 17;
    /// `attributes` (i16): the CRC covers from here to the end.
    pub const ATTRIBUTES: usize = 21;
    /// `lastOffsetDelta` (i32).
    pub const LAST_OFFSET_DELTA: usize = 23;
    /// `baseTimestamp` (i64).
    pub const BASE_TIMESTAMP: usize = 27;
    /// `maxTimestamp` (i64).
    pub const MAX_TIMESTAMP: usize = 35;
    /// `producerId` (i64).
    pub const PRODUCER_ID: usize = 43;
    /// `producerEpoch` (i16).
    pub const PRODUCER_EPOCH: usize = 51;
    /// `baseSequence` (i32).
    pub const BASE_SEQUENCE: usize = 53;
    /// `recordsCount` (i32).
    pub const RECORDS_COUNT: usize = 57;
    /// Size of the fixed header; records start here.
    pub const HEADER_LEN: usize = 61;
    /// `baseOffset` + `batchLength`: the bytes not counted by `batchLength`.
    pub const LOG_OVERHEAD: usize = 12;
    /// The only magic value Brook reads and writes.
    pub const MAGIC_V2: i8 = 2;
}

/// Largest batch accepted when no tighter limit is configured (Kafka's `message.max.bytes`
/// default is about 1 MiB; Brook's per-topic limit defaults to the same).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Largest records section [`RecordBatch::records`] decompresses a compressed batch to. Far
/// above what a batch within [`DEFAULT_MAX_BATCH_BYTES`] holds at a normal compression ratio,
/// and small enough that a decompression bomb costs a bounded amount of memory.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
