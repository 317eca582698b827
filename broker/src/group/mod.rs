//! Consumer groups: membership, server-side assignment, and the heartbeat protocol in the
//! style of Kafka's KIP-848, as pure state machines (events in, answers out) that a
//! coordinator drives.
//!
//! ```text
//! heartbeat(member, epoch, topics, owned) ─► ConsumerGroup
//!     ├─ membership/subscription changed? ─► group epoch + 1 ─► assignor ─► target
//!     └─ reconcile this member: release first (shrunk assignment), then grant free partitions
//! expire(now) ─► evict members past session / rebalance timeout ─► their partitions free
//! ```
//!
//! - [`assignor`]: range and uniform (sticky) assignors;
//! - [`ConsumerGroup`]: one group's members, epochs and reconciliation;
//! - [`Coordinator`]: every group of the broker, with commits fenced by member epoch;
//! - [`OffsetStore`]: committed offsets in the internal topic `__consumer_offsets`.

pub mod assignor;
mod consumer_group;
mod coordinator;
pub mod offset_store;

pub use assignor::{Assignor, MemberSubscription};
pub use consumer_group::{
    ConsumerGroup, Eviction, GroupConfig, GroupError, Heartbeat, HeartbeatResponse,
};
pub(crate) use coordinator::check_group_id;
pub use coordinator::{CommitError, Coordinator, GroupDescription};
pub use offset_store::{Committed, OFFSETS_TOPIC, OffsetStore, OffsetStoreError};

use std::fmt;

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
