//! The batching consumer: hands the application batches of records (up to N records or after
//! T), runs the partitions' batches concurrently on a bounded pool while each partition's
//! records stay in order, and commits a partition only after its handler succeeded.
//!
//! ```text
//! loop: GroupConsumer::poll ─► accumulate per partition ─► full (N) or due (T)?
//!          ▲                                                     │ yes
//!          │      commit each partition's last offset + 1 ◀── run one handler per
//!          └──────────────────────────────────────────────── partition, ≤ workers at once
//! ```
//!
//! Delivery is at least once: a batch is committed after its handler returned `Ok`; if the
//! handler fails, the run stops with the error and the batch's records (and everything after
//! them) are delivered again to whoever reads the partition next. Handlers of one cycle all
//! finish before the next poll, so a rebalance (applied inside poll) never takes a partition
//! away while a batch of it is being processed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use brook_proto::Offset;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{ConsumerRecord, GroupConsumer, TopicPartition};
use crate::ClientError;

/// How batches are cut and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most records in one batch (of one partition).
    pub max_records: usize,
    /// A partition's batch is handed over at the latest this long after its first record.
    pub max_wait: Duration,
    /// Handlers running at once (each on a different partition).
    pub workers: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_records: 500,
            max_wait: Duration::from_millis(100),
            workers: 4,
        }
    }
}

/// Why a batch run stopped.
#[derive(Debug, thiserror::Error)]
pub enum BatchRunError<E> {
    /// The consumer failed (poll or commit).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A handler failed on a batch of `partition`; nothing of that batch was committed.
    #[error("handler failed on {partition} at offset {first_offset}: {source}")]
    Handler {
        /// The partition.
        partition: TopicPartition,
        /// Offset of the batch's first record.
        first_offset: i64,
        /// The handler's error.
        #[source]
        source: E,
    },
}

struct Pending {
    records: Vec<ConsumerRecord>,
    since: Instant,
}

/// Runs `handler` over batches until `shutdown` resolves (then finishes and commits what is
/// in hand) or a handler fails. Returns the number of records handled and committed.
pub async fn run_batches<H, Fut, E, S>(
    consumer: &mut GroupConsumer,
    config: BatchConfig,
    handler: H,
    shutdown: S,
) -> Result<u64, BatchRunError<E>>
where
    H: Fn(TopicPartition, Vec<ConsumerRecord>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
    S: Future<Output = ()>,
{
    let pool = Arc::new(Semaphore::new(config.workers.max(1)));
    let mut pending: BTreeMap<TopicPartition, Pending> = BTreeMap::new();
    let mut handled = 0u64;
    tokio::pin!(shutdown);
    let mut stopping = false;
    loop {
        if !stopping {
            let wait = pending
                .values()
                .map(|p| config.max_wait.saturating_sub(p.since.elapsed()))
                .min()
                .unwrap_or(config.max_wait);
            tokio::select! {
                biased;
                () = &mut shutdown => stopping = true,
                polled = consumer.poll(wait) => {
                    for r in polled? {
                        let tp = TopicPartition::new(r.topic.clone(), r.partition);
                        pending.entry(tp).or_insert_with(|| Pending { records: Vec::new(), since: Instant::now() }).records.push(r);
                    }
                }
            }
        }
        // Cut the batches that are full or due (everything, when stopping).
        let assigned: Vec<TopicPartition> = consumer.assignment();
        pending.retain(|tp, _| assigned.contains(tp));
        let due: Vec<TopicPartition> = pending
            .iter()
            .filter(|(_, p)| {
                stopping
                    || p.records.len() >= config.max_records
                    || p.since.elapsed() >= config.max_wait
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        let mut jobs = Vec::new();
        for tp in due {
            let mut p = pending.remove(&tp).expect("due partition is pending");
            let rest = p.records.split_off(p.records.len().min(config.max_records));
            if !rest.is_empty() {
                pending.insert(
                    tp.clone(),
                    Pending {
                        records: rest,
                        since: Instant::now(),
                    },
                );
            }
            let first = p.records[0].offset.0;
            let last = p.records[p.records.len() - 1].offset.0;
            let count = p.records.len() as u64;
            let pool = pool.clone();
            let handler = handler.clone();
            let tp2 = tp.clone();
            jobs.push((
                tp,
                first,
                last,
                count,
                tokio::spawn(async move {
                    let _permit = pool.acquire_owned().await.expect("pool open");
                    handler(tp2, p.records).await
                }),
            ));
        }
        // Every handler of this cycle finishes before the next poll (see the module docs).
        let mut commits = Vec::new();
        let mut failure = None;
        for (tp, first, last, count, job) in jobs {
            match job.await.expect("handler task panicked") {
                Ok(()) => {
                    commits.push((tp, Offset(last + 1)));
                    handled += count;
                }
                Err(source) => {
                    failure.get_or_insert(BatchRunError::Handler {
                        partition: tp,
                        first_offset: first,
                        source,
                    });
                }
            }
        }
        // Partitions whose handler succeeded are committed even when another one failed.
        consumer.commit_offsets(&commits).await?;
        if let Some(e) = failure {
            return Err(e);
        }
        if stopping && pending.is_empty() {
            return Ok(handled);
        }
    }
}
