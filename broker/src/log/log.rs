//! [`Log`]: the handle to one partition's log. Cheap to clone; reads run on the caller's
//! side (positional reads or the map of a sealed segment), every mutation goes to the
//! writer thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use brook_proto::{BatchHeader, LeaderEpoch, Offset};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};

use super::producer_state::snapshots;
use super::recovery::recover;
use super::retention::RetentionOutcome;
use super::segment::TimestampOffset;
use super::writer::{AppendRequest, Command, Writer};
use super::{Clock, DirLock, LogConfig, LogError, Segment, SystemClock};
use crate::replication::{EpochCache, EpochEnd, EpochEntry};

/// Bound of the writer's command queue: appenders wait (backpressure) when it is full.
const QUEUE_DEPTH: usize = 4096;

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the batch's first record.
    pub base_offset: Offset,
    /// Offset of its last record.
    pub last_offset: Offset,
    /// The broker's clock when the batch was written (ms since the epoch).
    pub log_append_time_ms: i64,
}

/// State the writer publishes and readers consult.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    config: RwLock<Arc<LogConfig>>,
    pub clock: Arc<dyn Clock>,
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    pub start: AtomicI64,
    end: AtomicI64,
    pub flushed: AtomicI64,
    end_tx: watch::Sender<i64>,
    /// Leader epochs and where each starts (the `leader-epoch-checkpoint`); the writer
    /// changes it, readers answer epoch questions from it.
    pub epochs: RwLock<EpochCache>,
}

impl Shared {
    /// The configuration in force (it can change while the log is open).
    pub(crate) fn config(&self) -> Arc<LogConfig> {
        self.config.read().clone()
    }

    /// A snapshot of the segment list, oldest first; the last is the active segment.
    pub(crate) fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments.read().clone()
    }

    pub(crate) fn update_segments(&self, f: impl FnOnce(&mut Vec<Arc<Segment>>)) {
        let mut guard = self.segments.write();
        let mut list = Vec::clone(&guard);
        f(&mut list);
        *guard = Arc::new(list);
    }

    pub(crate) fn publish_end(&self, end: i64) {
        self.end.store(end, Ordering::Release);
        self.end_tx.send_replace(end);
    }

    fn end(&self) -> i64 {
        self.end.load(Ordering::Acquire)
    }
}

