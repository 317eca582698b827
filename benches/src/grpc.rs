//! `brook-bench grpc`: produce and fetch throughput over gRPC on loopback, and produce latency
//! at a fixed rate, each beside the storage engine's own append throughput (or latency)
//! measured in the same run, so the ratio shows what the network path costs.
//!
//! Per case (partitions × flush policy), repeated `repeat` times and reported as medians:
//! 1. `engine`: the same batches appended straight to `partitions` logs (no network), one task
//!    per partition with `window` appends in flight;
//! 2. `grpc produce`: an in-process broker on 127.0.0.1:0, one producer task per partition,
//!    each with its own HTTP/2 connection and `window` Produce requests in flight (acks=all);
//! 3. `grpc fetch`: one consumer task per partition reading everything back with Fetch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use brook_broker::config::BrokerConfig;
use brook_broker::log::{FlushPolicy, Log, LogConfig};
use brook_broker::server::{self, RunningBroker};
use brook_proto::v1::broker_client::BrokerClient;
use brook_proto::v1::*;
use brook_proto::{BatchHeader, LeaderEpoch};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// What to run.
#[derive(Debug, Clone)]
pub struct GrpcBench {
    /// Records per batch.
    pub records_per_batch: usize,
    /// Bytes per record value.
    pub record_size: usize,
    /// Bytes produced per case and repetition, over all partitions.
    pub total_bytes: u64,
    /// Partition counts to run.
    pub partitions: Vec<u32>,
    /// Flush policies to run.
    pub flush: Vec<FlushPolicy>,
    /// In-flight requests (or appends) per partition.
    pub window: usize,
    /// Repetitions per case; medians are reported.
    pub repeat: usize,
    /// Batches per second for the latency run (0: skip it).
    pub latency_rate: u32,
    /// Length of the latency run.
    pub latency_duration: Duration,
}

/// One case's medians.
#[derive(Debug, Clone)]
pub struct ThroughputRow {
    /// Partitions.
    pub partitions: u32,
    /// Flush policy.
    pub flush: FlushPolicy,
    /// Storage-engine append throughput, MB/s (10^6 bytes).
    pub engine_mbps: f64,
    /// gRPC produce throughput, MB/s.
    pub produce_mbps: f64,
    /// gRPC fetch throughput, MB/s.
    pub fetch_mbps: f64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    /// Flush policy.
    pub flush: FlushPolicy,
    /// Which path ("engine append" or "grpc produce").
    pub path: &'static str,
    /// Samples.
    pub count: u64,
    /// Percentiles: p50, p99, p99.9, max.
    pub p50_us: u64,
    /// p99.
    pub p99_us: u64,
    /// p99.9.
    pub p999_us: u64,
    /// Max.
    pub max_us: u64,
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn log_config(flush: FlushPolicy) -> LogConfig {
    LogConfig {
        flush,
        segment_bytes: 256 << 20,
        max_batch_bytes: 8 << 20,
        ..LogConfig::default()
    }
}

fn flush_config_value(flush: FlushPolicy) -> String {
    flush.to_string()
}

async fn engine_run(
    batch: &Bytes,
    batches_per_partition: u64,
    partitions: u32,
    window: usize,
    flush: FlushPolicy,
) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut logs = Vec::new();
    for p in 0..partitions {
        logs.push(
            Log::open(dir.path().join(format!("p-{p}")), log_config(flush))
                .await
                .expect("open log"),
        );
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for log in &logs {
        let log = log.clone();
        let batch = batch.clone();
        tasks.push(tokio::spawn(async move {
            let mut inflight = FuturesUnordered::new();
            for _ in 0..batches_per_partition {
                if inflight.len() >= window {
                    let done: Result<_, brook_broker::log::LogError> =
                        inflight.next().await.expect("pending");
                    done.expect("append");
                }
                let log = log.clone();
                let b = batch.clone();
                inflight.push(async move { log.append(b, LeaderEpoch(0)).await });
            }
            while let Some(r) = inflight.next().await {
                r.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("engine task");
    }
    let elapsed = started.elapsed();
    for log in logs {
        log.close().await.expect("close");
    }
    elapsed
}

async fn start_broker(dir: &std::path::Path, max_request: usize) -> RunningBroker {
    let mut c = BrokerConfig::default();
    c.server.data_dir = dir.to_path_buf();
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.server.http_listen = "127.0.0.1:0".parse().expect("addr");
    c.server.max_request_bytes = max_request;
    c.log.max_batch_bytes = max_request as u32;
    c.log.segment_bytes = 256 << 20;
    server::start(c, CancellationToken::new())
        .await
        .expect("broker starts")
}

async fn client(addr: std::net::SocketAddr) -> BrokerClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .tcp_nodelay(true)
        .initial_connection_window_size(Some(8 << 20))
        .initial_stream_window_size(Some(8 << 20))
        .connect()
        .await
        .expect("connect");
    BrokerClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20)
}

/// One client (its own HTTP/2 connection) per partition.
async fn connections(addr: std::net::SocketAddr, n: u32) -> Vec<BrokerClient<Channel>> {
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        out.push(client(addr).await);
    }
    out
}

async fn create_topic(addr: std::net::SocketAddr, name: &str, partitions: u32, flush: FlushPolicy) {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut admin = brook_proto::v1::admin_client::AdminClient::new(channel);
    let res = admin
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.into(),
                partitions,
                replication_factor: 1,
                configs: [
                    ("flush.policy".to_string(), flush_config_value(flush)),
                    ("max.message.bytes".to_string(), (16u32 << 20).to_string()),
                    ("segment.bytes".to_string(), (256u32 << 20).to_string()),
                ]
                .into(),
            }],
            validate_only: false,
        })
        .await
        .expect("create topic")
        .into_inner();
    assert_eq!(
        res.results[0].error_code(),
        ErrorCode::None,
        "{}",
        res.results[0].error_message
    );
}

