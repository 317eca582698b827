//! The two clients behind one interface, configured alike: brook-client for Brook, rdkafka
//! (librdkafka) for Kafka. Same message size, partitions, batching (batch bytes and linger),
//! compression and acks; idempotence on with acks=all, as Kafka recommends. The target's
//! address may list several brokers (`host:port,host:port`).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use brook_client::consumer::{GroupConsumer, GroupMemberConfig, NoListener};
use brook_client::producer::Acks;
use brook_client::{
    AutoOffsetReset, Connection, Consumer, ConsumerConfig, Producer, ProducerConfig,
    ProducerRecord, Security, TopicPartition,
};
use brook_proto::Compression;
use brook_proto::v1::{CreateTopicsRequest, ErrorCode, NewTopic};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic as KafkaNewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Producer settings both systems get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerSettings {
    /// Largest batch, bytes (Brook `batch_bytes`, Kafka `batch.size`).
    pub batch_bytes: usize,
    /// How long a batch waits to fill (Brook `linger`, Kafka `linger.ms`).
    pub linger_ms: u64,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// `0`, `1` or `all`.
    pub acks: String,
}

impl ProducerSettings {
    fn brook_acks(&self) -> anyhow::Result<Acks> {
        Ok(match self.acks.as_str() {
            "0" => Acks::None,
            "1" => Acks::Leader,
            "all" => Acks::All,
            other => bail!("acks must be 0, 1 or all, not {other:?}"),
        })
    }

    fn brook_compression(&self) -> anyhow::Result<Compression> {
        Ok(match self.compression.as_str() {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            other => bail!("compression must be none, gzip, snappy, lz4 or zstd, not {other:?}"),
        })
    }
}

/// A system to run workloads against.
#[derive(Debug, Clone)]
pub enum Target {
    /// Brook brokers (the first address bootstraps).
    Brook {
        /// `host:port[,host:port...]`.
        addr: String,
        /// Plain text or TLS.
        security: Security,
    },
    /// Kafka brokers.
    Kafka {
        /// `bootstrap.servers`.
        bootstrap: String,
    },
}

/// Resolves when a sent message is acknowledged.
pub type Ack = BoxFuture<'static, anyhow::Result<()>>;

/// A producer of either system.
#[derive(Clone)]
pub enum AnyProducer {
    /// brook-client.
    Brook(Producer),
    /// rdkafka.
    Kafka(FutureProducer),
}

/// A consumer of either system.
pub enum AnyConsumer {
    /// brook-client, assigned partitions.
    Brook(Consumer),
    /// brook-client, a group member.
    BrookGroup(Box<GroupConsumer>),
    /// rdkafka, assigned partitions or a group member.
    Kafka(StreamConsumer),
}

