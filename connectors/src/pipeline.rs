//! One run of a pipeline: read from the source side, write to the destination side, commit on
//! the source side what the destination acknowledged.
//!
//! ```text
//!  Reader::poll ──records──▶ destination topic and partition ──▶ Writer::send (enqueue; waits
//!       ▲                    (config::Partitioning)               while the producer is full)
//!       │ paused while max_in_flight_records/bytes are out                │ Delivery
//!       │                                                                 ▼
//!  Reader::commit ◀── every commit_interval: OffsetTracker::to_commit ◀── ack (any order)
//! ```
//!
//! The guarantee is at least once: a position is committed only after every record before it
//! was acknowledged by the destination, so after a crash the pipeline resumes at or before the
//! first unacknowledged record. What a crash may deliver twice is bounded by what was
//! acknowledged after the last commit: at most one commit interval's worth of records, and at
//! most `max_in_flight_records` beyond it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Direction, Partitioning, PipelineConfig};
use crate::error::{ConnectError, Side};
use crate::metrics::PipelineMetrics;
use crate::offsets::{OffsetTracker, SourcePartition, Ticket};
use crate::record::{MirrorRecord, destination_partition};

/// Resolves when the destination acknowledged a record (or failed it for good).
pub type Delivery = Pin<Box<dyn Future<Output = Result<(), ConnectError>> + Send>>;

/// How long one `poll` waits for records.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How often the lag gauge is refreshed.
const LAG_INTERVAL: Duration = Duration::from_secs(5);

/// The source side of a pipeline.
pub trait Reader: Send {
    /// Partition counts of the source topics; a topic that does not exist is left out.
    fn partition_counts(
        &mut self,
    ) -> impl Future<Output = Result<BTreeMap<String, u32>, ConnectError>> + Send;
    /// The next records, in offset order per partition; waits up to `max_wait` for the first.
    /// A partition may be delivered again from an earlier offset after a rebalance.
    fn poll(
        &mut self,
        max_wait: Duration,
    ) -> impl Future<Output = Result<Vec<MirrorRecord>, ConnectError>> + Send;
    /// The partitions this reader holds now: only their positions are committed.
    fn assigned(&self) -> BTreeSet<SourcePartition>;
    /// Commits positions (the next offset to read) of held partitions. `last` is the commit
    /// before closing.
    fn commit(
        &mut self,
        positions: &[(SourcePartition, i64)],
        last: bool,
    ) -> impl Future<Output = Result<(), ConnectError>> + Send;
    /// The end offset (high watermark) of each partition, for lag.
    fn end_offsets(
        &mut self,
        partitions: &[SourcePartition],
    ) -> impl Future<Output = Result<Vec<(SourcePartition, i64)>, ConnectError>> + Send;
    /// Leaves the group and releases the client.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// The destination side of a pipeline.
pub trait Writer: Send {
    /// The partition count of `topic`; when it does not exist and `create_with` is given, it
    /// is created with that many partitions first. `None`: it does not exist.
    fn partitions(
        &mut self,
        topic: &str,
        create_with: Option<u32>,
    ) -> impl Future<Output = Result<Option<u32>, ConnectError>> + Send;
    /// Enqueues `record` for `topic`/`partition`, waiting while the producer has no room;
    /// the returned [`Delivery`] resolves on acknowledgement.
    fn send(
        &self,
        topic: &str,
        partition: u32,
        record: &MirrorRecord,
    ) -> impl Future<Output = Result<Delivery, ConnectError>> + Send;
    /// Delivers what is enqueued (bounded by the client's own timeouts) and stops.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Where one source topic's records go.
struct Route {
    topic: String,
    partitions: u32,
}

/// Checks the topics on both sides (creating destinations where allowed) and returns each
/// source topic's route.
async fn routes<R: Reader, W: Writer>(
    pipeline: &PipelineConfig,
    reader: &mut R,
    writer: &mut W,
) -> Result<BTreeMap<String, Route>, ConnectError> {
    let (source_side, destination_side) = match pipeline.direction {
        Direction::KafkaToBrook => (Side::Kafka, Side::Brook),
        Direction::BrookToKafka => (Side::Brook, Side::Kafka),
    };
    let counts = reader.partition_counts().await?;
    if let Some(topic) = pipeline.topics.iter().find(|t| !counts.contains_key(*t)) {
        return Err(ConnectError::NoSuchTopic {
            side: source_side,
            topic: topic.clone(),
        });
    }
    let mut out = BTreeMap::new();
    for (source, &source_partitions) in &counts {
        let topic = pipeline.destination_of(source);
        let create = pipeline.create_topics.then_some(source_partitions);
        let Some(partitions) = writer.partitions(&topic, create).await? else {
            return Err(ConnectError::NoSuchTopic {
                side: destination_side,
                topic,
            });
        };
        if pipeline.partitioning == Partitioning::OneToOne && partitions < source_partitions {
            return Err(ConnectError::TooFewPartitions {
                side: destination_side,
                topic,
                needed: source_partitions,
                actual: partitions,
            });
        }
        out.insert(source.clone(), Route { topic, partitions });
    }
    Ok(out)
}

type Acked = (Ticket, usize, Result<(), ConnectError>);
type PendingAck = Pin<Box<dyn Future<Output = Acked> + Send>>;

/// Awaits deliveries in any order and hands each outcome back as it completes. A task of its
/// own, so acknowledgements are taken promptly whatever the pump is waiting on. Its queues
/// are bounded by the pump's in-flight limits.
async fn acker(
    mut pending: mpsc::UnboundedReceiver<PendingAck>,
    done: mpsc::UnboundedSender<Acked>,
) {
    let mut deliveries = FuturesUnordered::new();
    loop {
        tokio::select! {
            next = pending.recv() => match next {
                Some(delivery) => deliveries.push(delivery),
                None => break,
            },
            Some(acked) = deliveries.next(), if !deliveries.is_empty() => {
                if done.send(acked).is_err() {
                    return;
                }
            }
        }
    }
    while let Some(acked) = deliveries.next().await {
        if done.send(acked).is_err() {
            return;
        }
    }
}

/// A run's moving parts.
struct Run<'a, R> {
    pipeline: &'a PipelineConfig,
    reader: R,
    tracker: OffsetTracker,
    /// To the acker task.
    deliveries: mpsc::UnboundedSender<PendingAck>,
    /// From the acker task.
    acks: mpsc::UnboundedReceiver<Acked>,
    /// Deliveries handed to the acker and not yet back.
    outstanding: usize,
    bytes_in_flight: usize,
    metrics: &'a PipelineMetrics,
}

impl<R: Reader> Run<'_, R> {
    fn on_ack(&mut self, (ticket, size, result): Acked) -> Result<(), ConnectError> {
        self.outstanding -= 1;
        self.bytes_in_flight -= size;
        result?;
        if self.tracker.ack(&ticket) {
            self.metrics.moved(size);
        }
        self.metrics.in_flight(self.tracker.in_flight());
        Ok(())
    }

