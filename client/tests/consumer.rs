//! The consumer against a real broker, started in-process on 127.0.0.1:0 with its data in a
//! temporary directory: delivery and order, prefetching, seeks by offset and by timestamp,
//! offset reset, backpressure, decompression, failures and close. The last test runs on a
//! paused clock without a broker.

mod fake_broker;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use brook_broker::config::BrokerConfig;
use brook_broker::server::RunningBroker;
use brook_client::consumer::ConsumerConfigBuilder;
use brook_client::{
    AutoOffsetReset, ClientError, Connection, Consumer, ConsumerConfig, ConsumerRecord,
    TopicPartition,
};
use brook_proto::v1::{
    Acks, CreateTopicsRequest, ErrorCode, NewTopic, PartitionProduceData, ProduceRequest,
    TopicProduceData,
};
use brook_proto::{BatchBuilder, Compression, Header, Offset};
use bytes::Bytes;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use fake_broker::FakeBroker;

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

    fn addr(&self) -> String {
        self.running.grpc_addr.to_string()
    }

    async fn connect(&self) -> Connection {
        Connection::connect(&self.addr()).await.unwrap()
    }

    /// A consumer config for this broker: earliest reset, short long-polls.
    fn config(&self) -> ConsumerConfigBuilder {
        ConsumerConfig::builder()
            .bootstrap(self.addr())
            .auto_offset_reset(AutoOffsetReset::Earliest)
            .fetch_max_wait(Duration::from_millis(100))
    }

    async fn consumer(&self, config: ConsumerConfigBuilder) -> Consumer {
        Consumer::connect(config.build().unwrap()).await.unwrap()
    }

    async fn stop(self) {
        let TestBroker { running, _data } = self;
        running.shutdown();
        running.wait().await.unwrap();
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
                configs: HashMap::new(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let result = &response.results[0];
    assert_eq!(
        result.error_code(),
        ErrorCode::None,
        "{}",
        result.error_message
    );
}

/// A record to produce.
#[derive(Debug, Clone)]
struct Sent {
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<Header>,
}

/// A record with key `k{i}`, value `v{i}`, no headers.
fn sent(i: usize, timestamp: i64) -> Sent {
    Sent {
        timestamp,
        key: Some(Bytes::from(format!("k{i}"))),
        value: Some(Bytes::from(format!("v{i}"))),
        headers: vec![],
    }
}

fn header(key: &str, value: Option<&str>) -> Header {
    Header {
        key: Bytes::from(key.to_owned()),
        value: value.map(|v| Bytes::from(v.to_owned())),
    }
}

/// Produces `records` as one batch with `codec`; returns the base offset.
async fn produce_with(
    conn: &Connection,
    topic: &str,
    partition: u32,
    records: &[Sent],
    codec: Compression,
) -> i64 {
    let mut batch = BatchBuilder::new().compression(codec);
    for r in records {
        batch.append(
            r.timestamp,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        );
    }
    let response = conn
        .broker()
        .produce(ProduceRequest {
            acks: Acks::All as i32,
            timeout_ms: 0,
            topics: vec![TopicProduceData {
                topic: topic.into(),
                partitions: vec![PartitionProduceData {
                    partition,
                    records: batch.build(),
                }],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let outcome = &response.topics[0].partitions[0];
    assert_eq!(
        outcome.error_code(),
        ErrorCode::None,
        "{}",
        outcome.error_message
    );
    outcome.base_offset
}

async fn produce(conn: &Connection, topic: &str, partition: u32, records: &[Sent]) -> i64 {
    produce_with(conn, topic, partition, records, Compression::None).await
}

/// The record the consumer must return for `sent` at `offset`.
fn expected(topic: &str, partition: u32, offset: i64, sent: &Sent) -> ConsumerRecord {
    ConsumerRecord {
        topic: Arc::from(topic),
        partition,
        offset: Offset(offset),
        timestamp: sent.timestamp,
        key: sent.key.clone(),
        value: sent.value.clone(),
        headers: sent.headers.clone(),
    }
}

fn offsets(records: &[ConsumerRecord]) -> Vec<i64> {
    records.iter().map(|r| r.offset.get()).collect()
}

/// Polls until `n` records arrived (failing after 10 s or on more than `n`).
async fn poll_n(consumer: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} records arrived: {:?}",
            out.len(),
            offsets(&out)
        );
        out.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    assert_eq!(
        out.len(),
        n,
        "more records than expected: {:?}",
        offsets(&out)
    );
    out
}

/// Asserts that no further record arrives within a few fetch rounds.
async fn assert_no_more(consumer: &mut Consumer) {
    let more = consumer.poll(Duration::from_millis(300)).await.unwrap();
    assert!(more.is_empty(), "unexpected records {:?}", offsets(&more));
}

/// Waits until `tp` has buffered at least `bytes` (fails after 10 s).
async fn wait_buffered(consumer: &Consumer, tp: &TopicPartition, bytes: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let buffered = consumer.buffered_bytes(tp);
        if buffered >= bytes {
            return buffered;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{tp} buffered {buffered} bytes, waited for {bytes}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `tp`'s position is `offset` (fails after 10 s).
async fn wait_position(consumer: &Consumer, tp: &TopicPartition, offset: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let position = consumer.position(tp).await.unwrap();
        if position == Offset(offset) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{tp} stays at {position}, waited for {offset}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn poll_returns_every_record_of_three_partitions_once_in_partition_order() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "events", 3).await;
    let mut want: BTreeMap<u32, Vec<ConsumerRecord>> = BTreeMap::new();
    for p in 0..3u32 {
        let records: Vec<Sent> = (0..5usize)
            .map(|i| Sent {
                timestamp: 1_700_000_000_000 + i64::from(p) * 100 + i as i64,
                key: (i != 1).then(|| Bytes::from(format!("key-{p}-{i}"))),
                value: (i != 4).then(|| Bytes::from(format!("value-{p}-{i}"))),
                headers: if i == 0 {
                    vec![
                        header("trace", Some(&format!("t{p}"))),
                        header("empty", None),
                    ]
                } else {
                    vec![]
                },
            })
            .collect();
        // Two batches per partition: offsets 0-2 and 3-4.
        assert_eq!(produce(&conn, "events", p, &records[..3]).await, 0);
        assert_eq!(produce(&conn, "events", p, &records[3..]).await, 3);
        want.insert(
            p,
            records
                .iter()
                .enumerate()
                .map(|(i, r)| expected("events", p, i as i64, r))
                .collect(),
        );
    }

    let mut consumer = broker.consumer(broker.config().max_poll_records(4)).await;
    let tps: Vec<_> = (0..3).map(|p| TopicPartition::new("events", p)).collect();
    consumer.assign(&tps);
    assert_eq!(consumer.assignment(), tps);
    let mut got: BTreeMap<u32, Vec<ConsumerRecord>> = BTreeMap::new();
    let mut total = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while total < 15 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {total} records"
        );
        let records = consumer.poll(Duration::from_millis(200)).await.unwrap();
        assert!(
            records.len() <= 4,
            "max_poll_records is 4: {}",
            records.len()
        );
        total += records.len();
        for r in records {
            got.entry(r.partition).or_default().push(r);
        }
    }
    assert_eq!(got, want);
    assert_no_more(&mut consumer).await;
    for tp in &tps {
        assert_eq!(consumer.position(tp).await.unwrap(), Offset(5));
    }
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn records_produced_while_the_application_works_are_already_buffered() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "prefetch", 1).await;
    let tp = TopicPartition::new("prefetch", 0);
    // A fetch waits up to a minute for data: records show up only because the broker's
    // long-poll answers as soon as they are appended, and the fetcher had it in flight.
    let config = broker.config().fetch_max_wait(Duration::from_secs(60));
    let mut consumer = broker.consumer(config).await;
    consumer.assign(std::slice::from_ref(&tp));
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(0));

    let mut next = 0;
    for round in 0..3usize {
        // The application is busy (not polling) while these are produced.
        let records: Vec<Sent> = (0..5).map(|i| sent(round * 10 + i, 1000)).collect();
        assert_eq!(produce(&conn, "prefetch", 0, &records).await, next);
        let want: Vec<ConsumerRecord> = records
            .iter()
            .enumerate()
            .map(|(i, r)| expected("prefetch", 0, next + i as i64, r))
            .collect();
        let bytes: usize = want.iter().map(ConsumerRecord::size_in_bytes).sum();
        assert_eq!(wait_buffered(&consumer, &tp, bytes).await, bytes);
        // A poll that does not wait at all returns them.
        assert_eq!(consumer.poll(Duration::ZERO).await.unwrap(), want);
        assert_eq!(consumer.buffered_bytes(&tp), 0);
        next += 5;
    }
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_new_assignment_or_a_seek_does_not_wait_for_the_long_poll_in_flight() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "idle", 2).await;
    let records: Vec<Sent> = (0..3).map(|i| sent(i, 100)).collect();
    for p in 0..2 {
        produce(&conn, "idle", p, &records).await;
    }
    let want = |p: u32, from: usize| -> Vec<ConsumerRecord> {
        (from..3)
            .map(|i| expected("idle", p, i as i64, &records[i]))
            .collect()
    };
    // Fetches wait a minute for data that never comes; poll_n gives up after 10 s. With one
    // request per broker the new partition replaces the one in flight; with two it takes
    // the free one, and the seek then replaces the oldest.
    for requests in [1, 2] {
        let config = broker
            .config()
            .fetch_max_wait(Duration::from_secs(60))
            .fetches_per_broker(requests);
        let mut consumer = broker.consumer(config).await;
        let (p0, p1) = (
            TopicPartition::new("idle", 0),
            TopicPartition::new("idle", 1),
        );
        consumer.assign(std::slice::from_ref(&p0));
        assert_eq!(poll_n(&mut consumer, 3).await, want(0, 0));
        // Now a fetch of partition 0 at offset 3 is waiting at the broker.
        assert_no_more(&mut consumer).await;
        consumer.assign(&[p0.clone(), p1.clone()]);
        assert_eq!(poll_n(&mut consumer, 3).await, want(1, 0));
        assert_no_more(&mut consumer).await;
        consumer.seek(&p0, Offset(1)).unwrap();
        assert_eq!(poll_n(&mut consumer, 2).await, want(0, 1));
        consumer.close().await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn fetches_per_broker_bounds_the_requests_in_flight_and_splits_the_partitions() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "split", 4).await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    let tps: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new("split", p)).collect();
    for (requests, want) in [
        (1, vec![4]),
        (2, vec![2, 2]),
        (3, vec![1, 1, 2]),
        (4, vec![1; 4]),
    ] {
        // Nothing to read: every fetch waits a minute at the broker, so what is in flight
        // stays put while we look.
        let config = broker
            .config()
            .bootstrap(fake.addr.to_string())
            .fetch_max_wait(Duration::from_secs(60))
            .fetches_per_broker(requests);
        let mut consumer = broker.consumer(config).await;
        consumer.assign(&tps);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while fake.fetches_in_flight().iter().sum::<usize>() < 4 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "fetches_per_broker {requests}: in flight {:?}",
                fake.fetches_in_flight()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            fake.fetches_in_flight(),
            want,
            "fetches_per_broker {requests}"
        );
        consumer.close().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !fake.fetches_in_flight().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "close left fetches behind"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    drop(fake);
    broker.stop().await;
}

