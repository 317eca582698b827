//! One segment: a `.log` file of consecutive batches starting at `base_offset`, with its
//! offset and time indexes.
//!
//! A segment is *active* (the one the writer appends to; read with positional reads) or
//! *sealed* (immutable; read through a memory map, so reads hand out zero-copy [`Bytes`]).
//! A sealed file is never truncated in place: a truncation that reaches into it rewrites the
//! kept prefix into a new file, so maps that readers still hold stay valid.
//!
//! Invariants (kept by the writer, relied on by readers):
//! - bytes `[0, size)` of the file are whole, CRC-valid batches with dense offsets
//!   `base_offset..next_offset`;
//! - every index entry points inside `[0, size)`;
//! - `size` and `next_offset` only move forward while the segment is active, and are
//!   published (Release) after the bytes and index entries they cover.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use brook_proto::batch::layout::HEADER_LEN;
use brook_proto::{BatchHeader, RecordBatch};
use bytes::{Bytes, BytesMut};
use memmap2::Mmap;
use parking_lot::RwLock;

use super::log_config::MAX_BATCH_BYTES_LIMIT;
use super::{LogError, OffsetIndex, TimeIndex};

/// `{base_offset:020}.log`.
pub fn log_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.log")
}

/// The three files of the segment at `base_offset` in `dir`: log, offset index, time index.
pub(crate) fn segment_paths(dir: &Path, base_offset: i64) -> [PathBuf; 3] {
    let stem = format!("{base_offset:020}");
    [
        dir.join(format!("{stem}.log")),
        dir.join(format!("{stem}.index")),
        dir.join(format!("{stem}.timeindex")),
    ]
}

/// Parses a segment file stem (20 decimal digits).
pub(crate) fn parse_base_offset(stem: &str) -> Option<i64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

use super::indexer::NO_TIMESTAMP;

/// `len` bytes of `file` from `pos`, read into a fresh buffer without zeroing it first (a
/// fetch reads megabytes at a time; zeroing them cost as much as a tenth of the read).
fn read_exact_uninit_at(file: &File, len: usize, pos: u64) -> std::io::Result<BytesMut> {
    use std::os::fd::AsRawFd;
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let done = buf.len();
        let want = len - done;
        let at = libc::off_t::try_from(pos + done as u64)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let spare = buf.spare_capacity_mut();
        // SAFETY: `spare` is writable memory of at least `want` bytes owned by `buf`; pread
        // writes at most `want` bytes into it and reports how many.
        let n = unsafe { libc::pread(file.as_raw_fd(), spare.as_mut_ptr().cast(), want, at) };
        match n {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => {
                // SAFETY: pread initialised the first `n` (<= `want`) spare bytes.
                unsafe { buf.set_len(done + n as usize) };
            }
            _ => {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(buf)
}

/// A timestamp lookup result: the first record at or after the target time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// Offset of the record (for a compressed batch, of the batch's first record).
    pub offset: i64,
    /// Its timestamp (for a compressed batch, the batch's largest timestamp).
    pub timestamp: i64,
}

/// One segment, shared by the writer and readers.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    file: File,
    size: AtomicU64,
    next_offset: AtomicI64,
    max_timestamp: AtomicI64,
    first_timestamp: AtomicI64,
    sealed: AtomicBool,
    mapped: OnceLock<Bytes>,
    pub(crate) offset_index: RwLock<OffsetIndex>,
    pub(crate) time_index: RwLock<TimeIndex>,
}

/// Owner of a read-only map, so `Bytes` can point into it.
struct MappedFile(Mmap);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Where a segment's state stands after it was opened or recovered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentState {
    pub size: u64,
    pub next_offset: i64,
    pub max_timestamp: Option<i64>,
    pub first_timestamp: Option<i64>,
}

impl Segment {
    pub(crate) fn new(
        base_offset: i64,
        log_path: PathBuf,
        file: File,
        state: SegmentState,
        sealed: bool,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
    ) -> Segment {
        Segment {
            base_offset,
            log_path,
            file,
            size: AtomicU64::new(state.size),
            next_offset: AtomicI64::new(state.next_offset),
            max_timestamp: AtomicI64::new(state.max_timestamp.unwrap_or(NO_TIMESTAMP)),
            first_timestamp: AtomicI64::new(state.first_timestamp.unwrap_or(NO_TIMESTAMP)),
            sealed: AtomicBool::new(sealed),
            mapped: OnceLock::new(),
            offset_index: RwLock::new(offset_index),
            time_index: RwLock::new(time_index),
        }
    }

    /// Offset of the segment's first batch.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// The `.log` file.
    pub fn path(&self) -> &Path {
        &self.log_path
    }

    /// Bytes of whole batches visible to readers.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Offset after the segment's last batch.
    pub fn next_offset(&self) -> i64 {
        self.next_offset.load(Ordering::Acquire)
    }

