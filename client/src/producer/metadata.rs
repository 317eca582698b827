//! [`MetadataCache`]: partition counts and leaders of the topics the producer writes to, and a
//! connection per leader.
//!
//! Loaded per topic on first use, reloaded for every known topic after a `NOT_LEADER`,
//! `UNKNOWN_TOPIC_OR_PARTITION`, `FENCED_LEADER_EPOCH` or a transport failure. With a single
//! broker in the metadata every request goes to the bootstrap connection (as in
//! [`crate::cli::router`]).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use brook_proto::v1::{ErrorCode, MetadataRequest};

use crate::connection::endpoint_uri;
use crate::error::check_code;
use crate::{ClientError, Connection};

/// What the cache knows of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicInfo {
    /// Leader node id per partition (index = partition number; -1 = none).
    pub leaders: Vec<i32>,
}

/// Topics' leaders and connections to them.
#[derive(Debug)]
pub(crate) struct MetadataCache {
    bootstrap: Connection,
    /// Longest wait for one metadata request.
    timeout: Duration,
    topics: HashMap<String, TopicInfo>,
    brokers: HashMap<i32, String>,
    connections: HashMap<i32, Connection>,
}

impl MetadataCache {
    pub fn new(bootstrap: Connection, timeout: Duration) -> Self {
        MetadataCache {
            bootstrap,
            timeout,
            topics: HashMap::new(),
            brokers: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    /// The topic's info, loading it on first use. `Ok(None)`: the topic does not exist.
    pub async fn topic(&mut self, topic: &str) -> Result<Option<&TopicInfo>, ClientError> {
        if !self.topics.contains_key(topic) {
            self.load(vec![topic.to_owned()]).await?;
        }
        Ok(self.topics.get(topic))
    }

    /// The connection the producer was started with.
    pub fn bootstrap(&self) -> &Connection {
        &self.bootstrap
    }

    /// The cached info, without loading.
    pub fn cached(&self, topic: &str) -> Option<&TopicInfo> {
        self.topics.get(topic)
    }

    /// Every known topic with its partition count.
    pub fn partition_counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.topics
            .iter()
            .map(|(name, info)| (name.as_str(), info.leaders.len()))
    }

    /// Reloads every known topic.
    pub async fn refresh(&mut self) -> Result<(), ClientError> {
        let names: Vec<String> = self.topics.keys().cloned().collect();
        if names.is_empty() {
            return Ok(());
        }
        self.load(names).await
    }

    /// Sends `request` to the bootstrap broker, then, if it cannot answer, to every other
    /// known broker in turn (a cluster keeps answering while the bootstrap broker restarts).
    /// A failure that is not about reaching the broker is returned at once.
    pub async fn ask_any<T, F, Fut>(&mut self, what: &str, mut request: F) -> Result<T, ClientError>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let mut sources = vec![self.bootstrap.clone()];
        let mut others: Vec<(i32, String)> = (self.brokers.iter())
            .map(|(node, addr)| (*node, addr.clone()))
            .collect();
        others.sort();
        let mut failure = None;
        let mut others = others.into_iter();
        loop {
            let conn = match sources.pop() {
                Some(conn) => conn,
                None => match others.next() {
                    Some((node, addr)) if addr != self.bootstrap.addr() => {
                        match self.connections.get(&node) {
                            Some(conn) => conn.clone(),
                            None => match self.bootstrap.sibling(&addr).await {
                                Ok(conn) => conn,
                                Err(e) => {
                                    failure = Some(e);
                                    continue;
                                }
                            },
                        }
                    }
                    Some(_) => continue,
                    None => return Err(failure.expect("the bootstrap broker was asked")),
                },
            };
            match tokio::time::timeout(self.timeout, request(conn)).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(status)) => {
                    let e = ClientError::Rpc(status);
                    if !e.is_retriable() {
                        return Err(e);
                    }
                    failure = Some(e);
                }
                Err(_) => {
                    failure = Some(ClientError::Timeout {
                        operation: what.to_string(),
                        after: self.timeout,
                    })
                }
            }
        }
    }

    /// Whether the last metadata listed broker `node`.
    pub fn knows_broker(&self, node: i32) -> bool {
        self.brokers.contains_key(&node)
    }

    /// Reloads the known topics and the broker list.
    pub async fn refresh_brokers(&mut self) -> Result<(), ClientError> {
        let names: Vec<String> = self.topics.keys().cloned().collect();
        self.load(names).await
    }

    async fn load(&mut self, names: Vec<String>) -> Result<(), ClientError> {
        let response = self
            .ask_any("metadata request", |conn| {
                let topics = names.clone();
                async move {
                    let response = conn.broker().metadata(MetadataRequest { topics }).await?;
                    Ok(response.into_inner())
                }
            })
            .await?;
        for topic in response.topics {
            if topic.error_code == ErrorCode::UnknownTopicOrPartition as i32 {
                self.topics.remove(&topic.name);
                continue;
            }
            check_code(&topic.name, None, topic.error_code, &topic.error_message)?;
            let mut leaders = vec![-1; topic.partitions.len()];
            for p in &topic.partitions {
                if let Some(slot) = leaders.get_mut(p.partition as usize) {
                    *slot = p.leader;
                }
            }
            self.topics.insert(topic.name, TopicInfo { leaders });
        }
        let brokers: HashMap<i32, String> = response
            .brokers
            .into_iter()
            .map(|b| (b.node_id, b.address))
            .collect();
        self.connections
            .retain(|node, conn| brokers.get(node).map(String::as_str) == Some(conn.addr()));
        self.brokers = brokers;
        Ok(())
    }

    /// A connection to `node`, made on first use; the bootstrap connection with one broker,
    /// for an unlisted node, or when the node's address is the bootstrap's.
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
        let same = match (endpoint_uri(addr), endpoint_uri(self.bootstrap.addr())) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let conn = if same {
            self.bootstrap.clone()
        } else {
            self.bootstrap.sibling(addr).await?
        };
        self.connections.insert(node, conn.clone());
        Ok(conn)
    }
}
