//! The quorum's transport: openraft's three RPCs over gRPC (the `ControllerQuorum` service),
//! each request and result JSON-encoded in a `RaftMessage`.
//!
//! Client side, a peer whose address does not parse or does not answer is *unreachable*
//! (openraft backs off before retrying); a gRPC failure of another kind is a network error;
//! an error the remote Raft returned comes back as a remote error. Server side, a message that
//! does not decode is refused with `INVALID_ARGUMENT`, naming the RPC and the problem.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use brook_proto::v1::controller_quorum_client::ControllerQuorumClient;
use brook_proto::v1::controller_quorum_server::{ControllerQuorum, ControllerQuorumServer};
use brook_proto::v1::{BrokerHeartbeatRequest, BrokerHeartbeatResponse, RaftMessage};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::controller::{Controller, ControllerError};
use super::metadata::{Command, LeaderChange, Refused};
use super::raft_store::TypeConfig;
use crate::security::{Tls, peer_endpoint};

/// How long a peer connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest quorum message (a snapshot chunk or a batch of entries), both ways; a larger one
/// is refused with `OUT_OF_RANGE` before it is decoded.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

/// Opens a [`Peer`] per quorum member (openraft's [`RaftNetworkFactory`]).
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// This node's id, for timeout reports.
    pub id: u64,
    /// Where this broker reaches each voter: its own voter list, which takes precedence over
    /// the addresses in the replicated membership (brokers may see each other at different
    /// addresses, through NAT or a proxy).
    pub voters: Arc<BTreeMap<u64, String>>,
    /// TLS towards the other voters; `None`: plain text.
    pub tls: Option<Arc<Tls>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        let addr = self.voters.get(&target).unwrap_or(&node.addr);
        let client = peer_endpoint(addr, self.tls.as_deref())
            .map(|e| {
                let channel = e
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .connect_lazy();
                ControllerQuorumClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES)
            })
            .map_err(|e| format!("quorum member {target} address {addr:?}: {e}"));
        Peer {
            id: self.id,
            target,
            client,
        }
    }
}

/// The connection to one quorum member (openraft's [`RaftNetwork`]).
#[derive(Debug)]
pub struct Peer {
    id: u64,
    target: u64,
    client: Result<ControllerQuorumClient<Channel>, String>,
}

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(reason) => {
                return Err(Unreachable::new(&std::io::Error::other(reason.clone())).into());
            }
        };
        let json = serde_json::to_vec(request).map_err(|e| NetworkError::new(&e))?;
        let message = RaftMessage { json: json.into() };
        let ttl = option.hard_ttl();
        let mut client = client;
        let call = async move {
            match action {
                RPCTypes::Vote => client.vote(message).await,
                RPCTypes::AppendEntries => client.append_entries(message).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(message).await,
            }
        };
        let answer = match tokio::time::timeout(ttl, call).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            Ok(Err(status)) => return Err(status_error(&status)),
            Ok(Ok(answer)) => answer.into_inner(),
        };
        let result: Result<Resp, RaftError<u64, E>> =
            serde_json::from_slice(&answer.json).map_err(|e| NetworkError::new(&e))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// A failed gRPC call: unreachable when nothing answered, a network error otherwise.
fn status_error<E: Error>(status: &Status) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
    let error = std::io::Error::other(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
            Unreachable::new(&error).into()
        }
        _ => NetworkError::new(&error).into(),
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.call(RPCTypes::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call(RPCTypes::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        self.call(RPCTypes::Vote, &rpc, &option).await
    }
}

/// The `ControllerQuorum` service: hands Raft messages to the local Raft node, and broker
/// heartbeats and commands to the local voter when it is the controller.
#[derive(Clone)]
pub struct QuorumService {
    controller: Controller,
}

impl QuorumService {
    /// Serves `controller`.
    pub fn new(controller: Controller) -> QuorumService {
        QuorumService { controller }
    }

    fn raft(&self) -> &Raft<TypeConfig> {
        self.controller.raft()
    }

    /// The gRPC server for this service, with the quorum's message size limits.
    pub fn into_server(self) -> ControllerQuorumServer<QuorumService> {
        ControllerQuorumServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn decode<T: DeserializeOwned>(rpc: &str, request: Request<RaftMessage>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("{rpc}: the message does not decode: {e}")))
}

fn encode<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let json = serde_json::to_vec(result)
        .map_err(|e| Status::internal(format!("encoding the answer: {e}")))?;
    Ok(Response::new(RaftMessage { json: json.into() }))
}

#[tonic::async_trait]
impl ControllerQuorum for QuorumService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode("AppendEntries", request)?;
        encode(&self.raft().append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<u64> = decode("Vote", request)?;
        encode(&self.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode("InstallSnapshot", request)?;
        encode(&self.raft().install_snapshot(rpc).await)
    }

    async fn broker_heartbeat(
        &self,
        request: Request<BrokerHeartbeatRequest>,
    ) -> Result<Response<BrokerHeartbeatResponse>, Status> {
        let req = request.into_inner();
        if req.node_id < 0 {
            return Err(Status::invalid_argument(format!(
                "BrokerHeartbeat: node id {} is out of range: must be 0 or more",
                req.node_id
            )));
        }
        if req.address.is_empty() || req.address.len() > MAX_ADDRESS_BYTES {
            return Err(Status::invalid_argument(format!(
                "BrokerHeartbeat: address of {} bytes is out of range: must be 1 to {MAX_ADDRESS_BYTES}",
                req.address.len()
            )));
        }
        match (self.controller)
            .heartbeat(req.node_id, &req.address, req.shutting_down)
            .await
        {
            Ok(fenced) => Ok(Response::new(BrokerHeartbeatResponse { fenced })),
            Err(e) => Err(controller_status(e)),
        }
    }

    async fn submit(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let command: Command = decode("Submit", request)?;
        if !self.controller.is_controller() {
            return Err(controller_status(ControllerError::NotController {
                leader: self.controller.controller(),
            }));
        }
        match self.controller.submit(command).await {
            Ok(changes) => encode(&Ok::<_, Refused>(changes)),
            Err(ControllerError::Refused(refused)) => encode(&Err::<Vec<LeaderChange>, _>(refused)),
            Err(e) => Err(controller_status(e)),
        }
    }
}

/// Longest broker address a heartbeat may carry.
const MAX_ADDRESS_BYTES: usize = 256;

fn controller_status(error: ControllerError) -> Status {
    match error {
        ControllerError::NotController { .. } => Status::failed_precondition(error.to_string()),
        other => Status::unavailable(other.to_string()),
    }
}
