//! `brook produce`: stdin lines to record batches to Produce requests.
//!
//! ```text
//! stdin ─▶ LineReader ─▶ Chunk (≤ batch-size records, ≤ max-batch-bytes, ≤ linger)
//!            │                 │ sealed
//!            │ (keeps reading  ▼
//!            │  while one    Sender: one batch per partition, one Produce per leader,
//!            │  chunk is in  retry NOT_LEADER / NOT_ENOUGH_REPLICAS until the
//!            │  flight)      request timeout ─▶ acknowledged count
//! ```
//!
//! One chunk is in flight at a time, so a partition's records are appended in input order;
//! the next chunk fills while the previous one is being acknowledged.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brook_proto::v1::{
    Acks, ErrorCode, PartitionProduceData, ProduceRequest, ProduceResponse, TopicProduceData,
};
use tokio::io::AsyncBufRead;
use tokio::time::Instant;

use super::args::ProduceArgs;
use super::chunk::{Assignment, Chunk, ChunkLimits, PartitionBatch};
use super::line_reader::{LineReader, LineRecord};
use super::router::{Router, backoff};
use crate::error::check_code;
use crate::{ClientError, Connection};

/// Extra time the client gives a produce request beyond the timeout it asks the broker to
/// keep, so the broker's `REQUEST_TIMED_OUT` (which names the partition) arrives first.
const CLIENT_TIMEOUT_MARGIN: Duration = Duration::from_secs(1);

