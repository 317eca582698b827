//! One partition of a topic on this broker: its log and the offsets consumers may see.

use brook_proto::Offset;

use crate::log::Log;

/// A partition this broker holds. With one broker (no replication yet) it is always the
/// leader and its high watermark is its log end offset.
#[derive(Debug)]
pub struct Partition {
    topic: String,
    id: u32,
    log: Log,
}

impl Partition {
    pub(crate) fn new(topic: String, id: u32, log: Log) -> Self {
        Partition { topic, id, log }
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The partition's log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Offsets below this are committed and visible to consumers.
    pub fn high_watermark(&self) -> Offset {
        self.log.end_offset()
    }
}
