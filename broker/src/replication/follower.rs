//! A follower's first step under a new leader: find where its log diverged from the
//! leader's, by leader epoch (Kafka KIP-101 with KIP-279's repeated questions).
//!
//! The follower asks the leader where its own newest epoch ended there. The answer names
//! the largest epoch the leader has that is not newer, and where that epoch ended on the
//! leader:
//! - the same epoch: everything the follower holds beyond that end offset diverged;
//! - an older epoch the follower also has: both logs agree up to the smaller of the two
//!   ends of that epoch;
//! - an older epoch the follower lacks: the follower asks again about its newest epoch
//!   before that one;
//! - nothing that old: the logs share no epoch the leader knows, so the follower keeps only
//!   what was committed (its high watermark).

use brook_proto::{LeaderEpoch, Offset};

use super::epoch_cache::{EpochCache, EpochEnd};

/// The next step of a follower finding its divergence point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// Truncate the log to this offset, then fetch from there.
    TruncateTo(Offset),
    /// Ask the leader where this epoch ended.
    Ask(LeaderEpoch),
}

/// The first question: the follower's newest epoch, or, with an empty cache, no question
/// (the log is empty or holds nothing stamped: fetch from its end).
pub fn first_question(own: &EpochCache, own_end: Offset) -> Divergence {
    match own.latest() {
        Some(entry) => Divergence::Ask(entry.epoch),
        None => Divergence::TruncateTo(own_end),
    }
}

/// What to do with the leader's `answer` to the question about `asked`, given the follower's
/// cache, log end and high watermark.
pub fn resolve(
    own: &EpochCache,
    own_end: Offset,
    own_high_watermark: Offset,
    asked: LeaderEpoch,
    answer: EpochEnd,
) -> Divergence {
    if answer.epoch == LeaderEpoch::UNKNOWN {
        return Divergence::TruncateTo(own_high_watermark.min(own_end));
    }
    if answer.epoch == asked {
        return Divergence::TruncateTo(answer.end_offset.min(own_end));
    }
    let mine = own.end_offset_for(answer.epoch, own_end);
    if mine.epoch == answer.epoch {
        Divergence::TruncateTo(mine.end_offset.min(answer.end_offset).min(own_end))
    } else if mine.epoch == LeaderEpoch::UNKNOWN {
        Divergence::TruncateTo(own_high_watermark.min(own_end))
    } else {
        Divergence::Ask(mine.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::new();
        for (e, o) in entries {
            c.assign(LeaderEpoch(*e), Offset(*o)).unwrap();
        }
        c
    }

    /// Runs the question-answer loop between a follower and a leader.
    fn diverge(
        follower: &EpochCache,
        follower_end: i64,
        follower_hw: i64,
        leader: &EpochCache,
        leader_end: i64,
    ) -> Offset {
        let mut step = first_question(follower, Offset(follower_end));
        for _ in 0..10 {
            match step {
                Divergence::TruncateTo(offset) => return offset,
                Divergence::Ask(epoch) => {
                    let answer = leader.end_offset_for(epoch, Offset(leader_end));
                    step = resolve(
                        follower,
                        Offset(follower_end),
                        Offset(follower_hw),
                        epoch,
                        answer,
                    );
                }
            }
        }
        panic!("no answer after 10 questions");
    }

    #[test]
    fn a_follower_with_the_leaders_prefix_keeps_everything() {
        let leader = cache(&[(1, 0), (2, 10)]);
        assert_eq!(
            diverge(&cache(&[(1, 0), (2, 10)]), 15, 12, &leader, 20),
            Offset(15)
        );
        assert_eq!(diverge(&cache(&[(1, 0)]), 8, 8, &leader, 20), Offset(8));
    }

    #[test]
    fn a_tail_written_by_a_deposed_leader_is_cut_at_the_epochs_end() {
        // The follower led epoch 2 and wrote 10..18; the new leader has epoch 2 only to 14,
        // then its own epoch 3.
        let leader = cache(&[(1, 0), (2, 10), (3, 14)]);
        let follower = cache(&[(1, 0), (2, 10)]);
        assert_eq!(diverge(&follower, 18, 12, &leader, 30), Offset(14));
    }

    #[test]
    fn an_epoch_the_leader_never_saw_is_cut_where_the_older_one_ended() {
        // The follower wrote epoch 3 at 10..16 as a leader nobody followed; the leader went
        // from epoch 2 straight to epoch 4 at offset 12.
        let leader = cache(&[(1, 0), (2, 5), (4, 12)]);
        let follower = cache(&[(1, 0), (2, 5), (3, 10)]);
        assert_eq!(diverge(&follower, 16, 9, &leader, 20), Offset(10));
    }

    #[test]
    fn an_older_epoch_the_follower_lacks_leads_to_a_second_question() {
        // The leader answers epoch 2, which the follower never had: it asks about epoch 1.
        let leader = cache(&[(1, 0), (2, 6), (5, 9)]);
        let follower = cache(&[(1, 0), (3, 8)]);
        assert_eq!(
            first_question(&follower, Offset(12)),
            Divergence::Ask(LeaderEpoch(3))
        );
        let answer = leader.end_offset_for(LeaderEpoch(3), Offset(20));
        assert_eq!(
            resolve(&follower, Offset(12), Offset(4), LeaderEpoch(3), answer),
            Divergence::Ask(LeaderEpoch(1))
        );
        assert_eq!(diverge(&follower, 12, 4, &leader, 20), Offset(6));
    }

    #[test]
    fn nothing_in_common_keeps_the_committed_part_and_an_empty_cache_fetches_at_its_end() {
        let leader = cache(&[(7, 100)]);
        assert_eq!(diverge(&cache(&[(2, 0)]), 40, 30, &leader, 150), Offset(30));
        assert_eq!(diverge(&EpochCache::new(), 0, 0, &leader, 150), Offset(0));
    }
}
