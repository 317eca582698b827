//! Why a batch was rejected. Small and `Copy`: decoding is a hot path and reports its errors
//! without allocating.

use std::fmt;

/// A batch that failed validation or decoding. Every variant carries the offending value and,
/// where there is one, the limit it broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the fixed header or than `batchLength` announces.
    #[error("batch truncated: needs {needed} bytes, only {available} available")]
    Truncated {
        /// Bytes the header says the batch occupies (or the header size).
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// `batchLength` is too small to hold the fixed header.
    #[error("batch length {declared} is below the minimum of {minimum}")]
    LengthTooSmall {
        /// The declared `batchLength`.
        declared: i32,
        /// Smallest valid `batchLength`.
        minimum: i32,
    },
    /// The buffer holds a different number of bytes than the batch declares.
    #[error("batch declares {declared} bytes but the buffer holds {actual}")]
    LengthMismatch {
        /// `12 + batchLength`.
        declared: usize,
        /// The buffer's length.
        actual: usize,
    },
    /// The batch is larger than the configured limit.
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The batch's size in bytes.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A format version other than 2.
    #[error("unsupported batch magic {magic}: only magic 2 is supported")]
    UnsupportedMagic {
        /// The magic byte found.
        magic: i8,
    },
    /// The CRC stored in the header does not match the bytes.
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// Compression codec bits name no known codec.
    #[error("unknown compression codec {codec}: valid codecs are 0 to 4")]
    UnknownCompression {
        /// The attribute bits 0-2.
        codec: u8,
    },
    /// The records section of a compressed batch is not a valid stream of its codec (it is
    /// corrupt, truncated, has bytes past its end, or was compressed with another codec).
    #[error("cannot decompress the records: not valid {codec} data")]
    Decompression {
        /// The codec's name, as in Kafka's `compression.type`.
        codec: &'static str,
    },
    /// The records section of a compressed batch expands past the decompression limit (a
    /// decompression bomb, or a batch built for a reader with a larger limit).
    #[error("records decompress to more than the limit of {limit} bytes")]
    DecompressedTooLarge {
        /// The limit in force, in decompressed bytes.
        limit: usize,
    },
    /// `recordsCount` is negative.
    #[error("records count {count} is negative")]
    NegativeRecordCount {
        /// The declared count.
        count: i32,
    },
    /// `lastOffsetDelta` disagrees with `recordsCount` (a producer's batch has offset deltas
    /// `0..recordsCount`).
    #[error("last offset delta {last_offset_delta} does not match {records} records (expected {})", *records as i64 - 1)]
    OffsetDeltaMismatch {
        /// The declared `lastOffsetDelta`.
        last_offset_delta: i32,
        /// The declared `recordsCount`.
        records: i32,
    },
    /// The records section holds fewer or more records than `recordsCount`.
    #[error("batch declares {declared} records but holds {found}")]
    RecordCountMismatch {
        /// `recordsCount`.
        declared: i32,
        /// Records actually decoded (or, for trailing bytes, `declared + 1`).
        found: i32,
    },
    /// A record could not be decoded.
    #[error("record {index} is malformed at byte {position} of the batch: bad {field}")]
    MalformedRecord {
        /// Index of the record in the batch.
        index: i32,
        /// Byte position where the failing field starts (for trailing bytes, the first byte left
        /// over), counted in the batch's uncompressed form: for a compressed batch, 61 (the
        /// header's size) plus the position in the decompressed records section.
        position: usize,
        /// The field that could not be decoded.
        field: RecordField,
    },
}

/// A field of a record, named in [`BatchError::MalformedRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordField {
    /// The record's length prefix (missing, negative, or past the batch end).
    Length,
    /// The record attributes byte.
    Attributes,
    /// The timestamp delta varlong.
    TimestampDelta,
    /// The offset delta varint, or an offset delta that is not above the previous record's or
    /// is above the batch's `lastOffsetDelta`.
    OffsetDelta,
    /// The key length or key bytes.
    Key,
    /// The value length or value bytes.
    Value,
    /// The header count.
    HeaderCount,
    /// A header's key.
    HeaderKey,
    /// A header's value.
    HeaderValue,
    /// Bytes left over inside the record after its last header.
    TrailingBytes,
}

impl fmt::Display for RecordField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordField::Length => "record length",
            RecordField::Attributes => "attributes",
            RecordField::TimestampDelta => "timestamp delta",
            RecordField::OffsetDelta => "offset delta",
            RecordField::Key => "key",
            RecordField::Value => "value",
            RecordField::HeaderCount => "header count",
            RecordField::HeaderKey => "header key",
            RecordField::HeaderValue => "header value",
            RecordField::TrailingBytes => "trailing bytes",
        })
    }
}
