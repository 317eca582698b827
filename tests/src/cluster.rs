//! A cluster of real `brook-broker` processes on loopback ports, for the cluster tests.
//!
//! Each broker gets its own data directory and a gRPC and an HTTP port on 127.0.0.1, chosen
//! free at start; every broker is a controller voter. Brokers are started, SIGKILLed,
//! stopped with SIGTERM and restarted on the same directory and ports. Dropping the cluster
//! kills whatever still runs.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use brook_client::{Connection, Security};
use brook_proto::v1::{MetadataRequest, MetadataResponse};
use tempfile::TempDir;

use crate::proxy::Proxies;

/// The `brook-broker` binary of this build: next to the test's `deps/` directory.
pub fn broker_binary() -> PathBuf {
    let bin = std::env::current_exe()
        .expect("the test binary's path")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("brook-broker");
    assert!(
        bin.exists(),
        "build brook-broker first (cargo build -p brook-broker): {} is missing",
        bin.display()
    );
    bin
}

/// Ports [`free_port`] picks from: below Linux's default ephemeral range (32768-60999), so a
/// socket bound to port 0 meanwhile (an in-process broker of another test, any outgoing
/// connection) cannot take a port picked for a broker process before that process binds it.
const PICKED_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port free on 127.0.0.1 now, never handed out before by this process.
fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().expect("port list");
    // A different start per process and per call; then the next free port along.
    let span = u32::from(PICKED_PORTS.end - PICKED_PORTS.start);
    let seed = (std::process::id().wrapping_mul(7919)).wrapping_add(given.len() as u32 * 104_729);
    for step in 0..span {
        let port = PICKED_PORTS.start + (seed.wrapping_add(step) % span) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port in {PICKED_PORTS:?}");
}

/// One broker of a [`Cluster`].
pub struct Node {
    /// Its node id.
    pub id: i32,
    /// Its gRPC address.
    pub grpc: String,
    /// Its HTTP address.
    pub http: String,
    dir: TempDir,
    child: Option<Child>,
}

impl Node {
    /// True while its process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Brokers started with the same voter list.
pub struct Cluster {
    bin: PathBuf,
    /// The brokers, node `i + 1` at index `i`.
    pub nodes: Vec<Node>,
    voters: String,
    env: Vec<(String, String)>,
    /// With [`Cluster::start_with_proxies`]: the links brokers reach each other through.
    proxies: Option<Proxies>,
    /// Extra environment of single brokers (node id, variable, value), after `env`.
    node_env: Vec<(i32, String, String)>,
    /// How [`Cluster::connect`] and the helpers built on it reach the brokers.
    pub security: Security,
}

impl Cluster {
    /// Starts `n` brokers (ids 1..=n) with the extra environment `env` (for example
    /// `BROOK_CLUSTER_SESSION_TIMEOUT_MS`), and waits for each to listen.
    pub fn start(n: usize, env: &[(&str, &str)]) -> Cluster {
        Cluster::start_with_binary(&broker_binary(), n, env)
    }

    /// [`Cluster::start`] with the brokers reaching each other only through fault-injecting
    /// [`Proxies`] (each broker's `--seeds` names the proxies for the others), so that
    /// [`Cluster::isolate`] can cut one off; clients still reach every broker directly.
    pub fn start_with_proxies(n: usize, env: &[(&str, &str)]) -> Cluster {
        Cluster::start_inner(&broker_binary(), n, env, true)
    }

    /// [`Cluster::start`] with the `brook-broker` binary at `bin`.
    pub fn start_with_binary(bin: &Path, n: usize, env: &[(&str, &str)]) -> Cluster {
        Cluster::start_inner(bin, n, env, false)
    }