/// Reads `input` line by line and produces every line to `args.topic`; returns the number of
/// records the brokers acknowledged, which on success is the number of lines.
///
/// Fails on the first error that retrying cannot fix (a per-partition error code other than
/// `NOT_LEADER` or `NOT_ENOUGH_REPLICAS`, or one of those lasting past
/// `args.request_timeout_ms`); records acknowledged before the error stay written.
pub async fn produce<R>(conn: &Connection, args: &ProduceArgs, input: R) -> Result<u64, ClientError>
where
    R: AsyncBufRead + Unpin,
{
    let router = Router::load(conn, &args.topic).await?;
    if let Some(partition) = args.partition {
        router.check_partition(partition)?;
    }
    let limits = ChunkLimits {
        max_records: args.batch_size as usize,
        max_bytes: args.max_batch_bytes as usize,
    };
    let linger = Duration::from_millis(args.linger_ms);
    let mut reader = LineReader::new(input, args.key_separator.as_deref());
    let mut sender = Some(Sender {
        router,
        topic: args.topic.clone(),
        acks: args.acks.into(),
        timeout: Duration::from_millis(args.request_timeout_ms),
        fixed_partition: args.partition,
        keyless_turn: 0,
    });
    let mut in_flight: Option<InFlight> = None;
    let mut chunk = Chunk::new();
    // A record that did not fit the chunk being filled: it starts the next one.
    let mut carry: Option<LineRecord> = None;
    // When the chunk being filled must be sent, full or not.
    let mut deadline: Option<Instant> = None;
    let mut eof = false;
    let mut acknowledged = 0u64;
    loop {
        if in_flight.is_none() && !chunk.is_empty() {
            let ready = eof
                || carry.is_some()
                || chunk.is_full(&limits)
                || deadline.is_some_and(|d| Instant::now() >= d);
            if ready {
                let mut s = sender
                    .take()
                    .expect("the sender is home when nothing is in flight");
                let sealed = std::mem::take(&mut chunk);
                in_flight = Some(Box::pin(async move {
                    let result = s.send(sealed).await;
                    (s, result)
                }));
                deadline = None;
                if let Some(record) = carry.take() {
                    chunk.push(record);
                    deadline = Some(Instant::now() + linger);
                }
            }
        }
        if eof && chunk.is_empty() && in_flight.is_none() {
            return Ok(acknowledged);
        }
        let can_read = !eof && carry.is_none() && !chunk.is_full(&limits);
        let linger_armed = in_flight.is_none() && deadline.is_some();
        tokio::select! {
            (s, result) = wait_in_flight(&mut in_flight) => {
                in_flight = None;
                sender = Some(s);
                acknowledged += result?;
            }
            next = reader.next_record(), if can_read => {
                match next.map_err(|source| ClientError::Io { context: "cannot read the input", source })? {
                    None => eof = true,
                    Some(record) if chunk.fits(&record, &limits) => {
                        if chunk.is_empty() {
                            deadline = Some(Instant::now() + linger);
                        }
                        chunk.push(record);
                    }
                    Some(record) => carry = Some(record),
                }
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if linger_armed => {
                // The chunk is due; the top of the loop sends it.
            }
        }
    }
}

/// A partition's answer to a produce: acknowledged, or the error it reported.
type Outcome = Result<(), ClientError>;

type InFlight = Pin<Box<dyn Future<Output = (Sender, Result<u64, ClientError>)> + Send>>;

/// Completes with the in-flight send, or never when there is none (its `select!` branch then
/// only waits on the others).
async fn wait_in_flight(in_flight: &mut Option<InFlight>) -> (Sender, Result<u64, ClientError>) {
    match in_flight {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

/// Sends sealed chunks; owns the routing so a chunk in flight can take it along.
struct Sender {
    router: Router,
    topic: String,
    acks: Acks,
    timeout: Duration,
    fixed_partition: Option<u32>,
    /// Counts chunks with keyless records: picks their partition round robin.
    keyless_turn: u32,
}

impl Sender {
    /// Produces one chunk; returns the records acknowledged.
    async fn send(&mut self, chunk: Chunk) -> Result<u64, ClientError> {
        let partitions = self.router.partition_count();
        let assignment = match self.fixed_partition {
            Some(p) => Assignment::Fixed(p),
            None => Assignment::ByKey {
                partitions,
                keyless: self.keyless_turn % partitions,
            },
        };
        if chunk.has_keyless() {
            self.keyless_turn = self.keyless_turn.wrapping_add(1);
        }
        let mut pending = chunk.into_batches(assignment, now_ms());
        let started = Instant::now();
        let mut acknowledged = 0u64;
        let mut attempt = 0;
        loop {
            let mut retry: Vec<(PartitionBatch, ClientError)> = Vec::new();
            let groups = self.router.by_leader(pending.iter().map(|b| b.partition));
            for (leader, partitions) in groups {
                let batches: Vec<PartitionBatch> = pending
                    .iter()
                    .filter(|b| partitions.contains(&b.partition))
                    .cloned()
                    .collect();
                let conn = self.router.connection(leader).await?;
                let response = self.request(&conn, &batches).await?;
                for (batch, outcome) in self.outcomes(batches, &response)? {
                    match outcome {
                        Ok(()) => acknowledged += u64::from(batch.records),
                        Err(err) if is_safe_to_resend(&err) => retry.push((batch, err)),
                        Err(err) => return Err(err),
                    }
                }
            }
            if retry.is_empty() {
                return Ok(acknowledged);
            }
            attempt += 1;
            let pause = backoff(attempt);
            if started.elapsed() + pause >= self.timeout {
                let (_, err) = retry.swap_remove(0);
                return Err(err);
            }
            for (batch, err) in &retry {
                tracing::warn!(topic = %self.topic, partition = batch.partition, cause = %err, attempt, "retrying produce");
            }
            tokio::time::sleep(pause).await;
            self.router.refresh().await?;
            pending = retry.into_iter().map(|(batch, _)| batch).collect();
        }
    }

    async fn request(
        &self,
        conn: &Connection,
        batches: &[PartitionBatch],
    ) -> Result<ProduceResponse, ClientError> {
        let message = ProduceRequest {
            acks: self.acks as i32,
            timeout_ms: u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX),
            topics: vec![TopicProduceData {
                topic: self.topic.clone(),
                partitions: batches
                    .iter()
                    .map(|b| PartitionProduceData {
                        partition: b.partition,
                        records: b.batch.clone(),
                    })
                    .collect(),
            }],
        };
        let limit = self.timeout + CLIENT_TIMEOUT_MARGIN;
        let mut request = tonic::Request::new(message);
        request.set_timeout(limit);
        let mut client = conn.broker();
        match tokio::time::timeout(limit, client.produce(request)).await {
            Ok(response) => Ok(response?.into_inner()),
            Err(_elapsed) => Err(ClientError::Timeout {
                operation: format!("produce to topic {} at {}", self.topic, conn.addr()),
                after: limit,
            }),
        }
    }

    /// Pairs each batch with its partition's outcome in `response`.
    fn outcomes(
        &self,
        batches: Vec<PartitionBatch>,
        response: &ProduceResponse,
    ) -> Result<Vec<(PartitionBatch, Outcome)>, ClientError> {
        let answers: Vec<_> = response
            .topics
            .iter()
            .filter(|t| t.topic == self.topic)
            .flat_map(|t| t.partitions.iter())
            .collect();
        batches
            .into_iter()
            .map(|batch| {
                let Some(answer) = answers.iter().find(|a| a.partition == batch.partition) else {
                    return Err(ClientError::Protocol(format!(
                        "the produce response has no outcome for topic {} partition {}",
                        self.topic, batch.partition
                    )));
                };
                let outcome = check_code(
                    &self.topic,
                    Some(batch.partition),
                    answer.error_code,
                    &answer.error_message,
                );
                Ok((batch, outcome))
            })
            .collect()
    }
}

/// Errors after which the batch was certainly not appended, so sending it again cannot
/// duplicate it.
fn is_safe_to_resend(err: &ClientError) -> bool {
    matches!(
        err.error_code(),
        Some(ErrorCode::NotLeader | ErrorCode::NotEnoughReplicas)
    )
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
