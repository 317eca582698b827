//! Helpers shared by the log tests.
#![allow(dead_code)]

use brook_broker::log::{AppendInfo, Log, LogConfig};
use brook_proto::{BatchBuilder, Batches, LeaderEpoch, Offset};
use bytes::Bytes;

/// A batch of `records` records whose values are `"{tag}:{i}"` and timestamps `ts`.
pub fn batch(tag: &str, records: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new();
    for i in 0..records {
        let value = format!("{tag}:{i}");
        b.append(ts, Some(tag.as_bytes()), Some(value.as_bytes()), &[]);
    }
    b.build()
}

/// A batch of `records` records each `value_len` bytes long, tagged like [`batch`].
pub fn big_batch(tag: &str, records: usize, value_len: usize, ts: i64) -> Bytes {
    let mut b = BatchBuilder::new();
    for i in 0..records {
        let mut value = format!("{tag}:{i}:").into_bytes();
        value.resize(value_len, b'x');
        b.append(ts, Some(tag.as_bytes()), Some(&value), &[]);
    }
    b.build()
}

/// Every record in `bytes` as `(offset, value)`, checking each batch's CRC.
pub fn records(bytes: &Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for batch in Batches::new(bytes.clone(), usize::MAX) {
        let batch = batch.expect("valid batch");
        for r in batch.records().expect("uncompressed") {
            let r = r.expect("valid record");
            out.push((
                r.offset,
                String::from_utf8(r.value.expect("value").to_vec()).expect("utf8"),
            ));
        }
    }
    out
}

/// Reads the whole log front to back.
pub fn read_all(log: &Log) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut offset = log.start_offset();
    while offset < log.end_offset() {
        let bytes = log.read_blocking(offset, 1 << 20).expect("read");
        assert!(
            !bytes.is_empty(),
            "read at {offset} below end {} returned nothing",
            log.end_offset()
        );
        let recs = records(&bytes);
        offset = Offset(recs.last().expect("records").0 + 1);
        out.extend(recs);
    }
    out
}

/// Appends `tag` batches and returns where they landed.
pub async fn append(log: &Log, tag: &str, records: usize, ts: i64) -> AppendInfo {
    log.append(batch(tag, records, ts), LeaderEpoch(1))
        .await
        .expect("append")
}

/// A config with small segments and a dense index, for tests.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        max_index_bytes: 4096,
        segment_ms: None,
        retention_ms: None,
        max_batch_bytes: 1024,
        ..LogConfig::default()
    }
}

/// Current wall-clock time in ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}
