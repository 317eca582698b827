//! The record-batch format end to end: round trips through `BatchBuilder` and `RecordBatch`,
//! stamping, every typed rejection with its exact values, and the walk over consecutive
//! batches.
//!
//! Malformed batches are made by editing valid ones byte by byte; edits inside the CRC-covered
//! region (bytes 21..end) recompute the CRC, so each test reaches the check it is about.

use brook_proto::batch::{DEFAULT_MAX_BATCH_BYTES, layout, stamp};
use brook_proto::{
    BatchBuilder, BatchError, BatchHeader, Batches, Compression, Header, Record, RecordBatch,
    RecordField,
};
use bytes::Bytes;
use integer_encoding::VarInt;

const MAX: usize = DEFAULT_MAX_BATCH_BYTES;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A record as a test writes it.
#[derive(Debug, Clone)]
struct Spec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

type HeaderSpec<'a> = (&'a [u8], Option<&'a [u8]>);

fn spec(
    timestamp: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[HeaderSpec<'_>],
) -> Spec {
    Spec {
        timestamp,
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect(),
    }
}

fn headers_of(s: &Spec) -> Vec<Header> {
    s.headers
        .iter()
        .map(|(k, v)| Header {
            key: Bytes::copy_from_slice(k),
            value: v.as_deref().map(Bytes::copy_from_slice),
        })
        .collect()
}

fn build_with(mut builder: BatchBuilder, specs: &[Spec]) -> Bytes {
    for s in specs {
        builder.append(
            s.timestamp,
            s.key.as_deref(),
            s.value.as_deref(),
            &headers_of(s),
        );
    }
    builder.build()
}

fn build(specs: &[Spec]) -> Bytes {
    build_with(BatchBuilder::new(), specs)
}

/// The records `specs` must decode to in a batch whose base offset is `base_offset`.
fn expected(base_offset: i64, specs: &[Spec]) -> Vec<Record> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| Record {
            offset: base_offset + i as i64,
            timestamp: s.timestamp,
            key: s.key.clone().map(Bytes::from),
            value: s.value.clone().map(Bytes::from),
            headers: headers_of(s),
        })
        .collect()
}

/// Validates `bytes` and decodes every record, failing the test on any error.
fn decode(bytes: Bytes) -> Vec<Record> {
    RecordBatch::new(bytes, MAX)
        .expect("valid batch")
        .records()
        .expect("uncompressed batch")
        .collect::<Result<Vec<_>, _>>()
        .expect("well-formed records")
}

/// Every item the records iterator yields, errors included.
fn all_items(bytes: Bytes) -> Vec<Result<Record, BatchError>> {
    RecordBatch::new(bytes, MAX)
        .expect("valid batch")
        .records()
        .expect("uncompressed batch")
        .collect()
}

/// A small batch of three ordinary records.
fn three_records() -> Vec<Spec> {
    vec![
        spec(1_000, Some(b"k0"), Some(b"v0"), &[]),
        spec(1_001, None, Some(b"v1"), &[(b"h", Some(b"x"))]),
        spec(1_002, Some(b"k2"), None, &[]),
    ]
}

