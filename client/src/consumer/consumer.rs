//! [`Consumer`]: the application's handle. It assigns partitions, seeks, and polls records
//! the fetcher task prefetched.

use std::sync::Arc;
use std::time::Duration;

use brook_proto::Offset;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::assignment::{ResetTo, Shared};
use super::fetcher::Fetcher;
use super::{ConsumerConfig, ConsumerRecord, TopicPartition};
use crate::{ClientError, Connection};

/// A consumer of manually assigned partitions.
///
/// A background task fetches ahead while the application works: it keeps one Fetch in
/// flight per partition leader and buffers the records of each partition up to
/// [`ConsumerConfig::partition_buffer_bytes`]; [`Consumer::poll`] takes from those buffers.
/// Every batch is CRC-checked and decoded (decompressed) before its records are buffered.
///
/// Positions: a newly assigned partition starts per [`ConsumerConfig::auto_offset_reset`];
/// the `seek*` methods move it. A seek takes effect at once: records buffered for the
/// partition are dropped, and an answer already in flight for it is ignored when it arrives.
///
/// Errors: retriable failures (broker unreachable, leader moving, unknown topic) are retried
/// with exponential backoff and reported by `poll` only after they lasted
/// [`ConsumerConfig::retry_timeout`]. A corrupt batch, an offset out of range with
/// [`AutoOffsetReset::None`](super::AutoOffsetReset::None), or a partition without a position
/// stops that partition: `poll` returns its records up to the problem, then the error, on
/// every call until the partition is sought.
///
/// Dropping the consumer stops its task; [`Consumer::close`] also waits for it.
#[derive(Debug)]
pub struct Consumer {
    shared: Arc<Shared>,
    config: ConsumerConfig,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Consumer {
    /// Connects to `config`'s bootstrap broker and starts the fetcher task. Fails with
    /// [`ClientError::Connect`] when the broker cannot be reached.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let connection = Connection::connect(config.bootstrap()).await?;
        Ok(Consumer::with_connection(connection, config))
    }

