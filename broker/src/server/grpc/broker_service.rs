//! The `Broker` gRPC service: produce, fetch (long poll), list offsets, metadata.

use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_proto::batch::layout::{HEADER_LEN, LOG_OVERHEAD};
use brook_proto::v1::broker_server::Broker;
use brook_proto::v1::*;
use brook_proto::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures::future::{join_all, select_all};
use tonic::{Request, Response, Status};

use super::error_code::log_error_code;
use crate::log::{Log, LogError};
use crate::partition::{Partition, ProducerIdError, Registry, is_internal};
use crate::security::Caller;
use crate::security::acl::{CLUSTER, Operation, ResourceType};
use crate::server::BrokerContext;
use crate::server::cluster::ClusterRole;

/// Implements `brook.v1.Broker`.
#[derive(Debug, Clone)]
pub struct BrokerService {
    ctx: Arc<BrokerContext>,
}

impl BrokerService {
    pub(crate) fn new(ctx: Arc<BrokerContext>) -> Self {
        BrokerService { ctx }
    }

    fn registry(&self) -> &Registry {
        &self.ctx.registry
    }

    /// The partition to read or write, if this broker serves it: it exists here and, in a
    /// cluster, this broker leads it. Otherwise the error to answer with.
    fn serving(&self, topic: &str, partition: u32) -> Result<Arc<Partition>, (ErrorCode, String)> {
        if let Some(cluster) = &self.ctx.cluster
            && !is_internal(topic)
        {
            cluster.check_leader(topic, partition)?;
        }
        (self.registry().partition(topic, partition)).ok_or_else(|| unknown(topic, partition))
    }
}

fn unknown(topic: &str, partition: u32) -> (ErrorCode, String) {
    (
        ErrorCode::UnknownTopicOrPartition,
        format!("topic {topic:?} partition {partition} does not exist"),
    )
}

/// Splits a produce payload into its batches by their length fields. Full validation (CRC,
/// limits) happens in the log; this only finds the boundaries.
fn split_batches(records: &Bytes) -> Result<Vec<Bytes>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < HEADER_LEN {
            return Err(format!(
                "{} trailing bytes at position {pos} are too few for a batch header ({HEADER_LEN} bytes)",
                rest.len()
            ));
        }
        let len = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        let size = LOG_OVERHEAD as i64 + i64::from(len);
        if len < 0 || size > rest.len() as i64 {
            return Err(format!(
                "batch at position {pos} declares {size} bytes but {} remain",
                rest.len()
            ));
        }
        out.push(records.slice(pos..pos + size as usize));
        pos += size as usize;
    }
    if out.is_empty() {
        return Err("no record batch in the request".to_string());
    }
    Ok(out)
}

struct PartitionOutcome {
    error: Option<(ErrorCode, String)>,
    base_offset: i64,
    append_time: i64,
}

