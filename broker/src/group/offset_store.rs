//! Committed offsets, kept in the internal topic `__consumer_offsets` so they survive restarts
//! and replicate like any data.
//!
//! A commit is one batch appended to partition `hash(group) % partitions`: one record per
//! offset, key `v1 | group | topic | partition`, value `v1 | offset | metadata`. The newest
//! record for a key wins. The broker that leads a partition of the topic replays it into
//! memory when it starts leading it, and acknowledges a commit once every in-sync replica
//! holds it (as an acks=all produce). The topic has `flush.policy = always` (a commit is
//! on disk before it is acknowledged) and unlimited retention (without compaction, older
//! commits are kept; compaction is future work). In a cluster it is a replicated topic made
//! through the controller; a broker alone makes it itself.

use std::collections::BTreeMap;

use brook_proto::v1::ErrorCode;
use brook_proto::{BatchBuilder, Batches, LeaderEpoch, Offset};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::RwLock;

use super::TopicPartition;
use crate::log::LogError;
use crate::partition::{AdminError, Partition, Registry};

/// The internal topic's name.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Its partition count.
pub const OFFSETS_PARTITIONS: u32 = 8;
const VERSION: u8 = 1;

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The next offset the group will consume.
    pub offset: i64,
    /// Free text the committer attached.
    pub metadata: String,
}

