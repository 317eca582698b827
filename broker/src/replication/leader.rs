//! The leader's view of one partition's replicas, as a pure state machine: events in (appends,
//! follower fetches, clock ticks, ISR decisions of the controller), outcomes out (a new high
//! watermark, an ISR change to propose). The async broker executes the outcomes; tests and the
//! seeded simulation (`sim`) drive it directly.
//!
//! The rules are Kafka's:
//! - A follower's fetch offset is its log end offset: it holds everything below it.
//! - A follower is *caught up* at time `t` when it fetched at the leader's log end of `t`, or
//!   at least at the leader's log end of its previous fetch (it has since fetched everything
//!   the leader had then). An ISR member not caught up for `replica_lag_max` is dropped.
//! - A follower outside the ISR rejoins once it holds everything below the high watermark and
//!   everything the current leader epoch wrote before it (so it never rejoins on data of an
//!   older epoch alone).
//! - ISR changes are proposals; the controller commits them. Until it does, the high watermark
//!   counts the larger of the committed and proposed sets (Kafka's "maximal ISR"), so a
//!   shrink cannot expose data before it is committed and an expansion is safe at once.
//! - The high watermark is the smallest log end offset over the maximal ISR, and never moves
//!   back while this broker leads.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use brook_proto::{LeaderEpoch, Offset};
use std::time::Instant;

/// A broker's id in the cluster.
pub type NodeId = i32;

/// Replication settings of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// An ISR member that has not caught up for this long is dropped (Kafka's
    /// `replica.lag.time.max.ms`).
    pub replica_lag_max: Duration,
    /// Fewest ISR members, the leader included, for an acks=all write (Kafka's
    /// `min.insync.replicas`).
    pub min_insync: usize,
}

/// What the leader should do after an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The high watermark moved up to this offset.
    pub high_watermark: Option<Offset>,
    /// Ask the controller to make this the ISR.
    pub propose_isr: Option<BTreeSet<NodeId>>,
}

/// A fetch the leader refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchRefused {
    /// The fetching broker is not a replica of the partition.
    #[error("broker {node} is not a replica of this partition (replicas {replicas:?})")]
    NotReplica {
        /// The fetching broker.
        node: NodeId,
        /// The partition's replicas.
        replicas: Vec<NodeId>,
    },
    /// The follower claims more than the leader has: it must truncate first.
    #[error("fetch offset {fetch_offset} is beyond the leader's log end {log_end}")]
    AheadOfLeader {
        /// The offset asked for.
        fetch_offset: Offset,
        /// The leader's log end offset.
        log_end: Offset,
    },
}

/// An acks=all write the leader must refuse before appending it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{isr} in-sync replicas, min.insync.replicas is {min_insync}")]
pub struct NotEnoughReplicas {
    /// Members of the ISR now.
    pub isr: usize,
    /// The topic's `min.insync.replicas`.
    pub min_insync: usize,
}

#[derive(Debug, Clone, Copy)]
struct Follower {
    /// Its log end offset as its last fetch said.
    end: Offset,
    /// The last time it was caught up.
    caught_up_at: Instant,
    /// Its last fetch: when, and the leader's log end then.
    last_fetch: Option<(Instant, Offset)>,
}

/// The leader's replication state for one partition in one leader epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    node: NodeId,
    epoch: LeaderEpoch,
    config: ReplicationConfig,
    replicas: Vec<NodeId>,
    isr: BTreeSet<NodeId>,
    proposed: Option<BTreeSet<NodeId>>,
    followers: BTreeMap<NodeId, Follower>,
    log_end: Offset,
    /// The leader's log end when it took over: what a rejoining follower must hold.
    epoch_start: Offset,
    high_watermark: Offset,
}

