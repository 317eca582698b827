//! The batching producer against a real in-process broker (127.0.0.1:0, temp dir), and
//! through [`fake_broker`] where responses must be lost or errors injected. Real time, with
//! short linger and backoff; only the block-with-timeout test pauses the clock (after setup).

mod fake_broker;

use std::collections::BTreeMap;
use std::time::Duration;

use brook_broker::config::BrokerConfig;
use brook_broker::server::RunningBroker;
use brook_client::producer::{
    Backpressure, KeylessPartitioning, Producer, ProducerConfig, ProducerError, ProducerRecord,
};
use brook_client::{ClientError, Connection, partition_for_key};
use brook_proto::Batches;
use brook_proto::v1::{
    CreateTopicsRequest, ErrorCode, FetchPartition, FetchRequest, FetchTopic, NewTopic,
};
use fake_broker::{AfterForward, FakeBroker};
use tempfile::TempDir;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A real broker serving on 127.0.0.1 with its data in a temporary directory.
struct TestBroker {
    running: RunningBroker,
    _data: TempDir,
}

impl TestBroker {
    async fn start() -> TestBroker {
        let data = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::default();
        config.server.data_dir = data.path().to_path_buf();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.http_listen = "127.0.0.1:0".parse().unwrap();
        let running = brook_broker::server::start(config, CancellationToken::new())
            .await
            .expect("the broker starts");
        TestBroker {
            running,
            _data: data,
        }
    }

    async fn connect(&self) -> Connection {
        Connection::connect(&self.running.grpc_addr.to_string())
            .await
            .unwrap()
    }
}

async fn create_topic(conn: &Connection, name: &str, partitions: u32) {
    let response = conn
        .admin()
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.into(),
                partitions,
                replication_factor: 0,
                configs: Default::default(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results[0].error_code, ErrorCode::None as i32);
}

/// A stored record: key, value, offset.
type Stored = (Option<String>, String, i64);

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A partition's records as the broker stores them, from offset 0 to the high watermark.
async fn records(conn: &Connection, topic: &str, partition: u32) -> Vec<Stored> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let response = conn
            .broker()
            .fetch(FetchRequest {
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 0,
                replica_id: None,
                topics: vec![FetchTopic {
                    topic: topic.into(),
                    partitions: vec![FetchPartition {
                        partition,
                        fetch_offset: offset,
                        partition_max_bytes: 0,
                        current_leader_epoch: None,
                    }],
                }],
            })
            .await
            .unwrap()
            .into_inner();
        let answer = &response.topics[0].partitions[0];
        assert_eq!(
            answer.error_code,
            ErrorCode::None as i32,
            "{}",
            answer.error_message
        );
        if answer.records.is_empty() {
            assert_eq!(offset, answer.high_watermark);
            return out;
        }
        for batch in Batches::new(answer.records.clone(), usize::MAX) {
            let batch = batch.unwrap();
            for r in batch.records().unwrap() {
                let r = r.unwrap();
                out.push((
                    r.key.as_deref().map(text),
                    text(r.value.as_deref().unwrap()),
                    r.offset,
                ));
            }
            offset = batch.last_offset() + 1;
        }
    }
}

fn fast_retries() -> brook_client::producer::ProducerConfigBuilder {
    ProducerConfig::builder()
        .linger(Duration::from_millis(2))
        .retry_backoff(Duration::from_millis(5))
        .retry_backoff_max(Duration::from_millis(20))
        .breaker_open(Duration::from_millis(20))
        .request_timeout(Duration::from_secs(5))
        .delivery_timeout(Duration::from_secs(20))
}

/// Sends `count` keyed records (`key-{i % keys}`, `value-{i}`) pipelined, and returns each
/// record's (partition, offset) in send order.
async fn send_keyed(
    producer: &Producer,
    topic: &str,
    count: usize,
    keys: usize,
) -> Vec<(u32, i64)> {
    let mut pending = Vec::with_capacity(count);
    for i in 0..count {
        let record =
            ProducerRecord::new(topic, format!("value-{i}")).key(format!("key-{}", i % keys));
        pending.push(producer.enqueue(record).await.unwrap());
    }
    let mut out = Vec::with_capacity(count);
    for delivery in pending {
        let meta = delivery.await.unwrap();
        assert_eq!(meta.topic, topic);
        out.push((meta.partition, meta.offset.unwrap()));
    }
    out
}

