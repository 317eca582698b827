//! Replication across three real `brook-broker` processes: acks=all writes with replication
//! factor 3 and `min.insync.replicas` 2 survive a SIGKILL of the partition leader during
//! continuous produce; the killed broker comes back, truncates what was never committed,
//! catches up and rejoins every ISR; and every replica holds the same records below the high
//! watermark. The moment of the kill is drawn from a printed seed.
//!
//! The checker reads every partition from its start to the high watermark and counts lost
//! (acknowledged but missing), duplicated, unseen and inconsistent records; all must be zero.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use brook_client::Connection;
use brook_client::consumer::{
    AutoOffsetReset, ConsumerConfig, GroupConsumer, GroupMemberConfig, NoListener,
};
use brook_client::producer::{Producer, ProducerConfig, ProducerRecord};
use brook_proto::v1::{
    Acks, AlterPartitionReassignmentsRequest, CreateTopicsRequest, ErrorCode, FetchOffsetsRequest,
    FetchPartition, FetchRequest, FetchTopic, FindCoordinatorRequest, ListOffsetsPartition,
    ListOffsetsRequest, ListOffsetsTopic, ListPartitionReassignmentsRequest, MetadataResponse,
    NewTopic, OffsetSpec, PartitionProduceData, PartitionReassignment, ProduceRequest,
    TopicProduceData,
};
use brook_proto::{BatchBuilder, Batches};
use brook_tests::cluster::Cluster;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ENV: [(&str, &str); 5] = [
    ("BROOK_CLUSTER_LEADER_REBALANCE_INTERVAL_MS", "1000"),
    ("BROOK_CLUSTER_HEARTBEAT_INTERVAL_MS", "200"),
    ("BROOK_CLUSTER_SESSION_TIMEOUT_MS", "2000"),
    ("BROOK_CLUSTER_REPLICA_LAG_TIME_MAX_MS", "3000"),
    ("BROOK_CLUSTER_MIN_INSYNC_REPLICAS", "2"),
];
const PATIENCE: Duration = Duration::from_secs(60);
const TOPIC: &str = "events";
const PARTITIONS: u32 = 3;

