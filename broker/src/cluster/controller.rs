//! The controller quorum on one broker: an openraft node over [`LogStore`] and
//! [`StateMachine`], reached through [`QuorumService`].
//!
//! Start-up: every voter is started with the same voter list (node id and quorum address).
//! The voter with the smallest id initializes the quorum; on every later start (its log is not
//! empty) openraft refuses that as already done, which is ignored. A voter whose data
//! directory was lost starts empty and catches up from the leader.
//!
//! Timing: heartbeats every 200 ms and elections after 1 to 2 s of silence: a leader's death is
//! noticed within about 2 s, while fsync stalls of a few hundred milliseconds on a busy disk do
//! not cause spurious elections.
//!
//! Broker liveness (Kafka's KRaft rules): every broker sends a heartbeat to the quorum's
//! leader, the *controller*, every `heartbeat_interval`. The controller registers a broker it
//! does not know (or that moved), unfences it, and fences a broker it has not heard from for
//! `session_timeout` ([`Controller::fence_silent`]). A controller that has just been elected
//! gives every broker a full session before fencing it, since it heard nobody before. A broker
//! stopping cleanly says so in its last heartbeat and is fenced at once, so its leaderships
//! move before it goes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_proto::v1::controller_quorum_client::ControllerQuorumClient;
use brook_proto::v1::{BrokerHeartbeatRequest, RaftMessage};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, RaftMetrics, ServerState};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tonic::transport::Channel;

use super::metadata::{ClusterMetadata, Command, LeaderChange, Refused};
use super::network::{Network, QuorumService};
use super::raft_store::{LogStore, MachineState, StateMachine, TypeConfig};
use crate::replication::NodeId;
use crate::security::{Tls, peer_endpoint};

/// Where and how one voter runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This voter's node id.
    pub node_id: u64,
    /// Every voter's quorum address (`host:port`), by node id; must include this one.
    pub voters: BTreeMap<u64, String>,
    /// The quorum's directory (log, vote, snapshot).
    pub dir: PathBuf,
    /// Leader heartbeat interval, ms.
    pub heartbeat_ms: u64,
    /// Election timeout range, ms.
    pub election_timeout_ms: (u64, u64),
    /// A broker not heard from for this long is fenced.
    pub session_timeout: Duration,
    /// TLS towards the other voters; `None`: plain text.
    pub tls: Option<Arc<Tls>>,
}

impl ControllerConfig {
    /// The defaults above for voter `node_id`.
    pub fn new(node_id: u64, voters: BTreeMap<u64, String>, dir: PathBuf) -> ControllerConfig {
        ControllerConfig {
            node_id,
            voters,
            dir,
            heartbeat_ms: 200,
            election_timeout_ms: (1000, 2000),
            session_timeout: Duration::from_secs(3),
            tls: None,
        }
    }
}

/// Why the controller could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The configuration is inconsistent.
    #[error("controller configuration: {0}")]
    Config(String),
    /// The quorum's storage failed.
    #[error("controller storage: {0}")]
    Storage(String),
    /// The Raft node stopped (after a storage failure or a shutdown).
    #[error("controller stopped: {0}")]
    Stopped(String),
    /// This voter does not lead the quorum; the leader, if known.
    #[error("this broker is not the controller; the controller is {leader:?}")]
    NotController {
        /// The leader's node id and quorum address.
        leader: Option<(u64, String)>,
    },
    /// The command was refused by the metadata rules.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The controller could not be reached or gave no usable answer.
    #[error("controller unreachable: {0}")]
    Unreachable(String),
}

/// When the controller last heard from each broker, kept by the quorum's leader only.
#[derive(Debug, Default)]
struct Liveness {
    /// The Raft term this table belongs to; a new term (a new controller) starts it afresh.
    term: Option<u64>,
    last_seen: HashMap<NodeId, Instant>,
}