/// Checks that every partition holds exactly the records sent to it, once each, in send order,
/// at dense offsets from 0, and that the acknowledged offsets are where they are stored.
async fn assert_exactly_once_in_order(
    conn: &Connection,
    topic: &str,
    partitions: u32,
    acks: &[(u32, i64)],
    keys: usize,
) {
    let mut expected: BTreeMap<u32, Vec<Stored>> = BTreeMap::new();
    for (i, &(partition, offset)) in acks.iter().enumerate() {
        let key = format!("key-{}", i % keys);
        assert_eq!(
            partition,
            partition_for_key(key.as_bytes(), partitions),
            "record {i}"
        );
        expected
            .entry(partition)
            .or_default()
            .push((Some(key), format!("value-{i}"), offset));
    }
    let mut total = 0;
    for partition in 0..partitions {
        let want = expected.remove(&partition).unwrap_or_default();
        for (n, (_, _, offset)) in want.iter().enumerate() {
            assert_eq!(
                *offset, n as i64,
                "partition {partition}: offsets are dense"
            );
        }
        let stored = records(conn, topic, partition).await;
        assert_eq!(
            stored.len(),
            want.len(),
            "partition {partition}: record count"
        );
        assert_eq!(stored, want, "partition {partition}: contents and order");
        total += stored.len();
    }
    assert_eq!(total, acks.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_key_partitions_send_order_and_dense_offsets() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "orders", 4).await;
    let producer = Producer::new(conn.clone(), ProducerConfig::default())
        .await
        .unwrap();
    assert!(producer.producer_id().is_some());
    let acks = send_keyed(&producer, "orders", 10_000, 97).await;
    assert_exactly_once_in_order(&conn, "orders", 4, &acks, 97).await;
    producer.close().await;
    assert_eq!(producer.available_bytes(), producer.config().buffer_bytes);
    let err = producer
        .send(ProducerRecord::new("orders", "late"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProducerError::Closed), "{err}");
}

#[tokio::test]
async fn compressed_batches_round_trip() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "zipped", 1).await;
    let config = ProducerConfig::builder()
        .compression(brook_proto::Compression::Zstd)
        .build()
        .unwrap();
    let producer = Producer::new(conn.clone(), config).await.unwrap();
    let acks = send_keyed(&producer, "zipped", 500, 7).await;
    assert_exactly_once_in_order(&conn, "zipped", 1, &acks, 7).await;
}

#[tokio::test]
async fn keyless_round_robin_spreads_records_over_partitions() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "spread", 3).await;
    let config = ProducerConfig::builder()
        .keyless(KeylessPartitioning::RoundRobin)
        .build()
        .unwrap();
    let producer = Producer::new(conn.clone(), config).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..9 {
        pending.push(
            producer
                .enqueue(ProducerRecord::new("spread", format!("v{i}")))
                .await
                .unwrap(),
        );
    }
    let mut placed = Vec::new();
    for p in pending {
        let meta = p.await.unwrap();
        placed.push((meta.partition, meta.offset.unwrap()));
    }
    assert_eq!(
        placed,
        [
            (0, 0),
            (1, 0),
            (2, 0),
            (0, 1),
            (1, 1),
            (2, 1),
            (0, 2),
            (1, 2),
            (2, 2)
        ]
    );
}

#[tokio::test]
async fn sticky_keyless_records_fill_one_partition_per_batch() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "sticky", 3).await;
    let config = ProducerConfig::builder()
        .batch_records(4)
        .linger(Duration::from_secs(5))
        .send_when_idle(false)
        .build()
        .unwrap();
    let producer = Producer::new(conn.clone(), config).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..12 {
        pending.push(
            producer
                .enqueue(ProducerRecord::new("sticky", format!("v{i}")))
                .await
                .unwrap(),
        );
    }
    let mut partitions = Vec::new();
    for p in pending {
        partitions.push(p.await.unwrap().partition);
    }
    // Four records per batch, each batch on one partition, the next batch on the next one.
    for chunk in partitions.chunks(4) {
        assert!(chunk.iter().all(|p| *p == chunk[0]), "{partitions:?}");
    }
    assert_eq!((partitions[4] + 3 - partitions[0]) % 3, 1, "{partitions:?}");
    assert_eq!((partitions[8] + 3 - partitions[4]) % 3, 1, "{partitions:?}");
}

