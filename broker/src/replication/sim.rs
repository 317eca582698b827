//! A seeded simulation of one partition replicated on three brokers, driving the pure
//! replication pieces ([`LeaderState`], [`EpochCache`], [`follower::resolve`]) through
//! crashes, restarts, a leader cut off from the cluster, and delayed, dropped and partial
//! fetches, with a model controller that elects leaders from the ISR (never uncleanly) and
//! commits ISR changes only from the current leader.
//!
//! After every step it checks:
//! - a leader's high watermark never moves back during its epoch;
//! - below their high watermarks, no two replicas hold different records at one offset, and
//!   every replica agrees with what any leader ever exposed there;
//! - every acknowledged acks=all record is on every member of the ISR.
//!
//! At the end it heals the cluster, lets it catch up, and checks that the leader's log holds
//! every acknowledged record at the offset it was acknowledged with.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use brook_proto::{LeaderEpoch, Offset};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

use super::epoch_cache::EpochCache;
use super::follower::{self, Divergence};
use super::leader::{LeaderState, NodeId, Outcome, ReplicationConfig};

const NODES: [NodeId; 3] = [1, 2, 3];

const CONFIG: ReplicationConfig = ReplicationConfig {
    replica_lag_max: Duration::from_secs(10),
    min_insync: 2,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    epoch: i32,
    id: u64,
}

/// A fetch answered by the leader whose response has not reached the follower yet.
#[derive(Debug, Clone)]
struct InFlightFetch {
    epoch: i32,
    fetch_offset: usize,
    entries: Vec<Entry>,
    high_watermark: i64,
}

#[derive(Debug)]
enum Role {
    Leader(Box<LeaderState>),
    Follower {
        epoch: i32,
        /// Divergence resolved for this epoch: it may fetch.
        synced: bool,
        in_flight: Option<InFlightFetch>,
    },
    /// Down, or up without a leader to follow.
    Idle,
}

/// An acks=all write waiting for the high watermark.
#[derive(Debug)]
struct PendingWrite {
    /// Offset of its last record.
    last: usize,
    /// (offset, id) of each record.
    records: Vec<(usize, u64)>,
}

#[derive(Debug)]
struct Replica {
    id: NodeId,
    log: Vec<Entry>,
    cache: EpochCache,
    hw: i64,
    alive: bool,
    /// Cut off from the controller and the other brokers.
    isolated: bool,
    role: Role,
    /// acks=all writes waiting for the high watermark.
    pending: Vec<PendingWrite>,
}

impl Replica {
    fn end(&self) -> Offset {
        Offset(self.log.len() as i64)
    }

    fn truncate(&mut self, to: Offset) {
        let to = to.get() as usize;
        assert!(
            to as i64 >= self.hw,
            "node {} truncating to {to}, below its high watermark {}",
            self.id,
            self.hw
        );
        self.log.truncate(to);
        self.cache.truncate_from_end(Offset(to as i64));
    }

    fn append(&mut self, entry: Entry) {
        let offset = self.end();
        self.cache
            .assign(LeaderEpoch(entry.epoch), offset)
            .expect("epochs never go back in a log");
        self.log.push(entry);
    }
}

struct Controller {
    leader: Option<NodeId>,
    epoch: i32,
    isr: BTreeSet<NodeId>,
}

/// The simulated cluster.
pub(crate) struct Sim {
    rng: StdRng,
    seed: u64,
    now: Instant,
    replicas: BTreeMap<NodeId, Replica>,
    controller: Controller,
    next_id: u64,
    /// Acknowledged acks=all records: offset -> id.
    acked: BTreeMap<usize, u64>,
    /// What any leader exposed below its high watermark: offset -> id.
    committed: BTreeMap<usize, u64>,
    /// The last high watermark seen per (leader, epoch).
    leader_hw: BTreeMap<(NodeId, i32), i64>,
    /// Per broker: offsets below this were checked against `committed`. A broker's high
    /// watermark never moves back and nothing below it is ever truncated (asserted), so
    /// checked offsets stay checked.
    verified: BTreeMap<NodeId, usize>,
    /// Acknowledged records not yet checked against the ISR.
    newly_acked: Vec<(usize, u64)>,
    /// A truncation or an ISR change happened: check every acknowledged record again.
    recheck_acked: bool,
    pub(crate) steps: usize,
    pub(crate) elections: usize,
}

