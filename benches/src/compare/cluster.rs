//! `brook-bench cluster`: replication's price and failover time, Brook beside Kafka.
//!
//! ```text
//!  setups:  Brook 1 broker RF 1 │ Brook 3 brokers RF 3 │ Kafka 3 nodes RF 3
//!           (min.insync.replicas 2 on both clusters; acks=all, no fsync per write)
//!  workloads: produce-max, produce at a fixed rate (open loop, p50/p99/p99.9)
//!  failover: one partition RF 3, SIGKILL its leader, time until a record produced after the
//!            kill is acknowledged; the node comes back and its replicas catch up; repeated
//! ```
//!
//! Each setup gets an unrecorded produce run of three warm-up periods first. Brook's
//! brokers run with their default liveness (heartbeat 500 ms, session 3 s), Kafka's with its
//! defaults (KRaft `broker.session.timeout.ms` 9 s); no fsync per write on either.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use brook_client::producer::{Producer, ProducerConfig, ProducerRecord};
use brook_client::{Connection, Security};
use brook_proto::v1::{CreateTopicsRequest, ErrorCode, NewTopic};
use brook_tests::cluster::Cluster;
use brook_tests::kafka::KafkaCluster;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::driver::Target;
use super::runner::default_settings;
use super::systems::{BrookProcess, Durability, Usage};
use super::workload::{self, Kind, Workload};

/// What to run.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The `brook-broker` binary.
    pub broker_bin: PathBuf,
    /// Measured time per workload.
    pub duration: Duration,
    /// Warm-up per workload.
    pub warmup: Duration,
    /// Leader kills per system in the failover measurement.
    pub kills: usize,
    /// The fixed rate, MB/s.
    pub rate_mb: f64,
}

/// Environment of every Brook broker of the 3-broker cluster.
const BROOK_CLUSTER_ENV: [(&str, &str); 3] = [
    ("BROOK_CLUSTER_MIN_INSYNC_REPLICAS", "2"),
    ("BROOK_LOG_FLUSH", "never"),
    ("BROOK_CLUSTER_LEADER_REBALANCE_INTERVAL_MS", "0"),
];

/// One setup's result for one workload.
#[derive(Debug, Clone)]
pub struct Row {
    /// Which setup.
    pub setup: String,
    /// Which workload.
    pub workload: String,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// p50, p99, p99.9 produce latency, ms.
    pub latency_ms: Option<(f64, f64, f64)>,
    /// Largest peak resident set of one broker, MiB.
    pub peak_rss_mib: f64,
}

fn workloads(o: &ClusterOptions) -> Vec<Workload> {
    let base = Workload {
        name: "produce-max".into(),
        kind: Kind::Produce,
        size: 1024,
        partitions: 4,
        producers: 1,
        consumers: 1,
        settings: default_settings(),
        rate_mb: None,
        warmup: o.warmup,
        duration: o.duration,
        consume_messages: 0,
    };
    vec![
        base.clone(),
        Workload {
            name: format!("produce-{}MBps", o.rate_mb),
            rate_mb: Some(o.rate_mb),
            ..base
        },
    ]
}

async fn brook_topic(addr: &str, name: &str, partitions: u32, rf: u32) -> anyhow::Result<()> {
    let conn = Connection::connect(addr).await?;
    let answer = conn
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
        .await?
        .into_inner();
    let r = &answer.results[0];
    if r.error_code != ErrorCode::None as i32 {
        bail!("creating {name}: {}", r.error_message);
    }
    Ok(())
}