    /// Takes every acknowledgement that arrived, without waiting.
    fn drain_ready(&mut self) -> Result<(), ConnectError> {
        while let Ok(acked) = self.acks.try_recv() {
            self.on_ack(acked)?;
        }
        Ok(())
    }

    async fn commit(&mut self, last: bool) -> Result<(), ConnectError> {
        let assigned = self.reader.assigned();
        let positions: Vec<(SourcePartition, i64)> = self
            .tracker
            .to_commit()
            .into_iter()
            .filter(|(p, _)| assigned.contains(p))
            .collect();
        if positions.is_empty() {
            return Ok(());
        }
        match self.reader.commit(&positions, last).await {
            Ok(()) => {
                tracing::debug!(pipeline = %self.pipeline.name, ?positions, "committed");
                Ok(())
            }
            Err(err) => {
                self.tracker.commit_failed(&positions);
                Err(err)
            }
        }
    }

    async fn refresh_lag(&mut self) -> Result<(), ConnectError> {
        let assigned = self.reader.assigned();
        let next: BTreeMap<SourcePartition, i64> = self
            .tracker
            .next_offsets()
            .into_iter()
            .filter(|(p, _)| assigned.contains(p))
            .collect();
        let partitions: Vec<SourcePartition> = next.keys().cloned().collect();
        let ends = self.reader.end_offsets(&partitions).await?;
        let lag: i64 = ends
            .iter()
            .map(|(p, end)| (end - next.get(p).copied().unwrap_or(*end)).max(0))
            .sum();
        self.metrics.lag(lag);
        Ok(())
    }
}