/// One voter of the controller quorum.
#[derive(Clone)]
pub struct Controller {
    node_id: u64,
    voters: BTreeMap<u64, String>,
    session_timeout: Duration,
    raft: Raft<TypeConfig>,
    state: Arc<RwLock<MachineState>>,
    liveness: Arc<Mutex<Liveness>>,
    /// TLS towards the other voters; `None`: plain text.
    tls: Option<Arc<Tls>>,
    /// Clients of the other voters, by node id (for forwarding to the controller).
    peers: Arc<Mutex<HashMap<u64, ControllerQuorumClient<Channel>>>>,
    /// The log index this voter knew committed when it started (see [`Controller::caught_up`]).
    committed_at_start: Option<u64>,
}

impl Controller {
    /// Opens the quorum's storage in `config.dir` and starts the Raft node; initializes the
    /// quorum when this is the voter with the smallest id. Serve [`Controller::service`] on
    /// this voter's address for the others to reach it.
    pub async fn start(config: ControllerConfig) -> Result<Controller, ControllerError> {
        let Some(first) = config.voters.keys().next().copied() else {
            return Err(ControllerError::Config("the voter list is empty".into()));
        };
        if !config.voters.contains_key(&config.node_id) {
            return Err(ControllerError::Config(format!(
                "node {} is not among the voters {:?}",
                config.node_id,
                config.voters.keys().collect::<Vec<_>>()
            )));
        }
        let (min, max) = config.election_timeout_ms;
        let raft_config = Config {
            cluster_name: "brook".into(),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: min,
            election_timeout_max: max,
            // Snapshots go to disk with an fsync; give them time.
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerError::Config(e.to_string()))?;
        let storage = |e: openraft::StorageError<u64>| ControllerError::Storage(e.to_string());
        let log = LogStore::open(&config.dir.join("log")).map_err(storage)?;
        let committed_at_start = log.committed().map(|id| id.index);
        let machine = StateMachine::open(&config.dir.join("state")).map_err(storage)?;
        let state = machine.state();
        let network = Network {
            id: config.node_id,
            voters: Arc::new(config.voters.clone()),
            tls: config.tls.clone(),
        };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, machine)
            .await
            .map_err(|e| ControllerError::Stopped(e.to_string()))?;
        let initialized =
            (raft.is_initialized().await).map_err(|e| ControllerError::Stopped(e.to_string()))?;
        if config.node_id == first && !initialized {
            let members: BTreeMap<u64, BasicNode> = (config.voters.iter())
                .map(|(&id, addr)| (id, BasicNode::new(addr)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => {
                    tracing::info!(node = config.node_id, "initialized the controller quorum")
                }
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(ControllerError::Stopped(e.to_string())),
            }
        }
        Ok(Controller {
            node_id: config.node_id,
            voters: config.voters,
            session_timeout: config.session_timeout,
            raft,
            state,
            liveness: Arc::default(),
            tls: config.tls,
            peers: Arc::default(),
            committed_at_start,
        })
    }

    /// The gRPC service the other voters call.
    pub fn service(&self) -> QuorumService {
        QuorumService::new(self.clone())
    }