/// 400-byte values take 464 bytes of a 1024-byte buffer each (64 bytes of overhead).
fn small_buffer(backpressure: Backpressure, linger: Duration) -> ProducerConfig {
    ProducerConfig::builder()
        .buffer_bytes(1024)
        .batch_bytes(1024)
        .linger(linger)
        .send_when_idle(false)
        .backpressure(backpressure)
        .build()
        .unwrap()
}

fn record_464(topic: &str) -> ProducerRecord {
    ProducerRecord::new(topic, vec![b'x'; 400]).partition(0)
}

#[tokio::test]
async fn fail_fast_backpressure_reports_requested_available_and_limit() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "bp", 1).await;
    let producer = Producer::new(
        conn.clone(),
        small_buffer(Backpressure::FailFast, Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let first = producer.enqueue(record_464("bp")).await.unwrap();
    let second = producer.enqueue(record_464("bp")).await.unwrap();
    assert_eq!(producer.available_bytes(), 96);
    match producer.enqueue(record_464("bp")).await.unwrap_err() {
        ProducerError::BufferFull {
            requested,
            available,
            limit,
        } => assert_eq!((requested, available, limit), (464, 96, 1024)),
        other => panic!("expected BufferFull, got {other}"),
    }
    let err = producer
        .enqueue(ProducerRecord::new("bp", vec![0u8; 2000]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProducerError::RecordTooLarge {
                size: 2064,
                limit: 1024,
                setting: "buffer_bytes"
            }
        ),
        "{err}"
    );
    producer.flush().await;
    assert_eq!(first.await.unwrap().offset, Some(0));
    assert_eq!(second.await.unwrap().offset, Some(1));
    assert_eq!(producer.available_bytes(), 1024);
    let third = producer.enqueue(record_464("bp")).await.unwrap();
    producer.flush().await;
    assert_eq!(third.await.unwrap().offset, Some(2));
}

#[tokio::test]
async fn block_backpressure_waits_until_acks_free_memory() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "block", 1).await;
    let linger = Duration::from_millis(300);
    let producer = Producer::new(conn.clone(), small_buffer(Backpressure::Block, linger))
        .await
        .unwrap();
    let start = Instant::now();
    let first = producer.enqueue(record_464("block")).await.unwrap();
    let second = producer.enqueue(record_464("block")).await.unwrap();
    // The third waits for the first batch to linger, be sent and be acknowledged.
    let third = producer.enqueue(record_464("block")).await.unwrap();
    assert!(start.elapsed() >= linger, "{:?}", start.elapsed());
    assert_eq!(first.await.unwrap().offset, Some(0));
    assert_eq!(second.await.unwrap().offset, Some(1));
    producer.flush().await;
    assert_eq!(third.await.unwrap().offset, Some(2));
}

