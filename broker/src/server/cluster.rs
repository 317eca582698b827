//! The broker's part in a cluster: its controller-quorum voter, its heartbeats, and its local
//! copy of every topic the cluster metadata holds.
//!
//! ```text
//! every broker:   heartbeat loop ──BrokerHeartbeat──► controller (the quorum's leader)
//!                 fence loop     (acts only on the controller: fences silent brokers)
//!                 reconcile loop metadata applied here ──► Registry (open / delete topics)
//! ```
//!
//! Every broker of a cluster is a voter of the controller quorum, so each holds the metadata
//! as committed and learns changes as soon as they are applied locally. The topics the
//! metadata holds are opened on every broker; a broker serves reads and writes only for the
//! partitions it leads and answers `NOT_LEADER` for the others, naming the leader.

use std::sync::Arc;
use std::time::Duration;

use brook_proto::v1::ErrorCode;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cluster::controller::{Controller, ControllerConfig, ControllerError};
use crate::cluster::{ClusterMetadata, Command, Refused, assign_replicas};
use crate::config::BrokerConfig;
use crate::group::offset_store::OFFSETS_PARTITIONS;
use crate::group::{OFFSETS_TOPIC, OffsetStore};
use crate::log::topic_config::{TopicConfigError, replication_settings};
use crate::partition::{AdminError, IsrProposal, Partition, Registry, is_internal};
use crate::replication::{NodeId, ReplicationConfig};
use crate::security::Tls;
use crate::security::acl::Acl;
use crate::server::BrokerContext;
use crate::server::replica_fetcher::{self, FetchTarget};

/// The controller quorum's directory inside the data directory.
pub const CONTROLLER_DIR: &str = "__cluster";

/// How long an admin request waits for the controller (an election, a forward) and then for
/// its change to reach this broker.
const ADMIN_PATIENCE: Duration = Duration::from_secs(10);

/// This broker as a member of a cluster.
pub struct ClusterRole {
    controller: Controller,
    node_id: NodeId,
    address: String,
    /// Where this broker reaches the other brokers (its own `--seeds`).
    voters: std::collections::BTreeMap<u64, String>,
    heartbeat_interval: Duration,
    session_timeout: Duration,
    replication: ReplicationConfig,
    /// Replication factor of `__consumer_offsets`.
    offsets_replication: u32,
    /// How often the controller restores preferred leaders; `None`: never.
    leader_rebalance: Option<Duration>,
    /// Stops the heartbeats (graceful shutdown sends a last one itself).
    heartbeats: CancellationToken,
    /// TLS towards the other brokers; `None`: plain text.
    tls: Option<Arc<Tls>>,
}

impl std::fmt::Debug for ClusterRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRole")
            .field("node_id", &self.node_id)
            .field("address", &self.address)
            .finish()
    }
}

impl ClusterRole {
    /// Starts this broker's voter when `cluster.voters` is set; `None` for a single broker.
    pub async fn start(
        config: &BrokerConfig,
        tls: Option<Arc<Tls>>,
    ) -> Result<Option<ClusterRole>, ControllerError> {
        let voters =
            (config.cluster.voters()).map_err(|e| ControllerError::Config(e.to_string()))?;
        if voters.is_empty() {
            return Ok(None);
        }
        let node_id = config.server.node_id;
        let Some(address) = voters.get(&(node_id as u64)).cloned() else {
            return Err(ControllerError::Config(format!(
                "node {node_id} is not among the voters"
            )));
        };
        let session_timeout = Duration::from_millis(config.cluster.session_timeout_ms);
        let voter_count = voters.len();
        let controller_voters = voters.clone();
        let mut controller_config = ControllerConfig::new(
            node_id as u64,
            voters,
            config.server.data_dir.join(CONTROLLER_DIR),
        );
        controller_config.session_timeout = session_timeout;
        controller_config.tls = tls.clone();
        let controller = Controller::start(controller_config).await?;
        Ok(Some(ClusterRole {
            controller,
            node_id,
            address,
            voters: controller_voters,
            heartbeat_interval: Duration::from_millis(config.cluster.heartbeat_interval_ms),
            session_timeout,
            replication: ReplicationConfig {
                replica_lag_max: Duration::from_millis(config.cluster.replica_lag_time_max_ms),
                min_insync: config.cluster.min_insync_replicas as usize,
            },
            offsets_replication: (config.cluster.offsets_replication_factor)
                .min(voter_count as u32),
            leader_rebalance: match config.cluster.leader_rebalance_interval_ms {
                0 => None,
                ms => Some(Duration::from_millis(ms)),
            },
            heartbeats: CancellationToken::new(),
            tls,
        }))
    }

