//! The sparse offset index of one segment: `(relative offset u32, position u32)` entries,
//! big-endian, one every `index_interval_bytes` of log. An entry names the start of a batch
//! whose base offset is `segment base + relative offset`.
//!
//! Invariants: relative offsets strictly increase, positions strictly increase, every
//! position is the start of a batch inside the segment.

use std::io;
use std::path::Path;

use super::index_file::IndexFile;

/// Bytes per entry.
pub const OFFSET_ENTRY_SIZE: usize = 8;

/// A floor match from [`OffsetIndex::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset relative to the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

/// The `.index` file of a segment.
#[derive(Debug)]
pub struct OffsetIndex {
    file: IndexFile,
}

impl OffsetIndex {
    /// Opens (creating if absent) the index at `path`. With `preallocate = Some(n)` the file
    /// is sized for `n` entries and starts with none (as an active segment's index); without,
    /// every whole entry in the file counts. Also returns the count of stray bytes after the
    /// last whole entry (non-zero: the file is damaged).
    pub fn open(path: &Path, preallocate: Option<usize>) -> io::Result<(Self, usize)> {
        let (file, stray) = IndexFile::open(path, OFFSET_ENTRY_SIZE, preallocate)?;
        Ok((OffsetIndex { file }, stray))
    }

    pub(crate) fn file(&mut self) -> &mut IndexFile {
        &mut self.file
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.file.entries()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when no further entry fits (the segment must roll).
    pub fn is_full(&self) -> bool {
        self.file.is_full()
    }

    /// Entry `i`.
    #[inline]
    pub fn entry(&self, i: usize) -> IndexEntry {
        let e = self.file.entry(i);
        IndexEntry {
            relative_offset: u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            position: u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
        }
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<IndexEntry> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// The entry with the largest relative offset `<= relative_offset`: where a scan for that
    /// offset starts. `None` means "scan from the segment start".
    #[inline]
    pub fn lookup(&self, relative_offset: u32) -> Option<IndexEntry> {
        let n = self.len();
        // partition_point over 0..n: first entry whose offset is > target.
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid).relative_offset <= relative_offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends an entry. Returns false when the index is full.
    pub fn append(&mut self, relative_offset: u32, position: u32) -> bool {
        debug_assert!(
            self.last()
                .is_none_or(|l| l.relative_offset < relative_offset)
        );
        let mut e = [0u8; OFFSET_ENTRY_SIZE];
        e[..4].copy_from_slice(&relative_offset.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        self.file.push(&e)
    }

    /// Drops every entry whose position is `>= position`.
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = (0..self.len())
            .take_while(|&i| self.entry(i).position < position)
            .count();
        self.file.truncate(keep);
    }

    /// Counts the leading entries among the first `all` that are well-formed (increasing,
    /// inside a log of `log_size` bytes). Fewer than `all` means the rest cannot be trusted.
    pub(crate) fn check(&self, all: usize, log_size: u64) -> usize {
        let mut prev: Option<IndexEntry> = None;
        for i in 0..all {
            let e = self.entry(i);
            let ordered = prev
                .is_none_or(|p| p.relative_offset < e.relative_offset && p.position < e.position);
            // Position 0 is never indexed (the first batch needs no entry): a zero entry is
            // the unused tail of a preallocated file.
            if !ordered || e.position == 0 || u64::from(e.position) >= log_size {
                return i;
            }
            prev = Some(e);
        }
        all
    }

    pub(crate) fn set_len(&mut self, n: usize) {
        // Only used on a preallocated index: the first `n` entries have been checked.
        self.file.set_valid(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn index(dir: &tempfile::TempDir, capacity: usize) -> OffsetIndex {
        OffsetIndex::open(&dir.path().join("0.index"), Some(capacity))
            .unwrap()
            .0
    }

    #[test]
    fn lookup_returns_the_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut oi = index(&dir, 8);
        assert_eq!(oi.lookup(5), None);
        assert!(oi.append(10, 100));
        assert!(oi.append(20, 200));
        assert!(oi.append(30, 300));
        assert_eq!(oi.lookup(9), None);
        assert_eq!(
            oi.lookup(10),
            Some(IndexEntry {
                relative_offset: 10,
                position: 100
            })
        );
        assert_eq!(
            oi.lookup(29),
            Some(IndexEntry {
                relative_offset: 20,
                position: 200
            })
        );
        assert_eq!(
            oi.lookup(u32::MAX),
            Some(IndexEntry {
                relative_offset: 30,
                position: 300
            })
        );
    }

    #[test]
    fn a_full_index_refuses_entries() {
        let dir = tempfile::tempdir().unwrap();
        let mut oi = index(&dir, 2);
        assert!(oi.append(1, 10));
        assert!(oi.append(2, 20));
        assert!(oi.is_full());
        assert!(!oi.append(3, 30));
        assert_eq!(oi.len(), 2);
    }

    #[test]
    fn truncate_and_trim_keep_entries_below_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut oi = index(&dir, 16);
        for i in 1..=5 {
            oi.append(i * 10, i * 100);
        }
        oi.truncate_to_position(300);
        assert_eq!(oi.len(), 2);
        assert_eq!(
            oi.last(),
            Some(IndexEntry {
                relative_offset: 20,
                position: 200
            })
        );
        oi.file().trim().unwrap();
        oi.file().sync().unwrap();
        let path = dir.path().join("0.index");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        let (again, stray) = OffsetIndex::open(&path, None).unwrap();
        assert_eq!((again.len(), stray), (2, 0));
        assert_eq!(
            again.entry(1),
            IndexEntry {
                relative_offset: 20,
                position: 200
            }
        );
    }

    #[test]
    fn check_stops_at_the_first_untrustworthy_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut oi = index(&dir, 8);
        oi.append(1, 10);
        oi.append(2, 20);
        oi.append(3, 30);
        // Over the whole preallocated file: the zero tail is not an entry.
        assert_eq!(oi.check(8, 1000), 3);
        // Entries at or past the log size are not trusted.
        assert_eq!(oi.check(8, 30), 2);
        assert_eq!(oi.check(8, 10), 0);
    }

    proptest! {
        #[test]
        fn lookup_matches_a_linear_search(
            gaps in proptest::collection::vec(1u32..50, 0..300),
            targets in proptest::collection::vec(0u32..20_000, 1..50),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut oi = index(&dir, gaps.len() + 1);
            let mut entries = Vec::new();
            let mut off = 0;
            for (i, g) in gaps.iter().enumerate() {
                off += g;
                let e = IndexEntry { relative_offset: off, position: (i as u32 + 1) * 64 };
                prop_assert!(oi.append(e.relative_offset, e.position));
                entries.push(e);
            }
            for t in targets {
                let expect = entries.iter().rev().find(|e| e.relative_offset <= t).copied();
                prop_assert_eq!(oi.lookup(t), expect);
            }
        }
    }
}
