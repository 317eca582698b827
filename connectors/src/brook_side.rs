//! The Brook side of a pipeline: [`BrookReader`] (a member of a Brook consumer group, for
//! `brook-to-kafka`) and [`BrookWriter`] (an idempotent Brook producer, for `kafka-to-brook`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use brook_client::connection::error_chain;
use brook_client::consumer::{GroupConsumer, GroupMemberConfig, NoListener};
use brook_client::error::check_code;
use brook_client::{
    AutoOffsetReset, ClientError, Connection, ConsumerConfig, Producer, ProducerConfig,
    ProducerRecord, Security, TopicPartition,
};
use brook_proto::v1::{
    CreateTopicsRequest, ErrorCode, ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
    MetadataRequest, NewTopic, OffsetSpec,
};
use brook_proto::{Header, Offset};
use futures::FutureExt;

use crate::config::{PipelineConfig, StartFrom};
use crate::error::{ConnectError, Side};
use crate::offsets::SourcePartition;
use crate::pipeline::{Delivery, Reader, Writer};
use crate::record::MirrorRecord;

fn client_err(operation: &'static str, err: &ClientError) -> ConnectError {
    ConnectError::client(Side::Brook, operation, error_chain(err))
}

/// Connects to the Brook broker at `bootstrap` within `timeout`.
pub async fn connect(
    bootstrap: &str,
    security: &Security,
    timeout: Duration,
) -> Result<Connection, ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable {
        side: Side::Brook,
        bootstrap: bootstrap.to_string(),
        reason,
    };
    let conn = tokio::time::timeout(timeout, Connection::connect_with(bootstrap, security))
        .await
        .map_err(|_| unreachable(format!("no answer within {} ms", timeout.as_millis())))?
        .map_err(|err| unreachable(error_chain(&err)))?;
    // A connection is lazy about errors: ask for metadata to know the broker serves.
    tokio::time::timeout(
        timeout,
        conn.broker().metadata(MetadataRequest { topics: vec![] }),
    )
    .await
    .map_err(|_| unreachable(format!("no answer within {} ms", timeout.as_millis())))?
    .map_err(|status| unreachable(error_chain(&ClientError::Rpc(status))))?;
    Ok(conn)
}

/// Partition counts of `topics` on Brook; a missing topic is absent from the map.
async fn partition_counts(
    conn: &Connection,
    topics: &[String],
) -> Result<BTreeMap<String, u32>, ConnectError> {
    let res = conn
        .broker()
        .metadata(MetadataRequest {
            topics: topics.to_vec(),
        })
        .await
        .map_err(|s| client_err("metadata", &ClientError::Rpc(s)))?
        .into_inner();
    let mut out = BTreeMap::new();
    for t in res.topics {
        match t.error_code() {
            ErrorCode::None => {
                out.insert(t.name, t.partitions.len() as u32);
            }
            ErrorCode::UnknownTopicOrPartition => {}
            _ => {
                return Err(client_err(
                    "metadata",
                    &check_code(&t.name, None, t.error_code, &t.error_message).unwrap_err(),
                ));
            }
        }
    }
    Ok(out)
}

/// Reads a pipeline's Brook topics as a member of its consumer group.
pub struct BrookReader {
    conn: Connection,
    consumer: GroupConsumer,
    topics: Vec<String>,
}

impl BrookReader {
    /// Joins the pipeline's group on `conn`, subscribed to its topics.
    pub fn new(conn: Connection, pipeline: &PipelineConfig) -> Result<BrookReader, ConnectError> {
        let reset = match pipeline.start_from {
            StartFrom::Earliest => AutoOffsetReset::Earliest,
            StartFrom::Latest => AutoOffsetReset::Latest,
        };
        let consumer_config = ConsumerConfig::builder()
            .bootstrap(conn.addr())
            .auto_offset_reset(reset)
            .build()
            .map_err(|err| client_err("read", &ClientError::InvalidArgument(err.to_string())))?;
        let consumer = GroupConsumer::subscribe(
            conn.clone(),
            consumer_config,
            GroupMemberConfig {
                group_id: pipeline.group_id(),
                topics: pipeline.topics.clone(),
                auto_commit: None,
            },
            Box::new(NoListener),
        )
        .map_err(|err| client_err("read", &err))?;
        Ok(BrookReader {
            conn,
            consumer,
            topics: pipeline.topics.clone(),
        })
    }
}

impl Reader for BrookReader {
    async fn partition_counts(&mut self) -> Result<BTreeMap<String, u32>, ConnectError> {
        partition_counts(&self.conn, &self.topics).await
    }

    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<MirrorRecord>, ConnectError> {
        let records = self
            .consumer
            .poll(max_wait)
            .await
            .map_err(|err| client_err("read", &err))?;
        Ok(records
            .into_iter()
            .map(|r| MirrorRecord {
                topic: r.topic,
                partition: r.partition,
                offset: r.offset.0,
                timestamp: Some(r.timestamp),
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
            })
            .collect())
    }

