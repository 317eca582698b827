//! One partition of a topic on this broker: its log, this broker's replication role for it,
//! and the high watermark consumers may read up to.
//!
//! Roles:
//! - **alone** (a broker without a cluster, and internal topics): the only replica, so the
//!   high watermark is the log end;
//! - **leader** in an epoch: a [`LeaderState`] tracks the followers and moves the high
//!   watermark; batches are stamped with the epoch;
//! - **follower** of a leader in an epoch: a fetcher copies the leader's log, and the high
//!   watermark is the leader's, capped at the local log end;
//! - **none**: offline, or not a replica. Neither reads nor writes are served.

use std::collections::BTreeSet;
use std::time::Instant;

use brook_proto::v1::ErrorCode;
use brook_proto::{LeaderEpoch, Offset};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::log::Log;
use crate::replication::{
    FetchRefused, LeaderState, NodeId, NotEnoughReplicas, Outcome, ReplicationConfig,
};

/// This broker's part in replicating one partition.
#[derive(Debug)]
enum Role {
    Alone,
    Leader {
        state: Box<LeaderState>,
        /// The partition epoch the controller's ISR was last seen at (AlterIsr names it).
        partition_epoch: i32,
    },
    Follower {
        leader: NodeId,
        epoch: LeaderEpoch,
        /// Stops this role's fetcher.
        stop: CancellationToken,
    },
    None,
}

/// An ISR change the leader asks the controller for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    /// The leader's epoch.
    pub leader_epoch: i32,
    /// The partition epoch the proposal is built on.
    pub partition_epoch: i32,
    /// The ISR wanted.
    pub isr: BTreeSet<NodeId>,
}

/// A partition this broker holds.
#[derive(Debug)]
pub struct Partition {
    topic: String,
    id: u32,
    log: Log,
    role: Mutex<Role>,
    high_watermark: watch::Sender<i64>,
    /// Shared by every writer of the log while it checks its role and queues its write (a
    /// produce, a follower's fetcher), held alone by [`Partition::clear`]: once the role is
    /// gone, nothing more is written after the log is emptied.
    writes: tokio::sync::RwLock<()>,
}