    /// Starts a consumer over an existing connection to a broker (its metadata names the
    /// others); `config.bootstrap()` is not used.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the fetcher task is spawned on the current one).
    pub fn with_connection(connection: Connection, config: ConsumerConfig) -> Consumer {
        let shared = Arc::new(Shared::new(config.auto_offset_reset()));
        let cancel = CancellationToken::new();
        let fetcher = Fetcher::new(Arc::clone(&shared), config.clone(), connection);
        let task = tokio::spawn(fetcher.run(cancel.clone()));
        Consumer {
            shared,
            config,
            cancel,
            task: Some(task),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// Replaces the assignment with `partitions` (duplicates ignored; empty unassigns
    /// everything). Partitions that stay keep their position and buffered records; new ones
    /// start per `auto_offset_reset`. Partitions are not checked here: a topic or partition
    /// that does not exist is retried, then reported by `poll` after the retry timeout.
    pub fn assign(&mut self, partitions: &[TopicPartition]) {
        self.shared.state.lock().assign(partitions);
        self.shared.wake.notify_one();
    }

    /// The assigned partitions, in topic and partition order.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.state.lock().assigned()
    }

    /// Returns buffered records, waiting up to `timeout` for some to arrive: at most
    /// [`ConsumerConfig::max_poll_records`], in offset order within each partition, starting
    /// with a different partition each call so every partition gets its turn. An empty
    /// vector means nothing arrived in time.
    ///
    /// Fails when no partition is assigned, with a retriable error that lasted the retry
    /// timeout (once), and with a partition's sticky error (see [`Consumer`]) once its
    /// buffered records have been returned. Cancel-safe: records are taken only when the
    /// call returns them.
    ///
    /// # Panics
    ///
    /// If the fetcher task panicked (its panic is reported first).
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = Instant::now().checked_add(timeout);
        let max = self.config.max_poll_records();
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            // Register before looking, so a change between the look and the wait is not
            // missed.
            changed.as_mut().enable();
            let records = self.shared.state.lock().drain(max)?;
            if !records.is_empty() {
                self.shared.wake.notify_one();
                return Ok(records);
            }
            self.check_fetcher();
            let expired = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut changed => {}
                () = expired => return Ok(Vec::new()),
            }
        }
    }

    /// Makes the next record `poll` returns for `tp` the one at `offset` (or the first after
    /// it, on a compacted log). An offset outside the log is handled like any fetch out of
    /// range: per `auto_offset_reset`. Fails for an unassigned partition or a negative
    /// offset.
    pub fn seek(&mut self, tp: &TopicPartition, offset: Offset) -> Result<(), ClientError> {
        self.shared.state.lock().seek(tp, offset.get())?;
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Moves `partitions` to their log start offsets; an empty slice means every assigned
    /// partition (as in Kafka). The offsets are looked up in the background: `poll` and
    /// [`Consumer::position`] wait for them. Fails, changing nothing, if a partition is not
    /// assigned.
    pub fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<(), ClientError> {
        self.reset(partitions, ResetTo::Earliest)
    }

    /// Moves `partitions` to their ends (high watermarks): only records produced afterwards
    /// are returned. An empty slice means every assigned partition. Looked up in the
    /// background like [`Consumer::seek_to_beginning`].
    pub fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<(), ClientError> {
        self.reset(partitions, ResetTo::Latest)
    }

    /// Moves `partitions` to their first record with a timestamp at or after `timestamp`
    /// (milliseconds since the Unix epoch), or to their ends if there is none. An empty slice
    /// means every assigned partition. Looked up in the background like
    /// [`Consumer::seek_to_beginning`].
    pub fn seek_to_timestamp(
        &mut self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Result<(), ClientError> {
        self.reset(partitions, ResetTo::Timestamp(timestamp))
    }

    fn reset(&mut self, partitions: &[TopicPartition], to: ResetTo) -> Result<(), ClientError> {
        self.shared.state.lock().reset(partitions, to)?;
        self.shared.wake.notify_one();
        Ok(())
    }

    /// The offset of the next record `poll` will return for `tp`; waits while the position is
    /// being looked up (after assign or a `seek_to_*`). Fails for an unassigned partition, a
    /// partition without a position (reset policy `none`), a lookup the broker refused, and a
    /// retriable failure that lasted the retry timeout.
    ///
    /// # Panics
    ///
    /// If the fetcher task panicked.
    pub async fn position(&self, tp: &TopicPartition) -> Result<Offset, ClientError> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(offset) = self.shared.state.lock().position(tp)? {
                return Ok(Offset(offset));
            }
            self.check_fetcher();
            changed.await;
        }
    }

    /// Bytes of records buffered for `tp` that `poll` has not returned yet (keys, values and
    /// headers; see [`ConsumerRecord::size_in_bytes`]); 0 for an unassigned partition.
    pub fn buffered_bytes(&self, tp: &TopicPartition) -> usize {
        self.shared.state.lock().buffered_bytes(tp)
    }

    /// Stops the fetcher task, aborting requests in flight, and waits until it has stopped.
    /// Buffered records are dropped.
    ///
    /// # Panics
    ///
    /// If the fetcher task panicked.
    pub async fn close(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
            && err.is_panic()
        {
            std::panic::resume_unwind(err.into_panic());
        }
    }

    /// The fetcher only stops when the consumer is dropped or closed; stopping earlier means
    /// it panicked.
    fn check_fetcher(&self) {
        if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
            panic!(
                "the consumer's fetcher task stopped unexpectedly (its panic is reported above)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applications poll from spawned tasks: the handle and its futures must be `Send`.
    #[allow(dead_code)]
    fn consumer_and_its_futures_are_send(consumer: &mut Consumer, tp: &TopicPartition) {
        fn send<T: Send>(_: T) {}
        send(consumer.position(tp));
        send(consumer.poll(Duration::ZERO));
        fn sync<T: Sync>(_: &T) {}
        sync(consumer);
    }
}
