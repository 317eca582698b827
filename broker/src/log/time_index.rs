//! The sparse time index of one segment: `(timestamp i64, relative offset u32)` entries,
//! big-endian. An entry `(T, o)` says: the batch at relative offset `o` raised the segment's
//! largest timestamp to `T`; every batch before it has timestamps `<= T`.
//!
//! Invariants: timestamps strictly increase; relative offsets strictly increase.

use std::io;
use std::path::Path;

use super::index_file::IndexFile;

/// Bytes per entry.
pub const TIME_ENTRY_SIZE: usize = 12;

/// One time-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp seen up to and including the batch at `relative_offset`.
    pub timestamp: i64,
    /// Base offset of that batch, relative to the segment's base offset.
    pub relative_offset: u32,
}

/// The `.timeindex` file of a segment.
#[derive(Debug)]
pub struct TimeIndex {
    file: IndexFile,
}

impl TimeIndex {
    pub(crate) fn open(path: &Path, preallocate: Option<usize>) -> io::Result<(Self, usize)> {
        let (file, stray) = IndexFile::open(path, TIME_ENTRY_SIZE, preallocate)?;
        Ok((TimeIndex { file }, stray))
    }

    pub(crate) fn file(&mut self) -> &mut IndexFile {
        &mut self.file
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.file.entries()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when no further entry fits.
    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }

    /// Entry `i`.
    #[inline]
    pub fn entry(&self, i: usize) -> TimeEntry {
        let e = self.file.entry(i);
        TimeEntry {
            timestamp: i64::from_be_bytes(e[..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes(e[8..].try_into().expect("4 bytes")),
        }
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<TimeEntry> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// The last entry with a timestamp strictly below `timestamp`: every batch before its
    /// offset is older than `timestamp`, so a search for the first batch at or after
    /// `timestamp` can start there. `None` means "scan from the segment start".
    pub fn lookup_before(&self, timestamp: i64) -> Option<TimeEntry> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid).timestamp < timestamp {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends an entry if `timestamp` is above the last entry's. Returns false when full.
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) -> bool {
        if let Some(last) = self.last()
            && (last.timestamp >= timestamp || last.relative_offset >= relative_offset)
        {
            return true;
        }
        let mut e = [0u8; TIME_ENTRY_SIZE];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&relative_offset.to_be_bytes());
        self.file.push(&e)
    }

    /// Drops every entry whose relative offset is `>= relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = (0..self.len())
            .take_while(|&i| self.entry(i).relative_offset < relative_offset)
            .count();
        self.file.truncate(keep);
    }

    /// Counts leading well-formed entries among the first `all`, for a segment whose next
    /// relative offset is `end_relative`. In an `active` segment every entry sits at an
    /// index point, never at relative offset 0, so a zero entry is the unused tail of the
    /// preallocated file.
    pub(crate) fn check(&self, all: usize, end_relative: u64, active: bool) -> usize {
        let mut prev: Option<TimeEntry> = None;
        for i in 0..all {
            let e = self.entry(i);
            let ordered = prev
                .is_none_or(|p| p.timestamp < e.timestamp && p.relative_offset < e.relative_offset);
            let unused = active && e.relative_offset == 0;
            if !ordered || unused || u64::from(e.relative_offset) >= end_relative {
                return i;
            }
            prev = Some(e);
        }
        all
    }

    pub(crate) fn set_len(&mut self, n: usize) {
        self.file.set_valid(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_only_grow_and_lookup_finds_the_last_older_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (mut ti, _) = TimeIndex::open(&dir.path().join("0.timeindex"), Some(8)).unwrap();
        assert!(ti.maybe_append(100, 1));
        assert!(ti.maybe_append(100, 2)); // same timestamp: skipped
        assert!(ti.maybe_append(90, 3)); // older: skipped
        assert!(ti.maybe_append(200, 4));
        assert!(ti.maybe_append(300, 9));
        assert_eq!(ti.len(), 3);
        assert_eq!(ti.lookup_before(100), None);
        assert_eq!(
            ti.lookup_before(101),
            Some(TimeEntry {
                timestamp: 100,
                relative_offset: 1
            })
        );
        assert_eq!(
            ti.lookup_before(300),
            Some(TimeEntry {
                timestamp: 200,
                relative_offset: 4
            })
        );
        assert_eq!(
            ti.lookup_before(i64::MAX),
            Some(TimeEntry {
                timestamp: 300,
                relative_offset: 9
            })
        );
        ti.truncate_to_offset(4);
        assert_eq!(
            ti.last(),
            Some(TimeEntry {
                timestamp: 100,
                relative_offset: 1
            })
        );
        // In an active segment's preallocated file, the zero tail ends the entries.
        assert_eq!(ti.check(8, 100, true), 1);
        assert_eq!(ti.check(8, 1, true), 0);
    }
}
