//! The producer's background task: takes the batches the handles sealed in the shared
//! [`RecordBuffer`], seals lingering ones, numbers them, sends them to partition leaders and
//! settles each batch's delivery.
//!
//! ```text
//!  handles ──append──> RecordBuffer (partitioner, Accumulator) ──sealed, wake──┐
//!  commands (bounded): first record of an unknown topic, flush, close ──────────┤
//!                                                                              v
//!                                               PartitionQueue (numbered) ─ dispatch: leader,
//!                                                                    │ in-flight caps, breaker
//!                                                                    v
//!  responses (bounded) <── request task (Produce, request timeout) <─┘
//!        │ ok: settle the batch, free memory     retriable: back off, resend in order
//! ```
//!
//! Order under retries: a partition's batches sit in a queue in sequence order. After a
//! retriable failure the partition waits until its in-flight batches have settled and then
//! resends from the first unacknowledged batch, in order. With idempotence the broker answers
//! a batch it already wrote with its original offsets, so nothing is duplicated; an
//! `OUT_OF_ORDER_SEQUENCE` answer behind an unacknowledged predecessor is retriable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use brook_proto::v1::{
    ErrorCode, PartitionProduceData, ProduceRequest, ProduceResponse, TopicProduceData,
};
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{check_code, is_retriable_code};
use crate::{ClientError, Connection};

use super::accumulator::{SealReason, SealedBatch, Tp, renumber};
use super::backoff::Backoff;
use super::buffer::{Appended, RecordBuffer};
use super::circuit_breaker::CircuitBreaker;
use super::delivery::{Completion, DeliveryFuture};
use super::metadata::MetadataCache;
use super::producer::init_producer_id;
use super::{ProducerConfig, ProducerError, ProducerRecord};

/// Capacity of the channel from request tasks back to the sender.
const RESPONSE_CHANNEL: usize = 256;

/// Most commands taken from the channel in one turn of the sender's loop.
const COMMAND_BURST: usize = 256;

/// Where a record sent as a command went.
pub(crate) type Reply = oneshot::Sender<DeliveryFuture>;

/// What the producer handle asks of the sender task.
pub(crate) enum Command {
    /// A record of a topic the buffer does not know yet, its memory already reserved: the
    /// sender loads the topic's metadata and appends it.
    Send {
        record: ProducerRecord,
        memory: usize,
        timestamp: i64,
        reply: Reply,
    },
    /// Answer once every record enqueued so far is resolved.
    Flush(oneshot::Sender<()>),
    /// Flush, then stop.
    Close(oneshot::Sender<()>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchState {
    Queued,
    InFlight,
    Acked,
}

struct QueuedBatch {
    id: u64,
    bytes: Bytes,
    /// Settles the batch's records; taken when it is settled.
    completion: Option<Completion>,
    memory: usize,
    deadline: Instant,
    attempts: u32,
    state: BatchState,
    last_error: Option<Arc<ClientError>>,
    /// The last attempt went out while an earlier batch of the partition was unacknowledged.
    /// The broker may handle concurrent requests in any order, so such an attempt can meet
    /// `OUT_OF_ORDER_SEQUENCE` although nothing is lost: it is then retried.
    sent_behind_unacked: bool,
    /// The last attempt ended without an answer from the broker (transport failure, timeout):
    /// the batch may be written.
    maybe_written: bool,
    records: i32,
}

#[derive(Default)]
struct PartitionQueue {
    /// The identity its batches are numbered under. Starts as the producer's; replaced by a
    /// fresh id after a batch of this partition failed for good (the sequence has a gap).
    producer: Option<ProducerId>,
    /// A batch failed for good: once nothing is in flight, take a fresh producer id and
    /// renumber the remaining batches from 0.
    reset_pending: bool,
    next_sequence: i32,
    batches: VecDeque<QueuedBatch>,
    in_flight: usize,
    retry_at: Option<Instant>,
    /// After a retriable failure: resend only once nothing is in flight.
    resync: bool,
}

struct BrokerState {
    in_flight: usize,
    breaker: CircuitBreaker,
}

struct ResponseEvent {
    node: i32,
    batches: Vec<(Tp, u64)>,
    result: Result<ProduceResponse, ClientError>,
}

/// Identity of an idempotent producer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProducerId {
    pub id: i64,
    pub epoch: i16,
}

/// The sender task's state.
pub(crate) struct Sender {
    config: ProducerConfig,
    producer_id: Option<ProducerId>,
    metadata: MetadataCache,
    buffer: Arc<RecordBuffer>,
    partitions: BTreeMap<Tp, PartitionQueue>,
    brokers: HashMap<i32, BrokerState>,
    memory: Arc<Semaphore>,
    backoff: Backoff,
    outstanding: usize,
    next_batch_id: u64,
    metadata_stale: bool,
    metadata_retry_at: Option<Instant>,
    /// The clock reading the last `dispatch` judged retry times by. `next_wakeup` schedules
    /// every retry later than it, so a retry that falls due between the two is not lost.
    dispatched_at: Instant,
    flush_waiters: Vec<oneshot::Sender<()>>,
    close_waiters: Vec<oneshot::Sender<()>>,
    closing: bool,
    responses_tx: mpsc::Sender<ResponseEvent>,
    responses_rx: mpsc::Receiver<ResponseEvent>,
}

impl Sender {
    pub fn new(
        config: ProducerConfig,
        bootstrap: Connection,
        producer_id: Option<ProducerId>,
        memory: Arc<Semaphore>,
        buffer: Arc<RecordBuffer>,
    ) -> Self {
        let (responses_tx, responses_rx) = mpsc::channel(RESPONSE_CHANNEL);
        Sender {
            metadata: MetadataCache::new(bootstrap, config.request_timeout),
            buffer,
            backoff: Backoff {
                initial: config.retry_backoff,
                max: config.retry_backoff_max,
            },
            config,
            producer_id,
            partitions: BTreeMap::new(),
            brokers: HashMap::new(),
            memory,
            outstanding: 0,
            next_batch_id: 0,
            metadata_stale: false,
            metadata_retry_at: None,
            dispatched_at: Instant::now(),
            flush_waiters: Vec::new(),
            close_waiters: Vec::new(),
            closing: false,
            responses_tx,
            responses_rx,
        }
    }

