//! Opening a log directory. Every open is a crash recovery:
//!
//! ```text
//! list *.log ──► sealed segments before the checkpoint: check indexes, scan the tail
//!           ├──► sealed segments after it: scan fully, rebuild indexes (corruption = error)
//!           └──► last segment: keep index entries below the checkpoint, scan from there,
//!                truncate a torn or corrupt tail
//! ```
//!
//! The recovery checkpoint names a segment and a byte position below which the log and its
//! index entries are known to be on disk (it is written only after an fsync). Sealed segments
//! are fsynced before the next segment is created, so only the last segment can have a torn
//! tail; damage anywhere else is reported, never dropped.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use brook_proto::BatchHeader;
use brook_proto::batch::layout::HEADER_LEN;
use std::os::unix::fs::FileExt;

use super::indexer::Indexer;
use super::segment::{SegmentState, parse_base_offset, scan, segment_paths};
use super::{LogConfig, LogError, OffsetIndex, Segment, TimeIndex};

/// Name of the checkpoint file in a log directory.
pub const CHECKPOINT_FILE: &str = "recovery-checkpoint";
const CHECKPOINT_MAGIC: &str = "brook-recovery-checkpoint v1";

/// "Everything before `position` in segment `segment` is durable."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecoveryCheckpoint {
    pub segment: i64,
    pub position: u64,
}

impl RecoveryCheckpoint {
    fn encode(&self) -> String {
        let body = format!("{CHECKPOINT_MAGIC} {} {}", self.segment, self.position);
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body} {crc:08x}\n")
    }

    fn decode(text: &str) -> Option<Self> {
        let text = text.strip_suffix('\n')?;
        let (body, crc) = text.rsplit_once(' ')?;
        if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes()) {
            return None;
        }
        let rest = body.strip_prefix(CHECKPOINT_MAGIC)?.trim_start();
        let (segment, position) = rest.split_once(' ')?;
        Some(RecoveryCheckpoint {
            segment: segment.parse().ok()?,
            position: position.parse().ok()?,
        })
    }

    /// Reads the checkpoint; a missing or damaged file reads as `None` (recovery then scans).
    pub(crate) fn read(dir: &Path) -> Option<Self> {
        fs::read_to_string(dir.join(CHECKPOINT_FILE))
            .ok()
            .as_deref()
            .and_then(Self::decode)
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<(), LogError> {
        write_atomically(dir, CHECKPOINT_FILE, self.encode().as_bytes())
    }
}

/// fsyncs a directory, making creations, renames and deletions in it durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(LogError::io("fsync directory", dir))
}

/// Creates `dir/name` with `bytes` so that a crash leaves either the old or the new file:
/// write a temporary file, fsync it, rename it over, fsync the directory.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), LogError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp).map_err(LogError::io("create", &tmp))?;
    f.write_all(bytes).map_err(LogError::io("write", &tmp))?;
    f.sync_all().map_err(LogError::io("fsync", &tmp))?;
    let dst = dir.join(name);
    fs::rename(&tmp, &dst).map_err(LogError::io("rename", &dst))?;
    fsync_dir(dir)
}

/// Creates the empty active segment at `base_offset`.
pub(crate) fn create_segment(
    dir: &Path,
    base_offset: i64,
    config: &LogConfig,
) -> Result<(Segment, Indexer), LogError> {
    let [log, index, timeindex] = segment_paths(dir, base_offset);
    for stale in [&index, &timeindex] {
        let _ = fs::remove_file(stale);
    }
    // A leftover file (from a crash before the directory fsync) is removed rather than
    // truncated: ext4 flushes a file truncated to zero when it is closed.
    match fs::remove_file(&log) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LogError::io("remove", &log)(e)),
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(&log)
        .map_err(LogError::io("create", &log))?;
    let (oi, _) = OffsetIndex::open(&index, Some(config.offset_index_entries()))
        .map_err(LogError::io("create", &index))?;
    let (ti, _) = TimeIndex::open(&timeindex, Some(config.time_index_entries()))
        .map_err(LogError::io("create", &timeindex))?;
    fsync_dir(dir)?;
    let state = SegmentState {
        size: 0,
        next_offset: base_offset,
        max_timestamp: None,
        first_timestamp: None,
    };
    let indexer = Indexer::new(base_offset, config.index_interval_bytes);
    Ok((
        Segment::new(base_offset, log, file, state, false, oi, ti),
        indexer,
    ))
}