/// (leader, ISR size) per partition of the topic.
fn partitions(m: &MetadataResponse) -> Vec<(i32, usize)> {
    (m.topics.iter())
        .find(|t| t.name == TOPIC && t.error_code == ErrorCode::None as i32)
        .map(|t| {
            (t.partitions.iter())
                .map(|p| (p.leader, p.isr.len()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every partition of the topic led, with three replicas, all in sync, and no move running.
fn healthy(m: &MetadataResponse) -> bool {
    let t = m.topics.iter().find(|t| t.name == TOPIC);
    m.brokers.len() >= 3
        && t.is_some_and(|t| {
            t.partitions.len() == PARTITIONS as usize
                && (t.partitions.iter())
                    .all(|p| p.leader > 0 && p.replicas.len() == 3 && p.isr.len() == 3)
        })
}

/// The replicas of each partition of the topic.
fn replicas(m: &MetadataResponse) -> Vec<Vec<i32>> {
    (m.topics.iter())
        .find(|t| t.name == TOPIC)
        .map(|t| t.partitions.iter().map(|p| p.replicas.clone()).collect())
        .unwrap_or_default()
}

/// The cluster tests of this file run one at a time: three clusters at once on two cores
/// would starve the heartbeats they measure.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn seed() -> u64 {
    let seed = std::env::var("BROOK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("replication seed {seed} (set BROOK_TEST_SEED={seed} to repeat)");
    seed
}

/// Three brokers and the topic, every ISR whole; returns its metadata.
async fn cluster_with_topic() -> (Cluster, MetadataResponse) {
    with_topic(Cluster::start(3, &ENV)).await
}

/// The topic on `cluster`, every ISR whole; returns its metadata.
async fn with_topic(cluster: Cluster) -> (Cluster, MetadataResponse) {
    cluster
        .wait_metadata(1, "three live brokers or more", PATIENCE, |m| {
            m.brokers.len() >= 3
        })
        .await;
    let response = cluster
        .connect(1)
        .await
        .admin()
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: TOPIC.into(),
                partitions: PARTITIONS,
                replication_factor: 3,
                configs: Default::default(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.results[0].error_code,
        ErrorCode::None as i32,
        "{}",
        response.results[0].error_message
    );
    let metadata = cluster
        .wait_metadata(1, "topic with full ISRs", PATIENCE, healthy)
        .await;
    (cluster, metadata)
}

/// Continuous idempotent acks=all produce from one task, recording every outcome.
struct Load {
    stop: Arc<AtomicBool>,
    writer: tokio::task::JoinHandle<Outcomes>,
}

/// Acknowledged writes as (partition, offset, value), failed writes, writes sent.
type Outcomes = (Vec<(u32, i64, String)>, Vec<String>, u64);

impl Load {
    /// Starts producing, with broker `bootstrap` as the bootstrap broker.
    async fn start(cluster: &Cluster, bootstrap: i32) -> Load {
        let config = ProducerConfig::builder()
            .request_timeout(Duration::from_secs(5))
            .delivery_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let producer = Producer::connect(&cluster.node(bootstrap).grpc, config)
            .await
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let writer = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failed = Vec::new();
            let mut pending = Vec::new();
            let mut i = 0u64;
            loop {
                let done = flag.load(Ordering::Relaxed);
                if !done {
                    let value = format!("v{i}");
                    let record =
                        ProducerRecord::new(TOPIC, value.clone()).key(format!("k{}", i % 97));
                    let delivery = producer.enqueue(record).await.expect("enqueue");
                    pending.push((value, delivery));
                    i += 1;
                }
                if pending.len() >= 50 || done {
                    for (value, delivery) in pending.drain(..) {
                        match delivery.await {
                            Ok(meta) => acked.push((meta.partition, meta.offset.unwrap(), value)),
                            Err(e) => failed.push(format!("{e:?}")),
                        }
                    }
                }
                if done {
                    break;
                }
            }
            producer.close().await;
            (acked, failed, i)
        });
        Load { stop, writer }
    }

    async fn finish(self) -> Outcomes {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.await.unwrap()
    }
}

/// The checker: every acknowledged write is in its partition at its offset, nothing is
/// duplicated, every write was acknowledged, and every replica's files hold the same records
/// below the high watermark, while a broker holding no replica holds no data. Stops the
/// cluster; returns every value stored.
async fn check(mut cluster: Cluster, outcomes: Outcomes, seed: u64) -> BTreeSet<String> {
    let (acked, failed, sent) = outcomes;
    let metadata = cluster
        .wait_metadata(1, "every ISR whole", PATIENCE, healthy)
        .await;
    println!("sent {sent}, acknowledged {}", acked.len());
    // Idempotent and retried within the delivery timeout: every write lands.
    let kinds: BTreeSet<&String> = failed.iter().collect();
    assert!(
        failed.is_empty(),
        "seed {seed}: {} writes failed: {kinds:?}",
        failed.len()
    );
    assert!(
        acked.len() > 100,
        "too few acknowledged writes to mean anything"
    );
    let mut stored: BTreeMap<u32, Vec<(i64, String)>> = BTreeMap::new();
    let mut high_watermarks = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (records, hw) = read_to_acked(&cluster, metadata.clone(), p, &acked).await;
        stored.insert(p, records);
        high_watermarks.insert(p, hw);
    }
    let mut lost = Vec::new();
    for (p, offset, value) in &acked {
        let at = stored[p].iter().find(|(o, _)| o == offset);
        if at.map(|(_, v)| v) != Some(value) {
            lost.push((p, offset, value, at.cloned()));
        }
    }
    let mut seen = BTreeSet::new();
    let mut duplicated = Vec::new();
    for records in stored.values() {
        for (_, v) in records {
            if !seen.insert(v.clone()) {
                duplicated.push(v.clone());
            }
        }
    }
    let acked_values: BTreeSet<&String> = acked.iter().map(|(_, _, v)| v).collect();
    let unseen: Vec<&&String> = acked_values
        .iter()
        .filter(|v| !seen.contains(**v))
        .collect();
    println!(
        "lost {}, duplicated {}, unseen {}",
        lost.len(),
        duplicated.len(),
        unseen.len()
    );
    assert!(
        lost.is_empty(),
        "seed {seed}: {} acknowledged records lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(
        duplicated.is_empty(),
        "seed {seed}: duplicated with idempotence: {duplicated:?}"
    );
    assert!(unseen.is_empty(), "seed {seed}: unseen: {unseen:?}");

    // Every replica holds the same records below the high watermark: stop the cluster and
    // read each broker's copy from its files.
    let brokers = cluster.nodes.len() as i32;
    for id in 1..=brokers {
        assert!(cluster.terminate(id).success());
    }
    let replicas = replicas(&metadata);
    for p in 0..PARTITIONS {
        let hw = high_watermarks[&p];
        for id in 1..=brokers {
            let dir = cluster.node(id).dir().join(format!("{TOPIC}-{p}"));
            let log = brook_broker::log::Log::open(&dir, Default::default())
                .await
                .unwrap();
            if !replicas[p as usize].contains(&id) {
                assert_eq!(
                    (log.start_offset().0, log.end_offset().0),
                    (0, 0),
                    "seed {seed}: broker {id} holds data of {TOPIC}-{p} but is not a replica"
                );
                log.close().await.unwrap();
                continue;
            }
            let mut copy = Vec::new();
            let mut offset = brook_proto::Offset(0);
            while offset.0 < hw {
                let bytes = log.read(offset, 1 << 20).await.unwrap();
                assert!(
                    !bytes.is_empty(),
                    "seed {seed}: broker {id} {TOPIC}-{p} ends at {offset:?} below the high watermark {hw}"
                );
                for batch in Batches::new(bytes, usize::MAX) {
                    for record in batch.unwrap().records().unwrap() {
                        let record = record.unwrap();
                        if record.offset < hw {
                            let value = record.value.as_deref().unwrap();
                            copy.push((record.offset, String::from_utf8_lossy(value).into_owned()));
                        }
                        offset = brook_proto::Offset(record.offset + 1);
                    }
                }
            }
            log.close().await.unwrap();
            assert_eq!(
                copy, stored[&p],
                "seed {seed}: broker {id} disagrees on {TOPIC}-{p} below {hw}"
            );
        }
    }
    seen
}

/// Partition `p` read from its leader, up to a high watermark past every acknowledged offset.
/// A leader elected a moment ago (an automatic preferred-leader election, say) starts from the
/// high watermark it knew as a follower and moves it up once its followers fetch from it, so
/// a read that stops short is tried again, with fresh metadata, for a while; after that the
/// short read stands, and the records past it count as lost.
async fn read_to_acked(
    cluster: &Cluster,
    mut metadata: MetadataResponse,
    p: u32,
    acked: &[(u32, i64, String)],
) -> (Vec<(i64, String)>, i64) {
    let needed = (acked.iter())
        .filter(|(q, _, _)| *q == p)
        .map(|(_, o, _)| o + 1)
        .max()
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let leader = partitions(&metadata)[p as usize].0;
        let read = cluster.read_partition(leader, TOPIC, p).await;
        let last_try = tokio::time::Instant::now() >= deadline;
        match read {
            Ok((records, hw)) if hw >= needed || last_try => return (records, hw),
            Err(e) if last_try => panic!("{TOPIC}-{p}: {e}"),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        metadata = cluster
            .wait_metadata(1, "every ISR whole", PATIENCE, healthy)
            .await;
    }
}

/// (a) and (d): SIGKILL the leader of a partition during continuous acks=all produce; it
/// restarts, truncates, catches up and rejoins every ISR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_writes_survive_a_sigkilled_leader_and_the_replicas_agree() {
    let _serial = SERIAL.lock().await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut cluster, before) = cluster_with_topic().await;
    replica_requests_are_checked(&cluster, &before).await;
    let load = Load::start(&cluster, 1).await;

    tokio::time::sleep(Duration::from_millis(rng.random_range(500..2500))).await;
    let victim = partitions(&before)[0].0;
    println!("SIGKILL broker {victim}, the leader of {TOPIC}-0");
    cluster.kill(victim);
    let survivor = if victim == 1 { 2 } else { 1 };
    cluster
        .wait_metadata(
            survivor,
            "new leaders without the killed broker",
            PATIENCE,
            |m| {
                let p = partitions(m);
                p.len() == PARTITIONS as usize && p.iter().all(|(l, _)| *l > 0 && *l != victim)
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(rng.random_range(1000..2500))).await;
    cluster.start_node(victim);
    // Back in sync, it leads its preferred partitions again (automatic leader rebalance).
    let preferred: Vec<i32> = partitions(&before).iter().map(|(l, _)| *l).collect();
    cluster
        .wait_metadata(
            survivor,
            "leadership back on the preferred replicas",
            PATIENCE,
            |m| {
                healthy(m) && partitions(m).iter().map(|(l, _)| *l).collect::<Vec<_>>() == preferred
            },
        )
        .await;
    let outcomes = load.finish().await;
    check(cluster, outcomes, seed).await;
}

/// The broker coordinating `group`, as broker `ask` names it.
async fn coordinator_of(cluster: &Cluster, ask: i32, group: &str) -> Option<i32> {
    let answer = (cluster.connect(ask).await.groups())
        .find_coordinator(FindCoordinatorRequest {
            group_id: group.into(),
        })
        .await
        .ok()?
        .into_inner();
    (answer.error_code == ErrorCode::None as i32).then_some(answer.node_id)
}

/// A group member polling until told to stop, recording (partition, offset, value).
fn member(
    cluster: &Cluster,
    bootstrap: i32,
    consumed: Arc<parking_lot::Mutex<Vec<(u32, i64, String)>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let addr = cluster.node(bootstrap).grpc.clone();
    tokio::spawn(async move {
        let conn = Connection::connect(&addr).await.unwrap();
        let config = ConsumerConfig::builder()
            .bootstrap(conn.addr())
            .auto_offset_reset(AutoOffsetReset::Earliest)
            .fetch_max_wait(Duration::from_millis(100))
            .build()
            .unwrap();
        let group = GroupMemberConfig {
            group_id: GROUP.into(),
            topics: vec![TOPIC.into()],
            auto_commit: Some(Duration::from_millis(200)),
        };
        let mut m = GroupConsumer::subscribe(conn, config, group, Box::new(NoListener)).unwrap();
        while !stop.load(Ordering::Relaxed) {
            let records = m.poll(Duration::from_millis(100)).await.expect("poll");
            let mut seen = consumed.lock();
            for r in records {
                let value = String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned();
                seen.push((r.partition, r.offset.0, value));
            }
        }
        m.close().await.expect("close commits and leaves");
    })
}

const GROUP: &str = "through-failover";

/// (e): a consumer group keeps consuming through a SIGKILL of the broker that coordinates it
/// (the leader of its `__consumer_offsets` partition, which also leads a partition of the
/// topic): the members find the new coordinator, rejoin, resume from the committed offsets,
/// and between them consume every acknowledged record, each at its offset; at the end the
/// committed offsets are the partitions' ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_consumes_everything_through_a_sigkilled_coordinator() {
    let _serial = SERIAL.lock().await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut cluster, _) = cluster_with_topic().await;
    let load = Load::start(&cluster, 1).await;
    let consumed = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let members = [
        member(&cluster, 2, consumed.clone(), stop.clone()),
        member(&cluster, 3, consumed.clone(), stop.clone()),
    ];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while consumed.lock().len() < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the group consumed nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim = coordinator_of(&cluster, 1, GROUP).await.unwrap();
    tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
    println!("SIGKILL broker {victim}, the coordinator of group {GROUP}");
    cluster.kill(victim);
    let survivor = if victim == 1 { 2 } else { 1 };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let successor = loop {
        match coordinator_of(&cluster, survivor, GROUP).await {
            Some(c) if c != victim => break c,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed {seed}: no new coordinator"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("broker {successor} coordinates the group now");
    let before_restart = consumed.lock().len();
    tokio::time::sleep(Duration::from_millis(rng.random_range(1000..2500))).await;
    cluster.start_node(victim);
    cluster
        .wait_metadata(survivor, "every ISR whole", PATIENCE, healthy)
        .await;
    let outcomes = load.finish().await;
    let acked: BTreeMap<String, (u32, i64)> = (outcomes.0.iter())
        .map(|(p, o, v)| (v.clone(), (*p, *o)))
        .collect();
    // The members drain what is left, then stop (committing their positions).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let seen: BTreeSet<String> = consumed.lock().iter().map(|(_, _, v)| v.clone()).collect();
        let missing = acked.keys().filter(|v| !seen.contains(*v)).count();
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed {seed}: {missing} acknowledged records never consumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for m in members {
        m.await.unwrap();
    }
    let consumed = std::mem::take(&mut *consumed.lock());
    assert!(
        consumed.len() > before_restart,
        "seed {seed}: nothing consumed after the failover"
    );
    // Each record at the offset its acknowledgement named (none inconsistent).
    let inconsistent: Vec<_> = (consumed.iter())
        .filter(|(p, o, v)| acked.get(v).is_some_and(|at| at != &(*p, *o)))
        .collect();
    assert!(inconsistent.is_empty(), "seed {seed}: {inconsistent:?}");
    let redelivered = consumed.len() - consumed.iter().collect::<BTreeSet<_>>().len();
    println!(
        "consumed {} records ({redelivered} delivered again after the failover)",
        consumed.len()
    );
    // Committed offsets: each partition's end, as the coordinator tells it.
    let coordinator = coordinator_of(&cluster, survivor, GROUP).await.unwrap();
    let committed = (cluster.connect(coordinator).await.groups())
        .fetch_offsets(FetchOffsetsRequest {
            group_id: GROUP.into(),
            partitions: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        committed.error_code,
        ErrorCode::None as i32,
        "{}",
        committed.error_message
    );
    let mut ends = BTreeMap::new();
    for (p, o) in acked.values() {
        let end = ends.entry(*p).or_insert(0);
        *end = (*end).max(o + 1);
    }
    let got: BTreeMap<u32, i64> = (committed.offsets.iter())
        .map(|o| (o.partition, o.offset))
        .collect();
    assert_eq!(got, ends, "seed {seed}: committed offsets");
    check(cluster, outcomes, seed).await;
}

/// Writes `value` to `partition` of the topic on broker `id` alone, acks=all, waiting at most
/// `timeout_ms`: the error code and message, or `None` when it was acknowledged.
async fn probe(
    cluster: &Cluster,
    id: i32,
    topic: &str,
    partition: u32,
    value: &str,
    timeout_ms: u32,
) -> Option<String> {
    let mut batch = BatchBuilder::new();
    batch.append(0, None, Some(value.as_bytes()), &[]);
    let request = ProduceRequest {
        acks: Acks::All as i32,
        timeout_ms,
        topics: vec![TopicProduceData {
            topic: topic.into(),
            partitions: vec![PartitionProduceData {
                partition,
                records: batch.build(),
            }],
        }],
    };
    let answer = tokio::time::timeout(
        Duration::from_millis(u64::from(timeout_ms) + 5_000),
        cluster.connect(id).await.broker().produce(request),
    )
    .await;
    match answer {
        Err(_) => Some("no answer".into()),
        Ok(Err(status)) => Some(format!("{status}")),
        Ok(Ok(answer)) => {
            let p = &answer.into_inner().topics[0].partitions[0];
            (p.error_code != ErrorCode::None as i32)
                .then(|| format!("{:?}: {}", p.error_code(), p.error_message))
        }
    }
}

/// (b): the leader of a partition is cut off from the other brokers (the links between
/// brokers go silent, as in a network partition; clients still reach every broker) under
/// continuous acks=all produce, and the network heals a few seconds later. The majority
/// fences it and elects new leaders; cut off, it acknowledges no acks=all write; healed, it
/// learns the new epochs, drops what it took alone, catches up and rejoins every ISR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_others_acknowledges_nothing_and_rejoins() {
    let _serial = SERIAL.lock().await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let (cluster, before) = with_topic(Cluster::start_with_proxies(3, &ENV)).await;
    let victim = partitions(&before)[0].0;
    let survivor = victim % 3 + 1;
    let load = Load::start(&cluster, survivor).await;
    tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
    println!("cutting broker {victim}, the leader of {TOPIC}-0, off from the others");
    cluster.isolate(victim);
    cluster
        .wait_metadata(
            survivor,
            "the majority fences the cut-off broker and elects new leaders",
            PATIENCE,
            |m| {
                let p = partitions(m);
                !m.brokers.iter().any(|b| b.node_id == victim)
                    && p.len() == PARTITIONS as usize
                    && p.iter().all(|(l, _)| *l > 0 && *l != victim)
            },
        )
        .await;
    // Cut off, the old leader may still believe it leads, but cannot replicate: an acks=all
    // write to it is not acknowledged.
    let refused = probe(
        &cluster,
        victim,
        TOPIC,
        0,
        "written-to-the-cut-off-leader",
        2_000,
    )
    .await;
    println!("the cut-off broker answered an acks=all write with {refused:?}");
    assert!(
        refused.is_some(),
        "seed {seed}: a cut-off broker acknowledged an acks=all write"
    );
    tokio::time::sleep(Duration::from_millis(rng.random_range(500..2500))).await;
    println!("healing the network");
    cluster.heal();
    cluster
        .wait_metadata(
            victim,
            "every ISR whole, as the healed broker sees it",
            PATIENCE,
            healthy,
        )
        .await;
    let outcomes = load.finish().await;
    let stored = check(cluster, outcomes, seed).await;
    assert!(
        !stored.contains("written-to-the-cut-off-leader"),
        "seed {seed}: the write the cut-off leader took alone survived"
    );
}

/// (c): every broker in turn is stopped cleanly and restarted under load; each waits for
/// every ISR to be whole before the next goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut cluster, _) = cluster_with_topic().await;
    let load = Load::start(&cluster, 1).await;
    for id in 1..=3 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        println!("restarting broker {id}");
        let status = cluster.terminate(id);
        assert!(status.success(), "broker {id} stopped with {status}");
        let other = if id == 1 { 2 } else { 1 };
        // Fenced before it exited (the controller committed it); the others apply the fence
        // when the commit reaches them, which, when the stopped broker was the controller
        // itself, waits for the next Raft message or election. That a SIGTERMed broker is
        // fenced before it exits is checked in tests/tests/cluster.rs.
        cluster
            .wait_metadata(other, "the stopped broker fenced", PATIENCE, |m| {
                !m.brokers.iter().any(|b| b.node_id == id)
            })
            .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        cluster.start_node(id);
        cluster
            .wait_metadata(
                other,
                "every ISR whole after the restart",
                PATIENCE,
                healthy,
            )
            .await;
    }
    let outcomes = load.finish().await;
    check(cluster, outcomes, seed).await;
}

