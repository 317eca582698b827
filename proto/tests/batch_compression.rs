//! Compressed batches: every codec round trips, the header and CRC describe the compressed
//! bytes, sections compressed by the codec crates themselves read back (and ours read back
//! through them), decompression bombs stop at the limit, and corrupt or arbitrary compressed
//! sections fail with typed errors, never a panic.
//!
//! Proptest case counts are fixed so the suite runs in seconds; `PROPTEST_CASES` overrides
//! them.

use std::io::{Read, Write};

use brook_proto::batch::{DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_DECOMPRESSED_BYTES, layout, stamp};
use brook_proto::{
    BatchBuilder, BatchError, BatchHeader, Compression, Header, Record, RecordBatch, RecordField,
};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;

const MAX: usize = DEFAULT_MAX_BATCH_BYTES;

const CODECS: [Compression; 4] = [
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

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

impl Spec {
    fn new(timestamp: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Spec {
        Spec {
            timestamp,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
        }
    }

    fn header(mut self, key: &[u8], value: Option<&[u8]>) -> Spec {
        self.headers.push((key.to_vec(), value.map(<[u8]>::to_vec)));
        self
    }

    fn headers(&self) -> Vec<Header> {
        self.headers
            .iter()
            .map(|(k, v)| Header {
                key: Bytes::copy_from_slice(k),
                value: v.as_deref().map(Bytes::copy_from_slice),
            })
            .collect()
    }
}

fn build(codec: Compression, producer: Option<(i64, i16, i32)>, specs: &[Spec]) -> Bytes {
    let mut b = BatchBuilder::new().compression(codec);
    if let Some((id, epoch, seq)) = producer {
        b = b.producer(id, epoch, seq);
    }
    for s in specs {
        b.append(
            s.timestamp,
            s.key.as_deref(),
            s.value.as_deref(),
            &s.headers(),
        );
    }
    b.build()
}

fn expected(base_offset: i64, specs: &[Spec]) -> Vec<Record> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| Record {
            offset: base_offset + i as i64,
            timestamp: s.timestamp,
            key: s.key.clone().map(Bytes::from),
            value: s.value.clone().map(Bytes::from),
            headers: s.headers(),
        })
        .collect()
}

/// Every item the records iterator yields, or the error `records()` itself returned.
fn items(batch: &RecordBatch) -> Result<Vec<Result<Record, BatchError>>, BatchError> {
    Ok(batch.records()?.collect())
}

fn decode(bytes: Bytes) -> Vec<Record> {
    RecordBatch::new(bytes, MAX)
        .expect("valid batch")
        .records()
        .expect("decompressible records")
        .collect::<Result<Vec<_>, _>>()
        .expect("well-formed records")
}

