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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, Raft, RaftMetrics};
use parking_lot::RwLock;
use tokio::sync::watch;

use super::metadata::{ClusterMetadata, Command, LeaderChange, Refused};
use super::network::{Network, QuorumService};
use super::raft_store::{LogStore, MachineState, StateMachine, TypeConfig};

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
}

/// One voter of the controller quorum.
#[derive(Clone)]
pub struct Controller {
    node_id: u64,
    raft: Raft<TypeConfig>,
    state: Arc<RwLock<MachineState>>,
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
        let machine = StateMachine::open(&config.dir.join("state")).map_err(storage)?;
        let state = machine.state();
        let network = Network { id: config.node_id };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, machine)
            .await
            .map_err(|e| ControllerError::Stopped(e.to_string()))?;
        if config.node_id == first {
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
            raft,
            state,
        })
    }

    /// The gRPC service the other voters call.
    pub fn service(&self) -> QuorumService {
        QuorumService::new(self.raft.clone())
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

    /// The Raft node's metrics: its state, term, leader and log positions.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<u64, BasicNode>> {
        self.raft.metrics()
    }

    /// The quorum's leader, as this voter knows it.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(cause = %e, "controller shutdown");
        }
    }
}
