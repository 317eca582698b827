//! [`OffsetTracker`]: which source positions may be committed, given that the destination
//! acknowledges records out of order.
//!
//! Records of one source partition are read in offset order but may be acknowledged in any
//! order (they can go to different destination partitions). A position may be committed only
//! when every record before it was acknowledged, so the tracker keeps, per partition, the
//! records in flight in read order and commits up to the first one still unacknowledged.
//!
//! When the source delivers a partition again from an earlier offset (a rebalance, or a
//! restart of the reader), the partition starts a new *generation*: what was in flight is
//! forgotten, and acknowledgements for the old generation are ignored. Either way nothing is
//! lost: the forgotten records are read again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A source partition: topic and partition number.
pub type SourcePartition = (Arc<str>, u32);

/// A record in flight: its partition, the partition's generation when it was read, and its
/// offset. Handed back to [`OffsetTracker::ack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The source partition.
    pub partition: SourcePartition,
    /// The partition's generation when the record was read.
    pub generation: u64,
    /// The record's source offset.
    pub offset: i64,
}

#[derive(Debug, Default)]
struct PartitionTrack {
    generation: u64,
    /// Offsets in flight in read order, with whether each was acknowledged.
    pending: VecDeque<(i64, bool)>,
    /// The next offset to read, as far as the tracker saw.
    next: Option<i64>,
    /// Everything before this is acknowledged (and may be committed).
    committable: Option<i64>,
    /// The last position handed out by [`OffsetTracker::to_commit`].
    committed: Option<i64>,
}

