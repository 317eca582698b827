//! The controller quorum's storage for openraft: its log and vote on disk, and the state
//! machine that applies [`Command`]s to the [`ClusterMetadata`], with snapshots on disk.
//!
//! Files, in the quorum's directory:
//! - `raft.log`: the log, one record per entry: `u32` length, `u32` CRC-32 of the payload (both
//!   little-endian), then the entry as JSON. An append is fsynced before openraft hears it is
//!   durable. At open, a torn or damaged record ends the log: everything from it on is cut
//!   (it was never reported durable, so no voter counted it).
//! - `vote.json`, `committed.json`, `purged.json`: the vote, the last committed and the last
//!   purged log id, each replaced atomically (temporary file, fsync, rename, fsync of the
//!   directory). The vote is durable before `save_vote` returns: a voter must never vote twice
//!   in one term, even across a crash.
//! - `snapshot.json`: the newest snapshot (its meta and the metadata), replaced atomically. The
//!   state machine lives in memory and is rebuilt at open from the snapshot; openraft applies
//!   the committed entries after it again.
//!
//! Any storage error is fatal to the Raft node (openraft stops it), as it should be: a voter
//! that cannot write its log must not take part.

// openraft's `StorageError` (over 200 bytes) is the error its storage traits require; the
// helpers here return it too rather than box it and convert at every trait method.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{Cursor, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::metadata::{ClusterMetadata, Command, LeaderChange, Refused};
use crate::log::{fsync_dir, write_atomically};

openraft::declare_raft_types!(
    /// The controller quorum's Raft types: metadata commands in, their outcomes out.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = BasicNode,
);

/// What applying one log entry did: the leader changes a command caused, or why it changed
/// nothing. Entries without a command (leader blanks, membership changes) change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied(pub Result<Vec<LeaderChange>, Refused>);

/// A log id of the quorum.
pub type RaftLogId = LogId<u64>;

type StoreResult<T> = Result<T, StorageError<u64>>;

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote.json";
const COMMITTED_FILE: &str = "committed.json";
const PURGED_FILE: &str = "purged.json";
const SNAPSHOT_FILE: &str = "snapshot.json";
/// Bytes before each record's payload: length and CRC.
const RECORD_HEADER: usize = 8;
/// Largest record accepted when reading the log back (a metadata command is far smaller).
const MAX_RECORD: usize = 64 << 20;

fn io_err(e: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&e)
}

fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> StoreResult<Option<T>> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StorageIOError::read(AnyError::error(format!("{}: {e}", path.display()))).into()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageIOError::read(io_err(e)).into()),
    }
}

fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), AnyError> {
    let bytes = serde_json::to_vec(value).map_err(io_err)?;
    write_atomically(dir, name, &bytes).map_err(io_err)
}

/// Log entries with the position of their record in `raft.log`.
type Records = Vec<(Entry<TypeConfig>, u64)>;

/// The log records of `raft.log`, and the length of its valid prefix.
fn read_log(path: &Path) -> StoreResult<(Records, u64)> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|e| StorageIOError::read_logs(io_err(e)))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageIOError::read_logs(io_err(e)).into()),
    }
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while pos + RECORD_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let start = pos + RECORD_HEADER;
        if len > MAX_RECORD || start + len > bytes.len() {
            break;
        }
        let payload = &bytes[start..start + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<Entry<TypeConfig>>(payload) else {
            break;
        };
        entries.push((entry, pos as u64));
        pos = start + len;
    }
    if pos < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            valid = pos,
            size = bytes.len(),
            "controller log ends in a torn or damaged record; cutting it there"
        );
    }
    Ok((entries, pos as u64))
}

/// The log's state, shared by the store and its readers.
#[derive(Debug)]
struct LogFiles {
    dir: PathBuf,
    file: File,
    /// Entries by index, with the position of their record.
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    /// The log file's length.
    end: u64,
    vote: Option<Vote<u64>>,
    committed: Option<RaftLogId>,
    purged: Option<RaftLogId>,
}

