//! The writer: one thread per log that owns the active segment and does every mutation
//! (append, flush, roll, truncate, retention) in order, so no lock is ever held across I/O.
//!
//! ```text
//! Log::append ─► bounded channel ─► drain up to MAX_GROUP commands
//!                                      │ appends: one writev per segment, index, publish
//!                                      │ flush policy: always → one fdatasync for the group
//!                                      ▼
//!                                    replies (oneshot) ─► callers
//! ```
//! Appends that queue while a sync runs share the next one: that is the group commit.

use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use brook_proto::batch::layout::MAGIC;
use brook_proto::batch::stamp;
use brook_proto::{BatchHeader, LeaderEpoch, Offset};
use bytes::Bytes;
use tokio::sync::oneshot;

use super::indexer::Indexer;
use super::log::{AppendInfo, Shared};
use super::producer_state::{SequenceCheck, snapshots};
use super::recovery::{RecoveryCheckpoint, create_segment, fsync_dir, open_active};
use super::retention::{RetentionOutcome, SegmentMeta, segments_to_delete};
use super::segment::segment_paths;
use super::{DirLock, FlushPolicy, LogError, ProducerState, Segment};
use crate::replication::EpochCache;

/// Most commands taken from the channel in one round.
const MAX_GROUP: usize = 1024;
/// Least time between two recovery checkpoints written after syncs.
const CHECKPOINT_INTERVAL_MS: i64 = 1_000;
/// Appends written with one `writev` (and, under `never`/`interval`, answered together).
const CHUNK_BYTES: u64 = 1 << 20;
/// Longest wait before the writer re-checks whether an interval flush is due.
const MAX_FLUSH_WAIT_MS: u128 = 100;
/// Without an fsync per write, the writer asks the kernel to write back the active segment
/// in steps of this many bytes, without waiting, and only bytes at least this far behind the
/// end, so the pages still being appended to are never under write-back (see
/// `start_writeback`).
const WRITEBACK_BYTES: u64 = 4 << 20;

type Reply<T> = oneshot::Sender<Result<T, LogError>>;

pub(crate) struct AppendRequest {
    pub batch: Bytes,
    pub header: BatchHeader,
    pub leader_epoch: i32,
    /// A follower's copy of a batch the leader wrote: its producer sequence was checked
    /// there, so it is recorded here without being checked again.
    pub replica: bool,
    pub reply: Reply<AppendInfo>,
}

pub(crate) enum Command {
    Append(AppendRequest),
    Flush(Reply<Offset>),
    Roll(Reply<()>),
    Truncate(i64, Reply<Offset>),
    Reset(i64, Reply<Offset>),
    Retention(Reply<RetentionOutcome>),
    Close(Reply<()>),
}

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    /// Idempotent producers' last batches (see `producer_state`).
    pub producers: ProducerState,
    pub active: Arc<Segment>,
    /// Where in the active segment write-back was last started (see [`WRITEBACK_BYTES`]).
    pub writeback_from: u64,
    pub indexer: Indexer,
    pub checkpoint: Option<RecoveryCheckpoint>,
    pub last_flush_ms: i64,
    pub last_checkpoint_ms: i64,
    pub unflushed: bool,
    pub failed: Option<String>,
    pub _lock: DirLock,
}