#[tokio::test]
async fn seek_to_an_offset_inside_a_batch_returns_records_from_exactly_that_offset() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "seek", 1).await;
    let tp = TopicPartition::new("seek", 0);
    let records: Vec<Sent> = (0..10).map(|i| sent(i, 5000 + i as i64)).collect();
    produce(&conn, "seek", 0, &records).await;
    let want = |from: usize| -> Vec<ConsumerRecord> {
        (from..10)
            .map(|i| expected("seek", 0, i as i64, &records[i]))
            .collect()
    };

    let mut consumer = broker.consumer(broker.config()).await;
    consumer.assign(std::slice::from_ref(&tp));
    consumer.seek(&tp, Offset(4)).unwrap();
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(4));
    assert_eq!(poll_n(&mut consumer, 6).await, want(4));
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(10));

    // Back into the same batch.
    consumer.seek(&tp, Offset(7)).unwrap();
    assert_eq!(poll_n(&mut consumer, 3).await, want(7));

    // A seek drops what was buffered for the partition.
    consumer.seek(&tp, Offset(0)).unwrap();
    wait_buffered(&consumer, &tp, 1).await;
    consumer.seek(&tp, Offset(8)).unwrap();
    assert_eq!(consumer.buffered_bytes(&tp), 0);
    assert_eq!(poll_n(&mut consumer, 2).await, want(8));
    assert_no_more(&mut consumer).await;

    let err = consumer.seek(&tp, Offset(-1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot seek seek-0 to offset -1: offsets start at 0"
    );
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn seek_to_beginning_and_to_end() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "ends", 1).await;
    let tp = TopicPartition::new("ends", 0);
    let records: Vec<Sent> = (0..7).map(|i| sent(i, 100)).collect();
    produce(&conn, "ends", 0, &records[..5]).await;

    let config = broker.config().auto_offset_reset(AutoOffsetReset::Latest);
    let mut consumer = broker.consumer(config).await;
    consumer.assign(std::slice::from_ref(&tp));
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(5));
    assert_no_more(&mut consumer).await;

    // An empty slice means every assigned partition, as in Kafka.
    consumer.seek_to_beginning(&[]).unwrap();
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(0));
    let want: Vec<_> = (0..5)
        .map(|i| expected("ends", 0, i as i64, &records[i]))
        .collect();
    assert_eq!(poll_n(&mut consumer, 5).await, want);

    consumer
        .seek_to_beginning(std::slice::from_ref(&tp))
        .unwrap();
    consumer.seek_to_end(std::slice::from_ref(&tp)).unwrap();
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(5));
    produce(&conn, "ends", 0, &records[5..]).await;
    let want: Vec<_> = (5..7)
        .map(|i| expected("ends", 0, i as i64, &records[i]))
        .collect();
    assert_eq!(poll_n(&mut consumer, 2).await, want);

    let other = TopicPartition::new("ends", 1);
    let err = consumer.seek_to_end(&[tp.clone(), other]).unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "ends-1 is not assigned to this consumer (topic ends, partition 1)"
    );
    // Nothing changed.
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(7));
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn seek_to_timestamp_finds_the_first_record_at_or_after_it() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "times", 1).await;
    let tp = TopicPartition::new("times", 0);
    let stamps = [1000, 2000, 3000, 4000, 5000, 7000];
    let records: Vec<Sent> = stamps
        .iter()
        .enumerate()
        .map(|(i, &t)| sent(i, t))
        .collect();
    produce(&conn, "times", 0, &records[..3]).await;
    produce(&conn, "times", 0, &records[3..5]).await;
    let want = |from: usize, to: usize| -> Vec<ConsumerRecord> {
        (from..to)
            .map(|i| expected("times", 0, i as i64, &records[i]))
            .collect()
    };

    let mut consumer = broker.consumer(broker.config()).await;
    consumer.assign(std::slice::from_ref(&tp));
    // Between two records of the first batch: the later one.
    consumer
        .seek_to_timestamp(std::slice::from_ref(&tp), 2500)
        .unwrap();
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(2));
    assert_eq!(poll_n(&mut consumer, 3).await, want(2, 5));

    // Exactly a record's timestamp: that record.
    consumer.seek_to_timestamp(&[], 4000).unwrap();
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(3));
    assert_eq!(poll_n(&mut consumer, 2).await, want(3, 5));

    consumer.seek_to_timestamp(&[], 0).unwrap();
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(0));

    // After every record: the end.
    consumer.seek_to_timestamp(&[], 6000).unwrap();
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(5));
    produce(&conn, "times", 0, &records[5..]).await;
    assert_eq!(poll_n(&mut consumer, 1).await, want(5, 6));
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn out_of_range_resets_to_earliest() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "reset", 1).await;
    let tp = TopicPartition::new("reset", 0);
    let records: Vec<Sent> = (0..3).map(|i| sent(i, 100)).collect();
    produce(&conn, "reset", 0, &records).await;

    let mut consumer = broker.consumer(broker.config()).await;
    consumer.assign(std::slice::from_ref(&tp));
    consumer.seek(&tp, Offset(1000)).unwrap();
    let want: Vec<_> = (0..3)
        .map(|i| expected("reset", 0, i as i64, &records[i]))
        .collect();
    assert_eq!(poll_n(&mut consumer, 3).await, want);
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(3));
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn out_of_range_resets_to_latest() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "reset", 1).await;
    let tp = TopicPartition::new("reset", 0);
    let records: Vec<Sent> = (0..5).map(|i| sent(i, 100)).collect();
    produce(&conn, "reset", 0, &records[..3]).await;

    let config = broker.config().auto_offset_reset(AutoOffsetReset::Latest);
    let mut consumer = broker.consumer(config).await;
    consumer.assign(std::slice::from_ref(&tp));
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(3));
    consumer.seek(&tp, Offset(1000)).unwrap();
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(1000));
    assert_no_more(&mut consumer).await;
    wait_position(&consumer, &tp, 3).await;
    produce(&conn, "reset", 0, &records[3..]).await;
    let want: Vec<_> = (3..5)
        .map(|i| expected("reset", 0, i as i64, &records[i]))
        .collect();
    assert_eq!(poll_n(&mut consumer, 2).await, want);
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn no_reset_policy_fails_until_the_partition_is_sought() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "strict", 2).await;
    let tp = TopicPartition::new("strict", 0);
    let records: Vec<Sent> = (0..3).map(|i| sent(i, 100)).collect();
    produce(&conn, "strict", 0, &records).await;

    let config = broker.config().auto_offset_reset(AutoOffsetReset::None);
    let mut consumer = broker.consumer(config).await;
    let err = consumer.poll(Duration::ZERO).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no partitions are assigned to this consumer: call assign before poll"
    );

    // No position to start from.
    consumer.assign(std::slice::from_ref(&tp));
    let no_position = "strict-0 has no position and auto_offset_reset is none: seek it before \
                       polling (topic strict, partition 0)";
    let err = consumer.poll(Duration::from_millis(100)).await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidArgument(_)), "{err:?}");
    assert_eq!(err.to_string(), no_position);
    assert_eq!(
        consumer.position(&tp).await.unwrap_err().to_string(),
        no_position
    );

    // A position past the end: OFFSET_OUT_OF_RANGE, on every poll until a seek.
    consumer.seek(&tp, Offset(1000)).unwrap();
    for _ in 0..2 {
        let err = consumer.poll(Duration::from_secs(10)).await.unwrap_err();
        match &err {
            ClientError::Broker {
                topic,
                partition,
                code,
                message,
            } => {
                assert_eq!(
                    (topic.as_str(), *partition, *code),
                    ("strict", Some(0), ErrorCode::OffsetOutOfRange)
                );
                assert_eq!(
                    message,
                    "offset 1000 is outside the log (log start 0, high watermark 3) and \
                     auto_offset_reset is none: seek to a valid offset"
                );
            }
            other => panic!("expected OFFSET_OUT_OF_RANGE, got {other:?}"),
        }
        assert!(!err.is_retriable());
    }
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(1000));

    consumer.seek(&tp, Offset(1)).unwrap();
    let want: Vec<_> = (1..3)
        .map(|i| expected("strict", 0, i as i64, &records[i]))
        .collect();
    assert_eq!(poll_n(&mut consumer, 2).await, want);
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn a_full_buffer_stops_fetching_its_partition_until_poll_drains_it() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "pressure", 2).await;
    let value = "x".repeat(40);
    let mut all: BTreeMap<u32, Vec<ConsumerRecord>> = BTreeMap::new();
    for p in 0..2u32 {
        for b in 0..20usize {
            let records: Vec<Sent> = (0..5)
                .map(|i| Sent {
                    timestamp: 100,
                    key: Some(Bytes::from_static(b"k")),
                    value: Some(Bytes::from(format!("{value}{:03}", b * 5 + i))),
                    headers: vec![],
                })
                .collect();
            let base = produce(&conn, "pressure", p, &records).await;
            let want = all.entry(p).or_default();
            for (i, r) in records.iter().enumerate() {
                want.push(expected("pressure", p, base + i as i64, r));
            }
        }
    }
    // Limit 1 byte: any buffered record fills the buffer, so each partition holds exactly one
    // fetch response (at most partition_max_bytes of batches) until poll drains it.
    let partition_max = 1024usize;
    let config = broker
        .config()
        .partition_buffer_bytes(1)
        .partition_max_bytes(partition_max as u32)
        .max_poll_records(1000);
    let mut consumer = broker.consumer(config).await;
    let tps: Vec<_> = (0..2).map(|p| TopicPartition::new("pressure", p)).collect();
    consumer.assign(&tps);

    let mut got: BTreeMap<u32, Vec<ConsumerRecord>> = BTreeMap::new();
    let mut rounds = 0;
    while got.values().map(Vec::len).sum::<usize>() < 200 {
        rounds += 1;
        assert!(rounds <= 100, "too many rounds");
        let mut buffered = Vec::new();
        for tp in &tps {
            let remaining = 100 - got.get(&tp.partition).map_or(0, Vec::len);
            if remaining == 0 {
                buffered.push(0);
                continue;
            }
            let bytes = wait_buffered(&consumer, tp, 1).await;
            assert!(
                bytes <= 1 + partition_max,
                "{tp} buffered {bytes} bytes, above the limit plus one response"
            );
            buffered.push(bytes);
        }
        // Give the fetcher time to over-fetch if it ignored the limit.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now: Vec<usize> = tps.iter().map(|tp| consumer.buffered_bytes(tp)).collect();
        assert_eq!(now, buffered, "the fetcher fetched past the limit");
        let records = consumer.poll(Duration::ZERO).await.unwrap();
        for (i, tp) in tps.iter().enumerate() {
            let mine: Vec<_> = records
                .iter()
                .filter(|r| r.partition == tp.partition)
                .cloned()
                .collect();
            // Exactly what was buffered, in whole batches of five.
            let bytes: usize = mine.iter().map(ConsumerRecord::size_in_bytes).sum();
            assert_eq!(bytes, buffered[i]);
            assert_eq!(mine.len() % 5, 0, "{:?}", offsets(&mine));
            got.entry(tp.partition).or_default().extend(mine);
        }
    }
    assert_eq!(got, all);
    assert!(
        rounds >= 4,
        "a 1 KiB fetch cannot hold 100 records: {rounds} rounds"
    );
    assert_no_more(&mut consumer).await;
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn compressed_batches_are_decompressed() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "packed", 1).await;
    let mut want = Vec::new();
    let codecs = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    for (c, codec) in codecs.into_iter().enumerate() {
        let records: Vec<Sent> = (0..3)
            .map(|i| Sent {
                headers: vec![header("codec", Some(codec.name()))],
                ..sent(c * 3 + i, 100 + i as i64)
            })
            .collect();
        let base = produce_with(&conn, "packed", 0, &records, codec).await;
        want.extend(
            records
                .iter()
                .enumerate()
                .map(|(i, r)| expected("packed", 0, base + i as i64, r)),
        );
    }
    let mut consumer = broker.consumer(broker.config()).await;
    let tp = TopicPartition::new("packed", 0);
    consumer.assign(std::slice::from_ref(&tp));
    // Start inside the first (gzip) batch.
    consumer.seek(&tp, Offset(1)).unwrap();
    assert_eq!(poll_n(&mut consumer, 11).await, want[1..]);
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn an_unknown_topic_is_reported_after_the_retry_timeout_and_then_read_once_created() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let config = broker
        .config()
        .retry_backoff(Duration::from_millis(10))
        .retry_backoff_max(Duration::from_millis(50))
        .retry_timeout(Duration::from_millis(300));
    let mut consumer = broker.consumer(config).await;
    let tp = TopicPartition::new("later", 0);
    consumer.assign(std::slice::from_ref(&tp));
    let started = tokio::time::Instant::now();
    let err = consumer.poll(Duration::from_secs(10)).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    match &err {
        ClientError::Broker {
            topic,
            partition,
            code,
            message,
        } => {
            assert_eq!(
                (topic.as_str(), *partition, *code),
                ("later", Some(0), ErrorCode::UnknownTopicOrPartition)
            );
            assert_eq!(message, "topic \"later\" does not exist");
        }
        other => panic!("expected UNKNOWN_TOPIC_OR_PARTITION, got {other:?}"),
    }

    // The consumer kept retrying: once the topic exists, its records arrive.
    create_topic(&conn, "later", 1).await;
    let records = [sent(0, 100)];
    produce(&conn, "later", 0, &records).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        assert!(tokio::time::Instant::now() < deadline, "nothing arrived");
        match consumer.poll(Duration::from_millis(200)).await {
            Ok(records) if !records.is_empty() => break records,
            Ok(_) => {}
            // Reported again if the retries outlast another retry timeout.
            Err(ClientError::Broker {
                code: ErrorCode::UnknownTopicOrPartition,
                ..
            }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    };
    assert_eq!(got, [expected("later", 0, 0, &records[0])]);
    consumer.close().await;
    broker.stop().await;
}

