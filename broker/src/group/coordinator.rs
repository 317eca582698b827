//! The group coordinator: the consumer groups this broker coordinates, their heartbeats, and
//! their committed offsets.
//!
//! A group belongs to one partition of `__consumer_offsets` (by a hash of its id), and its
//! coordinator is that partition's leader, as in Kafka. A broker serves a group only while it
//! leads the group's partition, and replays the partition when it starts leading it (in each
//! new leader epoch); elsewhere it answers NOT_COORDINATOR, and clients find the coordinator
//! with FindCoordinator. A broker without a cluster leads every partition.
//!
//! Membership lives in memory: when the coordinator moves (a broker restart or a failover)
//! members find themselves unknown and rejoin (epoch 0), and resume from their committed
//! offsets, which live in `__consumer_offsets` ([`OffsetStore`]). Commits from a member are fenced by its epoch, so a
//! member that was evicted cannot overwrite the progress of the partition's new owner.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use brook_proto::LeaderEpoch;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::offset_store::{
    Committed, MAX_NAME_LEN, OFFSETS_PARTITIONS, OFFSETS_TOPIC, OffsetStore, OffsetStoreError,
    partition_for_group,
};
use super::{
    ConsumerGroup, Eviction, GroupConfig, GroupError, Heartbeat, HeartbeatResponse, TopicPartition,
};
use crate::partition::{Partition, Registry};

/// Why a commit was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The group refused the member (unknown or stale epoch).
    #[error(transparent)]
    Member(#[from] GroupError),
    /// The group id or a metadata string is unusable.
    #[error("{0}")]
    Invalid(String),
    /// This broker does not coordinate the group (it does not lead its offsets partition).
    #[error("{0}")]
    NotCoordinator(String),
    /// Writing the commit (or loading the group's offsets) failed.
    #[error(transparent)]
    Store(#[from] OffsetStoreError),
    /// The commit was not replicated within the produce timeout.
    #[error("the commit was not replicated within {} ms", .0.as_millis())]
    TimedOut(Duration),
}

/// A group as Describe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group epoch (0 for a group that only has committed offsets).
    pub epoch: i32,
    /// Members: id, epoch, topics, assignment.
    pub members: Vec<(String, i32, BTreeSet<String>, BTreeSet<TopicPartition>)>,
    /// Committed offsets.
    pub committed: Vec<(TopicPartition, Committed)>,
}

/// The groups this broker coordinates.
#[derive(Debug)]
pub struct Coordinator {
    config: GroupConfig,
    groups: Mutex<HashMap<String, ConsumerGroup>>,
    offsets: OffsetStore,
    /// How long a commit may wait for its replication.
    commit_timeout: Duration,
    /// The offsets partitions loaded, with the leader epoch they were loaded in: a group is
    /// served while its partition's entry equals the partition's current leader epoch.
    loaded: parking_lot::Mutex<BTreeMap<u32, LeaderEpoch>>,
    /// Held while a partition is replayed.
    loading: Mutex<()>,
}

pub(crate) fn check_group_id(group: &str) -> Result<(), String> {
    if group.is_empty() || group.len() > MAX_NAME_LEN {
        return Err(format!(
            "group id of {} bytes is invalid: must be 1 to {MAX_NAME_LEN} bytes",
            group.len()
        ));
    }
    Ok(())
}