impl LeaderState {
    /// This broker (`node`) became leader in `epoch`, with the controller's replica list and
    /// ISR, its own log end offset and the high watermark it knew as a follower. Every
    /// follower counts as caught up now, as in Kafka, so none is dropped before it could fetch.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: NodeId,
        epoch: LeaderEpoch,
        config: ReplicationConfig,
        replicas: Vec<NodeId>,
        isr: BTreeSet<NodeId>,
        log_end: Offset,
        high_watermark: Offset,
        now: Instant,
    ) -> LeaderState {
        let followers = replicas
            .iter()
            .filter(|r| **r != node)
            .map(|r| {
                let follower = Follower {
                    end: Offset(-1),
                    caught_up_at: now,
                    last_fetch: None,
                };
                (*r, follower)
            })
            .collect();
        LeaderState {
            node,
            epoch,
            config,
            replicas,
            isr,
            proposed: None,
            followers,
            log_end,
            epoch_start: log_end,
            high_watermark: high_watermark.min(log_end),
        }
    }

    /// The leader epoch this state belongs to.
    pub fn epoch(&self) -> LeaderEpoch {
        self.epoch
    }

    /// The committed ISR.
    pub fn isr(&self) -> &BTreeSet<NodeId> {
        &self.isr
    }

    /// The ISR proposed to the controller and not yet decided, if any.
    pub fn proposed_isr(&self) -> Option<&BTreeSet<NodeId>> {
        self.proposed.as_ref()
    }

    /// Offsets below it are on every member of the (maximal) ISR.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The leader's log end offset.
    pub fn log_end(&self) -> Offset {
        self.log_end
    }

    /// A follower's log end offset as its last fetch said (`-1` before its first fetch).
    pub fn follower_end(&self, node: NodeId) -> Option<Offset> {
        self.followers.get(&node).map(|f| f.end)
    }

    /// Followers whose log end is behind the leader's, with how far (for lag metrics and
    /// under-replication).
    pub fn lag(&self) -> BTreeMap<NodeId, i64> {
        self.followers
            .iter()
            .map(|(n, f)| (*n, self.log_end.get() - f.end.get().max(0)))
            .collect()
    }

    /// Whether an acks=all write may be appended now.
    pub fn check_min_insync(&self) -> Result<(), NotEnoughReplicas> {
        if self.isr.len() < self.config.min_insync {
            return Err(NotEnoughReplicas {
                isr: self.isr.len(),
                min_insync: self.config.min_insync,
            });
        }
        Ok(())
    }

    /// Whether an acks=all write whose last record is at `last_offset` is done: `None` while
    /// the high watermark is not past it; then `Ok`, or an error when the ISR shrank below
    /// `min_insync` after the append (Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    pub fn acks_all_status(&self, last_offset: Offset) -> Option<Result<(), NotEnoughReplicas>> {
        if self.high_watermark <= last_offset {
            return None;
        }
        let isr = self.maximal_isr().len();
        if isr < self.config.min_insync {
            return Some(Err(NotEnoughReplicas {
                isr,
                min_insync: self.config.min_insync,
            }));
        }
        Some(Ok(()))
    }

    /// The leader appended up to `log_end`.
    pub fn on_append(&mut self, log_end: Offset) -> Outcome {
        debug_assert!(log_end >= self.log_end, "the log end moved back");
        self.log_end = self.log_end.max(log_end);
        Outcome {
            high_watermark: self.advance_high_watermark(),
            propose_isr: None,
        }
    }

    /// `node` fetched from `fetch_offset` at `now`.
    pub fn on_fetch(
        &mut self,
        node: NodeId,
        fetch_offset: Offset,
        now: Instant,
    ) -> Result<Outcome, FetchRefused> {
        if fetch_offset > self.log_end {
            return Err(FetchRefused::AheadOfLeader {
                fetch_offset,
                log_end: self.log_end,
            });
        }
        let log_end = self.log_end;
        let Some(follower) = self.followers.get_mut(&node) else {
            return Err(FetchRefused::NotReplica {
                node,
                replicas: self.replicas.clone(),
            });
        };
        follower.end = fetch_offset;
        if fetch_offset >= log_end {
            follower.caught_up_at = now;
        } else if let Some((at, leader_end_then)) = follower.last_fetch
            && fetch_offset >= leader_end_then
        {
            follower.caught_up_at = follower.caught_up_at.max(at);
        }
        follower.last_fetch = Some((now, log_end));
        let mut outcome = Outcome::default();
        let wanted = self.wanted_isr();
        if !wanted.contains(&node)
            && fetch_offset >= self.high_watermark
            && fetch_offset >= self.epoch_start
        {
            let mut grown = wanted;
            grown.insert(node);
            outcome.propose_isr = self.propose(grown);
        }
        outcome.high_watermark = self.advance_high_watermark();
        Ok(outcome)
    }

    /// Drops ISR members that have not caught up for `replica_lag_max`.
    pub fn on_tick(&mut self, now: Instant) -> Outcome {
        let lag_max = self.config.replica_lag_max;
        let wanted = self.wanted_isr();
        let shrunk: BTreeSet<NodeId> = wanted
            .iter()
            .copied()
            .filter(|n| {
                *n == self.node
                    || self
                        .followers
                        .get(n)
                        .is_some_and(|f| now.saturating_duration_since(f.caught_up_at) <= lag_max)
            })
            .collect();
        let mut outcome = Outcome::default();
        if shrunk != wanted {
            outcome.propose_isr = self.propose(shrunk);
        }
        outcome
    }

    /// The controller committed `isr` for this epoch (ours or one changed by the controller
    /// itself, as when a broker is fenced).
    pub fn on_isr_committed(&mut self, isr: BTreeSet<NodeId>) -> Outcome {
        if self.proposed.as_ref() == Some(&isr) {
            self.proposed = None;
        }
        self.isr = isr;
        Outcome {
            high_watermark: self.advance_high_watermark(),
            propose_isr: None,
        }
    }

    /// The controller changed the replica list in this epoch (a reassignment): replicas being
    /// added are tracked from `now` like followers at the start of an epoch (outside the ISR
    /// until they catch up), removed ones are forgotten. The ISR comes separately.
    pub fn on_replicas_changed(&mut self, replicas: &[NodeId], now: Instant) {
        if replicas == self.replicas {
            return;
        }
        self.followers
            .retain(|n, _| replicas.contains(n) && *n != self.node);
        for &n in replicas {
            if n != self.node {
                self.followers.entry(n).or_insert(Follower {
                    end: Offset(-1),
                    caught_up_at: now,
                    last_fetch: None,
                });
            }
        }
        self.replicas = replicas.to_vec();
    }

    /// The controller refused the proposal (a newer epoch exists, or the ISR changed under
    /// it): forget it; the next fetch or tick proposes again if still needed.
    pub fn on_isr_rejected(&mut self) {
        self.proposed = None;
    }

    /// The ISR wanted next: the pending proposal, else the committed ISR.
    fn wanted_isr(&self) -> BTreeSet<NodeId> {
        self.proposed.clone().unwrap_or_else(|| self.isr.clone())
    }

    fn propose(&mut self, isr: BTreeSet<NodeId>) -> Option<BTreeSet<NodeId>> {
        if isr == self.isr {
            self.proposed = None;
            return None;
        }
        self.proposed = Some(isr.clone());
        Some(isr)
    }

    /// Committed and proposed members together: a shrink takes effect only once committed.
    fn maximal_isr(&self) -> BTreeSet<NodeId> {
        let mut all = self.isr.clone();
        if let Some(p) = &self.proposed {
            all.extend(p.iter().copied());
        }
        all
    }

    fn advance_high_watermark(&mut self) -> Option<Offset> {
        let candidate = self
            .maximal_isr()
            .iter()
            .map(|n| {
                if *n == self.node {
                    self.log_end
                } else {
                    // A member that has not fetched in this epoch yet holds nothing we know of.
                    self.followers
                        .get(n)
                        .map_or(Offset(0), |f| f.end.max(Offset(0)))
                }
            })
            .min()
            .unwrap_or(self.log_end);
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            Some(candidate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: Duration = Duration::from_secs(10);

    fn set(nodes: &[NodeId]) -> BTreeSet<NodeId> {
        nodes.iter().copied().collect()
    }

    fn leader(isr: &[NodeId], log_end: i64, now: Instant) -> LeaderState {
        LeaderState::new(
            1,
            LeaderEpoch(3),
            ReplicationConfig {
                replica_lag_max: LAG,
                min_insync: 2,
            },
            vec![1, 2, 3],
            set(isr),
            Offset(log_end),
            Offset(0),
            now,
        )
    }

    #[test]
    fn a_replica_added_in_the_epoch_joins_the_isr_once_caught_up_and_a_removed_one_cannot_fetch() {
        let t0 = Instant::now();
        let mut l = LeaderState::new(
            1,
            LeaderEpoch(3),
            ReplicationConfig {
                replica_lag_max: Duration::from_secs(10),
                min_insync: 1,
            },
            vec![1, 2],
            set(&[1, 2]),
            Offset(10),
            Offset(10),
            t0,
        );
        assert_eq!(
            l.on_fetch(4, Offset(0), t0),
            Err(FetchRefused::NotReplica {
                node: 4,
                replicas: vec![1, 2]
            })
        );
        l.on_replicas_changed(&[4, 1, 2], t0);
        assert_eq!(l.follower_end(4), Some(Offset(-1)));
        // Behind the high watermark: tracked, not in sync.
        let outcome = l.on_fetch(4, Offset(5), t0).unwrap();
        assert_eq!(outcome.propose_isr, None);
        let outcome = l.on_fetch(4, Offset(10), t0).unwrap();
        assert_eq!(outcome.propose_isr, Some(set(&[1, 2, 4])));
        l.on_isr_committed(set(&[1, 2, 4]));
        // The move completes: 2 is gone from the replicas and from the ISR.
        l.on_replicas_changed(&[4, 1], t0);
        l.on_isr_committed(set(&[1, 4]));
        assert_eq!(l.follower_end(2), None);
        assert!(matches!(
            l.on_fetch(2, Offset(10), t0),
            Err(FetchRefused::NotReplica { node: 2, .. })
        ));
        assert_eq!(l.lag(), BTreeMap::from([(4, 0)]));
    }

    #[test]
    fn the_high_watermark_is_the_slowest_isr_member_and_never_moves_back() {
        let t = Instant::now();
        let mut l = leader(&[1, 2, 3], 0, t);
        assert_eq!(l.on_append(Offset(10)).high_watermark, None);
        assert_eq!(l.on_fetch(2, Offset(10), t).unwrap().high_watermark, None);
        assert_eq!(
            l.on_fetch(3, Offset(4), t).unwrap().high_watermark,
            Some(Offset(4))
        );
        assert_eq!(
            l.on_fetch(3, Offset(10), t).unwrap().high_watermark,
            Some(Offset(10))
        );
        // A follower that restarted with less fetches lower: the high watermark stays.
        assert_eq!(l.on_fetch(3, Offset(6), t).unwrap().high_watermark, None);
        assert_eq!(l.high_watermark(), Offset(10));
        assert_eq!(l.lag(), BTreeMap::from([(2, 0), (3, 4)]));
    }

    #[test]
    fn a_follower_that_stops_catching_up_is_dropped_after_the_lag_time() {
        let t = Instant::now();
        let mut l = leader(&[1, 2, 3], 10, t);
        l.on_fetch(2, Offset(10), t).unwrap();
        l.on_fetch(3, Offset(10), t).unwrap();
        l.on_append(Offset(20));
        // Node 2 keeps up; node 3 fetches but never reaches the leader's end.
        let mut now = t;
        for step in 1..=5 {
            now = t + Duration::from_secs(3 * step);
            l.on_append(Offset(20 + 10 * step as i64));
            l.on_fetch(2, l.log_end(), now).unwrap();
            l.on_fetch(3, Offset(10 + step as i64), now).unwrap();
            let outcome = l.on_tick(now);
            if now.duration_since(t) <= LAG {
                assert_eq!(outcome.propose_isr, None, "at {step}");
            } else {
                assert_eq!(outcome.propose_isr, Some(set(&[1, 2])), "at {step}");
                break;
            }
        }
        // Until the controller commits, the high watermark still waits for node 3.
        assert_eq!(l.high_watermark(), Offset(14));
        assert_eq!(l.on_tick(now).propose_isr, None, "proposed once");
        let outcome = l.on_isr_committed(set(&[1, 2]));
        assert_eq!(outcome.high_watermark, Some(l.log_end()));
        assert_eq!(l.proposed_isr(), None);
    }

    #[test]
    fn a_follower_catching_up_to_the_previous_fetchs_end_counts_as_caught_up() {
        let t = Instant::now();
        let mut l = leader(&[1, 2], 100, t);
        // Every fetch reaches what the leader had at the previous fetch, never its end now.
        for step in 1..=10u64 {
            let now = t + Duration::from_secs(2 * step);
            let before = l.log_end();
            l.on_append(Offset(before.get() + 5));
            l.on_fetch(2, before, now).unwrap();
            assert_eq!(l.on_tick(now).propose_isr, None, "at {step}");
        }
    }

    #[test]
    fn a_follower_rejoins_once_it_holds_the_high_watermark_and_the_epoch_start() {
        let t = Instant::now();
        let mut l = leader(&[1, 2], 50, t);
        l.on_fetch(2, Offset(50), t).unwrap();
        l.on_append(Offset(60));
        l.on_fetch(2, Offset(60), t).unwrap();
        assert_eq!(l.high_watermark(), Offset(60));
        // Node 3 is behind the epoch start (50) and the high watermark.
        assert_eq!(l.on_fetch(3, Offset(40), t).unwrap().propose_isr, None);
        assert_eq!(l.on_fetch(3, Offset(55), t).unwrap().propose_isr, None);
        let outcome = l.on_fetch(3, Offset(60), t).unwrap();
        assert_eq!(outcome.propose_isr, Some(set(&[1, 2, 3])));
        // Proposed, not committed: the high watermark counts node 3 already.
        l.on_append(Offset(70));
        l.on_fetch(2, Offset(70), t).unwrap();
        assert_eq!(l.high_watermark(), Offset(60));
        l.on_isr_rejected();
        assert_eq!(l.proposed_isr(), None);
        assert_eq!(
            l.on_fetch(3, Offset(70), t).unwrap(),
            Outcome {
                high_watermark: Some(Offset(70)),
                propose_isr: Some(set(&[1, 2, 3]))
            }
        );
        l.on_isr_committed(set(&[1, 2, 3]));
        assert_eq!(l.isr(), &set(&[1, 2, 3]));
    }

    #[test]
    fn min_insync_and_bad_fetches_are_refused_with_the_numbers() {
        let t = Instant::now();
        let mut l = leader(&[1], 5, t);
        let err = l.check_min_insync().unwrap_err();
        assert_eq!(
            err.to_string(),
            "1 in-sync replicas, min.insync.replicas is 2"
        );
        assert_eq!(
            l.on_fetch(2, Offset(6), t).unwrap_err().to_string(),
            "fetch offset 6 is beyond the leader's log end 5"
        );
        assert_eq!(
            l.on_fetch(9, Offset(0), t).unwrap_err().to_string(),
            "broker 9 is not a replica of this partition (replicas [1, 2, 3])"
        );
        // With only the leader in the ISR, appends commit at once, but an acks=all write
        // appended before the ISR shrank fails rather than counting as replicated.
        assert_eq!(l.acks_all_status(Offset(6)), None);
        assert_eq!(l.on_append(Offset(8)).high_watermark, Some(Offset(8)));
        assert_eq!(
            l.acks_all_status(Offset(6)),
            Some(Err(NotEnoughReplicas {
                isr: 1,
                min_insync: 2
            }))
        );
        assert_eq!(l.acks_all_status(Offset(8)), None);
        l.on_fetch(2, Offset(8), t).unwrap();
        l.on_isr_committed(set(&[1, 2]));
        assert_eq!(l.check_min_insync(), Ok(()));
        assert_eq!(l.acks_all_status(Offset(7)), Some(Ok(())));
    }
}
