//! [`Fetcher`]: the consumer's background task. It keeps up to `fetches_per_broker` Fetch
//! requests in flight per partition leader, each covering a share of that leader's partitions
//! whose buffer is below the limit (a partition is in at most one), and files what comes back
//! in the shared [`Assignment`]; it looks positions up with ListOffsets and leaders up with
//! Metadata.
//!
//! ```text
//!  events in                              actions out
//!  ─────────                              ───────────
//!  wake (assign, seek, poll drained)  ─┐   Metadata     when a partition has no known leader
//!  a request finished                 ─┼─▶ ListOffsets  per leader, for partitions to reset
//!  a backoff expired                  ─┘   Fetch        per leader, the ready partitions
//!                                                       split over its free requests; with
//!                                                       none free, the oldest is replaced
//! ```
//!
//! Every request runs as its own task in a `JoinSet`; the loop itself never awaits I/O, so a
//! seek or a drained buffer is acted on at once. Results are filed only for partitions whose
//! epoch is still the one the request was made with.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use brook_proto::v1::{
    ErrorCode, FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopic,
    ListOffsetsPartition, ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListOffsetsTopic, MetadataRequest, MetadataResponse, OffsetSpec,
};
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::assignment::{Assignment, PartitionError, Position, ResetTo, Shared};
use super::brokers::{Brokers, Target};
use super::fetched::Fetched;
use super::retry::{Retry, RetryPolicy};
use super::{ConsumerConfig, TopicPartition};
use crate::error::{check_code, error_code_name};
use crate::{ClientError, Connection};

/// A partition in a fetch request.
#[derive(Debug)]
struct FetchTarget {
    tp: TopicPartition,
    epoch: u64,
    offset: i64,
}

/// A partition in a list-offsets request.
#[derive(Debug)]
struct ListTarget {
    tp: TopicPartition,
    epoch: u64,
    to: ResetTo,
}

/// What a request in flight is about.
#[derive(Debug)]
enum Job {
    Fetch {
        node: i32,
        partitions: Vec<FetchTarget>,
    },
    ListOffsets {
        node: i32,
        partitions: Vec<ListTarget>,
    },
    Metadata {
        topics: Vec<String>,
    },
}

/// A request's answer.
#[derive(Debug)]
enum Outcome {
    Fetch(Result<FetchResponse, ClientError>),
    ListOffsets(Result<ListOffsetsResponse, ClientError>),
    Metadata(Result<MetadataResponse, ClientError>),
}

/// A finished request task.
#[derive(Debug)]
struct Done {
    /// A connection the task opened to a leader, for the fetcher to keep.
    opened: Option<(i32, Connection)>,
    outcome: Outcome,
}

/// The requests to start, by leader.
#[derive(Debug, Default)]
struct Plan {
    fetch: BTreeMap<i32, Vec<FetchTarget>>,
    list: BTreeMap<i32, Vec<ListTarget>>,
    need_metadata: bool,
    /// The earliest backoff expiry among partitions that wait for one.
    wake_at: Option<Instant>,
}

/// What to do about an error code the broker returned for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remedy {
    /// Retry after the backoff, asking metadata for the leader first.
    RefreshAndRetry,
    /// Retry after the backoff.
    Retry,
    /// Stop the partition until the application seeks it.
    Stop,
}

fn remedy(code: ErrorCode) -> Remedy {
    match code {
        ErrorCode::NotLeader
        | ErrorCode::FencedLeaderEpoch
        | ErrorCode::UnknownTopicOrPartition
        | ErrorCode::StorageError => Remedy::RefreshAndRetry,
        ErrorCode::NotEnoughReplicas | ErrorCode::RequestTimedOut => Remedy::Retry,
        _ => Remedy::Stop,
    }
}

/// Rings `changed` when the fetcher stops, normally or by a panic, so a waiting `poll`
/// notices.
struct StopSignal(Arc<Shared>);

impl Drop for StopSignal {
    fn drop(&mut self) {
        self.0.changed.notify_waiters();
    }
}

