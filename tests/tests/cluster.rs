//! A cluster of three real `brook-broker` processes on loopback ports: membership through the
//! controller quorum, the same metadata on every broker, partitions served by their leaders
//! only, fencing of a SIGKILLed broker, its return, a clean stop that moves leadership at
//! once, and metadata that survives a restart of the whole cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use brook_client::producer::{Producer, ProducerConfig, ProducerRecord};
use brook_proto::v1::{
    CreateTopicsRequest, ErrorCode, MetadataResponse, NewTopic, PartitionProduceData,
    ProduceRequest, TopicProduceData,
};
use brook_tests::cluster::Cluster;

/// Fast liveness so the test does not wait long for fencing.
const ENV: [(&str, &str); 2] = [
    ("BROOK_CLUSTER_HEARTBEAT_INTERVAL_MS", "200"),
    ("BROOK_CLUSTER_SESSION_TIMEOUT_MS", "2000"),
];

/// Generous: elections and fsyncs on a loaded two-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn live(m: &MetadataResponse) -> BTreeSet<i32> {
    m.brokers.iter().map(|b| b.node_id).collect()
}

/// (leader, leader epoch) of each partition of `topic`.
fn leaders(m: &MetadataResponse, topic: &str) -> Vec<(i32, i32)> {
    (m.topics.iter())
        .find(|t| t.name == topic && t.error_code == ErrorCode::None as i32)
        .map(|t| {
            (t.partitions.iter())
                .map(|p| (p.leader, p.leader_epoch))
                .collect()
        })
        .unwrap_or_default()
}