/// Per source partition, the records in flight and the position that may be committed.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<SourcePartition, PartitionTrack>,
    in_flight: usize,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new() -> OffsetTracker {
        OffsetTracker::default()
    }

    /// Records read and not yet acknowledged or forgotten.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Notes that the record at `offset` of `partition` was read and is on its way; returns
    /// its ticket. An offset at or below one already read starts a new generation.
    pub fn read(&mut self, partition: &SourcePartition, offset: i64) -> Ticket {
        let track = self.partitions.entry(partition.clone()).or_default();
        if track.next.is_some_and(|next| offset < next) {
            track.generation += 1;
            self.in_flight -= track.pending.iter().filter(|(_, acked)| !acked).count();
            track.pending.clear();
            track.committable = None;
        }
        track.pending.push_back((offset, false));
        track.next = Some(offset + 1);
        self.in_flight += 1;
        Ticket {
            partition: partition.clone(),
            generation: track.generation,
            offset,
        }
    }

    /// Notes that the destination acknowledged the ticket's record. Returns `false` (and
    /// changes nothing) for a ticket of an older generation or one not in flight.
    pub fn ack(&mut self, ticket: &Ticket) -> bool {
        let Some(track) = self.partitions.get_mut(&ticket.partition) else {
            return false;
        };
        if track.generation != ticket.generation {
            return false;
        }
        let Ok(i) = track
            .pending
            .binary_search_by_key(&ticket.offset, |(offset, _)| *offset)
        else {
            return false;
        };
        if track.pending[i].1 {
            return false;
        }
        track.pending[i].1 = true;
        self.in_flight -= 1;
        while let Some(&(offset, true)) = track.pending.front() {
            track.pending.pop_front();
            track.committable = Some(offset + 1);
        }
        true
    }

    /// Forgets a partition the reader no longer holds (what was in flight will be read
    /// again by its next owner).
    pub fn forget(&mut self, partition: &SourcePartition) {
        if let Some(track) = self.partitions.remove(partition) {
            self.in_flight -= track.pending.iter().filter(|(_, acked)| !acked).count();
        }
    }

    /// Positions (next offset to read) that advanced since the last call: every record
    /// before each was acknowledged.
    pub fn to_commit(&mut self) -> Vec<(SourcePartition, i64)> {
        let mut out = Vec::new();
        for (partition, track) in &mut self.partitions {
            if let Some(position) = track.committable
                && track.committed != Some(position)
            {
                track.committed = Some(position);
                out.push((partition.clone(), position));
            }
        }
        out
    }

    /// Marks positions as not committed after all (the commit failed), so the next
    /// [`OffsetTracker::to_commit`] hands them out again.
    pub fn commit_failed(&mut self, positions: &[(SourcePartition, i64)]) {
        for (partition, position) in positions {
            if let Some(track) = self.partitions.get_mut(partition)
                && track.committed == Some(*position)
            {
                track.committed = None;
            }
        }
    }

    /// The next offset to read of every partition seen, for lag.
    pub fn next_offsets(&self) -> Vec<(SourcePartition, i64)> {
        self.partitions
            .iter()
            .filter_map(|(p, t)| t.next.map(|n| (p.clone(), n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u32) -> SourcePartition {
        (Arc::from("t"), n)
    }

    #[test]
    fn commits_only_the_acknowledged_prefix() {
        let mut t = OffsetTracker::new();
        let tickets: Vec<Ticket> = (10..15).map(|o| t.read(&p(0), o)).collect();
        assert_eq!(t.in_flight(), 5);
        assert!(t.ack(&tickets[1]));
        assert!(t.ack(&tickets[3]));
        assert_eq!(t.to_commit(), vec![]);
        assert!(t.ack(&tickets[0]));
        assert_eq!(t.to_commit(), vec![(p(0), 12)]);
        assert_eq!(t.to_commit(), vec![], "nothing new");
        assert!(t.ack(&tickets[2]));
        assert!(t.ack(&tickets[4]));
        assert_eq!(t.to_commit(), vec![(p(0), 15)]);
        assert_eq!(t.in_flight(), 0);
        assert!(!t.ack(&tickets[4]), "a second ack changes nothing");
    }

    #[test]
    fn partitions_advance_independently() {
        let mut t = OffsetTracker::new();
        let a = t.read(&p(0), 0);
        let b = t.read(&p(1), 7);
        let c = t.read(&p(1), 8);
        t.ack(&c);
        t.ack(&a);
        assert_eq!(t.to_commit(), vec![(p(0), 1)]);
        t.ack(&b);
        assert_eq!(t.to_commit(), vec![(p(1), 9)]);
        assert_eq!(t.next_offsets(), vec![(p(0), 1), (p(1), 9)]);
    }

    #[test]
    fn offsets_with_gaps_commit_past_the_gap() {
        // Compacted or transactional sources skip offsets.
        let mut t = OffsetTracker::new();
        let a = t.read(&p(0), 3);
        let b = t.read(&p(0), 9);
        t.ack(&b);
        t.ack(&a);
        assert_eq!(t.to_commit(), vec![(p(0), 10)]);
    }

    #[test]
    fn a_rewind_starts_a_new_generation_and_ignores_old_acks() {
        let mut t = OffsetTracker::new();
        let old: Vec<Ticket> = (0..4).map(|o| t.read(&p(0), o)).collect();
        t.ack(&old[0]);
        assert_eq!(t.to_commit(), vec![(p(0), 1)]);
        // The source delivers again from offset 1.
        let new = t.read(&p(0), 1);
        assert_eq!(new.generation, 1);
        assert_eq!(
            t.in_flight(),
            1,
            "the old generation's records are forgotten"
        );
        assert!(!t.ack(&old[1]), "old generation");
        assert_eq!(t.to_commit(), vec![]);
        assert!(t.ack(&new));
        assert_eq!(t.to_commit(), vec![(p(0), 2)]);
    }

    #[test]
    fn a_failed_commit_is_handed_out_again() {
        let mut t = OffsetTracker::new();
        let a = t.read(&p(0), 0);
        t.ack(&a);
        let positions = t.to_commit();
        assert_eq!(positions, vec![(p(0), 1)]);
        t.commit_failed(&positions);
        assert_eq!(t.to_commit(), vec![(p(0), 1)]);
    }

    #[test]
    fn forgetting_a_partition_drops_its_records() {
        let mut t = OffsetTracker::new();
        let a = t.read(&p(0), 0);
        t.read(&p(0), 1);
        t.read(&p(1), 0);
        t.forget(&p(0));
        assert_eq!(t.in_flight(), 1);
        assert!(!t.ack(&a));
        assert_eq!(t.to_commit(), vec![]);
    }
}