async fn produce_partition(
    partition: Arc<Partition>,
    records: Bytes,
    acks: Acks,
) -> PartitionOutcome {
    let wait = acks != Acks::None;
    let fail = |code, msg| PartitionOutcome {
        error: Some((code, msg)),
        base_offset: -1,
        append_time: -1,
    };
    let batches = match split_batches(&records) {
        Ok(b) => b,
        Err(msg) => return fail(ErrorCode::CorruptBatch, msg),
    };
    // Check every batch before appending any, so a request is all or nothing per partition.
    let config = partition.log().config();
    let mut checked = Vec::with_capacity(batches.len());
    for (i, b) in batches.into_iter().enumerate() {
        match Log::validate(&b, &config) {
            Ok(h) => checked.push((b, h)),
            Err(err) => return fail(log_error_code(&err), format!("batch {i}: {err}")),
        }
    }
    let bytes: u64 = checked.iter().map(|(b, _)| b.len() as u64).sum();
    // Held until every batch is queued: a replica being emptied waits for them.
    let writes = partition.lock_writes().await;
    let epoch = match partition.produce_epoch() {
        Ok(epoch) => epoch,
        Err((code, msg)) => return fail(code, msg),
    };
    if acks == Acks::All
        && let Err(e) = partition.check_min_insync()
    {
        return fail(ErrorCode::NotEnoughReplicas, e.to_string());
    }
    // Queue every batch before waiting for any: they are appended in request order, and with
    // acks=none the answer goes out once they are queued.
    let log = partition.log();
    let mut pending = Vec::with_capacity(checked.len());
    for (b, h) in checked {
        match log.enqueue_validated(b, h, epoch).await {
            Ok(rx) => pending.push(rx),
            Err(e) => return fail(log_error_code(&e), e.to_string()),
        }
    }
    drop(writes);
    let topic = partition.topic().to_string();
    let dir = log.dir().to_path_buf();
    let outcome = async move {
        let mut first = None;
        let mut last = Offset(-1);
        let mut messages = 0u64;
        for rx in pending {
            let info = rx
                .await
                .map_err(|_| LogError::Closed { path: dir.clone() })??;
            messages += (info.last_offset.0 - info.base_offset.0 + 1) as u64;
            last = info.last_offset;
            first.get_or_insert(info);
        }
        partition.on_append();
        metrics::counter!("brook_bytes_in_total", "topic" => topic.clone()).increment(bytes);
        metrics::counter!("brook_messages_in_total", "topic" => topic).increment(messages);
        Ok::<_, LogError>((first.expect("at least one batch"), last, partition))
    };
    if !wait {
        tokio::spawn(async move {
            if let Err(e) = outcome.await {
                tracing::warn!(cause = %e, "acks=none append failed");
            }
        });
        return PartitionOutcome {
            error: None,
            base_offset: -1,
            append_time: -1,
        };
    }
    let (info, last, partition) = match outcome.await {
        Ok(done) => done,
        Err(e) => return fail(log_error_code(&e), e.to_string()),
    };
    if acks == Acks::All {
        // Acknowledged once the high watermark passes the last record: every in-sync
        // replica holds it.
        if let Err((code, msg)) = partition.wait_replicated(last, epoch).await {
            return fail(code, msg);
        }
    }
    PartitionOutcome {
        error: None,
        base_offset: info.base_offset.0,
        append_time: info.log_append_time_ms,
    }
}

