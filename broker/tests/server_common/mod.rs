//! Helpers for tests that run a broker in-process on 127.0.0.1:0.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use brook_broker::config::BrokerConfig;
use brook_broker::server::{self, RunningBroker};
use brook_proto::v1::admin_client::AdminClient;
use brook_proto::v1::broker_client::BrokerClient;
use brook_proto::v1::*;
use brook_proto::{BatchBuilder, Batches};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub fn config(dir: &Path) -> BrokerConfig {
    let mut c = BrokerConfig::default();
    c.server.data_dir = dir.to_path_buf();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.http_listen = "127.0.0.1:0".parse().unwrap();
    c
}

pub async fn start(config: BrokerConfig) -> RunningBroker {
    server::start(config, CancellationToken::new())
        .await
        .expect("broker starts")
}

pub struct Clients {
    pub broker: BrokerClient<Channel>,
    pub admin: AdminClient<Channel>,
}

pub async fn clients(b: &RunningBroker) -> Clients {
    let channel = Channel::from_shared(format!("http://{}", b.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Clients {
        broker: BrokerClient::new(channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(usize::MAX),
        admin: AdminClient::new(channel),
    }
}

pub async fn create_topic(c: &mut Clients, name: &str, partitions: u32, configs: &[(&str, &str)]) {
    let res = c
        .admin
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.into(),
                partitions,
                replication_factor: 1,
                configs: configs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        res.results[0].error_code(),
        ErrorCode::None,
        "{}",
        res.results[0].error_message
    );
}

pub fn batch(values: &[String]) -> Bytes {
    let mut b = BatchBuilder::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for v in values {
        b.append(now, None, Some(v.as_bytes()), &[]);
    }
    b.build()
}

pub fn produce_request(topic: &str, partition: u32, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: Acks::All as i32,
        timeout_ms: 0,
        topics: vec![TopicProduceData {
            topic: topic.into(),
            partitions: vec![PartitionProduceData { partition, records }],
        }],
    }
}

/// Produces `values` as one batch and returns the partition's outcome.
pub async fn produce(
    c: &mut Clients,
    topic: &str,
    partition: u32,
    values: &[String],
) -> PartitionProduceResponse {
    let res = c
        .broker
        .produce(produce_request(topic, partition, batch(values)))
        .await
        .unwrap()
        .into_inner();
    res.topics[0].partitions[0].clone()
}

pub fn fetch_request(
    topic: &str,
    partition: u32,
    offset: i64,
    max_wait_ms: u32,
    min_bytes: u32,
) -> FetchRequest {
    FetchRequest {
        max_wait_ms,
        min_bytes,
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
    }
}

pub async fn fetch(
    c: &mut Clients,
    topic: &str,
    partition: u32,
    offset: i64,
) -> FetchPartitionResponse {
    let res = c
        .broker
        .fetch(fetch_request(topic, partition, offset, 0, 0))
        .await
        .unwrap()
        .into_inner();
    res.topics[0].partitions[0].clone()
}

/// `(offset, value)` of every record in `records`.
pub fn decode(records: &Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for b in Batches::new(records.clone(), usize::MAX) {
        for r in b.unwrap().records().unwrap() {
            let r = r.unwrap();
            out.push((
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    out
}

/// Reads a partition from `from` to its high watermark.
pub async fn read_partition(
    c: &mut Clients,
    topic: &str,
    partition: u32,
    from: i64,
) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let p = fetch(c, topic, partition, offset).await;
        assert_eq!(p.error_code(), ErrorCode::None, "{}", p.error_message);
        let recs = decode(&p.records);
        if recs.is_empty() {
            assert_eq!(offset, p.high_watermark);
            return out;
        }
        offset = recs.last().unwrap().0 + 1;
        out.extend(recs);
    }
}

pub fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A plain HTTP/1.0 GET; returns (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