/// The fetcher task's state; see the module docs.
#[derive(Debug)]
pub(crate) struct Fetcher {
    shared: Arc<Shared>,
    config: ConsumerConfig,
    policy: RetryPolicy,
    brokers: Brokers,
    jobs: JoinSet<Done>,
    /// Requests in flight by task id. A request aborted (or ignored) is removed here first,
    /// so its late answer is dropped.
    in_flight: HashMap<Id, Job>,
    /// The fetches in flight to each leader, oldest first (at most `fetches_per_broker`).
    fetching: HashMap<i32, Vec<AbortHandle>>,
    /// Leaders with a list-offsets request in flight.
    listing: HashSet<i32>,
    metadata_in_flight: bool,
    metadata_retry: Retry,
    /// Metadata requests failed in a row: each goes to the next known broker.
    metadata_failures: u32,
}

impl Fetcher {
    pub fn new(shared: Arc<Shared>, config: ConsumerConfig, bootstrap: Connection) -> Fetcher {
        Fetcher {
            shared,
            policy: config.retry_policy(),
            config,
            brokers: Brokers::new(bootstrap),
            jobs: JoinSet::new(),
            in_flight: HashMap::new(),
            fetching: HashMap::new(),
            listing: HashSet::new(),
            metadata_in_flight: false,
            metadata_retry: Retry::default(),
            metadata_failures: 0,
        }
    }

    /// Runs until `cancel` fires; requests in flight are then aborted.
    pub async fn run(mut self, cancel: CancellationToken) {
        let _stop_signal = StopSignal(Arc::clone(&self.shared));
        loop {
            let wake_at = self.plan(Instant::now());
            let backoff = async move {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(joined) = self.jobs.join_next_with_id() => self.finish(joined),
                () = self.shared.wake.notified() => {}
                () = backoff => {}
            }
        }
        self.jobs.shutdown().await;
        tracing::debug!("consumer fetcher stopped");
    }

    /// Starts the requests that are due; returns when the next backoff expires.
    fn plan(&mut self, now: Instant) -> Option<Instant> {
        let shared = Arc::clone(&self.shared);
        let mut state = shared.state.lock();
        let mut plan = self.collect(&mut state, now);
        // A partition can be fetched now (newly assigned, sought, or drained below the
        // limit) but every request to its leader is taken: the oldest, the one most likely
        // waiting out `fetch_max_wait`, makes way for one covering its partitions and the
        // new ones, rather than the new ones waiting up to `fetch_max_wait`.
        let max = self.config.fetches_per_broker();
        let mut replaced = false;
        for node in plan.fetch.keys() {
            let Some(fetches) = self.fetching.get_mut(node) else {
                continue;
            };
            if fetches.len() < max {
                continue;
            }
            let abort = fetches.remove(0);
            abort.abort();
            if let Some(Job::Fetch { partitions, .. }) = self.in_flight.remove(&abort.id()) {
                for target in partitions {
                    if let Some(p) = state.current(&target.tp, target.epoch) {
                        p.in_flight = false;
                    }
                }
            }
            replaced = true;
        }
        if replaced {
            plan = self.collect(&mut state, now);
        }
        let mut wake_at = plan.wake_at;
        if plan.need_metadata && !self.metadata_in_flight {
            if self.metadata_retry.ready(now) {
                self.start_metadata(state.topics());
            } else {
                wake_at = earliest(wake_at, self.metadata_retry.retry_at());
            }
        }
        for (node, targets) in plan.list {
            for target in &targets {
                if let Some(p) = state.current(&target.tp, target.epoch) {
                    p.in_flight = true;
                }
            }
            self.start_list_offsets(node, targets);
        }
        for (node, mut targets) in plan.fetch {
            for target in &targets {
                if let Some(p) = state.current(&target.tp, target.epoch) {
                    p.in_flight = true;
                }
            }
            // Split among the free requests, so answers alternate instead of the broker and
            // the client taking turns on one.
            let free = max.saturating_sub(self.fetching.get(&node).map_or(0, Vec::len));
            let mut requests = free.clamp(1, targets.len());
            while requests > 1 {
                let rest = targets.split_off(targets.len().div_ceil(requests));
                self.start_fetch(node, targets);
                targets = rest;
                requests -= 1;
            }
            self.start_fetch(node, targets);
        }
        wake_at
    }

