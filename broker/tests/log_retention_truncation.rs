//! Retention by size and time, and truncation for replication; each followed by a reopen.

mod common;

use std::sync::Arc;

use brook_broker::log::{Log, LogConfig, LogError, ManualClock, RetentionOutcome};
use brook_proto::{LeaderEpoch, Offset};
use common::*;

/// Fills a log with `n` one-record batches of ~400 bytes, three per 2 KiB segment (bases
/// 0, 3, 6, ...); batch `i` has timestamp `ts0 + i * 1000`.
async fn filled(
    dir: &std::path::Path,
    config: LogConfig,
    clock: ManualClock,
    n: usize,
    ts0: i64,
) -> (Log, u64) {
    let log = Log::open_with_clock(dir, config, Arc::new(clock))
        .await
        .unwrap();
    let mut size = 0;
    for i in 0..n {
        let b = big_batch(&format!("b{i:03}"), 1, 400, ts0 + i as i64 * 1000);
        size = b.len() as u64;
        log.append(b, LeaderEpoch(0)).await.unwrap();
    }
    (log, size)
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1600,
        ..small_config()
    }
}

fn bases(log: &Log) -> Vec<i64> {
    log.segment_base_offsets().iter().map(|o| o.0).collect()
}

#[tokio::test]
async fn size_retention_deletes_oldest_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(3000),
        ..config()
    };
    let (log, batch) = filled(dir.path(), config.clone(), ManualClock::new(0), 20, 0).await;
    assert_eq!(bases(&log), vec![0, 3, 6, 9, 12, 15, 18]);
    let out = log.enforce_retention().await.unwrap();
    // 20 batches; keep whole segments while the rest still holds >= 3000 bytes.
    let seg = 3 * batch;
    let mut total = 20 * batch;
    let mut deleted = 0;
    while total - seg >= 3000 {
        total -= seg;
        deleted += 1;
    }
    assert_eq!(
        out,
        RetentionOutcome {
            deleted_segments: deleted,
            deleted_bytes: deleted as u64 * seg,
            log_start: 3 * deleted as i64
        }
    );
    assert_eq!(log.start_offset(), Offset(3 * deleted as i64));
    assert_eq!(log.size_bytes(), total);
    for base in 0..deleted as i64 {
        assert!(
            !dir.path()
                .join(brook_broker::log::log_file_name(base * 3))
                .exists()
        );
    }
    match log.read_blocking(Offset(0), 100) {
        Err(LogError::OffsetOutOfRange { start, .. }) => assert_eq!(start, log.start_offset()),
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    let kept = read_all(&log);
    assert_eq!(kept.first().unwrap().0, 3 * deleted as i64);
    assert_eq!(kept.len(), 20 - 3 * deleted);
    log.close().await.unwrap();
    let log = Log::open(dir.path(), config).await.unwrap();
    assert_eq!(log.start_offset(), Offset(3 * deleted as i64));
    assert_eq!(read_all(&log), kept);
    log.close().await.unwrap();
}

#[tokio::test]
async fn time_retention_deletes_segments_whose_newest_record_expired() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(0);
    let config = LogConfig {
        retention_ms: Some(10_000),
        ..config()
    };
    // Batch i at ts 1_000_000 + i*1000; segment k holds batches 3k..3k+2.
    let (log, _) = filled(dir.path(), config, clock.clone(), 14, 1_000_000).await;
    clock.set(1_000_000 + 5 * 1000 + 10_000); // segment 1's newest (batch 5) is exactly 10 s old
    assert_eq!(log.enforce_retention().await.unwrap().deleted_segments, 1);
    assert_eq!(log.start_offset(), Offset(3));
    clock.advance(1);
    assert_eq!(log.enforce_retention().await.unwrap().deleted_segments, 1);
    assert_eq!(log.start_offset(), Offset(6));
    clock.advance(1_000_000);
    let out = log.enforce_retention().await.unwrap();
    assert_eq!(
        out.deleted_segments, 2,
        "the active segment (12..) is never deleted"
    );
    assert_eq!(bases(&log), vec![12]);
    assert_eq!(read_all(&log).len(), 2);
    log.close().await.unwrap();
}