async fn create_topic(
    cluster: &Cluster,
    via: i32,
    name: &str,
    partitions: u32,
    rf: u32,
) -> (i32, String) {
    let response = cluster
        .connect(via)
        .await
        .admin()
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.into(),
                partitions,
                replication_factor: rf,
                configs: Default::default(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let r = &response.results[0];
    (r.error_code, r.error_message.clone())
}

/// Every record value of `topic`-`partition`, read from broker `from`.
async fn read_all(cluster: &Cluster, from: i32, topic: &str, partition: u32) -> Vec<String> {
    let (records, _) = cluster
        .read_partition(from, topic, partition)
        .await
        .unwrap();
    records.into_iter().map(|(_, v)| v).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_share_metadata_fence_a_killed_broker_and_take_it_back() {
    let mut cluster = Cluster::start(3, &ENV);
    let all: BTreeSet<i32> = [1, 2, 3].into();
    for id in 1..=3 {
        let m = cluster
            .wait_metadata(id, "three live brokers and a controller", PATIENCE, |m| {
                live(m) == all && m.controller_id > 0
            })
            .await;
        assert!(
            m.brokers
                .iter()
                .all(|b| b.address == cluster.node(b.node_id).grpc)
        );
    }

    // More replicas than live brokers is refused, naming both numbers.
    let (code, message) = create_topic(&cluster, 1, "rf4", 3, 4).await;
    assert_eq!(
        code,
        ErrorCode::InvalidReplicationFactor as i32,
        "{message}"
    );
    assert_eq!(
        message,
        "replication factor 4 is out of range: this cluster has 3 broker(s)"
    );

    // Created through broker 2; every broker sees the same six partitions, two per broker.
    assert_eq!(
        create_topic(&cluster, 2, "orders", 6, 1).await,
        (ErrorCode::None as i32, String::new())
    );
    let (code, _) = create_topic(&cluster, 3, "orders", 6, 1).await;
    assert_eq!(code, ErrorCode::TopicAlreadyExists as i32);
    let mut seen = Vec::new();
    for id in 1..=3 {
        let m = cluster
            .wait_metadata(id, "topic orders", PATIENCE, |m| {
                leaders(m, "orders").len() == 6
            })
            .await;
        seen.push(leaders(&m, "orders"));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
    let before = seen[0].clone();
    for id in 1..=3 {
        assert_eq!(
            before.iter().filter(|(l, e)| *l == id && *e == 0).count(),
            2,
            "{before:?}"
        );
    }

    // The producer routes each record to its partition's leader.
    let producer = Producer::connect(&cluster.node(1).grpc, ProducerConfig::default())
        .await
        .unwrap();
    let mut acked: BTreeMap<u32, Vec<(i64, String)>> = BTreeMap::new();
    for i in 0..600 {
        let value = format!("v{i}");
        let meta = producer
            .send(ProducerRecord::new("orders", value.clone()).key(format!("k{i}")))
            .await
            .unwrap();
        acked
            .entry(meta.partition)
            .or_default()
            .push((meta.offset.unwrap(), value));
    }
    producer.close().await;
    for (&partition, records) in &acked {
        let leader = before[partition as usize].0;
        let stored = read_all(&cluster, leader, "orders", partition).await;
        let expected: Vec<String> = records.iter().map(|(_, v)| v.clone()).collect();
        let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (0..records.len() as i64).collect::<Vec<_>>());
        assert_eq!(stored, expected, "partition {partition}");
    }

    // A broker that does not lead a partition refuses it, naming the leader.
    let (partition, leader) = (0u32, before[0].0);
    let other = if leader == 1 { 2 } else { 1 };
    let response = cluster
        .connect(other)
        .await
        .produce(&ProduceRequest {
            acks: brook_proto::v1::Acks::All as i32,
            timeout_ms: 5_000,
            topics: vec![TopicProduceData {
                topic: "orders".into(),
                partitions: vec![PartitionProduceData {
                    partition,
                    records: {
                        let mut b = brook_proto::BatchBuilder::new();
                        b.append(1, None, Some(b"stray"), &[]);
                        b.build()
                    },
                }],
            }],
        })
        .await
        .unwrap();
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, ErrorCode::NotLeader as i32);
    assert!(
        answer
            .error_message
            .contains(&format!("broker {leader} does")),
        "{}",
        answer.error_message
    );

    // SIGKILL broker 3: the controller fences it after its session; its partitions (one
    // replica each) go offline with a new epoch, the others keep their leaders.
    let killed_at = Instant::now();
    cluster.kill(3);
    let m = cluster
        .wait_metadata(1, "broker 3 fenced", PATIENCE, |m| {
            !live(m).contains(&3) && leaders(m, "orders").iter().all(|(l, _)| *l != 3)
        })
        .await;
    let fenced_after = killed_at.elapsed();
    let after = leaders(&m, "orders");
    for (p, (&(was, epoch), &(now, now_epoch))) in before.iter().zip(&after).enumerate() {
        if was == 3 {
            assert_eq!((now, now_epoch), (-1, epoch + 1), "partition {p}");
        } else {
            assert_eq!((now, now_epoch), (was, epoch), "partition {p}");
        }
    }
    println!("broker 3 fenced {fenced_after:?} after SIGKILL (session timeout 2 s)");

    // It comes back on the same directory: unfenced, leading its partitions again in a new
    // epoch, with every acknowledged record.
    cluster.start_node(3);
    let m = cluster
        .wait_metadata(1, "broker 3 back", PATIENCE, |m| {
            live(m) == all && leaders(m, "orders").iter().all(|(l, _)| *l > 0)
        })
        .await;
    let back = leaders(&m, "orders");
    // Broker 3 serves once its own copy of the metadata has caught up.
    cluster
        .wait_metadata(3, "broker 3 sees itself back", PATIENCE, |m3| {
            leaders(m3, "orders") == back
        })
        .await;
    for (p, (&(was, epoch), &(now, now_epoch))) in before.iter().zip(&back).enumerate() {
        let expected_epoch = if was == 3 { epoch + 2 } else { epoch };
        assert_eq!((now, now_epoch), (was, expected_epoch), "partition {p}");
    }
    for (&partition, records) in &acked {
        if before[partition as usize].0 == 3 {
            let stored = read_all(&cluster, 3, "orders", partition).await;
            assert_eq!(stored.len(), records.len(), "partition {partition}");
        }
    }

    // A clean stop fences broker 2 before it exits: no session timeout to wait out.
    let status = cluster.terminate(2);
    assert!(status.success(), "broker 2 exited with {status}");
    let m = cluster.metadata(1).await.unwrap();
    assert!(
        !live(&m).contains(&2),
        "broker 2 still live right after a clean stop: {m:?}"
    );

    // The metadata survives a restart of every broker.
    cluster.terminate(1);
    cluster.terminate(3);
    for id in 1..=3 {
        cluster.start_node(id);
    }
    for id in 1..=3 {
        let m = cluster
            .wait_metadata(id, "all back with topic orders", PATIENCE, |m| {
                live(m) == all && leaders(m, "orders").iter().all(|(l, _)| *l > 0)
            })
            .await;
        let replicas: Vec<i32> = leaders(&m, "orders").iter().map(|(l, _)| *l).collect();
        assert_eq!(replicas, before.iter().map(|(l, _)| *l).collect::<Vec<_>>());
    }
    for (&partition, records) in &acked {
        let leader = before[partition as usize].0;
        let stored = read_all(&cluster, leader, "orders", partition).await;
        let expected: Vec<String> = records.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(
            stored, expected,
            "partition {partition} after a full restart"
        );
    }
}
