//! The cluster metadata the controller quorum keeps, and the commands that change it, as a
//! pure state machine.
//!
//! The quorum's Raft log orders the commands; every voter applies them in that order to its
//! own copy, so every copy agrees. A command is checked against the state it meets when it is
//! applied, not when it was proposed: a refused command changes nothing and says why, and it
//! is refused the same way on every voter.
//!
//! Rules (Kafka's KRaft controller, without its eligible-leader-replica extension):
//! - **Brokers** register with their address and are *fenced* while the controller hears no
//!   heartbeat from them. A fenced broker leads nothing and is in no ISR, except as the last
//!   member of an ISR that had no one else: that partition is offline until it returns.
//! - **Leaders** come from the ISR, in the order of the replica list (the first replica is
//!   the *preferred* leader). Every leader change bumps the leader epoch, which fences the
//!   old leader. With no live ISR member the partition has no leader (offline), unless the
//!   topic allows unclean election: then the first live replica leads with an ISR of itself.
//! - **ISR changes** come from the partition's leader (`AlterIsr`) and are accepted only from
//!   the current leader in the current leader epoch, against the current partition epoch,
//!   with live members only; the partition epoch then moves on, so a proposal built on an
//!   older state is refused.
//! - **Reassignment** (Kafka's KIP-455) moves a partition to a target replica list in steps:
//!   the replica list becomes the target followed by the original replicas not in it, and the
//!   partition records which replicas are being added and which removed. The new replicas
//!   fetch like any follower and join the ISR once caught up; the command that puts the last
//!   target replica in the ISR also completes the move: the replica list becomes the target,
//!   the removed replicas leave the ISR, and a leader outside the target hands over to the
//!   first target replica in the ISR. Nothing already acknowledged depends on a replica that
//!   is dropped, since every ISR member holds it. Cancelling goes back to the original list.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::replication::NodeId;
use crate::security::acl::Acl;

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Its client address (`host:port`).
    pub address: String,
    /// True while the controller hears no heartbeat from it.
    pub fenced: bool,
}

/// One partition's replicas, leader and ISR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// The replicas, preferred leader first.
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas.
    pub isr: BTreeSet<NodeId>,
    /// The leader; `None` while the partition is offline.
    pub leader: Option<NodeId>,
    /// Bumped at every leader change; batches are stamped with it.
    pub leader_epoch: i32,
    /// Bumped at every change of the leader, the ISR or the replicas; an ISR proposal names
    /// the one it was built on.
    pub partition_epoch: i32,
    /// While a reassignment runs: the target replicas that were not replicas before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<NodeId>,
    /// While a reassignment runs: the original replicas that are not in the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<NodeId>,
}

impl PartitionState {
    /// True while a reassignment of this partition runs.
    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas a running reassignment moves to (the replica list without the ones it
    /// removes); the replica list when none runs.
    pub fn target(&self) -> Vec<NodeId> {
        (self.replicas.iter().copied())
            .filter(|n| !self.removing.contains(n))
            .collect()
    }

    /// The replicas before the running reassignment (the replica list without the ones it
    /// adds, in the list's order, as in Kafka); the replica list when none runs.
    pub fn original(&self) -> Vec<NodeId> {
        (self.replicas.iter().copied())
            .filter(|n| !self.adding.contains(n))
            .collect()
    }
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    /// Its partitions, by number.
    pub partitions: Vec<PartitionState>,
    /// Whether a replica outside the ISR may lead when no ISR member is alive (loses data).
    pub unclean_leader_election: bool,
    /// Configs set on the topic (Kafka names); every replica applies them over its defaults.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

/// Everything the controller quorum agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    /// Registered brokers by node id.
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicState>,
    /// The access control lists every broker enforces (docs/security.md).
    #[serde(default)]
    pub acls: BTreeSet<Acl>,
}

/// A change to the cluster metadata, as it travels in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker joins, or comes back with a (possibly new) address. It starts fenced until
    /// its first heartbeat reaches the controller.
    RegisterBroker {
        /// Its node id.
        node: NodeId,
        /// Its client address.
        address: String,
    },
    /// The controller lost a broker's heartbeats, or the broker is shutting down: its
    /// leaderships move to other ISR members and it leaves every ISR it is not the last of.
    FenceBroker {
        /// The broker.
        node: NodeId,
    },
    /// A fenced broker's heartbeats came back: it may lead offline partitions it is in the
    /// ISR of, and its leaders may add it back to their ISRs.
    UnfenceBroker {
        /// The broker.
        node: NodeId,
    },
    /// Creates a topic with the given replica lists (one per partition).
    CreateTopic {
        /// Its name.
        name: String,
        /// Replicas of each partition, preferred leader first.
        replicas: Vec<Vec<NodeId>>,
        /// See [`TopicState::unclean_leader_election`].
        unclean_leader_election: bool,
        /// See [`TopicState::configs`].
        #[serde(default)]
        configs: BTreeMap<String, String>,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Its name.
        name: String,
    },
    /// A partition leader's new ISR.
    AlterIsr {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The proposing leader.
        leader: NodeId,
        /// Its leader epoch.
        leader_epoch: i32,
        /// The partition epoch the proposal was built on.
        partition_epoch: i32,
        /// The proposed ISR (must hold the leader).
        isr: BTreeSet<NodeId>,
    },
    /// Moves leadership back to the preferred (first) replica where it is a live ISR member.
    ElectPreferredLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// Starts moving a partition to `target` replicas (replacing a running move), or with
    /// `None` cancels the running move.
    AlterReassignment {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The replicas to move to, preferred leader first; `None`: cancel.
        target: Option<Vec<NodeId>>,
    },
    /// Adds ACLs (one already present is left as it is).
    CreateAcls {
        /// The ACLs, each valid ([`Acl::validate`]).
        acls: Vec<Acl>,
    },
    /// Removes ACLs (one not present is skipped).
    DeleteAcls {
        /// The ACLs, exactly as they were added.
        acls: Vec<Acl>,
    },
}