    /// Runs until closed (a `Close` command, or every handle dropped) and every accepted
    /// record is resolved.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut commands_open = true;
        loop {
            self.dispatch().await;
            self.settle_flushes();
            if self.closing && self.outstanding == 0 {
                for waiter in self.close_waiters.drain(..) {
                    let _ = waiter.send(());
                }
                if !commands_open {
                    return;
                }
                // Refuse what is still queued in the channel, then stop.
                commands.close();
                while let Some(command) = commands.recv().await {
                    self.refuse(command);
                }
                return;
            }
            let wake = self.next_wakeup();
            tokio::select! {
                biased;
                Some(event) = self.responses_rx.recv() => self.on_response(event),
                command = commands.recv(), if commands_open => match command {
                    Some(command) => {
                        self.on_command(command).await;
                        // Take the rest of a burst now, so the scans below and the next
                        // dispatch run once per burst rather than once per record.
                        for _ in 0..COMMAND_BURST {
                            match commands.try_recv() {
                                Ok(command) => self.on_command(command).await,
                                Err(mpsc::error::TryRecvError::Empty) => break,
                                Err(mpsc::error::TryRecvError::Disconnected) => {
                                    commands_open = false;
                                    self.start_closing();
                                    break;
                                }
                            }
                        }
                    }
                    None => {
                        commands_open = false;
                        self.start_closing();
                    }
                },
                () = self.buffer.woken() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();
            self.take_sealed(now);
            self.expire(now);
        }
    }

    /// Takes the batches the handles sealed, and seals the lingering ones and (with
    /// `send_when_idle`) those whose leader has no request in flight, so they go now rather
    /// than after their linger.
    fn take_sealed(&mut self, now: Instant) {
        let sealed = {
            let mut buffer = self.buffer.lock();
            let expired = buffer.accumulator.seal_expired(now);
            buffer.push_sealed(expired);
            if self.config.send_when_idle && !buffer.accumulator.is_empty() {
                let (metadata, brokers) = (&self.metadata, &self.brokers);
                let idle = buffer.accumulator.seal_picked(
                    |tp| {
                        metadata
                            .cached(&tp.topic)
                            .and_then(|info| info.leaders.get(tp.partition as usize).copied())
                            .is_some_and(|leader| {
                                leader >= 0 && brokers.get(&leader).is_none_or(|b| b.in_flight == 0)
                            })
                    },
                    SealReason::Idle,
                );
                buffer.push_sealed(idle);
            }
            buffer.take_sealed()
        };
        self.enqueue_sealed(sealed);
    }

