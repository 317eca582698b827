//! Partition replication, Kafka's protocol: followers pull from the leader, the leader keeps
//! the ISR and the high watermark, batches carry leader epochs and a follower of a new leader
//! truncates by epoch before it fetches.
//!
//! The logic is pure, driven by events and tested on its own and in a seeded simulation:
//! - [`epoch_cache`]: each partition's leader epochs and where they start, persisted as the
//!   `leader-epoch-checkpoint` file;
//! - [`leader`]: the leader's view of its followers, the ISR and the high watermark;
//! - [`follower`]: a follower finding where its log diverged from a new leader's.

pub mod epoch_cache;
pub mod follower;
pub mod leader;
#[cfg(test)]
mod sim;

pub use epoch_cache::{EPOCH_CHECKPOINT_FILE, EpochCache, EpochEnd, EpochEntry};
pub use follower::Divergence;
pub use leader::{
    FetchRefused, LeaderState, NodeId, NotEnoughReplicas, Outcome, ReplicationConfig,
};
