//! Multi-process tests for Brook: the helper processes that tests start, kill and check.
//!
//! - `log-appender` (src/bin): appends to a log with `flush = always` and reports every
//!   acknowledged batch on stdout, so a parent can SIGKILL it at any moment and check that
//!   nothing acknowledged was lost (tests/log_crash.rs).
//! - [`kafka`]: a real Apache Kafka (one node or a 3-node cluster on free loopback ports) from
//!   `scripts/kafka.sh`, for the Kafka interop tests and side-by-side benchmarks
//!   (tests/kafka_harness.rs).
//!
//! - [`cluster`]: real `brook-broker` processes forming a cluster on loopback ports, to start,
//!   SIGKILL, stop and restart (tests/cluster.rs).

pub mod cluster;
pub mod kafka;
pub mod proxy;

/// The line `log-appender` prints for each acknowledged batch:
/// `"{base_offset} {last_offset} {tag}"`; record `i` of the batch has value `"{tag}:{i}"`.
pub fn ack_line(base_offset: i64, last_offset: i64, tag: &str) -> String {
    format!("{base_offset} {last_offset} {tag}\n")
}

/// Parses an [`ack_line`] (without its newline).
pub fn parse_ack_line(line: &str) -> Option<(i64, i64, String)> {
    let mut parts = line.split(' ');
    let base = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    let tag = parts.next()?.to_string();
    parts.next().is_none().then_some((base, last, tag))
}

/// The log settings both sides of the crash test use: `flush = always`, small segments so
/// kills also land during rolls.
pub fn crash_test_config() -> brook_broker::log::LogConfig {
    brook_broker::log::LogConfig {
        flush: brook_broker::log::FlushPolicy::Always,
        segment_bytes: 64 * 1024,
        index_interval_bytes: 1024,
        ..Default::default()
    }
}