    /// Hands the metadata's partition counts to the buffer, where handles partition records.
    fn share_partition_counts(&self) {
        self.buffer
            .lock()
            .set_partitions(self.metadata.partition_counts());
    }

    fn refuse(&mut self, command: Command) {
        match command {
            Command::Send { memory, reply, .. } => {
                self.memory.add_permits(memory);
                let _ = reply.send(DeliveryFuture::failed(ProducerError::Closed));
            }
            Command::Flush(done) | Command::Close(done) => {
                let _ = done.send(());
            }
        }
    }

    fn start_closing(&mut self) {
        self.closing = true;
        let sealed = {
            let mut buffer = self.buffer.lock();
            buffer.close();
            buffer.take_sealed()
        };
        self.enqueue_sealed(sealed);
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Send {
                record,
                memory,
                timestamp,
                reply,
            } => {
                if self.closing {
                    self.memory.add_permits(memory);
                    let _ = reply.send(DeliveryFuture::failed(ProducerError::Closed));
                    return;
                }
                self.append(record, memory, timestamp, reply).await;
            }
            Command::Flush(done) => {
                self.flush_waiters.push(done);
                let sealed = {
                    let mut buffer = self.buffer.lock();
                    buffer.seal_all();
                    buffer.take_sealed()
                };
                self.enqueue_sealed(sealed);
            }
            Command::Close(done) => {
                self.close_waiters.push(done);
                self.start_closing();
            }
        }
    }

    /// Loads the metadata of a record's topic, then appends the record to the buffer.
    async fn append(
        &mut self,
        record: ProducerRecord,
        memory: usize,
        timestamp: i64,
        reply: Reply,
    ) {
        let loaded = self
            .metadata
            .topic(&record.topic)
            .await
            .map(|t| t.is_some());
        self.share_partition_counts();
        let refused = match loaded {
            Ok(true) => match self.buffer.append(record, memory, timestamp) {
                Appended::Done(future) => {
                    let _ = reply.send(future);
                    return;
                }
                Appended::Refused(error) => error,
                Appended::UnknownTopic(record) => ProducerError::UnknownTopic {
                    topic: record.topic,
                },
            },
            Ok(false) => ProducerError::UnknownTopic {
                topic: record.topic,
            },
            Err(err) => ProducerError::Metadata {
                topic: record.topic,
                source: Arc::new(err),
            },
        };
        self.memory.add_permits(memory);
        let _ = reply.send(DeliveryFuture::failed(refused));
    }

    /// Numbers sealed batches and queues them for sending.
    fn enqueue_sealed(&mut self, sealed: Vec<SealedBatch<()>>) {
        for batch in sealed {
            let tp = batch.tp.clone();
            let producer_id = self.producer_id;
            let queue = self.partitions.entry(tp).or_insert_with(|| PartitionQueue {
                producer: producer_id,
                ..PartitionQueue::default()
            });
            let records = batch.len() as i32;
            let memory = batch.memory;
            let deadline = batch.created + self.config.delivery_timeout;
            let numbering = queue.producer.map(|p| (p.id, p.epoch, queue.next_sequence));
            if queue.producer.is_some() {
                queue.next_sequence = queue.next_sequence.wrapping_add(records) & i32::MAX;
            }
            let (bytes, _, completion) = batch.build(numbering, self.config.compression);
            self.next_batch_id += 1;
            self.outstanding += records as usize;
            queue.batches.push_back(QueuedBatch {
                id: self.next_batch_id,
                bytes,
                completion: Some(completion),
                memory,
                deadline,
                attempts: 0,
                state: BatchState::Queued,
                last_error: None,
                sent_behind_unacked: false,
                maybe_written: false,
                records,
            });
        }
    }