    /// What could be requested now.
    fn collect(&self, state: &mut Assignment, now: Instant) -> Plan {
        let limit = self.config.partition_buffer_bytes();
        let mut plan = Plan::default();
        for (tp, p) in state.partitions_mut() {
            if p.in_flight || p.error.is_some() {
                continue;
            }
            enum Want {
                Fetch(i64),
                List(ResetTo),
            }
            let want = match p.position {
                Position::Fetch(offset) if p.buffered_bytes < limit => Want::Fetch(offset),
                Position::Reset(to) => Want::List(to),
                Position::Fetch(_) | Position::Unset => continue,
            };
            if !p.retry.ready(now) {
                plan.wake_at = earliest(plan.wake_at, p.retry.retry_at());
                continue;
            }
            let Some(node) = p.leader else {
                plan.need_metadata = true;
                continue;
            };
            match want {
                Want::Fetch(offset) => {
                    plan.fetch.entry(node).or_default().push(FetchTarget {
                        tp: tp.clone(),
                        epoch: p.epoch,
                        offset,
                    });
                }
                Want::List(to) if !self.listing.contains(&node) => {
                    plan.list.entry(node).or_default().push(ListTarget {
                        tp: tp.clone(),
                        epoch: p.epoch,
                        to,
                    });
                }
                Want::List(_) => {}
            }
        }
        plan
    }

    fn start_metadata(&mut self, topics: Vec<String>) {
        let target = self.brokers.metadata_source(self.metadata_failures);
        let request = MetadataRequest {
            topics: topics.clone(),
        };
        let timeout = self.config.request_timeout();
        let abort = self.jobs.spawn(async move {
            let (outcome, opened) = request_to(target, |conn| async move {
                let operation = || format!("metadata request to {}", conn.addr());
                timed(timeout, operation, conn.broker().metadata(request)).await
            })
            .await;
            Done {
                opened,
                outcome: Outcome::Metadata(outcome),
            }
        });
        self.metadata_in_flight = true;
        self.in_flight.insert(abort.id(), Job::Metadata { topics });
    }

    fn start_list_offsets(&mut self, node: i32, targets: Vec<ListTarget>) {
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        for target in &targets {
            let (spec, timestamp) = match target.to {
                ResetTo::Earliest => (OffsetSpec::Earliest, 0),
                ResetTo::Latest => (OffsetSpec::Latest, 0),
                ResetTo::Timestamp(ts) => (OffsetSpec::Timestamp, ts),
            };
            let partition = ListOffsetsPartition {
                partition: target.tp.partition,
                spec: spec as i32,
                timestamp,
            };
            match topics.last_mut() {
                Some(t) if *t.topic == *target.tp.topic => t.partitions.push(partition),
                _ => topics.push(ListOffsetsTopic {
                    topic: target.tp.topic.to_string(),
                    partitions: vec![partition],
                }),
            }
        }
        let request = ListOffsetsRequest { topics };
        let target = self.brokers.target(node);
        let timeout = self.config.request_timeout();
        let abort = self.jobs.spawn(async move {
            let (outcome, opened) = request_to(target, |conn| async move {
                let operation = || format!("list-offsets request to {}", conn.addr());
                timed(timeout, operation, conn.broker().list_offsets(request)).await
            })
            .await;
            Done {
                opened,
                outcome: Outcome::ListOffsets(outcome),
            }
        });
        self.listing.insert(node);
        self.in_flight.insert(
            abort.id(),
            Job::ListOffsets {
                node,
                partitions: targets,
            },
        );
    }