fn open_log_file(path: &Path) -> Result<(File, u64), LogError> {
    // Append mode: the writer's vectored writes always land at the end, also after a
    // truncation; readers use positional reads, which append mode does not affect.
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
        .map_err(LogError::io("open", path))?;
    let len = file.metadata().map_err(LogError::io("stat", path))?.len();
    Ok((file, len))
}

fn corrupt(path: &Path, position: u64, reason: impl ToString) -> LogError {
    LogError::Corrupt {
        segment: path.to_path_buf(),
        position,
        reason: reason.to_string(),
    }
}

/// Checks offsets are dense: each batch starts where the previous one ended.
fn continuity(
    expected: &mut Option<i64>,
) -> impl FnMut(u64, &BatchHeader) -> Result<(), String> + '_ {
    move |_, h| {
        if let Some(e) = *expected
            && h.base_offset != e
        {
            return Err(format!(
                "batch base offset {} does not follow offset {}",
                h.base_offset,
                e - 1
            ));
        }
        *expected = Some(h.next_offset());
        Ok(())
    }
}

/// Scans a whole sealed segment and writes fresh indexes for it (tmp file, fsync, rename).
/// Any invalid byte is an error naming the position.
fn rebuild_sealed(
    dir: &Path,
    base_offset: i64,
    file: &File,
    log_path: &Path,
    len: u64,
    config: &LogConfig,
) -> Result<(OffsetIndex, TimeIndex, Indexer), LogError> {
    let [_, index, timeindex] = segment_paths(dir, base_offset);
    let tmp_index = index.with_extension("index.tmp");
    let tmp_time = timeindex.with_extension("timeindex.tmp");
    let (mut oi, _) = OffsetIndex::open(&tmp_index, Some(config.offset_index_entries()))
        .map_err(LogError::io("create", &tmp_index))?;
    let (mut ti, _) = TimeIndex::open(&tmp_time, Some(config.time_index_entries()))
        .map_err(LogError::io("create", &tmp_time))?;
    let mut indexer = Indexer::new(base_offset, config.index_interval_bytes);
    let mut expected = Some(base_offset);
    let mut check = continuity(&mut expected);
    let end = scan(file, log_path, 0, len, |pos, h| {
        check(pos, h)?;
        indexer.on_batch(pos, h, &mut oi, &mut ti);
        Ok(())
    })?;
    if let Some((pos, reason)) = end.error {
        let _ = fs::remove_file(&tmp_index);
        let _ = fs::remove_file(&tmp_time);
        return Err(corrupt(log_path, pos, reason));
    }
    indexer.seal(&mut ti);
    for (file, tmp, dst) in [
        (oi.file(), &tmp_index, &index),
        (ti.file(), &tmp_time, &timeindex),
    ] {
        file.trim().map_err(LogError::io("trim", tmp))?;
        file.sync().map_err(LogError::io("fsync", tmp))?;
        fs::rename(tmp, dst).map_err(LogError::io("rename", dst))?;
    }
    fsync_dir(dir)?;
    Ok((oi, ti, indexer))
}

/// Opens a sealed segment. With `trusted`, its indexes are checked and only the bytes after
/// the last index entry are scanned; damaged or missing indexes are rebuilt. Without, the
/// whole segment is scanned and its indexes rebuilt.
pub(crate) fn open_sealed(
    dir: &Path,
    base_offset: i64,
    config: &LogConfig,
    trusted: bool,
) -> Result<Segment, LogError> {
    let [log, index, timeindex] = segment_paths(dir, base_offset);
    let (file, len) = open_log_file(&log)?;
    let indexes_exist = index.exists() && timeindex.exists();
    let checked = if trusted && indexes_exist {
        check_sealed_indexes(&file, &log, &index, &timeindex, base_offset, len, config)?
    } else {
        None
    };
    let (oi, ti, indexer) = match checked {
        Some(found) => found,
        None => {
            if trusted {
                tracing::warn!(segment = %log.display(), "index missing or damaged; rebuilding from the log");
            }
            rebuild_sealed(dir, base_offset, &file, &log, len, config)?
        }
    };
    let state = SegmentState {
        size: indexer.size,
        next_offset: indexer.next_offset,
        max_timestamp: indexer.max_timestamp(),
        first_timestamp: indexer.first_timestamp,
    };
    Ok(Segment::new(base_offset, log, file, state, true, oi, ti))
}