    /// Sends every batch that may go now.
    async fn dispatch(&mut self) {
        let now = Instant::now();
        self.dispatched_at = now;
        if self.metadata_stale && self.metadata_retry_at.is_none_or(|at| at <= now) {
            let refreshed = self.metadata.refresh().await;
            self.share_partition_counts();
            match refreshed {
                Ok(()) => {
                    self.metadata_stale = false;
                    // At most one refresh per backoff interval, even if a leader stays unknown.
                    self.metadata_retry_at = Some(now + self.config.retry_backoff);
                }
                Err(err) => {
                    tracing::warn!(cause = %err, "metadata refresh failed");
                    self.metadata_retry_at = Some(now + self.backoff.delay(1));
                }
            }
        }
        self.reset_partitions(now).await;
        let per_partition = self.config.max_in_flight_per_partition();
        loop {
            // One batch per partition per round, grouped by leader.
            let mut by_leader: BTreeMap<i32, Vec<(Tp, u64)>> = BTreeMap::new();
            for (tp, queue) in &self.partitions {
                if queue.reset_pending
                    || queue.in_flight >= per_partition
                    || queue.retry_at.is_some_and(|at| at > now)
                    || (queue.resync && queue.in_flight > 0)
                {
                    continue;
                }
                // Only the first `per_partition` unacknowledged batches may be out: the broker
                // remembers the last 5 batches, so any of them can be resent safely.
                let Some(batch) = queue
                    .batches
                    .iter()
                    .take(per_partition)
                    .find(|b| b.state == BatchState::Queued)
                else {
                    continue;
                };
                let leader = self
                    .metadata
                    .cached(&tp.topic)
                    .and_then(|info| info.leaders.get(tp.partition as usize).copied())
                    .unwrap_or(-1);
                if leader < 0 {
                    self.metadata_stale = true;
                    continue;
                }
                by_leader
                    .entry(leader)
                    .or_default()
                    .push((tp.clone(), batch.id));
            }
            let mut sent = false;
            for (node, batches) in by_leader {
                let broker = self.brokers.entry(node).or_insert_with(|| BrokerState {
                    in_flight: 0,
                    breaker: CircuitBreaker::new(
                        self.config.breaker_failures,
                        self.config.breaker_open,
                    ),
                });
                if broker.in_flight >= self.config.max_in_flight || !broker.breaker.try_acquire(now)
                {
                    continue;
                }
                broker.in_flight += 1;
                sent = true;
                self.send(node, batches).await;
            }
            if !sent {
                return;
            }
        }
    }

    async fn send(&mut self, node: i32, batches: Vec<(Tp, u64)>) {
        let mut topics: BTreeMap<String, Vec<PartitionProduceData>> = BTreeMap::new();
        for (tp, id) in &batches {
            let queue = self.partitions.get_mut(tp).expect("dispatched partition");
            if queue.resync && queue.in_flight == 0 {
                queue.resync = false;
            }
            queue.in_flight += 1;
            let index = queue
                .batches
                .iter()
                .position(|b| b.id == *id)
                .expect("dispatched batch");
            let behind = queue
                .batches
                .iter()
                .take(index)
                .any(|b| b.state != BatchState::Acked);
            let batch = &mut queue.batches[index];
            batch.sent_behind_unacked = behind;
            batch.state = BatchState::InFlight;
            batch.attempts += 1;
            topics
                .entry(tp.topic.clone())
                .or_default()
                .push(PartitionProduceData {
                    partition: tp.partition,
                    records: batch.bytes.clone(),
                });
        }
        let request = ProduceRequest {
            acks: self.config.acks.to_proto() as i32,
            timeout_ms: u32::try_from(self.config.request_timeout.as_millis()).unwrap_or(u32::MAX),
            topics: topics
                .into_iter()
                .map(|(topic, partitions)| TopicProduceData { topic, partitions })
                .collect(),
        };
        let responses = self.responses_tx.clone();
        let timeout = self.config.request_timeout;
        let connection = self.metadata.connection(node).await;
        tokio::spawn(async move {
            let result = match connection {
                Err(err) => Err(err),
                Ok(conn) => match tokio::time::timeout(timeout, conn.produce(&request)).await {
                    Ok(Ok(response)) => Ok(response),
                    Ok(Err(status)) => Err(ClientError::Rpc(status)),
                    Err(_) => Err(ClientError::Timeout {
                        operation: "produce request".into(),
                        after: timeout,
                    }),
                },
            };
            let _ = responses
                .send(ResponseEvent {
                    node,
                    batches,
                    result,
                })
                .await;
        });
    }

