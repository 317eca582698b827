//! The `brook` commands against the real broker, started in-process on 127.0.0.1:0 with its
//! data in a temporary directory: through the library functions, and as a process through the
//! binary (exit codes, stdout, stderr).
//!
//! Only what a single-node broker cannot do goes through [`fake_broker`]: produce failing
//! with `NOT_LEADER` / `NOT_ENOUGH_REPLICAS`, and telling when a consumer has its start
//! offsets.

mod fake_broker;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use brook_broker::config::BrokerConfig;
use brook_broker::server::RunningBroker;
use brook_client::cli::{
    self, AckMode, AddPartitionsArgs, ConfigEntry, ConsumeArgs, Exit, ProduceArgs, TopicAlterArgs,
    TopicCreateArgs,
};
use brook_client::{ClientError, Connection, partition_for_key};
use brook_proto::Batches;
use brook_proto::v1::{ErrorCode, FetchPartition, FetchRequest, FetchTopic};
use fake_broker::FakeBroker;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// A throw-away CA and a broker certificate for 127.0.0.1 it signed, as PEM files in `dir`:
/// `(ca, cert, key)`.
fn tls_files(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("broker.pem"),
        dir.join("broker.key"),
    );
    std::fs::write(&paths.0, ca_pem).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// A real broker serving on 127.0.0.1 with its data in a temporary directory.
struct TestBroker {
    running: RunningBroker,
    _data: TempDir,
}

impl TestBroker {
    async fn start() -> TestBroker {
        TestBroker::start_with(BrokerConfig::default()).await
    }

    async fn start_with(mut config: BrokerConfig) -> TestBroker {
        let data = tempfile::tempdir().unwrap();
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

    /// The gRPC address, as `brook --bootstrap` takes it.
    fn addr(&self) -> String {
        self.running.grpc_addr.to_string()
    }

    async fn connect(&self) -> Connection {
        Connection::connect(&self.addr()).await.unwrap()
    }

    /// Stops the broker and checks that it shut down cleanly.
    async fn stop(self) {
        let TestBroker { running, _data } = self;
        running.shutdown();
        running.wait().await.unwrap();
    }
}

async fn create_topic(conn: &Connection, name: &str, partitions: u32, configs: &[(&str, &str)]) {
    let args = TopicCreateArgs {
        name: name.into(),
        partitions,
        replication_factor: None,
        configs: configs
            .iter()
            .map(|(key, value)| ConfigEntry {
                key: (*key).into(),
                value: (*value).into(),
            })
            .collect(),
    };
    let mut out = Vec::new();
    cli::create_topic(conn, &args, &mut out).await.unwrap();
    assert_eq!(
        lines(&out),
        [format!("created topic {name} with {partitions} partitions")]
    );
}

fn lines(text: &[u8]) -> Vec<String> {
    String::from_utf8(text.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A stored record: key, value, offset.
type Stored = (Option<String>, String, i64);

fn stored(key: Option<&str>, value: &str, offset: i64) -> Stored {
    (key.map(str::to_owned), value.to_owned(), offset)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A partition's batches as the broker stores them, read with Fetch from offset 0 to the high
/// watermark.
async fn batches(conn: &Connection, topic: &str, partition: u32) -> Vec<Vec<Stored>> {
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
            let records = batch
                .records()
                .unwrap()
                .map(|r| {
                    let r = r.unwrap();
                    (
                        r.key.as_deref().map(text),
                        text(r.value.as_deref().unwrap()),
                        r.offset,
                    )
                })
                .collect();
            out.push(records);
            offset = batch.last_offset() + 1;
        }
    }
}

/// A partition's records, in offset order.
async fn records(conn: &Connection, topic: &str, partition: u32) -> Vec<Stored> {
    batches(conn, topic, partition).await.concat()
}

/// A partition's records once it holds `count` of them (fails after 5 s).
async fn wait_for_records(
    conn: &Connection,
    topic: &str,
    partition: u32,
    count: usize,
) -> Vec<Stored> {
    for _ in 0..500 {
        let found = records(conn, topic, partition).await;
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("topic {topic} partition {partition} never held {count} records");
}

/// Values of each batch.
fn batch_values(batches: &[Vec<Stored>]) -> Vec<Vec<String>> {
    batches
        .iter()
        .map(|b| b.iter().map(|r| r.1.clone()).collect())
        .collect()
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn produce_then_consume_round_trips_every_line_in_partition_order() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "events", 3, &[]).await;
    let input: String = (0..2500)
        .map(|i| format!("user-{}:value-{i}\n", i % 10))
        .collect();
    let mut args = ProduceArgs::new("events");
    args.key_separator = Some(":".into());
    let produced = cli::produce(&conn, &args, input.as_bytes()).await.unwrap();
    assert_eq!(produced, 2500);

    // Each key on its murmur2 partition, each partition in input order, offsets from 0.
    let mut expected: Vec<Vec<Stored>> = vec![Vec::new(); 3];
    for i in 0..2500 {
        let key = format!("user-{}", i % 10);
        let partition = &mut expected[partition_for_key(key.as_bytes(), 3) as usize];
        let offset = partition.len() as i64;
        partition.push((Some(key), format!("value-{i}"), offset));
    }
    assert!(expected.iter().all(|p| !p.is_empty()));
    for (partition, expected) in expected.iter().enumerate() {
        assert_eq!(
            &records(&conn, "events", partition as u32).await,
            expected,
            "partition {partition}"
        );
    }

    let mut consume_args = ConsumeArgs::new("events");
    consume_args.from_beginning = true;
    consume_args.max_messages = Some(2500);
    consume_args.print_offset = true;
    consume_args.print_key = true;
    let mut out = Vec::new();
    let consumed = cli::consume(&conn, &consume_args, &mut out, std::future::pending())
        .await
        .unwrap();
    assert_eq!(consumed, 2500);
    let mut printed: Vec<Vec<Stored>> = vec![Vec::new(); 3];
    for line in lines(&out) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [partition, offset, key, value] = fields[..] else {
            panic!("{line}")
        };
        printed[partition.parse::<usize>().unwrap()].push(stored(
            Some(key),
            value,
            offset.parse().unwrap(),
        ));
    }
    assert_eq!(printed, expected);
    broker.stop().await;
}

#[tokio::test]
async fn produce_splits_input_into_batches_of_batch_size() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 1, &[]).await;
    let input: String = (0..25).map(|i| format!("{i}\n")).collect();
    let mut args = ProduceArgs::new("t");
    args.batch_size = 10;
    assert_eq!(
        cli::produce(&conn, &args, input.as_bytes()).await.unwrap(),
        25
    );
    let stored = batches(&conn, "t", 0).await;
    assert_eq!(
        batch_values(&stored),
        [
            numbered("", 0..10),
            numbered("", 10..20),
            numbered("", 20..25)
        ]
    );
    let offsets: Vec<i64> = stored.concat().iter().map(|r| r.2).collect();
    assert_eq!(offsets, (0..25).collect::<Vec<i64>>());
    broker.stop().await;
}

