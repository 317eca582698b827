//! Helpers of the connector tests: an in-process Brook broker, the `brook-connect` binary as a
//! child process, and readers and writers of both clusters that record exactly what each
//! partition holds.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use brook_broker::config::BrokerConfig;
use brook_client::{
    Connection, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use brook_proto::Header;
use brook_proto::v1::{
    CreateTopicsRequest, FetchOffsetsRequest, ListOffsetsPartition, ListOffsetsRequest,
    ListOffsetsTopic, NewTopic, OffsetSpec, TopicPartitions,
};
use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header as KHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset as KOffset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// One record as a partition holds it: what both sides must agree on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rec {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
    pub timestamp: i64,
}

/// Partition number → records in offset order (with their offsets).
pub type Contents = BTreeMap<u32, Vec<(i64, Rec)>>;

/// Record `i` of data set `tag`: keyed (200 keys), a value of about `size` bytes that names
/// it, two headers (one with a null value every third record), a timestamp of its own.
pub fn record(tag: &str, i: usize, size: usize) -> Rec {
    let mut value = format!("{tag}-{i:07}-").into_bytes();
    value.resize(size.max(value.len()), b'x');
    let mut headers = vec![(Bytes::from("seq"), Some(Bytes::from(i.to_string())))];
    headers.push((
        Bytes::from("origin"),
        (!i.is_multiple_of(3)).then(|| Bytes::from(tag.to_string())),
    ));
    Rec {
        key: (i % 50 != 7).then(|| Bytes::from(format!("key-{}", i % 200))),
        value: Some(Bytes::from(value)),
        headers,
        timestamp: base_timestamp() + i as i64,
    }
}

/// An hour ago, in ms since the Unix epoch: record timestamps must be recent, or both brokers'
/// time-based retention (7 days) deletes the records under the test.
fn base_timestamp() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        now.as_millis() as i64 - 3_600_000
    })
}

/// A broker on 127.0.0.1:0 in a temp dir.
pub async fn brook() -> (
    brook_broker::server::RunningBroker,
    tempfile::TempDir,
    CancellationToken,
) {
    let data = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::default();
    config.server.data_dir = data.path().to_path_buf();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.http_listen = "127.0.0.1:0".parse().unwrap();
    // A killed connector's group member is evicted quickly, so its successor gets the
    // partitions within seconds (the Kafka side sets session.timeout.ms likewise).
    config.groups.session_timeout_ms = 3000;
    config.groups.heartbeat_interval_ms = 500;
    let cancel = CancellationToken::new();
    let broker = brook_broker::server::start(config, cancel.clone())
        .await
        .unwrap();
    (broker, data, cancel)
}

pub async fn brook_create_topic(conn: &Connection, topic: &str, partitions: u32) {
    let res = conn
        .admin()
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: topic.into(),
                partitions,
                replication_factor: 0,
                configs: Default::default(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].error_code, 0, "{:?}", res.results[0]);
}

/// Holds record `i` back until its time at `per_sec` records a second from `started`.
async fn pace(started: Instant, i: usize, per_sec: Option<usize>) {
    if let Some(rate) = per_sec
        && i.is_multiple_of(500)
    {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
    }
}

/// Writes `records` to Brook (keys partitioned by murmur2), at most `per_sec` per second.
pub async fn brook_produce(addr: &str, topic: &str, records: Vec<Rec>, per_sec: Option<usize>) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .unwrap();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(records.len());
    for (i, r) in records.into_iter().enumerate() {
        pace(started, i, per_sec).await;
        let record = ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(key, value)| Header { key, value })
                .collect(),
            timestamp: Some(r.timestamp),
        };
        pending.push(producer.enqueue(record).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    producer.close().await;
}

