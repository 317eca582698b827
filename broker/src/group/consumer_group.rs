//! One consumer group's membership and assignment, as a pure state machine in the style of
//! Kafka's KIP-848: members heartbeat; the coordinator computes a target assignment whenever
//! the group epoch moves, and reconciles each member towards it one heartbeat at a time.
//!
//! The safety rule: a partition is handed to a member only when no other member holds it, so
//! two members never own the same partition (and never both process its uncommitted records).
//! A member that must give partitions up is told its shrunk assignment and keeps the rest
//! until it reports them released (after committing), or until it is evicted.
//!
//! Invariants:
//! - for every partition, at most one member has it in `assigned ∪ revoking`;
//! - a member's epoch equals the group's assignment epoch exactly when it holds its target.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::TopicPartition;
use super::assignor::{Assignor, MemberSubscription};

/// Timeouts and the assignor of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// A member that does not heartbeat for this long is removed (Kafka 45 s).
    pub session_timeout: Duration,
    /// A member asked to release partitions that has not within this long is removed.
    pub rebalance_timeout: Duration,
    /// How often members should heartbeat (Kafka 5 s).
    pub heartbeat_interval: Duration,
    /// The assignor.
    pub assignor: Assignor,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(5),
            assignor: Assignor::Uniform,
        }
    }
}

/// A heartbeat. `member_epoch` 0 joins (or rejoins, dropping what the member held), -1 leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The member's id; `None` on a first join (the coordinator makes one).
    pub member_id: Option<String>,
    /// The epoch the member last received (0 to join, -1 to leave).
    pub member_epoch: i32,
    /// Topics the member subscribes to; `None` keeps the previous subscription.
    pub topics: Option<BTreeSet<String>>,
    /// Partitions the member holds now; `None` when unchanged since the last heartbeat.
    pub owned: Option<BTreeSet<TopicPartition>>,
}

/// The coordinator's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The member's id.
    pub member_id: String,
    /// Its epoch (-1 after a leave).
    pub member_epoch: i32,
    /// The partitions it may own now: it must release any it holds that are not listed.
    pub assignment: BTreeSet<TopicPartition>,
    /// When to heartbeat next.
    pub heartbeat_interval: Duration,
}

/// A heartbeat the group refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// No member with this id (evicted, or never joined): rejoin with epoch 0.
    #[error("member {member_id} is not in group {group}: rejoin with epoch 0")]
    UnknownMember {
        /// The group.
        group: String,
        /// The id sent.
        member_id: String,
    },
    /// The member's epoch is stale: it was fenced and must rejoin with epoch 0.
    #[error(
        "member {member_id} of group {group} sent epoch {sent}, current is {current}: rejoin with epoch 0"
    )]
    FencedMemberEpoch {
        /// The group.
        group: String,
        /// The member.
        member_id: String,
        /// The epoch sent.
        sent: i32,
        /// The member's epoch.
        current: i32,
    },
    /// A join without topics, or an epoch below -1.
    #[error("invalid heartbeat for group {group}: {reason}")]
    Invalid {
        /// The group.
        group: String,
        /// What was wrong.
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct Member {
    epoch: i32,
    topics: BTreeSet<String>,
    /// What the coordinator lets it own (the last assignment sent).
    assigned: BTreeSet<TopicPartition>,
    /// Taken out of `assigned` but still reported owned: not yet free.
    revoking: BTreeSet<TopicPartition>,
    last_heartbeat: Instant,
    revoke_deadline: Option<Instant>,
}

/// Why members left the group in a [`ConsumerGroup::expire`] pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eviction {
    /// No heartbeat within the session timeout.
    SessionTimeout(String),
    /// Did not release partitions within the rebalance timeout.
    RebalanceTimeout(String),
}

/// A consumer group.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    id: String,
    config: GroupConfig,
    /// Moves on every membership or subscription change (and partition-count change).
    group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    assignment_epoch: i32,
    target: BTreeMap<String, BTreeSet<TopicPartition>>,
    members: BTreeMap<String, Member>,
    partitions: BTreeMap<String, u32>,
    next_member: u64,
}

impl ConsumerGroup {
    /// An empty group.
    pub fn new(id: impl Into<String>, config: GroupConfig) -> Self {
        ConsumerGroup {
            id: id.into(),
            config,
            group_epoch: 0,
            assignment_epoch: 0,
            target: BTreeMap::new(),
            members: BTreeMap::new(),
            partitions: BTreeMap::new(),
            next_member: 0,
        }
    }

