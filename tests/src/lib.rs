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
//! - [`pki`]: throw-away CAs and certificates for the TLS tests (tests/security.rs).

use brook_client::Connection;
use brook_proto::Batches;
use brook_proto::v1::{ErrorCode, FetchPartition, FetchRequest, FetchTopic};

pub mod cluster;
pub mod kafka;
pub mod pki;
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

/// `(offset, value)` of every record of `topic`-`partition` from offset `start` up to the high
/// watermark, read over `conn` (whose broker must lead the partition), and that high
/// watermark; an error names the refusal (the broker does not lead the partition, for one).
pub async fn read_partition(
    conn: &Connection,
    topic: &str,
    partition: u32,
    start: i64,
) -> Result<(Vec<(i64, String)>, i64), String> {
    let mut out: Vec<(i64, String)> = Vec::new();
    loop {
        let response = conn
            .broker()
            .fetch(FetchRequest {
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: 0,
                replica_id: None,
                topics: vec![FetchTopic {
                    topic: topic.into(),
                    partitions: vec![FetchPartition {
                        partition,
                        fetch_offset: out.last().map_or(start, |(o, _)| o + 1),
                        partition_max_bytes: 0,
                        current_leader_epoch: None,
                    }],
                }],
            })
            .await
            .map_err(|e| format!("fetch {topic}-{partition}: {e}"))?
            .into_inner();
        let answer = &response.topics[0].partitions[0];
        if answer.error_code != ErrorCode::None as i32 {
            return Err(format!(
                "{topic}-{partition}: {:?} {}",
                answer.error_code(),
                answer.error_message
            ));
        }
        if answer.records.is_empty() {
            return Ok((out, answer.high_watermark));
        }
        for batch in Batches::new(answer.records.clone(), usize::MAX) {
            for record in batch.expect("a valid batch").records().expect("records") {
                let record = record.expect("a valid record");
                let value = record.value.as_deref().expect("a value");
                out.push((record.offset, String::from_utf8_lossy(value).into_owned()));
            }
        }
    }
}
