//! `brook-bench connect`: brook-connect's throughput each way, beside Kafka's own consumer on
//! the same topics, in one run.
//!
//! One real Kafka broker (scripts/kafka.sh through `brook_tests::kafka`) and one in-process
//! Brook broker. A Kafka topic and a Brook topic are filled with the same number of keyed
//! records of `record_size` bytes. Each repetition then:
//!
//! 1. runs `brook-connect` with one `kafka-to-brook` pipeline from the Kafka topic into a new,
//!    empty Brook topic (a new consumer group), and times the copy from its first record landing to
//!    its last (the process start and the group join are left out);
//! 2. the same with a `brook-to-kafka` pipeline from the Brook topic into a new Kafka topic;
//! 3. runs Kafka's `ConsumerPerformance` on the Kafka source topic of (1) and on the Kafka
//!    destination topic of (2), taking its fetch-phase rates (which leave out its group join
//!    likewise).
//!
//! Reported: medians of records/s and MB/s (10^6 bytes of keys and values).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use brook_client::{Connection, Producer, ProducerConfig, ProducerRecord};
use brook_proto::v1::{ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic, OffsetSpec};
use brook_tests::kafka::KafkaCluster;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The workload.
#[derive(Debug, Clone)]
pub struct ConnectBench {
    /// Records in each source topic.
    pub records: usize,
    /// Bytes of each record's value.
    pub record_size: usize,
    /// Partitions of every topic.
    pub partitions: u32,
    /// Repetitions (medians reported).
    pub repeat: usize,
    /// The `brook-connect` binary.
    pub connect_bin: PathBuf,
}

/// Medians of one line of the report.
#[derive(Debug, Clone)]
pub struct Rate {
    /// What was measured.
    pub what: String,
    /// Records per second.
    pub records_per_sec: f64,
    /// MB (10^6 bytes of key and value) per second.
    pub mb_per_sec: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn key(i: usize) -> String {
    format!("key-{:04}", i % 1000)
}

fn value(i: usize, size: usize) -> Vec<u8> {
    let mut rng = crate::XorShift::new(i as u64 + 1);
    (0..size)
        .map(|_| b'a' + (rng.next_u64() % 26) as u8)
        .collect()
}

async fn fill_kafka(bootstrap: &str, topic: &str, n: usize, size: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("Kafka producer");
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let (k, v) = (key(i), value(i, size));
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
            .key(k.as_str())
            .payload(v.as_slice());
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }
    for p in pending {
        p.await.expect("delivery").expect("Kafka acknowledged");
    }
}

async fn fill_brook(addr: &str, topic: &str, n: usize, size: usize) {
    let producer = Producer::connect(addr, ProducerConfig::default())
        .await
        .expect("Brook producer");
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let record = ProducerRecord::new(topic, value(i, size)).key(key(i));
        pending.push(producer.enqueue(record).await.expect("enqueue"));
    }
    for p in pending {
        p.await.expect("Brook acknowledged");
    }
    producer.close().await;
}

async fn brook_count(conn: &Connection, topic: &str, partitions: u32) -> i64 {
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
        .expect("list offsets")
        .into_inner();
    res.topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.error_code == 0)
        .map(|p| p.offset)
        .sum()
}

fn kafka_count(consumer: &BaseConsumer, topic: &str, partitions: u32) -> i64 {
    (0..partitions)
        .filter_map(|p| {
            consumer
                .fetch_watermarks(topic, p as i32, Duration::from_secs(5))
                .ok()
        })
        .map(|(_, high)| high)
        .sum()
}

/// A running `brook-connect`, stopped with SIGTERM on drop.
struct Connector(Child);