impl Partition {
    /// A partition `alone` (no cluster, or an internal topic), or, for a cluster topic,
    /// without a role until the cluster metadata gives it one.
    pub(crate) fn new(topic: String, id: u32, log: Log, alone: bool) -> Self {
        let (high_watermark, _) = watch::channel(0);
        Partition {
            topic,
            id,
            log,
            role: Mutex::new(if alone { Role::Alone } else { Role::None }),
            high_watermark,
            writes: tokio::sync::RwLock::new(()),
        }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The partition's log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Offsets below this are committed and visible to consumers.
    pub fn high_watermark(&self) -> Offset {
        match &*self.role.lock() {
            Role::Alone => self.log.end_offset(),
            _ => Offset(*self.high_watermark.borrow()),
        }
    }

    /// Changes whenever the visible end (the high watermark) may have moved.
    pub fn subscribe_visible(&self) -> watch::Receiver<i64> {
        match &*self.role.lock() {
            Role::Alone => self.log.subscribe_end(),
            _ => self.high_watermark.subscribe(),
        }
    }

    /// The epoch to stamp a produced batch with, when this broker may take writes.
    pub fn produce_epoch(&self) -> Result<LeaderEpoch, (ErrorCode, String)> {
        match &*self.role.lock() {
            Role::Alone => Ok(LeaderEpoch(0)),
            Role::Leader { state, .. } => Ok(state.epoch()),
            _ => Err(self.not_leader()),
        }
    }

    fn not_leader(&self) -> (ErrorCode, String) {
        (
            ErrorCode::NotLeader,
            format!("this broker does not lead {}-{}", self.topic, self.id),
        )
    }

    /// Whether an acks=all write may be appended now (`min.insync.replicas`).
    pub fn check_min_insync(&self) -> Result<(), NotEnoughReplicas> {
        match &*self.role.lock() {
            Role::Leader { state, .. } => state.check_min_insync(),
            _ => Ok(()),
        }
    }

    /// Whether an acks=all write ending at `last_offset` is acknowledged: `None` while the
    /// high watermark has not passed it.
    pub fn acks_all_status(&self, last_offset: Offset) -> Option<Result<(), NotEnoughReplicas>> {
        match &*self.role.lock() {
            Role::Leader { state, .. } => state.acks_all_status(last_offset),
            Role::Alone => Some(Ok(())),
            _ => None,
        }
    }

    /// Waits until an acks=all write appended in leader epoch `epoch` and ending at `last` is
    /// acknowledged: the high watermark has passed it (every in-sync replica holds it). Fails
    /// when the ISR fell below `min.insync.replicas` or this broker lost the leadership.
    pub async fn wait_replicated(
        &self,
        last: Offset,
        epoch: LeaderEpoch,
    ) -> Result<(), (ErrorCode, String)> {
        let mut visible = self.subscribe_visible();
        loop {
            match self.acks_all_status(last) {
                Some(Ok(())) => return Ok(()),
                Some(Err(e)) => {
                    return Err((
                        ErrorCode::NotEnoughReplicas,
                        format!("after the append: {e}"),
                    ));
                }
                None => {}
            }
            if visible.changed().await.is_err() || self.produce_epoch() != Ok(epoch) {
                return Err((
                    ErrorCode::NotLeader,
                    "this broker lost the partition's leadership before the write was replicated"
                        .into(),
                ));
            }
        }
    }

    /// Appends `batch` as the leader (or alone) and waits until it is replicated to every
    /// in-sync replica, as an acks=all produce does: for the broker's own writes (committed
    /// offsets). `epoch` is the leader epoch the caller checked its right to write in.
    pub async fn append_replicated(
        &self,
        batch: bytes::Bytes,
        epoch: LeaderEpoch,
    ) -> Result<Offset, (ErrorCode, String)> {
        let writes = self.lock_writes().await;
        if self.produce_epoch()? != epoch {
            return Err(self.not_leader());
        }
        self.check_min_insync()
            .map_err(|e| (ErrorCode::NotEnoughReplicas, e.to_string()))?;
        let info = (self.log.append(batch, epoch).await)
            .map_err(|e| (ErrorCode::StorageError, e.to_string()))?;
        drop(writes);
        self.on_append();
        self.wait_replicated(info.last_offset, epoch).await?;
        Ok(info.last_offset)
    }

    /// The leader appended up to the log end: move the high watermark if it can.
    pub fn on_append(&self) {
        let log_end = self.log.end_offset();
        let mut role = self.role.lock();
        if let Role::Leader { state, .. } = &mut *role {
            let outcome = state.on_append(log_end);
            self.publish(&outcome);
        }
    }

    /// Follower `node` fetched from `fetch_offset` believing the leader epoch is
    /// `epoch`. Returns an ISR proposal to make, if any.
    pub fn on_replica_fetch(
        &self,
        node: NodeId,
        fetch_offset: Offset,
        epoch: Option<i32>,
    ) -> Result<Option<IsrProposal>, (ErrorCode, String)> {
        let mut role = self.role.lock();
        let Role::Leader {
            state,
            partition_epoch,
        } = &mut *role
        else {
            return Err(self.not_leader());
        };
        check_epoch(&self.topic, self.id, state.epoch(), epoch)?;
        // The log may hold appends whose produce requests have not reported back yet; a
        // follower that already copied them must not look ahead of the leader.
        let appended = state.on_append(self.log.end_offset());
        self.publish(&appended);
        let outcome = state
            .on_fetch(node, fetch_offset, Instant::now())
            .map_err(|e| match e {
                FetchRefused::AheadOfLeader { .. } => (ErrorCode::OffsetOutOfRange, e.to_string()),
                FetchRefused::NotReplica { .. } => (ErrorCode::InvalidRequest, e.to_string()),
            })?;
        self.publish(&outcome);
        Ok(outcome.propose_isr.map(|isr| IsrProposal {
            leader_epoch: state.epoch().0,
            partition_epoch: *partition_epoch,
            isr,
        }))
    }

    /// Checks a fetcher's view of the leader epoch against this leader's.
    pub fn check_leader_epoch(&self, epoch: Option<i32>) -> Result<(), (ErrorCode, String)> {
        match &*self.role.lock() {
            Role::Leader { state, .. } => check_epoch(&self.topic, self.id, state.epoch(), epoch),
            Role::Alone => Ok(()),
            _ => Err(self.not_leader()),
        }
    }

    /// Drops lagging followers from the ISR: the proposal to make, if any.
    pub fn on_tick(&self, now: Instant) -> Option<IsrProposal> {
        let mut role = self.role.lock();
        let Role::Leader {
            state,
            partition_epoch,
        } = &mut *role
        else {
            return None;
        };
        let outcome = state.on_tick(now);
        self.publish(&outcome);
        outcome.propose_isr.map(|isr| IsrProposal {
            leader_epoch: state.epoch().0,
            partition_epoch: *partition_epoch,
            isr,
        })
    }

    /// The controller refused this leader's ISR proposal.
    pub fn on_isr_rejected(&self) {
        if let Role::Leader { state, .. } = &mut *self.role.lock() {
            state.on_isr_rejected();
        }
    }

    fn publish(&self, outcome: &Outcome) {
        if let Some(hw) = outcome.high_watermark {
            self.high_watermark.send_if_modified(|v| {
                let moved = *v != hw.0;
                *v = hw.0;
                moved
            });
        }
    }

    /// True when this broker leads the partition in `epoch`.
    pub fn is_leader_in(&self, epoch: i32) -> bool {
        matches!(&*self.role.lock(), Role::Leader { state, .. } if state.epoch().0 == epoch)
    }

    /// True when this broker follows `leader` in `epoch`.
    pub fn is_follower_of(&self, leader: NodeId, epoch: i32) -> bool {
        matches!(&*self.role.lock(), Role::Follower { leader: l, epoch: e, .. } if *l == leader && e.0 == epoch)
    }

    /// Becomes the leader in `epoch` with the controller's replicas and ISR. The high
    /// watermark starts where it was as a follower.
    #[allow(clippy::too_many_arguments)]
    pub fn become_leader(
        &self,
        node: NodeId,
        epoch: i32,
        partition_epoch: i32,
        config: ReplicationConfig,
        replicas: Vec<NodeId>,
        isr: BTreeSet<NodeId>,
    ) {
        let mut role = self.role.lock();
        let hw = match &*role {
            Role::Alone => self.log.end_offset(),
            _ => Offset(*self.high_watermark.borrow()),
        };
        stop_fetcher(&role);
        let state = LeaderState::new(
            node,
            LeaderEpoch(epoch),
            config,
            replicas,
            isr,
            self.log.end_offset(),
            hw,
            Instant::now(),
        );
        self.high_watermark.send_replace(state.high_watermark().0);
        *role = Role::Leader {
            state: Box::new(state),
            partition_epoch,
        };
        drop(role);
        // A leader alone in its ISR commits what its log holds at once.
        self.on_append();
    }

    /// The controller's replicas and ISR for the epoch this broker leads in.
    pub fn on_isr_committed(
        &self,
        epoch: i32,
        partition_epoch: i32,
        replicas: &[NodeId],
        isr: BTreeSet<NodeId>,
    ) {
        let mut role = self.role.lock();
        if let Role::Leader {
            state,
            partition_epoch: known,
        } = &mut *role
            && state.epoch().0 == epoch
            && *known != partition_epoch
        {
            *known = partition_epoch;
            state.on_replicas_changed(replicas, Instant::now());
            let outcome = state.on_isr_committed(isr);
            self.publish(&outcome);
        }
    }

    /// Becomes a follower of `leader` in `epoch`; returns the token that stops its fetcher.
    pub fn become_follower(&self, leader: NodeId, epoch: i32) -> CancellationToken {
        let mut role = self.role.lock();
        if matches!(&*role, Role::Alone) {
            self.high_watermark.send_replace(self.log.end_offset().0);
        }
        stop_fetcher(&role);
        let stop = CancellationToken::new();
        *role = Role::Follower {
            leader,
            epoch: LeaderEpoch(epoch),
            stop: stop.clone(),
        };
        // Wakes acks=all writes waiting on the old leadership.
        self.high_watermark.send_modify(|_| {});
        stop
    }

    /// Neither leads nor follows (offline, or no longer a replica).
    pub fn become_none(&self) {
        let mut role = self.role.lock();
        if matches!(&*role, Role::None) {
            return;
        }
        if matches!(&*role, Role::Alone) {
            self.high_watermark.send_replace(self.log.end_offset().0);
        }
        stop_fetcher(&role);
        *role = Role::None;
        self.high_watermark.send_modify(|_| {});
    }

    /// True while this broker neither leads nor follows the partition (and it is not alone).
    pub fn has_no_role(&self) -> bool {
        matches!(&*self.role.lock(), Role::None)
    }

    /// Taken by a writer of the log from its role check until its write is queued; see
    /// [`Partition::clear`].
    pub async fn lock_writes(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.writes.read().await
    }

    /// Empties the log of a partition this broker no longer holds a replica of (a
    /// reassignment moved it away), unless it got a role again meanwhile. Its fetcher,
    /// stopped with its role, writes nothing after this.
    pub async fn clear(&self) -> Result<(), crate::log::LogError> {
        let _writes = self.writes.write().await;
        if !self.has_no_role() {
            return Ok(());
        }
        self.log.reset_to(Offset(0)).await?;
        self.high_watermark.send_replace(0);
        Ok(())
    }

    /// A follower learned the leader's high watermark: its own is that, capped at its log end.
    pub fn set_follower_high_watermark(&self, leader_hw: Offset) {
        let hw = leader_hw.min(self.log.end_offset());
        self.publish(&Outcome {
            high_watermark: Some(hw),
            propose_isr: None,
        });
    }

    /// The leader's view for metrics: followers' lag, by node.
    pub fn follower_lag(&self) -> Vec<(NodeId, i64)> {
        match &*self.role.lock() {
            Role::Leader { state, .. } => state.lag().into_iter().collect(),
            _ => Vec::new(),
        }
    }
}

fn stop_fetcher(role: &Role) {
    if let Role::Follower { stop, .. } = role {
        stop.cancel();
    }
}

fn check_epoch(
    topic: &str,
    partition: u32,
    current: LeaderEpoch,
    asked: Option<i32>,
) -> Result<(), (ErrorCode, String)> {
    match asked {
        Some(e) if e < current.0 => Err((
            ErrorCode::FencedLeaderEpoch,
            format!(
                "{topic}-{partition}: leader epoch {e} is older than the current {}",
                current.0
            ),
        )),
        Some(e) if e > current.0 => Err((
            ErrorCode::NotLeader,
            format!(
                "{topic}-{partition}: this broker leads in epoch {}, the fetcher knows a newer one ({e})",
                current.0
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use brook_proto::BatchBuilder;

    fn batch(value: &str) -> bytes::Bytes {
        let mut b = BatchBuilder::new();
        b.append(1, None, Some(value.as_bytes()), &[]);
        b.build()
    }

    /// A follower may copy an append before the produce request behind it reports back to
    /// the leader's state: its fetch from the new log end is served, not refused as ahead.
    #[tokio::test]
    async fn a_follower_fetching_past_an_unreported_append_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), Default::default()).await.unwrap();
        let partition = Partition::new("t".into(), 0, log, false);
        let config = ReplicationConfig {
            replica_lag_max: Duration::from_secs(30),
            min_insync: 2,
        };
        partition.become_leader(1, 3, 0, config, vec![1, 2], [1, 2].into());
        assert_eq!(partition.produce_epoch(), Ok(LeaderEpoch(3)));
        // Appended, but on_append not called yet (the produce request is still running).
        partition
            .log()
            .append(batch("a"), LeaderEpoch(3))
            .await
            .unwrap();
        assert_eq!(partition.high_watermark(), Offset(0));
        let proposal = partition.on_replica_fetch(2, Offset(1), Some(3)).unwrap();
        assert_eq!(proposal, None);
        // Every ISR member holds offset 0 now.
        assert_eq!(partition.high_watermark(), Offset(1));
        assert_eq!(partition.acks_all_status(Offset(0)), Some(Ok(())));
        // Stale and newer epochs, and a non-replica, are refused.
        assert_eq!(
            partition
                .on_replica_fetch(2, Offset(1), Some(2))
                .unwrap_err()
                .0,
            ErrorCode::FencedLeaderEpoch
        );
        assert_eq!(
            partition
                .on_replica_fetch(2, Offset(1), Some(4))
                .unwrap_err()
                .0,
            ErrorCode::NotLeader
        );
        assert_eq!(
            partition
                .on_replica_fetch(7, Offset(1), Some(3))
                .unwrap_err()
                .0,
            ErrorCode::InvalidRequest
        );
        // A follower claiming more than the log holds is sent back to truncate.
        assert_eq!(
            partition
                .on_replica_fetch(2, Offset(5), Some(3))
                .unwrap_err()
                .0,
            ErrorCode::OffsetOutOfRange
        );
        partition.log().close().await.unwrap();
    }
}
