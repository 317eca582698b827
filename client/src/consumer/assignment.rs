//! [`Assignment`]: the consumer's partitions, each with its position, epoch and prefetched
//! records, shared by the application's handle and the fetcher task through [`Shared`].
//!
//! The handle changes positions (assign, seek) and drains records (poll); the fetcher reads
//! what to fetch and files what it fetched. Every change of position gives the partition a
//! new epoch, and the fetcher files a result only if the partition still has the epoch the
//! request was made with, so a seek discards whatever was in flight for the partition.
//! The mutex is held for bookkeeping only, never across I/O or an `.await`.

use std::collections::{BTreeMap, VecDeque};

use brook_proto::BatchError;
use brook_proto::v1::ErrorCode;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::retry::Retry;
use super::{AutoOffsetReset, ConsumerRecord, TopicPartition};
use crate::ClientError;

/// What the handle and the fetcher share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The partitions.
    pub state: Mutex<Assignment>,
    /// Rings the fetcher: the assignment or a position changed, or a buffer was drained.
    pub wake: Notify,
    /// Rings the application (with `notify_waiters`): records, an error or a position
    /// arrived, or the fetcher stopped.
    pub changed: Notify,
}

impl Shared {
    pub fn new(reset_policy: AutoOffsetReset) -> Shared {
        Shared {
            state: Mutex::new(Assignment::new(reset_policy)),
            wake: Notify::new(),
            changed: Notify::new(),
        }
    }
}

/// Where a partition's position is to be looked up (with ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetTo {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The first record with a timestamp at or after this (ms since the Unix epoch), or the
    /// high watermark when there is none.
    Timestamp(i64),
}

/// Where a partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// The next fetch starts at this offset (everything below it is buffered or returned).
    Fetch(i64),
    /// The offset is being looked up.
    Reset(ResetTo),
    /// No position and no reset policy: the application has to seek.
    Unset,
}

/// A partition error that stays until the application seeks the partition: `poll` returns
/// it every time the partition has nothing left to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PartitionError {
    /// The fetch offset is outside the log and `auto_offset_reset` is `none`.
    OutOfRange {
        /// The offset fetched.
        offset: i64,
        /// The log start offset the broker reported.
        log_start: i64,
        /// The high watermark the broker reported.
        high_watermark: i64,
    },
    /// The batch at `offset` failed its CRC check or could not be decoded.
    Corrupt {
        /// The position of the bad batch.
        offset: i64,
        /// What is wrong with it.
        source: BatchError,
    },
    /// The broker answered a code that retrying cannot cure.
    Broker {
        /// The code.
        code: ErrorCode,
        /// The broker's message.
        message: String,
    },
}

impl PartitionError {
    /// The error `poll` returns for it.
    pub fn to_client_error(&self, tp: &TopicPartition) -> ClientError {
        match self {
            PartitionError::OutOfRange {
                offset,
                log_start,
                high_watermark,
            } => ClientError::Broker {
                topic: tp.topic.to_string(),
                partition: Some(tp.partition),
                code: ErrorCode::OffsetOutOfRange,
                message: format!(
                    "offset {offset} is outside the log (log start {log_start}, high watermark \
                     {high_watermark}) and auto_offset_reset is none: seek to a valid offset"
                ),
            },
            PartitionError::Corrupt { offset, source } => ClientError::CorruptBatch {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                offset: *offset,
                source: *source,
            },
            PartitionError::Broker { code, message } => ClientError::Broker {
                topic: tp.topic.to_string(),
                partition: Some(tp.partition),
                code: *code,
                message: message.clone(),
            },
        }
    }
}

/// One assigned partition.
#[derive(Debug)]
pub(crate) struct PartitionState {
    /// Changes with every change of position; results of requests made with another epoch
    /// are dropped.
    pub epoch: u64,
    /// Where fetching stands.
    pub position: Position,
    /// Fetched records `poll` has not returned yet, in offset order.
    pub records: VecDeque<ConsumerRecord>,
    /// [`ConsumerRecord::size_in_bytes`] summed over `records`.
    pub buffered_bytes: usize,
    /// A sticky error, returned by `poll` once `records` is empty.
    pub error: Option<PartitionError>,
    /// A fetch or list-offsets request for this epoch is in flight.
    pub in_flight: bool,
    /// Backoff after retriable failures.
    pub retry: Retry,
    /// The leader's node id; `None` until metadata names one.
    pub leader: Option<i32>,
}

