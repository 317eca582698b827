//! Per-log (per-topic) storage settings, their defaults and validation.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When appended bytes are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushPolicy {
    /// fdatasync before an append is acknowledged. Appends that arrive while a sync runs share
    /// the next one (group commit).
    Always,
    /// fdatasync at most this often while there are unflushed bytes; appends are acknowledged
    /// once in the page cache.
    Interval(Duration),
    /// Never sync on the write path (the OS writes back). Sealed segments are still synced
    /// when they roll, and everything on a clean close.
    #[default]
    Never,
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushPolicy::Always => f.write_str("always"),
            FlushPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
            FlushPolicy::Never => f.write_str("never"),
        }
    }
}

impl FromStr for FlushPolicy {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::FlushPolicy {
            value: s.to_string(),
        };
        match s {
            "always" => Ok(FlushPolicy::Always),
            "never" => Ok(FlushPolicy::Never),
            _ => {
                let ms = s.strip_prefix("interval:").ok_or_else(bad)?;
                let ms: u64 = ms.parse().map_err(|_| bad())?;
                if ms == 0 || ms > 3_600_000 {
                    return Err(bad());
                }
                Ok(FlushPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl Serialize for FlushPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FlushPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A setting outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A numeric setting outside `[min, max]`.
    #[error("{name} = {value} is out of range: must be between {min} and {max}")]
    OutOfRange {
        /// The setting.
        name: &'static str,
        /// The value given.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
    /// A flush policy that is not `always`, `never` or `interval:<ms>` with 1..=3600000 ms.
    #[error(
        "flush policy {value:?} is invalid: use \"always\", \"never\" or \"interval:<ms>\" with 1 to 3600000 ms"
    )]
    FlushPolicy {
        /// The value given.
        value: String,
    },
}

/// Serde for the settings that can be unlimited: `None` is written `-1` (Kafka's convention,
/// and TOML has no null), so a file can say "unlimited" instead of leaving the default.
mod unlimited {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_i64(-1),
            Some(v) => s.serialize_u64(*v),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match i64::deserialize(d)? {
            -1 => Ok(None),
            v if v >= 0 => Ok(Some(v as u64)),
            v => Err(serde::de::Error::custom(format!(
                "{v} is invalid: use -1 for unlimited or a number from 0"
            ))),
        }
    }
}

/// Storage settings of one log. Defaults follow Kafka's where Kafka has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Roll the active segment before it would exceed this many bytes (Kafka
    /// `segment.bytes`, default 1 GiB). At most 2 GiB: index positions are 32-bit.
    pub segment_bytes: u64,
    /// Roll the active segment when a batch's timestamp is more than this much later than the
    /// segment's first batch's (Kafka `segment.ms`, default 7 days; measured in record time
    /// as Kafka does, so old timestamps appended now do not roll). `None`: never by age.
    #[serde(with = "unlimited")]
    pub segment_ms: Option<u64>,
    /// Bytes of log between two index entries (Kafka `index.interval.bytes`, 4096).
    pub index_interval_bytes: u32,
    /// Largest index file; a full index rolls the segment (Kafka `segment.index.bytes`, 10 MiB).
    pub max_index_bytes: u32,
    /// Delete the oldest sealed segments while the log is larger than this. `None`: no limit
    /// (Kafka `retention.bytes`, default -1).
    #[serde(with = "unlimited")]
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this (Kafka `retention.ms`,
    /// default 7 days). `None`: keep forever.
    #[serde(with = "unlimited")]
    pub retention_ms: Option<u64>,
    /// When appends reach the disk.
    pub flush: FlushPolicy,
    /// Largest batch accepted (Kafka `max.message.bytes`, about 1 MiB).
    pub max_batch_bytes: u32,
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * DAY_MS),
            index_interval_bytes: 4096,
            max_index_bytes: 10 * 1024 * 1024,
            retention_bytes: None,
            retention_ms: Some(7 * DAY_MS),
            flush: FlushPolicy::Never,
            max_batch_bytes: brook_proto::batch::DEFAULT_MAX_BATCH_BYTES as u32,
        }
    }
}

fn check(name: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::OutOfRange {
            name,
            value,
            min,
            max,
        });
    }
    Ok(())
}

/// Largest segment. A batch bigger than the room left starts a new segment, and one bigger
/// than `segment_bytes` gets a segment of its own, so files stay below
/// `MAX_SEGMENT_BYTES + MAX_BATCH_BYTES_LIMIT`, well inside the u32 positions of the index.
pub const MAX_SEGMENT_BYTES: u64 = 2 << 30;
/// Largest batch a log accepts whatever its configuration.
pub const MAX_BATCH_BYTES_LIMIT: u64 = 256 << 20;

impl LogConfig {
    /// Checks every setting against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check("segment_bytes", self.segment_bytes, 1024, MAX_SEGMENT_BYTES)?;
        if let Some(ms) = self.segment_ms {
            check("segment_ms", ms, 1, i64::MAX as u64)?;
        }
        check(
            "index_interval_bytes",
            self.index_interval_bytes.into(),
            1,
            1 << 30,
        )?;
        check("max_index_bytes", self.max_index_bytes.into(), 64, 1 << 30)?;
        if let Some(ms) = self.retention_ms {
            check("retention_ms", ms, 1, i64::MAX as u64)?;
        }
        check(
            "max_batch_bytes",
            self.max_batch_bytes.into(),
            64,
            MAX_BATCH_BYTES_LIMIT,
        )?;
        if let FlushPolicy::Interval(d) = self.flush {
            check("flush interval ms", d.as_millis() as u64, 1, 3_600_000)?;
        }
        Ok(())
    }

    /// Entries the offset index of a segment can hold.
    pub(crate) fn offset_index_entries(&self) -> usize {
        self.max_index_bytes as usize / super::offset_index::OFFSET_ENTRY_SIZE
    }

    /// Entries the time index of a segment can hold.
    pub(crate) fn time_index_entries(&self) -> usize {
        self.max_index_bytes as usize / super::time_index::TIME_ENTRY_SIZE
    }
}
