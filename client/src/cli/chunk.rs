//! A chunk of input records, sealed by count or size, and its split into one record batch per
//! partition.

use std::collections::BTreeMap;

use brook_proto::BatchBuilder;
use brook_proto::batch::layout::HEADER_LEN;
use bytes::Bytes;

use super::line_reader::LineRecord;
use crate::partition_for_key;

/// Upper bound of a record's framing in a batch: length, attributes, timestamp delta, offset
/// delta, key and value lengths (varints at their widest) and the header count.
const RECORD_OVERHEAD: usize = 5 + 1 + 10 + 5 + 5 + 5 + 1;

/// When a chunk is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Most records in a chunk.
    pub max_records: usize,
    /// Most bytes in a chunk, as estimated by [`Chunk::estimated_bytes`]. A single record
    /// larger than this still makes a chunk of its own.
    pub max_bytes: usize,
}

/// Where a chunk's records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Every record to this partition.
    Fixed(u32),
    /// Keyed records to `murmur2(key) % partitions`, the others to `keyless`.
    ByKey {
        /// The topic's partition count.
        partitions: u32,
        /// The partition for records without a key (round robin, chosen per chunk).
        keyless: u32,
    },
}

impl Assignment {
    /// The partition of one record.
    pub fn partition_of(&self, record: &LineRecord) -> u32 {
        match *self {
            Assignment::Fixed(p) => p,
            Assignment::ByKey {
                partitions,
                keyless,
            } => match &record.key {
                Some(key) => partition_for_key(key, partitions),
                None => keyless,
            },
        }
    }
}

/// One finished record batch for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionBatch {
    /// Target partition.
    pub partition: u32,
    /// Records in the batch.
    pub records: u32,
    /// The encoded batch, as `BatchBuilder` built it.
    pub batch: Bytes,
}

/// Records read together and sent in one round of produce requests.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    records: Vec<LineRecord>,
    bytes: usize,
}

impl Chunk {
    /// An empty chunk.
    pub fn new() -> Chunk {
        Chunk::default()
    }

    /// Records in the chunk.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the chunk holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, in input order.
    pub fn records(&self) -> &[LineRecord] {
        &self.records
    }

    /// Bytes of a batch holding every record of the chunk, at most (the batch header plus each
    /// record's key, value and widest framing).
    pub fn estimated_bytes(&self) -> usize {
        HEADER_LEN + self.bytes
    }

    /// True if `record` can join without passing `limits.max_bytes`; always true when empty.
    pub fn fits(&self, record: &LineRecord, limits: &ChunkLimits) -> bool {
        self.is_empty() || self.estimated_bytes() + record_size(record) <= limits.max_bytes
    }

    /// True when the chunk has `max_records` records or no room left for even an empty record.
    pub fn is_full(&self, limits: &ChunkLimits) -> bool {
        self.len() >= limits.max_records
            || self.estimated_bytes() + RECORD_OVERHEAD > limits.max_bytes
    }

    /// True if some record has no key.
    pub fn has_keyless(&self) -> bool {
        self.records.iter().any(|r| r.key.is_none())
    }

    /// Adds a record; the caller checks [`Chunk::fits`] first.
    pub fn push(&mut self, record: LineRecord) {
        self.bytes += record_size(&record);
        self.records.push(record);
    }

    /// One batch per partition, in partition order, each holding that partition's records in
    /// input order, all stamped with `timestamp_ms`.
    pub fn into_batches(self, assignment: Assignment, timestamp_ms: i64) -> Vec<PartitionBatch> {
        let mut builders: BTreeMap<u32, BatchBuilder> = BTreeMap::new();
        for record in &self.records {
            let partition = assignment.partition_of(record);
            builders
                .entry(partition)
                .or_insert_with(|| BatchBuilder::with_capacity(self.estimated_bytes()))
                .append(
                    timestamp_ms,
                    record.key.as_deref(),
                    Some(&record.value),
                    &[],
                );
        }
        builders
            .into_iter()
            .map(|(partition, builder)| PartitionBatch {
                partition,
                // A chunk holds at most `max_records` (a u32) records.
                records: builder.len() as u32,
                batch: builder.build(),
            })
            .collect()
    }
}