#[tokio::test]
async fn keyless_records_go_round_robin_one_partition_per_batch() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 3, &[]).await;
    let input: String = (0..30).map(|i| format!("line {i}\n")).collect();
    let mut args = ProduceArgs::new("t");
    args.batch_size = 5;
    assert_eq!(
        cli::produce(&conn, &args, input.as_bytes()).await.unwrap(),
        30
    );
    // Batches of 5 go to partitions 0, 1, 2, 0, 1, 2.
    for partition in 0..3 {
        let first = 5 * partition as usize;
        assert_eq!(
            batch_values(&batches(&conn, "t", partition).await),
            [
                numbered("line ", first..first + 5),
                numbered("line ", first + 15..first + 20)
            ],
            "partition {partition}"
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn produce_to_a_fixed_partition_with_null_keys_for_lines_without_separator() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 4, &[]).await;
    let mut args = ProduceArgs::new("t");
    args.partition = Some(2);
    args.key_separator = Some("=".into());
    let n = cli::produce(&conn, &args, &b"a=1\nplain\n=empty key\n"[..])
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        records(&conn, "t", 2).await,
        [
            stored(Some("a"), "1", 0),
            stored(None, "plain", 1),
            stored(Some(""), "empty key", 2),
        ]
    );
    for partition in [0, 1, 3] {
        assert_eq!(records(&conn, "t", partition).await, []);
    }
    broker.stop().await;
}

#[tokio::test]
async fn produce_with_acks_none_writes_every_record() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 1, &[]).await;
    let mut args = ProduceArgs::new("t");
    args.acks = AckMode::None;
    let n = cli::produce(&conn, &args, &b"x\ny\nz\n"[..]).await.unwrap();
    assert_eq!(n, 3);
    // The broker answers before appending: wait for the append.
    assert_eq!(
        wait_for_records(&conn, "t", 0, 3).await,
        [
            stored(None, "x", 0),
            stored(None, "y", 1),
            stored(None, "z", 2)
        ]
    );
    broker.stop().await;
}

#[tokio::test]
async fn produce_retries_not_leader_and_writes_each_record_once() {
    let broker = TestBroker::start().await;
    let direct = broker.connect().await;
    create_topic(&direct, "t", 1, &[]).await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    fake.fail_produce(&[ErrorCode::NotLeader, ErrorCode::NotEnoughReplicas]);
    let conn = Connection::connect(&fake.addr.to_string()).await.unwrap();
    let n = cli::produce(&conn, &ProduceArgs::new("t"), &b"a\nb\n"[..])
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(fake.produce_requests(), 3);
    assert_eq!(
        records(&direct, "t", 0).await,
        [stored(None, "a", 0), stored(None, "b", 1)]
    );
    broker.stop().await;
}

