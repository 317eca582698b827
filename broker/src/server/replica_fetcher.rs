//! A follower's fetcher for one partition: finds where its log diverged from the new
//! leader's (by leader epoch, Kafka KIP-101), truncates there, then copies the leader's log
//! with replica fetches and takes the leader's high watermark. Stops when the partition's
//! role changes.

use std::sync::Arc;
use std::time::Duration;

use brook_proto::v1::broker_client::BrokerClient;
use brook_proto::v1::{
    ErrorCode, FetchPartition, FetchRequest, FetchTopic, OffsetForLeaderEpochRequest,
};
use brook_proto::{LeaderEpoch, Offset};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::partition::Partition;
use crate::replication::follower::{first_question, resolve};
use crate::replication::{Divergence, EpochEnd, NodeId};
use crate::security::{Tls, peer_endpoint};

/// How long the leader holds a replica fetch when it has nothing new.
const FETCH_WAIT_MS: u32 = 500;
/// Most bytes per replica fetch.
const FETCH_MAX_BYTES: u32 = 8 << 20;
/// Pause after an error before trying again.
const BACKOFF: Duration = Duration::from_millis(200);
/// Largest answer accepted from a leader.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// What this follower fetches, from where.
pub struct FetchTarget {
    /// This broker's id.
    pub node: NodeId,
    /// The leader's id and client address.
    pub leader: (NodeId, String),
    /// The leader epoch being followed.
    pub epoch: i32,
    /// Empty the local log before fetching: this broker is a new replica (a reassignment
    /// adds it), and whatever its log holds is from an earlier time it held one.
    pub fresh: bool,
    /// TLS towards the leader; `None`: plain text.
    pub tls: Option<Arc<Tls>>,
}

/// Runs until `stop` is cancelled.
pub async fn run(partition: Arc<Partition>, target: FetchTarget, stop: CancellationToken) {
    let client = match peer_endpoint(&target.leader.1, target.tls.as_deref()) {
        Ok(e) => BrokerClient::new(
            e.connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                .connect_lazy(),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES),
        Err(e) => {
            tracing::error!(leader = ?target.leader, cause = %e, "bad leader address");
            return;
        }
    };
    let mut fetcher = Fetcher {
        partition,
        target,
        client,
        stop: stop.clone(),
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = fetcher.run() => {}
    }
}

struct Fetcher {
    partition: Arc<Partition>,
    target: FetchTarget,
    client: BrokerClient<Channel>,
    /// Cancelled when the role this fetcher serves ends.
    stop: CancellationToken,
}

/// Why a write was not made.
const STOPPED: &str = "the fetcher was stopped";

impl Fetcher {
    async fn run(&mut self) {
        if self.target.fresh {
            let (topic, partition) = self.names();
            match self.reset(Offset(0)).await {
                Ok(()) => tracing::info!(topic, partition, "emptied the log of a new replica"),
                Err(e) => {
                    tracing::warn!(topic, partition, cause = %e, "emptying the log of a new replica failed")
                }
            }
        }
        loop {
            match self.truncate().await {
                Ok(()) => self.fetch_loop().await,
                Err(e) => tracing::debug!(cause = %e, "truncation by epoch failed"),
            }
            tokio::time::sleep(BACKOFF).await;
        }
    }

    fn names(&self) -> (String, u32) {
        (self.partition.topic().to_string(), self.partition.id())
    }

