//! The one place that decides index entries, used both by live appends and by recovery, so a
//! rebuilt index equals the one written live.
//!
//! An offset-index entry is added for a batch once at least `index_interval_bytes` of log
//! lie between it and the previous entry (Kafka's rule); a time-index entry is added at the
//! same points when the segment's largest timestamp rose since the last one, and once more
//! when the segment is sealed.

use brook_proto::BatchHeader;

use super::{OffsetIndex, TimeIndex};

pub(crate) const NO_TIMESTAMP: i64 = i64::MIN;

#[derive(Debug, Clone)]
pub(crate) struct Indexer {
    base_offset: i64,
    interval: u64,
    bytes_since_index: u64,
    /// Batches at positions below this are already indexed (recovery resumes mid-segment).
    indexed_up_to: Option<u64>,
    pub max_timestamp: i64,
    max_timestamp_rel: u32,
    pub first_timestamp: Option<i64>,
    pub next_offset: i64,
    pub size: u64,
}

impl Indexer {
    pub(crate) fn new(base_offset: i64, interval: u32) -> Self {
        Indexer {
            base_offset,
            interval: interval.into(),
            bytes_since_index: 0,
            indexed_up_to: None,
            max_timestamp: NO_TIMESTAMP,
            max_timestamp_rel: 0,
            first_timestamp: None,
            next_offset: base_offset,
            size: 0,
        }
    }

    /// Resumes after the entries already in `oi`/`ti`, for a scan that restarts at a batch
    /// boundary at or before the last offset-index entry.
    pub(crate) fn resume(mut self, oi: &OffsetIndex, ti: &TimeIndex) -> Self {
        self.indexed_up_to = oi.last().map(|e| u64::from(e.position));
        if let Some(t) = ti.last() {
            self.max_timestamp = t.timestamp;
            self.max_timestamp_rel = t.relative_offset;
        }
        self
    }

    /// Accounts for the batch at `pos`, adding index entries as the rules say.
    pub(crate) fn on_batch(
        &mut self,
        pos: u64,
        h: &BatchHeader,
        oi: &mut OffsetIndex,
        ti: &mut TimeIndex,
    ) {
        let rel = (h.base_offset - self.base_offset) as u32;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.max_timestamp_rel = rel;
        }
        match self.indexed_up_to {
            Some(done) if pos < done => {}
            Some(done) if pos == done => self.bytes_since_index = 0,
            _ => {
                if self.bytes_since_index >= self.interval {
                    oi.append(rel, pos as u32);
                    ti.maybe_append(self.max_timestamp, self.max_timestamp_rel);
                    self.bytes_since_index = 0;
                }
            }
        }
        self.bytes_since_index += h.total_size() as u64;
        self.first_timestamp.get_or_insert(h.max_timestamp);
        self.next_offset = h.next_offset();
        self.size = pos + h.total_size() as u64;
    }

    /// The final time-index entry written when the segment is sealed, so the last entry
    /// carries the segment's largest timestamp.
    pub(crate) fn seal(&self, ti: &mut TimeIndex) {
        if self.max_timestamp != NO_TIMESTAMP {
            ti.maybe_append(self.max_timestamp, self.max_timestamp_rel);
        }
    }

    pub(crate) fn max_timestamp(&self) -> Option<i64> {
        Some(self.max_timestamp).filter(|&t| t != NO_TIMESTAMP)
    }
}
