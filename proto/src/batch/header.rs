//! The fixed 61-byte batch header: parsing, validation, stamping.

use super::layout::*;
use super::{BatchError, Compression};

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (0 until the leader stamps it).
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch (-1 until stamped).
    pub partition_leader_epoch: i32,
    /// Format version; always 2 once validated.
    pub magic: i8,
    /// CRC-32 of bytes `attributes..end`.
    pub crc: u32,
    /// Attribute bits (compression in 0-2).
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record, ms since the epoch.
    pub base_timestamp: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 if none.
    pub producer_id: i64,
    /// Idempotent producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

#[inline]
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}
#[inline]
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}
#[inline]
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2-byte slice"))
}

impl BatchHeader {
    /// Decodes the fixed header at the start of `buf` and checks what the header alone can
    /// tell: enough bytes for a header, a `batchLength` that can hold it, magic 2, a known
    /// codec and non-negative counts. It does not check the CRC or that `buf` holds the whole
    /// batch (see [`BatchHeader::validate`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let header = BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET),
            batch_length: be_i32(buf, LENGTH),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH),
            magic: buf[MAGIC] as i8,
            crc: be_i32(buf, CRC) as u32,
            attributes: be_i16(buf, ATTRIBUTES),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP),
            producer_id: be_i64(buf, PRODUCER_ID),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH),
            base_sequence: be_i32(buf, BASE_SEQUENCE),
            records_count: be_i32(buf, RECORDS_COUNT),
        };
        const MIN_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;
        if header.batch_length < MIN_LENGTH {
            return Err(BatchError::LengthTooSmall {
                declared: header.batch_length,
                minimum: MIN_LENGTH,
            });
        }
        if header.magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic {
                magic: header.magic,
            });
        }
        Compression::from_attributes(header.attributes)?;
        if header.records_count < 0 {
            return Err(BatchError::NegativeRecordCount {
                count: header.records_count,
            });
        }
        if header.last_offset_delta < 0 || header.last_offset_delta < header.records_count - 1 {
            return Err(BatchError::OffsetDeltaMismatch {
                last_offset_delta: header.last_offset_delta,
                records: header.records_count,
            });
        }
        Ok(header)
    }

    /// Full validation of a buffer that must hold exactly one batch: [`BatchHeader::parse`],
    /// then the size limit, the length against the buffer, and the CRC.
    pub fn validate(buf: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
        let header = Self::parse(buf)?;
        let size = header.total_size();
        if size > max_batch_bytes {
            return Err(BatchError::TooLarge {
                size,
                limit: max_batch_bytes,
            });
        }
        if size != buf.len() {
            return Err(BatchError::LengthMismatch {
                declared: size,
                actual: buf.len(),
            });
        }
        header.check_crc(buf)?;
        Ok(header)
    }

    /// Checks the CRC against `batch`, which must hold the whole batch (bytes past the batch
    /// are ignored; a shorter buffer is [`BatchError::Truncated`]).
    pub fn check_crc(&self, batch: &[u8]) -> Result<(), BatchError> {
        let size = self.total_size();
        let Some(covered) = batch.get(ATTRIBUTES..size) else {
            return Err(BatchError::Truncated {
                needed: size,
                available: batch.len(),
            });
        };
        let computed = crc32fast::hash(covered);
        if computed != self.crc {
            return Err(BatchError::CrcMismatch {
                stored: self.crc,
                computed,
            });
        }
        Ok(())
    }

    /// Validation a leader adds for a batch a producer sent: the batch must hold at least one
    /// record and its offset deltas must be exactly `0..recordsCount`.
    pub fn check_produced(&self) -> Result<(), BatchError> {
        if self.records_count <= 0
            || i64::from(self.last_offset_delta) != i64::from(self.records_count) - 1
        {
            return Err(BatchError::OffsetDeltaMismatch {
                last_offset_delta: self.last_offset_delta,
                records: self.records_count,
            });
        }
        Ok(())
    }

    /// Bytes the whole batch occupies, header included.
    #[inline]
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the batch's last record. Wraps rather than overflows: `baseOffset` is outside
    /// the CRC, so a corrupt batch can carry any value there.
    #[inline]
    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(self.last_offset_delta as i64)
    }

    /// Offset following the batch (wrapping, like [`BatchHeader::last_offset`]).
    #[inline]
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// The compression codec (validated by `parse`).
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).unwrap_or_default()
    }
}

/// Writes `baseOffset` and `partitionLeaderEpoch` into the first 16 bytes of a batch (the part
/// outside the CRC). Returns the 16 stamped bytes, so a writer can put them in front of
/// `batch[16..]` without copying or mutating the batch.
pub fn stamp(batch_prefix: &[u8], base_offset: i64, leader_epoch: i32) -> [u8; MAGIC] {
    let mut out = [0u8; MAGIC];
    out[BASE_OFFSET..LENGTH].copy_from_slice(&base_offset.to_be_bytes());
    out[LENGTH..LEADER_EPOCH].copy_from_slice(&batch_prefix[LENGTH..LEADER_EPOCH]);
    out[LEADER_EPOCH..MAGIC].copy_from_slice(&leader_epoch.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_of_a_header_follows_its_attributes() {
        let mut buf = [0u8; HEADER_LEN];
        buf[LENGTH..LEADER_EPOCH].copy_from_slice(&49i32.to_be_bytes());
        buf[MAGIC] = MAGIC_V2 as u8;
        buf[ATTRIBUTES..LAST_OFFSET_DELTA].copy_from_slice(&0x0013i16.to_be_bytes());
        let header = BatchHeader::parse(&buf).unwrap();
        assert_eq!(header.compression(), Compression::Lz4);
    }

    #[test]
    fn stamp_copies_the_length_and_writes_offset_and_epoch() {
        let mut prefix = [0xaau8; MAGIC];
        prefix[LENGTH..LEADER_EPOCH].copy_from_slice(&1234i32.to_be_bytes());
        let stamped = stamp(&prefix, 0x0102_0304_0506_0708, -1);
        assert_eq!(
            stamped,
            [
                1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x04, 0xd2, 0xff, 0xff, 0xff, 0xff
            ]
        );
    }
}
