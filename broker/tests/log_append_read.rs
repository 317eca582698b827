//! Appends, reads, rolling, timestamp lookup, flush policies, limits.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use brook_broker::log::{FlushPolicy, Log, LogConfig, LogError, ManualClock};
use brook_proto::batch::layout;
use brook_proto::{BatchError, BatchHeader, Batches, LeaderEpoch, Offset};
use bytes::Bytes;
use common::*;

#[tokio::test]
async fn offsets_are_dense_and_unique_under_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut landed = Vec::new();
            for i in 0..100 {
                let tag = format!("t{t}-b{i}");
                let n = 1 + (i % 3);
                let info = log
                    .append(batch(&tag, n, now_ms()), LeaderEpoch(3))
                    .await
                    .unwrap();
                assert_eq!(info.last_offset.0 - info.base_offset.0 + 1, n as i64);
                landed.push((info.base_offset.0, tag, n));
            }
            landed
        }));
    }
    let mut by_offset = BTreeMap::new();
    for t in tasks {
        for (base, tag, n) in t.await.unwrap() {
            assert!(
                by_offset.insert(base, (tag, n)).is_none(),
                "offset {base} assigned twice"
            );
        }
    }
    // Dense: each batch starts where the previous one ended.
    let mut expected = 0;
    for (&base, (_, n)) in &by_offset {
        assert_eq!(base, expected);
        expected += *n as i64;
    }
    assert_eq!(log.end_offset(), Offset(expected));
    // Every record reads back under the offset it was given.
    let all = read_all(&log);
    assert_eq!(all.len() as i64, expected);
    for (base, (tag, n)) in &by_offset {
        for i in 0..*n {
            assert_eq!(
                all[(*base as usize) + i],
                (base + i as i64, format!("{tag}:{i}"))
            );
        }
    }
    assert!(
        log.segment_base_offsets().len() > 3,
        "small segments should have rolled"
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn read_from_every_offset_starts_with_the_batch_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    let mut batches = Vec::new();
    for i in 0..150 {
        let info = append(&log, &format!("b{i}"), 1 + i % 5, now_ms()).await;
        batches.push((info.base_offset.0, info.last_offset.0));
    }
    let check = |log: &Log| {
        for &(base, last) in &batches {
            for o in base..=last {
                let bytes = log.read_blocking(Offset(o), 1).unwrap();
                let first = BatchHeader::parse(&bytes).unwrap();
                assert_eq!(
                    (first.base_offset, first.last_offset()),
                    (base, last),
                    "read at {o}"
                );
                assert_eq!(
                    bytes.len(),
                    first.total_size(),
                    "max_bytes 1 still yields one whole batch"
                );
                assert_eq!(first.partition_leader_epoch, 1);
            }
        }
    };
    check(&log);
    assert!(log.segment_base_offsets().len() > 2);
    log.close().await.unwrap();
    let log = Log::open(dir.path(), small_config()).await.unwrap();
    check(&log);
    log.close().await.unwrap();
}

