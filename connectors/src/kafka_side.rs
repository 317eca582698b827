//! The Kafka side of a pipeline, over rdkafka (librdkafka): [`KafkaReader`] (a member of a
//! Kafka consumer group, for `kafka-to-brook`) and [`KafkaWriter`] (an idempotent Kafka
//! producer, for `brook-to-kafka`).
//!
//! librdkafka's calls that wait on the network without a future (metadata, watermarks,
//! synchronous commits, flush) run on tokio's blocking pool.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;

use crate::config::{KafkaConfig, PipelineConfig, StartFrom};
use crate::error::{ConnectError, Side};
use crate::offsets::SourcePartition;
use crate::pipeline::{Delivery, Reader, Writer};
use crate::record::MirrorRecord;

/// How long one metadata, watermark or commit call may wait.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most records one `poll` returns.
const POLL_RECORDS: usize = 2000;

fn client_err(operation: &'static str, err: impl std::fmt::Display) -> ConnectError {
    ConnectError::client(Side::Kafka, operation, err)
}

/// The client configuration every Kafka client of the connector starts from: the bootstrap
/// servers, then the user's properties.
fn base_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap);
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

/// Runs a blocking librdkafka call on the blocking pool.
async fn blocking<T: Send + 'static>(
    operation: &'static str,
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, ConnectError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|err| client_err(operation, err))?
        .map_err(|err| client_err(operation, err))
}

/// Partition counts of `topics`; a topic Kafka does not know is absent from the map.
fn partition_counts<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topics: &[String],
) -> Result<BTreeMap<String, u32>, KafkaError> {
    let mut out = BTreeMap::new();
    for topic in topics {
        let metadata = client.fetch_metadata(Some(topic), CALL_TIMEOUT)?;
        for t in metadata.topics() {
            match t.error() {
                None => {
                    out.insert(t.name().to_string(), t.partitions().len() as u32);
                }
                Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {}
                Some(code) => {
                    return Err(KafkaError::MetadataFetch(RDKafkaErrorCode::from(code)));
                }
            }
        }
    }
    Ok(out)
}

/// Checks within `timeout` that the Kafka cluster at `kafka.bootstrap` answers.
pub async fn check_reachable(kafka: &KafkaConfig, timeout: Duration) -> Result<(), ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable {
        side: Side::Kafka,
        bootstrap: kafka.bootstrap.clone(),
        reason,
    };
    let client: rdkafka::producer::BaseProducer = base_config(kafka)
        .create()
        .map_err(|err| unreachable(err.to_string()))?;
    tokio::task::spawn_blocking(move || client.client().fetch_metadata(None, timeout).map(|_| ()))
        .await
        .map_err(|err| unreachable(err.to_string()))?
        .map_err(|err| unreachable(err.to_string()))
}

/// Logs the Kafka consumer's rebalances. Records of a revoked partition that are still in
/// flight are simply not committed by this reader (`Reader::assigned`); the partition's next
/// owner reads them again.
#[derive(Default)]
pub struct ReaderContext;

impl ClientContext for ReaderContext {}

impl ConsumerContext for ReaderContext {
    fn pre_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = list.count(), "Kafka revoked partitions");
            }
            Rebalance::Assign(list) => {
                tracing::info!(partitions = list.count(), "Kafka assigned partitions");
            }
            Rebalance::Error(err) => tracing::warn!(cause = %err, "Kafka rebalance failed"),
        }
    }
}

/// Reads a pipeline's Kafka topics as a member of its consumer group, committing only what
/// the pipeline hands to [`Reader::commit`].
pub struct KafkaReader {
    consumer: Arc<StreamConsumer<ReaderContext>>,
    topics: Vec<String>,
    pipeline: String,
    /// Source partitions' topic names, shared by their records.
    names: BTreeMap<String, Arc<str>>,
}