    fn assigned(&self) -> BTreeSet<SourcePartition> {
        self.consumer
            .assignment()
            .into_iter()
            .map(|tp| (tp.topic, tp.partition))
            .collect()
    }

    async fn commit(
        &mut self,
        positions: &[(SourcePartition, i64)],
        _last: bool,
    ) -> Result<(), ConnectError> {
        let offsets: Vec<(TopicPartition, Offset)> = positions
            .iter()
            .map(|((topic, partition), offset)| {
                (
                    TopicPartition {
                        topic: topic.clone(),
                        partition: *partition,
                    },
                    Offset(*offset),
                )
            })
            .collect();
        self.consumer
            .commit_offsets(&offsets)
            .await
            .map_err(|err| client_err("commit", &err))
    }

    async fn end_offsets(
        &mut self,
        partitions: &[SourcePartition],
    ) -> Result<Vec<(SourcePartition, i64)>, ConnectError> {
        let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let request = ListOffsetsRequest {
            topics: by_topic
                .into_iter()
                .map(|(topic, ps)| ListOffsetsTopic {
                    topic: topic.to_string(),
                    partitions: ps
                        .into_iter()
                        .map(|partition| ListOffsetsPartition {
                            partition,
                            spec: OffsetSpec::Latest.into(),
                            timestamp: 0,
                        })
                        .collect(),
                })
                .collect(),
        };
        let res = self
            .conn
            .broker()
            .list_offsets(request)
            .await
            .map_err(|s| client_err("metadata", &ClientError::Rpc(s)))?
            .into_inner();
        let mut out = Vec::new();
        for t in res.topics {
            let topic: Arc<str> = Arc::from(t.topic.as_str());
            for p in t.partitions {
                if p.error_code() == ErrorCode::None {
                    out.push(((topic.clone(), p.partition), p.offset));
                }
            }
        }
        Ok(out)
    }

    async fn close(self) {
        if let Err(err) = self.consumer.close().await {
            tracing::warn!(cause = %error_chain(&err), "leaving the Brook consumer group failed");
        }
    }
}

/// Writes records into Brook with an idempotent producer (acks=all).
pub struct BrookWriter {
    conn: Connection,
    producer: Producer,
}

impl BrookWriter {
    /// Starts an idempotent producer on `conn` with the pipeline's batching settings.
    pub async fn new(
        conn: Connection,
        pipeline: &PipelineConfig,
    ) -> Result<BrookWriter, ConnectError> {
        let config = ProducerConfig {
            linger: Duration::from_millis(pipeline.linger_ms),
            batch_bytes: pipeline.batch_bytes as usize,
            // The pipeline bounds what is in flight; the producer's buffer is the same
            // budget, at least a few batches.
            buffer_bytes: (pipeline.max_in_flight_bytes as usize)
                .max(4 * pipeline.batch_bytes as usize),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(conn.clone(), config)
            .await
            .map_err(|err| ConnectError::client(Side::Brook, "write", error_chain(&err)))?;
        Ok(BrookWriter { conn, producer })
    }
}

impl Writer for BrookWriter {
    async fn partitions(
        &mut self,
        topic: &str,
        create_with: Option<u32>,
    ) -> Result<Option<u32>, ConnectError> {
        let topics = [topic.to_string()];
        if let Some(n) = partition_counts(&self.conn, &topics).await?.get(topic) {
            return Ok(Some(*n));
        }
        let Some(partitions) = create_with else {
            return Ok(None);
        };
        let res = self
            .conn
            .admin()
            .create_topics(CreateTopicsRequest {
                topics: vec![NewTopic {
                    name: topic.to_string(),
                    partitions,
                    replication_factor: 0,
                    configs: Default::default(),
                }],
                validate_only: false,
            })
            .await
            .map_err(|s| client_err("create topic", &ClientError::Rpc(s)))?
            .into_inner();
        for r in res.results {
            // Another connector may have created it meanwhile.
            if r.error_code() != ErrorCode::TopicAlreadyExists {
                check_code(&r.name, None, r.error_code, &r.error_message)
                    .map_err(|err| client_err("create topic", &err))?;
            }
        }
        tracing::info!(topic, partitions, "created the Brook topic");
        Ok(partition_counts(&self.conn, &topics)
            .await?
            .get(topic)
            .copied())
    }

    async fn send(
        &self,
        topic: &str,
        partition: u32,
        record: &MirrorRecord,
    ) -> Result<Delivery, ConnectError> {
        let out = ProducerRecord {
            topic: topic.to_string(),
            partition: Some(partition),
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record
                .headers
                .iter()
                .map(|(key, value)| Header {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            timestamp: record.timestamp,
        };
        let delivery = self
            .producer
            .enqueue(out)
            .await
            .map_err(|err| ConnectError::client(Side::Brook, "write", error_chain(&err)))?;
        Ok(delivery
            .map(|result| {
                result
                    .map(|_| ())
                    .map_err(|err| ConnectError::client(Side::Brook, "write", error_chain(&err)))
            })
            .boxed())
    }

    async fn close(self) {
        self.producer.close().await;
    }
}