#[tokio::test]
async fn block_with_timeout_fails_after_the_timeout_on_a_paused_clock() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "bpt", 1).await;
    let wait = Duration::from_secs(5);
    let producer = Producer::new(
        conn.clone(),
        small_buffer(Backpressure::BlockFor(wait), Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let _first = producer.enqueue(record_464("bpt")).await.unwrap();
    let _second = producer.enqueue(record_464("bpt")).await.unwrap();
    tokio::time::pause();
    let start = Instant::now();
    let err = producer.enqueue(record_464("bpt")).await.unwrap_err();
    // The timer wheel rounds a deadline up to the next millisecond.
    let waited = start.elapsed();
    assert!(
        waited >= wait && waited <= wait + Duration::from_millis(1),
        "{waited:?}"
    );
    assert!(
        matches!(err, ProducerError::BufferFullTimeout { waited } if waited == wait),
        "{err}"
    );
    assert_eq!(
        err_text(wait),
        "record buffer still full after waiting 5000 ms"
    );
}

fn err_text(waited: Duration) -> String {
    ProducerError::BufferFullTimeout { waited }.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_are_retried_without_duplicates_or_reordering() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "lossy", 2).await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    let via_fake = Connection::connect(&fake.addr.to_string()).await.unwrap();
    let mut script = Vec::new();
    for i in 0..40 {
        script.push(match i % 4 {
            0 => AfterForward::LoseAsUnavailable,
            1 => AfterForward::Answer,
            2 => AfterForward::LoseAsCode(ErrorCode::NotLeader),
            _ => AfterForward::Answer,
        });
    }
    fake.script_produce(&script);
    let config = fast_retries().batch_records(25).build().unwrap();
    let producer = Producer::new(via_fake, config).await.unwrap();
    let acks = send_keyed(&producer, "lossy", 2_000, 13).await;
    producer.close().await;
    assert_exactly_once_in_order(&conn, "lossy", 2, &acks, 13).await;
    // 2000 records in batches of at most 25: at least 80 batches, plus the resends.
    assert!(
        fake.produce_requests() >= 40 + 20,
        "{}",
        fake.produce_requests()
    );
}

#[tokio::test]
async fn not_leader_refreshes_metadata_and_retries() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "moved", 1).await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    let via_fake = Connection::connect(&fake.addr.to_string()).await.unwrap();
    fake.fail_produce(&[ErrorCode::NotLeader, ErrorCode::NotLeader]);
    let producer = Producer::new(via_fake, fast_retries().build().unwrap())
        .await
        .unwrap();
    let meta = producer
        .send(ProducerRecord::new("moved", "v").key("k"))
        .await
        .unwrap();
    assert_eq!((meta.partition, meta.offset), (0, Some(0)));
    assert_eq!(fake.produce_requests(), 3);
    // The first load, then one refresh after each NOT_LEADER.
    assert_eq!(fake.metadata_requests(), 3);
    assert_eq!(records(&conn, "moved", 0).await.len(), 1);
}

#[tokio::test]
async fn a_record_not_acknowledged_in_time_fails_with_delivery_timeout_and_the_partition_recovers()
{
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "stuck", 1).await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    let via_fake = Connection::connect(&fake.addr.to_string()).await.unwrap();
    fake.fail_produce(&[ErrorCode::NotEnoughReplicas; 1000]);
    let config = fast_retries()
        .delivery_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let producer = Producer::new(via_fake, config).await.unwrap();
    let start = Instant::now();
    let err = producer
        .send(ProducerRecord::new("stuck", "v"))
        .await
        .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(300));
    match err {
        ProducerError::DeliveryTimeout {
            timeout,
            attempts,
            last_error,
        } => {
            assert_eq!(timeout, Duration::from_millis(300));
            assert!(attempts >= 2, "{attempts}");
            let last = last_error.expect("a last error");
            assert!(
                matches!(
                    *last,
                    ClientError::Broker {
                        code: ErrorCode::NotEnoughReplicas,
                        ..
                    }
                ),
                "{last}"
            );
        }
        other => panic!("expected DeliveryTimeout, got {other}"),
    }
    assert_eq!(producer.available_bytes(), producer.config().buffer_bytes);
    // The failed batch left a gap in the partition's sequence: the partition starts over
    // under a fresh producer id, and the next records land at offsets 0 and 1.
    fake.clear_produce_faults();
    let first = producer
        .send(ProducerRecord::new("stuck", "a"))
        .await
        .unwrap();
    let second = producer
        .send(ProducerRecord::new("stuck", "b"))
        .await
        .unwrap();
    assert_eq!((first.offset, second.offset), (Some(0), Some(1)));
    let stored = records(&conn, "stuck", 0).await;
    assert_eq!(
        stored,
        [(None, "a".to_owned(), 0), (None, "b".to_owned(), 1)]
    );
}