fn record_size(record: &LineRecord) -> usize {
    RECORD_OVERHEAD + record.key.as_ref().map_or(0, Bytes::len) + record.value.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use brook_proto::RecordBatch;

    fn rec(key: Option<&str>, value: &str) -> LineRecord {
        LineRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    fn decode(batch: &PartitionBatch) -> Vec<(Option<String>, String, i64)> {
        let batch = RecordBatch::new(batch.batch.clone(), 1 << 20).unwrap();
        batch
            .records()
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (
                    r.key.map(|k| String::from_utf8(k.to_vec()).unwrap()),
                    String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                    r.timestamp,
                )
            })
            .collect()
    }

    #[test]
    fn chunk_is_full_at_max_records() {
        let limits = ChunkLimits {
            max_records: 2,
            max_bytes: 1 << 20,
        };
        let mut chunk = Chunk::new();
        chunk.push(rec(None, "a"));
        assert!(!chunk.is_full(&limits));
        chunk.push(rec(None, "b"));
        assert!(chunk.is_full(&limits));
        assert_eq!(chunk.len(), 2);
    }

    #[test]
    fn chunk_refuses_a_record_that_would_pass_max_bytes() {
        let limits = ChunkLimits {
            max_records: 1000,
            max_bytes: HEADER_LEN + 2 * (RECORD_OVERHEAD + 10),
        };
        let mut chunk = Chunk::new();
        let ten = rec(None, "0123456789");
        assert!(chunk.fits(&ten, &limits));
        chunk.push(ten.clone());
        assert!(chunk.fits(&ten, &limits));
        chunk.push(ten.clone());
        assert!(!chunk.fits(&rec(None, "x"), &limits));
        assert!(chunk.is_full(&limits));
        // An oversized record still fits an empty chunk.
        assert!(Chunk::new().fits(&rec(None, &"y".repeat(10_000)), &limits));
    }

    #[test]
    fn estimate_is_an_upper_bound_of_the_built_batch() {
        let mut chunk = Chunk::new();
        for i in 0..100 {
            chunk.push(rec(Some(&format!("key-{i}")), &"v".repeat(i)));
        }
        let estimate = chunk.estimated_bytes();
        let batches = chunk.into_batches(Assignment::Fixed(0), 1);
        assert_eq!(batches.len(), 1);
        assert!(batches[0].batch.len() <= estimate);
    }

    #[test]
    fn fixed_assignment_keeps_input_order_in_one_batch() {
        let mut chunk = Chunk::new();
        for v in ["a", "b", "c"] {
            chunk.push(rec(Some(v), v));
        }
        let batches = chunk.into_batches(Assignment::Fixed(2), 1_700_000_000_000);
        assert_eq!(batches.len(), 1);
        assert_eq!((batches[0].partition, batches[0].records), (2, 3));
        let got = decode(&batches[0]);
        assert_eq!(
            got.iter().map(|(_, v, _)| v.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert!(got.iter().all(|(_, _, ts)| *ts == 1_700_000_000_000));
    }

    #[test]
    fn keyed_records_go_to_the_murmur2_partition_and_keyless_to_one() {
        let mut chunk = Chunk::new();
        // Partitions of 3 per Kafka: "21" -> 0, "12" -> 1, "123" -> 2.
        chunk.push(rec(Some("21"), "v1"));
        chunk.push(rec(Some("12"), "v2"));
        chunk.push(rec(None, "n1"));
        chunk.push(rec(Some("123"), "v3"));
        chunk.push(rec(Some("21"), "v4"));
        chunk.push(rec(None, "n2"));
        assert!(chunk.has_keyless());
        let batches = chunk.into_batches(
            Assignment::ByKey {
                partitions: 3,
                keyless: 1,
            },
            5,
        );
        let layout: Vec<(u32, Vec<String>)> = batches
            .iter()
            .map(|b| {
                (
                    b.partition,
                    decode(b).into_iter().map(|(_, v, _)| v).collect(),
                )
            })
            .collect();
        assert_eq!(
            layout,
            vec![
                (0, vec!["v1".to_owned(), "v4".to_owned()]),
                (1, vec!["v2".to_owned(), "n1".to_owned(), "n2".to_owned()]),
                (2, vec!["v3".to_owned()]),
            ]
        );
        assert_eq!(
            batches.iter().map(|b| b.records).collect::<Vec<_>>(),
            [2, 3, 1]
        );
        // Keys survive the trip; null stays null.
        let p1 = decode(&batches[1]);
        assert_eq!(p1[0].0.as_deref(), Some("12"));
        assert_eq!(p1[1].0, None);
    }

    #[test]
    fn empty_chunk_makes_no_batch() {
        assert!(
            Chunk::new()
                .into_batches(Assignment::Fixed(0), 0)
                .is_empty()
        );
    }
}
