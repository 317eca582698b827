//! [`Fetched`]: one partition's fetched bytes turned into records, CRC-checked and decoded.

use brook_proto::{BatchError, Batches};
use bytes::Bytes;

use super::{ConsumerRecord, TopicPartition};
use crate::connection::MAX_MESSAGE_BYTES;

/// The records of one partition's fetch answer.
///
/// The broker answers with whole batches starting with the one holding the fetch offset, so
/// records below the fetch offset are dropped. Batches are checked one by one (length, magic,
/// CRC) and decoded (and decompressed) by `brook_proto`; the records of the batches before a
/// bad one are kept, so the application reads up to the corruption before it sees the error.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// Records at or after the fetch offset, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// Where the next fetch starts: after the last whole batch, never below the fetch offset.
    /// With `corrupt`, the position of the bad batch.
    pub next_offset: i64,
    /// Why the batch at `next_offset` could not be read.
    pub corrupt: Option<BatchError>,
}

impl Fetched {
    /// Decodes `buf`, the answer to a fetch of `tp` at `fetch_offset`.
    ///
    /// A batch cut short at the end, after at least one whole batch, is left for the next
    /// fetch; a first batch cut short is corrupt (the broker always sends at least one whole
    /// batch).
    pub fn decode(tp: &TopicPartition, fetch_offset: i64, buf: Bytes) -> Fetched {
        let mut fetched = Fetched {
            records: Vec::new(),
            next_offset: fetch_offset,
            corrupt: None,
        };
        for (index, batch) in Batches::new(buf, MAX_MESSAGE_BYTES).enumerate() {
            let batch = match batch {
                Ok(batch) => batch,
                Err(BatchError::Truncated { .. }) if index > 0 => break,
                Err(err) => {
                    fetched.corrupt = Some(err);
                    break;
                }
            };
            // Decode the whole batch before keeping any of it: a batch is read entirely or
            // not at all.
            let decoded: Result<Vec<_>, BatchError> = batch.records().and_then(|records| {
                records
                    .filter(|r| !matches!(r, Ok(r) if r.offset < fetch_offset))
                    .map(|r| r.map(|r| ConsumerRecord::new(tp, r)))
                    .collect()
            });
            match decoded {
                Ok(records) => fetched.records.extend(records),
                Err(err) => {
                    fetched.corrupt = Some(err);
                    break;
                }
            }
            fetched.next_offset = fetched
                .next_offset
                .max(batch.last_offset().saturating_add(1));
        }
        fetched
    }