impl KafkaReader {
    /// Creates the consumer and subscribes to the pipeline's topics.
    pub fn new(
        kafka: &KafkaConfig,
        pipeline: &PipelineConfig,
    ) -> Result<KafkaReader, ConnectError> {
        let mut config = base_config(kafka);
        config
            .set("group.id", pipeline.group_id())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match pipeline.start_from {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            );
        let consumer: StreamConsumer<ReaderContext> = config
            .create_with_context(ReaderContext)
            .map_err(|err| client_err("read", err))?;
        let topics: Vec<&str> = pipeline.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|err| client_err("read", err))?;
        Ok(KafkaReader {
            consumer: Arc::new(consumer),
            topics: pipeline.topics.clone(),
            pipeline: pipeline.name.clone(),
            names: pipeline
                .topics
                .iter()
                .map(|t| (t.clone(), Arc::from(t.as_str())))
                .collect(),
        })
    }

    fn record(&self, m: &rdkafka::message::BorrowedMessage<'_>) -> MirrorRecord {
        let topic = self
            .names
            .get(m.topic())
            .cloned()
            .unwrap_or_else(|| Arc::from(m.topic()));
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            Bytes::copy_from_slice(h.key.as_bytes()),
                            h.value.map(Bytes::copy_from_slice),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        MirrorRecord {
            topic,
            partition: m.partition() as u32,
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key().map(Bytes::copy_from_slice),
            value: m.payload().map(Bytes::copy_from_slice),
            headers,
        }
    }
}

impl Reader for KafkaReader {
    async fn partition_counts(&mut self) -> Result<BTreeMap<String, u32>, ConnectError> {
        let (consumer, topics) = (self.consumer.clone(), self.topics.clone());
        blocking("metadata", move || {
            partition_counts(consumer.client(), &topics)
        })
        .await
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<MirrorRecord>, ConnectError> {
        let first = match tokio::time::timeout(max_wait, self.consumer.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(Ok(message)) => message,
            // librdkafka reports a broker going away and similar events as consumer errors and
            // recovers by itself: count them and keep polling.
            Ok(Err(err @ KafkaError::MessageConsumption(_))) => {
                tracing::warn!(pipeline = %self.pipeline, cause = %err, "Kafka consumer error; librdkafka retries");
                metrics::counter!(
                    "brook_connect_errors_total",
                    "pipeline" => self.pipeline.clone(),
                    "kind" => "read"
                )
                .increment(1);
                return Ok(Vec::new());
            }
            Ok(Err(err)) => return Err(client_err("read", err)),
        };
        let mut out = Vec::with_capacity(64);
        out.push(self.record(&first));
        drop(first);
        while out.len() < POLL_RECORDS {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => out.push(self.record(&m)),
                Some(Err(err)) => {
                    tracing::warn!(pipeline = %self.pipeline, cause = %err, "Kafka consumer error");
                    break;
                }
                None => break,
            }
        }
        Ok(out)
    }