impl Target {
    /// The system's name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Brook { .. } => "brook",
            Target::Kafka { .. } => "kafka",
        }
    }

    fn brook_bootstrap(addr: &str) -> &str {
        addr.split(',').next().unwrap_or(addr)
    }

    /// Creates `topic` with `partitions` partitions (the broker's default replication).
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> anyhow::Result<()> {
        match self {
            Target::Brook { addr, security } => {
                let conn =
                    Connection::connect_with(Target::brook_bootstrap(addr), security).await?;
                let res = conn
                    .admin()
                    .create_topics(CreateTopicsRequest {
                        topics: vec![NewTopic {
                            name: topic.into(),
                            partitions,
                            replication_factor: 0,
                            configs: Default::default(),
                        }],
                        validate_only: false,
                    })
                    .await?
                    .into_inner();
                let r = &res.results[0];
                if r.error_code() != ErrorCode::None {
                    bail!("creating Brook topic {topic}: {}", r.error_message);
                }
            }
            Target::Kafka { bootstrap } => {
                let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .create()?;
                let new = KafkaNewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1));
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                for r in admin.create_topics([&new], &opts).await? {
                    r.map_err(|(t, code)| anyhow!("creating Kafka topic {t}: {code}"))?;
                }
                // Wait until every partition has a leader.
                let probe: StreamConsumer = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .set("group.id", "brook-bench-probe")
                    .create()?;
                for _ in 0..100 {
                    let md = probe.fetch_metadata(Some(topic), Duration::from_secs(5))?;
                    let ready = md.topics().first().is_some_and(|t| {
                        t.error().is_none()
                            && t.partitions().len() == partitions as usize
                            && t.partitions().iter().all(|p| p.leader() >= 0)
                    });
                    if ready {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                bail!("Kafka topic {topic} has no leaders after 10 s");
            }
        }
        Ok(())
    }

    /// A producer with `settings`.
    pub async fn producer(&self, settings: &ProducerSettings) -> anyhow::Result<AnyProducer> {
        match self {
            Target::Brook { addr, security } => {
                let acks = settings.brook_acks()?;
                let config = ProducerConfig {
                    acks,
                    linger: Duration::from_millis(settings.linger_ms),
                    batch_bytes: settings.batch_bytes,
                    compression: settings.brook_compression()?,
                    idempotence: acks == Acks::All,
                    buffer_bytes: 64 << 20,
                    ..ProducerConfig::default()
                };
                let conn = Connection::connect_with(Target::brook_bootstrap(addr), security)
                    .await
                    .context("Brook producer")?;
                let producer = Producer::new(conn, config)
                    .await
                    .context("Brook producer")?;
                Ok(AnyProducer::Brook(producer))
            }
            Target::Kafka { bootstrap } => {
                let producer: FutureProducer = ClientConfig::new()
                    .set("bootstrap.servers", bootstrap)
                    .set("acks", &settings.acks)
                    .set(
                        "enable.idempotence",
                        if settings.acks == "all" {
                            "true"
                        } else {
                            "false"
                        },
                    )
                    .set("linger.ms", settings.linger_ms.to_string())
                    .set("batch.size", settings.batch_bytes.to_string())
                    .set("compression.type", &settings.compression)
                    .set("max.in.flight.requests.per.connection", "5")
                    // Kafka's Java client buffers 32 MiB by default; give librdkafka as much
                    // room as Brook's producer gets.
                    .set("queue.buffering.max.kbytes", "65536")
                    .create()
                    .context("Kafka producer")?;
                Ok(AnyProducer::Kafka(producer))
            }
        }
    }

    /// A consumer of `topic`: a member of `group` when given, else assigned `partitions`
    /// (all when `None`) from their beginning.
    pub async fn consumer(
        &self,
        topic: &str,
        partitions: Option<Vec<u32>>,
        group: Option<&str>,
    ) -> anyhow::Result<AnyConsumer> {
        match self {
            Target::Brook { addr, security } => {
                let conn =
                    Connection::connect_with(Target::brook_bootstrap(addr), security).await?;
                let config = ConsumerConfig::builder()
                    .bootstrap(conn.addr())
                    .auto_offset_reset(AutoOffsetReset::Earliest)
                    .max_poll_records(10_000)
                    .build()?;
                if let Some(group) = group {
                    let member = GroupConsumer::subscribe(
                        conn,
                        config,
                        GroupMemberConfig {
                            group_id: group.into(),
                            topics: vec![topic.into()],
                            auto_commit: Some(Duration::from_secs(5)),
                        },
                        Box::new(NoListener),
                    )?;
                    return Ok(AnyConsumer::BrookGroup(Box::new(member)));
                }
                let mut consumer = Consumer::with_connection(conn, config);
                let tps: Vec<TopicPartition> = partitions
                    .context("assigned partitions")?
                    .into_iter()
                    .map(|p| TopicPartition::new(topic, p))
                    .collect();
                consumer.assign(&tps);
                consumer.seek_to_beginning(&tps)?;
                Ok(AnyConsumer::Brook(consumer))
            }
            Target::Kafka { bootstrap } => {
                let mut config = ClientConfig::new();
                config
                    .set("bootstrap.servers", bootstrap)
                    .set("group.id", group.unwrap_or("brook-bench-assigned"))
                    .set("auto.offset.reset", "earliest")
                    .set(
                        "enable.auto.commit",
                        if group.is_some() { "true" } else { "false" },
                    );
                let consumer: StreamConsumer = config.create().context("Kafka consumer")?;
                if group.is_some() {
                    consumer.subscribe(&[topic])?;
                } else {
                    let mut list = TopicPartitionList::new();
                    for p in partitions.context("assigned partitions")? {
                        list.add_partition_offset(topic, p as i32, Offset::Beginning)?;
                    }
                    consumer.assign(&list)?;
                }
                Ok(AnyConsumer::Kafka(consumer))
            }
        }
    }
}