struct Inner {
    shared: Arc<Shared>,
    tx: flume::Sender<Command>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// One partition's append-only log. See the [module docs](super).
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.shared.dir)
            .field("start", &self.start_offset())
            .field("end", &self.end_offset())
            .finish()
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, running crash recovery.
    pub async fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log, LogError> {
        Self::open_with_clock(dir, config, Arc::new(SystemClock)).await
    }

    /// [`Log::open`] with an injected clock (roll by age, retention, flush interval).
    pub async fn open_with_clock(
        dir: impl AsRef<Path>,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Log, LogError> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(dir, config, clock))
            .await
            .expect("log open task panicked")
    }

    /// Opens the log on the calling thread (it does file I/O: not for the async reactor).
    pub fn open_blocking(
        dir: PathBuf,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Log, LogError> {
        config.validate()?;
        std::fs::create_dir_all(&dir).map_err(LogError::io("create directory", &dir))?;
        let lock = DirLock::acquire(&dir)?;
        let recovered = recover(&dir, &config)?;
        let start = recovered.segments[0].base_offset();
        let end = recovered.indexer.next_offset;
        let active = recovered
            .segments
            .last()
            .expect("recovery yields a segment")
            .clone();
        let epochs = load_epochs(&dir, &recovered.segments, start, end)?;
        let now = clock.now_ms();
        let (end_tx, _) = watch::channel(end);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            config: RwLock::new(Arc::new(config)),
            clock,
            segments: RwLock::new(Arc::new(recovered.segments)),
            start: AtomicI64::new(start),
            end: AtomicI64::new(end),
            flushed: AtomicI64::new(end),
            end_tx,
            epochs: RwLock::new(epochs),
        });
        tracing::info!(dir = %dir.display(), start, end, "opened log");
        let producers = snapshots::load(&dir, &shared.segments(), end)?;
        let writer = Writer {
            shared: shared.clone(),
            producers,
            active,
            writeback_from: recovered.indexer.size,
            indexer: recovered.indexer,
            checkpoint: recovered.checkpoint,
            last_flush_ms: now,
            last_checkpoint_ms: now,
            unflushed: false,
            failed: None,
            _lock: lock,
        };
        let (tx, rx) = flume::bounded(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("brook-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(LogError::io("spawn writer thread for", &dir))?;
        Ok(Log {
            inner: Arc::new(Inner {
                shared,
                tx,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn closed(&self) -> LogError {
        LogError::Closed {
            path: self.shared().dir.clone(),
        }
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Command,
    ) -> Result<T, LogError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send_async(make(tx))
            .await
            .map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Where `epoch` ended in this log (Kafka's OffsetForLeaderEpoch): the largest epoch
    /// not newer than it, and the start of the next epoch or the log end.
    pub fn epoch_end(&self, epoch: LeaderEpoch) -> EpochEnd {
        let epochs = self.shared().epochs.read();
        epochs.end_offset_for(epoch, self.end_offset())
    }

    /// The newest leader epoch that appended to this log, with its first offset.
    pub fn latest_epoch(&self) -> Option<EpochEntry> {
        self.shared().epochs.read().latest()
    }

    /// A copy of the log's leader-epoch cache.
    pub fn epochs(&self) -> EpochCache {
        self.shared().epochs.read().clone()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared().dir
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<LogConfig> {
        self.shared().config()
    }

    /// Replaces the configuration. Takes effect at the writer's next decision: size and age
    /// limits at the next append, the flush policy at the next group, retention at the next
    /// pass; index sizes when the next segment is created.
    pub fn update_config(&self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        *self.shared().config.write() = Arc::new(config);
        Ok(())
    }

    /// Appends one batch as a producer built it: validates it (size limit, length, magic,
    /// CRC, offset deltas), assigns the next offsets and stamps the base offset and
    /// `leader_epoch` (outside the CRC, so the stored batch is otherwise the bytes given).
    /// Resolves once the batch is written and, under flush policy `always`, synced.
    pub async fn append(
        &self,
        batch: Bytes,
        leader_epoch: LeaderEpoch,
    ) -> Result<AppendInfo, LogError> {
        let header = Self::validate(&batch, &self.config())?;
        self.append_validated(batch, header, leader_epoch).await
    }

    /// The checks [`Log::append`] makes, for callers that check a whole request before
    /// appending any of it.
    pub fn validate(batch: &[u8], config: &LogConfig) -> Result<BatchHeader, LogError> {
        let header = BatchHeader::validate(batch, config.max_batch_bytes as usize)?;
        header.check_produced()?;
        Ok(header)
    }

    /// Appends a batch that [`Log::validate`] accepted (with the header it returned), so
    /// the CRC is computed once per batch.
    pub(crate) async fn append_validated(
        &self,
        batch: Bytes,
        header: BatchHeader,
        leader_epoch: LeaderEpoch,
    ) -> Result<AppendInfo, LogError> {
        let reply = self.enqueue_validated(batch, header, leader_epoch).await?;
        reply.await.map_err(|_| self.closed())?
    }

    /// Queues a validated batch for the writer and returns where its outcome will arrive.
    /// Batches queued one after another are appended in that order, so a caller can queue
    /// several before waiting for any.
    pub(crate) async fn enqueue_validated(
        &self,
        batch: Bytes,
        header: BatchHeader,
        leader_epoch: LeaderEpoch,
    ) -> Result<oneshot::Receiver<Result<AppendInfo, LogError>>, LogError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Append(AppendRequest {
            batch,
            header,
            leader_epoch: leader_epoch.0,
            replica: false,
            reply,
        });
        self.inner
            .tx
            .send_async(cmd)
            .await
            .map_err(|_| self.closed())?;
        Ok(rx)
    }

    /// Appends batches as a leader wrote them (a follower's fetch answer, back to back),
    /// keeping their offsets and leader epochs: the first must start where this log ends and
    /// each the next where the previous ended. Validates each batch (size, length, CRC) and
    /// records idempotent producers' state as the leader did. Returns the new log end.
    pub async fn append_replica(&self, records: Bytes) -> Result<Offset, LogError> {
        let config = self.config();
        let mut next = self.end_offset().0;
        // Every batch is checked before any is queued: all or nothing.
        let mut checked = Vec::new();
        let mut at = 0;
        while at < records.len() {
            let header = BatchHeader::parse(&records[at..])?;
            let end = at.saturating_add(header.total_size());
            if end > records.len() {
                return Err(LogError::InvalidBatch(brook_proto::BatchError::Truncated {
                    needed: header.total_size(),
                    available: records.len() - at,
                }));
            }
            let batch = records.slice(at..end);
            let header = BatchHeader::validate(&batch, config.max_batch_bytes as usize)?;
            if header.base_offset != next {
                return Err(LogError::ReplicaGap {
                    path: self.dir().to_path_buf(),
                    expected: next,
                    found: header.base_offset,
                });
            }
            next = header.next_offset();
            checked.push((batch, header));
            at = end;
        }
        let mut pending = Vec::with_capacity(checked.len());
        for (batch, header) in checked {
            let (reply, rx) = oneshot::channel();
            let cmd = Command::Append(AppendRequest {
                batch,
                header,
                leader_epoch: header.partition_leader_epoch,
                replica: true,
                reply,
            });
            self.inner
                .tx
                .send_async(cmd)
                .await
                .map_err(|_| self.closed())?;
            pending.push(rx);
        }
        for rx in pending {
            rx.await.map_err(|_| self.closed())??;
        }
        Ok(Offset(next))
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (but at least one
    /// batch), from a single segment. Empty at the log end.
    pub async fn read(&self, offset: Offset, max_bytes: usize) -> Result<Bytes, LogError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking(offset, max_bytes))
            .await
            .expect("log read task panicked")
    }

    /// [`Log::read`] on the calling thread.
    pub fn read_blocking(&self, offset: Offset, max_bytes: usize) -> Result<Bytes, LogError> {
        let shared = self.shared();
        let end = shared.end();
        let segments = shared.segments();
        let start = segments[0].base_offset();
        if offset.0 == end {
            return Ok(Bytes::new());
        }
        if offset.0 < start || offset.0 > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: Offset(start),
                end: Offset(end),
            });
        }
        let i = segments.partition_point(|s| s.base_offset() <= offset.0) - 1;
        for seg in &segments[i..] {
            if let Some(bytes) = seg.read(offset.0, max_bytes)? {
                return Ok(bytes);
            }
        }
        Ok(Bytes::new())
    }

    /// The first record whose timestamp is at or after `timestamp` (ms since the epoch), or
    /// `None` if every record is older.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.offset_for_timestamp_blocking(timestamp))
            .await
            .expect("log lookup task panicked")
    }

    /// [`Log::offset_for_timestamp`] on the calling thread.
    pub fn offset_for_timestamp_blocking(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, LogError> {
        for seg in self.shared().segments().iter() {
            if seg.max_timestamp().is_some_and(|m| m >= timestamp)
                && let Some(found) = seg.find_timestamp(timestamp)?
            {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// First offset still in the log.
    pub fn start_offset(&self) -> Offset {
        Offset(self.shared().start.load(Ordering::Acquire))
    }

    /// Offset the next appended record will get.
    pub fn end_offset(&self) -> Offset {
        Offset(self.shared().end())
    }

    /// Offsets below this are on disk (fsynced).
    pub fn flushed_offset(&self) -> Offset {
        Offset(self.shared().flushed.load(Ordering::Acquire))
    }

    /// Watches the log end offset (wakes long-polling readers when data arrives).
    pub fn subscribe_end(&self) -> watch::Receiver<i64> {
        self.shared().end_tx.subscribe()
    }

    /// Bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.shared().segments().iter().map(|s| s.size()).sum()
    }

    /// Base offsets of the segments, oldest first (the last is the active segment).
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.shared()
            .segments()
            .iter()
            .map(|s| Offset(s.base_offset()))
            .collect()
    }

    /// Syncs the active segment now, whatever the flush policy; returns the flushed offset.
    pub async fn flush(&self) -> Result<Offset, LogError> {
        self.call(Command::Flush).await
    }

    /// Seals the active segment and starts a new one (no-op when it is empty).
    pub async fn roll(&self) -> Result<(), LogError> {
        self.call(Command::Roll).await
    }

    /// Removes the batch holding `offset` and everything after it (replication truncation).
    /// Returns the new log end offset: the base offset of that batch. An offset at or past
    /// the end changes nothing; one at or before the log start empties the log and restarts
    /// it at `offset`.
    pub async fn truncate_to(&self, offset: Offset) -> Result<Offset, LogError> {
        self.call(|r| Command::Truncate(offset.0, r)).await
    }

    /// Empties the log and starts it again at `offset`, which may lie past its end (Kafka's
    /// truncate-fully-and-start-at): for a follower whose leader's log now starts past this
    /// log's end, and for a replica moved off this broker. Returns the new end, `offset`.
    pub async fn reset_to(&self, offset: Offset) -> Result<Offset, LogError> {
        self.call(|r| Command::Reset(offset.0, r)).await
    }

    /// Deletes sealed segments that retention (size, time) no longer keeps.
    pub async fn enforce_retention(&self) -> Result<RetentionOutcome, LogError> {
        self.call(Command::Retention).await
    }

    /// Syncs everything, writes a recovery checkpoint and stops the writer; the directory
    /// lock is released when this returns. Other clones of the handle then get
    /// [`LogError::Closed`].
    pub async fn close(&self) -> Result<(), LogError> {
        let result = self.call(Command::Close).await;
        let thread = self.inner.thread.lock().take();
        if let Some(t) = thread {
            tokio::task::spawn_blocking(move || t.join()).await.ok();
        }
        result
    }
}

/// The leader-epoch cache of a log opened with `start..end`: the checkpoint file, or, when it
/// is missing (a log from before epochs were kept) or damaged, rebuilt from the epochs every
/// batch header carries. Entries outside the log (a crash after the checkpoint was written
/// but before the data, a retention before the checkpoint was updated) are dropped.
fn load_epochs(
    dir: &Path,
    segments: &[Arc<Segment>],
    start: i64,
    end: i64,
) -> Result<EpochCache, LogError> {
    let loaded = match EpochCache::load(dir) {
        Ok(cache) if !(cache.entries().is_empty() && end > start) => Some(cache),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(cause = %e, "leader-epoch checkpoint unreadable; rebuilding it from the log");
            None
        }
    };
    let mut cache = match loaded {
        Some(cache) => cache,
        None => {
            let mut cache = EpochCache::new();
            let mut stale = None;
            for seg in segments {
                seg.for_each_header(start, |h| {
                    if h.partition_leader_epoch >= 0
                        && let Err(reason) = cache
                            .assign(LeaderEpoch(h.partition_leader_epoch), Offset(h.base_offset))
                    {
                        stale.get_or_insert(reason);
                    }
                })?;
            }
            if let Some(reason) = stale {
                tracing::warn!(dir = %dir.display(), %reason, "leader epochs in the log go backwards");
            }
            cache.store(dir)?;
            cache
        }
    };
    let before = cache.clone();
    cache.truncate_from_end(Offset(end));
    cache.truncate_from_start(Offset(start));
    if cache != before {
        cache.store(dir)?;
    }
    Ok(cache)
}