    /// Bytes the records count against the prefetch buffer.
    pub fn size_in_bytes(&self) -> usize {
        self.records.iter().map(ConsumerRecord::size_in_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use brook_proto::batch::stamp;
    use brook_proto::{BatchBuilder, Header, Offset};
    use bytes::BytesMut;

    use super::*;
    use crate::ClientError;
    use crate::consumer::assignment::PartitionError;

    /// A batch as the broker serves it: stamped with `base_offset`.
    fn batch(base_offset: i64, values: &[&str]) -> Bytes {
        let mut b = BatchBuilder::new();
        for (i, v) in values.iter().enumerate() {
            let headers = [Header {
                key: Bytes::from_static(b"i"),
                value: Some(Bytes::from(i.to_string())),
            }];
            b.append(1000 + i as i64, Some(b"k"), Some(v.as_bytes()), &headers);
        }
        let built = b.build();
        let mut bytes = BytesMut::from(&built[..]);
        let prefix = stamp(&built, base_offset, 0);
        bytes[..prefix.len()].copy_from_slice(&prefix);
        bytes.freeze()
    }

    fn concat(parts: &[&[u8]]) -> Bytes {
        Bytes::from(parts.concat())
    }

    fn offsets_and_values(f: &Fetched) -> Vec<(i64, String)> {
        f.records
            .iter()
            .map(|r| {
                let value = String::from_utf8(r.value.as_ref().unwrap().to_vec()).unwrap();
                (r.offset.get(), value)
            })
            .collect()
    }

    #[test]
    fn records_below_the_fetch_offset_are_dropped() {
        let tp = TopicPartition::new("orders", 2);
        let buf = concat(&[&batch(10, &["a", "b", "c"]), &batch(13, &["d"])]);
        let fetched = Fetched::decode(&tp, 11, buf);
        assert_eq!(
            offsets_and_values(&fetched),
            [(11, "b".into()), (12, "c".into()), (13, "d".into())]
        );
        assert_eq!(fetched.next_offset, 14);
        assert_eq!(fetched.corrupt, None);
        let first = &fetched.records[0];
        assert_eq!(&*first.topic, "orders");
        assert_eq!(first.partition, 2);
        assert_eq!(first.offset, Offset(11));
        assert_eq!(first.timestamp, 1001);
        assert_eq!(first.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(first.headers[0].value.as_deref(), Some(&b"1"[..]));
        assert_eq!(fetched.size_in_bytes(), 3 * (1 + 1 + 1 + 1));
    }

    #[test]
    fn nothing_fetched_keeps_the_offset() {
        let fetched = Fetched::decode(&TopicPartition::new("t", 0), 7, Bytes::new());
        assert!(fetched.records.is_empty());
        assert_eq!((fetched.next_offset, fetched.corrupt), (7, None));
    }

    #[test]
    fn a_partial_batch_at_the_end_is_left_for_the_next_fetch() {
        let second = batch(1, &["b"]);
        let buf = concat(&[&batch(0, &["a"]), &second[..second.len() - 3]]);
        let fetched = Fetched::decode(&TopicPartition::new("t", 0), 0, buf);
        assert_eq!(offsets_and_values(&fetched), [(0, "a".into())]);
        assert_eq!((fetched.next_offset, fetched.corrupt), (1, None));
    }

    #[test]
    fn a_crc_mismatch_keeps_earlier_batches_and_reports_partition_and_offset() {
        let tp = TopicPartition::new("orders", 2);
        let mut bad = BytesMut::from(&batch(3, &["c", "d"])[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let buf = concat(&[&batch(0, &["a", "b", "x"]), &bad, &batch(5, &["e"])]);
        let fetched = Fetched::decode(&tp, 1, buf);
        assert_eq!(
            offsets_and_values(&fetched),
            [(1, "b".into()), (2, "x".into())]
        );
        assert_eq!(fetched.next_offset, 3);
        let source = fetched.corrupt.expect("the second batch is corrupt");
        assert!(
            matches!(source, BatchError::CrcMismatch { .. }),
            "{source:?}"
        );

        let err = PartitionError::Corrupt {
            offset: fetched.next_offset,
            source,
        }
        .to_client_error(&tp);
        match &err {
            ClientError::CorruptBatch {
                topic,
                partition,
                offset,
                source: BatchError::CrcMismatch { .. },
            } => assert_eq!((topic.as_str(), *partition, *offset), ("orders", 2, 3)),
            other => panic!("expected CorruptBatch, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "corrupt batch in topic orders partition 2 at fetch offset 3"
        );
        assert!(!err.is_retriable());
    }

    #[test]
    fn a_corrupt_first_batch_yields_no_records() {
        let tp = TopicPartition::new("t", 0);
        let good = batch(4, &["a"]);
        let fetched = Fetched::decode(&tp, 4, good.slice(..good.len() - 1));
        assert!(fetched.records.is_empty());
        assert_eq!(fetched.next_offset, 4);
        assert!(matches!(
            fetched.corrupt,
            Some(BatchError::Truncated { .. })
        ));

        let mut bad_magic = BytesMut::from(&good[..]);
        bad_magic[16] = 1;
        let fetched = Fetched::decode(&tp, 4, bad_magic.freeze());
        assert_eq!(
            fetched.corrupt,
            Some(BatchError::UnsupportedMagic { magic: 1 })
        );
    }
}
