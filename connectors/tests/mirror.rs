//! brook-connect against a real Kafka broker (scripts/kafka.sh) and an in-process Brook
//! broker: exact mirroring both ways, SIGKILL mid-stream, a Kafka outage, and the errors of
//! bad configs and unreachable clusters.
//!
//! The Kafka tests skip with a loud message when Kafka's jars are not fetched, and fail under
//! `CI=true`. One Kafka test runs at a time (this machine has two cores).

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use brook_client::Connection;
use brook_tests::kafka::{KafkaCluster, kafka_available};
use support::*;
use tokio::task::JoinHandle;

const N: usize = 100_000;
const PARTITIONS: u32 = 4;
const SIZE: usize = 200;
/// The pipelines' consumer groups (`brook-connect.<name>`).
const K_GROUP: &str = "brook-connect.k-in";
const B_GROUP: &str = "brook-connect.b-out";

/// One Kafka test at a time.
static KAFKA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A Kafka, a Brook, and the two source topics: `k_topic` in Kafka (mirrored into Brook by
/// pipeline `k-in`) and `b_topic` in Brook (mirrored into Kafka by pipeline `b-out`).
struct Bridge {
    kafka: KafkaCluster,
    bootstrap: String,
    _brook: (
        brook_broker::server::RunningBroker,
        tempfile::TempDir,
        tokio_util::sync::CancellationToken,
    ),
    brook_addr: String,
    conn: Connection,
    k_topic: &'static str,
    b_topic: &'static str,
    /// The connector's config file lives here.
    dir: tempfile::TempDir,
}

impl Bridge {
    async fn start(k_topic: &'static str, b_topic: &'static str) -> Bridge {
        let kafka = tokio::task::spawn_blocking(|| KafkaCluster::start(1).expect("starting Kafka"))
            .await
            .unwrap();
        let brook = brook().await;
        let brook_addr = brook.0.grpc_addr.to_string();
        let conn = Connection::connect(&brook_addr).await.unwrap();
        Bridge {
            bootstrap: kafka.bootstrap(),
            kafka,
            _brook: brook,
            brook_addr,
            conn,
            k_topic,
            b_topic,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Creates both source topics with [`PARTITIONS`] partitions.
    async fn create_sources(&self) {
        self.kafka
            .create_topic(self.k_topic, PARTITIONS, 1)
            .unwrap();
        brook_create_topic(&self.conn, self.b_topic, PARTITIONS).await;
    }

    /// The connector config: one pipeline each way, quick group timeouts.
    fn config(&self) -> String {
        format!(
            r#"
[brook]
bootstrap = "{}"
[kafka]
bootstrap = "{}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[timeouts]
startup_ms = 10000
[[pipeline]]
name = "k-in"
direction = "kafka-to-brook"
topics = ["{}"]
[[pipeline]]
name = "b-out"
direction = "brook-to-kafka"
topics = ["{}"]
"#,
            self.brook_addr, self.bootstrap, self.k_topic, self.b_topic
        )
    }

    fn connector(&self) -> Connector {
        Connector::start(self.dir.path(), &self.config())
    }

    /// Writes `n` records into each source, at most `per_sec` per second each.
    fn produce(&self, n: usize, per_sec: Option<usize>) -> JoinHandle<()> {
        let (b, a, k, t) = (
            self.bootstrap.clone(),
            self.brook_addr.clone(),
            self.k_topic,
            self.b_topic,
        );
        tokio::spawn(async move {
            tokio::join!(
                kafka_produce(
                    &b,
                    k,
                    (0..n).map(|i| record("k", i, SIZE)).collect(),
                    per_sec
                ),
                brook_produce(
                    &a,
                    t,
                    (0..n).map(|i| record("b", i, SIZE)).collect(),
                    per_sec
                ),
            );
        })
    }

    /// Records in the two destinations: (Brook copy of `k_topic`, Kafka copy of `b_topic`).
    async fn mirrored(&self) -> (i64, i64) {
        (
            brook_count(&self.conn, self.k_topic, PARTITIONS).await,
            kafka_count(&self.bootstrap, self.b_topic, PARTITIONS).await,
        )
    }

    /// The pipelines' committed positions: (`k-in` in Kafka, `b-out` in Brook).
    async fn committed(&self) -> (BTreeMap<u32, i64>, BTreeMap<u32, i64>) {
        (
            kafka_committed(&self.bootstrap, K_GROUP, self.k_topic, PARTITIONS).await,
            brook_committed(&self.conn, B_GROUP, self.b_topic, PARTITIONS).await,
        )
    }

    /// Everything in the sources: (`k_topic` in Kafka, `b_topic` in Brook).
    async fn sources(&self) -> (Contents, Contents) {
        (
            kafka_read(&self.bootstrap, self.k_topic, PARTITIONS).await,
            brook_read(&self.conn, self.b_topic, PARTITIONS).await,
        )
    }

    /// Everything in the destinations, in the same order as [`Bridge::sources`].
    async fn copies(&self) -> (Contents, Contents) {
        (
            brook_read(&self.conn, self.k_topic, PARTITIONS).await,
            kafka_read(&self.bootstrap, self.b_topic, PARTITIONS).await,
        )
    }

    /// Waits until both pipelines committed the end of their sources: all mirrored.
    async fn wait_all_committed(&self, sources: &(Contents, Contents)) {
        let expected = (ends(&sources.0), ends(&sources.1));
        wait_for(
            "everything mirrored and committed",
            Duration::from_secs(300),
            || async { self.committed().await == expected },
        )
        .await;
    }
}

/// Each partition's end offset.
fn ends(contents: &Contents) -> BTreeMap<u32, i64> {
    contents
        .iter()
        .map(|(p, rs)| (*p, rs.last().map_or(0, |(o, _)| o + 1)))
        .collect()
}

fn records_only(contents: &Contents) -> BTreeMap<u32, Vec<Rec>> {
    contents
        .iter()
        .map(|(p, rs)| (*p, rs.iter().map(|(_, r)| r.clone()).collect()))
        .collect()
}

fn series(text: &str, name: &str, pipeline: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("pipeline=\"{pipeline}\"")))
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirrors_100k_records_each_way_exactly() {
    if !kafka_available("mirrors_100k_records_each_way_exactly") {
        return;
    }
    let _one = KAFKA.lock().await;
    let bridge = Bridge::start("k-orders", "b-events").await;
    bridge.create_sources().await;
    bridge.produce(N, None).await.unwrap();
    let sources = bridge.sources().await;
    assert!(
        sources.0.values().all(|p| !p.is_empty()),
        "records in every Kafka partition"
    );

    let connector = bridge.connector();
    wait_for(
        "100 000 records mirrored each way",
        Duration::from_secs(300),
        || async { bridge.mirrored().await == (N as i64, N as i64) },
    )
    .await;

    // Same records (key, value, headers, timestamp) in the same partition, in the same order.
    let copies = bridge.copies().await;
    assert_eq!(records_only(&copies.0), records_only(&sources.0));
    assert_eq!(records_only(&copies.1), records_only(&sources.1));

    let (code, health) = connector.get("/health");
    assert_eq!(code, 200, "{health}");
    assert_eq!(
        health.trim(),
        r#"{"pipelines":{"b-out":{"state":"running"},"k-in":{"state":"running"}}}"#
    );
    let (_, metrics) = connector.get("/metrics");
    let bytes: usize = (0..N)
        .map(|i| {
            let r = record("k", i, SIZE);
            let len = |b: &Option<bytes::Bytes>| b.as_ref().map_or(0, |b| b.len());
            len(&r.key)
                + len(&r.value)
                + r.headers
                    .iter()
                    .map(|(k, v)| k.len() + len(v))
                    .sum::<usize>()
        })
        .sum();
    assert_eq!(
        series(&metrics, "brook_connect_records_total", "k-in"),
        Some(N as f64)
    );
    assert_eq!(
        series(&metrics, "brook_connect_records_total", "b-out"),
        Some(N as f64)
    );
    assert_eq!(
        series(&metrics, "brook_connect_bytes_total", "k-in"),
        Some(bytes as f64)
    );
    assert_eq!(
        series(&metrics, "brook_connect_pipeline_up", "k-in"),
        Some(1.0)
    );
    assert_eq!(
        series(&metrics, "brook_connect_lag_records", "b-out"),
        Some(0.0)
    );

    // A graceful shutdown commits everything that was mirrored.
    assert_eq!(connector.terminate(), Some(0));
    assert_eq!(
        bridge.committed().await,
        (ends(&sources.0), ends(&sources.1))
    );
}

/// Per partition, the committed position at the crash (or the first offset, when nothing was
/// committed yet).
fn rewind_points(committed: &BTreeMap<u32, i64>, source: &Contents) -> BTreeMap<u32, Vec<i64>> {
    source
        .iter()
        .map(|(p, rs)| {
            let first = rs.first().map_or(0, |(o, _)| *o);
            (*p, vec![committed.get(p).copied().unwrap_or(first)])
        })
        .collect()
}

fn check(source: &Contents, dest: &Contents, rewinds: Option<&BTreeMap<u32, Vec<i64>>>) -> Verdict {
    let mut total = Verdict::default();
    for (p, src) in source {
        let v = verify_partition(
            src,
            &dest[p],
            match rewinds {
                Some(r) => Rewinds::To(&r[p]),
                None => Rewinds::Anywhere,
            },
        );
        eprintln!("partition {p}: {} source records, {v:?}", src.len());
        total.lost += v.lost;
        total.duplicated += v.duplicated;
        total.inconsistent += v.inconsistent;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_stream_loses_nothing_and_repeats_only_the_uncommitted() {
    if !kafka_available("sigkill_mid_stream_loses_nothing_and_repeats_only_the_uncommitted") {
        return;
    }
    let _one = KAFKA.lock().await;
    let bridge = Bridge::start("k-live", "b-live").await;
    bridge.create_sources().await;
    // Both sources are written while the connector runs: 100 000 records each at 5 000/s,
    // 20 s, so that the kill lands mid-stream in both directions even when one pipeline
    // starts many seconds after the other (a Kafka group join on a loaded machine).
    let producers = bridge.produce(N, Some(5_000));
    let connector = bridge.connector();
    wait_for(
        "a tenth mirrored each way",
        Duration::from_secs(120),
        || async {
            let (k, b) = bridge.mirrored().await;
            k >= 10_000 && b >= 10_000
        },
    )
    .await;
    connector.kill();
    let (k_at_kill, b_at_kill) = bridge.mirrored().await;
    assert!(
        k_at_kill < N as i64 && b_at_kill < N as i64,
        "killed mid-stream"
    );
    let (k_committed, b_committed) = bridge.committed().await;
    eprintln!(
        "killed at {k_at_kill} / {b_at_kill} mirrored; committed {k_committed:?} / {b_committed:?}"
    );

    let connector = bridge.connector();
    producers.await.unwrap();
    let sources = bridge.sources().await;
    bridge.wait_all_committed(&sources).await;
    assert_eq!(connector.terminate(), Some(0));

    let copies = bridge.copies().await;
    let k = check(
        &sources.0,
        &copies.0,
        Some(&rewind_points(&k_committed, &sources.0)),
    );
    let b = check(
        &sources.1,
        &copies.1,
        Some(&rewind_points(&b_committed, &sources.1)),
    );
    eprintln!("kafka-to-brook: {k:?}; brook-to-kafka: {b:?}");
    assert_eq!((k.lost, k.inconsistent), (0, 0));
    assert_eq!((b.lost, b.inconsistent), (0, 0));
    // Every copy past the source count is a duplicate, and every duplicate comes from the
    // restart going back to the committed position, within what was mirrored but not
    // committed at the kill.
    let total = |c: &Contents| c.values().map(Vec::len).sum::<usize>();
    assert_eq!(total(&copies.0) - N, k.duplicated);
    assert_eq!(total(&copies.1) - N, b.duplicated);
    let k_window = k_at_kill as usize - k_committed.values().sum::<i64>() as usize;
    let b_window = b_at_kill as usize - b_committed.values().sum::<i64>() as usize;
    assert!(
        k.duplicated <= k_window,
        "{} duplicates, window {k_window}",
        k.duplicated
    );
    assert!(
        b.duplicated <= b_window,
        "{} duplicates, window {b_window}",
        b.duplicated
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kafka_outage_mid_stream_is_survived() {
    if !kafka_available("a_kafka_outage_mid_stream_is_survived") {
        return;
    }
    let _one = KAFKA.lock().await;
    let bridge = Bridge::start("k-out", "b-out").await;
    bridge.create_sources().await;
    const M: usize = 60_000;
    let producers = bridge.produce(M, Some(5_000));
    let connector = bridge.connector();
    wait_for(
        "some records mirrored each way",
        Duration::from_secs(120),
        || async {
            let (k, b) = bridge.mirrored().await;
            k >= 10_000 && b >= 10_000
        },
    )
    .await;
    bridge.kafka.stop_node(1).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    bridge.kafka.start_node(1).unwrap();
    producers.await.unwrap();
    let sources = bridge.sources().await;
    assert_eq!(sources.0.values().map(Vec::len).sum::<usize>(), M);
    bridge.wait_all_committed(&sources).await;
    let (_, metrics) = connector.get("/metrics");
    assert_eq!(connector.terminate(), Some(0));
    let copies = bridge.copies().await;
    let k = check(&sources.0, &copies.0, None);
    let b = check(&sources.1, &copies.1, None);
    eprintln!("after the outage: kafka-to-brook {k:?}; brook-to-kafka {b:?}");
    eprintln!(
        "errors counted: {:?}",
        metrics
            .lines()
            .filter(|l| l.starts_with("brook_connect_errors_total"))
            .collect::<Vec<_>>()
    );
    assert_eq!((k.lost, k.inconsistent), (0, 0));
    assert_eq!((b.lost, b.inconsistent), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_topics_show_on_health_until_they_exist() {
    if !kafka_available("missing_topics_show_on_health_until_they_exist") {
        return;
    }
    let _one = KAFKA.lock().await;
    let bridge = Bridge::start("nope", "unused").await;
    let connector = Connector::start(
        bridge.dir.path(),
        &format!(
            "[brook]\nbootstrap = \"{}\"\n[kafka]\nbootstrap = \"{}\"\n\
             [[pipeline]]\nname = \"p\"\ndirection = \"kafka-to-brook\"\ntopics = [\"nope\"]\n\
             partitioning = \"one-to-one\"\ncreate_topics = false\n",
            bridge.brook_addr, bridge.bootstrap
        ),
    );
    wait_for(
        "the missing source topic on /health",
        Duration::from_secs(30),
        || async {
            let (code, body) = connector.get("/health");
            code == 503 && body.contains(r#""error":"Kafka topic \"nope\" does not exist""#)
        },
    )
    .await;
    bridge.kafka.create_topic("nope", 2, 1).unwrap();
    wait_for(
        "the missing destination topic on /health",
        Duration::from_secs(60),
        || async {
            let (code, body) = connector.get("/health");
            code == 503 && body.contains(r#""error":"Brook topic \"nope\" does not exist""#)
        },
    )
    .await;
    brook_create_topic(&bridge.conn, "nope", 1).await;
    wait_for("too few partitions on /health", Duration::from_secs(60), || async {
        let (_, body) = connector.get("/health");
        body.contains(
            r#"one-to-one partitioning needs Brook topic \"nope\" to have at least 2 partitions; it has 1"#,
        )
    })
    .await;
    let (_, metrics) = connector.get("/metrics");
    assert!(
        metrics.contains(r#"brook_connect_errors_total{pipeline="p",kind="topic"}"#),
        "{metrics}"
    );
    assert!(series(&metrics, "brook_connect_restarts_total", "p").unwrap() >= 3.0);
    // Fixed by the operator: the pipeline recovers on its own.
    let res = bridge
        .conn
        .admin()
        .create_partitions(brook_proto::v1::CreatePartitionsRequest {
            topics: vec![brook_proto::v1::PartitionCount {
                name: "nope".into(),
                total: 2,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].error_code, 0, "{:?}", res.results[0]);
    wait_for("the pipeline running", Duration::from_secs(60), || async {
        connector.get("/health")
            == (
                200,
                "{\"pipelines\":{\"p\":{\"state\":\"running\"}}}\n".to_string(),
            )
    })
    .await;
    assert_eq!(connector.terminate(), Some(0));
}

fn run_connect(dir: &std::path::Path, config: &str) -> (i32, String) {
    let path = dir.join("c.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_brook-connect"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const PIPE: &str = "[[pipeline]]\nname = \"p\"\ndirection = \"source\"\ntopics = [\"t\"]\n";

#[test]
fn bad_configs_exit_2_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_brook-connect"))
        .args(["--config", "/nonexistent/connect.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("error: cannot read the config file /nonexistent/connect.toml: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, err) = run_connect(dir.path(), &format!("{PIPE}linger_ms = 20000\n"));
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            "error: pipeline \"p\".linger_ms = 20000 is out of range 0..=10000\n"
        )
    );
    let (code, err) = run_connect(dir.path(), &format!("{PIPE}lingr_ms = 1\n"));
    assert_eq!(code, 2);
    assert!(err.contains("unknown field `lingr_ms`"), "{err}");
    let (code, err) = run_connect(dir.path(), "[http]\nlisten = \"127.0.0.1:7501\"\n");
    assert_eq!(
        (code, err.as_str()),
        (
            2,
            "error: the config defines no pipeline: add at least one [[pipeline]] table\n"
        )
    );
    let (code, err) = run_connect(dir.path(), &format!("{PIPE}topics = [\"a\"]\n"));
    assert_eq!(code, 2, "a key given twice");
    assert!(err.contains("duplicate key"), "{err}");
    let (code, err) = run_connect(dir.path(), &format!("{PIPE}max_in_flight_bytes = -1\n"));
    assert_eq!(code, 2);
    assert!(err.contains("max_in_flight_bytes"), "{err}");
}

#[test]
fn unreachable_clusters_at_start_exit_3_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there.
    let (code, err) = run_connect(
        dir.path(),
        &format!(
            "[brook]\nbootstrap = \"127.0.0.1:1\"\n[kafka]\nbootstrap = \"127.0.0.1:2\"\n\
             [timeouts]\nstartup_ms = 1500\n{PIPE}"
        ),
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("error: cannot reach Brook at 127.0.0.1:1: "),
        "{err}"
    );
    assert!(
        err.contains("error: cannot reach Kafka at 127.0.0.1:2: "),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_the_destination_refuses_stops_the_pipeline_and_is_never_committed_past() {
    if !kafka_available(
        "a_record_the_destination_refuses_stops_the_pipeline_and_is_never_committed_past",
    ) {
        return;
    }
    let _one = KAFKA.lock().await;
    let bridge = Bridge::start("k-big", "unused").await;
    bridge.kafka.create_topic("k-big", 1, 1).unwrap();
    // The Brook copy takes batches of at most 4 KiB; record 1 alone is 10 KiB.
    let res = bridge
        .conn
        .admin()
        .create_topics(brook_proto::v1::CreateTopicsRequest {
            topics: vec![brook_proto::v1::NewTopic {
                name: "k-big".into(),
                partitions: 1,
                replication_factor: 0,
                configs: [("max.message.bytes".to_string(), "4096".to_string())].into(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].error_code, 0, "{:?}", res.results[0]);
    let mut records: Vec<Rec> = (0..3).map(|i| record("k", i, 100)).collect();
    records[1].value = Some(bytes::Bytes::from(vec![b'x'; 10 * 1024]));
    kafka_produce(&bridge.bootstrap, "k-big", records, None).await;

    let connector = Connector::start(
        bridge.dir.path(),
        &format!(
            "[brook]\nbootstrap = \"{}\"\n[kafka]\nbootstrap = \"{}\"\n\
             [[pipeline]]\nname = \"k-in\"\ndirection = \"kafka-to-brook\"\ntopics = [\"k-big\"]\n\
             create_topics = false\ncommit_interval_ms = 10\n",
            bridge.brook_addr, bridge.bootstrap
        ),
    );
    wait_for(
        "the refused record on /health",
        Duration::from_secs(60),
        || async {
            let (code, body) = connector.get("/health");
            code == 503 && body.contains("Brook write failed") && body.contains("BATCH_TOO_LARGE")
        },
    )
    .await;
    // The pipeline keeps retrying (it never skips a record) and never commits past it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let committed = kafka_committed(&bridge.bootstrap, K_GROUP, "k-big", 1).await;
    assert!(
        committed.get(&0).is_none_or(|&o| o <= 1),
        "committed past the refused record: {committed:?}"
    );
    let copy = brook_read(&bridge.conn, "k-big", 1).await;
    assert!(
        copy[&0].len() <= 1,
        "nothing after the refused record: {copy:?}"
    );
    assert_eq!(connector.terminate(), Some(0));
}