#[tokio::test]
async fn unknown_topic_and_partition_are_refused() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "known", 2).await;
    let producer = Producer::new(conn.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let err = producer
        .send(ProducerRecord::new("nope", "v"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProducerError::UnknownTopic { ref topic } if topic == "nope"),
        "{err}"
    );
    let err = producer
        .send(ProducerRecord::new("known", "v").partition(2))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "topic known has 2 partitions, the record names partition 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotence_one_batch_in_flight_keeps_order_under_retries() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "plain", 3).await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    let via_fake = Connection::connect(&fake.addr.to_string()).await.unwrap();
    // Refused before the append: a resend cannot duplicate.
    fake.fail_produce(&[ErrorCode::NotLeader; 6]);
    let config = fast_retries()
        .idempotence(false)
        .acks(brook_client::producer::Acks::Leader)
        .batch_records(10)
        .build()
        .unwrap();
    assert_eq!(config.max_in_flight_per_partition(), 1);
    let producer = Producer::new(via_fake, config).await.unwrap();
    assert_eq!(producer.producer_id(), None);
    let acks = send_keyed(&producer, "plain", 300, 11).await;
    assert_exactly_once_in_order(&conn, "plain", 3, &acks, 11).await;
}

#[tokio::test]
async fn a_non_retriable_error_fails_its_batch_and_later_records_still_land() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "strict", 1).await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    let via_fake = Connection::connect(&fake.addr.to_string()).await.unwrap();
    fake.fail_produce(&[ErrorCode::BatchTooLarge]);
    let producer = Producer::new(via_fake, fast_retries().build().unwrap())
        .await
        .unwrap();
    let err = producer
        .send(ProducerRecord::new("strict", "big"))
        .await
        .unwrap_err();
    match &err {
        ProducerError::Delivery {
            topic,
            partition,
            attempts,
            source,
        } => {
            assert_eq!((topic.as_str(), *partition, *attempts), ("strict", 0, 1));
            assert_eq!(source.error_code(), Some(ErrorCode::BatchTooLarge));
        }
        other => panic!("expected Delivery, got {other}"),
    }
    let meta = producer
        .send(ProducerRecord::new("strict", "ok"))
        .await
        .unwrap();
    assert_eq!(meta.offset, Some(0));
    assert_eq!(fake.produce_requests(), 2);
}

#[tokio::test]
async fn an_open_breaker_holds_requests_until_its_probe() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "breaker", 1).await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    let via_fake = Connection::connect(&fake.addr.to_string()).await.unwrap();
    // Two lost responses in a row open the breaker for 400 ms; backoff alone is 5-20 ms.
    fake.script_produce(&[AfterForward::LoseAsUnavailable; 2]);
    let open_for = Duration::from_millis(400);
    let config = fast_retries()
        .breaker_failures(2)
        .breaker_open(open_for)
        .build()
        .unwrap();
    let producer = Producer::new(via_fake, config).await.unwrap();
    let start = Instant::now();
    let meta = producer
        .send(ProducerRecord::new("breaker", "v"))
        .await
        .unwrap();
    assert!(start.elapsed() >= open_for, "{:?}", start.elapsed());
    // Written by the first attempt; the probe was answered as a duplicate.
    assert_eq!(meta.offset, Some(0));
    assert_eq!(fake.produce_requests(), 3);
    assert_eq!(records(&conn, "breaker", 0).await.len(), 1);
}

#[tokio::test]
async fn acks_none_resolves_without_an_offset() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "fire", 1).await;
    let config = ProducerConfig::builder()
        .idempotence(false)
        .acks(brook_client::producer::Acks::None)
        .build()
        .unwrap();
    let producer = Producer::new(conn.clone(), config).await.unwrap();
    let meta = producer
        .send(ProducerRecord::new("fire", "v").timestamp(1_700_000_000_000))
        .await
        .unwrap();
    assert_eq!(
        meta,
        brook_client::RecordMetadata {
            topic: "fire".into(),
            partition: 0,
            offset: None,
            timestamp: 1_700_000_000_000,
        }
    );
}