/// Writes all of `slices`, looping over short writes.
fn write_all_vectored(mut out: impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Writer {
    /// The writer thread's loop. Returns when closed or when every handle is dropped.
    pub(crate) fn run(mut self, rx: flume::Receiver<Command>) {
        let mut cmds = Vec::with_capacity(MAX_GROUP);
        let close_reply = loop {
            let first = match self.flush_wait() {
                Some(wait) => match rx.recv_timeout(wait) {
                    Ok(c) => c,
                    Err(flume::RecvTimeoutError::Timeout) => {
                        self.flush_if_due();
                        continue;
                    }
                    Err(flume::RecvTimeoutError::Disconnected) => break None,
                },
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break None,
                },
            };
            cmds.push(first);
            cmds.extend(rx.try_iter().take(MAX_GROUP - 1));
            if let Some(reply) = self.process(&mut cmds) {
                break Some(reply);
            }
        };
        let result = self.close();
        // Release the directory lock before answering, so a caller may reopen at once.
        drop(self);
        match close_reply {
            Some(reply) => {
                let _ = reply.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::error!(cause = %e, "closing log failed");
                }
            }
        }
        // Commands queued behind the close find the channel gone and report `Closed`.
        drop(rx);
    }

    fn process(&mut self, cmds: &mut Vec<Command>) -> Option<Reply<()>> {
        let mut appends = Vec::new();
        let mut drained = cmds.drain(..);
        for cmd in drained.by_ref() {
            match cmd {
                Command::Append(a) => appends.push(a),
                other => {
                    self.commit(&mut appends);
                    match other {
                        Command::Append(_) => unreachable!("handled above"),
                        Command::Flush(r) => {
                            let _ = r.send(self.flush());
                        }
                        Command::Roll(r) => {
                            let _ = r.send(self.roll());
                        }
                        Command::Truncate(offset, r) => {
                            let _ = r.send(self.truncate(offset));
                        }
                        Command::Reset(offset, r) => {
                            let _ = r.send(self.reset(offset));
                        }
                        Command::Retention(r) => {
                            let _ = r.send(self.retention());
                        }
                        Command::Close(r) => {
                            for rest in drained {
                                reject(rest, &self.shared);
                            }
                            return Some(r);
                        }
                    }
                }
            }
        }
        self.commit(&mut appends);
        None
    }

    fn now(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    fn failed_error(&self) -> Option<LogError> {
        self.failed.as_ref().map(|cause| LogError::Failed {
            path: self.shared.dir.clone(),
            cause: cause.clone(),
        })
    }

    fn fail(&mut self, err: LogError) -> LogError {
        tracing::error!(dir = %self.shared.dir.display(), cause = %err, "log write path failed; refusing writes until reopened");
        if self.failed.is_none() {
            self.failed = Some(err.to_string());
        }
        err
    }

    /// How long the loop may wait for a command before an interval flush is due.
    fn flush_wait(&self) -> Option<Duration> {
        match self.shared.config().flush {
            FlushPolicy::Interval(d) if self.unflushed => {
                let since = self.now().saturating_sub(self.last_flush_ms).max(0) as u128;
                // Re-read the clock at least every MAX_FLUSH_WAIT: robust to clock jumps, and
                // lets tests move a manual clock.
                let left = d
                    .as_millis()
                    .saturating_sub(since)
                    .clamp(1, MAX_FLUSH_WAIT_MS);
                Some(Duration::from_millis(left as u64))
            }
            _ => None,
        }
    }

    fn flush_if_due(&mut self) {
        if let FlushPolicy::Interval(d) = self.shared.config().flush
            && self.unflushed
            && self.now().saturating_sub(self.last_flush_ms) >= d.as_millis() as i64
            && let Err(e) = self.flush()
        {
            tracing::error!(cause = %e, "interval flush failed");
        }
    }

    fn should_roll(&self, pending: u64, h: &BatchHeader, next_offset: i64) -> bool {
        let size = self.indexer.size + pending;
        if size == 0 {
            return false;
        }
        let config = self.shared.config();
        if size + h.total_size() as u64 > config.segment_bytes {
            return true;
        }
        if next_offset + i64::from(h.last_offset_delta) - self.active.base_offset()
            > i64::from(u32::MAX)
        {
            return true;
        }
        if self.active.offset_index.read().is_full() || self.active.time_index.read().is_full() {
            return true;
        }
        // Age is measured in record time, as Kafka does: the incoming batch's timestamp against
        // the segment's first. Records with old timestamps (mirrored or replayed data) written
        // now therefore do not roll a segment per batch.
        match (config.segment_ms, self.indexer.first_timestamp) {
            (Some(ms), Some(first)) => h.max_timestamp.saturating_sub(first) > ms as i64,
            _ => false,
        }
    }

    /// Writes a group of appends (rolling between them as needed), applies the flush policy
    /// and answers each caller. Under `never` and `interval` each chunk of at most
    /// [`CHUNK_BYTES`] is answered as soon as it is written, so callers refill the queue while
    /// the writer goes on; under `always` everyone waits for the group's one fsync.
    fn commit(&mut self, appends: &mut Vec<AppendRequest>) {
        if appends.is_empty() {
            return;
        }
        let always = matches!(self.shared.config().flush, FlushPolicy::Always);
        let now = self.now();
        let (mut rest, duplicates) = self.check_sequences(std::mem::take(appends), now);
        let mut synced_later: Vec<(Reply<AppendInfo>, AppendInfo)> = Vec::new();
        let mut failure: Option<String> = self.failed.clone();
        while failure.is_none() && !rest.is_empty() {
            let mut pending = 0u64;
            let mut next = self.indexer.next_offset;
            let mut n = 0;
            for a in &rest {
                if self.should_roll(pending, &a.header, next) || (n > 0 && pending >= CHUNK_BYTES) {
                    break;
                }
                pending += a.header.total_size() as u64;
                next += i64::from(a.header.last_offset_delta) + 1;
                n += 1;
            }
            if n == 0 {
                if let Err(e) = self.roll() {
                    failure = Some(e.to_string());
                }
                continue;
            }
            let chunk: Vec<AppendRequest> = rest.drain(..n).collect();
            match self.write_chunk(&chunk, now) {
                Ok(infos) => {
                    for (a, info) in chunk.into_iter().zip(infos) {
                        let mut h = a.header;
                        h.base_offset = info.base_offset.0;
                        self.producers.record(&h, info.log_append_time_ms);
                        if always {
                            synced_later.push((a.reply, info));
                        } else {
                            let _ = a.reply.send(Ok(info));
                        }
                    }
                }
                Err(e) => {
                    let cause = e.to_string();
                    for a in chunk {
                        let _ = a.reply.send(Err(self.write_failed(&cause)));
                    }
                    failure = Some(cause);
                }
            }
        }
        if let Some(cause) = &failure {
            for a in rest {
                let _ = a.reply.send(Err(self.write_failed(cause)));
            }
            // A duplicate may point at a batch of this group that was not written.
            for (reply, _) in duplicates {
                let _ = reply.send(Err(self.write_failed(cause)));
            }
            return;
        }
        // Duplicates are answered with the original batch's offsets once this group is
        // written (and, under `always`, synced): the original may be part of it.
        synced_later.extend(duplicates);
        if always {
            if synced_later.is_empty() {
                return;
            }
            match self.flush() {
                Ok(_) => {
                    for (reply, info) in synced_later {
                        let _ = reply.send(Ok(info));
                    }
                }
                Err(e) => {
                    let cause = e.to_string();
                    for (reply, _) in synced_later {
                        let _ = reply.send(Err(self.write_failed(&cause)));
                    }
                }
            }
        } else {
            for (reply, info) in synced_later {
                let _ = reply.send(Ok(info));
            }
            self.flush_if_due();
            self.start_writeback();
        }
    }

    /// Asks the kernel to start writing back the active segment up to [`WRITEBACK_BYTES`]
    /// behind its end, in steps of that size, without waiting for the disk.
    ///
    /// Without it, dirty pages pile up until the kernel's flusher writes them back on its
    /// own, including the pages the writer is still appending to; appending into a page under
    /// write-back is several times slower (the copy into the page cache took a third of the
    /// machine at 200 MB/s, against a twelfth with an fsync per write). Advisory: a failure
    /// is logged, and a real write error surfaces at the next fsync.
    fn start_writeback(&mut self) {
        let behind = self.indexer.size.saturating_sub(WRITEBACK_BYTES);
        let to = behind - behind % WRITEBACK_BYTES;
        let from = self.writeback_from;
        if to <= from {
            return;
        }
        use std::os::fd::AsRawFd;
        let fd = self.active.file().as_raw_fd();
        // SAFETY: a plain system call on a file descriptor this writer owns; no memory is
        // passed.
        let rc = unsafe {
            libc::sync_file_range(
                fd,
                from as libc::off64_t,
                (to - from) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            tracing::debug!(path = %self.active.path().display(), cause = %err, "sync_file_range");
        }
        self.writeback_from = to;
    }

    /// Sorts a group by producer state: out-of-sequence and fenced batches are answered with
    /// their error at once; duplicates are set aside with their original offsets; the rest is
    /// returned to be written. Decisions see the group's earlier batches (their offsets are
    /// known in advance: appends are written in order), but the state itself changes only
    /// once a batch is written.
    #[allow(clippy::type_complexity)]
    fn check_sequences(
        &self,
        appends: Vec<AppendRequest>,
        now: i64,
    ) -> (Vec<AppendRequest>, Vec<(Reply<AppendInfo>, AppendInfo)>) {
        if appends.iter().all(|a| a.header.producer_id < 0) {
            return (appends, Vec::new());
        }
        let mut tentative = self.producers.clone();
        let mut next = self.indexer.next_offset;
        let mut keep = Vec::with_capacity(appends.len());
        let mut duplicates = Vec::new();
        for a in appends {
            if a.replica {
                let mut h = a.header;
                h.base_offset = next;
                tentative.record(&h, now);
                next = h.next_offset();
                keep.push(a);
                continue;
            }
            match tentative.check(&a.header) {
                Ok(SequenceCheck::Append) => {
                    let mut h = a.header;
                    h.base_offset = next;
                    tentative.record(&h, now);
                    next = h.next_offset();
                    keep.push(a);
                }
                Ok(SequenceCheck::Duplicate(m)) => duplicates.push((
                    a.reply,
                    AppendInfo {
                        base_offset: Offset(m.base_offset),
                        last_offset: Offset(m.last_offset),
                        log_append_time_ms: m.append_time_ms,
                    },
                )),
                Err(e) => {
                    let _ = a.reply.send(Err(LogError::Sequence(e)));
                }
            }
        }
        (keep, duplicates)
    }

    fn write_failed(&self, cause: &str) -> LogError {
        LogError::WriteFailed {
            path: self.shared.dir.clone(),
            cause: cause.to_string(),
        }
    }

    /// Appends `chunk` to the active segment with one vectored write, then indexes and
    /// publishes it. On a failed write the file is cut back to where it was.
    fn write_chunk(
        &mut self,
        chunk: &[AppendRequest],
        now: i64,
    ) -> Result<Vec<AppendInfo>, LogError> {
        let start_pos = self.indexer.size;
        let mut next = self.indexer.next_offset;
        self.record_epochs(chunk, next)?;
        let mut stamps: Vec<[u8; MAGIC]> = Vec::with_capacity(chunk.len());
        let mut infos = Vec::with_capacity(chunk.len());
        for a in chunk {
            stamps.push(stamp(&a.batch, next, a.leader_epoch));
            let last = next + i64::from(a.header.last_offset_delta);
            infos.push(AppendInfo {
                base_offset: Offset(next),
                last_offset: Offset(last),
                log_append_time_ms: now,
            });
            next = last + 1;
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(chunk.len() * 2);
        for (a, s) in chunk.iter().zip(&stamps) {
            slices.push(IoSlice::new(s));
            slices.push(IoSlice::new(&a.batch[MAGIC..]));
        }
        let path = self.active.path().to_path_buf();
        if let Err(source) = write_all_vectored(self.active.file(), &mut slices) {
            let err = LogError::Io {
                op: "write",
                path: path.clone(),
                source,
            };
            if let Err(e) = self.active.file().set_len(start_pos) {
                self.fail(LogError::Io {
                    op: "truncate after failed write",
                    path,
                    source: e,
                });
            }
            // The epochs this chunk would have started are not in the log.
            if let Err(e) = self.trim_epochs() {
                self.fail(e);
            }
            return Err(err);
        }
        {
            let mut oi = self.active.offset_index.write();
            let mut ti = self.active.time_index.write();
            let mut pos = start_pos;
            for (a, info) in chunk.iter().zip(&infos) {
                let mut h = a.header;
                h.base_offset = info.base_offset.0;
                self.indexer.on_batch(pos, &h, &mut oi, &mut ti);
                pos += h.total_size() as u64;
            }
        }
        self.active.publish(
            self.indexer.size,
            next,
            self.indexer.max_timestamp,
            self.indexer.first_timestamp,
        );
        self.shared.publish_end(next);
        self.unflushed = true;
        Ok(infos)
    }

    /// Adds the epochs `chunk` starts to the epoch cache (batches from `next` on) and
    /// writes the checkpoint when it changed, before the data: a crash in between leaves an
    /// entry past the log end, which the next open drops.
    fn record_epochs(&mut self, chunk: &[AppendRequest], mut next: i64) -> Result<(), LogError> {
        let mut epochs = self.shared.epochs.write();
        let mut changed = false;
        for a in chunk {
            if a.leader_epoch >= 0 {
                if let Some(latest) = epochs.latest()
                    && latest.epoch.get() > a.leader_epoch
                {
                    return Err(LogError::StaleLeaderEpoch {
                        path: self.shared.dir.clone(),
                        epoch: a.leader_epoch,
                        latest: latest.epoch.get(),
                    });
                }
                changed |= epochs
                    .assign(LeaderEpoch(a.leader_epoch), Offset(next))
                    .expect("newer epoch at a later offset");
            }
            next += i64::from(a.header.last_offset_delta) + 1;
        }
        if changed {
            epochs.store(&self.shared.dir)?;
        }
        Ok(())
    }

    /// Brings the epoch cache in line with the log after a truncation or retention.
    fn trim_epochs(&mut self) -> Result<(), LogError> {
        let end = self.indexer.next_offset;
        let start = self.shared.start.load(Ordering::Acquire);
        let mut epochs = self.shared.epochs.write();
        let before = epochs.clone();
        epochs.truncate_from_end(Offset(end));
        epochs.truncate_from_start(Offset(start));
        if *epochs != before {
            epochs.store(&self.shared.dir)?;
        }
        Ok(())
    }

    /// fdatasync of the active segment; everything appended so far becomes durable.
    fn flush(&mut self) -> Result<Offset, LogError> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        let end = self.indexer.next_offset;
        if self.unflushed {
            let started = std::time::Instant::now();
            let synced = self.active.file().sync_data();
            metrics::histogram!("brook_log_fsync_seconds").record(started.elapsed().as_secs_f64());
            if let Err(source) = synced {
                return Err(self.fail(LogError::Io {
                    op: "fsync",
                    path: self.active.path().to_path_buf(),
                    source,
                }));
            }
            self.unflushed = false;
        }
        self.last_flush_ms = self.now();
        self.shared.flushed.store(end, Ordering::Release);
        if self.last_flush_ms.saturating_sub(self.last_checkpoint_ms) >= CHECKPOINT_INTERVAL_MS {
            self.write_checkpoint()?;
        }
        Ok(Offset(end))
    }

    /// Records that the active segment is durable up to its current size. Call only right
    /// after a sync of the log file.
    fn write_checkpoint(&mut self) -> Result<(), LogError> {
        for sync in [
            self.active.offset_index.write().file().sync(),
            self.active.time_index.write().file().sync(),
        ] {
            sync.map_err(LogError::io("fsync index", self.active.path()))?;
        }
        let cp = RecoveryCheckpoint {
            segment: self.active.base_offset(),
            position: self.indexer.size,
        };
        cp.write(&self.shared.dir)?;
        self.checkpoint = Some(cp);
        self.last_checkpoint_ms = self.now();
        Ok(())
    }

    /// Seals the active segment (sync, final time entry, trimmed indexes) and starts a new
    /// one at the log end offset. An empty active segment is not rolled.
    fn roll(&mut self) -> Result<(), LogError> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if self.indexer.size == 0 {
            return Ok(());
        }
        let path = self.active.path().to_path_buf();
        if let Err(source) = self.active.file().sync_data() {
            return Err(self.fail(LogError::Io {
                op: "fsync",
                path,
                source,
            }));
        }
        {
            let mut ti = self.active.time_index.write();
            self.indexer.seal(&mut ti);
            let file = ti.file();
            file.trim()
                .and_then(|_| file.sync())
                .map_err(LogError::io("seal time index", &path))?;
        }
        {
            let mut oi = self.active.offset_index.write();
            let file = oi.file();
            file.trim()
                .and_then(|_| file.sync())
                .map_err(LogError::io("seal offset index", &path))?;
        }
        self.active.mark_sealed();
        let (segment, indexer) = create_segment(
            &self.shared.dir,
            self.indexer.next_offset,
            &self.shared.config(),
        )?;
        let segment = Arc::new(segment);
        self.shared
            .update_segments(|list| list.push(segment.clone()));
        tracing::debug!(dir = %self.shared.dir.display(), base_offset = indexer.next_offset, "rolled segment");
        self.active = segment;
        self.indexer = indexer;
        self.writeback_from = 0;
        self.unflushed = false;
        self.shared
            .flushed
            .store(self.indexer.next_offset, Ordering::Release);
        snapshots::write(&self.shared.dir, self.indexer.next_offset, &self.producers)?;
        self.write_checkpoint()
    }

    /// Removes every batch at or after the one holding `target`; returns the new log end
    /// offset (the base offset of that batch, so `<= target`).
    fn truncate(&mut self, target: i64) -> Result<Offset, LogError> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        let end = self.indexer.next_offset;
        let start = self.shared.start.load(Ordering::Acquire);
        if target >= end {
            return Ok(Offset(end));
        }
        if target < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset: Offset(target),
                start: Offset(start),
                end: Offset(end),
            });
        }
        let segments = self.shared.segments();
        let dir = self.shared.dir.clone();
        if target <= start {
            // Nothing survives: start afresh at `target`.
            let end = self.start_afresh(target)?;
            self.trim_epochs()?;
            return Ok(end);
        }
        let i = segments.partition_point(|s| s.base_offset() <= target) - 1;
        let seg = segments[i].clone();
        let Some((pos, header)) = seg.locate(target)? else {
            return Err(LogError::Corrupt {
                segment: seg.path().to_path_buf(),
                position: seg.size(),
                reason: format!("offset {target} is below the log end but in no batch"),
            });
        };
        // Make the checkpoint cover nothing past the cut before cutting.
        let keep = match self.checkpoint {
            Some(c) if c.segment == seg.base_offset() => c.position.min(pos),
            _ => 0,
        };
        let cp = RecoveryCheckpoint {
            segment: seg.base_offset(),
            position: keep,
        };
        cp.write(&dir)?;
        self.checkpoint = Some(cp);
        for later in segments[i + 1..].iter().rev() {
            remove_segment_files(&dir, later.base_offset())?;
        }
        let [log, index, timeindex] = segment_paths(&dir, seg.base_offset());
        if seg.is_sealed() {
            // Readers may hold maps of this file: write the kept prefix to a new file.
            let tmp = log.with_extension("log.tmp");
            copy_prefix(seg.file(), pos, &tmp)
                .map_err(LogError::io("copy segment prefix to", &tmp))?;
            std::fs::rename(&tmp, &log).map_err(LogError::io("rename", &log))?;
            for f in [&index, &timeindex] {
                std::fs::remove_file(f).map_err(LogError::io("remove", f))?;
            }
            fsync_dir(&dir)?;
        } else {
            seg.file()
                .set_len(pos)
                .map_err(LogError::io("truncate", &log))?;
            seg.file().sync_all().map_err(LogError::io("fsync", &log))?;
        }
        let (segment, indexer) = open_active(&dir, seg.base_offset(), &self.shared.config(), keep)?;
        debug_assert_eq!(indexer.next_offset, header.base_offset);
        let end = self.replace_tail(i, segment, indexer, false);
        self.reload_producers()?;
        self.trim_epochs()?;
        Ok(end)
    }

    /// Makes `segment` the active one in place of segments `i..`.
    /// Empties the log and starts it again at `target`, before or after its end (Kafka's
    /// truncate-fully-and-start-at): a follower whose leader no longer holds its log end, or
    /// a replica moved off this broker. The leader-epoch cache is emptied with it.
    fn reset(&mut self, target: i64) -> Result<Offset, LogError> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if target < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset: Offset(target),
                start: Offset(self.shared.start.load(Ordering::Acquire)),
                end: Offset(self.indexer.next_offset),
            });
        }
        let end = self.start_afresh(target)?;
        let mut epochs = self.shared.epochs.write();
        *epochs = EpochCache::new();
        epochs.store(&self.shared.dir)?;
        Ok(end)
    }

    /// Removes every segment and opens an empty one at `target`, the recovery checkpoint
    /// first so a crash midway recovers an empty log.
    fn start_afresh(&mut self, target: i64) -> Result<Offset, LogError> {
        let dir = self.shared.dir.clone();
        let cp = RecoveryCheckpoint {
            segment: target,
            position: 0,
        };
        cp.write(&dir)?;
        self.checkpoint = Some(cp);
        for seg in self.shared.segments().iter().rev() {
            remove_segment_files(&dir, seg.base_offset())?;
        }
        let (segment, indexer) = create_segment(&dir, target, &self.shared.config())?;
        let end = self.replace_tail(0, segment, indexer, true);
        self.reload_producers()?;
        Ok(end)
    }

    fn replace_tail(
        &mut self,
        i: usize,
        segment: Segment,
        indexer: Indexer,
        new_start: bool,
    ) -> Offset {
        let segment = Arc::new(segment);
        let end = indexer.next_offset;
        self.shared.update_segments(|list| {
            list.truncate(i);
            list.push(segment.clone());
        });
        if new_start {
            self.shared
                .start
                .store(segment.base_offset(), Ordering::Release);
        }
        self.active = segment;
        self.writeback_from = indexer.size;
        self.indexer = indexer;
        self.unflushed = false;
        self.shared.flushed.fetch_min(end, Ordering::AcqRel);
        self.shared.publish_end(end);
        Offset(end)
    }

    /// Rebuilds the producer state after a truncation: snapshots past the new end go, the
    /// rest is replayed from the log.
    fn reload_producers(&mut self) -> Result<(), LogError> {
        let end = self.indexer.next_offset;
        snapshots::remove_above(&self.shared.dir, end)?;
        self.producers = snapshots::load(&self.shared.dir, &self.shared.segments(), end)?;
        Ok(())
    }

    fn retention(&mut self) -> Result<RetentionOutcome, LogError> {
        let segments = self.shared.segments();
        let (sealed, _active) = segments.split_at(segments.len() - 1);
        let metas: Vec<SegmentMeta> = sealed
            .iter()
            .map(|s| SegmentMeta {
                base_offset: s.base_offset(),
                size: s.size(),
                max_timestamp: s.max_timestamp(),
            })
            .collect();
        let total: u64 = segments.iter().map(|s| s.size()).sum();
        let n = segments_to_delete(&metas, total, &self.shared.config(), self.now());
        let start = segments[n].base_offset();
        if n == 0 {
            return Ok(RetentionOutcome {
                log_start: start,
                ..Default::default()
            });
        }
        // Readers stop picking the old segments before their files go.
        self.shared.update_segments(|list| {
            list.drain(..n);
        });
        self.shared.start.store(start, Ordering::Release);
        let mut deleted_bytes = 0;
        for seg in &segments[..n] {
            remove_segment_files(&self.shared.dir, seg.base_offset())?;
            deleted_bytes += seg.size();
        }
        fsync_dir(&self.shared.dir)?;
        self.trim_epochs()?;
        tracing::info!(dir = %self.shared.dir.display(), deleted_segments = n, deleted_bytes, log_start = start, "retention deleted segments");
        Ok(RetentionOutcome {
            deleted_segments: n,
            deleted_bytes,
            log_start: start,
        })
    }

    /// Syncs everything and writes a checkpoint at the log end.
    fn close(&mut self) -> Result<(), LogError> {
        if let Some(e) = self.failed_error() {
            return Err(e);
        }
        if let Err(source) = self.active.file().sync_data() {
            return Err(self.fail(LogError::Io {
                op: "fsync",
                path: self.active.path().to_path_buf(),
                source,
            }));
        }
        self.unflushed = false;
        self.shared
            .flushed
            .store(self.indexer.next_offset, Ordering::Release);
        snapshots::write(&self.shared.dir, self.indexer.next_offset, &self.producers)?;
        self.write_checkpoint()
    }
}

fn reject(cmd: Command, shared: &Shared) {
    let closed = || LogError::Closed {
        path: shared.dir.clone(),
    };
    match cmd {
        Command::Append(a) => drop(a.reply.send(Err(closed()))),
        Command::Flush(r) => drop(r.send(Err(closed()))),
        Command::Roll(r) => drop(r.send(Err(closed()))),
        Command::Truncate(_, r) | Command::Reset(_, r) => drop(r.send(Err(closed()))),
        Command::Retention(r) => drop(r.send(Err(closed()))),
        Command::Close(r) => drop(r.send(Err(closed()))),
    }
}

/// Deletes a segment's files, the log first: a crash in between leaves index files without
/// a log, which recovery removes.
fn remove_segment_files(dir: &std::path::Path, base_offset: i64) -> Result<(), LogError> {
    for path in segment_paths(dir, base_offset) {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io("remove", path)(e)),
        }
    }
    Ok(())
}

/// Copies bytes `[0, len)` of `src` into a new, fsynced file at `dst`.
fn copy_prefix(src: &std::fs::File, len: u64, dst: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut out = std::fs::File::create(dst)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], pos)?;
        out.write_all(&buf[..n])?;
        pos += n as u64;
    }
    out.sync_all()
}
