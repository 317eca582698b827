//! The cluster: the metadata the controller quorum agrees on and the rules that change it.
//!
//! - [`metadata`]: brokers, topics, replica assignment, leaders, leader epochs and ISRs, as a
//!   pure state machine of commands, each checked against the state it applies to;
//! - [`raft_store`]: openraft's log, vote and state machine on disk for the quorum that orders
//!   those commands;
//! - [`network`]: the quorum's RPCs over gRPC;
//! - [`controller`]: one voter of the quorum: start-up, commands, the applied metadata.

pub mod controller;
pub mod metadata;
pub mod network;
pub mod raft_store;

pub use metadata::{
    BrokerInfo, ClusterMetadata, Command, LeaderChange, PartitionState, Refused, TopicState,
    assign_replicas,
};