fn produce_request(topic: &str, partition: u32, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: Acks::All as i32,
        timeout_ms: 0,
        topics: vec![TopicProduceData {
            topic: topic.into(),
            partitions: vec![PartitionProduceData { partition, records }],
        }],
    }
}

fn check_produced(r: Result<tonic::Response<ProduceResponse>, tonic::Status>) {
    let r = r.expect("produce").into_inner();
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code(), ErrorCode::None, "{}", p.error_message);
}

async fn grpc_produce_run(
    addr: std::net::SocketAddr,
    batch: &Bytes,
    batches_per_partition: u64,
    partitions: u32,
    window: usize,
) -> Duration {
    let clients = connections(addr, partitions).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, c) in clients.into_iter().enumerate() {
        let batch = batch.clone();
        tasks.push(tokio::spawn(async move {
            let mut inflight = FuturesUnordered::new();
            for _ in 0..batches_per_partition {
                if inflight.len() >= window {
                    check_produced(inflight.next().await.expect("pending"));
                }
                let mut c = c.clone();
                let req = produce_request("bench", p as u32, batch.clone());
                inflight.push(async move { c.produce(req).await });
            }
            while let Some(r) = inflight.next().await {
                check_produced(r);
            }
        }));
    }
    for t in tasks {
        t.await.expect("producer task");
    }
    started.elapsed()
}

async fn grpc_fetch_run(
    addr: std::net::SocketAddr,
    partitions: u32,
    expect_bytes_per_partition: u64,
) -> Duration {
    let clients = connections(addr, partitions).await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut offset = 0i64;
            let mut bytes = 0u64;
            while bytes < expect_bytes_per_partition {
                let req = FetchRequest {
                    max_wait_ms: 0,
                    min_bytes: 0,
                    max_bytes: 16 << 20,
                    replica_id: None,
                    topics: vec![FetchTopic {
                        topic: "bench".into(),
                        partitions: vec![FetchPartition {
                            partition: p as u32,
                            fetch_offset: offset,
                            partition_max_bytes: 16 << 20,
                            current_leader_epoch: None,
                        }],
                    }],
                };
                let res = c.fetch(req).await.expect("fetch").into_inner();
                let part = &res.topics[0].partitions[0];
                assert_eq!(part.error_code(), ErrorCode::None, "{}", part.error_message);
                let records = &part.records;
                assert!(
                    !records.is_empty(),
                    "fetch at {offset} returned nothing before the end"
                );
                // Walk headers only (no record decoding), as a consumer's fetcher would before
                // handing batches on.
                let mut pos = 0;
                while pos < records.len() {
                    let h = BatchHeader::parse(&records[pos..]).expect("batch header");
                    offset = h.next_offset();
                    pos += h.total_size();
                }
                bytes += records.len() as u64;
            }
        }));
    }
    for t in tasks {
        t.await.expect("consumer task");
    }
    started.elapsed()
}