impl LogFiles {
    fn open(dir: &Path) -> StoreResult<LogFiles> {
        fs::create_dir_all(dir).map_err(|e| StorageIOError::write(io_err(e)))?;
        let path = dir.join(LOG_FILE);
        let (records, end) = read_log(&path)?;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        let len = file
            .metadata()
            .map_err(|e| StorageIOError::read_logs(io_err(e)))?
            .len();
        if len != end {
            file.set_len(end)
                .and_then(|()| file.sync_all())
                .map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        }
        let purged: Option<RaftLogId> = read_json(dir, PURGED_FILE)?;
        let mut entries = BTreeMap::new();
        for (entry, pos) in records {
            let index = entry.log_id.index;
            if purged.is_some_and(|p| index <= p.index) {
                continue;
            }
            if let Some((&last, _)) = entries.last_key_value()
                && index != last + 1
            {
                return Err(StorageIOError::read_logs(AnyError::error(format!(
                    "{}: entry {index} follows entry {last}",
                    path.display()
                )))
                .into());
            }
            entries.insert(index, (entry, pos));
        }
        Ok(LogFiles {
            dir: dir.to_path_buf(),
            file,
            entries,
            end,
            vote: read_json(dir, VOTE_FILE)?,
            committed: read_json(dir, COMMITTED_FILE)?,
            purged,
        })
    }

    fn range(&self, range: impl RangeBounds<u64>) -> Vec<Entry<TypeConfig>> {
        self.entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect()
    }

    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> Result<(), AnyError> {
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(entries.len());
        for entry in entries {
            let payload = serde_json::to_vec(&entry).map_err(io_err)?;
            let pos = self.end + buf.len() as u64;
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            buf.extend_from_slice(&payload);
            placed.push((entry, pos));
        }
        let mut file = &self.file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(self.end)).map_err(io_err)?;
        file.write_all(&buf).map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
        self.end += buf.len() as u64;
        for (entry, pos) in placed {
            self.entries.insert(entry.log_id.index, (entry, pos));
        }
        Ok(())
    }

    fn truncate(&mut self, from: u64) -> Result<(), AnyError> {
        let Some((_, (_, pos))) = self.entries.range(from..).next() else {
            return Ok(());
        };
        let pos = *pos;
        self.file.set_len(pos).map_err(io_err)?;
        self.file.sync_all().map_err(io_err)?;
        self.end = pos;
        self.entries.split_off(&from);
        Ok(())
    }

    /// Drops entries up to `upto`: records the purge, then rewrites the log without them.
    fn purge(&mut self, upto: RaftLogId) -> Result<(), AnyError> {
        write_json(&self.dir, PURGED_FILE, &upto)?;
        self.purged = Some(upto);
        self.entries = self.entries.split_off(&(upto.index + 1));
        let kept: Vec<Entry<TypeConfig>> = self.range(..);
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err)?;
        let old = std::mem::replace(&mut self.file, file);
        let (old_end, old_entries) = (self.end, std::mem::take(&mut self.entries));
        self.end = 0;
        if let Err(e) = self.append(kept) {
            self.file = old;
            (self.end, self.entries) = (old_end, old_entries);
            return Err(e);
        }
        fs::rename(&tmp, self.dir.join(LOG_FILE)).map_err(io_err)?;
        fsync_dir(&self.dir).map_err(io_err)?;
        Ok(())
    }

    fn last_log_id(&self) -> Option<RaftLogId> {
        (self.entries.last_key_value())
            .map(|(_, (entry, _))| entry.log_id)
            .or(self.purged)
    }
}

/// The quorum's log and vote ([`RaftLogStorage`]).
#[derive(Debug, Clone)]
pub struct LogStore {
    files: Arc<Mutex<LogFiles>>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> StoreResult<LogStore> {
        Ok(LogStore {
            files: Arc::new(Mutex::new(LogFiles::open(dir)?)),
        })
    }