#[tonic::async_trait]
impl Broker for BrokerService {
    async fn produce(
        &self,
        request: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let topics = req.topics.iter().map(|t| t.topic.as_str());
        (self.ctx).authorize(
            &caller,
            "Produce",
            Operation::Write,
            ResourceType::Topic,
            topics,
        )?;
        let acks = req.acks();
        let timeout = match req.timeout_ms {
            0 => self.ctx.config.server.produce_timeout_ms,
            ms => u64::from(ms).min(self.ctx.config.server.produce_timeout_ms),
        };
        let mut topics = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let jobs = t.partitions.into_iter().map(|p| {
                let partition = self.serving(&t.topic, p.partition);
                let topic = t.topic.clone();
                async move {
                    let outcome = match partition {
                        Err(error) => PartitionOutcome {
                            error: Some(error),
                            base_offset: -1,
                            append_time: -1,
                        },
                        Ok(partition) => {
                            match tokio::time::timeout(
                                Duration::from_millis(timeout),
                                produce_partition(partition, p.records, acks),
                            )
                            .await
                            {
                                Ok(o) => o,
                                Err(_) => PartitionOutcome {
                                    error: Some((
                                        ErrorCode::RequestTimedOut,
                                        format!("produce did not complete within {timeout} ms"),
                                    )),
                                    base_offset: -1,
                                    append_time: -1,
                                },
                            }
                        }
                    };
                    let log_start = log_start_offset(self.registry(), &topic, p.partition);
                    let (code, msg) = outcome.error.unwrap_or((ErrorCode::None, String::new()));
                    PartitionProduceResponse {
                        partition: p.partition,
                        error_code: code as i32,
                        error_message: msg,
                        base_offset: outcome.base_offset,
                        log_append_time_ms: outcome.append_time,
                        log_start_offset: log_start,
                    }
                }
            });
            let partitions = join_all(jobs).await;
            topics.push(TopicProduceResponse {
                topic: t.topic,
                partitions,
            });
        }
        metrics::histogram!("brook_produce_request_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(Response::new(ProduceResponse { topics }))
    }

    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let started = Instant::now();
        let caller = Caller::of(&request);
        let req = request.into_inner();
        match req.replica_id {
            // Followers copying the log: brokers only.
            Some(_) => {
                (self.ctx).authorize_cluster(&caller, "Fetch", Operation::ClusterAction)?;
            }
            None => {
                let topics = req.topics.iter().map(|t| t.topic.as_str());
                (self.ctx).authorize(
                    &caller,
                    "Fetch",
                    Operation::Read,
                    ResourceType::Topic,
                    topics,
                )?;
            }
        }
        let server = &self.ctx.config.server;
        let max_wait =
            Duration::from_millis(u64::from(req.max_wait_ms).min(server.max_fetch_wait_ms));
        let deadline = tokio::time::Instant::now() + max_wait;
        let max_bytes = match req.max_bytes {
            0 => server.fetch_max_bytes,
            n => (n as usize).min(server.fetch_max_bytes),
        };
        // Resolve partitions and subscribe to their log ends before the first read, so an
        // append between the read and the wait still wakes us.
        let replica = req.replica_id;
        let mut wanted = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                let partition = self.serving(&t.topic, p.partition).and_then(|partition| {
                    partition.check_leader_epoch(p.current_leader_epoch)?;
                    if let Some(node) = replica {
                        let proposal = partition.on_replica_fetch(
                            node,
                            Offset(p.fetch_offset),
                            p.current_leader_epoch,
                        )?;
                        if let (Some(proposal), Some(cluster)) = (proposal, &self.ctx.cluster) {
                            cluster.propose_isr(partition.clone(), proposal);
                        }
                    }
                    Ok(partition)
                });
                let limit = match p.partition_max_bytes {
                    0 => server.fetch_partition_max_bytes,
                    n => n as usize,
                };
                wanted.push((
                    t.topic.clone(),
                    p.partition,
                    p.fetch_offset,
                    limit,
                    partition,
                ));
            }
        }
        let mut watches: Vec<_> = wanted
            .iter()
            .filter_map(|w| {
                w.4.as_ref().ok().map(|p| match replica {
                    Some(_) => p.log().subscribe_end(),
                    None => p.subscribe_visible(),
                })
            })
            .collect();
        loop {
            for w in &mut watches {
                w.borrow_and_update();
            }
            let jobs: Vec<_> = wanted
                .iter()
                .map(|(t, n, o, l, p)| (t.clone(), *n, *o, *l, p.clone()))
                .collect();
            let (topics, total, any_error) = tokio::task::spawn_blocking(move || {
                read_partitions(jobs, max_bytes, replica.is_some())
            })
            .await
            .map_err(|e| Status::internal(format!("fetch task failed: {e}")))?;
            let now = tokio::time::Instant::now();
            let stopping = self.ctx.shutdown.is_cancelled();
            if total >= req.min_bytes as usize
                || any_error
                || now >= deadline
                || watches.is_empty()
                || stopping
            {
                for t in &topics {
                    let bytes: u64 = t.partitions.iter().map(|p| p.records.len() as u64).sum();
                    if bytes > 0 {
                        metrics::counter!("brook_bytes_out_total", "topic" => t.topic.clone())
                            .increment(bytes);
                    }
                }
                metrics::histogram!("brook_fetch_request_seconds")
                    .record(started.elapsed().as_secs_f64());
                return Ok(Response::new(FetchResponse { topics }));
            }
            let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.ctx.shutdown.cancelled() => {}
            }
        }
    }

    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let topics = req.topics.iter().map(|t| t.topic.as_str());
        let describe = Operation::Describe;
        (self.ctx).authorize(
            &caller,
            "ListOffsets",
            describe,
            ResourceType::Topic,
            topics,
        )?;
        let mut topics = Vec::new();
        for t in req.topics {
            let mut partitions = Vec::new();
            for p in t.partitions {
                let mut out = ListOffsetsPartitionResponse {
                    partition: p.partition,
                    error_code: ErrorCode::None as i32,
                    error_message: String::new(),
                    offset: -1,
                    timestamp: -1,
                };
                match self.serving(&t.topic, p.partition) {
                    Err((code, msg)) => {
                        out.error_code = code as i32;
                        out.error_message = msg;
                    }
                    Ok(partition) => match p.spec() {
                        OffsetSpec::Earliest => out.offset = partition.log().start_offset().0,
                        OffsetSpec::Latest => out.offset = partition.high_watermark().0,
                        OffsetSpec::Timestamp => {
                            match partition.log().offset_for_timestamp(p.timestamp).await {
                                Ok(Some(found))
                                    if Offset(found.offset) < partition.high_watermark() =>
                                {
                                    out.offset = found.offset;
                                    out.timestamp = found.timestamp;
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    out.error_code = log_error_code(&e) as i32;
                                    out.error_message = e.to_string();
                                }
                            }
                        }
                    },
                }
                partitions.push(out);
            }
            topics.push(ListOffsetsTopicResponse {
                topic: t.topic,
                partitions,
            });
        }
        Ok(Response::new(ListOffsetsResponse { topics }))
    }

    async fn init_producer_id(
        &self,
        request: Request<InitProducerIdRequest>,
    ) -> Result<Response<InitProducerIdResponse>, Status> {
        let ctx = self.ctx.clone();
        let caller = Caller::of(&request);
        // An idempotent producer needs Write on some topic (Kafka's rule without
        // IdempotentWrite); each produce still checks its own topics.
        let may_write = |acls: &_| {
            (ctx.authorizer).permits_some(acls, &caller, Operation::Write, ResourceType::Topic)
        };
        if !ctx.with_acls(may_write) {
            let decision = crate::security::acl::Decision::NoMatch;
            let (write, topic) = (Operation::Write, ResourceType::Topic);
            return Err((ctx.authorizer).deny(
                &caller,
                "InitProducerId",
                write,
                topic,
                "*",
                decision,
            ));
        }
        let req = request.into_inner();
        let res = tokio::task::spawn_blocking(move || init_producer(&ctx, req))
            .await
            .map_err(|e| Status::internal(format!("producer id task failed: {e}")))?;
        Ok(Response::new(res))
    }

    async fn offset_for_leader_epoch(
        &self,
        request: Request<OffsetForLeaderEpochRequest>,
    ) -> Result<Response<OffsetForLeaderEpochResponse>, Status> {
        let caller = Caller::of(&request);
        // Followers truncating ask as brokers; consumers checking their position, per topic.
        let broker = (self.ctx).permits(
            &caller,
            Operation::ClusterAction,
            ResourceType::Cluster,
            CLUSTER,
        );
        if !broker {
            let topic = [request.get_ref().topic.as_str()];
            let describe = Operation::Describe;
            (self.ctx).authorize(
                &caller,
                "OffsetForLeaderEpoch",
                describe,
                ResourceType::Topic,
                topic,
            )?;
        }
        Ok(Response::new(offset_for_leader_epoch(
            self,
            &request.into_inner(),
        )))
    }

    async fn metadata(
        &self,
        request: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        // Named topics must each be describable; the full listing shows only those that are.
        let named = req.topics.iter().map(String::as_str);
        let describe = Operation::Describe;
        (self.ctx).authorize(&caller, "Metadata", describe, ResourceType::Topic, named)?;
        let mut response = self.metadata_of(req.topics);
        response.topics =
            (self.ctx).describable(&caller, ResourceType::Topic, response.topics, |t| &t.name);
        Ok(Response::new(response))
    }
}