#[tokio::test]
async fn produce_gives_up_when_not_leader_outlasts_the_request_timeout() {
    let broker = TestBroker::start().await;
    let direct = broker.connect().await;
    create_topic(&direct, "t", 1, &[]).await;
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    fake.fail_produce(&[ErrorCode::NotLeader; 10]);
    let conn = Connection::connect(&fake.addr.to_string()).await.unwrap();
    let mut args = ProduceArgs::new("t");
    args.request_timeout_ms = 1000;
    let err = cli::produce(&conn, &args, &b"a\n"[..]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "NOT_LEADER: injected (topic t, partition 0)"
    );
    assert_eq!(Exit::for_error(&err).code(), 1);
    // Sent at about 0, 100, 300 and 700 ms; the next pause (800 ms) would pass the timeout.
    assert_eq!(fake.produce_requests(), 4);
    assert_eq!(records(&direct, "t", 0).await, []);
    broker.stop().await;
}

#[tokio::test]
async fn produce_stops_at_a_partition_error_that_retrying_cannot_fix() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 1, &[("max.message.bytes", "100")]).await;
    let mut args = ProduceArgs::new("t");
    args.batch_size = 1;
    let input = format!("a\n{}\nc\n", "x".repeat(200));
    let err = cli::produce(&conn, &args, input.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some(ErrorCode::BatchTooLarge));
    assert_eq!(Exit::for_error(&err).code(), 1);
    assert_eq!(
        err.to_string(),
        "BATCH_TOO_LARGE: batch 0: invalid batch: batch of 270 bytes exceeds the limit of 100 \
         bytes (topic t, partition 0)"
    );
    // The batch before the error stays written; nothing after it is sent.
    assert_eq!(records(&conn, "t", 0).await, [stored(None, "a", 0)]);
    broker.stop().await;
}

#[tokio::test]
async fn produce_or_consume_of_a_missing_topic_or_partition_is_unknown_topic_or_partition() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 2, &[]).await;
    let err = cli::produce(&conn, &ProduceArgs::new("nope"), &b"a\n"[..])
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some(ErrorCode::UnknownTopicOrPartition));
    assert_eq!(
        err.to_string(),
        "UNKNOWN_TOPIC_OR_PARTITION: topic \"nope\" does not exist (topic nope)"
    );
    let err = cli::consume(
        &conn,
        &ConsumeArgs::new("nope"),
        &mut Vec::new(),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "UNKNOWN_TOPIC_OR_PARTITION: topic \"nope\" does not exist (topic nope)"
    );

    let mut args = ProduceArgs::new("t");
    args.partition = Some(2);
    let err = cli::produce(&conn, &args, &b"a\n"[..]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "UNKNOWN_TOPIC_OR_PARTITION: topic t has 2 partitions (0 to 1) (topic t, partition 2)"
    );
    assert_eq!(Exit::for_error(&err).code(), 1);
    assert_eq!(records(&conn, "t", 0).await, []);
    assert_eq!(records(&conn, "t", 1).await, []);
    broker.stop().await;
}

#[tokio::test]
async fn linger_sends_a_partial_batch_while_the_input_stays_open() {
    use tokio::io::AsyncWriteExt;
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 1, &[]).await;
    let (mut writer, reader) = tokio::io::duplex(1024);
    let mut args = ProduceArgs::new("t");
    args.linger_ms = 20;
    let producer_conn = conn.clone();
    let task = tokio::spawn(async move {
        cli::produce(&producer_conn, &args, tokio::io::BufReader::new(reader)).await
    });
    writer.write_all(b"one\ntwo\n").await.unwrap();
    // Sent while the input is still open.
    assert_eq!(
        wait_for_records(&conn, "t", 0, 2).await,
        [stored(None, "one", 0), stored(None, "two", 1)]
    );
    writer.write_all(b"three").await.unwrap();
    drop(writer);
    assert_eq!(task.await.unwrap().unwrap(), 3);
    assert_eq!(
        batch_values(&batches(&conn, "t", 0).await),
        [vec!["one", "two"], vec!["three"]]
    );
    broker.stop().await;
}

