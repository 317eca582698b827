//! [`MirrorRecord`]: a record on its way from one cluster to the other, and
//! [`destination_partition`], where it goes.

use std::sync::Arc;

use brook_client::partition_for_key;
use bytes::Bytes;

use crate::config::Partitioning;

/// A record read from the source side, with everything the destination must reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRecord {
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: u32,
    /// Source offset.
    pub offset: i64,
    /// Milliseconds since the Unix epoch; `None` when the source had none.
    pub timestamp: Option<i64>,
    /// `None` for a null key.
    pub key: Option<Bytes>,
    /// `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order; a header value may be null.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

impl MirrorRecord {
    /// Bytes of key, value and headers: what the record counts against the in-flight limit.
    pub fn size(&self) -> usize {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        len(&self.key)
            + len(&self.value)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + len(v))
                .sum::<usize>()
    }
}

/// The destination partition of `record` among `partitions` (at least 1).
///
/// [`Partitioning::ByKey`]: `murmur2(key) % partitions` for keyed records, the partitioner of
/// Kafka's Java client and of Brook's; a keyless record keeps its source partition's number
/// modulo `partitions`, so records of one source partition stay in order. With as many
/// partitions on both sides, keyed records written by either system's default partitioner
/// therefore keep their partition number.
/// [`Partitioning::OneToOne`]: the source partition's number (the caller checked that the
/// destination has enough partitions).
pub fn destination_partition(
    partitioning: Partitioning,
    record: &MirrorRecord,
    partitions: u32,
) -> u32 {
    debug_assert!(partitions > 0);
    match (partitioning, &record.key) {
        (Partitioning::ByKey, Some(key)) => partition_for_key(key, partitions),
        (Partitioning::ByKey, None) => record.partition % partitions,
        (Partitioning::OneToOne, _) => record.partition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: u32, key: Option<&'static str>) -> MirrorRecord {
        MirrorRecord {
            topic: Arc::from("t"),
            partition,
            offset: 0,
            timestamp: None,
            key: key.map(|k| Bytes::from_static(k.as_bytes())),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![(Bytes::from_static(b"h"), None)],
        }
    }

    #[test]
    fn keyed_records_go_by_key_whatever_their_source_partition() {
        let a = destination_partition(Partitioning::ByKey, &record(0, Some("key-1")), 4);
        let b = destination_partition(Partitioning::ByKey, &record(3, Some("key-1")), 4);
        assert_eq!(a, b);
        assert_eq!(a, partition_for_key(b"key-1", 4));
    }

    #[test]
    fn keyless_records_keep_their_source_partition_modulo() {
        assert_eq!(
            destination_partition(Partitioning::ByKey, &record(5, None), 4),
            1
        );
        assert_eq!(
            destination_partition(Partitioning::ByKey, &record(2, None), 4),
            2
        );
    }

    #[test]
    fn one_to_one_keeps_the_partition_number_whatever_the_key() {
        assert_eq!(
            destination_partition(Partitioning::OneToOne, &record(3, Some("key-1")), 8),
            3
        );
    }

    #[test]
    fn size_counts_key_value_and_headers() {
        assert_eq!(record(0, Some("abc")).size(), 3 + 1 + 1);
        assert_eq!(record(0, None).size(), 1 + 1);
    }
}
