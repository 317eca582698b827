//! The group coordinator: every consumer group of this broker, their heartbeats, and their
//! committed offsets.
//!
//! Membership lives in memory: after a broker restart members find themselves unknown and
//! rejoin (epoch 0), and resume from their committed offsets, which live in
//! `__consumer_offsets` ([`OffsetStore`]). Commits from a member are fenced by its epoch, so a
//! member that was evicted cannot overwrite the progress of the partition's new owner.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::offset_store::{Committed, MAX_NAME_LEN, OffsetStore, OffsetStoreError};
use super::{
    ConsumerGroup, Eviction, GroupConfig, GroupError, Heartbeat, HeartbeatResponse, TopicPartition,
};
use crate::partition::Registry;

/// Why a commit was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The group refused the member (unknown or stale epoch).
    #[error(transparent)]
    Member(#[from] GroupError),
    /// The group id or a metadata string is unusable.
    #[error("{0}")]
    Invalid(String),
    /// Writing the commit failed.
    #[error(transparent)]
    Store(#[from] OffsetStoreError),
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

/// All groups of this broker.
#[derive(Debug)]
pub struct Coordinator {
    config: GroupConfig,
    groups: Mutex<HashMap<String, ConsumerGroup>>,
    offsets: OffsetStore,
}

fn check_group_id(group: &str) -> Result<(), String> {
    if group.is_empty() || group.len() > MAX_NAME_LEN {
        return Err(format!(
            "group id of {} bytes is invalid: must be 1 to {MAX_NAME_LEN} bytes",
            group.len()
        ));
    }
    Ok(())
}

impl Coordinator {
    /// Opens the offsets store (creating `__consumer_offsets` if needed).
    pub async fn open(
        registry: &Registry,
        config: GroupConfig,
    ) -> Result<Coordinator, OffsetStoreError> {
        Ok(Coordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            offsets: OffsetStore::open(registry).await?,
        })
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
        check_group_id(group).map_err(CommitError::Invalid)?;
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
        check_group_id(group).map_err(CommitError::Invalid)?;
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
        self.offsets.commit(registry, group, &offsets).await?;
        Ok(())
    }

    /// Committed offsets of `group`.
    pub fn committed(
        &self,
        group: &str,
        only: Option<&[TopicPartition]>,
    ) -> Vec<(TopicPartition, Committed)> {
        self.offsets.fetch(group, only)
    }

    /// Every group with members or committed offsets, with its member count.
    pub async fn list(&self) -> Vec<(String, u32)> {
        let groups = self.groups.lock().await;
        let mut out: BTreeMap<String, u32> =
            self.offsets.groups().into_iter().map(|g| (g, 0)).collect();
        for (id, g) in groups.iter() {
            out.insert(id.clone(), g.member_ids().count() as u32);
        }
        out.into_iter().collect()
    }

    /// Members, assignments and committed offsets of `group`, or `None` if it is unknown.
    pub async fn describe(&self, group: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock().await;
        let committed = self.offsets.fetch(group, None);
        let g = groups.get(group);
        if g.is_none() && committed.is_empty() {
            return None;
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
        Some(GroupDescription {
            epoch: g.map_or(0, |g| g.epoch()),
            members,
            committed,
        })
    }
}