    /// This voter's node id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Commits `command` through the quorum and applies it: the leader changes it caused.
    /// Only the quorum's leader takes commands; elsewhere this names the leader.
    pub async fn submit(&self, command: Command) -> Result<Vec<LeaderChange>, ControllerError> {
        match self.raft.client_write(command).await {
            Ok(response) => Ok(response.data.0?),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ControllerError::NotController {
                    leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
                })
            }
            Err(e) => Err(ControllerError::Stopped(e.to_string())),
        }
    }

    /// A copy of the metadata as applied on this voter (it may trail the leader's).
    pub fn metadata(&self) -> ClusterMetadata {
        self.state.read().metadata.clone()
    }

    /// Runs `f` on the metadata as applied on this voter, without copying it (for checks on
    /// every request).
    pub fn with_metadata<R>(&self, f: impl FnOnce(&ClusterMetadata) -> R) -> R {
        f(&self.state.read().metadata)
    }

    /// The Raft node's metrics: its state, term, leader and log positions.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<u64, BasicNode>> {
        self.raft.metrics()
    }

    /// The voters and their addresses as the replicated membership holds them: written once
    /// by the voter that initialized the quorum, so the same on every broker (unlike each
    /// broker's own voter list). Empty until this voter has learned the membership.
    pub fn membership(&self) -> Vec<(u64, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        (m.membership_config.nodes())
            .map(|(id, node)| (*id, node.addr.clone()))
            .collect()
    }

    /// True once this voter has applied everything it knew committed when it started. Until
    /// then its metadata may be an older state being replayed, and a broker must not act on
    /// it in ways it cannot take back (deleting data), since a later entry may undo them.
    pub fn caught_up(&self) -> bool {
        let applied = self.raft.metrics().borrow().last_applied.map(|id| id.index);
        match self.committed_at_start {
            Some(committed) => applied.is_some_and(|a| a >= committed),
            None => true,
        }
    }

    /// The quorum's leader, as this voter knows it.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The Raft node (the quorum service hands it the other voters' messages).
    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// True while this voter leads the quorum.
    pub fn is_controller(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// The controller's node id and quorum address, as this voter knows them.
    pub fn controller(&self) -> Option<(u64, String)> {
        let leader = self.leader()?;
        Some((leader, self.voters.get(&leader)?.clone()))
    }

    fn not_controller(&self) -> ControllerError {
        ControllerError::NotController {
            leader: self.controller(),
        }
    }

    /// Handles a broker's heartbeat on the controller: registers the broker if it is new or
    /// moved, unfences it, or fences it when it is shutting down. Returns whether the broker
    /// is fenced afterwards.
    pub async fn heartbeat(
        &self,
        node: NodeId,
        address: &str,
        shutting_down: bool,
    ) -> Result<bool, ControllerError> {
        if !self.is_controller() {
            return Err(self.not_controller());
        }
        if shutting_down {
            self.liveness.lock().last_seen.remove(&node);
            if self.metadata().is_live(node) {
                self.submit(Command::FenceBroker { node }).await?;
            }
            return Ok(true);
        }
        self.liveness.lock().last_seen.insert(node, Instant::now());
        let known = self.metadata().brokers.get(&node).cloned();
        if known.as_ref().is_none_or(|b| b.address != address) {
            self.submit(Command::RegisterBroker {
                node,
                address: address.to_string(),
            })
            .await?;
        }
        if self.metadata().brokers.get(&node).is_some_and(|b| b.fenced) {
            self.submit(Command::UnfenceBroker { node }).await?;
        }
        Ok(false)
    }

    /// On the controller, fences every live broker not heard from for the session timeout;
    /// elsewhere does nothing. Returns the brokers it fenced. Call it about once per
    /// heartbeat interval.
    pub async fn fence_silent(&self) -> Result<Vec<NodeId>, ControllerError> {
        let term = self.raft.metrics().borrow().current_term;
        if !self.is_controller() {
            let mut liveness = self.liveness.lock();
            liveness.term = None;
            liveness.last_seen.clear();
            return Ok(Vec::new());
        }
        let metadata = self.metadata();
        let now = Instant::now();
        let silent: Vec<NodeId> = {
            let mut liveness = self.liveness.lock();
            if liveness.term != Some(term) {
                // A new controller heard nobody yet: a full session for everyone.
                liveness.term = Some(term);
                liveness.last_seen = (metadata.brokers.keys()).map(|&n| (n, now)).collect();
            }
            let last_seen = &mut liveness.last_seen;
            (metadata.live_brokers().into_iter())
                .filter(|n| {
                    let seen = *last_seen.entry(*n).or_insert(now);
                    now.duration_since(seen) >= self.session_timeout
                })
                .collect()
        };
        for &node in &silent {
            tracing::warn!(
                node,
                timeout_ms = self.session_timeout.as_millis() as u64,
                "fencing a broker that stopped heartbeating"
            );
            self.submit(Command::FenceBroker { node }).await?;
        }
        Ok(silent)
    }

    /// On the controller, moves leadership back to each partition's preferred (first) replica
    /// where that replica is live, in the ISR and not leading (Kafka's automatic leader
    /// rebalance); elsewhere does nothing. Returns the partitions moved.
    pub async fn rebalance_leaders(&self) -> Result<Vec<(String, u32)>, ControllerError> {
        if !self.is_controller() {
            return Ok(Vec::new());
        }
        let metadata = self.metadata();
        let mut moved = Vec::new();
        for (name, topic) in &metadata.topics {
            for (i, p) in topic.partitions.iter().enumerate() {
                let preferred = p.replicas[0];
                if p.leader != Some(preferred)
                    && p.isr.contains(&preferred)
                    && metadata.is_live(preferred)
                {
                    let command = Command::ElectPreferredLeader {
                        topic: name.clone(),
                        partition: i as u32,
                    };
                    if !self.submit(command).await?.is_empty() {
                        moved.push((name.clone(), i as u32));
                    }
                }
            }
        }
        Ok(moved)
    }

    fn peer(&self, node: u64) -> Result<ControllerQuorumClient<Channel>, ControllerError> {
        if let Some(client) = self.peers.lock().get(&node) {
            return Ok(client.clone());
        }
        let address = self
            .voters
            .get(&node)
            .ok_or_else(|| ControllerError::Unreachable(format!("node {node} is not a voter")))?;
        let endpoint = peer_endpoint(address, self.tls.as_deref())
            .map_err(|e| ControllerError::Unreachable(format!("{address}: {e}")))?;
        let client = ControllerQuorumClient::new(
            endpoint
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(10))
                .tcp_nodelay(true)
                .connect_lazy(),
        );
        self.peers.lock().insert(node, client.clone());
        Ok(client)
    }

    /// Sends this broker's heartbeat to the controller (handling it here when this voter is
    /// the controller). Returns whether the broker is fenced.
    pub async fn send_heartbeat(
        &self,
        node: NodeId,
        address: &str,
        shutting_down: bool,
    ) -> Result<bool, ControllerError> {
        let Some(leader) = self.leader() else {
            return Err(self.not_controller());
        };
        if leader == self.node_id {
            return self.heartbeat(node, address, shutting_down).await;
        }
        let request = BrokerHeartbeatRequest {
            node_id: node,
            address: address.to_string(),
            shutting_down,
        };
        match self.peer(leader)?.broker_heartbeat(request).await {
            Ok(answer) => Ok(answer.into_inner().fenced),
            Err(status) => Err(ControllerError::Unreachable(format!(
                "heartbeat to node {leader}: {}: {}",
                status.code(),
                status.message()
            ))),
        }
    }

    /// Commits `command` through the controller wherever it is, waiting up to `patience` for
    /// one to be elected or reachable.
    pub async fn submit_to_controller(
        &self,
        command: Command,
        patience: Duration,
    ) -> Result<Vec<LeaderChange>, ControllerError> {
        let deadline = Instant::now() + patience;
        loop {
            let outcome = match self.leader() {
                None => Err(self.not_controller()),
                Some(leader) if leader == self.node_id => self.submit(command.clone()).await,
                Some(leader) => self.forward(leader, &command).await,
            };
            match outcome {
                Err(ControllerError::NotController { .. } | ControllerError::Unreachable(_))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    async fn forward(
        &self,
        leader: u64,
        command: &Command,
    ) -> Result<Vec<LeaderChange>, ControllerError> {
        let json = serde_json::to_vec(command)
            .map_err(|e| ControllerError::Storage(format!("encoding a command: {e}")))?;
        let answer = self
            .peer(leader)?
            .submit(RaftMessage { json: json.into() })
            .await
            .map_err(|status| {
                ControllerError::Unreachable(format!(
                    "submit to node {leader}: {}: {}",
                    status.code(),
                    status.message()
                ))
            })?;
        let result: Result<Vec<LeaderChange>, Refused> =
            serde_json::from_slice(&answer.into_inner().json).map_err(|e| {
                ControllerError::Unreachable(format!("node {leader} answered garbage: {e}"))
            })?;
        Ok(result?)
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(cause = %e, "controller shutdown");
        }
    }
}