    /// The group's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The group epoch.
    pub fn epoch(&self) -> i32 {
        self.group_epoch
    }

    /// Member ids.
    pub fn member_ids(&self) -> impl Iterator<Item = &String> {
        self.members.keys()
    }

    /// The epoch of `member`, if it is in the group.
    pub fn member_epoch(&self, member: &str) -> Option<i32> {
        self.members.get(member).map(|m| m.epoch)
    }

    /// The epoch and subscription of `member`.
    pub fn member_info(&self, member: &str) -> Option<(i32, BTreeSet<String>)> {
        self.members
            .get(member)
            .map(|m| (m.epoch, m.topics.clone()))
    }

    /// What the coordinator lets `member` own now.
    pub fn assigned(&self, member: &str) -> Option<&BTreeSet<TopicPartition>> {
        self.members.get(member).map(|m| &m.assigned)
    }

    /// The member that holds `tp` (assigned or still releasing it), if any.
    pub fn owner(&self, tp: &TopicPartition) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, m)| m.assigned.contains(tp) || m.revoking.contains(tp))
            .map(|(id, _)| id.as_str())
    }

    /// Tells the group the current partition counts of the topics (from topic metadata).
    pub fn set_partitions(&mut self, partitions: BTreeMap<String, u32>) {
        if partitions != self.partitions {
            self.partitions = partitions;
            self.group_epoch += 1;
        }
    }

    fn bump(&mut self) {
        self.group_epoch += 1;
    }

    fn err_invalid(&self, reason: impl Into<String>) -> GroupError {
        GroupError::Invalid {
            group: self.id.clone(),
            reason: reason.into(),
        }
    }

    /// Handles one heartbeat at time `now`.
    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        now: Instant,
    ) -> Result<HeartbeatResponse, GroupError> {
        let member_id = match (hb.member_epoch, hb.member_id.clone()) {
            (-1, Some(id)) => {
                if self.members.remove(&id).is_some() {
                    self.bump();
                }
                return Ok(HeartbeatResponse {
                    member_id: id,
                    member_epoch: -1,
                    assignment: BTreeSet::new(),
                    heartbeat_interval: self.config.heartbeat_interval,
                });
            }
            (0, id) => {
                let topics = hb
                    .topics
                    .clone()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| self.err_invalid("a join must name at least one topic"))?;
                let id = id.unwrap_or_else(|| {
                    self.next_member += 1;
                    format!("{}-member-{}", self.id, self.next_member)
                });
                // A rejoin drops whatever the member held before.
                self.members.insert(
                    id.clone(),
                    Member {
                        epoch: 0,
                        topics,
                        assigned: BTreeSet::new(),
                        revoking: BTreeSet::new(),
                        last_heartbeat: now,
                        revoke_deadline: None,
                    },
                );
                self.bump();
                id
            }
            (e, Some(id)) if e > 0 => {
                let group = self.id.clone();
                let m = self
                    .members
                    .get_mut(&id)
                    .ok_or_else(|| GroupError::UnknownMember {
                        group: group.clone(),
                        member_id: id.clone(),
                    })?;
                if e != m.epoch {
                    return Err(GroupError::FencedMemberEpoch {
                        group,
                        member_id: id,
                        sent: e,
                        current: m.epoch,
                    });
                }
                m.last_heartbeat = now;
                let mut changed = false;
                if let Some(topics) = hb.topics.clone()
                    && topics != m.topics
                {
                    if topics.is_empty() {
                        return Err(self.err_invalid("a subscription must name at least one topic"));
                    }
                    m.topics = topics;
                    changed = true;
                }
                if let Some(owned) = &hb.owned {
                    // Partitions being released that the member no longer reports are free.
                    m.revoking.retain(|tp| owned.contains(tp));
                    if m.revoking.is_empty() {
                        m.revoke_deadline = None;
                    }
                }
                if changed {
                    self.bump();
                }
                id
            }
            (e, _) => {
                return Err(
                    self.err_invalid(format!("member epoch {e} without a member id, or below -1"))
                );
            }
        };
        self.refresh_target();
        Ok(self.reconcile(&member_id, now))
    }

    fn refresh_target(&mut self) {
        if self.assignment_epoch == self.group_epoch {
            return;
        }
        let subs: BTreeMap<String, MemberSubscription> = self
            .members
            .iter()
            .map(|(id, m)| {
                let current = self.target.get(id).cloned().unwrap_or_default();
                (
                    id.clone(),
                    MemberSubscription {
                        topics: m.topics.clone(),
                        current,
                    },
                )
            })
            .collect();
        self.target = self.config.assignor.assign(&subs, &self.partitions);
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves `member_id` one step towards its target: first it releases what it must give up,
    /// then it receives what is free.
    fn reconcile(&mut self, member_id: &str, now: Instant) -> HeartbeatResponse {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_by_others: BTreeSet<TopicPartition> = self
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .flat_map(|(_, m)| m.assigned.iter().chain(m.revoking.iter()).cloned())
            .collect();
        let rebalance_timeout = self.config.rebalance_timeout;
        let assignment_epoch = self.assignment_epoch;
        let m = self
            .members
            .get_mut(member_id)
            .expect("reconciled member exists");
        let give_up: BTreeSet<TopicPartition> = m.assigned.difference(&target).cloned().collect();
        if !give_up.is_empty() {
            m.assigned.retain(|tp| target.contains(tp));
            m.revoking.extend(give_up);
            m.revoke_deadline.get_or_insert(now + rebalance_timeout);
        }
        if m.revoking.is_empty() {
            for tp in target.iter().filter(|tp| !held_by_others.contains(*tp)) {
                m.assigned.insert(tp.clone());
            }
            if m.assigned == target {
                m.epoch = assignment_epoch.max(1);
            }
        }
        HeartbeatResponse {
            member_id: member_id.to_string(),
            member_epoch: m.epoch,
            assignment: m.assigned.clone(),
            heartbeat_interval: self.config.heartbeat_interval,
        }
    }

    /// Removes members whose session or rebalance timeout passed at `now`; their partitions
    /// become free at once.
    pub fn expire(&mut self, now: Instant) -> Vec<Eviction> {
        let mut out = Vec::new();
        let session = self.config.session_timeout;
        self.members.retain(|id, m| {
            if now.duration_since(m.last_heartbeat) > session {
                out.push(Eviction::SessionTimeout(id.clone()));
                false
            } else if m.revoke_deadline.is_some_and(|d| now > d) {
                out.push(Eviction::RebalanceTimeout(id.clone()));
                false
            } else {
                true
            }
        });
        if !out.is_empty() {
            self.bump();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A well-behaved member: reports what it holds, takes exactly what it is given.
    #[derive(Debug, Clone, Default)]
    struct Client {
        id: Option<String>,
        epoch: i32,
        owned: BTreeSet<TopicPartition>,
    }

    impl Client {
        fn beat(
            &mut self,
            g: &mut ConsumerGroup,
            now: Instant,
        ) -> Result<HeartbeatResponse, GroupError> {
            let hb = Heartbeat {
                member_id: self.id.clone(),
                member_epoch: self.epoch,
                topics: Some(["t".to_string()].into()),
                owned: Some(self.owned.clone()),
            };
            let r = g.heartbeat(hb, now)?;
            self.id = Some(r.member_id.clone());
            self.epoch = r.member_epoch;
            self.owned = r.assignment.clone();
            Ok(r)
        }
    }

    fn group(partitions: u32) -> ConsumerGroup {
        let mut g = ConsumerGroup::new("g", GroupConfig::default());
        g.set_partitions(BTreeMap::from([("t".to_string(), partitions)]));
        g
    }

    /// No partition is held by two members, counting what they are still releasing.
    fn assert_exclusive(g: &ConsumerGroup) {
        let mut seen = BTreeSet::new();
        for m in g.members.values() {
            for tp in m.assigned.iter().chain(m.revoking.iter()) {
                assert!(seen.insert(tp.clone()), "{tp} held twice: {:?}", g.members);
            }
        }
    }

    fn settle(g: &mut ConsumerGroup, clients: &mut [Client], now: Instant) {
        for _ in 0..6 {
            for c in clients.iter_mut() {
                c.beat(g, now).unwrap();
                assert_exclusive(g);
            }
        }
    }

    #[test]
    fn three_members_on_six_partitions_get_disjoint_sets_covering_all() {
        let t0 = Instant::now();
        let mut g = group(6);
        let mut clients = vec![Client::default(), Client::default(), Client::default()];
        settle(&mut g, &mut clients, t0);
        let mut all = BTreeSet::new();
        for c in &clients {
            assert_eq!(c.owned.len(), 2, "{c:?}");
            assert_eq!(
                c.epoch,
                g.epoch(),
                "converged members carry the group epoch"
            );
            all.extend(c.owned.iter().cloned());
        }
        assert_eq!(all, (0..6).map(|p| TopicPartition::new("t", p)).collect());
    }

    #[test]
    fn a_joining_member_gets_partitions_only_after_their_owner_released_them() {
        let t0 = Instant::now();
        let mut g = group(4);
        let mut a = Client::default();
        settle(&mut g, std::slice::from_mut(&mut a), t0);
        assert_eq!(a.owned.len(), 4);
        let mut b = Client::default();
        let first = b.beat(&mut g, t0).unwrap();
        assert!(first.assignment.is_empty(), "a still holds everything");
        let r = a.beat(&mut g, t0).unwrap();
        assert_eq!(r.assignment.len(), 2, "a is told to keep two");
        // a has not reported the release yet (its `owned` update goes with its next beat),
        // so b still gets nothing.
        assert!(g.owner(&TopicPartition::new("t", 3)).is_some());
        let mut clients = vec![a, b];
        settle(&mut g, &mut clients, t0);
        assert_eq!(clients[0].owned.len(), 2);
        assert_eq!(clients[1].owned.len(), 2);
        assert!(clients[0].owned.is_disjoint(&clients[1].owned));
    }

    #[test]
    fn a_silent_member_is_evicted_after_the_session_timeout_and_its_partitions_move() {
        let t0 = Instant::now();
        let mut g = group(6);
        let mut clients = vec![Client::default(), Client::default(), Client::default()];
        settle(&mut g, &mut clients, t0);
        let silent = clients[2].clone();
        let timeout = GroupConfig::default().session_timeout;
        assert!(
            g.expire(t0 + timeout).is_empty(),
            "exactly the timeout is not past it"
        );
        let t1 = t0 + timeout + Duration::from_millis(1);
        // The others kept heartbeating.
        for c in clients.iter_mut().take(2) {
            c.beat(&mut g, t1 - Duration::from_secs(1)).unwrap();
        }
        assert_eq!(
            g.expire(t1),
            vec![Eviction::SessionTimeout(silent.id.clone().unwrap())]
        );
        let mut alive = clients[..2].to_vec();
        settle(&mut g, &mut alive, t1);
        assert_eq!(alive[0].owned.len() + alive[1].owned.len(), 6);
        assert!(
            silent
                .owned
                .iter()
                .all(|tp| alive.iter().any(|c| c.owned.contains(tp)))
        );
        // The evicted member is told to rejoin.
        let mut ghost = silent;
        assert!(matches!(
            ghost.beat(&mut g, t1),
            Err(GroupError::UnknownMember { .. })
        ));
    }

    #[test]
    fn stale_epochs_are_fenced_and_leaves_free_partitions_at_once() {
        let t0 = Instant::now();
        let mut g = group(2);
        let mut a = Client::default();
        settle(&mut g, std::slice::from_mut(&mut a), t0);
        let id = a.id.clone().unwrap();
        let stale = Heartbeat {
            member_id: Some(id.clone()),
            member_epoch: a.epoch - 1,
            topics: None,
            owned: None,
        };
        assert_eq!(
            g.heartbeat(stale, t0),
            Err(GroupError::FencedMemberEpoch {
                group: "g".into(),
                member_id: id.clone(),
                sent: a.epoch - 1,
                current: a.epoch
            })
        );
        let leave = Heartbeat {
            member_id: Some(id.clone()),
            member_epoch: -1,
            topics: None,
            owned: None,
        };
        assert_eq!(g.heartbeat(leave, t0).unwrap().member_epoch, -1);
        assert_eq!(g.owner(&TopicPartition::new("t", 0)), None);
        let mut b = Client::default();
        settle(&mut g, std::slice::from_mut(&mut b), t0);
        assert_eq!(b.owned.len(), 2);
        let bad = Heartbeat {
            member_id: None,
            member_epoch: 0,
            topics: Some(BTreeSet::new()),
            owned: None,
        };
        assert!(matches!(
            g.heartbeat(bad, t0),
            Err(GroupError::Invalid { .. })
        ));
    }

    #[test]
    fn a_member_that_never_releases_is_evicted_after_the_rebalance_timeout() {
        let t0 = Instant::now();
        let mut g = group(2);
        let mut a = Client::default();
        settle(&mut g, std::slice::from_mut(&mut a), t0);
        let mut b = Client::default();
        b.beat(&mut g, t0).unwrap();
        // a heartbeats but keeps reporting both partitions.
        let keep = a.owned.clone();
        let hb = Heartbeat {
            member_id: a.id.clone(),
            member_epoch: a.epoch,
            topics: None,
            owned: Some(keep.clone()),
        };
        g.heartbeat(hb.clone(), t0).unwrap();
        let t1 = t0 + GroupConfig::default().rebalance_timeout + Duration::from_millis(1);
        g.heartbeat(hb, t1 - Duration::from_millis(2)).unwrap();
        b.beat(&mut g, t1 - Duration::from_millis(2)).unwrap();
        assert_eq!(
            g.expire(t1),
            vec![Eviction::RebalanceTimeout(a.id.clone().unwrap())]
        );
        settle(&mut g, std::slice::from_mut(&mut b), t1);
        assert_eq!(b.owned, keep);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Join,
        Leave(usize),
        Beat(usize),
        Silence(usize),
        Partitions(u32),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            2 => Just(Step::Join),
            1 => (0usize..8).prop_map(Step::Leave),
            8 => (0usize..8).prop_map(Step::Beat),
            1 => (0usize..8).prop_map(Step::Silence),
            1 => (1u32..12).prop_map(Step::Partitions),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn no_partition_is_ever_held_twice_and_the_group_converges(steps in proptest::collection::vec(step(), 1..80)) {
            let mut now = Instant::now();
            let mut g = group(6);
            let mut clients: Vec<Option<Client>> = Vec::new();
            for s in steps {
                now += Duration::from_secs(1);
                match s {
                    Step::Join => clients.push(Some(Client::default())),
                    Step::Leave(i) => {
                        if let Some(Some(c)) = clients.get(i % clients.len().max(1)).cloned() && let Some(id) = c.id {
                            let hb = Heartbeat { member_id: Some(id), member_epoch: -1, topics: None, owned: None };
                            g.heartbeat(hb, now).unwrap();
                            let n = clients.len();
                            clients[i % n] = None;
                        }
                    }
                    Step::Beat(i) => {
                        let n = clients.len();
                        if n > 0 && let Some(c) = clients[i % n].as_mut() && c.beat(&mut g, now).is_err() {
                            *c = Client::default();
                        }
                    }
                    Step::Silence(i) => {
                        // A crash: the member stops and is evicted after the session timeout.
                        let n = clients.len();
                        if n > 0 {
                            clients[i % n] = None;
                        }
                        now += GroupConfig::default().session_timeout + Duration::from_secs(1);
                        for c in clients.iter_mut().flatten() {
                            if c.beat(&mut g, now - Duration::from_secs(1)).is_err() {
                                *c = Client::default();
                            }
                        }
                        g.expire(now);
                    }
                    Step::Partitions(p) => g.set_partitions(BTreeMap::from([("t".to_string(), p)])),
                }
                assert_exclusive(&g);
                g.expire(now);
            }
            // Everyone left heartbeats until stable: every partition has exactly one owner.
            let mut live: Vec<Client> = clients.into_iter().flatten().collect();
            if live.is_empty() {
                live.push(Client::default());
            }
            for _ in 0..8 {
                for c in live.iter_mut() {
                    if c.beat(&mut g, now).is_err() {
                        *c = Client::default();
                        c.beat(&mut g, now).unwrap();
                    }
                    assert_exclusive(&g);
                }
            }
            g.expire(now);
            let owned: Vec<TopicPartition> = live.iter().flat_map(|c| c.owned.iter().cloned()).collect();
            let distinct: BTreeSet<TopicPartition> = owned.iter().cloned().collect();
            prop_assert_eq!(owned.len(), distinct.len());
            prop_assert_eq!(distinct.len() as u32, g.partitions["t"]);
        }
    }
}
