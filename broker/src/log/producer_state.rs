//! What a partition log remembers of idempotent producers, so a retried batch is written once
//! and a gap in a producer's sequence numbers is refused (Kafka's producer state).
//!
//! For each producer id: its newest epoch and its last [`BATCHES_PER_PRODUCER`] batches
//! (sequence range and where they landed). A batch whose sequence range matches a remembered
//! one is a duplicate and is answered with the original offsets; otherwise its first sequence
//! must follow the last one exactly.
//!
//! The state survives restarts through snapshots (`{offset:020}.snapshot`, written at each
//! roll and on close: the state after every batch below `offset`), and is brought up to date
//! by replaying batch headers from the snapshot's offset to the log end.

use std::collections::{HashMap, VecDeque};

use brook_proto::BatchHeader;
use serde::{Deserialize, Serialize};

/// Batches remembered per producer (Kafka's window of in-flight requests).
pub const BATCHES_PER_PRODUCER: usize = 5;

/// Where one batch of a producer landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    /// Sequence number of its first record.
    pub first_seq: i32,
    /// Sequence number of its last record.
    pub last_seq: i32,
    /// Offset of its first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
    /// When it was appended (ms since the epoch).
    pub append_time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
}

/// A batch the producer state refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// The first sequence number does not follow the producer's last one.
    #[error(
        "producer {producer_id} epoch {epoch}: sequence {got} is out of order, expected {expected}"
    )]
    OutOfOrder {
        /// The producer.
        producer_id: i64,
        /// Its epoch.
        epoch: i16,
        /// The sequence the broker expects next.
        expected: i32,
        /// The batch's first sequence.
        got: i32,
    },
    /// The epoch is older than the producer's newest: another instance took over.
    #[error("producer {producer_id}: epoch {epoch} is fenced by the newer epoch {current}")]
    Fenced {
        /// The producer.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The newest epoch seen.
        current: i16,
    },
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Write it (a non-idempotent batch, or the next in sequence).
    Append,
    /// Already written: answer with these offsets.
    Duplicate(BatchMeta),
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX, as in Kafka.
    (i64::from(h.base_sequence) + i64::from(h.last_offset_delta))
        .rem_euclid(i64::from(i32::MAX) + 1) as i32
}

impl ProducerState {
    /// Decides what to do with `h` (its producer fields; offsets are not looked at).
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        if h.producer_id < 0 {
            return Ok(SequenceCheck::Append);
        }
        let (producer_id, epoch, first) = (h.producer_id, h.producer_epoch, h.base_sequence);
        let Some(entry) = self.producers.get(&producer_id) else {
            return if first == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    producer_id,
                    epoch,
                    expected: 0,
                    got: first,
                })
            };
        };
        if epoch < entry.epoch {
            return Err(SequenceError::Fenced {
                producer_id,
                epoch,
                current: entry.epoch,
            });
        }
        if epoch > entry.epoch {
            return if first == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    producer_id,
                    epoch,
                    expected: 0,
                    got: first,
                })
            };
        }
        let last = last_seq(h);
        if let Some(m) = entry
            .batches
            .iter()
            .find(|m| m.first_seq == first && m.last_seq == last)
        {
            return Ok(SequenceCheck::Duplicate(*m));
        }
        let expected = entry.batches.back().map_or(0, |m| {
            if m.last_seq == i32::MAX {
                0
            } else {
                m.last_seq + 1
            }
        });
        if first != expected {
            return Err(SequenceError::OutOfOrder {
                producer_id,
                epoch,
                expected,
                got: first,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records that `h` (with its assigned base offset) was written at `append_time_ms`.
    pub fn record(&mut self, h: &BatchHeader, append_time_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            append_time_ms,
        });
    }

    /// Number of producers known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(
        producer_id: i64,
        epoch: i16,
        seq: i32,
        records: i32,
        base_offset: i64,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: records,
        }
    }

    #[test]
    fn sequences_must_follow_and_duplicates_get_the_original_offsets() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(&header(7, 0, 0, 3, 0)), Ok(SequenceCheck::Append));
        s.record(&header(7, 0, 0, 3, 10), 100);
        assert_eq!(s.check(&header(7, 0, 3, 2, 0)), Ok(SequenceCheck::Append));
        s.record(&header(7, 0, 3, 2, 13), 101);
        let first = BatchMeta {
            first_seq: 0,
            last_seq: 2,
            base_offset: 10,
            last_offset: 12,
            append_time_ms: 100,
        };
        assert_eq!(
            s.check(&header(7, 0, 0, 3, 0)),
            Ok(SequenceCheck::Duplicate(first))
        );
        assert_eq!(
            s.check(&header(7, 0, 6, 1, 0)),
            Err(SequenceError::OutOfOrder {
                producer_id: 7,
                epoch: 0,
                expected: 5,
                got: 6
            })
        );
        assert_eq!(
            s.check(&header(8, 0, 4, 1, 0)),
            Err(SequenceError::OutOfOrder {
                producer_id: 8,
                epoch: 0,
                expected: 0,
                got: 4
            })
        );
        // Non-idempotent batches are always appended.
        assert_eq!(
            s.check(&header(-1, -1, -1, 5, 0)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn a_new_epoch_restarts_at_zero_and_fences_the_old_one() {
        let mut s = ProducerState::default();
        s.record(&header(1, 0, 0, 1, 0), 0);
        assert_eq!(
            s.check(&header(1, 1, 5, 1, 0)),
            Err(SequenceError::OutOfOrder {
                producer_id: 1,
                epoch: 1,
                expected: 0,
                got: 5
            })
        );
        assert_eq!(s.check(&header(1, 1, 0, 1, 0)), Ok(SequenceCheck::Append));
        s.record(&header(1, 1, 0, 1, 1), 0);
        assert_eq!(
            s.check(&header(1, 0, 1, 1, 0)),
            Err(SequenceError::Fenced {
                producer_id: 1,
                epoch: 0,
                current: 1
            })
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&header(3, 0, i, 1, i64::from(i)), 0);
        }
        assert!(
            matches!(s.check(&header(3, 0, 2, 1, 0)), Ok(SequenceCheck::Duplicate(m)) if m.base_offset == 2)
        );
        assert!(matches!(
            s.check(&header(3, 0, 1, 1, 0)),
            Err(SequenceError::OutOfOrder { expected: 7, .. })
        ));
        let mut s = ProducerState::default();
        s.record(&header(4, 0, 0, 1, 0), 0);
        s.producers
            .get_mut(&4)
            .unwrap()
            .batches
            .back_mut()
            .unwrap()
            .last_seq = i32::MAX;
        assert_eq!(
            s.check(&header(4, 0, 0, 2, 0)),
            Ok(SequenceCheck::Append),
            "after i32::MAX comes 0"
        );
        assert_eq!(last_seq(&header(4, 0, i32::MAX, 3, 0)), 1);
    }
}