impl Sim {
    pub(crate) fn new(seed: u64) -> Sim {
        let now = Instant::now();
        let mut replicas = BTreeMap::new();
        for id in NODES {
            replicas.insert(
                id,
                Replica {
                    id,
                    log: Vec::new(),
                    cache: EpochCache::new(),
                    hw: 0,
                    alive: true,
                    isolated: false,
                    role: Role::Idle,
                    pending: Vec::new(),
                },
            );
        }
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            seed,
            now,
            replicas,
            controller: Controller {
                leader: None,
                epoch: 0,
                isr: NODES.into_iter().collect(),
            },
            next_id: 1,
            acked: BTreeMap::new(),
            committed: BTreeMap::new(),
            leader_hw: BTreeMap::new(),
            verified: BTreeMap::new(),
            newly_acked: Vec::new(),
            recheck_acked: false,
            steps: 0,
            elections: 0,
        };
        sim.elect(1);
        sim
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {} step {}: {what}\n(reproduce: BROOK_SIM_SEED={})",
            self.seed, self.steps, self.seed
        );
    }

    /// Makes `node` leader in a new epoch; every other live, reachable broker follows it.
    fn elect(&mut self, node: NodeId) {
        self.controller.epoch += 1;
        self.controller.leader = Some(node);
        self.elections += 1;
        let epoch = self.controller.epoch;
        let now = self.now;
        let isr = self.controller.isr.clone();
        let r = self.replicas.get_mut(&node).expect("a node");
        let end = r.end();
        r.cache
            .assign(LeaderEpoch(epoch), end)
            .expect("a new epoch is newer");
        let state = LeaderState::new(
            node,
            LeaderEpoch(epoch),
            CONFIG,
            NODES.to_vec(),
            isr,
            end,
            Offset(r.hw),
            now,
        );
        r.role = Role::Leader(Box::new(state));
        r.pending.clear();
        for id in NODES {
            if id == node {
                continue;
            }
            let other = self.replicas.get_mut(&id).expect("a node");
            if other.alive && !other.isolated {
                other.role = Role::Follower {
                    epoch,
                    synced: false,
                    in_flight: None,
                };
                other.pending.clear();
            }
        }
    }

    /// The controller lost `node` (crashed or cut off): out of the ISR unless it is the last
    /// member, and a new leader from the ISR if it led.
    fn lose(&mut self, node: NodeId) {
        if self.controller.isr.len() > 1 {
            self.controller.isr.remove(&node);
        }
        self.recheck_acked = true;
        if self.controller.leader == Some(node) {
            self.controller.leader = None;
            let candidate = self
                .controller
                .isr
                .iter()
                .copied()
                .find(|n| *n != node && self.reachable(*n));
            if let Some(next) = candidate {
                self.elect(next);
            }
        } else {
            self.push_isr_to_leader();
        }
    }

    fn reachable(&self, node: NodeId) -> bool {
        let r = &self.replicas[&node];
        r.alive && !r.isolated
    }

    /// Tells the current leader the controller's ISR.
    fn push_isr_to_leader(&mut self) {
        let Some(leader) = self.controller.leader else {
            return;
        };
        let isr = self.controller.isr.clone();
        let r = self.replicas.get_mut(&leader).expect("a node");
        if let Role::Leader(state) = &mut r.role
            && state.epoch().get() == self.controller.epoch
        {
            let outcome = state.on_isr_committed(isr);
            self.apply(leader, outcome);
        }
    }

    /// Applies a leader's outcome: a new high watermark, an ISR proposal to the controller.
    fn apply(&mut self, leader: NodeId, outcome: Outcome) {
        let r = self.replicas.get_mut(&leader).expect("a node");
        let Role::Leader(state) = &mut r.role else {
            return;
        };
        if let Some(hw) = outcome.high_watermark {
            r.hw = hw.get();
        }
        let epoch = state.epoch().get();
        if let Some(proposal) = outcome.propose_isr {
            let accepted = !r.isolated
                && self.controller.leader == Some(leader)
                && self.controller.epoch == epoch
                && proposal.iter().all(|n| {
                    let p = &self.replicas[n];
                    p.alive && !p.isolated
                });
            let r = self.replicas.get_mut(&leader).expect("a node");
            let Role::Leader(state) = &mut r.role else {
                return;
            };
            if accepted {
                self.controller.isr = proposal.clone();
                self.recheck_acked = true;
                let outcome = state.on_isr_committed(proposal);
                if let Some(hw) = outcome.high_watermark {
                    r.hw = hw.get();
                }
            } else {
                state.on_isr_rejected();
            }
        }
    }

    /// One random step.
    pub(crate) fn step(&mut self) {
        self.steps += 1;
        let roll = self.rng.random_range(0..100);
        let node = NODES[self.rng.random_range(0..NODES.len())];
        match roll {
            0..35 => {
                // Mostly to the leader; sometimes to whoever, which may be a deposed leader
                // that still believes it leads.
                let to = match self.controller.leader {
                    Some(leader) if self.rng.random_range(0..5) > 0 => leader,
                    _ => node,
                };
                self.produce(to);
            }
            35..80 => self.fetch(node),
            80..90 => self.tick(),
            90..92 => self.crash(node),
            92..97 => {
                if let Some(down) = self.pick(|r| !r.alive) {
                    self.restart(down);
                }
            }
            97..98 => self.isolate(node),
            _ => {
                if let Some(cut) = self.pick(|r| r.isolated) {
                    self.heal(cut);
                }
            }
        }
        self.settle_acks();
        self.check();
    }

    /// A random broker that `matches`, if any.
    fn pick(&mut self, matches: impl Fn(&Replica) -> bool) -> Option<NodeId> {
        let found: Vec<NodeId> = self
            .replicas
            .values()
            .filter(|r| matches(r))
            .map(|r| r.id)
            .collect();
        if found.is_empty() {
            return None;
        }
        Some(found[self.rng.random_range(0..found.len())])
    }

    /// A client writes 1 to 3 records with acks=all to `node` if it believes it leads.
    fn produce(&mut self, node: NodeId) {
        let count = self.rng.random_range(1..=3);
        let r = self.replicas.get_mut(&node).expect("a node");
        if !r.alive {
            return;
        }
        let Role::Leader(state) = &mut r.role else {
            return;
        };
        if state.check_min_insync().is_err() {
            return;
        }
        let epoch = state.epoch().get();
        let mut records = Vec::new();
        for _ in 0..count {
            let id = self.next_id;
            self.next_id += 1;
            records.push((r.log.len(), id));
            r.append(Entry { epoch, id });
        }
        let end = r.end();
        let Role::Leader(state) = &mut r.role else {
            unreachable!()
        };
        let outcome = state.on_append(end);
        r.pending.push(PendingWrite {
            last: records.last().expect("records").0,
            records,
        });
        self.apply(node, outcome);
    }

    /// `node`, a follower, resolves its divergence if it has not, receives a fetch response
    /// still in flight, or sends a fetch (answered at once, answered later, or lost).
    fn fetch(&mut self, node: NodeId) {
        let Some(leader) = self.controller.leader else {
            return;
        };
        if leader == node || !self.reachable(node) || !self.reachable(leader) {
            return;
        }
        let Role::Leader(leader_state) = &self.replicas[&leader].role else {
            return;
        };
        let leader_epoch = leader_state.epoch().get();
        let (epoch, synced, in_flight) = match &mut self.replicas.get_mut(&node).unwrap().role {
            Role::Follower {
                epoch,
                synced,
                in_flight,
            } => (*epoch, *synced, in_flight.take()),
            _ => return,
        };
        if epoch != leader_epoch {
            return;
        }
        if !synced {
            self.resolve_divergence(node, leader);
            return;
        }
        if let Some(response) = in_flight {
            self.receive(node, response);
            return;
        }
        let fetch_offset = self.replicas[&node].end();
        let now = self.now;
        let l = self.replicas.get_mut(&leader).unwrap();
        let Role::Leader(state) = &mut l.role else {
            unreachable!()
        };
        let result = state.on_fetch(node, fetch_offset, now);
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => self.fail(format!("leader {leader} refused node {node}'s fetch: {e}")),
        };
        self.apply(leader, outcome);
        let l = &self.replicas[&leader];
        let from = fetch_offset.get() as usize;
        let most = self.rng.random_range(0..=8);
        let entries: Vec<Entry> = l.log[from..].iter().take(most).copied().collect();
        let response = InFlightFetch {
            epoch: leader_epoch,
            fetch_offset: from,
            entries,
            high_watermark: l.hw,
        };
        match self.rng.random_range(0..10) {
            0 => {} // lost
            1..3 => {
                if let Role::Follower { in_flight, .. } =
                    &mut self.replicas.get_mut(&node).unwrap().role
                {
                    *in_flight = Some(response);
                }
            }
            _ => self.receive(node, response),
        }
    }

    fn receive(&mut self, node: NodeId, response: InFlightFetch) {
        let r = self.replicas.get_mut(&node).unwrap();
        let current =
            matches!(r.role, Role::Follower { epoch, synced: true, .. } if epoch == response.epoch);
        if !current || r.log.len() != response.fetch_offset {
            return; // stale: the follower moved on since it asked
        }
        for entry in response.entries {
            r.append(entry);
        }
        r.hw = r.hw.max(response.high_watermark.min(r.log.len() as i64));
    }

    fn resolve_divergence(&mut self, node: NodeId, leader: NodeId) {
        let (own_cache, own_end, own_hw) = {
            let r = &self.replicas[&node];
            (r.cache.clone(), r.end(), Offset(r.hw))
        };
        let l = &self.replicas[&leader];
        let mut step = follower::first_question(&own_cache, own_end);
        let mut questions = 0;
        let to = loop {
            match step {
                Divergence::TruncateTo(offset) => break offset,
                Divergence::Ask(epoch) => {
                    questions += 1;
                    if questions > 10 {
                        self.fail(format!("node {node} asked 10 questions"));
                    }
                    let answer = l.cache.end_offset_for(epoch, l.end());
                    step = follower::resolve(&own_cache, own_end, own_hw, epoch, answer);
                }
            }
        };
        let r = self.replicas.get_mut(&node).unwrap();
        r.truncate(to);
        self.recheck_acked = true;
        if let Role::Follower { synced, .. } = &mut r.role {
            *synced = true;
        }
    }

    /// Time passes; leaders drop followers that fell behind.
    fn tick(&mut self) {
        self.now += Duration::from_millis(self.rng.random_range(500..6000));
        for id in NODES {
            let r = self.replicas.get_mut(&id).unwrap();
            if !r.alive {
                continue;
            }
            if let Role::Leader(state) = &mut r.role {
                let outcome = state.on_tick(self.now);
                self.apply(id, outcome);
            }
        }
    }

    fn crash(&mut self, node: NodeId) {
        let r = self.replicas.get_mut(&node).unwrap();
        if !r.alive {
            return;
        }
        r.alive = false;
        r.role = Role::Idle;
        r.pending.clear();
        let was_isolated = std::mem::take(&mut r.isolated);
        if !was_isolated {
            self.lose(node);
        }
    }

    fn restart(&mut self, node: NodeId) {
        let r = self.replicas.get_mut(&node).unwrap();
        if r.alive {
            return;
        }
        r.alive = true;
        self.join(node);
    }

    fn isolate(&mut self, node: NodeId) {
        let r = self.replicas.get_mut(&node).unwrap();
        if !r.alive || r.isolated {
            return;
        }
        r.isolated = true;
        if let Role::Follower { in_flight, .. } = &mut r.role {
            *in_flight = None;
        }
        self.lose(node);
    }

    fn heal(&mut self, node: NodeId) {
        let r = self.replicas.get_mut(&node).unwrap();
        if !r.alive || !r.isolated {
            return;
        }
        r.isolated = false;
        // Whatever it still believes, it learns the current epoch and its place.
        r.role = Role::Idle;
        r.pending.clear();
        self.join(node);
    }

    /// A broker the controller can reach again: it follows the leader, or leads an offline
    /// partition it is the last ISR member of.
    fn join(&mut self, node: NodeId) {
        match self.controller.leader {
            Some(_) => {
                let epoch = self.controller.epoch;
                self.replicas.get_mut(&node).unwrap().role = Role::Follower {
                    epoch,
                    synced: false,
                    in_flight: None,
                };
            }
            None => {
                if self.controller.isr.contains(&node) {
                    self.elect(node);
                } else {
                    self.replicas.get_mut(&node).unwrap().role = Role::Idle;
                }
            }
        }
    }

    /// Leaders acknowledge acks=all writes below their high watermark (or fail them when
    /// the ISR shrank below min.insync.replicas after the append).
    fn settle_acks(&mut self) {
        for id in NODES {
            let r = self.replicas.get_mut(&id).unwrap();
            let Role::Leader(state) = &r.role else {
                continue;
            };
            let mut done = Vec::new();
            r.pending.retain(
                |write| match state.acks_all_status(Offset(write.last as i64)) {
                    None => true,
                    Some(Ok(())) => {
                        done.extend(write.records.iter().copied());
                        false
                    }
                    Some(Err(_)) => false,
                },
            );
            for (offset, record) in done {
                self.newly_acked.push((offset, record));
                if let Some(previous) = self.acked.insert(offset, record) {
                    self.fail(format!(
                        "offset {offset} acknowledged twice: {previous} and {record}"
                    ));
                }
            }
        }
    }

    fn check(&mut self) {
        // A leader's high watermark never moves back during its epoch.
        for r in self.replicas.values() {
            if let Role::Leader(state) = &r.role {
                let key = (r.id, state.epoch().get());
                let hw = state.high_watermark().get();
                if r.hw != hw {
                    self.fail(format!("node {} hw {} but its state says {hw}", r.id, r.hw));
                }
                let before = self.leader_hw.insert(key, hw).unwrap_or(0);
                if hw < before {
                    self.fail(format!(
                        "leader {} epoch {} moved its high watermark back from {before} to {hw}",
                        key.0, key.1
                    ));
                }
            }
        }
        // Below high watermarks, every replica agrees with what was ever exposed.
        let mut committed = std::mem::take(&mut self.committed);
        let mut verified = std::mem::take(&mut self.verified);
        for r in self.replicas.values() {
            let hw = r.hw as usize;
            if hw > r.log.len() {
                self.fail(format!(
                    "node {} hw {hw} beyond its log {}",
                    r.id,
                    r.log.len()
                ));
            }
            let from = verified.entry(r.id).or_insert(0);
            let start = std::mem::replace(from, hw);
            for (offset, entry) in r.log.iter().enumerate().take(hw).skip(start) {
                let seen = *committed.entry(offset).or_insert(entry.id);
                if seen != entry.id {
                    self.fail(format!(
                        "node {} holds record {} at offset {offset} below its high watermark \
                         {hw}, where {seen} was committed",
                        r.id, entry.id
                    ));
                }
            }
        }
        self.committed = committed;
        self.verified = verified;
        // Every acknowledged record is on every ISR member.
        let to_check: Vec<(usize, u64)> = if std::mem::take(&mut self.recheck_acked) {
            self.newly_acked.clear();
            self.acked.iter().map(|(o, id)| (*o, *id)).collect()
        } else {
            std::mem::take(&mut self.newly_acked)
        };
        for (offset, id) in to_check {
            for member in &self.controller.isr {
                let r = &self.replicas[member];
                if r.log.get(offset).map(|e| e.id) != Some(id) {
                    self.fail(format!(
                        "acknowledged record {id} at offset {offset} is missing on ISR member \
                         {member} (it holds {:?}); ISR {:?}",
                        r.log.get(offset),
                        self.controller.isr
                    ));
                }
            }
        }
    }

    /// Heals and restarts everything, lets the followers catch up, and checks that the
    /// leader holds every acknowledged record.
    pub(crate) fn finish(&mut self) {
        for id in NODES {
            self.heal(id);
            self.restart(id);
        }
        for _ in 0..2000 {
            let node = NODES[self.steps % NODES.len()];
            self.steps += 1;
            self.fetch(node);
            self.settle_acks();
            self.check();
        }
        let Some(leader) = self.controller.leader else {
            self.fail("no leader after healing".to_string());
        };
        let log = &self.replicas[&leader].log;
        for (offset, id) in &self.acked {
            if log.get(*offset).map(|e| e.id) != Some(*id) {
                self.fail(format!(
                    "acknowledged record {id} at offset {offset} lost: the leader holds {:?}",
                    log.get(*offset)
                ));
            }
        }
        for id in NODES {
            let r = &self.replicas[&id];
            if r.log.len() != log.len() || r.log.iter().zip(log).any(|(a, b)| a != b) {
                self.fail(format!(
                    "node {id} did not converge on leader {leader}'s log"
                ));
            }
        }
    }

    pub(crate) fn acked(&self) -> usize {
        self.acked.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds run by default; `BROOK_SIM_SEED` runs one seed, `BROOK_SIM_SEEDS` that many.
    fn seeds() -> Vec<u64> {
        if let Ok(seed) = std::env::var("BROOK_SIM_SEED") {
            return vec![seed.parse().expect("BROOK_SIM_SEED is a number")];
        }
        let count = std::env::var("BROOK_SIM_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300u64);
        (0..count).map(|i| 0x5eed_0000 + i).collect()
    }

    #[test]
    fn seeded_random_faults_never_lose_an_acknowledged_record() {
        let mut total_acked = 0;
        let mut total_elections = 0;
        for seed in seeds() {
            let mut sim = Sim::new(seed);
            for _ in 0..1500 {
                sim.step();
            }
            sim.finish();
            total_acked += sim.acked();
            total_elections += sim.elections;
        }
        // The schedule must exercise what it claims to: many writes and many failovers.
        let runs = seeds().len();
        eprintln!("{runs} runs: {total_acked} records acknowledged, {total_elections} elections");
        assert!(total_acked > runs * 50, "only {total_acked} acknowledged");
        assert!(
            total_elections > runs * 3,
            "only {total_elections} elections"
        );
    }
}
