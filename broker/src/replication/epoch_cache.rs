//! The leader-epoch cache of one partition (Kafka's `leader-epoch-checkpoint`, KIP-101):
//! for every leader epoch that appended to the log, the offset of its first batch.
//!
//! It answers "where did epoch E end?", which a follower asks a new leader before it fetches,
//! so it can cut off whatever it holds that the new leader does not: truncation by epoch, not
//! by high watermark, which could keep a diverged tail or drop acknowledged records.
//!
//! Persisted as a small text file in the partition directory (a version line, a count line,
//! then `epoch start_offset` lines), replaced atomically (tmp file, fsync, rename, fsync dir).

use std::fmt;
use std::path::{Path, PathBuf};

use brook_proto::{LeaderEpoch, Offset};

use crate::log::LogError;

/// File name inside a partition directory.
pub const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Format version written on the first line.
const VERSION: u32 = 0;

/// One epoch and the offset of its first batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: LeaderEpoch,
    /// Offset of the first batch that epoch appended.
    pub start_offset: Offset,
}

/// The answer to "where did epoch E end?" (Kafka's OffsetForLeaderEpoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    /// The largest epoch in the cache that is at most the one asked about; `UNKNOWN` when the
    /// cache holds nothing that old.
    pub epoch: LeaderEpoch,
    /// Where that epoch's batches end (exclusive): the start of the next epoch, or the log end
    /// for the newest one. `-1` with an `UNKNOWN` epoch.
    pub end_offset: Offset,
}

impl EpochEnd {
    /// Nothing known about the epoch asked for.
    pub const UNDEFINED: EpochEnd = EpochEnd {
        epoch: LeaderEpoch::UNKNOWN,
        end_offset: Offset(-1),
    };
}