    /// This broker's voter.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The cluster's id, derived from the quorum's membership as it was initialized (the
    /// same on every broker; from this broker's own voter list until it has learned it).
    pub fn cluster_id(&self) -> String {
        let mut members = self.controller.membership();
        if members.is_empty() {
            members = (self.voters.iter())
                .map(|(id, a)| (*id, a.clone()))
                .collect();
        }
        let listed: Vec<String> = members.iter().map(|(id, a)| format!("{id}@{a}")).collect();
        format!("brook-{:08x}", crc32fast::hash(listed.join(",").as_bytes()))
    }

    /// This broker's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The metadata as applied on this broker.
    pub fn metadata(&self) -> ClusterMetadata {
        self.controller.metadata()
    }

    /// Ok when this broker leads `topic`-`partition`; otherwise the error to answer with
    /// (unknown partition, or not the leader naming the one that is).
    pub fn check_leader(&self, topic: &str, partition: u32) -> Result<(), (ErrorCode, String)> {
        self.controller
            .with_metadata(|metadata| self.leader_in(metadata, topic, partition))
    }

    fn leader_in(
        &self,
        metadata: &ClusterMetadata,
        topic: &str,
        partition: u32,
    ) -> Result<(), (ErrorCode, String)> {
        let Some(state) =
            (metadata.topics.get(topic)).and_then(|t| t.partitions.get(partition as usize))
        else {
            return Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {topic:?} partition {partition} does not exist"),
            ));
        };
        match state.leader {
            Some(leader) if leader == self.node_id => Ok(()),
            Some(leader) => Err((
                ErrorCode::NotLeader,
                format!(
                    "broker {} does not lead {topic}-{partition}: broker {leader} does (leader epoch {})",
                    self.node_id, state.leader_epoch
                ),
            )),
            None => Err((
                ErrorCode::NotLeader,
                format!(
                    "{topic}-{partition} has no leader: none of its in-sync replicas {:?} is alive",
                    state.isr
                ),
            )),
        }
    }

    /// Starts the heartbeat, fencing and reconcile loops; they stop with `shutdown`.
    pub fn spawn(self: &Arc<Self>, ctx: Arc<BrokerContext>) -> Vec<JoinHandle<()>> {
        let shutdown = ctx.shutdown.clone();
        let heartbeat = {
            let role = self.clone();
            tokio::spawn(async move { role.heartbeat_loop().await })
        };
        let fence = {
            let role = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { role.fence_loop(shutdown).await })
        };
        let reconcile = {
            let role = self.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move { role.reconcile_loop(&ctx.registry, shutdown).await })
        };
        let isr = {
            let role = self.clone();
            tokio::spawn(async move { role.isr_loop(ctx).await })
        };
        vec![heartbeat, fence, reconcile, isr]
    }

    async fn heartbeat_loop(&self) {
        let mut fenced = None;
        loop {
            let sent = tokio::time::timeout(
                self.session_timeout,
                (self.controller).send_heartbeat(self.node_id, &self.address, false),
            );
            let outcome = tokio::select! {
                _ = self.heartbeats.cancelled() => return,
                outcome = sent => outcome,
            };
            match outcome {
                Ok(Ok(now_fenced)) => {
                    if fenced != Some(now_fenced) {
                        tracing::info!(
                            node = self.node_id,
                            fenced = now_fenced,
                            "controller heartbeat answered"
                        );
                        fenced = Some(now_fenced);
                    }
                }
                Ok(Err(e)) => tracing::debug!(cause = %e, "heartbeat not answered"),
                Err(_) => tracing::debug!("heartbeat timed out"),
            }
            tokio::select! {
                _ = self.heartbeats.cancelled() => return,
                _ = tokio::time::sleep(self.heartbeat_interval) => {}
            }
        }
    }

    async fn fence_loop(&self, shutdown: CancellationToken) {
        let mut last_rebalance = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.heartbeat_interval) => {}
            }
            if let Err(e) = self.controller.fence_silent().await {
                tracing::warn!(cause = %e, "fencing silent brokers failed");
            }
            if let Some(every) = self.leader_rebalance
                && last_rebalance.elapsed() >= every
            {
                last_rebalance = tokio::time::Instant::now();
                match self.controller.rebalance_leaders().await {
                    Ok(moved) if !moved.is_empty() => {
                        tracing::info!(?moved, "moved leadership back to preferred replicas")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(cause = %e, "leader rebalance failed"),
                }
            }
        }
    }

    async fn reconcile_loop(self: Arc<Self>, registry: &Registry, shutdown: CancellationToken) {
        let mut metrics = self.controller.metrics();
        let mut applied = None;
        loop {
            let now = metrics.borrow_and_update().last_applied;
            if now != applied {
                applied = now;
                let metadata = self.metadata();
                // While an older state is replayed, nothing is deleted: a later entry may
                // bring back what it removes.
                let caught_up = self.controller.caught_up();
                reconcile(registry, &metadata, caught_up).await;
                self.assign_roles(registry, &metadata, caught_up);
                if caught_up {
                    self.clear_moved_replicas(registry, &metadata).await;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = metrics.changed() => {}
            }
        }
    }

    /// Gives every partition of every cluster topic the role the metadata says: leader in its
    /// epoch, follower of its leader (starting a fetcher), or none.
    fn assign_roles(
        self: &Arc<Self>,
        registry: &Registry,
        metadata: &ClusterMetadata,
        caught_up: bool,
    ) {
        for (name, topic) in &metadata.topics {
            // Checked when the topic was created.
            let settings = replication_settings(&topic.configs).unwrap_or_default();
            let replication = ReplicationConfig {
                min_insync: (settings.min_insync_replicas)
                    .map_or(self.replication.min_insync, |n| n as usize),
                ..self.replication
            };
            for (i, state) in topic.partitions.iter().enumerate() {
                let Some(partition) = registry.partition(name, i as u32) else {
                    continue;
                };
                match state.leader {
                    Some(leader) if leader == self.node_id => {
                        if partition.is_leader_in(state.leader_epoch) {
                            partition.on_isr_committed(
                                state.leader_epoch,
                                state.partition_epoch,
                                &state.replicas,
                                state.isr.clone(),
                            );
                        } else {
                            tracing::info!(topic = %name, partition = i, epoch = state.leader_epoch, "leading");
                            partition.become_leader(
                                self.node_id,
                                state.leader_epoch,
                                state.partition_epoch,
                                replication,
                                state.replicas.clone(),
                                state.isr.clone(),
                            );
                        }
                    }
                    Some(leader) if state.replicas.contains(&self.node_id) => {
                        if partition.is_follower_of(leader, state.leader_epoch) {
                            continue;
                        }
                        // Inter-broker traffic goes where this broker's own voter list says; a
                        // broker's registered address is the one for clients.
                        let address = (self.voters.get(&(leader as u64)).cloned())
                            .or_else(|| metadata.brokers.get(&leader).map(|b| b.address.clone()));
                        let Some(address) = address else {
                            partition.become_none();
                            continue;
                        };
                        tracing::info!(topic = %name, partition = i, leader, epoch = state.leader_epoch, "following");
                        let log = partition.log();
                        let fresh = caught_up
                            && partition.has_no_role()
                            && state.adding.contains(&self.node_id)
                            && (log.start_offset().0 > 0 || log.end_offset().0 > 0);
                        let stop = partition.become_follower(leader, state.leader_epoch);
                        let target = FetchTarget {
                            node: self.node_id,
                            leader: (leader, address),
                            epoch: state.leader_epoch,
                            fresh,
                            tls: self.tls.clone(),
                        };
                        tokio::spawn(replica_fetcher::run(partition, target, stop));
                    }
                    _ => partition.become_none(),
                }
            }
        }
    }

    /// Empties the logs of partitions this broker holds no replica of any more (a
    /// reassignment moved them away), freeing their disk space.
    async fn clear_moved_replicas(&self, registry: &Registry, metadata: &ClusterMetadata) {
        for (name, topic) in &metadata.topics {
            for (i, state) in topic.partitions.iter().enumerate() {
                if state.replicas.contains(&self.node_id) {
                    continue;
                }
                let Some(partition) = registry.partition(name, i as u32) else {
                    continue;
                };
                let log = partition.log();
                if !partition.has_no_role()
                    || (log.start_offset().0 == 0 && log.end_offset().0 == 0)
                {
                    continue;
                }
                let size = log.size_bytes();
                match partition.clear().await {
                    Ok(()) => {
                        tracing::info!(topic = %name, partition = i, bytes = size, "removed the data of a replica moved away")
                    }
                    Err(e) => {
                        tracing::warn!(topic = %name, partition = i, cause = %e, "removing the data of a replica moved away failed")
                    }
                }
            }
        }
    }

    /// Every so often, drops lagging followers from the ISRs this broker leads.
    async fn isr_loop(self: Arc<Self>, ctx: Arc<BrokerContext>) {
        let every = (self.replication.replica_lag_max / 4).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = std::time::Instant::now();
            let mut max_lag = 0;
            for topic in ctx.registry.topics().values() {
                if !topic.meta.cluster {
                    continue;
                }
                for partition in &topic.partitions {
                    if let Some(proposal) = partition.on_tick(now) {
                        self.propose_isr(partition.clone(), proposal);
                    }
                    let lag = partition.follower_lag().into_iter().map(|(_, l)| l).max();
                    max_lag = max_lag.max(lag.unwrap_or(0));
                }
            }
            self.record_gauges(max_lag);
        }
    }

    /// The cluster gauges, from this broker's copy of the metadata.
    fn record_gauges(&self, max_lag: i64) {
        let metadata = self.metadata();
        let live = metadata.live_brokers().len();
        let partitions = metadata.topics.values().flat_map(|t| t.partitions.iter());
        let (mut offline, mut led, mut under, mut moving) = (0, 0, 0, 0);
        for p in partitions {
            if p.is_reassigning() {
                moving += 1;
            }
            match p.leader {
                None => offline += 1,
                Some(leader) if leader == self.node_id => {
                    led += 1;
                    if p.isr.len() < p.replicas.len() {
                        under += 1;
                    }
                }
                Some(_) => {}
            }
        }
        let controller = if self.controller.is_controller() {
            1.0
        } else {
            0.0
        };
        metrics::gauge!("brook_cluster_is_controller").set(controller);
        metrics::gauge!("brook_cluster_live_brokers").set(live as f64);
        metrics::gauge!("brook_cluster_fenced_brokers").set((metadata.brokers.len() - live) as f64);
        metrics::gauge!("brook_cluster_offline_partitions").set(offline as f64);
        metrics::gauge!("brook_cluster_reassigning_partitions").set(moving as f64);
        metrics::gauge!("brook_leader_partitions").set(led as f64);
        metrics::gauge!("brook_under_replicated_partitions").set(under as f64);
        metrics::gauge!("brook_replica_max_lag_records").set(max_lag as f64);
    }

    /// Sends a leader's ISR proposal to the controller; the committed ISR comes back through
    /// the metadata, a refusal is handed to the partition.
    pub fn propose_isr(self: &Arc<Self>, partition: Arc<Partition>, proposal: IsrProposal) {
        let role = self.clone();
        tokio::spawn(async move {
            let command = Command::AlterIsr {
                topic: partition.topic().to_string(),
                partition: partition.id(),
                leader: role.node_id,
                leader_epoch: proposal.leader_epoch,
                partition_epoch: proposal.partition_epoch,
                isr: proposal.isr.clone(),
            };
            let before = (role.metadata().topics.get(partition.topic()))
                .and_then(|t| t.partitions.get(partition.id() as usize))
                .map_or(0, |p| p.isr.len());
            match role
                .controller
                .submit_to_controller(command, ADMIN_PATIENCE)
                .await
            {
                Ok(_) => {
                    if proposal.isr.len() < before {
                        metrics::counter!("brook_isr_shrinks_total").increment(1);
                    } else {
                        metrics::counter!("brook_isr_expands_total").increment(1);
                    }
                    tracing::info!(topic = partition.topic(), partition = partition.id(), isr = ?proposal.isr, "ISR changed")
                }
                Err(e) => {
                    tracing::info!(topic = partition.topic(), partition = partition.id(), cause = %e, "ISR change refused");
                    partition.on_isr_rejected();
                }
            }
        });
    }

    /// Graceful shutdown, first step: stop heartbeating and ask the controller to fence this
    /// broker now, so its leaderships move before it goes (bounded by the session timeout).
    pub async fn leave(&self) {
        self.heartbeats.cancel();
        let last = (self.controller).send_heartbeat(self.node_id, &self.address, true);
        match tokio::time::timeout(self.session_timeout, last).await {
            Ok(Ok(_)) => tracing::info!(node = self.node_id, "fenced for shutdown"),
            Ok(Err(e)) => tracing::warn!(cause = %e, "could not announce the shutdown"),
            Err(_) => tracing::warn!("the controller did not answer the shutdown heartbeat"),
        }
    }

    /// Graceful shutdown, last step: stops the voter.
    pub async fn stop(&self) {
        self.controller.shutdown().await;
    }

    /// Creates a topic through the controller (spreading its replicas over the live brokers)
    /// and waits until this broker has opened it.
    pub async fn create_topic(
        &self,
        registry: &Registry,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: std::collections::BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        // Name, partition count, configs and a local clash, checked as a single broker would.
        registry
            .create_topic(name, partitions, 1, configs.clone(), true)
            .await?;
        let live = self.metadata().live_brokers();
        let rf = replication_factor.max(1);
        let start = live.len().max(1);
        let start = (crc32fast::hash(name.as_bytes()) as usize) % start;
        let replicas = assign_replicas(&live, partitions, rf, start).map_err(|_| {
            AdminError::InvalidReplicationFactor {
                requested: rf,
                available: live.len() as u32,
            }
        })?;
        let settings = replication_settings(&configs)?;
        if let Some(min_insync) = settings.min_insync_replicas
            && min_insync > rf
        {
            return Err(TopicConfigError::MinInsyncAboveReplicas {
                min_insync,
                replication_factor: rf,
            }
            .into());
        }
        if validate_only {
            return Ok(());
        }
        let command = Command::CreateTopic {
            name: name.to_string(),
            replicas,
            unclean_leader_election: settings.unclean_leader_election,
            configs,
        };
        self.submit(command).await?;
        self.wait_local(registry, name, true).await
    }

    /// Makes `__consumer_offsets` through the controller unless the metadata has it: on the
    /// first FindCoordinator, as Kafka does. Refused while fewer brokers are live than its
    /// replication factor.
    pub async fn ensure_offsets_topic(&self) -> Result<(), AdminError> {
        if (self.controller).with_metadata(|m| m.topics.contains_key(OFFSETS_TOPIC)) {
            return Ok(());
        }
        let live = self.metadata().live_brokers();
        let rf = self.offsets_replication;
        let replicas = assign_replicas(&live, OFFSETS_PARTITIONS, rf, 0).map_err(|_| {
            AdminError::InvalidReplicationFactor {
                requested: rf,
                available: live.len() as u32,
            }
        })?;
        let command = Command::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            replicas,
            unclean_leader_election: false,
            configs: OffsetStore::topic_configs(),
        };
        match self.submit(command).await {
            Ok(()) | Err(AdminError::TopicExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Moves leadership of `topic`-`partition` to its preferred (first) replica through the
    /// controller, if it is live and in the ISR: the outcome, its message, and the leader
    /// after (-1 if none or unknown).
    pub async fn elect_preferred_leader(
        &self,
        topic: &str,
        partition: u32,
    ) -> (ErrorCode, String, NodeId) {
        let leader_now = || {
            (self.controller).with_metadata(|m| {
                (m.partition(topic, partition).ok())
                    .and_then(|p| p.leader)
                    .unwrap_or(-1)
            })
        };
        let checked = self.controller.with_metadata(|m| {
            let p = (m.partition(topic, partition))
                .map_err(|e| (ErrorCode::UnknownTopicOrPartition, e.to_string()))?;
            let preferred = p.replicas[0];
            if p.leader == Some(preferred) {
                Err((
                    ErrorCode::ElectionNotNeeded,
                    format!("{topic}-{partition} is already led by its preferred replica {preferred}"),
                ))
            } else if !m.is_live(preferred) {
                Err((
                    ErrorCode::PreferredLeaderNotAvailable,
                    format!("the preferred replica {preferred} of {topic}-{partition} is not live"),
                ))
            } else if !p.isr.contains(&preferred) {
                Err((
                    ErrorCode::PreferredLeaderNotAvailable,
                    format!(
                        "the preferred replica {preferred} of {topic}-{partition} is not in the ISR {:?}",
                        p.isr
                    ),
                ))
            } else {
                Ok(preferred)
            }
        });
        let preferred = match checked {
            Ok(preferred) => preferred,
            Err((code, message)) => return (code, message, leader_now()),
        };
        let command = Command::ElectPreferredLeader {
            topic: topic.to_string(),
            partition,
        };
        match (self.controller)
            .submit_to_controller(command, ADMIN_PATIENCE)
            .await
        {
            Ok(changes) if !changes.is_empty() => (ErrorCode::None, String::new(), preferred),
            // The controller saw the partition change between the check and the command.
            Ok(_) => (
                ErrorCode::PreferredLeaderNotAvailable,
                format!(
                    "the preferred replica {preferred} of {topic}-{partition} could not take over"
                ),
                leader_now(),
            ),
            Err(ControllerError::Refused(refused)) => {
                (ErrorCode::UnknownTopicOrPartition, refused.to_string(), -1)
            }
            Err(e) => (ErrorCode::RequestTimedOut, e.to_string(), leader_now()),
        }
    }

    /// Starts moving `topic`-`partition` to the `target` replicas (replacing a running move),
    /// or with `None` cancels the running move, through the controller: the outcome and its
    /// message. The move itself goes on in the background; see
    /// [`crate::cluster::metadata`].
    pub async fn alter_reassignment(
        &self,
        topic: &str,
        partition: u32,
        target: Option<Vec<NodeId>>,
    ) -> (ErrorCode, String) {
        let command = Command::AlterReassignment {
            topic: topic.to_string(),
            partition,
            target,
        };
        match (self.controller)
            .submit_to_controller(command, ADMIN_PATIENCE)
            .await
        {
            Ok(_) => (ErrorCode::None, String::new()),
            Err(ControllerError::Refused(refused)) => {
                let code = match refused {
                    Refused::UnknownTopic(_) | Refused::UnknownPartition { .. } => {
                        ErrorCode::UnknownTopicOrPartition
                    }
                    Refused::NoReassignment { .. } => ErrorCode::NoReassignmentInProgress,
                    _ => ErrorCode::InvalidReplicaAssignment,
                };
                let message = match refused {
                    // The controller names the partition by number only.
                    Refused::BadReplicas { reason, .. } => {
                        format!("{topic}-{partition}: {reason}")
                    }
                    other => other.to_string(),
                };
                (code, message)
            }
            Err(e) => (ErrorCode::RequestTimedOut, e.to_string()),
        }
    }

    /// Deletes a topic through the controller and waits until this broker has removed it.
    pub async fn delete_topic(&self, registry: &Registry, name: &str) -> Result<(), AdminError> {
        self.submit(Command::DeleteTopic {
            name: name.to_string(),
        })
        .await?;
        self.wait_local(registry, name, false).await
    }

    /// Adds ACLs (each valid) through the controller and waits until this broker applies them.
    pub async fn create_acls(&self, acls: Vec<Acl>) -> Result<(), AdminError> {
        let wanted = acls.clone();
        self.submit(Command::CreateAcls { acls }).await?;
        self.wait_acls(|m| wanted.iter().all(|a| m.acls.contains(a)))
            .await
    }

    /// Removes ACLs through the controller and waits until this broker applies it; returns
    /// those this broker held before.
    pub async fn delete_acls(&self, acls: Vec<Acl>) -> Result<Vec<Acl>, AdminError> {
        let held: Vec<Acl> = (self.controller).with_metadata(|m| {
            acls.iter()
                .filter(|a| m.acls.contains(a))
                .cloned()
                .collect()
        });
        let gone = acls.clone();
        self.submit(Command::DeleteAcls { acls }).await?;
        self.wait_acls(|m| gone.iter().all(|a| !m.acls.contains(a)))
            .await?;
        Ok(held)
    }

    async fn wait_acls(&self, done: impl Fn(&ClusterMetadata) -> bool) -> Result<(), AdminError> {
        let deadline = tokio::time::Instant::now() + ADMIN_PATIENCE;
        while !self.controller.with_metadata(&done) {
            if tokio::time::Instant::now() >= deadline {
                return Err(AdminError::Cluster {
                    reason: format!(
                        "the controller accepted the ACL change but it did not reach broker {} within {} ms",
                        self.node_id,
                        ADMIN_PATIENCE.as_millis()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn submit(&self, command: Command) -> Result<(), AdminError> {
        match (self.controller)
            .submit_to_controller(command, ADMIN_PATIENCE)
            .await
        {
            Ok(_) => Ok(()),
            Err(ControllerError::Refused(Refused::TopicExists(name))) => {
                Err(AdminError::TopicExists { name })
            }
            Err(ControllerError::Refused(Refused::UnknownTopic(name))) => {
                Err(AdminError::UnknownTopic { name })
            }
            Err(e) => Err(AdminError::Cluster {
                reason: e.to_string(),
            }),
        }
    }

    async fn wait_local(
        &self,
        registry: &Registry,
        name: &str,
        present: bool,
    ) -> Result<(), AdminError> {
        let deadline = tokio::time::Instant::now() + ADMIN_PATIENCE;
        while registry.topic(name).is_some() != present {
            if tokio::time::Instant::now() >= deadline {
                return Err(AdminError::Cluster {
                    reason: format!(
                        "the controller accepted the change to topic {name:?} but it did not reach broker {} within {} ms",
                        self.node_id,
                        ADMIN_PATIENCE.as_millis()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Brings the registry in line with the metadata: opens the topics it lacks and, when
/// `delete`, deletes the cluster topics the metadata no longer holds. Topics this broker made
/// alone (internal ones) are left alone.
pub async fn reconcile(registry: &Registry, metadata: &ClusterMetadata, delete: bool) {
    for (name, topic) in &metadata.topics {
        if registry.topic(name).is_none() {
            let count = topic.partitions.len() as u32;
            match registry
                .ensure_cluster_topic(name, count, topic.configs.clone())
                .await
            {
                Ok(()) => tracing::info!(topic = %name, partitions = count, "opened cluster topic"),
                Err(e) => tracing::error!(topic = %name, cause = %e, "cannot open cluster topic"),
            }
        }
    }
    if !delete {
        return;
    }
    let local = registry.topics();
    for (name, topic) in local.iter() {
        if topic.meta.cluster && !is_internal(name) && !metadata.topics.contains_key(name) {
            match registry.delete_topic(name).await {
                Ok(()) => tracing::info!(topic = %name, "deleted cluster topic"),
                Err(e) => tracing::error!(topic = %name, cause = %e, "cannot delete cluster topic"),
            }
        }
    }
}

/// Topics in the data directory that were made by this broker alone (not from the cluster
/// metadata; committed offsets of a broker that ran alone included): a broker joining a
/// cluster refuses to start with them rather than hide or delete them.
pub fn standalone_topics(registry: &Registry) -> Vec<String> {
    (registry.topics().iter())
        .filter(|(_, topic)| !topic.meta.cluster)
        .map(|(name, _)| name.clone())
        .collect()
}