/// Loads a sealed segment's indexes and scans the log after the last offset-index entry.
/// `Ok(None)`: an index is damaged (rebuild it). `Err`: the log itself is corrupt.
fn check_sealed_indexes(
    file: &File,
    log: &Path,
    index: &Path,
    timeindex: &Path,
    base_offset: i64,
    len: u64,
    config: &LogConfig,
) -> Result<Option<(OffsetIndex, TimeIndex, Indexer)>, LogError> {
    let (oi, stray_o) = OffsetIndex::open(index, None).map_err(LogError::io("open", index))?;
    let (ti, stray_t) =
        TimeIndex::open(timeindex, None).map_err(LogError::io("open", timeindex))?;
    if stray_o != 0 || stray_t != 0 {
        return Ok(None);
    }
    if oi.check(oi.len(), len) < oi.len() {
        return Ok(None);
    }
    // Time entries may point past the last offset entry (the entry added at sealing).
    if ti.check(ti.len(), u64::from(u32::MAX), false) < ti.len() {
        return Ok(None);
    }
    let from = oi.last().map_or(0, |e| u64::from(e.position));
    // The batch at an index entry must carry the offset the entry names.
    if let Some(e) = oi.last() {
        let mut head = [0u8; HEADER_LEN];
        let n = (len - from).min(HEADER_LEN as u64) as usize;
        file.read_exact_at(&mut head[..n], from)
            .map_err(LogError::io("read", log))?;
        match BatchHeader::parse(&head[..n]) {
            Ok(h) if h.base_offset == base_offset + i64::from(e.relative_offset) => {}
            _ => return Ok(None),
        }
    }
    let mut indexer = Indexer::new(base_offset, config.index_interval_bytes).resume(&oi, &ti);
    let mut expected = None;
    let mut check = continuity(&mut expected);
    let (mut oi, mut ti) = (oi, ti);
    let end = scan(file, log, from, len, |pos, h| {
        check(pos, h)?;
        indexer.on_batch(pos, h, &mut oi, &mut ti);
        Ok(())
    })?;
    if let Some((pos, reason)) = end.error {
        return Err(corrupt(log, pos, reason));
    }
    if from == 0 && len == 0 {
        indexer.next_offset = base_offset;
    }
    // The first batch's timestamp decides nothing for a sealed segment (it no longer rolls).
    Ok(Some((oi, ti, indexer)))
}