impl BrokerService {
    /// The Metadata answer for `topics` (every topic when empty), before authorization.
    fn metadata_of(&self, topics: Vec<String>) -> MetadataResponse {
        if let Some(cluster) = &self.ctx.cluster {
            return cluster_metadata(cluster, topics);
        }
        let req = MetadataRequest { topics };
        let node = self.ctx.config.server.node_id;
        let all = self.registry().topics();
        let names: Vec<String> = if req.topics.is_empty() {
            all.keys().filter(|n| !is_internal(n)).cloned().collect()
        } else {
            req.topics
        };
        let topics = names
            .into_iter()
            .map(|name| match all.get(&name) {
                Some(topic) => TopicMetadata {
                    name,
                    error_code: ErrorCode::None as i32,
                    error_message: String::new(),
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|p| PartitionMetadata {
                            partition: p.id(),
                            leader: node,
                            leader_epoch: 0,
                            replicas: vec![node],
                            isr: vec![node],
                        })
                        .collect(),
                },
                None => unknown_topic(name),
            })
            .collect();
        MetadataResponse {
            cluster_id: self.registry().cluster_id().to_string(),
            controller_id: node,
            brokers: vec![BrokerInfo {
                node_id: node,
                address: self.ctx.grpc_addr.to_string(),
            }],
            topics,
        }
    }
}

