//! An exclusive lock on a log directory, so two processes never write the same files.
//!
//! `flock(2)` on a `.lock` file: the kernel drops it when the holder dies, so a SIGKILLed
//! broker never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::LogError;

/// Held for as long as the directory is open.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

/// Name of the lock file inside the directory.
pub const LOCK_FILE: &str = ".lock";

impl DirLock {
    /// Takes the lock on `dir`, failing at once with [`LogError::Locked`] if it is held.
    pub fn acquire(dir: &Path) -> Result<DirLock, LogError> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(LogError::io("open lock file", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(LogError::Locked {
                path: dir.to_path_buf(),
                lock: path,
            }),
            Err(TryLockError::Error(e)) => Err(LogError::io("lock", path)(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