#[tokio::test]
async fn truncate_within_active_segment_cuts_at_the_batch_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    for i in 0..5 {
        append(&log, &format!("b{i}"), 3, now_ms()).await; // batches at 0,3,6,9,12
    }
    // Offset 7 lies in the batch 6..8: that whole batch goes.
    assert_eq!(log.truncate_to(Offset(7)).await.unwrap(), Offset(6));
    assert_eq!(log.end_offset(), Offset(6));
    assert!(log.flushed_offset() <= Offset(6));
    let info = append(&log, "new", 2, now_ms()).await;
    assert_eq!(info.base_offset, Offset(6));
    let expect: Vec<(i64, String)> = (0..6)
        .map(|o| (o, format!("b{}:{}", o / 3, o % 3)))
        .chain([(6, "new:0".to_string()), (7, "new:1".to_string())])
        .collect();
    assert_eq!(read_all(&log), expect);
    // Truncating at or past the end changes nothing.
    assert_eq!(log.truncate_to(Offset(100)).await.unwrap(), Offset(8));
    log.close().await.unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    assert_eq!(read_all(&log), expect);
    log.close().await.unwrap();
}

#[tokio::test]
async fn truncate_into_a_sealed_segment_keeps_outstanding_reads_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = filled(dir.path(), config(), ManualClock::new(0), 10, now_ms()).await;
    assert_eq!(bases(&log), vec![0, 3, 6, 9]);
    // A reader holds zero-copy bytes of the sealed segment 3..5 (mmap).
    let held = log.read_blocking(Offset(3), 1 << 20).unwrap();
    let before = records(&held);
    assert_eq!(
        before.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(log.truncate_to(Offset(4)).await.unwrap(), Offset(4));
    assert_eq!(bases(&log), vec![0, 3]);
    assert_eq!(
        records(&held),
        before,
        "bytes handed out before the truncation stay readable"
    );
    let info = append(&log, "after", 1, now_ms()).await;
    assert_eq!(info.base_offset, Offset(4));
    let all = read_all(&log);
    assert_eq!(all.len(), 5);
    assert_eq!(all[4], (4, "after:0".to_string()));
    assert!(
        !dir.path()
            .join(brook_broker::log::log_file_name(6))
            .exists()
    );
    log.close().await.unwrap();
    let log = Log::open(dir.path(), config()).await.unwrap();
    assert_eq!(read_all(&log), all);
    log.close().await.unwrap();
}

#[tokio::test]
async fn truncate_below_the_start_empties_the_log_and_restarts_it_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(1),
        ..config()
    };
    let (log, _) = filled(
        dir.path(),
        config.clone(),
        ManualClock::new(0),
        10,
        now_ms(),
    )
    .await;
    log.enforce_retention().await.unwrap();
    assert_eq!(log.start_offset(), Offset(9));
    assert_eq!(log.truncate_to(Offset(5)).await.unwrap(), Offset(5));
    assert_eq!(
        (log.start_offset(), log.end_offset()),
        (Offset(5), Offset(5))
    );
    assert_eq!(bases(&log), vec![5]);
    assert!(log.read_blocking(Offset(5), 10).unwrap().is_empty());
    let info = append(&log, "x", 1, now_ms()).await;
    assert_eq!(info.base_offset, Offset(5));
    log.close().await.unwrap();
    let log = Log::open(dir.path(), config).await.unwrap();
    assert_eq!(
        (log.start_offset(), log.end_offset()),
        (Offset(5), Offset(6))
    );
    assert_eq!(read_all(&log), vec![(5, "x:0".to_string())]);
    match log.truncate_to(Offset(-1)).await {
        Err(LogError::OffsetOutOfRange { offset, .. }) => assert_eq!(offset, Offset(-1)),
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    log.close().await.unwrap();
}
