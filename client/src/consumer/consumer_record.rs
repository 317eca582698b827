//! [`ConsumerRecord`]: a record as `poll` hands it to the application.

use std::sync::Arc;

use brook_proto::{Header, Offset, Record};
use bytes::Bytes;

use super::TopicPartition;

/// One record with the topic and partition it was read from. Key, value and header bytes
/// share the fetched buffer (zero-copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic (shared by every record of the partition).
    pub topic: Arc<str>,
    /// The partition number.
    pub partition: u32,
    /// The record's offset in its partition.
    pub offset: Offset,
    /// Milliseconds since the Unix epoch, as the producer set it.
    pub timestamp: i64,
    /// `None` for a null key.
    pub key: Option<Bytes>,
    /// `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in the order they were written.
    pub headers: Vec<Header>,
}

impl ConsumerRecord {
    /// Attaches the topic and partition to a decoded record.
    pub(crate) fn new(tp: &TopicPartition, record: Record) -> ConsumerRecord {
        ConsumerRecord {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset: Offset(record.offset),
            timestamp: record.timestamp,
            key: record.key,
            value: record.value,
            headers: record.headers,
        }
    }

    /// The record's topic and partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }

    /// Bytes of key, value, header keys and header values: what the record counts against
    /// the consumer's per-partition prefetch buffer.
    pub fn size_in_bytes(&self) -> usize {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        len(&self.key)
            + len(&self.value)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + len(&h.value))
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_counts_key_value_and_headers() {
        let record = ConsumerRecord::new(
            &TopicPartition::new("t", 1),
            Record {
                offset: 7,
                timestamp: 9,
                key: Some(Bytes::from_static(b"key")),
                value: Some(Bytes::from_static(b"value")),
                headers: vec![
                    Header {
                        key: Bytes::from_static(b"h1"),
                        value: Some(Bytes::from_static(b"abc")),
                    },
                    Header {
                        key: Bytes::from_static(b"h2"),
                        value: None,
                    },
                ],
            },
        );
        assert_eq!(record.size_in_bytes(), 3 + 5 + 2 + 3 + 2);
        assert_eq!(record.topic_partition(), TopicPartition::new("t", 1));
        assert_eq!(record.offset, Offset(7));
        let empty = ConsumerRecord {
            key: None,
            value: None,
            headers: vec![],
            ..record
        };
        assert_eq!(empty.size_in_bytes(), 0);
    }
}
