//! A real Apache Kafka for tests and benchmarks: one KRaft node or a 3-node cluster on free
//! loopback ports, run by `scripts/kafka.sh` from the jars that `scripts/kafka.sh fetch`
//! downloads.
//!
//! Each [`KafkaCluster`] owns a temporary directory (configs, logs, pid files) and its own
//! ports, so tests in one binary may run clusters side by side. Dropping it stops every node.
//! The nodes also watch this process: if it ends without dropping the cluster (SIGKILL, Ctrl-C,
//! a test run cut short), they stop within seconds and their directory is removed
//! (`BROOK_KAFKA_OWNER_PID` in `scripts/kafka.sh`).
//! Tests first call [`kafka_available`], which skips them (loudly) where Java or the jars are
//! missing, and fails them under `CI=true`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};

/// The Kafka tool class that creates and describes topics.
pub const TOPIC_COMMAND: &str = "org.apache.kafka.tools.TopicCommand";

/// Lowest base port tried.
const PORT_LOW: u16 = 20000;
/// Bases stay below Linux's default ephemeral range (32768-60999), so that the kernel does not
/// hand a chosen port to some outgoing connection between the check and the broker's bind.
const PORT_HIGH: u16 = 32000;
/// Base ports tried per start attempt.
const PORT_TRIES: usize = 20;
/// Start attempts (a fresh directory and base port each) when a port was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// Backstops over the script's own limits (it waits 90 s for a start, 30 s + 10 s for a stop).
const START_TIMEOUT: Duration = Duration::from_secs(150);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long [`KafkaCluster::create_topic`] waits for every partition to have a leader.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Kafka cluster of 1 or 3 broker+controller nodes on 127.0.0.1.
///
/// Node `i` (1-based) serves clients on `base_port + 2(i-1)` and its controller on the port
/// after; its files live in `dir()/node-i` (`server.properties`, `logs/`, `kafka.out`,
/// `kafka.pid`).
pub struct KafkaCluster {
    dir: tempfile::TempDir,
    script: PathBuf,
    nodes: usize,
    base_port: u16,
}

impl KafkaCluster {
    /// Starts `nodes` (1 or 3) on free loopback ports, waits until they serve.
    ///
    /// Three nodes run with replication factor 3 and `min.insync.replicas` 2 (internal topics
    /// too), one node with replication factor 1.
    pub fn start(nodes: usize) -> anyhow::Result<KafkaCluster> {
        KafkaCluster::start_with(nodes, &[])
    }