/// A checkpoint file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: line {line}: {reason}")]
pub struct CheckpointError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Epochs with their start offsets, both strictly increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// An empty cache (a new partition).
    pub fn new() -> Self {
        EpochCache::default()
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any batch was appended under one.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` appends from `start_offset` on. A leader calls it when it takes
    /// over (with its log end), a follower for each batch it copies. Nothing changes for an
    /// epoch the cache already ends with; an older epoch, or an offset below the newest
    /// entry's, is refused with the reason (both would mean a log that went backwards).
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> Result<bool, String> {
        if epoch.get() < 0 || start_offset.get() < 0 {
            return Err(format!(
                "epoch {epoch} from offset {start_offset}: both must be at least 0"
            ));
        }
        if let Some(last) = self.entries.last() {
            if epoch == last.epoch {
                return Ok(false);
            }
            if epoch < last.epoch {
                return Err(format!(
                    "epoch {epoch} is older than the newest epoch {} (from offset {})",
                    last.epoch, last.start_offset
                ));
            }
            if start_offset < last.start_offset {
                return Err(format!(
                    "epoch {epoch} would start at offset {start_offset}, before epoch {} \
                     (from offset {})",
                    last.epoch, last.start_offset
                ));
            }
            if start_offset == last.start_offset {
                // The previous epoch appended nothing: it ends where it began.
                self.entries.pop();
            }
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        Ok(true)
    }

    /// Where `epoch` ended in a log whose end offset is `log_end`: the start of the first
    /// newer epoch, or `log_end` when `epoch` is the newest or newer than all. The epoch
    /// returned is the largest cached one not above `epoch`.
    pub fn end_offset_for(&self, epoch: LeaderEpoch, log_end: Offset) -> EpochEnd {
        let newer = self.entries.partition_point(|e| e.epoch <= epoch);
        if newer == 0 {
            return EpochEnd::UNDEFINED;
        }
        let found = self.entries[newer - 1].epoch;
        let end_offset = self
            .entries
            .get(newer)
            .map_or(log_end, |next| next.start_offset);
        EpochEnd {
            epoch: found,
            end_offset,
        }
    }

    /// Forgets the epochs that start at or after `offset` (the log was truncated to it).
    pub fn truncate_from_end(&mut self, offset: Offset) {
        self.entries.retain(|e| e.start_offset < offset);
    }

    /// Forgets what lies below `offset` (the log start moved up): epochs that ended before it
    /// go, and the one it falls in starts at `offset`.
    pub fn truncate_from_start(&mut self, offset: Offset) {
        let keep_from = self
            .entries
            .partition_point(|e| e.start_offset <= offset)
            .saturating_sub(1);
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut()
            && first.start_offset < offset
        {
            first.start_offset = offset;
        }
    }

    /// Reads `dir`'s checkpoint; a missing file is an empty cache.
    pub fn load(dir: &Path) -> Result<EpochCache, CheckpointError> {
        let path = dir.join(EPOCH_CHECKPOINT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(EpochCache::new()),
            Err(e) => {
                return Err(CheckpointError {
                    path,
                    line: 0,
                    reason: e.to_string(),
                });
            }
        };
        EpochCache::parse(&text).map_err(|(line, reason)| CheckpointError { path, line, reason })
    }

    fn parse(text: &str) -> Result<EpochCache, (usize, String)> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        let number = |(line, s): (usize, &str), what: &str| -> Result<i64, (usize, String)> {
            s.parse::<i64>()
                .map_err(|_| (line, format!("{what} {s:?} is not a number")))
        };
        let version = number(
            lines.next().ok_or((1, "empty file".to_string()))?,
            "version",
        )?;
        if version != i64::from(VERSION) {
            return Err((1, format!("version {version} is not {VERSION}")));
        }
        let count = number(
            lines.next().ok_or((2, "no entry count".to_string()))?,
            "count",
        )?;
        let mut cache = EpochCache::new();
        for (line, text) in lines.by_ref().take(usize::try_from(count).unwrap_or(0)) {
            let mut fields = text.split_whitespace();
            let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err((line, format!("{text:?} is not \"EPOCH START_OFFSET\"")));
            };
            let epoch = number((line, epoch), "epoch")?;
            let start = number((line, start), "start offset")?;
            let epoch = i32::try_from(epoch)
                .map_err(|_| (line, format!("epoch {epoch} does not fit 32 bits")))?;
            let last = cache.entries.last().copied();
            if last.is_some_and(|l| l.epoch.get() >= epoch || l.start_offset.get() >= start) {
                return Err((
                    line,
                    format!("epoch {epoch} at {start} does not follow the line before"),
                ));
            }
            cache
                .assign(LeaderEpoch(epoch), Offset(start))
                .map_err(|reason| (line, reason))?;
        }
        if cache.entries.len() as i64 != count {
            return Err((
                count as usize + 2,
                format!("{} entries, the header says {count}", cache.entries.len()),
            ));
        }
        if let Some((line, extra)) = lines.find(|(_, l)| !l.is_empty()) {
            return Err((line, format!("unexpected {extra:?} after the entries")));
        }
        Ok(cache)
    }

    /// Writes the cache to `dir`'s checkpoint atomically.
    pub fn store(&self, dir: &Path) -> Result<(), LogError> {
        crate::log::write_atomically(dir, EPOCH_CHECKPOINT_FILE, self.to_string().as_bytes())
    }
}

impl fmt::Display for EpochCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{VERSION}")?;
        writeln!(f, "{}", self.entries.len())?;
        for e in &self.entries {
            writeln!(f, "{} {}", e.epoch, e.start_offset)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        let mut c = EpochCache::new();
        for (e, o) in entries {
            c.assign(LeaderEpoch(*e), Offset(*o)).unwrap();
        }
        c
    }

    fn end(epoch: i32, offset: i64) -> EpochEnd {
        EpochEnd {
            epoch: LeaderEpoch(epoch),
            end_offset: Offset(offset),
        }
    }

    #[test]
    fn end_offsets_follow_kafka_offset_for_leader_epoch() {
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        let log_end = Offset(40);
        assert_eq!(
            c.end_offset_for(LeaderEpoch(0), log_end),
            EpochEnd::UNDEFINED
        );
        assert_eq!(c.end_offset_for(LeaderEpoch(1), log_end), end(1, 10));
        // Epoch 2 never appended here: answer with epoch 1, which ended where 3 began.
        assert_eq!(c.end_offset_for(LeaderEpoch(2), log_end), end(1, 10));
        assert_eq!(c.end_offset_for(LeaderEpoch(3), log_end), end(3, 25));
        assert_eq!(c.end_offset_for(LeaderEpoch(4), log_end), end(4, 40));
        assert_eq!(c.end_offset_for(LeaderEpoch(9), log_end), end(4, 40));
        assert_eq!(
            EpochCache::new().end_offset_for(LeaderEpoch(5), Offset(0)),
            EpochEnd::UNDEFINED
        );
    }

    #[test]
    fn assign_refuses_a_log_going_backwards_and_drops_empty_epochs() {
        let mut c = cache(&[(1, 0), (2, 5)]);
        assert_eq!(c.assign(LeaderEpoch(2), Offset(9)), Ok(false));
        assert_eq!(
            c.assign(LeaderEpoch(1), Offset(9)).unwrap_err(),
            "epoch 1 is older than the newest epoch 2 (from offset 5)"
        );
        assert_eq!(
            c.assign(LeaderEpoch(3), Offset(4)).unwrap_err(),
            "epoch 3 would start at offset 4, before epoch 2 (from offset 5)"
        );
        assert_eq!(
            c.assign(LeaderEpoch(-1), Offset(4)).unwrap_err(),
            "epoch -1 from offset 4: both must be at least 0"
        );
        // Epoch 3 takes over at 5 before epoch 2 appended anything: 2 is gone.
        assert_eq!(c.assign(LeaderEpoch(3), Offset(5)), Ok(true));
        assert_eq!(c, cache(&[(1, 0), (3, 5)]));
    }

    #[test]
    fn truncation_from_either_end() {
        let mut c = cache(&[(1, 0), (3, 10), (4, 25)]);
        c.truncate_from_end(Offset(25));
        assert_eq!(c, cache(&[(1, 0), (3, 10)]));
        c.truncate_from_end(Offset(11));
        assert_eq!(c, cache(&[(1, 0), (3, 10)]));
        let mut d = cache(&[(1, 0), (3, 10), (4, 25)]);
        d.truncate_from_start(Offset(12));
        assert_eq!(d, cache(&[(3, 12), (4, 25)]));
        d.truncate_from_start(Offset(25));
        assert_eq!(d, cache(&[(4, 25)]));
        d.truncate_from_start(Offset(3));
        assert_eq!(d, cache(&[(4, 25)]));
    }

    #[test]
    fn the_checkpoint_survives_a_round_trip_and_bad_files_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(EpochCache::load(dir.path()).unwrap(), EpochCache::new());
        let c = cache(&[(1, 0), (3, 10), (4, 25)]);
        c.store(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(EPOCH_CHECKPOINT_FILE)).unwrap(),
            "0\n3\n1 0\n3 10\n4 25\n"
        );
        assert_eq!(EpochCache::load(dir.path()).unwrap(), c);
        let bad = [
            ("", "line 1: empty file"),
            ("1\n0\n", "line 1: version 1 is not 0"),
            ("0\n", "line 2: no entry count"),
            ("0\nx\n", "line 2: count \"x\" is not a number"),
            ("0\n2\n1 0\n", "line 4: 1 entries, the header says 2"),
            ("0\n1\n1\n", "line 3: \"1\" is not \"EPOCH START_OFFSET\""),
            (
                "0\n1\n1 0 7\n",
                "line 3: \"1 0 7\" is not \"EPOCH START_OFFSET\"",
            ),
            ("0\n1\n1 q\n", "line 3: start offset \"q\" is not a number"),
            (
                "0\n1\n99999999999 0\n",
                "line 3: epoch 99999999999 does not fit 32 bits",
            ),
            (
                "0\n2\n3 0\n2 5\n",
                "line 4: epoch 2 at 5 does not follow the line before",
            ),
            (
                "0\n1\n-4 0\n",
                "line 3: epoch -4 from offset 0: both must be at least 0",
            ),
            (
                "0\n1\n1 0\n2 5\n",
                "line 4: unexpected \"2 5\" after the entries",
            ),
        ];
        for (text, reason) in bad {
            std::fs::write(dir.path().join(EPOCH_CHECKPOINT_FILE), text).unwrap();
            let err = EpochCache::load(dir.path()).unwrap_err().to_string();
            assert!(err.ends_with(reason), "{text:?}: {err}");
        }
    }
}