#[tokio::test]
async fn read_returns_whole_batches_up_to_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let log = Log::open(dir.path(), config).await.unwrap();
    let mut sizes = Vec::new();
    for i in 0..10 {
        let b = batch(&format!("b{i}"), 2, now_ms());
        sizes.push(b.len());
        log.append(b, LeaderEpoch(0)).await.unwrap();
    }
    let three = sizes[0] + sizes[1] + sizes[2];
    let bytes = log.read_blocking(Offset(0), three + sizes[3] - 1).unwrap();
    assert_eq!(bytes.len(), three);
    assert_eq!(Batches::new(bytes, usize::MAX).count(), 3);
    let all = log.read_blocking(Offset(0), usize::MAX).unwrap();
    assert_eq!(all.len(), sizes.iter().sum::<usize>());
    // At the end: empty. Past it or below the start: a typed error naming the range.
    assert!(log.read_blocking(Offset(20), 100).unwrap().is_empty());
    match log.read_blocking(Offset(21), 100) {
        Err(LogError::OffsetOutOfRange { offset, start, end }) => {
            assert_eq!((offset, start, end), (Offset(21), Offset(0), Offset(20)))
        }
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    assert!(matches!(
        log.read_blocking(Offset(-1), 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    log.close().await.unwrap();
}

#[tokio::test]
async fn stored_batch_is_the_produced_batch_with_offset_and_epoch_stamped() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).await.unwrap();
    append(&log, "first", 3, 1_000).await;
    let produced = batch("second", 2, 2_000);
    let info = log.append(produced.clone(), LeaderEpoch(42)).await.unwrap();
    let stored = log.read_blocking(info.base_offset, 1).unwrap();
    assert_eq!(stored.len(), produced.len());
    assert_eq!(&stored[..8], &3i64.to_be_bytes());
    assert_eq!(&stored[8..12], &produced[8..12]);
    assert_eq!(&stored[12..16], &42i32.to_be_bytes());
    assert_eq!(
        &stored[16..],
        &produced[16..],
        "bytes under the CRC are untouched"
    );
    assert_eq!(
        records(&stored),
        vec![(3, "second:0".into()), (4, "second:1".into())]
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn segments_roll_by_size_and_reads_cross_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2048,
        max_batch_bytes: 1024,
        ..small_config()
    };
    let log = Log::open(dir.path(), config.clone()).await.unwrap();
    let b = big_batch("x", 1, 400, now_ms());
    let size = b.len() as u64;
    for _ in 0..20 {
        log.append(b.clone(), LeaderEpoch(0)).await.unwrap();
    }
    let per_segment = 2048 / size;
    let bases: Vec<i64> = log.segment_base_offsets().iter().map(|o| o.0).collect();
    let expected: Vec<i64> = (0..20)
        .step_by(per_segment as usize)
        .map(|o| o as i64)
        .collect();
    assert_eq!(bases, expected);
    for base in &bases {
        let name = brook_broker::log::log_file_name(*base);
        let len = std::fs::metadata(dir.path().join(&name)).unwrap().len();
        assert!(len <= 2048, "{name} is {len} bytes");
    }
    assert_eq!(read_all(&log).len(), 20);
    log.close().await.unwrap();
    let log = Log::open(dir.path(), config).await.unwrap();
    assert_eq!(
        log.segment_base_offsets()
            .iter()
            .map(|o| o.0)
            .collect::<Vec<_>>(),
        bases
    );
    assert_eq!(read_all(&log).len(), 20);
    log.close().await.unwrap();
}

#[tokio::test]
async fn segment_rolls_once_its_first_batch_is_older_than_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let config = LogConfig {
        segment_ms: Some(60_000),
        ..LogConfig::default()
    };
    let log = Log::open_with_clock(dir.path(), config, Arc::new(clock.clone()))
        .await
        .unwrap();
    append(&log, "a", 1, 1_000_000).await;
    clock.advance(60_000);
    append(&log, "b", 1, 1_060_000).await; // exactly segment_ms old: no roll
    assert_eq!(log.segment_base_offsets(), vec![Offset(0)]);
    clock.advance(1);
    append(&log, "c", 1, 1_060_001).await;
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(2)]);
    log.close().await.unwrap();
}

#[tokio::test]
async fn old_timestamps_appended_now_do_not_roll_a_segment_per_batch() {
    // Mirrored or replayed records carry timestamps far older than segment_ms.
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(10_000_000_000);
    let config = LogConfig {
        segment_ms: Some(60_000),
        ..LogConfig::default()
    };
    let log = Log::open_with_clock(dir.path(), config, Arc::new(clock.clone()))
        .await
        .unwrap();
    for i in 0..10 {
        append(&log, "old", 1, 1_000_000 + i * 1000).await;
    }
    assert_eq!(log.segment_base_offsets(), vec![Offset(0)]);
    // Record time moving past segment_ms since the first batch rolls, whatever the clock.
    append(&log, "later", 1, 1_000_000 + 60_001).await;
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(10)]);
    log.close().await.unwrap();
}