#[tokio::test]
async fn consume_from_the_end_sees_only_new_records() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 2, &[]).await;
    let mut args = ProduceArgs::new("t");
    args.partition = Some(0);
    cli::produce(&conn, &args, &b"old\n"[..]).await.unwrap();

    // The consumer goes through the fake only so the test sees its ListOffsets.
    let fake = FakeBroker::start(broker.running.grpc_addr).await;
    let consumer_conn = Connection::connect(&fake.addr.to_string()).await.unwrap();
    let mut consume_args = ConsumeArgs::new("t");
    consume_args.max_messages = Some(2);
    let consumer = tokio::spawn(async move {
        let mut out = Vec::new();
        let n = cli::consume(
            &consumer_conn,
            &consume_args,
            &mut out,
            std::future::pending(),
        )
        .await
        .unwrap();
        (n, out)
    });
    let mut waited = 0;
    while fake.list_offsets_requests() == 0 {
        assert!(
            waited < 5000,
            "the consumer never asked for its start offsets"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 10;
    }
    args.partition = Some(1);
    cli::produce(&conn, &args, &b"new 1\nnew 2\nnew 3\n"[..])
        .await
        .unwrap();
    let (n, out) = consumer.await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(lines(&out), ["new 1", "new 2"]);
    broker.stop().await;
}

#[tokio::test]
async fn consume_stops_after_timeout_without_new_records() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 1, &[]).await;
    cli::produce(&conn, &ProduceArgs::new("t"), &b"a\nb\n"[..])
        .await
        .unwrap();
    let mut args = ConsumeArgs::new("t");
    args.from_beginning = true;
    args.timeout_ms = Some(300);
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let n = cli::consume(&conn, &args, &mut out, std::future::pending())
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(lines(&out), ["a", "b"]);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // From the end of a topic nothing arrives: it stops after the timeout with nothing.
    let mut args = ConsumeArgs::new("t");
    args.timeout_ms = Some(100);
    let mut out = Vec::new();
    let n = cli::consume(&conn, &args, &mut out, std::future::pending())
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(out, b"");
    broker.stop().await;
}

#[tokio::test]
async fn consume_ends_cleanly_on_shutdown() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 1, &[]).await;
    let mut out = Vec::new();
    let n = cli::consume(
        &conn,
        &ConsumeArgs::new("t"),
        &mut out,
        tokio::time::sleep(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    assert_eq!(n, 0);
    assert_eq!(out, b"");
    broker.stop().await;
}

#[tokio::test]
async fn topic_commands_print_their_documented_lines() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let mut out = Vec::new();
    let create = TopicCreateArgs {
        name: "orders".into(),
        partitions: 3,
        replication_factor: None,
        configs: vec![ConfigEntry {
            key: "retention.ms".into(),
            value: "1000".into(),
        }],
    };
    cli::create_topic(&conn, &create, &mut out).await.unwrap();
    let err = cli::create_topic(&conn, &create, &mut out)
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some(ErrorCode::TopicAlreadyExists));
    assert_eq!(
        err.to_string(),
        "TOPIC_ALREADY_EXISTS: topic \"orders\" already exists (topic orders)"
    );
    assert_eq!(Exit::for_error(&err).code(), 1);

    let second = TopicCreateArgs {
        name: "audit".into(),
        partitions: 1,
        replication_factor: Some(1),
        configs: vec![],
    };
    cli::create_topic(&conn, &second, &mut out).await.unwrap();
    assert_eq!(cli::list_topics(&conn, &mut out).await.unwrap(), 2);
    cli::alter_topic(
        &conn,
        &TopicAlterArgs {
            name: "orders".into(),
            set: vec![ConfigEntry {
                key: "segment.bytes".into(),
                value: "4096".into(),
            }],
            delete: vec!["retention.ms".into()],
        },
        &mut out,
    )
    .await
    .unwrap();
    cli::add_partitions(
        &conn,
        &AddPartitionsArgs {
            name: "orders".into(),
            total: 5,
        },
        &mut out,
    )
    .await
    .unwrap();
    let err = cli::delete_topics(&conn, &["audit".into(), "ghost".into()], &mut out)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "UNKNOWN_TOPIC_OR_PARTITION: topic \"ghost\" does not exist (topic ghost)"
    );
    assert_eq!(
        lines(&out),
        [
            "created topic orders with 3 partitions",
            "created topic audit with 1 partitions",
            "audit\t1",
            "orders\t3",
            "altered topic orders",
            "topic orders now has 5 partitions",
            "deleted topic audit",
        ]
    );

    // Every config in force: segment.bytes set, retention.ms back to the default.
    let mut out = Vec::new();
    cli::describe_topics(&conn, &["orders".into()], &mut out)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "topic: orders\n\
         partitions: 5\n\
         replication factor: 1\n\
         configs:\n\
         \x20 flush.policy=never\n\
         \x20 index.interval.bytes=4096\n\
         \x20 max.message.bytes=1048576\n\
         \x20 min.insync.replicas=1\n\
         \x20 retention.bytes=-1\n\
         \x20 retention.ms=604800000\n\
         \x20 segment.bytes=4096\n\
         \x20 segment.index.bytes=10485760\n\
         \x20 segment.ms=604800000\n\
         \x20 unclean.leader.election.enable=false\n\
         \x20 partition  leader  start offset  end offset  high watermark  size bytes  segments\n\
         \x20 0          1       0             0           0               0           1\n\
         \x20 1          1       0             0           0               0           1\n\
         \x20 2          1       0             0           0               0           1\n\
         \x20 3          1       0             0           0               0           1\n\
         \x20 4          1       0             0           0               0           1\n"
    );
    let mut out = Vec::new();
    assert_eq!(cli::list_topics(&conn, &mut out).await.unwrap(), 1);
    assert_eq!(lines(&out), ["orders\t5"]);
    broker.stop().await;
}