    fn start_fetch(&mut self, node: i32, targets: Vec<FetchTarget>) {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for target in &targets {
            let partition = FetchPartition {
                partition: target.tp.partition,
                fetch_offset: target.offset,
                partition_max_bytes: self.config.partition_max_bytes(),
                current_leader_epoch: None,
            };
            match topics.last_mut() {
                Some(t) if *t.topic == *target.tp.topic => t.partitions.push(partition),
                _ => topics.push(FetchTopic {
                    topic: target.tp.topic.to_string(),
                    partitions: vec![partition],
                }),
            }
        }
        let max_wait = self.config.fetch_max_wait();
        let request = FetchRequest {
            max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
            min_bytes: self.config.fetch_min_bytes(),
            max_bytes: self.config.fetch_max_bytes(),
            replica_id: None,
            topics,
        };
        let target = self.brokers.target(node);
        let timeout = max_wait + self.config.request_timeout();
        let abort = self.jobs.spawn(async move {
            let (outcome, opened) = request_to(target, |conn| async move {
                let operation = || format!("fetch from {}", conn.addr());
                timed(timeout, operation, conn.broker().fetch(request)).await
            })
            .await;
            Done {
                opened,
                outcome: Outcome::Fetch(outcome),
            }
        });
        self.in_flight.insert(
            abort.id(),
            Job::Fetch {
                node,
                partitions: targets,
            },
        );
        self.fetching.entry(node).or_default().push(abort);
    }

    /// Files a finished request's answer.
    fn finish(&mut self, joined: Result<(Id, Done), JoinError>) {
        let (id, done) = match joined {
            Ok(finished) => finished,
            // Aborted: its bookkeeping was undone when it was aborted.
            Err(err) if err.is_cancelled() => return,
            Err(err) => std::panic::resume_unwind(err.into_panic()),
        };
        let Some(job) = self.in_flight.remove(&id) else {
            // Aborted after it had finished.
            return;
        };
        if let Some((node, conn)) = done.opened {
            self.brokers.insert(node, conn);
        }
        let now = Instant::now();
        match (job, done.outcome) {
            (Job::Fetch { node, partitions }, Outcome::Fetch(outcome)) => {
                if let Some(fetches) = self.fetching.get_mut(&node) {
                    fetches.retain(|abort| abort.id() != id);
                    if fetches.is_empty() {
                        self.fetching.remove(&node);
                    }
                }
                self.fetched(node, partitions, outcome, now);
            }
            (Job::ListOffsets { node, partitions }, Outcome::ListOffsets(outcome)) => {
                self.listing.remove(&node);
                self.listed(node, partitions, outcome, now);
            }
            (Job::Metadata { topics }, Outcome::Metadata(outcome)) => {
                self.metadata_in_flight = false;
                self.metadata(&topics, outcome, now);
            }
            (job, outcome) => unreachable!("{job:?} answered with {outcome:?}"),
        }
        self.shared.changed.notify_waiters();
    }

