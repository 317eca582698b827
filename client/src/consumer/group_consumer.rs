//! A consumer in a consumer group: the coordinator assigns its partitions (KIP-848-style
//! heartbeats), it starts each from the group's committed offset, and it commits what the
//! application processed.
//!
//! ```text
//!  heartbeat task ── Heartbeat(member, epoch, owned) ──▶ coordinator
//!        │ ◀── assignment, epoch, interval ──┘
//!        ▼ target (mutex)
//!  poll(): apply the target ─ revoked: on_revoked, commit, unassign, report released
//!                           └ added:   fetch committed offsets, seek, on_assigned
//!          auto-commit (interval) ─ then Consumer::poll
//! ```
//!
//! Rebalances are applied inside [`GroupConsumer::poll`], never behind the application's
//! back: when `poll` runs, the application has processed everything earlier polls returned,
//! so committing the positions there (on revocation, and for auto-commit) commits only
//! processed records. The guarantee is at least once: after a crash or an eviction, the
//! records polled since the last commit are delivered again to the partition's next owner.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use brook_proto::Offset;
use brook_proto::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, ErrorCode, FetchOffsetsRequest,
    FetchOffsetsResponse, GroupHeartbeatRequest, GroupHeartbeatResponse, OwnedPartitions,
    PartitionOffset, Subscription, TopicPartitions,
};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::coordinator::CoordinatorLink;
use super::{Consumer, ConsumerConfig, ConsumerRecord, TopicPartition};
use crate::error::check_code;
use crate::{ClientError, Connection};

/// Called inside [`GroupConsumer::poll`] when the assignment changes.
pub trait RebalanceListener: Send + Sync {
    /// `partitions` are about to go: the last chance to commit or flush work for them. With
    /// auto-commit on, their positions are committed right after this returns.
    fn on_revoked(&mut self, _partitions: &[TopicPartition]) {}
    /// `partitions` were assigned and positioned at their committed offsets.
    fn on_assigned(&mut self, _partitions: &[TopicPartition]) {}
}

/// A listener that does nothing.
#[derive(Debug, Default)]
pub struct NoListener;

impl RebalanceListener for NoListener {}

/// Settings of a group member.
#[derive(Debug, Clone)]
pub struct GroupMemberConfig {
    /// The group.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// Commit positions every this often from `poll` (Kafka `auto.commit.interval.ms`, 5 s);
    /// `None`: only explicit commits (and commits on revocation).
    pub auto_commit: Option<Duration>,
}

#[derive(Debug, Default)]
struct Membership {
    member_id: String,
    epoch: i32,
    /// The latest assignment from the coordinator, not yet applied by `poll`.
    target: Option<BTreeSet<TopicPartition>>,
    /// What the application side holds: reported with every heartbeat.
    owned: BTreeSet<TopicPartition>,
    /// The coordinator dropped this member (evicted or fenced): everything it held is lost.
    lost: bool,
    /// A failure the heartbeat task could not recover from.
    error: Option<String>,
    leaving: bool,
}

/// A member of a consumer group. See the [module docs](self).
pub struct GroupConsumer {
    /// `None` only after `close` took it.
    consumer: Option<Consumer>,
    link: Arc<CoordinatorLink>,
    config: GroupMemberConfig,
    shared: Arc<(Mutex<Membership>, Notify, Notify)>,
    task: JoinHandle<()>,
    owned: BTreeSet<TopicPartition>,
    listener: Box<dyn RebalanceListener>,
    last_commit: Instant,
}

impl Drop for GroupConsumer {
    /// A dropped member stops heartbeating (as a crashed one would): the coordinator evicts
    /// it after the session timeout. `close` leaves at once instead.
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.config.group_id)
            .field("owned", &self.owned)
            .finish()
    }
}

fn to_wire(set: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut by: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in set {
        by.entry(&tp.topic).or_default().push(tp.partition);
    }
    by.into_iter()
        .map(|(t, partitions)| TopicPartitions {
            topic: t.to_string(),
            partitions,
        })
        .collect()
}

fn from_wire(tps: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    tps.iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.topic.as_str(), p))
        })
        .collect()
}

/// How long a group request keeps looking for the coordinator: a failover takes seconds.
const COORDINATOR_PATIENCE: Duration = Duration::from_secs(30);

