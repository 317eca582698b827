//! Zero-copy reading: a validated batch over [`Bytes`], its records, and a walk over a buffer
//! of consecutive batches (a fetch response or a log segment). A compressed batch's records
//! are decompressed once into a new buffer and sliced from there.

use bytes::Bytes;
use integer_encoding::VarInt;

use super::layout::*;
use super::{
    BatchError, BatchHeader, Compression, DEFAULT_MAX_DECOMPRESSED_BYTES, RecordField, codec,
};

/// A record header: a key and an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header key (Kafka requires UTF-8; Brook carries bytes).
    pub key: Bytes,
    /// Header value, `None` for null.
    pub value: Option<Bytes>,
}

/// One decoded record. Key, value and header bytes share the batch's buffer (for a compressed
/// batch, the buffer its records were decompressed into).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset (batch base offset + offset delta).
    pub offset: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// `None` for a null key.
    pub key: Option<Bytes>,
    /// `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in the order they were written.
    pub headers: Vec<Header>,
}

/// A batch whose header, length and CRC have been validated.
#[derive(Debug, Clone)]
pub struct RecordBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl RecordBatch {
    /// Validates `bytes` as exactly one batch of at most `max_batch_bytes`.
    pub fn new(bytes: Bytes, max_batch_bytes: usize) -> Result<Self, BatchError> {
        let header = BatchHeader::validate(&bytes, max_batch_bytes)?;
        Ok(RecordBatch { header, bytes })
    }

    /// The decoded header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, exactly as stored.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Offset of the first record.
    pub fn base_offset(&self) -> i64 {
        self.header.base_offset
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    /// Number of records the header declares.
    pub fn records_count(&self) -> i32 {
        self.header.records_count
    }

    /// The records, decoded lazily. Each item fails with a typed error on malformed input;
    /// the iterator also fails if the batch holds more or fewer records than it declares.
    ///
    /// A compressed batch is decompressed here, up to [`DEFAULT_MAX_DECOMPRESSED_BYTES`]; see
    /// [`RecordBatch::records_with_limit`].
    pub fn records(&self) -> Result<Records, BatchError> {
        self.records_with_limit(DEFAULT_MAX_DECOMPRESSED_BYTES)
    }

    /// [`RecordBatch::records`] with a limit on what a compressed batch's records section may
    /// decompress to: past it the call fails with [`BatchError::DecompressedTooLarge`] having
    /// used at most `max_decompressed_bytes` (plus one) of memory. A corrupt compressed section
    /// is [`BatchError::Decompression`]. An uncompressed batch is read in place, whatever the
    /// limit.
    pub fn records_with_limit(&self, max_decompressed_bytes: usize) -> Result<Records, BatchError> {
        let (bytes, pos, origin) = match self.header.compression() {
            Compression::None => (self.bytes.clone(), HEADER_LEN, 0),
            compression => {
                let records = codec::decompress(
                    compression,
                    &self.bytes[HEADER_LEN..],
                    max_decompressed_bytes,
                )?;
                (Bytes::from(records), 0, HEADER_LEN)
            }
        };
        Ok(Records {
            bytes,
            pos,
            origin,
            index: 0,
            declared: self.header.records_count,
            last_offset_delta: self.header.last_offset_delta,
            prev_offset_delta: -1,
            base_offset: self.header.base_offset,
            base_timestamp: self.header.base_timestamp,
            done: false,
        })
    }
}

/// Iterator over a batch's records; see [`RecordBatch::records`].
#[derive(Debug)]
pub struct Records {
    /// The whole batch when uncompressed; the decompressed records section otherwise.
    bytes: Bytes,
    /// Where the next record starts in `bytes`.
    pos: usize,
    /// Position of `bytes[0]` in the batch's uncompressed form (0, or the header's size when
    /// `bytes` is a decompressed records section), so errors report the same position for
    /// the same records whatever the codec.
    origin: usize,
    index: i32,
    declared: i32,
    last_offset_delta: i32,
    /// Offset delta of the previous record (-1 before the first).
    prev_offset_delta: i32,
    base_offset: i64,
    base_timestamp: i64,
    done: bool,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl Cursor<'_> {
    fn varint(&mut self, max_len: usize) -> Option<i64> {
        let (v, n) = i64::decode_var(&self.buf[self.pos..self.end])?;
        if n > max_len {
            return None;
        }
        self.pos += n;
        Some(v)
    }

    fn varint32(&mut self) -> Option<i32> {
        self.varint(5).and_then(|v| i32::try_from(v).ok())
    }