    fn fetched(
        &mut self,
        node: i32,
        targets: Vec<FetchTarget>,
        outcome: Result<FetchResponse, ClientError>,
        now: Instant,
    ) {
        let response = match outcome {
            Ok(response) => response,
            Err(err) => {
                let tps = targets.iter().map(|t| (&t.tp, t.epoch));
                self.request_failed("fetch", node, tps, err, now);
                return;
            }
        };
        let mut answers: HashMap<(String, u32), FetchPartitionResponse> = by_partition(
            response.topics,
            |t| (t.topic, t.partitions),
            |p| p.partition,
        );
        let mut state = self.shared.state.lock();
        for target in targets {
            let answer = answers.remove(&(target.tp.topic.to_string(), target.tp.partition));
            let Some(p) = state.current(&target.tp, target.epoch) else {
                // Sought or unassigned while the fetch was in flight.
                continue;
            };
            p.in_flight = false;
            let Some(answer) = answer else {
                let err = ClientError::Protocol(format!(
                    "the fetch response has no outcome for topic {} partition {}",
                    target.tp.topic, target.tp.partition
                ));
                self.partition_failed(
                    &mut state,
                    &target.tp,
                    target.epoch,
                    err,
                    Remedy::Retry,
                    now,
                );
                continue;
            };
            match ErrorCode::try_from(answer.error_code) {
                Ok(ErrorCode::None) => {
                    let fetched = Fetched::decode(&target.tp, target.offset, answer.records);
                    let bytes = fetched.size_in_bytes();
                    tracing::trace!(topic = %target.tp.topic, partition = target.tp.partition, offset = target.offset, records = fetched.records.len(), bytes, "fetched");
                    p.push(fetched.records, bytes, fetched.next_offset);
                    p.retry.succeed();
                    if let Some(source) = fetched.corrupt {
                        tracing::error!(topic = %target.tp.topic, partition = target.tp.partition, offset = fetched.next_offset, cause = %source, "corrupt batch");
                        p.error = Some(PartitionError::Corrupt {
                            offset: fetched.next_offset,
                            source,
                        });
                    }
                }
                Ok(ErrorCode::OffsetOutOfRange) => state.out_of_range(
                    &target.tp,
                    target.offset,
                    answer.log_start_offset,
                    answer.high_watermark,
                ),
                _ => self.partition_code(
                    &mut state,
                    &target.tp,
                    target.epoch,
                    answer.error_code,
                    &answer.error_message,
                    now,
                ),
            }
        }
    }

    fn listed(
        &mut self,
        node: i32,
        targets: Vec<ListTarget>,
        outcome: Result<ListOffsetsResponse, ClientError>,
        now: Instant,
    ) {
        let response = match outcome {
            Ok(response) => response,
            Err(err) => {
                let tps = targets.iter().map(|t| (&t.tp, t.epoch));
                self.request_failed("list-offsets", node, tps, err, now);
                return;
            }
        };
        let mut answers: HashMap<(String, u32), ListOffsetsPartitionResponse> = by_partition(
            response.topics,
            |t| (t.topic, t.partitions),
            |p| p.partition,
        );
        let mut state = self.shared.state.lock();
        for target in targets {
            let answer = answers.remove(&(target.tp.topic.to_string(), target.tp.partition));
            let Some(p) = state.current(&target.tp, target.epoch) else {
                continue;
            };
            p.in_flight = false;
            let Some(answer) = answer else {
                let err = ClientError::Protocol(format!(
                    "the list-offsets response has no outcome for topic {} partition {}",
                    target.tp.topic, target.tp.partition
                ));
                self.partition_failed(
                    &mut state,
                    &target.tp,
                    target.epoch,
                    err,
                    Remedy::Retry,
                    now,
                );
                continue;
            };
            if answer.error_code != ErrorCode::None as i32 {
                self.partition_code(
                    &mut state,
                    &target.tp,
                    target.epoch,
                    answer.error_code,
                    &answer.error_message,
                    now,
                );
                continue;
            }
            match (answer.offset, target.to) {
                (offset, to) if offset >= 0 => {
                    tracing::debug!(topic = %target.tp.topic, partition = target.tp.partition, offset, reset = ?to, "position found");
                    p.position = Position::Fetch(offset);
                    p.retry.succeed();
                }
                // No record at or after the timestamp: the end.
                (_, ResetTo::Timestamp(_)) => p.position = Position::Reset(ResetTo::Latest),
                (offset, to) => {
                    let err = ClientError::Protocol(format!(
                        "list-offsets answered offset {offset} for {to:?} of topic {} \
                         partition {}",
                        target.tp.topic, target.tp.partition
                    ));
                    self.partition_failed(
                        &mut state,
                        &target.tp,
                        target.epoch,
                        err,
                        Remedy::Retry,
                        now,
                    );
                }
            }
        }
    }