#[tokio::test]
async fn invalid_config_is_reported_with_its_code() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    let create = TopicCreateArgs {
        name: "t".into(),
        partitions: 1,
        replication_factor: None,
        configs: vec![ConfigEntry {
            key: "bogus".into(),
            value: "1".into(),
        }],
    };
    let err = cli::create_topic(&conn, &create, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ClientError::Broker {
            code: ErrorCode::InvalidConfig,
            partition: None,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "INVALID_CONFIG: unknown topic config \"bogus\": valid keys are flush.policy, \
         index.interval.bytes, max.message.bytes, min.insync.replicas, retention.bytes, \
         retention.ms, segment.bytes, segment.index.bytes, segment.ms, \
         unclean.leader.election.enable (topic t)"
    );
    let mut out = Vec::new();
    assert_eq!(cli::list_topics(&conn, &mut out).await.unwrap(), 0);
    broker.stop().await;
}

/// An output the test reads while a command writes it.
#[derive(Clone, Default)]
struct SharedOut(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedOut {
    fn lines(&self) -> Vec<String> {
        lines(&self.0.lock().unwrap())
    }
}

impl Write for SharedOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn losing_the_broker_mid_consume_is_exit_3() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "t", 1, &[]).await;
    cli::produce(&conn, &ProduceArgs::new("t"), &b"seen\n"[..])
        .await
        .unwrap();
    let out = SharedOut::default();
    let mut consumer_out = out.clone();
    let consumer = tokio::spawn(async move {
        let mut args = ConsumeArgs::new("t");
        args.from_beginning = true;
        cli::consume(&conn, &args, &mut consumer_out, std::future::pending()).await
    });
    // Once the record is printed the consumer is in its fetch loop.
    let mut waited = 0;
    while out.lines().is_empty() {
        assert!(waited < 5000, "the consumer never printed the record");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 10;
    }
    broker.stop().await;
    let err = consumer.await.unwrap().unwrap_err();
    // The long poll in flight ends with the shutdown; the next fetch finds no broker.
    assert!(
        matches!(&err, ClientError::Rpc(status) if status.code() == tonic::Code::Unavailable),
        "{err:?}"
    );
    assert_eq!(Exit::for_error(&err).code(), 3);
    assert_eq!(out.lines(), ["seen"]);
}

// The binary, as a script would run it.

fn brook(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_brook"))
        .args(args)
        .env_remove("BROOK_BOOTSTRAP")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Runs the binary off the runtime, so the in-process broker keeps serving meanwhile.
async fn brook_async(args: Vec<String>, stdin: Vec<u8>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        brook(&args, &stdin)
    })
    .await
    .unwrap()
}

#[test]
fn binary_exits_3_when_the_broker_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let (code, stdout, stderr) = brook(&["--bootstrap", &addr, "topic", "list"], b"");
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with(&format!("error: cannot connect to {addr}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn binary_exits_2_on_usage_errors_before_connecting() {
    // Port 1 is never a broker: a connect attempt would exit 3.
    let (code, _, stderr) = brook(
        &[
            "-b",
            "127.0.0.1:1",
            "topic",
            "create",
            "t",
            "--config",
            "oops",
        ],
        b"",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("oops"), "{stderr}");
    let (code, _, stderr) = brook(
        &[
            "-b",
            "127.0.0.1:1",
            "topic",
            "create",
            "t",
            "-c",
            "a=1",
            "-c",
            "a=2",
        ],
        b"",
    );
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "error: config key \"a\" given twice (a=1 and a=2)\n"
    );
    let (code, _, stderr) = brook(&["-b", "https://x", "topic", "list"], b"");
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        "error: invalid broker address \"https://x\": unsupported scheme \"https\": use \
         host:port or http://host:port (TLS is set by the TLS options)\n"
    );
    let (code, _, stderr) = brook(&["--tls-cert", "c.pem", "topic", "list"], b"");
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr,
        "error: --tls-cert, --tls-key and --tls-server-name need --tls-ca\n"
    );
    let (code, _, stderr) = brook(&["--tls-ca", "/nonexistent/ca.pem", "topic", "list"], b"");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with("error: TLS CA file /nonexistent/ca.pem: "),
        "{stderr}"
    );
    let (code, _, _) = brook(&["frobnicate"], b"");
    assert_eq!(code, 2);
}