    /// [`Cluster::start`] with extra environment for single brokers (`(node id, variable,
    /// value)`, for example each broker's own certificate), and the client settings
    /// `security` for [`Cluster::connect`].
    pub fn start_configured(
        n: usize,
        env: &[(&str, &str)],
        node_env: &[(i32, &str, &str)],
        security: Security,
    ) -> Cluster {
        let mut cluster = Cluster::prepare(&broker_binary(), n, env, false);
        cluster.node_env = (node_env.iter())
            .map(|(id, k, v)| (*id, k.to_string(), v.to_string()))
            .collect();
        cluster.security = security;
        for id in 1..=n as i32 {
            cluster.start_node(id);
        }
        cluster
    }

    fn start_inner(bin: &Path, n: usize, env: &[(&str, &str)], proxied: bool) -> Cluster {
        let mut cluster = Cluster::prepare(bin, n, env, proxied);
        for id in 1..=n as i32 {
            cluster.start_node(id);
        }
        cluster
    }

    fn prepare(bin: &Path, n: usize, env: &[(&str, &str)], proxied: bool) -> Cluster {
        let nodes: Vec<Node> = (1..=n as i32)
            .map(|id| Node {
                id,
                grpc: format!("127.0.0.1:{}", free_port()),
                http: format!("127.0.0.1:{}", free_port()),
                dir: tempfile::tempdir().expect("a data directory"),
                child: None,
            })
            .collect();
        let voters = (nodes.iter())
            .map(|n| format!("{}@{}", n.id, n.grpc))
            .collect::<Vec<_>>()
            .join(",");
        let proxies = proxied
            .then(|| Proxies::start(&(nodes.iter()).map(|n| (n.id, n.grpc.clone())).collect()));
        Cluster {
            proxies,
            bin: bin.to_path_buf(),
            nodes,
            voters,
            env: (env.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            node_env: Vec::new(),
            security: Security::plaintext(),
        }
    }

    /// The node with id `id`.
    pub fn node(&self, id: i32) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    /// Broker `id`'s `--seeds`: every broker's address, or with proxies, the proxies it
    /// reaches the others through.
    fn seeds(&self, id: i32) -> String {
        let Some(proxies) = &self.proxies else {
            return self.voters.clone();
        };
        (self.nodes.iter())
            .map(|n| match n.id {
                me if me == id => format!("{me}@{}", n.grpc),
                other => format!("{other}@{}", proxies.addr(id, other)),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cuts broker `id` off from the other brokers (with [`Cluster::start_with_proxies`]).
    pub fn isolate(&self, id: i32) {
        self.proxies
            .as_ref()
            .expect("a cluster with proxies")
            .isolate(id);
    }

    /// Ends every network partition.
    pub fn heal(&self) {
        self.proxies
            .as_ref()
            .expect("a cluster with proxies")
            .heal();
    }

    /// Starts (or restarts, on the same directory and ports) broker `id`.
    pub fn start_node(&mut self, id: i32) {
        let voters = self.seeds(id);
        let mut env = self.env.clone();
        env.extend(
            (self.node_env.iter())
                .filter(|(node, _, _)| *node == id)
                .map(|(_, k, v)| (k.clone(), v.clone())),
        );
        let node = &mut self.nodes[(id - 1) as usize];
        assert!(node.child.is_none(), "broker {id} already runs");
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--data-dir", node.dir.path().to_str().expect("utf-8 path")])
            .args(["--listen", &node.grpc, "--http-listen", &node.http])
            .args(["--node-id", &id.to_string(), "--seeds", &voters])
            .env("BROOK_LOGGING_LEVEL", "warn,openraft=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start brook-broker");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the start-up line");
        assert!(
            line.starts_with("brook-broker listening "),
            "broker {id} did not start: {line:?}"
        );
        node.child = Some(child);
    }

    /// Broker `id`'s pid while it runs.
    pub fn pid(&self, id: i32) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    /// SIGKILLs broker `id`.
    pub fn kill(&mut self, id: i32) {
        let mut child = self.nodes[(id - 1) as usize]
            .child
            .take()
            .unwrap_or_else(|| panic!("broker {id} is not running"));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// Stops broker `id` with SIGTERM and waits for it to exit.
    pub fn terminate(&mut self, id: i32) -> ExitStatus {
        let mut child = self.nodes[(id - 1) as usize]
            .child
            .take()
            .unwrap_or_else(|| panic!("broker {id} is not running"));
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        child.wait().expect("reap")
    }

    /// A connection to broker `id`.
    pub async fn connect(&self, id: i32) -> Connection {
        Connection::connect_with(&self.node(id).grpc, &self.security)
            .await
            .unwrap_or_else(|e| panic!("connect to broker {id}: {e}"))
    }

    /// Broker `id`'s Metadata answer for every topic.
    pub async fn metadata(&self, id: i32) -> anyhow::Result<MetadataResponse> {
        let conn = Connection::connect_with(&self.node(id).grpc, &self.security).await?;
        Ok(conn
            .broker()
            .metadata(MetadataRequest { topics: Vec::new() })
            .await?
            .into_inner())
    }

    /// `(offset, value)` of every record of `topic`-`partition` below the high watermark,
    /// read from broker `id` (which must lead it), and that high watermark; an error names
    /// the broker's refusal (it does not lead the partition, for one).
    pub async fn read_partition(
        &self,
        id: i32,
        topic: &str,
        partition: u32,
    ) -> Result<(Vec<(i64, String)>, i64), String> {
        self.read_partition_from(id, topic, partition, 0).await
    }

    /// [`Cluster::read_partition`] from offset `start` (a log that retention trimmed).
    pub async fn read_partition_from(
        &self,
        id: i32,
        topic: &str,
        partition: u32,
        start: i64,
    ) -> Result<(Vec<(i64, String)>, i64), String> {
        let conn = self.connect(id).await;
        crate::read_partition(&conn, topic, partition, start)
            .await
            .map_err(|e| format!("broker {id}: {e}"))
    }

    /// [`Cluster::read_partition`] from whichever broker leads `topic`-`partition` by broker
    /// `via`'s metadata, asking again while leadership is still settling (a read that meets
    /// NOT_LEADER), for at most `limit`.
    pub async fn read_partition_from_leader(
        &self,
        via: i32,
        topic: &str,
        partition: u32,
        limit: Duration,
    ) -> Result<(Vec<(i64, String)>, i64), String> {
        let deadline = Instant::now() + limit;
        loop {
            let leader = self.metadata(via).await.ok().and_then(|m| {
                let t = m.topics.into_iter().find(|t| t.name == topic)?;
                let p = t
                    .partitions
                    .into_iter()
                    .find(|p| p.partition == partition)?;
                (p.leader > 0).then_some(p.leader)
            });
            let outcome = match leader {
                Some(leader) => self.read_partition(leader, topic, partition).await,
                None => Err(format!("{topic}-{partition} has no leader yet")),
            };
            match outcome {
                Err(e)
                    if (e.contains("NotLeader") || e.contains("no leader yet"))
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Broker `id`'s `/metrics` text.
    pub async fn metrics(&self, id: i32) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&self.node(id).http).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: brook\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok(text)
    }

    /// The value of the unlabelled metric `name` on broker `id`, polled until `check`
    /// accepts it, for at most `limit`.
    pub async fn wait_metric(
        &self,
        id: i32,
        name: &str,
        limit: Duration,
        check: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.metrics(id).await.ok().and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            });
            if let Some(v) = value
                && check(v)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "broker {id}: {name} = {value:?} not accepted within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls broker `id`'s metadata until `check` accepts it, for at most `limit`; panics
    /// with `what` and the last answer otherwise.
    pub async fn wait_metadata(
        &self,
        id: i32,
        what: &str,
        limit: Duration,
        check: impl Fn(&MetadataResponse) -> bool,
    ) -> MetadataResponse {
        let deadline = Instant::now() + limit;
        loop {
            let last = match self.metadata(id).await {
                Ok(m) if check(&m) => return m,
                Ok(m) => format!("{m:?}"),
                Err(e) => e.to_string(),
            };
            assert!(
                Instant::now() < deadline,
                "broker {id}: {what} not seen within {limit:?}; last answer: {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
