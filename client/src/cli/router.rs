//! Which broker leads each partition of one topic, and a connection to each leader.
//!
//! Produce, fetch and list-offsets go to the partition's leader. The router learns the leaders
//! from Metadata and connects to each leader's advertised address on first use. When the
//! metadata names a single broker, or a leader whose address it does not list, requests go to
//! the bootstrap connection: with one broker the bootstrap *is* the leader, whatever address it
//! advertises.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use brook_proto::v1::{ErrorCode, MetadataRequest, PartitionMetadata};

use crate::connection::endpoint_uri;
use crate::error::check_code;
use crate::{ClientError, Connection};

/// First pause before retrying after a retriable error; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The pause before retry number `attempt` (1-based): 100 ms, 200 ms, ... capped at 1 s.
pub fn backoff(attempt: u32) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

/// Leaders of one topic's partitions and connections to them.
#[derive(Debug)]
pub struct Router {
    bootstrap: Connection,
    topic: String,
    /// Indexed by partition number.
    partitions: Vec<PartitionMetadata>,
    /// Node id to advertised address.
    brokers: HashMap<i32, String>,
    /// Node id to connection, made on first use.
    connections: HashMap<i32, Connection>,
}

impl Router {
    /// Loads `topic`'s metadata through `bootstrap`. Fails with
    /// `UNKNOWN_TOPIC_OR_PARTITION` when the topic does not exist.
    pub async fn load(bootstrap: &Connection, topic: &str) -> Result<Router, ClientError> {
        let mut router = Router {
            bootstrap: bootstrap.clone(),
            topic: topic.to_owned(),
            partitions: Vec::new(),
            brokers: HashMap::new(),
            connections: HashMap::new(),
        };
        router.refresh().await?;
        Ok(router)
    }

    /// Reloads the metadata (after a `NOT_LEADER`, for example).
    pub async fn refresh(&mut self) -> Result<(), ClientError> {
        let response = self
            .bootstrap
            .broker()
            .metadata(MetadataRequest {
                topics: vec![self.topic.clone()],
            })
            .await?
            .into_inner();
        let Some(topic) = response.topics.into_iter().find(|t| t.name == self.topic) else {
            return Err(ClientError::Broker {
                topic: self.topic.clone(),
                partition: None,
                code: ErrorCode::UnknownTopicOrPartition,
                message: format!("topic {} does not exist", self.topic),
            });
        };
        check_code(&self.topic, None, topic.error_code, &topic.error_message)?;
        let mut partitions = topic.partitions;
        partitions.sort_by_key(|p| p.partition);
        let numbered = partitions
            .iter()
            .enumerate()
            .all(|(i, p)| p.partition as usize == i);
        if partitions.is_empty() || !numbered {
            return Err(ClientError::Protocol(format!(
                "metadata of topic {} lists partitions {:?}, expected 0 to N-1",
                self.topic,
                partitions.iter().map(|p| p.partition).collect::<Vec<_>>()
            )));
        }
        self.partitions = partitions;
        let brokers: HashMap<i32, String> = response
            .brokers
            .into_iter()
            .map(|b| (b.node_id, b.address))
            .collect();
        // Keep connections to brokers whose address did not change.
        self.connections
            .retain(|node, conn| brokers.get(node).map(String::as_str) == Some(conn.addr()));
        self.brokers = brokers;
        Ok(())
    }

    /// The topic's partition count.
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// The leader's node id (-1 when the partition has none or is unknown).
    pub fn leader_of(&self, partition: u32) -> i32 {
        self.partitions
            .get(partition as usize)
            .map_or(-1, |p| p.leader)
    }

    /// `partitions` grouped by leader node id, each group in the given order.
    pub fn by_leader(&self, partitions: impl IntoIterator<Item = u32>) -> BTreeMap<i32, Vec<u32>> {
        let mut groups: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
        for partition in partitions {
            groups
                .entry(self.leader_of(partition))
                .or_default()
                .push(partition);
        }
        groups
    }

    /// A connection to `node`, made on first use; the bootstrap connection when the cluster has
    /// one broker, when `node` is not listed, or when its address is the bootstrap's.
    pub async fn connection(&mut self, node: i32) -> Result<Connection, ClientError> {
        if self.brokers.len() <= 1 {
            return Ok(self.bootstrap.clone());
        }
        let Some(addr) = self.brokers.get(&node) else {
            return Ok(self.bootstrap.clone());
        };
        if let Some(conn) = self.connections.get(&node) {
            return Ok(conn.clone());
        }
        let same_as_bootstrap = match (endpoint_uri(addr), endpoint_uri(self.bootstrap.addr())) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let conn = if same_as_bootstrap {
            self.bootstrap.clone()
        } else {
            self.bootstrap.sibling(addr).await?
        };
        self.connections.insert(node, conn.clone());
        Ok(conn)
    }

    /// A partition error for a partition this topic does not have.
    pub fn check_partition(&self, partition: u32) -> Result<(), ClientError> {
        if partition < self.partition_count() {
            return Ok(());
        }
        Err(ClientError::Broker {
            topic: self.topic.clone(),
            partition: Some(partition),
            code: ErrorCode::UnknownTopicOrPartition,
            message: format!(
                "topic {} has {} partitions (0 to {})",
                self.topic,
                self.partition_count(),
                self.partition_count() - 1
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_second() {
        let ms = |a| backoff(a).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(40)],
            [100, 200, 400, 800, 1000, 1000]
        );
    }
}