impl PartitionState {
    fn new(epoch: u64, position: Position) -> PartitionState {
        PartitionState {
            epoch,
            position,
            records: VecDeque::new(),
            buffered_bytes: 0,
            error: None,
            in_flight: false,
            retry: Retry::default(),
            leader: None,
        }
    }

    /// Moves to `position` under a new epoch, dropping buffered records, the sticky error and
    /// the backoff. The leader stays known.
    fn restart(&mut self, epoch: u64, position: Position) {
        let leader = self.leader;
        *self = PartitionState::new(epoch, position);
        self.leader = leader;
    }

    /// Files records fetched at the current position and moves the fetch position on.
    pub fn push(&mut self, records: Vec<ConsumerRecord>, bytes: usize, next_offset: i64) {
        self.records.extend(records);
        self.buffered_bytes += bytes;
        self.position = Position::Fetch(next_offset);
    }
}

/// The assigned partitions, in topic and partition order.
#[derive(Debug)]
pub(crate) struct Assignment {
    partitions: BTreeMap<TopicPartition, PartitionState>,
    reset_policy: AutoOffsetReset,
    /// Source of epochs: never reused, so a partition unassigned and assigned again does not
    /// accept results meant for its former self.
    next_epoch: u64,
    /// A retriable failure that lasted the retry timeout; the next `poll` returns it once.
    transient: Option<ClientError>,
    /// Where the next drain starts, so every partition gets its turn to fill a poll.
    rotate: usize,
}

impl Assignment {
    pub fn new(reset_policy: AutoOffsetReset) -> Assignment {
        Assignment {
            partitions: BTreeMap::new(),
            reset_policy,
            next_epoch: 0,
            transient: None,
            rotate: 0,
        }
    }

    fn epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// Where a partition starts without a position of its own.
    fn initial_position(&self) -> Position {
        match self.reset_policy {
            AutoOffsetReset::Earliest => Position::Reset(ResetTo::Earliest),
            AutoOffsetReset::Latest => Position::Reset(ResetTo::Latest),
            AutoOffsetReset::None => Position::Unset,
        }
    }

    /// Replaces the assignment with `partitions`. Partitions assigned before keep their
    /// position and buffered records; new ones start per the reset policy.
    pub fn assign(&mut self, partitions: &[TopicPartition]) {
        self.partitions.retain(|tp, _| partitions.contains(tp));
        for tp in partitions {
            if !self.partitions.contains_key(tp) {
                let state = PartitionState::new(self.epoch(), self.initial_position());
                self.partitions.insert(tp.clone(), state);
            }
        }
        if self.partitions.is_empty() {
            self.transient = None;
        }
    }

    /// The assigned partitions in order.
    pub fn assigned(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// The assigned topics, each once.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .partitions
            .keys()
            .map(|tp| tp.topic.to_string())
            .collect();
        topics.dedup();
        topics
    }

    /// Every partition, for the fetcher to plan its requests.
    pub fn partitions_mut(
        &mut self,
    ) -> impl Iterator<Item = (&TopicPartition, &mut PartitionState)> {
        self.partitions.iter_mut()
    }

    /// The partition if it is still assigned with `epoch`.
    pub fn current(&mut self, tp: &TopicPartition, epoch: u64) -> Option<&mut PartitionState> {
        self.partitions.get_mut(tp).filter(|p| p.epoch == epoch)
    }

