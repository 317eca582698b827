//! Errors of the log subsystem.

use std::io;
use std::path::PathBuf;

use brook_proto::{BatchError, Offset};

/// What went wrong in a partition log. [`LogError::is_retriable`] splits what a caller may
/// retry from what needs an operator.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fsync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The appended batch is malformed; nothing was written.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// An idempotent producer's batch is out of sequence or from a fenced epoch; nothing
    /// was written.
    #[error(transparent)]
    Sequence(#[from] super::SequenceError),
    /// A read or truncation named an offset outside the log.
    #[error("offset {offset} is out of range: the log holds offsets {start} to {end} (exclusive)")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: Offset,
        /// Log start offset.
        start: Offset,
        /// Log end offset.
        end: Offset,
    },
    /// A sealed segment holds bytes that are not a valid batch. Never repaired silently.
    #[error("corrupt segment {segment} at byte {position}: {reason}")]
    Corrupt {
        /// The segment's `.log` file.
        segment: PathBuf,
        /// Byte position of the bad batch in that file.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// Another process (or another `Log` in this one) holds the directory.
    #[error(
        "data directory {path} is locked by another process (lock file {lock}); stop it or pick another directory"
    )]
    Locked {
        /// The partition directory.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// A configuration value is out of range.
    #[error("invalid log config: {0}")]
    Config(#[from] super::ConfigError),
    /// An earlier write or fsync failed: what is on disk is unknown until the log is reopened
    /// (which runs recovery). Appends are refused until then.
    #[error("log {path} failed earlier and refuses writes until reopened: {cause}")]
    Failed {
        /// The partition directory.
        path: PathBuf,
        /// The first failure.
        cause: String,
    },
    /// This append was not written (a write, roll or fsync failed). If the log could not
    /// restore a consistent state it also refuses later writes ([`LogError::Failed`]).
    #[error("append to log {path} failed: {cause}")]
    WriteFailed {
        /// The partition directory.
        path: PathBuf,
        /// What failed.
        cause: String,
    },
    /// A replicated batch does not start where the follower's log ends.
    #[error("log {path}: a replicated batch starts at offset {found}, the log ends at {expected}")]
    ReplicaGap {
        /// The log directory.
        path: std::path::PathBuf,
        /// The follower's log end offset.
        expected: i64,
        /// The batch's base offset.
        found: i64,
    },
    /// A batch stamped with a leader epoch older than the newest one the log holds: a
    /// deposed leader's write.
    #[error("log {path}: leader epoch {epoch} is older than the log's newest epoch {latest}")]
    StaleLeaderEpoch {
        /// The partition directory.
        path: PathBuf,
        /// The batch's epoch.
        epoch: i32,
        /// The newest epoch in the log.
        latest: i32,
    },
    /// The log was closed.
    #[error("log {path} is closed")]
    Closed {
        /// The partition directory.
        path: PathBuf,
    },
}

impl LogError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> LogError {
        let path = path.into();
        move |source| LogError::Io { op, path, source }
    }

    /// True for errors a caller may retry as they are (a later attempt can succeed without an
    /// operator): none of the current variants except transient I/O qualify.
    pub fn is_retriable(&self) -> bool {
        match self {
            LogError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}