/// Opens the last segment as the active one: keeps index entries below `trusted_pos`, scans
/// from there, and truncates the file at the first torn or invalid batch.
pub(crate) fn open_active(
    dir: &Path,
    base_offset: i64,
    config: &LogConfig,
    trusted_pos: u64,
) -> Result<(Segment, Indexer), LogError> {
    let [log, index, timeindex] = segment_paths(dir, base_offset);
    let (file, len) = open_log_file(&log)?;
    let trusted_pos = if trusted_pos > len { 0 } else { trusted_pos };
    let (mut oi, _) = OffsetIndex::open(&index, Some(config.offset_index_entries()))
        .map_err(LogError::io("open", &index))?;
    let (mut ti, _) = TimeIndex::open(&timeindex, Some(config.time_index_entries()))
        .map_err(LogError::io("open", &timeindex))?;
    let keep = oi.check(config.offset_index_entries(), trusted_pos);
    oi.set_len(keep);
    let time_bound = oi.last().map_or(0, |e| u64::from(e.relative_offset) + 1);
    let keep = ti.check(config.time_index_entries(), time_bound, true);
    ti.set_len(keep);
    let start = match ti.last() {
        Some(t) => oi.lookup(t.relative_offset),
        None => {
            // Without time entries the segment's largest timestamp is unknown: scan it all.
            oi.set_len(0);
            None
        }
    };
    let from = start.map_or(0, |e| u64::from(e.position));
    let from_offset = base_offset + start.map_or(0, |e| i64::from(e.relative_offset));
    let mut indexer = Indexer::new(base_offset, config.index_interval_bytes).resume(&oi, &ti);
    // The batch at `from` must carry the offset its index entry names: baseOffset is outside
    // the CRC, so this is what catches a damaged one.
    let mut expected = Some(from_offset);
    let mut check = continuity(&mut expected);
    let end = scan(&file, &log, from, len, |pos, h| {
        check(pos, h)?;
        indexer.on_batch(pos, h, &mut oi, &mut ti);
        Ok(())
    })?;
    if from > 0 {
        let mut head = [0u8; HEADER_LEN];
        file.read_exact_at(&mut head, 0)
            .map_err(LogError::io("read", &log))?;
        indexer.first_timestamp = BatchHeader::parse(&head).ok().map(|h| h.max_timestamp);
    }
    if end.valid_end == from {
        indexer.size = from;
        indexer.next_offset = from_offset;
    }
    if let Some((pos, reason)) = &end.error {
        tracing::warn!(
            segment = %log.display(),
            position = pos,
            dropped_bytes = len - end.valid_end,
            %reason,
            "truncating torn or corrupt tail of the active segment"
        );
    }
    if end.valid_end < len {
        file.set_len(end.valid_end)
            .map_err(LogError::io("truncate", &log))?;
        file.sync_all().map_err(LogError::io("fsync", &log))?;
        oi.truncate_to_position(end.valid_end as u32);
        ti.truncate_to_offset((indexer.next_offset - base_offset) as u32);
    }
    let state = SegmentState {
        size: end.valid_end,
        next_offset: indexer.next_offset,
        max_timestamp: indexer.max_timestamp(),
        first_timestamp: indexer.first_timestamp,
    };
    Ok((
        Segment::new(base_offset, log, file, state, false, oi, ti),
        indexer,
    ))
}

/// The segments of a log directory after recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segments: Vec<Arc<Segment>>,
    pub indexer: Indexer,
    pub checkpoint: Option<RecoveryCheckpoint>,
}

/// Lists the segment base offsets in `dir`, removing leftovers of interrupted operations
/// (temporary files, index files whose log is gone).
fn list_segments(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut logs = Vec::new();
    let mut indexes: Vec<(i64, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir).map_err(LogError::io("list", dir))? {
        let entry = entry.map_err(LogError::io("list", dir))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".tmp") {
            fs::remove_file(&path).map_err(LogError::io("remove", &path))?;
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Some(base) = parse_base_offset(stem) else {
            continue;
        };
        match ext {
            "log" => logs.push(base),
            "index" | "timeindex" => indexes.push((base, path)),
            _ => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            fs::remove_file(&path).map_err(LogError::io("remove", &path))?;
        }
    }
    Ok(logs)
}

/// Opens every segment in `dir` (see the module docs).
pub(crate) fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered, LogError> {
    let checkpoint = RecoveryCheckpoint::read(dir);
    let bases = list_segments(dir)?;
    let Some((&last, sealed)) = bases.split_last() else {
        let base = checkpoint.map_or(0, |c| c.segment);
        let (segment, indexer) = create_segment(dir, base, config)?;
        return Ok(Recovered {
            segments: vec![Arc::new(segment)],
            indexer,
            checkpoint,
        });
    };
    let cp = checkpoint.filter(|c| bases.binary_search(&c.segment).is_ok());
    let mut segments = Vec::with_capacity(bases.len());
    for &base in sealed {
        let trusted = cp.is_some_and(|c| base < c.segment);
        let segment = open_sealed(dir, base, config, trusted)?;
        segments.push(Arc::new(segment));
    }
    let trusted_pos = cp.filter(|c| c.segment == last).map_or(0, |c| c.position);
    let (active, indexer) = open_active(dir, last, config, trusted_pos)?;
    segments.push(Arc::new(active));
    for pair in segments.windows(2) {
        if pair[0].next_offset() != pair[1].base_offset() {
            return Err(corrupt(
                pair[1].path(),
                0,
                format!(
                    "segment starts at offset {} but the previous segment ends at {}",
                    pair[1].base_offset(),
                    pair[0].next_offset()
                ),
            ));
        }
    }
    Ok(Recovered {
        segments,
        indexer,
        checkpoint: cp,
    })
}