/// Why committed offsets could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OffsetStoreError {
    /// The internal topic could not be created.
    #[error("cannot create {OFFSETS_TOPIC}: {0}")]
    Create(#[from] AdminError),
    /// Its log failed.
    #[error("{OFFSETS_TOPIC}: {0}")]
    Log(#[from] LogError),
    /// The commit was not replicated (this broker lost the leadership, or too few replicas
    /// are in sync).
    #[error("{OFFSETS_TOPIC}: {message}")]
    Replication {
        /// What the produce path would have answered.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// A record in it is not a commit.
    #[error("{OFFSETS_TOPIC} partition {partition} offset {offset}: {reason}")]
    Corrupt {
        /// The partition.
        partition: u32,
        /// The record's offset.
        offset: i64,
        /// What was wrong.
        reason: String,
    },
}

type Key = (String, TopicPartition);

/// Committed offsets of every group.
#[derive(Debug, Default)]
pub struct OffsetStore {
    committed: RwLock<BTreeMap<Key, Committed>>,
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u16(s.len() as u16);
    b.put_slice(s.as_bytes());
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_u16() as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

fn encode_key(group: &str, tp: &TopicPartition) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(VERSION);
    put_str(&mut b, group);
    put_str(&mut b, &tp.topic);
    b.put_u32(tp.partition);
    b.freeze()
}

fn decode_key(mut b: Bytes) -> Option<Key> {
    if b.remaining() < 1 || b.get_u8() != VERSION {
        return None;
    }
    let group = get_str(&mut b)?;
    let topic = get_str(&mut b)?;
    if b.remaining() != 4 {
        return None;
    }
    Some((group, TopicPartition::new(topic, b.get_u32())))
}

fn encode_value(c: &Committed) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(VERSION);
    b.put_i64(c.offset);
    put_str(&mut b, &c.metadata);
    b.freeze()
}

fn decode_value(mut b: Bytes) -> Option<Committed> {
    if b.remaining() < 9 || b.get_u8() != VERSION {
        return None;
    }
    let offset = b.get_i64();
    let metadata = get_str(&mut b)?;
    b.is_empty().then_some(Committed { offset, metadata })
}

/// Which internal partition holds a group's commits (FNV-1a of the group id).
pub fn partition_for_group(group: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in group.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % OFFSETS_PARTITIONS
}

/// Longest group id or metadata string (they are stored with a u16 length).
pub const MAX_NAME_LEN: usize = 4096;

impl OffsetStore {
    /// The internal topic's configuration: a commit is acknowledged once on disk, and nothing
    /// is deleted by retention.
    pub fn topic_configs() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("flush.policy".to_string(), "always".to_string()),
            ("retention.ms".to_string(), "-1".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
        ])
    }

    /// Creates the internal topic on a broker that runs alone, if it does not exist yet.
    pub async fn create_alone(registry: &Registry) -> Result<(), OffsetStoreError> {
        if registry.topic(OFFSETS_TOPIC).is_none() {
            registry
                .create_internal_topic(OFFSETS_TOPIC, OFFSETS_PARTITIONS, Self::topic_configs())
                .await?;
        }
        Ok(())
    }

    /// Replays one partition of the internal topic, replacing what was known of the groups
    /// it keeps: done when this broker starts leading it.
    pub async fn load(&self, partition: &Partition) -> Result<(), OffsetStoreError> {
        let p = partition.id();
        let mut loaded = BTreeMap::new();
        let log = partition.log();
        let mut offset = log.start_offset();
        while offset < log.end_offset() {
            let bytes = log.read(offset, 1 << 20).await?;
            for batch in Batches::new(bytes, usize::MAX) {
                let corrupt = |offset: i64, reason: String| OffsetStoreError::Corrupt {
                    partition: p,
                    offset,
                    reason,
                };
                let batch = batch.map_err(|e| corrupt(offset.0, e.to_string()))?;
                let records =
                    (batch.records()).map_err(|e| corrupt(batch.base_offset(), e.to_string()))?;
                for r in records {
                    let r = r.map_err(|e| corrupt(batch.base_offset(), e.to_string()))?;
                    let key = (r.key.clone().and_then(decode_key))
                        .ok_or_else(|| corrupt(r.offset, "bad key".into()))?;
                    let value = (r.value.clone().and_then(decode_value))
                        .ok_or_else(|| corrupt(r.offset, "bad value".into()))?;
                    loaded.insert(key, value);
                }
                offset = Offset(batch.last_offset() + 1);
            }
        }
        let mut map = self.committed.write();
        map.retain(|(group, _), _| partition_for_group(group) != p);
        map.extend(loaded);
        Ok(())
    }

    /// Writes `offsets` for `group` to `partition` (the group's, led by this broker in
    /// `epoch`), waits until every in-sync replica holds them, and makes them visible.
    pub async fn commit(
        &self,
        partition: &Partition,
        epoch: LeaderEpoch,
        group: &str,
        offsets: &[(TopicPartition, Committed)],
    ) -> Result<(), OffsetStoreError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut b = BatchBuilder::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for (tp, c) in offsets {
            b.append(
                now,
                Some(&encode_key(group, tp)),
                Some(&encode_value(c)),
                &[],
            );
        }
        (partition.append_replicated(b.build(), epoch).await)
            .map_err(|(code, message)| OffsetStoreError::Replication { code, message })?;
        let mut map = self.committed.write();
        for (tp, c) in offsets {
            map.insert((group.to_string(), tp.clone()), c.clone());
        }
        Ok(())
    }

    /// The committed offsets of `group` (for the named partitions, or all).
    pub fn fetch(
        &self,
        group: &str,
        only: Option<&[TopicPartition]>,
    ) -> Vec<(TopicPartition, Committed)> {
        let map = self.committed.read();
        map.iter()
            .filter(|((g, tp), _)| g == group && only.is_none_or(|o| o.contains(tp)))
            .map(|((_, tp), c)| (tp.clone(), c.clone()))
            .collect()
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .committed
            .read()
            .keys()
            .map(|(g, _)| g.clone())
            .collect();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip_and_reject_garbage() {
        let tp = TopicPartition::new("orders", 7);
        assert_eq!(
            decode_key(encode_key("g1", &tp)),
            Some(("g1".to_string(), tp))
        );
        let c = Committed {
            offset: 42,
            metadata: "m".into(),
        };
        assert_eq!(decode_value(encode_value(&c)), Some(c));
        assert_eq!(decode_key(Bytes::from_static(b"\x02xx")), None);
        assert_eq!(decode_value(Bytes::from_static(b"\x01\x00")), None);
        assert!(partition_for_group("g1") < OFFSETS_PARTITIONS);
    }
}