/// (d): a broker down for a while (with three partitions on three brokers it follows two of
/// them and leads one) leaves every ISR, and after its restart catches up and rejoins them,
/// while writes go on with the two others (min.insync.replicas 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_for_a_while_catches_up_and_rejoins() {
    let _serial = SERIAL.lock().await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut cluster, before) = cluster_with_topic().await;
    let leaders: BTreeSet<i32> = partitions(&before).iter().map(|(l, _)| *l).collect();
    // A broker leading nothing, if there is one; else broker 3.
    let follower = (1..=3).rev().find(|id| !leaders.contains(id)).unwrap_or(3);
    let load = Load::start(&cluster, 1).await;
    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
    println!("SIGKILL follower {follower}");
    cluster.kill(follower);
    let other = if follower == 1 { 2 } else { 1 };
    cluster
        .wait_metadata(other, "every ISR without the follower", PATIENCE, |m| {
            partitions(m)
                .iter()
                .all(|(l, isr)| *l != follower && *isr == 2)
        })
        .await;
    // The metrics say so: a fenced broker, under-replicated partitions on the leaders.
    cluster
        .wait_metric(other, "brook_cluster_fenced_brokers", PATIENCE, |v| {
            v == 1.0
        })
        .await;
    cluster
        .wait_metric(other, "brook_under_replicated_partitions", PATIENCE, |v| {
            v >= 1.0
        })
        .await;
    tokio::time::sleep(Duration::from_millis(rng.random_range(2000..4000))).await;
    cluster.start_node(follower);
    cluster
        .wait_metadata(other, "the follower back in every ISR", PATIENCE, healthy)
        .await;
    cluster
        .wait_metric(other, "brook_under_replicated_partitions", PATIENCE, |v| {
            v == 0.0
        })
        .await;
    cluster
        .wait_metric(other, "brook_isr_expands_total", PATIENCE, |v| v >= 1.0)
        .await;
    let mut controllers = 0.0;
    for id in 1..=3 {
        controllers += cluster
            .wait_metric(id, "brook_cluster_is_controller", PATIENCE, |v| {
                v == 0.0 || v == 1.0
            })
            .await;
    }
    assert_eq!(controllers, 1.0, "exactly one controller");
    let outcomes = load.finish().await;
    check(cluster, outcomes, seed).await;
}

