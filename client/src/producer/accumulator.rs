//! [`Accumulator`]: one open batch per partition, sealed by size, record count or linger.
//!
//! A pure structure: the caller passes the time, so sealing is tested on a paused clock.
//! Records are encoded into the batch as they arrive; the producer id, sequence and codec are
//! set when the sealed batch is built (see [`SealedBatch::build`]).

use std::collections::HashMap;
use std::time::Duration;

use brook_proto::{BatchBuilder, Compression, Header};
use bytes::Bytes;
use tokio::time::Instant;

use super::delivery::{Completion, DeliveryFuture};

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Tp {
    pub topic: String,
    pub partition: u32,
}

/// Why a batch was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealReason {
    /// It reached `batch_bytes`, or the next record would not fit.
    Bytes,
    /// It reached `batch_records`.
    Records,
    /// It waited `linger`.
    Linger,
    /// Its leader had no request in flight (`send_when_idle`).
    Idle,
    /// A flush or close.
    Flush,
}

struct OpenBatch<T> {
    builder: BatchBuilder,
    completion: Completion,
    payloads: Vec<T>,
    memory: usize,
    created: Instant,
}

impl<T> OpenBatch<T> {
    /// Why the batch must be sealed now, if it must.
    fn full(&self, batch_records: usize, batch_bytes: usize) -> Option<SealReason> {
        if self.payloads.len() >= batch_records {
            Some(SealReason::Records)
        } else if self.builder.size_in_bytes() >= batch_bytes {
            Some(SealReason::Bytes)
        } else {
            None
        }
    }
}

/// A batch that takes no more records, ready to be numbered and sent.
pub(crate) struct SealedBatch<T> {
    pub tp: Tp,
    builder: BatchBuilder,
    /// Settles the records' futures.
    pub completion: Completion,
    /// One per record, in append order.
    pub payloads: Vec<T>,
    /// Buffer bytes its records hold.
    pub memory: usize,
    /// When its first record arrived.
    pub created: Instant,
    pub reason: SealReason,
}

impl<T> std::fmt::Debug for SealedBatch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBatch")
            .field("tp", &self.tp)
            .field("records", &self.payloads.len())
            .field("memory", &self.memory)
            .field("reason", &self.reason)
            .finish()
    }
}

impl<T> SealedBatch<T> {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    /// The wire batch, numbered for an idempotent producer when `producer` is given as
    /// `(producer_id, epoch, base_sequence)`, with what settles its records.
    pub fn build(
        self,
        producer: Option<(i64, i16, i32)>,
        codec: Compression,
    ) -> (Bytes, Vec<T>, Completion) {
        let mut builder = self.builder.compression(codec);
        if let Some((id, epoch, sequence)) = producer {
            builder = builder.producer(id, epoch, sequence);
        }
        (builder.build(), self.payloads, self.completion)
    }
}