/// A Metadata entry for a topic that does not exist.
fn unknown_topic(name: String) -> TopicMetadata {
    TopicMetadata {
        error_code: ErrorCode::UnknownTopicOrPartition as i32,
        error_message: format!("topic {name:?} does not exist"),
        name,
        partitions: Vec::new(),
    }
}

/// The Metadata answer of a broker in a cluster: live brokers, the controller, and each
/// topic's replicas, leader (-1 while offline), leader epoch and ISR, as applied here.
fn cluster_metadata(cluster: &ClusterRole, wanted: Vec<String>) -> MetadataResponse {
    let metadata = cluster.metadata();
    let names: Vec<String> = if wanted.is_empty() {
        metadata.topics.keys().cloned().collect()
    } else {
        wanted
    };
    let topics = names
        .into_iter()
        .map(|name| match metadata.topics.get(&name) {
            Some(topic) => TopicMetadata {
                name,
                error_code: ErrorCode::None as i32,
                error_message: String::new(),
                partitions: (topic.partitions.iter().enumerate())
                    .map(|(i, p)| PartitionMetadata {
                        partition: i as u32,
                        leader: p.leader.unwrap_or(-1),
                        leader_epoch: p.leader_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.iter().copied().collect(),
                    })
                    .collect(),
            },
            None => unknown_topic(name),
        })
        .collect();
    MetadataResponse {
        cluster_id: cluster.cluster_id().to_string(),
        controller_id: (cluster.controller().leader()).map_or(-1, |id| id as i32),
        brokers: (metadata.brokers.iter())
            .filter(|(_, b)| !b.fenced)
            .map(|(&node_id, b)| BrokerInfo {
                node_id,
                address: b.address.clone(),
            })
            .collect(),
        topics,
    }
}

fn offset_for_leader_epoch(
    service: &BrokerService,
    req: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let answer = service.serving(&req.topic, req.partition).and_then(|p| {
        p.check_leader_epoch(Some(req.current_leader_epoch))?;
        Ok(p.log().epoch_end(LeaderEpoch(req.leader_epoch)))
    });
    match answer {
        Ok(end) => OffsetForLeaderEpochResponse {
            error_code: ErrorCode::None as i32,
            error_message: String::new(),
            leader_epoch: end.epoch.0,
            end_offset: end.end_offset.0,
        },
        Err((code, message)) => OffsetForLeaderEpochResponse {
            error_code: code as i32,
            error_message: message,
            leader_epoch: -1,
            end_offset: -1,
        },
    }
}

fn init_producer(ctx: &BrokerContext, req: InitProducerIdRequest) -> InitProducerIdResponse {
    match ctx.producer_ids.init(req.producer_id, req.producer_epoch) {
        Ok((producer_id, epoch)) => InitProducerIdResponse {
            error_code: ErrorCode::None as i32,
            error_message: String::new(),
            producer_id,
            producer_epoch: i32::from(epoch),
        },
        Err(e) => {
            let code = match e {
                ProducerIdError::Unknown { .. } => ErrorCode::UnknownProducerId,
                ProducerIdError::EpochOutOfRange { .. } => ErrorCode::InvalidProducerEpoch,
                ProducerIdError::Storage(_) => ErrorCode::StorageError,
            };
            InitProducerIdResponse {
                error_code: code as i32,
                error_message: e.to_string(),
                producer_id: -1,
                producer_epoch: -1,
            }
        }
    }
}

