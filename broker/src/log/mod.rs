//! One partition's storage: an append-only log of record batches in segment files.
//!
//! ```text
//! dir/
//!   .lock                         flock: one process per directory
//!   recovery-checkpoint           (segment, position) known durable
//!   00000000000000000000.log      batches, stored exactly as produced (offset/epoch stamped)
//!   00000000000000000000.index    sparse (relative offset, position), mmap
//!   00000000000000000000.timeindex sparse (max timestamp, relative offset), mmap
//!   00000000000000052173.log      next segment, named by its base offset …
//! ```
//!
//! Events in and actions out:
//!
//! ```text
//! append ──► Log (validate) ──► writer thread: stamp, writev, index, flush policy ──► ack
//! read   ──► Log: segment by offset ─► index floor ─► scan headers ─► Bytes (mmap or pread)
//! open   ──► recovery: checkpoint, scan, truncate torn tail, rebuild indexes
//! retention / truncate_to / roll ──► writer thread
//! ```
//!
//! Files: [`log`](Log) the handle; `writer` the thread that owns mutations; [`Segment`];
//! [`OffsetIndex`] and [`TimeIndex`] over a shared mmap'd `index_file`; `indexer` decides
//! index entries; `recovery` opens a directory; [`retention`] decides deletions;
//! [`DirLock`]; [`Clock`]; [`LogConfig`].

mod clock;
mod dir_lock;
mod error;
mod index_file;
mod indexer;
#[allow(clippy::module_inception)]
mod log;
mod log_config;
mod offset_index;
pub mod producer_state;
mod recovery;
pub mod retention;
mod segment;
mod time_index;
pub mod topic_config;
mod writer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use dir_lock::{DirLock, LOCK_FILE};
pub use error::LogError;
pub use log::{AppendInfo, Log};
pub use log_config::{
    ConfigError, FlushPolicy, LogConfig, MAX_BATCH_BYTES_LIMIT, MAX_SEGMENT_BYTES,
};
pub use offset_index::{IndexEntry, OFFSET_ENTRY_SIZE, OffsetIndex};
pub use producer_state::{ProducerState, SequenceError};
pub use recovery::CHECKPOINT_FILE;
pub(crate) use recovery::{fsync_dir, write_atomically};
pub use retention::RetentionOutcome;
pub use segment::{Segment, TimestampOffset, log_file_name};
pub use time_index::{TIME_ENTRY_SIZE, TimeEntry, TimeIndex};