async fn brook_ends(conn: &Connection, topic: &str, partitions: u32) -> BTreeMap<u32, i64> {
    let res = conn
        .broker()
        .list_offsets(ListOffsetsRequest {
            topics: vec![ListOffsetsTopic {
                topic: topic.into(),
                partitions: (0..partitions)
                    .map(|partition| ListOffsetsPartition {
                        partition,
                        spec: OffsetSpec::Latest.into(),
                        timestamp: 0,
                    })
                    .collect(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    res.topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .filter(|p| p.error_code == 0)
        .map(|p| (p.partition, p.offset))
        .collect()
}

/// Records in a Brook topic (0 while it does not exist).
pub async fn brook_count(conn: &Connection, topic: &str, partitions: u32) -> i64 {
    brook_ends(conn, topic, partitions).await.values().sum()
}

/// Everything in a Brook topic.
pub async fn brook_read(conn: &Connection, topic: &str, partitions: u32) -> Contents {
    let ends = brook_ends(conn, topic, partitions).await;
    let total: i64 = ends.values().sum();
    let mut consumer = Consumer::with_connection(
        conn.clone(),
        ConsumerConfig::builder()
            .bootstrap(conn.addr())
            .build()
            .unwrap(),
    );
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    consumer.assign(&tps);
    consumer.seek_to_beginning(&tps).unwrap();
    let mut out: Contents = (0..partitions).map(|p| (p, Vec::new())).collect();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < total {
        assert!(
            Instant::now() < deadline,
            "read {seen} of {total} records of {topic}"
        );
        for r in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            seen += 1;
            out.get_mut(&r.partition).unwrap().push((
                r.offset.0,
                Rec {
                    key: r.key,
                    value: r.value,
                    headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                    timestamp: r.timestamp,
                },
            ));
        }
    }
    consumer.close().await;
    out
}

/// The committed offsets of a Brook group on `topic` (absent: none committed).
pub async fn brook_committed(
    conn: &Connection,
    group: &str,
    topic: &str,
    partitions: u32,
) -> BTreeMap<u32, i64> {
    let res = conn
        .groups()
        .fetch_offsets(FetchOffsetsRequest {
            group_id: group.into(),
            partitions: vec![TopicPartitions {
                topic: topic.into(),
                partitions: (0..partitions).collect(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    res.offsets
        .into_iter()
        .filter(|o| o.offset >= 0)
        .map(|o| (o.partition, o.offset))
        .collect()
}

fn kafka_client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Writes `records` to Kafka with the Java client's partitioner (murmur2 for keys), acks=all,
/// idempotent, at most `per_sec` per second. Retries through outages of up to 2 minutes.
pub async fn kafka_produce(
    bootstrap: &str,
    topic: &str,
    records: Vec<Rec>,
    per_sec: Option<usize>,
) {
    let producer: FutureProducer = kafka_client(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        pace(started, i, per_sec).await;
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(KHeader {
                key: std::str::from_utf8(k).unwrap(),
                value: v.as_deref(),
            });
        }
        let mut rec: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .headers(headers)
            .timestamp(r.timestamp);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_ref());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_ref());
        }
        loop {
            match producer.send_result(rec) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, back)) => {
                    rec = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    for p in pending {
        p.await.unwrap().unwrap();
    }
}

fn kafka_ends(bootstrap: &str, topic: &str, partitions: u32) -> BTreeMap<u32, i64> {
    let consumer: BaseConsumer = kafka_client(bootstrap).create().unwrap();
    (0..partitions)
        .filter_map(|p| {
            consumer
                .fetch_watermarks(topic, p as i32, Duration::from_secs(5))
                .ok()
                .map(|(_, high)| (p, high))
        })
        .collect()
}

/// Records in a Kafka topic (0 while it does not exist or Kafka is down).
pub async fn kafka_count(bootstrap: &str, topic: &str, partitions: u32) -> i64 {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || kafka_ends(&b, &t, partitions).values().sum())
        .await
        .unwrap()
}

/// Everything in a Kafka topic.
pub async fn kafka_read(bootstrap: &str, topic: &str, partitions: u32) -> Contents {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let ends = kafka_ends(&b, &t, partitions);
        let total: i64 = ends.values().sum();
        let consumer: BaseConsumer = kafka_client(&b)
            .set("group.id", "brook-connect-tests.reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(&t, p as i32, KOffset::Beginning)
                .unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut out: Contents = (0..partitions).map(|p| (p, Vec::new())).collect();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen < total {
            assert!(
                Instant::now() < deadline,
                "read {seen} of {total} records of {t}"
            );
            let Some(m) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let m = m.unwrap();
            seen += 1;
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                Bytes::copy_from_slice(h.key.as_bytes()),
                                h.value.map(Bytes::copy_from_slice),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.get_mut(&(m.partition() as u32)).unwrap().push((
                m.offset(),
                Rec {
                    key: m.key().map(Bytes::copy_from_slice),
                    value: m.payload().map(Bytes::copy_from_slice),
                    headers,
                    timestamp: m.timestamp().to_millis().unwrap(),
                },
            ));
        }
        out
    })
    .await
    .unwrap()
}

/// The committed offsets of a Kafka group on `topic` (absent: none committed).
pub async fn kafka_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: u32,
) -> BTreeMap<u32, i64> {
    let (b, g, t) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka_client(&b).set("group.id", &g).create().unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(&t, p as i32);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap();
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                KOffset::Offset(o) => Some((e.partition() as u32, o)),
                _ => None,
            })
            .collect()
    })
    .await
    .unwrap()
}

