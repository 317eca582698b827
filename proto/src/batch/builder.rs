//! Building a batch the way a producer does: records appended one by one, then the records
//! compressed (if a codec is set) and the header and CRC written once.

use bytes::{BufMut, Bytes, BytesMut};
use integer_encoding::VarInt;

use super::layout::*;
use super::{Compression, Header, codec};

/// Builds one record batch, uncompressed unless [`BatchBuilder::compression`] names a codec.
///
/// Records are encoded into one buffer as they are appended; `build` writes the header into the
/// room left at its front, so an uncompressed batch is never copied. A compressed batch is the
/// header plus the records compressed into a second buffer.
///
/// ```
/// use brook_proto::{BatchBuilder, Compression, RecordBatch};
/// let mut b = BatchBuilder::new().compression(Compression::Lz4);
/// b.append(1_700_000_000_000, Some(b"key"), Some(b"value"), &[]);
/// let batch = RecordBatch::new(b.build(), 1 << 20).unwrap();
/// assert_eq!(batch.header().compression(), Compression::Lz4);
/// let record = batch.records().unwrap().next().unwrap().unwrap();
/// assert_eq!(record.value.as_deref(), Some(&b"value"[..]));
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    compression: Compression,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut tmp = [0u8; 10];
    let n = v.encode_var(&mut tmp);
    buf.put_slice(&tmp[..n]);
}

fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.put_slice(b);
        }
        None => put_varint(buf, -1),
    }
}

fn varint_len(v: i64) -> usize {
    v.required_space()
}

fn nullable_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        Some(b) => varint_len(b.len() as i64) + b.len(),
        None => 1,
    }
}

impl BatchBuilder {
    /// An empty builder with no producer id (non-idempotent).
    pub fn new() -> Self {
        Self::with_capacity(4096)
    }

    /// An empty builder whose buffer starts with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(bytes.max(HEADER_LEN));
        buf.put_bytes(0, HEADER_LEN);
        BatchBuilder {
            buf,
            count: 0,
            base_timestamp: 0,
            max_timestamp: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            compression: Compression::None,
        }
    }

    /// Marks the batch as sent by an idempotent producer.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Compresses the records section with `codec` when the batch is built (default
    /// [`Compression::None`]).
    pub fn compression(mut self, codec: Compression) -> Self {
        self.compression = codec;
        self
    }

    /// Appends a record. `timestamp` is milliseconds since the Unix epoch; the first record's
    /// timestamp becomes the batch's base timestamp.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        } else {
            self.max_timestamp = self.max_timestamp.max(timestamp);
        }
        let ts_delta = timestamp.wrapping_sub(self.base_timestamp);
        let offset_delta = self.count as i64;
        let mut body = 1 + varint_len(ts_delta) + varint_len(offset_delta);
        body += nullable_len(key) + nullable_len(value) + varint_len(headers.len() as i64);
        for h in headers {
            body += nullable_len(Some(&h.key)) + nullable_len(h.value.as_deref());
        }
        self.buf.reserve(body + 5);
        put_varint(&mut self.buf, body as i64);
        self.buf.put_i8(0);
        put_varint(&mut self.buf, ts_delta);
        put_varint(&mut self.buf, offset_delta);
        put_nullable(&mut self.buf, key);
        put_nullable(&mut self.buf, value);
        put_varint(&mut self.buf, headers.len() as i64);
        for h in headers {
            put_nullable(&mut self.buf, Some(&h.key));
            put_nullable(&mut self.buf, h.value.as_deref());
        }
        self.count += 1;
    }

    /// Records appended so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True before the first `append`.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if built now without compression, in bytes. With a codec the built
    /// batch is usually smaller; this is what the records cost before compression, and what
    /// a reader decompresses them to (plus the 61-byte header).
    pub fn size_in_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the buffer holds room for before it must grow.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Compresses the records (if a codec is set), writes the header and the CRC (over the
    /// compressed bytes) and returns the finished batch (base offset 0, leader epoch -1: the
    /// leader stamps both).
    pub fn build(self) -> Bytes {
        let mut buf = match self.compression {
            Compression::None => self.buf,
            codec => {
                let records = &self.buf[HEADER_LEN..];
                let mut out =
                    BytesMut::with_capacity(HEADER_LEN + codec::compressed_capacity(records.len()));
                out.put_bytes(0, HEADER_LEN);
                codec::compress(codec, records, out)
            }
        };
        let batch_length = (buf.len() - LOG_OVERHEAD) as i32;
        let mut h = &mut buf[..HEADER_LEN];
        h.put_i64(0);
        h.put_i32(batch_length);
        h.put_i32(-1);
        h.put_i8(MAGIC_V2);
        h.put_u32(0);
        h.put_i16(self.compression.id());
        h.put_i32((self.count - 1).max(0));
        h.put_i64(self.base_timestamp);
        h.put_i64(self.max_timestamp);
        h.put_i64(self.producer_id);
        h.put_i16(self.producer_epoch);
        h.put_i32(self.base_sequence);
        h.put_i32(self.count);
        let crc = crc32fast::hash(&buf[ATTRIBUTES..]);
        buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        buf.freeze()
    }
}