    /// Largest record timestamp in the segment.
    pub fn max_timestamp(&self) -> Option<i64> {
        Some(self.max_timestamp.load(Ordering::Acquire)).filter(|&t| t != NO_TIMESTAMP)
    }

    /// Largest timestamp of the first batch: the segment's age for rolling (as in Kafka).
    pub fn first_timestamp(&self) -> Option<i64> {
        Some(self.first_timestamp.load(Ordering::Acquire)).filter(|&t| t != NO_TIMESTAMP)
    }

    /// True once the segment is immutable.
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn publish(&self, size: u64, next_offset: i64, max_ts: i64, first_ts: Option<i64>) {
        if let Some(t) = first_ts {
            let _ = self.first_timestamp.compare_exchange(
                NO_TIMESTAMP,
                t,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        self.max_timestamp.fetch_max(max_ts, Ordering::AcqRel);
        self.size.store(size, Ordering::Release);
        self.next_offset.store(next_offset, Ordering::Release);
    }

    pub(crate) fn mark_sealed(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    fn corrupt(&self, position: u64, reason: impl ToString) -> LogError {
        LogError::Corrupt {
            segment: self.log_path.clone(),
            position,
            reason: reason.to_string(),
        }
    }

    /// Bytes `[pos, pos + len)`: a slice of the map for a sealed segment, a positional read
    /// for the active one.
    fn read_range(&self, pos: u64, len: usize) -> Result<Bytes, LogError> {
        if self.is_sealed()
            && let Some(map) = self.map()?
        {
            let end = (pos as usize + len).min(map.len());
            return Ok(map.slice((pos as usize).min(end)..end));
        }
        read_exact_uninit_at(&self.file, len, pos)
            .map(BytesMut::freeze)
            .map_err(LogError::io("read", &self.log_path))
    }

    fn map(&self) -> Result<Option<&Bytes>, LogError> {
        if let Some(m) = self.mapped.get() {
            return Ok(Some(m));
        }
        if self.size() == 0 {
            return Ok(None);
        }
        // SAFETY: a sealed segment file is never written or truncated again (truncation
        // rewrites a new file and renames it over this one, leaving this inode intact), and
        // the directory is locked against other processes.
        let map = unsafe { Mmap::map(&self.file) }.map_err(LogError::io("mmap", &self.log_path))?;
        let _ = map.advise(memmap2::Advice::Sequential);
        let bytes = Bytes::from_owner(MappedFile(map));
        Ok(Some(self.mapped.get_or_init(|| bytes)))
    }

    fn header_at(&self, pos: u64, size: u64) -> Result<BatchHeader, LogError> {
        let avail = (size - pos) as usize;
        let n = HEADER_LEN.min(avail);
        let parsed = if self.is_sealed()
            && let Some(map) = self.map()?
        {
            BatchHeader::parse(&map[pos as usize..pos as usize + n])
        } else {
            let mut head = [0u8; HEADER_LEN];
            self.file
                .read_exact_at(&mut head[..n], pos)
                .map_err(LogError::io("read", &self.log_path))?;
            BatchHeader::parse(&head[..n])
        };
        let header = parsed.map_err(|e| self.corrupt(pos, e))?;
        if header.total_size() as u64 > size - pos {
            return Err(self.corrupt(
                pos,
                format!(
                    "batch of {} bytes runs past the segment end",
                    header.total_size()
                ),
            ));
        }
        Ok(header)
    }

    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32
    }

    /// Position and header of the batch that holds `offset` (or the first batch after it),
    /// or `None` when the segment ends before `offset`.
    pub fn locate(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let size = self.size();
        let start = self.offset_index.read().lookup(self.relative(offset));
        let mut pos = start.map_or(0, |e| u64::from(e.position));
        while pos < size {
            let header = self.header_at(pos, size)?;
            if header.last_offset() >= offset {
                return Ok(Some((pos, header)));
            }
            pos += header.total_size() as u64;
        }
        Ok(None)
    }

    /// Calls `visit` with the header of every batch from the one holding `offset` to the
    /// segment's end, reading headers only.
    pub(crate) fn for_each_header(
        &self,
        offset: i64,
        mut visit: impl FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        let size = self.size();
        let Some((mut pos, _)) = self.locate(offset)? else {
            return Ok(());
        };
        while pos < size {
            let header = self.header_at(pos, size)?;
            visit(&header);
            pos += header.total_size() as u64;
        }
        Ok(())
    }

    /// Whole batches starting with the one that holds `offset`, up to `max_bytes` in all but
    /// always at least one batch. `None` when the segment ends before `offset`.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<Option<Bytes>, LogError> {
        let Some((start, first)) = self.locate(offset)? else {
            return Ok(None);
        };
        let size = self.size();
        let first_len = first.total_size();
        let want = (max_bytes.max(first_len) as u64).min(size - start) as usize;
        let buf = self.read_range(start, want)?;
        let mut end = first_len;
        while end + HEADER_LEN <= buf.len() {
            match BatchHeader::parse(&buf[end..]) {
                Ok(h) if end + h.total_size() <= buf.len() => end += h.total_size(),
                _ => break,
            }
        }
        Ok(Some(buf.slice(..end)))
    }

    /// The first record whose timestamp is `>= timestamp`, if this segment holds one.
    pub fn find_timestamp(&self, timestamp: i64) -> Result<Option<TimestampOffset>, LogError> {
        let from = self.time_index.read().lookup_before(timestamp);
        let mut pos = match from {
            Some(e) => self
                .offset_index
                .read()
                .lookup(e.relative_offset)
                .map_or(0, |e| u64::from(e.position)),
            None => 0,
        };
        let size = self.size();
        while pos < size {
            let header = self.header_at(pos, size)?;
            if header.max_timestamp >= timestamp {
                let bytes = self.read_range(pos, header.total_size())?;
                let batch = RecordBatch::new(bytes, MAX_BATCH_BYTES_LIMIT as usize)
                    .map_err(|e| self.corrupt(pos, e))?;
                let Ok(records) = batch.records() else {
                    return Ok(Some(TimestampOffset {
                        offset: header.base_offset,
                        timestamp: header.max_timestamp,
                    }));
                };
                for record in records {
                    let record = record.map_err(|e| self.corrupt(pos, e))?;
                    if record.timestamp >= timestamp {
                        return Ok(Some(TimestampOffset {
                            offset: record.offset,
                            timestamp: record.timestamp,
                        }));
                    }
                }
                return Err(
                    self.corrupt(pos, "batch max timestamp is above every record's timestamp")
                );
            }
            pos += header.total_size() as u64;
        }
        Ok(None)
    }
}

/// What [`scan`] found.
#[derive(Debug)]
pub(crate) struct ScanEnd {
    /// End of the last whole, valid batch.
    pub valid_end: u64,
    /// Where and why the scan stopped early, if it did.
    pub error: Option<(u64, String)>,
}

/// Reads batches from `from` to `len`, checking each header, length and CRC and handing
/// `(position, header)` to `visit`, which may stop the scan by returning an error string.
pub(crate) fn scan(
    file: &File,
    path: &Path,
    from: u64,
    len: u64,
    mut visit: impl FnMut(u64, &BatchHeader) -> Result<(), String>,
) -> Result<ScanEnd, LogError> {
    const CHUNK: usize = 1 << 20;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_pos = from; // file position of buf[0]
    let mut pos = from;
    while pos < len {
        let need_header = HEADER_LEN.min((len - pos) as usize);
        if pos + need_header as u64 > buf_pos + buf.len() as u64 {
            fill(
                file,
                path,
                &mut buf,
                &mut buf_pos,
                pos,
                CHUNK.max(need_header),
                len,
            )?;
        }
        let at = (pos - buf_pos) as usize;
        let header = match BatchHeader::parse(&buf[at..]) {
            Ok(h) => h,
            Err(e) => {
                return Ok(ScanEnd {
                    valid_end: pos,
                    error: Some((pos, e.to_string())),
                });
            }
        };
        let size = header.total_size();
        if size as u64 > MAX_BATCH_BYTES_LIMIT {
            let reason =
                format!("batch length {size} exceeds the limit of {MAX_BATCH_BYTES_LIMIT} bytes");
            return Ok(ScanEnd {
                valid_end: pos,
                error: Some((pos, reason)),
            });
        }
        if pos + size as u64 > len {
            let reason = format!(
                "batch of {size} bytes is cut off by the end of the file ({} bytes left)",
                len - pos
            );
            return Ok(ScanEnd {
                valid_end: pos,
                error: Some((pos, reason)),
            });
        }
        if pos + size as u64 > buf_pos + buf.len() as u64 {
            fill(
                file,
                path,
                &mut buf,
                &mut buf_pos,
                pos,
                CHUNK.max(size),
                len,
            )?;
        }
        let at = (pos - buf_pos) as usize;
        if let Err(e) = header.check_crc(&buf[at..at + size]) {
            return Ok(ScanEnd {
                valid_end: pos,
                error: Some((pos, e.to_string())),
            });
        }
        if let Err(reason) = visit(pos, &header) {
            return Ok(ScanEnd {
                valid_end: pos,
                error: Some((pos, reason)),
            });
        }
        pos += size as u64;
    }
    Ok(ScanEnd {
        valid_end: pos,
        error: None,
    })
}

fn fill(
    file: &File,
    path: &Path,
    buf: &mut Vec<u8>,
    buf_pos: &mut u64,
    pos: u64,
    want: usize,
    len: u64,
) -> Result<(), LogError> {
    let n = (want as u64).min(len - pos) as usize;
    buf.resize(n, 0);
    file.read_exact_at(buf, pos)
        .map_err(LogError::io("read", path))?;
    *buf_pos = pos;
    Ok(())
}