    fn on_response(&mut self, event: ResponseEvent) {
        let now = Instant::now();
        if let Some(broker) = self.brokers.get_mut(&event.node) {
            broker.in_flight = broker.in_flight.saturating_sub(1);
            match &event.result {
                Ok(_) => broker.breaker.on_success(),
                Err(_) => broker.breaker.on_failure(now),
            }
        }
        match event.result {
            Err(err) => {
                tracing::debug!(node = event.node, cause = %err, "produce request failed");
                self.metadata_stale = true;
                let err = Arc::new(err);
                let retriable = err.is_retriable();
                for (tp, id) in event.batches {
                    self.batch_failed(&tp, id, err.clone(), retriable, now);
                }
            }
            Ok(response) => {
                for (tp, id) in event.batches {
                    let answer = response
                        .topics
                        .iter()
                        .filter(|t| t.topic == tp.topic)
                        .flat_map(|t| &t.partitions)
                        .find(|p| p.partition == tp.partition);
                    let Some(answer) = answer else {
                        let err = ClientError::Protocol(format!(
                            "produce response lacks topic {} partition {}",
                            tp.topic, tp.partition
                        ));
                        self.batch_failed(&tp, id, Arc::new(err), false, now);
                        continue;
                    };
                    match check_code(
                        &tp.topic,
                        Some(tp.partition),
                        answer.error_code,
                        &answer.error_message,
                    ) {
                        Ok(()) => {
                            let offset = (answer.base_offset >= 0).then_some(answer.base_offset);
                            self.batch_acked(&tp, id, offset);
                        }
                        Err(err) => {
                            let code = err.error_code();
                            if matches!(
                                code,
                                Some(
                                    ErrorCode::NotLeader
                                        | ErrorCode::UnknownTopicOrPartition
                                        | ErrorCode::FencedLeaderEpoch
                                )
                            ) {
                                self.metadata_stale = true;
                            }
                            let retriable = match code {
                                Some(ErrorCode::DuplicateSequence) => {
                                    // Already written; the broker did not say where.
                                    self.batch_acked(&tp, id, None);
                                    continue;
                                }
                                Some(ErrorCode::OutOfOrderSequence) => {
                                    self.has_unacked_predecessor(&tp, id)
                                }
                                Some(ErrorCode::UnknownTopicOrPartition) => true,
                                Some(code) => is_retriable_code(code),
                                None => false,
                            };
                            self.batch_failed(&tp, id, Arc::new(err), retriable, now);
                        }
                    }
                }
            }
        }
    }

    /// Whether an `OUT_OF_ORDER_SEQUENCE` answer may come from a predecessor that was not
    /// written yet (failed, or handled after this batch) rather than from a real gap.
    fn has_unacked_predecessor(&self, tp: &Tp, id: u64) -> bool {
        self.partitions.get(tp).is_some_and(|queue| {
            queue
                .batches
                .iter()
                .find(|b| b.id == id)
                .is_some_and(|b| b.sent_behind_unacked)
                || queue
                    .batches
                    .iter()
                    .take_while(|b| b.id != id)
                    .any(|b| b.state != BatchState::Acked)
        })
    }

    fn batch_acked(&mut self, tp: &Tp, id: u64, base_offset: Option<i64>) {
        let Some(queue) = self.partitions.get_mut(tp) else {
            return;
        };
        let Some(batch) = queue.batches.iter_mut().find(|b| b.id == id) else {
            return;
        };
        if batch.state == BatchState::InFlight {
            queue.in_flight -= 1;
        }
        batch.state = BatchState::Acked;
        let memory = std::mem::take(&mut batch.memory);
        let count = batch.records as usize;
        if let Some(completion) = batch.completion.take() {
            completion.settle(Ok(base_offset));
        }
        while queue
            .batches
            .front()
            .is_some_and(|b| b.state == BatchState::Acked)
        {
            queue.batches.pop_front();
        }
        self.memory.add_permits(memory);
        self.outstanding -= count;
    }

