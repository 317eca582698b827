//! Helpers shared by the group and batching consumer tests: an in-process broker, a topic
//! filled with numbered records, and group members.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use brook_broker::config::BrokerConfig;
use brook_client::Connection;
use brook_client::consumer::{
    AutoOffsetReset, ConsumerConfig, GroupConsumer, GroupMemberConfig, NoListener,
};
use brook_proto::BatchBuilder;
use brook_proto::v1::{
    Acks, CreateTopicsRequest, ErrorCode, NewTopic, PartitionProduceData, ProduceRequest,
    TopicProduceData,
};
use tokio_util::sync::CancellationToken;

/// A broker on 127.0.0.1:0 in a temp dir, with `tweak` applied to its config.
pub async fn broker_with(
    tweak: impl FnOnce(&mut BrokerConfig),
) -> (brook_broker::server::RunningBroker, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::default();
    config.server.data_dir = data.path().to_path_buf();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.http_listen = "127.0.0.1:0".parse().unwrap();
    tweak(&mut config);
    (
        brook_broker::server::start(config, CancellationToken::new())
            .await
            .unwrap(),
        data,
    )
}

/// A broker with the default config.
pub async fn broker() -> (brook_broker::server::RunningBroker, tempfile::TempDir) {
    broker_with(|_| {}).await
}

/// Creates topic `t` with `partitions` partitions and `per_partition` records in each, values
/// `value(partition, i)`.
pub async fn setup(
    conn: &Connection,
    partitions: u32,
    per_partition: usize,
    value: fn(u32, usize) -> String,
) {
    let res = conn
        .admin()
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: "t".into(),
                partitions,
                replication_factor: 0,
                configs: HashMap::new(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.results[0].error_code(), ErrorCode::None);
    for p in 0..partitions {
        produce(conn, p, 0..per_partition, value).await;
    }
}

/// Appends records `range` to partition `p` of topic `t`.
pub async fn produce(
    conn: &Connection,
    p: u32,
    range: std::ops::Range<usize>,
    value: fn(u32, usize) -> String,
) {
    let mut b = BatchBuilder::new();
    for i in range {
        b.append(1, None, Some(value(p, i).as_bytes()), &[]);
    }
    let req = ProduceRequest {
        acks: Acks::All as i32,
        timeout_ms: 0,
        topics: vec![TopicProduceData {
            topic: "t".into(),
            partitions: vec![PartitionProduceData {
                partition: p,
                records: b.build(),
            }],
        }],
    };
    let res = conn.broker().produce(req).await.unwrap().into_inner();
    assert_eq!(res.topics[0].partitions[0].error_code(), ErrorCode::None);
}

/// A member of `group` subscribed to `t`, reading from the earliest offset.
pub fn member(conn: &Connection, group: &str, auto_commit: Option<Duration>) -> GroupConsumer {
    let config = ConsumerConfig::builder()
        .bootstrap(conn.addr())
        .auto_offset_reset(AutoOffsetReset::Earliest)
        .fetch_max_wait(Duration::from_millis(50))
        .build()
        .unwrap();
    let group = GroupMemberConfig {
        group_id: group.into(),
        topics: vec!["t".into()],
        auto_commit,
    };
    GroupConsumer::subscribe(conn.clone(), config, group, Box::new(NoListener)).unwrap()
}