#[tokio::test]
async fn binary_produces_consumes_and_reports_broker_errors() {
    let broker = TestBroker::start().await;
    let addr = broker.addr();
    let run = |args: &[&str], stdin: &[u8]| {
        let mut all = vec!["--bootstrap".to_owned(), addr.clone()];
        all.extend(args.iter().map(|s| s.to_string()));
        brook_async(all, stdin.to_vec())
    };

    let (code, stdout, stderr) = run(&["topic", "create", "logs", "--partitions", "2"], b"").await;
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "created topic logs with 2 partitions\n", "")
    );

    let (code, stdout, stderr) = run(&["topic", "create", "logs"], b"").await;
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (
            1,
            "",
            "error: TOPIC_ALREADY_EXISTS: topic \"logs\" already exists (topic logs)\n"
        )
    );

    let (code, stdout, stderr) = run(
        &[
            "produce",
            "logs",
            "--key-separator",
            ",",
            "--acks",
            "leader",
        ],
        b"alice,first\nbob,second\nalice,third\n",
    )
    .await;
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "", "produced 3 records\n")
    );

    // One fetch round brings every record, partition by partition, each in offset order.
    assert_eq!(
        (partition_for_key(b"alice", 2), partition_for_key(b"bob", 2)),
        (1, 0)
    );
    let (code, stdout, stderr) = run(
        &[
            "consume",
            "logs",
            "--from-beginning",
            "--max-messages",
            "3",
            "--print-key",
            "--print-offset",
        ],
        b"",
    )
    .await;
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (
            0,
            "0\t0\tbob\tsecond\n1\t0\talice\tfirst\n1\t1\talice\tthird\n",
            "consumed 3 records\n"
        )
    );

    let (code, stdout, stderr) = run(&["consume", "logs", "--timeout-ms", "100"], b"").await;
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "", "consumed 0 records\n")
    );

    let (code, stdout, _) = run(&["topic", "list"], b"").await;
    assert_eq!((code, stdout.as_str()), (0, "logs\t2\n"));

    let (code, stdout, stderr) = run(&["cluster", "status"], b"").await;
    assert_eq!(
        (code, stdout, stderr.as_str()),
        (
            0,
            format!(
                "cluster id: {}\n\
                 controller: 1\n\
                 brokers: 1\n\
                 \x20 broker 1: {addr} (controller)\n\
                 topics: 1\n\
                 partitions: 2\n\
                 offline partitions: 0\n\
                 under-replicated partitions: 0\n",
                broker.running.context.registry.cluster_id()
            ),
            ""
        )
    );

    let (code, stdout, stderr) = run(&["produce", "missing"], b"x\n").await;
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (
            1,
            "",
            "error: UNKNOWN_TOPIC_OR_PARTITION: topic \"missing\" does not exist (topic missing)\n"
        )
    );
    broker.stop().await;
}

#[tokio::test]
async fn group_commands_list_and_describe_with_lag() {
    use brook_proto::v1::{CommitOffsetsRequest, PartitionOffset};
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "orders", 2, &[]).await;
    let mut out = Vec::new();
    assert_eq!(cli::group::list_groups(&conn, &mut out).await.unwrap(), 0);
    let mut input: &[u8] = b"a\nb\nc\n";
    let mut args = ProduceArgs::new("orders");
    args.partition = Some(1);
    cli::produce(&conn, &args, &mut input).await.unwrap();
    let commit = CommitOffsetsRequest {
        group_id: "billing".into(),
        member_id: String::new(),
        member_epoch: -1,
        offsets: vec![PartitionOffset {
            topic: "orders".into(),
            partition: 1,
            offset: 1,
            metadata: String::new(),
        }],
    };
    let res = conn
        .groups()
        .commit_offsets(commit)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.error_code(), ErrorCode::None, "{}", res.error_message);
    cli::group::list_groups(&conn, &mut out).await.unwrap();
    assert_eq!(text(&out), "billing\t0\n");
    let mut out = Vec::new();
    cli::group::describe_group(&conn, "billing", &mut out)
        .await
        .unwrap();
    assert_eq!(
        text(&out),
        "group: billing\nepoch: 0\nmembers: 0\nTOPIC\tPARTITION\tCOMMITTED\tHIGH-WATERMARK\tLAG\norders\t1\t1\t3\t2\n"
    );
    let err = cli::group::describe_group(&conn, "nope", &mut out)
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some(ErrorCode::GroupIdNotFound));
}