    fn metadata(
        &mut self,
        topics: &[String],
        outcome: Result<MetadataResponse, ClientError>,
        now: Instant,
    ) {
        let shared = Arc::clone(&self.shared);
        let mut state = shared.state.lock();
        let response = match outcome {
            Ok(response) => response,
            Err(err) => {
                self.metadata_retry.fail(now, &self.policy);
                self.metadata_failures = self.metadata_failures.wrapping_add(1);
                tracing::warn!(cause = %err, "metadata request failed");
                let waiting: Vec<(TopicPartition, u64)> = state
                    .partitions_mut()
                    .filter(|(_, p)| p.leader.is_none() && p.error.is_none())
                    .map(|(tp, p)| (tp.clone(), p.epoch))
                    .collect();
                let mut report = !err.is_retriable();
                for (tp, epoch) in &waiting {
                    if let Some(p) = state.current(tp, *epoch) {
                        report |= p.retry.fail(now, &self.policy);
                    }
                }
                if report {
                    state.report(err);
                }
                return;
            }
        };
        self.metadata_retry.succeed();
        self.metadata_failures = 0;
        self.brokers.update(response.brokers);
        let by_name: HashMap<&str, _> = response
            .topics
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let requested: Vec<(TopicPartition, u64)> = state
            .partitions_mut()
            .filter(|(tp, _)| topics.iter().any(|t| **t == *tp.topic))
            .map(|(tp, p)| (tp.clone(), p.epoch))
            .collect();
        for (tp, epoch) in requested {
            let unknown = |message: String| ClientError::Broker {
                topic: tp.topic.to_string(),
                partition: Some(tp.partition),
                code: ErrorCode::UnknownTopicOrPartition,
                message,
            };
            let topic = by_name.get(&*tp.topic);
            let problem = match topic {
                None => Some(unknown(format!(
                    "the metadata does not list topic {}",
                    tp.topic
                ))),
                Some(t) => match check_code(&tp.topic, None, t.error_code, &t.error_message) {
                    Err(ClientError::Broker { code, message, .. }) => Some(ClientError::Broker {
                        topic: tp.topic.to_string(),
                        partition: Some(tp.partition),
                        code,
                        message,
                    }),
                    Err(other) => Some(other),
                    Ok(()) => match t.partitions.iter().find(|p| p.partition == tp.partition) {
                        None => Some(unknown(format!(
                            "topic {} has {} partitions",
                            tp.topic,
                            t.partitions.len()
                        ))),
                        Some(p) if p.leader < 0 => Some(ClientError::Broker {
                            topic: tp.topic.to_string(),
                            partition: Some(tp.partition),
                            code: ErrorCode::NotLeader,
                            message: "the partition has no leader".into(),
                        }),
                        Some(found) => {
                            if let Some(p) = state.current(&tp, epoch) {
                                p.leader = Some(found.leader);
                            }
                            None
                        }
                    },
                },
            };
            if let Some(err) = problem {
                if let Some(p) = state.current(&tp, epoch) {
                    p.leader = None;
                }
                let remedy = err.error_code().map_or(Remedy::Stop, remedy);
                self.partition_failed(&mut state, &tp, epoch, err, remedy, now);
            }
        }
    }

    /// A whole request failed (transport, gRPC status, timeout): every partition in it backs
    /// off and asks for its leader again. The error is reported if it cannot be cured by
    /// retrying, or once the failures have lasted the retry timeout.
    fn request_failed<'a>(
        &self,
        what: &str,
        node: i32,
        targets: impl Iterator<Item = (&'a TopicPartition, u64)>,
        err: ClientError,
        now: Instant,
    ) {
        tracing::warn!(node, cause = %err, "{what} request failed");
        let mut state = self.shared.state.lock();
        let mut report = !err.is_retriable();
        for (tp, epoch) in targets {
            if let Some(p) = state.current(tp, epoch) {
                p.in_flight = false;
                p.leader = None;
                report |= p.retry.fail(now, &self.policy);
            }
        }
        if report {
            state.report(err);
        }
    }