fn put_i16(b: &mut [u8], at: usize, v: i16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn put_i32(b: &mut [u8], at: usize, v: i32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn stored_crc(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[layout::CRC..layout::CRC + 4].try_into().unwrap())
}

/// Writes the CRC of bytes `21..end` into the header.
fn reseal(b: &mut [u8]) {
    let crc = crc32fast::hash(&b[layout::ATTRIBUTES..]);
    b[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets `batchLength` to match the buffer.
fn fit_length(b: &mut [u8]) {
    let len = (b.len() - layout::LOG_OVERHEAD) as i32;
    put_i32(b, layout::LENGTH, len);
}

/// A copy of `batch` edited by `edit`, with the CRC recomputed afterwards.
fn patched(batch: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut b = batch.to_vec();
    edit(&mut b);
    reseal(&mut b);
    Bytes::from(b)
}

/// A copy of `batch` edited by `edit`, CRC left as it was.
fn raw_patched(batch: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut b = batch.to_vec();
    edit(&mut b);
    Bytes::from(b)
}

fn varint(v: i64) -> Vec<u8> {
    v.encode_var_vec()
}

/// A record's bytes: its zig-zag varint length, then `body`.
fn record(body: &[u8]) -> Vec<u8> {
    let mut r = varint(body.len() as i64);
    r.extend_from_slice(body);
    r
}

/// The body of a well-formed record with timestamp delta 0 and no headers.
fn body(offset_delta: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
    let mut b = vec![0u8];
    b.extend(varint(0));
    b.extend(varint(offset_delta));
    for field in [key, value] {
        match field {
            Some(bytes) => {
                b.extend(varint(bytes.len() as i64));
                b.extend_from_slice(bytes);
            }
            None => b.extend(varint(-1)),
        }
    }
    b.extend(varint(0));
    b
}

/// A valid batch (correct length and CRC) whose records section is exactly `records`, with
/// `recordsCount = count` and `lastOffsetDelta = max(count - 1, 0)`.
fn raw_batch(count: i32, records: &[u8]) -> Bytes {
    let empty = BatchBuilder::new().build();
    patched(&empty, |b| {
        b.extend_from_slice(records);
        fit_length(b);
        put_i32(b, layout::RECORDS_COUNT, count);
        put_i32(b, layout::LAST_OFFSET_DELTA, (count - 1).max(0));
    })
}

/// The first (and only) record of a one-record raw batch: where its body starts.
const BODY: usize = layout::HEADER_LEN + 1;

/// The error decoding a one-record raw batch with this body fails with.
fn single_record_error(body: &[u8]) -> BatchError {
    let items = all_items(raw_batch(1, &record(body)));
    assert_eq!(
        items.len(),
        1,
        "one error, then the iterator ends: {items:?}"
    );
    items[0].clone().expect_err("malformed record")
}

fn malformed(index: i32, position: usize, field: RecordField) -> BatchError {
    BatchError::MalformedRecord {
        index,
        position,
        field,
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_batch_round_trips_with_exact_header() {
    let bytes = build(&[]);
    assert_eq!(bytes.len(), layout::HEADER_LEN);
    let batch = RecordBatch::new(bytes.clone(), MAX).unwrap();
    assert_eq!(
        *batch.header(),
        BatchHeader {
            base_offset: 0,
            batch_length: (layout::HEADER_LEN - layout::LOG_OVERHEAD) as i32,
            partition_leader_epoch: -1,
            magic: 2,
            crc: crc32fast::hash(&bytes[layout::ATTRIBUTES..]),
            attributes: 0,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: 0,
        }
    );
    assert_eq!(batch.records_count(), 0);
    assert_eq!(decode(bytes), vec![]);
}

#[test]
fn mixed_records_round_trip_field_for_field() {
    let big = vec![0x5a; 300];
    let specs = vec![
        spec(1_700_000_000_000, Some(b"key"), Some(b"value"), &[]),
        spec(1_700_000_000_005, None, Some(b"no key"), &[]),
        spec(1_700_000_000_001, Some(b"tombstone"), None, &[]),
        spec(1_700_000_000_002, None, None, &[]),
        spec(1_700_000_000_003, Some(b""), Some(b""), &[]),
        spec(
            1_700_000_000_004,
            Some(b"hdrs"),
            Some(&big),
            &[
                (b"trace", Some(b"abc")),
                (b"null-value", None),
                (b"", Some(b"")),
            ],
        ),
        spec(1_699_999_999_000, Some(&big), Some(b"v"), &[(b"h", None)]),
    ];
    let bytes = build(&specs);
    assert_eq!(decode(bytes), expected(0, &specs));
}

#[test]
fn null_and_empty_keys_and_values_stay_distinct() {
    let specs = vec![
        spec(0, None, None, &[]),
        spec(0, Some(b""), None, &[]),
        spec(0, None, Some(b""), &[]),
        spec(0, Some(b""), Some(b""), &[(b"", None), (b"", Some(b""))]),
    ];
    let records = decode(build(&specs));
    assert_eq!(records, expected(0, &specs));
    assert_eq!(records[0].key, None);
    assert_eq!(records[1].key, Some(Bytes::new()));
    assert_eq!(records[2].value, Some(Bytes::new()));
    assert_eq!(records[3].headers[0].value, None);
    assert_eq!(records[3].headers[1].value, Some(Bytes::new()));
}

#[test]
fn header_fields_are_exact() {
    let specs = vec![
        spec(1_000, Some(b"a"), Some(b"1"), &[]),
        spec(900, Some(b"b"), Some(b"2"), &[]),
        spec(1_500, Some(b"c"), Some(b"3"), &[]),
        spec(1_200, Some(b"d"), Some(b"4"), &[]),
    ];
    let bytes = build_with(BatchBuilder::new().producer(42, 3, 100), &specs);
    let batch = RecordBatch::new(bytes.clone(), MAX).unwrap();
    assert_eq!(
        *batch.header(),
        BatchHeader {
            base_offset: 0,
            batch_length: (bytes.len() - layout::LOG_OVERHEAD) as i32,
            partition_leader_epoch: -1,
            magic: 2,
            crc: crc32fast::hash(&bytes[layout::ATTRIBUTES..]),
            attributes: 0,
            last_offset_delta: 3,
            base_timestamp: 1_000,
            max_timestamp: 1_500,
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 100,
            records_count: 4,
        }
    );
    assert_eq!(batch.header().compression(), Compression::None);
    assert_eq!(batch.base_offset(), 0);
    assert_eq!(batch.last_offset(), 3);
    assert_eq!(batch.header().next_offset(), 4);
    assert_eq!(batch.header().total_size(), bytes.len());
    assert_eq!(batch.bytes(), &bytes);
    assert_eq!(decode(bytes), expected(0, &specs));
}

#[test]
fn producer_fields_default_to_minus_one() {
    let batch = RecordBatch::new(build(&three_records()), MAX).unwrap();
    let h = batch.header();
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (-1, -1, -1)
    );
}

#[test]
fn producer_fields_round_trip_at_their_extremes() {
    for (id, epoch, seq) in [
        (0, 0, 0),
        (i64::MAX, i16::MAX, i32::MAX),
        (i64::MIN, i16::MIN, i32::MIN),
    ] {
        let bytes = build_with(
            BatchBuilder::new().producer(id, epoch, seq),
            &three_records(),
        );
        let h = *RecordBatch::new(bytes, MAX).unwrap().header();
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (id, epoch, seq)
        );
    }
}

#[test]
fn out_of_order_timestamps_round_trip_with_negative_deltas() {
    let specs: Vec<Spec> = [5_000, 4_000, 6_000, -3_000, 5_000, 0]
        .into_iter()
        .map(|t| spec(t, Some(b"k"), Some(b"v"), &[]))
        .collect();
    let bytes = build(&specs);
    let h = *RecordBatch::new(bytes.clone(), MAX).unwrap().header();
    assert_eq!((h.base_timestamp, h.max_timestamp), (5_000, 6_000));
    assert_eq!(decode(bytes), expected(0, &specs));
}

#[test]
fn max_timestamp_is_the_largest_record_timestamp_even_when_all_are_negative() {
    let specs: Vec<Spec> = [-5_000, -10, -300]
        .into_iter()
        .map(|t| spec(t, None, Some(b"v"), &[]))
        .collect();
    let bytes = build(&specs);
    let h = *RecordBatch::new(bytes.clone(), MAX).unwrap().header();
    assert_eq!((h.base_timestamp, h.max_timestamp), (-5_000, -10));
    assert_eq!(decode(bytes), expected(0, &specs));
}

#[test]
fn extreme_timestamps_round_trip_through_wrapping_deltas() {
    let specs: Vec<Spec> = [i64::MAX, i64::MIN, 0, -1, i64::MIN + 1]
        .into_iter()
        .map(|t| spec(t, None, None, &[]))
        .collect();
    let bytes = build(&specs);
    let h = *RecordBatch::new(bytes.clone(), MAX).unwrap().header();
    assert_eq!((h.base_timestamp, h.max_timestamp), (i64::MAX, i64::MAX));
    assert_eq!(decode(bytes), expected(0, &specs));
}

#[test]
fn large_fields_and_many_records_round_trip() {
    // 70 000 bytes needs a three-byte length varint; 1 000 records need two-byte offset deltas.
    let huge = vec![7u8; 70_000];
    let mut specs = vec![spec(
        1,
        Some(&huge),
        Some(&huge),
        &[(&huge[..200], Some(&huge))],
    )];
    specs.extend((0..1_000).map(|i| {
        spec(
            1 + i * 1_000_003,
            Some(format!("key-{i}").as_bytes()),
            Some(&huge[..(i as usize % 300)]),
            &[],
        )
    }));
    let bytes = build(&specs);
    let batch = RecordBatch::new(bytes.clone(), MAX).unwrap();
    assert_eq!(batch.records_count(), 1_001);
    assert_eq!(batch.last_offset(), 1_000);
    assert_eq!(decode(bytes), expected(0, &specs));
}

#[test]
fn builder_reports_length_and_size_before_build() {
    let mut b = BatchBuilder::with_capacity(0);
    assert!(b.is_empty());
    assert_eq!((b.len(), b.size_in_bytes()), (0, layout::HEADER_LEN));
    b.append(1, Some(b"k"), Some(b"v"), &[]);
    b.append(2, None, None, &[]);
    assert!(!b.is_empty());
    assert_eq!(b.len(), 2);
    let size = b.size_in_bytes();
    assert_eq!(b.build().len(), size);
}

#[test]
fn builder_writes_the_documented_record_encoding() {
    let mut b = BatchBuilder::new();
    b.append(10, Some(b"k"), Some(b"vv"), &[]);
    b.append(
        7,
        None,
        Some(b""),
        &[Header {
            key: Bytes::from_static(b"h"),
            value: None,
        }],
    );
    let bytes = b.build();
    // length, attributes, timestampDelta, offsetDelta, key, value, headers.
    let mut want = record(&[0, 0, 0, 2, b'k', 4, b'v', b'v', 0]);
    // timestamp delta -3 (zig-zag 5), offset delta 1 (zig-zag 2), null key (1), empty value (0),
    // one header: key "h", null value.
    want.extend(record(&[0, 5, 2, 1, 0, 2, 2, b'h', 1]));
    assert_eq!(&bytes[layout::HEADER_LEN..], &want[..]);
}

#[test]
fn parse_reads_the_header_from_a_prefix_without_the_records() {
    let bytes = build(&three_records());
    let from_prefix = BatchHeader::parse(&bytes[..layout::HEADER_LEN]).unwrap();
    assert_eq!(from_prefix, BatchHeader::validate(&bytes, MAX).unwrap());
}

#[test]
fn records_share_the_batch_buffer() {
    let bytes = build(&[spec(0, Some(b"key"), Some(b"value"), &[])]);
    let record = decode(bytes.clone()).remove(0);
    let value = record.value.unwrap();
    let start = value.as_ptr() as usize - bytes.as_ptr() as usize;
    assert_eq!(&bytes[start..start + value.len()], b"value");
}

// ---------------------------------------------------------------------------------------------
// Stamping
// ---------------------------------------------------------------------------------------------

#[test]
fn stamp_sets_base_offset_and_epoch_and_keeps_the_crc_valid() {
    let specs = three_records();
    let batch = build(&specs);
    let stamped = stamp(&batch, 1_000, 7);
    assert_eq!(
        &stamped[layout::LENGTH..layout::LEADER_EPOCH],
        &batch[8..12]
    );

    let mut copy = batch.to_vec();
    copy[..layout::MAGIC].copy_from_slice(&stamped);
    assert_eq!(&copy[layout::MAGIC..], &batch[layout::MAGIC..]);

    let rb = RecordBatch::new(Bytes::from(copy), MAX).unwrap();
    assert_eq!(rb.base_offset(), 1_000);
    assert_eq!(rb.header().partition_leader_epoch, 7);
    assert_eq!(rb.header().crc, stored_crc(&batch));
    assert_eq!(rb.last_offset(), 1_002);
    assert_eq!(rb.header().next_offset(), 1_003);
    let records: Vec<Record> = rb.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(records, expected(1_000, &specs));
}

#[test]
fn stamp_needs_only_the_first_sixteen_bytes_and_can_restamp() {
    let batch = build(&three_records());
    let first = stamp(&batch[..layout::MAGIC], 5, 1);
    let mut copy = batch.to_vec();
    copy[..layout::MAGIC].copy_from_slice(&first);
    let second = stamp(&copy, i64::MAX - 2, i32::MAX);
    copy[..layout::MAGIC].copy_from_slice(&second);

    let rb = RecordBatch::new(Bytes::from(copy), MAX).unwrap();
    assert_eq!(rb.base_offset(), i64::MAX - 2);
    assert_eq!(rb.header().partition_leader_epoch, i32::MAX);
    assert_eq!(rb.last_offset(), i64::MAX);
    let offsets: Vec<i64> = rb.records().unwrap().map(|r| r.unwrap().offset).collect();
    assert_eq!(offsets, vec![i64::MAX - 2, i64::MAX - 1, i64::MAX]);
}

// ---------------------------------------------------------------------------------------------
// Header rejections
// ---------------------------------------------------------------------------------------------

#[test]
fn buffer_shorter_than_header_is_truncated() {
    let bytes = build(&three_records());
    for len in [0, 1, layout::HEADER_LEN - 1] {
        let want = BatchError::Truncated {
            needed: layout::HEADER_LEN,
            available: len,
        };
        assert_eq!(BatchHeader::parse(&bytes[..len]), Err(want));
        assert_eq!(BatchHeader::validate(&bytes[..len], MAX), Err(want));
        assert_eq!(RecordBatch::new(bytes.slice(..len), MAX).err(), Some(want));
    }
}

#[test]
fn batch_length_below_header_is_length_too_small() {
    let bytes = build(&three_records());
    for declared in [48, 0, -1, i32::MIN] {
        let bad = raw_patched(&bytes, |b| put_i32(b, layout::LENGTH, declared));
        let want = BatchError::LengthTooSmall {
            declared,
            minimum: 49,
        };
        assert_eq!(BatchHeader::parse(&bad), Err(want));
        assert_eq!(BatchHeader::validate(&bad, MAX), Err(want));
    }
}

#[test]
fn buffer_longer_than_declared_is_length_mismatch() {
    let bytes = build(&three_records());
    let longer = raw_patched(&bytes, |b| b.extend_from_slice(&[0; 5]));
    assert_eq!(
        BatchHeader::validate(&longer, MAX),
        Err(BatchError::LengthMismatch {
            declared: bytes.len(),
            actual: bytes.len() + 5,
        })
    );
}

#[test]
fn buffer_shorter_than_declared_is_length_mismatch() {
    let bytes = build(&three_records());
    let shorter = bytes.slice(..bytes.len() - 1);
    assert_eq!(
        BatchHeader::validate(&shorter, MAX),
        Err(BatchError::LengthMismatch {
            declared: bytes.len(),
            actual: bytes.len() - 1,
        })
    );
    // `parse` looks at the header only and accepts it.
    assert_eq!(
        BatchHeader::parse(&shorter).map(|h| h.total_size()),
        Ok(bytes.len())
    );
}

#[test]
fn batch_over_the_limit_is_too_large_with_size_and_limit() {
    let bytes = build(&three_records());
    let size = bytes.len();
    assert_eq!(
        BatchHeader::validate(&bytes, size - 1),
        Err(BatchError::TooLarge {
            size,
            limit: size - 1,
        })
    );
    assert_eq!(
        RecordBatch::new(bytes.clone(), 64).err(),
        Some(BatchError::TooLarge { size, limit: 64 })
    );
    assert!(BatchHeader::validate(&bytes, size).is_ok());
}

#[test]
fn declared_length_over_the_limit_is_too_large_before_any_length_check() {
    // A header claiming an enormous batch is rejected for its size, not for the buffer.
    let bytes = build(&three_records());
    let bad = raw_patched(&bytes, |b| put_i32(b, layout::LENGTH, i32::MAX));
    assert_eq!(
        BatchHeader::validate(&bad, MAX),
        Err(BatchError::TooLarge {
            size: i32::MAX as usize + 12,
            limit: MAX,
        })
    );
}

#[test]
fn magic_other_than_two_is_unsupported() {
    let bytes = build(&three_records());
    for magic in [0i8, 1, 3, -1, i8::MIN] {
        let bad = raw_patched(&bytes, |b| b[layout::MAGIC] = magic as u8);
        let want = BatchError::UnsupportedMagic { magic };
        assert_eq!(BatchHeader::parse(&bad), Err(want));
        assert_eq!(BatchHeader::validate(&bad, MAX), Err(want));
    }
}

#[test]
fn crc_mismatch_reports_stored_and_computed() {
    let bytes = build(&three_records());
    let stored = stored_crc(&bytes);
    let last = bytes.len() - 1;
    let bad = raw_patched(&bytes, |b| b[last] ^= 0x01);
    let computed = crc32fast::hash(&bad[layout::ATTRIBUTES..]);
    assert_ne!(computed, stored);
    let want = BatchError::CrcMismatch { stored, computed };
    assert_eq!(BatchHeader::validate(&bad, MAX), Err(want));
    assert_eq!(RecordBatch::new(bad.clone(), MAX).err(), Some(want));
    // `parse` does not look at the CRC.
    assert!(BatchHeader::parse(&bad).is_ok());
}

#[test]
fn corrupt_stored_crc_is_a_crc_mismatch() {
    let bytes = build(&three_records());
    let bad = raw_patched(&bytes, |b| {
        b[layout::CRC..layout::CRC + 4].copy_from_slice(&0xdead_beef_u32.to_be_bytes())
    });
    assert_eq!(
        BatchHeader::validate(&bad, MAX),
        Err(BatchError::CrcMismatch {
            stored: 0xdead_beef,
            computed: stored_crc(&bytes),
        })
    );
}

#[test]
fn crc_covers_every_field_from_attributes_on() {
    let bytes = build_with(BatchBuilder::new().producer(1, 2, 3), &three_records());
    let stored = stored_crc(&bytes);
    let count_bytes = layout::RECORDS_COUNT..layout::RECORDS_COUNT + 4;
    for at in layout::ATTRIBUTES..bytes.len() {
        let bad = raw_patched(&bytes, |b| b[at] ^= 0x80);
        let read_i32 = |at: usize| i32::from_be_bytes(bad[at..at + 4].try_into().unwrap());
        let want = if at == layout::RECORDS_COUNT {
            // The count turned negative: `parse` rejects it before the CRC is looked at.
            BatchError::NegativeRecordCount {
                count: read_i32(layout::RECORDS_COUNT),
            }
        } else if at == layout::LAST_OFFSET_DELTA || count_bytes.contains(&at) {
            // A negative lastOffsetDelta, or a count far above it.
            BatchError::OffsetDeltaMismatch {
                last_offset_delta: read_i32(layout::LAST_OFFSET_DELTA),
                records: read_i32(layout::RECORDS_COUNT),
            }
        } else {
            BatchError::CrcMismatch {
                stored,
                computed: crc32fast::hash(&bad[layout::ATTRIBUTES..]),
            }
        };
        assert_eq!(BatchHeader::validate(&bad, MAX), Err(want), "byte {at}");
    }
}

#[test]
fn check_crc_on_a_buffer_shorter_than_the_batch_is_truncated() {
    let bytes = build(&three_records());
    let header = BatchHeader::parse(&bytes).unwrap();
    let short = &bytes[..bytes.len() - 3];
    assert_eq!(
        header.check_crc(short),
        Err(BatchError::Truncated {
            needed: bytes.len(),
            available: bytes.len() - 3,
        })
    );
    assert_eq!(header.check_crc(&bytes), Ok(()));
}

#[test]
fn unknown_codec_is_unknown_compression() {
    let bytes = build(&three_records());
    for codec in 5u8..=7 {
        // Other attribute bits must not hide the codec.
        let bad = patched(&bytes, |b| {
            put_i16(b, layout::ATTRIBUTES, 0x0010 | codec as i16)
        });
        let want = BatchError::UnknownCompression { codec };
        assert_eq!(BatchHeader::parse(&bad), Err(want));
        assert_eq!(BatchHeader::validate(&bad, MAX), Err(want));
        assert_eq!(RecordBatch::new(bad, MAX).err(), Some(want));
    }
}

#[test]
fn records_labelled_with_a_codec_they_were_not_compressed_with_fail_to_decompress() {
    let bytes = build(&three_records());
    for (codec, name) in [
        (Compression::Gzip, "gzip"),
        (Compression::Snappy, "snappy"),
        (Compression::Lz4, "lz4"),
        (Compression::Zstd, "zstd"),
    ] {
        let relabelled = patched(&bytes, |b| put_i16(b, layout::ATTRIBUTES, codec.id()));
        // The broker's checks pass: the CRC covers the bytes as they are.
        let batch = RecordBatch::new(relabelled, MAX).unwrap();
        assert_eq!(batch.header().compression(), codec);
        assert_eq!(
            batch.records().err(),
            Some(BatchError::Decompression { codec: name })
        );
    }
}

#[test]
fn negative_records_count_is_rejected() {
    let bytes = build(&three_records());
    for count in [-1, i32::MIN] {
        let bad = patched(&bytes, |b| put_i32(b, layout::RECORDS_COUNT, count));
        let want = BatchError::NegativeRecordCount { count };
        assert_eq!(BatchHeader::parse(&bad), Err(want));
        assert_eq!(BatchHeader::validate(&bad, MAX), Err(want));
    }
}

#[test]
fn last_offset_delta_below_records_count_is_offset_delta_mismatch() {
    let bytes = build(&three_records());
    let bad = patched(&bytes, |b| put_i32(b, layout::LAST_OFFSET_DELTA, 1));
    let want = BatchError::OffsetDeltaMismatch {
        last_offset_delta: 1,
        records: 3,
    };
    assert_eq!(BatchHeader::parse(&bad), Err(want));
    assert_eq!(BatchHeader::validate(&bad, MAX), Err(want));
}

#[test]
fn negative_last_offset_delta_is_offset_delta_mismatch_even_without_records() {
    let bytes = build(&[]);
    let bad = patched(&bytes, |b| put_i32(b, layout::LAST_OFFSET_DELTA, -1));
    assert_eq!(
        BatchHeader::validate(&bad, MAX),
        Err(BatchError::OffsetDeltaMismatch {
            last_offset_delta: -1,
            records: 0,
        })
    );
}

#[test]
fn check_produced_accepts_a_built_batch() {
    let header = BatchHeader::validate(&build(&three_records()), MAX).unwrap();
    assert_eq!(header.check_produced(), Ok(()));
}

#[test]
fn check_produced_rejects_a_batch_without_records() {
    let header = BatchHeader::validate(&build(&[]), MAX).unwrap();
    assert_eq!(
        header.check_produced(),
        Err(BatchError::OffsetDeltaMismatch {
            last_offset_delta: 0,
            records: 0,
        })
    );
}

#[test]
fn check_produced_rejects_offset_gaps_that_parse_allows() {
    let bytes = build(&three_records());
    let gapped = patched(&bytes, |b| put_i32(b, layout::LAST_OFFSET_DELTA, 5));
    let header = BatchHeader::validate(&gapped, MAX).unwrap();
    assert_eq!(header.last_offset(), 5);
    assert_eq!(
        header.check_produced(),
        Err(BatchError::OffsetDeltaMismatch {
            last_offset_delta: 5,
            records: 3,
        })
    );
}

#[test]
fn check_produced_rejects_a_hand_made_header_with_a_negative_count() {
    let mut header = BatchHeader::validate(&build(&three_records()), MAX).unwrap();
    header.records_count = i32::MIN;
    header.last_offset_delta = i32::MAX;
    assert_eq!(
        header.check_produced(),
        Err(BatchError::OffsetDeltaMismatch {
            last_offset_delta: i32::MAX,
            records: i32::MIN,
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Record count disagreements
// ---------------------------------------------------------------------------------------------

#[test]
fn header_declaring_more_records_than_present_is_record_count_mismatch() {
    let specs = three_records();
    let bad = patched(&build(&specs), |b| {
        put_i32(b, layout::RECORDS_COUNT, 5);
        put_i32(b, layout::LAST_OFFSET_DELTA, 4);
    });
    let mut want: Vec<Result<Record, BatchError>> =
        expected(0, &specs).into_iter().map(Ok).collect();
    want.push(Err(BatchError::RecordCountMismatch {
        declared: 5,
        found: 3,
    }));
    assert_eq!(all_items(bad), want);
}

#[test]
fn header_declaring_fewer_records_than_present_is_record_count_mismatch() {
    let specs = three_records();
    let bad = patched(&build(&specs), |b| put_i32(b, layout::RECORDS_COUNT, 2));
    let mut want: Vec<Result<Record, BatchError>> =
        expected(0, &specs[..2]).into_iter().map(Ok).collect();
    want.push(Err(BatchError::RecordCountMismatch {
        declared: 2,
        found: 3,
    }));
    assert_eq!(all_items(bad), want);
}

#[test]
fn trailing_bytes_after_the_last_record_are_record_count_mismatch() {
    let specs = three_records();
    let bad = patched(&build(&specs), |b| {
        b.extend_from_slice(&[0xde, 0xad]);
        fit_length(b);
    });
    let mut want: Vec<Result<Record, BatchError>> =
        expected(0, &specs).into_iter().map(Ok).collect();
    want.push(Err(BatchError::RecordCountMismatch {
        declared: 3,
        found: 4,
    }));
    assert_eq!(all_items(bad), want);
}

#[test]
fn records_in_a_batch_declaring_none_are_record_count_mismatch() {
    let bad = patched(&build(&three_records()), |b| {
        put_i32(b, layout::RECORDS_COUNT, 0);
        put_i32(b, layout::LAST_OFFSET_DELTA, 0);
    });
    assert_eq!(
        all_items(bad),
        vec![Err(BatchError::RecordCountMismatch {
            declared: 0,
            found: 1,
        })]
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed records
// ---------------------------------------------------------------------------------------------

#[test]
fn hand_encoded_record_decodes() {
    let items = all_items(raw_batch(1, &record(&body(0, Some(b"k"), None))));
    assert_eq!(
        items,
        vec![Ok(Record {
            offset: 0,
            timestamp: 0,
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![],
        })]
    );
}

#[test]
fn record_length_that_is_negative_zero_or_past_the_end_is_malformed_length() {
    let at = layout::HEADER_LEN;
    for records in [
        varint(-1),
        varint(-5),
        varint(0),
        // Length 100, but only 7 bytes follow.
        [varint(100), body(0, None, None)].concat(),
        // A length varint that never ends.
        vec![0x80],
        vec![0xff; 6],
    ] {
        let items = all_items(raw_batch(1, &records));
        assert_eq!(
            items,
            vec![Err(malformed(0, at, RecordField::Length))],
            "{records:?}"
        );
    }
}

#[test]
fn unterminated_timestamp_varint_is_malformed_timestamp_delta() {
    // Body: attributes, then a varint with the continuation bit set up to the record's end.
    assert_eq!(
        single_record_error(&[0, 0x80, 0x80]),
        malformed(0, BODY + 1, RecordField::TimestampDelta)
    );
    // Ten bytes all continuing: longer than any varlong.
    let mut b = vec![0];
    b.extend([0xff; 10]);
    b.extend(body(0, None, None));
    assert_eq!(
        single_record_error(&b),
        malformed(0, BODY + 1, RecordField::TimestampDelta)
    );
}

#[test]
fn offset_delta_varint_longer_than_five_bytes_is_malformed() {
    // Zero encoded in six bytes.
    let b = [
        &[0u8, 0][..],
        &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00],
        &[1, 1, 0],
    ]
    .concat();
    assert_eq!(
        single_record_error(&b),
        malformed(0, BODY + 2, RecordField::OffsetDelta)
    );
}

#[test]
fn offset_delta_outside_i32_is_malformed() {
    let b = [&[0u8, 0][..], &varint(i64::from(i32::MAX) + 1), &[1, 1, 0]].concat();
    assert_eq!(
        single_record_error(&b),
        malformed(0, BODY + 2, RecordField::OffsetDelta)
    );
}

#[test]
fn offset_delta_that_repeats_is_malformed_at_the_second_record() {
    let r0 = record(&body(0, None, None));
    let r1 = record(&body(0, None, None));
    let items = all_items(raw_batch(2, &[r0.clone(), r1].concat()));
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[1],
        Err(malformed(
            1,
            layout::HEADER_LEN + r0.len() + 1 + 2,
            RecordField::OffsetDelta
        ))
    );
}

#[test]
fn offset_delta_past_last_offset_delta_is_malformed() {
    // One record, lastOffsetDelta 0, but the record claims offset delta 1: it would report an
    // offset that belongs to the next batch.
    assert_eq!(
        single_record_error(&body(1, None, None)),
        malformed(0, BODY + 2, RecordField::OffsetDelta)
    );
}

#[test]
fn offset_deltas_with_gaps_decode_when_increasing_within_last_offset_delta() {
    let records = [
        record(&body(0, None, None)),
        record(&body(2, None, None)),
        record(&body(5, None, None)),
    ]
    .concat();
    let batch = patched(&raw_batch(3, &records), |b| {
        put_i32(b, layout::LAST_OFFSET_DELTA, 5);
    });
    let offsets: Vec<Result<i64, BatchError>> = all_items(batch)
        .into_iter()
        .map(|r| r.map(|r| r.offset))
        .collect();
    assert_eq!(offsets, vec![Ok(0), Ok(2), Ok(5)]);
}

#[test]
fn offset_deltas_that_go_backwards_are_malformed() {
    let r0 = record(&body(0, None, None));
    let r1 = record(&body(4, None, None));
    let r2 = record(&body(3, None, None));
    let batch = patched(&raw_batch(3, &[r0.clone(), r1.clone(), r2].concat()), |b| {
        put_i32(b, layout::LAST_OFFSET_DELTA, 5);
    });
    let items = all_items(batch);
    assert_eq!(items.len(), 3);
    assert_eq!(
        items[2],
        Err(malformed(
            2,
            layout::HEADER_LEN + r0.len() + r1.len() + 1 + 2,
            RecordField::OffsetDelta
        ))
    );
}

#[test]
fn key_length_past_the_record_end_is_malformed_key() {
    // The key claims 4 bytes but the record ends after 3; a second record follows, so the
    // bytes exist in the batch, just not in this record.
    let b = [&[0u8, 0, 0][..], &varint(4), b"abc"].concat();
    let records = [record(&b), record(&body(1, None, None))].concat();
    let items = all_items(raw_batch(2, &records));
    assert_eq!(items, vec![Err(malformed(0, BODY + 3, RecordField::Key))]);
}

#[test]
fn key_length_past_the_batch_end_is_malformed_key() {
    let b = [&[0u8, 0, 0][..], &varint(1_000), b"abc"].concat();
    assert_eq!(
        single_record_error(&b),
        malformed(0, BODY + 3, RecordField::Key)
    );
}

#[test]
fn negative_key_length_other_than_minus_one_is_malformed_key() {
    for len in [-2, -100, i64::from(i32::MIN)] {
        let b = [&[0u8, 0, 0][..], &varint(len), &[1, 0]].concat();
        assert_eq!(
            single_record_error(&b),
            malformed(0, BODY + 3, RecordField::Key),
            "key length {len}"
        );
    }
}

#[test]
fn negative_value_length_other_than_minus_one_is_malformed_value() {
    // attributes, ts 0, offset 0, key "k", value length -7.
    let b = [&[0u8, 0, 0, 2, b'k'][..], &varint(-7), &[0]].concat();
    assert_eq!(
        single_record_error(&b),
        malformed(0, BODY + 5, RecordField::Value)
    );
}

#[test]
fn value_past_the_record_end_is_malformed_value() {
    let b = [&[0u8, 0, 0, 1][..], &varint(9), b"short"].concat();
    assert_eq!(
        single_record_error(&b),
        malformed(0, BODY + 4, RecordField::Value)
    );
}

#[test]
fn missing_header_count_is_malformed_header_count() {
    assert_eq!(
        single_record_error(&[0, 0, 0, 1, 1]),
        malformed(0, BODY + 5, RecordField::HeaderCount)
    );
}

#[test]
fn negative_or_oversized_header_count_is_malformed_header_count() {
    for count in [-1, 3, i64::from(i32::MAX)] {
        // One byte would follow the count: room for no header at all.
        let b = [&[0u8, 0, 0, 1, 1][..], &varint(count), &[0]].concat();
        assert_eq!(
            single_record_error(&b),
            malformed(0, BODY + 5, RecordField::HeaderCount),
            "header count {count}"
        );
    }
}

#[test]
fn null_header_key_is_malformed_header_key() {
    let b = [0u8, 0, 0, 1, 1, 2, 1, 1];
    assert_eq!(
        single_record_error(&b),
        malformed(0, BODY + 6, RecordField::HeaderKey)
    );
}

#[test]
fn header_key_past_the_record_end_is_malformed_header_key() {
    let b = [0u8, 0, 0, 1, 1, 2, 20, b'h', 1];
    assert_eq!(
        single_record_error(&b),
        malformed(0, BODY + 6, RecordField::HeaderKey)
    );
}

#[test]
fn header_value_past_the_record_end_is_malformed_header_value() {
    // One header: key "h", value length 20 with nothing after it.
    let b = [0u8, 0, 0, 1, 1, 2, 2, b'h', 40, 0];
    assert_eq!(
        single_record_error(&b),
        malformed(0, BODY + 8, RecordField::HeaderValue)
    );
}

#[test]
fn bytes_left_in_a_record_after_its_headers_are_malformed_trailing_bytes() {
    let mut b = body(0, Some(b"k"), Some(b"v"));
    let end = b.len();
    b.extend([0xaa, 0xbb]);
    assert_eq!(
        single_record_error(&b),
        malformed(0, BODY + end, RecordField::TrailingBytes)
    );
}

#[test]
fn a_malformed_record_ends_the_iteration_after_the_good_ones() {
    let specs = three_records();
    let good = build(&specs);
    // Lengths below 64 take one varint byte holding twice the length.
    let first_len = 1 + usize::from(good[layout::HEADER_LEN] / 2);
    // The second record's key is null (-1, zig-zag 1), after attributes, timestamp delta and
    // offset delta (one byte each).
    let key_at = layout::HEADER_LEN + first_len + 1 + 3;
    assert_eq!(good[key_at], 1, "the second record's null key");
    let bad = patched(&good, |b| b[key_at] = 5);
    assert_eq!(
        all_items(bad),
        vec![
            Ok(expected(0, &specs).remove(0)),
            Err(malformed(1, key_at, RecordField::Key)),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Walking consecutive batches
// ---------------------------------------------------------------------------------------------

/// Three stamped batches with consecutive offsets (3, 1 and 2 records).
fn three_batches() -> Vec<Bytes> {
    let sizes = [3usize, 1, 2];
    let mut next = 0i64;
    sizes
        .iter()
        .enumerate()
        .map(|(n, &count)| {
            let specs: Vec<Spec> = (0..count)
                .map(|i| spec(i as i64, Some(format!("b{n}r{i}").as_bytes()), None, &[]))
                .collect();
            let built = build(&specs);
            let mut b = built.to_vec();
            b[..layout::MAGIC].copy_from_slice(&stamp(&built, next, n as i32));
            next += count as i64;
            Bytes::from(b)
        })
        .collect()
}

fn concat(parts: &[&[u8]]) -> Bytes {
    Bytes::from(parts.concat())
}

#[test]
fn batches_yields_each_batch_in_order() {
    let parts = three_batches();
    let all = concat(&[&parts[0], &parts[1], &parts[2]]);
    let mut walk = Batches::new(all.clone(), MAX);
    let mut seen = Vec::new();
    for item in walk.by_ref() {
        let batch = item.unwrap();
        let offsets: Vec<i64> = batch
            .records()
            .unwrap()
            .map(|r| r.unwrap().offset)
            .collect();
        seen.push((
            batch.bytes().clone(),
            batch.header().partition_leader_epoch,
            offsets,
        ));
    }
    assert_eq!(
        seen,
        vec![
            (parts[0].clone(), 0, vec![0, 1, 2]),
            (parts[1].clone(), 1, vec![3]),
            (parts[2].clone(), 2, vec![4, 5]),
        ]
    );
    assert_eq!(walk.position(), all.len());
    assert!(walk.next().is_none());
}

#[test]
fn batches_over_an_empty_buffer_yields_nothing() {
    let mut walk = Batches::new(Bytes::new(), MAX);
    assert!(walk.next().is_none());
    assert_eq!(walk.position(), 0);
}

#[test]
fn truncated_final_batch_is_reported_and_ends_the_walk() {
    let parts = three_batches();
    let cut = parts[2].len() - 5;
    let all = concat(&[&parts[0], &parts[1], &parts[2][..cut]]);
    let mut walk = Batches::new(all, MAX);
    assert_eq!(walk.next().unwrap().unwrap().bytes(), &parts[0]);
    assert_eq!(walk.next().unwrap().unwrap().bytes(), &parts[1]);
    assert_eq!(
        walk.next().unwrap().err(),
        Some(BatchError::Truncated {
            needed: parts[2].len(),
            available: cut,
        })
    );
    assert_eq!(walk.position(), parts[0].len() + parts[1].len());
    assert!(walk.next().is_none());
    assert_eq!(walk.position(), parts[0].len() + parts[1].len());
}

#[test]
fn final_fragment_shorter_than_a_header_is_truncated() {
    let parts = three_batches();
    let all = concat(&[&parts[0], &parts[1][..30]]);
    let mut walk = Batches::new(all, MAX);
    assert!(walk.next().unwrap().is_ok());
    assert_eq!(
        walk.next().unwrap().err(),
        Some(BatchError::Truncated {
            needed: layout::HEADER_LEN,
            available: 30,
        })
    );
    assert_eq!(walk.position(), parts[0].len());
    assert!(walk.next().is_none());
}

#[test]
fn corrupt_middle_batch_stops_the_walk_at_its_start() {
    let parts = three_batches();
    let bad_middle = raw_patched(&parts[1], |b| {
        let last = b.len() - 1;
        b[last] ^= 0xff;
    });
    let all = concat(&[&parts[0], &bad_middle, &parts[2]]);
    let mut walk = Batches::new(all, MAX);
    assert!(walk.next().unwrap().is_ok());
    assert_eq!(
        walk.next().unwrap().err(),
        Some(BatchError::CrcMismatch {
            stored: stored_crc(&parts[1]),
            computed: crc32fast::hash(&bad_middle[layout::ATTRIBUTES..]),
        })
    );
    assert_eq!(walk.position(), parts[0].len());
    assert!(walk.next().is_none(), "no batch is yielded after an error");
}

#[test]
fn batch_over_the_limit_stops_the_walk() {
    let parts = three_batches();
    let limit = parts[1].len().max(parts[2].len());
    assert!(parts[0].len() > limit);
    let all = concat(&[&parts[1], &parts[0], &parts[2]]);
    let mut walk = Batches::new(all, limit);
    assert!(walk.next().unwrap().is_ok());
    assert_eq!(
        walk.next().unwrap().err(),
        Some(BatchError::TooLarge {
            size: parts[0].len(),
            limit,
        })
    );
    assert_eq!(walk.position(), parts[1].len());
    assert!(walk.next().is_none());
}

#[test]
fn header_errors_in_the_walk_are_the_parse_errors() {
    let parts = three_batches();
    let bad_magic = raw_patched(&parts[1], |b| b[layout::MAGIC] = 1);
    let all = concat(&[&parts[0], &bad_magic]);
    let mut walk = Batches::new(all, MAX);
    assert!(walk.next().unwrap().is_ok());
    assert_eq!(
        walk.next().unwrap().err(),
        Some(BatchError::UnsupportedMagic { magic: 1 })
    );
    assert_eq!(walk.position(), parts[0].len());
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

#[test]
fn error_messages_name_the_value_and_the_limit() {
    let cases = [
        (
            BatchError::Truncated {
                needed: 61,
                available: 17,
            },
            "batch truncated: needs 61 bytes, only 17 available",
        ),
        (
            BatchError::LengthTooSmall {
                declared: 12,
                minimum: 49,
            },
            "batch length 12 is below the minimum of 49",
        ),
        (
            BatchError::LengthMismatch {
                declared: 200,
                actual: 150,
            },
            "batch declares 200 bytes but the buffer holds 150",
        ),
        (
            BatchError::TooLarge {
                size: 5_000_000,
                limit: 1_048_576,
            },
            "batch of 5000000 bytes exceeds the limit of 1048576 bytes",
        ),
        (
            BatchError::UnsupportedMagic { magic: 1 },
            "unsupported batch magic 1: only magic 2 is supported",
        ),
        (
            BatchError::CrcMismatch {
                stored: 0xdead_beef,
                computed: 0x1234,
            },
            "batch CRC mismatch: stored 0xdeadbeef, computed 0x00001234",
        ),
        (
            BatchError::UnknownCompression { codec: 6 },
            "unknown compression codec 6: valid codecs are 0 to 4",
        ),
        (
            BatchError::Decompression { codec: "zstd" },
            "cannot decompress the records: not valid zstd data",
        ),
        (
            BatchError::DecompressedTooLarge { limit: 67_108_864 },
            "records decompress to more than the limit of 67108864 bytes",
        ),
        (
            BatchError::NegativeRecordCount { count: -3 },
            "records count -3 is negative",
        ),
        (
            BatchError::OffsetDeltaMismatch {
                last_offset_delta: 1,
                records: 3,
            },
            "last offset delta 1 does not match 3 records (expected 2)",
        ),
        (
            BatchError::OffsetDeltaMismatch {
                last_offset_delta: 0,
                records: i32::MIN,
            },
            "last offset delta 0 does not match -2147483648 records (expected -2147483649)",
        ),
        (
            BatchError::RecordCountMismatch {
                declared: 5,
                found: 3,
            },
            "batch declares 5 records but holds 3",
        ),
        (
            malformed(2, 70, RecordField::HeaderValue),
            "record 2 is malformed at byte 70 of the batch: bad header value",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn record_fields_have_readable_names() {
    let names: Vec<String> = [
        RecordField::Length,
        RecordField::Attributes,
        RecordField::TimestampDelta,
        RecordField::OffsetDelta,
        RecordField::Key,
        RecordField::Value,
        RecordField::HeaderCount,
        RecordField::HeaderKey,
        RecordField::HeaderValue,
        RecordField::TrailingBytes,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        names,
        [
            "record length",
            "attributes",
            "timestamp delta",
            "offset delta",
            "key",
            "value",
            "header count",
            "header key",
            "header value",
            "trailing bytes",
        ]
    );
}