    fn batch_failed(
        &mut self,
        tp: &Tp,
        id: u64,
        err: Arc<ClientError>,
        retriable: bool,
        now: Instant,
    ) {
        let Some(queue) = self.partitions.get_mut(tp) else {
            return;
        };
        let Some(batch) = queue.batches.iter_mut().find(|b| b.id == id) else {
            return;
        };
        if batch.state == BatchState::InFlight {
            queue.in_flight -= 1;
        }
        batch.state = BatchState::Queued;
        batch.maybe_written = err.error_code().is_none();
        batch.last_error = Some(err.clone());
        let out_of_order = err.error_code() == Some(ErrorCode::OutOfOrderSequence);
        if retriable && batch.attempts <= self.config.retries && now < batch.deadline {
            tracing::debug!(topic = %tp.topic, partition = tp.partition, attempts = batch.attempts, cause = %err, "retrying batch");
            queue.resync = true;
            // A batch refused only because its predecessor failed goes again as soon as the
            // predecessor does; a failure of its own backs off.
            let at = if out_of_order {
                now
            } else {
                now + self.backoff.delay(batch.attempts)
            };
            queue.retry_at = Some(queue.retry_at.map_or(at, |t| t.max(at)));
            return;
        }
        let error = if now >= batch.deadline {
            ProducerError::DeliveryTimeout {
                timeout: self.config.delivery_timeout,
                attempts: batch.attempts,
                last_error: Some(err),
            }
        } else {
            ProducerError::Delivery {
                topic: tp.topic.clone(),
                partition: tp.partition,
                attempts: batch.attempts,
                source: err,
            }
        };
        self.fail_batch(tp, id, error);
    }

    /// Fails a batch for good. With idempotence this leaves a gap in the partition's
    /// sequence, so the partition is reset (see [`Sender::reset_partitions`]).
    ///
    /// With idempotence a partition also gets no records after a failed one (librdkafka's
    /// `enable.gapless.guarantee`): every record of the partition enqueued before the failure
    /// was known fails with it, [`ProducerError::EarlierFailed`], or
    /// [`ProducerError::Abandoned`] for a batch in flight behind a failure that may have
    /// been written. Records enqueued afterwards go to the broker as usual.
    fn fail_batch(&mut self, tp: &Tp, id: u64, error: ProducerError) {
        // A fenced producer (a newer epoch of its id exists) must not carry on under a new id.
        let fenced = matches!(
            &error,
            ProducerError::Delivery { source, .. }
                if source.error_code() == Some(ErrorCode::InvalidProducerEpoch)
        );
        let mut later = Vec::new();
        if self.producer_id.is_some() && !fenced {
            // What the partition's open batch holds, and what was sealed but not yet queued,
            // was enqueued before this failure.
            let sealed = {
                let mut buffer = self.buffer.lock();
                buffer.seal_partition(tp);
                buffer.take_sealed()
            };
            self.enqueue_sealed(sealed);
            if let Some(queue) = self.partitions.get_mut(tp) {
                queue.reset_pending = true;
                if let Some(at) = queue.batches.iter().position(|b| b.id == id) {
                    let maybe_written = queue.batches[at].maybe_written;
                    later = (queue.batches.iter().skip(at + 1))
                        .filter(|b| b.state != BatchState::Acked)
                        .map(|b| (b.id, maybe_written && b.state == BatchState::InFlight))
                        .collect();
                }
            }
        }
        self.resolve_failed(tp, id, error);
        for (id, maybe_written) in later {
            let (topic, partition) = (tp.topic.clone(), tp.partition);
            let error = if maybe_written {
                ProducerError::Abandoned { topic, partition }
            } else {
                ProducerError::EarlierFailed { topic, partition }
            };
            self.resolve_failed(tp, id, error);
        }
    }

    fn resolve_failed(&mut self, tp: &Tp, id: u64, error: ProducerError) {
        let Some(queue) = self.partitions.get_mut(tp) else {
            return;
        };
        let Some(index) = queue.batches.iter().position(|b| b.id == id) else {
            return;
        };
        let batch = queue.batches.remove(index).expect("position is valid");
        if batch.state == BatchState::InFlight {
            queue.in_flight -= 1;
        }
        tracing::warn!(topic = %tp.topic, partition = tp.partition, cause = %error, "batch failed");
        while queue
            .batches
            .front()
            .is_some_and(|b| b.state == BatchState::Acked)
        {
            queue.batches.pop_front();
        }
        let count = batch.records as usize;
        if let Some(completion) = batch.completion {
            completion.settle(Err(error));
        }
        self.memory.add_permits(batch.memory);
        self.outstanding -= count;
    }