async fn commit_rpc(
    conn: Connection,
    req: CommitOffsetsRequest,
) -> Result<CommitOffsetsResponse, tonic::Status> {
    Ok(conn.groups().commit_offsets(req).await?.into_inner())
}

fn commit_code(res: &CommitOffsetsResponse) -> (i32, &str) {
    (res.error_code, res.error_message.as_str())
}

async fn heartbeat_loop(
    link: Arc<CoordinatorLink>,
    config: GroupMemberConfig,
    shared: Arc<(Mutex<Membership>, Notify, Notify)>,
) {
    let (state, poll_wake, beat_wake) = (&shared.0, &shared.1, &shared.2);
    let mut interval = Duration::from_millis(500);
    loop {
        let (member_id, epoch, owned, leaving) = {
            let s = state.lock();
            (s.member_id.clone(), s.epoch, s.owned.clone(), s.leaving)
        };
        let req = GroupHeartbeatRequest {
            group_id: config.group_id.clone(),
            member_id,
            member_epoch: if leaving { -1 } else { epoch },
            subscription: Some(Subscription {
                topics: config.topics.clone(),
            }),
            owned: Some(OwnedPartitions {
                topics: to_wire(&owned),
            }),
        };
        let answer = link
            .call(
                |conn| {
                    let req = req.clone();
                    async move { Ok(conn.groups().heartbeat(req).await?.into_inner()) }
                },
                |res: &GroupHeartbeatResponse| (res.error_code, res.error_message.as_str()),
            )
            .await;
        match answer {
            Ok(res) => {
                let mut s = state.lock();
                match res.error_code() {
                    ErrorCode::None if leaving => return,
                    ErrorCode::None => {
                        s.member_id = res.member_id;
                        s.epoch = res.member_epoch;
                        s.target = Some(from_wire(&res.assignment));
                        interval = Duration::from_millis(
                            u64::from(res.heartbeat_interval_ms).clamp(10, 5_000),
                        );
                    }
                    ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch => {
                        // Dropped by the coordinator: lose everything, rejoin at epoch 0.
                        tracing::warn!(group = %config.group_id, message = %res.error_message, "member fenced; rejoining");
                        s.epoch = 0;
                        s.lost = true;
                        s.target = Some(BTreeSet::new());
                        interval = Duration::from_millis(10);
                    }
                    _ => s.error = Some(res.error_message),
                }
                drop(s);
                poll_wake.notify_waiters();
            }
            Err(e) => {
                tracing::warn!(group = %config.group_id, cause = %e, "heartbeat failed; retrying");
                if leaving {
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = beat_wake.notified() => {}
        }
    }
}

impl GroupConsumer {
    /// Joins `config.group_id` subscribed to `config.topics`, reading with a consumer built
    /// from `consumer_config` over `conn`.
    pub fn subscribe(
        conn: Connection,
        consumer_config: ConsumerConfig,
        config: GroupMemberConfig,
        listener: Box<dyn RebalanceListener>,
    ) -> Result<GroupConsumer, ClientError> {
        if config.group_id.is_empty() || config.topics.is_empty() {
            return Err(ClientError::InvalidArgument(
                "a group member needs a group id and at least one topic".into(),
            ));
        }
        let shared = Arc::new((
            Mutex::new(Membership::default()),
            Notify::new(),
            Notify::new(),
        ));
        let link = Arc::new(CoordinatorLink::new(
            conn.clone(),
            config.group_id.clone(),
            COORDINATOR_PATIENCE,
        ));
        let task = tokio::spawn(heartbeat_loop(link.clone(), config.clone(), shared.clone()));
        Ok(GroupConsumer {
            consumer: Some(Consumer::with_connection(conn, consumer_config)),
            link,
            config,
            shared,
            task,
            owned: BTreeSet::new(),
            listener,
            last_commit: Instant::now(),
        })
    }

    fn reader(&self) -> &Consumer {
        self.consumer
            .as_ref()
            .expect("the consumer is only taken by close")
    }

    fn reader_mut(&mut self) -> &mut Consumer {
        self.consumer
            .as_mut()
            .expect("the consumer is only taken by close")
    }

    /// The partitions this member holds now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    /// This member's id and epoch (empty and 0 before the first answer).
    pub fn member(&self) -> (String, i32) {
        let s = self.shared.0.lock();
        (s.member_id.clone(), s.epoch)
    }

    async fn positions(
        &self,
        of: &BTreeSet<TopicPartition>,
    ) -> Result<Vec<PartitionOffset>, ClientError> {
        let mut out = Vec::new();
        for tp in of {
            let Offset(offset) = self.reader().position(tp).await?;
            out.push(PartitionOffset {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                offset,
                metadata: String::new(),
            });
        }
        Ok(out)
    }

    async fn commit_partitions(&self, of: &BTreeSet<TopicPartition>) -> Result<(), ClientError> {
        if of.is_empty() {
            return Ok(());
        }
        let offsets = self.positions(of).await?;
        self.send_commit(offsets).await
    }

    /// Commits the positions of every held partition without waiting for the answer: the
    /// positions are taken now, the commit runs in the background and its outcome arrives
    /// through the returned handle (Kafka's `commitAsync`). A later commit overtakes an
    /// earlier one harmlessly: positions only grow.
    pub async fn commit_async(
        &mut self,
    ) -> Result<JoinHandle<Result<(), ClientError>>, ClientError> {
        let owned = self.owned.clone();
        let offsets = self.positions(&owned).await?;
        let (link, group, shared) = (
            self.link.clone(),
            self.config.group_id.clone(),
            self.shared.clone(),
        );
        self.last_commit = Instant::now();
        Ok(tokio::spawn(async move {
            if offsets.is_empty() {
                return Ok(());
            }
            let (member_id, member_epoch) = {
                let s = shared.0.lock();
                (s.member_id.clone(), s.epoch)
            };
            let req = CommitOffsetsRequest {
                group_id: group.clone(),
                member_id,
                member_epoch,
                offsets,
            };
            let res = link
                .call(|conn| commit_rpc(conn, req.clone()), commit_code)
                .await?;
            check_code(&group, None, res.error_code, &res.error_message)
        }))
    }

    /// Commits `offsets` (partition, next offset to consume) for partitions this member holds:
    /// for applications that commit exactly what they processed rather than positions.
    pub async fn commit_offsets(
        &self,
        offsets: &[(TopicPartition, Offset)],
    ) -> Result<(), ClientError> {
        let offsets = offsets
            .iter()
            .map(|(tp, o)| PartitionOffset {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                offset: o.0,
                metadata: String::new(),
            })
            .collect();
        self.send_commit(offsets).await
    }

    async fn send_commit(&self, offsets: Vec<PartitionOffset>) -> Result<(), ClientError> {
        if offsets.is_empty() {
            return Ok(());
        }
        // The heartbeat task may move the member epoch while a commit is on its way; a commit
        // refused for an epoch that has since moved on is sent again with the new one.
        let mut attempts = 0;
        loop {
            let (member_id, member_epoch) = self.member();
            let req = CommitOffsetsRequest {
                group_id: self.config.group_id.clone(),
                member_id,
                member_epoch,
                offsets: offsets.clone(),
            };
            let res = (self.link)
                .call(|conn| commit_rpc(conn, req.clone()), commit_code)
                .await?;
            attempts += 1;
            if res.error_code() == ErrorCode::FencedMemberEpoch
                && attempts < 5
                && self.member().1 != member_epoch
            {
                continue;
            }
            return check_code(
                &self.config.group_id,
                None,
                res.error_code,
                &res.error_message,
            );
        }
    }

    /// Commits the positions of every held partition with member id "" and epoch -1.
    async fn commit_as_outsider(&self) -> Result<(), ClientError> {
        let offsets = self.positions(&self.owned).await?;
        if offsets.is_empty() {
            return Ok(());
        }
        let req = CommitOffsetsRequest {
            group_id: self.config.group_id.clone(),
            member_id: String::new(),
            member_epoch: -1,
            offsets,
        };
        let res = (self.link)
            .call(|conn| commit_rpc(conn, req.clone()), commit_code)
            .await?;
        check_code(
            &self.config.group_id,
            None,
            res.error_code,
            &res.error_message,
        )
    }

    /// Commits the positions of every held partition: everything earlier polls returned.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let owned = self.owned.clone();
        self.commit_partitions(&owned).await?;
        self.last_commit = Instant::now();
        Ok(())
    }

    async fn apply_rebalance(&mut self) -> Result<(), ClientError> {
        let (target, lost) = {
            let mut s = self.shared.0.lock();
            if let Some(e) = s.error.take() {
                return Err(ClientError::Protocol(format!(
                    "group {}: {e}",
                    self.config.group_id
                )));
            }
            (s.target.take(), std::mem::take(&mut s.lost))
        };
        let Some(target) = target else { return Ok(()) };
        let revoked: BTreeSet<TopicPartition> = self.owned.difference(&target).cloned().collect();
        if !revoked.is_empty() {
            let list: Vec<TopicPartition> = revoked.iter().cloned().collect();
            self.listener.on_revoked(&list);
            // A lost member's commits would be fenced anyway: skip them.
            if !lost && self.config.auto_commit.is_some() {
                self.commit_partitions(&revoked).await?;
            }
            self.owned.retain(|tp| !revoked.contains(tp));
            let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
            self.reader_mut().assign(&owned);
        }
        let added: BTreeSet<TopicPartition> = target.difference(&self.owned).cloned().collect();
        if !added.is_empty() {
            let req = FetchOffsetsRequest {
                group_id: self.config.group_id.clone(),
                partitions: to_wire(&added),
            };
            let committed = (self.link)
                .call(
                    |conn| {
                        let req = req.clone();
                        async move { Ok(conn.groups().fetch_offsets(req).await?.into_inner()) }
                    },
                    |res: &FetchOffsetsResponse| (res.error_code, res.error_message.as_str()),
                )
                .await?;
            check_code(
                &self.config.group_id,
                None,
                committed.error_code,
                &committed.error_message,
            )?;
            self.owned.extend(added.iter().cloned());
            let owned: Vec<TopicPartition> = self.owned.iter().cloned().collect();
            self.reader_mut().assign(&owned);
            for o in committed.offsets {
                self.reader_mut().seek(
                    &TopicPartition::new(o.topic.as_str(), o.partition),
                    Offset(o.offset),
                )?;
            }
            let list: Vec<TopicPartition> = added.into_iter().collect();
            self.listener.on_assigned(&list);
        }
        self.shared.0.lock().owned = self.owned.clone();
        // Report releases (and acquisitions) at once rather than at the next interval.
        self.shared.2.notify_one();
        Ok(())
    }

    /// Applies a pending rebalance, auto-commits when due, then returns records as
    /// [`Consumer::poll`] does (empty while nothing is assigned).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = Instant::now() + timeout;
        let shared = self.shared.clone();
        loop {
            let changed = shared.1.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            self.apply_rebalance().await?;
            if let Some(every) = self.config.auto_commit
                && self.last_commit.elapsed() >= every
                && let Err(e) = self.commit().await
            {
                // Membership lost (the coordinator moved or evicted this member) or the
                // coordinator out of reach: the heartbeat task rejoins, and whatever was not
                // committed is delivered again (at least once). Anything else is the
                // application's to see.
                let member_lost = matches!(
                    e.error_code(),
                    Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch)
                );
                if !(member_lost || e.is_retriable()) {
                    return Err(e);
                }
                tracing::warn!(group = %self.config.group_id, cause = %e, "auto-commit failed");
                self.last_commit = Instant::now();
            }
            if !self.owned.is_empty() {
                let left = deadline.saturating_duration_since(Instant::now());
                // Come back for a rebalance at least every 100 ms while waiting.
                let records = self
                    .reader_mut()
                    .poll(left.min(Duration::from_millis(100)))
                    .await?;
                if !records.is_empty() || Instant::now() >= deadline {
                    return Ok(records);
                }
                continue;
            }
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
            }
        }
    }

    /// Commits (with auto-commit on), leaves the group and stops.
    ///
    /// If the group no longer knows this member (its coordinator moved, and the new one has
    /// not seen it rejoin yet), the positions are committed outside the group protocol
    /// instead: they cover only records `poll` returned, so at worst another member that took
    /// a partition over meanwhile sees some of its records again; none is skipped.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let committed = match self.config.auto_commit {
            None => Ok(()),
            Some(_) => match self.commit().await {
                Err(e)
                    if matches!(
                        e.error_code(),
                        Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch)
                    ) =>
                {
                    tracing::info!(group = %self.config.group_id, cause = %e, "membership lost before close: committing outside the group protocol");
                    self.commit_as_outsider().await
                }
                other => other,
            },
        };
        self.shared.0.lock().leaving = true;
        self.shared.2.notify_one();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
        if let Some(consumer) = self.consumer.take() {
            consumer.close().await;
        }
        committed
    }
}