fn log_start_offset(registry: &Registry, topic: &str, partition: u32) -> i64 {
    registry
        .partition(topic, partition)
        .map_or(-1, |p| p.log().start_offset().0)
}

type FetchJob = (
    String,
    u32,
    i64,
    usize,
    Result<Arc<Partition>, (ErrorCode, String)>,
);

/// Reads every requested partition (blocking file reads: run off the reactor). Returns the
/// response topics, the bytes read and whether any partition failed.
/// The whole batches of `bytes` that start below `end`: a leader's batches above the high
/// watermark are not yet committed. The high watermark is always at a batch boundary
/// (followers copy whole batches).
fn below(bytes: Bytes, end: i64) -> Bytes {
    let mut at = 0;
    while at < bytes.len() {
        match brook_proto::BatchHeader::parse(&bytes[at..]) {
            Ok(h) if h.base_offset < end => at += h.total_size(),
            _ => break,
        }
    }
    bytes.slice(..at.min(bytes.len()))
}

fn read_partitions(
    jobs: Vec<FetchJob>,
    max_bytes: usize,
    replica: bool,
) -> (Vec<FetchTopicResponse>, usize, bool) {
    let mut topics: Vec<FetchTopicResponse> = Vec::new();
    let mut total = 0usize;
    let mut any_error = false;
    for (topic, n, offset, limit, partition) in jobs {
        let mut out = FetchPartitionResponse {
            partition: n,
            error_code: ErrorCode::None as i32,
            error_message: String::new(),
            high_watermark: -1,
            log_start_offset: -1,
            records: Bytes::new(),
        };
        match partition {
            Err((code, msg)) => {
                out.error_code = code as i32;
                out.error_message = msg;
                any_error = true;
            }
            Ok(p) => {
                let high_watermark = p.high_watermark();
                out.high_watermark = high_watermark.0;
                out.log_start_offset = p.log().start_offset().0;
                // Consumers read below the high watermark only; replicas up to the log end.
                let visible_end = if replica { i64::MAX } else { high_watermark.0 };
                // The first non-empty partition may exceed max_bytes by one batch (KIP-74).
                let budget = if total == 0 {
                    limit.min(max_bytes)
                } else {
                    limit.min(max_bytes.saturating_sub(total))
                };
                let hidden = offset >= visible_end && offset <= p.log().end_offset().0;
                if (budget > 0 || total == 0) && !hidden {
                    match p.log().read_blocking(Offset(offset), budget.max(1)) {
                        Ok(bytes) => {
                            // Only a leader's reads can reach past the high watermark.
                            let bytes = if visible_end < p.log().end_offset().0 {
                                below(bytes, visible_end)
                            } else {
                                bytes
                            };
                            total += bytes.len();
                            out.records = bytes;
                        }
                        Err(e) => {
                            out.error_code = log_error_code(&e) as i32;
                            out.error_message = e.to_string();
                            any_error = true;
                        }
                    }
                }
            }
        }
        match topics.last_mut() {
            Some(t) if t.topic == topic => t.partitions.push(out),
            _ => topics.push(FetchTopicResponse {
                topic,
                partitions: vec![out],
            }),
        }
    }
    (topics, total, any_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_batches_finds_each_batch_and_rejects_leftovers() {
        let mut b = brook_proto::BatchBuilder::new();
        b.append(1, None, Some(b"a"), &[]);
        let one = b.build();
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        let split = split_batches(&Bytes::from(two.clone())).unwrap();
        assert_eq!(split, vec![one.clone(), one.clone()]);
        two.extend_from_slice(&[0; 10]);
        assert_eq!(
            split_batches(&Bytes::from(two)).unwrap_err(),
            format!(
                "10 trailing bytes at position {} are too few for a batch header (61 bytes)",
                2 * one.len()
            )
        );
        assert_eq!(
            split_batches(&Bytes::new()).unwrap_err(),
            "no record batch in the request"
        );
        let mut long = one.to_vec();
        long[8..12].copy_from_slice(&1000i32.to_be_bytes());
        assert_eq!(
            split_batches(&Bytes::from(long)).unwrap_err(),
            format!(
                "batch at position 0 declares 1012 bytes but {} remain",
                one.len()
            )
        );
    }
}
