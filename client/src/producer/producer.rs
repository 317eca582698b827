//! [`Producer`]: the cloneable handle applications send records through.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brook_proto::v1::InitProducerIdRequest;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::check_code;
use crate::{ClientError, Connection};

use super::buffer::{Appended, RecordBuffer};
use super::config::MAX_BATCH_BYTES;
use super::sender::{Command, ProducerId, Sender};
use super::{Backpressure, ProducerConfig, ProducerError, ProducerRecord, RecordMetadata};

pub use super::delivery::DeliveryFuture;

/// Capacity of the channel from handles to the sender task (flushes, closes and the first
/// records of topics the producer has not seen yet).
const COMMAND_CHANNEL: usize = 1024;

/// A batching, retrying, by default idempotent producer.
///
/// Cheap to clone; every clone feeds the same background sender task. The task stops after
/// [`Producer::close`], or once every handle is dropped and every accepted record is resolved.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use brook_client::producer::{Producer, ProducerConfig, ProducerRecord};
/// let producer = Producer::connect("127.0.0.1:7400", ProducerConfig::default()).await?;
/// let meta = producer.send(ProducerRecord::new("orders", "hello").key("k1")).await?;
/// println!("written to partition {} at offset {:?}", meta.partition, meta.offset);
/// producer.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ProducerConfig,
    commands: mpsc::Sender<Command>,
    buffer: Arc<RecordBuffer>,
    memory: Arc<Semaphore>,
    producer_id: Option<(i64, i16)>,
}

impl Producer {
    /// Connects to the broker at `bootstrap` and starts a producer.
    pub async fn connect(
        bootstrap: &str,
        config: ProducerConfig,
    ) -> Result<Producer, ProducerError> {
        let conn = Connection::connect(bootstrap)
            .await
            .map_err(|err| ProducerError::Setup(Arc::new(err)))?;
        Producer::new(conn, config).await
    }

    /// Starts a producer over an existing connection: validates the config, obtains a
    /// producer id when idempotent, and spawns the sender task.
    pub async fn new(
        bootstrap: Connection,
        config: ProducerConfig,
    ) -> Result<Producer, ProducerError> {
        config.validate()?;
        let producer_id = if config.idempotence {
            Some(
                init_producer_id(&bootstrap)
                    .await
                    .map_err(|err| ProducerError::Setup(Arc::new(err)))?,
            )
        } else {
            None
        };
        let memory = Arc::new(Semaphore::new(config.buffer_bytes));
        let (commands, rx) = mpsc::channel(COMMAND_CHANNEL);
        let buffer = Arc::new(RecordBuffer::new(&config));
        let sender = Sender::new(
            config.clone(),
            bootstrap,
            producer_id,
            memory.clone(),
            buffer.clone(),
        );
        tokio::spawn(sender.run(rx));
        Ok(Producer {
            inner: Arc::new(Inner {
                config,
                commands,
                buffer,
                memory,
                producer_id: producer_id.map(|p| (p.id, p.epoch)),
            }),
        })
    }

    /// The config in force.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// The idempotent producer's id and epoch (`None` without idempotence).
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.inner.producer_id
    }

    /// Bytes of the record buffer free now.
    pub fn available_bytes(&self) -> usize {
        self.inner.memory.available_permits()
    }

    /// Sends a record and waits for its acknowledgement.
    pub async fn send(&self, record: ProducerRecord) -> Result<RecordMetadata, ProducerError> {
        self.enqueue(record).await?.await
    }

    /// Puts a record into the buffer and returns as soon as it is accepted, with a future for
    /// its acknowledgement, so callers can pipeline. When the buffer is full this applies the
    /// configured [`Backpressure`].
    pub async fn enqueue(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProducerError> {
        let config = &self.inner.config;
        let size = record.size();
        let limit = config.buffer_bytes.min(MAX_BATCH_BYTES);
        if size > limit {
            return Err(ProducerError::RecordTooLarge {
                size,
                limit,
                setting: if limit == config.buffer_bytes {
                    "buffer_bytes"
                } else {
                    "the largest batch"
                },
            });
        }
        let permits = u32::try_from(size).expect("a record is smaller than 4 GiB");
        let memory = &self.inner.memory;
        let permit = match config.backpressure {
            Backpressure::FailFast => {
                memory
                    .try_acquire_many(permits)
                    .map_err(|_| ProducerError::BufferFull {
                        requested: size,
                        available: memory.available_permits(),
                        limit: config.buffer_bytes,
                    })?
            }
            Backpressure::Block => memory
                .acquire_many(permits)
                .await
                .map_err(|_| ProducerError::Closed)?,
            Backpressure::BlockFor(wait) => {
                match tokio::time::timeout(wait, memory.acquire_many(permits)).await {
                    Ok(permit) => permit.map_err(|_| ProducerError::Closed)?,
                    Err(_) => return Err(ProducerError::BufferFullTimeout { waited: wait }),
                }
            }
        };
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        // Until the record is in a batch or a queued command the permit is held here, so a
        // refusal, a caller dropping this future or a closed producer gives the bytes back.
        // From there the sender task gives them back when the record is settled.
        let record = match self.inner.buffer.append(record, size, timestamp) {
            Appended::Done(delivery) => {
                permit.forget();
                return Ok(delivery);
            }
            Appended::Refused(ProducerError::Closed) => return Err(ProducerError::Closed),
            Appended::Refused(error) => return Ok(DeliveryFuture::failed(error)),
            Appended::UnknownTopic(record) => record,
        };
        // The topic's partitions are not known yet: the sender loads them and appends.
        let (reply, rx) = oneshot::channel();
        let command = Command::Send {
            record,
            memory: size,
            timestamp,
            reply,
        };
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| ProducerError::Closed)?;
        permit.forget();
        Ok(rx
            .await
            .unwrap_or_else(|_| DeliveryFuture::failed(ProducerError::Closed)))
    }

    /// Seals every open batch and waits until every record enqueued so far is resolved
    /// (acknowledged or failed).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.commands.send(Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Flushes and stops the sender task; later `enqueue` calls fail with
    /// [`ProducerError::Closed`].
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.commands.send(Command::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

pub(crate) async fn init_producer_id(conn: &Connection) -> Result<ProducerId, ClientError> {
    let response = conn
        .broker()
        .init_producer_id(InitProducerIdRequest {
            producer_id: -1,
            producer_epoch: -1,
        })
        .await?
        .into_inner();
    check_code("", None, response.error_code, &response.error_message)?;
    let epoch = i16::try_from(response.producer_epoch).map_err(|_| {
        ClientError::Protocol(format!(
            "producer epoch {} does not fit 16 bits",
            response.producer_epoch
        ))
    })?;
    Ok(ProducerId {
        id: response.producer_id,
        epoch,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}