#[tokio::test]
async fn timestamp_lookup_finds_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        ..small_config()
    };
    let log = Log::open(dir.path(), config.clone()).await.unwrap();
    // Timestamps mostly rise, with some stragglers going back in time, as with real producers.
    let mut all: Vec<(i64, i64)> = Vec::new(); // (offset, timestamp)
    let mut offset = 0;
    for i in 0..120i64 {
        let base_ts = 10_000 + i * 100 - if i % 7 == 3 { 450 } else { 0 };
        let mut b = brook_proto::BatchBuilder::new();
        for r in 0..3 {
            let ts = base_ts + r * 10 - if r == 1 && i % 5 == 0 { 30 } else { 0 };
            b.append(ts, None, Some(b"v"), &[]);
            all.push((offset, ts));
            offset += 1;
        }
        log.append(b.build(), LeaderEpoch(0)).await.unwrap();
    }
    let expect = |target: i64| all.iter().find(|(_, ts)| *ts >= target).copied();
    let check = |log: &Log| {
        for target in (9_000..22_500).step_by(7) {
            let got = log
                .offset_for_timestamp_blocking(target)
                .unwrap()
                .map(|t| (t.offset, t.timestamp));
            assert_eq!(got, expect(target), "target {target}");
        }
    };
    check(&log);
    assert!(log.segment_base_offsets().len() > 3);
    log.close().await.unwrap();
    let log = Log::open(dir.path(), config).await.unwrap();
    check(&log);
    log.close().await.unwrap();
}

#[tokio::test]
async fn flush_always_syncs_before_acknowledging() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::Always,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).await.unwrap();
    for i in 0..5 {
        let info = append(&log, "a", 2, now_ms()).await;
        assert_eq!(info.base_offset, Offset(i * 2));
        assert_eq!(log.flushed_offset(), Offset(i * 2 + 2));
    }
    log.close().await.unwrap();
}

#[tokio::test]
async fn flush_never_leaves_sync_to_explicit_flush_and_roll() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(
        dir.path(),
        LogConfig {
            flush: FlushPolicy::Never,
            ..LogConfig::default()
        },
    )
    .await
    .unwrap();
    append(&log, "a", 2, now_ms()).await;
    append(&log, "b", 2, now_ms()).await;
    assert_eq!(log.flushed_offset(), Offset(0));
    assert_eq!(log.flush().await.unwrap(), Offset(4));
    assert_eq!(log.flushed_offset(), Offset(4));
    append(&log, "c", 1, now_ms()).await;
    assert_eq!(log.flushed_offset(), Offset(4));
    log.roll().await.unwrap();
    assert_eq!(
        log.flushed_offset(),
        Offset(5),
        "rolling syncs the sealed segment"
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn flush_never_writes_back_in_the_background_without_claiming_durability() {
    // 20 MB over 8 MiB segments: the writer starts write-back of the active segment every
    // 4 MiB behind its end; the data reads back whole, before and after a reopen, and only
    // the rolls (which fsync) move the flushed offset.
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy::Never,
        segment_bytes: 8 << 20,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config.clone()).await.unwrap();
    let mut want = Vec::new();
    for i in 0..20 {
        let tag = format!("w{i}");
        let bytes = big_batch(&tag, 900, 1000, now_ms());
        let info = log.append(bytes.clone(), LeaderEpoch(1)).await.unwrap();
        assert_eq!(info.base_offset, Offset(i * 900));
        want.extend(records(&bytes).into_iter().map(|(o, v)| (o + i * 900, v)));
    }
    assert_eq!(log.end_offset(), Offset(18_000));
    let segments = log.segment_base_offsets();
    assert_eq!(segments.len(), 3, "two rolls at 8 MiB: {segments:?}");
    assert_eq!(
        log.flushed_offset(),
        segments[2],
        "write-back is not durability: only the rolls synced"
    );
    assert_eq!(read_all(&log), want);
    log.close().await.unwrap();
    let log = Log::open(dir.path(), config).await.unwrap();
    assert_eq!(read_all(&log), want);
    log.close().await.unwrap();
}