impl Connector {
    fn start(bin: &Path, dir: &Path, config: &str) -> Connector {
        let path = dir.join("connect.toml");
        std::fs::write(&path, config).expect("write config");
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        assert!(
            line.starts_with("brook-connect listening"),
            "brook-connect did not start: {line:?}"
        );
        Connector(child)
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// Polls `count` every 10 ms until it reaches `total`; returns the rate from the first record
/// counted to the last.
async fn time_copy<F, Fut>(total: i64, mut count: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let deadline = Instant::now() + Duration::from_secs(600);
    let (first_at, first_count) = loop {
        let c = count().await;
        if c > 0 {
            break (Instant::now(), c);
        }
        assert!(Instant::now() < deadline, "no record copied in 10 minutes");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    loop {
        let c = count().await;
        if c >= total {
            return (c - first_count) as f64 / first_at.elapsed().as_secs_f64();
        }
        assert!(Instant::now() < deadline, "copy stalled at {c} of {total}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Kafka's `ConsumerPerformance` on `topic`: its fetch-phase (records/s, MB/s of 2^20 bytes).
fn kafka_consumer_perf(kafka: &KafkaCluster, topic: &str, n: usize, group: &str) -> (f64, f64) {
    let out = kafka
        .tool(
            "org.apache.kafka.tools.ConsumerPerformance",
            &[
                "--bootstrap-server",
                &kafka.bootstrap(),
                "--topic",
                topic,
                "--messages",
                &n.to_string(),
                "--group",
                group,
                "--timeout",
                "60000",
            ],
        )
        .expect("ConsumerPerformance");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.contains(','));
    let header: Vec<&str> = lines
        .next()
        .expect("header")
        .split(',')
        .map(str::trim)
        .collect();
    let values: Vec<&str> = lines
        .next()
        .expect("values")
        .split(',')
        .map(str::trim)
        .collect();
    let field = |name: &str| -> f64 {
        let i = header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} in {header:?}"));
        values[i].parse().expect("a number")
    };
    (field("fetch.nMsg.sec"), field("fetch.MB.sec"))
}

impl ConnectBench {
    /// Runs the workload and returns the report's lines.
    pub async fn run(&self) -> Vec<Rate> {
        let (n, size, parts) = (self.records, self.record_size, self.partitions);
        let kafka = tokio::task::spawn_blocking(|| KafkaCluster::start(1).expect("Kafka starts"))
            .await
            .expect("join");
        let bootstrap = kafka.bootstrap();
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = crate::client::start_broker(dir.path()).await;
        let brook_addr = broker.grpc_addr.to_string();
        let conn = Connection::connect(&brook_addr).await.expect("connect");
        kafka
            .create_topic("bench-k", parts, 1)
            .expect("Kafka topic");
        crate::client::create(&conn, "bench-b", parts).await;
        eprintln!("filling both source topics with {n} records of {size} bytes");
        fill_kafka(&bootstrap, "bench-k", n, size).await;
        fill_brook(&brook_addr, "bench-b", n, size).await;
        let counter: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .expect("Kafka client");
        let bytes_per_record = (size + key(0).len()) as f64;
        let (mut k2b, mut b2k, mut perf_src, mut perf_dst) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in 0..self.repeat {
            let config = |pipeline: &str| {
                format!(
                    "[http]\nlisten = \"127.0.0.1:0\"\n[brook]\nbootstrap = \"{brook_addr}\"\n\
                     [kafka]\nbootstrap = \"{bootstrap}\"\n{pipeline}"
                )
            };
            // Destinations are created beforehand: their creation is not what is measured, and a
            // client asked about a topic before it exists may cache that for minutes.
            let dest = format!("bench-k-copy-{r}");
            crate::client::create(&conn, &dest, parts).await;
            let c = Connector::start(
                &self.connect_bin,
                dir.path(),
                &config(&format!(
                    "[[pipeline]]\nname = \"k2b\"\ndirection = \"kafka-to-brook\"\n\
                     topics = [\"bench-k\"]\ndestination = \"{dest}\"\ngroup = \"bench-k2b-{r}\"\n"
                )),
            );
            let rate = time_copy(n as i64, || brook_count(&conn, &dest, parts)).await;
            drop(c);
            eprintln!("run {r}: kafka-to-brook {rate:.0} records/s");
            k2b.push(rate);

            let dest = format!("bench-b-copy-{r}");
            kafka.create_topic(&dest, parts, 1).expect("Kafka topic");
            let c = Connector::start(
                &self.connect_bin,
                dir.path(),
                &config(&format!(
                    "[[pipeline]]\nname = \"b2k\"\ndirection = \"brook-to-kafka\"\n\
                     topics = [\"bench-b\"]\ndestination = \"{dest}\"\ngroup = \"bench-b2k-{r}\"\n"
                )),
            );
            let rate = time_copy(n as i64, || {
                let c = kafka_count(&counter, &dest, parts);
                async move { c }
            })
            .await;
            drop(c);
            eprintln!("run {r}: brook-to-kafka {rate:.0} records/s");
            b2k.push(rate);

            let src = kafka_consumer_perf(&kafka, "bench-k", n, &format!("perf-src-{r}"));
            let dst = kafka_consumer_perf(&kafka, &dest, n, &format!("perf-dst-{r}"));
            eprintln!(
                "run {r}: Kafka consumer {:.0} records/s on bench-k, {:.0} on {dest}",
                src.0, dst.0
            );
            perf_src.push(src.0);
            perf_dst.push(dst.0);
        }
        let rate = |what: &str, v: Vec<f64>| {
            let records_per_sec = median(v);
            Rate {
                what: what.to_string(),
                records_per_sec,
                mb_per_sec: records_per_sec * bytes_per_record / 1e6,
            }
        };
        vec![
            rate("brook-connect kafka-to-brook (Kafka topic → Brook)", k2b),
            rate(
                "Kafka ConsumerPerformance on that Kafka source topic",
                perf_src,
            ),
            rate("brook-connect brook-to-kafka (Brook topic → Kafka)", b2k),
            rate(
                "Kafka ConsumerPerformance on that Kafka destination topic",
                perf_dst,
            ),
        ]
    }
}