impl GrpcBench {
    /// Runs every throughput case; returns the rows.
    pub async fn throughput(&self) -> Vec<ThroughputRow> {
        let batch = crate::record_batch(self.records_per_batch, self.record_size);
        let mut rows = Vec::new();
        for &flush in &self.flush {
            for &partitions in &self.partitions {
                let batches_per_partition =
                    (self.total_bytes / batch.len() as u64 / u64::from(partitions)).max(1);
                let bytes = batches_per_partition * u64::from(partitions) * batch.len() as u64;
                let (mut e, mut p, mut f) = (Vec::new(), Vec::new(), Vec::new());
                for _ in 0..self.repeat {
                    let d = engine_run(
                        &batch,
                        batches_per_partition,
                        partitions,
                        self.window,
                        flush,
                    )
                    .await;
                    e.push(mbps(bytes, d));
                    let dir = tempfile::tempdir().expect("temp dir");
                    let broker = start_broker(dir.path(), 16 << 20).await;
                    create_topic(broker.grpc_addr, "bench", partitions, flush).await;
                    let d = grpc_produce_run(
                        broker.grpc_addr,
                        &batch,
                        batches_per_partition,
                        partitions,
                        self.window,
                    )
                    .await;
                    p.push(mbps(bytes, d));
                    let d = grpc_fetch_run(
                        broker.grpc_addr,
                        partitions,
                        batches_per_partition * batch.len() as u64,
                    )
                    .await;
                    f.push(mbps(bytes, d));
                    broker.shutdown();
                    broker.wait().await.expect("broker stops");
                }
                let row = ThroughputRow {
                    partitions,
                    flush,
                    engine_mbps: median(e),
                    produce_mbps: median(p),
                    fetch_mbps: median(f),
                };
                eprintln!(
                    "partitions={} flush={} engine={:.0} MB/s produce={:.0} MB/s ({:.2}x) fetch={:.0} MB/s",
                    row.partitions,
                    row.flush,
                    row.engine_mbps,
                    row.produce_mbps,
                    row.produce_mbps / row.engine_mbps,
                    row.fetch_mbps
                );
                rows.push(row);
            }
        }
        rows
    }

    /// Produce latency at a fixed rate of single-batch requests (one partition), and the
    /// storage engine's append latency at the same rate.
    pub async fn latency(&self) -> Vec<LatencyRow> {
        if self.latency_rate == 0 {
            return Vec::new();
        }
        let batch = crate::record_batch(self.records_per_batch, self.record_size);
        let mut rows = Vec::new();
        for &flush in &self.flush {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = Log::open(dir.path().join("engine"), log_config(flush))
                .await
                .expect("open");
            let log2 = log.clone();
            let b = batch.clone();
            let engine = self
                .fixed_rate(move || {
                    let log = log2.clone();
                    let b = b.clone();
                    async move {
                        log.append(b, LeaderEpoch(0)).await.expect("append");
                    }
                })
                .await;
            log.close().await.expect("close");
            rows.push(row(flush, "engine append", &engine));
            let broker = start_broker(dir.path().join("broker").as_path(), 16 << 20).await;
            create_topic(broker.grpc_addr, "bench", 1, flush).await;
            let c = client(broker.grpc_addr).await;
            let b = batch.clone();
            let grpc = self
                .fixed_rate(move || {
                    let mut c = c.clone();
                    let req = produce_request("bench", 0, b.clone());
                    async move { check_produced(c.produce(req).await) }
                })
                .await;
            broker.shutdown();
            broker.wait().await.expect("broker stops");
            rows.push(row(flush, "grpc produce", &grpc));
        }
        rows
    }

    /// Starts one operation every 1/rate seconds (open loop: a slow operation does not delay
    /// the next start) and records each one's latency from its scheduled start.
    async fn fixed_rate<F, Fut>(&self, op: F) -> Histogram<u64>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let hist = Arc::new(parking_lot::Mutex::new(
            Histogram::<u64>::new(3).expect("histogram"),
        ));
        let period = Duration::from_secs_f64(1.0 / f64::from(self.latency_rate));
        let n = (self.latency_duration.as_secs_f64() * f64::from(self.latency_rate)) as u64;
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 0..n {
            let due = start + period * i as u32;
            tokio::time::sleep_until(due).await;
            let fut = op();
            let hist = hist.clone();
            tasks.push(tokio::spawn(async move {
                fut.await;
                let us = due.elapsed().as_micros() as u64;
                hist.lock().record(us.max(1)).expect("record");
            }));
        }
        for t in tasks {
            t.await.expect("latency task");
        }
        Arc::try_unwrap(hist).expect("tasks done").into_inner()
    }
}

fn row(flush: FlushPolicy, path: &'static str, h: &Histogram<u64>) -> LatencyRow {
    LatencyRow {
        flush,
        path,
        count: h.len(),
        p50_us: h.value_at_quantile(0.50),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

/// The rows as a Markdown table.
pub fn throughput_table(rows: &[ThroughputRow]) -> String {
    let mut s = String::from(
        "| partitions | flush | engine append MB/s | gRPC produce MB/s | produce / engine | gRPC fetch MB/s |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.0} |\n",
            r.partitions,
            r.flush,
            r.engine_mbps,
            r.produce_mbps,
            r.produce_mbps / r.engine_mbps,
            r.fetch_mbps
        );
    }
    s
}

/// The latency rows as a Markdown table.
pub fn latency_table(rows: &[LatencyRow], rate: u32, batch_bytes: usize) -> String {
    let mut s = format!(
        "Fixed rate: {rate} batches/s of {batch_bytes} bytes ({:.0} MB/s), one partition.\n\n| flush | path | samples | p50 µs | p99 µs | p99.9 µs | max µs |\n|---|---|---|---|---|---|---|\n",
        f64::from(rate) * batch_bytes as f64 / 1e6
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.flush, r.path, r.count, r.p50_us, r.p99_us, r.p999_us, r.max_us
        );
    }
    s
}
