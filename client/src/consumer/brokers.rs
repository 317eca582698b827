//! [`Brokers`]: the cluster's brokers as metadata lists them, and a connection to each
//! partition leader the fetcher talks to.
//!
//! With a single broker, or a leader whose address metadata does not list, requests go to the
//! bootstrap connection: with one broker the bootstrap *is* the leader, whatever address it
//! advertises (the rule the CLI's router follows too).

use std::collections::HashMap;

use brook_proto::v1::BrokerInfo;

use crate::connection::endpoint_uri;
use crate::{ClientError, Connection, Security};

/// Node ids to addresses and connections.
#[derive(Debug)]
pub(crate) struct Brokers {
    bootstrap: Connection,
    addrs: HashMap<i32, String>,
    connections: HashMap<i32, Connection>,
}

/// How to reach a leader: a connection in hand, or one to open first.
#[derive(Debug)]
pub(crate) enum Target {
    /// Use this connection (boxed: a connection is large next to an address).
    Ready(Box<Connection>),
    /// Connect to `addr` first (and keep the connection for `node`).
    Connect {
        /// The leader's node id.
        node: i32,
        /// Its advertised address.
        addr: String,
        /// The bootstrap connection's TLS settings.
        security: Security,
    },
}

impl Target {
    /// The connection, opened if needed; a newly opened one is also returned with its node id
    /// so the fetcher can keep it.
    pub async fn open(self) -> Result<(Connection, Option<(i32, Connection)>), ClientError> {
        match self {
            Target::Ready(conn) => Ok((*conn, None)),
            Target::Connect {
                node,
                addr,
                security,
            } => {
                let conn = Connection::connect_with(&addr, &security).await?;
                Ok((conn.clone(), Some((node, conn))))
            }
        }
    }
}

impl Brokers {
    pub fn new(bootstrap: Connection) -> Brokers {
        Brokers {
            bootstrap,
            addrs: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    /// Takes the broker list from a metadata answer; keeps connections to brokers whose
    /// address did not change.
    pub fn update(&mut self, brokers: Vec<BrokerInfo>) {
        self.addrs = brokers
            .into_iter()
            .map(|b| (b.node_id, b.address))
            .collect();
        let addrs = &self.addrs;
        self.connections
            .retain(|node, conn| addrs.get(node).map(String::as_str) == Some(conn.addr()));
    }

    /// Where metadata is asked after `failures` failed requests in a row: the bootstrap
    /// broker first, then each other known broker in turn (a cluster keeps answering while
    /// the bootstrap broker is down).
    pub fn metadata_source(&self, failures: u32) -> Target {
        let mut others: Vec<i32> = self.addrs.keys().copied().collect();
        others.sort_unstable();
        match failures as usize % (others.len() + 1) {
            0 => Target::Ready(Box::new(self.bootstrap.clone())),
            i => self.target(others[i - 1]),
        }
    }

    /// Keeps a connection opened for `node`.
    pub fn insert(&mut self, node: i32, conn: Connection) {
        self.connections.insert(node, conn);
    }

    /// How to reach `node`.
    pub fn target(&self, node: i32) -> Target {
        if self.addrs.len() <= 1 {
            return Target::Ready(Box::new(self.bootstrap.clone()));
        }
        let Some(addr) = self.addrs.get(&node) else {
            return Target::Ready(Box::new(self.bootstrap.clone()));
        };
        if let Some(conn) = self.connections.get(&node) {
            return Target::Ready(Box::new(conn.clone()));
        }
        let same_as_bootstrap = match (endpoint_uri(addr), endpoint_uri(self.bootstrap.addr())) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same_as_bootstrap {
            return Target::Ready(Box::new(self.bootstrap.clone()));
        }
        Target::Connect {
            node,
            addr: addr.clone(),
            security: self.bootstrap.security().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy(addr: &str) -> Connection {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        Connection::from_channel(addr, channel)
    }

    fn info(node_id: i32, address: &str) -> BrokerInfo {
        BrokerInfo {
            node_id,
            address: address.into(),
        }
    }

    #[tokio::test]
    async fn one_broker_or_an_unknown_leader_means_the_bootstrap() {
        let mut brokers = Brokers::new(lazy("127.0.0.1:1"));
        let addr_of = |t: Target| match t {
            Target::Ready(c) => c.addr().to_owned(),
            Target::Connect { addr, .. } => format!("connect {addr}"),
        };
        assert_eq!(addr_of(brokers.target(7)), "127.0.0.1:1");
        brokers.update(vec![info(1, "10.0.0.1:7400")]);
        assert_eq!(addr_of(brokers.target(1)), "127.0.0.1:1");
        brokers.update(vec![info(1, "127.0.0.1:1"), info(2, "10.0.0.2:7400")]);
        assert_eq!(addr_of(brokers.target(1)), "127.0.0.1:1");
        assert_eq!(addr_of(brokers.target(3)), "127.0.0.1:1");
        assert_eq!(addr_of(brokers.target(2)), "connect 10.0.0.2:7400");
        brokers.insert(2, lazy("10.0.0.2:7400"));
        assert_eq!(addr_of(brokers.target(2)), "10.0.0.2:7400");
        // The broker moved: the old connection is dropped.
        brokers.update(vec![info(1, "127.0.0.1:1"), info(2, "10.0.0.9:7400")]);
        assert_eq!(addr_of(brokers.target(2)), "connect 10.0.0.9:7400");
    }
}