/// Records of every shape: null and empty keys and values, headers with null, empty and
/// present values, values spanning several codec blocks, out-of-order timestamps.
fn varied_records() -> Vec<Spec> {
    let big: Vec<u8> = (0..150_000u32).map(|i| (i % 97) as u8).collect();
    let mut specs = vec![
        Spec::new(1_700_000_000_000, Some(b"k"), Some(b"v")),
        Spec::new(1_700_000_000_005, None, None),
        Spec::new(1_700_000_000_001, Some(b""), Some(b"")),
        Spec::new(1_699_999_999_000, None, Some(b""))
            .header(b"", None)
            .header(b"trace", Some(b""))
            .header(b"content-type", Some(b"application/json")),
        Spec::new(1_700_000_000_010, Some(b"big"), Some(&big)).header(b"h", Some(&big[..40_000])),
    ];
    for i in 0..300i64 {
        let value = format!("{{\"user\":{i},\"event\":\"click\",\"page\":\"/home\"}}");
        specs.push(Spec::new(
            1_700_000_001_000 + i,
            Some(format!("user-{}", i % 7).as_bytes()),
            Some(value.as_bytes()),
        ));
    }
    specs
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

/// Sets `batchLength` to match the buffer and writes the CRC of bytes `21..end`.
fn reseal(b: &mut [u8]) {
    let len = (b.len() - layout::LOG_OVERHEAD) as i32;
    put_i32(b, layout::LENGTH, len);
    let crc = crc32fast::hash(&b[layout::ATTRIBUTES..]);
    b[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// `template`'s header with `codec`'s bits, followed by `section` as the records, resealed.
fn seal(template: &[u8], codec: Compression, section: &[u8]) -> Bytes {
    let mut b = template[..layout::HEADER_LEN].to_vec();
    put_i16(&mut b, layout::ATTRIBUTES, codec.id());
    b.extend_from_slice(section);
    reseal(&mut b);
    Bytes::from(b)
}

/// A batch header declaring `count` records (offset deltas `0..count`), no records yet.
fn header_for(count: i32) -> Vec<u8> {
    let mut b = BatchBuilder::new().build().to_vec();
    put_i32(&mut b, layout::RECORDS_COUNT, count);
    put_i32(&mut b, layout::LAST_OFFSET_DELTA, (count - 1).max(0));
    b
}

/// `data` compressed by the codec crates directly, with settings other than the builder's
/// (gzip level 9, one raw snappy block, lz4 frames with 4 MiB linked blocks and checksums,
/// zstd level 1 without a content size): what another producer may send.
fn foreign_compress(codec: Compression, data: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Snappy => snap::raw::Encoder::new().compress_vec(data).unwrap(),
        Compression::Lz4 => {
            use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
            let info = FrameInfo::new()
                .block_size(BlockSize::Max4MB)
                .block_mode(BlockMode::Linked)
                .block_checksums(true)
                .content_checksum(true);
            let mut e = FrameEncoder::with_frame_info(info, Vec::new());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::stream::encode_all(data, 1).unwrap(),
    }
}

/// `blob` decompressed by the codec crates directly (snappy: the xerial framing parsed here).
fn foreign_decompress(codec: Compression, blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match codec {
        Compression::None => out.extend_from_slice(blob),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(blob)
                .read_to_end(&mut out)
                .unwrap();
        }
        Compression::Snappy => {
            assert_eq!(&blob[..16], b"\x82SNAPPY\0\0\0\0\x01\0\0\0\x01");
            let mut rest = &blob[16..];
            while !rest.is_empty() {
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                let block = snap::raw::Decoder::new()
                    .decompress_vec(&rest[4..4 + len])
                    .unwrap();
                assert!(
                    block.len() <= 32 * 1024,
                    "xerial blocks hold at most 32 KiB"
                );
                out.extend_from_slice(&block);
                rest = &rest[4 + len..];
            }
        }
        Compression::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(blob)
                .read_to_end(&mut out)
                .unwrap();
        }
        Compression::Zstd => out = zstd::stream::decode_all(blob).unwrap(),
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Round trips and format
// ---------------------------------------------------------------------------------------------

#[test]
fn every_codec_round_trips_records_of_every_shape() {
    let specs = varied_records();
    for codec in Compression::ALL {
        let bytes = build(codec, Some((42, 3, 1000)), &specs);
        let batch = RecordBatch::new(bytes.clone(), MAX).unwrap();
        assert_eq!(batch.header().compression(), codec);
        assert_eq!(batch.header().attributes, codec.id());
        assert_eq!(batch.records_count(), specs.len() as i32);
        assert_eq!(decode(bytes.clone()), expected(0, &specs), "{codec}");

        // Stamped by a leader, the batch keeps its CRC and the records take the offsets.
        let mut stamped = bytes.to_vec();
        stamped[..layout::MAGIC].copy_from_slice(&stamp(&bytes, 1_000_000, 7));
        assert_eq!(decode(Bytes::from(stamped)), expected(1_000_000, &specs));
    }
}

#[test]
fn empty_and_single_record_batches_round_trip_with_every_codec() {
    for codec in Compression::ALL {
        for specs in [vec![], vec![Spec::new(5, None, Some(b""))]] {
            let bytes = build(codec, None, &specs);
            assert_eq!(decode(bytes), expected(0, &specs), "{codec}");
        }
    }
}

#[test]
fn header_fields_other_than_length_crc_and_codec_match_the_uncompressed_batch() {
    let specs = varied_records();
    let plain =
        BatchHeader::validate(&build(Compression::None, Some((9, 1, 5)), &specs), MAX).unwrap();
    for codec in CODECS {
        let bytes = build(codec, Some((9, 1, 5)), &specs);
        let header = BatchHeader::validate(&bytes, MAX).unwrap();
        assert_eq!(
            header.batch_length as usize + layout::LOG_OVERHEAD,
            bytes.len()
        );
        assert_eq!(header.crc, crc32fast::hash(&bytes[layout::ATTRIBUTES..]));
        assert_eq!(
            BatchHeader {
                batch_length: plain.batch_length,
                crc: plain.crc,
                attributes: 0,
                ..header
            },
            plain,
            "{codec}"
        );
        assert_eq!(header.check_produced(), Ok(()));
    }
}

#[test]
fn compressed_batch_is_smaller_than_uncompressed_for_compressible_data() {
    let specs = varied_records();
    let plain = build(Compression::None, None, &specs);
    for codec in CODECS {
        let compressed = build(codec, None, &specs);
        assert!(
            compressed.len() < plain.len(),
            "{codec}: {} bytes, uncompressed {}",
            compressed.len(),
            plain.len()
        );
    }
}

#[test]
fn size_in_bytes_is_the_uncompressed_size_whatever_the_codec() {
    let specs = varied_records();
    let plain_len = build(Compression::None, None, &specs).len();
    for codec in Compression::ALL {
        let mut b = BatchBuilder::new().compression(codec);
        for s in &specs {
            b.append(
                s.timestamp,
                s.key.as_deref(),
                s.value.as_deref(),
                &s.headers(),
            );
        }
        assert_eq!(b.size_in_bytes(), plain_len, "{codec}");
    }
}

#[test]
fn compressed_section_is_the_codec_stream_of_the_uncompressed_records() {
    let specs = varied_records();
    let plain = build(Compression::None, None, &specs);
    for codec in CODECS {
        let compressed = build(codec, None, &specs);
        assert_eq!(
            foreign_decompress(codec, &compressed[layout::HEADER_LEN..]),
            plain[layout::HEADER_LEN..],
            "{codec}"
        );
    }
}

#[test]
fn sections_compressed_by_other_writers_read_back() {
    let specs = varied_records();
    let plain = build(Compression::None, None, &specs);
    for codec in CODECS {
        let section = foreign_compress(codec, &plain[layout::HEADER_LEN..]);
        let bytes = seal(&plain, codec, &section);
        assert_eq!(decode(bytes), expected(0, &specs), "{codec}");
    }
}

#[test]
fn records_are_slices_of_one_decompressed_buffer() {
    let specs = vec![
        Spec::new(1, Some(b"key-one"), Some(b"value-one")),
        Spec::new(2, Some(b"key-two"), Some(b"value-two")).header(b"h", Some(b"hv")),
    ];
    for codec in CODECS {
        let batch = RecordBatch::new(build(codec, None, &specs), MAX).unwrap();
        let records: Vec<Record> = batch.records().unwrap().map(Result::unwrap).collect();
        let base = records[0].key.as_ref().unwrap().as_ptr() as usize;
        let in_buffer = |b: &Bytes| {
            let p = b.as_ptr() as usize;
            p > base && p - base < 200
        };
        assert!(in_buffer(records[0].value.as_ref().unwrap()), "{codec}");
        assert!(in_buffer(records[1].key.as_ref().unwrap()), "{codec}");
        assert!(in_buffer(&records[1].headers[0].key), "{codec}");
    }
}

// ---------------------------------------------------------------------------------------------
// CRC and corruption
// ---------------------------------------------------------------------------------------------

#[test]
fn crc_covers_the_compressed_bytes() {
    // Small records only: every byte of the section is flipped and decoded in turn.
    let specs: Vec<Spec> = varied_records()
        .into_iter()
        .filter(|s| s.value.as_ref().is_none_or(|v| v.len() < 1000))
        .take(40)
        .collect();
    for codec in CODECS {
        let bytes = build(codec, None, &specs);
        let plain_records = expected(0, &specs);
        for at in layout::HEADER_LEN..bytes.len() {
            let mut b = bytes.to_vec();
            b[at] ^= 0x20;
            assert_eq!(
                RecordBatch::new(Bytes::from(b.clone()), MAX).err(),
                Some(BatchError::CrcMismatch {
                    stored: stored_crc(&bytes),
                    computed: crc32fast::hash(&b[layout::ATTRIBUTES..]),
                }),
                "{codec} byte {at}"
            );

            // Past the CRC, a corrupt section is a typed error, or (where the codec has no
            // checksum of its own) records that decode to something else.
            reseal(&mut b);
            let batch = RecordBatch::new(Bytes::from(b), MAX).unwrap();
            match items(&batch) {
                Err(BatchError::Decompression { codec: name }) => assert_eq!(name, codec.name()),
                Err(other) => panic!("{codec} byte {at}: {other:?}"),
                Ok(items) => {
                    let ok: Result<Vec<Record>, BatchError> = items.into_iter().collect();
                    match ok {
                        Ok(records) => assert_eq!(records.len(), specs.len()),
                        Err(BatchError::MalformedRecord { .. })
                        | Err(BatchError::RecordCountMismatch { .. }) => {}
                        Err(other) => panic!("{codec} byte {at}: {other:?}"),
                    }
                    if codec == Compression::Gzip {
                        // gzip's own CRC-32 catches every change to the data; only header
                        // fields such as the modification time are free.
                        assert_eq!(decode(batch.bytes().clone()), plain_records);
                    }
                }
            }
        }
    }
}

#[test]
fn a_flipped_stream_magic_is_a_decompression_error() {
    let specs = varied_records()[..5].to_vec();
    for codec in CODECS {
        let bytes = build(codec, None, &specs);
        let mut b = bytes.to_vec();
        b[layout::HEADER_LEN] ^= 0x01;
        reseal(&mut b);
        let batch = RecordBatch::new(Bytes::from(b), MAX).unwrap();
        assert_eq!(
            batch.records().err(),
            Some(BatchError::Decompression {
                codec: codec.name()
            }),
            "{codec}"
        );
    }
}

#[test]
fn a_section_cut_inside_a_block_is_a_decompression_error() {
    let specs = varied_records()[..5].to_vec();
    for codec in CODECS {
        let bytes = build(codec, None, &specs);
        let mut b = bytes[..(layout::HEADER_LEN + bytes.len()) / 2].to_vec();
        reseal(&mut b);
        let batch = RecordBatch::new(Bytes::from(b), MAX).unwrap();
        assert_eq!(
            batch.records().err(),
            Some(BatchError::Decompression {
                codec: codec.name()
            }),
            "{codec}"
        );
    }
}

#[test]
fn a_section_cut_at_the_end_is_a_decompression_error_except_lz4s_end_mark() {
    let specs = varied_records()[..5].to_vec();
    for codec in CODECS {
        let bytes = build(codec, None, &specs);
        let mut b = bytes[..bytes.len() - 3].to_vec();
        reseal(&mut b);
        let batch = RecordBatch::new(Bytes::from(b), MAX).unwrap();
        if codec == Compression::Lz4 {
            // lz4_flex reads a frame whose end mark is missing as ending there; every block
            // is whole, so every record is there.
            assert_eq!(decode(batch.bytes().clone()), expected(0, &specs));
        } else {
            assert_eq!(
                batch.records().err(),
                Some(BatchError::Decompression {
                    codec: codec.name()
                }),
                "{codec}"
            );
        }
    }
}

#[test]
fn an_lz4_frame_cut_after_a_whole_block_fails_on_the_records() {
    let specs = varied_records()[..5].to_vec();
    let bytes = build(Compression::Lz4, None, &specs);
    // Magic, FLG, BD, header checksum, then the first block's little-endian length.
    let section = &bytes[layout::HEADER_LEN..];
    let first = u32::from_le_bytes(section[7..11].try_into().unwrap()) & 0x7fff_ffff;
    let cut = &section[..11 + first as usize];
    let batch = RecordBatch::new(seal(&bytes, Compression::Lz4, cut), MAX).unwrap();
    let records: Result<Vec<Record>, BatchError> = batch.records().unwrap().collect();
    assert!(
        matches!(records, Err(BatchError::MalformedRecord { index: 4, .. })),
        "{records:?}"
    );
}

#[test]
fn a_malformed_record_reports_the_same_error_compressed_or_not() {
    // The second record's key length points past its end.
    let specs = vec![
        Spec::new(1, Some(b"a"), Some(b"x")),
        Spec::new(2, Some(b"b"), Some(b"y")),
    ];
    let plain = build(Compression::None, None, &specs);
    let mut records = plain[layout::HEADER_LEN..].to_vec();
    let second = records[0] as usize / 2 + 1; // zig-zag length of the first record, plus itself
    let key_len_at = second + 4; // length, attributes, timestamp delta, offset delta
    assert_eq!(records[key_len_at], 2, "key length 1, zig-zag");
    records[key_len_at] = 40;
    let want = BatchError::MalformedRecord {
        index: 1,
        position: layout::HEADER_LEN + key_len_at,
        field: RecordField::Key,
    };
    for codec in Compression::ALL {
        let section = foreign_compress(codec, &records);
        let batch = RecordBatch::new(seal(&plain, codec, &section), MAX).unwrap();
        let items = items(&batch).unwrap();
        assert_eq!(items.len(), 2, "{codec}");
        assert_eq!(items[1], Err(want), "{codec}");
    }
}

#[test]
fn declared_counts_are_checked_against_the_decompressed_records() {
    let specs = vec![
        Spec::new(1, None, Some(b"x")),
        Spec::new(2, None, Some(b"y")),
    ];
    let plain = build(Compression::None, None, &specs);
    for codec in CODECS {
        let mut b = build(codec, None, &specs).to_vec();
        put_i32(&mut b, layout::RECORDS_COUNT, 3);
        put_i32(&mut b, layout::LAST_OFFSET_DELTA, 2);
        reseal(&mut b);
        let batch = RecordBatch::new(Bytes::from(b), MAX).unwrap();
        let items = items(&batch).unwrap();
        assert_eq!(
            items[2],
            Err(BatchError::RecordCountMismatch {
                declared: 3,
                found: 2
            }),
            "{codec}"
        );
        let section = foreign_compress(codec, &plain[layout::HEADER_LEN..layout::HEADER_LEN + 1]);
        let batch = RecordBatch::new(seal(&plain, codec, &section), MAX).unwrap();
        assert!(
            matches!(
                items_of(&batch)[0],
                Err(BatchError::MalformedRecord { index: 0, .. })
            ),
            "{codec}"
        );
    }
}

fn items_of(batch: &RecordBatch) -> Vec<Result<Record, BatchError>> {
    items(batch).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Decompression bombs
// ---------------------------------------------------------------------------------------------

/// `zeros` zero bytes streamed through the codec crate's own encoder, 1 MiB at a time, so the
/// test never holds the expanded data.
fn compressed_zeros(codec: Compression, zeros: usize) -> Vec<u8> {
    let chunk = vec![0u8; 1 << 20];
    let feed = |w: &mut dyn Write| {
        let mut left = zeros;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
    };
    match codec {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            feed(&mut e);
            e.finish().unwrap()
        }
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            feed(&mut e);
            e.finish().unwrap()
        }
        Compression::Zstd => {
            let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
            feed(&mut e);
            e.finish().unwrap()
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; zeros])
            .unwrap(),
        Compression::None => vec![0u8; zeros],
    }
}

#[test]
fn a_zstd_bomb_stops_at_the_default_limit() {
    let blob = compressed_zeros(Compression::Zstd, DEFAULT_MAX_DECOMPRESSED_BYTES + 1);
    assert!(blob.len() < 16 * 1024, "bomb of {} bytes", blob.len());
    let batch = RecordBatch::new(seal(&header_for(1), Compression::Zstd, &blob), MAX).unwrap();
    assert_eq!(
        batch.records().err(),
        Some(BatchError::DecompressedTooLarge {
            limit: DEFAULT_MAX_DECOMPRESSED_BYTES
        })
    );
}

#[test]
fn bombs_of_every_codec_stop_at_the_given_limit() {
    const LIMIT: usize = 1 << 20;
    for codec in CODECS {
        let blob = compressed_zeros(codec, 4 * LIMIT);
        assert!(
            blob.len() < LIMIT / 4,
            "{codec} bomb of {} bytes",
            blob.len()
        );
        let batch = RecordBatch::new(seal(&header_for(1), codec, &blob), MAX).unwrap();
        assert_eq!(
            batch.records_with_limit(LIMIT).err(),
            Some(BatchError::DecompressedTooLarge { limit: LIMIT }),
            "{codec}"
        );
        // With room for it, the same section decompresses (to zeros, which are no records).
        assert!(
            matches!(
                items(&batch).map(|i| i.into_iter().next()),
                Ok(Some(Err(BatchError::MalformedRecord { index: 0, .. })))
            ),
            "{codec}"
        );
    }
}

#[test]
fn a_snappy_block_declaring_more_than_the_limit_is_refused_before_decompressing() {
    // A raw snappy block is its uncompressed length as a varint, then tags: this one declares
    // 2^31 bytes and holds none.
    let blob = [0x80, 0x80, 0x80, 0x80, 0x08];
    let batch = RecordBatch::new(seal(&header_for(1), Compression::Snappy, &blob), MAX).unwrap();
    assert_eq!(
        batch.records().err(),
        Some(BatchError::DecompressedTooLarge {
            limit: DEFAULT_MAX_DECOMPRESSED_BYTES
        })
    );
}

#[test]
fn a_batch_decompressing_to_exactly_the_limit_is_read() {
    let specs = vec![Spec::new(1, None, Some(&[7u8; 5000]))];
    let plain = build(Compression::None, None, &specs);
    let size = plain.len() - layout::HEADER_LEN;
    for codec in CODECS {
        let batch = RecordBatch::new(build(codec, None, &specs), MAX).unwrap();
        let records: Result<Vec<Record>, BatchError> =
            batch.records_with_limit(size).unwrap().collect();
        assert_eq!(records, Ok(expected(0, &specs)), "{codec}");
        assert_eq!(
            batch.records_with_limit(size - 1).err(),
            Some(BatchError::DecompressedTooLarge { limit: size - 1 }),
            "{codec}"
        );
    }
    // The limit is for decompression: an uncompressed batch reads whatever it is given.
    let batch = RecordBatch::new(plain, MAX).unwrap();
    assert_eq!(batch.records_with_limit(0).unwrap().count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// `default` cases unless `PROPTEST_CASES` says otherwise.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

fn bytes_up_to(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// Bytes that compress: runs drawn from a small alphabet, or arbitrary noise.
fn payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        bytes_up_to(max),
        prop::collection::vec((0u8..4, 1usize..64), 0..=max / 16).prop_map(|runs| {
            runs.into_iter()
                .flat_map(|(b, n)| std::iter::repeat_n(b'a' + b, n))
                .collect()
        }),
    ]
}

fn specs_strategy(max_records: usize, field_max: usize) -> impl Strategy<Value = Vec<Spec>> {
    const SPREAD: i64 = 1 << 40;
    let spec = (
        -SPREAD..=SPREAD,
        prop::option::of(payload(field_max / 8)),
        prop::option::of(payload(field_max)),
        prop::collection::vec((bytes_up_to(16), prop::option::of(bytes_up_to(32))), 0..=3),
    );
    (
        -(1i64 << 62)..(1i64 << 62),
        prop::collection::vec(spec, 0..=max_records),
    )
        .prop_map(|(base, specs)| {
            specs
                .into_iter()
                .map(|(delta, key, value, headers)| Spec {
                    timestamp: base + delta,
                    key,
                    value,
                    headers,
                })
                .collect()
        })
}

fn codec_strategy() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

/// One edit of a batch's bytes at or after the header.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip { at: Index, mask: u8 },
    /// Drop everything from a position on.
    Truncate { at: Index },
    /// Replace up to `remove` bytes at a position with `insert`.
    Splice {
        at: Index,
        remove: usize,
        insert: Vec<u8>,
    },
    /// Overwrite a 4-byte window (a length or a count) with a big-endian value.
    Word { at: Index, value: i32 },
}

impl Mutation {
    /// Applies the edit to `b[from..]`.
    fn apply(&self, b: &mut Vec<u8>, from: usize) {
        let len = b.len() - from;
        match self {
            Mutation::Flip { at, mask } if len > 0 => b[from + at.index(len)] ^= mask,
            Mutation::Truncate { at } => b.truncate(from + at.index(len + 1)),
            Mutation::Splice { at, remove, insert } => {
                let i = from + at.index(len + 1);
                let end = (i + remove).min(b.len());
                b.splice(i..end, insert.iter().copied());
            }
            Mutation::Word { at, value } if len >= 4 => {
                let i = from + at.index(len - 3);
                b[i..i + 4].copy_from_slice(&value.to_be_bytes());
            }
            _ => {}
        }
    }
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        1 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<Index>(), 0usize..8, bytes_up_to(8))
            .prop_map(|(at, remove, insert)| Mutation::Splice { at, remove, insert }),
        2 => (any::<Index>(), prop_oneof![any::<i32>(), -2i32..64])
            .prop_map(|(at, value)| Mutation::Word { at, value }),
    ]
}