    /// Makes the next fetch of `tp` start at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ClientError> {
        if offset < 0 {
            return Err(ClientError::InvalidArgument(format!(
                "cannot seek {tp} to offset {offset}: offsets start at 0"
            )));
        }
        self.check_assigned(std::slice::from_ref(tp))?;
        let epoch = self.epoch();
        if let Some(state) = self.partitions.get_mut(tp) {
            state.restart(epoch, Position::Fetch(offset));
        }
        Ok(())
    }

    /// Makes `partitions` (every assigned partition if empty) look their position up anew.
    pub fn reset(&mut self, partitions: &[TopicPartition], to: ResetTo) -> Result<(), ClientError> {
        self.check_assigned(partitions)?;
        let targets = if partitions.is_empty() {
            self.assigned()
        } else {
            partitions.to_vec()
        };
        for tp in &targets {
            let epoch = self.epoch();
            if let Some(state) = self.partitions.get_mut(tp) {
                state.restart(epoch, Position::Reset(to));
            }
        }
        Ok(())
    }

    /// The fetch of `tp` at `offset` was out of range: reset per the policy, or stop the
    /// partition with a sticky error.
    pub fn out_of_range(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    ) {
        let to = match self.reset_policy {
            AutoOffsetReset::Earliest => ResetTo::Earliest,
            AutoOffsetReset::Latest => ResetTo::Latest,
            AutoOffsetReset::None => {
                if let Some(state) = self.partitions.get_mut(tp) {
                    state.error = Some(PartitionError::OutOfRange {
                        offset,
                        log_start,
                        high_watermark,
                    });
                }
                return;
            }
        };
        tracing::warn!(topic = %tp.topic, partition = tp.partition, offset, log_start, high_watermark, reset = ?to, "offset out of range, resetting");
        let epoch = self.epoch();
        if let Some(state) = self.partitions.get_mut(tp) {
            state.restart(epoch, Position::Reset(to));
        }
    }

    /// Keeps `err` for the next `poll` (the first one, if several arrive before it).
    pub fn report(&mut self, err: ClientError) {
        match &self.transient {
            None => self.transient = Some(err),
            Some(kept) => {
                tracing::debug!(cause = %err, kept = %kept, "an earlier error is still waiting for poll");
            }
        }
    }

    /// The offset of the next record `poll` returns for `tp`: `None` while it is being looked
    /// up. Fails for an unassigned partition, a partition that has to be sought, and a lookup
    /// that failed.
    pub fn position(&mut self, tp: &TopicPartition) -> Result<Option<i64>, ClientError> {
        self.check_assigned(std::slice::from_ref(tp))?;
        let state = &self.partitions[tp];
        match state.position {
            Position::Fetch(offset) => Ok(Some(
                state.records.front().map_or(offset, |r| r.offset.get()),
            )),
            Position::Unset => Err(no_position(tp)),
            Position::Reset(_) => match (&state.error, self.transient.take()) {
                (Some(err), _) => Err(err.to_client_error(tp)),
                (None, Some(err)) => Err(err),
                (None, None) => Ok(None),
            },
        }
    }

    /// Buffered bytes of `tp` (0 if not assigned).
    pub fn buffered_bytes(&self, tp: &TopicPartition) -> usize {
        self.partitions.get(tp).map_or(0, |p| p.buffered_bytes)
    }

    /// Takes up to `max` buffered records, keeping each partition's order and starting with a
    /// different partition each time. Errors come first: a reported failure, then the first
    /// partition with nothing buffered that has a sticky error or no position.
    pub fn drain(&mut self, max: usize) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self.partitions.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no partitions are assigned to this consumer: call assign before poll".into(),
            ));
        }
        if let Some(err) = self.transient.take() {
            return Err(err);
        }
        for (tp, state) in &self.partitions {
            if !state.records.is_empty() {
                continue;
            }
            if let Some(err) = &state.error {
                return Err(err.to_client_error(tp));
            }
            if state.position == Position::Unset {
                return Err(no_position(tp));
            }
        }
        let start = self.rotate % self.partitions.len();
        self.rotate = start + 1;
        let mut out = Vec::new();
        let take = |state: &mut PartitionState, out: &mut Vec<ConsumerRecord>| {
            while out.len() < max {
                let Some(record) = state.records.pop_front() else {
                    break;
                };
                state.buffered_bytes -= record.size_in_bytes();
                out.push(record);
            }
        };
        for state in self.partitions.values_mut().skip(start) {
            take(state, &mut out);
        }
        for state in self.partitions.values_mut().take(start) {
            take(state, &mut out);
        }
        Ok(out)
    }

    fn check_assigned(&self, partitions: &[TopicPartition]) -> Result<(), ClientError> {
        match partitions
            .iter()
            .find(|tp| !self.partitions.contains_key(*tp))
        {
            None => Ok(()),
            Some(tp) => Err(ClientError::InvalidArgument(format!(
                "{tp} is not assigned to this consumer (topic {}, partition {})",
                tp.topic, tp.partition
            ))),
        }
    }
}