    fn assigned(&self) -> BTreeSet<SourcePartition> {
        match self.consumer.assignment() {
            Ok(list) => list
                .elements()
                .iter()
                .map(|e| {
                    let topic = self
                        .names
                        .get(e.topic())
                        .cloned()
                        .unwrap_or_else(|| Arc::from(e.topic()));
                    (topic, e.partition() as u32)
                })
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    async fn commit(
        &mut self,
        positions: &[(SourcePartition, i64)],
        _last: bool,
    ) -> Result<(), ConnectError> {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in positions {
            list.add_partition_offset(topic, *partition as i32, Offset::Offset(*offset))
                .map_err(|err| client_err("commit", err))?;
        }
        let consumer = self.consumer.clone();
        blocking("commit", move || consumer.commit(&list, CommitMode::Sync)).await
    }

    async fn end_offsets(
        &mut self,
        partitions: &[SourcePartition],
    ) -> Result<Vec<(SourcePartition, i64)>, ConnectError> {
        let (consumer, partitions) = (self.consumer.clone(), partitions.to_vec());
        blocking("metadata", move || {
            let mut out = Vec::with_capacity(partitions.len());
            for (topic, partition) in partitions {
                let (_, high) =
                    consumer.fetch_watermarks(&topic, partition as i32, CALL_TIMEOUT)?;
                out.push(((topic, partition), high));
            }
            Ok(out)
        })
        .await
    }

    async fn close(self) {
        let consumer = self.consumer;
        // Leaving the group (rather than timing out of it) hands the partitions over at once.
        let _ = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
    }
}

/// Writes records into Kafka with an idempotent producer (acks=all).
pub struct KafkaWriter {
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl KafkaWriter {
    /// Creates the producer (idempotent, acks=all, the pipeline's linger and batch size; the
    /// user's properties may override linger and batch size) and an admin client.
    pub fn new(
        kafka: &KafkaConfig,
        pipeline: &PipelineConfig,
    ) -> Result<KafkaWriter, ConnectError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &kafka.bootstrap)
            .set("linger.ms", pipeline.linger_ms.to_string())
            .set("batch.size", pipeline.batch_bytes.to_string())
            // Metadata lookups must not create topics with the broker's default layout.
            .set("allow.auto.create.topics", "false");
        for (key, value) in &kafka.properties {
            config.set(key, value);
        }
        config.set("enable.idempotence", "true").set("acks", "all");
        let producer: FutureProducer = config.create().map_err(|err| client_err("write", err))?;
        let admin: AdminClient<DefaultClientContext> = base_config(kafka)
            .create()
            .map_err(|err| client_err("create topic", err))?;
        Ok(KafkaWriter {
            producer,
            admin: Arc::new(admin),
        })
    }
}

impl Writer for KafkaWriter {
    async fn partitions(
        &mut self,
        topic: &str,
        create_with: Option<u32>,
    ) -> Result<Option<u32>, ConnectError> {
        let topics = vec![topic.to_string()];
        let producer = self.producer.clone();
        let lookup = {
            let topics = topics.clone();
            move || partition_counts(producer.client(), &topics)
        };
        if let Some(n) = blocking("metadata", lookup.clone()).await?.get(topic) {
            return Ok(Some(*n));
        }
        let Some(partitions) = create_with else {
            return Ok(None);
        };
        let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(-1));
        let options = AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT));
        let results = self
            .admin
            .create_topics([&new], &options)
            .await
            .map_err(|err| client_err("create topic", err))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(client_err("create topic", format!("{name}: {code}")));
                }
            }
        }
        tracing::info!(topic, partitions, "created the Kafka topic");
        // Metadata may lag the creation by a moment.
        for _ in 0..50 {
            if let Some(n) = blocking("metadata", lookup.clone()).await?.get(topic) {
                return Ok(Some(*n));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    async fn send(
        &self,
        topic: &str,
        partition: u32,
        record: &MirrorRecord,
    ) -> Result<Delivery, ConnectError> {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            let key = std::str::from_utf8(key).map_err(|_| ConnectError::BadRecord {
                topic: record.topic.to_string(),
                partition: record.partition,
                offset: record.offset,
                reason: format!(
                    "header key {key:?} is not UTF-8, which Kafka requires of header keys"
                ),
            })?;
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(partition as i32)
            .headers(headers);
        if let Some(key) = &record.key {
            out = out.key(key.as_ref());
        }
        if let Some(value) = &record.value {
            out = out.payload(value.as_ref());
        }
        if let Some(ts) = record.timestamp {
            out = out.timestamp(ts);
        }
        loop {
            match self.producer.send_result(out) {
                Ok(delivery) => {
                    return Ok(delivery
                        .map(|answer| match answer {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((err, _))) => Err(client_err("write", err)),
                            Err(_) => Err(client_err("write", "the producer was dropped")),
                        })
                        .boxed());
                }
                // librdkafka's queue is full: wait for deliveries to make room.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    out = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((err, _)) => return Err(client_err("write", err)),
            }
        }
    }

    async fn close(self) {
        let producer = self.producer;
        let _ = tokio::task::spawn_blocking(move || producer.flush(CALL_TIMEOUT)).await;
    }
}