/// The check of a mirrored partition after a crash: each destination record is its source's
/// record at some source offset; read in order, the source offsets rise by one, except where
/// a restart went back to the committed position.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Source records missing from the destination.
    pub lost: usize,
    /// Destination records that are a second copy.
    pub duplicated: usize,
    /// Destination records that match no source record or break the order.
    pub inconsistent: usize,
}

/// Where a mirrored partition may legitimately step back to.
pub enum Rewinds<'a> {
    /// Only to these source offsets (the committed positions at each crash).
    To(&'a [i64]),
    /// Anywhere earlier (rebalances at unknown moments, as during an outage).
    Anywhere,
}

/// Compares one destination partition with its source partition: every destination record
/// must be the source record at the next offset, or a step back allowed by `rewinds`.
pub fn verify_partition(
    source: &[(i64, Rec)],
    dest: &[(i64, Rec)],
    rewinds: Rewinds<'_>,
) -> Verdict {
    let index: BTreeMap<&Rec, i64> = source.iter().map(|(o, r)| (r, *o)).collect();
    let mut verdict = Verdict::default();
    let mut next = source.first().map_or(0, |(o, _)| *o);
    let mut delivered = std::collections::BTreeSet::new();
    for (_, rec) in dest {
        let Some(&offset) = index.get(rec) else {
            verdict.inconsistent += 1;
            continue;
        };
        let allowed_back = match rewinds {
            Rewinds::To(to) => to.contains(&offset),
            Rewinds::Anywhere => true,
        };
        if offset != next && !(offset < next && allowed_back) {
            verdict.inconsistent += 1;
        }
        if !delivered.insert(offset) {
            verdict.duplicated += 1;
        }
        next = offset + 1;
    }
    verdict.lost = source.len() - delivered.len();
    verdict
}

/// A `brook-connect` child process.
pub struct Connector {
    child: Child,
    pub http: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Connector {
    /// Starts `brook-connect` on `config` (written to `dir/connect.toml`, `http.listen` on
    /// port 0) and waits for its listening line.
    pub fn start(dir: &Path, config: &str) -> Connector {
        let path = dir.join("connect.toml");
        std::fs::write(&path, format!("[http]\nlisten = \"127.0.0.1:0\"\n{config}")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_brook-connect"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let http = line
            .strip_prefix("brook-connect listening http=")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "no listening line: {line:?}; stderr: {}",
                    stderr.lock().unwrap()
                )
            })
            .to_string();
        Connector {
            child,
            http,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait (at most 60 s) for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        unsafe_free_sigterm(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("brook-connect did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// GET `path` on the HTTP listener: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http, path)
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_free_sigterm(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A minimal HTTP/1.0 GET.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// Waits until `done` holds, polling every 100 ms, at most `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a Prometheus series line starting with `prefix`.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
