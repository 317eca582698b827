//! [`RecordBuffer`]: the open batches, shared by the producer's handles and its sender task.
//!
//! A handle partitions its record and appends it to the partition's open batch itself, under
//! one short lock, so a record costs no message to the sender task. The sender is woken only
//! when a batch is sealed or opened (to schedule its linger); it takes the sealed batches,
//! seals lingering ones, and keeps the partition counts here in step with its metadata. A
//! topic whose partition count is not known yet goes to the sender, which loads it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::partition_for_key;

use super::accumulator::{Accumulator, SealReason, SealedBatch, Tp};
use super::delivery::DeliveryFuture;
use super::{KeylessPartitioning, ProducerConfig, ProducerError, ProducerRecord};

/// What became of an append.
#[derive(Debug)]
pub(crate) enum Appended {
    /// In a batch; the buffer now holds the record's memory.
    Done(DeliveryFuture),
    /// The topic's partition count is not known: the sender must load it. The caller still
    /// holds the record's memory.
    UnknownTopic(ProducerRecord),
    /// Refused; the caller still holds the record's memory.
    Refused(ProducerError),
}

/// The open batches and what partitioning needs, behind one lock.
pub(crate) struct BufferState {
    pub accumulator: Accumulator<()>,
    keyless: KeylessPartitioning,
    /// Partition count of every topic the sender's metadata knows.
    partitions: HashMap<String, u32>,
    sticky: HashMap<String, u32>,
    round_robin: HashMap<String, u32>,
    /// Sealed and not yet taken by the sender.
    sealed: Vec<SealedBatch<()>>,
    closing: bool,
}

/// See the module documentation.
pub(crate) struct RecordBuffer {
    state: Mutex<BufferState>,
    wake: Notify,
}

impl std::fmt::Debug for RecordBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBuffer").finish_non_exhaustive()
    }
}

