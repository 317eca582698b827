//! `brook-bench client`: the client library's numbers against an in-process broker.
//!
//! - **group consume**: a topic of `partitions` partitions filled with `total_mb` of 1 KiB
//!   records; 1, 2 and 4 `GroupConsumer` members read it all (each member its own task and
//!   connection); the time from subscribing until every record was seen gives MB/s.
//! - **end-to-end latency**: one record per produce request at a fixed rate, open loop; each
//!   record carries its *scheduled* send time as its timestamp, and a consumer records
//!   `now - scheduled` in an HdrHistogram. Timing from the schedule rather than the actual
//!   send corrects for coordinated omission: a stall delays the sends behind it, and their
//!   wait counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brook_broker::config::BrokerConfig;
use brook_broker::server::{self, RunningBroker};
use brook_client::Connection;
use brook_client::consumer::{
    AutoOffsetReset, Consumer, ConsumerConfig, GroupConsumer, GroupMemberConfig, NoListener,
    TopicPartition,
};
use brook_proto::BatchBuilder;
use brook_proto::v1::{
    Acks, CreateTopicsRequest, ErrorCode, NewTopic, PartitionProduceData, ProduceRequest,
    TopicProduceData,
};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

pub(crate) async fn start_broker(dir: &std::path::Path) -> RunningBroker {
    let mut c = BrokerConfig::default();
    c.server.data_dir = dir.to_path_buf();
    c.server.listen = "127.0.0.1:0".parse().expect("addr");
    c.server.http_listen = "127.0.0.1:0".parse().expect("addr");
    server::start(c, CancellationToken::new())
        .await
        .expect("broker starts")
}

pub(crate) async fn create(conn: &Connection, topic: &str, partitions: u32) {
    let res = conn
        .admin()
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: topic.into(),
                partitions,
                replication_factor: 0,
                configs: HashMap::new(),
            }],
            validate_only: false,
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        res.results[0].error_code(),
        ErrorCode::None,
        "{}",
        res.results[0].error_message
    );
}

async fn produce(conn: &Connection, topic: &str, partition: u32, records: bytes::Bytes) {
    let req = ProduceRequest {
        acks: Acks::All as i32,
        timeout_ms: 0,
        topics: vec![TopicProduceData {
            topic: topic.into(),
            partitions: vec![PartitionProduceData { partition, records }],
        }],
    };
    let res = conn
        .broker()
        .produce(req)
        .await
        .expect("produce")
        .into_inner();
    let p = &res.topics[0].partitions[0];
    assert_eq!(p.error_code(), ErrorCode::None, "{}", p.error_message);
}

/// One row of the group-consume table.
#[derive(Debug, Clone)]
pub struct GroupRow {
    /// Members.
    pub members: usize,
    /// Median MB/s (10^6 bytes of record values).
    pub mbps: f64,
}

/// Group-consume throughput for each member count; median of `repeat`.
pub async fn group_consume(
    partitions: u32,
    total_mb: u64,
    members: &[usize],
    repeat: usize,
) -> Vec<GroupRow> {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start_broker(dir.path()).await;
    let conn = Connection::connect(&broker.grpc_addr.to_string())
        .await
        .expect("connect");
    create(&conn, "bench", partitions).await;
    let batch = crate::record_batch(1000, 1024);
    let batches = (total_mb * 1_000_000 / batch.len() as u64).max(u64::from(partitions));
    for i in 0..batches {
        produce(
            &conn,
            "bench",
            (i % u64::from(partitions)) as u32,
            batch.clone(),
        )
        .await;
    }
    let total_records = batches * 1000;
    let mut rows = Vec::new();
    let mut group_no = 0;
    for &n in members {
        let mut runs = Vec::new();
        for _ in 0..repeat {
            group_no += 1;
            let seen = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..n {
                let conn = Connection::connect(&broker.grpc_addr.to_string())
                    .await
                    .expect("connect");
                let config = ConsumerConfig::builder()
                    .bootstrap(conn.addr())
                    .auto_offset_reset(AutoOffsetReset::Earliest)
                    .fetch_max_wait(Duration::from_millis(50))
                    .max_poll_records(10_000)
                    .build()
                    .expect("config");
                let member = GroupMemberConfig {
                    group_id: format!("bench-{group_no}"),
                    topics: vec!["bench".into()],
                    auto_commit: Some(Duration::from_secs(1)),
                };
                let mut m = GroupConsumer::subscribe(conn, config, member, Box::new(NoListener))
                    .expect("subscribe");
                let seen = seen.clone();
                tasks.push(tokio::spawn(async move {
                    while seen.load(Ordering::Relaxed) < total_records {
                        let got = m.poll(Duration::from_millis(50)).await.expect("poll");
                        seen.fetch_add(got.len() as u64, Ordering::Relaxed);
                    }
                    m.close().await.expect("close");
                }));
            }
            for t in tasks {
                t.await.expect("member task");
            }
            let elapsed = started.elapsed();
            runs.push(total_records as f64 * 1024.0 / elapsed.as_secs_f64() / 1e6);
        }
        runs.sort_by(|a, b| a.total_cmp(b));
        let row = GroupRow {
            members: n,
            mbps: runs[runs.len() / 2],
        };
        eprintln!("group consume: {n} member(s): {:.0} MB/s", row.mbps);
        rows.push(row);
    }
    broker.shutdown();
    broker.wait().await.expect("broker stops");
    rows
}