async fn run_on(
    setup: &str,
    target: &Target,
    pids: &[u32],
    o: &ClusterOptions,
    create: impl AsyncFn(&str, u32) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    // An unrecorded produce run first (the JVM's JIT above all), as `compare` does.
    let mut warm = workloads(o).remove(0);
    warm.name = "warm-up".into();
    warm.duration = o.warmup * 3;
    let topic = format!("warm-up-{}", setup.replace(' ', "-"));
    create(&topic, warm.partitions).await?;
    workload::run(target, &warm, &topic, |_| {}).await?;
    for w in workloads(o) {
        let topic = format!("{}-{}", w.name, setup.replace(' ', "-"));
        create(&topic, w.partitions).await?;
        let usage: Vec<Usage> = pids.iter().map(|&p| Usage::start(p)).collect();
        let m = workload::run(target, &w, &topic, |_| {})
            .await
            .with_context(|| format!("{} on {setup}", w.name))?;
        let peak = (usage.iter().map(|u| u.finish().1).max()).unwrap_or(0);
        let latency_ms = m.latency.as_ref().map(|h| {
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            (ms(0.5), ms(0.99), ms(0.999))
        });
        let row = Row {
            setup: setup.into(),
            workload: w.name.clone(),
            msgs_per_sec: m.messages as f64 / m.seconds.max(1e-9),
            latency_ms,
            peak_rss_mib: peak as f64 / (1 << 20) as f64,
        };
        println!(
            "{:>22} {:>16}: {:>9.0} msg/s  {}  peak RSS {:.0} MiB",
            row.setup,
            row.workload,
            row.msgs_per_sec,
            row.latency_ms.map_or("-".into(), |(a, b, c)| format!(
                "p50 {a:.2} p99 {b:.2} p99.9 {c:.2} ms"
            )),
            row.peak_rss_mib
        );
        rows.push(row);
    }
    Ok(rows)
}

/// The leader of partition 0 of `topic` on a Brook cluster, as broker `ask` sees it.
async fn brook_leader(cluster: &Cluster, ask: i32, topic: &str) -> anyhow::Result<i32> {
    let m = cluster.metadata(ask).await?;
    let t = (m.topics.iter().find(|t| t.name == topic)).context("no failover topic")?;
    Ok(t.partitions[0].leader)
}

/// Waits until the partition has a leader and three in-sync replicas.
async fn brook_whole(cluster: &Cluster, ask: i32, topic: &str) {
    cluster
        .wait_metadata(ask, "a whole ISR", Duration::from_secs(120), |m| {
            m.topics.iter().any(|t| {
                t.name == topic
                    && t.partitions
                        .iter()
                        .all(|p| p.leader > 0 && p.isr.len() == 3)
            })
        })
        .await;
}

/// Leader kill to the first acknowledged record produced after it, `kills` times.
async fn brook_failover(cluster: &mut Cluster, kills: usize) -> anyhow::Result<Vec<f64>> {
    let topic = "failover";
    brook_topic(&cluster.node(1).grpc, topic, 1, 3).await?;
    brook_whole(cluster, 1, topic).await;
    let mut times = Vec::new();
    for round in 0..kills {
        let leader = brook_leader(cluster, 1, topic).await?;
        let ask = if leader == 1 { 2 } else { 1 };
        let controller = cluster.metadata(ask).await?.controller_id;
        let config = ProducerConfig::builder()
            .request_timeout(Duration::from_secs(5))
            .build()?;
        let producer = Producer::connect(&cluster.node(ask).grpc, config).await?;
        producer
            .send(ProducerRecord::new(topic, "warm").key("k"))
            .await?;
        cluster.kill(leader);
        let killed = Instant::now();
        producer
            .send(ProducerRecord::new(topic, format!("after-kill-{round}")).key("k"))
            .await?;
        let took = killed.elapsed().as_secs_f64() * 1000.0;
        let role = if controller == leader {
            " (it was also the controller)"
        } else {
            ""
        };
        println!(
            "brook failover {round}: broker {leader} killed{role}, produce acknowledged after {took:.0} ms"
        );
        times.push(took);
        producer.close().await;
        cluster.start_node(leader);
        brook_whole(cluster, ask, topic).await;
    }
    Ok(times)
}

fn kafka_leader(bootstrap: &str, topic: &str) -> anyhow::Result<(i32, usize)> {
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let md = probe.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let p = &md.topics()[0].partitions()[0];
    Ok((p.leader(), p.isr().len()))
}