    /// A partition-level error code (not NONE, not OFFSET_OUT_OF_RANGE).
    fn partition_code(
        &self,
        state: &mut Assignment,
        tp: &TopicPartition,
        epoch: u64,
        code: i32,
        message: &str,
        now: Instant,
    ) {
        let Err(err) = check_code(&tp.topic, Some(tp.partition), code, message) else {
            return;
        };
        let remedy = err.error_code().map_or(Remedy::Stop, remedy);
        self.partition_failed(state, tp, epoch, err, remedy, now);
    }

    fn partition_failed(
        &self,
        state: &mut Assignment,
        tp: &TopicPartition,
        epoch: u64,
        err: ClientError,
        remedy: Remedy,
        now: Instant,
    ) {
        let Some(p) = state.current(tp, epoch) else {
            return;
        };
        match remedy {
            Remedy::Stop => {
                tracing::error!(topic = %tp.topic, partition = tp.partition, cause = %err, "partition stopped until it is sought");
                p.error = Some(match err {
                    ClientError::Broker { code, message, .. } => {
                        PartitionError::Broker { code, message }
                    }
                    other => PartitionError::Broker {
                        code: ErrorCode::InvalidRequest,
                        message: other.to_string(),
                    },
                });
            }
            Remedy::Retry | Remedy::RefreshAndRetry => {
                if remedy == Remedy::RefreshAndRetry {
                    p.leader = None;
                }
                let report = p.retry.fail(now, &self.policy);
                let code = err.error_code().map_or("", error_code_name);
                tracing::debug!(topic = %tp.topic, partition = tp.partition, code, cause = %err, retry_in_ms = p.retry.retry_at().map(|at| at.saturating_duration_since(now).as_millis()), "partition request failed, retrying");
                if report {
                    state.report(err);
                }
            }
        }
    }
}

/// The earlier of two optional instants.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Opens the connection to `target` if needed and runs `call` over it.
async fn request_to<T, F, Fut>(
    target: Target,
    call: F,
) -> (Result<T, ClientError>, Option<(i32, Connection)>)
where
    F: FnOnce(Connection) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    match target.open().await {
        Ok((conn, opened)) => (call(conn).await, opened),
        Err(err) => (Err(err), None),
    }
}

/// Awaits a gRPC call for at most `after`.
async fn timed<T>(
    after: Duration,
    operation: impl FnOnce() -> String,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(after, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(ClientError::Rpc(status)),
        Err(_elapsed) => Err(ClientError::Timeout {
            operation: operation(),
            after,
        }),
    }
}

/// A response's per-partition answers keyed by (topic, partition).
fn by_partition<T, P>(
    topics: Vec<T>,
    split: impl Fn(T) -> (String, Vec<P>),
    partition: impl Fn(&P) -> u32,
) -> HashMap<(String, u32), P> {
    let mut out = HashMap::new();
    for t in topics {
        let (topic, partitions) = split(t);
        for p in partitions {
            out.insert((topic.clone(), partition(&p)), p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_changes_refresh_metadata_and_bad_requests_stop_the_partition() {
        assert_eq!(remedy(ErrorCode::NotLeader), Remedy::RefreshAndRetry);
        assert_eq!(
            remedy(ErrorCode::UnknownTopicOrPartition),
            Remedy::RefreshAndRetry
        );
        assert_eq!(
            remedy(ErrorCode::FencedLeaderEpoch),
            Remedy::RefreshAndRetry
        );
        assert_eq!(remedy(ErrorCode::NotEnoughReplicas), Remedy::Retry);
        assert_eq!(remedy(ErrorCode::RequestTimedOut), Remedy::Retry);
        assert_eq!(remedy(ErrorCode::CorruptBatch), Remedy::Stop);
        assert_eq!(remedy(ErrorCode::InvalidRequest), Remedy::Stop);
    }

    #[test]
    fn earliest_of_two_optional_instants() {
        let t = Instant::now();
        let later = t + Duration::from_secs(1);
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(t), None), Some(t));
        assert_eq!(earliest(None, Some(t)), Some(t));
        assert_eq!(earliest(Some(later), Some(t)), Some(t));
    }
}
