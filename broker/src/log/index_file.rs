//! A memory-mapped file of fixed-size entries: the storage shared by [`super::OffsetIndex`] and
//! [`super::TimeIndex`].
//!
//! The active segment's index is preallocated to its maximum size (so appends never remap);
//! sealing trims it to the entries written. The map is private to its owner, which sits behind
//! a lock: no slice of it ever escapes, so trimming and remapping are safe.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

#[derive(Debug)]
pub(crate) struct IndexFile {
    path: PathBuf,
    file: File,
    map: Option<MmapMut>,
    entry_size: usize,
    entries: usize,
}

fn map(file: &File, len: u64) -> io::Result<Option<MmapMut>> {
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the file is owned by this process's log (the data directory is locked against
    // other processes), it is never truncated while this map exists (`resize` drops the map
    // first), and the map is only reached through `&self`/`&mut self` of its owner.
    let map = unsafe { MmapMut::map_mut(file)? };
    // Index pages are touched one entry at a time: without this, the first write to a
    // preallocated (sparse) file triggers readahead that zero-fills megabytes.
    let _ = map.advise(memmap2::Advice::Random);
    Ok(Some(map))
}

impl IndexFile {
    /// Opens (creating if absent) `path`. With `preallocate = Some(n)` the file is grown to `n`
    /// entries and `entries()` starts at 0 until the caller sets how many are valid; without,
    /// every whole entry in the file counts. Returns the file and the number of stray bytes
    /// past the last whole entry (non-zero means the file is damaged).
    pub(crate) fn open(
        path: &Path,
        entry_size: usize,
        preallocate: Option<usize>,
    ) -> io::Result<(Self, usize)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len() as usize;
        let stray = len % entry_size;
        let (entries, len) = match preallocate {
            Some(n) => {
                let want = (n * entry_size).max(len - stray);
                if want != len {
                    file.set_len(want as u64)?;
                }
                (0, want)
            }
            None => (len / entry_size, len),
        };
        let map = map(&file, len as u64)?;
        let index = IndexFile {
            path: path.to_path_buf(),
            file,
            map,
            entry_size,
            entries,
        };
        Ok((index, stray))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    pub(crate) fn capacity(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len() / self.entry_size)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries >= self.capacity()
    }

    /// Entry `i` (`i < entries()`).
    #[inline]
    pub(crate) fn entry(&self, i: usize) -> &[u8] {
        let map = self.map.as_ref().expect("an index with entries has a map");
        &map[i * self.entry_size..(i + 1) * self.entry_size]
    }

    /// Appends an entry; returns false (writing nothing) when the file is full.
    pub(crate) fn push(&mut self, entry: &[u8]) -> bool {
        debug_assert_eq!(entry.len(), self.entry_size);
        if self.is_full() {
            return false;
        }
        let at = self.entries * self.entry_size;
        let map = self.map.as_mut().expect("a non-full index has a map");
        map[at..at + self.entry_size].copy_from_slice(entry);
        self.entries += 1;
        true
    }

    /// Keeps the first `n` entries (zeroing the rest, so a preallocated file never shows stale
    /// entries).
    pub(crate) fn truncate(&mut self, n: usize) {
        if n >= self.entries {
            return;
        }
        let from = n * self.entry_size;
        let to = self.entries * self.entry_size;
        if let Some(map) = self.map.as_mut() {
            map[from..to].fill(0);
        }
        self.entries = n;
    }

    /// Resizes the file to `capacity` entries (at least the valid ones) and remaps it.
    pub(crate) fn resize(&mut self, capacity: usize) -> io::Result<()> {
        let len = (capacity.max(self.entries) * self.entry_size) as u64;
        if let Some(map) = self.map.take() {
            map.flush()?;
        }
        self.file.set_len(len)?;
        self.map = map(&self.file, len)?;
        Ok(())
    }

    /// Shrinks the file to exactly the valid entries (done when a segment is sealed).
    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.resize(self.entries)
    }

    /// Writes dirty pages and fsyncs the file.
    pub(crate) fn sync(&self) -> io::Result<()> {
        if let Some(map) = self.map.as_ref() {
            map.flush()?;
        }
        self.file.sync_all()
    }
}

impl IndexFile {
    /// Declares the first `n` entries valid (after the owner checked them) and zeroes the
    /// rest of the map, so stale entries never resurface.
    pub(crate) fn set_valid(&mut self, n: usize) {
        let n = n.min(self.capacity());
        if let Some(map) = self.map.as_mut() {
            map[n * self.entry_size..].fill(0);
        }
        self.entries = n;
    }
}
