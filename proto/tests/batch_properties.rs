//! Properties of the record-batch format: whatever records go into a batch come back out
//! exactly, and no input, however malformed, makes parsing, validation, decoding or the
//! multi-batch walk panic.
//!
//! Case counts are fixed so the suite runs in a few seconds; `PROPTEST_CASES` overrides them.

use brook_proto::batch::{DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_DECOMPRESSED_BYTES, layout, stamp};
use brook_proto::{
    BatchBuilder, BatchError, BatchHeader, Batches, Compression, Header, Record, RecordBatch,
    RecordField,
};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;

const MAX: usize = DEFAULT_MAX_BATCH_BYTES;

/// `default` cases unless `PROPTEST_CASES` says otherwise.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

/// A record as the test writes it.
#[derive(Debug, Clone)]
struct Spec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Spec {
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

fn bytes_up_to(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn spec_strategy(base_timestamp: i64, field_max: usize) -> impl Strategy<Value = Spec> {
    const SPREAD: i64 = 1 << 40;
    (
        -SPREAD..=SPREAD,
        prop::option::of(bytes_up_to(field_max)),
        prop::option::of(bytes_up_to(field_max)),
        prop::collection::vec((bytes_up_to(16), prop::option::of(bytes_up_to(32))), 0..=3),
    )
        .prop_map(move |(delta, key, value, headers)| Spec {
            timestamp: base_timestamp + delta,
            key,
            value,
            headers,
        })
}

/// Up to `max_records` records whose timestamps lie within 2^40 of a common base.
fn specs_strategy(max_records: usize, field_max: usize) -> impl Strategy<Value = Vec<Spec>> {
    (-(1i64 << 62)..(1i64 << 62)).prop_flat_map(move |base| {
        prop::collection::vec(spec_strategy(base, field_max), 0..=max_records)
    })
}

fn build(producer: Option<(i64, i16, i32)>, specs: &[Spec]) -> Bytes {
    let mut b = BatchBuilder::new();
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

fn stored_crc(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[layout::CRC..layout::CRC + 4].try_into().unwrap())
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn built_batches_round_trip(
        specs in specs_strategy(12, 300),
        producer in prop::option::of(any::<(i64, i16, i32)>()),
        base_offset in 0i64..(1 << 62),
        leader_epoch in any::<i32>(),
    ) {
        let bytes = build(producer, &specs);
        let header = BatchHeader::validate(&bytes, MAX).unwrap();
        let n = specs.len() as i32;
        prop_assert_eq!(header.records_count, n);
        prop_assert_eq!(header.last_offset_delta, (n - 1).max(0));
        prop_assert_eq!(header.batch_length as usize + layout::LOG_OVERHEAD, bytes.len());
        prop_assert_eq!(
            header.base_timestamp,
            specs.first().map_or(0, |s| s.timestamp)
        );
        prop_assert_eq!(
            header.max_timestamp,
            specs.iter().map(|s| s.timestamp).max().unwrap_or(-1)
        );
        let (id, epoch, seq) = producer.unwrap_or((-1, -1, -1));
        prop_assert_eq!(
            (header.producer_id, header.producer_epoch, header.base_sequence),
            (id, epoch, seq)
        );
        let produced = if specs.is_empty() {
            Err(BatchError::OffsetDeltaMismatch { last_offset_delta: 0, records: 0 })
        } else {
            Ok(())
        };
        prop_assert_eq!(header.check_produced(), produced);

        let decoded: Result<Vec<Record>, BatchError> =
            RecordBatch::new(bytes.clone(), MAX).unwrap().records().unwrap().collect();
        prop_assert_eq!(decoded, Ok(expected(0, &specs)));

        // Stamped, the batch keeps its CRC and its records take the new offsets.
        let mut stamped = bytes.to_vec();
        stamped[..layout::MAGIC].copy_from_slice(&stamp(&bytes, base_offset, leader_epoch));
        let batch = RecordBatch::new(Bytes::from(stamped), MAX).unwrap();
        prop_assert_eq!(batch.base_offset(), base_offset);
        prop_assert_eq!(batch.header().partition_leader_epoch, leader_epoch);
        prop_assert_eq!(batch.header().crc, header.crc);
        let decoded: Result<Vec<Record>, BatchError> = batch.records().unwrap().collect();
        prop_assert_eq!(decoded, Ok(expected(base_offset, &specs)));
    }

    #[test]
    fn concatenated_batches_walk_back_in_order(
        batches in prop::collection::vec(specs_strategy(4, 40), 0..=5),
    ) {
        let built: Vec<Bytes> = batches.iter().map(|s| build(None, s)).collect();
        let all = Bytes::from(built.concat());
        let mut walk = Batches::new(all.clone(), MAX);
        let mut got = Vec::new();
        for item in walk.by_ref() {
            let batch = item.unwrap();
            let records: Result<Vec<Record>, BatchError> = batch.records().unwrap().collect();
            got.push((batch.bytes().clone(), records));
        }
        let want: Vec<(Bytes, Result<Vec<Record>, BatchError>)> = built
            .iter()
            .zip(&batches)
            .map(|(b, s)| (b.clone(), Ok(expected(0, s))))
            .collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(walk.position(), all.len());
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: nothing panics
// ---------------------------------------------------------------------------------------------

/// Runs every entry point over `buf`, fully iterating whatever iterates, and returns what
/// `validate` said.
fn exercise(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let bytes = Bytes::copy_from_slice(buf);
    if let Ok(h) = BatchHeader::parse(buf) {
        let _ = h.check_crc(buf);
        let _ = h.check_produced();
        let _ = (
            h.total_size(),
            h.last_offset(),
            h.next_offset(),
            h.compression(),
        );
    }
    for limit in [MAX, 64] {
        if let Ok(batch) = RecordBatch::new(bytes.clone(), limit) {
            drain(&batch);
        }
        let mut walk = Batches::new(bytes.clone(), limit);
        let mut yielded = 0;
        for item in walk.by_ref() {
            yielded += 1;
            if let Ok(batch) = item {
                drain(&batch);
            }
        }
        assert!(walk.position() <= buf.len());
        assert!(walk.next().is_none(), "the walk stays finished");
        assert!(yielded <= buf.len() / layout::HEADER_LEN + 1);
    }
    BatchHeader::validate(buf, MAX)
}

/// Decodes every record of `batch`; checks that the iterator ends after its first error and
/// that the offsets it reports stay in the batch's range.
fn drain(batch: &RecordBatch) {
    let Ok(mut records) = batch.records() else {
        return;
    };
    let mut last = None;
    for item in records.by_ref() {
        match item {
            Ok(r) => {
                let delta = r.offset.wrapping_sub(batch.base_offset());
                assert!(
                    (0..=i64::from(batch.header().last_offset_delta)).contains(&delta),
                    "offset {} outside batch at {}",
                    r.offset,
                    batch.base_offset()
                );
                assert!(last.is_none_or(|l| delta > l), "offsets increase");
                last = Some(delta);
                let _ = r.headers.len();
            }
            Err(BatchError::MalformedRecord {
                position, field, ..
            }) => {
                // Counted in the batch's uncompressed form, which a compressed batch's
                // records may exceed its stored size in.
                let bound = match batch.header().compression() {
                    Compression::None => batch.bytes().len(),
                    _ => layout::HEADER_LEN + DEFAULT_MAX_DECOMPRESSED_BYTES,
                };
                assert!(position <= bound);
                assert_ne!(field, RecordField::Attributes);
                break;
            }
            Err(BatchError::RecordCountMismatch { .. }) => break,
            Err(other) => panic!("unexpected record error {other:?}"),
        }
    }
    assert!(
        records.next().is_none(),
        "records stay finished after an error"
    );
}

/// One edit of a batch's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip { at: Index, mask: u8 },
    /// Keep only a prefix.
    Truncate { at: Index },
    /// Replace up to `remove` bytes at a position with `insert`.
    Splice {
        at: Index,
        remove: usize,
        insert: Vec<u8>,
    },
    /// Overwrite a 4-byte big-endian field-sized window (lengths, counts, deltas) at a position.
    Word { at: Index, value: i32 },
}

impl Mutation {
    fn apply(&self, b: &mut Vec<u8>) {
        match self {
            Mutation::Flip { at, mask } if !b.is_empty() => {
                let i = at.index(b.len());
                b[i] ^= mask;
            }
            Mutation::Truncate { at } => b.truncate(at.index(b.len() + 1)),
            Mutation::Splice { at, remove, insert } => {
                let i = at.index(b.len() + 1);
                let end = (i + remove).min(b.len());
                b.splice(i..end, insert.iter().copied());
            }
            Mutation::Word { at, value } if b.len() >= 4 => {
                let i = at.index(b.len() - 3);
                b[i..i + 4].copy_from_slice(&value.to_be_bytes());
            }
            _ => {}
        }
    }
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        2 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<Index>(), 0usize..8, bytes_up_to(8))
            .prop_map(|(at, remove, insert)| Mutation::Splice { at, remove, insert }),
        2 => (any::<Index>(), prop_oneof![any::<i32>(), -2i32..64])
            .prop_map(|(at, value)| Mutation::Word { at, value }),
    ]
}

/// A valid batch with its CRC region replaced by random bytes, then resealed (length and CRC
/// made right) so the record decoder sees them.
fn resealed_records(count: i32, last_offset_delta: i32, records: &[u8]) -> Vec<u8> {
    let mut b = BatchBuilder::new().build().to_vec();
    b.extend_from_slice(records);
    let len = (b.len() - layout::LOG_OVERHEAD) as i32;
    b[layout::LENGTH..layout::LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    b[layout::RECORDS_COUNT..layout::RECORDS_COUNT + 4].copy_from_slice(&count.to_be_bytes());
    b[layout::LAST_OFFSET_DELTA..layout::LAST_OFFSET_DELTA + 4]
        .copy_from_slice(&last_offset_delta.to_be_bytes());
    let crc = crc32fast::hash(&b[layout::ATTRIBUTES..]);
    b[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(buf in bytes_up_to(2048)) {
        let _ = exercise(&buf);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(
        prefix in prop::sample::select(vec![0usize, 16, layout::HEADER_LEN]),
        buf in bytes_up_to(2048),
    ) {
        // A real header (fields the random bytes then partly overwrite) gets past the magic
        // and length checks far more often than random bytes do.
        let mut b = build(None, &[]).to_vec();
        b.truncate(prefix);
        b.extend_from_slice(&buf);
        let _ = exercise(&b);
    }

    #[test]
    fn arbitrary_records_under_a_valid_crc_never_panic(
        count in prop_oneof![0i32..8, any::<i32>()],
        extra_delta in prop_oneof![Just(0i32), 0i32..8, any::<i32>()],
        records in bytes_up_to(512),
    ) {
        let last = count.saturating_sub(1).max(0).saturating_add(extra_delta.max(0));
        let b = resealed_records(count, last, &records);
        if count >= 0 {
            prop_assert_eq!(exercise(&b).map(|h| h.records_count), Ok(count));
        } else {
            prop_assert_eq!(exercise(&b), Err(BatchError::NegativeRecordCount { count }));
        }
    }

    #[test]
    fn mutated_batches_never_panic_and_fail_the_crc(
        specs in specs_strategy(4, 40),
        base_offset in base_offset_strategy(),
        mutations in prop::collection::vec(mutation_strategy(), 1..=3),
    ) {
        let built = build(None, &specs);
        let mut original = built.to_vec();
        // Any base offset, even one near i64::MAX: the field is outside the CRC.
        original[..layout::MAGIC].copy_from_slice(&stamp(&built, base_offset, 0));
        let mut b = original.clone();
        for m in &mutations {
            m.apply(&mut b);
        }
        let result = exercise(&b);

        let crc_region_changed =
            b.len() < layout::ATTRIBUTES || b[layout::ATTRIBUTES..] != original[layout::ATTRIBUTES..];
        if !crc_region_changed {
            // Only bytes 0..21 may differ: base offset and epoch are free, the rest checked.
            let same_checked_prefix = b[layout::LENGTH..layout::LEADER_EPOCH]
                == original[layout::LENGTH..layout::LEADER_EPOCH]
                && b[layout::MAGIC..layout::ATTRIBUTES] == original[layout::MAGIC..layout::ATTRIBUTES];
            if same_checked_prefix {
                let header = result.unwrap();
                prop_assert_eq!(&b[..layout::MAGIC], &header_prefix(&header)[..]);
            } else {
                prop_assert!(result.is_err(), "checked prefix bytes changed: {:?}", result);
            }
        } else {
            match result {
                Ok(h) => prop_assert!(false, "mutated batch validated: {:?}", h),
                Err(BatchError::CrcMismatch { stored, computed }) => {
                    prop_assert_eq!(stored, stored_crc(&b));
                    prop_assert_eq!(computed, crc32fast::hash(&b[layout::ATTRIBUTES..]));
                }
                // Anything else is a header or length check that comes before the CRC.
                Err(e) => {
                    let header = BatchHeader::parse(&b);
                    prop_assert!(
                        header == Err(e)
                            || header.is_ok_and(|h| h.total_size() != b.len()),
                        "{:?} for a batch of {} bytes",
                        e,
                        b.len()
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(2000))]

    /// Mutations followed by a fresh length and CRC: the decoder itself sees near-valid
    /// records (which a plain mutation never gets past the CRC to).
    #[test]
    fn resealed_mutations_decode_or_fail_with_typed_errors(
        specs in specs_strategy(4, 40),
        base_offset in base_offset_strategy(),
        mutations in prop::collection::vec(mutation_strategy(), 1..=3),
        fix_length in any::<bool>(),
    ) {
        let built = build(None, &specs);
        let mut b = built.to_vec();
        b[..layout::MAGIC].copy_from_slice(&stamp(&built, base_offset, 0));
        for m in &mutations {
            m.apply(&mut b);
        }
        if b.len() >= layout::HEADER_LEN {
            if fix_length {
                let len = (b.len() - layout::LOG_OVERHEAD) as i32;
                b[layout::LENGTH..layout::LENGTH + 4].copy_from_slice(&len.to_be_bytes());
            }
            let crc = crc32fast::hash(&b[layout::ATTRIBUTES..]);
            b[layout::CRC..layout::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        }
        let result = exercise(&b);
        if b.len() >= layout::HEADER_LEN && fix_length && b[layout::MAGIC] == 2 {
            // Length, magic and CRC are right: only the header's counts and codec can fail.
            match result {
                Ok(h) => prop_assert_eq!(h.total_size(), b.len()),
                Err(e) => prop_assert_eq!(BatchHeader::parse(&b), Err(e)),
            }
        }
    }
}

/// Base offsets anywhere, biased to the ends of the range where arithmetic overflows.
fn base_offset_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        0i64..1_000,
        (i64::MAX - 8)..=i64::MAX,
        i64::MIN..(i64::MIN + 8),
    ]
}

/// The first 16 bytes as `header` describes them.
fn header_prefix(header: &BatchHeader) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&header.base_offset.to_be_bytes());
    out[8..12].copy_from_slice(&header.batch_length.to_be_bytes());
    out[12..].copy_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out
}