    /// Partitions whose sequence has a gap (a batch failed for good) start over once nothing
    /// of theirs is in flight: batches that may have been written are given up (resending
    /// them could duplicate), the others are renumbered from 0 under a fresh producer id, as
    /// the broker accepts sequence 0 from a producer id it has not seen.
    async fn reset_partitions(&mut self, now: Instant) {
        let due: Vec<Tp> = self
            .partitions
            .iter()
            .filter(|(_, q)| q.reset_pending && q.in_flight == 0)
            .filter(|(_, q)| q.retry_at.is_none_or(|at| at <= now))
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            let unknown: Vec<u64> = self.partitions[&tp]
                .batches
                .iter()
                .filter(|b| b.state != BatchState::Acked && b.maybe_written)
                .map(|b| b.id)
                .collect();
            for id in unknown {
                let error = ProducerError::Abandoned {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                };
                self.resolve_failed(&tp, id, error);
            }
            let fresh = tokio::time::timeout(
                self.config.request_timeout,
                init_producer_id(self.metadata.bootstrap()),
            )
            .await;
            let queue = self.partitions.get_mut(&tp).expect("due partition");
            let fresh = match fresh {
                Ok(Ok(fresh)) => fresh,
                Ok(Err(err)) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, cause = %err, "cannot get a fresh producer id");
                    queue.retry_at = Some(now + self.backoff.delay(1));
                    continue;
                }
                Err(_) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, "producer id request timed out");
                    queue.retry_at = Some(now + self.backoff.delay(1));
                    continue;
                }
            };
            let mut sequence = 0i32;
            for batch in queue
                .batches
                .iter_mut()
                .filter(|b| b.state != BatchState::Acked)
            {
                batch.bytes = renumber(&batch.bytes, fresh.id, fresh.epoch, sequence);
                batch.sent_behind_unacked = false;
                sequence = sequence.wrapping_add(batch.records) & i32::MAX;
            }
            tracing::info!(topic = %tp.topic, partition = tp.partition, producer_id = fresh.id, "partition renumbered under a fresh producer id");
            queue.producer = Some(fresh);
            queue.next_sequence = sequence;
            queue.reset_pending = false;
            queue.resync = false;
            queue.retry_at = None;
        }
    }

    /// Fails queued (not in-flight) batches past their delivery deadline. A partition's
    /// batches are queued in the order they were opened, so their deadlines never decrease
    /// along the queue and the scan stops at the first one still in time.
    fn expire(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (tp, queue) in &self.partitions {
            for batch in queue.batches.iter().take_while(|b| b.deadline <= now) {
                if batch.state == BatchState::Queued {
                    expired.push((
                        tp.clone(),
                        batch.id,
                        batch.attempts,
                        batch.last_error.clone(),
                    ));
                }
            }
        }
        for (tp, id, attempts, last_error) in expired {
            let error = ProducerError::DeliveryTimeout {
                timeout: self.config.delivery_timeout,
                attempts,
                last_error,
            };
            self.fail_batch(&tp, id, error);
        }
    }

    fn settle_flushes(&mut self) {
        if self.outstanding == 0 {
            for waiter in self.flush_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    /// The next moment something may be due without an event: a linger, a retry, a breaker
    /// probe, a delivery deadline, a metadata retry.
    fn next_wakeup(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + Duration::from_secs(3600);
        let mut consider = |at: Instant| wake = wake.min(at.max(now));
        if let Some(at) = self.buffer.lock().accumulator.next_deadline() {
            consider(at);
        }
        for queue in self.partitions.values() {
            // Deadlines never decrease along a queue: the first queued batch is due first.
            if let Some(first) = queue.batches.iter().find(|b| b.state == BatchState::Queued) {
                // Judged against the dispatch's clock, not this one: a retry that fell due in
                // between was not sent, so it must wake the loop (at once).
                if let Some(at) = queue.retry_at.filter(|at| *at > self.dispatched_at) {
                    consider(at);
                }
                consider(first.deadline);
            }
        }
        for broker in self.brokers.values() {
            if let Some(at) = broker.breaker.reopens_at() {
                consider(at);
            }
        }
        if self.metadata_stale {
            consider(self.metadata_retry_at.unwrap_or(now));
        }
        wake
    }
}