#[tokio::test]
async fn close_stops_the_fetcher_with_a_long_poll_in_flight() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "quiet", 1).await;
    let config = broker.config().fetch_max_wait(Duration::from_secs(300));
    let mut consumer = broker.consumer(config).await;
    let tp = TopicPartition::new("quiet", 0);
    consumer.assign(std::slice::from_ref(&tp));
    assert_eq!(consumer.position(&tp).await.unwrap(), Offset(0));
    assert!(
        consumer
            .poll(Duration::from_millis(100))
            .await
            .unwrap()
            .is_empty()
    );
    // The fetch in flight would wait five minutes; close aborts it.
    tokio::time::timeout(Duration::from_secs(5), consumer.close())
        .await
        .expect("close returns without waiting for the long poll");
    // The broker has no consumer request left to wait for.
    tokio::time::timeout(Duration::from_secs(10), broker.stop())
        .await
        .expect("the broker stops");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_broker_is_reported_only_after_the_retry_timeout() {
    // Nothing listens on this port: every request fails at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let config = ConsumerConfig::builder()
        .retry_backoff(Duration::from_millis(100))
        .retry_backoff_max(Duration::from_secs(1))
        .retry_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut consumer = Consumer::with_connection(Connection::from_channel(&addr, channel), config);
    let tp = TopicPartition::new("t", 0);
    consumer.assign(std::slice::from_ref(&tp));

    let is_unreachable = |err: &ClientError| match err {
        ClientError::Rpc(status) => status.code() == tonic::Code::Unavailable,
        ClientError::Timeout { operation, .. } => operation.starts_with("metadata request"),
        _ => false,
    };
    let started = tokio::time::Instant::now();
    // Failures shorter than the retry timeout are retried silently.
    assert!(
        consumer
            .poll(Duration::from_secs(5))
            .await
            .unwrap()
            .is_empty()
    );
    let err = consumer.poll(Duration::from_secs(60)).await.unwrap_err();
    let first = started.elapsed();
    assert!(is_unreachable(&err), "{err:?}");
    assert!(err.is_retriable());
    assert!(first >= Duration::from_secs(10), "reported after {first:?}");
    // Retrying goes on, reported again after another retry timeout.
    let err = consumer.poll(Duration::from_secs(60)).await.unwrap_err();
    assert!(is_unreachable(&err), "{err:?}");
    assert!(started.elapsed() >= first + Duration::from_secs(10));
    consumer.close().await;
}