/// Runs `pipeline` until `cancel` fires (then drains for up to `drain`, commits and returns
/// `Ok`) or until a failure (then commits what was acknowledged and returns the error).
pub async fn run<R: Reader, W: Writer>(
    pipeline: &PipelineConfig,
    mut reader: R,
    mut writer: W,
    metrics: &PipelineMetrics,
    cancel: &CancellationToken,
    drain: Duration,
    on_running: impl FnOnce(),
) -> Result<(), ConnectError> {
    let routes = match routes(pipeline, &mut reader, &mut writer).await {
        Ok(routes) => routes,
        Err(err) => {
            reader.close().await;
            writer.close().await;
            return Err(err);
        }
    };
    on_running();
    let (pending_tx, pending_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let acker = tokio::spawn(acker(pending_rx, done_tx));
    let mut run = Run {
        pipeline,
        reader,
        tracker: OffsetTracker::new(),
        deliveries: pending_tx,
        acks: done_rx,
        outstanding: 0,
        bytes_in_flight: 0,
        metrics,
    };
    let result = pump(&mut run, &routes, &writer, cancel).await;
    // Whatever ended the run, wait (bounded) for what is in flight and commit what was
    // acknowledged, so a restart repeats as little as possible.
    let deadline = Instant::now() + drain;
    while run.outstanding > 0 {
        match tokio::time::timeout_at(deadline, run.acks.recv()).await {
            Ok(Some(acked)) => {
                if let Err(err) = run.on_ack(acked) {
                    tracing::warn!(pipeline = %pipeline.name, cause = %err, "a record in flight failed while stopping");
                }
            }
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    pipeline = %pipeline.name,
                    in_flight = run.outstanding,
                    "records still in flight after the drain timeout; they will be read again"
                );
                break;
            }
        }
    }
    if let Err(err) = run.commit(true).await {
        tracing::warn!(pipeline = %pipeline.name, cause = %err, "the last commit failed");
        metrics.error(&err);
    }
    drop(run.deliveries);
    acker.abort();
    run.reader.close().await;
    writer.close().await;
    result
}

async fn pump<R: Reader, W: Writer>(
    run: &mut Run<'_, R>,
    routes: &BTreeMap<String, Route>,
    writer: &W,
    cancel: &CancellationToken,
) -> Result<(), ConnectError> {
    let pipeline = run.pipeline;
    let (max_records, max_bytes) = (
        pipeline.max_in_flight_records as usize,
        pipeline.max_in_flight_bytes as usize,
    );
    let mut next_commit = Instant::now() + pipeline.commit_interval();
    let mut next_lag = Instant::now();
    while !cancel.is_cancelled() {
        run.drain_ready()?;
        let now = Instant::now();
        if now >= next_commit {
            if let Err(err) = run.commit(false).await {
                // A failed commit is retried at the next interval; nothing is lost meanwhile.
                tracing::warn!(pipeline = %pipeline.name, cause = %err, "commit failed");
                run.metrics.error(&err);
            }
            next_commit = Instant::now() + pipeline.commit_interval();
        }
        if now >= next_lag {
            if let Err(err) = run.refresh_lag().await {
                tracing::debug!(pipeline = %pipeline.name, cause = %err, "lag unknown");
            }
            next_lag = Instant::now() + LAG_INTERVAL;
        }
        if run.tracker.in_flight() >= max_records || run.bytes_in_flight >= max_bytes {
            // Backpressure: the destination is slower; wait for acknowledgements.
            tokio::select! {
                () = cancel.cancelled() => break,
                acked = run.acks.recv() => match acked {
                    Some(acked) => run.on_ack(acked)?,
                    None => tokio::time::sleep(POLL_WAIT).await,
                },
                () = tokio::time::sleep_until(next_commit) => {}
            }
            continue;
        }
        let records = run.reader.poll(POLL_WAIT).await?;
        for record in records {
            let Some(route) = routes.get(&*record.topic) else {
                return Err(ConnectError::BadRecord {
                    topic: record.topic.to_string(),
                    partition: record.partition,
                    offset: record.offset,
                    reason: "the reader returned a topic the pipeline does not read".into(),
                });
            };
            let partition = destination_partition(pipeline.partitioning, &record, route.partitions);
            let delivery = writer.send(&route.topic, partition, &record).await?;
            let ticket = run
                .tracker
                .read(&(record.topic.clone(), record.partition), record.offset);
            let size = record.size();
            run.bytes_in_flight += size;
            run.outstanding += 1;
            // The acker outlives the pump until the drain ends, so this cannot fail.
            let _ = run
                .deliveries
                .send(Box::pin(delivery.map(move |result| (ticket, size, result))));
        }
        run.metrics.in_flight(run.tracker.in_flight());
    }
    Ok(())
}