async fn kafka_failover(kafka: &KafkaCluster, kills: usize) -> anyhow::Result<Vec<f64>> {
    let topic = "failover";
    kafka.create_topic(topic, 1, 3)?;
    let bootstrap = kafka.bootstrap();
    let mut times = Vec::new();
    for round in 0..kills {
        let (leader, _) = kafka_leader(&bootstrap, topic)?;
        let node = usize::try_from(leader).context("Kafka partition without a leader")?;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()?;
        let send = |value: String| {
            let producer = producer.clone();
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key("k").payload(&value),
                        Duration::from_secs(120),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("Kafka produce: {e}"))
            }
        };
        send("warm".into()).await?;
        let pid = kafka.pid(node).context("Kafka leader pid")?;
        let killed_ok = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?
            .success();
        if !killed_ok {
            bail!("kill -KILL {pid} failed");
        }
        let killed = Instant::now();
        send(format!("after-kill-{round}")).await?;
        let took = killed.elapsed().as_secs_f64() * 1000.0;
        println!(
            "kafka failover {round}: node {node} killed, produce acknowledged after {took:.0} ms"
        );
        times.push(took);
        drop(producer);
        // Let the script notice the dead node, then bring it back.
        let _ = kafka.stop_node(node);
        kafka.start_node(node)?;
        for _ in 0..600 {
            if kafka_leader(&bootstrap, topic)?.1 == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(times)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        f64::NAN
    } else {
        s[s.len() / 2]
    }
}

/// Runs everything and returns the report (markdown).
pub async fn run(o: &ClusterOptions) -> anyhow::Result<String> {
    let mut rows = Vec::new();
    let scratch = tempfile::tempdir()?;

    // Brook, one broker, RF 1.
    {
        let broker = BrookProcess::start(&o.broker_bin, scratch.path(), Durability::NoFsync)?;
        let target = Target::Brook {
            addr: broker.addr.clone(),
            security: Security::plaintext(),
        };
        let addr = broker.addr.clone();
        rows.extend(
            run_on(
                "Brook 1 broker RF 1",
                &target,
                &[broker.pid()],
                o,
                async |t, p| brook_topic(&addr, t, p, 1).await,
            )
            .await?,
        );
    }

    // Brook, three brokers, RF 3.
    let brook_failovers = {
        let mut cluster = Cluster::start_with_binary(&o.broker_bin, 3, &BROOK_CLUSTER_ENV);
        cluster
            .wait_metadata(1, "three brokers", Duration::from_secs(60), |m| {
                m.brokers.len() == 3
            })
            .await;
        let addr = (1..=3)
            .map(|i| cluster.node(i).grpc.clone())
            .collect::<Vec<_>>()
            .join(",");
        let target = Target::Brook {
            addr,
            security: Security::plaintext(),
        };
        let pids: Vec<u32> = (1..=3).filter_map(|i| cluster.pid(i)).collect();
        let first = cluster.node(1).grpc.clone();
        rows.extend(
            run_on("Brook 3 brokers RF 3", &target, &pids, o, async |t, p| {
                brook_topic(&first, t, p, 3).await?;
                brook_whole(&cluster, 1, t).await;
                Ok(())
            })
            .await?,
        );
        brook_failover(&mut cluster, o.kills).await?
    };

    // Kafka, three nodes, RF 3, min.insync.replicas 2.
    let kafka_failovers = {
        let kafka = KafkaCluster::start(3)?;
        let target = Target::Kafka {
            bootstrap: kafka.bootstrap(),
        };
        let pids: Vec<u32> = (1..=3).filter_map(|i| kafka.pid(i)).collect();
        rows.extend(
            run_on("Kafka 3 nodes RF 3", &target, &pids, o, async |t, p| {
                kafka.create_topic(t, p, 3)
            })
            .await?,
        );
        kafka_failover(&kafka, o.kills).await?
    };

    let mut md = String::new();
    writeln!(
        md,
        "| setup | workload | msg/s | p50 ms | p99 ms | p99.9 ms | peak RSS per broker (MiB) |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|")?;
    for r in &rows {
        let (a, b, c) = r
            .latency_ms
            .map_or(("–".into(), "–".into(), "–".into()), |(a, b, c)| {
                (format!("{a:.2}"), format!("{b:.2}"), format!("{c:.2}"))
            });
        writeln!(
            md,
            "| {} | {} | {:.0} | {a} | {b} | {c} | {:.0} |",
            r.setup, r.workload, r.msgs_per_sec, r.peak_rss_mib
        )?;
    }
    writeln!(md)?;
    writeln!(
        md,
        "| failover (SIGKILL of the leader to the first acknowledged produce) | median ms | all, ms |"
    )?;
    writeln!(md, "|---|---:|---|")?;
    for (name, times) in [("Brook", &brook_failovers), ("Kafka", &kafka_failovers)] {
        let all: Vec<String> = times.iter().map(|t| format!("{t:.0}")).collect();
        writeln!(md, "| {name} | {:.0} | {} |", median(times), all.join(", "))?;
    }
    Ok(md)
}