fn no_position(tp: &TopicPartition) -> ClientError {
    ClientError::InvalidArgument(format!(
        "{tp} has no position and auto_offset_reset is none: seek it before polling \
         (topic {}, partition {})",
        tp.topic, tp.partition
    ))
}

#[cfg(test)]
mod tests {
    use brook_proto::{Offset, Record};
    use bytes::Bytes;

    use super::*;

    fn tp(partition: u32) -> TopicPartition {
        TopicPartition::new("t", partition)
    }

    fn record(tp: &TopicPartition, offset: i64) -> ConsumerRecord {
        ConsumerRecord::new(
            tp,
            Record {
                offset,
                timestamp: 0,
                key: None,
                value: Some(Bytes::from_static(b"vv")),
                headers: vec![],
            },
        )
    }

    /// Files records `from..to` for partition `p` as the fetcher does.
    fn fetch(a: &mut Assignment, p: u32, from: i64, to: i64) {
        let t = tp(p);
        let records: Vec<_> = (from..to).map(|o| record(&t, o)).collect();
        let bytes = records.iter().map(ConsumerRecord::size_in_bytes).sum();
        let epoch = a.partitions[&t].epoch;
        a.current(&t, epoch).unwrap().push(records, bytes, to);
    }

    fn ids(records: &[ConsumerRecord]) -> Vec<(u32, i64)> {
        records
            .iter()
            .map(|r| (r.partition, r.offset.get()))
            .collect()
    }

    #[test]
    fn drain_keeps_partition_order_honours_max_and_rotates() {
        let mut a = Assignment::new(AutoOffsetReset::Earliest);
        a.assign(&[tp(0), tp(1)]);
        a.seek(&tp(0), 0).unwrap();
        a.seek(&tp(1), 10).unwrap();
        fetch(&mut a, 0, 0, 3);
        fetch(&mut a, 1, 10, 12);
        assert_eq!(a.buffered_bytes(&tp(0)), 6);
        assert_eq!(ids(&a.drain(4).unwrap()), [(0, 0), (0, 1), (0, 2), (1, 10)]);
        assert_eq!(a.buffered_bytes(&tp(0)), 0);
        assert_eq!(a.buffered_bytes(&tp(1)), 2);
        assert_eq!(a.position(&tp(0)).unwrap(), Some(3));
        assert_eq!(a.position(&tp(1)).unwrap(), Some(11));
        fetch(&mut a, 0, 3, 5);
        // The second drain starts with partition 1.
        assert_eq!(ids(&a.drain(10).unwrap()), [(1, 11), (0, 3), (0, 4)]);
        assert!(a.drain(10).unwrap().is_empty());
    }

    #[test]
    fn seek_gives_a_new_epoch_and_drops_the_buffer() {
        let mut a = Assignment::new(AutoOffsetReset::Latest);
        a.assign(&[tp(0)]);
        assert_eq!(
            a.partitions[&tp(0)].position,
            Position::Reset(ResetTo::Latest)
        );
        assert_eq!(a.position(&tp(0)).unwrap(), None);
        a.seek(&tp(0), 5).unwrap();
        let old = a.partitions[&tp(0)].epoch;
        fetch(&mut a, 0, 5, 8);
        a.seek(&tp(0), 6).unwrap();
        assert!(
            a.current(&tp(0), old).is_none(),
            "a result of the old epoch is stale"
        );
        assert_eq!(a.buffered_bytes(&tp(0)), 0);
        assert_eq!(a.position(&tp(0)).unwrap(), Some(6));
        assert!(a.drain(10).unwrap().is_empty());
        a.reset(&[], ResetTo::Timestamp(42)).unwrap();
        assert_eq!(
            a.partitions[&tp(0)].position,
            Position::Reset(ResetTo::Timestamp(42))
        );
    }