/// A copy of a built batch with another producer identity and base sequence, its CRC
/// recomputed (the header fields sit inside the checksummed range). Used when a partition's
/// remaining batches are renumbered under a fresh producer id.
pub(crate) fn renumber(batch: &Bytes, producer_id: i64, epoch: i16, base_sequence: i32) -> Bytes {
    use brook_proto::batch::layout::{ATTRIBUTES, BASE_SEQUENCE, CRC, PRODUCER_EPOCH, PRODUCER_ID};
    let mut buf = bytes::BytesMut::from(&batch[..]);
    buf[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    buf[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&epoch.to_be_bytes());
    buf[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32fast::hash(&buf[ATTRIBUTES..]);
    buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    buf.freeze()
}

/// One open batch per partition.
pub(crate) struct Accumulator<T> {
    batch_bytes: usize,
    batch_records: usize,
    linger: Duration,
    open: HashMap<Tp, OpenBatch<T>>,
    /// Each partition's last sealed batch size: the capacity the next one starts with.
    last_size: HashMap<Tp, usize>,
}

impl<T> Accumulator<T> {
    pub fn new(batch_bytes: usize, batch_records: usize, linger: Duration) -> Self {
        Accumulator {
            batch_bytes,
            batch_records,
            linger,
            open: HashMap::new(),
            last_size: HashMap::new(),
        }
    }

    /// Appends a record to `tp`'s open batch and returns the record's delivery future and the
    /// batches this sealed: the open one when the record would not fit (it then starts a new
    /// batch), and the one the record is in when it is now full. A record larger than
    /// `batch_bytes` makes a batch of its own.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        tp: &Tp,
        now: Instant,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        memory: usize,
        payload: T,
    ) -> (DeliveryFuture, Vec<SealedBatch<T>>) {
        let mut sealed = Vec::new();
        let encoded = key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + 16;
        // One lookup on the common path: the partition has an open batch the record fits.
        if let Some(open) = self.open.get_mut(tp) {
            if open.payloads.is_empty()
                || open.builder.size_in_bytes() + encoded <= self.batch_bytes
            {
                open.builder.append(timestamp, key, value, headers);
                let future = open.completion.future(open.payloads.len(), timestamp);
                open.payloads.push(payload);
                open.memory += memory;
                let full = open.full(self.batch_records, self.batch_bytes);
                sealed.extend(full.and_then(|reason| self.seal(tp, reason)));
                return (future, sealed);
            }
            sealed.extend(self.seal(tp, SealReason::Bytes));
        }
        // Sized like the partition's last batch, so a busy partition's buffer is not copied
        // over and over as it grows.
        let hint = self.last_size.get(tp).map_or(0, |last| last + last / 8);
        let capacity = hint.min(self.batch_bytes).max(encoded).max(1024);
        let mut builder = BatchBuilder::with_capacity(capacity);
        builder.append(timestamp, key, value, headers);
        let completion = Completion::new(tp);
        let future = completion.future(0, timestamp);
        let open = OpenBatch {
            builder,
            completion,
            payloads: vec![payload],
            memory,
            created: now,
        };
        let full = open.full(self.batch_records, self.batch_bytes);
        self.open.insert(tp.clone(), open);
        sealed.extend(full.and_then(|reason| self.seal(tp, reason)));
        (future, sealed)
    }

    fn seal(&mut self, tp: &Tp, reason: SealReason) -> Option<SealedBatch<T>> {
        let open = self.open.remove(tp)?;
        let size = open.builder.size_in_bytes();
        match self.last_size.get_mut(tp) {
            Some(last) => *last = size,
            None => {
                self.last_size.insert(tp.clone(), size);
            }
        }
        Some(SealedBatch {
            tp: tp.clone(),
            builder: open.builder,
            completion: open.completion,
            payloads: open.payloads,
            memory: open.memory,
            created: open.created,
            reason,
        })
    }

    /// Seals the batches that have lingered long enough, ordered by partition.
    pub fn seal_expired(&mut self, now: Instant) -> Vec<SealedBatch<T>> {
        let mut due: Vec<Tp> = self
            .open
            .iter()
            .filter(|(_, b)| b.created + self.linger <= now)
            .map(|(tp, _)| tp.clone())
            .collect();
        due.sort();
        due.iter()
            .filter_map(|tp| self.seal(tp, SealReason::Linger))
            .collect()
    }

    /// Seals the open batches of the partitions `pick` chooses, ordered by partition.
    pub fn seal_picked(
        &mut self,
        mut pick: impl FnMut(&Tp) -> bool,
        reason: SealReason,
    ) -> Vec<SealedBatch<T>> {
        let mut picked: Vec<Tp> = self.open.keys().filter(|tp| pick(tp)).cloned().collect();
        picked.sort();
        picked
            .iter()
            .filter_map(|tp| self.seal(tp, reason))
            .collect()
    }

    /// True when no batch is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Seals the open batch of `tp`, if any, as a flush does.
    pub fn seal_partition(&mut self, tp: &Tp) -> Option<SealedBatch<T>> {
        self.seal(tp, SealReason::Flush)
    }

    /// Seals every open batch (flush, close), ordered by partition.
    pub fn seal_all(&mut self) -> Vec<SealedBatch<T>> {
        let mut all: Vec<Tp> = self.open.keys().cloned().collect();
        all.sort();
        all.iter()
            .filter_map(|tp| self.seal(tp, SealReason::Flush))
            .collect()
    }

    /// When the oldest open batch is due, if any is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|b| b.created + self.linger).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: u32) -> Tp {
        Tp {
            topic: "t".into(),
            partition,
        }
    }

    fn add(acc: &mut Accumulator<u32>, p: u32, id: u32, value: &[u8]) -> Vec<SealedBatch<u32>> {
        acc.append(
            &tp(p),
            Instant::now(),
            1,
            None,
            Some(value),
            &[],
            value.len(),
            id,
        )
        .1
    }

    #[tokio::test(start_paused = true)]
    async fn linger_seals_a_batch_after_the_linger_time() {
        let mut acc = Accumulator::new(1 << 20, 100, Duration::from_millis(5));
        let t0 = Instant::now();
        assert!(add(&mut acc, 0, 1, b"a").is_empty());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(add(&mut acc, 1, 2, b"b").is_empty());
        assert!(add(&mut acc, 0, 3, b"c").is_empty());
        assert_eq!(acc.next_deadline(), Some(t0 + Duration::from_millis(5)));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(acc.seal_expired(Instant::now()).is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        let sealed = acc.seal_expired(Instant::now());
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].tp, tp(0));
        assert_eq!(sealed[0].payloads, [1, 3]);
        assert_eq!(sealed[0].reason, SealReason::Linger);
        assert_eq!(acc.next_deadline(), Some(t0 + Duration::from_millis(7)));
        tokio::time::advance(Duration::from_millis(2)).await;
        let sealed = acc.seal_expired(Instant::now());
        assert_eq!(sealed.len(), 1);
        assert_eq!(
            (sealed[0].tp.partition, sealed[0].payloads.clone()),
            (1, vec![2])
        );
        assert!(acc.is_empty());
        assert_eq!(acc.next_deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn seal_picked_seals_only_the_chosen_partitions_in_order() {
        let mut acc = Accumulator::new(1 << 20, 100, Duration::from_secs(10));
        for (p, id) in [(2, 1), (0, 2), (1, 3), (2, 4)] {
            assert!(add(&mut acc, p, id, b"v").is_empty());
        }
        let sealed = acc.seal_picked(|tp| tp.partition != 1, SealReason::Idle);
        let got: Vec<(u32, Vec<u32>, SealReason)> = sealed
            .into_iter()
            .map(|b| (b.tp.partition, b.payloads, b.reason))
            .collect();
        assert_eq!(
            got,
            [
                (0, vec![2], SealReason::Idle),
                (2, vec![1, 4], SealReason::Idle)
            ]
        );
        assert!(acc.seal_picked(|_| false, SealReason::Idle).is_empty());
        let rest = acc.seal_all();
        assert_eq!((rest.len(), rest[0].tp.partition), (1, 1));
        assert!(acc.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_partitions_next_batch_starts_with_the_last_ones_capacity() {
        let mut acc = Accumulator::new(4096, 1000, Duration::from_secs(10));
        for id in 0..20 {
            add(&mut acc, 0, id, &[1u8; 100]);
        }
        let first = acc.seal_all();
        let size = first[0].builder.size_in_bytes();
        assert!(size > 2048, "{size}");
        add(&mut acc, 0, 99, b"x");
        let capacity = acc.open[&tp(0)].builder.capacity();
        assert!(capacity >= size + size / 8, "{capacity} < {size} * 9/8");
        // A partition never sealed before starts small.
        add(&mut acc, 1, 100, b"x");
        assert!(acc.open[&tp(1)].builder.capacity() < 2048);
    }

    #[tokio::test(start_paused = true)]
    async fn record_count_seals_at_batch_records() {
        let mut acc = Accumulator::new(1 << 20, 3, Duration::from_secs(10));
        assert!(add(&mut acc, 0, 1, b"a").is_empty());
        assert!(add(&mut acc, 0, 2, b"b").is_empty());
        let sealed = add(&mut acc, 0, 3, b"c");
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].payloads, [1, 2, 3]);
        assert_eq!(sealed[0].reason, SealReason::Records);
        assert_eq!(sealed[0].memory, 3);
        assert!(acc.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn size_seals_before_the_record_that_would_not_fit() {
        // 61-byte header; each 100-byte record takes about 107 bytes encoded.
        let mut acc = Accumulator::new(400, 1000, Duration::from_secs(10));
        let value = [7u8; 100];
        assert!(add(&mut acc, 0, 1, &value).is_empty());
        assert!(add(&mut acc, 0, 2, &value).is_empty());
        assert!(add(&mut acc, 0, 3, &value).is_empty());
        let sealed = add(&mut acc, 0, 4, &value);
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].payloads, [1, 2, 3]);
        assert_eq!(sealed[0].reason, SealReason::Bytes);
        // Record 4 opened the next batch.
        let rest = acc.seal_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].payloads, [4]);
        assert_eq!(rest[0].reason, SealReason::Flush);
        // A record larger than a batch goes alone.
        let big = [1u8; 1000];
        let sealed = add(&mut acc, 0, 5, &big);
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].payloads, [5]);
        let (bytes, payloads, _) = sealed
            .into_iter()
            .next()
            .unwrap()
            .build(Some((7, 0, 42)), Compression::None);
        assert_eq!(payloads, [5]);
        let batch = brook_proto::RecordBatch::new(bytes, 1 << 20).unwrap();
        assert_eq!(batch.header().producer_id, 7);
        assert_eq!(batch.header().base_sequence, 42);
        assert_eq!(batch.header().records_count, 1);
        let again = renumber(batch.bytes(), 9, 3, 0);
        let again = brook_proto::RecordBatch::new(again, 1 << 20).unwrap();
        let h = again.header();
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (9, 3, 0)
        );
        let record = again.records().unwrap().next().unwrap().unwrap();
        assert_eq!(record.value.as_deref(), Some(&big[..]));
    }
}