/// Why a command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refused {
    /// No broker registered with that id.
    #[error("broker {0} is not registered")]
    UnknownBroker(NodeId),
    /// No such topic.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// No such partition.
    #[error("topic {topic:?} has {count} partitions; there is no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many it has.
        count: u32,
    },
    /// A topic of that name exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A replica list is empty, repeats a broker or names an unknown one.
    #[error("partition {partition}: {reason}")]
    BadReplicas {
        /// The partition.
        partition: u32,
        /// What is wrong.
        reason: String,
    },
    /// An ACL that cannot be stored.
    #[error("{0}")]
    BadAcl(String),
    /// A topic needs at least one partition.
    #[error("a topic needs at least one partition")]
    NoPartitions,
    /// A cancel for a partition no reassignment is moving.
    #[error("{topic}-{partition}: no reassignment is in progress")]
    NoReassignment {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// A reassignment that would leave no in-sync replica.
    #[error("{topic}-{partition}: replicas {replicas:?} hold no member of the ISR {isr:?}")]
    NoInSyncReplicaLeft {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The replica list it would leave.
        replicas: Vec<NodeId>,
        /// The ISR now.
        isr: BTreeSet<NodeId>,
    },
    /// An ISR proposal from a broker that is not the leader in that epoch.
    #[error(
        "{topic}-{partition}: broker {node} in leader epoch {epoch} is not the leader (leader {leader:?}, epoch {current})"
    )]
    FencedLeaderEpoch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The proposer.
        node: NodeId,
        /// Its epoch.
        epoch: i32,
        /// The current leader.
        leader: Option<NodeId>,
        /// The current epoch.
        current: i32,
    },
    /// An ISR proposal built on an older partition state.
    #[error("{topic}-{partition}: partition epoch {epoch} is stale (current {current})")]
    StalePartitionEpoch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The proposal's epoch.
        epoch: i32,
        /// The current one.
        current: i32,
    },
    /// An ISR proposal that is not a set of live replicas holding the leader.
    #[error("{topic}-{partition}: ISR {isr:?} {reason}")]
    BadIsr {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The proposal.
        isr: BTreeSet<NodeId>,
        /// What is wrong.
        reason: String,
    },
}

/// Where leadership moved while applying a command, for the brokers to act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderChange {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The new leader (`None`: offline).
    pub leader: Option<NodeId>,
    /// The new leader epoch.
    pub leader_epoch: i32,
}