#[tokio::test]
async fn flush_interval_syncs_once_the_interval_passed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now_ms());
    let config = LogConfig {
        flush: FlushPolicy::Interval(Duration::from_secs(3600)),
        ..LogConfig::default()
    };
    let log = Log::open_with_clock(dir.path(), config, Arc::new(clock.clone()))
        .await
        .unwrap();
    append(&log, "a", 2, now_ms()).await;
    clock.advance(3_599_999);
    append(&log, "b", 2, now_ms()).await;
    assert_eq!(log.flushed_offset(), Offset(0));
    // Once the interval has passed the writer's timer syncs, with no append needed.
    clock.advance(1);
    wait_for_flushed(&log, Offset(4)).await;
    append(&log, "c", 2, now_ms()).await;
    assert_eq!(
        log.flushed_offset(),
        Offset(4),
        "the interval restarts at each sync"
    );
    clock.advance(3_600_000);
    wait_for_flushed(&log, Offset(6)).await;
    log.close().await.unwrap();
}

/// Waits (bounded, 5 s) for the writer's interval timer to sync up to `offset`.
async fn wait_for_flushed(log: &Log, offset: Offset) {
    for _ in 0..500 {
        if log.flushed_offset() == offset {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(log.flushed_offset(), offset);
}

#[tokio::test]
async fn bad_batches_are_rejected_with_typed_errors_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_batch_bytes: 1024,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config).await.unwrap();
    append(&log, "ok", 1, 5).await;

    let big = big_batch("big", 1, 2000, 5);
    match log.append(big.clone(), LeaderEpoch(0)).await {
        Err(LogError::InvalidBatch(BatchError::TooLarge { size, limit })) => {
            assert_eq!((size, limit), (big.len(), 1024))
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }

    let mut corrupt = batch("c", 2, 5).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(matches!(
        log.append(Bytes::from(corrupt), LeaderEpoch(0)).await,
        Err(LogError::InvalidBatch(BatchError::CrcMismatch { .. }))
    ));

    let good = batch("g", 1, 5);
    let mut short = good.to_vec();
    short.truncate(good.len() - 3);
    match log.append(Bytes::from(short), LeaderEpoch(0)).await {
        Err(LogError::InvalidBatch(BatchError::LengthMismatch { declared, actual })) => {
            assert_eq!((declared, actual), (good.len(), good.len() - 3))
        }
        other => panic!("expected LengthMismatch, got {other:?}"),
    }
    assert!(matches!(
        log.append(Bytes::from_static(b"garbage"), LeaderEpoch(0))
            .await,
        Err(LogError::InvalidBatch(BatchError::Truncated {
            needed: layout::HEADER_LEN,
            available: 7
        }))
    ));
    let empty = brook_proto::BatchBuilder::new().build();
    assert!(matches!(
        log.append(empty, LeaderEpoch(0)).await,
        Err(LogError::InvalidBatch(BatchError::OffsetDeltaMismatch {
            last_offset_delta: 0,
            records: 0
        }))
    ));
    assert_eq!(log.end_offset(), Offset(1));
    assert_eq!(read_all(&log), vec![(0, "ok:0".to_string())]);
    log.close().await.unwrap();
}

#[tokio::test]
async fn invalid_config_is_refused_with_the_value_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 10,
        ..LogConfig::default()
    };
    let err = Log::open(dir.path(), config).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid log config: segment_bytes = 10 is out of range: must be between 1024 and 2147483648"
    );
    let err = "interval:0".parse::<FlushPolicy>().unwrap_err();
    assert!(err.to_string().contains("\"interval:0\""), "{err}");
    assert_eq!(
        "interval:250".parse::<FlushPolicy>().unwrap(),
        FlushPolicy::Interval(Duration::from_millis(250))
    );
    assert_eq!(
        "always".parse::<FlushPolicy>().unwrap(),
        FlushPolicy::Always
    );
    assert!("sometimes".parse::<FlushPolicy>().is_err());
}

#[tokio::test]
async fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogConfig::default()).await.unwrap();
    match Log::open(dir.path(), LogConfig::default()).await {
        Err(LogError::Locked { path, lock }) => {
            assert_eq!(path, dir.path());
            assert_eq!(lock, dir.path().join(".lock"));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    log.close().await.unwrap();
    let again = Log::open(dir.path(), LogConfig::default()).await.unwrap();
    assert!(matches!(
        log.append(batch("late", 1, 0), LeaderEpoch(0)).await,
        Err(LogError::Closed { .. })
    ));
    again.close().await.unwrap();
}