/// The leader checks what replicas send: the leader epoch they follow, that they are
/// replicas, and what OffsetForLeaderEpoch is asked about.
async fn replica_requests_are_checked(cluster: &Cluster, metadata: &MetadataResponse) {
    let p0 = &metadata
        .topics
        .iter()
        .find(|t| t.name == TOPIC)
        .unwrap()
        .partitions[0];
    let (leader, epoch) = (p0.leader, p0.leader_epoch);
    let follower = *p0.replicas.iter().find(|r| **r != leader).unwrap();
    let conn = cluster.connect(leader).await;
    let fetch = |replica_id: Option<i32>, current_leader_epoch: Option<i32>| FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 0,
        replica_id,
        topics: vec![FetchTopic {
            topic: TOPIC.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 0,
                current_leader_epoch,
            }],
        }],
    };
    let answer = |r: brook_proto::v1::FetchResponse| {
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.error_message.clone())
    };
    let (code, message) = answer(
        conn.broker()
            .fetch(fetch(Some(follower), Some(epoch - 1)))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(code, ErrorCode::FencedLeaderEpoch as i32, "{message}");
    assert_eq!(
        message,
        format!(
            "{TOPIC}-0: leader epoch {} is older than the current {epoch}",
            epoch - 1
        )
    );
    let (code, message) = answer(
        conn.broker()
            .fetch(fetch(Some(follower), Some(epoch + 1)))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(code, ErrorCode::NotLeader as i32, "{message}");
    let (code, message) = answer(
        conn.broker()
            .fetch(fetch(Some(99), Some(epoch)))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(code, ErrorCode::InvalidRequest as i32, "{message}");
    assert!(
        message.starts_with("broker 99 is not a replica of this partition"),
        "{message}"
    );
    let (code, message) = answer(
        conn.broker()
            .fetch(fetch(Some(follower), Some(epoch)))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(code, ErrorCode::None as i32, "{message}");

    let ask = |topic: &str, leader_epoch: i32, current_leader_epoch: i32| {
        brook_proto::v1::OffsetForLeaderEpochRequest {
            topic: topic.into(),
            partition: 0,
            leader_epoch,
            current_leader_epoch,
        }
    };
    let a = conn
        .broker()
        .offset_for_leader_epoch(ask(TOPIC, epoch, epoch))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (a.error_code, a.leader_epoch, a.end_offset),
        (ErrorCode::None as i32, -1, -1),
        "{}",
        a.error_message
    );
    let a = conn
        .broker()
        .offset_for_leader_epoch(ask(TOPIC, epoch, epoch - 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.error_code, ErrorCode::FencedLeaderEpoch as i32);
    let a = conn
        .broker()
        .offset_for_leader_epoch(ask("nope", 0, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.error_code, ErrorCode::UnknownTopicOrPartition as i32);
    // A follower does not answer for the partition.
    let a = cluster
        .connect(follower)
        .await
        .broker()
        .offset_for_leader_epoch(ask(TOPIC, epoch, epoch))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        a.error_code,
        ErrorCode::NotLeader as i32,
        "{}",
        a.error_message
    );
}

/// CreateTopics with `configs` through broker 1: (error code, message).
async fn create_with(
    cluster: &Cluster,
    name: &str,
    rf: u32,
    configs: &[(&str, &str)],
) -> (ErrorCode, String) {
    let response = (cluster.connect(1).await.admin())
        .create_topics(CreateTopicsRequest {
            topics: vec![NewTopic {
                name: name.into(),
                partitions: 1,
                replication_factor: rf,
                configs: (configs.iter())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let r = &response.results[0];
    (r.error_code(), r.error_message.clone())
}

/// (leader, ISR) of partition 0 of `topic`.
fn isr_of(m: &MetadataResponse, topic: &str) -> Option<(i32, Vec<i32>)> {
    let t = m.topics.iter().find(|t| t.name == topic)?;
    t.partitions.first().map(|p| (p.leader, p.isr.clone()))
}

/// A topic's own `min.insync.replicas` overrides the broker's: with one follower down, acks=all
/// writes to a topic that asks for 3 in-sync replicas are refused with NOT_ENOUGH_REPLICAS
/// naming both numbers, while the topic on the broker default (2) still takes them; back in
/// the ISR, the follower lets the strict topic write again. Bad values are refused at create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_min_insync_replicas_overrides_the_broker_default() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, _) = cluster_with_topic().await;
    for (rf, configs, expected) in [
        (
            3,
            [("min.insync.replicas", "4")],
            "topic config min.insync.replicas = 4 is larger than the replication factor 3: no acks=all write could succeed",
        ),
        (
            3,
            [("min.insync.replicas", "0")],
            "topic config min.insync.replicas = 0 is out of range: must be between 1 and 100",
        ),
        (
            3,
            [("unclean.leader.election.enable", "yes")],
            "topic config unclean.leader.election.enable = \"yes\" is invalid: use \"true\" or \"false\"",
        ),
    ] {
        assert_eq!(
            create_with(&cluster, "refused", rf, &configs).await,
            (ErrorCode::InvalidConfig, expected.to_string())
        );
    }
    assert_eq!(
        create_with(&cluster, "strict", 3, &[("min.insync.replicas", "3")]).await,
        (ErrorCode::None, String::new())
    );
    let m = cluster
        .wait_metadata(1, "strict with a full ISR", PATIENCE, |m| {
            isr_of(m, "strict").is_some_and(|(l, isr)| l > 0 && isr.len() == 3)
        })
        .await;
    assert!(!m.topics.iter().any(|t| t.name == "refused"));
    let described = (cluster.connect(2).await.admin())
        .describe_topics(brook_proto::v1::DescribeTopicsRequest {
            names: vec!["strict".into(), TOPIC.into()],
        })
        .await
        .unwrap()
        .into_inner();
    let min_insync: Vec<&str> = (described.topics.iter())
        .map(|t| t.configs["min.insync.replicas"].as_str())
        .collect();
    assert_eq!(min_insync, ["3", "2"]);

    let (leader, isr) = isr_of(&m, "strict").unwrap();
    assert_eq!(
        probe(&cluster, leader, "strict", 0, "first", 5_000).await,
        None
    );
    let follower = *isr.iter().find(|n| **n != leader).unwrap();
    println!("SIGKILL broker {follower}, a follower of strict-0 (led by {leader})");
    cluster.kill(follower);
    let m = cluster
        .wait_metadata(leader, "the follower out of the ISR", PATIENCE, |m| {
            isr_of(m, "strict").is_some_and(|(l, isr)| l == leader && isr.len() == 2)
        })
        .await;
    assert_eq!(
        probe(&cluster, leader, "strict", 0, "refused", 5_000).await,
        Some("NotEnoughReplicas: 2 in-sync replicas, min.insync.replicas is 3".to_string())
    );
    // The broker default (2) still holds for the other topic.
    let (p, (events_leader, _)) = (partitions(&m).into_iter().enumerate())
        .find(|(_, (l, _))| *l > 0 && *l != follower)
        .unwrap();
    assert_eq!(
        probe(&cluster, events_leader, TOPIC, p as u32, "default", 5_000).await,
        None
    );
    cluster.start_node(follower);
    cluster
        .wait_metadata(
            leader,
            "strict with a full ISR again, led by its preferred replica",
            PATIENCE,
            |m| {
                let t = m.topics.iter().find(|t| t.name == "strict");
                t.and_then(|t| t.partitions.first())
                    .is_some_and(|p| p.isr.len() == 3 && p.replicas.first() == Some(&p.leader))
            },
        )
        .await;
    let m = cluster
        .wait_metadata(leader, "an answer", PATIENCE, |_| true)
        .await;
    let (leader, _) = isr_of(&m, "strict").unwrap();
    assert_eq!(
        probe(&cluster, leader, "strict", 0, "second", 5_000).await,
        None
    );
    let (records, _) = cluster.read_partition(leader, "strict", 0).await.unwrap();
    let values: Vec<&str> = records.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, ["first", "second"]);
}

/// `(topic, partition, code, leader)` of each ElectLeaders result, and the messages.
async fn elect(
    cluster: &Cluster,
    via: i32,
    topics: Vec<brook_proto::v1::ElectLeadersTopic>,
) -> (Vec<(String, u32, ErrorCode, i32)>, Vec<String>) {
    let response = (cluster.connect(via).await.admin())
        .elect_leaders(brook_proto::v1::ElectLeadersRequest { topics })
        .await
        .unwrap()
        .into_inner();
    let outcomes = (response.results.iter())
        .map(|r| (r.topic.clone(), r.partition, r.error_code(), r.leader))
        .collect();
    let messages = response
        .results
        .into_iter()
        .map(|r| r.error_message)
        .collect();
    (outcomes, messages)
}

fn only(topic: &str, partitions: &[u32]) -> Vec<brook_proto::v1::ElectLeadersTopic> {
    vec![brook_proto::v1::ElectLeadersTopic {
        topic: topic.into(),
        partitions: partitions.to_vec(),
    }]
}

/// With the automatic leader rebalance off, a broker back from a SIGKILL leads nothing until
/// a preferred-leader election is asked for (`brook cluster elect-leaders`); asked while it
/// is down, the election is refused naming it; unknown topics and partitions are named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_leaders_are_elected_on_request() {
    let _serial = SERIAL.lock().await;
    let mut env = ENV.to_vec();
    env[0] = ("BROOK_CLUSTER_LEADER_REBALANCE_INTERVAL_MS", "0");
    let (mut cluster, before) = with_topic(Cluster::start(3, &env)).await;
    let preferred: Vec<i32> = partitions(&before).iter().map(|(l, _)| *l).collect();

    // Every partition already led by its preferred replica: nothing to do, and the CLI says so.
    let conn = cluster.connect(2).await;
    let mut out = Vec::new();
    let args = brook_client::cli::args::ElectLeadersArgs {
        topic: None,
        partition: vec![],
    };
    brook_client::cli::cluster::elect_leaders(&conn, &args, &mut out)
        .await
        .unwrap();
    let expected: String = (preferred.iter().enumerate())
        .map(|(p, l)| format!("{TOPIC}-{p}: leader {l} (already preferred)\n"))
        .collect();
    assert_eq!(String::from_utf8(out).unwrap(), expected);

    let victim = preferred[0];
    println!("SIGKILL broker {victim}, the preferred leader of {TOPIC}-0");
    cluster.kill(victim);
    let survivor = victim % 3 + 1;
    cluster
        .wait_metadata(
            survivor,
            "new leaders without the killed broker",
            PATIENCE,
            |m| partitions(m).iter().all(|(l, _)| *l > 0 && *l != victim),
        )
        .await;
    let (outcomes, messages) = elect(&cluster, survivor, only(TOPIC, &[0])).await;
    assert_eq!(outcomes[0].2, ErrorCode::PreferredLeaderNotAvailable);
    assert_eq!(
        messages,
        [format!(
            "the preferred replica {victim} of {TOPIC}-0 is not live"
        )]
    );

    cluster.start_node(victim);
    let m = cluster
        .wait_metadata(survivor, "every ISR whole", PATIENCE, healthy)
        .await;
    let (stand_in, _) = partitions(&m)[0];
    assert_ne!(stand_in, victim, "the leader moved back by itself");
    let (outcomes, messages) = elect(&cluster, survivor, only(TOPIC, &[0])).await;
    assert_eq!(
        outcomes,
        [(TOPIC.to_string(), 0, ErrorCode::None, victim)],
        "{messages:?}"
    );
    let m = cluster
        .wait_metadata(survivor, "the preferred leaders back", PATIENCE, |m| {
            healthy(m) && partitions(m).iter().map(|(l, _)| *l).collect::<Vec<_>>() == preferred
        })
        .await;
    let (_, again) = elect(&cluster, survivor, only(TOPIC, &[])).await;
    let expected: Vec<String> = (0..PARTITIONS)
        .map(|p| {
            format!(
                "{TOPIC}-{p} is already led by its preferred replica {}",
                preferred[p as usize]
            )
        })
        .collect();
    assert_eq!(again, expected);
    assert!(m.topics.iter().any(|t| t.name == TOPIC));

    // Bad requests name what is wrong, per partition.
    let (outcomes, messages) = elect(&cluster, 1, only("ghost", &[])).await;
    assert_eq!(
        outcomes,
        [(
            "ghost".to_string(),
            0,
            ErrorCode::UnknownTopicOrPartition,
            -1
        )]
    );
    assert_eq!(messages, ["topic \"ghost\" does not exist"]);
    let (outcomes, messages) = elect(&cluster, 1, only(TOPIC, &[7])).await;
    assert_eq!(
        outcomes,
        [(TOPIC.to_string(), 7, ErrorCode::UnknownTopicOrPartition, -1)]
    );
    assert_eq!(
        messages,
        [format!(
            "topic {TOPIC:?} has {PARTITIONS} partitions; there is no partition 7"
        )]
    );
}

/// AlterPartitionReassignments through broker `via`: `(code, message)` per partition asked.
async fn reassign(
    cluster: &Cluster,
    via: i32,
    asked: Vec<(&str, u32, Vec<i32>, bool)>,
) -> Vec<(ErrorCode, String)> {
    let partitions = (asked.into_iter())
        .map(
            |(topic, partition, replicas, cancel)| PartitionReassignment {
                topic: topic.into(),
                partition,
                replicas,
                cancel,
            },
        )
        .collect();
    let response = (cluster.connect(via).await.admin())
        .alter_partition_reassignments(AlterPartitionReassignmentsRequest { partitions })
        .await
        .unwrap()
        .into_inner();
    (response.results.into_iter())
        .map(|r| (r.error_code(), r.error_message))
        .collect()
}

/// Writes `values` to `topic`-`partition` with an acks=all producer bootstrapped on the first
/// running broker; their offsets.
async fn send(cluster: &Cluster, topic: &str, partition: u32, values: &[String]) -> Vec<i64> {
    let config = ProducerConfig::builder()
        .delivery_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let bootstrap = cluster.nodes.iter().find(|n| n.is_running()).unwrap();
    let producer = Producer::connect(&bootstrap.grpc, config).await.unwrap();
    let mut pending = Vec::new();
    for v in values {
        let record = ProducerRecord::new(topic, v.clone()).partition(partition);
        pending.push(producer.enqueue(record).await.unwrap());
    }
    let mut offsets = Vec::new();
    for delivery in pending {
        offsets.push(delivery.await.unwrap().offset.unwrap());
    }
    producer.close().await;
    offsets
}

/// (f): under continuous acks=all load, every partition moves off its leader onto the one
/// broker of four that held no replica of it. The newcomer catches up, joins the ISR and takes
/// over the leadership; the old leader is dropped and empties its copy. The checker finds
/// nothing lost, duplicated or unseen, the new replicas agree record for record, and the
/// dropped brokers hold no data of the partitions they left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_move_to_new_replicas_under_load_and_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = Cluster::start(4, &ENV);
    cluster
        .wait_metadata(1, "four live brokers", PATIENCE, |m| m.brokers.len() == 4)
        .await;
    let (cluster, before) = with_topic(cluster).await;
    let load = Load::start(&cluster, 1).await;
    tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
    let mut targets = Vec::new();
    for (list, (leader, _)) in replicas(&before).iter().zip(partitions(&before)) {
        let newcomer = (1..=4).find(|id| !list.contains(id)).unwrap();
        let mut target = vec![newcomer];
        target.extend(list.iter().filter(|id| **id != leader));
        targets.push(target);
    }
    println!("moving {:?} to {targets:?}", replicas(&before));
    let asked = (targets.iter().enumerate())
        .map(|(p, target)| (TOPIC, p as u32, target.clone(), false))
        .collect();
    let outcomes = reassign(&cluster, 2, asked).await;
    assert_eq!(
        outcomes,
        vec![(ErrorCode::None, String::new()); PARTITIONS as usize]
    );
    let m = cluster
        .wait_metadata(3, "every partition on its new replicas", PATIENCE, |m| {
            healthy(m) && replicas(m) == targets
        })
        .await;
    // The newcomer, first of the target and in sync, took over from the dropped leader.
    let leaders: Vec<i32> = partitions(&m).iter().map(|(l, _)| *l).collect();
    let newcomers: Vec<i32> = targets.iter().map(|t| t[0]).collect();
    assert_eq!(leaders, newcomers, "seed {seed}");
    let running = (cluster.connect(4).await.admin())
        .list_partition_reassignments(ListPartitionReassignmentsRequest { topics: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert!(running.reassignments.is_empty(), "{running:?}");
    // Each dropped leader empties its copy while it runs.
    for (p, (dropped, _)) in partitions(&before).into_iter().enumerate() {
        wait_local_log(&cluster, dropped, TOPIC, p as u32, |start, end| {
            start == 0 && end == 0
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
    let outcomes = load.finish().await;
    check(cluster, outcomes, seed).await;
}

/// A move survives a SIGKILL of the leader it drops. Five brokers, so the controller quorum
/// keeps a majority with two of them down: with the newcomer down, the move of partition 0
/// waits; its leader is SIGKILLed under load and another original replica takes
/// over; the newcomer comes back, catches up from that new leader and completes the move; and
/// the killed broker, restarted after the move completed, finds it is no longer a replica and
/// empties its copy. The checker reports nothing lost, duplicated or unseen, and the files
/// agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_completes_through_a_sigkill_of_the_leader_it_drops() {
    let _serial = SERIAL.lock().await;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = Cluster::start(5, &ENV);
    cluster
        .wait_metadata(1, "five live brokers", PATIENCE, |m| m.brokers.len() == 5)
        .await;
    let (mut cluster, before) = with_topic(cluster).await;
    let original = replicas(&before)[0].clone();
    let (leader, _) = partitions(&before)[0];
    let newcomer = (1..=5).find(|id| !original.contains(id)).unwrap();
    let target: Vec<i32> = [newcomer]
        .into_iter()
        .chain(original.iter().copied().filter(|id| *id != leader))
        .collect();
    let watcher = target[1];
    let bootstrap = target[2];
    println!("moving {TOPIC}-0 from {original:?} to {target:?}; SIGKILL {newcomer}, then {leader}");
    cluster.kill(newcomer);
    cluster
        .wait_metadata(watcher, "the newcomer fenced", PATIENCE, |m| {
            m.brokers.len() == 4
        })
        .await;
    let load = Load::start(&cluster, bootstrap).await;
    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
    assert_eq!(
        reassign(&cluster, watcher, vec![(TOPIC, 0, target.clone(), false)]).await,
        [(ErrorCode::None, String::new())]
    );
    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
    cluster.kill(leader);
    cluster
        .wait_metadata(
            watcher,
            "a new leader for the moving partition",
            PATIENCE,
            |m| {
                let (l, isr) = partitions(m)[0];
                l > 0 && l != leader && isr == 2 && replicas(m)[0].len() == 4
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
    cluster.start_node(newcomer);
    cluster
        .wait_metadata(watcher, "the move complete", PATIENCE, |m| {
            replicas(m)[0] == target && partitions(m)[0].1 == 3
        })
        .await;
    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1000))).await;
    cluster.start_node(leader);
    cluster
        .wait_metadata(watcher, "every ISR whole", PATIENCE, healthy)
        .await;
    // The restarted broker replays the metadata (where it still leads the partition), learns
    // the move completed without it, and only then empties its copy.
    let (start, end) = wait_local_log(&cluster, leader, TOPIC, 0, |start, end| {
        start == 0 && end == 0
    })
    .await;
    assert_eq!((start, end), (0, 0));
    let outcomes = load.finish().await;
    check(cluster, outcomes, seed).await;
}

/// A move to a broker that is down waits for it, shows in `brook cluster reassignments`, and
/// is cancelled back to the original replicas (in the order the move left them, as in Kafka)
/// with nothing lost; bad requests name what is wrong. `brook cluster reassign --wait` then
/// moves a partition and returns once it is done. A new replica of a partition whose leader's
/// log no longer starts at 0 (retention) starts its copy where the leader's starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassignments_wait_for_their_replicas_and_can_be_cancelled() {
    let _serial = SERIAL.lock().await;
    let mut env = ENV.to_vec();
    env.push(("BROOK_RETENTION_CHECK_INTERVAL_MS", "200"));
    let cluster = Cluster::start(4, &env);
    cluster
        .wait_metadata(1, "four live brokers", PATIENCE, |m| m.brokers.len() == 4)
        .await;
    let (mut cluster, before) = with_topic(cluster).await;
    let original = replicas(&before)[0].clone();
    let (leader, _) = partitions(&before)[0];
    let newcomer = (1..=4).find(|id| !original.contains(id)).unwrap();
    let kept: Vec<i32> = original
        .iter()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    let values: Vec<String> = (0..20).map(|i| format!("before-{i}")).collect();
    send(&cluster, TOPIC, 0, &values).await;

    println!("SIGKILL broker {newcomer}, then move {TOPIC}-0 from {original:?} onto it");
    cluster.kill(newcomer);
    let via = leader;
    cluster
        .wait_metadata(via, "the newcomer fenced", PATIENCE, |m| {
            m.brokers.len() == 3
        })
        .await;
    let conn = cluster.connect(via).await;
    let target: Vec<i32> = [newcomer].into_iter().chain(kept.iter().copied()).collect();
    let mut out = Vec::new();
    let args = brook_client::cli::args::ReassignArgs {
        topic: TOPIC.into(),
        partition: vec![0],
        replicas: target.clone(),
        cancel: false,
        wait: false,
        timeout_ms: 600_000,
    };
    brook_client::cli::cluster::reassign(&conn, &args, &mut out)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{TOPIC}-0: moving\n")
    );
    // The newcomer is down: the move waits, the old leader keeps leading and taking writes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut merged = target.clone();
    merged.push(leader);
    let isr: BTreeSet<i32> = original.iter().copied().collect();
    let list = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    let mut out = Vec::new();
    brook_client::cli::cluster::list_reassignments(&conn, &[], &mut out)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "{TOPIC}-0\treplicas {}\tadding {newcomer}\tremoving {leader}\tisr {}\n",
            list(&merged),
            list(&isr.iter().copied().collect::<Vec<_>>())
        )
    );
    let m = cluster
        .wait_metadata(via, "an answer", PATIENCE, |_| true)
        .await;
    assert_eq!(replicas(&m)[0], merged);
    assert_eq!(partitions(&m)[0].0, leader);
    send(&cluster, TOPIC, 0, &["during".to_string()]).await;
    cluster
        .wait_metric(via, "brook_cluster_reassigning_partitions", PATIENCE, |v| {
            v == 1.0
        })
        .await;

    // Bad requests, each named.
    let long = format!("{TOPIC}-0");
    let outcomes = reassign(
        &cluster,
        via,
        vec![
            (TOPIC, 0, vec![1, 9], false),
            (TOPIC, 0, vec![-1], false),
            (TOPIC, 0, vec![], false),
            (TOPIC, 0, vec![2, 2], false),
            (TOPIC, 7, vec![1], false),
            ("ghost", 0, vec![1], false),
            (TOPIC, 1, vec![], true),
            (TOPIC, 0, vec![1], true),
        ],
    )
    .await;
    let expected = [
        (
            ErrorCode::InvalidReplicaAssignment,
            format!("{long}: broker 9 is not registered"),
        ),
        (
            ErrorCode::InvalidReplicaAssignment,
            format!("{long}: broker -1 is not registered"),
        ),
        (
            ErrorCode::InvalidReplicaAssignment,
            format!("{long}: no replicas"),
        ),
        (
            ErrorCode::InvalidReplicaAssignment,
            format!("{long}: replicas [2, 2] repeat a broker"),
        ),
        (
            ErrorCode::UnknownTopicOrPartition,
            format!("topic {TOPIC:?} has {PARTITIONS} partitions; there is no partition 7"),
        ),
        (
            ErrorCode::UnknownTopicOrPartition,
            "topic \"ghost\" does not exist".to_string(),
        ),
        (
            ErrorCode::NoReassignmentInProgress,
            format!("{TOPIC}-1: no reassignment is in progress"),
        ),
        (
            ErrorCode::InvalidRequest,
            format!("cancel of {long} names replicas [1]: a cancel takes none"),
        ),
    ];
    assert_eq!(outcomes, expected);
    let m = cluster
        .wait_metadata(via, "an answer", PATIENCE, |_| true)
        .await;
    assert_eq!(
        replicas(&m)[0],
        merged,
        "a refused request changed the move"
    );

    // Cancelled: back to the original replicas, nothing lost.
    let mut out = Vec::new();
    let cancel = brook_client::cli::args::ReassignArgs {
        replicas: vec![],
        cancel: true,
        ..args.clone()
    };
    brook_client::cli::cluster::reassign(&conn, &cancel, &mut out)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{TOPIC}-0: cancelled\n")
    );
    let back: Vec<i32> = merged
        .iter()
        .copied()
        .filter(|id| *id != newcomer)
        .collect();
    cluster
        .wait_metadata(via, "the original replicas back", PATIENCE, |m| {
            replicas(m)[0] == back && partitions(m)[0].0 > 0 && partitions(m)[0].1 == 3
        })
        .await;
    let mut out = Vec::new();
    brook_client::cli::cluster::list_reassignments(&conn, &[], &mut out)
        .await
        .unwrap();
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    let (records, _) = cluster
        .read_partition_from_leader(via, TOPIC, 0, PATIENCE)
        .await
        .unwrap();
    let stored: Vec<&str> = records.iter().map(|(_, v)| v.as_str()).collect();
    let mut expected: Vec<&str> = values.iter().map(String::as_str).collect();
    expected.push("during");
    assert_eq!(stored, expected);

    // With the newcomer back, `--wait` returns once the move is done.
    cluster.start_node(newcomer);
    cluster
        .wait_metadata(via, "four live brokers", PATIENCE, |m| m.brokers.len() == 4)
        .await;
    let mut out = Vec::new();
    let wait = brook_client::cli::args::ReassignArgs {
        wait: true,
        ..args.clone()
    };
    brook_client::cli::cluster::reassign(&conn, &wait, &mut out)
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{TOPIC}-0: moving\ndone\n")
    );
    cluster
        .wait_metadata(via, "the move applied", PATIENCE, |m| {
            healthy(m) && replicas(m)[0] == target
        })
        .await;
    let (records, _) = cluster
        .read_partition_from_leader(via, TOPIC, 0, PATIENCE)
        .await
        .unwrap();
    let moved: Vec<&str> = records.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(moved, expected);

    // A trimmed log: the new replicas start where the leader's log starts.
    let configs = [("segment.bytes", "1024"), ("retention.bytes", "2048")];
    assert_eq!(
        create_with(&cluster, "trimmed", 2, &configs).await,
        (ErrorCode::None, String::new())
    );
    let m = cluster
        .wait_metadata(1, "trimmed with a full ISR", PATIENCE, |m| {
            isr_of(m, "trimmed").is_some_and(|(l, isr)| l > 0 && isr.len() == 2)
        })
        .await;
    let t = m.topics.iter().find(|t| t.name == "trimmed").unwrap();
    let old: Vec<i32> = t.partitions[0].replicas.clone();
    let values: Vec<String> = (0..400)
        .map(|i| format!("trimmed-{i:04}-{}", "x".repeat(60)))
        .collect();
    // In 8 sends of 50, each awaited: at least 8 batches, so at least 8 segments. Sent at
    // once, the 400 records could make one batch, hence one segment, the active one, which
    // retention never deletes.
    for chunk in values.chunks(50) {
        send(&cluster, "trimmed", 0, chunk).await;
    }
    let old_leader = t.partitions[0].leader;
    let start = wait_log_start(&cluster, old_leader, "trimmed").await;
    println!("trimmed-0 on {old:?} starts at {start}");
    let (before, hw) = cluster
        .read_partition_from(old_leader, "trimmed", 0, start)
        .await
        .unwrap();
    assert_eq!(hw, 400);
    let fresh: Vec<i32> = (1..=4).filter(|id| !old.contains(id)).collect();
    assert_eq!(
        reassign(&cluster, 1, vec![("trimmed", 0, fresh.clone(), false)]).await,
        [(ErrorCode::None, String::new())]
    );
    let m = cluster
        .wait_metadata(1, "trimmed on fresh replicas", PATIENCE, |m| {
            let t = m.topics.iter().find(|t| t.name == "trimmed");
            t.and_then(|t| t.partitions.first()).is_some_and(|p| {
                p.replicas == fresh && p.isr.len() == 2 && fresh.contains(&p.leader)
            })
        })
        .await;
    let new_leader = isr_of(&m, "trimmed").unwrap().0;
    let new_start = wait_log_start(&cluster, new_leader, "trimmed").await;
    let (after, hw) = cluster
        .read_partition_from(new_leader, "trimmed", 0, new_start)
        .await
        .unwrap();
    assert_eq!(hw, 400);
    let kept: Vec<&(i64, String)> = before.iter().filter(|(o, _)| *o >= new_start).collect();
    assert_eq!(after.iter().collect::<Vec<_>>(), kept);
    assert_eq!(after.last().map(|(o, _)| *o), Some(399));
}