impl Coordinator {
    /// A coordinator. `alone`: a broker without a cluster, which makes `__consumer_offsets`
    /// itself if needed and loads all of it now (a damaged offsets log stops the start).
    /// In a cluster the topic is made through the controller and each partition is loaded
    /// when this broker starts leading it.
    pub async fn open(
        registry: &Registry,
        config: GroupConfig,
        commit_timeout: Duration,
        alone: bool,
    ) -> Result<Coordinator, OffsetStoreError> {
        let coordinator = Coordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            offsets: OffsetStore::default(),
            commit_timeout,
            loaded: parking_lot::Mutex::new(BTreeMap::new()),
            loading: Mutex::new(()),
        };
        if alone {
            OffsetStore::create_alone(registry).await?;
            for p in 0..OFFSETS_PARTITIONS {
                let partition = registry.partition(OFFSETS_TOPIC, p).expect("just made");
                coordinator.offsets.load(&partition).await?;
                coordinator.loaded.lock().insert(p, LeaderEpoch(0));
            }
        }
        Ok(coordinator)
    }

    /// The partition keeping `group` and the leader epoch this broker leads it in, loading
    /// the partition first in a new epoch; NOT_COORDINATOR when this broker does not lead it.
    async fn serve(
        &self,
        registry: &Registry,
        group: &str,
    ) -> Result<(Arc<Partition>, LeaderEpoch), CommitError> {
        check_group_id(group).map_err(CommitError::Invalid)?;
        let p = partition_for_group(group);
        let not_coordinator = |why: &str| {
            CommitError::NotCoordinator(format!(
                "this broker is not the coordinator of group {group:?}: {why}"
            ))
        };
        let partition = (registry.partition(OFFSETS_TOPIC, p))
            .ok_or_else(|| not_coordinator(&format!("it has no {OFFSETS_TOPIC}")))?;
        let epoch = (partition.produce_epoch())
            .map_err(|_| not_coordinator(&format!("it does not lead {OFFSETS_TOPIC}-{p}")))?;
        if self.loaded.lock().get(&p) == Some(&epoch) {
            return Ok((partition, epoch));
        }
        let _loading = self.loading.lock().await;
        if self.loaded.lock().get(&p) != Some(&epoch) {
            // Whatever was known of these groups is from an earlier leadership: start over.
            (self.groups.lock().await).retain(|g, _| partition_for_group(g) != p);
            self.offsets.load(&partition).await?;
            tracing::info!(
                partition = p,
                epoch = epoch.0,
                "loaded the groups of {OFFSETS_TOPIC}-{p}"
            );
            self.loaded.lock().insert(p, epoch);
        }
        Ok((partition, epoch))
    }

    /// Whether this broker serves `group` now (without loading anything).
    fn serves(&self, registry: &Registry, group: &str) -> bool {
        let p = partition_for_group(group);
        let epoch = registry
            .partition(OFFSETS_TOPIC, p)
            .and_then(|partition| partition.produce_epoch().ok());
        epoch.is_some() && self.loaded.lock().get(&p) == epoch.as_ref()
    }

    fn partition_counts(registry: &Registry) -> BTreeMap<String, u32> {
        registry
            .topics()
            .iter()
            .map(|(name, t)| (name.clone(), t.meta.partitions))
            .collect()
    }

    /// One heartbeat of `group`.
    pub async fn heartbeat(
        &self,
        registry: &Registry,
        group: &str,
        hb: Heartbeat,
    ) -> Result<HeartbeatResponse, CommitError> {
        self.serve(registry, group).await?;
        let now = Instant::now();
        let mut groups = self.groups.lock().await;
        let g = groups
            .entry(group.to_string())
            .or_insert_with(|| ConsumerGroup::new(group, self.config));
        g.set_partitions(Self::partition_counts(registry));
        g.expire(now);
        Ok(g.heartbeat(hb, now)?)
    }

    /// Evicts members past their timeouts in every group.
    pub async fn expire(&self) -> Vec<(String, Eviction)> {
        let now = Instant::now();
        let mut out = Vec::new();
        let mut groups = self.groups.lock().await;
        for (id, g) in groups.iter_mut() {
            out.extend(g.expire(now).into_iter().map(|e| (id.clone(), e)));
        }
        groups.retain(|_, g| g.member_ids().next().is_some());
        out
    }

    /// Commits offsets. `member_id` empty (epoch -1) is a consumer outside the group protocol;
    /// otherwise the member must exist, hold every committed partition, and send an epoch no
    /// later than its current one.
    pub async fn commit(
        &self,
        registry: &Registry,
        group: &str,
        member_id: &str,
        member_epoch: i32,
        offsets: Vec<(TopicPartition, Committed)>,
    ) -> Result<(), CommitError> {
        let (partition, epoch) = self.serve(registry, group).await?;
        if let Some((tp, c)) = offsets
            .iter()
            .find(|(_, c)| c.metadata.len() > MAX_NAME_LEN || c.offset < 0)
        {
            return Err(CommitError::Invalid(format!(
                "commit for {tp}: offset {} must be >= 0 and metadata at most {MAX_NAME_LEN} bytes (got {})",
                c.offset,
                c.metadata.len()
            )));
        }
        if !member_id.is_empty() {
            // Fencing by ownership: a member may commit only partitions it holds now, and
            // never with an epoch from the future. An epoch that is merely behind (the member
            // has not yet seen its latest heartbeat answer) is fine: what matters is that no
            // other member owns the partition.
            let groups = self.groups.lock().await;
            let unknown = || GroupError::UnknownMember {
                group: group.to_string(),
                member_id: member_id.to_string(),
            };
            let g = groups.get(group).ok_or_else(unknown)?;
            let current = g.member_epoch(member_id).ok_or_else(unknown)?;
            let fenced = || GroupError::FencedMemberEpoch {
                group: group.to_string(),
                member_id: member_id.to_string(),
                sent: member_epoch,
                current,
            };
            if member_epoch > current || member_epoch < 0 {
                return Err(fenced().into());
            }
            if let Some((tp, _)) = offsets
                .iter()
                .find(|(tp, _)| g.owner(tp) != Some(member_id))
            {
                tracing::info!(group, member_id, partition = %tp, "commit refused: the member does not hold the partition");
                return Err(fenced().into());
            }
        }
        let commit = self.offsets.commit(&partition, epoch, group, &offsets);
        (tokio::time::timeout(self.commit_timeout, commit).await)
            .map_err(|_| CommitError::TimedOut(self.commit_timeout))??;
        Ok(())
    }

    /// Committed offsets of `group`.
    pub async fn committed(
        &self,
        registry: &Registry,
        group: &str,
        only: Option<&[TopicPartition]>,
    ) -> Result<Vec<(TopicPartition, Committed)>, CommitError> {
        self.serve(registry, group).await?;
        Ok(self.offsets.fetch(group, only))
    }

    /// Every group this broker coordinates that has members or committed offsets, with its
    /// member count.
    pub async fn list(&self, registry: &Registry) -> Vec<(String, u32)> {
        let groups = self.groups.lock().await;
        let mut out: BTreeMap<String, u32> =
            self.offsets.groups().into_iter().map(|g| (g, 0)).collect();
        for (id, g) in groups.iter() {
            out.insert(id.clone(), g.member_ids().count() as u32);
        }
        out.retain(|group, _| self.serves(registry, group));
        out.into_iter().collect()
    }

    /// Members, assignments and committed offsets of `group`, or `None` if it is unknown.
    pub async fn describe(
        &self,
        registry: &Registry,
        group: &str,
    ) -> Result<Option<GroupDescription>, CommitError> {
        self.serve(registry, group).await?;
        let groups = self.groups.lock().await;
        let committed = self.offsets.fetch(group, None);
        let g = groups.get(group);
        if g.is_none() && committed.is_empty() {
            return Ok(None);
        }
        let members = g
            .map(|g| {
                g.member_ids()
                    .map(|id| {
                        let (epoch, topics) = g.member_info(id).expect("listed member");
                        (
                            id.clone(),
                            epoch,
                            topics,
                            g.assigned(id).cloned().unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(GroupDescription {
            epoch: g.map_or(0, |g| g.epoch()),
            members,
            committed,
        }))
    }
}