#[tokio::test]
async fn consume_with_a_group_resumes_where_the_group_left_off() {
    let broker = TestBroker::start().await;
    let conn = broker.connect().await;
    create_topic(&conn, "events", 2, &[]).await;
    let mut input: &[u8] = b"k1:a\nk2:b\nk3:c\nk4:d\nk5:e\nk6:f\n";
    let mut args = ProduceArgs::new("events");
    args.key_separator = Some(":".into());
    assert_eq!(cli::produce(&conn, &args, &mut input).await.unwrap(), 6);
    let run = |max: Option<u64>| {
        let mut a = ConsumeArgs::new("events");
        a.group = Some("readers".into());
        a.from_beginning = true;
        a.max_messages = max;
        a.timeout_ms = Some(1500);
        a
    };
    let mut first = Vec::new();
    assert_eq!(
        cli::consume(&conn, &run(Some(4)), &mut first, std::future::pending())
            .await
            .unwrap(),
        4
    );
    let mut second = Vec::new();
    assert_eq!(
        cli::consume(&conn, &run(None), &mut second, std::future::pending())
            .await
            .unwrap(),
        2
    );
    let mut all: Vec<String> = lines(&first).into_iter().chain(lines(&second)).collect();
    all.sort();
    assert_eq!(
        all,
        ["a", "b", "c", "d", "e", "f"],
        "each record once across the two runs"
    );
    let mut out = Vec::new();
    cli::group::describe_group(&conn, "readers", &mut out)
        .await
        .unwrap();
    let text = text(&out);
    assert!(text.contains("members: 0"), "{text}");
    for line in text.lines().filter(|l| l.starts_with("events\t")) {
        assert!(line.ends_with("\t0"), "no lag left: {line}");
    }
}