/// End-to-end latency percentiles (µs) of `rate` records per second for `duration`.
pub async fn end_to_end(rate: u32, duration: Duration) -> Histogram<u64> {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start_broker(dir.path()).await;
    let conn = Connection::connect(&broker.grpc_addr.to_string())
        .await
        .expect("connect");
    create(&conn, "e2e", 1).await;
    let config = ConsumerConfig::builder()
        .bootstrap(conn.addr())
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .fetch_max_wait(Duration::from_millis(500))
        .build()
        .expect("config");
    let mut consumer = Consumer::connect(config).await.expect("consumer");
    consumer.assign(&[TopicPartition::new("e2e", 0)]);
    let n = (duration.as_secs_f64() * f64::from(rate)) as u64;
    let epoch = Instant::now();
    let wall0 = crate::now_ms() * 1000; // µs
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let producer = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let value = vec![7u8; 1024];
            for i in 0..n {
                let due = epoch + period * i as u32;
                tokio::time::sleep_until(due.into()).await;
                // The timestamp is the scheduled send time in µs since the start: stalls count.
                let scheduled_us = wall0 + (period * i as u32).as_micros() as i64;
                let mut b = BatchBuilder::new();
                b.append(scheduled_us, None, Some(&value), &[]);
                let conn = conn.clone();
                tokio::spawn(async move { produce(&conn, "e2e", 0, b.build()).await });
            }
        })
    };
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut received = 0;
    while received < n {
        for r in consumer.poll(Duration::from_secs(5)).await.expect("poll") {
            let now_us = wall0 + epoch.elapsed().as_micros() as i64;
            hist.record((now_us - r.timestamp).max(1) as u64)
                .expect("record");
            received += 1;
        }
    }
    producer.await.expect("producer");
    consumer.close().await;
    broker.shutdown();
    broker.wait().await.expect("broker stops");
    hist
}

/// One producer run's settings and result.
#[derive(Debug, Clone)]
pub struct ProducerRow {
    /// Batch size limit (bytes).
    pub batch_bytes: usize,
    /// Linger.
    pub linger: Duration,
    /// Codec.
    pub compression: brook_proto::Compression,
    /// Idempotence on.
    pub idempotence: bool,
    /// Median MB/s of record values.
    pub mbps: f64,
    /// Batch bytes on the wire as a fraction of the record values (compression ratio).
    pub wire_ratio: f64,
}

/// Producer throughput: `total_mb` of 1 KiB records (text-like, so codecs have something
/// to do) over 4 partitions, sent with `enqueue` (pipelined) and `flush`; each setting is
/// run `repeat` times on a fresh topic.
pub async fn producer_throughput(
    settings: &[(usize, Duration, brook_proto::Compression, bool)],
    total_mb: u64,
    repeat: usize,
) -> Vec<ProducerRow> {
    use brook_client::producer::{Producer, ProducerConfig, ProducerRecord};
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start_broker(dir.path()).await;
    let conn = Connection::connect(&broker.grpc_addr.to_string())
        .await
        .expect("connect");
    // Text-like values: words from a small vocabulary, as log lines or JSON events compress.
    let words = [
        "order", "user", "id", "status", "created", "shipped", "total", "eur", "item", "qty",
    ];
    let values: Vec<bytes::Bytes> = (0..64)
        .map(|i| {
            let mut v = String::new();
            let mut k = i;
            while v.len() < 1024 {
                v.push_str(words[k % words.len()]);
                v.push(if k % 3 == 0 { ',' } else { ' ' });
                k = k.wrapping_mul(31).wrapping_add(7);
            }
            v.truncate(1024);
            bytes::Bytes::from(v)
        })
        .collect();
    let records = total_mb * 1_000_000 / 1024;
    let mut rows = Vec::new();
    let mut topic_no = 0;
    for &(batch_bytes, linger, compression, idempotence) in settings {
        let mut runs = Vec::new();
        let mut wire = 0.0;
        for _ in 0..repeat {
            topic_no += 1;
            let topic = format!("p{topic_no}");
            create(&conn, &topic, 4).await;
            let config = ProducerConfig::builder()
                .batch_bytes(batch_bytes)
                .linger(linger)
                .compression(compression)
                .idempotence(idempotence)
                .buffer_bytes(64 << 20)
                .build()
                .expect("producer config");
            let producer = Producer::new(conn.clone(), config).await.expect("producer");
            let started = Instant::now();
            let mut pending = Vec::with_capacity(records as usize);
            for i in 0..records {
                let rec = ProducerRecord::new(topic.clone(), values[(i % 64) as usize].clone());
                pending.push(producer.enqueue(rec).await.expect("enqueue"));
            }
            producer.flush().await;
            for p in pending {
                p.await.expect("delivered");
            }
            let elapsed = started.elapsed();
            producer.close().await;
            runs.push(records as f64 * 1024.0 / elapsed.as_secs_f64() / 1e6);
            let t = broker.context.registry.topic(&topic).expect("topic");
            let stored: u64 = t.partitions.iter().map(|p| p.log().size_bytes()).sum();
            wire = stored as f64 / (records as f64 * 1024.0);
        }
        runs.sort_by(|a, b| a.total_cmp(b));
        let row = ProducerRow {
            batch_bytes,
            linger,
            compression,
            idempotence,
            mbps: runs[runs.len() / 2],
            wire_ratio: wire,
        };
        eprintln!("producer: {row:?}");
        rows.push(row);
    }
    broker.shutdown();
    broker.wait().await.expect("broker stops");
    rows
}