/// Decodes `b` every way there is and checks each outcome is typed: the batch validates
/// (its CRC and length were made right), and its records decode, fail to decompress with the
/// batch's codec, or fail record by record with offsets in range and the iterator finished
/// after its first error. Returns the outcome of `records()`.
fn exercise(b: &[u8]) -> Result<Vec<Result<Record, BatchError>>, BatchError> {
    let batch = RecordBatch::new(Bytes::copy_from_slice(b), MAX)?;
    let codec = batch.header().compression();
    // A small limit takes the bomb path on whatever the mutation made.
    match batch.records_with_limit(64) {
        Ok(records) => drop(records.collect::<Vec<_>>()),
        Err(BatchError::Decompression { codec: name }) => assert_eq!(name, codec.name()),
        Err(BatchError::DecompressedTooLarge { limit: 64 }) => {}
        Err(other) => panic!("unexpected error from records_with_limit: {other:?}"),
    }
    let mut records = match batch.records() {
        Ok(records) => records,
        Err(BatchError::Decompression { codec: name }) => {
            assert_eq!(name, codec.name());
            return Err(BatchError::Decompression { codec: name });
        }
        // A mutated length field (a snappy block's, say) can declare more than the limit.
        Err(e @ BatchError::DecompressedTooLarge { limit }) => {
            assert_eq!(limit, DEFAULT_MAX_DECOMPRESSED_BYTES);
            return Err(e);
        }
        Err(other) => panic!("unexpected error from records: {other:?}"),
    };
    let mut out = Vec::new();
    let mut last = None;
    for item in records.by_ref() {
        match &item {
            Ok(r) => {
                let delta = r.offset.wrapping_sub(batch.base_offset());
                assert!((0..=i64::from(batch.header().last_offset_delta)).contains(&delta));
                assert!(last.is_none_or(|l| delta > l), "offsets increase");
                last = Some(delta);
            }
            Err(BatchError::MalformedRecord { position, .. }) => {
                assert!(*position >= layout::HEADER_LEN);
            }
            Err(BatchError::RecordCountMismatch { .. }) => {}
            Err(other) => panic!("unexpected record error {other:?}"),
        }
        let failed = item.is_err();
        out.push(item);
        if failed {
            break;
        }
    }
    assert!(records.next().is_none(), "records stay finished");
    Ok(out)
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn arbitrary_records_round_trip_through_every_codec(
        specs in specs_strategy(12, 2000),
        codec in codec_strategy(),
        producer in prop::option::of(any::<(i64, i16, i32)>()),
        base_offset in 0i64..(1 << 62),
    ) {
        let bytes = build(codec, producer, &specs);
        let plain = build(Compression::None, producer, &specs);
        let header = BatchHeader::validate(&bytes, MAX).unwrap();
        prop_assert_eq!(header.compression(), codec);
        prop_assert_eq!(header.records_count, specs.len() as i32);
        prop_assert_eq!(
            &foreign_decompress(codec, &bytes[layout::HEADER_LEN..])[..],
            &plain[layout::HEADER_LEN..]
        );
        let mut stamped = bytes.to_vec();
        stamped[..layout::MAGIC].copy_from_slice(&stamp(&bytes, base_offset, 1));
        let decoded: Result<Vec<Record>, BatchError> =
            RecordBatch::new(Bytes::from(stamped), MAX).unwrap().records().unwrap().collect();
        prop_assert_eq!(decoded, Ok(expected(base_offset, &specs)));
    }

    /// The same (possibly malformed) records section gives the same record-by-record outcome
    /// whichever codec carries it, since errors count positions in the uncompressed form.
    #[test]
    fn record_errors_do_not_depend_on_the_codec(
        specs in specs_strategy(4, 40),
        codec in codec_strategy(),
        mutations in prop::collection::vec(mutation_strategy(), 0..=3),
    ) {
        let plain = build(Compression::None, None, &specs);
        let mut b = plain.to_vec();
        for m in &mutations {
            m.apply(&mut b, layout::HEADER_LEN);
        }
        reseal(&mut b);
        let want = exercise(&b);
        let compressed = seal(&b, codec, &foreign_compress(codec, &b[layout::HEADER_LEN..]));
        prop_assert_eq!(exercise(&compressed), want);
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// Mutations of a compressed batch with the length and CRC made right again, so the
    /// decompressors and the record decoder see them.
    #[test]
    fn resealed_mutations_of_compressed_batches_never_panic(
        specs in specs_strategy(4, 200),
        codec in codec_strategy(),
        mutations in prop::collection::vec(mutation_strategy(), 1..=3),
    ) {
        let bytes = build(codec, None, &specs);
        let mut b = bytes.to_vec();
        for m in &mutations {
            m.apply(&mut b, layout::HEADER_LEN);
        }
        reseal(&mut b);
        let _ = exercise(&b);
    }

    /// Mutations without resealing never get past the CRC.
    #[test]
    fn mutated_compressed_sections_fail_the_crc(
        specs in specs_strategy(4, 200),
        codec in codec_strategy(),
        mutation in mutation_strategy(),
    ) {
        let bytes = build(codec, None, &specs);
        let mut b = bytes.to_vec();
        mutation.apply(&mut b, layout::HEADER_LEN);
        let len = (b.len() - layout::LOG_OVERHEAD) as i32;
        put_i32(&mut b, layout::LENGTH, len);
        let result = RecordBatch::new(Bytes::from(b.clone()), MAX).map(|_| ());
        if b == bytes {
            prop_assert_eq!(result, Ok(()));
        } else {
            prop_assert_eq!(
                result,
                Err(BatchError::CrcMismatch {
                    stored: stored_crc(&bytes),
                    computed: crc32fast::hash(&b[layout::ATTRIBUTES..]),
                })
            );
        }
    }

    /// Arbitrary bytes as the compressed section of every codec, and arbitrary bytes
    /// compressed as the records section: typed outcomes only.
    #[test]
    fn arbitrary_sections_never_panic(
        count in 0i32..8,
        codec in codec_strategy(),
        section in bytes_up_to(512),
        compress_first in any::<bool>(),
    ) {
        let section = if compress_first { foreign_compress(codec, &section) } else { section };
        let b = seal(&header_for(count), codec, &section);
        prop_assert!(RecordBatch::new(b.clone(), MAX).is_ok());
        let _ = exercise(&b);
    }
}