    /// A length-prefixed, nullable byte string; returns its range in the buffer.
    fn nullable(&mut self) -> Option<Option<(usize, usize)>> {
        let len = self.varint32()?;
        if len == -1 {
            return Some(None);
        }
        let len = usize::try_from(len).ok()?;
        if len > self.end - self.pos {
            return None;
        }
        let start = self.pos;
        self.pos += len;
        Some(Some((start, self.pos)))
    }
}

impl Records {
    /// Decodes the record at `self.pos`. A [`BatchError::MalformedRecord`] names the field
    /// that failed and the byte where that field starts.
    fn decode_one(&mut self) -> Result<Record, BatchError> {
        let index = self.index;
        let buf: &[u8] = &self.bytes;
        let origin = self.origin;
        let fail = |pos: usize, field| BatchError::MalformedRecord {
            index,
            position: origin + pos,
            field,
        };
        let mut c = Cursor {
            buf,
            pos: self.pos,
            end: buf.len(),
        };
        let len = c.varint32().ok_or(fail(self.pos, RecordField::Length))?;
        let len = usize::try_from(len).map_err(|_| fail(self.pos, RecordField::Length))?;
        if len > c.end - c.pos || len == 0 {
            return Err(fail(self.pos, RecordField::Length));
        }
        c.end = c.pos + len;
        c.pos += 1; // attributes: unused in v2
        let at = c.pos;
        let ts_delta = c.varint(10).ok_or(fail(at, RecordField::TimestampDelta))?;
        let at = c.pos;
        let offset_delta = c.varint32().ok_or(fail(at, RecordField::OffsetDelta))?;
        // Offset deltas strictly increase (a compacted batch may have gaps) and stay within
        // the batch's `lastOffsetDelta`, so every record's offset lies in the batch's range.
        if offset_delta <= self.prev_offset_delta || offset_delta > self.last_offset_delta {
            return Err(fail(at, RecordField::OffsetDelta));
        }
        let at = c.pos;
        let key = c.nullable().ok_or(fail(at, RecordField::Key))?;
        let at = c.pos;
        let value = c.nullable().ok_or(fail(at, RecordField::Value))?;
        let at = c.pos;
        let n_headers = c.varint32().ok_or(fail(at, RecordField::HeaderCount))?;
        // Each header takes at least two bytes, which bounds the allocation below.
        if n_headers < 0 || n_headers as usize > (c.end - c.pos) / 2 {
            return Err(fail(at, RecordField::HeaderCount));
        }
        let mut headers = Vec::with_capacity(n_headers as usize);
        for _ in 0..n_headers {
            let at = c.pos;
            let k = match c.nullable() {
                Some(Some(k)) => k,
                _ => return Err(fail(at, RecordField::HeaderKey)),
            };
            let at = c.pos;
            let v = c.nullable().ok_or(fail(at, RecordField::HeaderValue))?;
            headers.push(Header {
                key: self.bytes.slice(k.0..k.1),
                value: v.map(|(s, e)| self.bytes.slice(s..e)),
            });
        }
        if c.pos != c.end {
            return Err(fail(c.pos, RecordField::TrailingBytes));
        }
        self.pos = c.end;
        self.prev_offset_delta = offset_delta;
        Ok(Record {
            // The base offset sits outside the CRC: a corrupt one must not overflow.
            offset: self.base_offset.wrapping_add(offset_delta as i64),
            timestamp: self.base_timestamp.wrapping_add(ts_delta),
            key: key.map(|(s, e)| self.bytes.slice(s..e)),
            value: value.map(|(s, e)| self.bytes.slice(s..e)),
            headers,
        })
    }
}

impl Iterator for Records {
    type Item = Result<Record, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.index == self.declared {
            self.done = true;
            if self.pos != self.bytes.len() {
                return Some(Err(BatchError::RecordCountMismatch {
                    declared: self.declared,
                    found: self.declared + 1,
                }));
            }
            return None;
        }
        if self.pos == self.bytes.len() {
            self.done = true;
            return Some(Err(BatchError::RecordCountMismatch {
                declared: self.declared,
                found: self.index,
            }));
        }
        match self.decode_one() {
            Ok(r) => {
                self.index += 1;
                Some(Ok(r))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Walks a buffer of consecutive batches (a fetch response, a segment). Each batch is fully
/// validated (length, magic, CRC, size limit). A partial batch at the end is reported as
/// [`BatchError::Truncated`]; after the first error the walk stops.
#[derive(Debug)]
pub struct Batches {
    bytes: Bytes,
    pos: usize,
    max_batch_bytes: usize,
    failed: bool,
}

impl Batches {
    /// Walks `bytes`, allowing batches of up to `max_batch_bytes`.
    pub fn new(bytes: Bytes, max_batch_bytes: usize) -> Self {
        Batches {
            bytes,
            pos: 0,
            max_batch_bytes,
            failed: false,
        }
    }

    /// Byte position of the next batch: after an error, where the bad batch starts.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos == self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.pos..];
        let result = BatchHeader::parse(rest).and_then(|h| {
            let size = h.total_size();
            if size > self.max_batch_bytes {
                return Err(BatchError::TooLarge {
                    size,
                    limit: self.max_batch_bytes,
                });
            }
            if size > rest.len() {
                return Err(BatchError::Truncated {
                    needed: size,
                    available: rest.len(),
                });
            }
            h.check_crc(&rest[..size])?;
            Ok(h)
        });
        match result {
            Ok(header) => {
                let end = self.pos + header.total_size();
                let bytes = self.bytes.slice(self.pos..end);
                self.pos = end;
                Some(Ok(RecordBatch { header, bytes }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