    #[test]
    fn assign_keeps_partitions_that_stay_and_drops_the_rest() {
        let mut a = Assignment::new(AutoOffsetReset::Earliest);
        a.assign(&[tp(0), tp(1)]);
        a.seek(&tp(1), 4).unwrap();
        fetch(&mut a, 1, 4, 6);
        let epoch = a.partitions[&tp(1)].epoch;
        a.assign(&[tp(1), tp(2), tp(1)]);
        assert_eq!(a.assigned(), [tp(1), tp(2)]);
        assert_eq!(a.topics(), ["t"]);
        assert_eq!(a.partitions[&tp(1)].epoch, epoch);
        assert_eq!(a.buffered_bytes(&tp(1)), 4);
        assert_eq!(
            a.partitions[&tp(2)].position,
            Position::Reset(ResetTo::Earliest)
        );
        let err = a.seek(&tp(0), 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "t-0 is not assigned to this consumer (topic t, partition 0)"
        );
        assert_eq!(
            a.seek(&tp(1), -1).unwrap_err().to_string(),
            "cannot seek t-1 to offset -1: offsets start at 0"
        );
        a.assign(&[]);
        assert_eq!(
            a.drain(1).unwrap_err().to_string(),
            "no partitions are assigned to this consumer: call assign before poll"
        );
    }

    #[test]
    fn errors_wait_for_the_records_before_them() {
        let mut a = Assignment::new(AutoOffsetReset::None);
        a.assign(&[tp(0), tp(1)]);
        assert_eq!(
            a.drain(10).unwrap_err().to_string(),
            "t-0 has no position and auto_offset_reset is none: seek it before polling \
             (topic t, partition 0)"
        );
        a.seek(&tp(0), 0).unwrap();
        a.seek(&tp(1), 0).unwrap();
        fetch(&mut a, 1, 0, 2);
        a.out_of_range(&tp(0), 0, 5, 9);
        a.partitions.get_mut(&tp(1)).unwrap().error = Some(PartitionError::Corrupt {
            offset: 2,
            source: BatchError::UnsupportedMagic { magic: 1 },
        });
        let err = a.drain(10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OFFSET_OUT_OF_RANGE: offset 0 is outside the log (log start 5, high watermark 9) \
             and auto_offset_reset is none: seek to a valid offset (topic t, partition 0)"
        );
        // Partition 1's records come before its error, and the errors stay until a seek.
        a.seek(&tp(0), 5).unwrap();
        assert_eq!(ids(&a.drain(10).unwrap()), [(1, 0), (1, 1)]);
        assert!(matches!(
            a.drain(10).unwrap_err(),
            ClientError::CorruptBatch {
                partition: 1,
                offset: 2,
                ..
            }
        ));
        assert!(matches!(
            a.drain(10).unwrap_err(),
            ClientError::CorruptBatch {
                partition: 1,
                offset: 2,
                ..
            }
        ));
        a.seek(&tp(1), 3).unwrap();
        assert!(a.drain(10).unwrap().is_empty());
    }

    #[test]
    fn a_reported_error_is_returned_once() {
        let mut a = Assignment::new(AutoOffsetReset::Earliest);
        a.assign(&[tp(0)]);
        a.report(ClientError::InvalidArgument("first".into()));
        a.report(ClientError::InvalidArgument("second".into()));
        assert_eq!(a.position(&tp(0)).unwrap_err().to_string(), "first");
        a.report(ClientError::InvalidArgument("third".into()));
        assert_eq!(a.drain(1).unwrap_err().to_string(), "third");
        assert!(a.drain(1).unwrap().is_empty());
    }

    #[test]
    fn out_of_range_resets_per_policy() {
        let mut a = Assignment::new(AutoOffsetReset::Latest);
        a.assign(&[tp(0)]);
        a.seek(&tp(0), 100).unwrap();
        let epoch = a.partitions[&tp(0)].epoch;
        a.out_of_range(&tp(0), 100, 0, 10);
        let state = &a.partitions[&tp(0)];
        assert_eq!(state.position, Position::Reset(ResetTo::Latest));
        assert!(state.epoch > epoch);
        assert_eq!(state.error, None);
        assert_eq!(record(&tp(0), 3).offset, Offset(3));
    }
}
