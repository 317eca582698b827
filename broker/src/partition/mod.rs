//! Topics and partitions on this broker.
//!
//! ```text
//! admin request ──► Registry (serialized): validate ─► open logs ─► persist topics.json
//! produce/fetch ──► Registry::partition(topic, n) ─► Partition ─► Log
//! ```
//!
//! - [`Registry`]: the topics, persisted in `topics.json`, and their admin operations;
//! - [`Partition`]: one partition's log, this broker's replication role for it, and its
//!   high watermark;
//! - [`ProducerIds`]: ids and epochs for idempotent producers;
//! - [`validate_topic_name`]: Kafka's naming rules.

#[allow(clippy::module_inception)]
mod partition;
mod producer_ids;
mod registry;
mod topic_name;

pub use partition::{IsrProposal, Partition};
pub use producer_ids::{PRODUCER_IDS_FILE, ProducerIdError, ProducerIds};
pub use registry::{
    AdminError, Registry, RegistryError, TOPICS_FILE, Topic, TopicMeta, is_internal,
};
pub use topic_name::{MAX_TOPIC_NAME_LEN, TopicNameError, validate_topic_name};