/// `(log start, log end)` of broker `id`'s own copy of `topic`-`partition` (DescribeTopics
/// answers from the local log), once `done` accepts them.
async fn wait_local_log(
    cluster: &Cluster,
    id: i32,
    topic: &str,
    partition: u32,
    done: impl Fn(i64, i64) -> bool,
) -> (i64, i64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let described = (cluster.connect(id).await.admin())
            .describe_topics(brook_proto::v1::DescribeTopicsRequest {
                names: vec![topic.into()],
            })
            .await
            .unwrap()
            .into_inner();
        let p = &described.topics[0].partitions[partition as usize];
        let now = (p.log_start_offset, p.log_end_offset);
        if done(now.0, now.1) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker {id}: its copy of {topic}-{partition} is still {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log start offset of `topic`-0 on broker `id` (its leader), once retention has moved it
/// past 0.
async fn wait_log_start(cluster: &Cluster, id: i32, topic: &str) -> i64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = (cluster.connect(id).await.broker())
            .list_offsets(ListOffsetsRequest {
                topics: vec![ListOffsetsTopic {
                    topic: topic.into(),
                    partitions: vec![ListOffsetsPartition {
                        partition: 0,
                        spec: OffsetSpec::Earliest as i32,
                        timestamp: 0,
                    }],
                }],
            })
            .await
            .unwrap()
            .into_inner();
        let p = &answer.topics[0].partitions[0];
        assert_eq!(p.error_code(), ErrorCode::None, "{}", p.error_message);
        if p.offset > 0 {
            return p.offset;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never trimmed {topic}-0 on broker {id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
