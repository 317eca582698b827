//! The Brook broker.
//!
//! Layout: folders name concepts.
//! - [`log`]: one partition's storage: segment files, offset and time indexes, crash
//!   recovery, retention, flush policies.
//! - [`partition`]: topics and partitions on this broker (`topics.json`, admin operations).
//! - [`server`]: the gRPC services (`Broker`, `Admin`, health), HTTP health and metrics,
//!   retention scheduling, graceful shutdown.
//! - [`config`]: the broker's configuration (TOML file, `BROOK_<SECTION>_<KEY>` overrides).
//!
//! - [`group`]: consumer-group membership and assignment (KIP-848 style), as pure state
//!   machines; the coordinator service that drives them joins next.
//!
//! - [`replication`]: the replication protocol's logic (leader epochs and their checkpoint,
//!   the leader's ISR and high watermark, a follower's truncation by epoch) as pure state
//!   machines, checked by a seeded fault simulation. The controller quorum and the
//!   replica-fetch service that drive them are next.
//! - [`cluster`]: the cluster metadata the controller quorum keeps (brokers, topics, replica
//!   assignment, leaders, epochs, ISRs) and the rules that change it, as a pure state
//!   machine; the openraft quorum that orders its commands is next.

pub mod cluster;
pub mod config;
pub mod group;
pub mod log;
pub mod partition;
pub mod replication;
pub mod security;
pub mod server;