impl ClusterMetadata {
    /// Applies `command`: the leader changes it caused, or why it changed nothing.
    pub fn apply(&mut self, command: &Command) -> Result<Vec<LeaderChange>, Refused> {
        match command {
            Command::RegisterBroker { node, address } => {
                let fenced = self.brokers.get(node).is_none_or(|b| b.fenced);
                self.brokers.insert(
                    *node,
                    BrokerInfo {
                        address: address.clone(),
                        fenced,
                    },
                );
                Ok(Vec::new())
            }
            Command::FenceBroker { node } => self.fence(*node),
            Command::UnfenceBroker { node } => self.unfence(*node),
            Command::CreateTopic {
                name,
                replicas,
                unclean_leader_election,
                configs,
            } => self.create_topic(name, replicas, *unclean_leader_election, configs),
            Command::DeleteTopic { name } => {
                self.topics
                    .remove(name)
                    .ok_or_else(|| Refused::UnknownTopic(name.clone()))?;
                Ok(Vec::new())
            }
            Command::AlterIsr {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => self.alter_isr(
                topic,
                *partition,
                *leader,
                *leader_epoch,
                *partition_epoch,
                isr,
            ),
            Command::ElectPreferredLeader { topic, partition } => {
                self.elect_preferred(topic, *partition)
            }
            Command::AlterReassignment {
                topic,
                partition,
                target,
            } => self.alter_reassignment(topic, *partition, target.as_deref()),
            Command::CreateAcls { acls } => {
                for acl in acls {
                    acl.validate().map_err(|e| Refused::BadAcl(e.to_string()))?;
                }
                self.acls.extend(acls.iter().cloned());
                Ok(Vec::new())
            }
            Command::DeleteAcls { acls } => {
                for acl in acls {
                    self.acls.remove(acl);
                }
                Ok(Vec::new())
            }
        }
    }

    /// True if `node` is registered and not fenced.
    pub fn is_live(&self, node: NodeId) -> bool {
        self.brokers.get(&node).is_some_and(|b| !b.fenced)
    }

    /// Registered, unfenced brokers, by id.
    pub fn live_brokers(&self) -> Vec<NodeId> {
        (self.brokers.iter())
            .filter(|(_, b)| !b.fenced)
            .map(|(&id, _)| id)
            .collect()
    }

    /// A partition's state.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<&PartitionState, Refused> {
        let t = (self.topics.get(topic)).ok_or_else(|| Refused::UnknownTopic(topic.into()))?;
        t.partitions
            .get(partition as usize)
            .ok_or_else(|| Refused::UnknownPartition {
                topic: topic.into(),
                partition,
                count: t.partitions.len() as u32,
            })
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<&mut PartitionState, Refused> {
        let t = (self.topics.get_mut(topic)).ok_or_else(|| Refused::UnknownTopic(topic.into()))?;
        let count = t.partitions.len() as u32;
        t.partitions
            .get_mut(partition as usize)
            .ok_or_else(|| Refused::UnknownPartition {
                topic: topic.into(),
                partition,
                count,
            })
    }

    fn fence(&mut self, node: NodeId) -> Result<Vec<LeaderChange>, Refused> {
        let broker = (self.brokers.get_mut(&node)).ok_or(Refused::UnknownBroker(node))?;
        broker.fenced = true;
        let live: BTreeSet<NodeId> = self.live_brokers().into_iter().collect();
        let mut changes = Vec::new();
        for (name, topic) in &mut self.topics {
            for (i, p) in topic.partitions.iter_mut().enumerate() {
                if !p.replicas.contains(&node) {
                    continue;
                }
                let left_isr = p.isr.len() > 1 && p.isr.remove(&node);
                if p.leader == Some(node) {
                    // A new leader bumps the partition epoch too.
                    let next = choose_leader(p, &live, topic.unclean_leader_election);
                    set_leader(p, next);
                    changes.push(change(name, i, p));
                } else if left_isr {
                    p.partition_epoch += 1;
                }
            }
        }
        Ok(changes)
    }

    fn unfence(&mut self, node: NodeId) -> Result<Vec<LeaderChange>, Refused> {
        let broker = (self.brokers.get_mut(&node)).ok_or(Refused::UnknownBroker(node))?;
        broker.fenced = false;
        let live: BTreeSet<NodeId> = self.live_brokers().into_iter().collect();
        let mut changes = Vec::new();
        for (name, topic) in &mut self.topics {
            for (i, p) in topic.partitions.iter_mut().enumerate() {
                if p.leader.is_none() && p.replicas.contains(&node) {
                    let next = choose_leader(p, &live, topic.unclean_leader_election);
                    if next.is_some() {
                        set_leader(p, next);
                        changes.push(change(name, i, p));
                    }
                }
            }
        }
        Ok(changes)
    }

    fn create_topic(
        &mut self,
        name: &str,
        replicas: &[Vec<NodeId>],
        unclean_leader_election: bool,
        configs: &BTreeMap<String, String>,
    ) -> Result<Vec<LeaderChange>, Refused> {
        if self.topics.contains_key(name) {
            return Err(Refused::TopicExists(name.into()));
        }
        if replicas.is_empty() {
            return Err(Refused::NoPartitions);
        }
        let mut partitions = Vec::with_capacity(replicas.len());
        let mut changes = Vec::new();
        for (i, list) in replicas.iter().enumerate() {
            let distinct = self.check_replicas(i as u32, list)?;
            let isr: BTreeSet<NodeId> = list.iter().copied().filter(|&n| self.is_live(n)).collect();
            let leader = list.iter().copied().find(|n| isr.contains(n));
            // With no live replica, the ISR keeps them all: whichever returns first leads.
            let isr = if isr.is_empty() { distinct } else { isr };
            let p = PartitionState {
                replicas: list.clone(),
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
                adding: Vec::new(),
                removing: Vec::new(),
            };
            changes.push(change(name, i, &p));
            partitions.push(p);
        }
        self.topics.insert(
            name.into(),
            TopicState {
                partitions,
                unclean_leader_election,
                configs: configs.clone(),
            },
        );
        Ok(changes)
    }

    fn alter_isr(
        &mut self,
        topic: &str,
        partition: u32,
        node: NodeId,
        epoch: i32,
        partition_epoch: i32,
        isr: &BTreeSet<NodeId>,
    ) -> Result<Vec<LeaderChange>, Refused> {
        let live: BTreeSet<NodeId> = self.live_brokers().into_iter().collect();
        let p = self.partition_mut(topic, partition)?;
        if p.leader != Some(node) || p.leader_epoch != epoch {
            return Err(Refused::FencedLeaderEpoch {
                topic: topic.into(),
                partition,
                node,
                epoch,
                leader: p.leader,
                current: p.leader_epoch,
            });
        }
        if p.partition_epoch != partition_epoch {
            return Err(Refused::StalePartitionEpoch {
                topic: topic.into(),
                partition,
                epoch: partition_epoch,
                current: p.partition_epoch,
            });
        }
        let bad = |reason: String| Refused::BadIsr {
            topic: topic.into(),
            partition,
            isr: isr.clone(),
            reason,
        };
        if !isr.contains(&node) {
            return Err(bad(format!("leaves out the leader {node}")));
        }
        if let Some(n) = isr.iter().find(|n| !p.replicas.contains(n)) {
            return Err(bad(format!("holds {n}, which is not a replica")));
        }
        if let Some(n) = isr.iter().find(|n| !p.isr.contains(n) && !live.contains(n)) {
            return Err(bad(format!("adds broker {n}, which is fenced")));
        }
        p.isr = isr.clone();
        p.partition_epoch += 1;
        Ok(complete_reassignment(p, &live)
            .then(|| change(topic, partition as usize, p))
            .into_iter()
            .collect())
    }

    /// A replica list for `partition` is non-empty, names each broker once and only
    /// registered ones: its members.
    fn check_replicas(&self, partition: u32, list: &[NodeId]) -> Result<BTreeSet<NodeId>, Refused> {
        let bad = |reason: String| Refused::BadReplicas { partition, reason };
        if list.is_empty() {
            return Err(bad("no replicas".into()));
        }
        let distinct: BTreeSet<NodeId> = list.iter().copied().collect();
        if distinct.len() != list.len() {
            return Err(bad(format!("replicas {list:?} repeat a broker")));
        }
        if let Some(unknown) = list.iter().find(|n| !self.brokers.contains_key(n)) {
            return Err(bad(format!("broker {unknown} is not registered")));
        }
        Ok(distinct)
    }

    fn alter_reassignment(
        &mut self,
        topic: &str,
        partition: u32,
        target: Option<&[NodeId]>,
    ) -> Result<Vec<LeaderChange>, Refused> {
        if let Some(target) = target {
            self.check_replicas(partition, target)?;
        }
        let live: BTreeSet<NodeId> = self.live_brokers().into_iter().collect();
        let unclean = self
            .topics
            .get(topic)
            .is_some_and(|t| t.unclean_leader_election);
        let p = self.partition_mut(topic, partition)?;
        let original = p.original();
        let (replicas, adding, removing) = match target {
            None if !p.is_reassigning() => {
                return Err(Refused::NoReassignment {
                    topic: topic.into(),
                    partition,
                });
            }
            // Back to where the move started, at once: the original replicas lost nothing.
            None => (original, Vec::new(), Vec::new()),
            Some(target) if target == p.replicas && !p.is_reassigning() => return Ok(Vec::new()),
            Some(target) => {
                let mut replicas = target.to_vec();
                replicas.extend(original.iter().filter(|n| !target.contains(n)));
                let adding = (target.iter().copied())
                    .filter(|n| !original.contains(n))
                    .collect();
                let removing = (original.iter().copied())
                    .filter(|n| !target.contains(n))
                    .collect();
                (replicas, adding, removing)
            }
        };
        let isr: BTreeSet<NodeId> = (p.isr.iter().copied())
            .filter(|n| replicas.contains(n))
            .collect();
        if isr.is_empty() {
            return Err(Refused::NoInSyncReplicaLeft {
                topic: topic.into(),
                partition,
                replicas,
                isr: p.isr.clone(),
            });
        }
        p.replicas = replicas;
        p.adding = adding;
        p.removing = removing;
        p.isr = isr;
        p.partition_epoch += 1;
        let mut moved = complete_reassignment(p, &live);
        if p.leader.is_some_and(|n| !p.replicas.contains(&n)) {
            // The leader was being added, and the new target (or the cancel) drops it.
            let next = choose_leader(p, &live, unclean);
            set_leader(p, next);
            moved = true;
        }
        Ok(moved
            .then(|| change(topic, partition as usize, p))
            .into_iter()
            .collect())
    }

    fn elect_preferred(
        &mut self,
        topic: &str,
        partition: u32,
    ) -> Result<Vec<LeaderChange>, Refused> {
        let live: BTreeSet<NodeId> = self.live_brokers().into_iter().collect();
        let p = self.partition_mut(topic, partition)?;
        let preferred = p.replicas[0];
        if p.leader == Some(preferred) || !p.isr.contains(&preferred) || !live.contains(&preferred)
        {
            return Ok(Vec::new());
        }
        set_leader(p, Some(preferred));
        Ok(vec![change(topic, partition as usize, p)])
    }
}

/// Finishes the running reassignment of `p` once every target replica is in the ISR: the
/// replica list becomes the target, the removed replicas leave the ISR, and a leader outside
/// the target hands over to the first target replica that is a live ISR member. True when
/// the leader changed.
fn complete_reassignment(p: &mut PartitionState, live: &BTreeSet<NodeId>) -> bool {
    if !p.is_reassigning() {
        return false;
    }
    let target = p.target();
    if !target.iter().all(|n| p.isr.contains(n)) {
        return false;
    }
    p.isr.retain(|n| target.contains(n));
    p.replicas = target;
    p.adding.clear();
    p.removing.clear();
    p.partition_epoch += 1;
    if p.leader.is_some_and(|n| p.replicas.contains(&n)) {
        return false;
    }
    let next = choose_leader(p, live, false);
    if next == p.leader {
        return false;
    }
    set_leader(p, next);
    true
}

/// The next leader of `p`: the first replica that is a live ISR member; failing that, with
/// unclean election, the first live replica; else none.
fn choose_leader(p: &PartitionState, live: &BTreeSet<NodeId>, unclean: bool) -> Option<NodeId> {
    let clean = (p.replicas.iter().copied()).find(|n| p.isr.contains(n) && live.contains(n));
    clean.or_else(|| {
        unclean
            .then(|| p.replicas.iter().copied().find(|n| live.contains(n)))
            .flatten()
    })
}

/// Makes `leader` the leader of `p` in a new epoch. An unclean leader (outside the ISR) gets
/// an ISR of itself.
fn set_leader(p: &mut PartitionState, leader: Option<NodeId>) {
    if let Some(n) = leader
        && !p.isr.contains(&n)
    {
        p.isr = BTreeSet::from([n]);
    }
    p.leader = leader;
    p.leader_epoch += 1;
    p.partition_epoch += 1;
}

fn change(topic: &str, partition: usize, p: &PartitionState) -> LeaderChange {
    LeaderChange {
        topic: topic.into(),
        partition: partition as u32,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
    }
}

/// Replica lists for a new topic: `partitions` lists of `replication_factor` distinct brokers
/// from `brokers` (sorted ids), spread round-robin from `start` so leaders and replicas
/// balance across brokers. Errors when there are fewer brokers than replicas.
pub fn assign_replicas(
    brokers: &[NodeId],
    partitions: u32,
    replication_factor: u32,
    start: usize,
) -> Result<Vec<Vec<NodeId>>, String> {
    let rf = replication_factor as usize;
    if rf == 0 {
        return Err("replication factor 0 is out of range: must be at least 1".into());
    }
    if rf > brokers.len() {
        return Err(format!(
            "replication factor {rf} is larger than the {} live brokers",
            brokers.len()
        ));
    }
    let n = brokers.len();
    Ok((0..partitions as usize)
        .map(|p| {
            // Followers start a per-round shift after the leader, as in Kafka, so the
            // followers of one broker's partitions do not all land on the same brokers.
            let first = (start + p) % n;
            let shift = (p / n) % (n - 1).max(1);
            let follower = |j: usize| (first + 1 + (shift + j - 1) % (n - 1)) % n;
            (0..rf)
                .map(|j| brokers[if j == 0 { first } else { follower(j) }])
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isr(nodes: &[NodeId]) -> BTreeSet<NodeId> {
        nodes.iter().copied().collect()
    }

    /// Three live brokers and topic `t` with one partition on replicas 1, 2, 3.
    fn cluster(unclean: bool) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        add_brokers(&mut md, &[1, 2, 3]);
        let changes = md
            .apply(&Command::CreateTopic {
                name: "t".into(),
                replicas: vec![vec![1, 2, 3]],
                unclean_leader_election: unclean,
                configs: BTreeMap::new(),
            })
            .unwrap();
        assert_eq!(
            changes,
            vec![LeaderChange {
                topic: "t".into(),
                partition: 0,
                leader: Some(1),
                leader_epoch: 0
            }]
        );
        md
    }

    fn p0(md: &ClusterMetadata) -> PartitionState {
        md.partition("t", 0).unwrap().clone()
    }

    /// `leader` proposes ISR `members` for t-0 in the current epochs.
    fn propose(md: &mut ClusterMetadata, leader: NodeId, members: &[NodeId]) -> Result<(), String> {
        let p = p0(md);
        md.apply(&Command::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: isr(members),
        })
        .map(|changes| assert!(changes.is_empty()))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_new_topic_is_led_by_its_first_live_replica_with_every_live_replica_in_sync() {
        let md = cluster(false);
        assert_eq!(
            p0(&md),
            PartitionState {
                replicas: vec![1, 2, 3],
                isr: isr(&[1, 2, 3]),
                leader: Some(1),
                leader_epoch: 0,
                partition_epoch: 0,
                adding: vec![],
                removing: vec![],
            }
        );
    }

    /// Registers and unfences brokers `nodes`.
    fn add_brokers(md: &mut ClusterMetadata, nodes: &[NodeId]) {
        for &n in nodes {
            let address = format!("127.0.0.{n}:7400");
            md.apply(&Command::RegisterBroker { node: n, address })
                .unwrap();
            md.apply(&Command::UnfenceBroker { node: n }).unwrap();
        }
    }

    fn reassign(
        md: &mut ClusterMetadata,
        target: Option<&[NodeId]>,
    ) -> Result<Vec<LeaderChange>, Refused> {
        md.apply(&Command::AlterReassignment {
            topic: "t".into(),
            partition: 0,
            target: target.map(<[NodeId]>::to_vec),
        })
    }

    #[test]
    fn a_reassignment_adds_the_new_replicas_and_drops_the_old_once_the_new_are_in_sync() {
        let mut md = cluster(false);
        add_brokers(&mut md, &[4]);
        assert_eq!(reassign(&mut md, Some(&[2, 3, 4])), Ok(vec![]));
        let p = p0(&md);
        assert_eq!(
            (&p.replicas, &p.adding, &p.removing, &p.isr, p.leader),
            (
                &vec![2, 3, 4, 1],
                &vec![4],
                &vec![1],
                &isr(&[1, 2, 3]),
                Some(1)
            )
        );
        assert_eq!((p.leader_epoch, p.partition_epoch), (0, 1));
        // The original replicas keep their place in the list (Kafka's order too).
        assert_eq!((p.target(), p.original()), (vec![2, 3, 4], vec![2, 3, 1]));
        // Broker 1 leads until 4 has caught up.
        let p = p0(&md);
        let changes = md
            .apply(&Command::AlterIsr {
                topic: "t".into(),
                partition: 0,
                leader: 1,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: isr(&[1, 2, 3, 4]),
            })
            .unwrap();
        // 4 in sync completes the move: 1 leaves, and its leadership goes to 2.
        assert_eq!(
            changes,
            vec![LeaderChange {
                topic: "t".into(),
                partition: 0,
                leader: Some(2),
                leader_epoch: 1
            }]
        );
        assert_eq!(
            p0(&md),
            PartitionState {
                replicas: vec![2, 3, 4],
                isr: isr(&[2, 3, 4]),
                leader: Some(2),
                leader_epoch: 1,
                partition_epoch: 4,
                adding: vec![],
                removing: vec![],
            }
        );
        // The old leader's proposals are fenced from now on.
        assert!(matches!(
            propose(&mut md, 1, &[1, 2]),
            Err(e) if e.contains("is not the leader")
        ));
    }

    #[test]
    fn a_reassignment_keeping_the_leader_leaves_its_epoch_alone() {
        let mut md = cluster(false);
        add_brokers(&mut md, &[4]);
        reassign(&mut md, Some(&[1, 4])).unwrap();
        assert_eq!(p0(&md).replicas, vec![1, 4, 2, 3]);
        propose(&mut md, 1, &[1, 2, 3, 4]).unwrap();
        let p = p0(&md);
        assert_eq!(
            (p.replicas, p.isr, p.leader, p.leader_epoch),
            (vec![1, 4], isr(&[1, 4]), Some(1), 0)
        );
        assert!(!p0(&md).is_reassigning());
    }

    #[test]
    fn a_reassignment_to_replicas_already_in_sync_completes_at_once() {
        let mut md = cluster(false);
        // The same replicas in another order: the preferred leader changes, nothing moves.
        assert_eq!(reassign(&mut md, Some(&[3, 2, 1])), Ok(vec![]));
        let p = p0(&md);
        assert_eq!(
            (&p.replicas, p.leader, p.is_reassigning()),
            (&vec![3, 2, 1], Some(1), false)
        );
        // Shrinking to in-sync replicas drops the others at once; the leader moves if dropped.
        let changes = reassign(&mut md, Some(&[2, 3])).unwrap();
        assert_eq!((changes[0].leader, changes[0].leader_epoch), (Some(2), 1));
        let p = p0(&md);
        assert_eq!((p.replicas, p.isr), (vec![2, 3], isr(&[2, 3])));
        // The same list again is no change at all.
        let epoch = p0(&md).partition_epoch;
        assert_eq!(reassign(&mut md, Some(&[2, 3])), Ok(vec![]));
        assert_eq!(p0(&md).partition_epoch, epoch);
    }

    #[test]
    fn a_new_target_replaces_a_running_reassignment_and_a_cancel_restores_the_original() {
        let mut md = cluster(false);
        add_brokers(&mut md, &[4, 5]);
        reassign(&mut md, Some(&[2, 3, 4])).unwrap();
        propose(&mut md, 1, &[1, 2, 4]).unwrap();
        // 4 was in sync but 3 fell out; the new target drops 4 (from the ISR too).
        reassign(&mut md, Some(&[2, 3, 5])).unwrap();
        let p = p0(&md);
        assert_eq!(
            (&p.replicas, &p.adding, &p.removing, &p.isr),
            (&vec![2, 3, 5, 1], &vec![5], &vec![1], &isr(&[1, 2]))
        );
        assert_eq!(reassign(&mut md, None), Ok(vec![]));
        let p = p0(&md);
        assert_eq!(
            (&p.replicas, p.is_reassigning(), &p.isr, p.leader),
            (&vec![2, 3, 1], false, &isr(&[1, 2]), Some(1))
        );
        assert_eq!(
            reassign(&mut md, None).unwrap_err().to_string(),
            "t-0: no reassignment is in progress"
        );
    }

    #[test]
    fn a_cancel_that_would_leave_no_in_sync_replica_is_refused_and_changes_nothing() {
        let mut md = cluster(false);
        add_brokers(&mut md, &[4]);
        reassign(&mut md, Some(&[3, 4])).unwrap();
        propose(&mut md, 1, &[1, 4]).unwrap();
        md.apply(&Command::FenceBroker { node: 1 }).unwrap();
        // 4, being added, is the only live in-sync replica and leads.
        assert_eq!((p0(&md).leader, p0(&md).isr), (Some(4), isr(&[4])));
        let before = p0(&md);
        assert_eq!(
            reassign(&mut md, None).unwrap_err().to_string(),
            "t-0: replicas [3, 1, 2] hold no member of the ISR {4}"
        );
        assert_eq!(p0(&md), before);
    }

    #[test]
    fn bad_reassignments_are_refused_naming_the_problem() {
        let mut md = cluster(false);
        let cases: [(&[NodeId], &str); 3] = [
            (&[], "partition 0: no replicas"),
            (&[1, 1], "partition 0: replicas [1, 1] repeat a broker"),
            (&[1, 9], "partition 0: broker 9 is not registered"),
        ];
        for (target, want) in cases {
            assert_eq!(
                reassign(&mut md, Some(target)).unwrap_err().to_string(),
                want
            );
        }
        let refused = md.apply(&Command::AlterReassignment {
            topic: "t".into(),
            partition: 4,
            target: Some(vec![1]),
        });
        assert_eq!(
            refused.unwrap_err().to_string(),
            "topic \"t\" has 1 partitions; there is no partition 4"
        );
        assert_eq!(p0(&md).partition_epoch, 0);
    }

    #[test]
    fn fencing_the_leader_elects_the_next_isr_replica_in_a_new_epoch() {
        let mut md = cluster(false);
        let changes = md.apply(&Command::FenceBroker { node: 1 }).unwrap();
        assert_eq!(
            changes,
            vec![LeaderChange {
                topic: "t".into(),
                partition: 0,
                leader: Some(2),
                leader_epoch: 1
            }]
        );
        let p = p0(&md);
        assert_eq!(
            (p.leader, p.isr, p.leader_epoch),
            (Some(2), isr(&[2, 3]), 1)
        );
    }

    #[test]
    fn the_last_isr_member_stays_in_the_isr_and_the_partition_waits_for_it() {
        let mut md = cluster(false);
        propose(&mut md, 1, &[1]).unwrap();
        // 2 and 3 are out of sync: losing 1 leaves the partition offline, not led by them.
        let changes = md.apply(&Command::FenceBroker { node: 1 }).unwrap();
        assert_eq!(changes[0].leader, None);
        assert_eq!((p0(&md).leader, p0(&md).isr), (None, isr(&[1])));
        // 2 coming back changes nothing; 1 coming back leads again in a newer epoch.
        md.apply(&Command::FenceBroker { node: 2 }).unwrap();
        assert!(
            md.apply(&Command::UnfenceBroker { node: 2 })
                .unwrap()
                .is_empty()
        );
        let changes = md.apply(&Command::UnfenceBroker { node: 1 }).unwrap();
        assert_eq!(
            (changes[0].leader, changes[0].leader_epoch),
            (Some(1), p0(&md).leader_epoch)
        );
        assert_eq!(p0(&md).leader_epoch, 2);
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr_when_the_topic_allows_it() {
        let mut md = cluster(true);
        propose(&mut md, 1, &[1]).unwrap();
        md.apply(&Command::FenceBroker { node: 1 }).unwrap();
        assert_eq!((p0(&md).leader, p0(&md).isr), (Some(2), isr(&[2])));
    }

    #[test]
    fn isr_proposals_are_fenced_by_leader_epoch_and_partition_epoch() {
        let mut md = cluster(false);
        let p = p0(&md);
        let alter = |leader, leader_epoch, partition_epoch, members: &[NodeId]| Command::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader,
            leader_epoch,
            partition_epoch,
            isr: isr(members),
        };
        let refused = md.apply(&alter(2, p.leader_epoch, p.partition_epoch, &[2, 3]));
        assert_eq!(
            refused.unwrap_err().to_string(),
            "t-0: broker 2 in leader epoch 0 is not the leader (leader Some(1), epoch 0)"
        );
        md.apply(&alter(1, 0, 0, &[1, 2])).unwrap();
        assert_eq!(p0(&md).partition_epoch, 1);
        // Built on partition epoch 0, which is gone.
        let refused = md.apply(&alter(1, 0, 0, &[1, 2, 3]));
        assert_eq!(
            refused.unwrap_err().to_string(),
            "t-0: partition epoch 0 is stale (current 1)"
        );
        // A deposed leader's proposal after a failover.
        md.apply(&Command::FenceBroker { node: 1 }).unwrap();
        let refused = md.apply(&alter(1, 0, 2, &[1, 2]));
        assert!(matches!(
            refused,
            Err(Refused::FencedLeaderEpoch {
                epoch: 0,
                current: 1,
                ..
            })
        ));
        assert_eq!(p0(&md).isr, isr(&[2]));
    }

    #[test]
    fn an_isr_must_hold_the_leader_and_only_live_replicas() {
        let mut md = cluster(false);
        md.apply(&Command::RegisterBroker {
            node: 4,
            address: "127.0.0.4:7400".into(),
        })
        .unwrap();
        assert_eq!(
            propose(&mut md, 1, &[2, 3]),
            Err("t-0: ISR {2, 3} leaves out the leader 1".into())
        );
        assert_eq!(
            propose(&mut md, 1, &[1, 4]),
            Err("t-0: ISR {1, 4} holds 4, which is not a replica".into())
        );
        propose(&mut md, 1, &[1]).unwrap();
        md.apply(&Command::FenceBroker { node: 3 }).unwrap();
        assert_eq!(
            propose(&mut md, 1, &[1, 3]),
            Err("t-0: ISR {1, 3} adds broker 3, which is fenced".into())
        );
        propose(&mut md, 1, &[1, 2]).unwrap();
        assert_eq!(p0(&md).isr, isr(&[1, 2]));
    }

    #[test]
    fn preferred_leader_election_moves_leadership_back_once_the_preferred_is_in_sync() {
        let mut md = cluster(false);
        md.apply(&Command::FenceBroker { node: 1 }).unwrap();
        md.apply(&Command::UnfenceBroker { node: 1 }).unwrap();
        let elect = Command::ElectPreferredLeader {
            topic: "t".into(),
            partition: 0,
        };
        // 1 is back but not yet in the ISR: nothing moves.
        assert!(md.apply(&elect).unwrap().is_empty());
        propose(&mut md, 2, &[1, 2, 3]).unwrap();
        let changes = md.apply(&elect).unwrap();
        assert_eq!((changes[0].leader, changes[0].leader_epoch), (Some(1), 2));
    }

    #[test]
    fn bad_topics_are_refused_naming_the_problem() {
        let mut md = cluster(false);
        let create = |name: &str, replicas: Vec<Vec<NodeId>>| Command::CreateTopic {
            name: name.into(),
            replicas,
            unclean_leader_election: false,
            configs: BTreeMap::new(),
        };
        let cases = [
            (create("t", vec![vec![1]]), "topic \"t\" already exists"),
            (create("u", vec![]), "a topic needs at least one partition"),
            (
                create("u", vec![vec![1], vec![]]),
                "partition 1: no replicas",
            ),
            (
                create("u", vec![vec![1, 2, 1]]),
                "partition 0: replicas [1, 2, 1] repeat a broker",
            ),
            (
                create("u", vec![vec![1, 9]]),
                "partition 0: broker 9 is not registered",
            ),
        ];
        for (command, want) in cases {
            assert_eq!(md.apply(&command).unwrap_err().to_string(), want);
        }
        assert!(!md.topics.contains_key("u"));
        assert_eq!(
            md.apply(&Command::FenceBroker { node: 7 }).unwrap_err(),
            Refused::UnknownBroker(7)
        );
        assert_eq!(
            md.partition("t", 3).unwrap_err().to_string(),
            "topic \"t\" has 1 partitions; there is no partition 3"
        );
    }

    #[test]
    fn replicas_spread_over_brokers_and_too_few_brokers_is_an_error() {
        let lists = assign_replicas(&[1, 2, 3], 6, 3, 0).unwrap();
        for list in &lists {
            let distinct: BTreeSet<_> = list.iter().collect();
            assert_eq!(distinct.len(), 3, "{lists:?}");
        }
        // Every broker is the preferred leader of two of the six partitions.
        let mut leaders = BTreeMap::new();
        for list in &lists {
            *leaders.entry(list[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        assert_eq!(
            assign_replicas(&[1, 2], 1, 3, 0).unwrap_err(),
            "replication factor 3 is larger than the 2 live brokers"
        );
        assert_eq!(
            assign_replicas(&[1], 1, 0, 0).unwrap_err(),
            "replication factor 0 is out of range: must be at least 1"
        );
        assert_eq!(
            assign_replicas(&[5], 2, 1, 0).unwrap(),
            vec![vec![5], vec![5]]
        );
    }

    #[test]
    fn metadata_survives_a_round_trip_through_its_snapshot_encoding() {
        let mut md = cluster(false);
        md.apply(&Command::FenceBroker { node: 2 }).unwrap();
        add_brokers(&mut md, &[4]);
        reassign(&mut md, Some(&[4])).unwrap();
        let json = serde_json::to_vec(&md).unwrap();
        let back: ClusterMetadata = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, md);
    }

    #[test]
    fn acls_are_added_and_removed_whole_and_survive_a_snapshot() {
        use crate::security::acl::{Operation, Pattern, Permission, ResourceType};
        let acl = |principal: &str, op| Acl {
            principal: principal.into(),
            resource_type: ResourceType::Topic,
            pattern: Pattern::Prefixed("orders".into()),
            operation: op,
            permission: Permission::Allow,
        };
        let mut md = ClusterMetadata::default();
        let (read, write) = (
            acl("User:a", Operation::Read),
            acl("User:a", Operation::Write),
        );
        md.apply(&Command::CreateAcls {
            acls: vec![read.clone(), write.clone(), read.clone()],
        })
        .unwrap();
        assert_eq!(md.acls, [read.clone(), write.clone()].into());
        // One invalid ACL refuses the whole command.
        let err = md
            .apply(&Command::CreateAcls {
                acls: vec![acl("User:b", Operation::Read), acl("bob", Operation::Read)],
            })
            .unwrap_err();
        assert_eq!(
            err,
            Refused::BadAcl("principal \"bob\" is not User:<name> (User:* for everyone)".into())
        );
        assert_eq!(md.acls.len(), 2);
        md.apply(&Command::DeleteAcls {
            acls: vec![write, acl("User:nobody", Operation::Read)],
        })
        .unwrap();
        assert_eq!(md.acls, [read].into());
        let back: ClusterMetadata =
            serde_json::from_slice(&serde_json::to_vec(&md).unwrap()).unwrap();
        assert_eq!(back, md);
        // Metadata written before ACLs existed reads with none.
        let old: ClusterMetadata = serde_json::from_str(r#"{"brokers":{},"topics":{}}"#).unwrap();
        assert!(old.acls.is_empty());
    }
}