    /// The last log id known committed, as saved on disk.
    pub fn committed(&self) -> Option<RaftLogId> {
        self.files.lock().committed
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StoreResult<Vec<Entry<TypeConfig>>> {
        Ok(self.files.lock().range(range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StoreResult<LogState<TypeConfig>> {
        let files = self.files.lock();
        Ok(LogState {
            last_purged_log_id: files.purged,
            last_log_id: files.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StoreResult<()> {
        let mut files = self.files.lock();
        write_json(&files.dir, VOTE_FILE, vote).map_err(StorageIOError::write_vote)?;
        files.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StoreResult<Option<Vote<u64>>> {
        Ok(self.files.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<RaftLogId>) -> StoreResult<()> {
        let mut files = self.files.lock();
        write_json(&files.dir, COMMITTED_FILE, &committed).map_err(StorageIOError::write)?;
        files.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> StoreResult<Option<RaftLogId>> {
        Ok(self.files.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StoreResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let result = self.files.lock().append(entries.into_iter().collect());
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: RaftLogId) -> StoreResult<()> {
        (self.files.lock().truncate(log_id.index))
            .map_err(|e| StorageIOError::write_log_entry(log_id, e).into())
    }

    async fn purge(&mut self, log_id: RaftLogId) -> StoreResult<()> {
        (self.files.lock().purge(log_id))
            .map_err(|e| StorageIOError::write_log_entry(log_id, e).into())
    }
}

/// The replicated state: the metadata and how far the log was applied to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineState {
    /// The last log entry applied.
    pub last_applied: Option<RaftLogId>,
    /// The last membership applied.
    pub membership: StoredMembership<u64, BasicNode>,
    /// The cluster metadata.
    pub metadata: ClusterMetadata,
}

/// The snapshot file: its meta and the state it captures.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, BasicNode>,
    state: MachineState,
}

/// The metadata state machine ([`RaftStateMachine`]).
#[derive(Debug, Clone)]
pub struct StateMachine {
    dir: PathBuf,
    state: Arc<RwLock<MachineState>>,
    /// Snapshots built by this process, for unique snapshot ids.
    built: Arc<Mutex<u64>>,
}

impl StateMachine {
    /// Opens the state machine in `dir`: the newest snapshot's state, or an empty one.
    pub fn open(dir: &Path) -> StoreResult<StateMachine> {
        fs::create_dir_all(dir).map_err(|e| StorageIOError::write(io_err(e)))?;
        let file: Option<SnapshotFile> = read_json(dir, SNAPSHOT_FILE)?;
        Ok(StateMachine {
            dir: dir.to_path_buf(),
            state: Arc::new(RwLock::new(file.map(|f| f.state).unwrap_or_default())),
            built: Arc::new(Mutex::new(0)),
        })
    }

    /// The state, shared: readers see every applied command.
    pub fn state(&self) -> Arc<RwLock<MachineState>> {
        Arc::clone(&self.state)
    }

    fn snapshot_of(
        meta: SnapshotMeta<u64, BasicNode>,
        state: &MachineState,
    ) -> StoreResult<Snapshot<TypeConfig>> {
        let data = serde_json::to_vec(state)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let state = self.state.read().clone();
        let n = {
            let mut built = self.built.lock();
            *built += 1;
            *built
        };
        let snapshot_id = match state.last_applied {
            Some(id) => format!("{}-{}-{n}", id.leader_id, id.index),
            None => format!("none-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id,
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            state,
        };
        write_json(&self.dir, SNAPSHOT_FILE, &file)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Self::snapshot_of(meta, &file.state)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<RaftLogId>, StoredMembership<u64, BasicNode>)> {
        let state = self.state.read();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.state.write();
        let mut out = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            out.push(match entry.payload {
                EntryPayload::Blank => Applied(Ok(Vec::new())),
                EntryPayload::Normal(command) => Applied(state.metadata.apply(&command)),
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Applied(Ok(Vec::new()))
                }
            });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let state: MachineState = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), io_err(e)))?;
        let file = SnapshotFile {
            meta: meta.clone(),
            state,
        };
        write_json(&self.dir, SNAPSHOT_FILE, &file)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        *self.state.write() = file.state;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        let file: Option<SnapshotFile> = read_json(&self.dir, SNAPSHOT_FILE)?;
        file.map(|f| Self::snapshot_of(f.meta, &f.state))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite, log_id};

    use super::*;

    /// Fresh stores in temporary directories, for openraft's storage conformance suite.
    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(&self) -> StoreResult<(tempfile::TempDir, LogStore, StateMachine)> {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = LogStore::open(&dir.path().join("log"))?;
            let sm = StateMachine::open(&dir.path().join("sm"))?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn passes_openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    fn command(i: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(1, 1, i),
            payload: EntryPayload::Normal(Command::RegisterBroker {
                node: i as i32,
                address: format!("127.0.0.{i}:7400"),
            }),
        }
    }

    fn indexes(files: &LogFiles) -> Vec<u64> {
        files.entries.keys().copied().collect()
    }

    #[test]
    fn the_log_and_vote_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::open(dir.path()).unwrap();
        files.append((1..=3).map(command).collect()).unwrap();
        files.append(vec![command(4)]).unwrap();
        let vote = Vote::new(3, 2);
        write_json(dir.path(), VOTE_FILE, &vote).unwrap();
        drop(files);
        let files = LogFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&files), [1, 2, 3, 4]);
        assert_eq!(files.range(2..3), vec![command(2)]);
        assert_eq!(files.vote, Some(vote));
        assert_eq!(files.last_log_id(), Some(log_id(1, 1, 4)));
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_log_and_is_cut_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::open(dir.path()).unwrap();
        files.append((1..=4).map(command).collect()).unwrap();
        let third = files.entries[&3].1;
        let path = dir.path().join(LOG_FILE);
        drop(files);
        // A torn last record: its tail never reached the disk.
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let files = LogFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&files), [1, 2, 3]);
        let cut = fs::metadata(&path).unwrap().len();
        assert_eq!(cut, files.end);
        drop(files);
        // A flipped byte in the third record's payload: the CRC catches it.
        let mut bytes = fs::read(&path).unwrap();
        bytes[third as usize + RECORD_HEADER + 2] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let mut files = LogFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&files), [1, 2]);
        assert_eq!(fs::metadata(&path).unwrap().len(), third);
        // Appending goes on from the cut.
        files.append(vec![command(3)]).unwrap();
        drop(files);
        assert_eq!(indexes(&LogFiles::open(dir.path()).unwrap()), [1, 2, 3]);
    }

    #[test]
    fn truncate_and_purge_last_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::open(dir.path()).unwrap();
        files.append((1..=6).map(command).collect()).unwrap();
        files.truncate(5).unwrap();
        files.purge(log_id(1, 1, 2)).unwrap();
        assert_eq!(indexes(&files), [3, 4]);
        files.append(vec![command(5)]).unwrap();
        drop(files);
        let files = LogFiles::open(dir.path()).unwrap();
        assert_eq!(indexes(&files), [3, 4, 5]);
        assert_eq!(files.purged, Some(log_id(1, 1, 2)));
        assert_eq!(files.range(..), vec![command(3), command(4), command(5)]);
    }

    #[test]
    fn a_gap_in_the_log_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = LogFiles::open(dir.path()).unwrap();
        files.append(vec![command(1), command(3)]).unwrap();
        drop(files);
        let err = LogFiles::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("entry 3 follows entry 1"), "{err}");
    }

    #[tokio::test]
    async fn the_state_machine_applies_commands_and_restores_from_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let applied = sm
            .apply(vec![
                command(1),
                Entry {
                    log_id: log_id(1, 1, 2),
                    payload: EntryPayload::Normal(Command::FenceBroker { node: 9 }),
                },
            ])
            .await
            .unwrap();
        assert_eq!(
            applied,
            vec![
                Applied(Ok(Vec::new())),
                Applied(Err(Refused::UnknownBroker(9)))
            ]
        );
        let snapshot = sm.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 2)));
        sm.apply(vec![command(3)]).await.unwrap();
        // Reopened: the snapshot's state; entry 3 is applied again by openraft.
        let mut reopened = StateMachine::open(dir.path()).unwrap();
        let (last, _) = reopened.applied_state().await.unwrap();
        assert_eq!(last, Some(log_id(1, 1, 2)));
        let state = reopened.state();
        let brokers: Vec<i32> = state.read().metadata.brokers.keys().copied().collect();
        assert_eq!(brokers, [1]);
        let current = reopened.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snapshot.meta);
    }
}