    /// Asks the leader where epochs ended until the divergence point is known, and cuts
    /// the log there.
    async fn truncate(&mut self) -> Result<(), String> {
        let log = self.partition.log();
        let mut step = first_question(&log.epochs(), log.end_offset());
        let (topic, partition) = self.names();
        loop {
            match step {
                Divergence::TruncateTo(offset) => {
                    if offset < log.end_offset() {
                        let _writes = self.partition.lock_writes().await;
                        if self.stop.is_cancelled() {
                            return Err(STOPPED.into());
                        }
                        let end = log.truncate_to(offset).await.map_err(|e| e.to_string())?;
                        tracing::info!(
                            topic,
                            partition,
                            end = end.0,
                            "truncated to the leader's log"
                        );
                    }
                    return Ok(());
                }
                Divergence::Ask(epoch) => {
                    let answer = self
                        .client
                        .offset_for_leader_epoch(OffsetForLeaderEpochRequest {
                            topic: topic.clone(),
                            partition,
                            leader_epoch: epoch.0,
                            current_leader_epoch: self.target.epoch,
                        })
                        .await
                        .map_err(|s| s.to_string())?
                        .into_inner();
                    if answer.error_code != ErrorCode::None as i32 {
                        return Err(answer.error_message);
                    }
                    let end = EpochEnd {
                        epoch: LeaderEpoch(answer.leader_epoch),
                        end_offset: Offset(answer.end_offset),
                    };
                    step = resolve(
                        &log.epochs(),
                        log.end_offset(),
                        self.partition.high_watermark(),
                        epoch,
                        end,
                    );
                }
            }
        }
    }

    /// Empties the local log and restarts it at `offset`.
    async fn reset(&self, offset: Offset) -> Result<(), String> {
        let _writes = self.partition.lock_writes().await;
        if self.stop.is_cancelled() {
            return Err(STOPPED.into());
        }
        let log = self.partition.log();
        log.reset_to(offset).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Fetches from the log end until an error that calls for a new truncation.
    async fn fetch_loop(&mut self) {
        let (topic, partition) = self.names();
        loop {
            let request = FetchRequest {
                max_wait_ms: FETCH_WAIT_MS,
                min_bytes: 1,
                max_bytes: FETCH_MAX_BYTES,
                topics: vec![FetchTopic {
                    topic: topic.clone(),
                    partitions: vec![FetchPartition {
                        partition,
                        fetch_offset: self.partition.log().end_offset().0,
                        partition_max_bytes: FETCH_MAX_BYTES,
                        current_leader_epoch: Some(self.target.epoch),
                    }],
                }],
                replica_id: Some(self.target.node),
            };
            let answer = match self.client.fetch(request).await {
                Ok(a) => a.into_inner(),
                Err(status) => {
                    tracing::debug!(topic, partition, cause = %status, "replica fetch failed");
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            };
            let Some(p) = answer.topics.first().and_then(|t| t.partitions.first()) else {
                tokio::time::sleep(BACKOFF).await;
                continue;
            };
            match ErrorCode::try_from(p.error_code) {
                Ok(ErrorCode::None) => {}
                Ok(ErrorCode::OffsetOutOfRange) => {
                    // The leader's log starts past this one's end (retention, or this replica
                    // is new): start over where the leader's log starts, as Kafka does.
                    let end = self.partition.log().end_offset().0;
                    if p.log_start_offset > end {
                        match self.reset(Offset(p.log_start_offset)).await {
                            Ok(()) => tracing::info!(
                                topic,
                                partition,
                                start = p.log_start_offset,
                                "restarted the log at the leader's log start"
                            ),
                            Err(e) => {
                                tracing::warn!(topic, partition, cause = %e, "restarting the log at the leader's log start failed")
                            }
                        }
                    }
                    return;
                }
                _ => {
                    tracing::debug!(topic, partition, code = p.error_code, message = %p.error_message, "replica fetch refused");
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            }
            if !p.records.is_empty() {
                let _writes = self.partition.lock_writes().await;
                if self.stop.is_cancelled() {
                    return;
                }
                if let Err(e) = self.partition.log().append_replica(p.records.clone()).await {
                    tracing::warn!(topic, partition, cause = %e, "appending the leader's batches failed");
                    return;
                }
            }
            self.partition
                .set_follower_high_watermark(Offset(p.high_watermark));
        }
    }
}