#[tokio::test]
async fn tls_options_reach_a_tls_broker_and_plain_text_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path());
    let mut config = BrokerConfig::default();
    config.tls.cert_file = cert;
    config.tls.key_file = key;
    let broker = TestBroker::start_with(config).await;
    let ca = ca.to_str().unwrap().to_string();
    let tls = |rest: &[&str]| {
        let mut args = vec![
            "-b".to_string(),
            broker.addr(),
            "--tls-ca".into(),
            ca.clone(),
        ];
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    };
    let (code, stdout, stderr) = brook_async(tls(&["topic", "create", "t"]), Vec::new()).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "created topic t with 1 partitions\n");
    let (code, stdout, stderr) = brook_async(tls(&["produce", "t"]), b"one\ntwo\n".to_vec()).await;
    assert_eq!((code, stdout.as_str()), (0, ""), "{stderr}");
    let (code, stdout, stderr) = brook_async(
        tls(&["consume", "t", "--from-beginning", "--max-messages", "2"]),
        Vec::new(),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "one\ntwo\n");
    // Plain text against the TLS port fails with the reason and exit 3 (unreachable). It
    // surfaces two ways, by which side notices first: the broken connection, or the broker's
    // TLS alert read as an HTTP/2 protocol error ("Internal: h2 protocol error"); both are a
    // connection that cannot carry requests. Repeated, so both forms are likely met.
    for _ in 0..10 {
        let (code, _, stderr) = brook_async(
            vec!["-b".into(), broker.addr(), "topic".into(), "list".into()],
            Vec::new(),
        )
        .await;
        assert_eq!(code, 3, "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
    broker.stop().await;
}

/// The HS256 secret of the token tests (32 bytes).
const JWT_SECRET: &str = "cli-test-secret-0123456789abcdef";

/// A broker configuration that requires HS256 tokens signed with [`JWT_SECRET`] (its file
/// written into `dir`), audience `brook`.
fn token_config(dir: &std::path::Path) -> BrokerConfig {
    let secret_file = dir.join("jwt.secret");
    std::fs::write(&secret_file, JWT_SECRET).unwrap();
    let mut config = BrokerConfig::default();
    config.auth.required = true;
    config.auth.jwt_hs256_secret_file = secret_file;
    config.auth.jwt_audience = "brook".into();
    config
}

/// A token for `sub`, valid for ten minutes.
fn token_for(sub: &str) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": sub, "aud": "brook", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_token_file_authenticates_to_a_broker_that_requires_one() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start_with(token_config(dir.path())).await;
    let token = token_for("cli");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_file = token_file.to_str().unwrap().to_string();
    let args = |rest: &[&str]| {
        let mut args = vec!["-b".to_string(), broker.addr()];
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    };
    let (code, stdout, stderr) = brook_async(
        args(&["--token-file", &token_file, "topic", "create", "t"]),
        Vec::new(),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "created topic t with 1 partitions\n");
    let (code, _, stderr) = brook_async(args(&["topic", "list"]), Vec::new()).await;
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains(
            "authentication required: send a bearer token or connect with a client certificate"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = brook_async(
        args(&["--token", "x", "--token-file", &token_file, "topic", "list"]),
        Vec::new(),
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    broker.stop().await;
}

#[tokio::test]
async fn acl_add_list_and_remove_manage_who_may_do_what() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = token_config(dir.path());
    config.authorization.enabled = true;
    config.authorization.super_users = "User:admin".into();
    let broker = TestBroker::start_with(config).await;
    let (admin, alice) = (token_for("admin"), token_for("alice"));
    let run = |who: &str, rest: &[&str]| {
        let mut args = vec![
            "-b".to_string(),
            broker.addr(),
            "--token".into(),
            who.into(),
        ];
        args.extend(rest.iter().map(|s| s.to_string()));
        brook_async(args, b"x\n".to_vec())
    };
    let (code, _, stderr) = run(&admin, &["topic", "create", "orders"]).await;
    assert_eq!(code, 0, "{stderr}");

    let add = [
        "acl",
        "add",
        "--principal",
        "User:alice",
        "--topic",
        "orders",
        "-o",
        "write",
        "-o",
        "describe",
    ];
    let (code, stdout, stderr) = run(&admin, &add).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "User:alice\tallow\twrite\ttopic\tliteral\torders\n\
         User:alice\tallow\tdescribe\ttopic\tliteral\torders\n"
    );
    let prefixed = [
        "acl",
        "add",
        "--principal",
        "User:etl",
        "--topic",
        "logs-",
        "--prefixed",
        "-o",
        "read",
    ];
    assert_eq!(run(&admin, &prefixed).await.0, 0);
    let (code, stdout, _) = run(&admin, &["acl", "list"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        "User:alice\tallow\twrite\ttopic\tliteral\torders\n\
         User:alice\tallow\tdescribe\ttopic\tliteral\torders\n\
         User:etl\tallow\tread\ttopic\tprefixed\tlogs-\n"
    );
    let (_, stdout, _) = run(&admin, &["acl", "list", "--topic", "logs-web"]).await;
    assert_eq!(stdout, "User:etl\tallow\tread\ttopic\tprefixed\tlogs-\n");

    // Alice writes her topic; creating one, or managing ACLs, exits 4 with the reason.
    let (code, _, stderr) = run(&alice, &["produce", "orders"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "produced 1 records\n");
    let (code, _, stderr) = run(&alice, &["topic", "create", "other"]).await;
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("User:alice may not create topic \"other\": no ACL allows it"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&alice, &["acl", "list"]).await;
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("User:alice may not describe cluster \"cluster\": no ACL allows it"),
        "{stderr}"
    );

    // Usage errors (exit 2) are found before connecting; the broker checks the rest (exit 1).
    for usage in [
        &[
            "acl",
            "add",
            "--principal",
            "User:b",
            "--topic",
            "t",
            "-o",
            "fly",
        ][..],
        &["acl", "add", "--principal", "User:b", "-o", "read"],
        &[
            "acl",
            "add",
            "--principal",
            "User:b",
            "--topic",
            "t",
            "--group",
            "g",
            "-o",
            "read",
        ],
        &[
            "acl",
            "add",
            "--principal",
            "User:b",
            "--cluster",
            "--prefixed",
            "-o",
            "admin",
        ],
        &["acl", "remove", "--topic", "t", "-o", "read"],
    ] {
        let (code, _, stderr) = run(&admin, usage).await;
        assert_eq!(code, 2, "{usage:?}: {stderr}");
    }
    let refused_by_the_broker: [(&[&str], &str); 2] = [
        (
            &[
                "acl",
                "add",
                "--principal",
                "bob",
                "--topic",
                "t",
                "-o",
                "read",
            ],
            "ACL 0: principal \"bob\" is not User:<name> (User:* for everyone)",
        ),
        (
            &[
                "acl",
                "add",
                "--principal",
                "User:b",
                "--cluster",
                "-o",
                "read",
            ],
            "operation read does not apply to cluster resources",
        ),
    ];
    for (args, message) in refused_by_the_broker {
        let (code, _, stderr) = run(&admin, args).await;
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }

    // Removing prints what was removed; alice can no longer write.
    let mut remove = add;
    remove[1] = "remove";
    let (code, stdout, _) = run(&admin, &remove).await;
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let (_, stdout, _) = run(&admin, &remove).await;
    assert_eq!(stdout, "");
    let (code, _, stderr) = run(&alice, &["produce", "orders"]).await;
    assert_eq!(code, 4, "{stderr}");
    broker.stop().await;
}