#[tokio::test]
async fn an_idle_leader_gets_a_batch_at_once_and_records_gather_while_it_answers() {
    let broker = TestBroker::start().await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    create_topic(&broker.connect().await, "idle", 1).await;
    let conn = Connection::connect(&fake.addr.to_string()).await.unwrap();
    // The first produce request is answered after 500 ms; linger is far longer than the test.
    fake.script_produce(&[AfterForward::AnswerAfter(Duration::from_millis(500))]);
    let config = ProducerConfig::builder()
        .linger(Duration::from_secs(60))
        .build()
        .unwrap();
    let producer = Producer::new(conn.clone(), config).await.unwrap();
    let first = producer
        .enqueue(ProducerRecord::new("idle", "r0"))
        .await
        .unwrap();
    // Wait until record 0's request is at the broker, then queue 99 more behind it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.produce_requests() == 0 {
        assert!(Instant::now() < deadline, "record 0 was not sent at once");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut rest = Vec::new();
    for i in 1..100 {
        rest.push(
            producer
                .enqueue(ProducerRecord::new("idle", format!("r{i}")))
                .await
                .unwrap(),
        );
    }
    let all = async {
        let mut offsets = vec![first.await.unwrap().offset];
        for r in rest {
            offsets.push(r.await.unwrap().offset);
        }
        offsets
    };
    let offsets = tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("records wait for the 60 s linger");
    assert_eq!(offsets, (0..100).map(Some).collect::<Vec<_>>());
    // Record 0 alone, then the 99 that gathered while its request was answered.
    assert_eq!(fake.produce_requests(), 2);
    let stored = records(&conn, "idle", 0).await;
    let values: Vec<String> = stored.into_iter().map(|(_, v, _)| v).collect();
    assert_eq!(
        values,
        (0..100).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    producer.close().await;
}

#[tokio::test]
async fn without_send_when_idle_a_lone_record_waits_out_its_linger() {
    let broker = TestBroker::start().await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    create_topic(&broker.connect().await, "lingers", 1).await;
    let conn = Connection::connect(&fake.addr.to_string()).await.unwrap();
    let config = ProducerConfig::builder()
        .linger(Duration::from_millis(700))
        .send_when_idle(false)
        .build()
        .unwrap();
    let producer = Producer::new(conn.clone(), config).await.unwrap();
    let start = Instant::now();
    let delivery = producer
        .enqueue(ProducerRecord::new("lingers", "only"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.produce_requests(), 0, "sent before its linger");
    assert_eq!(delivery.await.unwrap().offset, Some(0));
    assert!(start.elapsed() >= Duration::from_millis(700));
    assert_eq!(fake.produce_requests(), 1);
}

/// `Connection::produce` frames the request itself (batches are not copied into one encoded
/// message): it must write exactly what it was given, pass the broker's per-partition errors
/// through, and refuse a request over the message limit before sending it.
#[tokio::test]
async fn the_zero_copy_produce_rpc_writes_batches_and_refuses_oversized_requests() {
    use brook_client::connection::MAX_MESSAGE_BYTES;
    use brook_proto::BatchBuilder;
    use brook_proto::v1::{PartitionProduceData, ProduceRequest, TopicProduceData};

    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "raw", 2).await;
    let batch = |first: usize, count: usize| {
        let mut builder = BatchBuilder::new();
        for i in first..first + count {
            let value = format!("{i:0>2000}");
            builder.append(1, None, Some(value.as_bytes()), &[]);
        }
        builder.build()
    };
    let request = |topic: &str, partitions: Vec<PartitionProduceData>| ProduceRequest {
        acks: brook_proto::v1::Acks::All as i32,
        timeout_ms: 10_000,
        topics: vec![TopicProduceData {
            topic: topic.into(),
            partitions,
        }],
    };
    // A large batch (sent as its own chunk) on partition 0, a small one on partition 1.
    let response = conn
        .produce(&request(
            "raw",
            vec![
                PartitionProduceData {
                    partition: 0,
                    records: batch(0, 3),
                },
                PartitionProduceData {
                    partition: 1,
                    records: {
                        let mut b = BatchBuilder::new();
                        b.append(2, Some(b"k"), Some(b"small"), &[]);
                        b.build()
                    },
                },
            ],
        ))
        .await
        .unwrap();
    let answers: Vec<(u32, i32, i64)> = response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition, p.error_code, p.base_offset))
        .collect();
    assert_eq!(
        answers,
        vec![
            (0, ErrorCode::None as i32, 0),
            (1, ErrorCode::None as i32, 0)
        ]
    );
    let stored: Vec<String> = records(&conn, "raw", 0)
        .await
        .into_iter()
        .map(|(_, value, _)| value)
        .collect();
    assert_eq!(
        stored,
        (0..3).map(|i| format!("{i:0>2000}")).collect::<Vec<_>>()
    );
    assert_eq!(
        records(&conn, "raw", 1).await,
        vec![(Some("k".into()), "small".into(), 0)]
    );

    // Errors inside the answer come through as they are.
    let response = conn
        .produce(&request(
            "missing",
            vec![PartitionProduceData {
                partition: 0,
                records: batch(3, 1),
            }],
        ))
        .await
        .unwrap();
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, ErrorCode::UnknownTopicOrPartition as i32);
    assert_eq!(answer.base_offset, -1);

    // A malformed batch (large, so it travels as its own chunk) is refused in the answer.
    let response = conn
        .produce(&request(
            "raw",
            vec![PartitionProduceData {
                partition: 0,
                records: bytes::Bytes::from(vec![7u8; 5000]),
            }],
        ))
        .await
        .unwrap();
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, ErrorCode::CorruptBatch as i32);
    assert_eq!(answer.base_offset, -1);

    // One byte over the limit is refused before anything is sent.
    let oversized = request(
        "raw",
        vec![PartitionProduceData {
            partition: 0,
            records: bytes::Bytes::from(vec![0u8; MAX_MESSAGE_BYTES]),
        }],
    );
    let status = conn.produce(&oversized).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    assert!(
        status
            .message()
            .contains(&format!("the limit is: {MAX_MESSAGE_BYTES} bytes")),
        "{}",
        status.message()
    );
    // The connection still works and the partition holds only what was acknowledged.
    let response = conn
        .produce(&request(
            "raw",
            vec![PartitionProduceData {
                partition: 0,
                records: batch(3, 1),
            }],
        ))
        .await
        .unwrap();
    assert_eq!(response.topics[0].partitions[0].base_offset, 3);
    assert_eq!(records(&conn, "raw", 0).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_gets_no_records_after_a_refused_one() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let response = conn
        .admin()
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: "small".into(),
                partitions: 1,
                replication_factor: 0,
                configs: [("max.message.bytes".to_string(), "4096".to_string())].into(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.results[0].error_code, ErrorCode::None as i32);
    // Batches of one record each, all enqueued before the broker refuses the big one.
    let config = ProducerConfig::builder()
        .linger(Duration::from_millis(200))
        .batch_records(1)
        .build()
        .unwrap();
    let producer = Producer::new(conn.clone(), config).await.unwrap();
    let record = |value: Vec<u8>| ProducerRecord::new("small", value).partition(0);
    let first = producer.enqueue(record(b"first".to_vec())).await.unwrap();
    let big = producer
        .enqueue(record(vec![b'x'; 10 * 1024]))
        .await
        .unwrap();
    let behind = producer.enqueue(record(b"behind".to_vec())).await.unwrap();
    assert_eq!(first.await.unwrap().offset, Some(0));
    let refused = big.await.unwrap_err();
    assert!(
        refused
            .to_string()
            .starts_with("delivery to topic small partition 0 failed"),
        "{refused}"
    );
    let err = behind.await.unwrap_err();
    assert!(
        matches!(&err, ProducerError::EarlierFailed { topic, partition: 0 } if topic == "small"),
        "{err}"
    );
    // Once the failure is known, the partition takes records again.
    let after = producer.send(record(b"after".to_vec())).await.unwrap();
    assert_eq!(after.offset, Some(1));
    producer.close().await;
    let stored: Vec<(String, i64)> = records(&conn, "small", 0)
        .await
        .into_iter()
        .map(|(_, value, offset)| (value, offset))
        .collect();
    assert_eq!(stored, [("first".to_string(), 0), ("after".to_string(), 1)]);
}
