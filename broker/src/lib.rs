//! The Brook broker.
//!
//! Layout: folders name concepts.
//! - [`log`]: one partition's storage: segment files, offset and time indexes, crash
//!   recovery, retention, flush policies.
//!
//! Partitions, replication, the controller, consumer groups and the gRPC server join as their
//! issues land (see DESIGN.md in the project's shared notes and `docs/`).

pub mod log;
