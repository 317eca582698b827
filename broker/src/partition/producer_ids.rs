//! Producer ids for idempotent producers: unique per data directory, never reused, persisted
//! in blocks so a restart never hands out an id twice.
//!
//! The file `producer-ids` holds the first id not yet reserved. Ids are reserved a block at a
//! time (the file is rewritten atomically before any id of the new block is given out), so a
//! crash skips at most the rest of a block.
//!
//! In a cluster every broker hands out ids, so an id carries the broker's node id in its
//! upper 32 bits ([`ProducerIds::in_cluster`]): ids from different brokers never collide. An
//! id another broker issued is not known here; re-initializing it gets a fresh id.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::log::{LogError, write_atomically};

/// File name in the data directory.
pub const PRODUCER_IDS_FILE: &str = "producer-ids";
const BLOCK: i64 = 1000;

/// Why an id request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    /// The id was never handed out here.
    #[error(
        "producer id {producer_id} was never handed out by this broker (ids below {reserved} have been)"
    )]
    Unknown {
        /// The id sent.
        producer_id: i64,
        /// First id not yet reserved.
        reserved: i64,
    },
    /// The epoch sent is negative or above the epoch range.
    #[error("producer epoch {epoch} is out of range: must be between 0 and {max}")]
    EpochOutOfRange {
        /// The epoch sent.
        epoch: i32,
        /// The largest epoch.
        max: i16,
    },
    /// Persisting the reservation failed.
    #[error(transparent)]
    Storage(#[from] LogError),
}

#[derive(Debug)]
struct State {
    next: i64,
    reserved: i64,
}

/// Hands out producer ids and epochs.
#[derive(Debug)]
pub struct ProducerIds {
    dir: PathBuf,
    state: Mutex<State>,
    /// The node id put in the upper bits of every id, in a cluster.
    node: Option<i64>,
}

impl ProducerIds {
    /// Loads the reservation mark from `dir` (0 when the file is absent).
    pub fn open(dir: &Path) -> Result<ProducerIds, LogError> {
        let path = dir.join(PRODUCER_IDS_FILE);
        let reserved = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|e| LogError::Corrupt {
                segment: path.clone(),
                position: 0,
                reason: format!("not a producer id: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(LogError::io("read", &path)(e)),
        };
        Ok(ProducerIds {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                next: reserved,
                reserved,
            }),
            node: None,
        })
    }

    /// Ids that carry `node` in their upper 32 bits, for a broker of a cluster.
    pub fn in_cluster(mut self, node: i32) -> ProducerIds {
        self.node = Some(i64::from(node.max(0)));
        self
    }

    /// A new id with epoch 0 (`producer_id < 0`), or the same id with its epoch bumped; an
    /// exhausted epoch gets a new id. Blocking: it may write the reservation file.
    pub fn init(&self, producer_id: i64, epoch: i32) -> Result<(i64, i16), ProducerIdError> {
        let mut state = self.state.lock();
        let issued_elsewhere = self.node.is_some_and(|node| producer_id >> 32 != node);
        let local = producer_id & 0xffff_ffff;
        let public = |local: i64| self.node.map_or(local, |node| node << 32 | local);
        if producer_id >= 0 && !issued_elsewhere {
            let producer_id = local;
            if producer_id >= state.reserved {
                return Err(ProducerIdError::Unknown {
                    producer_id: public(producer_id),
                    reserved: public(state.reserved),
                });
            }
            if !(0..=i32::from(i16::MAX)).contains(&epoch) {
                return Err(ProducerIdError::EpochOutOfRange {
                    epoch,
                    max: i16::MAX,
                });
            }
            if epoch < i32::from(i16::MAX) {
                return Ok((public(producer_id), (epoch + 1) as i16));
            }
        }
        if state.next == state.reserved {
            let reserved = state.reserved + BLOCK;
            write_atomically(
                &self.dir,
                PRODUCER_IDS_FILE,
                format!("{reserved}\n").as_bytes(),
            )?;
            state.reserved = reserved;
        }
        let id = state.next;
        state.next += 1;
        Ok((public(id), 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_carry_the_node_and_foreign_ids_get_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path()).unwrap().in_cluster(3);
        let base = 3i64 << 32;
        assert_eq!(ids.init(-1, -1).unwrap(), (base, 0));
        assert_eq!(ids.init(base, 4).unwrap(), (base, 5));
        // Issued by broker 5: unknown here, so a fresh id of this broker.
        assert_eq!(ids.init(5i64 << 32, 0).unwrap(), (base + 1, 0));
        assert!(matches!(
            ids.init(base + 7000, 0),
            Err(ProducerIdError::Unknown {
                producer_id,
                reserved,
            }) if producer_id == base + 7000 && reserved == base + 1000
        ));
    }

    #[test]
    fn ids_are_unique_across_restarts_and_epochs_bump() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(ids.init(-1, -1).unwrap(), (0, 0));
        assert_eq!(ids.init(-1, -1).unwrap(), (1, 0));
        assert_eq!(ids.init(0, 0).unwrap(), (0, 1));
        assert_eq!(ids.init(0, 7).unwrap(), (0, 8));
        assert!(matches!(
            ids.init(5000, 0),
            Err(ProducerIdError::Unknown {
                producer_id: 5000,
                reserved: 1000
            })
        ));
        assert!(matches!(
            ids.init(1, -3),
            Err(ProducerIdError::EpochOutOfRange { epoch: -3, .. })
        ));
        // An exhausted epoch moves to a new id.
        assert_eq!(ids.init(1, i32::from(i16::MAX)).unwrap(), (2, 0));
        drop(ids);
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(
            ids.init(-1, -1).unwrap(),
            (1000, 0),
            "a restart skips the rest of the block"
        );
        assert_eq!(
            ids.init(2, 0).unwrap(),
            (2, 1),
            "ids from before the restart are still known"
        );
    }
}