impl AnyProducer {
    /// Enqueues one message (waiting while the client's buffer is full) and returns its
    /// acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<Bytes>,
        payload: Bytes,
    ) -> anyhow::Result<Ack> {
        match self {
            AnyProducer::Brook(p) => {
                let record = ProducerRecord {
                    topic: topic.to_string(),
                    partition: None,
                    key,
                    value: Some(payload),
                    headers: Vec::new(),
                    timestamp: None,
                };
                let delivery = p.enqueue(record).await?;
                Ok(delivery
                    .map(|r| r.map(|_| ()).map_err(anyhow::Error::from))
                    .boxed())
            }
            AnyProducer::Kafka(p) => {
                let mut record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(topic).payload(payload.as_ref());
                if let Some(k) = &key {
                    record = record.key(k.as_ref());
                }
                loop {
                    match p.send_result(record) {
                        Ok(delivery) => {
                            return Ok(delivery
                                .map(|r| match r {
                                    Ok(Ok(_)) => Ok(()),
                                    Ok(Err((e, _))) => Err(anyhow::Error::from(e)),
                                    Err(_) => Err(anyhow!("the Kafka producer was dropped")),
                                })
                                .boxed());
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err((e, _)) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// Sends whatever is buffered and waits for it.
    pub async fn flush(&self) {
        match self {
            AnyProducer::Brook(p) => p.flush().await,
            AnyProducer::Kafka(p) => {
                let p = p.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    rdkafka::producer::Producer::flush(&p, Duration::from_secs(60))
                })
                .await;
            }
        }
    }
}

/// Most messages one `poll` returns.
const POLL_MAX: usize = 10_000;

impl AnyConsumer {
    /// The next messages' payloads (waits up to `max_wait` for the first).
    pub async fn poll(&mut self, max_wait: Duration) -> anyhow::Result<Vec<Bytes>> {
        let values = |rs: Vec<brook_client::ConsumerRecord>| -> Vec<Bytes> {
            rs.into_iter().filter_map(|r| r.value).collect()
        };
        match self {
            AnyConsumer::Brook(c) => Ok(values(c.poll(max_wait).await?)),
            AnyConsumer::BrookGroup(c) => Ok(values(c.poll(max_wait).await?)),
            AnyConsumer::Kafka(c) => {
                let first = match tokio::time::timeout(max_wait, c.recv()).await {
                    Err(_) => return Ok(Vec::new()),
                    Ok(m) => m?,
                };
                let mut out = Vec::with_capacity(256);
                out.push(Bytes::copy_from_slice(first.payload().unwrap_or_default()));
                drop(first);
                while out.len() < POLL_MAX {
                    match c.recv().now_or_never() {
                        Some(Ok(m)) => {
                            out.push(Bytes::copy_from_slice(m.payload().unwrap_or_default()))
                        }
                        Some(Err(e)) => return Err(e.into()),
                        None => break,
                    }
                }
                Ok(out)
            }
        }
    }

    /// Partitions held (group members: once the group assigned them).
    pub fn assigned(&self) -> usize {
        match self {
            AnyConsumer::Brook(c) => c.assignment().len(),
            AnyConsumer::BrookGroup(c) => c.assignment().len(),
            AnyConsumer::Kafka(c) => c.assignment().map_or(0, |l| l.count()),
        }
    }
}