/// Snapshot files: `{offset:020}.snapshot`, the state after every batch below `offset`.
pub(crate) mod snapshots {
    use std::path::Path;

    use super::ProducerState;
    use crate::log::segment::parse_base_offset;
    use crate::log::{LogError, Segment, write_atomically};

    /// Snapshots kept besides the newest (older ones are deleted when a new one is written).
    const KEEP: usize = 2;

    fn list(dir: &Path) -> Result<Vec<i64>, LogError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(LogError::io("list", dir))? {
            let entry = entry.map_err(LogError::io("list", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(offset) = name.strip_suffix(".snapshot").and_then(parse_base_offset) {
                out.push(offset);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn name(offset: i64) -> String {
        format!("{offset:020}.snapshot")
    }

    /// Writes the state as of `offset` and prunes older snapshots.
    pub(crate) fn write(dir: &Path, offset: i64, state: &ProducerState) -> Result<(), LogError> {
        let bytes = serde_json::to_vec(state).expect("producer state serializes");
        write_atomically(dir, &name(offset), &bytes)?;
        let all = list(dir)?;
        for old in &all[..all.len().saturating_sub(KEEP)] {
            let path = dir.join(name(*old));
            std::fs::remove_file(&path).map_err(LogError::io("remove", &path))?;
        }
        Ok(())
    }

    /// Deletes snapshots of offsets above `end` (after a truncation).
    pub(crate) fn remove_above(dir: &Path, end: i64) -> Result<(), LogError> {
        for offset in list(dir)?.into_iter().filter(|&o| o > end) {
            let path = dir.join(name(offset));
            std::fs::remove_file(&path).map_err(LogError::io("remove", &path))?;
        }
        Ok(())
    }

    /// The state after every batch of `segments` (the whole log): the newest readable
    /// snapshot at or below the log end, then the batch headers after it.
    pub(crate) fn load(
        dir: &Path,
        segments: &[std::sync::Arc<Segment>],
        end: i64,
    ) -> Result<ProducerState, LogError> {
        let mut state = ProducerState::default();
        let mut from = segments.first().map_or(0, |s| s.base_offset());
        for offset in list(dir)?.into_iter().rev().filter(|&o| o <= end) {
            let path = dir.join(name(offset));
            match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ProducerState>(&b).ok())
            {
                Some(s) => {
                    state = s;
                    from = offset.max(from);
                    break;
                }
                None => {
                    tracing::warn!(snapshot = %path.display(), "unreadable producer snapshot; using an older one")
                }
            }
        }
        for seg in segments.iter().filter(|s| s.next_offset() > from) {
            seg.for_each_header(from, |h| state.record(h, h.max_timestamp))?;
        }
        Ok(state)
    }
}