impl RecordBuffer {
    pub fn new(config: &ProducerConfig) -> Self {
        RecordBuffer {
            state: Mutex::new(BufferState {
                accumulator: Accumulator::new(
                    config.batch_bytes,
                    config.batch_records,
                    config.linger,
                ),
                keyless: config.keyless,
                partitions: HashMap::new(),
                sticky: HashMap::new(),
                round_robin: HashMap::new(),
                sealed: Vec::new(),
                closing: false,
            }),
            wake: Notify::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, BufferState> {
        // Every method below leaves the state whole before anything that can panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `record` (whose `memory` bytes the caller reserved) and wakes the sender when
    /// a batch was sealed or opened.
    pub fn append(&self, record: ProducerRecord, memory: usize, timestamp: i64) -> Appended {
        let (appended, wake) = self
            .lock()
            .append(record, memory, timestamp, Instant::now());
        if wake {
            self.wake.notify_one();
        }
        appended
    }

    /// Resolves once a handle sealed or opened a batch since the last call (at once if one
    /// did while nobody waited).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

impl BufferState {
    /// See [`RecordBuffer::append`]; the flag says whether to wake the sender.
    fn append(
        &mut self,
        record: ProducerRecord,
        memory: usize,
        timestamp: i64,
        now: Instant,
    ) -> (Appended, bool) {
        if self.closing {
            return (Appended::Refused(ProducerError::Closed), false);
        }
        let count = match self.partitions.get(record.topic.as_str()) {
            Some(&count) if count > 0 => count,
            _ => return (Appended::UnknownTopic(record), false),
        };
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p >= count => {
                let error = ProducerError::UnknownPartition {
                    topic: record.topic,
                    partition: p,
                    partitions: count,
                };
                return (Appended::Refused(error), false);
            }
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => self.keyless_partition(&record.topic, count),
        };
        let tp = Tp {
            topic: record.topic,
            partition,
        };
        let (future, sealed) = self.accumulator.append(
            &tp,
            now,
            timestamp,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
            memory,
            (),
        );
        let wake = !sealed.is_empty() || future.opened_batch();
        self.push_sealed(sealed);
        (Appended::Done(future), wake)
    }

    fn keyless_partition(&mut self, topic: &str, partitions: u32) -> u32 {
        match self.keyless {
            KeylessPartitioning::Sticky => match self.sticky.get(topic) {
                Some(current) => current % partitions,
                None => {
                    let start = rand::random_range(0..partitions);
                    self.sticky.insert(topic.to_owned(), start);
                    start
                }
            },
            KeylessPartitioning::RoundRobin => {
                let next = match self.round_robin.get_mut(topic) {
                    Some(next) => next,
                    None => self.round_robin.entry(topic.to_owned()).or_insert(0),
                };
                let partition = *next % partitions;
                *next = next.wrapping_add(1);
                partition
            }
        }
    }

    /// Queues sealed batches for the sender. A sticky partition whose batch filled up or
    /// lingered hands over to the next partition.
    pub fn push_sealed(&mut self, sealed: Vec<SealedBatch<()>>) {
        for batch in sealed {
            if self.keyless == KeylessPartitioning::Sticky
                && batch.reason != SealReason::Flush
                && let Some(current) = self.sticky.get_mut(&batch.tp.topic)
                && *current == batch.tp.partition
            {
                let count = self
                    .partitions
                    .get(&batch.tp.topic)
                    .copied()
                    .unwrap_or(1)
                    .max(1);
                *current = (*current + 1) % count;
            }
            self.sealed.push(batch);
        }
    }

    /// The batches sealed since the last call, in the order they were sealed.
    pub fn take_sealed(&mut self) -> Vec<SealedBatch<()>> {
        std::mem::take(&mut self.sealed)
    }

    /// Seals the open batch of `tp`, if any.
    pub fn seal_partition(&mut self, tp: &Tp) {
        if let Some(batch) = self.accumulator.seal_partition(tp) {
            self.push_sealed(vec![batch]);
        }
    }

    /// Seals every open batch (flush).
    pub fn seal_all(&mut self) {
        let all = self.accumulator.seal_all();
        self.push_sealed(all);
    }

    /// Refuses appends from now on and seals every open batch.
    pub fn close(&mut self) {
        self.closing = true;
        self.seal_all();
    }

    /// Replaces the partition counts with the sender's metadata: `(topic, partitions)`.
    pub fn set_partitions<'a>(&mut self, topics: impl Iterator<Item = (&'a str, usize)>) {
        self.partitions.clear();
        for (topic, count) in topics {
            let count = u32::try_from(count).unwrap_or(u32::MAX);
            self.partitions.insert(topic.to_owned(), count);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn buffer(keyless: KeylessPartitioning) -> RecordBuffer {
        let config = ProducerConfig::builder()
            .batch_records(2)
            .linger(Duration::from_secs(60))
            .keyless(keyless)
            .build()
            .unwrap();
        let buffer = RecordBuffer::new(&config);
        buffer.lock().set_partitions([("t", 3usize)].into_iter());
        buffer
    }

    fn done(appended: Appended) -> DeliveryFuture {
        match appended {
            Appended::Done(future) => future,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_topics_go_to_the_sender_and_bad_partitions_are_refused() {
        let buffer = buffer(KeylessPartitioning::RoundRobin);
        match buffer.append(ProducerRecord::new("other", "v"), 70, 1) {
            Appended::UnknownTopic(record) => assert_eq!(record.topic, "other"),
            other => panic!("{other:?}"),
        }
        match buffer.append(ProducerRecord::new("t", "v").partition(3), 70, 1) {
            Appended::Refused(ProducerError::UnknownPartition {
                topic,
                partition,
                partitions,
            }) => assert_eq!((topic.as_str(), partition, partitions), ("t", 3, 3)),
            other => panic!("{other:?}"),
        }
        assert!(buffer.lock().accumulator.is_empty());
        buffer.lock().close();
        assert!(matches!(
            buffer.append(ProducerRecord::new("t", "v"), 70, 1),
            Appended::Refused(ProducerError::Closed)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn round_robin_spreads_keyless_records_and_full_batches_reach_the_sender() {
        let buffer = buffer(KeylessPartitioning::RoundRobin);
        for _ in 0..6 {
            done(buffer.append(ProducerRecord::new("t", "v"), 70, 1));
        }
        // batch_records = 2: each partition's batch filled up.
        let sealed = buffer.lock().take_sealed();
        let got: Vec<(u32, usize, SealReason)> = sealed
            .iter()
            .map(|b| (b.tp.partition, b.len(), b.reason))
            .collect();
        assert_eq!(
            got,
            [
                (0, 2, SealReason::Records),
                (1, 2, SealReason::Records),
                (2, 2, SealReason::Records)
            ]
        );
        assert_eq!(sealed.iter().map(|b| b.memory).sum::<usize>(), 420);
        // A new batch opened and a sealed one both wake the sender.
        tokio::time::timeout(Duration::from_secs(1), buffer.woken())
            .await
            .expect("woken");
        assert!(buffer.lock().take_sealed().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn sticky_moves_on_when_its_batch_fills_and_keys_keep_their_partition() {
        let buffer = buffer(KeylessPartitioning::Sticky);
        done(buffer.append(ProducerRecord::new("t", "v"), 70, 1));
        done(buffer.append(ProducerRecord::new("t", "v"), 70, 1));
        done(buffer.append(ProducerRecord::new("t", "v"), 70, 1));
        let sealed = buffer.lock().take_sealed();
        assert_eq!(sealed.len(), 1);
        let first = sealed[0].tp.partition;
        buffer.lock().seal_all();
        let rest = buffer.lock().take_sealed();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].tp.partition, (first + 1) % 3);
        let key = bytes::Bytes::from_static(b"k1");
        for _ in 0..2 {
            done(buffer.append(ProducerRecord::new("t", "v").key(key.clone()), 70, 1));
        }
        let keyed = buffer.lock().take_sealed();
        assert_eq!(keyed[0].tp.partition, partition_for_key(&key, 3));
        // Partition counts follow the sender's metadata: a topic it dropped is unknown again.
        buffer.lock().set_partitions(std::iter::empty());
        assert!(matches!(
            buffer.append(ProducerRecord::new("t", "v"), 70, 1),
            Appended::UnknownTopic(_)
        ));
    }
}