    /// [`KafkaCluster::start`] with extra broker settings in every node's
    /// `server.properties` (kept across node restarts), e.g.
    /// `("log.flush.interval.messages", "1")`. Keys and values may not contain spaces.
    pub fn start_with(nodes: usize, properties: &[(&str, &str)]) -> anyhow::Result<KafkaCluster> {
        ensure!(
            properties
                .iter()
                .all(|(k, v)| !k.contains(char::is_whitespace) && !v.contains(char::is_whitespace)),
            "Kafka properties may not contain spaces: {properties:?}"
        );
        let extra: Vec<String> = properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let extra = extra.join(" ");
        ensure!(
            nodes == 1 || nodes == 3,
            "a Kafka cluster has 1 or 3 nodes, not {nodes}"
        );
        let script = script_path();
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let base_port = free_base_port(nodes)?;
            let dir = tempfile::Builder::new()
                .prefix("brook-kafka-")
                .tempdir()
                .context("create a directory for Kafka")?;
            let dir_arg = dir.path().to_string_lossy().into_owned();
            let port_arg = base_port.to_string();
            let nodes_arg = nodes.to_string();
            let out = run_script_env(
                &script,
                &["start", &dir_arg, &port_arg, &nodes_arg],
                START_TIMEOUT,
                &[("KAFKA_EXTRA_PROPERTIES", extra.as_str())],
            )?;
            let cluster = KafkaCluster {
                dir,
                script: script.clone(),
                nodes,
                base_port,
            };
            if out.status.success() {
                return Ok(cluster);
            }
            let err = script_error(&format!("start {nodes} Kafka node(s)"), &out);
            // The script cleans up after a failed start; this only makes sure.
            drop(cluster);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !stderr.contains("already in use") {
                return Err(err);
            }
            eprintln!("kafka harness: a port was taken meanwhile; retrying on others: {err:#}");
            last_err = Some(err);
        }
        Err(last_err
            .expect("at least one attempt")
            .context("no free loopback ports for Kafka"))
    }

    /// The comma-separated `host:port` list of the nodes' client listeners, for
    /// `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        (1..=self.nodes)
            .map(|i| format!("127.0.0.1:{}", self.client_port(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The number of nodes (1 or 3).
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The client port of node `node` (1-based); its controller listens on the next port.
    pub fn client_port(&self, node: usize) -> u16 {
        assert!((1..=self.nodes).contains(&node), "no Kafka node {node}");
        self.base_port + 2 * (node as u16 - 1)
    }

    /// The cluster's directory; node `i` lives in `dir()/node-i`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of node `node` (1-based) as its `kafka.pid` records, `None` when it is stopped.
    pub fn pid(&self, node: usize) -> Option<u32> {
        let path = self.dir().join(format!("node-{node}")).join("kafka.pid");
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// Stops node `node` (1-based): SIGTERM, SIGKILL after 30 s; returns once it is gone.
    pub fn stop_node(&self, node: usize) -> anyhow::Result<()> {
        self.check_node(node)?;
        self.script_ok(
            &["stop-node", &self.dir_arg(), &node.to_string()],
            STOP_TIMEOUT,
        )
        .with_context(|| format!("stop Kafka node {node}"))
    }

    /// Starts node `node` (1-based) again after [`stop_node`](Self::stop_node), with its data
    /// kept; returns once it serves.
    pub fn start_node(&self, node: usize) -> anyhow::Result<()> {
        self.check_node(node)?;
        self.script_ok(
            &["start-node", &self.dir_arg(), &node.to_string()],
            START_TIMEOUT,
        )
        .with_context(|| format!("start Kafka node {node}"))
    }

    /// Stops every node and waits until all are gone. Idempotent.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.script_ok(&["stop", &self.dir_arg()], STOP_TIMEOUT)
            .context("stop Kafka")
    }

    /// Runs a Kafka tool class (e.g. org.apache.kafka.tools.TopicCommand) and returns its
    /// output; an error on a non-zero exit, with stderr in the message.
    ///
    /// The tool logs at WARN, so stderr holds its complaints rather than its configuration.
    /// It is killed after 120 s.
    pub fn tool(&self, class: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut all = vec!["tool", class];
        all.extend_from_slice(args);
        let out = run_script(&self.script, &all, TOOL_TIMEOUT)?;
        if !out.status.success() {
            return Err(script_error(
                &format!("Kafka tool {class} {}", args.join(" ")),
                &out,
            ));
        }
        Ok(out)
    }

    /// Creates `topic` with `partitions` partitions and replication factor `replication` via
    /// TopicCommand, then waits (30 s at most) until every partition has a leader.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
        replication: u16,
    ) -> anyhow::Result<()> {
        let bootstrap = self.bootstrap();
        let partitions_arg = partitions.to_string();
        let replication_arg = replication.to_string();
        self.tool(
            TOPIC_COMMAND,
            &[
                "--bootstrap-server",
                &bootstrap,
                "--create",
                "--topic",
                topic,
                "--partitions",
                &partitions_arg,
                "--replication-factor",
                &replication_arg,
            ],
        )?;
        let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
        loop {
            let out = self.tool(
                TOPIC_COMMAND,
                &[
                    "--bootstrap-server",
                    &bootstrap,
                    "--describe",
                    "--topic",
                    topic,
                ],
            );
            let text = match &out {
                Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
                Err(e) => format!("{e:#}"),
            };
            let led = text
                .lines()
                .filter(|l| l.contains("Partition: "))
                .filter(|l| {
                    l.split('\t')
                        .find_map(|f| f.trim().strip_prefix("Leader: "))
                        .is_some_and(|leader| leader.parse::<u32>().is_ok())
                })
                .count();
            if led == partitions as usize {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "topic {topic}: {led} of {partitions} partitions have a leader after {:?}; \
                     last describe:\n{text}",
                    TOPIC_READY_TIMEOUT
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    fn check_node(&self, node: usize) -> anyhow::Result<()> {
        ensure!(
            (1..=self.nodes).contains(&node),
            "node {node} does not exist: nodes are 1..={}",
            self.nodes
        );
        Ok(())
    }

    fn dir_arg(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    fn script_ok(&self, args: &[&str], timeout: Duration) -> anyhow::Result<()> {
        let out = run_script(&self.script, args, timeout)?;
        if !out.status.success() {
            return Err(script_error(&format!("kafka.sh {}", args.join(" ")), &out));
        }
        Ok(())
    }
}

impl Drop for KafkaCluster {
    /// Stops every node (errors ignored) before the directory goes.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Whether the Kafka jars are ready (`target/kafka/libs/.complete`, or `.complete` in
/// `$BROOK_KAFKA_LIBS` when set) and `java` runs.
///
/// When not: under env `CI=true` panics with a clear message (a missing prerequisite is a
/// failure in CI); otherwise prints a loud multi-line "SKIPPED: ... run scripts/kafka.sh fetch"
/// to stderr and returns false.
pub fn kafka_available(test_name: &str) -> bool {
    let libs = libs_dir();
    let mut missing = Vec::new();
    if !libs.join(".complete").is_file() {
        missing.push(format!(
            "the Kafka jars ({} has no .complete marker)",
            libs.display()
        ));
    }
    let java = Command::new("java")
        .arg("-version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !java.is_ok_and(|s| s.success()) {
        missing.push("java (17 or newer) on PATH".to_string());
    }
    if missing.is_empty() {
        return true;
    }
    let what = missing.join(" and ");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test_name}: Kafka interop tests need {what}; CI must provide them \
             (scripts/test.sh runs `scripts/kafka.sh fetch`)"
        );
    }
    let bar = "*".repeat(78);
    eprintln!(
        "\n{bar}\n\
         * SKIPPED: {test_name}\n\
         * missing: {what}\n\
         * run scripts/kafka.sh fetch (needs Java 17+ and Maven) to run the Kafka tests\n\
         {bar}\n"
    );
    false
}

/// `scripts/kafka.sh` in this workspace.
fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("kafka.sh")
}

/// The jar directory the script uses.
fn libs_dir() -> PathBuf {
    match std::env::var_os("BROOK_KAFKA_LIBS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target/kafka/libs"),
    }
}

/// A random base port such that the `2 * nodes` ports from it are bindable on 127.0.0.1 now.
fn free_base_port(nodes: usize) -> anyhow::Result<u16> {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let span = 2 * nodes as u16;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for attempt in 0..PORT_TRIES {
        // RandomState is seeded randomly per process and differs per instance.
        let r = RandomState::new().hash_one((
            std::process::id(),
            nanos,
            CALLS.fetch_add(1, Ordering::Relaxed),
            attempt,
        ));
        let base = PORT_LOW + (r % u64::from(PORT_HIGH - PORT_LOW - span)) as u16;
        let listeners: Result<Vec<_>, _> = (base..base + span)
            .map(|p| TcpListener::bind(("127.0.0.1", p)))
            .collect();
        if listeners.is_ok() {
            return Ok(base);
        }
    }
    bail!("found no {span} free consecutive loopback ports in {PORT_LOW}..{PORT_HIGH}")
}

/// Runs `bash kafka.sh ARGS...` in its own process group and collects its output; kills the
/// group (the script, its JVMs) when it runs longer than `timeout`.
fn run_script(script: &Path, args: &[&str], timeout: Duration) -> anyhow::Result<Output> {
    run_script_env(script, args, timeout, &[])
}

fn run_script_env(
    script: &Path,
    args: &[&str],
    timeout: Duration,
    env: &[(&str, &str)],
) -> anyhow::Result<Output> {
    let mut child = Command::new("bash")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .env("BROOK_KAFKA_OWNER_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("run bash {}", script.display()))?;
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status: ExitStatus = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            bail!(
                "kafka.sh {} did not finish within {timeout:?}; killed it; stderr:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// An error for a failed script run: what was done, the exit status, stderr and stdout.
fn script_error(what: &str, out: &Output) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} failed ({}):\n--- stderr ---\n{}\n--- stdout ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end(),
        String::from_utf8_lossy(&out.stdout).trim_end()
    )
}
